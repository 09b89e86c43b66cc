//! The identity core: who is calling (access tokens and the verified-token cache), sessions and
//! their refresh tokens, revocation, credentials, throttling and the database. Server-only and
//! free of Leptos: `cargo test -p identity` runs its tests without compiling the pages.

pub mod access;
pub mod account;
pub mod audit;
pub mod authn;
pub mod cache;
pub mod cookie;
pub mod credentials;
pub mod device;
pub mod email;
pub mod factors;
pub mod mail;
pub mod metrics;
pub mod proxies;
pub mod revocation;
pub mod sessions;
pub mod store;
pub mod throttle;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use cookie::AuthCookie;
use credentials::password::Passwords;
use device::DeviceProofs;
use revocation::Revocations;
use throttle::Throttle;
use tokens::access::TokenKeys;
use users::UserCache;

/// Everything a request needs to authenticate or sign someone in; shared behind an `Arc`.
#[derive(Debug)]
pub struct Auth {
    pub keys: TokenKeys,
    /// Revoked access tokens and ended sessions, refused from memory (shared with
    /// [`sessions`](Self::sessions), which ends sessions).
    pub revocations: Arc<Revocations>,
    pub passwords: Passwords,
    pub throttle: Throttle,
    pub users: UserCache,
    pub sessions: sessions::Sessions,
    /// The auth cookie (`Secure` and `__Host-` when the site is served over https).
    pub cookie: AuthCookie,
    /// Proofs that a device signed in to an account before (see [`device`]).
    pub devices: DeviceProofs,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub proxies: proxies::TrustedProxies,
    /// Whether the database is known to be unreachable: what needs it is then refused at once.
    pub health: Arc<crate::store::Health>,
    /// How the service mails (see [`mail`]).
    pub mail: mail::Mail,
    /// Second factors and fresh authentication (see [`factors`]).
    pub factors: factors::Factors,
}

/// What a sign-in and every refresh hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub user_id: i64,
    pub session_id: uuid::Uuid,
    pub access_token: String,
    /// The access token's `jti`.
    pub jti: uuid::Uuid,
    /// The session's refresh-token generation the tokens belong to.
    pub generation: i64,
    /// When the access token expires (unix seconds).
    pub access_exp: i64,
    pub refresh_token: String,
    /// When the session itself ends at the latest (unix seconds).
    pub session_expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    Write(#[from] sessions::WriteError),
    #[error("signing a token failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl Auth {
    /// Signs out the holder of `user`'s access token: the token's `jti` on the revocation list and its
    /// session ended, in one transaction, then in memory. Whether the session was still live.
    pub async fn sign_out(
        &self,
        user: &access::AuthUser,
        now: i64,
    ) -> Result<bool, sessions::WriteError> {
        let ended = self
            .sessions
            .sign_out(user.jti, user.user_id, user.exp, user.session_id, now)
            .await?;
        self.revocations.remember_token(user.jti, user.exp);
        Ok(ended)
    }

    /// Rotates a refresh token (see [`sessions`]) and hands out the session's new tokens.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<Issued, sessions::RefreshError> {
        // Refused at once while the database is known to be unreachable (a page's renewal
        // then renders with the request's own tokens).
        self.health
            .check()
            .map_err(crate::store::StoreError::from)?;
        let now = tokens::access::now_unix();
        let live = self.sessions.rotate(refresh_token, address, now).await?;
        self.issue(&live, now)
            .map_err(|e| sessions::RefreshError::Sign(e.to_string()))
    }

    /// The tokens of a session as it is now.
    pub fn issue(
        &self,
        live: &sessions::LiveSession,
        now: i64,
    ) -> Result<Issued, jsonwebtoken::errors::Error> {
        let session = &live.session;
        let (access_token, claims) = self.keys.issue_until(
            session.user_id,
            session.id.0,
            session.generation,
            now,
            live.token_exp,
        )?;
        Ok(Issued {
            user_id: session.user_id,
            session_id: session.id.0,
            jti: uuid::Uuid::parse_str(&claims.jti).unwrap_or_default(),
            generation: session.generation,
            access_token,
            access_exp: claims.exp,
            refresh_token: live.refresh_token(),
            session_expires_at: session.expires_at,
        })
    }
}

