//! Throttling of sign-in attempts, of the password checks a signed-in person makes, and of
//! sign-ups.
//!
//! The rate decisions are GCRA's (the generic cell rate algorithm): [`governor`]'s in memory,
//! the same formula in one SQL statement when the limits are shared (below). Every sign-in
//! attempt is counted *before* any password work, success included (a person does not sign in
//! five times a minute), so a crowd of parallel guesses cannot all reach argon2 before the first
//! one is counted. The limits, each answering one attack:
//!
//! | limit | key | allowance | stops |
//! |---|---|---|---|
//! | address | address | [`ADDRESS_BURST`], then one per [`ADDRESS_PERIOD`] | trying many accounts from one place |
//! | pair | (account, address) | [`PAIR_BURST`], then one per [`PAIR_PERIOD`] | guessing one account from one place |
//! | account | account | [`ACCOUNT_BURST`], then one per [`ACCOUNT_PERIOD`] | guessing one account from many places |
//! | device | a device proof | [`DEVICE_BURST`], then one per [`DEVICE_PERIOD`] | guessing through a stolen device proof |
//! | device trust | a device proof | [`DEVICE_FAILURES`], then one per [`DEVICE_DISTRUST_PERIOD`] | the same, for longer |
//! | session | a session | [`SESSION_BURST`], then one per [`SESSION_PERIOD`] | guessing the password with a stolen session |
//!
//! A sign-in is counted on its address first (an address that is refused creates no record for
//! the accounts it names), then on one of two paths (OWASP's *device cookies*):
//!
//! - **A known device**, one that presents a valid proof of an earlier sign-in to this very
//!   account ([`super::device`]), counts on that device's own allowance and nothing else: the
//!   pair and the account-wide ceiling, which a distributed attack can drain, never refuse it,
//!   so nobody can keep the owner out from elsewhere. Wrong guesses through a proof count on it
//!   too; after [`DEVICE_FAILURES`] attempts with no success between, the proof is no longer
//!   trusted (the attempt goes the second way) until the device-trust allowance refills.
//! - **An unknown device** (no proof, an invalid one, one for another account, or one no longer
//!   trusted) counts on the pair, then on the account-wide ceiling.
//!
//! A correct password forgives the path it took (the pair, or the device's records), never the
//! address's (an attacker must not be able to reset their address by signing in to their own
//! account). The password checks of a signed-in person (changing the password, deleting the
//! account) are counted per session, not on the account or the address: an attack on the
//! account cannot stop its owner from changing the password.
//!
//! Sign-ups cost a hash and a row each: an address may create [`SIGNUP_BURST`] accounts in a
//! row, then one per [`SIGNUP_PERIOD`].
//!
//! An IPv6 address is keyed by its /64 (what one host or one customer gets), an IPv4-mapped one
//! as the IPv4 address.
//!
//! **Where the counts live.** In memory on SQLite (one instance): each limit keeps at most
//! [`MAX_KEYS`] records, beyond which the least recently touched one is dropped, so a flood of
//! new keys costs bounded memory. On PostgreSQL, where several instances serve one database,
//! in an `UNLOGGED` table that every instance shares ([`Shared`]): one upsert per limit and
//! attempt decides and records at once, on the database's clock, so N instances give no more
//! guesses than one. A failure of that table refuses the attempt (`503`, see
//! [`Throttled::Unavailable`]) rather than count it in one instance's memory.

use governor::{
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    nanos::Nanos,
    state::{keyed::ShrinkableKeyedStateStore, StateStore},
    Quota, RateLimiter,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use super::device::DeviceId;

/// Attempts in a row allowed on one account from one address.
pub const PAIR_BURST: u32 = 5;
/// After the burst, one more attempt on that account from that address every so often.
pub const PAIR_PERIOD: Duration = Duration::from_secs(60);
/// Attempts in a row allowed on one account from all unknown devices together.
pub const ACCOUNT_BURST: u32 = 100;
/// After the burst, 100 an hour.
pub const ACCOUNT_PERIOD: Duration = Duration::from_secs(36);
/// Attempts in a row allowed from one address: several people may share one (NAT, offices).
pub const ADDRESS_BURST: u32 = 30;
/// After the burst, one more attempt from the address every so often.
pub const ADDRESS_PERIOD: Duration = Duration::from_secs(10);
/// Attempts in a row allowed through one device proof: as a pair's.
pub const DEVICE_BURST: u32 = PAIR_BURST;
/// After the burst, one more attempt through the proof every so often.
pub const DEVICE_PERIOD: Duration = PAIR_PERIOD;
/// Attempts through one device proof with no success between, after which it is not trusted.
pub const DEVICE_FAILURES: u32 = 10;
/// After that, the proof is trusted for one more attempt every so often.
pub const DEVICE_DISTRUST_PERIOD: Duration = Duration::from_secs(3600);
/// Password checks in a row allowed in one session (password change, account deletion).
pub const SESSION_BURST: u32 = PAIR_BURST;
/// After the burst, one more check in that session every so often.
pub const SESSION_PERIOD: Duration = PAIR_PERIOD;

/// Sign-up attempts in a row allowed from one address.
pub const SIGNUP_BURST: u32 = 30;
/// After the burst, one more sign-up per address every so often.
pub const SIGNUP_PERIOD: Duration = Duration::from_secs(10);

/// Records kept per limit in memory (about 150 bytes each); beyond it the least recently
/// touched goes.
pub const MAX_KEYS: usize = 100_000;

/// The longest a shared decision may take before the attempt is refused as unavailable.
pub const SHARED_TIMEOUT: Duration = Duration::from_secs(2);
/// The wait a refusal for that reason asks for.
pub const UNAVAILABLE_RETRY_SECS: u64 = 1;

/// One limit, with its GCRA parameters: the same wherever the counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Address,
    Pair,
    Account,
    Device,
    DeviceTrust,
    Session,
    SignUp,
}

