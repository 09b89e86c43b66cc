//! Every `ApiError` answers for itself: its status, the JSON body, and the headers its code
//! calls for (an RFC 6750 challenge on a token rejection, `Retry-After` on a wait).

use super::{ApiError, ErrorCode};
use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};

impl ApiError {
    /// The headers that go with this error, beside its status and body.
    pub fn headers(&self) -> Vec<(header::HeaderName, HeaderValue)> {
        let mut headers = Vec::new();
        if self.error.is_token_rejection() {
            let challenge = if self.error == ErrorCode::MissingToken {
                r#"Bearer realm="authapp""#
            } else {
                r#"Bearer realm="authapp", error="invalid_token""#
            };
            headers.push((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            ));
        }
        if let Some(secs) = self.retry_after {
            headers.push((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        headers
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let headers = self.headers();
        let mut res = (self.status(), Json(self)).into_response();
        res.headers_mut().extend(headers);
        res
    }
}
