//! Signing up and signing in over HTTP, the user's story: register → login → me → logout → me
//! refused, by cookie and by Bearer; pages for both states; what a restart or a database reset
//! does to a token; a crowd signing up as one name.

use crate::helpers::{
    assert_rejected, database_url, spawn_app, spawn_app_in, spawn_app_with, PASSWORD,
};
use reqwest::header;
use serde_json::{json, Value};

#[tokio::test]
async fn cookie_session_register_login_me_logout() {
    let app = spawn_app().await;
    let browser = app.browser();

    let res = app.register(&browser, "alice", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], "alice");

    let res = app.login(&browser, "alice", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let cookies: Vec<String> = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    let cookie = cookies[0].clone();
    // The access cookie lives as long as the access token (ACCESS_TTL, 15 min); the refresh
    // cookie as long as the session (SESSION_TTL, 30 days); the device cookie a year.
    for (cookie, name, max_age) in [
        (&cookies[0], "auth_token=", "Max-Age=900"),
        (&cookies[1], "refresh_token=rt2.", "Max-Age=2592000"),
        (&cookies[2], "device_token=dv1.", "Max-Age=31536000"),
    ] {
        for attr in [name, "HttpOnly", "SameSite=Strict", "Path=/", max_age] {
            assert!(cookie.contains(attr), "{attr} missing from {cookie}");
        }
        assert!(!cookie.contains("Secure"), "plain http in development");
    }
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    // A page keeps its refresh token in the HttpOnly cookie only: no script can read it.
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body.get("device_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    assert!(cookie.contains(&token));

    let me = browser.get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert!(me["expires_at"].as_i64().unwrap() > me["created_at"].as_i64().unwrap());

    let out = browser.post(app.url("/api/logout")).send().await.unwrap();
    assert_eq!(out.status(), 200);
    let cleared = out
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // The browser dropped its cookie...
    assert_rejected(
        browser.get(app.url("/api/me")).send().await.unwrap(),
        "missing_token",
    )
    .await;
    // ...and the same token replayed as a cookie, or as a Bearer, is revoked.
    let replay = app
        .api()
        .get(app.url("/api/me"))
        .header(header::COOKIE, format!("auth_token={token}"))
        .send()
        .await
        .unwrap();
    assert_rejected(replay, "token_revoked").await;
    assert_rejected(app.me_bearer(&token).await, "token_revoked").await;
    app.stop().await;
}

#[tokio::test]
async fn bearer_session_register_login_me_logout() {
    let app = spawn_app().await;
    let token = app.token_for("bob").await;

    let me = app.me_bearer(&token).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["username"], "bob");

    let out = app.logout_bearer(&token).await;
    assert_eq!(out.status(), 200);
    assert_eq!(out.json::<Value>().await.unwrap()["revoked"], true);

    assert_rejected(app.me_bearer(&token).await, "token_revoked").await;
    // Logging out twice with the same token is refused too.
    assert_rejected(app.logout_bearer(&token).await, "token_revoked").await;

    // A new login gets a new, working token.
    let again = app.login(&app.api(), "bob", PASSWORD).await;
    let fresh = again.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(fresh, token);
    assert_eq!(app.me_bearer(&fresh).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn revocation_survives_a_restart() {
    let app = spawn_app().await;
    let revoked = app.token_for("carol").await;
    let kept = {
        let res = app.login(&app.api(), "carol", PASSWORD).await;
        res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(app.logout_bearer(&revoked).await.status(), 200);
    let dir = app.dir.clone();
    app.stop().await;

    let app = spawn_app_in(dir).await;
    assert_rejected(app.me_bearer(&revoked).await, "token_revoked").await;
    // Tokens that were not signed out still work after the restart.
    assert_eq!(app.me_bearer(&kept).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn protected_page_redirects_without_a_session_and_renders_with_one() {
    let app = spawn_app().await;
    let browser = app.browser();

    let res = browser.get(app.url("/profile")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[header::LOCATION], "/login?next=%2Fprofile");

    app.register(&browser, "dora", PASSWORD).await;
    assert_eq!(app.login(&browser, "dora", PASSWORD).await.status(), 200);
    let res = browser.get(app.url("/profile")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("data-testid=\"profile-username\">dora<"),
        "{html}"
    );
    assert!(html.contains("Signed in as"));

    // A revoked cookie is sent to sign in as well, and the stale cookie is cleared.
    browser.post(app.url("/api/logout")).send().await.unwrap();
    let token = app.token_for("erin").await;
    app.logout_bearer(&token).await;
    let res = app
        .api()
        .get(app.url("/profile"))
        .header(header::COOKIE, format!("auth_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    app.stop().await;
}

#[tokio::test]
async fn home_page_is_server_rendered_for_both_states() {
    let app = spawn_app().await;
    let browser = app.browser();
    let html = app.page_html(&browser, "/").await;
    assert!(html.contains("You are not signed in."), "{html}");

    app.register(&browser, "fred", PASSWORD).await;
    app.login(&browser, "fred", PASSWORD).await;
    let html = app.page_html(&browser, "/").await;
    assert!(html.contains("<strong>fred</strong>"), "{html}");
    app.stop().await;
}

/// User ids are reused: after the database is reset (same secret), a token from before names
/// an id that now belongs to someone else. It must not sign in as them.
#[tokio::test]
async fn a_token_from_before_a_database_reset_is_refused() {
    let before = spawn_app().await;
    let token = before.token_for("old-alice").await;
    let me: Value = before.me_bearer(&token).await.json().await.unwrap();
    let old_id = me["user_id"].as_i64().unwrap();
    before.stop().await;

    // A new, empty database with the same secret; the next account created gets the same id.
    let after = spawn_app().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let bob: Value = after
        .me_bearer(&after.token_for("new-bob").await)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        bob["user_id"].as_i64(),
        Some(old_id),
        "the id was not reused"
    );
    assert_rejected(after.me_bearer(&token).await, "invalid_token").await;
    // Pages and server functions too.
    let page = after
        .api()
        .get(after.url("/profile"))
        .header(header::COOKIE, format!("auth_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    let session = after
        .api()
        .get(after.url("/api/whoami"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_rejected(session, "invalid_token").await;
    after.stop().await;
}

/// A sign-in leaves the account it checked in memory: the first use of its token reads no user
/// from the database (a name changed behind the server's back is not seen), so the token works
/// while the database cannot be reached (the outage test in `postgres`). The name kept is the
/// account's, whatever case the sign-in typed.
#[tokio::test]
async fn a_fresh_sign_in_is_checked_from_memory() {
    let app = spawn_app().await;
    let api = app.api();
    assert_eq!(app.register(&api, "Carol", PASSWORD).await.status(), 200);
    let res = app.login(&api, "carol", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();

    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&database_url(app.dir.path()).await)
        .await
        .unwrap();
    let renamed = sqlx::query("UPDATE users SET username = 'renamed' WHERE username = 'Carol'")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(renamed.rows_affected(), 1);
    db.close().await;

    let res = app.me_bearer(token).await;
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["username"], "Carol", "{me}");
    app.stop().await;
}

/// 64 sign-ups of one name at once, half JSON and half forms: exactly one account is created,
/// every other answer is 409 (or 503 while the hashing queue is full), never a 5xx.
#[tokio::test]
async fn a_crowd_signing_up_as_one_name_gets_one_account() {
    let _heavy = crate::helpers::cpu_heavy().await;
    let app = spawn_app_with(|c| c.throttle = false).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = app.api();
        let url = app.url("/api/register");
        tasks.push(tokio::spawn(async move {
            let req = client.post(url);
            let req = if i % 2 == 0 {
                req.json(&json!({"username": "crowd", "password": PASSWORD}))
            } else {
                req.form(&[("username", "crowd"), ("password", PASSWORD)])
            };
            req.send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 409 || s == 503),
        "{statuses:?}"
    );
    app.stop().await;
}
