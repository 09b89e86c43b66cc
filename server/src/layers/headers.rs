//! The headers every answer carries.

use axum::{
    extract::Request,
    http::{header, HeaderValue},
    middleware::Next,
    response::Response,
};

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
