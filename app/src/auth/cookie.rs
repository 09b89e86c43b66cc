//! The session cookie: `HttpOnly; SameSite=Strict; Path=/`, plus `Secure` when served over https.

use axum::http::{header, HeaderMap, HeaderValue};

pub const COOKIE_NAME: &str = "auth_token";

/// `Set-Cookie` value carrying a token that lives `max_age_secs`.
pub fn session_cookie(token: &str, max_age_secs: u64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

/// `Set-Cookie` value that makes the browser forget the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    if secure {
        HeaderValue::from_static(
            "auth_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure",
        )
    } else {
        HeaderValue::from_static("auth_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    }
}

/// The value of our session cookie, if the request carries a non-empty one.
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_attributes() {
        let c = session_cookie("abc", 60, false).unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            "auth_token=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        let c = session_cookie("abc", 60, true).unwrap();
        assert!(c.to_str().unwrap().ends_with("; Secure"));
        assert!(clear_cookie(false).to_str().unwrap().contains("Max-Age=0"));
    }
}
