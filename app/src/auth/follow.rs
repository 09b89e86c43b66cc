//! Several instances on one PostgreSQL database: each learns of the revocations the others
//! commit, and refuses their tokens from memory as it refuses its own.
//!
//! Every revocation is appended to the `revocations` table by a trigger, in the transaction
//! that makes it, in commit order (migrations/postgres/0002). Each instance keeps a cursor over
//! its ids and reads what lies past it:
//!
//! - when `NOTIFY revocations` wakes it (milliseconds after the commit);
//! - every [`RESYNC_INTERVAL`] whatever happens: sqlx's `PgListener` drops the notifications
//!   sent while it reconnects, so a lost wake-up delays a revocation by one interval at most;
//! - right after every (re)connection of its listener.
//!
//! At start the cursor is read before the in-memory sets are loaded, so a revocation committed
//! while they load is read again (applying one twice changes nothing).

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgListener;
use uuid::Uuid;

use super::Auth;
use crate::db::Pool;

/// How often the revocations are read without a wake-up: the longest a revocation committed
/// through another instance can go unseen here when its notification is lost.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Rows read per query.
const BATCH: i64 = 1000;

/// The newest revocation's id now (0 when there is none).
pub async fn cursor(pool: &Pool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM revocations")
        .fetch_one(pool)
        .await
}

/// Reads the revocations past `cursor` into memory; returns the new cursor.
pub async fn catch_up(auth: &Auth, pool: &Pool, mut cursor: i64) -> Result<i64, sqlx::Error> {
    loop {
        let rows: Vec<(i64, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, kind, key, exp FROM revocations WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(cursor)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        let read = rows.len() as i64;
        let mut ended = Vec::new();
        for (id, kind, key, exp) in rows {
            match kind.as_str() {
                "token" => {
                    if let Ok(jti) = Uuid::from_slice(&key) {
                        auth.blocklist.remember(jti, exp);
                    }
                }
                _ => ended.push((key, exp)),
            }
            cursor = id;
        }
        auth.sessions.remember_ended(ended);
        if read < BATCH {
            return Ok(cursor);
        }
    }
}

/// Drops the revocations whose tokens are refused as expired anyway.
pub async fn purge(pool: &Pool, dead_before: i64) -> Result<u64, sqlx::Error> {
    let gone = sqlx::query("DELETE FROM revocations WHERE exp < $1")
        .bind(dead_before)
        .execute(pool)
        .await?;
    Ok(gone.rows_affected())
}

/// Follows the revocations from `cursor` on, for as long as the process lives.
pub fn spawn(
    pool: Pool,
    auth: Arc<Auth>,
    mut cursor: i64,
    resync: Duration,
) -> tokio::task::JoinHandle<()> {
    let url = pool.connect_options().database_url.to_string();
    tokio::spawn(async move {
        loop {
            let listener = async {
                let mut listener = PgListener::connect(&url).await?;
                listener.listen("revocations").await?;
                Ok::<_, sqlx::Error>(listener)
            }
            .await;
            let mut listener = match listener {
                Ok(listener) => Some(listener),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for revocations: reading them every {resync:?}");
                    None
                }
            };
            loop {
                match catch_up(&auth, &pool, cursor).await {
                    Ok(next) => cursor = next,
                    Err(e) => tracing::warn!(error = %e, "reading revocations failed"),
                }
                let woken = async {
                    match listener.as_mut() {
                        Some(l) => l.try_recv().await.map(|n| n.is_some()),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    woken = woken => match woken {
                        Ok(true) => {}
                        // The connection was lost (what was sent meanwhile is lost with it):
                        // listen again, and read what was missed.
                        Ok(false) | Err(_) => {
                            tracing::warn!("the revocations listener lost its connection: reconnecting");
                            break;
                        }
                    },
                    () = tokio::time::sleep(resync) => {
                        if listener.is_none() {
                            break; // try to listen again
                        }
                    }
                }
            }
        }
    })
}
