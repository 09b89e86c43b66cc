//! The three cookies: the access token (`auth_token`), the refresh token (`refresh_token`) and
//! the device proof (`device_token`, see [`super::device`]), all `HttpOnly; SameSite=Strict;
//! Path=/`.
//!
//! Served over https (`secure`), they are also `Secure` and named with the `__Host-` prefix: a
//! browser accepts such a cookie only from a secure origin, for the whole host and no other
//! domain, so neither a sibling subdomain nor a plain-http page can plant or overwrite it.

use axum::http::{header, HeaderMap, HeaderValue};

/// The access cookie's name over plain http (development, tests).
pub const COOKIE_NAME: &str = "auth_token";
/// The access cookie's name when it is `Secure`.
pub const SECURE_COOKIE_NAME: &str = "__Host-auth_token";
/// The refresh cookie's names, likewise.
pub const REFRESH_COOKIE_NAME: &str = "refresh_token";
pub const SECURE_REFRESH_COOKIE_NAME: &str = "__Host-refresh_token";
/// The device cookie's names, likewise.
pub const DEVICE_COOKIE_NAME: &str = "device_token";
pub const SECURE_DEVICE_COOKIE_NAME: &str = "__Host-device_token";
/// The cookie of a sign-in waiting for its second factor (see [`crate::factors`]), likewise: it
/// binds the half-way sign-in to the browser that began it.
pub const PENDING_COOKIE_NAME: &str = "pending_sign_in";
pub const SECURE_PENDING_COOKIE_NAME: &str = "__Host-pending_sign_in";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthCookie {
    secure: bool,
}

/// Which of the three cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Access,
    Refresh,
    Device,
    Pending,
}

/// Every value of the cookie `name` that a request carries, in the order sent (trimmed). The
/// headers are read as UTF-8, not only visible ASCII: another cookie of the domain may hold any
/// text, and must not hide ours.
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, value)| value.trim())
}

impl AuthCookie {
    pub fn new(secure: bool) -> Self {
        Self { secure }
    }

    /// Whether the site is served over https (the cookies are `Secure`).
    pub fn secure(self) -> bool {
        self.secure
    }

