//! Brute force, concurrency and headers: what an attacker would try.

use crate::helpers::{refills_since, set_cookies, spawn_app, TestApp, PASSWORD};
use reqwest::{header, Client, Response};
use serde_json::{json, Value};

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

/// A page asks for its WASM only from its loader script, once painted (Playwright checks the
/// timing): no preload hint in the head starts the download beside the stylesheet.
#[tokio::test]
async fn pages_name_the_wasm_only_in_their_loader_script() {
    let app = spawn_app().await;
    for path in ["/", "/login", "/register"] {
        let html = app
            .api()
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let head = html.split("</head>").next().unwrap();
        for hint in ["rel=\"preload\"", "rel=\"modulepreload\""] {
            assert!(!head.contains(hint), "{path}: {hint} in {head}");
        }
        let script = head
            .split("<script type=\"module\" nonce=\"")
            .nth(1)
            .and_then(|rest| rest.split("</script>").next())
            .unwrap_or_else(|| panic!("{path}: no loader script in {head}"));
        for name in ["/pkg/authapp.js\"", ".wasm\""] {
            assert!(script.contains(name), "{path}: {name} not in {script}");
        }
        assert!(script.contains("first-contentful-paint"), "{script}");
    }
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

/// The device cookie an answer sets, if any.
fn device_cookie(res: &Response) -> Option<String> {
    set_cookies(res)
        .into_iter()
        .find(|c| c.starts_with("device_token="))
}

/// A sign-in posted by a page's form with JavaScript off (`Accept: text/html`): answered with a
/// redirect, to `next` on success and back to the form with `__err` on failure.
async fn sign_in_without_js(app: &TestApp, client: &Client, username: &str) -> Response {
    client
        .post(app.url("/api/login"))
        .header(header::ACCEPT, "text/html")
        .header(header::REFERER, app.url("/login"))
        .form(&[
            ("username", username),
            ("password", PASSWORD),
            ("next", "/profile"),
        ])
        .send()
        .await
        .unwrap()
}

/// A sign-in with a JSON body, as an API client sends it.
async fn sign_in_json(app: &TestApp, client: &Client, body: Value) -> Response {
    client
        .post(app.url("/api/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn retry_after(res: &Response) -> u64 {
    res.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// OWASP's device cookies, through the real API. 40 addresses × 5 wrong guesses use up the
/// account's ceiling, so every unknown device is refused, even with the right password; but the
/// owner's browser (JavaScript off) and the owner's API client, which signed in before, sign in
/// at once, and the signed-in owner can still change the password. A genuine device proof of
/// another account, in a cookie or in the body, is worth nothing.
#[tokio::test]
async fn an_attack_on_an_account_does_not_keep_its_owner_out() {
    use app::auth::throttle::{ACCOUNT_BURST, ACCOUNT_PERIOD, PAIR_BURST};
    // A hundred password checks in a row: not beside the other heavy tests.
    let _alone = crate::helpers::cpu_heavy().await;
    let app = spawn_app().await;
    app.register(&app.api(), "owner", PASSWORD).await;
    app.register(&app.api(), "mallory", PASSWORD).await;

    // Before the attack, the owner's browser and the owner's script sign in, each from an
    // address of its own; the browser gets the proof in an HttpOnly cookie, the script in the
    // body.
    let browser = app.browser_from([127, 0, 0, 100]);
    let res = sign_in_without_js(&app, &browser, "owner").await;
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()[header::LOCATION], "/profile");
    let cookie = device_cookie(&res).expect("a device cookie");
    for attr in [
        "device_token=dv1.",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=31536000",
    ] {
        assert!(cookie.contains(attr), "{attr} missing from {cookie}");
    }
    let script = app.api_from([127, 0, 0, 101]);
    let res = sign_in_json(
        &app,
        &script,
        json!({"username": "owner", "password": PASSWORD}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let owner_proof = body["device_token"]
        .as_str()
        .expect("device_token")
        .to_owned();
    let access = body["access_token"].as_str().unwrap().to_owned();

    // The attacker signed in to an account of their own: genuine proofs, of mallory.
    let thief = app.browser_from([127, 0, 0, 102]);
    let res = app.login(&thief, "mallory", PASSWORD).await;
    assert_eq!(res.status(), 200);
    assert!(device_cookie(&res).is_some());
    let res = app
        .login(&app.api_from([127, 0, 0, 102]), "mallory", PASSWORD)
        .await;
    let body: Value = res.json().await.unwrap();
    let mallory_proof = body["device_token"].as_str().unwrap().to_owned();

    // The attack: 40 addresses, 5 wrong guesses each, inside each pair's allowance.
    let started = std::time::Instant::now();
    let mut checked = 0;
    for i in 0..40u8 {
        let attacker = app.api_from([127, 0, 1, i]);
        for _ in 0..PAIR_BURST {
            let status = app
                .login(&attacker, "owner", "wrong password")
                .await
                .status();
            assert!(status == 401 || status == 429, "{status}");
            checked += u32::from(status == 401);
        }
    }
    // The ceiling's allowance (less the owner's two sign-ins, unknown devices then) and what it
    // got back meanwhile were used, no more; the attack goes on until that is gone too.
    let refilled = refills_since(started, ACCOUNT_PERIOD);
    let left = ACCOUNT_BURST - 2;
    assert!(
        (left..=left + refilled).contains(&checked),
        "{checked} password checks"
    );
    for i in 0..=refilled {
        let attacker = app.api_from([127, 0, 2, i as u8]);
        if app
            .login(&attacker, "owner", "wrong password")
            .await
            .status()
            == 429
        {
            break;
        }
    }

    // A new device with the right password is refused, with the wait.
    let newcomer = app.api_from([127, 0, 0, 103]);
    let res = app.login(&newcomer, "owner", PASSWORD).await;
    assert_eq!(res.status(), 429);
    assert!((1..=ACCOUNT_PERIOD.as_secs()).contains(&retry_after(&res)));
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "too_many_requests"
    );
    // So is a device with a proof of another account (in its cookie, or in the body), or a
    // made-up one, or the owner's proof with a byte changed.
    assert_eq!(app.login(&thief, "owner", PASSWORD).await.status(), 429);
    let mut forged = owner_proof.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for proof in [mallory_proof.as_str(), "dv1.AAAA", forged.as_str()] {
        let res = sign_in_json(
            &app,
            &newcomer,
            json!({"username": "owner", "password": PASSWORD, "device_token": proof}),
        )
        .await;
        assert_eq!(res.status(), 429, "{proof}");
        assert!(res.headers().contains_key(header::RETRY_AFTER));
    }

    // The owner's browser, without JavaScript, and the owner's script sign in at once.
    let res = sign_in_without_js(&app, &browser, "owner").await;
    assert_eq!(res.status(), 302);
    assert_eq!(
        res.headers()[header::LOCATION],
        "/profile",
        "the owner's browser was refused"
    );
    assert!(device_cookie(&res).is_some(), "the proof is renewed");
    let res = sign_in_json(
        &app,
        &script,
        json!({"username": "owner", "password": PASSWORD, "device_token": owner_proof}),
    )
    .await;
    assert_eq!(res.status(), 200, "the owner's script was refused");

    // The signed-in owner changes the password: counted on the session, not on the ceiling.
    let res = script
        .post(app.url("/api/password"))
        .bearer_auth(&access)
        .json(&json!({"current_password": PASSWORD, "new_password": "a new passphrase, at last"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

/// Wrong guesses through a device proof count on that device: its allowance used up, it is
/// refused even with the right password, while the same client without the proof (a pair that
/// nothing has used) is not.
#[tokio::test]
async fn wrong_guesses_through_a_device_proof_count_on_it() {
    use app::auth::throttle::{DEVICE_BURST, DEVICE_PERIOD};
    let app = spawn_app().await;
    app.register(&app.api(), "careful", PASSWORD).await;
    let script = app.api_from([127, 0, 0, 110]);
    let res = sign_in_json(
        &app,
        &script,
        json!({"username": "careful", "password": PASSWORD}),
    )
    .await;
    let body: Value = res.json().await.unwrap();
    let proof = body["device_token"].as_str().unwrap().to_owned();
    for _ in 0..DEVICE_BURST {
        let res = sign_in_json(
            &app,
            &script,
            json!({"username": "careful", "password": "wrong password", "device_token": proof}),
        )
        .await;
        assert_eq!(res.status(), 401);
    }
    let res = sign_in_json(
        &app,
        &script,
        json!({"username": "careful", "password": PASSWORD, "device_token": proof}),
    )
    .await;
    assert_eq!(res.status(), 429);
    assert!((1..=DEVICE_PERIOD.as_secs()).contains(&retry_after(&res)));
    assert_eq!(app.login(&script, "careful", PASSWORD).await.status(), 200);
    app.stop().await;
}

/// A signed-in person's password checks count per session: one session that guessed wrong too
/// often is refused, another session of the same account is not.
#[tokio::test]
async fn password_checks_while_signed_in_count_per_session() {
    use app::auth::throttle::SESSION_BURST;
    let app = spawn_app().await;
    let first = app.token_for("checker").await;
    let res = app.login(&app.api(), "checker", PASSWORD).await;
    let second = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let delete = |token: &str, password: &str| {
        app.api()
            .post(app.url("/api/account/delete"))
            .bearer_auth(token)
            .json(&json!({ "password": password }))
            .send()
    };
    for _ in 0..SESSION_BURST {
        assert_eq!(
            delete(&first, "wrong password").await.unwrap().status(),
            401
        );
    }
    let res = delete(&first, PASSWORD).await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(
        delete(&second, "wrong password").await.unwrap().status(),
        401
    );
    app.stop().await;
}
