//! The sessions' write lock, and the rotations queued for it.
//!
//! Every write to the sessions table takes the lock first. SQLite has one writer at a time;
//! writers that collide inside SQLite wait in its busy handler, which sleeps in steps of up to
//! 100 ms. Queued here instead, each write waits only for the ones before it, and rotations
//! waiting together are written together ([`Rotations`]).

use std::{sync::Arc, time::Duration};

use super::{RefreshError, Session};
use crate::store::{sessions::Rotation as Row, Store, StoreError};

/// How long a request waits for its turn to write the sessions table. Beyond, it is answered
/// `503 temporarily_unavailable` (with `Retry-After`) instead of joining a queue without end.
pub const WRITE_WAIT: Duration = Duration::from_secs(2);

/// Why a write to the sessions table did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Db(#[from] StoreError),
    /// The write lock was not had within [`WRITE_WAIT`]: nothing was written.
    #[error("the sessions' writes were queued longer than {WRITE_WAIT:?}")]
    Busy,
}

/// The write lock, or [`WriteError::Busy`] after [`WRITE_WAIT`].
pub(super) async fn lock_write(
    write: &tokio::sync::Mutex<()>,
) -> Result<tokio::sync::MutexGuard<'_, ()>, WriteError> {
    tokio::time::timeout(WRITE_WAIT, write.lock())
        .await
        .map_err(|_| WriteError::Busy)
}

/// Where the result of a rotation goes. `None`: the generation had moved on (or the session
/// ended) meanwhile.
type Reply = tokio::sync::oneshot::Sender<Result<Option<Session>, RefreshError>>;

/// One rotation on its way to the database: the compare-and-swap of a session's generation,
/// and where its result goes.
#[derive(Debug)]
pub(super) struct Rotation {
    row: Row,
    reply: Reply,
}

/// Rotations waiting for the sessions' write lock. Whoever takes the lock writes every one
/// waiting, in one transaction: one commit (one fsync on SQLite) for all of them. Sixteen
/// sessions rotating at once then wait for two commits or so, not sixteen in a row.
#[derive(Debug, Default)]
pub(super) struct Rotations {
    pending: std::sync::Mutex<Vec<Rotation>>,
}

impl Rotations {
    /// Queues the rotation `row` and waits for its result: written by whichever request takes
    /// the write lock next, this one or another. A request whose rotation is answered while it
    /// waits for the lock leaves the queue for the lock at once, so each turn at the lock
    /// writes a batch, not one rotation.
    ///
    /// The batch is written by a task of its own, which holds the lock until it is done: a
    /// request dropped meanwhile abandons nobody else's rotation. (The refresh handlers already
    /// run on tasks of their own, so a client that hangs up drops none of this; only a runtime
    /// shutting down does.) A rotation dropped before its batch is taken is not written. One
    /// that waits longer than [`WRITE_WAIT`] is withdrawn (`Busy`): not written if its batch
    /// was not yet taken; if it was, it is written and its answer lost, and the client's retry
    /// with the same token is answered the current pair (the pair is not yet seen in use).
    pub(super) async fn submit(
        &self,
        store: &Store,
        write: &Arc<tokio::sync::Mutex<()>>,
        row: Row,
    ) -> Result<Option<Session>, RefreshError> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        self.lock().push(Rotation { row, reply });
        // A sender dropped unanswered: the writing task panicked.
        let busy = |_| Err(RefreshError::Busy);
        let held = tokio::select! {
            biased;
            done = &mut answer => return done.unwrap_or_else(busy),
            held = write.clone().lock_owned() => held,
            // Dropping `answer` withdraws the rotation: a batch taken later skips it.
            () = tokio::time::sleep(WRITE_WAIT) => return Err(RefreshError::Busy),
        };
        let batch = std::mem::take(&mut *self.lock());
        if batch.is_empty() {
            drop(held); // ours is in a batch being written
        } else {
            let store = store.clone();
            let _ = tokio::spawn(async move {
                let _held = held;
                write_rotations(&store, batch).await;
            })
            .await;
        }
        answer.await.unwrap_or_else(busy)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rotation>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Writes `batch` ([`Store::rotate_sessions`]) and answers each rotation.
async fn write_rotations(store: &Store, mut batch: Vec<Rotation>) {
    // Dropped before its turn: nobody would get the new token.
    batch.retain(|r| !r.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let batch = batch.into_iter().map(|r| (r.row, r.reply)).collect();
    store
        .rotate_sessions(batch, |reply: Reply, result| {
            let _ = reply.send(result.map_err(RefreshError::Db));
        })
        .await;
}
