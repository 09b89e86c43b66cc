//! Brute force, concurrency and headers: what an attacker would try.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::{spawn_app, PASSWORD};
use reqwest::header;
use serde_json::Value;

#[tokio::test]
async fn failed_logins_are_throttled_per_account_with_retry_after() {
    let app = spawn_app().await;
    let api = app.api();
    app.register(&api, "target", PASSWORD).await;
    app.register(&api, "bystander", PASSWORD).await;

    for _ in 0..app::auth::throttle::ACCOUNT_BURST {
        let res = app.login(&api, "target", "wrong password").await;
        assert_eq!(res.status(), 401);
    }
    // Locked: even the right password is refused, before any hashing, with a wait time.
    let res = app.login(&api, "target", PASSWORD).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1 && retry <= app::auth::throttle::ACCOUNT_PERIOD.as_secs());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");
    assert_eq!(body["retry_after"], retry);

    // Someone else signing in (from the same address, even) is not affected.
    assert_eq!(app.login(&api, "bystander", PASSWORD).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address() {
    let app = spawn_app().await;
    let api = app.api();
    use app::auth::throttle::{ADDRESS_BURST, ADDRESS_PERIOD};
    let started = std::time::Instant::now();
    for i in 0..ADDRESS_BURST {
        // A different account each time: only the address ties them together.
        let res = app
            .login(&api, &format!("victim{i}"), "wrong password")
            .await;
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    // The allowance refills one failure per period while the attempts run (each one hashes):
    // use up what came back, then the address is refused.
    let refilled = common::refills_since(started, ADDRESS_PERIOD);
    for i in 0..refilled {
        let res = app
            .login(&api, &format!("extra{i}"), "wrong password")
            .await;
        if res.status() == 429 {
            break;
        }
        assert_eq!(res.status(), 401);
    }
    let res = app.login(&api, "victim-next", "wrong password").await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    app.stop().await;
}

#[tokio::test]
async fn sign_ups_are_throttled_per_address() {
    use app::auth::throttle::{SIGNUP_BURST, SIGNUP_PERIOD};
    let app = spawn_app().await;
    let api = app.api();
    let started = std::time::Instant::now();
    for i in 0..SIGNUP_BURST {
        let res = app.register(&api, &format!("many{i}"), PASSWORD).await;
        assert_eq!(res.status(), 200, "sign-up {i}");
    }
    // What refilled while they ran (each one hashes) is used up first.
    let refilled = common::refills_since(started, SIGNUP_PERIOD);
    let mut res = app.register(&api, "one-more", PASSWORD).await;
    for i in 0..refilled {
        if res.status() == 429 {
            break;
        }
        res = app.register(&api, &format!("extra{i}"), PASSWORD).await;
    }
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");
    // Signing in is a different allowance: the accounts made still work.
    assert_eq!(app.login(&api, "many0", PASSWORD).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn pages_carry_a_content_security_policy_that_allows_the_wasm() {
    let app = spawn_app().await;
    let res = app.api().get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    let html = res.text().await.unwrap();
    for part in [
        "default-src 'self'",
        "'wasm-unsafe-eval'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    // The inline hydration script carries the nonce the policy names.
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("nonce in CSP");
    assert!(html.contains(&format!("nonce=\"{nonce}\"")), "{html}");
    // A second page gets a different nonce.
    let again = app.api().get(app.url("/login")).send().await.unwrap();
    let csp2 = again.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert_ne!(csp, csp2);
    app.stop().await;
}

#[tokio::test]
async fn no_request_sent_after_the_logout_answer_succeeds() {
    use std::time::Instant;
    let app = std::sync::Arc::new(spawn_app().await);
    let token = app.token_for("racer").await;

    // Readers hammer /api/me with the token while several logouts race each other.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (app, token, stop) = (app.clone(), token.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = Instant::now();
                    let status = app.me_bearer(&token).await.status().as_u16();
                    seen.push((sent, status));
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let logouts: Vec<_> = (0..4)
        .map(|_| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move {
                let status = app.logout_bearer(&token).await.status().as_u16();
                (status, Instant::now())
            })
        })
        .collect();
    let mut first_ok: Option<Instant> = None;
    let mut statuses = Vec::new();
    for l in logouts {
        let (status, answered) = l.await.unwrap();
        statuses.push(status);
        if status == 200 {
            first_ok = Some(first_ok.map_or(answered, |t: Instant| t.min(answered)));
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let first_ok = first_ok.expect("at least one logout succeeded");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
    let mut after = 0;
    for r in readers {
        for (sent, status) in r.await.unwrap() {
            assert!(status == 200 || status == 401, "unexpected {status}");
            if sent > first_ok {
                after += 1;
                assert_eq!(
                    status, 401,
                    "a request sent after the logout answer succeeded"
                );
            }
        }
    }
    assert!(after > 0, "the readers kept going after the logout");
}
