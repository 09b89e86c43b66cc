//! The door of the API: only the routes of its table, and a POST body in either encoding.

use app::{api::contract::Encoding, error::ApiError};
use axum::{
    body::{to_bytes, Body},
    extract::Request,
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// How long a request body may take to arrive once its headers have.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The door of the API, in front of every route under `/api`:
///
/// - only the endpoints of the API's table ([`app::api::contract::ENDPOINTS`], the OpenAPI document)
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
    let endpoint = match app::api::contract::endpoint(method, path) {
        Some(e) => e,
        // Answered here, before a session could be renewed for a request that goes nowhere.
        None => match app::api::contract::allowed_methods(path) {
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
                HeaderValue::from_static(app::api::contract::FORM),
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
