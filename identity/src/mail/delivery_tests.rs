//! Delivery against a real SMTP server (scripts/smtp-sink.py): what arrives, and what the
//! outbox records, when the server takes a mail, refuses it, is away, or is shared by two
//! senders.

#![allow(clippy::unwrap_used)]

use std::{collections::HashSet, time::Duration};

use super::{
    sender::{Policy, Sender, Smtp},
    sink::{SinkOptions, SinkTls, SmtpSink},
    MailKind, OutgoingMail, Wake,
};
use crate::{store::Store, tokens::access::now_unix};

const FROM: &str = "Authapp <noreply@authapp.test>";

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (dir, Store::connect(&url).await.unwrap())
}

fn mail(to: &str, n: usize) -> OutgoingMail {
    OutgoingMail {
        kind: MailKind::ResetPassword,
        user_id: Some(7),
        to: to.into(),
        subject: format!("Réinitialiser — mail {n}"),
        text: format!("Follow https://authapp.test/reset#token-{n} to set a new password."),
        html: format!(
            "<p>Follow <a href=\"https://authapp.test/reset#token-{n}\">this link</a>.</p>"
        ),
        link: None,
    }
}

/// Queues `n` mails to `to` as a change would, each in its transaction. Their ids.
async fn queue(store: &Store, to: &str, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut tx = store.pool().begin().await.unwrap();
        ids.push(
            crate::store::outbox::enqueue(&mut tx, &mail(to, i), now_unix())
                .await
                .unwrap(),
        );
        tx.commit().await.unwrap();
    }
    ids
}

fn fast() -> Policy {
    Policy {
        first_retry: Duration::from_secs(1),
        max_retry: Duration::from_secs(1),
        poll: Duration::from_millis(100),
        ..Policy::default()
    }
}

fn sender(store: &Store, sink: &SmtpSink) -> Sender {
    let ca = sink.ca_file();
    let ca = ca.exists().then_some(ca.as_path());
    let smtp = Smtp::parse(&sink.url(), Some(FROM), ca).unwrap();
    Sender::new(store.clone(), &smtp, Wake::default())
        .unwrap()
        .with_policy(fast())
}

/// An outbox row by id.
async fn row(store: &Store, id: i64) -> crate::store::outbox::Entry {
    store
        .recent_outbox(10_000)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.id == id)
        .unwrap()
}

