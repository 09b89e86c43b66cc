//! The outbox table's statements: a mail queued in the transaction of its cause, claimed by one
//! sender at a time, then marked sent, put off, or given up on.

use super::{Store, StoreError};
use crate::mail::OutgoingMail;

/// Queues `mail` in `tx`, the transaction of the change that causes it: it is sent only if
/// that change commits, and then surely (see [`crate::mail`]). Its id.
pub(crate) async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    mail: &OutgoingMail,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO outbox (kind, user_id, recipient, subject, body_text, body_html, \
         created_at, next_attempt_at, link_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         RETURNING id",
    )
    .bind(mail.kind.as_str())
    .bind(mail.user_id)
    .bind(&mail.to)
    .bind(&mail.subject)
    .bind(&mail.text)
    .bind(&mail.html)
    .bind(now)
    .bind(now)
    .bind(mail.link.as_ref().map(|h| h.to_vec()))
    .fetch_one(&mut **tx)
    .await
}

/// A row of the outbox as it stands: a mail a sender claimed, or one listed on the development
/// mail page (`/dev/mail`). The bodies are blank once the mail was sent or given up on.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Entry {
    pub id: i64,
    pub kind: String,
    pub user_id: Option<i64>,
    pub recipient: String,
    pub subject: String,
    #[sqlx(rename = "body_text")]
    pub text: String,
    #[sqlx(rename = "body_html")]
    pub html: String,
    pub created_at: i64,
    /// Attempts so far.
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

// The bodies hold the link the mail exists for, and the recipient is personal data.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("attempts", &self.attempts)
            .field("sent_at", &self.sent_at)
            .field("failed_at", &self.failed_at)
            .finish_non_exhaustive()
    }
}

/// What a sender learnt of one attempt, written by [`Store::mark_outbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The mail server took it.
    Sent,
    /// Try again at `next_attempt_at`: the server said "later", or could not be reached.
    Retry { next_attempt_at: i64, error: String },
    /// Given up on: the server refused it for good, or it was tried too often.
    Failed { error: String },
}

/// The longest `last_error` kept: a mail server's answer, not a transcript.
const ERROR_CHARS: usize = 500;

fn clip(error: &str) -> String {
    error.chars().take(ERROR_CHARS).collect()
}

/// Which rows are waiting: not sent, not given up on.
const PENDING: &str = "sent_at IS NULL AND failed_at IS NULL";

/// The columns of an [`Entry`].
const COLUMNS: &str = "id, kind, user_id, recipient, subject, body_text, body_html, created_at, \
                       attempts, next_attempt_at, sent_at, failed_at, last_error";

impl Store {
    /// Claims up to `limit` mails due at `now` for one sender, until `lease_until`: no other
    /// sender takes them before then. One statement, so that two senders never claim the same
    /// mail: on PostgreSQL the candidates are locked `FOR UPDATE SKIP LOCKED` (a row another
    /// sender is claiming this instant is skipped, not waited for, and one it has just claimed
    /// no longer qualifies when re-read under the lock); SQLite has one writer at a time.
    ///
    /// A sender that dies holding a claim (a crash, `kill -9`) loses nothing: its lease lapses
    /// and the mail is claimed again. If it died after the mail server took the mail but
    /// before [`mark_outbox`](Self::mark_outbox), the mail goes out a second time: delivery is
    /// at least once in that one case, and the duplicate carries the same Message-ID.
    pub async fn claim_outbox(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let lock = match self.dialect() {
            super::Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Dialect::Sqlite => "",
        };
        let mut claimed: Vec<Entry> = sqlx::query_as(&format!(
            "UPDATE outbox SET claimed_until = $1 WHERE id IN (\
               SELECT id FROM outbox WHERE {PENDING} AND next_attempt_at <= $2 \
               AND (claimed_until IS NULL OR claimed_until <= $2) \
               ORDER BY next_attempt_at, id LIMIT $3{lock}) \
             RETURNING {COLUMNS}"
        ))
        .bind(lease_until)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        // RETURNING promises no order: the oldest first.
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// Records the outcome of attempt number `attempts` at mail `id`, at `now`, and releases
    /// its claim. A mail that is done (sent or given up on) loses its bodies: the link in them
    /// lives no longer than it must. Whether the mail was still waiting.
    pub async fn mark_outbox(
        &self,
        id: i64,
        attempts: i64,
        mark: &Mark,
        now: i64,
    ) -> Result<bool, StoreError> {
        // $2 is when (sent, given up on, or to try again), $4 the error.
        let (sql, when, error) = match mark {
            Mark::Sent => (
                "sent_at = $2, last_error = NULL, body_text = '', body_html = ''",
                now,
                None,
            ),
            Mark::Retry {
                next_attempt_at,
                error,
            } => (
                "next_attempt_at = $2, last_error = $4",
                *next_attempt_at,
                Some(error),
            ),
            Mark::Failed { error } => (
                "failed_at = $2, last_error = $4, body_text = '', body_html = ''",
                now,
                Some(error),
            ),
        };
        let sql = format!(
            "UPDATE outbox SET {sql}, attempts = $3, claimed_until = NULL WHERE id = $1 AND {PENDING}"
        );
        let mut query = sqlx::query(&sql).bind(id).bind(when).bind(attempts);
        if let Some(error) = error {
            query = query.bind(clip(error));
        }
        Ok(query.execute(self.pool()).await?.rows_affected() > 0)
    }

    /// The newest `limit` mails, sent or not, newest first (the development mail page).
    pub async fn recent_outbox(&self, limit: usize) -> Result<Vec<Entry>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM outbox ORDER BY id DESC LIMIT $1"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?)
    }

    /// Gives up on the waiting mails whose link died before they went out (replaced by a newer
    /// one, spent, past its time, ended by a change of credentials): after a mail-server outage,
    /// no stale link is mailed, and its text (the link in it) goes at once. How many.
    pub async fn drop_dead_links(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE outbox SET failed_at = $1, last_error = 'its link is no longer live', \
             body_text = '', body_html = '', claimed_until = NULL \
             WHERE {PENDING} AND link_hash IS NOT NULL AND NOT EXISTS (\
               SELECT 1 FROM email_links l WHERE l.token_hash = outbox.link_hash \
               AND l.used_at IS NULL AND l.expires_at > $2)"
        ))
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// How many mails are waiting to be sent (claimed or not).
    pub async fn outbox_depth(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM outbox WHERE {PENDING}"))
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Deletes the mails created before `before` that are done (sent or given up on); a mail
    /// still waiting stays however old it is. How many went.
    pub async fn purge_outbox(&self, before: i64) -> Result<u64, StoreError> {
        let gone = sqlx::query(
            "DELETE FROM outbox WHERE created_at < $1 \
             AND (sent_at IS NOT NULL OR failed_at IS NOT NULL)",
        )
        .bind(before)
        .execute(self.pool())
        .await?;
        Ok(gone.rows_affected())
    }
}
