//! The revoked-token blocklist: SQLite is the record, memory serves the checks.
//!
//! Every protected request asks [`Blocklist::is_revoked`], which reads an in-memory map of
//! unexpired revoked `jti`s: no database round trip on the hot path. A revoke is committed to
//! SQLite first and enters the map only then, still before the logout answers: memory never
//! holds a revocation the database lacks, so a failed write cannot look like a sign-out that a
//! restart would undo. Tokens are accepted until `exp` + [`LEEWAY_SECS`]; only after that can a
//! revocation go, so [`Blocklist::purge_expired`] and the start-up load keep it until then.

use crate::store::Pool;
use std::{collections::HashMap, sync::RwLock};
use uuid::Uuid;

use super::jwt::{now_unix, LEEWAY_SECS};

/// An `exp` in memory: unix seconds as a `u32` (until 2106), 4 bytes less per revocation.
type Exp = u32;

fn to_exp(exp: i64) -> Exp {
    exp.clamp(0, i64::from(Exp::MAX)) as Exp
}

/// Revocations whose token can no longer be accepted: `exp` + leeway has passed.
fn dead_before() -> i64 {
    now_unix() - LEEWAY_SECS as i64
}

#[derive(Debug)]
pub struct Blocklist {
    pool: Pool,
    /// Revoked, unexpired jtis and their tokens' `exp` ([`Exp`]: 20 bytes an entry, a million
    /// take ~42 MiB). The purge drops what has expired, whichever instance deleted the rows. A
    /// std lock: it is never held across an await.
    revoked: RwLock<HashMap<Uuid, Exp>>,
}