#[tokio::test]
async fn a_queued_mail_is_delivered_as_text_and_html_and_its_bodies_are_blanked() {
    let (_dir, store) = store().await;
    let sink = SmtpSink::start();
    let ids = queue(&store, "Someone@Example.org", 1).await;
    let before = now_unix();
    assert_eq!(store.outbox_depth().await.unwrap(), 1);

    let round = sender(&store, &sink).round().await.unwrap();
    assert_eq!((round.claimed, round.sent), (1, 1), "{round:?}");

    let got = sink.received();
    assert_eq!(got.len(), 1);
    let got = &got[0];
    assert_eq!(got.mail_from, "noreply@authapp.test");
    assert_eq!(got.rcpt_tos, ["Someone@Example.org"]);
    assert_eq!(
        got.header("From").unwrap(),
        "Authapp <noreply@authapp.test>"
    );
    assert_eq!(got.header("To").unwrap(), "Someone@Example.org");
    assert_eq!(got.header("Subject").unwrap(), "Réinitialiser — mail 0");
    let id = ids[0];
    let created = row(&store, id).await.created_at;
    assert_eq!(
        got.header("Message-ID").unwrap(),
        format!("<outbox.{id}.{created}@authapp.test>")
    );
    let date = mailparse::dateparse(&got.header("Date").unwrap()).unwrap();
    assert_eq!(date, created);
    let parsed = got.parsed();
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    assert_eq!(parsed.subparts.len(), 2);
    assert_eq!(
        got.body("text/plain").unwrap().trim_end(),
        "Follow https://authapp.test/reset#token-0 to set a new password."
    );
    assert!(got
        .body("text/html")
        .unwrap()
        .contains("<a href=\"https://authapp.test/reset#token-0\">this link</a>"));

    let entry = row(&store, id).await;
    assert!(entry.sent_at.is_some_and(|t| t >= before), "{entry:?}");
    assert_eq!((entry.text.as_str(), entry.html.as_str()), ("", ""));
    assert_eq!((entry.attempts, entry.failed_at), (1, None));
    assert_eq!(entry.last_error, None);
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    // Nothing is due any more.
    let again = sender(&store, &sink).round().await.unwrap();
    assert_eq!(again.claimed, 0);
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn starttls_is_required_trusted_through_the_ca_file_and_credentials_are_given() {
    let (_dir, store) = store().await;
    let sink = SmtpSink::start_with(SinkOptions {
        tls: SinkTls::StartTls,
        auth: Some(("mailer".into(), "s3cret:p@ss".into())),
    });
    // The URL carries the credentials percent-encoded, as an operator writes them.
    let url = format!("smtp://mailer:s3cret%3Ap%40ss@localhost:{}", sink.port());
    let ca = sink.ca_file();
    queue(&store, "a@example.org", 1).await;

    // Without the sink's authority its certificate is not trusted: nothing goes out, the mail
    // waits.
    let untrusted = Smtp::parse(&url, Some(FROM), None).unwrap();
    let untrusted = Sender::new(store.clone(), &untrusted, Wake::default())
        .unwrap()
        .with_policy(fast());
    let round = untrusted.round().await.unwrap();
    assert_eq!((round.retried, round.sent), (1, 0), "{round:?}");
    assert!(sink.received().is_empty());

    // A wrong password is refused; the mail is kept for when the settings are fixed.
    let wrong = format!("smtp://mailer:nope@localhost:{}", sink.port());
    let wrong = Smtp::parse(&wrong, Some(FROM), Some(&ca)).unwrap();
    let wrong = Sender::new(store.clone(), &wrong, Wake::default())
        .unwrap()
        .with_policy(fast());
    // Due again: the first try put it off.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let round = wrong.round().await.unwrap();
    assert_eq!((round.retried, round.failed), (1, 0), "{round:?}");
    let entry = &store.recent_outbox(1).await.unwrap()[0];
    assert!(
        entry.last_error.as_deref().unwrap().contains("535"),
        "{:?}",
        entry.last_error
    );

    let good = Smtp::parse(&url, Some(FROM), Some(&ca)).unwrap();
    let good = Sender::new(store.clone(), &good, Wake::default()).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let round = good.round().await.unwrap();
    assert_eq!(round.sent, 1, "{round:?}");
    assert_eq!(sink.received().len(), 1);
    assert_eq!(store.recent_outbox(1).await.unwrap()[0].attempts, 3);
}

#[tokio::test]
async fn smtps_speaks_tls_from_the_start() {
    let (_dir, store) = store().await;
    let sink = SmtpSink::start_with(SinkOptions {
        tls: SinkTls::Implicit,
        auth: None,
    });
    queue(&store, "a@example.org", 2).await;
    let round = sender(&store, &sink).round().await.unwrap();
    assert_eq!(round.sent, 2, "{round:?}");
    assert_eq!(sink.received().len(), 2);
}

#[tokio::test]
async fn a_permanent_refusal_is_recorded_and_never_retried() {
    let (_dir, store) = store().await;
    let sink = SmtpSink::start();
    let refused = queue(&store, "reject-me@example.org", 1).await[0];
    let fine = queue(&store, "fine@example.org", 1).await[0];
    let sender = sender(&store, &sink);
    let round = sender.round().await.unwrap();
    assert_eq!((round.sent, round.failed), (1, 1), "{round:?}");

    let entry = row(&store, refused).await;
    assert!(
        entry.failed_at.is_some() && entry.sent_at.is_none(),
        "{entry:?}"
    );
    let error = entry.last_error.unwrap();
    assert!(
        error.contains("550") && error.contains("Mailbox unavailable"),
        "{error}"
    );
    assert_eq!((entry.text.as_str(), entry.html.as_str()), ("", ""));
    assert!(row(&store, fine).await.sent_at.is_some());
    // Never claimed again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(sender.round().await.unwrap().claimed, 0);
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, ["fine@example.org"]);
}

#[tokio::test]
async fn a_temporary_refusal_is_retried_with_backoff_then_given_up_on() {
    let (_dir, store) = store().await;
    let sink = SmtpSink::start();
    let id = queue(&store, "tempfail@example.org", 1).await[0];
    let sender = sender(&store, &sink).with_policy(Policy {
        max_attempts: 3,
        ..fast()
    });
    let start = now_unix();
    let round = sender.round().await.unwrap();
    assert_eq!(round.retried, 1, "{round:?}");
    let entry = row(&store, id).await;
    assert_eq!((entry.attempts, entry.failed_at), (1, None));
    assert!(entry.next_attempt_at > start, "{entry:?}");
    assert!(entry.last_error.unwrap().contains("451"));
    assert_eq!(store.outbox_depth().await.unwrap(), 1);
    // Not due before its time.
    assert_eq!(sender.round().await.unwrap().claimed, 0);

    for attempt in 2..=3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let round = sender.round().await.unwrap();
        assert_eq!(round.claimed, 1, "attempt {attempt}: {round:?}");
    }
    let entry = row(&store, id).await;
    assert_eq!(entry.attempts, 3);
    assert!(entry.failed_at.is_some(), "{entry:?}");
    assert!(entry
        .last_error
        .unwrap()
        .starts_with("given up after 3 attempts"));
    assert_eq!((entry.text.as_str(), entry.html.as_str()), ("", ""));
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    assert!(sink.received().is_empty());
}

