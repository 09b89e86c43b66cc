//! Several instances of the server on one PostgreSQL database, in both passes of the suite.
//! `make test` runs these in a throwaway cluster (`scripts/pg-tmp.sh`, which sets
//! `DATABASE_URL_PG`); each test gets a database of its own, but the outage test, which stops
//! and starts a cluster of its own. Without `DATABASE_URL_PG` they say so and pass, unless
//! `AUTHAPP_REQUIRE_PG` is set (as `make test` sets it): then a missing cluster fails them.

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
    let pool = app::store::connect(&url).await.unwrap();
    let purged = Throttle::shared(
        app::store::Health::new(pool),
        crate::helpers::SECRET.as_bytes(),
    )
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

/// A PostgreSQL cluster of the test's own (`scripts/pg-tmp.sh start`), which it stops and
/// starts again: the shared one (`DATABASE_URL_PG`) serves the other tests meanwhile. Run where
/// the shared one is (`scripts/pg-tmp.sh run`), skipped or failed without it as they are.
/// Removed when dropped, whatever the test did.
struct OwnCluster {
    dir: String,
    url: String,
}

impl OwnCluster {
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-tmp.sh");

    async fn start() -> Option<Self> {
        if std::env::var_os("DATABASE_URL_PG").is_none() {
            assert!(
                std::env::var_os("AUTHAPP_REQUIRE_PG").is_none(),
                "AUTHAPP_REQUIRE_PG is set but DATABASE_URL_PG is not: run under scripts/pg-tmp.sh"
            );
            eprintln!("skipped: no PostgreSQL (DATABASE_URL_PG is not set)");
            return None;
        }
        let dir = Self::script(&["start"]).await.trim().to_owned();
        let url = std::fs::read_to_string(format!("{dir}/url")).unwrap();
        Some(Self {
            url: url.trim().to_owned(),
            dir,
        })
    }

    /// Runs the script; what it printed.
    async fn script(args: &[&str]) -> String {
        let out = tokio::process::Command::new(Self::SCRIPT)
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "pg-tmp.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Stops the database (a fast shutdown: every connection is cut) and waits until it is down.
    async fn stop(&self) {
        Self::script(&["pause", &self.dir]).await;
    }

    /// Starts it again, on the same port, and waits until it accepts connections.
    async fn start_again(&self) {
        Self::script(&["resume", &self.dir]).await;
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::SCRIPT)
            .args(["stop", &self.dir])
            .status();
    }
}

/// A request's answer: status, `Retry-After`, body, and how long it took.
struct Timed {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
    took: Duration,
}

async fn timed(request: reqwest::RequestBuilder) -> Timed {
    let started = Instant::now();
    let res = request.send().await.unwrap();
    let took = started.elapsed();
    let status = res.status();
    let retry_after = res
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.json().await.unwrap_or(Value::Null);
    Timed {
        status,
        retry_after,
        body,
        took,
    }
}

/// A client that gives up on an answer after 15 s: a hang fails the test instead of holding it.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn login_request(app: &TestApp, username: &str) -> reqwest::RequestBuilder {
    client()
        .post(app.url("/api/login"))
        .form(&[("username", username), ("password", PASSWORD)])
}

fn me_request(app: &TestApp, token: &str) -> reqwest::RequestBuilder {
    client().get(app.url("/api/me")).bearer_auth(token)
}

/// `503 temporarily_unavailable` with `Retry-After` of a second or two, in under `limit`.
fn assert_unavailable(answer: &Timed, limit: Duration, what: &str) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        answer.body
    );
    assert_eq!(answer.body["error"], "temporarily_unavailable", "{what}");
    assert!(
        matches!(answer.retry_after.as_deref(), Some("1" | "2")),
        "{what}: Retry-After {:?}",
        answer.retry_after
    );
    assert!(answer.took < limit, "{what} took {:?}", answer.took);
}

