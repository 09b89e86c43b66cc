//! Throttling of sign-in attempts and of sign-ups.
//!
//! The rate decisions are [`governor`]'s (GCRA). Every sign-in attempt is counted *before* any
//! password work, success included (a person does not sign in five times a minute), so a crowd
//! of parallel guesses cannot all reach argon2 before the first one is counted. Three limits
//! answer three attacks:
//!
//! | limit | key | allowance | stops |
//! |---|---|---|---|
//! | pair | (account, address) | [`PAIR_BURST`], then one per [`PAIR_PERIOD`] | guessing one account from one place |
//! | account | account | [`ACCOUNT_BURST`], then one per [`ACCOUNT_PERIOD`] | guessing one account from many places |
//! | address | address | [`ADDRESS_BURST`], then one per [`ADDRESS_PERIOD`] | trying many accounts from one place |
//!
//! The tight limit is the pair, so guesses from elsewhere never lock the owner out at their own
//! address; the account ceiling is high enough that only a distributed attack reaches it. A
//! correct password forgets the pair's record (not the address's: an attacker must not be able
//! to reset their address by signing in to their own account).
//!
//! Sign-ups cost a hash and a row each: an address may create [`SIGNUP_BURST`] accounts in a
//! row, then one per [`SIGNUP_PERIOD`].
//!
//! An IPv6 address is keyed by its /64 (what one host or one customer gets), an IPv4-mapped one
//! as the IPv4 address. Each limit keeps at most a fixed number of records; beyond it the least
//! recently touched one is dropped, so a flood of new keys costs bounded memory.

use governor::{
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    nanos::Nanos,
    state::{keyed::ShrinkableKeyedStateStore, StateStore},
    Quota, RateLimiter,
};
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

/// Attempts in a row allowed on one account from one address.
pub const PAIR_BURST: u32 = 5;
/// After the burst, one more attempt on that account from that address every so often.
pub const PAIR_PERIOD: Duration = Duration::from_secs(60);
/// Attempts in a row allowed on one account from all addresses together.
pub const ACCOUNT_BURST: u32 = 100;
/// After the burst, 100 an hour.
pub const ACCOUNT_PERIOD: Duration = Duration::from_secs(36);
/// Attempts in a row allowed from one address: several people may share one (NAT, offices).
pub const ADDRESS_BURST: u32 = 30;
/// After the burst, one more attempt from the address every so often.
pub const ADDRESS_PERIOD: Duration = Duration::from_secs(10);

/// Sign-up attempts in a row allowed from one address.
pub const SIGNUP_BURST: u32 = 30;
/// After the burst, one more sign-up per address every so often.
pub const SIGNUP_PERIOD: Duration = Duration::from_secs(10);

/// Records kept per limit (about 150 bytes each); beyond it the least recently touched goes.
pub const MAX_KEYS: usize = 100_000;

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

fn account_key(username: &str) -> String {
    // Usernames are case-insensitive, so is their throttle.
    username.trim().to_ascii_lowercase()
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

/// One limit: a governor rate limiter over a bounded store.
struct Limiter<C: Clock> {
    limiter: RateLimiter<String, BoundedStore, C, NoOpMiddleware<C::Instant>>,
    store: BoundedStore,
}

impl<C: Clock + Clone> Limiter<C> {
    fn new(burst: u32, period: Duration, clock: &C, capacity: usize) -> Self {
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

/// Shared by all requests.
pub struct Throttle<C: Clock = DefaultClock> {
    /// Off only for load tests (`LOGIN_THROTTLE=off`, refused in production).
    enabled: bool,
    pairs: Limiter<C>,
    accounts: Limiter<C>,
    addresses: Limiter<C>,
    signups: Limiter<C>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::with_clock(DefaultClock::default(), MAX_KEYS)
    }
}

impl<C: Clock> std::fmt::Debug for Throttle<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("enabled", &self.enabled)
            .field("records", &self.tracked())
            .finish()
    }
}

/// An attempt refused by one of the limits, and how long until it would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: u64,
}

impl<C: Clock + Clone> Throttle<C> {
    /// A throttle on the given clock (tests use governor's fake one), keeping at most
    /// `capacity` records per limit.
    pub fn with_clock(clock: C, capacity: usize) -> Self {
        Self {
            enabled: true,
            pairs: Limiter::new(PAIR_BURST, PAIR_PERIOD, &clock, capacity),
            accounts: Limiter::new(ACCOUNT_BURST, ACCOUNT_PERIOD, &clock, capacity),
            addresses: Limiter::new(ADDRESS_BURST, ADDRESS_PERIOD, &clock, capacity),
            signups: Limiter::new(SIGNUP_BURST, SIGNUP_PERIOD, &clock, capacity),
        }
    }

