//! Sessions: one per sign-in, listed on the sessions page, ended one by one or all at once.
//!
//! A session has a random id, an absolute end (`SESSION_TTL`) and an idle end
//! (`SESSION_IDLE_TTL` after it was last used). Access tokens are short and carry the session
//! id (`sid`); a session is kept going by its refresh token ([`crate::tokens::refresh`]), which
//! rotates on every use.
//!
//! A refresh token whose MAC is wrong is garbage and changes nothing; a genuine one is either
//! the current generation (rotated: the generation moves on by a compare-and-swap, so of two
//! racing rotations exactly one wins), the previous one presented again within
//! `REFRESH_REUSE_INTERVAL` (two tabs refreshing at once: it gets the current pair), or an older
//! one — **reuse**: somebody kept a token that was already rotated, so the whole session is
//! ended (RFC 9700 §4.14.2). The decision is [`rotation::decide`]'s.
//!
//! **Ending a session** is written to the database first and then to the in-memory set of
//! revocations that every authenticated request consults ([`crate::revocation`]), so the next
//! request with any access token of that session is refused, and memory never says "ended" while
//! the database does not. An entry stays until every access token issued for the session has
//! expired (`access_exp`), then the purge drops it; the start-up load restores the same set.
//!
//! The model is in [`model`], the wording of devices in [`agent`], the recording of uses in
//! [`uses`], the write lock and the batches of rotations in [`write`], and the statements in
//! [`crate::store::sessions`] (but for those of a sign-in, a password change and ending every
//! session of a user, below).

pub mod agent;
pub mod model;
pub mod rotation;
pub mod uses;
pub mod write;

#[cfg(test)]
mod tests;

use crate::tokens::refresh::RefreshSecret;
pub use agent::{describe_device, trim_user_agent, USER_AGENT_MAX};
pub use model::{secs, EndReason, EndedByToken, Lifetimes, LiveSession, Session, SessionId};
pub use uses::RECORD_USE_EVERY_SECS;
pub use write::{WriteError, WRITE_WAIT};

use crate::{
    cache::Bounded,
    revocation::Revocations,
    store::{Store, StoreError},
    tokens::{
        access::LEEWAY_SECS,
        refresh::{encode, Presented},
    },
};
use rotation::Decision;
use std::{net::IpAddr, sync::Arc, time::Duration};
use uuid::Uuid;
use write::{lock_write, Rotations};

/// Throttled refresh tokens remembered at once (see `Sessions::throttled`).
const THROTTLED_TOKENS: usize = 10_000;

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
    /// Shared: when the database cannot be reached, the rotations of one batch all get the
    /// same error.
    #[error("{0}")]
    Db(#[source] Arc<StoreError>),
    #[error("signing a token failed: {0}")]
    Sign(String),
    /// The session kept changing under the rotation, or the write lock was not had within
    /// [`WRITE_WAIT`]: nothing changed, try again.
    #[error("the rotation could not be written in time")]
    Busy,
    /// Too many refreshes from this address or of this session (see
    /// [`RefreshLimits`](crate::throttle::RefreshLimits)): nothing changed, the session lives on.
    #[error("too many refreshes: try again in {0} s")]
    Throttled(u64),
}

impl RefreshError {
    /// Whether the refusal is final for the session (as opposed to "not now").
    pub fn session_is_over(&self) -> bool {
        match self {
            Self::Invalid | Self::Ended | Self::Expired | Self::Reused => true,
            Self::Db(_) | Self::Sign(_) | Self::Busy | Self::Throttled(_) => false,
        }
    }
}

impl From<WriteError> for RefreshError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Db(e) => e.into(),
            WriteError::Busy => Self::Busy,
        }
    }
}

impl From<StoreError> for RefreshError {
    fn from(e: StoreError) -> Self {
        Self::Db(Arc::new(e))
    }
}

/// The sessions table, and the ended sessions in the in-memory set of revocations.
#[derive(Debug)]
pub struct Sessions {
    store: Store,
    lifetimes: Lifetimes,
    /// The server's part of every refresh token.
    secret: RefreshSecret,
    /// Rotations allowed per address and per session.
    refresh_limits: crate::throttle::RefreshLimits,
    /// Genuine refresh tokens whose session's allowance is spent, until when: presented again
    /// meanwhile, they are refused before any read (a crowd replaying one token costs memory
    /// look-ups). Only tokens whose MAC was checked enter, so a forged one never answers for
    /// a genuine one.
    throttled: Bounded<String, std::time::Instant>,
    /// Where ended sessions are remembered until their access tokens have all expired, shared
    /// with the check of every request.
    revocations: Arc<Revocations>,
    /// Per session: when `last_used_at` was last written, and the newest generation known to
    /// have reached its holder — to write either only when it changes (once a minute at most).
    last_recorded: Arc<Bounded<Uuid, (i64, i64)>>,
    /// The uses [`record_use`](Self::record_use) decided to write, on their way to the database.
    uses: Arc<uses::PendingUses>,
    /// Taken around every write to the sessions table (see [`write`]).
    write: Arc<tokio::sync::Mutex<()>>,
    /// Rotations waiting for `write`, written together.
    rotations: Rotations,
}

