//! Every page of the site, in one table: its path, whether it needs a session, and the `next`
//! value of the sign-in page's address that brings a visitor back to it. The router's routes
//! (`crate::App`), the server's guard of protected pages (which sends a visitor without a valid
//! session to sign in before anything renders) and the pages' own "sign in" links all read it,
//! so a page is added here and in the router (a lazy one also in `load_page_chunk`, which
//! loads its chunk before hydration), nowhere else.

/// One page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Where it is served (`/profile`).
    pub path: &'static str,
    /// Only rendered for a valid session: without one, the server redirects to
    /// [`sign_in`](Self::sign_in) before rendering anything.
    pub protected: bool,
    /// `path`, percent-encoded as the `next` of the sign-in page's address (`%2Fprofile`).
    pub next: &'static str,
    /// The sign-in page, and back here afterwards (`/login?next=%2Fprofile`).
    pub sign_in: &'static str,
}

impl Page {
    /// The path as the router's one static segment (`profile`), as `path!("/profile")` makes it.
    pub fn segment(&self) -> &'static str {
        self.path.trim_start_matches('/')
    }
}

/// A page of the table: the sign-in address is made from `next` when the crate is compiled.
macro_rules! page {
    ($path:literal, protected: $protected:literal, next: $next:literal) => {
        Page {
            path: $path,
            protected: $protected,
            next: $next,
            sign_in: concat!("/login?next=", $next),
        }
    };
}

pub const HOME: Page = page!("/", protected: false, next: "%2F");
pub const LOGIN: Page = page!("/login", protected: false, next: "%2Flogin");
pub const REGISTER: Page = page!("/register", protected: false, next: "%2Fregister");
pub const PROFILE: Page = page!("/profile", protected: true, next: "%2Fprofile");
pub const SESSIONS: Page = page!("/sessions", protected: true, next: "%2Fsessions");
pub const ACCOUNT: Page = page!("/account", protected: true, next: "%2Faccount");
pub const FORGOT: Page = page!("/forgot", protected: false, next: "%2Fforgot");
pub const RESET: Page = page!("/reset", protected: false, next: "%2Freset");
pub const VERIFY: Page = page!("/verify", protected: false, next: "%2Fverify");
pub const SECURITY: Page = page!("/security", protected: true, next: "%2Fsecurity");
pub const TWO_STEP: Page = page!("/two-step", protected: false, next: "%2Ftwo-step");
pub const ACTIVITY: Page = page!("/activity", protected: true, next: "%2Factivity");

/// Every page, in the router's order.
pub const PAGES: [Page; 12] = [
    HOME, LOGIN, REGISTER, PROFILE, SESSIONS, ACCOUNT, FORGOT, RESET, VERIFY, SECURITY, TWO_STEP,
    ACTIVITY,
];

/// Whether the page at `path` needs a session (the server's guard asks it of every `GET`).
pub fn is_protected(path: &str) -> bool {
    PAGES.iter().any(|page| page.protected && page.path == path)
}

/// Percent-encodes everything but unreserved characters (RFC 3986): a `next` value.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `next` written in the table is its path encoded as the server encodes it, so a
    /// page's own sign-in link and the server's redirect bring the visitor to the same address.
    #[test]
    fn each_next_is_its_path_encoded() {
        for page in PAGES {
            assert_eq!(page.next, encode_component(page.path), "{}", page.path);
            assert_eq!(page.sign_in, format!("/login?next={}", page.next));
        }
    }

    #[test]
    fn next_is_encoded() {
        assert_eq!(encode_component("/profile?a=b&c"), "%2Fprofile%3Fa%3Db%26c");
    }

    #[test]
    fn only_the_pages_of_a_signed_in_person_are_protected() {
        let protected: Vec<&str> = PAGES
            .iter()
            .filter(|p| is_protected(p.path))
            .map(|p| p.path)
            .collect();
        assert_eq!(
            protected,
            [
                "/profile",
                "/sessions",
                "/account",
                "/security",
                "/activity"
            ]
        );
        // Exact paths only: a longer path is another (unknown) page.
        assert!(!is_protected("/profile/x"));
        assert!(!is_protected("/profilex"));
        assert!(!is_protected("/Profile"));
    }

    /// The paths are unique and each is one static segment, which is what the router declares
    /// from them.
    #[test]
    fn paths_are_single_segments() {
        for (i, page) in PAGES.iter().enumerate() {
            assert!(page.path.starts_with('/'), "{}", page.path);
            assert!(!page.segment().contains('/'), "{}", page.path);
            assert!(PAGES[..i].iter().all(|p| p.path != page.path));
        }
    }
}
