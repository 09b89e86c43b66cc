//! The security events' statements (see [`crate::audit`]).

use super::{Store, StoreError};
use crate::audit::{Entry, Event, Kind};

/// The columns an event is written with: `$1` to `$8`, bound by [`bound`].
const INSERT: &str = "INSERT INTO security_events \
    (user_id, at, kind, detail, address, user_agent, session_id, actor)";

/// `sql` (an [`INSERT`] of one event) with the event's eight values bound as `$1` to `$8`.
fn bound<'q>(
    sql: &'q str,
    entry: &Entry<'_>,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let (address, user_agent, actor) = entry.seen.stored();
    sqlx::query(sql)
        .bind(entry.user_id)
        .bind(now)
        .bind(entry.kind.as_str())
        .bind(entry.detail.to_owned())
        .bind(address)
        .bind(user_agent)
        .bind(entry.session.map(|s| s.as_bytes().to_vec()))
        .bind(actor)
}

/// Writes `entry` in `tx`, the transaction of the change it records.
pub(crate) async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entry: &Entry<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!("{INSERT} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
    bound(&sql, entry, now).execute(&mut **tx).await?;
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

/// Events of one kind written on their own ([`Store::record_event`]) kept per account and
/// hour.
pub const ALONE_PER_HOUR: i64 = 100;

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
    /// At most [`ALONE_PER_HOUR`] of a kind an hour per account: a crowd guessing at one
    /// account for the whole retention does not fill the table (the hundred say it all).
    pub async fn record_event(&self, entry: &Entry<'_>, now: i64) -> Result<(), StoreError> {
        let sql = format!(
            "{INSERT} SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
             WHERE EXISTS (SELECT 1 FROM users WHERE id = $9) \
             AND (SELECT COUNT(*) FROM security_events \
                  WHERE user_id = $10 AND kind = $11 AND at > $12) < $13"
        );
        let done = bound(&sql, entry, now)
            .bind(entry.user_id)
            .bind(entry.user_id)
            .bind(entry.kind.as_str())
            .bind(now - 3600)
            .bind(ALONE_PER_HOUR)
            .execute(self.pool())
            .await?;
        if done.rows_affected() > 0 {
            crate::metrics::audit_event(entry.kind.as_str());
        }
        Ok(())
    }

    /// The events of account `user_id`, newest first: at most `limit`, those older than the
    /// event `before` when given (the next page). Only the account's own: the deletion of an
    /// earlier account with its id is not listed, and on SQLite (which gives a deleted
    /// account's id again) no event older than the account either. (On PostgreSQL ids are
    /// never given again, and the instances' clocks may differ by a moment.)
    pub async fn events_of(
        &self,
        user_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let since = match self.dialect() {
            super::Dialect::Sqlite => {
                "AND e.at >= COALESCE((SELECT u.created_at FROM users u WHERE u.id = $3), 0)"
            }
            super::Dialect::Postgres => "AND $3 > 0",
        };
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT e.id, e.at, e.kind, e.detail, e.address, e.user_agent, e.session_id, e.actor \
             FROM security_events e \
             WHERE e.user_id = $1 AND e.id < $2 AND e.kind <> 'account_deleted' {since} \
             ORDER BY e.id DESC LIMIT $4"
        ))
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

#[cfg(test)]
mod tests {
    use crate::{audit, testing};

    /// A failed sign-in's row: only for an account that exists, and at most a hundred an
    /// hour per account.
    #[tokio::test]
    async fn events_written_alone_are_bounded_and_only_for_accounts() {
        let (_dir, pool, auth) = testing::auth().await;
        testing::user(&pool, 1, 0).await;
        let store = auth.health.store();
        let entry = |user_id| audit::Entry {
            user_id,
            kind: audit::Kind::SignInFailed,
            detail: "password",
            seen: audit::Seen::client(Some([192, 0, 2, 1].into()), "curl/8"),
            session: None,
        };
        let now = crate::tokens::access::now_unix();
        for _ in 0..(super::ALONE_PER_HOUR + 5) {
            store.record_event(&entry(1), now).await.unwrap();
        }
        store.record_event(&entry(2), now).await.unwrap();
        assert_eq!(
            store
                .count_events(1, audit::Kind::SignInFailed)
                .await
                .unwrap(),
            super::ALONE_PER_HOUR
        );
        assert_eq!(
            store
                .count_events(2, audit::Kind::SignInFailed)
                .await
                .unwrap(),
            0
        );
        // An hour on, counted afresh.
        store.record_event(&entry(1), now + 3601).await.unwrap();
        assert_eq!(
            store
                .count_events(1, audit::Kind::SignInFailed)
                .await
                .unwrap(),
            super::ALONE_PER_HOUR + 1
        );
        let listed = store.events_of(1, None, 1).await.unwrap();
        assert_eq!(listed[0].address, "192.0.2.1");
        assert_eq!(listed[0].device, "HTTP Library");
    }
}
