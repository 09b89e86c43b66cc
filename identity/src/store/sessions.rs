//! The sessions table: every statement of [`crate::sessions`] but those of a sign-in, a password
//! change and ending every session of a user, which are still written beside their callers.
//!
//! **The lock order.** Every writer of several sessions takes them in session-id order: a batch
//! of rotations ([`Store::rotate_sessions`]) or of uses ([`Store::record_uses`]) sorted by id,
//! and on PostgreSQL a writer of all of a user's sessions through [`lock_sessions_of`]. Two
//! instances writing the same sessions then never deadlock. A session's row is taken before the
//! revocations' lock (on PostgreSQL, a trigger takes it until commit: migrations/postgres/0002).
//! The purge takes no part in the order: it skips the rows another writer holds.

use std::sync::Arc;
use uuid::Uuid;

use super::{Dialect, Store, StoreError};
use crate::sessions::{EndReason, Session};

/// The columns of a [`Session`], in the order its statements return them.
pub(crate) const COLUMNS: &str =
    "id, user_id, refresh_key, generation, confirmed_generation, rotated_at, \
                       created_at, last_used_at, expires_at, access_exp, user_agent, address, \
                       revoked_at, revoked_reason, auth_method, authenticated_at";

/// One rotation: the compare-and-swap of session `id`'s generation from `generation` to the
/// next, at `now`, for an access token until `token_exp`, from `address`.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub id: Uuid,
    pub generation: i64,
    pub now: i64,
    pub token_exp: i64,
    pub address: String,
}

