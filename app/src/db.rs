//! Opening the database and bringing its schema up to date.
//!
//! The seam for a second database engine: everything else names [`Pool`], and SQL lives only
//! in the modules that own its tables (`auth::users`, `auth::blocklist`).

use sqlx::sqlite::SqliteConnectOptions;

/// The connection pool every module is handed: sqlx's `Any` driver, so that one binary can open
/// whichever database its URL names (SQLite today; PostgreSQL is being added).
pub type Pool = sqlx::AnyPool;

use std::{path::Path, str::FromStr, time::Duration};

/// Connections the pool opens at most (sqlx runs each on a thread of its own).
pub const MAX_CONNECTIONS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    Url(sqlx::Error),
    /// The URL names no database this build opens. Says the scheme only: the rest of a URL may
    /// hold a password.
    #[error("DATABASE_URL must be a sqlite: URL (sqlite://PATH); {0}")]
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

/// Opens the database at `url` (a SQLite file is created if missing) and runs its migrations.
pub async fn connect(url: &str) -> Result<Pool, DbError> {
    sqlx::any::install_default_drivers();
    let sqlite = match target(url)? {
        Target::Sqlite(options) => options,
        Target::Postgres => {
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(PG_MAX_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(10))
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
