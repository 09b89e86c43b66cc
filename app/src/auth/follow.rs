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

/// Follows the revocations from `cursor` on, for as long as the process lives (abort the
/// handle to stop). The revocations are read on a connection of the follower's own, so a busy
/// request pool never delays them; the listener is (re)connected with a time limit and a
/// growing pause between attempts, and never holds up the timer.
pub fn spawn(
    pool: &Pool,
    auth: Arc<Auth>,
    mut cursor: i64,
    resync: Duration,
) -> tokio::task::JoinHandle<()> {
    let url = pool.connect_options().database_url.to_string();
    tokio::spawn(async move {
        let own = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(resync.max(Duration::from_secs(1)))
            .connect_lazy(&url);
        let own = match own {
            Ok(pool) => pool,
            Err(e) => {
                tracing::error!(error = %e, "cannot follow revocations: other instances' sign-outs are not seen");
                return;
            }
        };
        let mut tick = tokio::time::interval(resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listener: Option<PgListener> = None;
        let mut retry_at = tokio::time::Instant::now();
        let mut pause = resync;
        let mut reading_failed = false;
        loop {
            if listener.is_none() && tokio::time::Instant::now() >= retry_at {
                match tokio::time::timeout(resync.max(Duration::from_secs(1)), listen(&url)).await {
                    Ok(Ok(l)) => {
                        listener = Some(l);
                        pause = resync;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, retry_in = ?pause, "cannot listen for revocations: reading them every {resync:?}");
                    }
                    Err(_) => {
                        tracing::warn!(retry_in = ?pause, "listening for revocations timed out: reading them every {resync:?}");
                    }
                }
                if listener.is_none() {
                    retry_at = tokio::time::Instant::now() + pause;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
            match catch_up(&auth, &own, cursor).await {
                Ok(next) => {
                    cursor = next;
                    if reading_failed {
                        tracing::info!("reading revocations again");
                        reading_failed = false;
                    }
                }
                Err(e) => {
                    if !reading_failed {
                        tracing::warn!(error = %e, "reading revocations failed: trying again every {resync:?}");
                    }
                    reading_failed = true;
                }
            }
            let woken = async {
                match listener.as_mut() {
                    Some(l) => l.try_recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                woken = woken => match woken {
                    Ok(Some(_)) => {
                        // A burst of revocations is read once: take what else is waiting.
                        if let Some(l) = listener.as_mut() {
                            while let Ok(Ok(Some(_))) =
                                tokio::time::timeout(Duration::ZERO, l.try_recv()).await
                            {}
                        }
                    }
                    // The connection was lost, and sqlx has listened again on a new one:
                    // what was sent in between is read now.
                    Ok(None) => tracing::info!("the revocations listener reconnected"),
                    Err(e) => {
                        tracing::warn!(error = %e, "the revocations listener failed: listening again");
                        listener = None;
                    }
                },
                _ = tick.tick() => {}
            }
        }
    })
}

async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen("revocations").await?;
    Ok(listener)
}