impl Limit {
    pub const ALL: [Self; 7] = [
        Self::Address,
        Self::Pair,
        Self::Account,
        Self::Device,
        Self::DeviceTrust,
        Self::Session,
        Self::SignUp,
    ];

    /// Cells in a row.
    pub fn burst(self) -> u32 {
        match self {
            Self::Address => ADDRESS_BURST,
            Self::Pair => PAIR_BURST,
            Self::Account => ACCOUNT_BURST,
            Self::Device => DEVICE_BURST,
            Self::DeviceTrust => DEVICE_FAILURES,
            Self::Session => SESSION_BURST,
            Self::SignUp => SIGNUP_BURST,
        }
    }

    /// One cell back per period.
    pub fn period(self) -> Duration {
        match self {
            Self::Address => ADDRESS_PERIOD,
            Self::Pair => PAIR_PERIOD,
            Self::Account => ACCOUNT_PERIOD,
            Self::Device => DEVICE_PERIOD,
            Self::DeviceTrust => DEVICE_DISTRUST_PERIOD,
            Self::Session => SESSION_PERIOD,
            Self::SignUp => SIGNUP_PERIOD,
        }
    }

    /// Its name in a shared record's key.
    fn label(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Pair => "pair",
            Self::Account => "account",
            Self::Device => "device",
            Self::DeviceTrust => "device-trust",
            Self::Session => "session",
            Self::SignUp => "sign-up",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The key of a client address: the IPv4 address, or the /64 of an IPv6 one.
pub fn address_key(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        },
    }
}

fn optional_address_key(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| "unknown".to_string(), address_key)
}

fn account_key(username: &str) -> String {
    // Usernames are case-insensitive, so is their throttle.
    username.trim().to_ascii_lowercase()
}

fn pair_key(username: &str, addr: Option<IpAddr>) -> String {
    format!("{} {}", account_key(username), optional_address_key(addr))
}

fn secs_ceil(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}
/// A keyed state store for governor with a fixed number of records, least recently touched
/// dropped first. One mutex: each access is a hash-map update, and every sign-in it guards
/// costs an argon2 hash.
#[derive(Debug, Clone)]
struct BoundedStore {
    records: Arc<Mutex<Records>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Records {
    /// Key → (governor's theoretical arrival time, when last touched).
    map: HashMap<String, (Nanos, u64)>,
    /// When last touched → key: the first entry is the least recently touched.
    order: BTreeMap<u64, String>,
    ticks: u64,
}

impl BoundedStore {
    fn new(capacity: usize) -> Self {
        Self {
            records: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        // The map stays consistent at every step: a panic elsewhere leaves it usable.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn forget(&self, key: &str) {
        let mut r = self.lock();
        if let Some((_, touched)) = r.map.remove(key) {
            r.order.remove(&touched);
        }
    }
}

impl StateStore for BoundedStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut r = self.lock();
        let previous = r.map.get(key).map(|(tat, _)| *tat);
        let decision = f(previous);
        // A refusal changes no allowance and creates no record, but it does mark the record
        // as recently used: a key under attack must not be the one a flood pushes out.
        let tat = match (&decision, previous) {
            (Ok((_, tat)), _) => *tat,
            (Err(_), Some(tat)) => tat,
            (Err(_), None) => return decision.map(|(outcome, _)| outcome),
        };
        r.ticks += 1;
        let tick = r.ticks;
        if let Some((_, touched)) = r.map.insert(key.clone(), (tat, tick)) {
            r.order.remove(&touched);
        }
        r.order.insert(tick, key.clone());
        while r.map.len() > self.capacity {
            let Some((_, oldest)) = r.order.pop_first() else {
                break;
            };
            r.map.remove(&oldest);
        }
        decision.map(|(outcome, _)| outcome)
    }
}

impl ShrinkableKeyedStateStore<String> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let mut r = self.lock();
        let Records { map, order, .. } = &mut *r;
        map.retain(|_, (tat, _)| *tat > drop_below);
        order.retain(|_, key| map.contains_key(key));
    }

    fn shrink_to_fit(&self) {
        self.lock().map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn is_empty(&self) -> bool {
        self.lock().map.is_empty()
    }
}

/// One limit in memory: a governor rate limiter over a bounded store.
struct Limiter<C: Clock> {
    limiter: RateLimiter<String, BoundedStore, C, NoOpMiddleware<C::Instant>>,
    store: BoundedStore,
}