/// The database stopped for a while under two instances. A token issued by A just before, and
/// first used during the outage, is accepted by A from memory at once; B, which has never seen
/// its user, answers 503 rather than 500. What needs the database (sign-in, refresh, sign-out,
/// the sessions list) is answered `503 temporarily_unavailable` with `Retry-After`: the first
/// request within the pool's acquire timeout (2 s) and a margin, the next ones at once. Once the
/// database is back, both instances sign in again within a couple of seconds, and follow each
/// other's revocations again.
#[tokio::test]
async fn during_a_database_outage_valid_tokens_work_and_the_rest_fails_fast() {
    let Some(cluster) = OwnCluster::start().await else {
        return;
    };
    let second = Duration::from_secs(1);
    let (a, b) = (
        instance(&cluster.url, second).await,
        instance(&cluster.url, second).await,
    );
    assert_eq!(a.register(&a.api(), "erin", PASSWORD).await.status(), 200);
    let signed_in = timed(login_request(&a, "erin")).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
    let token = signed_in.body["access_token"].as_str().unwrap().to_owned();
    let refresh = signed_in.body["refresh_token"].as_str().unwrap().to_owned();

    cluster.stop().await;
    let down = Instant::now();

    // The token was never used: A checks it from memory, at once, again and again.
    for _ in 0..3 {
        let me = timed(me_request(&a, &token)).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.body);
        assert_eq!(me.body["username"], "erin");
        assert!(
            me.took < Duration::from_secs(1),
            "/api/me took {:?}",
            me.took
        );
    }
    let health = timed(client().get(a.url("/health"))).await;
    assert_eq!(health.status, StatusCode::OK);
    // A load balancer's check: not ready, in words, within its wait and a margin.
    let ready = timed(client().get(a.url("/ready"))).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    assert_eq!(ready.body["status"], "not_ready");
    assert!(
        ready.took < Duration::from_secs(4),
        "/ready took {:?}",
        ready.took
    );

    // A sign-in: 503 within the acquire timeout and a margin (at once if A has already found
    // the outage), then at once.
    let first = timed(login_request(&a, "erin")).await;
    assert_unavailable(&first, Duration::from_secs(4), "the first sign-in");
    let again = timed(login_request(&a, "erin")).await;
    assert_unavailable(&again, Duration::from_secs(1), "the second sign-in");
    eprintln!(
        "sign-ins during the outage: {:?}, then {:?} ({:?} after the stop)",
        first.took,
        again.took,
        down.elapsed()
    );
    // B has never seen the user: its token cannot be checked there, and says so.
    let on_b = timed(me_request(&b, &token)).await;
    assert_unavailable(&on_b, Duration::from_secs(4), "/api/me on B");
    let on_b = timed(me_request(&b, &token)).await;
    assert_unavailable(&on_b, Duration::from_secs(1), "/api/me on B again");
    // Everything else that needs the database, at once; the token still works afterwards.
    let refreshed = timed(
        client()
            .post(a.url("/api/refresh"))
            .form(&[("refresh_token", &refresh)]),
    )
    .await;
    assert_unavailable(&refreshed, Duration::from_secs(1), "a refresh");
    let sessions = timed(client().get(a.url("/api/sessions")).bearer_auth(&token)).await;
    assert_unavailable(&sessions, Duration::from_secs(1), "the sessions list");
    let signed_out = timed(client().post(a.url("/api/logout")).bearer_auth(&token)).await;
    assert_unavailable(&signed_out, Duration::from_secs(1), "a sign-out");
    assert_eq!(timed(me_request(&a, &token)).await.status, StatusCode::OK);

    cluster.start_again().await;
    let back = Instant::now();
    // Both instances sign in again within a couple of seconds; meanwhile 503s only.
    for app in [&a, &b] {
        loop {
            let answer = timed(login_request(app, "erin")).await;
            if answer.status == StatusCode::OK {
                break;
            }
            assert_unavailable(
                &answer,
                Duration::from_secs(4),
                "a sign-in while it comes back",
            );
            assert!(
                back.elapsed() < Duration::from_secs(3),
                "no sign-in {:?} after the database came back",
                back.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!(
        "both instances signed in {:?} after the database came back",
        back.elapsed()
    );
    assert_eq!(
        timed(client().get(b.url("/ready"))).await.status,
        StatusCode::OK
    );
    // B reads the user now, and a sign-out through B is refused by A.
    assert_eq!(timed(me_request(&b, &token)).await.status, StatusCode::OK);
    assert_eq!(post_bearer(&b, "/api/logout", &token).await, StatusCode::OK);
    let took = refused_within(&a, &token, Duration::from_millis(2500)).await;
    eprintln!("A refused the token {took:?} after B's sign-out");
    a.stop().await;
    b.stop().await;
}

/// Accounts `user{first..first + n}` with confirmed addresses `user{i}@example.org`, written
/// straight into the database (no password to hash: they only ask for reset links).
async fn accounts_with_addresses(db: &sqlx::AnyPool, first: usize, n: usize) {
    for i in first..first + n {
        sqlx::query(
            "INSERT INTO users (username, password_hash, created_at, email, email_verified_at) \
             VALUES ($1, 'x', 0, $2, 0)",
        )
        .bind(format!("user{i}"))
        .bind(format!("user{i}@example.org"))
        .execute(db)
        .await
        .unwrap();
    }
}

/// Asks for reset links for `user{first..first + n}`, through instances `a` and `b` in turn,
/// from a few client addresses (each has its own allowance of requests).
async fn ask_for_resets(a: &TestApp, b: &TestApp, first: usize, n: usize) {
    for i in first..first + n {
        let app = if i % 2 == 0 { a } else { b };
        let client = app.api_from([127, 0, 3, 1 + (i / 5) as u8]);
        let res = client
            .post(app.url("/api/password/forgot"))
            .form(&[("login", format!("user{i}@example.org"))])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "reset {i}");
    }
}

/// Two instances on one database, each with its sender, one mail server: fifty resets asked
/// for through both deliver fifty mails, each once, though the mail server was away while
/// half of them were queued.
#[tokio::test]
async fn two_instances_deliver_fifty_reset_mails_once_each_through_a_mail_server_outage() {
    use crate::delivery::{app_mailing_to, outbox_counts, recipients};
    let Some(url) = fresh_database().await else {
        return;
    };
    let mut sink = identity::mail::sink::SmtpSink::start();
    let a = app_mailing_to(&sink, Some(url.clone())).await;
    let b = app_mailing_to(&sink, Some(url.clone())).await;
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&url).await.unwrap();
    accounts_with_addresses(&db, 0, 50).await;

    ask_for_resets(&a, &b, 0, 25).await;
    assert_eq!(sink.wait_for(25, Duration::from_secs(20)).await.len(), 25);
    sink.stop();
    ask_for_resets(&a, &b, 25, 25).await;
    // Both senders find the server away and put the mails off.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tried: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND attempts > 0",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if tried > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no mail was tried while the server was away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    sink.restart();
    let got = sink.wait_for(50, Duration::from_secs(40)).await;
    // Time for a second copy to arrive, were there one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got_after = sink.received();
    assert_eq!(got.len(), 50);
    assert_eq!(got_after.len(), 50, "a mail went out twice");
    let (to, twice) = recipients(&got_after);
    assert!(!twice);
    to.windows(2).for_each(|w| assert_ne!(w[0], w[1]));
    assert!(got_after
        .iter()
        .all(|m| m.header("Subject").is_some_and(|s| s.contains("Reset"))));
    assert_eq!(outbox_counts(&db).await, (0, 50));
    a.stop().await;
    b.stop().await;
}