/// The mail server away for a while: the mails queued meanwhile wait, and all of them arrive,
/// once each, when it is back on the same port.
#[tokio::test]
async fn every_mail_queued_while_the_server_is_away_arrives_once_when_it_is_back() {
    let (_dir, store) = store().await;
    let mut sink = SmtpSink::start();
    let wake = Wake::default();
    let smtp = Smtp::parse(&sink.url(), Some(FROM), None).unwrap();
    let task = Sender::new(store.clone(), &smtp, wake.clone())
        .unwrap()
        .with_policy(fast())
        .spawn();
    queue(&store, "first@example.org", 1).await;
    wake.wake();
    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).await.len(), 1);

    sink.stop();
    queue(&store, "later@example.org", 10).await;
    wake.wake();
    // Tried and put off while the server is away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = store.recent_outbox(10).await.unwrap();
    assert!(waiting.iter().all(|e| e.sent_at.is_none()));
    assert!(
        waiting
            .iter()
            .any(|e| e.attempts >= 1 && e.last_error.is_some()),
        "{waiting:?}"
    );

    sink.restart();
    let got = sink.wait_for(11, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = sink.received();
    task.abort();
    assert_eq!(got.len(), 11);
    assert_eq!(got_after.len(), 11, "a mail went out twice");
    let ids: HashSet<String> = got_after
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), 11);
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
}

/// Two senders (two instances' pools) on one database: fifty mails, each delivered once.
#[tokio::test]
async fn two_senders_on_one_database_deliver_each_mail_exactly_once() {
    let (dir, store) = store().await;
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let other = Store::connect(&url).await.unwrap();
    let sink = SmtpSink::start();
    let (wake_a, wake_b) = (Wake::default(), Wake::default());
    let smtp = Smtp::parse(&sink.url(), Some(FROM), None).unwrap();
    let a = Sender::new(store.clone(), &smtp, wake_a.clone())
        .unwrap()
        .with_policy(fast())
        .spawn();
    let b = Sender::new(other.clone(), &smtp, wake_b.clone())
        .unwrap()
        .with_policy(fast())
        .spawn();
    // Queued through both, each waking its own sender.
    for i in 0..50 {
        let (s, w) = if i % 2 == 0 {
            (&store, &wake_a)
        } else {
            (&other, &wake_b)
        };
        queue(s, &format!("user{i}@example.org"), 1).await;
        w.wake();
    }
    let got = sink.wait_for(50, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = sink.received();
    a.abort();
    b.abort();
    assert_eq!(got.len(), 50);
    assert_eq!(got_after.len(), 50, "a mail went out twice");
    let recipients: HashSet<&str> = got_after.iter().map(|m| m.rcpt_tos[0].as_str()).collect();
    assert_eq!(recipients.len(), 50);
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
}

/// 64 claims at once over 50 mails: each mail is claimed by one of them.
#[tokio::test]
async fn concurrent_claims_never_share_a_mail() {
    let (dir, store) = store().await;
    queue(&store, "a@example.org", 50).await;
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let other = Store::connect(&url).await.unwrap();
    let now = now_unix();
    let claims = (0..64).map(|i| {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tokio::spawn(async move { store.claim_outbox(now, now + 60, 3).await.unwrap() })
    });
    let mut ids = Vec::new();
    for claim in claims {
        ids.extend(claim.await.unwrap().into_iter().map(|c| c.id));
    }
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!((ids.len(), unique.len()), (50, 50));
    // Held until the lease lapses, then claimable again (a sender that died).
    assert!(store
        .claim_outbox(now + 59, now + 120, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_outbox(now + 60, now + 120, 100)
            .await
            .unwrap()
            .len(),
        50
    );
}

#[tokio::test]
async fn done_mails_are_purged_after_their_time_and_waiting_ones_never() {
    let (_dir, store) = store().await;
    let sink = SmtpSink::start();
    let sent = queue(&store, "a@example.org", 1).await[0];
    sender(&store, &sink).round().await.unwrap();
    let waiting = queue(&store, "b@example.org", 1).await[0];
    let now = now_unix();
    assert_eq!(store.purge_outbox(now - 10).await.unwrap(), 0);
    assert_eq!(store.purge_outbox(now + 10).await.unwrap(), 1);
    let left: Vec<i64> = store
        .recent_outbox(10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [waiting]);
    assert_ne!(sent, waiting);
}

/// The sender outlives its database going away: a round fails, nothing panics.
#[tokio::test]
async fn an_unreachable_database_is_an_error_not_a_panic() {
    let (_dir, store) = store().await;
    let sink = SmtpSink::start();
    let sender = sender(&store, &sink);
    store.pool().close().await;
    assert!(sender.round().await.is_err());
}
