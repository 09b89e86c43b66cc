//! The store: the one place that talks to the database. It opens it, brings its schema up to
//! date, knows its dialect (read once, at connect) and its health, and owns every SQL statement,
//! the lock order and the batch writers; the rest of the core gets domain types and
//! [`StoreError`], never `sqlx` types. A third database engine would touch only this module and
//! the revocation feed.

pub mod accounts;
mod users;

use sqlx::sqlite::SqliteConnectOptions;

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

    /// The pool, for the store's own statements.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
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

use std::{path::Path, str::FromStr, time::Duration};

/// Connections the pool opens at most (sqlx runs each on a thread of its own).
pub const MAX_CONNECTIONS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    Url(sqlx::Error),
    /// The URL names no database this build opens. Says the scheme only: the rest of a URL may
    /// hold a password.
    #[error(
        "DATABASE_URL must be a sqlite: or postgres: URL (sqlite://PATH, postgres://...); {0}"
    )]
    Scheme(String),
    #[error("cannot create the database folder {0}: {1}")]
    Folder(String, std::io::Error),
    #[error("cannot create the database file {0}: {1}")]
    File(String, std::io::Error),
    #[error("cannot open the database: {0}")]
    Open(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} already exists: a backup never overwrites a file")]
    Exists(String),
    #[error("cannot write the backup {0}: {1}")]
    Backup(String, String),
}

/// Creates the file `path`, which must not exist yet, readable and writable by its owner only:
/// on unix it is created 0600, so no umask makes it readable by anyone else, not even for an
/// instant. What the server writes holds every account's password hash and session.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Creates the folder `dir` and any missing parent, each 0700 on unix (owner only), whatever
/// the umask. A folder that already exists is left as it is: it may be shared (`/tmp`, `/var/lib`)
/// and was someone's choice; the files the server puts in it are private on their own.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Gives the finished copy its name without ever replacing a file: a hard link where the file
/// system has them; elsewhere (vfat, some network shares) an exclusive create then a rename.
fn publish(partial: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(partial, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => publish_by_rename(partial, to),
    }
}

/// [`publish`] where there are no hard links: `to` is claimed by an exclusive create (private
/// too, for the instant it is an empty placeholder), then the copy is renamed over it. A
/// placeholder the rename could not replace is removed: a file named `to` is always a whole
/// backup.
fn publish_by_rename(partial: &Path, to: &Path) -> std::io::Result<()> {
    create_private(to)?;
    std::fs::rename(partial, to).inspect_err(|_| {
        let _ = std::fs::remove_file(to);
    })
}

/// The database a `DATABASE_URL` names.
enum Target {
    /// A `sqlite:` URL, read as sqlx reads it.
    Sqlite(Box<SqliteConnectOptions>),
    /// A `postgres:` or `postgresql:` URL.
    Postgres,
}

