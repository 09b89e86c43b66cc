//! Recording that a session was used: `last_used_at` (its idle end moves on) and the newest
//! generation known to have reached its holder (which reuse detection reads), written at most
//! once a minute per session, in batches, by a task of their own.

use std::{collections::HashMap, sync::Arc};
use uuid::Uuid;

use super::Sessions;
use crate::{cache::Bounded, store::Store, store::StoreError};

/// How often at most `last_used_at` is written for one session.
pub const RECORD_USE_EVERY_SECS: i64 = 60;

/// Uses kept waiting at most. Beyond, a use that only moves `last_used_at` on is not recorded
/// (the next request tries again); one that confirms a new generation may go on to twice this,
/// since reuse detection reads it (see [`Sessions::rotate`]) and each follows a rotation that
/// already waited for its own write.
pub(super) const PENDING_USES_MAX: usize = 10_000;
/// Uses written per transaction.
const USES_PER_TRANSACTION: usize = 256;

/// Uses of sessions waiting to be written: id → (when, the newest generation used). One task
/// at a time writes them, a few hundred to a transaction, so a crowd of first uses (every token
/// of 100,000 users presented once) costs one spawned task and a few hundred commits, not a
/// task and a commit each; and the sessions' write lock is let go between transactions, so a
/// sign-in or a sign-out waits for one of them at most.
#[derive(Debug, Default)]
pub(super) struct PendingUses {
    pending: std::sync::Mutex<HashMap<Uuid, (i64, i64)>>,
    /// Whether a task is on its way to write `pending`.
    writing: std::sync::atomic::AtomicBool,
    /// Held while a batch is taken and written: [`Sessions::flush_recorded_uses`] waits for a batch
    /// already taken, then writes what is left.
    flush: tokio::sync::Mutex<()>,
    /// When a full queue was last reported (unix seconds): once a minute at most.
    full_reported: std::sync::atomic::AtomicI64,
}

impl PendingUses {
    /// Queues a use, or says `false` when the queue is full. The lock is held for a map insert.
    fn add(&self, id: Uuid, generation: i64, now: i64, confirms: bool) -> bool {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, gen)) = pending.get_mut(&id) {
            *at = (*at).max(now);
            *gen = (*gen).max(generation);
            return true;
        }
        let room = if confirms { 2 } else { 1 } * PENDING_USES_MAX;
        if pending.len() >= room {
            drop(pending);
            self.report_full(now);
            return false;
        }
        pending.insert(id, (now, generation));
        true
    }

    fn report_full(&self, now: i64) {
        use std::sync::atomic::Ordering;
        let last = self.full_reported.load(Ordering::Relaxed);
        if now - last >= 60
            && self
                .full_reported
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                limit = PENDING_USES_MAX,
                "sessions' last uses are queued faster than they are written: some are dropped"
            );
        }
    }

    fn take(&self) -> HashMap<Uuid, (i64, i64)> {
        std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }

    /// Takes what is pending and writes it. Uses that could not be written are logged and
    /// forgotten in `last_recorded`, so a later use tries again (a token's next use a minute on: see
    /// `Verified::use_recorded_within`). The first failure is returned.
    async fn write(
        &self,
        store: &Store,
        write: &tokio::sync::Mutex<()>,
        last_recorded: &Bounded<Uuid, (i64, i64)>,
    ) -> Result<(), StoreError> {
        let _flush = self.flush.lock().await;
        let mut batch: Vec<_> = self.take().into_iter().collect();
        // In the store's lock order: two instances writing the same sessions cannot deadlock.
        batch.sort_unstable_by_key(|(id, _)| *id);
        let mut first_error = None;
        for chunk in batch.chunks(USES_PER_TRANSACTION) {
            if let Err(e) = record_uses(store, write, chunk).await {
                tracing::warn!(error = %e, uses = chunk.len(), "recording sessions' last use failed");
                for (id, _) in chunk {
                    last_recorded.remove(id);
                }
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Clears [`PendingUses::writing`] if the writing task panics: no writer would start again otherwise.
struct ClearOnPanic(Arc<PendingUses>);

impl Drop for ClearOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .writing
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

async fn record_uses(
    store: &Store,
    write: &tokio::sync::Mutex<()>,
    batch: &[(Uuid, (i64, i64))],
) -> Result<(), StoreError> {
    let _write = write.lock().await;
    store.record_uses(batch).await
}

impl Sessions {
    /// Records that an access token of generation `generation` of a session was used at `now`:
    /// `last_used_at` is written at most once a minute, and a generation is marked as having
    /// reached its holder the first time one of its tokens is used. The write is queued and
    /// made by a task of its own, in a batch with the others waiting; it never holds up the
    /// request. When the queue is full the use is dropped, and the next one tries again: the
    /// answer is `false` then, `true` when the use is queued or needs no write.
    pub fn record_use(&self, id: Uuid, generation: i64, now: i64) -> bool {
        let known = self.last_recorded.get(&id);
        if known.is_some_and(|(at, confirmed)| {
            now - at < RECORD_USE_EVERY_SECS && generation <= confirmed
        }) {
            return true;
        }
        // Unknown here (evicted, or since a restart): any generation past the first may be one
        // to confirm.
        let confirms = known.map_or(generation > 1, |(_, confirmed)| generation > confirmed);
        let confirmed = known.map_or(generation, |(_, c)| c.max(generation));
        // Remembered before it is queued: a failed write that forgets it then comes after.
        self.last_recorded.insert(id, (now, confirmed));
        if !self.uses.add(id, generation, now, confirms) {
            match known {
                Some(before) => self.last_recorded.insert(id, before),
                None => self.last_recorded.remove(&id),
            }
            return false;
        }
        use std::sync::atomic::Ordering;
        if self.uses.writing.swap(true, Ordering::AcqRel) {
            return true; // the task on its way takes this one too
        }
        let (store, write, uses, last_recorded) = (
            self.store.clone(),
            self.write.clone(),
            self.uses.clone(),
            self.last_recorded.clone(),
        );
        tokio::spawn(async move {
            let _clear = ClearOnPanic(uses.clone());
            loop {
                // A failure is logged, and forgotten so a later use tries again.
                let _ = uses.write(&store, &write, &last_recorded).await;
                uses.writing.store(false, Ordering::Release);
                // A use queued after the batch was taken found `writing` still set and left
                // itself to this task: look once more, unless a new task has taken over.
                if uses.is_empty() || uses.writing.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
        true
    }

    /// Writes every use queued so far ([`record_use`](Self::record_use)) before it returns, waiting for
    /// a batch already being written: at shutdown, and in tests. A use that fails is logged
    /// (and tried again at a later use); the error returned is this call's own.
    pub async fn flush_recorded_uses(&self) -> Result<(), StoreError> {
        self.uses
            .write(&self.store, &self.write, &self.last_recorded)
            .await
    }

    /// Forgets every session's last write: the next use of each is written (tests).
    #[cfg(test)]
    pub(crate) fn forget_recorded_uses(&mut self) {
        self.last_recorded = Arc::new(Bounded::new(crate::cache::DEFAULT_ENTRIES));
    }

    /// Whether a task is writing queued uses (tests).
    #[cfg(test)]
    pub(super) fn writing(&self) -> bool {
        self.uses.writing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// [`record_use`](Self::record_use)'s write of one use, made now (tests).
    pub async fn record_use_now(
        &self,
        id: Uuid,
        generation: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        record_uses(&self.store, &self.write, &[(id, (now, generation))]).await
    }
}
