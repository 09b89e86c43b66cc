//! The pages' guard: a protected page is never rendered without a valid session, and the
//! sessions page gets its list before it renders.

use app::{
    auth::{
        access::{AuthRejection, AuthUser},
        Auth,
    },
    error::ApiError,
    routes::{self, encode_component},
};
use axum::{
    extract::Request,
    http::{header, Method},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use std::sync::Arc;

use super::{errors::error_page, refresh::SessionOver};

/// Protected pages are never rendered without a valid session: the visitor is sent to sign
/// in, and back here afterwards, told why when a session ended. A stale cookie is cleared on
/// the way.
pub async fn protect_pages(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if req.method() != Method::GET || !routes::is_protected(path) {
        return next.run(req).await;
    }
    let Some(auth) = req.extensions().get::<Arc<Auth>>().cloned() else {
        return ApiError::from(AuthRejection::Unavailable).into_response();
    };
    // Already checked when `refresh_session` just renewed the session.
    let checked = match req.extensions().get::<AuthUser>() {
        Some(user) => Ok(*user),
        None => auth.authenticate(req.headers()).await,
    };
    match checked {
        Ok(user) => {
            let mut req = req;
            req.extensions_mut().insert::<AuthUser>(user);
            next.run(req).await
        }
        // A failure of ours, not the visitor's: no sign-in page, and the cookies stay.
        Err(rejection @ (AuthRejection::Unavailable | AuthRejection::DatabaseUnavailable)) => {
            error_page(&ApiError::from(rejection))
        }
        // Expired, and not renewed because the database cannot be reached (`refresh_session`):
        // the session may well live on, and a sign-in could not be made either.
        Err(AuthRejection::TokenExpired)
            if auth.health.is_down() && auth.cookie.read_refresh(req.headers()).is_some() =>
        {
            error_page(&ApiError::database_unavailable())
        }
        Err(rejection) => {
            let target = match req.uri().path_and_query() {
                Some(pq) => pq.as_str().to_string(),
                None => path.to_string(),
            };
            // A code, never text: the sign-in page words it from its own table.
            let reason = match (rejection, req.extensions().get::<SessionOver>()) {
                (AuthRejection::MissingToken, Some(SessionOver(code))) => Some(*code),
                (AuthRejection::MissingToken, None) => None,
                (other, _) => Some(ApiError::from(other).error),
            };
            let mut location = format!("/login?next={}", encode_component(&target));
            if let Some(code) = reason.filter(|c| c.is_token_rejection()) {
                location.push_str("&reason=");
                location.push_str(code.as_str());
            }
            let mut res = Redirect::to(&location).into_response();
            if rejection != AuthRejection::MissingToken {
                res.headers_mut()
                    .append(header::SET_COOKIE, auth.cookie.clear());
            }
            // An expired access token with a refresh cookie still here means the refresh could
            // not be made just now (a failure on our side, see `refresh_session`): the session
            // may well be alive, so its cookie stays for the next try.
            if !matches!(
                rejection,
                AuthRejection::MissingToken | AuthRejection::TokenExpired
            ) {
                res.headers_mut()
                    .append(header::SET_COOKIE, auth.cookie.clear_refresh());
            }
            res
        }
    }
}

/// `GET /sessions`, once `protect_pages` has let it through: the sessions list is rendered here,
/// before the page (which cannot wait for data itself: see `app::pages::sessions`), and handed to
/// it in the request's extensions.
pub async fn sessions_page(mut req: Request, next: Next) -> Response {
    if req.method() == Method::GET && req.uri().path() == routes::SESSIONS.path {
        let auth = req.extensions().get::<Arc<Auth>>().cloned();
        let user = req.extensions().get::<AuthUser>().copied();
        if let (Some(auth), Some(user)) = (auth, user) {
            let fragment = app::api::sessions::server::sessions_fragment(&auth, &user).await;
            req.extensions_mut().insert(fragment);
        }
    }
    next.run(req).await
}
