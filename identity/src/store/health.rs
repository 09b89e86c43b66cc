//! What a failed statement says about the database, and whether it is known to be unreachable.

use std::time::Duration;

use super::{Pool, Store, StoreError};

/// What a failed statement says about the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It cannot be reached: no connection could be made in time, or the one in use was cut,
    /// or the server is shutting down or starting up.
    Unreachable,
    /// Reached, but a lock was not granted in time (SQLite's busy timeout, a PostgreSQL lock or
    /// serialisation failure): worth trying again in a moment.
    Busy,
    /// Anything else: a fault of ours or of the data, not to be tried again as it is.
    Other,
}

/// Sorts a database error by what it says about the database (see [`Failure`]).
pub fn failure(e: &sqlx::Error) -> Failure {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
            Failure::Unreachable
        }
        E::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                match pg.code() {
                    // Class 08, connection exception; 57P01–57P03: admin or crash shutdown,
                    // cannot connect now (starting up, shutting down, in recovery).
                    code if code.starts_with("08") => Failure::Unreachable,
                    "57P01" | "57P02" | "57P03" => Failure::Unreachable,
                    // Serialisation failure, deadlock, lock not available, too many connections.
                    "40001" | "40P01" | "55P03" | "53300" => Failure::Busy,
                    _ => Failure::Other,
                }
            } else if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                use sqlx::error::DatabaseError;
                // The extended result code; its low byte is the primary one.
                let primary = sqlite
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map(|c| c & 0xff);
                match primary {
                    // SQLITE_BUSY, SQLITE_LOCKED.
                    Some(5 | 6) => Failure::Busy,
                    // SQLITE_IOERR, SQLITE_CANTOPEN: the file cannot be read or opened.
                    Some(10 | 14) => Failure::Unreachable,
                    _ => Failure::Other,
                }
            } else {
                Failure::Other
            }
        }
        _ => Failure::Other,
    }
}

/// The database error somewhere in `err`'s chain of causes, if there is one.
pub fn sqlx_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a sqlx::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<sqlx::Error>() {
            return Some(found);
        }
        if let Some(found) = e.downcast_ref::<StoreError>() {
            return Some(&found.0);
        }
        // Shared by the rotations of one batch (`sessions::RefreshError::Db`).
        if let Some(found) = e.downcast_ref::<std::sync::Arc<sqlx::Error>>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// How often a database known to be unreachable is tried again.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// How long one try may take to connect.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the database is known to be unreachable, for everything that uses it.
///
/// A connection-level failure ([`Failure::Unreachable`]) marks it down. While it is down, a
/// request that needs it is answered `503 temporarily_unavailable` at once ([`Health::check`]),
/// instead of each waiting for the pool's acquire timeout; what needs only memory (a token
/// check, for a user already in memory) goes on as before. One probe at a time connects right
/// away and then every [`PROBE_EVERY`], on a connection of its own, and marks the database up
/// as soon as a connection works. Checking costs one atomic load.
#[derive(Debug)]
pub struct Health {
    store: Store,
    down: std::sync::atomic::AtomicBool,
    /// Whether a probe is running: one at a time.
    probing: std::sync::atomic::AtomicBool,
    /// When the database was marked down (for the log line that says it is back).
    since: std::sync::Mutex<Option<std::time::Instant>>,
}

/// What a failure on our side comes to for whoever asked: see [`Health::judge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The database cannot be reached or is busy just now: try again in a moment (`503`).
    Unavailable,
    /// A fault of ours: its cause is in the log, never in the answer (`500`).
    Internal,
}

/// Logs the cause of a fault of ours (never sent to the caller).
pub fn log_internal(context: &str, err: &dyn std::fmt::Display) -> Verdict {
    tracing::error!(error = %err, "{context}");
    Verdict::Internal
}

/// The error a request gets, without trying, while the database is known to be unreachable.
pub fn known_unreachable() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the database is unreachable: not tried until a probe connects",
    ))
}

