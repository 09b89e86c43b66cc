//! E-mail through the door, against a real SMTP server (scripts/smtp-sink.py): an address at
//! sign-up confirmed by its link, signing in with it, a forgotten password reset through a
//! mailed link, a change of address, and the notices; what a mail scanner, a replayed link, a
//! crowd and bad bytes do. On either database (`AUTHAPP_TEST_DB`).

use std::time::Duration;

use identity::mail::sink::{Received, SmtpSink};
use reqwest::Client;
use serde_json::Value;

use crate::{
    delivery::app_mailing_to,
    helpers::{database, error_of, refused_everywhere, tokens, TestApp, PASSWORD},
};

const WAIT: Duration = Duration::from_secs(20);

/// The newest mail to `to` whose subject contains `about`, waiting for it.
async fn mail_to(sink: &SmtpSink, to: &str, about: &str) -> Received {
    mail_from(None, sink, to, about).await
}

/// [`mail_to`], saying what `app`'s outbox holds if the mail does not come.
async fn mail_from(app: Option<&TestApp>, sink: &SmtpSink, to: &str, about: &str) -> Received {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = sink.received().into_iter().rev().find(|m| {
            m.rcpt_tos.iter().any(|r| r.eq_ignore_ascii_case(to))
                && m.header("Subject").is_some_and(|s| s.contains(about))
        });
        if let Some(mail) = found {
            return mail;
        }
        if tokio::time::Instant::now() >= deadline {
            type Row = (i64, String, i64, Option<i64>, Option<String>);
            let outbox: Vec<Row> = match app {
                Some(app) => sqlx::query_as(
                    "SELECT id, kind, attempts, sent_at, last_error FROM outbox ORDER BY id",
                )
                .fetch_all(&database(app.dir.path()).await)
                .await
                .unwrap(),
                None => Vec::new(),
            };
            panic!(
                "no mail to {to} about {about:?}: received {:?}; outbox {outbox:?}",
                sink.received()
                    .iter()
                    .map(|m| (m.rcpt_tos.clone(), m.header("Subject")))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many mails went to `to`.
fn count_to(sink: &SmtpSink, to: &str) -> usize {
    sink.received()
        .iter()
        .filter(|m| m.rcpt_tos.iter().any(|r| r.eq_ignore_ascii_case(to)))
        .count()
}

/// The token of the one link in a mail (its text and HTML agree).
fn token_in(mail: &Received) -> String {
    let text = mail.body("text/plain").unwrap();
    let at = text.find("token=ml1.").expect("a link in the mail") + "token=".len();
    let token = text[at..at + 47].to_owned();
    assert!(mail.body("text/html").unwrap().contains(&token));
    token
}

async fn register(app: &TestApp, username: &str, email: &str) -> reqwest::Response {
    app.api()
        .post(app.url("/api/register"))
        .form(&[
            ("username", username),
            ("password", PASSWORD),
            ("email", email),
        ])
        .send()
        .await
        .unwrap()
}

async fn post_form(
    app: &TestApp,
    client: &Client,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client.post(app.url(path)).form(form).send().await.unwrap()
}

async fn email_status(app: &TestApp, access: &str) -> Value {
    let res = app
        .api()
        .get(app.url("/api/account/email"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn login(app: &TestApp, login: &str, password: &str) -> reqwest::Response {
    app.login(&app.api(), login, password).await
}

/// Signs up `username` with `email` and follows the confirming link mailed to it.
async fn confirmed(app: &TestApp, sink: &SmtpSink, username: &str, email: &str) {
    assert_eq!(register(app, username, email).await.status(), 200);
    let token = token_in(&mail_to(sink, email, "Confirm").await);
    let res = post_form(app, &app.api(), "/api/email/verify", &[("token", &token)]).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_address_is_confirmed_by_the_pages_post_and_then_signs_in() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    assert_eq!(
        register(&app, "alice", " Alice@Example.COM ")
            .await
            .status(),
        200
    );
    // Kept normalised: the domain lower-cased, the local part as typed.
    let mail = mail_to(&sink, "Alice@example.com", "Confirm").await;
    assert_eq!(mail.rcpt_tos, ["Alice@example.com"]);
    assert_eq!(mail.header("From").unwrap(), crate::delivery::MAIL_FROM);
    let token = token_in(&mail);
    // A mail scanner follows the link: the page opens, nothing is spent.
    for _ in 0..3 {
        let page = app
            .page_html(&app.api(), &format!("/verify?token={token}"))
            .await;
        assert!(page.contains("Confirm this address"), "{page}");
    }
    let access = tokens(login(&app, "alice", PASSWORD).await).await.access;
    let status = email_status(&app, &access).await;
    assert_eq!(status["email"], "Alice@example.com");
    assert_eq!(status["verified"], false);
    // Not yet a way in.
    assert_eq!(
        error_of(login(&app, "Alice@example.com", PASSWORD).await)
            .await
            .0,
        401
    );

    let res = post_form(&app, &app.api(), "/api/email/verify", &[("token", &token)]).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["email"], "Alice@example.com");
    assert_eq!(email_status(&app, &access).await["verified"], true);
    // Spent: a second POST is told so, and the page says so.
    let again = post_form(&app, &app.api(), "/api/email/verify", &[("token", &token)]).await;
    assert_eq!(error_of(again).await, (410, "link_used".into()));
    let page = app
        .page_html(&app.api(), &format!("/verify?token={token}"))
        .await;
    assert!(page.contains("data-state=\"used\""), "{page}");
    // The address signs in, in any case, and the answer names the account.
    let res = login(&app, "alice@EXAMPLE.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], "alice");
    assert_eq!(
        error_of(login(&app, "alice@example.com", "wrong password!").await).await,
        (401, "invalid_credentials".into())
    );
    app.stop().await;
}

/// Signing up with an address that is another account's answers as a fresh sign-up does, and
/// mails the address's owner a notice, with no link in it.
#[tokio::test]
async fn a_taken_address_answers_as_a_fresh_one_and_tells_its_owner() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    confirmed(&app, &sink, "alice", "alice@example.com").await;
    let fresh = register(&app, "bob", "bob@example.com").await;
    let taken = register(&app, "mallory", "ALICE@example.com").await;
    assert_eq!(fresh.status(), taken.status());
    let (fresh, taken): (Value, Value) = (fresh.json().await.unwrap(), taken.json().await.unwrap());
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&fresh), keys(&taken));
    let notice = mail_to(&sink, "ALICE@example.com", "tried to sign up").await;
    assert!(!notice.body("text/plain").unwrap().contains("token="));
    // Mallory's account holds nothing: the address still signs Alice in.
    let res = login(&app, "alice@example.com", PASSWORD).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], "alice");
    app.stop().await;
}

#[tokio::test]
async fn forgot_answers_the_same_for_known_and_unknown_and_mails_only_the_known() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    confirmed(&app, &sink, "alice", "alice@example.com").await;
    assert_eq!(
        register(&app, "nomail", "nomail@example.com")
            .await
            .status(),
        200
    );
    mail_to(&sink, "nomail@example.com", "Confirm").await;
    let before = sink.received().len();
    let mut answers = Vec::new();
    for login in [
        "alice",
        "nobody@example.com",
        "nobody",
        "nomail@example.com",
    ] {
        let res = post_form(
            &app,
            &app.api(),
            "/api/password/forgot",
            &[("login", login)],
        )
        .await;
        answers.push((res.status(), res.text().await.unwrap()));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 200);
    let mail = mail_from(Some(&app), &sink, "alice@example.com", "Reset").await;
    assert!(token_in(&mail).starts_with("ml1."));
    // Only Alice's: the others have no confirmed address, or no account.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let subjects: Vec<_> = sink
        .received()
        .iter()
        .map(|m| (m.rcpt_tos.clone(), m.header("Subject")))
        .collect();
    assert_eq!(sink.received().len(), before + 1, "{subjects:?}");
    // A name that cannot be anyone's gets the same answer; one longer than any address, 422.
    let res = post_form(
        &app,
        &app.api(),
        "/api/password/forgot",
        &[("login", "a b")],
    )
    .await;
    assert_eq!((res.status(), res.text().await.unwrap()), answers[0]);
    let long = "a".repeat(255);
    let res = post_form(
        &app,
        &app.api(),
        "/api/password/forgot",
        &[("login", &long)],
    )
    .await;
    assert_eq!(error_of(res).await, (422, "invalid_input".into()));
    app.stop().await;
}