/// 64 claims at once from two instances' pools over fifty mails: each mail is claimed by
/// exactly one (`FOR UPDATE SKIP LOCKED`), and none is left behind.
#[tokio::test]
async fn concurrent_claims_on_postgres_never_share_a_mail() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let a = identity::store::Store::connect(&url).await.unwrap();
    let b = identity::store::Store::connect(&url).await.unwrap();
    crate::delivery::queue(a.pool(), 0, 50).await;
    let now = identity::tokens::access::now_unix() + 1;
    let claims: Vec<_> = (0..64)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.claim_outbox(now, now + 60, 3).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for claim in claims {
        ids.extend(claim.await.unwrap().into_iter().map(|c| c.id));
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (50, 50));
}

/// Two-step sign-in across instances: the password step on one, the code on the other (the
/// half-way sign-in is in the database); turning the factor on through one ends the other
/// sessions on both at once, and the shared code count holds across them.
#[tokio::test]
async fn a_sign_in_begun_on_one_instance_is_finished_on_the_other() {
    use app::auth::factors::totp::{TotpSecret, STEP};
    let Some(url) = fresh_database().await else {
        return;
    };
    let minute = Duration::from_secs(60);
    let (a, b) = (instance(&url, minute).await, instance(&url, minute).await);
    let first = sign_in(&a, "twohosts").await;
    let first = first["access_token"].as_str().unwrap().to_owned();
    let other: Value = b
        .login(&b.api(), "twohosts", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let other = other["access_token"].as_str().unwrap().to_owned();
    let begin: Value = a
        .api()
        .post(a.url("/api/totp/begin"))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = TotpSecret::from_base32(begin["secret"].as_str().unwrap()).unwrap();
    let step = crate::helpers::now_unix() / STEP;
    let confirmed = b
        .api()
        .post(b.url("/api/totp/confirm"))
        .bearer_auth(&first)
        .form(&[("code", secret.code_at(step - 1).unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    refused_within(&a, &other, Duration::from_secs(1)).await;
    refused_within(&b, &other, Duration::from_secs(1)).await;

    let res = a.login(&a.api(), "twohosts", PASSWORD).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    let pending = body["pending_token"].as_str().unwrap().to_owned();
    let finish = |app: &TestApp, code: String| {
        app.api()
            .post(app.url("/api/login/code"))
            .form(&[("pending_token", pending.clone()), ("code", code)])
            .send()
    };
    let code = secret.code_at(step).unwrap();
    assert_eq!(finish(&b, code.clone()).await.unwrap().status(), 200);
    // Spent on B: A refuses it, and the code with it.
    assert_eq!(finish(&a, code).await.unwrap().status(), 401);
    a.stop().await;
    b.stop().await;
}

/// A passkey ceremony begun on one instance is finished on the other (its state is in the
/// database), for adding a passkey and for signing in with it; the spent ceremony is refused by
/// both.
#[tokio::test]
async fn a_passkey_ceremony_begun_on_one_instance_is_finished_on_the_other() {
    use crate::passkey_device::SoftPasskey;
    use crate::passkeys::ORIGIN;
    let Some(url) = fresh_database().await else {
        return;
    };
    let minute = Duration::from_secs(60);
    let (a, b) = (instance(&url, minute).await, instance(&url, minute).await);
    let first = sign_in(&a, "keyhosts").await;
    let access = first["access_token"].as_str().unwrap().to_owned();
    let begin = |app: &TestApp, path: &'static str, token: Option<String>| {
        let mut req = app.api().post(app.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move {
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            (
                body["ceremony"].as_str().unwrap().to_owned(),
                body["options"].as_str().unwrap().to_owned(),
            )
        }
    };
    let mut key = SoftPasskey::new(ORIGIN);
    let (ceremony, options) = begin(&a, "/api/passkeys/register/begin", Some(access.clone())).await;
    let credential = key.register(&options);
    let added = b
        .api()
        .post(b.url("/api/passkeys/register"))
        .bearer_auth(&access)
        .form(&[("ceremony", ceremony), ("credential", credential)])
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);

    let (ceremony, options) = begin(&b, "/api/passkeys/sign-in/begin", None).await;
    let credential = key.sign_in(&options);
    let form = [("ceremony", ceremony), ("credential", credential)];
    let finish = |app: &TestApp| {
        app.api()
            .post(app.url("/api/passkeys/sign-in"))
            .form(&form)
            .send()
    };
    let res = finish(&a).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(me(&b, body["access_token"].as_str().unwrap()).await.0, 200);
    for app in [&a, &b] {
        let again = finish(app).await.unwrap();
        assert_eq!(again.status(), 401);
    }
    a.stop().await;
    b.stop().await;
}

/// The operator disables an account with `server admin` (a process of its own) while two
/// instances serve it: both refuse its tokens within a second (the timer is a minute: only the
/// revocation feed's wake-up is that quick), both refuse its sign-in in words; enabled again,
/// it signs in through either.
#[tokio::test]
async fn an_account_the_operator_disables_is_refused_by_every_instance_at_once() {
    let Some(url) = fresh_database().await else {
        return;
    };
    let minute = Duration::from_secs(60);
    let (a, b) = (instance(&url, minute).await, instance(&url, minute).await);
    let signed_in = sign_in(&a, "mallory").await;
    let token = signed_in["access_token"].as_str().unwrap();
    assert_eq!(me(&b, token).await.0, 200);
    // A process of its own, waited for without holding up the instances (same runtime).
    let admin = |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .arg("admin")
            .args(args)
            .env("DATABASE_URL", &url)
            .env("JWT_SECRET", crate::helpers::SECRET)
            .env("NO_COLOR", "1")
            .output()
    };
    let done = admin(&["disable", "mallory"]).await.expect("server binary");
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    for app in [&a, &b] {
        let took = refused_within(app, token, Duration::from_secs(1)).await;
        eprintln!("an instance refused the disabled account's token {took:?} after the command");
        let res = app.login(&app.api(), "mallory", PASSWORD).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "account_disabled");
    }
    let done = admin(&["enable", "mallory"]).await.expect("server binary");
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    for app in [&a, &b] {
        let res = app.login(&app.api(), "mallory", PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    a.stop().await;
    b.stop().await;
}
