//! Request and response layers in front of the app.

use app::{
    auth::{
        access::{AuthRejection, AuthUser, TokenSource},
        jwt::{now_unix, TokenError},
        sessions::RefreshError,
        Auth, HealthAnswer,
    },
    error::{ApiError, ErrorCode},
    openapi::Encoding,
    PROTECTED_PATHS,
};
use axum::{
    body::{to_bytes, Body},
    extract::Request,
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use std::sync::Arc;

/// The largest error body the status mapper will read.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// What only a layer can answer for: a bare 413 from the body-size limit gets our JSON body,
/// and a request whose arguments Leptos could not decode (before our function ran, so it could
/// not set its status) gets the status its error code calls for instead of 500. Every other
/// error already has its status ([`app::api::server::answered`]); only 500s are read.
pub async fn api_error_status(req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let res = next.run(req).await;
    match res.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large().into_response(),
        StatusCode::INTERNAL_SERVER_ERROR => {
            let (parts, body) = res.into_parts();
            let Ok(bytes) = to_bytes(body, MAX_ERROR_BODY).await else {
                return ApiError::internal().into_response();
            };
            match serde_json::from_slice::<ApiError>(&bytes) {
                Ok(err) => {
                    let mut mapped = err.into_response();
                    // Keep a cookie the function set.
                    for value in parts.headers.get_all(header::SET_COOKIE) {
                        mapped
                            .headers_mut()
                            .append(header::SET_COOKIE, value.clone());
                    }
                    mapped
                }
                Err(_) => Response::from_parts(parts, Body::from(bytes)),
            }
        }
        _ => res,
    }
}