    /// The access cookie's name.
    pub fn name(self) -> &'static str {
        self.name_of(Kind::Access)
    }

    /// The refresh cookie's name.
    pub fn refresh_name(self) -> &'static str {
        self.name_of(Kind::Refresh)
    }

    /// The device cookie's name.
    pub fn device_name(self) -> &'static str {
        self.name_of(Kind::Device)
    }

    fn name_of(self, kind: Kind) -> &'static str {
        match (kind, self.secure) {
            (Kind::Access, false) => COOKIE_NAME,
            (Kind::Access, true) => SECURE_COOKIE_NAME,
            (Kind::Refresh, false) => REFRESH_COOKIE_NAME,
            (Kind::Refresh, true) => SECURE_REFRESH_COOKIE_NAME,
            (Kind::Device, false) => DEVICE_COOKIE_NAME,
            (Kind::Device, true) => SECURE_DEVICE_COOKIE_NAME,
            (Kind::Pending, false) => PENDING_COOKIE_NAME,
            (Kind::Pending, true) => SECURE_PENDING_COOKIE_NAME,
        }
    }

    fn attributes(self) -> &'static str {
        if self.secure {
            "HttpOnly; SameSite=Strict; Path=/; Secure"
        } else {
            "HttpOnly; SameSite=Strict; Path=/"
        }
    }

    fn set_of(self, kind: Kind, token: &str, max_age_secs: u64) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "{}={token}; {}; Max-Age={max_age_secs}",
            self.name_of(kind),
            self.attributes()
        ))
        .ok()
    }

    fn clear_of(self, kind: Kind) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{}=; {}; Max-Age=0",
            self.name_of(kind),
            self.attributes()
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("auth_token=; Path=/; Max-Age=0"))
    }

    /// Only the name this site sets counts: over https a plain `auth_token` (which any http
    /// page could have set) is ignored.
    fn read_of(self, kind: Kind, headers: &HeaderMap) -> Option<&str> {
        values(headers, self.name_of(kind))
            .next()
            .filter(|v| !v.is_empty())
    }

    /// `Set-Cookie` value carrying an access token that lives `max_age_secs`.
    pub fn set(self, token: &str, max_age_secs: u64) -> Option<HeaderValue> {
        self.set_of(Kind::Access, token, max_age_secs)
    }

    /// `Set-Cookie` value that makes the browser forget the access cookie.
    pub fn clear(self) -> HeaderValue {
        self.clear_of(Kind::Access)
    }

    /// The access cookie's value, if the request carries a non-empty one.
    pub fn read(self, headers: &HeaderMap) -> Option<&str> {
        self.read_of(Kind::Access, headers)
    }

    /// `Set-Cookie` value carrying a refresh token that lives `max_age_secs`.
    pub fn set_refresh(self, token: &str, max_age_secs: u64) -> Option<HeaderValue> {
        self.set_of(Kind::Refresh, token, max_age_secs)
    }

    /// `Set-Cookie` value that makes the browser forget the refresh cookie.
    pub fn clear_refresh(self) -> HeaderValue {
        self.clear_of(Kind::Refresh)
    }

    /// The refresh cookie's value, if the request carries a non-empty one.
    pub fn read_refresh(self, headers: &HeaderMap) -> Option<&str> {
        self.read_of(Kind::Refresh, headers)
    }

    /// `Set-Cookie` value carrying a device proof, kept as long as the proof is good
    /// ([`DEVICE_TTL`](super::device::DEVICE_TTL)). Signing out leaves it: it says the device
    /// signed in before, not that it is signed in.
    pub fn set_device(self, proof: &str) -> Option<HeaderValue> {
        self.set_of(Kind::Device, proof, super::device::DEVICE_TTL.as_secs())
    }

    /// `Set-Cookie` value that makes the browser forget the device cookie.
    pub fn clear_device(self) -> HeaderValue {
        self.clear_of(Kind::Device)
    }

    /// The device cookie's value, if the request carries a non-empty one.
    pub fn read_device(self, headers: &HeaderMap) -> Option<&str> {
        self.read_of(Kind::Device, headers)
    }

    /// `Set-Cookie` value carrying a waiting sign-in's token, for `max_age_secs`.
    pub fn set_pending(self, token: &str, max_age_secs: u64) -> Option<HeaderValue> {
        self.set_of(Kind::Pending, token, max_age_secs)
    }

    pub fn clear_pending(self) -> HeaderValue {
        self.clear_of(Kind::Pending)
    }

    pub fn read_pending(self, headers: &HeaderMap) -> Option<&str> {
        self.read_of(Kind::Pending, headers)
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

    #[test]
    fn the_refresh_cookie_has_a_name_of_its_own() {
        for secure in [false, true] {
            let c = AuthCookie::new(secure);
            let set = c.set_refresh("rt1.x", 99).unwrap();
            let set = set.to_str().unwrap();
            assert!(set.starts_with(c.name_of(Kind::Refresh)), "{set}");
            assert!(
                set.contains("HttpOnly") && set.contains("Max-Age=99"),
                "{set}"
            );
            let mut h = HeaderMap::new();
            let both = format!("{}=access; {set}", c.name());
            h.insert(header::COOKIE, HeaderValue::from_str(&both).unwrap());
            assert_eq!(c.read(&h), Some("access"));
            assert_eq!(c.read_refresh(&h), Some("rt1.x"));
        }
        assert_eq!(
            AuthCookie::new(true).clear_refresh().to_str().unwrap(),
            "__Host-refresh_token=; HttpOnly; SameSite=Strict; Path=/; Secure; Max-Age=0"
        );
    }

    #[test]
    fn the_device_cookie_lives_a_year_under_a_name_of_its_own() {
        for secure in [false, true] {
            let c = AuthCookie::new(secure);
            let set = c.set_device("dv1.x").unwrap();
            let set = set.to_str().unwrap();
            assert!(
                set.starts_with(&format!("{}=dv1.x;", c.device_name())),
                "{set}"
            );
            assert!(
                set.contains("HttpOnly; SameSite=Strict; Path=/")
                    && set.contains("Max-Age=31536000")
                    && set.contains("; Secure") == secure,
                "{set}"
            );
            let mut h = HeaderMap::new();
            let all = format!(
                "{}=a; {}=r; {}=dv1.x",
                c.name(),
                c.refresh_name(),
                c.device_name()
            );
            h.insert(header::COOKIE, HeaderValue::from_str(&all).unwrap());
            assert_eq!(c.read_device(&h), Some("dv1.x"));
            assert_eq!(c.read(&h), Some("a"));
        }
        assert_eq!(AuthCookie::new(true).device_name(), "__Host-device_token");
        // Over https a plain `device_token` (which any http page could plant) is not read.
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("device_token=planted"),
        );
        assert_eq!(AuthCookie::new(true).read_device(&h), None);
        assert!(AuthCookie::new(false)
            .clear_device()
            .to_str()
            .unwrap()
            .ends_with("Max-Age=0"));
    }
}
