//! Throttling of failed sign-ins, per account and per client address, and of sign-ups per
//! client address.
//!
//! The rate decisions are [`governor`]'s (GCRA, one state per key in a `DashMap`). Only
//! failures use up the allowance, so people who type their password right are never slowed
//! down, and someone hammering one account (or from one address) does not lock out anyone
//! else. An account may fail [`ACCOUNT_BURST`] times in a row, then once per
//! [`ACCOUNT_PERIOD`]; an address (which several people may share) [`ADDRESS_BURST`] times, then
//! once per [`ADDRESS_PERIOD`]. While either is used up, every attempt — even with the right
//! password — is answered 429 with `Retry-After`, before any password work. A correct password
//! gives the account its whole allowance back (not the address's).
//!
//! Sign-ups cost a password hash and a row each, so an address may create [`SIGNUP_BURST`]
//! accounts in a row, then one per [`SIGNUP_PERIOD`]; here every attempt counts.
//!
//! The one addition to governor is a look that uses no cell ([`Look::Peek`]): before the
//! password is checked we must know whether a failure would still be allowed, without
//! counting the attempt, since it may succeed.

use governor::{
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    nanos::Nanos,
    state::{
        keyed::{DashMapStateStore, ShrinkableKeyedStateStore},
        StateStore,
    },
    Quota, RateLimiter,
};
use std::{
    convert::Infallible,
    hash::{Hash, Hasher},
    net::IpAddr,
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

/// Failures in a row allowed on one account.
pub const ACCOUNT_BURST: u32 = 5;
/// After the burst, one more failure per account is allowed every so often.
pub const ACCOUNT_PERIOD: Duration = Duration::from_secs(60);
/// Failures in a row allowed from one address: several people may share one (NAT, offices).
pub const ADDRESS_BURST: u32 = 20;
/// After the burst, one more failure per address is allowed every so often.
pub const ADDRESS_PERIOD: Duration = Duration::from_secs(15);

/// Sign-up attempts in a row allowed from one address.
pub const SIGNUP_BURST: u32 = 30;
/// After the burst, one more sign-up per address is allowed every so often.
pub const SIGNUP_PERIOD: Duration = Duration::from_secs(10);

/// How the limiter looks at a key: `Take` uses a cell (a failure), `Peek` only asks whether
/// one is left. Keys compare by name alone, so both looks see the same state.
#[derive(Debug, Clone)]
struct Key {
    name: String,
    look: Look,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Take,
    Peek,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// governor's DashMap store, shared with the throttle (which forgets an account on success),
/// and able to answer a [`Look::Peek`] without changing anything.
#[derive(Debug, Clone, Default)]
struct Store(Arc<DashMapStateStore<String>>);

impl StateStore for Store {
    type Key = Key;

    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        match key.look {
            Look::Take => self.0.measure_and_replace(&key.name, f),
            // A key never seen is a fresh state: decide on it without creating an entry.
            Look::Peek if !self.0.contains_key(&key.name) => f(None).map(|(t, _)| t),
            // The store only writes a decision that comes back `Ok`: hand it back as the
            // error, and the state stays as it was.
            Look::Peek => {
                let kept: Result<Infallible, Result<(T, Nanos), E>> =
                    self.0.measure_and_replace(&key.name, |tat| Err(f(tat)));
                match kept {
                    Ok(never) => match never {},
                    Err(decision) => decision.map(|(t, _)| t),
                }
            }
        }
    }
}

impl ShrinkableKeyedStateStore<Key> for Store {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.0)
    }
}

/// One dimension of the throttle (accounts, or addresses).
struct Limiter<C: Clock> {
    limiter: RateLimiter<Key, Store, C, NoOpMiddleware<C::Instant>>,
    store: Store,
}

impl<C: Clock + Clone> Limiter<C> {
    fn new(burst: u32, period: Duration, clock: &C) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let store = Store::default();
        Self {
            limiter: RateLimiter::new(quota, store.clone(), clock.clone()),
            store,
        }
    }

    /// `Ok` when a cell is left (used up by a `Take`, untouched by a `Peek`); otherwise how
    /// long until one is.
    fn look(&self, name: String, look: Look) -> Result<(), Duration> {
        self.limiter
            .check_key(&Key { name, look })
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// How long until a failure would be allowed again; `None` if it would be now.
    fn wait(&self, name: String) -> Option<Duration> {
        self.look(name, Look::Peek).err()
    }

    /// Uses a cell; `Err(wait)` (and nothing used) when none is left.
    fn take(&self, name: String) -> Result<(), Duration> {
        self.look(name, Look::Take)
    }

    fn fail(&self, name: String) {
        // Already used up: the attempt was refused before any work and is not counted again.
        let _ = self.take(name);
    }
}

/// Shared by all requests; lock-free reads and writes (governor's atomics in a DashMap).
pub struct LoginThrottle<C: Clock = DefaultClock> {
    accounts: Limiter<C>,
    addresses: Limiter<C>,
    signups: Limiter<C>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl<C: Clock> std::fmt::Debug for LoginThrottle<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (accounts, addresses) = self.tracked();
        f.debug_struct("LoginThrottle")
            .field("accounts", &accounts)
            .field("addresses", &addresses)
            .field("signup_addresses", &self.signups.limiter.len())
            .finish()
    }
}

