//! Device proofs: "this browser (or API client) signed in to this account before".
//!
//! OWASP's *Slow Down Online Guessing Attacks with Device Cookies*: a client that has signed in
//! to an account carries a signed proof of it, and its sign-ins to that account are throttled on
//! that device's own allowance (see [`super::throttle`]), so guesses from everywhere else, which
//! share the account-wide ceiling, cannot lock the owner out.
//!
//! A proof is `dv1.` + base64url(device id ‖ issued at ‖ HMAC-SHA256(key, label ‖ account ‖
//! device id ‖ issued at)). The device id is 16 random bytes, new at every sign-in (a proof
//! copied earlier keeps its own allowance): the throttle keys the device's allowance on it. The account is the user's
//! id and creation time, which the proof itself does not carry: it is checked against the
//! account being signed in to, so a proof for another account (or for an earlier account that
//! had the same name or id) does not verify. The key is derived from `JWT_SECRET` with a label
//! of its own, never the token-signing key itself, and nothing of it is stored: the database
//! alone mints no proof.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// How long a proof is good for after the sign-in that issued it; every sign-in issues a new one.
pub const DEVICE_TTL: Duration = Duration::from_secs(365 * 86_400);

const PREFIX: &str = "dv1.";
const MAC_LEN: usize = 32;
const BODY_LEN: usize = 16 + 8 + MAC_LEN;
/// Longer text is refused before it is decoded (a real proof is 79 characters).
const MAX_LEN: usize = 100;
/// The label of the MAC'd message.
const LABEL: &[u8] = b"authapp device proof v1";
/// The label of the key derived from `JWT_SECRET`.
const KEY_LABEL: &[u8] = b"authapp device-proof key v1";
/// Clock skew allowed on a proof's issue time (instances' clocks may differ a little).
const SKEW_SECS: i64 = 60;

use super::tokens::access::derive_key;

/// The account a proof is for: a user's id and when the account was created (together they
/// name one account for good, though SQLite may give a deleted user's id to a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub user_id: i64,
    pub created_at: i64,
}

/// A device's id: what the throttle keys its allowance on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId([u8; 16]);

impl DeviceId {
    /// A new random id, for a device that presented no valid proof.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The id [`hex`](Self::hex) wrote.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(id))
    }

    /// The id as 32 hex digits (the throttle's key).
    pub fn hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl std::fmt::Debug for DeviceId {
    // Not a secret on its own (the MAC is), but it keys an allowance: kept out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceId(..)")
    }
}

/// Issues and checks device proofs with a key derived from the server secret.
pub struct DeviceProofs {
    key: [u8; 32],
}

impl std::fmt::Debug for DeviceProofs {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceProofs").finish_non_exhaustive()
    }
}

