//! The server's own outbox sender against a real SMTP server (scripts/smtp-sink.py): what is
//! queued goes out, on either database. (Two instances sharing the work: `instances`.)

use std::time::Duration;

use identity::mail::{
    sender::Smtp,
    sink::{Received, SmtpSink},
};

use crate::helpers::{database, spawn_app_with, TestApp};

pub const MAIL_FROM: &str = "authapp <noreply@authapp.test>";

/// An instance whose sender delivers to `sink`; `database_url` replaces its own database.
pub async fn app_mailing_to(sink: &SmtpSink, database_url: Option<String>) -> TestApp {
    let smtp = Smtp::parse(&sink.url(), Some(MAIL_FROM), None).unwrap();
    spawn_app_with(move |c| {
        c.mail.smtp = Some(smtp);
        if let Some(url) = database_url {
            c.database_url = url;
        }
    })
    .await
}

/// Queues `n` mails to `user{first..}@example.org` as a change would (a row of the outbox),
/// without waking anyone: the senders find them at their next look.
pub async fn queue(db: &sqlx::AnyPool, first: usize, n: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for i in first..first + n {
        sqlx::query(
            "INSERT INTO outbox (kind, recipient, subject, body_text, body_html, created_at, \
             next_attempt_at) VALUES ('reset_password', $1, $2, $3, $4, $5, $5)",
        )
        .bind(format!("user{i}@example.org"))
        .bind(format!("Mail {i}"))
        .bind(format!("Text of mail {i}"))
        .bind(format!("<p>HTML of mail {i}</p>"))
        .bind(now)
        .execute(db)
        .await
        .unwrap();
    }
}

/// The rows still waiting, and those sent.
pub async fn outbox_counts(db: &sqlx::AnyPool) -> (i64, i64) {
    let waiting = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL",
    )
    .fetch_one(db)
    .await
    .unwrap();
    let sent = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL")
        .fetch_one(db)
        .await
        .unwrap();
    (waiting, sent)
}

/// The recipients of `mails`, sorted, and whether any Message-ID came twice.
pub fn recipients(mails: &[Received]) -> (Vec<String>, bool) {
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    to.sort();
    let mut ids: Vec<String> = mails
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    (to, ids.len() != before)
}

#[tokio::test]
async fn the_server_sends_what_is_queued_and_blanks_it() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    let db = database(app.dir.path()).await;
    queue(&db, 0, 3).await;
    let got = sink.wait_for(3, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 3);
    let (to, twice) = recipients(&got);
    assert_eq!(
        to,
        [
            "user0@example.org",
            "user1@example.org",
            "user2@example.org"
        ]
    );
    assert!(!twice);
    let mail = got
        .iter()
        .find(|m| m.rcpt_tos[0] == "user1@example.org")
        .unwrap();
    assert_eq!(mail.header("Subject").unwrap(), "Mail 1");
    assert_eq!(
        mail.body("text/plain").unwrap().trim_end(),
        "Text of mail 1"
    );
    assert_eq!(
        mail.body("text/html").unwrap().trim_end(),
        "<p>HTML of mail 1</p>"
    );
    // Marked sent just after the server took it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while outbox_counts(&db).await != (0, 3) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outbox_counts(&db).await, (0, 3));
    let blank: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE body_text = '' AND body_html = ''")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(blank, 3);
    app.stop().await;
}
