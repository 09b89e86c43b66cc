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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::layers::testing::text;
    use app::api::{CurrentUser, EndOtherSessions, Login};
    use axum::{
        middleware::from_fn,
        routing::{get, post},
        Router,
    };
    use server_fn::ServerFn;
    use tower::ServiceExt;

    /// What reached the server function: its method, `Content-Type` and body (the method in a
    /// header too: the answer to a HEAD has no body).
    async fn echo(req: Request) -> ([(&'static str, String); 1], String) {
        let method = req.method().clone();
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = to_bytes(req.into_body(), usize::MAX).await.unwrap();
        (
            [("x-method", method.to_string())],
            format!("{method} {content_type} {}", String::from_utf8_lossy(&body)),
        )
    }

    /// The door alone, in front of three routes of the API's table (and one beside it).
    fn door() -> Router {
        Router::new()
            .route(Login::PATH, post(echo))
            .route(EndOtherSessions::PATH, post(echo))
            .route(CurrentUser::PATH, get(echo))
            .route("/login", post(echo))
            .layer(from_fn(api_requests))
    }

    fn post_to(path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request {
        let mut req = Request::post(path);
        if let Some(content_type) = content_type {
            req = req.header(header::CONTENT_TYPE, content_type);
        }
        req.body(body.into()).unwrap()
    }

    async fn error_of(res: Response) -> (StatusCode, String) {
        let status = res.status();
        let body: serde_json::Value = serde_json::from_str(&text(res).await).unwrap();
        (
            status,
            body["error"].as_str().unwrap_or_default().to_owned(),
        )
    }

    #[tokio::test]
    async fn json_reaches_the_server_function_as_its_form() {
        let res = door()
            .oneshot(post_to(
                Login::PATH,
                Some("application/json; charset=utf-8"),
                r#"{"username": "ann b", "password": "p&w=1"}"#,
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            text(res).await,
            format!(
                "POST {} username=ann+b&password=p%26w%3D1",
                app::api::contract::FORM
            )
        );
    }

    #[tokio::test]
    async fn a_form_goes_on_byte_for_byte() {
        let form = "username=caf%C3%A9&password=secret123&next=%2Fsessions";
        let res = door()
            .oneshot(post_to(Login::PATH, Some(app::api::contract::FORM), form))
            .await
            .unwrap();
        assert_eq!(
            text(res).await,
            format!("POST {} {form}", app::api::contract::FORM)
        );
        // No fields, no `Content-Type`: an empty form.
        let res = door()
            .oneshot(post_to(EndOtherSessions::PATH, None, ""))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn another_encoding_is_415_before_the_body_is_read() {
        for content_type in [
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin1",
        ] {
            let res = door()
                .oneshot(post_to(
                    Login::PATH,
                    Some(content_type),
                    "username=a&password=b",
                ))
                .await
                .unwrap();
            assert_eq!(
                error_of(res).await,
                (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type".into()
                ),
                "{content_type}"
            );
        }
        // A body with no `Content-Type` is no form.
        let res = door()
            .oneshot(post_to(Login::PATH, None, "username=a&password=b"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // Outside `/api` the door lets everything through.
        let res = door()
            .oneshot(post_to("/login", Some("text/plain"), "hello"))
            .await
            .unwrap();
        assert_eq!(text(res).await, "POST text/plain hello");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413() {
        let big = format!("username=a&password={}", "x".repeat(crate::BODY_LIMIT));
        let res = door()
            .oneshot(post_to(Login::PATH, Some(app::api::contract::FORM), big))
            .await
            .unwrap();
        assert_eq!(
            error_of(res).await,
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
        );
    }

    #[tokio::test]
    async fn a_body_that_does_not_fit_is_400() {
        for (content_type, body) in [
            (
                "application/json",
                r#"{"username": "a", "password": "b", "admin": true}"#,
            ),
            ("application/json", r#"["a", "b"]"#),
            ("application/json", r#"{"username": "a""#),
            ("application/json", r#"{"username": 1, "password": "b"}"#),
            (app::api::contract::FORM, "username=a"),
            (app::api::contract::FORM, "username=a&password=caf%E9"),
        ] {
            let res = door()
                .oneshot(post_to(Login::PATH, Some(content_type), body))
                .await
                .unwrap();
            assert_eq!(
                error_of(res).await,
                (StatusCode::BAD_REQUEST, "bad_request".into()),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn only_the_tables_routes_are_reached() {
        let res = door()
            .oneshot(Request::get("/api/nowhere").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            error_of(res).await,
            (StatusCode::NOT_FOUND, "not_found".into())
        );
        let res = door()
            .oneshot(Request::get(Login::PATH).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::ALLOW], "POST");
        let res = door()
            .oneshot(post_to(CurrentUser::PATH, None, ""))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::ALLOW], "GET,HEAD");
        // HEAD is answered as GET is: the server function is looked up by its own method.
        let res = door()
            .oneshot(
                Request::head(CurrentUser::PATH)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["x-method"], "GET");
    }
}