impl<C: Clock + Clone> Limiter<C> {
    fn new(limit: Limit, clock: &C, capacity: usize) -> Self {
        Self::with_quota(limit.burst(), limit.period(), clock, capacity)
    }

    /// `burst` cells in a row, then one per `period`.
    fn with_quota(burst: u32, period: Duration, clock: &C, capacity: usize) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let store = BoundedStore::new(capacity);
        Self {
            limiter: RateLimiter::new(quota, store.clone(), clock.clone()),
            store,
        }
    }

    /// Uses a cell; `Err(seconds until one is back)` (and nothing used) when none is left.
    fn take(&self, key: String) -> Result<(), u64> {
        self.limiter
            .check_key(&key)
            .map_err(|not_until| secs_ceil(not_until.wait_time_from(self.limiter.clock().now())))
    }
}

/// The limits shared by every instance on one PostgreSQL database: a row per key in the
/// `UNLOGGED` table `login_throttle` (migration 0003), holding GCRA's theoretical arrival time
/// on the database's clock (so the instances' own clocks do not matter). An attempt is one
/// statement that decides and records under the row's lock, so two instances' attempts on one
/// key never both take the last cell.
///
/// The keys are stored as a keyed hash (HMAC-SHA256 under a key derived from `JWT_SECRET`,
/// 16 bytes): a name typed at sign-in may be a password typed into the wrong field, and a table
/// that `pg_dump` copies must not hold it, nor the clients' addresses.
pub struct Shared {
    /// The database, and whether it is known to be unreachable (then an attempt is refused at
    /// once, as every other request that needs it is).
    health: std::sync::Arc<crate::store::Health>,
    key: [u8; 32],
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The database's clock in microseconds; one value for the whole statement.
const DB_NOW_US: &str = "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000000)::BIGINT";

impl Shared {
    /// Records in the database of `health` (PostgreSQL), keyed under a key derived from
    /// `secret`.
    pub fn new(health: std::sync::Arc<crate::store::Health>, secret: &[u8]) -> Self {
        Self {
            health,
            key: super::jwt::derive_key(secret, b"authapp throttle key v1"),
        }
    }

    fn row_key(&self, limit: Limit, key: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(limit.label().as_bytes());
        mac.update(&[0]);
        mac.update(key.as_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }

    /// GCRA's emission interval `t` and tolerance `tau` in microseconds, as governor computes
    /// them: one cell per `t`, and `burst` cells in a row (the first plus `tau / t` more).
    fn gcra_us(limit: Limit) -> (i64, i64) {
        let t = i64::try_from(limit.period().as_micros())
            .unwrap_or(i64::MAX / 1024)
            .max(1);
        (t, t * i64::from(limit.burst().max(1) - 1))
    }

    /// Uses a cell of `key` under `limit`; `Ok(Err(seconds until one is back))` when none is left.
    ///
    /// governor's rule, in one upsert: with `tat` the stored theoretical arrival time (now, for
    /// a new key), the attempt is allowed when `now >= tat - tau`, and then `tat` becomes
    /// `max(tat, now) + t`; a refusal changes nothing (but says so in `allowed`, which the same
    /// statement returns). Otherwise the wait is `tat - tau - now`.
    pub async fn take(&self, limit: Limit, key: &str) -> Result<Result<(), u64>, sqlx::Error> {
        let (t, tau) = Self::gcra_us(limit);
        let sql = format!(
            "INSERT INTO login_throttle AS th (key, tat, allowed) \
             VALUES ($1, {DB_NOW_US} + $2, TRUE) \
             ON CONFLICT (key) DO UPDATE SET \
                 allowed = th.tat - $3 <= EXCLUDED.tat - $2, \
                 tat = CASE WHEN th.tat - $3 <= EXCLUDED.tat - $2 \
                            THEN GREATEST(th.tat, EXCLUDED.tat - $2) + $2 \
                            ELSE th.tat END \
             RETURNING allowed, tat, {DB_NOW_US}"
        );
        let (allowed, tat, now): (bool, i64, i64) = sqlx::query_as(&sql)
            .bind(self.row_key(limit, key))
            .bind(t)
            .bind(tau)
            .fetch_one(self.health.pool())
            .await?;
        Ok(if allowed {
            Ok(())
        } else {
            let wait = tat.saturating_sub(tau).saturating_sub(now).max(0);
            Err(secs_ceil(Duration::from_micros(wait.unsigned_abs())))
        })
    }

    /// Forgets `key`'s record under `limit`: a full allowance again.
    pub async fn forget(&self, limit: Limit, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM login_throttle WHERE key = $1")
            .bind(self.row_key(limit, key))
            .execute(self.health.pool())
            .await
            .map(|_| ())
    }

    /// Deletes the records that are back to a full allowance (`tat` passed: the same as no
    /// record); how many.
    pub async fn purge(&self) -> Result<u64, sqlx::Error> {
        sqlx::query(&format!(
            "DELETE FROM login_throttle WHERE tat <= {DB_NOW_US}"
        ))
        .execute(self.health.pool())
        .await
        .map(|done| done.rows_affected())
    }
}

/// Where the counts live.
enum Store<C: Clock> {
    /// This process's memory: one bounded limiter per [`Limit`], in [`Limit::ALL`]'s order.
    Memory(Box<[Limiter<C>; 7]>),
    /// A table every instance shares.
    Shared(Shared),
}

/// Shared by all requests.
pub struct Throttle<C: Clock = DefaultClock> {
    /// Off only for load tests (`LOGIN_THROTTLE=off`, refused in production).
    enabled: bool,
    store: Store<C>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::with_clock(DefaultClock::default(), MAX_KEYS)
    }
}

impl<C: Clock> std::fmt::Debug for Throttle<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match &self.store {
            Store::Memory(_) => "memory",
            Store::Shared(_) => "shared",
        };
        f.debug_struct("Throttle")
            .field("enabled", &self.enabled)
            .field("store", &store)
            .finish()
    }
}