impl Sessions {
    /// The sessions of `store`, remembering the ended ones in `revocations` (which the
    /// start-up load fills with those whose access tokens could still be presented).
    pub fn new(
        store: Store,
        lifetimes: Lifetimes,
        secret: RefreshSecret,
        revocations: Arc<Revocations>,
    ) -> Self {
        Self {
            store,
            lifetimes,
            secret,
            refresh_limits: Default::default(),
            throttled: Bounded::new(THROTTLED_TOKENS),
            revocations,
            last_recorded: Arc::new(Bounded::new(crate::cache::DEFAULT_ENTRIES)),
            uses: Default::default(),
            write: Default::default(),
            rotations: Default::default(),
        }
    }

    /// Remembers the last write of at most `entries` sessions (`HOT_CACHE_ENTRIES`). A session
    /// it has forgotten is written again at its next use, so 0 writes at every use.
    pub fn with_cache(mut self, entries: usize) -> Self {
        self.last_recorded = Arc::new(Bounded::new(entries));
        self
    }

    /// Limits on rotations other than the default ones (turned off for load tests).
    pub fn with_refresh_limits(mut self, limits: crate::throttle::RefreshLimits) -> Self {
        self.refresh_limits = limits;
        self
    }

    pub fn refresh_limits(&self) -> &crate::throttle::RefreshLimits {
        &self.refresh_limits
    }

    pub fn lifetimes(&self) -> &Lifetimes {
        &self.lifetimes
    }

    /// Whether the session has been ended. Memory only; a poisoned lock fails closed.
    pub fn is_ended(&self, id: &Uuid) -> bool {
        self.revocations.is_session_ended(id)
    }

    /// Sessions ended in the database (id as stored, `access_exp`) are refused from memory.
    pub(crate) fn remember_ended(&self, ended: impl IntoIterator<Item = (Vec<u8>, i64)>) {
        self.revocations
            .remember(ended.into_iter().filter_map(|(id, exp)| {
                Some((
                    crate::revocation::Kind::Session,
                    Uuid::from_slice(&id).ok()?,
                    exp,
                ))
            }));
    }

    fn live(&self, session: Session, token_exp: i64) -> LiveSession {
        LiveSession {
            refresh_token: encode(
                &self.secret,
                &session.refresh_key,
                session.id.0,
                session.generation,
            ),
            session,
            token_exp,
        }
    }

    /// The expiry of an access token issued at `now` for a session ending at `expires_at`.
    fn token_exp(&self, now: i64, expires_at: i64) -> i64 {
        self.lifetimes.token_exp(now, expires_at)
    }

    /// Starts a session for `user_id`, who has just proved who they are (see [`crate::authn`])
    /// with credentials whose stamp was `stamp`. Written only if that is still the account's
    /// stamp ([`Store::start_session`]): a sign-in whose check was running while the password
    /// changed or the account was deleted starts nothing, and gets `None`. Crate-private: a
    /// session is started from a [`Proof`](crate::authn::Proof) (`Auth::start_session`).
    #[allow(clippy::too_many_arguments)] // each one a fact of the new session's row
    pub(crate) async fn create(
        &self,
        user_id: i64,
        stamp: crate::credentials::CredentialStamp,
        user_agent: &str,
        address: Option<IpAddr>,
        now: i64,
        notice: Option<crate::store::email::Notify<'_>>,
        method: crate::factors::Method,
        new_device: bool,
    ) -> Result<Option<LiveSession>, WriteError> {
        let id = Uuid::new_v4();
        let key: [u8; 32] = rand::random();
        let expires_at = now.saturating_add(secs(self.lifetimes.session));
        let token_exp = self.token_exp(now, expires_at);
        let session = Session {
            id: SessionId(id),
            user_id,
            refresh_key: key.to_vec(),
            generation: 1,
            confirmed_generation: 1,
            rotated_at: now,
            created_at: now,
            last_used_at: now,
            expires_at,
            access_exp: token_exp,
            user_agent: trim_user_agent(user_agent),
            address: address.map(|a| a.to_string()).unwrap_or_default(),
            revoked_at: None,
            revoked_reason: None,
            auth_method: method.as_str().to_owned(),
            authenticated_at: now,
        };
        let _write = lock_write(&self.write).await?;
        if !self
            .store
            .start_session(&session, stamp, notice, new_device)
            .await?
        {
            return Ok(None);
        }
        self.last_recorded.insert(id, (now, 1));
        crate::metrics::session_started(method.as_str());
        Ok(Some(self.live(session, token_exp)))
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        self.store.session(id).await
    }

