//! Everything an attacker or a careless client might send gets a clear 4xx, never a 500.

use crate::helpers::{assert_rejected, b64url, now_unix, spawn_app, PASSWORD, SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

fn sign(claims: &Value, alg: Algorithm, key: &[u8]) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).unwrap()
}

fn claims(sub: &str, iat: i64, exp: i64) -> Value {
    json!({
        "sub": sub, "sid": uuid::Uuid::new_v4().to_string(), "gen": 1, "jti": uuid::Uuid::new_v4().to_string(),
        "iat": iat, "exp": exp, "iss": "authapp"
    })
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
        &claims(&user_id, now_unix() - 7200, now_unix() - 3600),
        Algorithm::HS256,
        key,
    );
    assert_rejected(app.me_bearer(&expired).await, "token_expired").await;

    // Tampered: the payload changed after signing.
    let parts: Vec<&str> = good.split('.').collect();
    let forged_body = b64url(
        claims("1", now_unix(), now_unix() + 3600)
            .to_string()
            .as_bytes(),
    );
    let tampered = format!("{}.{}.{}", parts[0], forged_body, parts[2]);
    assert_rejected(app.me_bearer(&tampered).await, "invalid_token").await;

    // alg: none, with and without the trailing dot.
    let none_header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64url(
        claims(&user_id, now_unix(), now_unix() + 3600)
            .to_string()
            .as_bytes(),
    );
    for t in [
        format!("{none_header}.{body}."),
        format!("{none_header}.{body}"),
    ] {
        assert_rejected(app.me_bearer(&t).await, "invalid_token").await;
    }

    // Another key; another HMAC algorithm with our key; another issuer.
    let c = claims(&user_id, now_unix(), now_unix() + 3600);
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

    // A body in neither of the API's encodings.
    let res = api
        .post(app.url("/api/login"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body("username=ivy&password=x")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["error"], "unsupported_media_type");

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
    // Read to the end: an unread answer keeps its connection busy through the shutdown.
    res.text().await.unwrap();
    app.stop().await;
}

/// A form body that is not UTF-8 is the client's fault: 400 `bad_request`, never a 5xx, and
/// never the browser-only `network` code.
#[tokio::test]
async fn bytes_that_are_not_utf8_are_a_bad_request() {
    let app = spawn_app().await;
    for path in ["/api/login", "/api/register", "/api/logout"] {
        for body in [
            &b"\xff\xfe{{{"[..],
            b"username=\xff\xfe&password=\xc3\x28abcdefgh",
        ] {
            let res = app
                .api()
                .post(app.url(path))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            let (status, body) = error_of(res).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert_eq!(body["error"], "bad_request", "{path}: {body}");
        }
    }
    app.stop().await;
}

/// The error of a form posted without JavaScript travels in the URL, where anyone can write
/// a link: the page shows our text for the error's code, never the link's.
#[tokio::test]
async fn error_text_from_a_link_is_never_shown_as_the_sites_own() {
    use base64::Engine;
    let app = spawn_app().await;
    let forged = |code: &str| {
        let json =
            json!({"error": code, "description": "Your account is locked. Call +1 555 0100."});
        base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
    };
    for (page, fn_path, code, ours) in [
        (
            "/login",
            "/api/login",
            "invalid_credentials",
            "The username or password is incorrect.",
        ),
        (
            "/",
            "/api/logout",
            "token_revoked",
            "The token has been revoked. Please sign in again.",
        ),
        (
            "/register",
            "/api/register",
            "invalid_input",
            "Check the form and try again.",
        ),
    ] {
        let url = format!("{page}?__path={fn_path}&__err={}", forged(code));
        let html = app.page_html(&app.api(), &url).await;
        assert!(!html.contains("555"), "{page}: the link's text is shown");
        assert!(
            html.contains(ours),
            "{page}: our text for {code} is missing"
        );
    }
    app.stop().await;
}

