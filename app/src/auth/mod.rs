//! Server-only authentication core: tokens, passwords, the blocklist, the extractor.
//! Nothing here is compiled into the browser's WASM.

pub mod blocklist;
pub mod cache;
pub mod cookie;
pub mod extractor;
pub mod jwt;
pub mod password;
pub mod proxies;
pub mod sessions;
pub mod throttle;
pub mod users;

use std::sync::Arc;

use crate::db::Pool;

use blocklist::Blocklist;
use cookie::AuthCookie;
use jwt::TokenKeys;
use password::Passwords;
use throttle::Throttle;
use users::UserCache;

/// Everything a request needs to authenticate or sign someone in; shared behind an `Arc`.
#[derive(Debug)]
pub struct Auth {
    pub keys: TokenKeys,
    pub blocklist: Blocklist,
    pub passwords: Passwords,
    pub throttle: Throttle,
    pub users: UserCache,
    pub sessions: sessions::Sessions,
    /// The auth cookie (`Secure` and `__Host-` when the site is served over https).
    pub cookie: AuthCookie,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub proxies: proxies::TrustedProxies,
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
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("signing a token failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl Auth {
    /// Starts a session for a user who just proved who they are with the password whose hash
    /// is `password_hash`, and hands out its tokens. `None` when that is no longer the
    /// account's password (it changed, or the account went, while the check ran).
    pub async fn start_session(
        &self,
        user_id: i64,
        password_hash: &str,
        user_agent: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<Option<Issued>, IssueError> {
        let now = jwt::now_unix();
        let started = self
            .sessions
            .create(user_id, password_hash, user_agent, address, now)
            .await?;
        Ok(started
            .map(|current| self.issue(&current, now))
            .transpose()?)
    }

    /// Rotates a refresh token (see [`sessions`]) and hands out the session's new tokens.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<Issued, sessions::RefreshError> {
        let now = jwt::now_unix();
        let current = self.sessions.rotate(refresh_token, address, now).await?;
        self.issue(&current, now)
            .map_err(|e| sessions::RefreshError::Sign(e.to_string()))
    }

    /// The tokens of a session as it is now.
    pub fn issue(
        &self,
        current: &sessions::Current,
        now: i64,
    ) -> Result<Issued, jsonwebtoken::errors::Error> {
        let session = &current.session;
        let (access_token, claims) = self.keys.issue_until(
            session.user_id,
            session.id.0,
            session.generation,
            now,
            current.token_exp,
        )?;
        Ok(Issued {
            user_id: session.user_id,
            session_id: session.id.0,
            jti: uuid::Uuid::parse_str(&claims.jti).unwrap_or_default(),
            generation: session.generation,
            access_token,
            access_exp: claims.exp,
            refresh_token: session.refresh_token(),
            session_expires_at: session.expires_at,
        })
    }
}

/// The application state handed to the router and, as context, to every server function.
///
/// Cloned for every request and every server-function call, so it is one `Arc`: a profile
/// of page rendering under load showed `LeptosOptions` clones among the top costs.
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppStateInner>);

#[derive(Debug)]
pub struct AppStateInner {
    pub leptos_options: leptos::config::LeptosOptions,
    pub pool: Pool,
    pub auth: Arc<Auth>,
}

impl AppState {
    pub fn new(leptos_options: leptos::config::LeptosOptions, pool: Pool, auth: Arc<Auth>) -> Self {
        Self(Arc::new(AppStateInner {
            leptos_options,
            pool,
            auth,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// Leptos's handlers ask the state for the options (e.g. to serve a static file).
impl axum::extract::FromRef<AppState> for leptos::config::LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::time::Duration;

    pub(crate) const SECRET: &[u8] = b"unit-test-secret-unit-test-secret!!";

    /// A complete `Auth` on a fresh SQLite file (kept alive by the returned folder).
    pub(crate) async fn auth() -> (tempfile::TempDir, Pool, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = crate::db::connect(&url).await.unwrap();
        let auth = Auth {
            keys: TokenKeys::new(SECRET, "authapp", Duration::from_secs(3600)).unwrap(),
            blocklist: Blocklist::load(pool.clone()).await.unwrap(),
            passwords: Passwords::new(1).unwrap(),
            throttle: Throttle::default(),
            users: UserCache::new(pool.clone()),
            sessions: sessions::Sessions::load(pool.clone(), Default::default())
                .await
                .unwrap(),
            cookie: AuthCookie::new(false),
            proxies: Default::default(),
        };
        (dir, pool, auth)
    }

    /// A user row with the given id and creation time.
    pub(crate) async fn user(pool: &Pool, id: i64, created_at: i64) {
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