/// Writes the revocation of token `jti` (idempotent), in whatever transaction `conn` is in.
pub(crate) async fn write_revocation(
    conn: &mut sqlx::AnyConnection,
    jti: Uuid,
    user_id: i64,
    exp: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO revoked_tokens (jti, user_id, exp, revoked_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti.as_bytes().as_slice())
    .bind(user_id)
    .bind(exp)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

impl Blocklist {
    /// Loads every unexpired revocation from SQLite into memory.
    ///
    /// sqlx turns every row into owned values, which costs ~3.5 µs a row: 3.5 s for a million
    /// revocations. So SQLite aggregates each sixteenth of the key space (by the jti's first
    /// byte) into one string of hex jtis, and we parse those: the per-row work stays in
    /// SQLite's C loop and the start-up stays around a second.
    pub async fn load(pool: Pool) -> Result<Self, sqlx::Error> {
        let now = dead_before();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens WHERE exp >= $1")
            .bind(now)
            .fetch_one(&pool)
            .await?;
        let mut set = HashMap::with_capacity(count.max(0) as usize);
        // Each jti and its exp in hex (32 and 16 digits), one after the other.
        let packed_hex = match crate::store::dialect(&pool) {
            crate::store::Dialect::Sqlite => "group_concat(hex(jti) || printf('%016X', exp), '')",
            crate::store::Dialect::Postgres => {
                "string_agg(encode(jti, 'hex') || lpad(to_hex(exp), 16, '0'), '')"
            }
        };
        let sql = format!(
            "SELECT {packed_hex} FROM revoked_tokens WHERE exp >= $1 AND jti >= $2 AND jti < $3"
        );
        for chunk in 0u8..16 {
            // [low, high) in byte order; the last high sorts after every 16-byte jti.
            let low = [chunk << 4];
            let high: &[u8] = if chunk == 15 {
                &[0xff; 17]
            } else {
                &[(chunk + 1) << 4]
            };
            let packed: Option<String> = sqlx::query_scalar(&sql)
                .bind(now)
                .bind(low.as_slice())
                .bind(high)
                .fetch_one(&pool)
                .await?;
            set.extend(
                packed
                    .as_deref()
                    .map(parse_packed)
                    .into_iter()
                    .flatten()
                    .map(|(jti, exp)| (jti, to_exp(exp))),
            );
        }
        Ok(Self {
            pool,
            revoked: RwLock::new(set),
        })
    }

    /// True when this token id has been revoked. Memory only.
    pub fn is_revoked(&self, jti: &Uuid) -> bool {
        self.revoked
            .read()
            .map(|set| set.contains_key(jti))
            // A poisoned lock means a panic elsewhere; fail closed.
            .unwrap_or(true)
    }

    /// Revokes a token: a committed SQLite row, then memory. Idempotent. On error nothing has
    /// changed, and the token stays valid: the caller must not report a sign-out.
    pub async fn revoke(&self, jti: Uuid, user_id: i64, exp: i64) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        write_revocation(&mut conn, jti, user_id, exp, now_unix()).await?;
        self.remember(jti, exp);
        Ok(())
    }

    /// A revocation already in the database (this instance's, or another's that it has just
    /// read) enters memory.
    pub fn remember(&self, jti: Uuid, exp: i64) {
        // Poisoned: `is_revoked` already refuses everything.
        let mut set = self
            .revoked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        set.insert(jti, to_exp(exp));
    }

    /// Drops revocations whose token is refused as expired anyway (`exp` + leeway has
    /// passed), from SQLite and from memory. Returns how many were dropped.
    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        let dead = dead_before();
        let gone = sqlx::query("DELETE FROM revoked_tokens WHERE exp < $1")
            .bind(dead)
            .execute(&self.pool)
            .await?;
        if let Ok(mut set) = self.revoked.write() {
            set.retain(|_, exp| i64::from(*exp) >= dead);
        }
        Ok(gone.rows_affected())
    }

    /// Number of revocations held in memory.
    pub fn len(&self) -> usize {
        self.revoked.read().map(|set| set.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One record: the 32 hex digits of a jti, then the 16 of its exp (two's complement). A record
/// that does not parse (a row we did not write) is skipped rather than refusing to start.
const RECORD: usize = 48;

fn parse_packed(packed: &str) -> impl Iterator<Item = (Uuid, i64)> + '_ {
    packed.as_bytes().chunks_exact(RECORD).filter_map(|record| {
        let hex = std::str::from_utf8(record).ok()?;
        let jti = u128::from_str_radix(&hex[..32], 16).ok()?;
        let exp = u64::from_str_radix(&hex[32..], 16).ok()? as i64;
        Some((Uuid::from_u128(jti), exp))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::connect;

    async fn pool() -> (tempfile::TempDir, Pool) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = connect(&url).await.unwrap();
        sqlx::query("INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'alice', 'x', 0)")
            .execute(&pool)
            .await
            .unwrap();
        (dir, pool)
    }

    #[tokio::test]
    async fn revoke_is_seen_and_survives_a_reload() {
        let (_dir, pool) = pool().await;
        let list = Blocklist::load(pool.clone()).await.unwrap();
        let jti = Uuid::new_v4();
        assert!(!list.is_revoked(&jti));
        list.revoke(jti, 1, now_unix() + 600).await.unwrap();
        list.revoke(jti, 1, now_unix() + 600).await.unwrap(); // idempotent
        assert!(list.is_revoked(&jti));

        let reloaded = Blocklist::load(pool).await.unwrap();
        assert!(reloaded.is_revoked(&jti));
        assert_eq!(reloaded.len(), 1);
    }

    #[tokio::test]
    async fn purge_drops_only_expired_entries() {
        let (_dir, pool) = pool().await;
        let list = Blocklist::load(pool.clone()).await.unwrap();
        let live = Uuid::new_v4();
        let dead = Uuid::new_v4();
        list.revoke(live, 1, now_unix() + 600).await.unwrap();
        list.revoke(dead, 1, now_unix() - LEEWAY_SECS as i64 - 10)
            .await
            .unwrap();

        assert_eq!(list.purge_expired().await.unwrap(), 1);
        assert!(list.is_revoked(&live));
        assert!(!list.is_revoked(&dead));
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[tokio::test]
    async fn load_reads_every_part_of_the_key_space() {
        let (_dir, pool) = pool().await;
        let list = Blocklist::load(pool.clone()).await.unwrap();
        let mut ids: Vec<Uuid> = (0..500).map(|_| Uuid::new_v4()).collect();
        // The edges of the first-byte ranges.
        ids.push(Uuid::from_u128(0));
        ids.push(Uuid::from_u128(u128::MAX));
        ids.push(Uuid::from_u128(0x10 << 120));
        ids.push(Uuid::from_u128((0x10 << 120) - 1));
        for id in &ids {
            list.revoke(*id, 1, now_unix() + 600).await.unwrap();
        }
        let reloaded = Blocklist::load(pool).await.unwrap();
        assert_eq!(reloaded.len(), ids.len());
        assert!(ids.iter().all(|id| reloaded.is_revoked(id)));
    }

    /// A million revocations (plus expired ones) seeded straight into SQLite all come back,
    /// and only they do. The time is printed here; its budget is checked by `make bench`.
    #[tokio::test]
    async fn a_million_revocations_load() {
        const ROWS: i64 = 1_000_000;
        let (_dir, pool) = pool().await;
        let now = now_unix();
        sqlx::query(
            // Random jtis, inserted in key order: appending to the B-tree takes seconds,
            // inserting at random places took twenty.
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
             INSERT INTO revoked_tokens (jti, user_id, exp, revoked_at) \
             SELECT jti, 1, CASE WHEN i % 1000 = 0 THEN ? ELSE ? END, ? \
             FROM (SELECT i, randomblob(16) AS jti FROM n) ORDER BY jti",
        )
        .bind(ROWS + ROWS / 999)
        .bind(now - 60)
        .bind(now + 3600)
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
        let expected: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens WHERE exp >= $1")
                .bind(now)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(expected >= ROWS, "seeded {expected}");

        let started = std::time::Instant::now();
        let list = Blocklist::load(pool.clone()).await.unwrap();
        eprintln!(
            "loaded {} revoked jtis in {:.2} s (debug build)",
            list.len(),
            started.elapsed().as_secs_f64()
        );
        assert_eq!(list.len() as i64, expected);
        let sample: Vec<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT jti, exp FROM revoked_tokens ORDER BY random() LIMIT 200")
                .fetch_all(&pool)
                .await
                .unwrap();
        for (jti, exp) in sample {
            let jti = Uuid::from_slice(&jti).unwrap();
            assert_eq!(list.is_revoked(&jti), exp >= now, "{jti}");
        }
        // The purge drops exactly the rows that had expired, and nothing loaded.
        let expired = ROWS + ROWS / 999 - expected;
        assert_eq!(list.purge_expired().await.unwrap() as i64, expired);
        assert_eq!(list.len() as i64, expected);
    }

    /// A token is accepted until `exp` + leeway: its revocation must outlive `exp` by as much,
    /// through a purge and through a restart.
    #[tokio::test]
    async fn a_revocation_is_kept_through_the_leeway() {
        let (_dir, pool) = pool().await;
        let list = Blocklist::load(pool.clone()).await.unwrap();
        let in_leeway = Uuid::new_v4();
        let past = Uuid::new_v4();
        // Expires now: accepted for the leeway still, so kept through it.
        list.revoke(in_leeway, 1, now_unix()).await.unwrap();
        list.revoke(past, 1, now_unix() - LEEWAY_SECS as i64 - 2)
            .await
            .unwrap();
        assert_eq!(list.purge_expired().await.unwrap(), 1);
        assert!(list.is_revoked(&in_leeway));
        assert!(!list.is_revoked(&past));
        let reloaded = Blocklist::load(pool).await.unwrap();
        assert!(reloaded.is_revoked(&in_leeway));
    }

    /// A revoke the database refuses (another connection holds the write lock) changes
    /// nothing: the token is not refused in memory either, and a retry once the lock is gone
    /// is stored and survives a reload.
    #[tokio::test]
    async fn a_failed_revoke_leaves_memory_and_database_agreeing() {
        use sqlx::{sqlite::SqliteConnectOptions, ConnectOptions, Connection};
        use std::str::FromStr;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        connect(&url).await.unwrap().close().await;
        // The blocklist's pool gives up on a locked database after 100 ms.
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .busy_timeout(std::time::Duration::from_millis(100));
        let pool = sqlx::any::AnyPoolOptions::new()
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, "PRAGMA busy_timeout = 100").await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'a', 'x', 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let list = Blocklist::load(pool.clone()).await.unwrap();

        let mut holder = options.connect().await.unwrap();
        let mut tx = holder.begin().await.unwrap();
        sqlx::query("INSERT INTO users (username, password_hash, created_at) VALUES ('b', 'x', 0)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let jti = Uuid::new_v4();
        assert!(list.revoke(jti, 1, now_unix() + 600).await.is_err());
        assert!(
            !list.is_revoked(&jti),
            "memory says revoked, the database does not"
        );
        tx.rollback().await.unwrap();

        list.revoke(jti, 1, now_unix() + 600).await.unwrap();
        assert!(list.is_revoked(&jti));
        assert!(Blocklist::load(pool).await.unwrap().is_revoked(&jti));
    }

    #[tokio::test]
    async fn load_skips_expired_rows() {
        let (_dir, pool) = pool().await;
        let list = Blocklist::load(pool.clone()).await.unwrap();
        list.revoke(Uuid::new_v4(), 1, now_unix() - LEEWAY_SECS as i64 - 10)
            .await
            .unwrap();
        assert_eq!(Blocklist::load(pool).await.unwrap().len(), 0);
    }
}
