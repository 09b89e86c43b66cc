//! Signing and checking access tokens: HS256 only, with `sub`, `sid`, `jti`, `iat`, `exp` and
//! `iss`.
//!
//! The accepted algorithm is fixed here, never read from the token header, so `alg: none`,
//! HS384/512 or an RS256 token signed with our secret as a "public key" are all refused.

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use uuid::Uuid;

use crate::cache::Bounded;

/// Shortest secret we accept: 32 bytes, the size of the HMAC-SHA256 output.
pub const MIN_SECRET_LEN: usize = 32;
/// Tokens longer than this are refused before any parsing (a real one is ~250 bytes).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Allowed clock skew when checking `exp`/`iat`, in seconds.
pub const LEEWAY_SECS: u64 = 2;

/// The claims we issue. All six are required when decoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a decimal string (JWT `sub` is a string).
    pub sub: String,
    /// The session the token belongs to (UUID): ending the session refuses the token.
    pub sid: String,
    /// The session's refresh-token generation it was issued with: its first use tells the
    /// session that generation reached its holder.
    pub gen: i64,
    /// Unique token id (UUID v4): the key of the revocation list.
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

/// A verified token, with its claims parsed into our own types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user_id: i64,
    pub sid: Uuid,
    pub gen: i64,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
}

/// A verified token as the cache keeps it, shared by every request that presents it, with
/// when its use was last recorded: the hot path asks the sessions to record a use only when
/// this token's own record is a minute old (see `Sessions::record_use`), one look-up fewer.
#[derive(Debug)]
pub struct Verified {
    pub token: VerifiedToken,
    /// Unix seconds; `i64::MIN` until the first use is recorded.
    used_at: AtomicI64,
}