impl Health {
    /// The health of `store` (or of a bare pool's store), known up to begin with.
    pub fn new(store: impl Into<Store>) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            store: store.into(),
            down: Default::default(),
            probing: Default::default(),
            since: Default::default(),
        })
    }

    /// The database this is the health of.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Its pool.
    pub fn pool(&self) -> &Pool {
        self.store.pool()
    }

    /// Whether the database is known to be unreachable now.
    pub fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Asked before work that needs the database: [`known_unreachable`] at once while it is
    /// down.
    pub fn check(&self) -> Result<(), sqlx::Error> {
        if self.is_down() {
            return Err(known_unreachable());
        }
        Ok(())
    }

    /// Sorts `e` ([`failure`]); a connection-level failure marks the database down.
    pub fn observe(self: &std::sync::Arc<Self>, e: &sqlx::Error) -> Failure {
        let failure = failure(e);
        if failure == Failure::Unreachable {
            self.mark_down(e);
        }
        failure
    }

    /// What a failure on our side comes to, its cause logged and never sent: when a database
    /// error in `err`'s causes says the database cannot be reached (it is marked down) or is
    /// busy, [`Verdict::Unavailable`]; for anything else [`Verdict::Internal`]. The one place
    /// where a database error is judged (the HTTP side turns the verdict into an answer).
    pub fn judge(
        self: &std::sync::Arc<Self>,
        context: &str,
        err: &(dyn std::error::Error + 'static),
    ) -> Verdict {
        let was_down = self.is_down();
        match sqlx_cause(err).map(|e| self.observe(e)) {
            // Refused without trying, or one more in-flight request that found it gone: the
            // outage itself is logged once, when it is found.
            Some(Failure::Unreachable) if was_down => {
                tracing::debug!(error = %err, "{context}: the database is unreachable");
                Verdict::Unavailable
            }
            Some(Failure::Unreachable | Failure::Busy) => {
                tracing::warn!(error = %err, "{context}");
                Verdict::Unavailable
            }
            Some(Failure::Other) | None => log_internal(context, err),
        }
    }

    fn mark_down(self: &std::sync::Arc<Self>, cause: &sqlx::Error) {
        use std::sync::atomic::Ordering;
        if !self.down.swap(true, Ordering::AcqRel) {
            *self
                .since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(std::time::Instant::now());
            tracing::warn!(error = %cause, "the database cannot be reached: what needs it is answered 503 until it can");
        }
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.clone().probe());
            }
            // No runtime, so no request either: nothing to answer from memory.
            Err(_) => {
                self.probing.store(false, Ordering::Release);
                self.down.store(false, Ordering::Release);
            }
        }
    }

    /// Connects until a connection works, then marks the database up.
    async fn probe(self: std::sync::Arc<Self>) {
        use std::sync::atomic::Ordering;
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                tokio::time::sleep(PROBE_EVERY).await;
            }
            if self.pool().is_closed() {
                // Shutting down: no one is waiting for it.
                self.probing.store(false, Ordering::Release);
                return;
            }
            if self.connects().await {
                break;
            }
        }
        // `probing` first: a failure marked between the two stores starts a probe of its own
        // (the other order could leave the database down with no probe running).
        self.probing.store(false, Ordering::Release);
        self.down.store(false, Ordering::Release);
        let since = self
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        tracing::info!(down_for = ?since.map(|t| t.elapsed()), "the database can be reached again");
    }

    /// Whether a new connection opens and answers, within [`PROBE_TIMEOUT`].
    async fn connects(&self) -> bool {
        use sqlx::{ConnectOptions, Connection};
        let mut options = (*self.pool().connect_options()).clone();
        // A SQLite file that has vanished is not made anew, empty, by the probe (`mode=rwc`):
        // the database stays down until the real one is back.
        if options.database_url.scheme() == "sqlite" {
            let query = options.database_url.query().unwrap_or_default().to_owned();
            let query: Vec<&str> = query
                .split('&')
                .map(|p| if p == "mode=rwc" { "mode=rw" } else { p })
                .collect();
            options.database_url.set_query(Some(&query.join("&")));
        }
        let tried = tokio::time::timeout(PROBE_TIMEOUT, async {
            let mut conn = options.connect().await?;
            conn.ping().await?;
            conn.close().await
        })
        .await;
        match tried {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the database is still unreachable");
                false
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::connect;

    #[tokio::test]
    async fn failures_are_sorted_by_what_they_say_about_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pool = connect(&url).await.unwrap();
        // A write refused for a lock held elsewhere, with no busy timeout to wait it out.
        let mut holder = pool.acquire().await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut *holder)
            .await
            .unwrap();
        let mut other = pool.acquire().await.unwrap();
        sqlx::query("PRAGMA busy_timeout = 0")
            .execute(&mut *other)
            .await
            .unwrap();
        let busy = sqlx::query(
            "INSERT INTO users (username, password_hash, created_at) VALUES ('a', 'x', 0)",
        )
        .execute(&mut *other)
        .await
        .unwrap_err();
        assert_eq!(failure(&busy), Failure::Busy, "{busy}");
        let taken = sqlx::query(
            "INSERT INTO users (username, password_hash, created_at) VALUES ('a', 'x', 0)",
        );
        sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
        taken.execute(&mut *other).await.unwrap();
        let unique = sqlx::query(
            "INSERT INTO users (username, password_hash, created_at) VALUES ('a', 'x', 0)",
        )
        .execute(&mut *other)
        .await
        .unwrap_err();
        assert_eq!(failure(&unique), Failure::Other, "{unique}");

        let refused = sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        for e in [
            refused,
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            known_unreachable(),
        ] {
            assert_eq!(failure(&e), Failure::Unreachable, "{e}");
        }
        assert_eq!(failure(&sqlx::Error::RowNotFound), Failure::Other);

        // Found behind the errors that wrap it, shared or not.
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped: {0}")]
        struct Wrapped(#[source] std::sync::Arc<sqlx::Error>);
        let wrapped = Wrapped(std::sync::Arc::new(sqlx::Error::PoolTimedOut));
        assert!(matches!(
            sqlx_cause(&wrapped),
            Some(sqlx::Error::PoolTimedOut)
        ));
        let io = std::io::Error::other("not a database error");
        assert!(sqlx_cause(&io).is_none());
    }

    /// Marked down by a connection-level failure, refused at once while down, and up again as
    /// soon as a probe connects: here the database's folder is gone (nothing can open the file)
    /// and then back.
    #[tokio::test]
    async fn the_database_is_marked_down_and_up_again_by_a_probe() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("db");
        let url = format!("sqlite://{}", folder.join("t.db").display());
        let pool = connect(&url).await.unwrap();
        let health = Health::new(pool.clone());
        assert!(!health.is_down());
        assert!(health.check().is_ok());

        // A fault of ours: a 500, and the database is not marked down.
        let answer = health.judge("test", &sqlx::Error::RowNotFound);
        assert_eq!(answer, Verdict::Internal);
        assert!(!health.is_down());
        // A connection-level failure marks it down; but the file opens, so the first probe
        // brings it back at once.
        assert_eq!(
            health.observe(&sqlx::Error::PoolTimedOut),
            Failure::Unreachable
        );
        assert!(health.is_down());
        wait_until(|| !health.is_down(), Duration::from_secs(2)).await;

        std::fs::rename(&folder, dir.path().join("away")).unwrap();
        let answer = health.judge(
            "test",
            &sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
        );
        assert_eq!(answer, Verdict::Unavailable);
        assert!(health.is_down());
        // While down, each check is refused without trying, and many failures start one probe.
        for _ in 0..64 {
            assert_eq!(
                health.check().map_err(|e| failure(&e)),
                Err(Failure::Unreachable)
            );
            health.observe(&known_unreachable());
        }
        tokio::time::sleep(PROBE_EVERY * 3).await;
        assert!(health.is_down(), "up while the file cannot be opened");
        std::fs::rename(dir.path().join("away"), &folder).unwrap();
        wait_until(|| !health.is_down(), PROBE_EVERY * 4).await;
        assert!(health.check().is_ok());
        pool.close().await;
    }

    async fn wait_until(done: impl Fn() -> bool, limit: Duration) {
        let started = std::time::Instant::now();
        while !done() {
            assert!(started.elapsed() < limit, "not within {limit:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