    /// Rotates a refresh token: what to do is [`rotation::decide`]'s, given the session as
    /// read; this does it. The current generation "reached its holder" once it is presented
    /// or an access token issued with it is used ([`record_use`](Self::record_use)).
    ///
    /// Only a rotation and a reuse write (and the rare answer that moves `access_exp` on). The
    /// previous token presented again is answered from what was read, so a crowd replaying it
    /// costs reads, never a turn at the write lock that sign-ins and sign-outs queue on. Before
    /// any of it, the address's allowance is counted, then (once the MAC shows the token is
    /// genuine, so nobody can spend another's) the session's: `Throttled` changes nothing and
    /// ends nothing.
    pub async fn rotate(
        &self,
        token: &str,
        address: Option<IpAddr>,
        now: i64,
    ) -> Result<LiveSession, RefreshError> {
        // How a refresh that answered did: `rotated`, or `grace` (the previous token, answered
        // again).
        let mut outcome = "rotated";
        let answer = self.rotate_inner(token, address, now, &mut outcome).await;
        crate::metrics::refresh(match &answer {
            Ok(_) => outcome,
            Err(RefreshError::Invalid) => "invalid",
            Err(RefreshError::Ended) => "ended",
            Err(RefreshError::Expired) => "expired",
            Err(RefreshError::Reused) => "reuse",
            Err(RefreshError::Throttled(_)) => "throttled",
            Err(RefreshError::Busy) => "busy",
            Err(RefreshError::Db(_) | RefreshError::Sign(_)) => "error",
        });
        answer
    }

    async fn rotate_inner(
        &self,
        token: &str,
        address: Option<IpAddr>,
        now: i64,
        outcome: &mut &'static str,
    ) -> Result<LiveSession, RefreshError> {
        self.refresh_limits
            .address(address)
            .map_err(|r| RefreshError::Throttled(r.retry_after))?;
        let token = token.trim();
        if let Some(until) = self.throttled.get(token) {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if !left.is_zero() {
                return Err(RefreshError::Throttled(
                    left.as_secs() + u64::from(left.subsec_nanos() > 0),
                ));
            }
        }
        let presented = Presented::parse(token).ok_or(RefreshError::Invalid)?;
        let address = address.map(|a| a.to_string());
        let mut counted = false;
        // A lost compare-and-swap means another request rotated meanwhile: look again. Each
        // retry sees a newer generation, so a few rounds settle every race of honest clients.
        for _ in 0..3 {
            let session = self
                .find(presented.id)
                .await?
                .ok_or(RefreshError::Invalid)?;
            if !presented.is_genuine(&self.secret, &session.refresh_key) {
                return Err(RefreshError::Invalid);
            }
            let decision = rotation::decide(&session, presented.generation, now, &self.lifetimes);
            if decision.answers_tokens() && !counted {
                if let Err(refused) = self.refresh_limits.session(&presented.id) {
                    let until =
                        std::time::Instant::now() + Duration::from_secs(refused.retry_after);
                    self.throttled.insert(token.to_owned(), until);
                    return Err(RefreshError::Throttled(refused.retry_after));
                }
                counted = true;
            }
            match decision {
                Decision::Ended => return Err(RefreshError::Ended),
                Decision::Expired => return Err(RefreshError::Expired),
                Decision::Rotate { token_exp } => {
                    let address = address.clone().unwrap_or_else(|| session.address.clone());
                    let row = crate::store::sessions::Rotation {
                        id: presented.id,
                        generation: presented.generation,
                        now,
                        token_exp,
                        address,
                    };
                    let rotated = self.rotations.submit(&self.store, &self.write, row).await?;
                    match rotated {
                        Some(session) => {
                            self.last_recorded
                                .insert(presented.id, (now, presented.generation));
                            return Ok(self.live(session, token_exp));
                        }
                        None => continue,
                    }
                }
                // Ended meanwhile (by this instance, or by another whose revocation reached
                // memory): refused as the next read would.
                Decision::AnswerAgain { .. } | Decision::Extend { .. }
                    if self.is_ended(&presented.id) =>
                {
                    return Err(RefreshError::Ended);
                }
                Decision::AnswerAgain { token_exp } => {
                    *outcome = "grace";
                    return Ok(self.live(session, token_exp));
                }
                Decision::Extend { token_exp } => {
                    *outcome = "grace";
                    let _write = lock_write(&self.write).await?;
                    if self
                        .store
                        .extend_access(presented.id, session.generation, token_exp)
                        .await?
                    {
                        return Ok(self.live(session, token_exp));
                    }
                    continue;
                }
                Decision::Reuse => {
                    tracing::warn!(
                        user_id = session.user_id,
                        presented = presented.generation,
                        current = session.generation,
                        "refresh token reuse: the session is ended"
                    );
                    self.end_one(presented.id, None, EndReason::Reuse, now)
                        .await?;
                    return Err(RefreshError::Reused);
                }
            }
        }
        Err(RefreshError::Busy)
    }

