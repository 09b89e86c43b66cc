//! Sessions: one per sign-in, listed on the sessions page, ended one by one or all at once.
//!
//! A session has a random id, an absolute end (`SESSION_TTL`) and an idle end
//! (`SESSION_IDLE_TTL` after it was last used). Access tokens are short and carry the session
//! id (`sid`); a session is kept going by its refresh token, which rotates on every use.
//!
//! **Refresh tokens** are `rt1.` + base64url(id ‖ generation ‖ HMAC-SHA256(key, id ‖ generation)),
//! with a 256-bit key of the session's own (the shape of Supabase Auth's v2 refresh tokens). The
//! database keeps the key and the current generation only. A token whose MAC is wrong is
//! garbage and changes nothing; a genuine one is either the current generation (rotated: the
//! generation moves on by a compare-and-swap, so of two racing rotations exactly one wins), the
//! previous one presented again within `REFRESH_REUSE_INTERVAL` (two tabs refreshing at once:
//! it gets the current pair), or an older one — **reuse**: somebody kept a token that was
//! already rotated, so the whole session is ended (RFC 9700 §4.14.2).
//!
//! **Ending a session** is written to the database first and then to an in-memory set that
//! every authenticated request consults, so the next request with any access token of that
//! session is refused, and memory never says "ended" while the database does not. An entry stays
//! until every access token issued for the session has expired (`access_exp`), then the purge
//! drops it; the start-up load restores the same set.

use crate::db::Pool;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::{collections::HashMap, net::IpAddr, sync::RwLock, time::Duration};
use uuid::Uuid;

use super::{cache::Bounded, jwt::LEEWAY_SECS};

/// How often at most `last_used_at` is written for one session.
pub const TOUCH_EVERY_SECS: i64 = 60;
/// User agents are kept up to this many characters.
pub const USER_AGENT_MAX: usize = 200;
const PREFIX: &str = "rt1.";
const MAC_LEN: usize = 32;
const BODY_LEN: usize = 16 + 8 + MAC_LEN;

/// How long sessions and their tokens live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Access tokens (`ACCESS_TTL`, 15 minutes).
    pub access: Duration,
    /// A session from sign-in to its absolute end (`SESSION_TTL`, 30 days).
    pub session: Duration,
    /// A session unused this long ends (`SESSION_IDLE_TTL`, 7 days).
    pub idle: Duration,
    /// The previous refresh token still answers this long after its rotation
    /// (`REFRESH_REUSE_INTERVAL`, 10 seconds).
    pub reuse: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            access: Duration::from_secs(15 * 60),
            session: Duration::from_secs(30 * 86_400),
            idle: Duration::from_secs(7 * 86_400),
            reuse: Duration::from_secs(10),
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    Revoked,
    SignedOutElsewhere,
    Reuse,
    PasswordChanged,
    AccountDeleted,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Revoked => "revoked",
            Self::SignedOutElsewhere => "signed_out_elsewhere",
            Self::Reuse => "reuse",
            Self::PasswordChanged => "password_changed",
            Self::AccountDeleted => "account_deleted",
        }
    }
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    #[sqlx(try_from = "Vec<u8>")]
    pub id: SessionId,
    pub user_id: i64,
    pub refresh_key: Vec<u8>,
    pub generation: i64,
    pub rotated_at: i64,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub access_exp: i64,
    pub user_agent: String,
    pub address: String,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
}

/// A session id as stored (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub Uuid);

impl TryFrom<Vec<u8>> for SessionId {
    type Error = uuid::Error;
    fn try_from(bytes: Vec<u8>) -> Result<Self, Self::Error> {
        Uuid::from_slice(&bytes).map(Self)
    }
}

impl Session {
    /// The refresh token of the current generation.
    pub fn refresh_token(&self) -> String {
        encode(self.id.0, self.generation, &self.refresh_key)
    }

    /// Whether the session can still be used at `now`.
    pub fn is_live(&self, now: i64, lifetimes: &Lifetimes) -> bool {
        self.revoked_at.is_none()
            && now < self.expires_at
            && now < self.last_used_at.saturating_add(secs(lifetimes.idle))
    }
}

/// Why a refresh token was refused. Every one is a 401.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is malformed or not ours")]
    Invalid,
    #[error("the session has ended")]
    Ended,
    #[error("the session has expired")]
    Expired,
    #[error("a refresh token was used twice: the session was ended")]
    Reused,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("signing a token failed: {0}")]
    Sign(String),
}

