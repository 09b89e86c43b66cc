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
//! At start the cursor is read before the set of revocations is loaded, so a revocation
//! committed while it loads is read again (applying one twice changes nothing).

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgListener;

use crate::{
    store::{Store, StoreError},
    Auth,
};

/// How often the revocations are read without a wake-up: the longest a revocation committed
/// through another instance can go unseen here when its notification is lost.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Rows read per query.
const BATCH: i64 = 1000;

/// When this process last read every revocation of the other instances (unix seconds; 0:
/// never). Its distance from now is the feed's lag (`authapp_revocation_feed_lag_seconds`).
static LAST_READ: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Notes that this process has just read every revocation of the other processes.
pub fn read_all_now() {
    LAST_READ.store(
        crate::tokens::access::now_unix(),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// How many seconds ago this process last read every revocation of the other instances
/// (on SQLite, every session ending of another process: the operator's command) (`None`
/// before the first read).
pub fn lag(now: i64) -> Option<i64> {
    match LAST_READ.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        at => Some(now.saturating_sub(at).max(0)),
    }
}

/// The newest revocation's id now (0 when there is none).
pub async fn cursor(store: &Store) -> Result<i64, StoreError> {
    store.revocations_cursor().await
}

/// Reads the revocations past `cursor` into memory; returns the new cursor.
pub async fn catch_up(auth: &Auth, store: &Store, mut cursor: i64) -> Result<i64, StoreError> {
    loop {
        let rows = store.revocations_after(cursor, BATCH).await?;
        let read = rows.len() as i64;
        if let Some(last) = rows.last() {
            cursor = last.id;
        }
        crate::metrics::revocations_followed(rows.len());
        auth.revocations.remember(
            rows.into_iter()
                .filter_map(|row| Some((row.kind, row.key?, row.exp))),
        );
        if read < BATCH {
            read_all_now();
            return Ok(cursor);
        }
    }
}

/// Drops the revocations whose tokens are refused as expired anyway.
pub async fn purge(store: &Store, dead_before: i64) -> Result<u64, StoreError> {
    store.purge_revocations(dead_before).await
}

/// How long one attempt to (re)connect the listener may take.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Follows the revocations from `cursor` on, for as long as the process lives. Two tasks: the
/// listener, which only wakes the reader (and reconnects, with a time limit and a growing pause,
/// never cancelled by anything else), and the reader, which reads on a connection of its own
/// when woken and at every tick, whatever the listener is doing.
pub fn spawn(
    store: &Store,
    auth: Arc<Auth>,
    mut cursor: i64,
    resync: Duration,
) -> tokio::task::JoinHandle<()> {
    let url = store.pool().connect_options().database_url.to_string();
    let wake = Arc::new(tokio::sync::Notify::new());
    let listening = tokio::spawn(listen_and_wake(url.clone(), wake.clone()));
    tokio::spawn(async move {
        // The listener goes when the reader does.
        struct Abort(tokio::task::JoinHandle<()>);
        impl Drop for Abort {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _listening = Abort(listening);
        let own = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(resync.clamp(Duration::from_secs(1), LISTEN_TIMEOUT))
            .connect_lazy(&url);
        let own = match own {
            Ok(pool) => Store::new(pool),
            Err(e) => {
                tracing::error!(error = %e, "cannot follow revocations: other instances' sign-outs are not seen");
                return;
            }
        };
        let mut tick = tokio::time::interval(resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = wake.notified() => {}
                _ = tick.tick() => {}
            }
            match catch_up(&auth, &own, cursor).await {
                Ok(next) => {
                    cursor = next;
                    if failing {
                        tracing::info!("reading revocations again");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "reading revocations failed: trying again every {resync:?}");
                    }
                    failing = true;
                    // Often the first to find the database gone: requests are answered at
                    // once from then on, not after each waits for the pool.
                    auth.health.observe(&e.0);
                }
            }
        }
    })
}

/// Listens for `NOTIFY revocations` and wakes the reader: at every notification, and after
/// every (re)connection (what was sent while it was down is read then).
async fn listen_and_wake(url: String, wake: Arc<tokio::sync::Notify>) {
    let mut pause = Duration::from_secs(1);
    loop {
        match tokio::time::timeout(LISTEN_TIMEOUT, listen(&url)).await {
            Ok(Ok(mut listener)) => {
                pause = Duration::from_secs(1);
                wake.notify_one();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => wake.notify_one(),
                        // Lost, and listening again on a new connection (sqlx reconnects).
                        Ok(None) => {
                            tracing::info!("the revocations listener reconnected");
                            wake.notify_one();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the revocations listener failed: listening again");
                            break;
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, retry_in = ?pause, "cannot listen for revocations: reading them on the timer meanwhile");
            }
            Err(_) => {
                tracing::warn!(retry_in = ?pause, "listening for revocations timed out: reading them on the timer meanwhile");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen("revocations").await?;
    Ok(listener)
}
