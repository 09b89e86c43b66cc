//! A page's session renewed on its way in, before anything renders.

use app::{
    api::renewal,
    auth::{
        access::{AuthUser, TokenSource},
        tokens::access::{now_unix, TokenError},
        Auth,
    },
    error::ErrorCode,
};
use axum::{
    extract::Request,
    http::{header, HeaderMap, HeaderValue, Method},
    middleware::Next,
    response::Response,
};
use std::sync::Arc;

/// An access token this close to its end (or a quarter of its lifetime, when that is less) is
/// renewed before a page renders with it.
pub const REFRESH_AHEAD_SECS: i64 = 30;

/// Why [`refresh_session`] could not renew the session of this request: the page is rendered
/// signed out, and a protected page names the reason when it sends the visitor to sign in.
#[derive(Debug, Clone, Copy)]
pub struct SessionOver(pub ErrorCode);

/// A browser whose access token has expired (or is about to, or whose access cookie is gone)
/// while its session lives on gets new tokens before anything renders: the refresh cookie is
/// rotated, the request goes on with the new access token, and the answer sets both cookies.
/// A person coming back after the access token expired sees the page signed in on the first
/// load, with no flash of the signed-out page and no extra click; a form posted from a page left
/// open overnight goes through. Page and server-function requests only (a POST has passed the
/// same-origin check before this runs), never assets or callers with an `Authorization`
/// header. When the session is over, both cookies are dropped from the request and the browser.
pub async fn refresh_session(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // Under `/api`, the API's table says which routes renew (not those that need no session
    // or handle the refresh cookie themselves: see `Access::renews_session`); every other
    // route does, but the assets. (`/health` and `GET /api/me`, the hot path, never come
    // here: see `crate::router`.)
    let renews = app::api::contract::endpoint(req.method(), path)
        .is_none_or(|endpoint| endpoint.access.renews_session());
    if !(req.method() == Method::GET || req.method() == Method::POST)
        || !renews
        || crate::layers::headers::is_site_file(path)
        || req.headers().contains_key(header::AUTHORIZATION)
    {
        return next.run(req).await;
    }
    let Some(auth) = req.extensions().get::<Arc<Auth>>().cloned() else {
        return next.run(req).await;
    };
    let Some(refresh) = auth.cookie.read_refresh(req.headers()).map(str::to_owned) else {
        return next.run(req).await;
    };
    let due = match auth.cookie.read(req.headers()).map(|t| auth.keys.verify(t)) {
        None | Some(Err(TokenError::Expired)) => true,
        // Ahead by 30 s, or by a quarter of the lifetime when tokens live shorter than 2 min.
        Some(Ok(token)) => {
            let lifetime = i64::try_from(auth.keys.ttl().as_secs()).unwrap_or(i64::MAX);
            token.exp - now_unix() < REFRESH_AHEAD_SECS.min(lifetime / 4)
        }
        // A forged or foreign access cookie is for the extractor to refuse.
        Some(Err(TokenError::Invalid)) => false,
    };
    // The session is over for any failure but ours (a database error).
    if !due {
        return next.run(req).await;
    }
    let addr = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| auth.proxies.client(info.0.ip(), req.headers()));
    // In a task of its own: a rotation the database committed must reach this answer's
    // cookies or, if the client hung up, at least be complete (the old token then still
    // answers within the reuse interval).
    let refreshed = tokio::spawn({
        let auth = auth.clone();
        async move { auth.refresh(&refresh, addr).await }
    })
    .await;
    let (access, refresh, set, outcome) = match refreshed {
        Ok(Ok(issued)) => {
            let now = now_unix();
            let set = renewal::session_cookies(&auth, &issued, now);
            // The request goes on as this user, already checked. The new pair is in use from
            // here on: were its previous token taken back later (beyond the reuse interval),
            // that would be reuse (see `Sessions::rotate`).
            auth.sessions
                .record_use(issued.session_id, issued.generation, now);
            let user = AuthUser {
                user_id: issued.user_id,
                session_id: issued.session_id,
                jti: issued.jti,
                exp: issued.access_exp,
                source: TokenSource::Cookie,
            };
            (
                Some(issued.access_token),
                Some(issued.refresh_token),
                set,
                Ok(user),
            )
        }
        Ok(Err(e)) => {
            // The refresh endpoint's answer to the same refusal (a failure of ours is logged
            // there); 503 or 500 is for the API: the page renders with what the request has.
            let answer = renewal::refused(&auth, &e);
            if !e.session_is_over() {
                // Our failure, or a refusal for now, not the session's.
                return next.run(req).await;
            }
            // Over: the page renders signed out and the browser forgets both cookies.
            (
                None,
                None,
                renewal::cleared_session_cookies(&auth).to_vec(),
                Err(SessionOver(answer.error)),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "the refresh task failed");
            return next.run(req).await;
        }
    };
    let cookies = [
        (auth.cookie.name(), access),
        (auth.cookie.refresh_name(), refresh),
    ];
    replace_cookies(req.headers_mut(), &cookies);
    match outcome {
        Ok(user) => {
            req.extensions_mut().insert(user);
        }
        Err(over) => {
            req.extensions_mut().insert(over);
        }
    }
    let mut res = next.run(req).await;
    // What the handler set wins: it has the later word (a password change's new pair, a
    // sign-out's cleared cookies), and a browser keeps the last of two same-named cookies.
    let handled: Vec<String> = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split_once('=').map(|(name, _)| name.trim().to_owned()))
        .collect();
    for value in set {
        let name = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once('='))
            .map(|(name, _)| name.trim().to_owned());
        if !name.is_some_and(|name| handled.contains(&name)) {
            res.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    res
}

