//! Who is calling: the check of a request's access token.
//!
//! Token source: `Authorization: Bearer <token>` when present, otherwise the auth cookie.
//! Then signature, algorithm, expiry and issuer ([`TokenKeys::verify`]), then the in-memory
//! revocations, in one look-up (the token's `jti` revoked, or its session ended: see
//! [`crate::revocation`]), then the user: it must exist and be older than the token, so a token
//! from before a database reset or restore cannot sign in as whoever holds its user id now. The
//! shared [`Auth`] is read from the request extensions, so the same check serves plain axum
//! handlers, middleware and server functions alike (the extractors are the HTTP side's).

use http::{header, HeaderMap};
use std::sync::Arc;
use uuid::Uuid;

use super::{cookie::AuthCookie, store::Verdict, tokens::access::TokenError, users::User, Auth};

/// How the token reached us. Cookie-borne state changes need a same-origin check; Bearer ones do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Bearer,
    Cookie,
}

/// An authenticated caller: the token was well signed, unexpired, ours, and not revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: i64,
    /// The session the token belongs to.
    pub session_id: Uuid,
    pub jti: Uuid,
    /// The token's expiry (unix seconds).
    pub exp: i64,
    pub source: TokenSource,
}

/// Why a request was not authenticated. Always answered as 401 with a JSON reason, but for
/// two failures of ours: 503 when the token's user is not in memory and the database cannot be
/// reached, 500 if the server was wired without [`Auth`] (a programming error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthRejection {
    #[error("Authentication required: send a Bearer token or sign in.")]
    MissingToken,
    #[error("The token is malformed or its signature is invalid.")]
    InvalidToken,
    #[error("The token has expired. Please sign in again.")]
    TokenExpired,
    #[error("The token has been revoked. Please sign in again.")]
    TokenRevoked,
    #[error("Authentication is unavailable.")]
    Unavailable,
    /// Nothing wrong with the token, but its user had to be read and the database cannot be
    /// reached just now: try again.
    #[error("The database cannot be reached just now.")]
    DatabaseUnavailable,
}

/// Finds the raw token and where it came from. An `Authorization` header that is present but
/// not `Bearer <token>` is an invalid token, not a fallback to the cookie.
pub fn token_from_headers(
    headers: &HeaderMap,
    cookie: AuthCookie,
) -> Result<(&str, TokenSource), AuthRejection> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthRejection::InvalidToken)?;
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or(AuthRejection::InvalidToken)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthRejection::InvalidToken);
        }
        return Ok((token, TokenSource::Bearer));
    }
    cookie
        .read(headers)
        .map(|t| (t, TokenSource::Cookie))
        .ok_or(AuthRejection::MissingToken)
}

