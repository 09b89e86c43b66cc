//! Sessions: one per sign-in, listed on the sessions page, ended one by one or all at once.
//!
//! A session has a random id, an absolute end (`SESSION_TTL`) and an idle end
//! (`SESSION_IDLE_TTL` after it was last used). Access tokens are short and carry the session
//! id (`sid`); a session is kept going by its refresh token, which rotates on every use.
//!
//! **Refresh tokens** are `rt2.` + base64url(id ‖ generation ‖ MAC), the MAC an HMAC-SHA256 under
//! a key derived from the server's secret (`JWT_SECRET`, never stored in the database) over the
//! session's own 256-bit key, its id and the generation. Both keys are needed to make a token:
//! a copy of the database (a backup, a dump, a replica) holds the session keys and generations
//! but mints nothing without the secret, and the secret alone names no session. A token whose MAC is wrong is
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

use crate::store::Pool;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::{collections::HashMap, net::IpAddr, sync::RwLock, time::Duration};
use uuid::Uuid;

use super::{cache::Bounded, jwt::LEEWAY_SECS};

/// Throttled refresh tokens remembered at once (see `Sessions::throttled`).
const THROTTLED_TOKENS: usize = 10_000;

/// How often at most `last_used_at` is written for one session.
pub const TOUCH_EVERY_SECS: i64 = 60;
/// User agents are kept up to this many characters.
pub const USER_AGENT_MAX: usize = 200;
/// `rt1.` tokens (MAC'd under the session key alone, which the database holds) are refused:
/// their sessions sign in again once.
const PREFIX: &str = "rt2.";
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
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    #[sqlx(try_from = "Vec<u8>")]
    pub id: SessionId,
    pub user_id: i64,
    pub refresh_key: Vec<u8>,
    pub generation: i64,
    /// The newest generation known to have reached its holder (presented, or one of its
    /// access tokens used).
    pub confirmed_generation: i64,
    /// When the current generation was issued (0: no grace for the one it replaced).
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

/// Its key, half of every refresh token of it, is never printed.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("generation", &self.generation)
            .field("confirmed_generation", &self.confirmed_generation)
            .field("rotated_at", &self.rotated_at)
            .field("expires_at", &self.expires_at)
            .field("access_exp", &self.access_exp)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
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
    /// Shared: when the database cannot be reached, the rotations of one batch all get the
    /// same error.
    #[error("database: {0}")]
    Db(#[source] std::sync::Arc<sqlx::Error>),
    #[error("signing a token failed: {0}")]
    Sign(String),
    /// The session kept changing under the rotation, or the write lock was not had within
    /// [`WRITE_WAIT`]: nothing changed, try again.
    #[error("the rotation could not be written in time")]
    Busy,
    /// Too many refreshes from this address or of this session (see
    /// [`RefreshLimits`](super::throttle::RefreshLimits)): nothing changed, the session lives on.
    #[error("too many refreshes: try again in {0} s")]
    Throttled(u64),
}

/// How long a request waits for its turn to write the sessions table. Beyond, it is answered
/// `503 temporarily_unavailable` (with `Retry-After`) instead of joining a queue without end.
pub const WRITE_WAIT: Duration = Duration::from_secs(2);

/// Why a write to the sessions table did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The write lock was not had within [`WRITE_WAIT`]: nothing was written.
    #[error("the sessions' writes were queued longer than {WRITE_WAIT:?}")]
    Busy,
}

/// The write lock, or [`WriteError::Busy`] after [`WRITE_WAIT`].
async fn lock_write(
    write: &tokio::sync::Mutex<()>,
) -> Result<tokio::sync::MutexGuard<'_, ()>, WriteError> {
    tokio::time::timeout(WRITE_WAIT, write.lock())
        .await
        .map_err(|_| WriteError::Busy)
}

/// A store statement that failed, as a write that did not happen.
fn not_written(e: crate::store::StoreError) -> WriteError {
    WriteError::Db(e.0)
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

impl From<sqlx::Error> for RefreshError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(std::sync::Arc::new(e))
    }
}

/// The server's part of every refresh token's MAC: a key derived from the server secret with a
/// label of its own (see [`super::jwt::derive_key`]), so it is never the JWT signing key itself.
#[derive(Clone)]
pub struct RefreshSecret([u8; 32]);

