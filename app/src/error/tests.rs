use super::*;

#[test]
fn serialises_as_error_and_description() {
    let json = serde_json::to_value(ApiError::token_revoked()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "error": "token_revoked",
            "description": "The token has been revoked. Please sign in again."
        })
    );
}

#[cfg(feature = "ssr")]
#[test]
fn codes_are_written_as_serde_writes_them() {
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        let rejection = ErrorCode::token_rejection(code.as_str());
        assert_eq!(rejection.is_some(), code.is_token_rejection());
        assert!(rejection.is_none_or(|r| r == code));
    }
    assert_eq!(ErrorCode::token_rejection("<script>"), None);
}

#[cfg(feature = "ssr")]
#[test]
fn errors_answer_with_their_status_and_headers() {
    use axum::{http::header, response::IntoResponse};
    let res = ApiError::token_revoked().into_response();
    assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="authapp", error="invalid_token""#
    );
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let missing = ApiError::missing_token().into_response();
    assert_eq!(
        missing.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="authapp""#
    );
    let wait = ApiError::too_many_requests(7).into_response();
    assert_eq!(wait.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(wait.headers()[header::RETRY_AFTER], "7");
    assert!(!wait.headers().contains_key(header::WWW_AUTHENTICATE));
    let busy = ApiError::busy().into_response();
    assert_eq!(busy.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
    let unavailable = ApiError::database_unavailable();
    assert_eq!(
        serde_json::to_value(&unavailable).unwrap(),
        serde_json::json!({
            "error": "temporarily_unavailable",
            "description": unavailable.description,
            "retry_after": 1
        })
    );
    let res = unavailable.into_response();
    assert_eq!(res.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    assert!(!res.headers().contains_key(header::WWW_AUTHENTICATE));
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
fn undecodable_requests_are_the_clients_fault_on_the_server() {
    for e in [
        ServerFnErrorErr::Deserialization("invalid utf-8".into()),
        ServerFnErrorErr::Request("body".into()),
    ] {
        let err = ApiError::from_server_fn_error(e);
        assert_eq!(err.error, ErrorCode::BadRequest);
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }
}

#[test]
fn text_from_a_url_is_never_shown() {
    let forged = |error, description: &str, retry_after| ApiError {
        error,
        description: description.into(),
        retry_after,
        pending_token: None,
    };
    for code in [
        ErrorCode::InvalidCredentials,
        ErrorCode::TokenRevoked,
        ErrorCode::InvalidInput,
        ErrorCode::Internal,
        ErrorCode::Network,
        ErrorCode::TooManyRequests,
    ] {
        let clean = forged(
            code,
            "Call +1 555 0100 to unlock your account",
            Some(u64::MAX),
        )
        .in_our_words(false);
        assert!(!clean.description.contains("555"), "{clean:?}");
        assert!(clean.retry_after.is_none_or(|s| s <= 300), "{clean:?}");
        assert_ne!(clean.error, ErrorCode::Network);
    }
    // Our own validation messages survive the trip, word for word.
    let ours = crate::validate::password("short").unwrap_err();
    assert_eq!(
        forged(ErrorCode::InvalidInput, &ours, None)
            .in_our_words(true)
            .description,
        ours
    );
    let wait = forged(ErrorCode::TooManyRequests, "x", Some(42)).in_our_words(false);
    assert_eq!(wait.retry_after, Some(42));
    assert!(wait.description.contains("42 seconds"));
}

#[test]
fn malformed_arguments_become_bad_request() {
    let err = ApiError::from_server_fn_error(ServerFnErrorErr::MissingArg("password".into()));
    assert_eq!(err.error, ErrorCode::BadRequest);
    assert!(err.description.contains("password"));
}
