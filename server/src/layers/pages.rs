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

/// What a page shows that cannot wait for data itself (see `app::pages::sessions`), read and
/// worded here before it renders, and handed to it in the request's extensions: the sessions
/// list of `GET /sessions` and the activity list of `GET /activity` (once `protect_pages` has
/// let them through), and the facts of the pages
/// of e-mail (the account's address, a mailed link's state, whether sign-up asks for an
/// address: `app::api::email::MailFacts`).
pub async fn page_data(mut req: Request, next: Next) -> Response {
    if req.method() != Method::GET {
        return next.run(req).await;
    }
    let auth = req.extensions().get::<Arc<Auth>>().cloned();
    let user = req.extensions().get::<AuthUser>().copied();
    let Some(auth) = auth else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    if path == routes::SESSIONS.path {
        if let Some(user) = user {
            let clock = app::clock::Clock::of_request(req.headers(), auth.cookie.secure());
            let list = app::api::sessions::server::sessions_list(&auth, &user, &clock).await;
            req.extensions_mut().insert(list);
        }
    } else if path == routes::ACTIVITY.path {
        if let Some(user) = user {
            let clock = app::clock::Clock::of_request(req.headers(), auth.cookie.secure());
            let before = req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|pair| pair.strip_prefix("before="))
                    .map(str::to_owned)
            });
            let list =
                app::api::activity::server::activity_list(&auth, &user, &clock, before.as_deref())
                    .await;
            req.extensions_mut().insert(list);
        }
    } else if let Some(facts) =
        app::api::email::server::page_facts(&auth, &path, req.uri().query(), user).await
    {
        req.extensions_mut().insert(facts);
    }
    next.run(req).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::layers::testing::{self, set_cookies, text};
    use app::error::ErrorCode;
    use axum::{
        body::Body, http::StatusCode, middleware::from_fn, routing::get, Extension, Router,
    };
    use tower::ServiceExt;

    /// What reached the page: the user the guard let through.
    async fn page(req: Request) -> String {
        match req.extensions().get::<AuthUser>() {
            Some(user) => format!("user {}", user.user_id),
            None => "nobody".into(),
        }
    }

    /// The guard alone, in front of every page of the table (and a core, as the router gives
    /// it); `over` is what the refresh layer would have found.
    fn guarded(auth: Arc<Auth>, over: Option<SessionOver>) -> Router {
        let mut router = Router::new();
        for p in routes::PAGES {
            router = router.route(p.path, get(page).post(page));
        }
        router
            .layer(from_fn(protect_pages))
            .layer(from_fn(move |mut req: Request, next: Next| async move {
                if let Some(over) = over {
                    req.extensions_mut().insert(over);
                }
                next.run(req).await
            }))
            .layer(Extension(auth))
    }

    fn get_with_cookie(path: &str, cookie: Option<String>) -> Request {
        let mut req = Request::get(path);
        if let Some(cookie) = cookie {
            req = req.header(header::COOKIE, cookie);
        }
        req.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_visitor_without_a_session_is_sent_to_sign_in_and_back() {
        let (_dir, _pool, auth) = testing::auth().await;
        for p in routes::PAGES.iter().filter(|p| p.protected) {
            let res = guarded(auth.clone(), None)
                .oneshot(get_with_cookie(p.path, None))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", p.path);
            // The page's own sign-in link, exactly: the same `next`.
            assert_eq!(res.headers()[header::LOCATION], p.sign_in);
            // Nothing to clear.
            assert!(set_cookies(&res).is_empty());
        }
        // The query comes back too, encoded as one value.
        let res = guarded(auth.clone(), None)
            .oneshot(get_with_cookie("/sessions?ended=2&x=%2F", None))
            .await
            .unwrap();
        assert_eq!(
            res.headers()[header::LOCATION],
            "/login?next=%2Fsessions%3Fended%3D2%26x%3D%252F"
        );
    }

    #[tokio::test]
    async fn only_a_get_of_a_protected_page_is_guarded() {
        let (_dir, _pool, auth) = testing::auth().await;
        for p in routes::PAGES.iter().filter(|p| !p.protected) {
            let res = guarded(auth.clone(), None)
                .oneshot(get_with_cookie(p.path, None))
                .await
                .unwrap();
            assert_eq!(text(res).await, "nobody", "{}", p.path);
        }
        let post = Request::post(routes::PROFILE.path)
            .body(Body::empty())
            .unwrap();
        let res = guarded(auth, None).oneshot(post).await.unwrap();
        assert_eq!(text(res).await, "nobody");
    }

    #[tokio::test]
    async fn a_bad_token_is_named_and_its_cookies_cleared() {
        let (_dir, _pool, auth) = testing::auth().await;
        let cookie = format!(
            "{}=not-a-token; {}=rt2.forged; theme=dark",
            auth.cookie.name(),
            auth.cookie.refresh_name()
        );
        let res = guarded(auth.clone(), None)
            .oneshot(get_with_cookie(routes::ACCOUNT.path, Some(cookie)))
            .await
            .unwrap();
        assert_eq!(
            res.headers()[header::LOCATION],
            format!("{}&reason=invalid_token", routes::ACCOUNT.sign_in)
        );
        let cleared = set_cookies(&res);
        assert_eq!(cleared.len(), 2, "{cleared:?}");
        for name in [auth.cookie.name(), auth.cookie.refresh_name()] {
            assert!(
                cleared
                    .iter()
                    .any(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0")),
                "{name}: {cleared:?}"
            );
        }
    }

    /// A session the refresh layer found over is named on the sign-in page, though the request
    /// reaches the guard with no token left.
    #[tokio::test]
    async fn a_session_found_over_is_named() {
        let (_dir, _pool, auth) = testing::auth().await;
        let over = Some(SessionOver(ErrorCode::TokenRevoked));
        let res = guarded(auth, over)
            .oneshot(get_with_cookie(routes::PROFILE.path, None))
            .await
            .unwrap();
        assert_eq!(
            res.headers()[header::LOCATION],
            format!("{}&reason=token_revoked", routes::PROFILE.sign_in)
        );
    }

    #[tokio::test]
    async fn a_valid_session_reaches_the_page_as_its_user() {
        let (_dir, pool, auth) = testing::auth().await;
        let issued = testing::signed_in(&auth, &pool).await;
        let cookie = format!("{}={}", auth.cookie.name(), issued.access_token);
        let res = guarded(auth, None)
            .oneshot(get_with_cookie(routes::SESSIONS.path, Some(cookie)))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(text(res).await, format!("user {}", issued.user_id));
    }

    #[tokio::test]
    async fn without_the_core_nothing_is_rendered() {
        let router = Router::new()
            .route(routes::PROFILE.path, get(page))
            .layer(from_fn(protect_pages));
        let res = router
            .oneshot(get_with_cookie(routes::PROFILE.path, None))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