/// How long a request body may take to arrive once its headers have.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The door of the API, in front of every route under `/api`:
///
/// - only the endpoints of the API's table ([`app::openapi::ENDPOINTS`], the OpenAPI document)
///   are reached: any other path is 404 `not_found` in JSON, so no route can be served that
///   the document does not list; another method on a listed path is 405 with `Allow`;
/// - a POST body comes in either encoding the API's clients send: a form (what pages post,
///   with or without JavaScript) or JSON (what most HTTP clients send). Both are checked
///   against the endpoint's body type, and JSON is handed on as the form the server function
///   decodes, so both get the same validation and the same answers. Anything else is 415
///   `unsupported_media_type`; a body that does not fit is 400 `bad_request`; one that takes
///   longer than [`BODY_TIMEOUT`] to arrive is 408 `request_timeout`.
///
/// Runs inside the body-size limit (which bounds what is read here) and the same-origin check,
/// before a session is renewed: a malformed body costs no refresh-token rotation.
pub async fn api_requests(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !path.starts_with("/api/") {
        return next.run(req).await;
    }
    let head = req.method() == Method::HEAD;
    let method = if head { &Method::GET } else { req.method() };
    let endpoint = match app::openapi::endpoint(method, path) {
        Some(e) => e,
        // Answered here, before a session could be renewed for a request that goes nowhere.
        None => match app::openapi::allowed_methods(path) {
            Some(allow) => {
                return (
                    StatusCode::METHOD_NOT_ALLOWED,
                    [(header::ALLOW, HeaderValue::from_static(allow))],
                )
                    .into_response()
            }
            None => return ApiError::no_such_endpoint().into_response(),
        },
    };
    if !endpoint.has_body() {
        // A server function is looked up by its own method: HEAD is answered as GET is (hyper
        // leaves the body out of the answer to a HEAD).
        if head {
            *req.method_mut() = Method::GET;
        }
        return next.run(req).await;
    }
    // A declared encoding is refused before a byte of the body is read; an undeclared one is
    // an empty form when the body is empty.
    let declared = match req.headers().get(header::CONTENT_TYPE) {
        Some(value) => match Encoding::of(Some(value.as_bytes()), false) {
            Ok(encoding) => Some(encoding),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let (mut parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, to_bytes(body, crate::BODY_LIMIT)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return body_unreadable(&e).into_response(),
        Err(_) => return ApiError::request_timeout().into_response(),
    };
    let encoding = match declared.map_or_else(|| Encoding::of(None, bytes.is_empty()), Ok) {
        Ok(encoding) => encoding,
        Err(e) => return e.into_response(),
    };
    let body = match endpoint.form_body(encoding, &bytes) {
        Ok(None) => Body::from(bytes),
        Ok(Some(form)) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(app::openapi::FORM),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(form)
        }
        Err(e) => return e.into_response(),
    };
    next.run(Request::from_parts(parts, body)).await
}

/// Why a body could not be read: over the size limit (413), or cut off (400).
fn body_unreadable(err: &axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return ApiError::payload_too_large();
        }
        source = e.source();
    }
    ApiError::bad_request("The request body could not be read.")
}

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
    // The routes that need no session, or handle the refresh cookie themselves. (`/health`
    // and `GET /api/me`, the hot path, never come here: see `crate::router`.)
    let own = matches!(
        path,
        app::openapi::DOCUMENT_PATH
            | "/api/refresh"
            | "/api/logout"
            | "/api/login"
            | "/api/register"
    );
    if !(req.method() == Method::GET || req.method() == Method::POST)
        || own
        || path.starts_with("/pkg/")
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
            let set = [
                auth.cookie.set(
                    &issued.access_token,
                    (issued.access_exp - now).max(0) as u64,
                ),
                auth.cookie.set_refresh(
                    &issued.refresh_token,
                    (issued.session_expires_at - now).max(0) as u64,
                ),
            ];
            // The request goes on as this user, already checked. The new pair is in use from
            // here on: were its previous token taken back later (beyond the reuse interval),
            // that would be reuse (see `Sessions::rotate`).
            auth.sessions
                .touch(issued.session_id, issued.generation, now);
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
                set.into_iter().flatten().collect::<Vec<_>>(),
                Ok(user),
            )
        }
        Ok(Err(e)) => {
            let code = match e {
                RefreshError::Expired => Some(ErrorCode::TokenExpired),
                RefreshError::Ended | RefreshError::Reused => Some(ErrorCode::TokenRevoked),
                RefreshError::Invalid => Some(ErrorCode::InvalidToken),
                RefreshError::Db(ref e) => {
                    // Logged at its level; 503 or 500 is for the API: the page renders with
                    // what the request has.
                    let _ = auth.health.answer("refreshing a session failed", &**e);
                    None
                }
                RefreshError::Sign(ref e) => {
                    tracing::error!(error = %e, "refreshing a session failed");
                    None
                }
                RefreshError::Busy | RefreshError::Throttled(_) => None,
            };
            match code {
                // Over: the page renders signed out and the browser forgets both cookies.
                Some(code) => (
                    None,
                    None,
                    vec![auth.cookie.clear(), auth.cookie.clear_refresh()],
                    Err(SessionOver(code)),
                ),
                // Our failure, not the session's: render with what the request has.
                None => return next.run(req).await,
            }
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

/// Protected pages are never rendered without a valid session: the visitor is sent to sign
/// in, and back here afterwards, told why when a session ended. A stale cookie is cleared on
/// the way.
pub async fn protect_pages(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if req.method() != Method::GET || !PROTECTED_PATHS.contains(&path) {
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

/// A page that says what went wrong on our side, with the status and headers of `err`
/// (`Retry-After` on a 503).
fn error_page(err: &ApiError) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Try again in a \
         moment</title></head><body><p role=\"alert\">{}</p></body></html>",
        app::api::escape(&err.description)
    );
    let mut res = (err.status(), axum::response::Html(html)).into_response();
    res.headers_mut().extend(err.headers());
    res
}

/// `GET /sessions`, once `protect_pages` has let it through: the sessions list is rendered here,
/// before the page (which cannot wait for data itself: see `app::pages::sessions`), and handed to
/// it in the request's extensions.
pub async fn sessions_page(mut req: Request, next: Next) -> Response {
    if req.method() == Method::GET && req.uri().path() == "/sessions" {
        let auth = req.extensions().get::<Arc<Auth>>().cloned();
        let user = req.extensions().get::<AuthUser>().copied();
        if let (Some(auth), Some(user)) = (auth, user) {
            let fragment = app::api::server::sessions_fragment(&auth, &user).await;
            req.extensions_mut().insert(fragment);
        }
    }
    next.run(req).await
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The scheme and `host[:port]` of an `Origin` or `Referer` value, if it is an http(s) URL.
fn scheme_and_authority(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    Some((scheme, rest.split(['/', '?', '#']).next().unwrap_or(rest)))
}

/// Is this request from a page of our own site, served with `scheme`? `Origin` first, `Referer`
/// as the fallback. `None` when the request says neither (curl, scripts). Over https a page
/// at `http://` the same host is another origin: an attacker on the network could serve it.
fn same_origin(headers: &HeaderMap, scheme: &str) -> Option<bool> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))?;
    let from = from.to_str().ok().and_then(scheme_and_authority);
    Some(
        matches!((from, host), (Some((s, a)), Some(h)) if s == scheme && a.eq_ignore_ascii_case(h)),
    )
}