/// On PostgreSQL, locks the user's row, then every session of `user_id` in id order, the order
/// in which every writer of several sessions takes them (a batch of rotations or of uses,
/// sorted by id): a writer of all of a user's sessions (ending them, a password change,
/// deleting the account) that took them in the order of the table instead could deadlock with
/// another instance's batch. The user's row first, so that no session of theirs can be started
/// meanwhile (sign-in reads the user `FOR SHARE`) and then locked out of order. (The purge
/// skips rows locked here rather than waiting for them.) On SQLite, which has one writer at a
/// time, the transaction becomes that writer at once (a write to the user's row that changes
/// nothing): one that read first and wrote later would fail outright, rather than wait, if
/// another writer committed in between.
pub(crate) async fn lock_sessions_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dialect: crate::store::Dialect,
    user_id: i64,
) -> Result<(), sqlx::Error> {
    if dialect == crate::store::Dialect::Sqlite {
        sqlx::query("UPDATE users SET id = id WHERE id = $1")
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
    }
    if dialect == crate::store::Dialect::Postgres {
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(user_id)
            .fetch_all(&mut **tx)
            .await?;
        sqlx::query("SELECT id FROM sessions WHERE user_id = $1 ORDER BY id FOR UPDATE")
            .bind(user_id)
            .fetch_all(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Ends session `id` (of `user_id`, when given) in `tx`: its `access_exp` when it was live.
async fn end_one_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: Uuid,
    user_id: Option<i64>,
    reason: EndReason,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let ended: Option<(Vec<u8>, i64)> = sqlx::query_as(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE id = $3 AND revoked_at IS NULL AND ($4 IS NULL OR user_id = $5) \
         RETURNING id, access_exp",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(id.as_bytes().as_slice())
    .bind(user_id)
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(ended.map(|(_, access_exp)| access_exp))
}

impl Store {
    /// Ends every live session of `user_id` but `except`, in the lock order, with `event` when
    /// given (in the same transaction): each one's id and the latest expiry of its access
    /// tokens.
    pub async fn end_sessions_of(
        &self,
        user_id: i64,
        except: Option<Uuid>,
        reason: EndReason,
        event: Option<&crate::audit::Entry<'_>>,
        now: i64,
    ) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
        let except = except.map(|id| id.as_bytes().to_vec()).unwrap_or_default();
        let mut tx = self.pool().begin().await?;
        lock_sessions_of(&mut tx, self.dialect(), user_id).await?;
        let ended = sqlx::query_as(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE user_id = $3 AND revoked_at IS NULL AND id != $4 \
             RETURNING id, access_exp",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(user_id)
        .bind(except)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(event) = event {
            super::audit::record(&mut tx, event, now).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    pub async fn session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"))
                .bind(id.as_bytes().as_slice())
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The sessions of `user_id` that are neither ended, nor past their end at `now`, nor
    /// unused since `idle_since`: most recently used first, the first 500.
    pub async fn live_sessions_of(
        &self,
        user_id: i64,
        now: i64,
        idle_since: i64,
    ) -> Result<Vec<Session>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND expires_at > $2 AND last_used_at > $3 \
             ORDER BY last_used_at DESC, created_at DESC LIMIT 500"
        ))
        .bind(user_id)
        .bind(now)
        .bind(idle_since)
        .fetch_all(self.pool())
        .await?)
    }

    /// The ended sessions whose access tokens may be accepted until `exp` >= `since`: id and
    /// `access_exp`.
    pub async fn ended_sessions(&self, since: i64) -> Result<Vec<(Uuid, i64)>, StoreError> {
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, access_exp FROM sessions WHERE revoked_at IS NOT NULL AND access_exp >= $1",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, exp)| Some((Uuid::from_slice(&id).ok()?, exp)))
            .collect())
    }

    /// SQLite: the newest ending of a session written so far (0 when there is none), where a
    /// running server starts following them ([`session_endings_after`](Self::session_endings_after)).
    pub async fn session_endings_cursor(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM session_endings")
                .fetch_one(self.pool())
                .await?
                .unwrap_or(0),
        )
    }

    /// SQLite: the endings of sessions written after `cursor` (by any process on the file: the
    /// operator's `server admin` among them), at most `limit`, oldest first: each one's id
    /// (the next cursor), the session and the latest expiry of its access tokens.
    pub async fn session_endings_after(
        &self,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Uuid, i64)>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, session_id, access_exp FROM session_endings WHERE id > $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(cursor)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, session, exp)| Some((id, Uuid::from_slice(&session).ok()?, exp)))
            .collect())
    }

    /// SQLite: forgets the endings whose access tokens are refused as expired anyway.
    pub async fn purge_session_endings(&self, dead_before: i64) -> Result<u64, StoreError> {
        let gone = sqlx::query("DELETE FROM session_endings WHERE access_exp < $1")
            .bind(dead_before)
            .execute(self.pool())
            .await?;
        Ok(gone.rows_affected())
    }

    /// Writes the rotations of `batch` in one transaction, in session-id order (the lock
    /// order), and hands each one's result to `answer` with its `R`: the session as rotated,
    /// or `None` when its generation had moved on or it had ended. When a statement is
    /// refused, each rotation is tried again on its own, so the refusal answers only its own;
    /// when the database cannot be reached, every rotation gets that one error at once.
    pub async fn rotate_sessions<R>(
        &self,
        mut batch: Vec<(Rotation, R)>,
        mut answer: impl FnMut(R, Result<Option<Session>, Arc<StoreError>>),
    ) {
        batch.sort_by_key(|(r, _)| r.id); // stable: one session's rotations keep their order
        let (max, _) = self.dialect().max_min();
        let sql = format!(
            "UPDATE sessions SET generation = generation + 1, \
             confirmed_generation = {max}(confirmed_generation, generation), \
             rotated_at = $1, last_used_at = $2, access_exp = {max}(access_exp, $3), address = $4 \
             WHERE id = $5 AND generation = $6 AND revoked_at IS NULL RETURNING {COLUMNS}"
        );
        let rotate = |r: &Rotation| {
            sqlx::query_as::<_, Session>(&sql)
                .bind(r.now)
                .bind(r.now)
                .bind(r.token_exp)
                .bind(r.address.clone())
                .bind(r.id.as_bytes().to_vec())
                .bind(r.generation)
        };
        if batch.len() > 1 {
            let written: Result<Vec<Option<Session>>, sqlx::Error> = async {
                let mut tx = self.pool().begin().await?;
                let mut results = Vec::with_capacity(batch.len());
                for (r, _) in &batch {
                    results.push(rotate(r).fetch_optional(&mut *tx).await?);
                }
                tx.commit().await?;
                Ok(results)
            }
            .await;
            match written {
                Ok(results) => {
                    for ((_, r), result) in batch.into_iter().zip(results) {
                        answer(r, Ok(result));
                    }
                    return;
                }
                Err(e @ sqlx::Error::Database(_)) => {
                    tracing::warn!(error = %e, rotations = batch.len(),
                        "a batch of rotations was refused: each is tried on its own");
                }
                Err(e) => {
                    let e = Arc::new(StoreError(e));
                    for (_, r) in batch {
                        answer(r, Err(e.clone()));
                    }
                    return;
                }
            }
        }
        for (rotation, r) in batch {
            let result = rotate(&rotation).fetch_optional(self.pool()).await;
            answer(r, result.map_err(|e| Arc::new(StoreError(e))));
        }
    }

    /// Records uses of sessions, one transaction for the `batch`: id → (when, the newest
    /// generation used). `last_used_at` and `confirmed_generation` only move on, the latter
    /// never past the session's generation. The caller sorts the batch by id (the lock order).
    pub async fn record_uses(&self, batch: &[(Uuid, (i64, i64))]) -> Result<(), StoreError> {
        let (max, min) = self.dialect().max_min();
        let sql = format!(
            "UPDATE sessions SET last_used_at = {max}(last_used_at, $1), \
             confirmed_generation = {max}(confirmed_generation, {min}($2, generation)) WHERE id = $3"
        );
        let mut tx = self.pool().begin().await?;
        for (id, (now, generation)) in batch {
            sqlx::query(&sql)
                .bind(now)
                .bind(generation)
                .bind(id.as_bytes().as_slice())
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx.commit().await?)
    }

    /// Moves the access tokens' end of session `id` on to `token_exp`, if it is still live at
    /// `generation`. Whether it was.
    pub async fn extend_access(
        &self,
        id: Uuid,
        generation: i64,
        token_exp: i64,
    ) -> Result<bool, StoreError> {
        let (max, _) = self.dialect().max_min();
        let done = sqlx::query(&format!(
            "UPDATE sessions SET access_exp = {max}(access_exp, $1) \
             WHERE id = $2 AND generation = $3 AND revoked_at IS NULL"
        ))
        .bind(token_exp)
        .bind(id.as_bytes().as_slice())
        .bind(generation)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends session `id` (of `user_id`, when given): its `access_exp` when it was live.
    pub async fn end_session(
        &self,
        id: Uuid,
        user_id: Option<i64>,
        reason: EndReason,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let ended = end_one_in(&mut tx, id, user_id, reason, now).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Signing out with an access token, in one transaction: session `session` of `user_id`
    /// ends and token `jti` (valid until `token_exp`) is revoked. The session's `access_exp`
    /// when it was live.
    pub async fn sign_out(
        &self,
        session: Uuid,
        user_id: i64,
        jti: Uuid,
        token_exp: i64,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool().begin().await?;
        // The session's row first, the revocation second (the lock order): this cannot
        // deadlock with another instance ending the same session.
        let ended = end_one_in(&mut tx, session, Some(user_id), EndReason::Logout, now).await?;
        super::revocations::write_revocation(&mut tx, jti, user_id, token_exp, now).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Deletes the sessions that are over (ended, past `now`, or unused since `idle_since`)
    /// and whose access tokens all expired before `dead`. How many went.
    pub async fn purge_sessions(
        &self,
        dead: i64,
        now: i64,
        idle_since: i64,
    ) -> Result<u64, StoreError> {
        // On PostgreSQL, rows another instance has locked are left for the next purge: waiting
        // for them while holding the ones already taken (in the table's order, not by id)
        // could deadlock with a writer that takes a user's sessions in id order.
        let skip_locked = match self.dialect() {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let gone = sqlx::query(&format!(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE access_exp < $1 \
             AND (revoked_at IS NOT NULL OR expires_at <= $2 OR last_used_at <= $3){skip_locked})"
        ))
        .bind(dead)
        .bind(now)
        .bind(idle_since)
        .execute(self.pool())
        .await?;
        Ok(gone.rows_affected())
    }
}