/// A complete core on a throwaway SQLite file, for the tests of this crate and of the app
/// (feature `testing`).
#[cfg(any(test, feature = "testing"))]
#[allow(clippy::unwrap_used)] // test set-up: a failure is the test's failure
pub mod testing {
    use super::*;
    use crate::store::Pool;
    use std::time::Duration;

    pub const SECRET: &[u8] = b"unit-test-secret-unit-test-secret!!";

    /// Where the tests' changes come from, as their notices tell it.
    pub const ORIGIN: crate::email::Origin<'static> = crate::email::Origin {
        user_agent: "test",
        address: None,
    };

    /// A complete `Auth` on a fresh SQLite file (kept alive by the returned folder).
    pub async fn auth() -> (tempfile::TempDir, Pool, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = crate::store::connect(&url).await.unwrap();
        let health = crate::store::Health::new(pool.clone());
        let store = crate::store::Store::new(pool.clone());
        let revocations = Arc::new(Revocations::load(store.clone()).await.unwrap());
        let auth = Auth {
            keys: TokenKeys::new(SECRET, "authapp", Duration::from_secs(3600)).unwrap(),
            passwords: Passwords::new(1).unwrap(),
            throttle: Throttle::default(),
            users: UserCache::new(health.clone()),
            sessions: sessions::Sessions::new(
                store,
                Default::default(),
                refresh_secret(),
                revocations.clone(),
            ),
            revocations,
            cookie: AuthCookie::new(false),
            devices: DeviceProofs::new(SECRET),
            proxies: Default::default(),
            health,
            mail: Default::default(),
            factors: factors::Factors::new(factors::FactorKey::derive(SECRET)),
        };
        (dir, pool, auth)
    }

    pub fn refresh_secret() -> tokens::refresh::RefreshSecret {
        tokens::refresh::RefreshSecret::derive(SECRET)
    }

    /// The credential stamp of a user row written by [`user`] (the column's default).
    pub const STAMP: crate::credentials::CredentialStamp = crate::credentials::CredentialStamp(0);

    /// Starts a session for `user_id` as a sign-in whose password check read `stamp` would
    /// (outside tests only a [`Proof`](crate::authn::Proof) starts one): for tests that race a
    /// sign-in against a change of the account's credentials.
    pub async fn start_with_stamp(
        sessions: &crate::sessions::Sessions,
        user_id: i64,
        stamp: crate::credentials::CredentialStamp,
        now: i64,
    ) -> Result<Option<crate::sessions::LiveSession>, crate::sessions::WriteError> {
        sessions
            .create(
                user_id,
                stamp,
                "test",
                None,
                now,
                None,
                crate::factors::Method::Password,
                false,
            )
            .await
    }

    /// A sign-in's proof for user `id` as the account stands now, as if its password had just
    /// been checked.
    pub async fn proof(auth: &Auth, id: i64) -> crate::authn::Proof {
        let read = auth.users.stamp();
        let found = auth.users.credentials_of(id).await.unwrap().unwrap();
        crate::authn::Proof::for_tests(found.user(), found.stamp, read)
    }

    /// A user row with the given id and creation time.
    pub async fn user(pool: &Pool, id: i64, created_at: i64) {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, 'x', ?)",
        )
        .bind(id)
        .bind(format!("user{id}"))
        .bind(created_at)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// What the hot path keeps in memory (verified tokens, users, sessions' last writes) never
