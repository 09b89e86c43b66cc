//! The counts of one instance, in its memory: governor's GCRA over a bounded store.

use governor::{
    clock::Clock,
    middleware::NoOpMiddleware,
    nanos::Nanos,
    state::{keyed::ShrinkableKeyedStateStore, StateStore},
    Quota, RateLimiter,
};
use std::{
    collections::{BTreeMap, HashMap},
    num::NonZeroU32,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use super::limits::{secs_ceil, Limit};

/// Records kept per limit in memory (about 150 bytes each); beyond it the least recently
/// touched goes.
pub const MAX_KEYS: usize = 100_000;

/// A keyed state store for governor with a fixed number of records, least recently touched
/// dropped first. One mutex: each access is a hash-map update, and every sign-in it guards
/// costs an argon2 hash.
#[derive(Debug, Clone)]
pub(super) struct BoundedStore {
    records: Arc<Mutex<Records>>,
    capacity: usize,
}

#[derive(Debug, Default)]
pub(super) struct Records {
    /// Key → (governor's theoretical arrival time, when last touched).
    pub(super) map: HashMap<String, (Nanos, u64)>,
    /// When last touched → key: the first entry is the least recently touched.
    pub(super) order: BTreeMap<u64, String>,
    ticks: u64,
}

impl BoundedStore {
    fn new(capacity: usize) -> Self {
        Self {
            records: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Records> {
        // The map stays consistent at every step: a panic elsewhere leaves it usable.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn forget(&self, key: &str) {
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
pub(super) struct Limiter<C: Clock> {
    pub(super) limiter: RateLimiter<String, BoundedStore, C, NoOpMiddleware<C::Instant>>,
    pub(super) store: BoundedStore,
}

impl<C: Clock + Clone> Limiter<C> {
    pub(super) fn new(limit: Limit, clock: &C, capacity: usize) -> Self {
        Self::with_quota(limit.burst(), limit.period(), clock, capacity)
    }

    /// `burst` cells in a row, then one per `period`.
    pub(super) fn with_quota(burst: u32, period: Duration, clock: &C, capacity: usize) -> Self {
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
    pub(super) fn take(&self, key: String) -> Result<(), u64> {
        self.limiter
            .check_key(&key)
            .map_err(|not_until| secs_ceil(not_until.wait_time_from(self.limiter.clock().now())))
    }
}