impl Verified {
    fn new(token: VerifiedToken) -> Self {
        Self {
            token,
            used_at: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether a use of this token was recorded less than `secs` before `now`.
    pub fn use_recorded_within(&self, now: i64, secs: i64) -> bool {
        now.saturating_sub(self.used_at.load(Ordering::Relaxed)) < secs
    }

    /// A use of this token at `now` was recorded.
    pub fn set_use_recorded(&self, now: i64) {
        self.used_at.fetch_max(now, Ordering::Relaxed);
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWT_SECRET must be at least {MIN_SECRET_LEN} bytes (got {0})")]
    TooShort(usize),
}

/// Issues and verifies tokens with one secret. Cheap to share behind an `Arc`.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl: Duration,
    /// Tokens whose signature and claims already passed, by their exact text. A hit skips the
    /// HMAC and the JSON parsing but not the expiry check; the caller still checks the
    /// revocation list. Only tokens we signed can get in. It pays modestly (bench/RESULTS.md's
    /// notes), and the "≥ 80% of /health" budget needs it.
    verified: Bounded<Box<str>, Arc<Verified>>,
}

impl std::fmt::Debug for TokenKeys {
    // Never print the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A key of its own for one use of the server secret: HMAC-SHA256(secret, label). Each use
/// beside the access tokens' signatures (refresh-token MACs, …) takes a label of its own, so a
/// key derived for one is worth nothing for another. (Access tokens are signed with the secret
/// itself; no JWT signature can equal a derived key, since what a JWT signs always holds a `.`
/// and no label does.)
pub fn derive_key(secret: &[u8], label: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(label);
    mac.finalize().into_bytes().into()
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TokenKeys {
    pub fn new(secret: &[u8], issuer: &str, ttl: Duration) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort(secret.len()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["sub", "jti", "iat", "exp", "iss"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            ttl,
            verified: Bounded::new(crate::cache::DEFAULT_ENTRIES),
        })
    }

    /// Remembers at most `entries` verified tokens (0: none).
    pub fn with_cache(mut self, entries: usize) -> Self {
        self.verified = Bounded::new(entries);
        self
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs a token for `user_id` in session `sid`, valid from now for the configured lifetime.
    pub fn issue(
        &self,
        user_id: i64,
        sid: Uuid,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        self.issue_at(user_id, sid, now_unix())
    }

    /// Like [`issue`](Self::issue) with an explicit issue time (tests make expired tokens with it).
    pub fn issue_at(
        &self,
        user_id: i64,
        sid: Uuid,
        iat: i64,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        self.issue_until(user_id, sid, 1, iat, iat + self.ttl.as_secs() as i64)
    }

    /// Signs a token of generation `gen` of session `sid`, issued at `iat`, that expires at
    /// `exp` (a session's access tokens never outlive the session).
    pub fn issue_until(
        &self,
        user_id: i64,
        sid: Uuid,
        gen: i64,
        iat: i64,
        exp: i64,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: user_id.to_string(),
            sid: sid.to_string(),
            gen,
            jti: Uuid::new_v4().to_string(),
            iat,
            exp,
            iss: self.issuer.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Checks size, signature, algorithm, expiry, issuer and claim shapes.
    /// The revocation list is checked by the caller.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        self.verify_shared(token).map(|v| v.token)
    }

    /// [`verify`](Self::verify), answered with the cache's own entry (a fresh one when the
    /// cache is off).
    pub fn verify_shared(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        self.verify_at(token, now_unix())
    }

    fn verify_at(&self, token: &str, now: i64) -> Result<Arc<Verified>, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        if let Some(verified) = self.verified.get(token) {
            // The same rule jsonwebtoken applies: expired once `exp + leeway` has passed.
            if now > verified.token.exp + LEEWAY_SECS as i64 {
                return Err(TokenError::Expired);
            }
            return Ok(verified);
        }
        let verified = Arc::new(Verified::new(self.verify_uncached(token, now)?));
        self.verified.insert(token.into(), verified.clone());
        Ok(verified)
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let claims = data.claims;
        let user_id = claims.sub.parse::<i64>().map_err(|_| TokenError::Invalid)?;
        let jti = Uuid::parse_str(&claims.jti).map_err(|_| TokenError::Invalid)?;
        let sid = Uuid::parse_str(&claims.sid).map_err(|_| TokenError::Invalid)?;
        // A token issued in the future is forged or from a badly skewed clock.
        if claims.iat > now + LEEWAY_SECS as i64 || claims.exp <= claims.iat {
            return Err(TokenError::Invalid);
        }
        Ok(VerifiedToken {
            user_id,
            sid,
            gen: claims.gen,
            jti,
            iat: claims.iat,
            exp: claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

    fn keys() -> TokenKeys {
        TokenKeys::new(SECRET, "authapp", Duration::from_secs(3600)).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn claims_json(iat: i64, exp: i64) -> String {
        serde_json::json!({
            "sub": "1", "sid": Uuid::new_v4().to_string(), "gen": 1, "jti": Uuid::new_v4().to_string(), "iat": iat, "exp": exp, "iss": "authapp"
        })
        .to_string()
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let (token, claims) = k.issue(42, Uuid::nil()).unwrap();
        let v = k.verify(&token).unwrap();
        assert_eq!(v.user_id, 42);
        assert_eq!(v.jti.to_string(), claims.jti);
        assert_eq!(v.exp, claims.iat + 3600);
        assert_eq!(Uuid::parse_str(&claims.jti).unwrap().get_version_num(), 4);
    }

    #[test]
    fn each_token_has_its_own_jti() {
        let k = keys();
        let (_, a) = k.issue(1, Uuid::nil()).unwrap();
        let (_, b) = k.issue(1, Uuid::nil()).unwrap();
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let k = keys();
        let (token, claims) = k.issue(9, Uuid::nil()).unwrap();
        assert!(k.verify(&token).is_ok());
        assert!(k.verify(&token).is_ok()); // from the cache
        assert_eq!(
            k.verify_at(&token, claims.exp + LEEWAY_SECS as i64 + 1)
                .map(|v| v.token),
            Err(TokenError::Expired)
        );
        // A changed token is not a cache hit.
        let forged = format!("{token}x");
        assert_eq!(k.verify(&forged), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_token_is_expired() {
        let k = keys();
        let (token, _) = k.issue_at(1, Uuid::nil(), now_unix() - 7200).unwrap();
        assert_eq!(k.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_payload_is_invalid() {
        let k = keys();
        let (token, _) = k.issue(1, Uuid::nil()).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = b64(claims_json(now_unix(), now_unix() + 3600).as_bytes());
        assert_eq!(k.verify(&parts.join(".")), Err(TokenError::Invalid));
    }

    #[test]
    fn wrong_key_is_invalid() {
        let other = TokenKeys::new(&[7u8; 32], "authapp", Duration::from_secs(60)).unwrap();
        let (token, _) = other.issue(1, Uuid::nil()).unwrap();
        assert_eq!(keys().verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn wrong_issuer_is_invalid() {
        let other = TokenKeys::new(SECRET, "someone-else", Duration::from_secs(60)).unwrap();
        let (token, _) = other.issue(1, Uuid::nil()).unwrap();
        assert_eq!(keys().verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn alg_none_is_invalid() {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let body = b64(claims_json(now_unix(), now_unix() + 3600).as_bytes());
        assert_eq!(
            keys().verify(&format!("{header}.{body}.")),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            keys().verify(&format!("{header}.{body}")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn other_hmac_algorithms_are_invalid() {
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let claims: Claims =
                serde_json::from_str(&claims_json(now_unix(), now_unix() + 3600)).unwrap();
            let token = jsonwebtoken::encode(
                &Header::new(alg),
                &claims,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap();
            assert_eq!(keys().verify(&token), Err(TokenError::Invalid), "{alg:?}");
        }
    }

    #[test]
    fn asymmetric_algorithms_are_invalid() {
        // An RS256 or ES256 header with any signature: the algorithm is ours to choose.
        let body = b64(claims_json(now_unix(), now_unix() + 3600).as_bytes());
        for alg in ["RS256", "ES256", "PS256"] {
            let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            let token = format!("{header}.{body}.{}", b64(&[7u8; 64]));
            assert_eq!(keys().verify(&token), Err(TokenError::Invalid), "{alg}");
        }
    }

    #[test]
    fn missing_claim_is_invalid() {
        let k = keys();
        let body = serde_json::json!({"sub": "1", "iat": now_unix(), "exp": now_unix() + 60, "iss": "authapp"});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &body,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(k.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn garbage_and_oversized_are_invalid() {
        let k = keys();
        for t in ["", "abc", "a.b.c", "....", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(k.verify(t), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(TokenKeys::new(b"short", "authapp", Duration::from_secs(60)).is_err());
    }
}