/// answers for a change: each change is seen by the very next request, whether the entry was
/// in memory or had been evicted.
#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::store::Pool;
    use crate::{
        access::AuthRejection,
        sessions::{EndReason, Sessions},
    };
    use axum::http::{header, HeaderMap, HeaderValue};

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    /// An `Auth` whose caches hold `entries` each.
    async fn auth_with_caches(entries: usize) -> (tempfile::TempDir, Pool, Auth) {
        let (dir, pool, auth) = testing::auth().await;
        let auth = Auth {
            keys: auth.keys.with_cache(entries),
            users: users::UserCache::with_capacity(auth.health.clone(), entries),
            sessions: Sessions::new(
                crate::store::Store::new(pool.clone()),
                Default::default(),
                testing::refresh_secret(),
                auth.revocations.clone(),
            )
            .with_cache(entries),
            ..auth
        };
        (dir, pool, auth)
    }

    async fn signed_in(auth: &Auth, user: i64) -> Issued {
        auth.start_session(&testing::proof(auth, user).await, "test", None)
            .await
            .unwrap()
            .unwrap()
    }

    async fn check(auth: &Auth, token: &str) -> Result<i64, AuthRejection> {
        auth.authenticate(&bearer(token)).await.map(|u| u.user_id)
    }

    #[tokio::test]
    async fn every_change_is_seen_through_the_warm_caches() {
        for entries in [100, 1] {
            let (_dir, pool, auth) = auth_with_caches(entries).await;
            testing::user(&pool, 1, 0).await;
            testing::user(&pool, 2, 0).await;
            let (a, b, c) = (
                signed_in(&auth, 1).await,
                signed_in(&auth, 1).await,
                signed_in(&auth, 1).await,
            );
            let other = signed_in(&auth, 2).await;
            // Warm: each token verified and its user read once, twice over.
            for _ in 0..2 {
                for t in [&a, &b, &c, &other] {
                    assert_eq!(check(&auth, &t.access_token).await, Ok(t.user_id));
                }
            }

            // A session ended.
            auth.sessions
                .end_one(
                    b.session_id,
                    Some(1),
                    EndReason::EndedOnSessionsPage,
                    tokens::access::now_unix(),
                )
                .await
                .unwrap();
            assert_eq!(
                check(&auth, &b.access_token).await,
                Err(AuthRejection::TokenRevoked)
            );
            assert_eq!(check(&auth, &a.access_token).await, Ok(1));

            // The password changed through session a: every other session ends, a goes on.
            let renewed = auth
                .change_password(
                    1,
                    a.session_id,
                    "y",
                    tokens::access::now_unix(),
                    testing::ORIGIN,
                )
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                check(&auth, &c.access_token).await,
                Err(AuthRejection::TokenRevoked)
            );
            let a2 = auth.issue(&renewed, tokens::access::now_unix()).unwrap();
            assert_eq!(check(&auth, &a2.access_token).await, Ok(1));

            // The account deleted, by the function `POST /api/account/delete` calls: gone from
            // memory as well as from the database (SQLite hands its id to the next account,
            // which must not be taken for it), every token of theirs refused, the other
            // user's untouched.
            assert!(auth
                .delete_account(1, tokens::access::now_unix(), testing::ORIGIN, "owner")
                .await
                .unwrap());
            assert_eq!(auth.users.get(1).await.unwrap(), None);
            for t in [&a.access_token, &a2.access_token] {
                assert_eq!(check(&auth, t).await, Err(AuthRejection::TokenRevoked));
            }
            assert_eq!(check(&auth, &other.access_token).await, Ok(2));
            assert!(!auth
                .delete_account(1, tokens::access::now_unix(), testing::ORIGIN, "owner")
                .await
                .unwrap());

            // A user row gone while its session lives, and forgotten as the code that removes
            // it must: the user's tokens are no session. (A row deleted by hand behind the
            // server's back stays in memory until it is evicted or the server restarts.)
            sqlx::query("DELETE FROM users WHERE id = 2")
                .execute(&pool)
                .await
                .unwrap();
            auth.users.forget(2);
            assert_eq!(
                check(&auth, &other.access_token).await,
                Err(AuthRejection::InvalidToken)
            );
        }
    }

    async fn last_used(pool: &Pool, session: uuid::Uuid) -> i64 {
        sqlx::query_scalar("SELECT last_used_at FROM sessions WHERE id = ?")
            .bind(session.as_bytes().as_slice())
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// A token's use is recorded once a minute: the first request queues the write, the next
    /// ones within the minute stop at the token's own record and write nothing.
    #[tokio::test]
    async fn a_tokens_use_is_recorded_once_a_minute() {
        let (_dir, pool, mut auth) = auth_with_caches(100).await;
        testing::user(&pool, 1, 0).await;
        let t = signed_in(&auth, 1).await;
        let set_last_used = |at: i64| {
            sqlx::query("UPDATE sessions SET last_used_at = ? WHERE id = ?")
                .bind(at)
                .bind(t.session_id.as_bytes().as_slice())
                .execute(&pool)
        };
        // Signing in counts as a use: make it an hour old, so the next use is due.
        set_last_used(tokens::access::now_unix() - 3600)
            .await
            .unwrap();
        auth.sessions.forget_recorded_uses();
        assert_eq!(check(&auth, &t.access_token).await, Ok(1));
        auth.sessions.flush_recorded_uses().await.unwrap();
        let first = last_used(&pool, t.session_id).await;
        assert!(first >= tokens::access::now_unix() - 5, "{first}");
        set_last_used(7).await.unwrap();
        // The session's own record forgotten too: only the token's record stops the writes.
        auth.sessions.forget_recorded_uses();
        for _ in 0..10 {
            assert_eq!(check(&auth, &t.access_token).await, Ok(1));
        }
        auth.sessions.flush_recorded_uses().await.unwrap();
        assert_eq!(last_used(&pool, t.session_id).await, 7);
    }

    /// Bounded: with far more users than entries, each cache stays within its size and every
    /// answer is still right.
    #[tokio::test]
    async fn caches_stay_bounded_and_right_with_more_users_than_entries() {
        let (_dir, pool, auth) = auth_with_caches(16).await;
        let mut issued = Vec::new();
        for id in 1..=200 {
            testing::user(&pool, id, 0).await;
            issued.push(signed_in(&auth, id).await);
        }
        for t in issued.iter().filter(|t| t.user_id % 10 == 0) {
            auth.sessions
                .end_one(
                    t.session_id,
                    None,
                    EndReason::Logout,
                    tokens::access::now_unix(),
                )
                .await
                .unwrap();
        }
        for _ in 0..3 {
            for t in &issued {
                let expected = if t.user_id % 10 == 0 {
                    Err(AuthRejection::TokenRevoked)
                } else {
                    Ok(t.user_id)
                };
                assert_eq!(check(&auth, &t.access_token).await, expected);
            }
        }
        assert!(auth.users.len() <= 20, "{}", auth.users.len());
    }

    /// Signing out is one transaction: when ending the session fails, the `jti` is not on the
    /// revocation list either (in the database or in memory), and the retry goes through.
    #[tokio::test]
    async fn signing_out_is_all_or_nothing() {
        let (_dir, pool, auth) = testing::auth().await;
        testing::user(&pool, 1, 0).await;
        let t = signed_in(&auth, 1).await;
        let user = auth.authenticate(&bearer(&t.access_token)).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER no_ending BEFORE UPDATE ON sessions \
             BEGIN SELECT RAISE(ABORT, 'the disk is full'); END",
        )
        .execute(&pool)
        .await
        .unwrap();
        assert!(auth
            .sign_out(&user, tokens::access::now_unix())
            .await
            .is_err());
        let revoked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(revoked, 0);
        assert_eq!(check(&auth, &t.access_token).await, Ok(1));

        sqlx::query("DROP TRIGGER no_ending")
            .execute(&pool)
            .await
            .unwrap();
        assert!(auth
            .sign_out(&user, tokens::access::now_unix())
            .await
            .unwrap());
        assert_eq!(
            check(&auth, &t.access_token).await,
            Err(AuthRejection::TokenRevoked)
        );
        assert!(auth.revocations.is_token_revoked(&user.jti));
        assert!(auth.sessions.is_ended(&t.session_id));
    }
}
