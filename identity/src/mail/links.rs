//! Links sent by mail: a random token of 256 bits in the link, only its SHA-256 in the database
//! (`email_links`), one live link per account and purpose (a new one replaces the old), each
//! spent once, and only by the POST of the page the link opens: a mail scanner that follows a
//! link (a GET) changes nothing.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use sha2::{Digest, Sha256};

/// The token of a link: `ml1.` and 32 random bytes in base64url.
const PREFIX: &str = "ml1.";

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Confirms the address it was sent to, for its account.
    Verify,
    /// Sets a new password.
    Reset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Reset => "reset",
        }
    }

    /// The site's page the link opens.
    pub fn page(self) -> &'static str {
        match self {
            Self::Verify => "/verify",
            Self::Reset => "/reset",
        }
    }
}

/// A new link's token (to put in the mail, never stored) and its hash (to store).
pub fn new_token() -> (String, [u8; 32]) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&token);
    (token, hash)
}

/// The hash a presented token is looked up by. Any text hashes; only a stored one matches.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Whether `token` has a token's shape (so is worth a database read at all).
pub fn well_formed(token: &str) -> bool {
    let token = token.trim();
    token.len() == PREFIX.len() + 43
        && token.starts_with(PREFIX)
        && token[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The URL of a link to `page` carrying `token`.
pub fn url(public_url: &str, purpose: Purpose, token: &str) -> String {
    format!("{public_url}{}?token={token}", purpose.page())
}

/// A stored link as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub user_id: i64,
    /// Where it was sent.
    pub address: String,
    pub expires_at: i64,
}

/// What a presented token is, read without spending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Good to spend.
    Live(Link),
    /// Spent already.
    Used,
    /// Past its time, or a password change in between made it void (a reset link).
    Expired,
    /// No such link: never sent, forged, or replaced by a newer one.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_well_formed_and_hashed() {
        let (a, ha) = new_token();
        let (b, hb) = new_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert!(well_formed(&a) && well_formed(&format!(" {b}\n")));
        assert_eq!(hash(&a), ha);
        assert!(!well_formed("ml1.short"));
        assert!(!well_formed(&a.replace("ml1.", "ml2.")));
        assert!(!well_formed(&format!("{}é", &a[..a.len() - 2])));
        assert_eq!(
            url("https://x.example", Purpose::Reset, "ml1.t"),
            "https://x.example/reset?token=ml1.t"
        );
    }
}
