//! Renewing a session over HTTP, as the refresh endpoint (`POST /api/refresh`) and the server's
//! refresh layer (which renews a page's session on its way in) both do it: one answer for each
//! way a rotation can be refused, and one writer of the session's cookies (which every sign-in
//! and password change uses too).

use axum::http::HeaderValue;

use crate::{
    auth::{sessions::RefreshError, Auth, HealthAnswer, Issued},
    error::ApiError,
};

/// The answer to a refused rotation, a failure on our side logged (never sent). When the
/// refusal ends the session ([`RefreshError::session_is_over`]), its code is a token rejection
/// (`invalid_token`, `token_expired`, `token_revoked`): what a page's sign-in names as the
/// reason, and the cue for the browser to drop both cookies ([`cleared_session_cookies`]).
/// Any other refusal is for now (throttled, busy, our failure): the cookies stay, to try again.
pub fn refused(auth: &Auth, err: &RefreshError) -> ApiError {
    match err {
        RefreshError::Invalid => ApiError::invalid_refresh_token(),
        RefreshError::Ended => ApiError::session_ended(),
        RefreshError::Expired => ApiError::session_expired(),
        RefreshError::Reused => ApiError::refresh_token_reused(),
        RefreshError::Db(e) => auth.health.answer("rotating a refresh token failed", e),
        RefreshError::Sign(e) => crate::auth::internal("signing a token failed", e),
        RefreshError::Busy => ApiError::unavailable(1),
        RefreshError::Throttled(retry_after) => ApiError::too_many_refreshes(*retry_after),
    }
}

/// The `Set-Cookie` values of tokens just issued: both cookies, each living as long as its token
/// (from `now`). A token too large for a cookie has none.
pub fn session_cookies(auth: &Auth, issued: &Issued, now: i64) -> Vec<HeaderValue> {
    let access = (issued.access_exp - now).max(0) as u64;
    let session = (issued.session_expires_at - now).max(0) as u64;
    [
        auth.cookie.set(&issued.access_token, access),
        auth.cookie.set_refresh(&issued.refresh_token, session),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The `Set-Cookie` values that make the browser drop both cookies of a session that is over.
pub fn cleared_session_cookies(auth: &Auth) -> [HeaderValue; 2] {
    [auth.cookie.clear(), auth.cookie.clear_refresh()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    /// The refusals that end a session answer a token rejection, whose code a page's sign-in
    /// names; the others are for now and carry `Retry-After` (or are our failure).
    #[tokio::test]
    async fn a_session_that_is_over_answers_a_token_rejection() {
        let (_dir, _pool, auth) = identity::testing::auth().await;
        for (err, code) in [
            (RefreshError::Invalid, ErrorCode::InvalidToken),
            (RefreshError::Ended, ErrorCode::TokenRevoked),
            (RefreshError::Expired, ErrorCode::TokenExpired),
            (RefreshError::Reused, ErrorCode::TokenRevoked),
            (RefreshError::Busy, ErrorCode::TemporarilyUnavailable),
            (RefreshError::Throttled(7), ErrorCode::TooManyRequests),
            (RefreshError::Sign("no key".into()), ErrorCode::Internal),
        ] {
            let answer = refused(&auth, &err);
            assert_eq!(answer.error, code, "{err:?}");
            assert_eq!(
                err.session_is_over(),
                answer.error.is_token_rejection(),
                "{err:?}"
            );
        }
        assert_eq!(
            refused(&auth, &RefreshError::Throttled(7)).retry_after,
            Some(7)
        );
    }
}