    /// A password change, all or nothing (see [`Store::change_password`]): this session renewed
    /// with no grace for its previous refresh token, the password and the credential stamp
    /// replaced, every other session ended. `None` (and nothing changed) when the current
    /// session is no longer live.
    pub(crate) async fn change_password(
        &self,
        user_id: i64,
        current: Uuid,
        password_hash: &str,
        now: i64,
        notice: Option<crate::store::email::Notify<'_>>,
        event: &crate::audit::Entry<'_>,
    ) -> Result<Option<LiveSession>, WriteError> {
        let renewal = crate::store::accounts::Renewal {
            now,
            access_until: now.saturating_add(secs(self.lifetimes.access)),
            idle_since: now.saturating_sub(secs(self.lifetimes.idle)),
        };
        let _write = lock_write(&self.write).await?;
        let changed = self
            .store
            .change_password(user_id, current, password_hash, renewal, notice, event)
            .await?;
        let Some(changed) = changed else {
            return Ok(None);
        };
        crate::metrics::sessions_ended(EndReason::PasswordChanged.as_str(), changed.ended.len());
        self.remember_ended(changed.ended);
        let token_exp = self.token_exp(now, changed.session.expires_at);
        Ok(Some(self.live(changed.session, token_exp)))
    }

    /// Runs `change`, a transaction of the store that changes a credential of an account and
    /// may end sessions of it, under the write lock, and remembers the sessions it ended. What
    /// it answered.
    pub(crate) async fn credential_change<T>(
        &self,
        reason: EndReason,
        change: impl std::future::Future<
            Output = Result<(T, Option<crate::store::accounts::Ended>), StoreError>,
        >,
    ) -> Result<T, WriteError> {
        let _write = lock_write(&self.write).await?;
        let (answer, ended) = change.await?;
        if let Some(ended) = ended {
            crate::metrics::sessions_ended(reason.as_str(), ended.len());
            self.remember_ended(ended);
        }
        Ok(answer)
    }

    /// Deletes account `user_id`: every session of it ends first, in the database and then in
    /// memory, so that from the next request on each of its tokens is refused as revoked; then
    /// the account's row goes ([`Store::delete_user`]). If that fails, the sessions stay ended
    /// (signing in again works) and a retry deletes. `false` when there was no such account.
    /// Only through [`Auth::delete_account`](crate::Auth::delete_account), which forgets the
    /// user too.
    pub(crate) async fn delete_account(
        &self,
        user_id: i64,
        now: i64,
        notice: Option<crate::store::email::Notify<'_>>,
        event: &crate::audit::Entry<'_>,
    ) -> Result<bool, WriteError> {
        let _write = lock_write(&self.write).await?;
        let ended = self
            .store
            .end_sessions_of(user_id, None, EndReason::AccountDeleted, None, now)
            .await?;
        crate::metrics::sessions_ended(EndReason::AccountDeleted.as_str(), ended.len());
        self.remember_ended(ended);
        Ok(self.store.delete_user(user_id, notice, event, now).await?)
    }

