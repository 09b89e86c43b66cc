//! Request and response layers in front of the app.

use app::{
    auth::{
        extractor::{AuthRejection, AuthUser},
        Auth,
    },
    error::ApiError,
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

/// Protected pages are never rendered without a valid session: the visitor is sent to sign
/// in, and back here afterwards. A stale cookie is cleared on the way.
pub async fn protect_pages(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if req.method() != Method::GET || !PROTECTED_PATHS.contains(&path) {
        return next.run(req).await;
    }
    let Some(auth) = req.extensions().get::<Arc<Auth>>().cloned() else {
        return AuthRejection::Unavailable.into_response();
    };
    match auth.authenticate(req.headers()).await {
        Ok(user) => {
            let mut req = req;
            req.extensions_mut().insert::<AuthUser>(user);
            next.run(req).await
        }
        Err(rejection) => {
            let target = match req.uri().path_and_query() {
                Some(pq) => pq.as_str().to_string(),
                None => path.to_string(),
            };
            let mut res =
                Redirect::to(&format!("/login?next={}", encode_component(&target))).into_response();
            if rejection != AuthRejection::MissingToken {
                res.headers_mut()
                    .append(header::SET_COOKIE, auth.cookie.clear());
            }
            res
        }
    }
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
        return AuthRejection::Unavailable.into_response();
    };
    let scheme = if cookie.secure() { "https" } else { "http" };
    let allowed = match same_origin(req.headers(), scheme) {
        Some(same) => same,
        None => cookie.read(req.headers()).is_none(),
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
            .or_insert(HeaderValue::from_static("no-store"));
    }
    res
}

/// HSTS, sent only when the site is served over https (`Secure` cookies): browsers then refuse
/// plain http to this host for a year, so the cookie never travels unencrypted.
pub const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");

/// Headers every response carries.
pub fn security_headers() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
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
