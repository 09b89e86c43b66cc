//! Brute force, concurrency and headers: what an attacker would try.

use crate::helpers::{spawn_app, PASSWORD};
use reqwest::header;
use serde_json::Value;

#[tokio::test]
async fn failed_logins_are_throttled_per_account_and_address_with_retry_after() {
    let app = spawn_app().await;
    let api = app.api();
    app.register(&api, "target", PASSWORD).await;
    app.register(&api, "bystander", PASSWORD).await;

    for _ in 0..app::auth::throttle::PAIR_BURST {
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
    assert!(retry >= 1 && retry <= app::auth::throttle::PAIR_PERIOD.as_secs());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");
    assert_eq!(body["retry_after"], retry);

    // Someone else signing in (from the same address, even) is not affected.
    assert_eq!(app.login(&api, "bystander", PASSWORD).await.status(), 200);
    app.stop().await;
}

/// Guesses sent all at once are counted before any of them reaches argon2: only the burst gets
/// a password check (401), every other one is refused at once (429).
#[tokio::test]
async fn parallel_guesses_get_no_more_checks_than_the_burst() {
    use app::auth::throttle::PAIR_BURST;
    let app = std::sync::Arc::new(spawn_app().await);
    app.register(&app.api(), "crowded", PASSWORD).await;
    let guesses: Vec<_> = (0..64)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let api = app.api();
                let res = app
                    .login(&api, "crowded", &format!("wrong guess {i}"))
                    .await;
                res.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.unwrap());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        checked <= PAIR_BURST as usize,
        "{checked} password checks: {statuses:?}"
    );
    assert_eq!(checked + refused, 64, "{statuses:?}");
}

/// Someone elsewhere using up an account's attempts does not lock its owner out: the tight
/// limit is per (account, address).
#[tokio::test]
async fn guesses_from_elsewhere_do_not_lock_the_owner_out() {
    let app = spawn_app().await;
    app.register(&app.api(), "owner", PASSWORD).await;
    let attacker = app.api_from([127, 0, 0, 2]);
    for _ in 0..app::auth::throttle::PAIR_BURST {
        assert_eq!(
            app.login(&attacker, "owner", "wrong password")
                .await
                .status(),
            401
        );
    }
    assert_eq!(app.login(&attacker, "owner", PASSWORD).await.status(), 429);
    let owner = app.api_from([127, 0, 0, 3]);
    assert_eq!(app.login(&owner, "owner", PASSWORD).await.status(), 200);
    app.stop().await;
}

/// Behind a trusted proxy the limits key on the client it names in `X-Forwarded-For`; from
/// any other peer the header is ignored, so nobody picks their own address.
#[tokio::test]
async fn limits_key_on_the_client_a_trusted_proxy_names() {
    use app::auth::{proxies::TrustedProxies, throttle::PAIR_BURST};
    let app = crate::helpers::spawn_app_with(|c| {
        c.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    app.register(&app.api(), "proxied", PASSWORD).await;
    let proxy = app.api_from([127, 0, 0, 1]);
    let login = |client: &reqwest::Client, forwarded: &str, password: &str| {
        client
            .post(app.url("/api/login"))
            .header("x-forwarded-for", forwarded)
            .form(&[("username", "proxied"), ("password", password)])
            .send()
    };
    // One client behind the proxy uses up its attempts...
    for _ in 0..PAIR_BURST {
        let res = login(&proxy, "203.0.113.5", "wrong password")
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = login(&proxy, "203.0.113.5", PASSWORD).await.unwrap();
    assert_eq!(res.status(), 429);
    // ...even when it writes another address into the header itself (the proxy appends).
    let res = login(&proxy, "198.51.100.1, 203.0.113.5", PASSWORD)
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    // Another client behind the same proxy is not affected.
    let res = login(&proxy, "203.0.113.6", PASSWORD).await.unwrap();
    assert_eq!(res.status(), 200);

    // Not through the proxy: the header is ignored and the peer's own address counts.
    let direct = app.api_from([127, 0, 0, 7]);
    for _ in 0..PAIR_BURST {
        let res = login(&direct, "203.0.113.7", "wrong password")
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = login(&direct, "203.0.113.8", PASSWORD).await.unwrap();
    assert_eq!(
        res.status(),
        429,
        "a header from an untrusted peer changed its address"
    );
    let res = login(&proxy, "203.0.113.7", PASSWORD).await.unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

/// An attempt counts when it arrives, even if the client hangs up before the password check
/// has answered: here every abandoned attempt is still queued behind other people's hashing
/// when its client leaves, so it is never checked at all.
#[tokio::test]
async fn an_abandoned_attempt_still_counts() {
    use tokio::io::AsyncWriteExt;
    // Its 50 ms before hanging up assume a machine not loaded by the heaviest tests.
    let _alone = crate::helpers::cpu_heavy().await;
    let app = std::sync::Arc::new(spawn_app().await);
    app.register(&app.api(), "leaver", PASSWORD).await;
    // Twenty sign-ups from another address keep the one hashing thread busy for a while.
    let busy: Vec<_> = (0..20)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let other = app.api_from([127, 0, 0, 5]);
                app.register(&other, &format!("busy{i}"), PASSWORD)
                    .await
                    .status()
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let body = "username=leaver&password=wrong+password+here";
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        app.addr,
        body.len()
    );
    for _ in 0..app::auth::throttle::PAIR_BURST {
        let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(tcp); // hang up while the attempt waits for a hash
    }
    for b in busy {
        assert_eq!(b.await.unwrap(), 200);
    }
    let res = app.login(&app.api(), "leaver", PASSWORD).await;
    assert_eq!(res.status(), 429, "the abandoned attempts were not counted");
}

/// Names that cannot be accounts are refused before they reach the throttle: they fill no
/// memory and use up nobody's allowance.
#[tokio::test]
async fn invalid_names_never_reach_the_throttle() {
    let app = spawn_app().await;
    let api = app.api();
    app.register(&api, "regular", PASSWORD).await;
    for i in 0..(app::auth::throttle::ADDRESS_BURST + 10) {
        let name = format!("not a valid name {i} {}", "x".repeat(2000));
        let res = app.login(&api, &name, "wrong password").await;
        assert_eq!(res.status(), 401);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_credentials");
    }
    assert_eq!(app.login(&api, "regular", PASSWORD).await.status(), 200);
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
    let refilled = crate::helpers::refills_since(started, ADDRESS_PERIOD);
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
    let refilled = crate::helpers::refills_since(started, SIGNUP_PERIOD);
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