/// Why an attempt was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// One of the limits has no attempt left: `429` with the wait.
    TooMany { retry_after: u64 },
    /// The shared limits could not be read or written in time. The attempt is refused (`503`
    /// with `Retry-After`) rather than counted in this instance's memory alone: that would
    /// quietly give an attacker N times the guesses behind N instances, and a sign-in cannot
    /// succeed without the database anyway (the password hash is read there, the session
    /// written there), so the refusal costs the owner nothing the outage did not.
    Unavailable,
}

/// How a sign-in attempt was counted: what a correct password forgives, and the device whose
/// proof the sign-in renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// On the pair and the account-wide ceiling.
    Unknown,
    /// On this device's own allowance.
    Device(DeviceId),
}

impl Throttle {
    /// Limits shared by every instance on one PostgreSQL database (see [`Shared`]).
    pub fn shared(health: std::sync::Arc<crate::store::Health>, secret: &[u8]) -> Self {
        Self {
            enabled: true,
            store: Store::Shared(Shared::new(health, secret)),
        }
    }
}

impl<C: Clock + Clone> Throttle<C> {
    /// A throttle in memory on the given clock (tests use governor's fake one), keeping at most
    /// `capacity` records per limit.
    pub fn with_clock(clock: C, capacity: usize) -> Self {
        Self {
            enabled: true,
            store: Store::Memory(Box::new(
                Limit::ALL.map(|limit| Limiter::new(limit, &clock, capacity)),
            )),
        }
    }
}

impl<C: Clock + Clone> Throttle<C> {
    /// A throttle that lets everything through, for load tests of the password path.
    pub fn disabled(self) -> Self {
        Self {
            enabled: false,
            ..self
        }
    }

    async fn take(&self, limit: Limit, key: String) -> Result<(), Throttled> {
        let decided = match &self.store {
            Store::Memory(limiters) => limiters[limit.index()].take(key),
            Store::Shared(shared) => {
                if shared.health.is_down() {
                    return Err(Throttled::Unavailable);
                }
                match tokio::time::timeout(SHARED_TIMEOUT, shared.take(limit, &key)).await {
                    Ok(Ok(decided)) => decided,
                    Ok(Err(e)) => {
                        // A connection-level failure marks the database down for everyone.
                        shared.health.observe(&e);
                        tracing::warn!(error = %e, "the shared sign-in limits could not be counted: attempt refused");
                        return Err(Throttled::Unavailable);
                    }
                    Err(_) => {
                        tracing::warn!(
                            "the shared sign-in limits did not answer in time: attempt refused"
                        );
                        return Err(Throttled::Unavailable);
                    }
                }
            }
        };
        decided.map_err(|retry_after| Throttled::TooMany { retry_after })
    }

