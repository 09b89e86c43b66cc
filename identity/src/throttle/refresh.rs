//! The limits on refresh-token rotations, kept by each instance in memory.

use governor::clock::{Clock, DefaultClock};
use std::{net::IpAddr, time::Duration};

use super::{address_key, memory::Limiter, MAX_KEYS};

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
