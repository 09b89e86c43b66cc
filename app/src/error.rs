//! The one error type every server function returns.
//!
//! It travels as JSON `{"error": "<code>", "description": "<text a person can act on>"}` in both
//! directions (server → browser, server → API client), and its code alone decides the HTTP status,
//! so the status mapping lives in one place ([`ErrorCode::status`]).

use serde::{Deserialize, Serialize};
use server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};

/// Machine-readable reason of a failure. Serialised in snake_case (`token_revoked`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No token in the `Authorization` header nor in the session cookie.
    MissingToken,
    /// Malformed, tampered, wrongly signed or otherwise unacceptable token.
    InvalidToken,
    /// A well-signed token whose `exp` has passed.
    TokenExpired,
    /// A well-signed, unexpired token whose `jti` is on the blocklist (signed out).
    TokenRevoked,
    /// Unknown user or wrong password: deliberately indistinguishable.
    InvalidCredentials,
    /// Registration with a username that already exists.
    UsernameTaken,
    /// Well-formed request whose values break a rule (length, character set, ...).
    InvalidInput,
    /// The request could not be read at all (missing field, wrong encoding).
    BadRequest,
    /// The request body is larger than the auth routes accept.
    PayloadTooLarge,
    /// Too many failed sign-ins, or sign-ups from one address; see `retry_after`.
    TooManyRequests,
    /// A cookie-authenticated state change from another origin.
    Forbidden,
    /// Something failed on our side; the cause is in the server log, not in the answer.
    Internal,
    /// Client side only: the server could not be reached or answered something unreadable.
    Network,
}

impl ErrorCode {
    /// The HTTP status that goes with this code.
    pub fn status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::MissingToken | Self::InvalidToken | Self::TokenExpired | Self::TokenRevoked => {
                S::UNAUTHORIZED
            }
            Self::InvalidCredentials => S::UNAUTHORIZED,
            Self::UsernameTaken => S::CONFLICT,
            Self::InvalidInput => S::UNPROCESSABLE_ENTITY,
            Self::BadRequest => S::BAD_REQUEST,
            Self::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests => S::TOO_MANY_REQUESTS,
            Self::Forbidden => S::FORBIDDEN,
            Self::Internal => S::INTERNAL_SERVER_ERROR,
            Self::Network => S::SERVICE_UNAVAILABLE,
        }
    }

    /// True for the four token rejections: the caller has no valid session.
    pub fn is_token_rejection(self) -> bool {
        matches!(
            self,
            Self::MissingToken | Self::InvalidToken | Self::TokenExpired | Self::TokenRevoked
        )
    }
}

/// The error body. `description` is written for a person; `error` for a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{description}")]
pub struct ApiError {
    pub error: ErrorCode,
    pub description: String,
    /// Seconds to wait before trying again (only with `too_many_requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(error: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
            retry_after: None,
        }
    }

    pub fn invalid_input(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, description)
    }

    pub fn invalid_credentials() -> Self {
        Self::new(
            ErrorCode::InvalidCredentials,
            "The username or password is incorrect.",
        )
    }

    /// A generic 500. The cause must already be logged by the caller; it is never sent out.
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "Something went wrong on our side. Please try again.",
        )
    }

    /// A failed sign-in while the account or the address is locked out.
    pub fn too_many_requests(retry_after: u64) -> Self {
        Self::retry_later(
            retry_after,
            format!("Too many failed sign-in attempts. Try again in {retry_after} seconds."),
        )
    }

    /// A sign-up beyond the address's allowance.
    pub fn too_many_signups(retry_after: u64) -> Self {
        Self::retry_later(
            retry_after,
            format!(
                "Too many accounts were created from your network. Try again in {retry_after} seconds."
            ),
        )
    }

    fn retry_later(retry_after: u64, description: String) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(ErrorCode::TooManyRequests, description)
        }
    }

    pub fn status(&self) -> http::StatusCode {
        self.error.status()
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // The request's arguments could not be decoded: the caller sent something malformed.
            ServerFnErrorErr::Args(msg) => Self::new(
                ErrorCode::BadRequest,
                format!("The request could not be read: {msg}"),
            ),
            ServerFnErrorErr::MissingArg(field) => Self::new(
                ErrorCode::BadRequest,
                format!("The request is missing the field `{field}`."),
            ),
            // Client side: the server could not be reached, or its answer could not be read.
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Deserialization(_) => Self::new(
                ErrorCode::Network,
                "Could not reach the server. Check your connection and try again.",
            ),
            // Everything else is our fault; details stay out of the answer.
            _ => Self::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_error_and_description() {
        let json = serde_json::to_value(ApiError::new(ErrorCode::TokenRevoked, "revoked")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "token_revoked", "description": "revoked"})
        );
    }

    #[test]
    fn token_rejections_are_401_and_others_are_not_500() {
        for code in [
            ErrorCode::MissingToken,
            ErrorCode::InvalidToken,
            ErrorCode::TokenExpired,
            ErrorCode::TokenRevoked,
        ] {
            assert_eq!(code.status(), http::StatusCode::UNAUTHORIZED);
            assert!(code.is_token_rejection());
        }
        assert_eq!(
            ErrorCode::UsernameTaken.status(),
            http::StatusCode::CONFLICT
        );
        assert!(!ErrorCode::InvalidCredentials.is_token_rejection());
    }

    #[test]
    fn malformed_arguments_become_bad_request() {
        let err = ApiError::from_server_fn_error(ServerFnErrorErr::MissingArg("password".into()));
        assert_eq!(err.error, ErrorCode::BadRequest);
        assert!(err.description.contains("password"));
    }
}