fn mac(key: &[u8], id: Uuid, generation: i64) -> Hmac<Sha256> {
    // Any key length is accepted by HMAC.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"authapp refresh token v1");
    mac.update(id.as_bytes());
    mac.update(&generation.to_be_bytes());
    mac
}

fn encode(id: Uuid, generation: i64, key: &[u8]) -> String {
    let mut body = Vec::with_capacity(BODY_LEN);
    body.extend_from_slice(id.as_bytes());
    body.extend_from_slice(&generation.to_be_bytes());
    body.extend_from_slice(&mac(key, id, generation).finalize().into_bytes());
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(body))
}

/// The parts of a well-formed refresh token; its MAC is checked against the session's key.
struct Presented {
    id: Uuid,
    generation: i64,
    mac: [u8; MAC_LEN],
}

impl Presented {
    fn parse(token: &str) -> Option<Self> {
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

    /// Constant-time check that the session's key made this token.
    fn is_genuine(&self, key: &[u8]) -> bool {
        mac(key, self.id, self.generation)
            .verify_slice(&self.mac)
            .is_ok()
    }
}

/// The device as a person says it ("Chrome on Linux"), from the user agent.
pub fn describe_device(user_agent: &str) -> String {
    let known = |s: &str| !s.is_empty() && s != "UNKNOWN";
    match woothee::parser::Parser::new().parse(user_agent) {
        Some(ua) if known(ua.name) && known(ua.os) => format!("{} on {}", ua.name, ua.os),
        Some(ua) if known(ua.name) => ua.name.to_string(),
        _ if user_agent.trim().is_empty() => "Unknown device".into(),
        _ => "Unknown browser".into(),
    }
}

/// `Chrome 120` on `Linux`, trimmed to [`USER_AGENT_MAX`] characters of printable text.
pub fn trim_user_agent(user_agent: &str) -> String {
    user_agent
        .chars()
        .filter(|c| !c.is_control())
        .take(USER_AGENT_MAX)
        .collect::<String>()
        .trim()
        .to_owned()
}

const COLUMNS: &str =
    "id, user_id, refresh_key, generation, rotated_at, created_at, last_used_at, \
                       expires_at, access_exp, user_agent, address, revoked_at, revoked_reason";

/// The sessions table and the in-memory set of ended sessions.
#[derive(Debug)]
pub struct Sessions {
    pool: Pool,
    lifetimes: Lifetimes,
    /// Ended sessions whose access tokens may not all have expired: id → the latest `exp`.
    /// A std lock, never held across an await.
    ended: RwLock<HashMap<Uuid, i64>>,
    /// When each session's `last_used_at` was last written, to write it once a minute at most.
    touched: Bounded<Uuid, i64>,
}

impl Sessions {
    /// Loads the ended sessions whose access tokens could still be presented.
    pub async fn load(pool: Pool, lifetimes: Lifetimes) -> Result<Self, sqlx::Error> {
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, access_exp FROM sessions WHERE revoked_at IS NOT NULL AND access_exp >= ?",
        )
        .bind(super::jwt::now_unix() - LEEWAY_SECS as i64)
        .fetch_all(&pool)
        .await?;
        let ended = rows
            .into_iter()
            .filter_map(|(id, exp)| Some((Uuid::from_slice(&id).ok()?, exp)))
            .collect();
        Ok(Self {
            pool,
            lifetimes,
            ended: RwLock::new(ended),
            touched: Bounded::new(100_000),
        })
    }

    pub fn lifetimes(&self) -> &Lifetimes {
        &self.lifetimes
    }

    /// Whether the session has been ended. Memory only; a poisoned lock fails closed.
    pub fn is_ended(&self, id: &Uuid) -> bool {
        self.ended
            .read()
            .map(|ended| ended.contains_key(id))
            .unwrap_or(true)
    }