    /// Follows a reset link (see [`Store::reset_password`](crate::store::Store::reset_password)):
    /// the password replaced, every session of the account ended (in memory too, from the next
    /// request on), the owner told.
    pub(crate) async fn reset_password(
        &self,
        hash: &[u8; 32],
        password_hash: &str,
        notice: Option<crate::store::email::Notify<'_>>,
        seen: crate::audit::Seen<'_>,
        now: i64,
    ) -> Result<crate::store::email::Reset, WriteError> {
        let _write = lock_write(&self.write).await?;
        let reset = self
            .store
            .reset_password(hash, password_hash, notice, seen, now)
            .await?;
        if let crate::store::email::Reset::Done { ended, .. } = &reset {
            crate::metrics::sessions_ended(EndReason::PasswordReset.as_str(), ended.len());
            self.remember_ended(ended.iter().cloned());
        }
        Ok(reset)
    }

    /// Ends the live session a genuine refresh token belongs to (signing out with the refresh
    /// token alone, its access token having expired or been lost).
    pub async fn end_by_refresh_token(
        &self,
        token: &str,
        reason: EndReason,
        now: i64,
    ) -> Result<EndedByToken, WriteError> {
        let Some(presented) = Presented::parse(token) else {
            return Ok(EndedByToken::NotGenuine);
        };
        let Some(session) = self.find(presented.id).await? else {
            return Ok(EndedByToken::NotGenuine);
        };
        if !presented.is_genuine(&self.secret, &session.refresh_key) {
            return Ok(EndedByToken::NotGenuine);
        }
        Ok(if self.end_one(presented.id, None, reason, now).await? {
            EndedByToken::Ended(session.user_id)
        } else {
            EndedByToken::AlreadyOver
        })
    }

    /// Signing out with an access token, all or nothing: its `jti` goes on the revocation list and
    /// its session ends in one transaction, so a failure leaves both as they were (and a retry
    /// finds the token still good), never a revoked token whose session and refresh token live
    /// on. Memory follows the commit: the caller puts the `jti` in the set of revocations
    /// ([`Auth::sign_out`](crate::Auth::sign_out)). Whether the session was still live.
    pub async fn sign_out(
        &self,
        jti: Uuid,
        user_id: i64,
        token_exp: i64,
        session: Uuid,
        now: i64,
    ) -> Result<bool, WriteError> {
        let _write = lock_write(&self.write).await?;
        let ended = self
            .store
            .sign_out(session, user_id, jti, token_exp, now)
            .await?;
        if let Some(access_exp) = ended {
            crate::metrics::sessions_ended(EndReason::Logout.as_str(), 1);
            self.revocations.remember_ended(session, access_exp);
        }
        Ok(ended.is_some())
    }

    /// Ends one session (of `user_id`, when given). False when there is no such live session.
    pub async fn end_one(
        &self,
        id: Uuid,
        user_id: Option<i64>,
        reason: EndReason,
        now: i64,
    ) -> Result<bool, WriteError> {
        let _write = lock_write(&self.write).await?;
        let ended = self.store.end_session(id, user_id, reason, now).await?;
        if let Some(access_exp) = ended {
            crate::metrics::sessions_ended(reason.as_str(), 1);
            self.revocations.remember_ended(id, access_exp);
        }
        Ok(ended.is_some())
    }

    /// Ends every live session of `user_id` but `except`. Returns how many ended.
    pub async fn end_all(
        &self,
        user_id: i64,
        except: Option<Uuid>,
        reason: EndReason,
        event: Option<&crate::audit::Entry<'_>>,
        now: i64,
    ) -> Result<usize, WriteError> {
        let _write = lock_write(&self.write).await?;
        let ended = self
            .store
            .end_sessions_of(user_id, except, reason, event, now)
            .await?;
        let count = ended.len();
        crate::metrics::sessions_ended(reason.as_str(), count);
        self.remember_ended(ended);
        Ok(count)
    }

    /// The live sessions of `user_id`, most recently used first (the first 500).
    pub async fn list(&self, user_id: i64, now: i64) -> Result<Vec<Session>, StoreError> {
        let idle_since = now.saturating_sub(secs(self.lifetimes.idle));
        self.store.live_sessions_of(user_id, now, idle_since).await
    }

    /// Drops sessions that are over (ended, expired or idle) and whose access tokens have all
    /// expired, from the database and from memory. Returns how many rows went.
    pub async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        let dead = now - LEEWAY_SECS as i64;
        let idle_since = now.saturating_sub(secs(self.lifetimes.idle));
        let _write = self.write.lock().await;
        let gone = self.store.purge_sessions(dead, now, idle_since).await?;
        self.revocations.forget_sessions_ended_before(dead);
        Ok(gone)
    }

    /// Ended sessions held in memory.
    pub fn ended_len(&self) -> usize {
        self.revocations.sessions_len()
    }
}
