//! Security activity: each action writes its event exactly once (through the API, on both
//! databases), `GET /api/activity` and the page list them newest first, page by page, to their
//! owner only; a deleted account's events go with it; `/ready`.

use std::time::Duration;

use reqwest::Client;
use serde_json::Value;

use crate::helpers::{
    assert_rejected, database, error_of, refresh, sign_in, spawn_app, spawn_app_with, tokens,
    TestApp, PASSWORD,
};

/// Every event of `username`'s account as the API lists it (all pages), newest first: each
/// one's `kind` and `detail`.
async fn events(app: &TestApp, token: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut req = app.api().get(app.url("/api/activity")).bearer_auth(token);
        if let Some(b) = &before {
            req = req.query(&[("before", b)]);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        for e in page["events"].as_array().unwrap() {
            all.push((
                e["kind"].as_str().unwrap().to_owned(),
                e["detail"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_before"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// How many of `events` are `kind` (with `detail`, when given).
fn count(events: &[(String, String)], kind: &str, detail: Option<&str>) -> usize {
    events
        .iter()
        .filter(|(k, d)| k == kind && detail.is_none_or(|want| d == want))
        .count()
}

/// Rows of `kind` in the table itself, for an account whose token is gone.
async fn rows(app: &TestApp, user_id: i64, kind: &str) -> i64 {
    let db = database(app.dir.path()).await;
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM security_events WHERE user_id = $1 AND kind = $2")
            .bind(user_id)
            .bind(kind)
            .fetch_one(&db)
            .await
            .unwrap();
    db.close().await;
    n
}

/// A failed sign-in is recorded off the answer's path: wait for it.
async fn eventually(mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the event was never written");
}

#[tokio::test]
async fn each_action_writes_its_event_exactly_once() {
    let app = spawn_app().await;
    let api = app.api();
    assert_eq!(app.register(&api, "alice", PASSWORD).await.status(), 200);
    // A first sign-in: a device never seen on the account.
    let first = sign_in(&app, "alice").await;
    let seen = events(&app, &first.access).await;
    assert_eq!(seen, [("sign_in_new_device".into(), "password".into())]);

    // A wrong password for a known account is its event; an unknown name is nobody's.
    let wrong = app.login(&api, "alice", "not the password at all").await;
    assert_eq!(wrong.status(), 401);
    let unknown = app.login(&api, "nobody", "not the password at all").await;
    assert_eq!(unknown.status(), 401);
    eventually(async || count(&events(&app, &first.access).await, "sign_in_failed", None) == 1)
        .await;
    let db = database(app.dir.path()).await;
    let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM security_events")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    assert_eq!(all, 2, "an unknown name wrote an event");

    // Signing out, one session ending another, everywhere else, a password change.
    let second = sign_in(&app, "alice").await;
    assert_eq!(app.logout_bearer(&second.access).await.status(), 200);
    let third = sign_in(&app, "alice").await;
    let sessions = crate::helpers::sessions_of(&app, &first.access).await;
    let third_id = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = api
        .post(app.url("/api/sessions/revoke"))
        .bearer_auth(&first.access)
        .form(&[("id", &third_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    let _ = third;
    let _fourth = sign_in(&app, "alice").await;
    let _fifth = sign_in(&app, "alice").await;
    let others = api
        .post(app.url("/api/sessions/revoke-others"))
        .bearer_auth(&first.access)
        .send()
        .await
        .unwrap();
    assert_eq!(others.status(), 200);
    let sixth = sign_in(&app, "alice").await;
    let changed = api
        .post(app.url("/api/password"))
        .bearer_auth(&first.access)
        .form(&[
            ("current_password", PASSWORD),
            ("new_password", "a brand new password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200, "{:?}", error_of(changed).await);
    // The first session lives on, renewed: its token still reads the activity.
    let seen = events(&app, &first.access).await;
    assert_eq!(count(&seen, "sign_in_new_device", None), 6, "{seen:?}");
    assert_eq!(count(&seen, "sign_in_failed", Some("password")), 1);
    assert_eq!(count(&seen, "session_ended", Some("logout")), 1);
    assert_eq!(count(&seen, "session_ended", Some("revoked")), 1);
    assert_eq!(
        count(&seen, "session_ended", Some("signed_out_elsewhere")),
        2
    );
    assert_eq!(count(&seen, "session_ended", Some("password_changed")), 1);
    assert_eq!(count(&seen, "password_changed", None), 1);
    assert_eq!(seen.len(), 6 + 1 + 1 + 1 + 2 + 1 + 1, "{seen:?}");
    // Newest first: the password change and the ending it made come last in time.
    assert!(seen[..2].contains(&("password_changed".into(), String::new())));
    let _ = sixth;
}

#[tokio::test]
async fn a_reused_refresh_token_is_an_event_of_the_session_it_ends() {
    let app = spawn_app().await;
    assert_eq!(
        app.register(&app.api(), "bob", PASSWORD).await.status(),
        200
    );
    let watcher = sign_in(&app, "bob").await;
    let stolen = sign_in(&app, "bob").await;
    let rotated = tokens(refresh(&app, &stolen.refresh).await).await;
    // Past the reuse interval, the old token again: a copy.
    let db = database(app.dir.path()).await;
    sqlx::query("UPDATE sessions SET rotated_at = rotated_at - 3600")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let reused = refresh(&app, &stolen.refresh).await;
    assert_rejected(reused, "token_revoked").await;
    let _ = rotated;
    let seen = events(&app, &watcher.access).await;
    assert_eq!(count(&seen, "session_ended", Some("reuse")), 1, "{seen:?}");
}

/// 64 sign-ins of one account at once: one event each, no more, no fewer.
#[tokio::test]
async fn sixty_four_sign_ins_at_once_write_sixty_four_events() {
    let _heavy = crate::helpers::cpu_heavy().await;
    let app = spawn_app_with(|c| c.throttle = false).await;
    assert_eq!(
        app.register(&app.api(), "carol", PASSWORD).await.status(),
        200
    );
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let client = app.api();
        let url = app.url("/api/login");
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .form(&[("username", "carol"), ("password", PASSWORD)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let status = t.await.unwrap();
        assert!(status == 200 || status == 503, "{status}");
        ok += usize::from(status == 200);
    }
    assert!(ok > 0);
    let token = sign_in(&app, "carol").await;
    let seen = events(&app, &token.access).await;
    assert_eq!(count(&seen, "sign_in_new_device", None), ok + 1);
    assert_eq!(seen.len(), ok + 1, "{seen:?}");
}

#[tokio::test]
async fn the_activity_is_paged_newest_first_and_its_owners_only() {
    // 30 sign-ins from one address in a moment: past the sign-in limits otherwise.
    let app = spawn_app_with(|c| c.throttle = false).await;
    let api = app.api();
    assert_eq!(app.register(&api, "dave", PASSWORD).await.status(), 200);
    assert_eq!(app.register(&api, "erin", PASSWORD).await.status(), 200);
    let erin = sign_in(&app, "erin").await;
    // 30 sessions: 30 events, two pages.
    let mut last = None;
    for _ in 0..30 {
        last = Some(sign_in(&app, "dave").await);
    }
    let dave = last.unwrap();
    let first: Value = api
        .get(app.url("/api/activity"))
        .bearer_auth(&dave.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let page = first["events"].as_array().unwrap();
    assert_eq!(page.len(), 25);
    let ids: Vec<i64> = page.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let e = &page[0];
    assert_eq!(e["description"], "Signed in from a new device (password)");
    assert!(e["session_id"].as_str().is_some());
    assert!(e["at"].as_i64().unwrap() > 1_700_000_000);
    let next = first["next_before"].as_str().unwrap();
    let second: Value = api
        .get(app.url("/api/activity"))
        .query(&[("before", next)])
        .bearer_auth(&dave.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["events"].as_array().unwrap().len(), 5);
    assert!(second["next_before"].is_null());
    // Erin sees her one sign-in, none of Dave's.
    assert_eq!(events(&app, &erin.access).await.len(), 1);
    // A `before` that is not a page's: 422, in words.
    for bad in ["", " 5", "abc", "-1", "0", "99999999999999999999999", "1.5"] {
        let res = api
            .get(app.url("/api/activity"))
            .query(&[("before", bad)])
            .bearer_auth(&dave.access)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(res).await.0, 422, "{bad}");
    }
    // Two of it: 400, the request cannot be read.
    let twice = api
        .get(app.url("/api/activity?before=3&before=4"))
        .bearer_auth(&dave.access)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(twice).await.0, 400);
    // No token, a bad one: 401 with the reason.
    assert_rejected(
        api.get(app.url("/api/activity")).send().await.unwrap(),
        "missing_token",
    )
    .await;
    assert_rejected(
        api.get(app.url("/api/activity"))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap(),
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn the_page_lists_the_events_in_words_and_links_to_the_sessions() {
    let app = spawn_app().await;
    let browser = app.browser();
    assert_eq!(
        app.register(&browser, "frank", PASSWORD).await.status(),
        200
    );
    assert_eq!(app.login(&browser, "frank", PASSWORD).await.status(), 200);
    let html = app.page_html(&browser, "/activity").await;
    assert!(html.contains("Security activity"), "{html}");
    assert!(html.contains("Signed in from a new device (password)"));
    assert!(html.contains("href=\"/sessions\""));
    // Signed out: the page asks for a sign-in.
    let res = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/activity"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    // A bad `before` in the address is said in words, not a 500.
    let html = app.page_html(&browser, "/activity?before=%FF%FE").await;
    assert!(html.contains("before must be"), "{html}");
}

#[tokio::test]
async fn a_deleted_accounts_events_go_with_it() {
    let app = spawn_app().await;
    let api = app.api();
    assert_eq!(app.register(&api, "gina", PASSWORD).await.status(), 200);
    let gina = sign_in(&app, "gina").await;
    let _ = app.login(&api, "gina", "not the password at all").await;
    let me: Value = api
        .get(app.url("/api/me"))
        .bearer_auth(&gina.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = me["user_id"].as_i64().unwrap();
    eventually(async || rows(&app, id, "sign_in_failed").await == 1).await;
    let deleted = api
        .post(app.url("/api/account/delete"))
        .bearer_auth(&gina.access)
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200, "{:?}", error_of(deleted).await);
    for kind in ["sign_in_new_device", "sign_in_failed", "session_ended"] {
        assert_eq!(rows(&app, id, kind).await, 0, "{kind}");
    }
    assert_eq!(rows(&app, id, "account_deleted").await, 1);
    // A new account (on SQLite, perhaps with the same id) starts with its own story only.
    assert_eq!(app.register(&api, "hank", PASSWORD).await.status(), 200);
    let hank = sign_in(&app, "hank").await;
    assert_eq!(
        events(&app, &hank.access).await,
        [("sign_in_new_device".into(), "password".into())]
    );
}

#[tokio::test]
async fn ready_says_whether_the_database_is_there_and_migrated() {
    let app = spawn_app().await;
    let res = app.api().get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let db = database(app.dir.path()).await;
    // As if an older server had migrated this database: the newest migration is missing.
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    // The answer is kept for a second (a flood of checks costs one query a second).
    let cached = app.api().get(app.url("/ready")).send().await.unwrap();
    assert_eq!(cached.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = app.api().get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"].as_str().unwrap().contains("not migrated"),
        "{body}"
    );
    // /health only says the process answers.
    let res = app.api().get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// A client cannot pass for the operator: what it sends as its user agent is its device, never
/// "The operator".
#[tokio::test]
async fn a_client_calling_itself_the_operator_is_shown_as_its_device() {
    let app = spawn_app().await;
    assert_eq!(
        app.register(&app.api(), "ivan", PASSWORD).await.status(),
        200
    );
    let spoof = Client::builder()
        .user_agent("server admin")
        .build()
        .unwrap();
    let res = app.login(&spoof, "ivan", PASSWORD).await;
    let token = tokens(res).await;
    let page: Value = app
        .api()
        .get(app.url("/api/activity"))
        .bearer_auth(&token.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device = page["events"][0]["device"].as_str().unwrap();
    assert_ne!(device, "The operator");
}
