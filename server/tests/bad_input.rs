//! Everything an attacker or a careless client might send gets a clear 4xx, never a 500.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::{assert_rejected, spawn_app, PASSWORD, SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn sign(claims: &Value, alg: Algorithm, key: &[u8]) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).unwrap()
}

fn claims(sub: &str, iat: i64, exp: i64) -> Value {
    json!({"sub": sub, "jti": uuid::Uuid::new_v4().to_string(), "iat": iat, "exp": exp, "iss": "authapp"})
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_reason() {
    let app = spawn_app().await;
    let good = app.token_for("mallory").await;
    let user_id = {
        let me: Value = app.me_bearer(&good).await.json().await.unwrap();
        me["user_id"].as_i64().unwrap().to_string()
    };
    let key = SECRET.as_bytes();

    // Expired: well signed by our key, but past its `exp`.
    let expired = sign(
        &claims(&user_id, now() - 7200, now() - 3600),
        Algorithm::HS256,
        key,
    );
    assert_rejected(app.me_bearer(&expired).await, "token_expired").await;

    // Tampered: the payload changed after signing.
    let parts: Vec<&str> = good.split('.').collect();
    let forged_body = b64url(claims("1", now(), now() + 3600).to_string().as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], forged_body, parts[2]);
    assert_rejected(app.me_bearer(&tampered).await, "invalid_token").await;

    // alg: none, with and without the trailing dot.
    let none_header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64url(claims(&user_id, now(), now() + 3600).to_string().as_bytes());
    for t in [
        format!("{none_header}.{body}."),
        format!("{none_header}.{body}"),
    ] {
        assert_rejected(app.me_bearer(&t).await, "invalid_token").await;
    }

    // Another key; another HMAC algorithm with our key; another issuer.
    let c = claims(&user_id, now(), now() + 3600);
    let wrong_key = sign(&c, Algorithm::HS256, b"another-secret-another-secret-!!");
    let hs512 = sign(&c, Algorithm::HS512, key);
    let mut other_iss = c.clone();
    other_iss["iss"] = json!("someone-else");
    let other_iss = sign(&other_iss, Algorithm::HS256, key);
    for t in [wrong_key, hs512, other_iss] {
        assert_rejected(app.me_bearer(&t).await, "invalid_token").await;
    }

    // Garbage, an oversized token, and Authorization headers of the wrong shape.
    for t in ["garbage", "a.b.c", &"x".repeat(5000)] {
        assert_rejected(app.me_bearer(t).await, "invalid_token").await;
    }
    for value in ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer ", &good] {
        let res = app
            .api()
            .get(app.url("/api/me"))
            .header(header::AUTHORIZATION, value)
            .send()
            .await
            .unwrap();
        assert_rejected(res, "invalid_token").await;
    }
    assert_rejected(
        app.api().get(app.url("/api/me")).send().await.unwrap(),
        "missing_token",
    )
    .await;

    // The good token still works after all that.
    assert_eq!(app.me_bearer(&good).await.status(), 200);
    app.stop().await;
}

async fn error_of(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let body = res.json::<Value>().await.expect("JSON error body");
    (status, body)
}

#[tokio::test]
async fn registration_input_is_checked() {
    let app = spawn_app().await;
    let api = app.api();

    for (user, pass, needle) in [
        ("ab", PASSWORD, "3 to 32"),
        ("has space", PASSWORD, "letters, digits"),
        ("short", "1234567", "at least 8"),
        ("long", &"p".repeat(129), "at most 128"),
    ] {
        let (status, body) = error_of(app.register(&api, user, pass).await).await;
        assert_eq!(status, 422, "{user}: {body}");
        assert_eq!(body["error"], "invalid_input");
        assert!(
            body["description"].as_str().unwrap().contains(needle),
            "{body}"
        );
    }

    let res = api
        .post(app.url("/api/register"))
        .form(&[
            ("username", "gina"),
            ("password", PASSWORD),
            ("password_confirm", "different!!"),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(body["description"]
        .as_str()
        .unwrap()
        .contains("do not match"));

    assert_eq!(app.register(&api, "Gina", PASSWORD).await.status(), 200);
    // Usernames are unique regardless of case.
    let (status, body) = error_of(app.register(&api, "gina", PASSWORD).await).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"], "username_taken");
    app.stop().await;
}

#[tokio::test]
async fn login_failures_are_one_generic_401() {
    let app = spawn_app().await;
    let api = app.api();
    app.register(&api, "henry", PASSWORD).await;

    let (s1, wrong_password) = error_of(app.login(&api, "henry", "not the password").await).await;
    let (s2, unknown_user) = error_of(app.login(&api, "nobody", PASSWORD).await).await;
    let (s3, out_of_range) = error_of(app.login(&api, "x", "y").await).await;
    assert_eq!(
        (s1, s2, s3),
        (
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED
        )
    );
    assert_eq!(wrong_password, unknown_user);
    assert_eq!(wrong_password, out_of_range);
    assert_eq!(wrong_password["error"], "invalid_credentials");
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400_or_405_or_413() {
    let app = spawn_app().await;
    let api = app.api();

    // A missing field.
    let res = api
        .post(app.url("/api/login"))
        .form(&[("username", "ivy")])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad_request");

    // JSON sent to a form endpoint.
    let res = api
        .post(app.url("/api/login"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"username":"ivy","password":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // The wrong method.
    let res = api.get(app.url("/api/login")).send().await.unwrap();
    assert_eq!(res.status(), 405);

    // A body over the limit.
    let res = api
        .post(app.url("/api/register"))
        .form(&[("username", "ivy"), ("password", &"p".repeat(20_000))])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "payload_too_large");
    app.stop().await;
}

#[tokio::test]
async fn cross_site_cookie_posts_are_refused() {
    let app = spawn_app().await;
    let browser = app.browser();
    app.register(&browser, "jack", PASSWORD).await;
    assert_eq!(app.login(&browser, "jack", PASSWORD).await.status(), 200);

    let res = browser
        .post(app.url("/api/logout"))
        .header(header::ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "forbidden");
    // Nothing was revoked: the session still works.
    assert_eq!(
        browser
            .get(app.url("/api/me"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Without Origin the Referer decides; a cookie with neither is refused too.
    let res = app.login(&browser, "jack", PASSWORD).await;
    let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let logout = |extra: Option<(header::HeaderName, String)>| {
        let req = app
            .api()
            .post(app.url("/api/logout"))
            .header(header::COOKIE, &cookie);
        let req = match extra {
            Some((name, value)) => req.header(name, value),
            None => req,
        };
        async move { req.send().await.unwrap().status() }
    };
    let evil = Some((header::REFERER, "http://evil.example/page".to_string()));
    assert_eq!(logout(evil).await, 403);
    assert_eq!(logout(None).await, 403);
    // Signing in (or up) from another site is refused as well: no login CSRF.
    let res = app
        .api()
        .post(app.url("/api/login"))
        .header(header::ORIGIN, "http://evil.example")
        .header(header::COOKIE, &cookie)
        .form(&[("username", "jack"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // From our own page (Referer only) it goes through.
    let ours = Some((header::REFERER, app.url("/profile")));
    assert_eq!(logout(ours).await, 200);

    // A Bearer token cannot be sent by another site's page: no origin check for it.
    let token = app.token_for("kate").await;
    let res = app
        .api()
        .post(app.url("/api/logout"))
        .header(header::ORIGIN, "http://evil.example")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let app = spawn_app().await;
    let res = app.api().get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    app.stop().await;
}