#[tokio::test]
async fn a_reset_ends_every_session_signs_this_client_in_and_works_once() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    confirmed(&app, &sink, "alice", "alice@example.com").await;
    let old = tokens(login(&app, "alice", PASSWORD).await).await;
    let res = post_form(
        &app,
        &app.api(),
        "/api/password/forgot",
        &[("login", "alice@example.com")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let token = token_in(&mail_from(Some(&app), &sink, "alice@example.com", "Reset").await);
    // The page the link opens, as a scanner would fetch it: twice, and it still works.
    for _ in 0..2 {
        let page = app
            .page_html(&app.api(), &format!("/reset?token={token}"))
            .await;
        assert!(page.contains("Set the new password"), "{page}");
    }
    let new_password = "a new password for alice";
    let res = app
        .api()
        .post(app.url("/api/password/reset"))
        .json(&serde_json::json!({ "token": token, "password": new_password }))
        .send()
        .await
        .unwrap();
    let fresh = tokens(res).await;
    assert_eq!(app.me_bearer(&fresh.access).await.status(), 200);
    refused_everywhere(&app, &old.access).await;
    let notice = mail_to(&sink, "alice@example.com", "password was changed").await;
    assert!(!notice.body("text/plain").unwrap().contains("token="));
    assert_eq!(error_of(login(&app, "alice", PASSWORD).await).await.0, 401);
    assert_eq!(login(&app, "alice", new_password).await.status(), 200);
    // Spent.
    let again = post_form(
        &app,
        &app.api(),
        "/api/password/reset",
        &[("token", &token), ("password", "yet another password")],
    )
    .await;
    assert_eq!(error_of(again).await, (410, "link_used".into()));
    // Forged, mistyped, or not a token at all.
    for forged in [
        format!("ml1.{}", "A".repeat(43)),
        token[..20].to_owned(),
        "\u{1f600}".into(),
    ] {
        let res = post_form(
            &app,
            &app.api(),
            "/api/password/reset",
            &[("token", &forged), ("password", "yet another password")],
        )
        .await;
        assert_eq!(
            error_of(res).await,
            (404, "link_invalid".into()),
            "{forged:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_expired_link_and_one_outlived_by_a_password_change_get_their_answer() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    confirmed(&app, &sink, "alice", "alice@example.com").await;
    let db = database(app.dir.path()).await;
    post_form(
        &app,
        &app.api(),
        "/api/password/forgot",
        &[("login", "alice")],
    )
    .await;
    let token = token_in(&mail_from(Some(&app), &sink, "alice@example.com", "Reset").await);
    sqlx::query("UPDATE email_links SET expires_at = 1 WHERE purpose = 'reset'")
        .execute(&db)
        .await
        .unwrap();
    let res = post_form(
        &app,
        &app.api(),
        "/api/password/reset",
        &[("token", &token), ("password", "a new password here")],
    )
    .await;
    assert_eq!(error_of(res).await, (410, "link_expired".into()));
    let page = app
        .page_html(&app.api(), &format!("/reset?token={token}"))
        .await;
    assert!(page.contains("data-state=\"expired\""), "{page}");

    // A live link, then the password changed by its signed-in owner: the link is dead.
    sqlx::query("DELETE FROM email_links")
        .execute(&db)
        .await
        .unwrap();
    post_form(
        &app,
        &app.api(),
        "/api/password/forgot",
        &[("login", "alice")],
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let token2 = loop {
        let t = token_in(&mail_from(Some(&app), &sink, "alice@example.com", "Reset").await);
        if t != token || tokio::time::Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(token2, token);
    let access = tokens(login(&app, "alice", PASSWORD).await).await.access;
    let res = app
        .api()
        .post(app.url("/api/password"))
        .bearer_auth(&access)
        .form(&[
            ("current_password", PASSWORD),
            ("new_password", "changed while a link lived"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = post_form(
        &app,
        &app.api(),
        "/api/password/reset",
        &[("token", &token2), ("password", "a new password here")],
    )
    .await;
    assert_eq!(error_of(res).await, (410, "link_expired".into()));
    app.stop().await;
}

/// The same link posted 64 times at once: one reset, one notice; the others are told the link
/// was used (or to come back: the hashing queue is full).
#[tokio::test]
async fn a_reset_link_posted_64_times_at_once_resets_once() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    confirmed(&app, &sink, "alice", "alice@example.com").await;
    post_form(
        &app,
        &app.api(),
        "/api/password/forgot",
        &[("login", "alice")],
    )
    .await;
    let token = token_in(&mail_from(Some(&app), &sink, "alice@example.com", "Reset").await);
    let posts: Vec<_> = (0..64)
        .map(|i| {
            let (client, url, token) = (app.api(), app.url("/api/password/reset"), token.clone());
            tokio::spawn(async move {
                let password = format!("new password number {i}");
                client
                    .post(url)
                    .form(&[("token", token.as_str()), ("password", &password)])
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for p in posts {
        statuses.push(p.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 410, 503].contains(s)),
        "{statuses:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notices = sink
        .received()
        .iter()
        .filter(|m| {
            m.header("Subject")
                .is_some_and(|s| s.contains("password was changed"))
        })
        .count();
    assert_eq!(notices, 1);
    app.stop().await;
}

#[tokio::test]
async fn an_address_change_is_confirmed_from_the_new_address_and_tells_the_old() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    confirmed(&app, &sink, "alice", "alice@example.com").await;
    let access = tokens(login(&app, "alice", PASSWORD).await).await.access;
    let change = |password: &'static str| {
        app.api()
            .post(app.url("/api/account/email/change"))
            .bearer_auth(&access)
            .form(&[("email", "alice@new.example"), ("password", password)])
            .send()
    };
    assert_eq!(
        error_of(change("not her password").await.unwrap()).await,
        (401, "invalid_credentials".into())
    );
    let res = change(PASSWORD).await.unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["email"], "alice@example.com");
    assert_eq!(body["pending"], "alice@new.example");
    mail_to(&sink, "alice@example.com", "being changed").await;
    let token = token_in(&mail_to(&sink, "alice@new.example", "Confirm your new").await);
    // Until followed, the old address is the account's.
    assert_eq!(
        login(&app, "alice@example.com", PASSWORD).await.status(),
        200
    );
    let res = post_form(&app, &app.api(), "/api/email/verify", &[("token", &token)]).await;
    assert_eq!(res.status(), 200);
    let status = email_status(&app, &access).await;
    assert_eq!(status["email"], "alice@new.example");
    assert_eq!(status["verified"], true);
    assert!(status["pending"].is_null());
    assert_eq!(
        error_of(login(&app, "alice@example.com", PASSWORD).await)
            .await
            .0,
        401
    );
    assert_eq!(
        login(&app, "alice@new.example", PASSWORD).await.status(),
        200
    );
    // A resend with nothing waiting is a clear 409.
    let res = app
        .api()
        .post(app.url("/api/account/email/resend"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await, (409, "nothing_to_confirm".into()));
    app.stop().await;
}

/// A sign-in without a device proof tells the owner; one with the proof its last sign-in
/// handed out does not.
#[tokio::test]
async fn a_sign_in_from_a_new_device_is_told_and_a_known_one_is_not() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    confirmed(&app, &sink, "alice", "alice@example.com").await;
    let res = app
        .api()
        .post(app.url("/api/login"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        )
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    let device = body["device_token"].as_str().unwrap().to_owned();
    let notice = mail_to(&sink, "alice@example.com", "New sign-in").await;
    let text = notice.body("text/plain").unwrap();
    assert!(text.contains("Firefox"), "{text}");
    let before = count_to(&sink, "alice@example.com");
    let res = app
        .api()
        .post(app.url("/api/login"))
        .form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("device_token", &device),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count_to(&sink, "alice@example.com"), before);
    app.stop().await;
}

/// Reset links asked for over and over: limited per recipient, then per client address, with
/// `Retry-After`; bytes that are not UTF-8 are a 400.
#[tokio::test]
async fn forgot_is_throttled_and_refuses_bad_bytes() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    let mut last = None;
    for _ in 0..4 {
        last = Some(
            post_form(
                &app,
                &app.api(),
                "/api/password/forgot",
                &[("login", "someone")],
            )
            .await,
        );
    }
    let last = last.unwrap();
    assert_eq!(last.status(), 429);
    assert!(last.headers().contains_key("retry-after"));
    let res = app
        .api()
        .post(app.url("/api/password/forgot"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(b"login=%FF%FE\xff".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16() / 100, 4);
    let res = app
        .api()
        .post(app.url("/api/email/verify"))
        .header("content-type", "application/json")
        .body(b"{\"token\": \"\xff\xfe\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    app.stop().await;
}

/// 64 accounts with confirmed addresses ask for a reset at once (from a few client addresses,
/// each within its allowance): 64 mails, one each, on either database. (On SQLite a
/// transaction that read before it wrote would fail outright when another committed between.)
#[tokio::test]
async fn sixty_four_resets_at_once_send_sixty_four_mails() {
    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    let db = database(app.dir.path()).await;
    for i in 0..64 {
        sqlx::query(
            "INSERT INTO users (username, password_hash, created_at, email, email_verified_at) \
             VALUES ($1, 'x', 0, $2, 0)",
        )
        .bind(format!("user{i}"))
        .bind(format!("user{i}@example.org"))
        .execute(&db)
        .await
        .unwrap();
    }
    let asks: Vec<_> = (0..64u8)
        .map(|i| {
            let client = app.api_from([127, 0, 4, 1 + i / 8]);
            let url = app.url("/api/password/forgot");
            tokio::spawn(async move {
                let login = format!("user{i}@example.org");
                client
                    .post(url)
                    .form(&[("login", login.as_str())])
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for ask in asks {
        assert_eq!(ask.await.unwrap(), 200);
    }
    let got = sink.wait_for(64, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (to, twice) = crate::delivery::recipients(&sink.received());
    assert_eq!(got.len(), 64);
    assert!(!twice);
    assert_eq!(to.len(), 64);
    to.windows(2).for_each(|w| assert_ne!(w[0], w[1]));
    app.stop().await;
}

/// In development without a mail server, `/dev/mail` lists the outbox, links and all, to a
/// client on this machine only; with a mail server it does not exist.
#[tokio::test]
async fn the_development_mail_page_shows_the_outbox_to_this_machine_only() {
    use app::auth::proxies::TrustedProxies;
    let app = crate::helpers::spawn_app_with(|c| {
        c.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    assert_eq!(
        register(&app, "dora", "dora@example.com").await.status(),
        200
    );
    let res = app.api().get(app.url("/dev/mail")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("dora@example.com"), "{page}");
    assert!(page.contains("/verify?token=ml1."), "{page}");
    // Through the trusted proxy, for a client elsewhere: nothing.
    let res = app
        .api()
        .get(app.url("/dev/mail"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    app.stop().await;

    let sink = SmtpSink::start();
    let app = app_mailing_to(&sink, None).await;
    let res = app.api().get(app.url("/dev/mail")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    app.stop().await;
}