    /// Forgives `key` under `limit`. On a shared store a failure is logged and otherwise
    /// ignored: the record then keeps what it had used, which only errs on the safe side.
    async fn forget(&self, limit: Limit, key: &str) {
        match &self.store {
            Store::Memory(limiters) => limiters[limit.index()].store.forget(key),
            Store::Shared(shared) => {
                match tokio::time::timeout(SHARED_TIMEOUT, shared.forget(limit, key)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "forgiving a sign-in record failed"),
                    Err(_) => tracing::warn!("forgiving a sign-in record timed out"),
                }
            }
        }
    }

    /// A sign-in attempt from `addr`, counted on the address before anything else, even the
    /// account's look-up: an address that is refused costs nothing more and creates no record
    /// for the accounts it names. Then [`sign_in`](Self::sign_in).
    pub async fn sign_in_from(&self, addr: Option<IpAddr>) -> Result<(), Throttled> {
        if !self.enabled {
            return Ok(());
        }
        self.take(Limit::Address, optional_address_key(addr)).await
    }

    /// A sign-in attempt on `username` from `addr` (already counted by
    /// [`sign_in_from`](Self::sign_in_from)), counted now, before any password work, on the
    /// device's own allowance when `device` is the device of a valid proof for this very account,
    /// else on the pair and the account-wide ceiling. `username` must already be a valid name
    /// (see `validate::username`).
    pub async fn sign_in(
        &self,
        username: &str,
        addr: Option<IpAddr>,
        device: Option<DeviceId>,
    ) -> Result<Via, Throttled> {
        if !self.enabled {
            return Ok(device.map_or(Via::Unknown, Via::Device));
        }
        if let Some(device) = device {
            let key = device.hex();
            self.take(Limit::Device, key.clone()).await?;
            match self.take(Limit::DeviceTrust, key).await {
                Ok(()) => return Ok(Via::Device(device)),
                Err(Throttled::Unavailable) => return Err(Throttled::Unavailable),
                // Too many attempts through this proof with no success: no longer trusted.
                Err(Throttled::TooMany { .. }) => {
                    tracing::info!("a device proof used for too many failed sign-ins: not trusted");
                }
            }
        }
        self.take(Limit::Pair, pair_key(username, addr)).await?;
        self.take(Limit::Account, account_key(username)).await?;
        Ok(Via::Unknown)
    }

    /// A correct password: the attempts of the way it came are forgiven (the pair, or the
    /// device's records), not the account's ceiling, nor the address's.
    pub async fn signed_in(&self, username: &str, addr: Option<IpAddr>, via: Via) {
        match via {
            Via::Unknown => self.forget(Limit::Pair, &pair_key(username, addr)).await,
            Via::Device(device) => {
                let key = device.hex();
                self.forget(Limit::Device, &key).await;
                self.forget(Limit::DeviceTrust, &key).await;
            }
        }
    }

    /// A password check by the signed-in owner of `session` (password change, account
    /// deletion), counted on the session alone, before any password work.
    pub async fn password_check(&self, session: uuid::Uuid) -> Result<(), Throttled> {
        if !self.enabled {
            return Ok(());
        }
        self.take(Limit::Session, session.simple().to_string())
            .await
    }

    /// The session's password check was right: its count is forgiven.
    pub async fn password_checked(&self, session: uuid::Uuid) {
        self.forget(Limit::Session, &session.simple().to_string())
            .await;
    }

    /// A sign-up attempt from `addr`: counted, or refused while the address has none left.
    pub async fn sign_up(&self, addr: Option<IpAddr>) -> Result<(), Throttled> {
        if !self.enabled {
            return Ok(());
        }
        self.take(Limit::SignUp, optional_address_key(addr)).await
    }

    /// Drops the records that are back to a full allowance; run from the periodic purge.
    pub async fn forget_stale(&self) -> Result<u64, sqlx::Error> {
        match &self.store {
            Store::Memory(limiters) => {
                for limit in limiters.iter() {
                    limit.limiter.retain_recent();
                    limit.limiter.shrink_to_fit();
                }
                Ok(0)
            }
            Store::Shared(shared) => shared.purge().await,
        }
    }

    /// Records held in memory under `limit` (0 when the counts are shared).
    pub fn tracked(&self, limit: Limit) -> usize {
        match &self.store {
            Store::Memory(limiters) => limiters[limit.index()].limiter.len(),
            Store::Shared(_) => 0,
        }
    }
}

/// Refreshes in a row allowed from one address (many people may share one).
pub const REFRESH_ADDRESS_BURST: u32 = 300;
/// After the burst, 20 a second from the address.
pub const REFRESH_ADDRESS_PERIOD: Duration = Duration::from_millis(50);
/// Refreshes in a row allowed of one session: a person refreshes once per access lifetime,
/// a few tabs at once at most.
pub const REFRESH_SESSION_BURST: u32 = 16;
/// After the burst, one a second of the session.
pub const REFRESH_SESSION_PERIOD: Duration = Duration::from_secs(1);

/// A refresh refused by one of the [`RefreshLimits`], and how long until it would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: u64,
}

/// Limits on refresh-token rotations, per client address and per session, kept by each
/// instance in memory: what they protect is the instance itself (its database reads and its
/// write lock), not a secret a crowd could guess.
pub struct RefreshLimits<C: Clock = DefaultClock> {
    /// Off with the sign-in limits (`LOGIN_THROTTLE=off`, load tests only).
    enabled: bool,
    addresses: Limiter<C>,
    sessions: Limiter<C>,
}

impl Default for RefreshLimits {
    fn default() -> Self {
        Self::with_clock(DefaultClock::default(), MAX_KEYS)
    }
}

impl<C: Clock> std::fmt::Debug for RefreshLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshLimits")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl<C: Clock + Clone> RefreshLimits<C> {
    pub fn with_clock(clock: C, capacity: usize) -> Self {
        let limiter = |burst, period| Limiter::with_quota(burst, period, &clock, capacity);
        Self {
            enabled: true,
            addresses: limiter(REFRESH_ADDRESS_BURST, REFRESH_ADDRESS_PERIOD),
            sessions: limiter(REFRESH_SESSION_BURST, REFRESH_SESSION_PERIOD),
        }
    }

    /// Limits that let everything through, for load tests.
    pub fn disabled(self) -> Self {
        Self {
            enabled: false,
            ..self
        }
    }

    /// A refresh from `addr`, counted before anything is read.
    pub fn address(&self, addr: Option<IpAddr>) -> Result<(), Refused> {
        if !self.enabled {
            return Ok(());
        }
        let address = addr.map_or_else(|| "unknown".to_string(), address_key);
        self.addresses
            .take(address)
            .map_err(|retry_after| Refused { retry_after })
    }

    /// A refresh of `session`, counted once its token is known to be genuine.
    pub fn session(&self, session: &uuid::Uuid) -> Result<(), Refused> {
        if !self.enabled {
            return Ok(());
        }
        self.sessions
            .take(session.simple().to_string())
            .map_err(|retry_after| Refused { retry_after })
    }
}

