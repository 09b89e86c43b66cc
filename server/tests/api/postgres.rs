//! Several instances of the server on one PostgreSQL database, in both passes of the suite.
//! `make test` runs these in a throwaway cluster (`scripts/pg-tmp.sh`, which sets
//! `DATABASE_URL_PG`); each test gets a database of its own. Without `DATABASE_URL_PG` they say
//! so and pass, unless `AUTHAPP_REQUIRE_PG` is set (as `make test` sets it): then a missing
//! cluster fails them.

use std::time::{Duration, Instant};

use reqwest::{header, StatusCode};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::helpers::{fresh_database, spawn_app_with, TestApp, PASSWORD};

/// An instance on `url`, reading the revocations every `resync` without a wake-up.
async fn instance(url: &str, resync: Duration) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(move |c| {
        c.database_url = url;
        c.resync_interval = resync;
    })
    .await
}

async fn sign_in(app: &TestApp, username: &str) -> Value {
    let api = app.api();
    assert_eq!(app.register(&api, username, PASSWORD).await.status(), 200);
    let res = app.login(&api, username, PASSWORD).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn me(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let res = app
        .api()
        .get(app.url("/api/me"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

/// An empty POST to `path` with `token` as Bearer; its status.
async fn post_bearer(app: &TestApp, path: &str, token: &str) -> StatusCode {
    app.api()
        .post(app.url(path))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .status()
}

/// Polls `app` with `token` until it is refused as revoked; how long that took.
async fn refused_within(app: &TestApp, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = me(app, token).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(body["error"], "token_revoked", "{body}");
            return started.elapsed();
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(started.elapsed() < limit, "still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Signed in through A, signed out through B: A refuses the token within a second, from
/// memory. The same for a session ended through B's sessions API. The timer is set to a minute
/// here, so only the wake-up (NOTIFY) can be that quick. An instance started afterwards loads
/// both revocations.
#[tokio::test]
async fn a_sign_out_through_one_instance_is_refused_by_the_other_within_a_second() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let minute = Duration::from_secs(60);
    let (a, b) = (instance(&url, minute).await, instance(&url, minute).await);
    let signed_in = sign_in(&a, "alice").await;
    let token = signed_in["access_token"].as_str().unwrap();
    assert_eq!(me(&a, token).await.0, 200);
    assert_eq!(me(&b, token).await.0, 200);
    assert_eq!(post_bearer(&b, "/api/logout", token).await, 200);
    let took = refused_within(&a, token, Duration::from_secs(1)).await;
    eprintln!("instance A refused the token {took:?} after B's sign-out answered");

    // A second device's session, ended through B by the first: refused by A too.
    let api = a.api();
    let res = a.login(&api, "alice", PASSWORD).await;
    let other: Value = res.json().await.unwrap();
    let other_token = other["access_token"].as_str().unwrap();
    let third: Value = a.login(&api, "alice", PASSWORD).await.json().await.unwrap();
    let third_token = third["access_token"].as_str().unwrap();
    assert_eq!(me(&a, other_token).await.0, 200);
    let status = post_bearer(&b, "/api/sessions/revoke-others", third_token).await;
    assert!(status.is_success(), "{status}");
    refused_within(&a, other_token, Duration::from_secs(1)).await;
    assert_eq!(me(&a, third_token).await.0, 200);

    let c = instance(&url, minute).await;
    for gone in [token, other_token] {
        let (status, body) = me(&c, gone).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "token_revoked", "{body}");
    }
    assert_eq!(me(&c, third_token).await.0, 200);
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

/// A's listening connection is killed; a sign-out made through B while A is not listening is
/// still refused by A, within the resync interval (1 s here) and a margin.
#[tokio::test]
async fn a_revocation_made_while_the_listener_was_down_is_still_refused() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let second = Duration::from_secs(1);
    let (a, b) = (instance(&url, second).await, instance(&url, second).await);
    let signed_in = sign_in(&a, "bob").await;
    let token = signed_in["access_token"].as_str().unwrap();
    assert_eq!(me(&a, token).await.0, 200);
    let database = url.rsplit_once('/').unwrap().1.to_owned();
    let mut admin = PgConnection::connect(&url).await.unwrap();
    // Both instances listen (B's listener may still be connecting).
    let started = Instant::now();
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
        )
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if listening == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{listening} listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query ILIKE 'LISTEN%'",
    )
    .bind(&database)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, [true, true]);
    assert_eq!(post_bearer(&b, "/api/logout", token).await, 200);
    let took = refused_within(&a, token, Duration::from_millis(2500)).await;
    eprintln!("refused {took:?} after the sign-out, with the listener killed");
    let _ = admin.close().await;
    a.stop().await;
    b.stop().await;
}

/// A wrong-password sign-in's status, with a JSON body naming `device_token` when one is given.
async fn guess(app: &TestApp, client: &reqwest::Client, device_token: Option<&str>) -> u16 {
    let mut body = serde_json::json!({"username": "guessed", "password": "wrong password"});
    if let Some(token) = device_token {
        body["device_token"] = token.into();
    }
    let res = client
        .post(app.url("/api/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

/// The sign-in and sign-up limits are shared by the instances: guesses from one address,
/// alternating between A and B, get no more password checks than against one instance, and
/// the next attempt is refused by either; a device proof issued by A counts on one allowance
/// on both; and an address's sign-ups are counted once for both.
#[tokio::test]
async fn two_instances_hold_one_set_of_limits() {
    use app::auth::throttle::{DEVICE_BURST, PAIR_BURST, SIGNUP_BURST, SIGNUP_PERIOD};
    let Some(url) = fresh_database().await else {
        return;
    };
    let second = Duration::from_secs(1);
    let (a, b) = (instance(&url, second).await, instance(&url, second).await);
    assert_eq!(
        a.register(&a.api(), "guessed", PASSWORD).await.status(),
        200
    );
    let instances = [&a, &b];

    // One address, its guesses alternating between the instances.
    let guesser = a.api_from([127, 0, 0, 20]);
    let mut statuses = Vec::new();
    for i in 0..PAIR_BURST * 2 {
        statuses.push(guess(instances[i as usize % 2], &guesser, None).await);
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(checked, PAIR_BURST as usize, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    for app in instances {
        let res = app.login(&guesser, "guessed", PASSWORD).await;
        assert_eq!(res.status(), 429);
        assert!(res.headers().contains_key(header::RETRY_AFTER));
    }
    // Another address is not affected.
    let owner = a.api_from([127, 0, 0, 21]);
    let res = b.login(&owner, "guessed", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let proof = body["device_token"].as_str().unwrap().to_owned();

    // The proof B issued counts on one allowance on both instances.
    let mut statuses = Vec::new();
    for i in 0..DEVICE_BURST * 2 {
        statuses.push(guess(instances[i as usize % 2], &owner, Some(&proof)).await);
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(checked, DEVICE_BURST as usize, "{statuses:?}");

    // Sign-ups from one address, alternating: the allowance (and what came back meanwhile)
    // once, not twice.
    let signer = a.api_from([127, 0, 0, 22]);
    let started = Instant::now();
    let mut created = 0;
    for i in 0..SIGNUP_BURST * 2 {
        let app = instances[i as usize % 2];
        match app
            .register(&signer, &format!("new{i}"), PASSWORD)
            .await
            .status()
            .as_u16()
        {
            200 => created += 1,
            429 => {}
            other => panic!("sign-up answered {other}"),
        }
    }
    let refilled = crate::helpers::refills_since(started, SIGNUP_PERIOD);
    assert!(
        (SIGNUP_BURST..=SIGNUP_BURST + refilled).contains(&created),
        "{created} accounts made"
    );
    a.stop().await;
    b.stop().await;
}

/// When the shared limits cannot be counted, an attempt is refused with 503
/// `temporarily_unavailable` and `Retry-After`, before any password work: never a 500, never a
/// guess that nobody counted. Once they can be counted again, sign-ins go through.
#[tokio::test]
async fn shared_limits_that_cannot_be_counted_refuse_the_attempt() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let app = instance(&url, Duration::from_secs(1)).await;
    assert_eq!(
        app.register(&app.api(), "waiting", PASSWORD).await.status(),
        200
    );
    let mut admin = PgConnection::connect(&url).await.unwrap();
    sqlx::query("ALTER TABLE login_throttle RENAME TO login_throttle_away")
        .execute(&mut admin)
        .await
        .unwrap();
    for res in [
        app.login(&app.api(), "waiting", PASSWORD).await,
        app.register(&app.api(), "another", PASSWORD).await,
    ] {
        assert_eq!(res.status(), 503);
        let retry: u64 = res.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1, "{retry}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    }
    sqlx::query("ALTER TABLE login_throttle_away RENAME TO login_throttle")
        .execute(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        app.login(&app.api(), "waiting", PASSWORD).await.status(),
        200
    );
    let _ = admin.close().await;
    app.stop().await;
}

/// Records that are back to a full allowance are deleted by the purge; the others are kept, and
/// no record holds a name or an address in clear.
#[tokio::test]
async fn the_shared_limits_keep_no_names_and_are_purged() {
    use app::auth::throttle::Throttle;
    let Some(url) = fresh_database().await else {
        return;
    };
    let app = instance(&url, Duration::from_secs(1)).await;
    assert_eq!(
        app.login(&app.api(), "nobody-here", "wrong password")
            .await
            .status(),
        401
    );
    let mut admin = PgConnection::connect(&url).await.unwrap();
    let keys: Vec<Vec<u8>> = sqlx::query_scalar("SELECT key FROM login_throttle")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    // The address, the pair and the account.
    assert_eq!(keys.len(), 3);
    for key in &keys {
        assert_eq!(key.len(), 16);
        let text = String::from_utf8_lossy(key);
        assert!(
            !text.contains("nobody") && !text.contains("127.0"),
            "{text}"
        );
    }
    // Make two of them stale (their allowance back in full), and purge.
    sqlx::query(
        "UPDATE login_throttle SET tat = tat - 3600000000 \
         WHERE key IN (SELECT key FROM login_throttle LIMIT 2)",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let pool = app::db::connect(&url).await.unwrap();
    let purged = Throttle::shared(pool, crate::helpers::SECRET.as_bytes())
        .forget_stale()
        .await
        .unwrap();
    assert_eq!(purged, 2);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM login_throttle")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 1);
    let _ = admin.close().await;
    app.stop().await;
}
