//! The answers only a layer can give their status and JSON body, and the page that says a
//! failure on our side.

use app::error::ApiError;
use axum::{
    body::{to_bytes, Body},
    extract::Request,
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

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

/// A page that says what went wrong on our side, with the status and headers of `err`
/// (`Retry-After` on a 503).
pub(super) fn error_page(err: &ApiError) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Try again in a \
         moment</title></head><body><p role=\"alert\">{}</p></body></html>",
        app::api::escape(&err.description)
    );
    let mut res = (err.status(), axum::response::Html(html)).into_response();
    res.headers_mut().extend(err.headers());
    res
}
