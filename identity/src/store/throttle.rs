//! The sign-in limits every instance on one PostgreSQL database shares: the `UNLOGGED` table
//! `login_throttle` (migration 0003), a row per key holding GCRA's theoretical arrival time
//! (`tat`) in microseconds on the database's clock, so the instances' own clocks do not matter.
//! PostgreSQL's only: on SQLite one instance counts in its own memory (`crate::throttle`).

use std::time::Duration;

use super::{Store, StoreError};

/// The database's clock in microseconds; one value for the whole statement.
const DB_NOW_US: &str = "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000000)::BIGINT";

impl Store {
    /// Uses a cell of the record `key`, whose limit gives one cell back per `t` and allows
    /// `tau / t` more in a row (GCRA's emission interval and tolerance, in microseconds);
    /// `Ok(Err(the wait until one is back))` when none is left.
    ///
    /// governor's rule, in one upsert that decides and records under the row's lock (two
    /// instances' attempts on one key never both take the last cell): with `tat` the stored
    /// theoretical arrival time (now, for a new key), the attempt is allowed when
    /// `now >= tat - tau`, and then `tat` becomes `max(tat, now) + t`; a refusal changes nothing
    /// (but says so in `allowed`, which the same statement returns). Otherwise the wait is
    /// `tat - tau - now`.
    pub async fn take_throttle_cell(
        &self,
        key: &[u8],
        t: i64,
        tau: i64,
    ) -> Result<Result<(), Duration>, StoreError> {
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
            .bind(key)
            .bind(t)
            .bind(tau)
            .fetch_one(self.pool())
            .await?;
        Ok(if allowed {
            Ok(())
        } else {
            let wait = tat.saturating_sub(tau).saturating_sub(now).max(0);
            Err(Duration::from_micros(wait.unsigned_abs()))
        })
    }

    /// Forgets the record `key`: a full allowance again.
    pub async fn forget_throttle_record(&self, key: &[u8]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_throttle WHERE key = $1")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes the records that are back to a full allowance (`tat` passed: the same as no
    /// record); how many.
    pub async fn purge_throttle_records(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!(
            "DELETE FROM login_throttle WHERE tat <= {DB_NOW_US}"
        ))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
