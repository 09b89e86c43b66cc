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

mod limits;
mod memory;
mod refresh;
mod shared;
#[cfg(test)]
mod tests;

pub use limits::{
    address_key, Limit, ACCOUNT_BURST, ACCOUNT_PERIOD, ADDRESS_BURST, ADDRESS_PERIOD,
    CEREMONY_BURST, CEREMONY_PERIOD, CODE_BURST, CODE_PERIOD, DEVICE_BURST, DEVICE_DISTRUST_PERIOD,
    DEVICE_FAILURES, DEVICE_PERIOD, MAIL_FROM_BURST, MAIL_FROM_PERIOD, MAIL_TO_BURST,
    MAIL_TO_PERIOD, PAIR_BURST, PAIR_PERIOD, SESSION_BURST, SESSION_PERIOD, SIGNUP_BURST,
    SIGNUP_PERIOD,
};
pub use memory::MAX_KEYS;
pub use refresh::{
    RefreshLimits, Refused, REFRESH_ADDRESS_BURST, REFRESH_ADDRESS_PERIOD, REFRESH_SESSION_BURST,
    REFRESH_SESSION_PERIOD,
};
pub use shared::{Shared, SHARED_TIMEOUT, UNAVAILABLE_RETRY_SECS};

use governor::clock::{Clock, DefaultClock};
use std::net::IpAddr;

use super::device::DeviceId;
use crate::store::StoreError;
use limits::{account_key, optional_address_key, pair_key};
use memory::Limiter;

/// Where the counts live.
enum Counts<C: Clock> {
    /// This process's memory: one bounded limiter per [`Limit`], in [`Limit::ALL`]'s order.
    Memory(Box<[Limiter<C>; 11]>),
    /// A table every instance shares.
    Shared(Shared),
}

/// Shared by all requests.
pub struct Throttle<C: Clock = DefaultClock> {
    /// Off only for load tests (`LOGIN_THROTTLE=off`, refused in production).
    enabled: bool,
    counts: Counts<C>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::with_clock(DefaultClock::default(), MAX_KEYS)
    }
}

impl<C: Clock> std::fmt::Debug for Throttle<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match &self.counts {
            Counts::Memory(_) => "memory",
            Counts::Shared(_) => "shared",
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
            counts: Counts::Shared(Shared::new(health, secret)),
        }
    }
}

impl<C: Clock + Clone> Throttle<C> {
    /// A throttle in memory on the given clock (tests use governor's fake one), keeping at most
    /// `capacity` records per limit.
    pub fn with_clock(clock: C, capacity: usize) -> Self {
        Self {
            enabled: true,
            counts: Counts::Memory(Box::new(
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
        let decided = match &self.counts {
            Counts::Memory(limiters) => limiters[limit.index()].take(key),
            Counts::Shared(shared) => {
                if shared.health.is_down() {
                    return Err(Throttled::Unavailable);
                }
                match tokio::time::timeout(SHARED_TIMEOUT, shared.take(limit, &key)).await {
                    Ok(Ok(decided)) => decided,
                    Ok(Err(e)) => {
                        // A connection-level failure marks the database down for everyone.
                        shared.health.observe(&e.0);
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
        match &self.counts {
            Counts::Memory(limiters) => limiters[limit.index()].store.forget(key),
            Counts::Shared(shared) => {
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

    /// A request for a mailed link (a password reset) from `addr` to the account or address
    /// `to` names: counted on the client's address, then on the recipient, before anything is
    /// looked up; refused while either has none left.
    pub async fn mail_request(&self, addr: Option<IpAddr>, to: &str) -> Result<(), Throttled> {
        if !self.enabled {
            return Ok(());
        }
        self.take(Limit::MailFrom, optional_address_key(addr))
            .await?;
        self.take(Limit::MailTo, limits::account_key(to)).await
    }

    /// A mail to `address`, not asked for through [`mail_request`](Self::mail_request) (a
    /// sign-up's confirming link, a resend, a change of address): counted on the recipient;
    /// refused (the mail is then not sent) while it has none left.
    pub async fn mail_to(&self, address: &str) -> Result<(), Throttled> {
        if !self.enabled {
            return Ok(());
        }
        self.take(Limit::MailTo, limits::account_key(address)).await
    }

    /// A second-factor code tried on account `user_id` (at sign-in, reauthentication, a
    /// reset or an enrolment), counted before it is checked.
    pub async fn code(&self, user_id: i64) -> Result<(), Throttled> {
        if !self.enabled {
            return Ok(());
        }
        self.take(Limit::Code, user_id.to_string()).await
    }

    /// A passkey ceremony begun from `addr`: counted, or refused while the address has none
    /// left.
    pub async fn ceremony(&self, addr: Option<IpAddr>) -> Result<(), Throttled> {
        if !self.enabled {
            return Ok(());
        }
        self.take(Limit::Ceremony, optional_address_key(addr)).await
    }

    /// A right code: the account's count of codes is forgiven.
    pub async fn code_accepted(&self, user_id: i64) {
        self.forget(Limit::Code, &user_id.to_string()).await;
    }

    /// Drops the records that are back to a full allowance; run from the periodic purge.
    pub async fn forget_stale(&self) -> Result<u64, StoreError> {
        match &self.counts {
            Counts::Memory(limiters) => {
                for limit in limiters.iter() {
                    limit.limiter.retain_recent();
                    limit.limiter.shrink_to_fit();
                }
                Ok(0)
            }
            Counts::Shared(shared) => shared.purge().await,
        }
    }

    /// Records held in memory under `limit` (0 when the counts are shared).
    pub fn tracked(&self, limit: Limit) -> usize {
        match &self.counts {
            Counts::Memory(limiters) => limiters[limit.index()].limiter.len(),
            Counts::Shared(_) => 0,
        }
    }
}
