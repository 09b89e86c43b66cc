//! Throttling of failed sign-ins, per account and per client address.
//!
//! Only failures count, so people who type their password right are never slowed down, and
//! someone hammering one account (or from one address) does not lock out anyone else. After
//! `FREE_FAILURES` failures in a row a key is locked for a delay that doubles with each further
//! failure, up to `MAX_LOCK`; while locked, attempts are answered with 429 and `Retry-After`
//! before any password work. A success clears the account's record. Records not touched for
//! `FORGET_AFTER` are forgotten.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failures allowed before the first lock.
pub const FREE_FAILURES: u32 = 5;
/// The first lock; doubled for each failure after that.
pub const FIRST_LOCK: Duration = Duration::from_secs(15);
/// The longest lock.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// A record untouched this long is dropped (its failures are forgiven).
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Per client address the allowance is larger: several people may share one (NAT, offices).
pub const ADDRESS_FACTOR: u32 = 4;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

#[derive(Debug, Default)]
struct Table {
    records: HashMap<String, Record>,
}

impl Table {
    fn retry_after(&self, key: &str, now: Instant) -> Option<Duration> {
        let until = self.records.get(key)?.locked_until?;
        (until > now).then(|| until - now)
    }

    fn fail(&mut self, key: String, free: u32, now: Instant) {
        let r = self.records.entry(key).or_insert(Record {
            failures: 0,
            locked_until: None,
            last_seen: now,
        });
        if now.duration_since(r.last_seen) > FORGET_AFTER {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last_seen = now;
        if r.failures >= free {
            let doublings = (r.failures - free).min(16);
            let lock = FIRST_LOCK.saturating_mul(1 << doublings).min(MAX_LOCK);
            r.locked_until = Some(now + lock);
        }
    }
}

/// Shared by all requests; a std mutex held only for map operations, never across an await.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    accounts: Mutex<Table>,
    addresses: Mutex<Table>,
}

fn account_key(username: &str) -> String {
    // Usernames are case-insensitive, so is their throttle.
    username.trim().to_ascii_lowercase()
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl LoginThrottle {
    /// `Err(seconds)` when this account or this address is locked right now.
    pub fn check(&self, username: &str, addr: Option<IpAddr>) -> Result<(), u64> {
        self.check_at(username, addr, Instant::now())
    }

    pub fn failed(&self, username: &str, addr: Option<IpAddr>) {
        self.failed_at(username, addr, Instant::now())
    }

    /// A correct password: the account's failures are forgiven. The address's are not, so an
    /// attacker cannot reset their address's record by signing in to their own account.
    pub fn succeeded(&self, username: &str) {
        if let Ok(mut t) = self.accounts.lock() {
            t.records.remove(&account_key(username));
        }
    }

    fn check_at(&self, username: &str, addr: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let account = self
            .accounts
            .lock()
            .ok()
            .and_then(|t| t.retry_after(&account_key(username), now));
        let address = addr.and_then(|a| {
            self.addresses
                .lock()
                .ok()
                .and_then(|t| t.retry_after(&a.to_string(), now))
        });
        match account.max(address) {
            Some(wait) => Err(secs_ceil(wait).max(1)),
            None => Ok(()),
        }
    }

    fn failed_at(&self, username: &str, addr: Option<IpAddr>, now: Instant) {
        if let Ok(mut t) = self.accounts.lock() {
            t.fail(account_key(username), FREE_FAILURES, now);
        }
        if let (Some(a), Ok(mut t)) = (addr, self.addresses.lock()) {
            t.fail(a.to_string(), FREE_FAILURES * ADDRESS_FACTOR, now);
        }
    }

    /// Drops records untouched for [`FORGET_AFTER`]; run from the periodic purge.
    pub fn forget_stale(&self) {
        let now = Instant::now();
        for table in [&self.accounts, &self.addresses] {
            if let Ok(mut t) = table.lock() {
                t.records
                    .retain(|_, r| now.duration_since(r.last_seen) <= FORGET_AFTER);
            }
        }
    }

    /// Number of accounts and addresses with a record (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        let count = |t: &Mutex<Table>| t.lock().map(|t| t.records.len()).unwrap_or(0);
        (count(&self.accounts), count(&self.addresses))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    #[test]
    fn locks_an_account_after_the_free_failures_and_doubles() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            t.failed_at("alice", A, now);
            assert!(t.check_at("alice", A, now).is_ok());
        }
        t.failed_at("alice", A, now);
        assert_eq!(t.check_at("ALICE", B, now), Err(FIRST_LOCK.as_secs()));
        // Another account from another address is not affected.
        assert!(t.check_at("bob", B, now).is_ok());
        // One more failure doubles the lock.
        t.failed_at("alice", A, now);
        assert_eq!(t.check_at("alice", B, now), Err(2 * FIRST_LOCK.as_secs()));
        // The lock ends.
        assert!(t.check_at("alice", B, now + MAX_LOCK).is_ok());
    }

    #[test]
    fn locks_an_address_that_tries_many_accounts() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..FREE_FAILURES * ADDRESS_FACTOR {
            t.failed_at(&format!("user{i}"), A, now);
        }
        assert!(t.check_at("someone-new", A, now).is_err());
        assert!(t.check_at("someone-new", B, now).is_ok());
    }

    #[test]
    fn success_forgives_the_account() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            t.failed_at("carol", A, now);
        }
        t.succeeded("carol");
        t.failed_at("carol", A, now);
        assert!(t.check_at("carol", A, now).is_ok());
    }

    #[test]
    fn the_lock_never_exceeds_the_maximum() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..100 {
            t.failed_at("dave", None, now);
        }
        assert_eq!(t.check_at("dave", None, now), Err(MAX_LOCK.as_secs()));
    }
}
