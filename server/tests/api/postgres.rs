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

/// How many connections to `database` are listening (each instance's listener, once up).
async fn listeners(admin: &mut PgConnection, database: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
    )
    .bind(database)
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Waits until `count` connections to `database` listen.
async fn until_listening(admin: &mut PgConnection, database: &str, count: i64) {
    let started = Instant::now();
    loop {
        let listening = listeners(admin, database).await;
        if listening == count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{listening} listening, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The listener is killed and cannot come back: the database accepts no new connection
/// (`ALLOW_CONNECTIONS false` holds for superusers too; the connections already open go on). A
/// sign-out committed meanwhile reaches the instance by its timer alone (1 s here) — nothing
/// wakes its reader — and the token is refused while the listener is still down. Once
/// connections are allowed again, the instance listens again.
#[tokio::test]
async fn a_revocation_made_while_the_listener_was_down_is_still_refused() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let a = instance(&url, Duration::from_secs(1)).await;
    let signed_in = sign_in(&a, "bob").await;
    let token = signed_in["access_token"].as_str().unwrap();
    assert_eq!(me(&a, token).await.0, 200);
    let database = url.rsplit_once('/').unwrap().1.to_owned();
    // On the cluster's own database: PostgreSQL closes no database to its own connections.
    let cluster = std::env::var("DATABASE_URL_PG").unwrap();
    let mut admin = PgConnection::connect(&cluster).await.unwrap();
    // Another instance's connection, opened while it still can be.
    let mut other = PgConnection::connect(&url).await.unwrap();
    until_listening(&mut admin, &database, 1).await;
    sqlx::query(&format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS false"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query ILIKE 'LISTEN%'",
    )
    .bind(&database)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, [true]);
    // Bob signs out through another instance, which writes it as every instance does (its
    // trigger records the revocation and notifies: nobody is listening). The other instance is
    // its connection, not a server: a server's pool would need a new connection to answer.
    let ended = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = 'logout' \
         WHERE user_id = (SELECT id FROM users WHERE username = 'bob') AND revoked_at IS NULL",
    )
    .bind(crate::helpers::now_unix())
    .execute(&mut other)
    .await
    .unwrap();
    assert_eq!(ended.rows_affected(), 1);
    let took = refused_within(&a, token, Duration::from_millis(2500)).await;
    eprintln!("refused {took:?} after the sign-out, with the listener down");
    assert_eq!(
        listeners(&mut admin, &database).await,
        0,
        "the listener came back: the wake-up, not the timer, may have delivered the sign-out"
    );

    sqlx::query(&format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    until_listening(&mut admin, &database, 1).await;
    let _ = other.close().await;
    let _ = admin.close().await;
    a.stop().await;
}