    /// A throttle that lets everything through, for load tests of the password path.
    pub fn disabled(self) -> Self {
        Self {
            enabled: false,
            ..self
        }
    }

    /// A sign-in attempt on `username` from `addr`, counted now, before any password work.
    /// `username` must already be a valid name (see `validate::username`).
    ///
    /// The address is asked first: an address that is refused creates no record for the
    /// accounts it names.
    pub fn sign_in(&self, username: &str, addr: Option<IpAddr>) -> Result<(), Refused> {
        if !self.enabled {
            return Ok(());
        }
        let address = addr.map_or_else(|| "unknown".to_string(), address_key);
        let account = account_key(username);
        self.addresses
            .take(address.clone())
            .and_then(|()| self.pairs.take(format!("{account} {address}")))
            .and_then(|()| self.accounts.take(account))
            .map_err(|retry_after| Refused { retry_after })
    }

    /// A correct password: this pair's attempts are forgiven (not the account's ceiling, nor
    /// the address's).
    pub fn signed_in(&self, username: &str, addr: Option<IpAddr>) {
        let address = addr.map_or_else(|| "unknown".to_string(), address_key);
        self.pairs
            .store
            .forget(&format!("{} {address}", account_key(username)));
    }

    /// A sign-up attempt from `addr`: counted, or refused while the address has none left.
    pub fn sign_up(&self, addr: Option<IpAddr>) -> Result<(), Refused> {
        if !self.enabled {
            return Ok(());
        }
        let address = addr.map_or_else(|| "unknown".to_string(), address_key);
        self.signups
            .take(address)
            .map_err(|retry_after| Refused { retry_after })
    }
}

impl<C: Clock> Throttle<C> {
    /// Drops the records that are back to a full allowance; run from the periodic purge.
    pub fn forget_stale(&self) {
        for limit in [&self.pairs, &self.accounts, &self.addresses, &self.signups] {
            limit.limiter.retain_recent();
            limit.limiter.shrink_to_fit();
        }
    }

    /// Records held: (pairs, accounts, addresses, sign-up addresses).
    pub fn tracked(&self) -> (usize, usize, usize, usize) {
        (
            self.pairs.limiter.len(),
            self.accounts.limiter.len(),
            self.addresses.limiter.len(),
            self.signups.limiter.len(),
        )
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
        Self {
            enabled: true,
            addresses: Limiter::new(
                REFRESH_ADDRESS_BURST,
                REFRESH_ADDRESS_PERIOD,
                &clock,
                capacity,
            ),
            sessions: Limiter::new(
                REFRESH_SESSION_BURST,
                REFRESH_SESSION_PERIOD,
                &clock,
                capacity,
            ),
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

    fn v4(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    fn throttle() -> (FakeRelativeClock, Throttle<FakeRelativeClock>) {
        let clock = FakeRelativeClock::default();
        (clock.clone(), Throttle::with_clock(clock, MAX_KEYS))
    }

    #[test]
    fn a_pair_may_try_its_burst_then_once_per_period() {
        let (clock, t) = throttle();
        for _ in 0..PAIR_BURST {
            assert!(t.sign_in("alice", v4(1)).is_ok());
        }
        // Used up, case-insensitively, with the wait until the next.
        assert_eq!(
            t.sign_in("ALICE", v4(1)),
            Err(Refused {
                retry_after: PAIR_PERIOD.as_secs()
            })
        );
        // The same account from another address is not affected: the owner can still sign in.
        assert!(t.sign_in("alice", v4(2)).is_ok());
        clock.advance(PAIR_PERIOD / 2);
        assert_eq!(
            t.sign_in("alice", v4(1)).map_err(|r| r.retry_after),
            Err(PAIR_PERIOD.as_secs() / 2)
        );
        clock.advance(PAIR_PERIOD / 2);
        assert!(t.sign_in("alice", v4(1)).is_ok());
        assert!(t.sign_in("alice", v4(1)).is_err());
    }

    #[test]
    fn an_account_has_a_ceiling_across_addresses() {
        let (_clock, t) = throttle();
        // A distributed attack: each address stays inside its pair allowance.
        let mut allowed = 0;
        for i in 0..=u8::MAX {
            for _ in 0..PAIR_BURST {
                if t.sign_in("target", v4(i)).is_ok() {
                    allowed += 1;
                }
            }
        }
        assert_eq!(allowed, ACCOUNT_BURST);
        // Every address is now refused on that account, and nobody else is affected.
        assert!(t
            .sign_in("target", Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))))
            .is_err());
        assert!(t.sign_in("bystander", v4(1)).is_ok());
    }

