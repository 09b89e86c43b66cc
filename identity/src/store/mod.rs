//! The store: the one place that talks to the database. It opens it, brings its schema up to
//! date, knows its dialect (read once, at connect) and its health, and owns every SQL statement,
//! the lock order and the batch writers; the rest of the core gets domain types and
//! [`StoreError`], never `sqlx` types. A third database engine would touch only this module and
//! the revocation feed.

pub mod accounts;
pub mod audit;
mod backup;
mod connect;
pub mod email;
pub mod factors;
mod files;
mod health;
pub mod outbox;
pub mod passkeys;
pub mod revocations;
mod seed;
pub mod sessions;
mod throttle;
mod users;

pub use backup::{backup, Backup};
pub use connect::{
    connect, sqlite_file, DbError, NotReady, MAX_CONNECTIONS, PG_ACQUIRE_TIMEOUT,
    PG_MAX_CONNECTIONS,
};
pub use files::{create_private, create_private_dir_all};
pub use health::{
    failure, known_unreachable, log_internal, sqlx_cause, Failure, Health, Verdict, PROBE_EVERY,
};
pub use seed::{SeedSession, SeedTimes};

/// The connection pool behind the [`Store`]: sqlx's `Any` driver, so that one binary opens
/// whichever database its URL names (SQLite or PostgreSQL).
pub type Pool = sqlx::AnyPool;

/// The database as the core sees it: its pool and its dialect, read once when it was opened.
/// Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    dialect: Dialect,
}

impl Store {
    /// The store of an open pool.
    pub fn new(pool: Pool) -> Self {
        let dialect = dialect(&pool);
        Self { pool, dialect }
    }

    /// Opens the database at `url` ([`connect()`]) and reads its dialect, once.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        connect(url).await.map(Self::new)
    }

    /// The pool, for the store's own statements.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

impl From<Pool> for Store {
    fn from(pool: Pool) -> Self {
        Self::new(pool)
    }
}

/// A statement failed. Its database error is its [`source`](std::error::Error::source), where
/// [`Health::judge`] finds it to tell an unreachable or busy database from a fault of ours.
#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct StoreError(#[from] pub sqlx::Error);

impl StoreError {
    /// What the failure says about the database.
    pub fn failure(&self) -> Failure {
        failure(&self.0)
    }
}

/// The SQL dialect of a pool's database, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The functions that take the larger and the smaller of their arguments: SQLite's
    /// scalar `MAX` and `MIN`, PostgreSQL's `GREATEST` and `LEAST`.
    pub fn max_min(self) -> (&'static str, &'static str) {
        match self {
            Self::Sqlite => ("MAX", "MIN"),
            Self::Postgres => ("GREATEST", "LEAST"),
        }
    }
}

/// Which database `pool` talks to.
pub fn dialect(pool: &Pool) -> Dialect {
    match pool.connect_options().database_url.scheme() {
        "postgres" | "postgresql" => Dialect::Postgres,
        _ => Dialect::Sqlite,
    }
}