/// What a `DATABASE_URL` names. sqlx would take anything but a `sqlite:` or `postgres:` URL for
/// a SQLite file name (a mistyped scheme became a folder of that name, and every instance a
/// database of its own), so any other scheme, or none, is refused.
fn target(url: &str) -> Result<Target, DbError> {
    let scheme = url.split_once(':').map(|(scheme, _)| scheme).filter(|s| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    match scheme.map(|s| (s.len(), s.to_ascii_lowercase())) {
        // sqlx strips only a lower-case prefix: `SQLITE://x.db` would be a file of that name.
        Some((len, s)) if s == "sqlite" => {
            SqliteConnectOptions::from_str(&format!("sqlite:{}", &url[len + 1..]))
                .map(|options| Target::Sqlite(Box::new(options)))
                .map_err(DbError::Url)
        }
        Some((_, s)) if s == "postgres" || s == "postgresql" => Ok(Target::Postgres),
        Some((1, drive)) => Err(DbError::Scheme(format!(
            "{drive}: looks like a Windows path: write sqlite://{drive}:/…"
        ))),
        Some((_, other)) => Err(DbError::Scheme(format!(
            "{other}: is not a database this server opens"
        ))),
        None => Err(DbError::Scheme("the value names no scheme".into())),
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

/// What every SQLite connection is set to when it opens. WAL: readers never wait for the
/// writer. FULL: a committed revoke is on disk before logout answers, even across a power cut.
const SQLITE_SETTINGS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                               PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// Connections the pool opens at most on PostgreSQL, per instance.
pub const PG_MAX_CONNECTIONS: u32 = 16;

/// How long a request waits for a connection on PostgreSQL. sqlx tries a refused connection
/// again until then, so this is also how long the first request to find the database gone
/// waits for its `503` (the next ones are answered at once: see [`Health`]).
pub const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens the database at `url` (a SQLite file is created if missing) and runs its migrations.
pub async fn connect(url: &str) -> Result<Pool, DbError> {
    sqlx::any::install_default_drivers();
    let sqlite = match target(url)? {
        Target::Sqlite(options) => options,
        Target::Postgres => {
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(PG_MAX_CONNECTIONS)
                .acquire_timeout(PG_ACQUIRE_TIMEOUT)
                .connect(url)
                .await
                .map_err(DbError::Open)?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            return Ok(pool);
        }
    };
    let file = sqlite.get_filename().to_path_buf();
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir_all(parent).map_err(|e| DbError::Folder(parent.display().to_string(), e))?;
    // Every connection of an in-memory database would be a database of its own, or it would
    // vanish once they were idle.
    let in_memory = file.to_string_lossy().starts_with("file:")
        || url
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|p| p == "mode=memory"));
    let name = file
        .file_name()
        .filter(|_| !in_memory)
        .ok_or_else(|| DbError::Scheme("give a file: in-memory databases are not kept".into()))?;
    let file = std::fs::canonicalize(parent)
        .map_err(|e| DbError::Folder(parent.display().to_string(), e))?
        .join(name);
    let file = file.to_str().ok_or_else(|| {
        DbError::Folder(
            file.display().to_string(),
            std::io::Error::other("the path is not UTF-8"),
        )
    })?;
    keep_private(Path::new(file), creates_file(url))?;
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        // A file on this machine: no network between, so no ping (a round trip to the
        // connection's thread) before each use.
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(conn, SQLITE_SETTINGS).await?;
                Ok(())
            })
        })
        .connect(&any_sqlite_url(file, url))
        .await
        .map_err(DbError::Open)?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(pool)
}

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
    pool: Pool,
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
    pub fn new(pool: Pool) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            pool,
            down: Default::default(),
            probing: Default::default(),
            since: Default::default(),
        })
    }

    /// The database this is the health of.
    pub fn pool(&self) -> &Pool {
        &self.pool
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
            if self.pool.is_closed() {
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
        let mut options = (*self.pool.connect_options()).clone();
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

/// Whether SQLite creates the file of `url` when it is missing: unless its query says another
/// `mode=` than `rwc` (the default here, see [`any_sqlite_url`]).
fn creates_file(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    !query
        .split('&')
        .any(|p| p.starts_with("mode=") && p != "mode=rwc")
}

/// The SQLite database `file` and the `-wal` and `-shm` files beside it, readable by this user
/// only. A missing database (when `create`) is created empty and 0600 before SQLite opens it:
/// SQLite takes an empty file for a new database, and creates its `-wal` and `-shm` with the
/// main file's mode; left to itself it would create the database 0644 less the umask. A file
/// that exists with permissions for group or others (made by an older version, or copied in
/// with a loose umask) loses them at start, with a warning; nothing is ever loosened, and a file
/// this user may not change is reported, not refused (the server runs as it did).
fn keep_private(file: &Path, create: bool) -> Result<(), DbError> {
    if create {
        match create_private(file) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(DbError::File(file.display().to_string(), e)),
        }
    }
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let mut path = file.as_os_str().to_owned();
        path.push(suffix);
        let path = Path::new(&path);
        let Ok(mode) = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777) else {
            continue;
        };
        if mode & 0o077 == 0 {
            continue;
        }
        let private = mode & 0o700;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(private)) {
            Ok(()) => tracing::warn!(
                file = %path.display(),
                "the database file was readable by others ({mode:04o}): it is {private:04o} now"
            ),
            Err(e) => tracing::error!(
                file = %path.display(),
                error = %e,
                "the database file is readable by others ({mode:04o}) and cannot be changed: \
                 make it owner-only (chmod 600)"
            ),
        }
    }
    Ok(())
}