/// Answers that carry a token or private data are never stored by a cache; static assets may be.
#[tokio::test]
async fn private_answers_are_not_cached() {
    let app = spawn_app().await;
    let browser = app.browser();
    app.register(&browser, "private", PASSWORD).await;
    let login = app.login(&browser, "private", PASSWORD).await;
    assert_eq!(login.status(), 200);
    assert_eq!(login.headers()[header::CACHE_CONTROL], "no-store");
    for path in ["/api/me", "/api/whoami", "/profile", "/", "/health"] {
        let res = browser.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store", "{path}");
        // The hot path (`/health`, `/api/me`) has a short stack of its own: it too says this.
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    // Over plain http there is no HSTS (it would be ignored, and breaks local development).
    let res = browser.get(app.url("/")).send().await.unwrap();
    assert!(!res
        .headers()
        .contains_key(header::STRICT_TRANSPORT_SECURITY));
    app.stop().await;
}

/// Served over https (Secure cookies): HSTS on every answer, the cookie named `__Host-`, and
/// the same-origin check comparing the scheme too.
#[tokio::test]
async fn over_https_cookies_are_host_only_and_hsts_is_sent() {
    let app = crate::helpers::spawn_app_with(|c| c.secure_cookie = true).await;
    let api = app.api();
    app.register(&api, "secure", PASSWORD).await;
    let res = app.login(&api, "secure", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let hsts = res.headers()[header::STRICT_TRANSPORT_SECURITY]
        .to_str()
        .unwrap();
    assert!(hsts.starts_with("max-age=31536000"), "{hsts}");
    let cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("__Host-auth_token="), "{cookie}");
    assert!(
        cookie.contains("; Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    let token = cookie
        .trim_start_matches("__Host-auth_token=")
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let me = |cookie: String| {
        api.get(app.url("/api/me"))
            .header(header::COOKIE, cookie)
            .send()
    };
    let res = me(format!("__Host-auth_token={token}")).await.unwrap();
    assert_eq!(res.status(), 200);
    // The hot path's short stack sends HSTS too, and so does a 401 from it.
    assert!(res
        .headers()
        .contains_key(header::STRICT_TRANSPORT_SECURITY));
    for path in ["/health", "/api/me"] {
        let res = api.get(app.url(path)).send().await.unwrap();
        assert!(
            res.headers()
                .contains_key(header::STRICT_TRANSPORT_SECURITY),
            "{path}"
        );
    }
    // The plain name is not ours over https: anything on http could have set it.
    assert_rejected(
        me(format!("auth_token={token}")).await.unwrap(),
        "missing_token",
    )
    .await;

    // A cookie POST from the same host over plain http is another origin.
    let host = app.addr.to_string();
    let logout = |origin: String| {
        api.post(app.url("/api/logout"))
            .header(header::COOKIE, format!("__Host-auth_token={token}"))
            .header(header::ORIGIN, origin)
            .send()
    };
    assert_eq!(
        logout(format!("http://{host}")).await.unwrap().status(),
        403
    );
    assert_eq!(
        logout(format!("https://{host}")).await.unwrap().status(),
        200
    );
    app.stop().await;
}

/// A server function gives its error its own status only when it answers its own request for a
/// program: a page that calls it while rendering keeps its 200, and a form posted without
/// JavaScript still gets the redirect back to the form, carrying the error.
#[tokio::test]
async fn error_statuses_leave_pages_and_form_posts_alone() {
    let app = spawn_app().await;
    let token = app.token_for("pagey").await;
    assert_eq!(app.logout_bearer(&token).await.status(), 200);
    let page = app
        .api()
        .get(app.url("/"))
        .header(header::COOKIE, format!("auth_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("has been revoked"));

    let form = app
        .browser()
        .post(app.url("/api/login"))
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .header(header::REFERER, app.url("/login"))
        .form(&[("username", "pagey"), ("password", "wrong password")])
        .send()
        .await
        .unwrap();
    assert!(form.status().is_redirection(), "{}", form.status());
    let location = form.headers()[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with(&app.url("/login?")), "{location}");
    assert!(location.contains("__err="), "{location}");

    let script = app.login(&app.api(), "pagey", "wrong password").await;
    let (status, body) = error_of(script).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_credentials");
    app.stop().await;
}