impl<C: Clock> RefreshLimits<C> {
    /// Drops the records that are back to a full allowance; run from the periodic purge.
    pub fn forget_stale(&self) {
        for limit in [&self.addresses, &self.sessions] {
            limit.limiter.retain_recent();
            limit.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv4Addr;

    type Fake = Throttle<FakeRelativeClock>;

    fn v4(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    fn throttle() -> (FakeRelativeClock, Fake) {
        let clock = FakeRelativeClock::default();
        (clock.clone(), Throttle::with_clock(clock, MAX_KEYS))
    }

    /// A sign-in attempt as `login` counts it: the address, then the account's path.
    async fn attempt(
        t: &Fake,
        name: &str,
        addr: Option<IpAddr>,
        device: Option<DeviceId>,
    ) -> Result<Via, Throttled> {
        t.sign_in_from(addr).await?;
        t.sign_in(name, addr, device).await
    }

    async fn unknown(t: &Fake, name: &str, addr: Option<IpAddr>) -> Result<Via, Throttled> {
        attempt(t, name, addr, None).await
    }

    fn wait(result: Result<Via, Throttled>) -> Option<u64> {
        match result {
            Err(Throttled::TooMany { retry_after }) => Some(retry_after),
            _ => None,
        }
    }

    /// Uses up `name`'s account-wide ceiling the way a distributed attack does: every address
    /// stays inside its pair allowance. Returns how many attempts got through.
    async fn drain_the_account(t: &Fake, name: &str) -> u32 {
        let mut allowed = 0;
        for i in 0..=u8::MAX {
            for _ in 0..PAIR_BURST {
                let addr = Some(IpAddr::V4(Ipv4Addr::new(10, 9, 0, i)));
                if unknown(t, name, addr).await.is_ok() {
                    allowed += 1;
                }
            }
        }
        allowed
    }

    #[test]
    fn the_limits_are_indexed_in_order() {
        for (i, limit) in Limit::ALL.iter().enumerate() {
            assert_eq!(limit.index(), i, "{limit:?}");
        }
    }

    #[tokio::test]
    async fn a_pair_may_try_its_burst_then_once_per_period() {
        let (clock, t) = throttle();
        for _ in 0..PAIR_BURST {
            assert_eq!(unknown(&t, "alice", v4(1)).await, Ok(Via::Unknown));
        }
        // Used up, case-insensitively, with the wait until the next.
        assert_eq!(
            unknown(&t, "ALICE", v4(1)).await,
            Err(Throttled::TooMany {
                retry_after: PAIR_PERIOD.as_secs()
            })
        );
        // The same account from another address is not affected.
        assert!(unknown(&t, "alice", v4(2)).await.is_ok());
        clock.advance(PAIR_PERIOD / 2);
        assert_eq!(
            wait(unknown(&t, "alice", v4(1)).await),
            Some(PAIR_PERIOD.as_secs() / 2)
        );
        clock.advance(PAIR_PERIOD / 2);
        assert!(unknown(&t, "alice", v4(1)).await.is_ok());
        assert!(unknown(&t, "alice", v4(1)).await.is_err());
    }

    #[tokio::test]
    async fn an_account_has_a_ceiling_across_addresses() {
        let (_clock, t) = throttle();
        assert_eq!(drain_the_account(&t, "target").await, ACCOUNT_BURST);
        // Every unknown device is now refused on that account, and nobody else is affected.
        assert!(
            wait(unknown(&t, "target", Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))).await)
                .is_some()
        );
        assert!(unknown(&t, "bystander", v4(1)).await.is_ok());
    }

    #[tokio::test]
    async fn an_address_that_tries_many_accounts_is_refused() {
        let (_clock, t) = throttle();
        for i in 0..ADDRESS_BURST {
            assert!(unknown(&t, &format!("user{i}"), v4(1)).await.is_ok());
        }
        assert!(unknown(&t, "someone-new", v4(1)).await.is_err());
        assert!(unknown(&t, "someone-new", v4(2)).await.is_ok());
        // The refused attempt created no record for the account it named.
        assert_eq!(t.tracked(Limit::Account), ADDRESS_BURST as usize + 1);
        // A known device is refused at that address too: the address is asked first.
        let device = Some(DeviceId::random());
        assert!(wait(attempt(&t, "user0", v4(1), device).await).is_some());
    }

    #[tokio::test]
    async fn success_forgives_the_pair_only() {
        let (_clock, t) = throttle();
        for _ in 0..PAIR_BURST {
            unknown(&t, "dave", v4(1)).await.unwrap();
        }
        assert!(unknown(&t, "dave", v4(1)).await.is_err());
        t.signed_in("Dave", v4(1), Via::Unknown).await;
        assert!(unknown(&t, "dave", v4(1)).await.is_ok());
        // The address's count is kept.
        for i in 0..ADDRESS_BURST {
            let _ = unknown(&t, &format!("x{i}"), v4(3)).await;
        }
        t.signed_in("x0", v4(3), Via::Unknown).await;
        assert!(unknown(&t, "x0", v4(3)).await.is_err());
    }

    /// The owner's device is counted on its own allowance: a drained account ceiling and a
    /// used-up pair at the owner's own address do not refuse it, and its attempts take nothing
    /// from either.
    #[tokio::test]
    async fn a_known_device_has_its_own_allowance() {
        let (clock, t) = throttle();
        assert_eq!(drain_the_account(&t, "owner").await, ACCOUNT_BURST);
        for _ in 0..PAIR_BURST {
            let _ = unknown(&t, "owner", v4(7)).await;
        }
        assert!(unknown(&t, "owner", v4(7)).await.is_err());
        let (accounts, pairs) = (t.tracked(Limit::Account), t.tracked(Limit::Pair));

        let phone = DeviceId::random();
        for _ in 0..DEVICE_BURST {
            assert_eq!(
                attempt(&t, "owner", v4(7), Some(phone)).await,
                Ok(Via::Device(phone))
            );
        }
        // Its own allowance used up: refused with its own wait.
        assert_eq!(
            wait(attempt(&t, "owner", v4(7), Some(phone)).await),
            Some(DEVICE_PERIOD.as_secs())
        );
        // Another device of the owner's is not affected, nor is the unknown path changed.
        let laptop = DeviceId::random();
        assert_eq!(
            attempt(&t, "owner", v4(8), Some(laptop)).await,
            Ok(Via::Device(laptop))
        );
        assert_eq!(
            (t.tracked(Limit::Account), t.tracked(Limit::Pair)),
            (accounts, pairs)
        );
        // A success forgives the device's records.
        t.signed_in("owner", v4(7), Via::Device(phone)).await;
        assert_eq!(
            attempt(&t, "owner", v4(7), Some(phone)).await,
            Ok(Via::Device(phone))
        );
        clock.advance(DEVICE_PERIOD);
        assert!(attempt(&t, "owner", v4(7), Some(phone)).await.is_ok());
    }

    /// After DEVICE_FAILURES attempts through one proof with no success between, the proof is
    /// not trusted: its attempts are counted as an unknown device's (on the pair and the
    /// ceiling), until the device-trust allowance gives one back.
    #[tokio::test]
    async fn a_device_used_for_too_many_failures_is_no_longer_trusted() {
        let (clock, t) = throttle();
        let stolen = DeviceId::random();
        let mut trusted = 0;
        let mut last = Err(Throttled::Unavailable);
        // The device allowance refills one a minute: the failures go on at that pace.
        for _ in 0..DEVICE_FAILURES * 2 {
            last = attempt(&t, "victim", v4(1), Some(stolen)).await;
            match last {
                Ok(Via::Device(_)) => trusted += 1,
                Ok(Via::Unknown) => break,
                Err(_) => clock.advance(DEVICE_PERIOD),
            }
        }
        assert_eq!(trusted, DEVICE_FAILURES);
        assert_eq!(last, Ok(Via::Unknown));
        assert_eq!(t.tracked(Limit::Pair), 1);
        // So once the account's ceiling is drained, the stolen proof is refused like any
        // unknown device, though its own allowance has an attempt left.
        clock.advance(DEVICE_PERIOD);
        drain_the_account(&t, "victim").await;
        assert_eq!(
            attempt(&t, "victim", v4(1), Some(stolen)).await,
            Err(Throttled::TooMany {
                retry_after: ACCOUNT_PERIOD.as_secs()
            })
        );
        // Trusted again for one attempt once the trust allowance gives one back.
        clock.advance(DEVICE_DISTRUST_PERIOD);
        assert_eq!(
            attempt(&t, "victim", v4(1), Some(stolen)).await,
            Ok(Via::Device(stolen))
        );
        clock.advance(DEVICE_PERIOD);
        assert_eq!(
            attempt(&t, "victim", v4(1), Some(stolen)).await,
            Ok(Via::Unknown)
        );
    }

    /// A signed-in owner's password checks count per session: a drained account does not
    /// refuse them, and one session's checks do not use another's.
    #[tokio::test]
    async fn password_checks_count_per_session() {
        let (clock, t) = throttle();
        drain_the_account(&t, "owner").await;
        let (session, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        for _ in 0..SESSION_BURST {
            assert_eq!(t.password_check(session).await, Ok(()));
        }
        assert_eq!(
            t.password_check(session).await,
            Err(Throttled::TooMany {
                retry_after: SESSION_PERIOD.as_secs()
            })
        );
        assert_eq!(t.password_check(other).await, Ok(()));
        t.password_checked(session).await;
        assert_eq!(t.password_check(session).await, Ok(()));
        clock.advance(SESSION_PERIOD);
        assert_eq!(t.password_check(session).await, Ok(()));
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), "2001:db8:1:2::/64");
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7");
    }