/// Rewrites the request's `Cookie` headers: each named cookie is dropped, then added back with
/// its new value when it has one. Every other cookie is kept as it was.
fn replace_cookies(headers: &mut HeaderMap, cookies: &[(&str, Option<String>)]) {
    let mut kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !cookies.iter().any(|(ours, _)| *ours == name)
        })
        .map(str::to_owned)
        .collect();
    for (name, value) in cookies {
        if let Some(value) = value {
            kept.push(format!("{name}={value}"));
        }
    }
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
        if !kept.is_empty() {
            headers.insert(header::COOKIE, value);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::layers::testing::{self, set_cookies, text};
    use app::api::{ChangePassword, CurrentUser, Login, Logout, Refresh, Register};
    use axum::{body::Body, middleware::from_fn, routing::any, Extension, Router};
    use server_fn::ServerFn;
    use tower::ServiceExt;

    /// What reached the handler: the cookies, the user found and why a session is over.
    async fn seen(req: Request) -> String {
        let cookie = req
            .headers()
            .get(header::COOKIE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let user = req.extensions().get::<AuthUser>().map(|u| u.user_id);
        let over = req.extensions().get::<SessionOver>().map(|o| o.0.as_str());
        format!("cookie=[{cookie}] user={user:?} over={over:?}")
    }

    /// The refresh layer alone, in front of any path (and a core, as the router gives it).
    fn renewing(auth: Arc<Auth>) -> Router {
        Router::new()
            .fallback(any(seen))
            .layer(from_fn(refresh_session))
            .layer(Extension(auth))
    }

    fn request(method: Method, path: &str, cookie: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    }

    /// The value a `Set-Cookie` of `name` gives, if the answer sets it.
    fn set_value(res: &Response, name: &str) -> Option<String> {
        set_cookies(res).into_iter().find_map(|c| {
            let (n, rest) = c.split_once('=')?;
            (n == name).then(|| rest.split(';').next().unwrap_or_default().to_owned())
        })
    }

    #[tokio::test]
    async fn an_expired_access_cookie_is_renewed_before_the_page() {
        let (_dir, pool, auth) = testing::auth().await;
        let issued = testing::signed_in(&auth, &pool).await;
        // The access cookie is gone (expired in the browser); the refresh cookie is here.
        let cookie = format!(
            "theme=dark; {}={}",
            auth.cookie.refresh_name(),
            issued.refresh_token
        );
        let res = renewing(auth.clone())
            .oneshot(request(Method::GET, "/profile", &cookie))
            .await
            .unwrap();
        let access = set_value(&res, auth.cookie.name()).unwrap();
        let refresh = set_value(&res, auth.cookie.refresh_name()).unwrap();
        assert!(!access.is_empty());
        assert_ne!(
            refresh, issued.refresh_token,
            "the refresh token is rotated"
        );
        // The page is rendered as the user, with the new pair in the request's cookies, the
        // other cookies as they were.
        assert_eq!(
            text(res).await,
            format!(
                "cookie=[theme=dark; {}={access}; {}={refresh}] user=Some({}) over=None",
                auth.cookie.name(),
                auth.cookie.refresh_name(),
                issued.user_id
            )
        );
        // The new access token is the session's.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {access}").parse().unwrap(),
        );
        assert_eq!(
            auth.authenticate(&headers).await.unwrap().session_id,
            issued.session_id
        );
    }

    #[tokio::test]
    async fn a_session_that_is_over_is_dropped_from_the_request_and_the_browser() {
        let (_dir, _pool, auth) = testing::auth().await;
        let cookie = format!("theme=dark; {}=rt2.forged", auth.cookie.refresh_name());
        let res = renewing(auth.clone())
            .oneshot(request(Method::POST, CurrentUser::PATH, &cookie))
            .await
            .unwrap();
        let cleared = set_cookies(&res);
        assert_eq!(cleared.len(), 2, "{cleared:?}");
        for name in [auth.cookie.name(), auth.cookie.refresh_name()] {
            assert_eq!(set_value(&res, name).as_deref(), Some(""), "{cleared:?}");
        }
        // The refresh endpoint's code for the same refusal.
        assert_eq!(
            text(res).await,
            "cookie=[theme=dark] user=None over=Some(\"invalid_token\")"
        );
    }

    /// The routes that need no session or handle the refresh cookie themselves (the API table
    /// says which), the assets, and callers with their own credentials are left alone.
    #[tokio::test]
    async fn only_what_needs_a_session_renews_it() {
        let (_dir, _pool, auth) = testing::auth().await;
        let cookie = format!("{}=rt2.forged", auth.cookie.refresh_name());
        let untouched = format!("cookie=[{cookie}] user=None over=None");
        for (method, path) in [
            (Method::POST, Login::PATH),
            (Method::POST, Register::PATH),
            (Method::POST, Logout::PATH),
            (Method::POST, Refresh::PATH),
            (Method::GET, app::api::contract::DOCUMENT_PATH),
            (Method::GET, "/pkg/authapp.js"),
            // (The answer to a HEAD has no body: its cookies say it.)
            (Method::HEAD, "/profile"),
        ] {
            let res = renewing(auth.clone())
                .oneshot(request(method.clone(), path, &cookie))
                .await
                .unwrap();
            assert!(set_cookies(&res).is_empty(), "{method} {path}");
            if method != Method::HEAD {
                assert_eq!(text(res).await, untouched, "{method} {path}");
            }
        }
        let mut bearer = request(Method::POST, ChangePassword::PATH, &cookie);
        bearer
            .headers_mut()
            .insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        let res = renewing(auth.clone()).oneshot(bearer).await.unwrap();
        assert!(set_cookies(&res).is_empty());
        // Pages and the endpoints of a signed-in person do renew (here: find it over).
        for (method, path) in [
            (Method::GET, "/"),
            (Method::GET, "/sessions"),
            (Method::POST, ChangePassword::PATH),
            (Method::GET, CurrentUser::PATH),
        ] {
            let res = renewing(auth.clone())
                .oneshot(request(method.clone(), path, &cookie))
                .await
                .unwrap();
            assert_eq!(set_cookies(&res).len(), 2, "{method} {path}");
        }
    }

    /// What the handler sets has the later word: a browser keeps the last of two same-named
    /// cookies, so the layer's own are left out.
    #[tokio::test]
    async fn the_handlers_cookies_win() {
        let (_dir, _pool, auth) = testing::auth().await;
        let cleared_by_handler = auth.cookie.set("handler", 60).unwrap();
        let router = Router::new()
            .fallback(any(move || {
                let value = cleared_by_handler.clone();
                async move { ([(header::SET_COOKIE, value)], "ok") }
            }))
            .layer(from_fn(refresh_session))
            .layer(Extension(auth.clone()));
        let cookie = format!("{}=rt2.forged", auth.cookie.refresh_name());
        let res = router
            .oneshot(request(Method::GET, "/profile", &cookie))
            .await
            .unwrap();
        assert_eq!(
            set_value(&res, auth.cookie.name()).as_deref(),
            Some("handler")
        );
        assert_eq!(
            set_value(&res, auth.cookie.refresh_name()).as_deref(),
            Some("")
        );
        assert_eq!(set_cookies(&res).len(), 2);
    }
}
