//! The refresh-token codec.
//!
//! A refresh token is `rt2.` + base64url(id ‖ generation ‖ MAC), the MAC an HMAC-SHA256 under a
//! key derived from the server's secret (`JWT_SECRET`, never stored in the database) over the
//! session's own 256-bit key, its id and the generation. Both keys are needed to make a token: a
//! copy of the database (a backup, a dump, a replica) holds the session keys and generations but
//! mints nothing without the secret, and the secret alone names no session. What a genuine
//! token is worth is [`crate::sessions`]'s to decide.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// `rt1.` tokens (MAC'd under the session key alone, which the database holds) are refused:
/// their sessions sign in again once.
const PREFIX: &str = "rt2.";
const MAC_LEN: usize = 32;
const BODY_LEN: usize = 16 + 8 + MAC_LEN;

/// The server's part of every refresh token's MAC: a key derived from the server secret with a
/// label of its own (see [`super::access::derive_key`]), so it is never the JWT signing key
/// itself.
#[derive(Clone)]
pub struct RefreshSecret([u8; 32]);

impl RefreshSecret {
    pub fn derive(server_secret: &[u8]) -> Self {
        Self(super::access::derive_key(
            server_secret,
            b"authapp refresh-token key v2",
        ))
    }
}

impl std::fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshSecret(..)")
    }
}

fn mac(secret: &RefreshSecret, session_key: &[u8], id: Uuid, generation: i64) -> Hmac<Sha256> {
    // Any key length is accepted by HMAC.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret.0)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"authapp refresh token v2");
    // Session keys are 32 bytes; the length is written anyway, so no two inputs run together.
    mac.update(&(session_key.len() as u64).to_be_bytes());
    mac.update(session_key);
    mac.update(id.as_bytes());
    mac.update(&generation.to_be_bytes());
    mac
}

/// The refresh token of generation `generation` of session `id`, whose key is `session_key`.
pub fn encode(secret: &RefreshSecret, session_key: &[u8], id: Uuid, generation: i64) -> String {
    let mut body = Vec::with_capacity(BODY_LEN);
    body.extend_from_slice(id.as_bytes());
    body.extend_from_slice(&generation.to_be_bytes());
    body.extend_from_slice(
        &mac(secret, session_key, id, generation)
            .finalize()
            .into_bytes(),
    );
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(body))
}

/// The parts of a well-formed refresh token; its MAC is checked against the session's key.
/// Together they are the token: not printable (no `Debug`), and private to the core.
pub(crate) struct Presented {
    pub id: Uuid,
    pub generation: i64,
    mac: [u8; MAC_LEN],
}

impl Presented {
    pub(crate) fn parse(token: &str) -> Option<Self> {
        let body = token.trim().strip_prefix(PREFIX)?;
        if body.len() > 100 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).ok()?;
        if bytes.len() != BODY_LEN {
            return None;
        }
        let (id, rest) = bytes.split_at(16);
        let (generation, tag) = rest.split_at(8);
        Some(Self {
            id: Uuid::from_slice(id).ok()?,
            generation: i64::from_be_bytes(generation.try_into().ok()?),
            mac: tag.try_into().ok()?,
        })
    }

    /// Constant-time check that the server's secret and the session's key made this token.
    pub(crate) fn is_genuine(&self, secret: &RefreshSecret, session_key: &[u8]) -> bool {
        mac(secret, session_key, self.id, self.generation)
            .verify_slice(&self.mac)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token is genuine under the server secret and the session key that made it, for its
    /// own session and generation: the id and the generation are under the MAC too.
    #[test]
    fn a_token_is_genuine_for_what_made_it_only() {
        let secret = RefreshSecret::derive(&[1; 32]);
        let (key, id) = ([7u8; 32], Uuid::from_u128(42));
        let token = encode(&secret, &key, id, 3);
        assert!(token.starts_with("rt2."));
        let presented = Presented::parse(&token).unwrap();
        assert_eq!((presented.id, presented.generation), (id, 3));
        assert!(presented.is_genuine(&secret, &key));
        assert!(!presented.is_genuine(&RefreshSecret::derive(&[2; 32]), &key));
        assert!(!presented.is_genuine(&secret, &[8; 32]));
        assert!(!presented.is_genuine(&secret, &key[..31]));
        assert!(Presented::parse(&format!(" {token}\n"))
            .unwrap()
            .is_genuine(&secret, &key));

        // Its MAC under another generation or another session's id.
        let body = URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).unwrap();
        for (at, value) in [(16 + 7, 4u8), (0, 1)] {
            let mut moved = body.clone();
            moved[at] ^= value;
            let moved = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(moved));
            let presented = Presented::parse(&moved).unwrap();
            assert!(!presented.is_genuine(&secret, &key), "{at}");
        }
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let token = encode(&RefreshSecret::derive(&[1; 32]), &[7; 32], Uuid::nil(), 1);
        let short = &token[..token.len() - 1];
        let long = format!("{token}AA");
        let old = token.replacen("rt2.", "rt1.", 1);
        let padded = format!("{token}=");
        for bad in [
            "",
            "rt2.",
            "rt2.????",
            "not a token",
            short,
            &long,
            &old,
            &padded,
            &"rt2.".repeat(1000),
            &format!("rt2.{}", "A".repeat(101)),
        ] {
            assert!(Presented::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_secret_is_never_printed() {
        let secret = RefreshSecret::derive(&[1; 32]);
        assert_eq!(format!("{secret:?}"), "RefreshSecret(..)");
    }
}
