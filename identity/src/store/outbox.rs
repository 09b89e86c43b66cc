//! The outbox table's statements: a mail queued in the transaction of its cause, claimed by one
//! sender at a time, then marked sent, put off, or given up on.

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
         created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(mail.kind.as_str())
    .bind(mail.user_id)
    .bind(&mail.to)
    .bind(&mail.subject)
    .bind(&mail.text)
    .bind(&mail.html)
    .bind(now)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
}