/// CSRF defence for state changes: a POST to `/api` that names another origin is refused, and
/// so is a cookie-carrying one that names no origin at all. Requests authenticated with an
/// `Authorization` header cannot be forged by another site and pass.
pub async fn same_origin_posts(req: Request, next: Next) -> Response {
    if req.method() != Method::POST
        || !req.uri().path().starts_with("/api/")
        || req.headers().contains_key(header::AUTHORIZATION)
    {
        return next.run(req).await;
    }
    let Some(cookie) = req.extensions().get::<Arc<Auth>>().map(|a| a.cookie) else {
        return ApiError::from(AuthRejection::Unavailable).into_response();
    };
    let scheme = if cookie.secure() { "https" } else { "http" };
    let allowed = match same_origin(req.headers(), scheme) {
        Some(same) => same,
        None => {
            cookie.read(req.headers()).is_none() && cookie.read_refresh(req.headers()).is_none()
        }
    };
    if !allowed {
        tracing::warn!(path = req.uri().path(), "cross-origin POST refused");
        return ApiError::forbidden_origin().into_response();
    }
    next.run(req).await
}

/// `Cache-Control: no-store` on every answer but the static assets: API answers carry tokens
/// and private data, and pages are rendered for whoever is signed in. Neither the browser's
/// cache nor a shared one may keep them (a "back" after signing out must not show them).
pub async fn no_store(req: Request, next: Next) -> Response {
    let assets = req.uri().path().starts_with("/pkg/");
    let mut res = next.run(req).await;
    if !assets {
        res.headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert(NO_STORE);
    }
    res
}

pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
pub const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// HSTS, sent only when the site is served over https (`Secure` cookies): browsers then refuse
/// plain http to this host for a year, so the cookie never travels unencrypted.
pub const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");

/// Headers every response carries.
pub fn security_headers() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (header::X_CONTENT_TYPE_OPTIONS, NOSNIFF),
        // Same-origin requests keep the full Referer: forms without JavaScript need it to
        // come back to the page they were sent from.
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origin_checks_compare_the_scheme() {
        let host = (header::HOST, "example.com");
        let h = |origin: &str| headers(&[host.clone(), (header::ORIGIN, origin)]);
        assert_eq!(same_origin(&h("https://example.com"), "https"), Some(true));
        assert_eq!(same_origin(&h("http://example.com"), "https"), Some(false));
        assert_eq!(same_origin(&h("https://example.com"), "http"), Some(false));
        assert_eq!(same_origin(&h("ftp://example.com"), "http"), Some(false));
        let referer = headers(&[host.clone(), (header::REFERER, "http://example.com/login")]);
        assert_eq!(same_origin(&referer, "https"), Some(false));
    }

    #[test]
    fn origin_checks() {
        let same_origin = |h: &HeaderMap| same_origin(h, "http");
        let host = (header::HOST, "127.0.0.1:3000");
        assert_eq!(
            same_origin(&headers(&[
                host.clone(),
                (header::ORIGIN, "http://127.0.0.1:3000")
            ])),
            Some(true)
        );
        assert_eq!(
            same_origin(&headers(&[
                host.clone(),
                (header::ORIGIN, "http://evil.example")
            ])),
            Some(false)
        );
        assert_eq!(
            same_origin(&headers(&[host.clone(), (header::ORIGIN, "null")])),
            Some(false)
        );
        assert_eq!(
            same_origin(&headers(&[
                host.clone(),
                (
                    header::REFERER,
                    "http://127.0.0.1:3000/login?next=%2Fprofile"
                )
            ])),
            Some(true)
        );
        assert_eq!(
            same_origin(&headers(&[
                host.clone(),
                (header::REFERER, "http://127.0.0.1:3000.evil.example/")
            ])),
            Some(false)
        );
        assert_eq!(same_origin(&headers(&[host])), None);
    }

    #[test]
    fn next_is_encoded() {
        assert_eq!(encode_component("/profile?a=b&c"), "%2Fprofile%3Fa%3Db%26c");
    }
}
