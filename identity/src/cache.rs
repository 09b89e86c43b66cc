//! The one bounded cache the hot path uses (verified tokens, users), on `quick_cache`.
//!
//! Its eviction (S3-FIFO) keeps the entries in use when a flood of one-off keys arrives, instead
//! of emptying itself when full. A capacity of 0 turns it off: every look-up misses.

use quick_cache::{sync::Cache, Equivalent};
use std::hash::Hash;

/// Entries each hot-path cache holds by default (`HOT_CACHE_ENTRIES`): twice the 100,000 people
/// signed in at once that `make bench` measures, because a cache sized to exactly that many
/// misses some of them (it is split in shards that do not fill evenly, and a user's renewed
/// tokens take entries of their own); the figures are in bench/RESULTS.md's notes.
/// Memory grows with use, not with the setting: ~400 bytes a token, ~100 a user.
pub const DEFAULT_ENTRIES: usize = 200_000;

pub struct Bounded<K, V> {
    entries: Option<Cache<K, V>>,
}

impl<K: Eq + Hash, V: Clone> std::fmt::Debug for Bounded<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bounded")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash, V: Clone> Bounded<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.as_ref()?.get(key)
    }

    pub fn insert(&self, key: K, value: V) {
        if let Some(c) = &self.entries {
            c.insert(key, value);
        }
    }

    /// Forgets `key`: the next look-up reads the source again.
    pub fn remove<Q>(&self, key: &Q)
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        if let Some(c) = &self.entries {
            c.remove(key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_what_is_used_and_forgets_on_request() {
        let c: Bounded<u32, u32> = Bounded::new(100);
        for round in 0..5 {
            c.insert(0, 0);
            assert_eq!(c.get(&0), Some(0), "round {round}");
            // A flood of one-off keys.
            for i in 1..1000 {
                c.insert(round * 1000 + i, i);
            }
        }
        assert!(c.len() <= 110, "{}", c.len());
        assert_eq!(c.get(&0), Some(0), "the entry in use was pushed out");
        c.remove(&0);
        assert_eq!(c.get(&0), None);
        let off: Bounded<u32, u32> = Bounded::new(0);
        off.insert(1, 1);
        assert_eq!((off.get(&1), off.len()), (None, 0));
    }
}