    #[tokio::test]
    async fn one_host_rotating_through_its_64_is_one_address() {
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let (_clock, t) = throttle();
        for i in 0..SIGNUP_BURST {
            let addr = Ipv6Addr::from(
                u128::from(Ipv6Addr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, 0]))
                    + u128::from(i) * 7919,
            );
            assert!(t.sign_up(Some(IpAddr::V6(addr))).await.is_ok());
        }
        assert!(t.sign_up(Some(b)).await.is_err());
        assert!(t.sign_up(Some(other)).await.is_ok());
    }

    #[tokio::test]
    async fn an_address_may_sign_up_its_burst_then_once_per_period() {
        let (clock, t) = throttle();
        for _ in 0..SIGNUP_BURST {
            assert!(t.sign_up(v4(1)).await.is_ok());
        }
        assert_eq!(
            t.sign_up(v4(1)).await,
            Err(Throttled::TooMany {
                retry_after: SIGNUP_PERIOD.as_secs()
            })
        );
        assert!(t.sign_up(v4(2)).await.is_ok());
        // Sign-ins have their own allowance.
        assert!(unknown(&t, "frank", v4(1)).await.is_ok());
        clock.advance(SIGNUP_PERIOD);
        assert!(t.sign_up(v4(1)).await.is_ok());
        assert!(t.sign_up(v4(1)).await.is_err());
    }

    #[tokio::test]
    async fn a_disabled_throttle_lets_everything_through() {
        let (_clock, t) = throttle();
        let t = t.disabled();
        let device = DeviceId::random();
        for _ in 0..ACCOUNT_BURST * 2 {
            assert_eq!(unknown(&t, "load", v4(1)).await, Ok(Via::Unknown));
            assert_eq!(
                attempt(&t, "load", v4(1), Some(device)).await,
                Ok(Via::Device(device))
            );
            assert!(t.sign_up(v4(1)).await.is_ok());
        }
    }

    #[tokio::test]
    async fn memory_is_bounded_and_the_least_recent_record_goes_first() {
        let clock = FakeRelativeClock::default();
        let t = Throttle::with_clock(clock, 100);
        // An attacker hammers one pair, then floods the throttle with new names from many
        // addresses, and new device proofs; the hammered record, touched again and again,
        // survives the flood.
        for _ in 0..PAIR_BURST {
            unknown(&t, "victim", v4(1)).await.unwrap();
        }
        for i in 0..1000u32 {
            let addr = Some(IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i)));
            let _ = unknown(&t, &format!("name{i}"), addr).await;
            let _ = attempt(&t, "victim", addr, Some(DeviceId::random())).await;
            let _ = t.password_check(uuid::Uuid::new_v4()).await;
            if i % 50 == 0 {
                assert!(
                    unknown(&t, "victim", v4(1)).await.is_err(),
                    "forgotten at {i}"
                );
            }
        }
        for limit in Limit::ALL {
            assert!(t.tracked(limit) <= 100, "{limit:?}: {}", t.tracked(limit));
        }
        // The oldest of the flood are gone, the newest kept.
        let Store::Memory(limiters) = &t.store else {
            unreachable!()
        };
        let pairs = limiters[Limit::Pair.index()].store.lock();
        assert!(pairs.map.contains_key("name999 10.1.3.231"));
        assert!(!pairs.map.contains_key("name0 10.1.0.0"));
    }

    #[tokio::test]
    async fn full_records_are_forgotten() {
        let (clock, t) = throttle();
        let device = Some(DeviceId::random());
        unknown(&t, "erin", v4(1)).await.unwrap();
        attempt(&t, "erin", v4(1), device).await.unwrap();
        t.password_check(uuid::Uuid::new_v4()).await.unwrap();
        t.sign_up(v4(1)).await.unwrap();
        for limit in Limit::ALL {
            assert_eq!(t.tracked(limit), 1, "{limit:?}");
        }
        let longest = Limit::ALL.iter().map(|l| l.period()).max().unwrap();
        clock.advance(longest * 2);
        t.forget_stale().await.unwrap();
        for limit in Limit::ALL {
            assert_eq!(t.tracked(limit), 0, "{limit:?}");
        }
        let Store::Memory(limiters) = &t.store else {
            unreachable!()
        };
        assert!(limiters.iter().all(|l| l.store.lock().order.is_empty()));
    }

    #[test]
    fn refreshes_are_limited_per_address_and_per_session() {
        let clock = FakeRelativeClock::default();
        let limits = RefreshLimits::with_clock(clock.clone(), MAX_KEYS);
        for _ in 0..REFRESH_ADDRESS_BURST {
            assert_eq!(limits.address(v4(1)), Ok(()));
        }
        assert_eq!(limits.address(v4(1)), Err(Refused { retry_after: 1 }));
        assert_eq!(
            limits.address(v4(2)),
            Ok(()),
            "another address is not touched"
        );
        clock.advance(REFRESH_ADDRESS_PERIOD);
        assert_eq!(limits.address(v4(1)), Ok(()));

        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        for _ in 0..REFRESH_SESSION_BURST {
            assert_eq!(limits.session(&a), Ok(()));
        }
        assert_eq!(limits.session(&a), Err(Refused { retry_after: 1 }));
        assert_eq!(limits.session(&b), Ok(()), "another session is not touched");
        clock.advance(REFRESH_SESSION_PERIOD);
        assert_eq!(limits.session(&a), Ok(()));

        let off = RefreshLimits::with_clock(clock, MAX_KEYS).disabled();
        for _ in 0..1000 {
            assert_eq!(off.session(&a), Ok(()));
            assert_eq!(off.address(v4(1)), Ok(()));
        }
    }
}
