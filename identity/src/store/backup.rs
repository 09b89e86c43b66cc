//! A consistent copy of a SQLite database, taken while the server runs (`server backup`).

use std::{path::Path, time::Duration};

use sqlx::sqlite::SqliteConnectOptions;

use super::{connect::sqlite_options, files::create_private, files::publish, DbError};

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
