//! The server's factor key: seals the TOTP secrets at rest and keys the recovery codes' MACs, so
//! that a copy of the database alone yields neither.

use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a sealed value's nonce (XChaCha20: 24 random bytes, safe to draw at random).
const NONCE: usize = 24;

/// Two keys derived from one secret (`FACTOR_KEY`, else `JWT_SECRET`): one seals, one MACs.
/// Never printed.
#[derive(Clone)]
pub struct FactorKey {
    seal: [u8; 32],
    mac: [u8; 32],
}

impl std::fmt::Debug for FactorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FactorKey(..)")
    }
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    // HMAC accepts a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(label);
    mac.finalize().into_bytes().into()
}

impl FactorKey {
    /// The keys of `secret` (at least 32 random bytes, checked by the configuration).
    pub fn derive(secret: &[u8]) -> Self {
        Self {
            seal: derive(secret, b"authapp factor seal v1"),
            mac: derive(secret, b"authapp factor mac v1"),
        }
    }

    /// `plain` sealed for user `user_id`: a random nonce, then the ciphertext and its tag. The
    /// user's id is bound in: a sealed value copied to another account's row does not open.
    pub fn seal(&self, user_id: i64, plain: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.seal).into());
        let nonce: [u8; NONCE] = rand::random();
        let aad = user_id.to_be_bytes();
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            // Encryption fails only for a message past 256 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// What [`seal`](Self::seal) sealed for `user_id`, or `None` when it was sealed under
    /// another key, for another user, or altered.
    pub fn open(&self, user_id: i64, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE);
        let cipher = XChaCha20Poly1305::new((&self.seal).into());
        let aad = user_id.to_be_bytes();
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .ok()
    }

    /// HMAC-SHA256 of `data` under the MAC key, with `label` saying what it is of.
    pub fn mac(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.mac).unwrap_or_else(|_| unreachable!());
        mac.update(label);
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_for_its_user() {
        let key = FactorKey::derive(b"a secret of at least thirty-two bytes!");
        let sealed = key.seal(7, b"the totp secret");
        assert!(!sealed.windows(15).any(|w| w == b"the totp secret"));
        assert_eq!(
            key.open(7, &sealed).as_deref(),
            Some(&b"the totp secret"[..])
        );
        assert_eq!(key.open(8, &sealed), None);
        let other = FactorKey::derive(b"another secret of thirty-two bytes!!!");
        assert_eq!(other.open(7, &sealed), None);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(7, &altered), None);
        assert_eq!(key.open(7, &sealed[..10]), None);
        // A fresh nonce every time.
        assert_ne!(key.seal(7, b"x"), key.seal(7, b"x"));
        assert_ne!(key.mac(b"a", b"x"), other.mac(b"a", b"x"));
        assert_ne!(key.mac(b"a", b"x"), key.mac(b"b", b"x"));
    }
}
