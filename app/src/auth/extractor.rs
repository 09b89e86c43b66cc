//! The HTTP side of the access check ([`identity::access`]): the axum extractors, and the
//! answer each rejection gets (a 401 with a JSON reason and an RFC 6750 challenge; a 503 or a
//! 500 for a failure of ours).

use axum::{extract::FromRequestParts, http::request::Parts};
use std::sync::Arc;

use super::{AppState, Auth};
use crate::error::ApiError;
use identity::{
    access::{AuthRejection, AuthUser},
    users::User,
};

impl From<AuthRejection> for ApiError {
    fn from(r: AuthRejection) -> Self {
        match r {
            AuthRejection::MissingToken => ApiError::missing_token(),
            AuthRejection::InvalidToken => ApiError::invalid_token(),
            AuthRejection::TokenExpired => ApiError::token_expired(),
            AuthRejection::TokenRevoked => ApiError::token_revoked(),
            AuthRejection::Unavailable => {
                tracing::error!("authentication unavailable (router miswired or database failing)");
                ApiError::internal()
            }
            AuthRejection::DatabaseUnavailable => ApiError::database_unavailable(),
        }
    }
}

/// A caller whose token passed the whole check ([`Auth::authenticate`]).
#[derive(Debug, Clone, Copy)]
pub struct Authenticated(pub AuthUser);

/// For routes that work signed in or out: no token gives `None`, but a bad token is still a 401.
#[derive(Debug, Clone, Copy)]
pub struct MaybeAuthUser(pub Option<AuthUser>);

/// A signed-in request and its user, from one check: what `GET /api/me` answers with.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub auth: AuthUser,
    pub user: Arc<User>,
}

/// From the router's state, not the request's extensions: the hot path carries no `Extension`
/// layer (inserting one costs an allocation per request).
impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (auth, user) = state.auth.authenticate_user(&parts.headers).await?;
        Ok(Self { auth, user })
    }
}

/// The check itself, for the extractors below: once per request.
async fn authenticate(parts: &Parts) -> Result<AuthUser, AuthRejection> {
    // Already checked for this request (by the protected-page guard): no second
    // verification. Only server code can put it there.
    if let Some(user) = parts.extensions.get::<AuthUser>() {
        return Ok(*user);
    }
    let auth = parts
        .extensions
        .get::<Arc<Auth>>()
        .ok_or(AuthRejection::Unavailable)?;
    auth.authenticate(&parts.headers).await
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Self(authenticate(parts).await?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match authenticate(parts).await {
            Ok(user) => Ok(Self(Some(user))),
            Err(AuthRejection::MissingToken) => Ok(Self(None)),
            Err(other) => Err(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{
        http::{header, StatusCode},
        response::IntoResponse,
    };

    #[test]
    fn rejections_answer_401_json_with_a_challenge() {
        for rejection in [
            AuthRejection::MissingToken,
            AuthRejection::InvalidToken,
            AuthRejection::TokenExpired,
            AuthRejection::TokenRevoked,
        ] {
            let res = ApiError::from(rejection).into_response();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{rejection:?}");
            assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
        }
        assert_eq!(
            ApiError::from(AuthRejection::Unavailable)
                .into_response()
                .status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let res = ApiError::from(AuthRejection::DatabaseUnavailable).into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert!(!res.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