impl DeviceProofs {
    /// Proofs under a key derived from `secret` (`JWT_SECRET`).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: derive_key(secret, KEY_LABEL),
        }
    }

    fn mac(&self, account: Account, device: DeviceId, issued_at: i64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        // Fixed-length fields: no two messages read alike.
        mac.update(LABEL);
        mac.update(&account.user_id.to_be_bytes());
        mac.update(&account.created_at.to_be_bytes());
        mac.update(&device.0);
        mac.update(&issued_at.to_be_bytes());
        mac
    }

    /// A proof that `device` signed in to `account` at `now`.
    pub fn issue(&self, account: Account, device: DeviceId, now: i64) -> String {
        let mut body = Vec::with_capacity(BODY_LEN);
        body.extend_from_slice(&device.0);
        body.extend_from_slice(&now.to_be_bytes());
        body.extend_from_slice(&self.mac(account, device, now).finalize().into_bytes());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(body))
    }

    /// The device a proof names, if it is one of ours, for `account`, and not older than
    /// [`DEVICE_TTL`]. Anything else (malformed, forged, for another account, expired) is
    /// `None`: an unknown device. The MAC is compared in constant time.
    pub fn verify(&self, proof: &str, account: Account, now: i64) -> Option<DeviceId> {
        let proof = proof.trim();
        if proof.len() > MAX_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(proof.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() != BODY_LEN {
            return None;
        }
        let (device, rest) = bytes.split_at(16);
        let (issued_at, tag) = rest.split_at(8);
        let device = DeviceId(device.try_into().ok()?);
        let issued_at = i64::from_be_bytes(issued_at.try_into().ok()?);
        self.mac(account, device, issued_at)
            .verify_slice(tag)
            .ok()?;
        let ttl = i64::try_from(DEVICE_TTL.as_secs()).unwrap_or(i64::MAX);
        let fresh = issued_at <= now.saturating_add(SKEW_SECS)
            && now.saturating_sub(issued_at) <= ttl
            // A proof issued before the account existed was for an earlier holder of its id.
            && issued_at >= account.created_at;
        fresh.then_some(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn alice() -> Account {
        Account {
            user_id: 1,
            created_at: NOW - 1000,
        }
    }

    #[test]
    fn a_proof_names_its_device_for_its_account_only() {
        let proofs = DeviceProofs::new(b"a-server-secret-of-thirty-two-bytes!");
        let device = DeviceId::random();
        let proof = proofs.issue(alice(), device, NOW);
        assert!(
            proof.starts_with(PREFIX) && proof.len() < MAX_LEN,
            "{proof}"
        );
        assert_eq!(proofs.verify(&proof, alice(), NOW + 5), Some(device));

        // Another account, or another account that got the same id later: worth nothing.
        let bob = Account {
            user_id: 2,
            ..alice()
        };
        assert_eq!(proofs.verify(&proof, bob, NOW), None);
        let reused_id = Account {
            created_at: NOW - 999,
            ..alice()
        };
        assert_eq!(proofs.verify(&proof, reused_id, NOW), None);
        let later_account = Account {
            created_at: NOW + 10,
            ..alice()
        };
        let early = proofs.issue(later_account, device, NOW);
        assert_eq!(proofs.verify(&early, later_account, NOW + 20), None);

        // Another server secret makes another key; so does another label.
        let other = DeviceProofs::new(b"another-secret-of-thirty-two-bytes!!");
        assert_eq!(other.verify(&proof, alice(), NOW), None);
        let secret = b"a-server-secret-of-thirty-two-bytes!";
        assert_ne!(
            derive_key(secret, KEY_LABEL),
            derive_key(secret, b"authapp other key v1")
        );
    }

    #[test]
    fn tampered_expired_and_malformed_proofs_are_refused() {
        let proofs = DeviceProofs::new(b"a-server-secret-of-thirty-two-bytes!");
        let proof = proofs.issue(alice(), DeviceId::random(), NOW);
        let ttl = DEVICE_TTL.as_secs() as i64;
        assert!(proofs.verify(&proof, alice(), NOW + ttl).is_some());
        assert_eq!(proofs.verify(&proof, alice(), NOW + ttl + 1), None);
        // Issued in the future (beyond the skew): not ours to believe.
        assert_eq!(proofs.verify(&proof, alice(), NOW - SKEW_SECS - 1), None);

        // Every byte of the body matters: flip each in turn.
        let body = URL_SAFE_NO_PAD.decode(&proof[PREFIX.len()..]).unwrap();
        for i in 0..body.len() {
            let mut bad = body.clone();
            bad[i] ^= 1;
            let bad = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(proofs.verify(&bad, alice(), NOW), None, "byte {i}");
        }
        for bad in [
            "",
            "dv1.",
            "dv1.!!!",
            &proof[PREFIX.len()..],
            &proof[..proof.len() - 1],
            &format!("{proof}AA"),
            &format!("dv1.{}", "A".repeat(4000)),
            "rt1.AAAA",
        ] {
            assert_eq!(proofs.verify(bad, alice(), NOW), None, "{bad}");
        }
    }

    #[test]
    fn nothing_secret_is_printed() {
        let proofs = DeviceProofs::new(b"a-server-secret-of-thirty-two-bytes!");
        let printed = format!("{proofs:?} {:?}", DeviceId::random());
        assert!(!printed.contains("secret"), "{printed}");
        assert_eq!(DeviceId([0xab; 16]).hex(), "ab".repeat(16));
    }
}