    fn remember_ended(&self, ended: impl IntoIterator<Item = (Uuid, i64)>) {
        let mut set = self
            .ended
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, exp) in ended {
            set.insert(id, exp);
        }
    }

    /// The expiry of an access token issued at `now` for a session ending at `expires_at`.
    pub fn access_exp(&self, now: i64, expires_at: i64) -> i64 {
        now.saturating_add(secs(self.lifetimes.access))
            .min(expires_at)
    }

    /// Starts a session for `user_id`; its first access token must expire at the returned
    /// session's `access_exp`.
    pub async fn create(
        &self,
        user_id: i64,
        user_agent: &str,
        address: Option<IpAddr>,
        now: i64,
    ) -> Result<Session, sqlx::Error> {
        let id = Uuid::new_v4();
        let key: [u8; 32] = rand::random();
        let expires_at = now.saturating_add(secs(self.lifetimes.session));
        let session = Session {
            id: SessionId(id),
            user_id,
            refresh_key: key.to_vec(),
            generation: 1,
            rotated_at: now,
            created_at: now,
            last_used_at: now,
            expires_at,
            access_exp: self.access_exp(now, expires_at),
            user_agent: trim_user_agent(user_agent),
            address: address.map(|a| a.to_string()).unwrap_or_default(),
            revoked_at: None,
            revoked_reason: None,
        };
        sqlx::query(
            "INSERT INTO sessions (id, user_id, refresh_key, generation, rotated_at, created_at, \
             last_used_at, expires_at, access_exp, user_agent, address) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_bytes().as_slice())
        .bind(user_id)
        .bind(&session.refresh_key)
        .bind(session.generation)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(expires_at)
        .bind(session.access_exp)
        .bind(&session.user_agent)
        .bind(&session.address)
        .execute(&self.pool)
        .await?;
        self.touched.insert(id, now);
        Ok(session)
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<Session>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM sessions WHERE id = ?"))
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
    }

    /// Rotates a refresh token: the session as it is after, whose `access_exp` is the expiry
    /// the new access token must carry and whose [`Session::refresh_token`] is the new refresh
    /// token. See the module documentation for the outcomes.
    pub async fn rotate(
        &self,
        token: &str,
        address: Option<IpAddr>,
        now: i64,
    ) -> Result<Session, RefreshError> {
        let presented = Presented::parse(token).ok_or(RefreshError::Invalid)?;
        let address = address.map(|a| a.to_string());
        // A lost compare-and-swap means another request rotated meanwhile: look again. Each
        // retry sees a newer generation, and the previous generation answers within the reuse
        // interval, so two rounds settle every race of honest clients.
        for _ in 0..3 {
            let mut session = self
                .find(presented.id)
                .await?
                .ok_or(RefreshError::Invalid)?;
            if !presented.is_genuine(&session.refresh_key) {
                return Err(RefreshError::Invalid);
            }
            if session.revoked_at.is_some() {
                return Err(RefreshError::Ended);
            }
            if !session.is_live(now, &self.lifetimes) {
                return Err(RefreshError::Expired);
            }
            let access_exp = self.access_exp(now, session.expires_at);
            let address = address.clone().unwrap_or_else(|| session.address.clone());
            if presented.generation == session.generation {
                let done = sqlx::query(
                    "UPDATE sessions SET generation = generation + 1, rotated_at = ?, \
                     last_used_at = ?, access_exp = MAX(access_exp, ?), address = ? \
                     WHERE id = ? AND generation = ? AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(now)
                .bind(access_exp)
                .bind(&address)
                .bind(presented.id.as_bytes().as_slice())
                .bind(session.generation)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 1 {
                    session.generation += 1;
                    session.rotated_at = now;
                    session.last_used_at = now;
                    session.access_exp = session.access_exp.max(access_exp);
                    session.address = address;
                    self.touched.insert(presented.id, now);
                    return Ok(Session {
                        access_exp,
                        ..session
                    });
                }
                continue;
            }
            let within_grace = now.saturating_sub(session.rotated_at) <= secs(self.lifetimes.reuse);
            if presented.generation + 1 == session.generation && within_grace {
                // The other tab's refresh got there first: the same session, the current token.
                let done = sqlx::query(
                    "UPDATE sessions SET access_exp = MAX(access_exp, ?), last_used_at = ? \
                     WHERE id = ? AND revoked_at IS NULL",
                )
                .bind(access_exp)
                .bind(now)
                .bind(presented.id.as_bytes().as_slice())
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(Session {
                        access_exp,
                        last_used_at: now,
                        ..session
                    });
                }
                continue;
            }
            // A genuine token of this session that was rotated away: it was copied.
            tracing::warn!(
                user_id = session.user_id,
                presented = presented.generation,
                current = session.generation,
                "refresh token reuse: the session is ended"
            );
            self.end(presented.id, EndReason::Reuse, now).await?;
            return Err(RefreshError::Reused);
        }
        Err(RefreshError::Ended)
    }

    /// Moves a live session of `user_id` on to a new refresh-token generation without a token
    /// presented (after a password change): the session with the expiry its new access token
    /// must carry, or `None` if it is no longer live.
    pub async fn renew(
        &self,
        id: Uuid,
        user_id: i64,
        now: i64,
    ) -> Result<Option<Session>, sqlx::Error> {
        let renewed: Option<Session> = sqlx::query_as(&format!(
            "UPDATE sessions SET generation = generation + 1, rotated_at = ?, last_used_at = ?,              access_exp = MAX(access_exp, MIN(?, expires_at))              WHERE id = ? AND user_id = ? AND revoked_at IS NULL AND expires_at > ?              RETURNING {COLUMNS}"
        ))
        .bind(now)
        .bind(now)
        .bind(now.saturating_add(secs(self.lifetimes.access)))
        .bind(id.as_bytes().as_slice())
        .bind(user_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(renewed.map(|session| Session {
            access_exp: self.access_exp(now, session.expires_at),
            ..session
        }))
    }

    /// Ends the live session a genuine refresh token belongs to (signing out with only the
    /// refresh cookie left, its access token having expired): its user, or `None` when the
    /// token is not genuine or its session had already ended.
    pub async fn end_by_refresh_token(
        &self,
        token: &str,
        reason: EndReason,
        now: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let Some(presented) = Presented::parse(token) else {
            return Ok(None);
        };
        let Some(session) = self.find(presented.id).await? else {
            return Ok(None);
        };
        if !presented.is_genuine(&session.refresh_key) {
            return Ok(None);
        }
        let ended = self.end(presented.id, reason, now).await?;
        Ok(ended.then_some(session.user_id))
    }

    /// Ends one session (of `user_id`, when given). False when there is no such live session.
    pub async fn end_one(
        &self,
        id: Uuid,
        user_id: Option<i64>,
        reason: EndReason,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let ended: Option<i64> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
             WHERE id = ? AND revoked_at IS NULL AND (? IS NULL OR user_id = ?) \
             RETURNING access_exp",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(id.as_bytes().as_slice())
        .bind(user_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(exp) = ended {
            self.remember_ended([(id, exp)]);
        }
        Ok(ended.is_some())
    }

    async fn end(&self, id: Uuid, reason: EndReason, now: i64) -> Result<bool, sqlx::Error> {
        self.end_one(id, None, reason, now).await
    }

    /// Ends every live session of `user_id` but `except`. Returns how many ended.
    pub async fn end_all(
        &self,
        user_id: i64,
        except: Option<Uuid>,
        reason: EndReason,
        now: i64,
    ) -> Result<usize, sqlx::Error> {
        let except = except.map(|id| id.as_bytes().to_vec()).unwrap_or_default();
        let ended: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "UPDATE sessions SET revoked_at = ?, revoked_reason = ? \
             WHERE user_id = ? AND revoked_at IS NULL AND id != ? \
             RETURNING id, access_exp",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(user_id)
        .bind(except)
        .fetch_all(&self.pool)
        .await?;
        let count = ended.len();
        self.remember_ended(
            ended
                .into_iter()
                .filter_map(|(id, exp)| Some((Uuid::from_slice(&id).ok()?, exp))),
        );
        Ok(count)
    }

    /// Records that a session was used at `now`, at most once a minute per session; the write
    /// runs in a task of its own and never holds up the request.
    pub fn touch(&self, id: Uuid, now: i64) {
        if self
            .touched
            .get(&id)
            .is_some_and(|at| now - at < TOUCH_EVERY_SECS)
        {
            return;
        }
        self.touched.insert(id, now);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let written = sqlx::query(
                "UPDATE sessions SET last_used_at = ? WHERE id = ? AND last_used_at < ?",
            )
            .bind(now)
            .bind(id.as_bytes().as_slice())
            .bind(now)
            .execute(&pool)
            .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "recording a session's last use failed");
            }
        });
    }

    /// The live sessions of `user_id`, most recently used first.
    pub async fn list(&self, user_id: i64, now: i64) -> Result<Vec<Session>, sqlx::Error> {
        let idle_since = now.saturating_sub(secs(self.lifetimes.idle));
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE user_id = ? AND revoked_at IS NULL \
             AND expires_at > ? AND last_used_at > ? ORDER BY last_used_at DESC, created_at DESC"
        ))
        .bind(user_id)
        .bind(now)
        .bind(idle_since)
        .fetch_all(&self.pool)
        .await
    }

    /// Drops sessions that are over (ended, expired or idle) and whose access tokens have all
    /// expired, from the database and from memory. Returns how many rows went.
    pub async fn purge(&self, now: i64) -> Result<u64, sqlx::Error> {
        let dead = now - LEEWAY_SECS as i64;
        let idle_since = now.saturating_sub(secs(self.lifetimes.idle));
        let gone = sqlx::query(
            "DELETE FROM sessions WHERE access_exp < ? \
             AND (revoked_at IS NOT NULL OR expires_at <= ? OR last_used_at <= ?)",
        )
        .bind(dead)
        .bind(now)
        .bind(idle_since)
        .execute(&self.pool)
        .await?;
        self.ended
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, exp| *exp >= dead);
        Ok(gone.rows_affected())
    }

    /// Ended sessions held in memory.
    pub fn ended_len(&self) -> usize {
        self.ended.read().map(|set| set.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{jwt::now_unix, testing};

    async fn sessions(lifetimes: Lifetimes) -> (tempfile::TempDir, Pool, Sessions) {
        let (dir, pool, _) = testing::auth().await;
        testing::user(&pool, 1, 0).await;
        testing::user(&pool, 2, 0).await;
        let sessions = Sessions::load(pool.clone(), lifetimes).await.unwrap();
        (dir, pool, sessions)
    }

    #[tokio::test]
    async fn a_rotation_moves_the_generation_on() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = s.create(1, "Mozilla/5.0", None, now).await.unwrap();
        let token = first.refresh_token();
        let second = s.rotate(&token, None, now + 60).await.unwrap();
        assert_eq!(second.generation, 2);
        assert_ne!(second.refresh_token(), token);
        assert_eq!(second.access_exp, now + 60 + 900);
        let third = s
            .rotate(&second.refresh_token(), None, now + 120)
            .await
            .unwrap();
        assert_eq!(third.generation, 3);
        assert!(!s.is_ended(&first.id.0));
    }

    #[tokio::test]
    async fn the_previous_token_within_the_interval_gets_the_current_pair() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = s.create(1, "", None, now).await.unwrap();
        let old = first.refresh_token();
        let rotated = s.rotate(&old, None, now + 1).await.unwrap();
        // The other tab, 5 s later, with the token the first tab just rotated.
        let again = s.rotate(&old, None, now + 6).await.unwrap();
        assert_eq!(again.generation, rotated.generation);
        assert_eq!(again.refresh_token(), rotated.refresh_token());
        assert!(!s.is_ended(&first.id.0));
        // And the current token still rotates.
        assert!(s
            .rotate(&rotated.refresh_token(), None, now + 7)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn reuse_after_the_interval_ends_the_whole_session() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = s.create(1, "", None, now).await.unwrap();
        let old = first.refresh_token();
        let current = s.rotate(&old, None, now + 1).await.unwrap().refresh_token();
        let err = s.rotate(&old, None, now + 12).await.unwrap_err();
        assert!(matches!(err, RefreshError::Reused), "{err}");
        assert!(s.is_ended(&first.id.0));
        // The current token is refused too: the session is over for everyone holding it.
        let err = s.rotate(&current, None, now + 13).await.unwrap_err();
        assert!(matches!(err, RefreshError::Ended), "{err}");
        let row = s.find(first.id.0).await.unwrap().unwrap();
        assert_eq!(row.revoked_reason.as_deref(), Some("reuse"));
    }

    #[tokio::test]
    async fn an_older_generation_is_reuse_even_within_the_interval() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = s.create(1, "", None, now).await.unwrap();
        let g1 = first.refresh_token();
        let g2 = s.rotate(&g1, None, now).await.unwrap().refresh_token();
        s.rotate(&g2, None, now).await.unwrap();
        assert!(matches!(
            s.rotate(&g1, None, now).await,
            Err(RefreshError::Reused)
        ));
    }

    #[tokio::test]
    async fn forged_and_garbled_tokens_change_nothing() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = s.create(1, "", None, now).await.unwrap();
        let genuine = first.refresh_token();
        // The right session and an old generation, but a MAC made with another key.
        let forged = encode(first.id.0, 0, &[7u8; 32]);
        let mut flipped = genuine.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            forged.as_str(),
            flipped.as_str(),
            "",
            "rt1.",
            "rt1.????",
            "not a token",
            &"rt1.".repeat(1000),
        ] {
            assert!(
                matches!(s.rotate(bad, None, now).await, Err(RefreshError::Invalid)),
                "{bad}"
            );
        }
        assert!(!s.is_ended(&first.id.0));
        assert!(s.rotate(&genuine, None, now).await.is_ok());
    }

    #[tokio::test]
    async fn idle_and_absolute_ends() {
        let lifetimes = Lifetimes {
            session: Duration::from_secs(1000),
            idle: Duration::from_secs(100),
            ..Lifetimes::default()
        };
        let (_dir, _pool, s) = sessions(lifetimes).await;
        let now = now_unix();
        let idle = s.create(1, "", None, now).await.unwrap();
        assert!(matches!(
            s.rotate(&idle.refresh_token(), None, now + 100).await,
            Err(RefreshError::Expired)
        ));
        // Used every 90 s it lives on, but not past its absolute end; access tokens never
        // outlive the session.
        let mut token = s.create(1, "", None, now).await.unwrap().refresh_token();
        let mut at = now;
        loop {
            at += 90;
            match s.rotate(&token, None, at).await {
                Ok(next) => {
                    assert!(next.access_exp <= now + 1000);
                    token = next.refresh_token();
                }
                Err(RefreshError::Expired) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(at >= now + 1000);
    }

    #[tokio::test]
    async fn racing_rotations_of_one_token_all_stay_signed_in() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let s = std::sync::Arc::new(s);
        let now = now_unix();
        let first = s.create(1, "", None, now).await.unwrap();
        let token = first.refresh_token();
        let racers: Vec<_> = (0..64)
            .map(|_| {
                let (s, token) = (s.clone(), token.clone());
                tokio::spawn(async move { s.rotate(&token, None, now).await })
            })
            .collect();
        let mut tokens = std::collections::HashSet::new();
        for racer in racers {
            let session = racer.await.unwrap().unwrap();
            assert_eq!(session.generation, 2);
            tokens.insert(session.refresh_token());
        }
        assert_eq!(tokens.len(), 1, "every racer got the same current token");
        assert!(!s.is_ended(&first.id.0));
    }

    #[tokio::test]
    async fn ending_is_remembered_across_a_restart_until_access_tokens_expire() {
        let (_dir, pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let mine = s.create(1, "", None, now).await.unwrap();
        let other = s.create(1, "", None, now).await.unwrap();
        let theirs = s.create(2, "", None, now).await.unwrap();
        // Someone else's session is not found by id for user 1.
        assert!(!s
            .end_one(theirs.id.0, Some(1), EndReason::Revoked, now)
            .await
            .unwrap());
        assert!(!s.is_ended(&theirs.id.0));
        assert_eq!(
            s.end_all(1, Some(mine.id.0), EndReason::SignedOutElsewhere, now)
                .await
                .unwrap(),
            1
        );
        assert!(s.is_ended(&other.id.0) && !s.is_ended(&mine.id.0));
        let listed: Vec<_> = s
            .list(1, now)
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.id)
            .collect();
        assert_eq!(listed, [mine.id]);

        let reloaded = Sessions::load(pool.clone(), Lifetimes::default())
            .await
            .unwrap();
        assert!(reloaded.is_ended(&other.id.0));
        assert!(!reloaded.is_ended(&mine.id.0));
        // Purged once its last access token has expired.
        assert_eq!(reloaded.purge(other.access_exp).await.unwrap(), 0);
        assert!(reloaded.is_ended(&other.id.0));
        assert_eq!(
            reloaded
                .purge(other.access_exp + LEEWAY_SECS as i64 + 1)
                .await
                .unwrap(),
            1
        );
        assert!(!reloaded.is_ended(&other.id.0));
        assert!(reloaded.find(other.id.0).await.unwrap().is_none());
        assert!(reloaded.find(mine.id.0).await.unwrap().is_some());
    }

    #[test]
    fn devices_are_named_as_a_person_would() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(describe_device(chrome), "Chrome on Linux");
        let firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 \
                       Firefox/121.0";
        assert_eq!(describe_device(firefox), "Firefox on Windows 10");
        assert_eq!(describe_device(""), "Unknown device");
        assert_eq!(describe_device("\u{0}\u{ff}zzz"), "Unknown browser");
    }

    #[test]
    fn user_agents_are_trimmed_to_printable_text() {
        assert_eq!(
            trim_user_agent("  Mozilla/5.0\r\n(X11)\0 "),
            "Mozilla/5.0(X11)"
        );
        assert_eq!(
            trim_user_agent(&"é".repeat(500)).chars().count(),
            USER_AGENT_MAX
        );
    }
}