fn account_key(username: &str) -> String {
    // Usernames are case-insensitive, so is their throttle.
    username.trim().to_ascii_lowercase()
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl<C: Clock + Clone> LoginThrottle<C> {
    /// A throttle on the given clock (tests use governor's fake one).
    pub fn with_clock(clock: C) -> Self {
        Self {
            accounts: Limiter::new(ACCOUNT_BURST, ACCOUNT_PERIOD, &clock),
            addresses: Limiter::new(ADDRESS_BURST, ADDRESS_PERIOD, &clock),
            signups: Limiter::new(SIGNUP_BURST, SIGNUP_PERIOD, &clock),
        }
    }

    /// A sign-up attempt from `addr`: counted, or `Err(seconds)` while the address has none
    /// left. Without a known address nothing is counted.
    pub fn signup(&self, addr: Option<IpAddr>) -> Result<(), u64> {
        match addr {
            Some(a) => self
                .signups
                .take(a.to_string())
                .map_err(|wait| secs_ceil(wait).max(1)),
            None => Ok(()),
        }
    }

    /// `Err(seconds)` when this account or this address may not fail again yet. Counts nothing.
    pub fn check(&self, username: &str, addr: Option<IpAddr>) -> Result<(), u64> {
        let account = self.accounts.wait(account_key(username));
        let address = addr.and_then(|a| self.addresses.wait(a.to_string()));
        match account.max(address) {
            Some(wait) => Err(secs_ceil(wait).max(1)),
            None => Ok(()),
        }
    }

    /// A wrong password (or an unknown user): uses one cell of the account and of the address.
    pub fn failed(&self, username: &str, addr: Option<IpAddr>) {
        self.accounts.fail(account_key(username));
        if let Some(a) = addr {
            self.addresses.fail(a.to_string());
        }
    }

    /// A correct password: the account's failures are forgiven. The address's are not, so an
    /// attacker cannot reset their address's record by signing in to their own account.
    pub fn succeeded(&self, username: &str) {
        self.accounts.store.0.remove(&account_key(username));
    }
}

impl<C: Clock> LoginThrottle<C> {
    /// Drops the records that are back to a full allowance; run from the periodic purge.
    pub fn forget_stale(&self) {
        for dimension in [&self.accounts, &self.addresses, &self.signups] {
            dimension.limiter.retain_recent();
            dimension.limiter.shrink_to_fit();
        }
    }

    /// Number of accounts and addresses with a record (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        (self.accounts.limiter.len(), self.addresses.limiter.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    fn throttle() -> (FakeRelativeClock, LoginThrottle<FakeRelativeClock>) {
        let clock = FakeRelativeClock::default();
        (clock.clone(), LoginThrottle::with_clock(clock))
    }

    #[test]
    fn an_account_may_fail_its_burst_then_once_per_period() {
        let (clock, t) = throttle();
        for _ in 0..ACCOUNT_BURST {
            assert!(t.check("alice", A).is_ok());
            t.failed("alice", A);
        }
        // Used up: refused from any address, case-insensitively, with the wait until the next.
        assert_eq!(t.check("ALICE", B), Err(ACCOUNT_PERIOD.as_secs()));
        // Another account from another address is not affected.
        assert!(t.check("bob", B).is_ok());
        clock.advance(ACCOUNT_PERIOD / 2);
        assert_eq!(t.check("alice", B), Err(ACCOUNT_PERIOD.as_secs() / 2));
        clock.advance(ACCOUNT_PERIOD / 2);
        assert!(t.check("alice", B).is_ok());
        t.failed("alice", B);
        assert_eq!(t.check("alice", B), Err(ACCOUNT_PERIOD.as_secs()));
    }

    #[test]
    fn checking_counts_nothing() {
        let (_clock, t) = throttle();
        for _ in 0..100 {
            assert!(t.check("carol", A).is_ok());
        }
        assert_eq!(t.tracked(), (0, 0));
    }

    #[test]
    fn an_address_that_tries_many_accounts_is_refused() {
        let (_clock, t) = throttle();
        for i in 0..ADDRESS_BURST {
            t.failed(&format!("user{i}"), A);
        }
        assert!(t.check("someone-new", A).is_err());
        assert!(t.check("someone-new", B).is_ok());
    }

    #[test]
    fn success_forgives_the_account_but_not_the_address() {
        let (_clock, t) = throttle();
        for _ in 0..ACCOUNT_BURST {
            t.failed("dave", A);
        }
        assert!(t.check("dave", B).is_err());
        t.succeeded("Dave");
        assert!(t.check("dave", B).is_ok());
        for i in 0..ADDRESS_BURST {
            t.failed(&format!("x{i}"), A);
        }
        t.succeeded("x0");
        assert!(t.check("x0", A).is_err());
    }

    #[test]
    fn an_address_may_sign_up_its_burst_then_once_per_period() {
        let (clock, t) = throttle();
        for _ in 0..SIGNUP_BURST {
            assert!(t.signup(A).is_ok());
        }
        assert_eq!(t.signup(A), Err(SIGNUP_PERIOD.as_secs()));
        // Refused attempts use nothing up, and other addresses are not affected.
        assert_eq!(t.signup(A), Err(SIGNUP_PERIOD.as_secs()));
        assert!(t.signup(B).is_ok());
        // Failed sign-ins do not touch the sign-up allowance, nor the reverse.
        assert!(t.check("frank", A).is_ok());
        clock.advance(SIGNUP_PERIOD);
        assert!(t.signup(A).is_ok());
        assert!(t.signup(A).is_err());
    }

    #[test]
    fn full_records_are_forgotten() {
        let (clock, t) = throttle();
        t.failed("erin", A);
        assert_eq!(t.tracked(), (1, 1));
        clock.advance(ACCOUNT_PERIOD.max(ADDRESS_PERIOD) * 2);
        t.forget_stale();
        assert_eq!(t.tracked(), (0, 0));
    }
}
