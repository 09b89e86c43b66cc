//! Opening the database a `DATABASE_URL` names: its scheme, SQLite's settings and the private
//! files of a SQLite database.

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::sqlite::SqliteConnectOptions;

use super::{files::create_private, files::create_private_dir_all, Pool};

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

/// The file a `sqlite:` `DATABASE_URL` names, as the server would open it (relative to the
/// working directory); `None` for any other URL.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    match target(url) {
        Ok(Target::Sqlite(options)) => Some(options.get_filename().to_path_buf()),
        _ => None,
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
/// waits for its `503` (the next ones are answered at once: see [`Health`](super::Health)).
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
            POSTGRES_MIGRATIONS.run(&pool).await?;
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
    SQLITE_MIGRATIONS.run(&pool).await?;
    Ok(pool)
}

/// The migrations of each dialect, built into the binary.
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Why the database is not ready for requests (see [`Store::ready`](super::Store::ready)).
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("the database does not answer: {0}")]
    Unreachable(String),
    #[error("the database misses migration {0}: run this version of the server once to apply it")]
    Migration(i64),
}

impl super::Store {
    /// Whether the database answers, within `wait`, and has every migration this binary was
    /// built with (another version's server, or a restored backup, may have left it behind).
    pub async fn ready(&self, wait: Duration) -> Result<(), NotReady> {
        let migrator = match self.dialect() {
            super::Dialect::Sqlite => &SQLITE_MIGRATIONS,
            super::Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        let applied = tokio::time::timeout(
            wait,
            sqlx::query_scalar::<_, i64>(
                "SELECT version FROM _sqlx_migrations WHERE success = TRUE",
            )
            .fetch_all(self.pool()),
        )
        .await
        .map_err(|_| NotReady::Unreachable(format!("no answer within {wait:?}")))?
        .map_err(|e| match super::failure(&e) {
            // Reached, but no table of migrations: none has run.
            super::Failure::Other => {
                NotReady::Migration(migrator.iter().next().map_or(0, |m| m.version))
            }
            super::Failure::Unreachable | super::Failure::Busy => {
                NotReady::Unreachable(e.to_string())
            }
        })?;
        match migrator
            .iter()
            .find(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        {
            Some(missing) => Err(NotReady::Migration(missing.version)),
            None => Ok(()),
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
pub(super) fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, DbError> {
    match target(url)? {
        Target::Sqlite(options) => Ok(*options),
        Target::Postgres => Err(DbError::Scheme(
            "`server backup` copies a SQLite database; back PostgreSQL up with pg_dump".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use crate::store::files::tests::{mode, set_mode};

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
}