impl RefreshSecret {
    pub fn derive(server_secret: &[u8]) -> Self {
        Self(super::jwt::derive_key(
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

fn encode(secret: &RefreshSecret, session: &Session) -> String {
    let (id, generation) = (session.id.0, session.generation);
    let mut body = Vec::with_capacity(BODY_LEN);
    body.extend_from_slice(id.as_bytes());
    body.extend_from_slice(&generation.to_be_bytes());
    body.extend_from_slice(
        &mac(secret, &session.refresh_key, id, generation)
            .finalize()
            .into_bytes(),
    );
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

    /// Constant-time check that the server's secret and the session's key made this token.
    fn is_genuine(&self, secret: &RefreshSecret, session_key: &[u8]) -> bool {
        mac(secret, session_key, self.id, self.generation)
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

pub(crate) const COLUMNS: &str =
    "id, user_id, refresh_key, generation, confirmed_generation, rotated_at, \
     created_at, last_used_at, expires_at, access_exp, user_agent, address, \
     revoked_at, revoked_reason";

/// Uses of sessions waiting to be written: id → (when, the newest generation used). One task
/// at a time writes them, a few hundred to a transaction, so a crowd of first uses (every token
/// of 100,000 users presented once) costs one spawned task and a few hundred commits, not a
/// task and a commit each; and the sessions' write lock is let go between transactions, so a
/// sign-in or a sign-out waits for one of them at most.
#[derive(Debug, Default)]
struct Uses {
    pending: std::sync::Mutex<HashMap<Uuid, (i64, i64)>>,
    /// Whether a task is on its way to write `pending`.
    writing: std::sync::atomic::AtomicBool,
    /// Held while a batch is taken and written: [`Sessions::flush_uses`] waits for a batch
    /// already taken, then writes what is left.
    flush: tokio::sync::Mutex<()>,
    /// When a full queue was last reported (unix seconds): once a minute at most.
    full_reported: std::sync::atomic::AtomicI64,
}

/// Uses kept waiting at most. Beyond, a use that only moves `last_used_at` on is not recorded
/// (the next request tries again); one that confirms a new generation may go on to twice this,
/// since reuse detection reads it (see [`Sessions::rotate`]) and each follows a rotation that
/// already waited for its own write.
const PENDING_USES_MAX: usize = 10_000;
/// Uses written per transaction.
const USES_PER_TRANSACTION: usize = 256;

impl Uses {
    /// Queues a use, or says `false` when the queue is full. The lock is held for a map insert.
    fn add(&self, id: Uuid, generation: i64, now: i64, confirms: bool) -> bool {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, gen)) = pending.get_mut(&id) {
            *at = (*at).max(now);
            *gen = (*gen).max(generation);
            return true;
        }
        let room = if confirms { 2 } else { 1 } * PENDING_USES_MAX;
        if pending.len() >= room {
            drop(pending);
            self.report_full(now);
            return false;
        }
        pending.insert(id, (now, generation));
        true
    }

    fn report_full(&self, now: i64) {
        use std::sync::atomic::Ordering;
        let last = self.full_reported.load(Ordering::Relaxed);
        if now - last >= 60
            && self
                .full_reported
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                limit = PENDING_USES_MAX,
                "sessions' last uses are queued faster than they are written: some are dropped"
            );
        }
    }

    fn take(&self) -> HashMap<Uuid, (i64, i64)> {
        std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn is_empty(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }

    /// Takes what is pending and writes it. Uses that could not be written are logged and
    /// forgotten in `touched`, so a later use tries again (a token's next use a minute on: see
    /// `Verified::used_within`). The first failure is returned.
    async fn write(
        &self,
        pool: &Pool,
        write: &tokio::sync::Mutex<()>,
        touched: &Bounded<Uuid, (i64, i64)>,
    ) -> Result<(), sqlx::Error> {
        let _flush = self.flush.lock().await;
        let mut batch: Vec<_> = self.take().into_iter().collect();
        // In one order everywhere: two instances writing the same sessions cannot deadlock.
        batch.sort_unstable_by_key(|(id, _)| *id);
        let mut first_error = None;
        for chunk in batch.chunks(USES_PER_TRANSACTION) {
            if let Err(e) = record_uses(pool, write, chunk).await {
                tracing::warn!(error = %e, uses = chunk.len(), "recording sessions' last use failed");
                for (id, _) in chunk {
                    touched.remove(id);
                }
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Clears [`Uses::writing`] if the writing task panics: no writer would start again otherwise.
struct ClearOnPanic(std::sync::Arc<Uses>);

impl Drop for ClearOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .writing
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

async fn record_uses(
    pool: &Pool,
    write: &tokio::sync::Mutex<()>,
    batch: &[(Uuid, (i64, i64))],
) -> Result<(), sqlx::Error> {
    let (max, min) = crate::store::dialect(pool).max_min();
    let sql = format!(
        "UPDATE sessions SET last_used_at = {max}(last_used_at, $1), \
         confirmed_generation = {max}(confirmed_generation, {min}($2, generation)) WHERE id = $3"
    );
    let _write = write.lock().await;
    let mut tx = pool.begin().await?;
    for (id, (now, generation)) in batch {
        sqlx::query(&sql)
            .bind(now)
            .bind(generation)
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// One rotation on its way to the database: the compare-and-swap of a session's generation,
/// and where its result goes.
#[derive(Debug)]
struct Rotation {
    id: Uuid,
    generation: i64,
    now: i64,
    token_exp: i64,
    address: String,
    /// `None`: the generation had moved on (or the session ended) meanwhile.
    reply: tokio::sync::oneshot::Sender<Result<Option<Session>, RefreshError>>,
}

/// Rotations waiting for the sessions' write lock. Whoever takes the lock writes every one
/// waiting, in one transaction: one commit (one fsync on SQLite) for all of them. Sixteen
/// sessions rotating at once then wait for two commits or so, not sixteen in a row.
#[derive(Debug, Default)]
struct Rotations {
    pending: std::sync::Mutex<Vec<Rotation>>,
}

impl Rotations {
    /// Queues a rotation (made by `make`, given where its result goes) and waits for its
    /// result: written by whichever request takes the write lock next, this one or another.
    /// A request whose rotation is answered while it waits for the lock leaves the queue for
    /// the lock at once, so each turn at the lock writes a batch, not one rotation.
    ///
    /// The batch is written by a task of its own, which holds the lock until it is done: a
    /// request dropped meanwhile abandons nobody else's rotation. (The refresh handlers already
    /// run on tasks of their own, so a client that hangs up drops none of this; only a runtime
    /// shutting down does.) A rotation dropped before its batch is taken is not written. One
    /// that waits longer than [`WRITE_WAIT`] is withdrawn (`Busy`): not written if its batch
    /// was not yet taken; if it was, it is written and its answer lost, and the client's retry
    /// with the same token is answered the current pair (the pair is not yet seen in use).
    async fn submit(
        &self,
        pool: &Pool,
        write: &std::sync::Arc<tokio::sync::Mutex<()>>,
        make: impl FnOnce(
            tokio::sync::oneshot::Sender<Result<Option<Session>, RefreshError>>,
        ) -> Rotation,
    ) -> Result<Option<Session>, RefreshError> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        self.lock().push(make(reply));
        // A sender dropped unanswered: the writing task panicked.
        let busy = |_| Err(RefreshError::Busy);
        let held = tokio::select! {
            biased;
            done = &mut answer => return done.unwrap_or_else(busy),
            held = write.clone().lock_owned() => held,
            // Dropping `answer` withdraws the rotation: a batch taken later skips it.
            () = tokio::time::sleep(WRITE_WAIT) => return Err(RefreshError::Busy),
        };
        let batch = std::mem::take(&mut *self.lock());
        if batch.is_empty() {
            drop(held); // ours is in a batch being written
        } else {
            let pool = pool.clone();
            let _ = tokio::spawn(async move {
                let _held = held;
                write_rotations(&pool, batch).await;
            })
            .await;
        }
        answer.await.unwrap_or_else(busy)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rotation>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Writes `batch` in one transaction, in session-id order (as `record_uses` and
/// `change_password` take rows), and answers each rotation. When a statement is refused, each
/// rotation is tried again on its own, so the refusal answers only its own; when the database
/// cannot be reached, every rotation gets that one error at once.
async fn write_rotations(pool: &Pool, mut batch: Vec<Rotation>) {
    // Dropped before its turn: nobody would get the new token.
    batch.retain(|r| !r.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    batch.sort_by_key(|r| r.id); // stable: one session's rotations keep their order
    let (max, _) = crate::store::dialect(pool).max_min();
    let sql = format!(
        "UPDATE sessions SET generation = generation + 1, \
         confirmed_generation = {max}(confirmed_generation, generation), \
         rotated_at = $1, last_used_at = $2, access_exp = {max}(access_exp, $3), address = $4 \
         WHERE id = $5 AND generation = $6 AND revoked_at IS NULL RETURNING {COLUMNS}"
    );
    let rotate = |r: &Rotation| {
        sqlx::query_as::<_, Session>(&sql)
            .bind(r.now)
            .bind(r.now)
            .bind(r.token_exp)
            .bind(r.address.clone())
            .bind(r.id.as_bytes().to_vec())
            .bind(r.generation)
    };
    if batch.len() > 1 {
        let written: Result<Vec<Option<Session>>, sqlx::Error> = async {
            let mut tx = pool.begin().await?;
            let mut results = Vec::with_capacity(batch.len());
            for r in &batch {
                results.push(rotate(r).fetch_optional(&mut *tx).await?);
            }
            tx.commit().await?;
            Ok(results)
        }
        .await;
        match written {
            Ok(results) => {
                for (r, result) in batch.into_iter().zip(results) {
                    let _ = r.reply.send(Ok(result));
                }
                return;
            }
            Err(e @ sqlx::Error::Database(_)) => {
                tracing::warn!(error = %e, rotations = batch.len(),
                    "a batch of rotations was refused: each is tried on its own");
            }
            Err(e) => {
                let e = std::sync::Arc::new(e);
                for r in batch {
                    let _ = r.reply.send(Err(RefreshError::Db(e.clone())));
                }
                return;
            }
        }
    }
    for r in batch {
        let result = rotate(&r).fetch_optional(pool).await;
        let _ = r.reply.send(result.map_err(RefreshError::from));
    }
}

/// Ends session `id` (of `user_id`, when given) in `tx`: its id and `access_exp` when it was
/// live.
async fn end_one_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: Uuid,
    user_id: Option<i64>,
    reason: EndReason,
    now: i64,
) -> Result<Option<(Vec<u8>, i64)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE id = $3 AND revoked_at IS NULL AND ($4 IS NULL OR user_id = $5) \
         RETURNING id, access_exp",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(id.as_bytes().as_slice())
    .bind(user_id)
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await
}

/// What signing out with a refresh token alone did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedByToken {
    /// The session of this user ended.
    Ended(i64),
    /// Genuine, but its session had already ended.
    AlreadyOver,
    /// Malformed, forged, or naming no session.
    NotGenuine,
}

/// A live session and the expiry of the access token to issue for it now (never past the
/// session's own end).
#[derive(Clone, PartialEq, Eq)]
pub struct Current {
    pub session: Session,
    pub token_exp: i64,
    /// The refresh token of the session's current generation.
    refresh_token: String,
}

/// The refresh token is never printed (tests print what they compare).
impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("session", &self.session)
            .field("token_exp", &self.token_exp)
            .finish_non_exhaustive()
    }
}

impl Current {
    pub fn refresh_token(&self) -> String {
        self.refresh_token.clone()
    }

    pub fn id(&self) -> Uuid {
        self.session.id.0
    }

    pub fn generation(&self) -> i64 {
        self.session.generation
    }
}

/// The sessions table and the in-memory set of ended sessions.
#[derive(Debug)]
pub struct Sessions {
    pool: Pool,
    /// The statements of the use cases that span tables (see [`crate::store::accounts`]).
    store: crate::store::Store,
    lifetimes: Lifetimes,
    /// The server's part of every refresh token.
    secret: RefreshSecret,
    /// Rotations allowed per address and per session.
    refresh_limits: super::throttle::RefreshLimits,
    /// Genuine refresh tokens whose session's allowance is spent, until when: presented again
    /// meanwhile, they are refused before any read (a crowd replaying one token costs memory
    /// look-ups). Only tokens whose MAC was checked enter, so a forged one never answers for
    /// a genuine one.
    throttled: Bounded<String, std::time::Instant>,
    /// Ended sessions whose access tokens may not all have expired: id → the latest `exp`.
    /// A std lock, never held across an await.
    ended: RwLock<HashMap<Uuid, i64>>,
    /// Per session: when `last_used_at` was last written, and the newest generation known to
    /// have reached its holder — to write either only when it changes (once a minute at most).
    touched: std::sync::Arc<Bounded<Uuid, (i64, i64)>>,
    /// The uses `touched` decided to write, on their way to the database.
    uses: std::sync::Arc<Uses>,
    /// Taken around every write to the sessions table. SQLite has one writer at a time; writers
    /// that collide inside SQLite wait in its busy handler, which sleeps in steps of up to
    /// 100 ms (measured: rotation p99 164 ms at 16 connections). Queued here instead, each
    /// write waits only for the ones before it.
    write: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Rotations waiting for `write`, written together.
    rotations: Rotations,
}

impl Sessions {
    /// Loads the ended sessions whose access tokens could still be presented.
    pub async fn load(
        pool: Pool,
        lifetimes: Lifetimes,
        secret: RefreshSecret,
    ) -> Result<Self, sqlx::Error> {
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, access_exp FROM sessions WHERE revoked_at IS NOT NULL AND access_exp >= $1",
        )
        .bind(super::jwt::now_unix() - LEEWAY_SECS as i64)
        .fetch_all(&pool)
        .await?;
        let ended = rows
            .into_iter()
            .filter_map(|(id, exp)| Some((Uuid::from_slice(&id).ok()?, exp)))
            .collect();
        Ok(Self {
            store: crate::store::Store::new(pool.clone()),
            pool,
            lifetimes,
            secret,
            refresh_limits: Default::default(),
            throttled: Bounded::new(THROTTLED_TOKENS),
            ended: RwLock::new(ended),
            touched: std::sync::Arc::new(Bounded::new(super::cache::DEFAULT_ENTRIES)),
            uses: Default::default(),
            write: Default::default(),
            rotations: Default::default(),
        })
    }

    /// Remembers the last write of at most `entries` sessions (`HOT_CACHE_ENTRIES`). A session
    /// it has forgotten is written again at its next use, so 0 writes at every use.
    pub fn with_cache(mut self, entries: usize) -> Self {
        self.touched = std::sync::Arc::new(Bounded::new(entries));
        self
    }

    /// Limits on rotations other than the default ones (turned off for load tests).
    pub fn with_refresh_limits(mut self, limits: super::throttle::RefreshLimits) -> Self {
        self.refresh_limits = limits;
        self
    }

    pub fn refresh_limits(&self) -> &super::throttle::RefreshLimits {
        &self.refresh_limits
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

    pub(crate) fn remember_ended(&self, ended: impl IntoIterator<Item = (Vec<u8>, i64)>) {
        let mut set = self
            .ended
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, exp) in ended {
            if let Ok(id) = Uuid::from_slice(&id) {
                set.insert(id, exp);
            }
        }
    }

    fn current(&self, session: Session, token_exp: i64) -> Current {
        Current {
            refresh_token: encode(&self.secret, &session),
            session,
            token_exp,
        }
    }

    /// The shortest life an access token answered to the previous refresh token may have
    /// without a write: a minute, or half an access lifetime when tokens live shorter.
    fn min_grace_life(&self) -> i64 {
        (secs(self.lifetimes.access) / 2).min(60)
    }

    /// The expiry of an access token issued at `now` for a session ending at `expires_at`.
    fn token_exp(&self, now: i64, expires_at: i64) -> i64 {
        now.saturating_add(secs(self.lifetimes.access))
            .min(expires_at)
    }

    /// Starts a session for `user_id`, who has just proved who they are (see [`crate::authn`])
    /// with credentials whose stamp was `stamp`. Written only if that is still the account's
    /// stamp ([`Store::start_session`](crate::store::Store::start_session)): a sign-in whose
    /// check was running while the password changed or the account was deleted starts nothing,
    /// and gets `None`.
    pub async fn create(
        &self,
        user_id: i64,
        stamp: crate::credentials::CredentialStamp,
        user_agent: &str,
        address: Option<IpAddr>,
        now: i64,
    ) -> Result<Option<Current>, WriteError> {
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
        };
        let _write = lock_write(&self.write).await?;
        if !self
            .store
            .start_session(&session, stamp)
            .await
            .map_err(not_written)?
        {
            return Ok(None);
        }
        self.touched.insert(id, (now, 1));
        Ok(Some(self.current(session, token_exp)))
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<Session>, sqlx::Error> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"))
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
    }

    /// Rotates a refresh token. The outcomes, for a token whose MAC is right:
    ///
    /// | presented generation | session | answer |
    /// |---|---|---|
    /// | any | ended / expired or idle | `Ended` / `Expired` |
    /// | the current one | live | rotated: the generation moves on (compare-and-swap) |
    /// | the one before | live, rotated less than `reuse` ago | the current pair (two tabs at once) |
    /// | the one before | live, the current one not yet seen in use, rotated less than an access lifetime ago | the current pair (the answer of the last rotation may have been lost) |
    /// | any other | live | `Reused`: the session is ended |
    ///
    /// The current generation "reached its holder" once it is presented or an access token
    /// issued with it is used ([`touch`](Self::touch)).
    ///
    /// Only a rotation and a reuse write. The previous token presented again is answered from
    /// what was read, so a crowd replaying it costs reads, never a turn at the write lock that
    /// sign-ins and sign-outs queue on. Before any of it, the address's allowance is counted,
    /// then (once the MAC shows the token is genuine, so nobody can spend another's) the
    /// session's: `Throttled` changes nothing and ends nothing.
    pub async fn rotate(
        &self,
        token: &str,
        address: Option<IpAddr>,
        now: i64,
    ) -> Result<Current, RefreshError> {
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
            if session.revoked_at.is_some() {
                return Err(RefreshError::Ended);
            }
            if !session.is_live(now, &self.lifetimes) {
                return Err(RefreshError::Expired);
            }
            let token_exp = self.token_exp(now, session.expires_at);
            let is_current = presented.generation == session.generation;
            let since = now - session.rotated_at;
            let within_grace = (0..=secs(self.lifetimes.reuse)).contains(&since);
            // Not yet seen in use, and rotated no longer ago than an access token lives: the
            // answer that carried it may have been lost. (Unbounded, this would let whoever
            // holds the previous token follow a session that is renewed without its new pair
            // being used, rotation after rotation.)
            let undelivered = session.confirmed_generation < session.generation
                && (0..=secs(self.lifetimes.access)).contains(&since);
            let is_previous =
                presented.generation + 1 == session.generation && (within_grace || undelivered);
            // Only what answers tokens is counted: an ended session and a reuse are final
            // answers, given whatever the allowance.
            if (is_current || is_previous) && !counted {
                if let Err(refused) = self.refresh_limits.session(&presented.id) {
                    let until =
                        std::time::Instant::now() + Duration::from_secs(refused.retry_after);
                    self.throttled.insert(token.to_owned(), until);
                    return Err(RefreshError::Throttled(refused.retry_after));
                }
                counted = true;
            }
            if is_current {
                let address = address.clone().unwrap_or_else(|| session.address.clone());
                let rotated = self
                    .rotations
                    .submit(&self.pool, &self.write, |reply| Rotation {
                        id: presented.id,
                        generation: presented.generation,
                        now,
                        token_exp,
                        address,
                        reply,
                    })
                    .await?;
                match rotated {
                    Some(session) => {
                        self.touched
                            .insert(presented.id, (now, presented.generation));
                        return Ok(self.current(session, token_exp));
                    }
                    None => continue,
                }
            }
            if is_previous {
                // Ended meanwhile (by this instance, or by another whose revocation reached
                // memory): refused as the next read would.
                if self.is_ended(&presented.id) {
                    return Err(RefreshError::Ended);
                }
                // The current pair, with no write: its access token ends no later than those
                // already issued for this generation (`access_exp`, which the rotation wrote),
                // so an ended session is still remembered for as long as any of them lives.
                let capped = token_exp.min(session.access_exp);
                if capped - now >= self.min_grace_life() {
                    return Ok(self.current(session, capped));
                }
                // So little is left of those tokens' lives that this one would be born
                // expired: `access_exp` is moved on first, a write, on this rare path only.
                let (max, _) = crate::store::dialect(&self.pool).max_min();
                let _write = lock_write(&self.write).await?;
                let done = sqlx::query(&format!(
                    "UPDATE sessions SET access_exp = {max}(access_exp, $1) \
                     WHERE id = $2 AND generation = $3 AND revoked_at IS NULL"
                ))
                .bind(token_exp)
                .bind(presented.id.as_bytes().as_slice())
                .bind(session.generation)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(self.current(session, token_exp));
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
            self.end_one(presented.id, None, EndReason::Reuse, now)
                .await?;
            return Err(RefreshError::Reused);
        }
        Err(RefreshError::Busy)
    }

    /// A password change, all or nothing (see
    /// [`Store::change_password`](crate::store::Store::change_password)): this session renewed
    /// with no grace for its previous refresh token, the password and the credential stamp
    /// replaced, every other session ended. `None` (and nothing changed) when the current
    /// session is no longer live.
    pub(crate) async fn change_password(
        &self,
        user_id: i64,
        current: Uuid,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<Current>, WriteError> {
        let renewal = crate::store::accounts::Renewal {
            now,
            access_until: now.saturating_add(secs(self.lifetimes.access)),
            idle_since: now.saturating_sub(secs(self.lifetimes.idle)),
        };
        let _write = lock_write(&self.write).await?;
        let changed = self
            .store
            .change_password(user_id, current, password_hash, renewal)
            .await
            .map_err(not_written)?;
        let Some(changed) = changed else {
            return Ok(None);
        };
        self.remember_ended(changed.ended);
        let token_exp = self.token_exp(now, changed.session.expires_at);
        Ok(Some(self.current(changed.session, token_exp)))
    }

    /// Deletes account `user_id` with its sessions, all or nothing (see
    /// [`Store::delete_account`](crate::store::Store::delete_account)), then holds every one of
    /// them as ended in memory. `false` when there was no such account. Only through
    /// [`Auth::delete_account`](crate::Auth::delete_account), which forgets the user too.
    pub(crate) async fn delete_account(&self, user_id: i64, now: i64) -> Result<bool, WriteError> {
        let _write = lock_write(&self.write).await?;
        let ended = self
            .store
            .delete_account(user_id, now)
            .await
            .map_err(not_written)?;
        let Some(ended) = ended else {
            return Ok(false);
        };
        self.remember_ended(ended);
        Ok(true)
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

    /// Signing out with an access token, all or nothing: its `jti` goes on the blocklist and
    /// its session ends in one transaction, so a failure leaves both as they were (and a retry
    /// finds the token still good), never a revoked token whose session and refresh token live
    /// on. Memory follows the commit: the caller puts the `jti` in the blocklist's set
    /// ([`Auth::sign_out`](super::Auth::sign_out)). Whether the session was still live.
    pub async fn sign_out(
        &self,
        jti: Uuid,
        user_id: i64,
        token_exp: i64,
        session: Uuid,
        now: i64,
    ) -> Result<bool, WriteError> {
        let _write = lock_write(&self.write).await?;
        let mut tx = self.pool.begin().await?;
        // The session's row first, the revocation second: every writer takes a session's row
        // before the revocations' lock (on PostgreSQL, a trigger takes it until commit), so
        // this one cannot deadlock with another instance ending the same session.
        let ended = end_one_in(&mut tx, session, Some(user_id), EndReason::Logout, now).await?;
        super::blocklist::write_revocation(&mut tx, jti, user_id, token_exp, now).await?;
        tx.commit().await?;
        let found = ended.is_some();
        self.remember_ended(ended);
        Ok(found)
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
        let mut tx = self.pool.begin().await?;
        let ended = end_one_in(&mut tx, id, user_id, reason, now).await?;
        tx.commit().await?;
        let found = ended.is_some();
        self.remember_ended(ended);
        Ok(found)
    }

    /// Ends every live session of `user_id` but `except`. Returns how many ended.
    pub async fn end_all(
        &self,
        user_id: i64,
        except: Option<Uuid>,
        reason: EndReason,
        now: i64,
    ) -> Result<usize, WriteError> {
        let except = except.map(|id| id.as_bytes().to_vec()).unwrap_or_default();
        let _write = lock_write(&self.write).await?;
        let mut tx = self.pool.begin().await?;
        crate::store::accounts::lock_sessions_of(
            &mut tx,
            crate::store::dialect(&self.pool),
            user_id,
        )
        .await?;
        let ended: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE user_id = $3 AND revoked_at IS NULL AND id != $4 \
             RETURNING id, access_exp",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(user_id)
        .bind(except)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let count = ended.len();
        self.remember_ended(ended);
        Ok(count)
    }

    /// Records that an access token of generation `generation` of a session was used at `now`:
    /// `last_used_at` is written at most once a minute, and a generation is marked as having
    /// reached its holder the first time one of its tokens is used. The write is queued and
    /// made by a task of its own, in a batch with the others waiting; it never holds up the
    /// request. When the queue is full the use is dropped, and the next one tries again: the
    /// answer is `false` then, `true` when the use is queued or needs no write.
    pub fn touch(&self, id: Uuid, generation: i64, now: i64) -> bool {
        let known = self.touched.get(&id);
        if known
            .is_some_and(|(at, confirmed)| now - at < TOUCH_EVERY_SECS && generation <= confirmed)
        {
            return true;
        }
        // Unknown here (evicted, or since a restart): any generation past the first may be one
        // to confirm.
        let confirms = known.map_or(generation > 1, |(_, confirmed)| generation > confirmed);
        let confirmed = known.map_or(generation, |(_, c)| c.max(generation));
        // Remembered before it is queued: a failed write that forgets it then comes after.
        self.touched.insert(id, (now, confirmed));
        if !self.uses.add(id, generation, now, confirms) {
            match known {
                Some(before) => self.touched.insert(id, before),
                None => self.touched.remove(&id),
            }
            return false;
        }
        use std::sync::atomic::Ordering;
        if self.uses.writing.swap(true, Ordering::AcqRel) {
            return true; // the task on its way takes this one too
        }
        let (pool, write, uses, touched) = (
            self.pool.clone(),
            self.write.clone(),
            self.uses.clone(),
            self.touched.clone(),
        );
        tokio::spawn(async move {
            let _clear = ClearOnPanic(uses.clone());
            loop {
                // A failure is logged, and forgotten so a later use tries again.
                let _ = uses.write(&pool, &write, &touched).await;
                uses.writing.store(false, Ordering::Release);
                // A use queued after the batch was taken found `writing` still set and left
                // itself to this task: look once more, unless a new task has taken over.
                if uses.is_empty() || uses.writing.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
        true
    }

    /// Writes every use queued so far ([`touch`](Self::touch)) before it returns, waiting for
    /// a batch already being written: at shutdown, and in tests. A use that fails is logged
    /// (and tried again at a later use); the error returned is this call's own.
    pub async fn flush_uses(&self) -> Result<(), sqlx::Error> {
        self.uses
            .write(&self.pool, &self.write, &self.touched)
            .await
    }

    /// Forgets every session's last write: the next use of each is written (tests).
    #[cfg(test)]
    pub(crate) fn forget_touches(&mut self) {
        self.touched = std::sync::Arc::new(Bounded::new(super::cache::DEFAULT_ENTRIES));
    }

    /// Whether a task is writing queued uses (tests).
    #[cfg(test)]
    fn writing(&self) -> bool {
        self.uses.writing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// [`touch`](Self::touch)'s write of one use, made now (tests).
    pub async fn record_use(&self, id: Uuid, generation: i64, now: i64) -> Result<(), sqlx::Error> {
        record_uses(&self.pool, &self.write, &[(id, (now, generation))]).await
    }

    /// The live sessions of `user_id`, most recently used first (the first 500).
    pub async fn list(&self, user_id: i64, now: i64) -> Result<Vec<Session>, sqlx::Error> {
        let idle_since = now.saturating_sub(secs(self.lifetimes.idle));
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND expires_at > $2 AND last_used_at > $3 \
             ORDER BY last_used_at DESC, created_at DESC LIMIT 500"
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
        // On PostgreSQL, rows another instance has locked are left for the next purge: waiting
        // for them while holding the ones already taken (in the table's order, not by id)
        // could deadlock with a writer that takes a user's sessions in id order.
        let skip_locked = match crate::store::dialect(&self.pool) {
            crate::store::Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::store::Dialect::Sqlite => "",
        };
        let _write = self.write.lock().await;
        let gone = sqlx::query(&format!(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE access_exp < $1 \
             AND (revoked_at IS NOT NULL OR expires_at <= $2 OR last_used_at <= $3){skip_locked})"
        ))
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
    use crate::{jwt::now_unix, testing, throttle::RefreshLimits};

    async fn sessions(lifetimes: Lifetimes) -> (tempfile::TempDir, Pool, Sessions) {
        let (dir, pool, _) = testing::auth().await;
        testing::user(&pool, 1, 0).await;
        testing::user(&pool, 2, 0).await;
        // Unlimited: the races below rotate one session far faster than a person would.
        let sessions = Sessions::load(pool.clone(), lifetimes, testing::refresh_secret())
            .await
            .unwrap()
            .with_refresh_limits(RefreshLimits::default().disabled());
        (dir, pool, sessions)
    }

    /// A session of `user` (whose credential stamp `testing::user` leaves at `testing::STAMP`).
    async fn start(s: &Sessions, user: i64, now: i64) -> Current {
        s.create(user, testing::STAMP, "Mozilla/5.0", None, now)
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_rotation_moves_the_generation_on() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let token = first.refresh_token();
        let second = s.rotate(&token, None, now + 60).await.unwrap();
        assert_eq!(second.generation(), 2);
        assert_ne!(second.refresh_token(), token);
        assert_eq!(second.token_exp, now + 60 + 900);
        let third = s
            .rotate(&second.refresh_token(), None, now + 120)
            .await
            .unwrap();
        assert_eq!(third.generation(), 3);
        assert!(!s.is_ended(&first.id()));
    }

    #[tokio::test]
    async fn the_previous_token_within_the_interval_gets_the_current_pair() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let old = first.refresh_token();
        let rotated = s.rotate(&old, None, now + 1).await.unwrap();
        s.record_use(first.id(), rotated.generation(), now + 2)
            .await
            .unwrap();
        // The other tab, 5 s later, with the token the first tab just rotated.
        let again = s.rotate(&old, None, now + 6).await.unwrap();
        assert_eq!(again.generation(), rotated.generation());
        assert_eq!(again.refresh_token(), rotated.refresh_token());
        assert!(!s.is_ended(&first.id()));
        // And the current token still rotates.
        assert!(s
            .rotate(&rotated.refresh_token(), None, now + 7)
            .await
            .is_ok());
    }

    /// A replay of the previous token is answered from what was read: no write, so it is
    /// answered while the write lock is held, the row is untouched, and its access token ends no
    /// later than those already issued for the generation (which an ending remembers).
    #[tokio::test]
    async fn a_replayed_previous_token_writes_nothing() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let old = first.refresh_token();
        let rotated = s.rotate(&old, None, now + 1).await.unwrap();
        let before = s.find(first.id()).await.unwrap().unwrap();
        let held = s.write.clone().lock_owned().await;
        // Within the reuse interval, then as an answer that may have been lost.
        for later in [2, 5, 300] {
            let again =
                tokio::time::timeout(Duration::from_secs(1), s.rotate(&old, None, now + later))
                    .await
                    .expect("answered while the write lock is held")
                    .unwrap();
            assert_eq!(again.refresh_token(), rotated.refresh_token());
            assert!(again.token_exp <= before.access_exp);
            assert!(again.token_exp > now + later);
        }
        drop(held);
        assert_eq!(s.find(first.id()).await.unwrap().unwrap(), before);
        // Ended by another instance, its revocation followed into memory before its row was
        // read here: the replay is refused from memory.
        s.remember_ended([(first.id().as_bytes().to_vec(), now + 900)]);
        assert!(matches!(
            s.rotate(&old, None, now + 302).await,
            Err(RefreshError::Ended)
        ));
    }

    /// Near the end of the pair's access lifetime, an answer with no write would carry a token
    /// born expired: that answer moves `access_exp` on first.
    #[tokio::test]
    async fn a_late_replay_gets_a_token_that_lives() {
        let (_dir, pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let old = first.refresh_token();
        s.rotate(&old, None, now).await.unwrap();
        let late = now + 900 - 10;
        let again = s.rotate(&old, None, late).await.unwrap();
        assert_eq!(again.token_exp, late + 900);
        assert_eq!(stored(&pool, first.id(), "access_exp").await, late + 900);
    }

    /// A write waits for its turn [`WRITE_WAIT`] at most, then is `Busy` with nothing written.
    #[tokio::test]
    async fn a_write_that_cannot_get_its_turn_is_busy_not_queued_forever() {
        let (_dir, pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let held = s.write.clone().lock_owned().await;
        let started = std::time::Instant::now();
        let token = first.refresh_token();
        let (ended, rotated, created, signed_out) = tokio::join!(
            s.end_one(first.id(), None, EndReason::Revoked, now),
            s.rotate(&token, None, now),
            s.create(1, testing::STAMP, "ua", None, now),
            s.sign_out(Uuid::new_v4(), 1, now + 60, first.id(), now),
        );
        let waited = started.elapsed();
        assert!(matches!(ended, Err(WriteError::Busy)), "{ended:?}");
        assert!(matches!(rotated, Err(RefreshError::Busy)), "{rotated:?}");
        assert!(matches!(created, Err(WriteError::Busy)), "{created:?}");
        assert!(
            matches!(signed_out, Err(WriteError::Busy)),
            "{signed_out:?}"
        );
        assert!(
            waited >= WRITE_WAIT && waited < WRITE_WAIT + Duration::from_secs(2),
            "{waited:?}"
        );
        drop(held);
        // Nothing was written, and the abandoned rotation is not made by a later batch either.
        assert!(!s.is_ended(&first.id()));
        let row = s.find(first.id()).await.unwrap().unwrap();
        assert_eq!((row.generation, row.revoked_at), (1, None));
        assert_eq!(s.rotate(&token, None, now).await.unwrap().generation(), 2);
        assert_eq!(generation_in_db(&pool, first.id()).await, 2);
    }

    /// Refreshes of one session beyond its allowance are refused for now and end nothing; a
    /// forged token naming the session spends none of it.
    #[tokio::test]
    async fn a_throttled_refresh_ends_nothing() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let s = s.with_refresh_limits(RefreshLimits::default());
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let forged = encode(&RefreshSecret::derive(&[3; 32]), &first.session);
        for _ in 0..100 {
            assert!(matches!(
                s.rotate(&forged, None, now).await,
                Err(RefreshError::Invalid)
            ));
        }
        let mut current = first.refresh_token();
        for _ in 0..crate::throttle::REFRESH_SESSION_BURST {
            current = s.rotate(&current, None, now).await.unwrap().refresh_token();
        }
        let err = s.rotate(&current, None, now).await.unwrap_err();
        assert!(matches!(err, RefreshError::Throttled(_)), "{err}");
        assert!(!err.session_is_over());
        assert!(!s.is_ended(&first.id()));
        tokio::time::sleep(crate::throttle::REFRESH_SESSION_PERIOD).await;
        assert!(s.rotate(&current, None, now).await.is_ok());
    }

    #[tokio::test]
    async fn reuse_after_the_interval_ends_the_whole_session() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let old = first.refresh_token();
        let current = s.rotate(&old, None, now + 1).await.unwrap();
        // The new pair reached its holder: its access token was used.
        s.record_use(first.id(), current.generation(), now + 2)
            .await
            .unwrap();
        let err = s.rotate(&old, None, now + 12).await.unwrap_err();
        assert!(matches!(err, RefreshError::Reused), "{err}");
        assert!(s.is_ended(&first.id()));
        // The current token is refused too: the session is over for everyone holding it.
        let err = s
            .rotate(&current.refresh_token(), None, now + 13)
            .await
            .unwrap_err();
        assert!(matches!(err, RefreshError::Ended), "{err}");
        let row = s.find(first.id()).await.unwrap().unwrap();
        assert_eq!(row.revoked_reason.as_deref(), Some("reuse"));
    }

    /// The answer of a rotation never reached the browser (closed tab, lost network): it still
    /// holds the previous token, and presenting it later is not theft.
    #[tokio::test]
    async fn a_lost_rotation_answer_is_answered_again_not_taken_for_reuse() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let old = first.refresh_token();
        let lost = s.rotate(&old, None, now + 1).await.unwrap();
        let later = s.rotate(&old, None, now + 600).await.unwrap();
        assert_eq!(later.refresh_token(), lost.refresh_token());
        assert!(!s.is_ended(&first.id()));
        // Once the current pair is in use, the previous token is reuse again.
        s.record_use(first.id(), lost.generation(), now + 601)
            .await
            .unwrap();
        assert!(matches!(
            s.rotate(&old, None, now + 700).await,
            Err(RefreshError::Reused)
        ));
    }

    /// Not forever, though: past an access lifetime, the previous token of a pair never seen
    /// in use is reuse (or a thief holding it could follow the session indefinitely).
    #[tokio::test]
    async fn an_undelivered_pair_is_answered_again_for_an_access_lifetime_only() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let old = first.refresh_token();
        s.rotate(&old, None, now + 1).await.unwrap();
        assert!(matches!(
            s.rotate(&old, None, now + 1 + 901).await,
            Err(RefreshError::Reused)
        ));
    }

    #[tokio::test]
    async fn an_older_generation_is_reuse_even_within_the_interval() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let g1 = first.refresh_token();
        let g2 = s.rotate(&g1, None, now).await.unwrap().refresh_token();
        s.rotate(&g2, None, now).await.unwrap();
        assert!(matches!(
            s.rotate(&g1, None, now).await,
            Err(RefreshError::Reused)
        ));
    }

    #[tokio::test]
    async fn a_clock_stepped_back_is_no_grace() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let old = first.refresh_token();
        let current = s.rotate(&old, None, now + 100).await.unwrap();
        s.record_use(first.id(), current.generation(), now + 100)
            .await
            .unwrap();
        assert!(matches!(
            s.rotate(&old, None, now + 50).await,
            Err(RefreshError::Reused)
        ));
    }

    #[tokio::test]
    async fn forged_and_garbled_tokens_change_nothing() {
        let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let genuine = first.refresh_token();
        // The right session and an old generation, but a MAC made with another session key;
        // then the session's own key and generation (a copy of the database) under another
        // server secret.
        let forged = encode(
            &s.secret,
            &Session {
                generation: 0,
                refresh_key: vec![7; 32],
                ..first.session.clone()
            },
        );
        let copied = encode(&RefreshSecret::derive(&[9; 32]), &first.session);
        let mut flipped = genuine.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        // The shape of tokens before the server's secret went into them: still refused.
        let before = genuine.replacen("rt2.", "rt1.", 1);
        for bad in [
            forged.as_str(),
            copied.as_str(),
            before.as_str(),
            flipped.as_str(),
            "",
            "rt2.",
            "rt2.????",
            "not a token",
            &"rt2.".repeat(1000),
        ] {
            assert!(
                matches!(s.rotate(bad, None, now).await, Err(RefreshError::Invalid)),
                "{bad}"
            );
            assert_eq!(
                s.end_by_refresh_token(bad, EndReason::Logout, now)
                    .await
                    .unwrap(),
                EndedByToken::NotGenuine
            );
        }
        assert!(!s.is_ended(&first.id()));
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
        let idle = start(&s, 1, now).await;
        assert!(matches!(
            s.rotate(&idle.refresh_token(), None, now + 100).await,
            Err(RefreshError::Expired)
        ));
        // Used every 90 s it lives on, but not past its absolute end; access tokens never
        // outlive the session.
        let mut token = start(&s, 1, now).await.refresh_token();
        let mut at = now;
        loop {
            at += 90;
            match s.rotate(&token, None, at).await {
                Ok(next) => {
                    assert!(next.token_exp <= now + 1000);
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
        let first = start(&s, 1, now).await;
        let token = first.refresh_token();
        let racers: Vec<_> = (0..64)
            .map(|_| {
                let (s, token) = (s.clone(), token.clone());
                tokio::spawn(async move { s.rotate(&token, None, now).await })
            })
            .collect();
        let mut tokens = std::collections::HashSet::new();
        for racer in racers {
            let current = racer.await.unwrap().unwrap();
            assert_eq!(current.generation(), 2);
            tokens.insert(current.refresh_token());
        }
        assert_eq!(tokens.len(), 1, "every racer got the same current token");
        assert!(!s.is_ended(&first.id()));
    }

    /// One column of a session's row, as stored.
    async fn stored(pool: &Pool, id: Uuid, column: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT {column} FROM sessions WHERE id = $1"))
            .bind(id.as_bytes().as_slice())
            .fetch_one(pool)
            .await
            .unwrap()
    }

    async fn generation_in_db(pool: &Pool, id: Uuid) -> i64 {
        stored(pool, id, "generation").await
    }

    /// 64 sessions rotating at once are written together (a few transactions), and each gets
    /// its own next generation, on disk when it is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_sessions_rotating_at_once_each_move_on_once() {
        let (_dir, pool, s) = sessions(Lifetimes::default()).await;
        let s = std::sync::Arc::new(s);
        let now = now_unix();
        let mut firsts = Vec::new();
        for i in 0..64 {
            firsts.push(start(&s, 1 + i % 2, now).await);
        }
        let racers: Vec<_> = firsts
            .iter()
            .map(|first| {
                let (s, token) = (s.clone(), first.refresh_token());
                tokio::spawn(async move { s.rotate(&token, None, now + 1).await })
            })
            .collect();
        for (first, racer) in firsts.iter().zip(racers) {
            let current = racer.await.unwrap().unwrap();
            assert_eq!(current.id(), first.id());
            assert_eq!(current.generation(), 2);
            assert_eq!(generation_in_db(&pool, first.id()).await, 2);
            let next = s
                .rotate(&current.refresh_token(), None, now + 2)
                .await
                .unwrap();
            assert_eq!(next.generation(), 3);
        }
        assert!(s.rotations.lock().is_empty());
    }

    /// Rotations of `tokens` started while the write lock is held, let go once all of them
    /// wait in the queue: they are written as one batch.
    async fn rotate_in_one_batch(
        s: &std::sync::Arc<Sessions>,
        tokens: Vec<String>,
        now: i64,
    ) -> Vec<tokio::task::JoinHandle<Result<Current, RefreshError>>> {
        let held = s.write.clone().lock_owned().await;
        let count = tokens.len();
        let racers = tokens
            .into_iter()
            .map(|token| {
                let s = s.clone();
                tokio::spawn(async move { s.rotate(&token, None, now).await })
            })
            .collect();
        while s.rotations.lock().len() < count {
            tokio::task::yield_now().await;
        }
        drop(held);
        racers
    }

    /// A batch whose transaction fails is written again one rotation at a time: the one that
    /// fails gets the error, the others their new generation.
    #[tokio::test]
    async fn one_failing_rotation_fails_only_itself() {
        let (_dir, pool, s) = sessions(Lifetimes::default()).await;
        let s = std::sync::Arc::new(s);
        let now = now_unix();
        let mut firsts = Vec::new();
        for user in [1, 2, 1] {
            firsts.push(start(&s, user, now).await);
        }
        let failing = firsts[1].id();
        sqlx::query(&format!(
            "CREATE TRIGGER refuse_one BEFORE UPDATE ON sessions WHEN OLD.id = X'{}' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            failing.simple()
        ))
        .execute(&pool)
        .await
        .unwrap();
        let tokens = firsts.iter().map(Current::refresh_token).collect();
        let racers = rotate_in_one_batch(&s, tokens, now + 1).await;
        for (first, racer) in firsts.iter().zip(racers) {
            match racer.await.unwrap() {
                Err(RefreshError::Db(e)) if first.id() == failing => {
                    assert!(e.to_string().contains("refused by the test"), "{e}");
                }
                Ok(current) if first.id() != failing => assert_eq!(current.generation(), 2),
                other => panic!("{other:?}"),
            }
            let expected = if first.id() == failing { 1 } else { 2 };
            assert_eq!(generation_in_db(&pool, first.id()).await, expected);
        }
    }

    /// Two tabs rotating one token in the same batch: the first moves the generation on, the
    /// second finds it moved (inside the same transaction) and gets the current pair.
    #[tokio::test]
    async fn one_token_twice_in_a_batch_rotates_once() {
        let (_dir, pool, s) = sessions(Lifetimes::default()).await;
        let s = std::sync::Arc::new(s);
        let now = now_unix();
        let first = start(&s, 1, now).await;
        let tabs = rotate_in_one_batch(&s, vec![first.refresh_token(); 2], now + 1).await;
        let mut tokens = std::collections::HashSet::new();
        for tab in tabs {
            let current = tab.await.unwrap().unwrap();
            assert_eq!(current.generation(), 2);
            tokens.insert(current.refresh_token());
        }
        assert_eq!(tokens.len(), 1);
        assert_eq!(generation_in_db(&pool, first.id()).await, 2);
        assert!(!s.is_ended(&first.id()));
    }

    /// A rotation whose request is dropped while it waits for the write lock is never written:
    /// nobody would get its new token.
    #[tokio::test]
    async fn an_abandoned_rotation_is_not_written_later() {
        let (_dir, pool, s) = sessions(Lifetimes::default()).await;
        let s = std::sync::Arc::new(s);
        let now = now_unix();
        let (abandoned, other) = (start(&s, 1, now).await, start(&s, 2, now).await);
        let held = s.write.clone().lock_owned().await;
        let waiting = {
            let (s, token) = (s.clone(), abandoned.refresh_token());
            tokio::spawn(async move { s.rotate(&token, None, now + 1).await })
        };
        while s.rotations.lock().is_empty() {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        drop(held);
        // The next rotation takes the abandoned one's place in the queue, and skips it.
        let moved = s
            .rotate(&other.refresh_token(), None, now + 1)
            .await
            .unwrap();
        assert_eq!(moved.generation(), 2);
        assert_eq!(generation_in_db(&pool, abandoned.id()).await, 1);
        let current = s
            .rotate(&abandoned.refresh_token(), None, now + 2)
            .await
            .unwrap();
        assert_eq!(
            current.generation(),
            2,
            "the held token is still the current one"
        );
    }

    #[tokio::test]
    async fn ending_is_remembered_across_a_restart_until_access_tokens_expire() {
        let (_dir, pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let mine = start(&s, 1, now).await;
        let other = start(&s, 1, now).await;
        let theirs = start(&s, 2, now).await;
        // Someone else's session is not found by id for user 1.
        assert!(!s
            .end_one(theirs.id(), Some(1), EndReason::Revoked, now)
            .await
            .unwrap());
        assert!(!s.is_ended(&theirs.id()));
        assert_eq!(
            s.end_all(1, Some(mine.id()), EndReason::SignedOutElsewhere, now)
                .await
                .unwrap(),
            1
        );
        assert!(s.is_ended(&other.id()) && !s.is_ended(&mine.id()));
        let listed: Vec<_> = s
            .list(1, now)
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.id.0)
            .collect();
        assert_eq!(listed, [mine.id()]);

        let reloaded = Sessions::load(
            pool.clone(),
            Lifetimes::default(),
            testing::refresh_secret(),
        )
        .await
        .unwrap();
        assert!(reloaded.is_ended(&other.id()));
        assert!(!reloaded.is_ended(&mine.id()));
        // Purged once its last access token has expired.
        assert_eq!(reloaded.purge(other.token_exp).await.unwrap(), 0);
        assert!(reloaded.is_ended(&other.id()));
        assert_eq!(
            reloaded
                .purge(other.token_exp + LEEWAY_SECS as i64 + 1)
                .await
                .unwrap(),
            1
        );
        assert!(!reloaded.is_ended(&other.id()));
        assert!(reloaded.find(other.id()).await.unwrap().is_none());
        assert!(reloaded.find(mine.id()).await.unwrap().is_some());
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

    async fn last_used(pool: &Pool, id: Uuid) -> (i64, i64) {
        (
            stored(pool, id, "last_used_at").await,
            stored(pool, id, "confirmed_generation").await,
        )
    }

    /// A crowd of uses from many tasks at once: the background writer alone (no flush asked
    /// for) writes every one, confirms the generation each session reached, and stops; within
    /// the minute, a session's next use queues nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crowd_of_uses_is_written_by_the_background_writer() {
        let (_dir, pool, s) = sessions(Lifetimes::default()).await;
        let s = std::sync::Arc::new(s);
        let now = now_unix();
        let mut expected = Vec::new();
        for i in 0..600 {
            let current = start(&s, 1 + i % 2, now - 100).await;
            // Half of them rotated once: their generation 2 is confirmed by its first use.
            let generation = if i % 2 == 0 {
                s.rotate(&current.refresh_token(), None, now - 50)
                    .await
                    .unwrap()
                    .generation()
            } else {
                1
            };
            expected.push((current.id(), generation));
        }
        let crowd: Vec<_> = (0..64)
            .map(|t| {
                let (s, expected) = (s.clone(), expected.clone());
                tokio::spawn(async move {
                    for (i, (id, generation)) in expected.iter().enumerate() {
                        // Some tasks still use the previous generation's token.
                        let used = if (i + t) % 3 == 0 { 1 } else { *generation };
                        s.touch(*id, used, now);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for task in crowd {
            task.await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for (id, generation) in &expected {
            loop {
                let found = last_used(&pool, *id).await;
                if found == (now, *generation) {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{id}: {found:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        while s.writing() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never stopped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(s.uses.is_empty());
        // Within the minute, nothing new is queued; a minute on, the next use is written.
        let (first, _) = expected[0];
        s.touch(first, 1, now + 30);
        assert!(s.uses.is_empty());
        s.touch(first, 1, now + TOUCH_EVERY_SECS);
        s.flush_uses().await.unwrap();
        assert_eq!(last_used(&pool, first).await.0, now + TOUCH_EVERY_SECS);
    }

    /// The queue of uses is bounded: a use that finds it full is dropped, not remembered as
    /// written, so the next use of that session queues it again. The first use of a new
    /// generation (which reuse detection reads) still finds room, up to twice the bound.
    #[tokio::test]
    async fn a_full_queue_of_uses_drops_the_use_and_tries_again_next_time() {
        let (_dir, pool, s) = sessions(Lifetimes::default()).await;
        let now = now_unix();
        let mine = start(&s, 1, now - 100).await;
        let rotated = start(&s, 1, now - 100).await;
        let rotated = s
            .rotate(&rotated.refresh_token(), None, now - 50)
            .await
            .unwrap();
        // The single-threaded test runtime runs no writer task until this test waits.
        for _ in 0..PENDING_USES_MAX {
            s.touch(Uuid::new_v4(), 1, now);
        }
        s.touch(mine.id(), 1, now);
        // Still what its creation wrote: not taken for written.
        assert_eq!(s.touched.get(&mine.id()), Some((now - 100, 1)));
        s.touch(rotated.id(), 2, now);
        assert_eq!(s.touched.get(&rotated.id()), Some((now, 2)));
        s.flush_uses().await.unwrap();
        assert_eq!(last_used(&pool, mine.id()).await.0, now - 100);
        assert_eq!(last_used(&pool, rotated.id()).await, (now, 2));
        s.touch(mine.id(), 1, now + 1);
        s.flush_uses().await.unwrap();
        assert_eq!(last_used(&pool, mine.id()).await.0, now + 1);
    }
}
