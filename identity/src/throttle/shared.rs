//! The counts every instance on one PostgreSQL database shares.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

use super::limits::{secs_ceil, Limit};
use crate::store::StoreError;

/// The longest a shared decision may take before the attempt is refused as unavailable.
pub const SHARED_TIMEOUT: Duration = Duration::from_secs(2);
/// The wait a refusal for that reason asks for.
pub const UNAVAILABLE_RETRY_SECS: u64 = 1;

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
    pub(super) health: std::sync::Arc<crate::store::Health>,
    key: [u8; 32],
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// Records in the database of `health` (PostgreSQL), keyed under a key derived from
    /// `secret`.
    pub fn new(health: std::sync::Arc<crate::store::Health>, secret: &[u8]) -> Self {
        Self {
            health,
            key: crate::tokens::access::derive_key(secret, b"authapp throttle key v1"),
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

    /// Uses a cell of `key` under `limit`; `Ok(Err(seconds until one is back))` when none is left
    /// (see [`Store::take_throttle_cell`](crate::store::Store::take_throttle_cell)).
    pub async fn take(&self, limit: Limit, key: &str) -> Result<Result<(), u64>, StoreError> {
        let (t, tau) = Self::gcra_us(limit);
        let decided = self
            .health
            .store()
            .take_throttle_cell(&self.row_key(limit, key), t, tau)
            .await?;
        Ok(decided.map_err(secs_ceil))
    }

    /// Forgets `key`'s record under `limit`: a full allowance again.
    pub async fn forget(&self, limit: Limit, key: &str) -> Result<(), StoreError> {
        self.health
            .store()
            .forget_throttle_record(&self.row_key(limit, key))
            .await
    }

    /// Deletes the records that are back to a full allowance (`tat` passed: the same as no
    /// record); how many.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        self.health.store().purge_throttle_records().await
    }
}