impl Auth {
    /// The whole check, on headers alone: used by the extractor and directly by tests.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<AuthUser, AuthRejection> {
        self.authenticate_user(headers).await.map(|(user, _)| user)
    }

    /// [`authenticate`](Self::authenticate), with the user as the check found them.
    pub async fn authenticate_user(
        &self,
        headers: &HeaderMap,
    ) -> Result<(AuthUser, Arc<User>), AuthRejection> {
        let (token, source) = token_from_headers(headers, self.cookie)?;
        let shared = self.keys.verify_shared(token).map_err(|e| match e {
            TokenError::Expired => AuthRejection::TokenExpired,
            TokenError::Invalid => AuthRejection::InvalidToken,
        })?;
        let verified = shared.token;
        if self.revocations.is_revoked(&verified.jti, &verified.sid) {
            return Err(AuthRejection::TokenRevoked);
        }
        // User ids are reused (SQLite hands out max + 1): a token names its user by id, so it
        // must be no older than the account that holds the id today. From memory after the
        // first look-up.
        let user = match self.users.shared(verified.user_id).await {
            Ok(Some(user)) if verified.iat >= user.created_at => user,
            Ok(_) => return Err(AuthRejection::InvalidToken),
            Err(e) => {
                return Err(
                    match self.health.judge("looking up a token's user failed", &e) {
                        Verdict::Internal => AuthRejection::Unavailable,
                        Verdict::Unavailable => AuthRejection::DatabaseUnavailable,
                    },
                );
            }
        };
        // The session is asked to record the use once its last record through this token is a
        // minute old (and at every request while its queue is full): most requests stop at
        // the token's own record, in the entry already in hand. A write that then fails is
        // tried again a minute on.
        let now = super::tokens::access::now_unix();
        if !shared.use_recorded_within(now, super::sessions::RECORD_USE_EVERY_SECS)
            && self.sessions.record_use(verified.sid, verified.gen, now)
        {
            shared.set_use_recorded(now);
        }
        let auth_user = AuthUser {
            user_id: verified.user_id,
            session_id: verified.sid,
            jti: verified.jti,
            exp: verified.exp,
            source,
        };
        Ok((auth_user, user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{testing, tokens::access::now_unix};
    use http::{HeaderName, HeaderValue};
    use proptest::prop_assert;

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[tokio::test]
    async fn each_rejection() {
        let (_dir, pool, auth) = testing::auth().await;
        testing::user(&pool, 7, 0).await;
        let (token, _) = auth.keys.issue(7, Uuid::new_v4()).unwrap();
        let bearer = format!("Bearer {token}");

        assert_eq!(
            auth.authenticate(&HeaderMap::new()).await,
            Err(AuthRejection::MissingToken)
        );
        assert_eq!(
            auth.authenticate(&headers(&[(header::AUTHORIZATION, "Basic abc")]))
                .await,
            Err(AuthRejection::InvalidToken)
        );
        assert_eq!(
            auth.authenticate(&headers(&[(header::AUTHORIZATION, "Bearer not.a.jwt")]))
                .await,
            Err(AuthRejection::InvalidToken)
        );
        let (old, _) = auth
            .keys
            .issue_at(7, Uuid::new_v4(), now_unix() - 7200)
            .unwrap();
        assert_eq!(
            auth.authenticate(&headers(&[(
                header::AUTHORIZATION,
                &format!("bearer {old}")
            )]))
            .await,
            Err(AuthRejection::TokenExpired)
        );

        let user = auth
            .authenticate(&headers(&[(header::AUTHORIZATION, &bearer)]))
            .await
            .unwrap();
        assert_eq!((user.user_id, user.source), (7, TokenSource::Bearer));

        auth.revocations
            .revoke(user.jti, 7, user.exp)
            .await
            .unwrap();
        assert_eq!(
            auth.authenticate(&headers(&[(header::AUTHORIZATION, &bearer)]))
                .await,
            Err(AuthRejection::TokenRevoked)
        );
    }

    /// A user id held by another account than the token's: the database was reset or restored.
    #[tokio::test]
    async fn a_token_older_than_its_user_or_without_one_is_invalid() {
        let (_dir, pool, auth) = testing::auth().await;
        let now = now_unix();
        let (before, _) = auth.keys.issue_at(5, Uuid::new_v4(), now - 60).unwrap();
        let bearer = |t: &str| headers(&[(header::AUTHORIZATION, &format!("Bearer {t}"))]);
        // No such user (yet).
        assert_eq!(
            auth.authenticate(&bearer(&before)).await,
            Err(AuthRejection::InvalidToken)
        );
        // Id 5 now belongs to an account created after the token was issued.
        testing::user(&pool, 5, now - 10).await;
        assert_eq!(
            auth.authenticate(&bearer(&before)).await,
            Err(AuthRejection::InvalidToken)
        );
        let (fresh, _) = auth.keys.issue(5, Uuid::new_v4()).unwrap();
        assert!(auth.authenticate(&bearer(&fresh)).await.is_ok());
    }

    #[tokio::test]
    async fn cookie_is_used_when_there_is_no_authorization_header() {
        let (_dir, pool, auth) = testing::auth().await;
        testing::user(&pool, 3, 0).await;
        let (token, _) = auth.keys.issue(3, Uuid::new_v4()).unwrap();
        let cookie = format!("theme=dark; auth_token={token}; other=1");
        let user = auth
            .authenticate(&headers(&[(header::COOKIE, &cookie)]))
            .await
            .unwrap();
        assert_eq!((user.user_id, user.source), (3, TokenSource::Cookie));
        // A present but malformed Authorization header wins over a good cookie.
        assert_eq!(
            auth.authenticate(&headers(&[
                (header::COOKIE, &cookie),
                (header::AUTHORIZATION, "Token abc")
            ]))
            .await,
            Err(AuthRejection::InvalidToken)
        );
        // An empty cookie is no token.
        assert_eq!(
            auth.authenticate(&headers(&[(header::COOKIE, "auth_token=")]))
                .await,
            Err(AuthRejection::MissingToken)
        );
    }

    /// While the database is known to be unreachable, a token whose user is in memory is
    /// accepted as before, and one whose user would have to be read is answered 503 at once
    /// (not 401: nothing is wrong with it; not 500).
    #[tokio::test]
    async fn a_user_in_memory_needs_no_database() {
        let (dir, pool, auth) = testing::auth().await;
        testing::user(&pool, 1, 0).await;
        testing::user(&pool, 2, 0).await;
        let bearer = |t: &str| headers(&[(header::AUTHORIZATION, &format!("Bearer {t}"))]);
        let (known, _) = auth.keys.issue(1, Uuid::new_v4()).unwrap();
        let (unknown, _) = auth.keys.issue(2, Uuid::new_v4()).unwrap();
        assert!(auth.authenticate(&bearer(&known)).await.is_ok());

        // The database's folder gone: no probe can bring it back meanwhile.
        let away = dir.path().with_extension("away");
        std::fs::rename(dir.path(), &away).unwrap();
        auth.health.observe(&sqlx::Error::PoolTimedOut);
        assert!(auth.health.is_down());
        let started = std::time::Instant::now();
        assert_eq!(
            auth.authenticate(&bearer(&known)).await.map(|u| u.user_id),
            Ok(1)
        );
        assert_eq!(
            auth.authenticate(&bearer(&unknown)).await,
            Err(AuthRejection::DatabaseUnavailable)
        );
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        // Bad tokens are still told apart from memory.
        assert_eq!(
            auth.authenticate(&bearer("not.a.jwt")).await,
            Err(AuthRejection::InvalidToken)
        );
        std::fs::rename(&away, dir.path()).unwrap();
    }

    /// Arbitrary Authorization and Cookie values, and real tokens with one character changed,
    /// never panic and never authenticate.
    #[test]
    fn arbitrary_headers_never_authenticate() {
        use proptest::test_runner::{Config, TestRunner};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_dir, pool, auth) = rt.block_on(testing::auth());
        rt.block_on(testing::user(&pool, 1, 0));
        let (good, _) = auth.keys.issue(1, Uuid::new_v4()).unwrap();
        assert!(rt
            .block_on(auth.authenticate(&headers(&[(
                header::AUTHORIZATION,
                &format!("Bearer {good}")
            )])))
            .is_ok());
        let mut runner = TestRunner::new(Config {
            cases: 4000,
            ..Config::default()
        });
        let inputs = (
            proptest::option::of(".{0,300}"),
            proptest::option::of(".{0,300}"),
            "[A-Za-z0-9_.=-]{0,400}",
            0..good.len(),
            "[A-Za-z0-9_-]",
        );
        runner
            .run(
                &inputs,
                |(authorization, cookie, token, at, replacement)| {
                    let mut h = HeaderMap::new();
                    if let Some(v) = authorization.and_then(|v| HeaderValue::from_str(&v).ok()) {
                        h.insert(header::AUTHORIZATION, v);
                    }
                    if let Some(v) = cookie.and_then(|v| HeaderValue::from_str(&v).ok()) {
                        h.insert(header::COOKIE, v);
                    }
                    prop_assert!(rt.block_on(auth.authenticate(&h)).is_err());
                    let h = headers(&[(header::AUTHORIZATION, &format!("Bearer {token}"))]);
                    prop_assert!(rt.block_on(auth.authenticate(&h)).is_err());
                    let h = headers(&[(header::COOKIE, &format!("auth_token={token}"))]);
                    prop_assert!(rt.block_on(auth.authenticate(&h)).is_err());

                    // One character of a real token changed (not a '.', not the last of a part,
                    // whose low bits base64 may ignore).
                    let bytes = good.as_bytes();
                    let at_part_end = at + 1 == bytes.len() || bytes[at + 1] == b'.';
                    if bytes[at] != b'.' && !at_part_end && replacement.as_bytes()[0] != bytes[at] {
                        let mut forged = good.clone().into_bytes();
                        forged[at] = replacement.as_bytes()[0];
                        let forged = String::from_utf8(forged).unwrap();
                        let h = headers(&[(header::AUTHORIZATION, &format!("Bearer {forged}"))]);
                        prop_assert!(
                            rt.block_on(auth.authenticate(&h)).is_err(),
                            "forged token accepted"
                        );
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
}