/// The URL the `Any` driver opens `file` (an absolute path with no `.` or `..` in it) by:
/// the `Any` driver takes URLs only, and reads a `sqlite:` URL as a file name after parsing it
/// as a URL, so every character that a URL would read otherwise is percent-encoded. The query of
/// the `DATABASE_URL` given is kept; the file is created when missing unless it says otherwise.
fn any_sqlite_url(file: &str, url: &str) -> String {
    let mut path = String::new();
    for c in file.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '/' | '-' | '_' | '.' | '~' => path.push(c),
            _ => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    path.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let has_mode = query.split('&').any(|p| p.starts_with("mode="));
    match (query.is_empty(), has_mode) {
        (true, _) => format!("sqlite://{path}?mode=rwc"),
        (false, true) => format!("sqlite://{path}?{query}"),
        (false, false) => format!("sqlite://{path}?{query}&mode=rwc"),
    }
}

/// The SQLite options of a `sqlite:` URL (backups are SQLite's).
fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, DbError> {
    match target(url)? {
        Target::Sqlite(options) => Ok(*options),
        Target::Postgres => Err(DbError::Scheme(
            "`server backup` copies a SQLite database; back PostgreSQL up with pg_dump".into(),
        )),
    }
}

/// What [`backup`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backup {
    pub bytes: u64,
    pub users: i64,
    pub revoked: i64,
}

