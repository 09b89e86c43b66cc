//! Revocation: revoked access tokens and ended sessions, refused from memory.
//!
//! Every authenticated request asks [`Revocations::is_revoked`] once, which reads an in-memory
//! set of both kinds: revoked `jti`s (signing out) and ended sessions (every access token of
//! theirs). No database round trip on the hot path. The database is the record: a revocation is
//! committed first and enters memory only then, still before the request that made it is
//! answered; memory never holds a revocation the database lacks, so a failed write cannot look
//! like a sign-out that a restart would undo. Tokens are accepted until `exp` +
//! [`LEEWAY_SECS`]; only after that can an entry go, so the purges and the start-up load keep
//! it until then. On PostgreSQL, the revocations other instances commit are followed into the
//! same set ([`feed`]).

pub mod feed;

use std::{collections::HashMap, sync::RwLock};
use uuid::Uuid;

use crate::{
    store::{Store, StoreError},
    tokens::access::{now_unix, LEEWAY_SECS},
};

/// A token's `exp` in memory: unix seconds as a `u32` (until 2106), 4 bytes less per
/// revocation.
type Exp = u32;

fn to_exp(exp: i64) -> Exp {
    exp.clamp(0, i64::from(Exp::MAX)) as Exp
}

/// Revocations whose token can no longer be accepted: `exp` + leeway has passed.
fn dead_before() -> i64 {
    now_unix() - LEEWAY_SECS as i64
}

/// What a revocation revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One access token, by its `jti`.
    Token,
    /// A session, and so every access token issued for it, by the session's id.
    Session,
}

/// The revoked tokens and ended sessions that could still be presented, in memory, and their
/// record in the database.
#[derive(Debug)]
pub struct Revocations {
    store: Store,
    /// A std lock: it is never held across an await.
    set: RwLock<Set>,
}

#[derive(Debug, Default)]
struct Set {
    /// Revoked, unexpired jtis and their tokens' `exp` ([`Exp`]: 20 bytes an entry, a million
    /// take ~42 MiB). The purge drops what has expired, whichever instance deleted the rows.
    tokens: HashMap<Uuid, Exp>,
    /// Ended sessions whose access tokens may not all have expired: id → the latest `exp`.
    sessions: HashMap<Uuid, i64>,
}

impl Revocations {
    /// Loads every revocation whose token could still be accepted: the revoked tokens, then
    /// the ended sessions.
    pub async fn load(store: Store) -> Result<Self, StoreError> {
        let since = dead_before();
        let count = store.revoked_tokens_count(since).await?;
        let mut set = Set {
            tokens: HashMap::with_capacity(count.max(0) as usize),
            sessions: HashMap::new(),
        };
        store
            .revoked_tokens(since, |jti, exp| {
                set.tokens.insert(jti, to_exp(exp));
            })
            .await?;
        set.sessions = store.ended_sessions(since).await?.into_iter().collect();
        Ok(Self {
            store,
            set: RwLock::new(set),
        })
    }

    /// Whether a token `jti` of session `session` is refused: it was revoked, or its session
    /// ended. Memory only; a poisoned lock (a panic elsewhere) fails closed.
    pub fn is_revoked(&self, jti: &Uuid, session: &Uuid) -> bool {
        self.set
            .read()
            .map(|set| set.tokens.contains_key(jti) || set.sessions.contains_key(session))
            .unwrap_or(true)
    }

    /// Whether token `jti` was revoked. Memory only; fails closed.
    pub fn is_token_revoked(&self, jti: &Uuid) -> bool {
        self.set
            .read()
            .map(|set| set.tokens.contains_key(jti))
            .unwrap_or(true)
    }

    /// Whether session `id` was ended. Memory only; fails closed.
    pub fn is_session_ended(&self, id: &Uuid) -> bool {
        self.set
            .read()
            .map(|set| set.sessions.contains_key(id))
            .unwrap_or(true)
    }

    /// Revokes a token: a committed row, then memory. Idempotent. On error nothing has
    /// changed, and the token stays valid: the caller must not report a sign-out.
    pub async fn revoke(&self, jti: Uuid, user_id: i64, exp: i64) -> Result<(), StoreError> {
        self.store
            .revoke_token(jti, user_id, exp, now_unix())
            .await?;
        self.remember_token(jti, exp);
        Ok(())
    }

    /// The set, to change; poisoned, it is used as it is (`is_revoked` already refuses
    /// everything).
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Set> {
        self.set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A token revocation already in the database (this instance's, or another's that it has
    /// just read) enters memory.
    pub fn remember_token(&self, jti: Uuid, exp: i64) {
        self.write().tokens.insert(jti, to_exp(exp));
    }

    /// A session ended in the database is refused from memory until `access_exp`.
    pub fn remember_ended(&self, id: Uuid, access_exp: i64) {
        self.write().sessions.insert(id, access_exp);
    }

    /// Revocations already in the database enter memory, under one lock.
    pub fn remember(&self, revoked: impl IntoIterator<Item = (Kind, Uuid, i64)>) {
        let mut set = self.write();
        for (kind, key, exp) in revoked {
            match kind {
                Kind::Token => {
                    set.tokens.insert(key, to_exp(exp));
                }
                Kind::Session => {
                    set.sessions.insert(key, exp);
                }
            }
        }
    }

    /// Drops token revocations whose token is refused as expired anyway (`exp` + leeway has
    /// passed), from the database and from memory. Returns how many rows went.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let dead = dead_before();
        let gone = self.store.purge_revoked_tokens(dead).await?;
        self.write().tokens.retain(|_, exp| i64::from(*exp) >= dead);
        Ok(gone)
    }

    /// Forgets the ended sessions whose access tokens all expired before `dead` (their rows
    /// are the sessions' purge's).
    pub fn forget_sessions_ended_before(&self, dead: i64) {
        self.write().sessions.retain(|_, exp| *exp >= dead);
    }

    /// Token revocations held in memory.
    pub fn len(&self) -> usize {
        self.set.read().map(|set| set.tokens.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ended sessions held in memory.
    pub fn sessions_len(&self) -> usize {
        self.set.read().map(|set| set.sessions.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