    #[test]
    fn an_address_that_tries_many_accounts_is_refused() {
        let (_clock, t) = throttle();
        for i in 0..ADDRESS_BURST {
            assert!(t.sign_in(&format!("user{i}"), v4(1)).is_ok());
        }
        assert!(t.sign_in("someone-new", v4(1)).is_err());
        assert!(t.sign_in("someone-new", v4(2)).is_ok());
        // The refused attempt created no record for the account it named.
        assert_eq!(t.tracked().1, ADDRESS_BURST as usize + 1);
    }

    #[test]
    fn success_forgives_the_pair_only() {
        let (_clock, t) = throttle();
        for _ in 0..PAIR_BURST {
            t.sign_in("dave", v4(1)).unwrap();
        }
        assert!(t.sign_in("dave", v4(1)).is_err());
        t.signed_in("Dave", v4(1));
        assert!(t.sign_in("dave", v4(1)).is_ok());
        // The address's count is kept.
        for i in 0..ADDRESS_BURST {
            let _ = t.sign_in(&format!("x{i}"), v4(3));
        }
        t.signed_in("x0", v4(3));
        assert!(t.sign_in("x0", v4(3)).is_err());
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

        // One host rotating through its /64 is one address.
        let (_clock, t) = throttle();
        for i in 0..SIGNUP_BURST {
            let addr = Ipv6Addr::from(
                u128::from(Ipv6Addr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, 0]))
                    + u128::from(i) * 7919,
            );
            assert!(t.sign_up(Some(IpAddr::V6(addr))).is_ok());
        }
        assert!(t.sign_up(Some(b)).is_err());
        assert!(t.sign_up(Some(other)).is_ok());
    }

    #[test]
    fn an_address_may_sign_up_its_burst_then_once_per_period() {
        let (clock, t) = throttle();
        for _ in 0..SIGNUP_BURST {
            assert!(t.sign_up(v4(1)).is_ok());
        }
        assert_eq!(
            t.sign_up(v4(1)).map_err(|r| r.retry_after),
            Err(SIGNUP_PERIOD.as_secs())
        );
        assert!(t.sign_up(v4(2)).is_ok());
        // Sign-ins have their own allowance.
        assert!(t.sign_in("frank", v4(1)).is_ok());
        clock.advance(SIGNUP_PERIOD);
        assert!(t.sign_up(v4(1)).is_ok());
        assert!(t.sign_up(v4(1)).is_err());
    }

    #[test]
    fn memory_is_bounded_and_the_least_recent_record_goes_first() {
        let clock = FakeRelativeClock::default();
        let t = Throttle::with_clock(clock, 100);
        // An attacker hammers one pair, then floods the throttle with new names from many
        // addresses; the hammered record, touched again and again, survives the flood.
        for _ in 0..PAIR_BURST {
            t.sign_in("victim", v4(1)).unwrap();
        }
        for i in 0..1000u32 {
            let addr = Some(IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i)));
            let _ = t.sign_in(&format!("name{i}"), addr);
            if i % 50 == 0 {
                assert!(t.sign_in("victim", v4(1)).is_err(), "forgotten at {i}");
            }
        }
        let (pairs, accounts, addresses, _) = t.tracked();
        assert!(pairs <= 100 && accounts <= 100 && addresses <= 100);
        // The oldest of the flood are gone, the newest kept.
        assert!(t.pairs.store.lock().map.contains_key("name999 10.1.3.231"));
        assert!(!t.pairs.store.lock().map.contains_key("name0 10.1.0.0"));
    }

    #[test]
    fn full_records_are_forgotten() {
        let (clock, t) = throttle();
        t.sign_in("erin", v4(1)).unwrap();
        t.sign_up(v4(1)).unwrap();
        assert_eq!(t.tracked(), (1, 1, 1, 1));
        clock.advance(PAIR_PERIOD.max(ACCOUNT_PERIOD).max(ADDRESS_PERIOD) * 2);
        t.forget_stale();
        assert_eq!(t.tracked(), (0, 0, 0, 0));
        assert!(t.pairs.store.lock().order.is_empty());
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
