//! The auth cookie: `HttpOnly; SameSite=Strict; Path=/`.
//!
//! Served over https (`secure`), it is also `Secure` and named with the `__Host-` prefix: a
//! browser accepts such a cookie only from a secure origin, for the whole host and no other
//! domain, so neither a sibling subdomain nor a plain-http page can plant or overwrite it.

use axum::http::{header, HeaderMap, HeaderValue};

/// The cookie's name over plain http (development, tests).
pub const COOKIE_NAME: &str = "auth_token";
/// The cookie's name when it is `Secure`.
pub const SECURE_COOKIE_NAME: &str = "__Host-auth_token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthCookie {
    secure: bool,
}

impl AuthCookie {
    pub fn new(secure: bool) -> Self {
        Self { secure }
    }

    /// Whether the site is served over https (the cookie is `Secure`).
    pub fn secure(self) -> bool {
        self.secure
    }

    pub fn name(self) -> &'static str {
        if self.secure {
            SECURE_COOKIE_NAME
        } else {
            COOKIE_NAME
        }
    }

    fn attributes(self) -> &'static str {
        if self.secure {
            "HttpOnly; SameSite=Strict; Path=/; Secure"
        } else {
            "HttpOnly; SameSite=Strict; Path=/"
        }
    }

    /// `Set-Cookie` value carrying a token that lives `max_age_secs`.
    pub fn set(self, token: &str, max_age_secs: u64) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "{}={token}; {}; Max-Age={max_age_secs}",
            self.name(),
            self.attributes()
        ))
        .ok()
    }

    /// `Set-Cookie` value that makes the browser forget the cookie.
    pub fn clear(self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{}=; {}; Max-Age=0",
            self.name(),
            self.attributes()
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("auth_token=; Path=/; Max-Age=0"))
    }

    /// The value of our cookie, if the request carries a non-empty one. Only the name this
    /// site sets counts: over https a plain `auth_token` (which any http page could have set)
    /// is ignored.
    pub fn read(self, headers: &HeaderMap) -> Option<&str> {
        let name = self.name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.trim())
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_http() {
        let c = AuthCookie::new(false);
        assert_eq!(
            c.set("abc", 60).unwrap().to_str().unwrap(),
            "auth_token=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        assert_eq!(
            c.clear().to_str().unwrap(),
            "auth_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        );
    }

    #[test]
    fn over_https_the_cookie_is_secure_and_host_only() {
        let c = AuthCookie::new(true);
        let set = c.set("abc", 60).unwrap();
        let set = set.to_str().unwrap();
        assert!(set.starts_with("__Host-auth_token=abc;"), "{set}");
        assert!(set.contains("; Secure") && set.contains("Path=/") && !set.contains("Domain"));
        assert!(c
            .clear()
            .to_str()
            .unwrap()
            .starts_with("__Host-auth_token=;"));

        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("auth_token=planted"),
        );
        assert_eq!(c.read(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("auth_token=planted; __Host-auth_token=real"),
        );
        assert_eq!(c.read(&h), Some("real"));
        assert_eq!(AuthCookie::new(false).read(&h), Some("planted"));
    }
}