/// Writes a consistent copy of the database at `url` to the new file `to`, while the server
/// goes on reading and writing it: `VACUUM INTO` copies inside one read transaction, so the copy
/// is the database as it was at one moment, and writers are not blocked (WAL). The copy is
/// written beside `to` under a `.partial-…` name of its own, checked, synced and only then linked
/// to `to`, so a file named `to` is always a complete backup.
pub async fn backup(url: &str, to: &Path) -> Result<Backup, DbError> {
    if to.exists() {
        return Err(DbError::Exists(to.display().to_string()));
    }
    // A name of its own, created empty and exclusively (VACUUM INTO accepts an empty file): a
    // second backup to the same path at the same time never touches this one's file.
    let mut partial = to.as_os_str().to_owned();
    partial.push(format!(
        ".partial-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let partial = std::path::PathBuf::from(partial);
    // Private from the start (VACUUM INTO writes into it and keeps its mode): a backup holds
    // every password hash and session.
    create_private(&partial)
        .map_err(|e| DbError::Backup(to.display().to_string(), e.to_string()))?;
    let written = write_backup(url, &partial, to).await;
    // Whatever failed, this backup's partial copy is not left behind.
    let _ = std::fs::remove_file(&partial);
    written
}

async fn write_backup(url: &str, partial: &Path, to: &Path) -> Result<Backup, DbError> {
    use sqlx::{ConnectOptions, Connection};
    let fail = |e: &dyn std::fmt::Display| DbError::Backup(to.display().to_string(), e.to_string());
    let target = partial
        .to_str()
        .ok_or_else(|| fail(&"the path is not valid UTF-8"))?;

    let mut db = sqlite_options(url)?
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(DbError::Open)?;
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut db)
        .await;
    let _ = db.close().await;
    copied.map_err(|e| fail(&e))?;

    // The copy must open, pass SQLite's own check and hold what a restore needs.
    let mut copy = SqliteConnectOptions::new()
        .filename(partial)
        .read_only(true)
        .connect()
        .await
        .map_err(|e| fail(&e))?;
    let integrity: Result<(String, i64, i64), sqlx::Error> = async {
        Ok((
            sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(&mut copy)
                .await?,
            sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(&mut copy)
                .await?,
            sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens")
                .fetch_one(&mut copy)
                .await?,
        ))
    }
    .await;
    let _ = copy.close().await;
    let (integrity, users, revoked) = integrity.map_err(|e| fail(&e))?;
    if integrity != "ok" {
        return Err(fail(&format!(
            "the copy failed SQLite's integrity check: {integrity}"
        )));
    }

    let file = std::fs::File::open(partial).map_err(|e| fail(&e))?;
    file.sync_all().map_err(|e| fail(&e))?;
    let bytes = file.metadata().map_err(|e| fail(&e))?.len();
    publish(partial, to).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => DbError::Exists(to.display().to_string()),
        _ => fail(&e),
    })?;
    if let Some(dir) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(Backup {
        bytes,
        users,
        revoked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file the `Any` driver opens is the one named, whatever its characters.
    #[test]
    fn the_any_driver_opens_the_file_named() {
        use sqlx::ConnectOptions;
        for name in [
            "/tmp/my data/app.db",
            "/tmp/a%20b/q?x#y.db",
            "/tmp/é/app.db",
        ] {
            let url = any_sqlite_url(name, "sqlite://whatever");
            let parsed: sqlx::any::AnyConnectOptions = url.parse().unwrap();
            let options = SqliteConnectOptions::from_url(&parsed.database_url).unwrap();
            assert_eq!(options.get_filename(), Path::new(name), "{url}");
        }
        assert!(any_sqlite_url("/a.db", "sqlite://a.db?mode=ro").ends_with("?mode=ro"));
    }

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

    #[test]
    fn only_sqlite_urls_are_opened() {
        for (url, file) in [
            ("sqlite://data/app.db", "data/app.db"),
            ("SQLITE://data/app.db", "data/app.db"),
            ("Sqlite:rel.db", "rel.db"),
            ("sqlite://p.db?mode=rwc", "p.db"),
        ] {
            let options = sqlite_options(url).unwrap();
            assert_eq!(options.get_filename(), Path::new(file), "{url}");
        }
        assert!(sqlite_options("sqlite::memory:").is_ok());
        for url in ["postgres://u:secret@h/app", "PostgreSQL://u:secret@h/app"] {
            assert!(matches!(target(url), Ok(Target::Postgres)), "{url}");
        }
        for (url, says) in [
            ("postgres://u:secret@h/app", "pg_dump"),
            ("mysql://u:secret@h/app", "mysql: is not"),
            ("C:\\data\\app.db", "Windows path"),
            ("data/app.db", "no scheme"),
            ("", "no scheme"),
            (":memory:", "no scheme"),
        ] {
            let e = sqlite_options(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("secret"), "{url}: {e}");
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A missing database is created 0600 before SQLite sees it (not when the URL forbids
    /// creating it); files readable by others lose those permissions, and nothing gains any.
    #[cfg(unix)]
    #[test]
    fn database_files_are_made_private_and_never_loosened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        keep_private(&db, false).unwrap();
        assert!(!db.exists());
        keep_private(&db, true).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);

        let wal = dir.path().join("app.db-wal");
        let shm = dir.path().join("app.db-shm");
        for (path, before, after) in [
            (&db, 0o644, 0o600),
            (&wal, 0o666, 0o600),
            (&shm, 0o640, 0o600),
        ] {
            std::fs::write(path, b"").unwrap();
            set_mode(path, before);
            keep_private(&db, true).unwrap();
            assert_eq!(mode(path), after, "{}", path.display());
        }
        // Owner-only already, or less: left alone (0400 does not become 0600).
        set_mode(&db, 0o400);
        keep_private(&db, true).unwrap();
        assert_eq!(mode(&db), 0o400);
        set_mode(&db, 0o444);
        keep_private(&db, true).unwrap();
        assert_eq!(mode(&db), 0o400);

        for (url, creates) in [
            ("sqlite://a.db", true),
            ("sqlite://a.db?mode=rwc", true),
            ("sqlite://a.db?cache=shared&mode=rw", false),
            ("sqlite://a.db?mode=ro", false),
        ] {
            assert_eq!(creates_file(url), creates, "{url}");
        }
    }

    /// Folders the server makes are 0700, parents included; one that exists is not changed.
    #[cfg(unix)]
    #[test]
    fn folders_are_created_private_and_existing_ones_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o755);
        let nested = dir.path().join("a").join("b");
        create_private_dir_all(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(dir.path()), 0o755);
        create_private_dir_all(&nested).unwrap();
    }

    /// Where there are no hard links: the copy takes its name by a rename, stays 0600, never
    /// replaces a file, and a failed rename leaves no empty file under the name.
    #[cfg(unix)]
    #[test]
    fn the_rename_fallback_publishes_a_private_copy_and_nothing_else() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("b.db.partial");
        create_private(&partial)
            .unwrap()
            .write_all(b"copy")
            .unwrap();
        let to = dir.path().join("b.db");
        publish_by_rename(&partial, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"copy");
        assert_eq!(mode(&to), 0o600);
        assert!(!partial.exists());

        create_private(&partial)
            .unwrap()
            .write_all(b"other")
            .unwrap();
        let taken = publish_by_rename(&partial, &to).unwrap_err();
        assert_eq!(taken.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"copy");

        let never = dir.path().join("c.db");
        assert!(publish_by_rename(&dir.path().join("missing"), &never).is_err());
        assert!(!never.exists());
    }
}
