//! The CSRF defence: a state change must come from a page of this site, or carry its own
//! credentials.

use app::{
    auth::{access::AuthRejection, Auth},
    error::ApiError,
};
use axum::{
    extract::Request,
    http::{header, HeaderMap, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::sync::Arc;

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
}
