//! The security events' statements (see [`crate::audit`]).

use super::{Store, StoreError};
use crate::audit::{Entry, Event, Kind};

/// Writes `entry` in `tx`, the transaction of the change it records.
pub(crate) async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entry: &Entry<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let (address, user_agent, actor) = entry.seen.stored();
    sqlx::query(
        "INSERT INTO security_events \
         (user_id, at, kind, detail, address, user_agent, session_id, actor) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry.user_id)
    .bind(now)
    .bind(entry.kind.as_str())
    .bind(entry.detail)
    .bind(address)
    .bind(user_agent)
    .bind(entry.session.map(|s| s.as_bytes().to_vec()))
    .bind(actor)
    .execute(&mut **tx)
    .await?;
    crate::metrics::audit_event(entry.kind.as_str());
    Ok(())
}

/// Deletes every event of account `user_id` (in the transaction that deletes it).
pub(crate) async fn forget(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM security_events WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

type Row = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<Vec<u8>>,
    String,
);

impl Store {
    /// Writes `entry` on its own (an event that changes nothing else: a failed sign-in), only
    /// while the account exists, in one statement: an attempt that lost a race with the
    /// account's deletion leaves no row (that a new account given the same id would show).
    pub async fn record_event(&self, entry: &Entry<'_>, now: i64) -> Result<(), StoreError> {
        let (address, user_agent, actor) = entry.seen.stored();
        let done = sqlx::query(
            "INSERT INTO security_events \
             (user_id, at, kind, detail, address, user_agent, session_id, actor) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM users WHERE id = $9)",
        )
        .bind(entry.user_id)
        .bind(now)
        .bind(entry.kind.as_str())
        .bind(entry.detail)
        .bind(address)
        .bind(user_agent)
        .bind(entry.session.map(|s| s.as_bytes().to_vec()))
        .bind(actor)
        .bind(entry.user_id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() > 0 {
            crate::metrics::audit_event(entry.kind.as_str());
        }
        Ok(())
    }

    /// The events of account `user_id`, newest first: at most `limit`, those older than the
    /// event `before` when given (the next page). Only the account's own: the deletion of an
    /// earlier account with its id (SQLite gives a deleted account's id again), and any event
    /// older than the account, are not listed.
    pub async fn events_of(
        &self,
        user_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT e.id, e.at, e.kind, e.detail, e.address, e.user_agent, e.session_id, e.actor \
             FROM security_events e \
             WHERE e.user_id = $1 AND e.id < $2 AND e.kind <> 'account_deleted' \
             AND e.at >= COALESCE((SELECT u.created_at FROM users u WHERE u.id = $3), 0) \
             ORDER BY e.id DESC LIMIT $4",
        )
        .bind(user_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(event).collect())
    }

    /// How many events of `kind` account `user_id` has (for the tests and the operator).
    pub async fn count_events(&self, user_id: i64, kind: Kind) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM security_events WHERE user_id = $1 AND kind = $2",
        )
        .bind(user_id)
        .bind(kind.as_str())
        .fetch_one(self.pool())
        .await?)
    }

    /// Deletes the events older than `before`. How many went.
    pub async fn purge_events(&self, before: i64) -> Result<u64, StoreError> {
        let gone = sqlx::query("DELETE FROM security_events WHERE at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(gone.rows_affected())
    }
}

/// A row as the reader gets it: the device in words, the session id as text.
fn event((id, at, kind, detail, address, user_agent, session, actor): Row) -> Event {
    let device = if actor == "operator" {
        "The operator".to_owned()
    } else if user_agent.is_empty() {
        String::new()
    } else {
        crate::sessions::agent::describe_device(&user_agent)
    };
    Event {
        id,
        at,
        kind,
        detail,
        address,
        device,
        session_id: session
            .and_then(|s| uuid::Uuid::from_slice(&s).ok())
            .map(|s| s.to_string()),
    }
}
