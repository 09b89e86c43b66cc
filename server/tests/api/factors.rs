//! Second factors over HTTP: the sign-in's second step (a token for an API client, a cookie
//! bound to the browser for a page), codes accepted once, recovery codes, fresh authentication
//! for dangerous changes (`403 reauth_required`, `POST /api/reauth`), and the sessions list
//! telling how each session signed in.

use std::time::Duration;

use app::auth::factors::totp::{TotpSecret, STEP};
use serde_json::Value;

use crate::helpers::{
    error_of, now_unix, sessions_of, sign_in, spawn_app, spawn_app_with, PASSWORD,
};

/// The code of the step `offset` steps from now.
fn code(secret: &TotpSecret, offset: i64) -> String {
    secret.code_at(now_unix() / STEP + offset).unwrap()
}

/// Turns TOTP on for the API client holding `access`: the secret and the recovery codes. The
/// first code is the previous step's: the current one stays free for the test's sign-ins.
async fn enrol(app: &crate::helpers::TestApp, access: &str) -> (TotpSecret, Vec<String>) {
    let begin = app
        .api()
        .post(app.url("/api/totp/begin"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(begin.status(), 200);
    let begin: Value = begin.json().await.unwrap();
    assert!(begin["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(begin["otpauth_url"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    let secret = TotpSecret::from_base32(begin["secret"].as_str().unwrap()).unwrap();
    let confirm = app
        .api()
        .post(app.url("/api/totp/confirm"))
        .bearer_auth(access)
        .form(&[("code", code(&secret, -1))])
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    let body: Value = confirm.json().await.unwrap();
    let codes: Vec<String> = body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes)
}

async fn second_step(
    app: &crate::helpers::TestApp,
    pending: &str,
    code: &str,
) -> reqwest::Response {
    app.api()
        .post(app.url("/api/login/code"))
        .form(&[("pending_token", pending), ("code", code)])
        .send()
        .await
        .unwrap()
}

/// The password's answer for an account with TOTP on: 403 with a pending token, no tokens.
async fn pending_token(app: &crate::helpers::TestApp, user: &str) -> String {
    let res = app.login(&app.api(), user, PASSWORD).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "second_factor_required");
    assert!(body.get("access_token").is_none());
    body["pending_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_api_client_signs_in_in_two_steps_each_code_once() {
    let app = spawn_app().await;
    app.register(&app.api(), "twostep", PASSWORD).await;
    let first = sign_in(&app, "twostep").await;
    let other = sign_in(&app, "twostep").await;
    let (secret, codes) = enrol(&app, &first.access).await;
    assert_eq!(codes.len(), 10);
    // Turning it on ended every other session.
    assert_eq!(
        error_of(app.me_bearer(&other.access).await).await,
        (401, "token_revoked".into())
    );
    assert_eq!(app.me_bearer(&first.access).await.status(), 200);

    let pending = pending_token(&app, "twostep").await;
    assert!(pending.starts_with("ps1."));
    // The pending token is no access token.
    assert_eq!(app.me_bearer(&pending).await.status(), 401);
    assert_eq!(
        error_of(second_step(&app, &pending, "000000").await).await,
        (401, "invalid_code".into())
    );
    let now = code(&secret, 0);
    let res = second_step(&app, &pending, &now).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.me_bearer(&access).await.status(), 200);
    // Spent: the same pending token again, and the same code in a new sign-in.
    assert_eq!(
        error_of(second_step(&app, &pending, &code(&secret, 1)).await).await,
        (401, "sign_in_expired".into())
    );
    let again = pending_token(&app, "twostep").await;
    assert_eq!(
        error_of(second_step(&app, &again, &now).await).await,
        (401, "invalid_code".into())
    );
    // A recovery code, once.
    assert_eq!(second_step(&app, &again, &codes[0]).await.status(), 200);
    let third = pending_token(&app, "twostep").await;
    assert_eq!(
        error_of(second_step(&app, &third, &codes[0]).await).await,
        (401, "invalid_code".into())
    );
    // The sessions say how each signed in.
    let listed = sessions_of(&app, &access).await;
    let methods: Vec<&str> = listed
        .iter()
        .map(|s| s["auth_method"].as_str().unwrap())
        .collect();
    assert!(methods.contains(&"password_totp"), "{methods:?}");
    assert!(methods.contains(&"recovery_code"), "{methods:?}");
    assert!(methods.contains(&"password"), "{methods:?}");
    let factors: Value = app
        .api()
        .get(app.url("/api/account/factors"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(factors["totp_enabled"], true);
    assert_eq!(factors["recovery_codes_left"], 9);
    app.stop().await;
}

/// A page's half-way sign-in lives in its own cookie: another browser (or a client without
/// the cookie) cannot finish it, and the page's answer carries no token in its body.
#[tokio::test]
async fn a_pages_half_way_sign_in_is_bound_to_its_browser() {
    let app = spawn_app().await;
    app.register(&app.api(), "bound", PASSWORD).await;
    let first = sign_in(&app, "bound").await;
    let (secret, _) = enrol(&app, &first.access).await;
    let browser = app.browser();
    let res = app.login(&browser, "bound", PASSWORD).await;
    assert_eq!(res.status(), 403);
    let cookies = crate::helpers::set_cookies(&res);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("pending_sign_in=ps1.") && c.contains("HttpOnly")),
        "{cookies:?}"
    );
    assert!(!cookies.iter().any(|c| c.starts_with("auth_token=ps")));
    let body: Value = res.json().await.unwrap();
    assert!(body.get("pending_token").is_none(), "{body}");
    let other = app.browser();
    let stolen = other
        .post(app.url("/api/login/code"))
        .form(&[("code", code(&secret, 0))])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(stolen).await, (401, "sign_in_expired".into()));
    let res = browser
        .post(app.url("/api/login/code"))
        .form(&[("code", code(&secret, 0))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookies = crate::helpers::set_cookies(&res);
    assert!(
        cookies.iter().any(|c| c.starts_with("pending_sign_in=;")),
        "{cookies:?}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("auth_token=ey")),
        "{cookies:?}"
    );
    let me = browser.get(app.url("/api/whoami")).send().await.unwrap();
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["username"], "bound");
    app.stop().await;
}

/// The same right code 64 times at once, for one half-way sign-in: one session.
#[tokio::test]
async fn one_code_posted_sixty_four_times_at_once_starts_one_session() {
    let app = spawn_app().await;
    app.register(&app.api(), "crowd", PASSWORD).await;
    let first = sign_in(&app, "crowd").await;
    let (secret, _) = enrol(&app, &first.access).await;
    let pending = pending_token(&app, "crowd").await;
    let now = code(&secret, 0);
    let posts: Vec<_> = (0..64)
        .map(|_| {
            let (client, url) = (app.api(), app.url("/api/login/code"));
            let form = [("pending_token", pending.clone()), ("code", now.clone())];
            tokio::spawn(async move { client.post(url).form(&form).send().await.unwrap().status() })
        })
        .collect();
    let mut ok = 0;
    for post in posts {
        let status = post.await.unwrap().as_u16();
        assert!([200, 401, 429].contains(&status), "{status}");
        ok += usize::from(status == 200);
    }
    assert_eq!(ok, 1);
    // Two sessions: the enrolling one and the one the crowd started.
    assert_eq!(sessions_of(&app, &first.access).await.len(), 2);
    app.stop().await;
}

/// Dangerous changes need a sign-in within REAUTH_WINDOW: an older session is answered
/// `403 reauth_required` (a refresh does not help), confirms with its password, then goes on.
#[tokio::test]
async fn a_stale_session_confirms_before_a_dangerous_change() {
    let app = spawn_app_with(|c| c.reauth_window = Duration::from_secs(2)).await;
    app.register(&app.api(), "stale", PASSWORD).await;
    let old = sign_in(&app, "stale").await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let renewed = crate::helpers::tokens(crate::helpers::refresh(&app, &old.refresh).await).await;
    let change = |access: &str| {
        app.api()
            .post(app.url("/api/password"))
            .bearer_auth(access)
            .form(&[
                ("current_password", PASSWORD),
                ("new_password", "a brand new password"),
            ])
            .send()
    };
    for access in [&old.access, &renewed.access] {
        assert_eq!(
            error_of(change(access).await.unwrap()).await,
            (403, "reauth_required".into())
        );
    }
    for (path, form) in [
        ("/api/account/delete", vec![("password", PASSWORD)]),
        ("/api/totp/begin", vec![]),
        ("/api/recovery-codes", vec![]),
    ] {
        let res = app
            .api()
            .post(app.url(path))
            .bearer_auth(&renewed.access)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_of(res).await,
            (403, "reauth_required".into()),
            "{path}"
        );
    }
    let reauth = |password: &str| {
        app.api()
            .post(app.url("/api/reauth"))
            .bearer_auth(&renewed.access)
            .form(&[("password", password)])
            .send()
    };
    assert_eq!(
        error_of(reauth("not the password").await.unwrap()).await,
        (401, "invalid_credentials".into())
    );
    let res = reauth(PASSWORD).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["fresh_until"].as_i64().unwrap() >= now_unix());
    assert_eq!(change(&renewed.access).await.unwrap().status(), 200);
    app.stop().await;
}

/// With TOTP on, confirming needs the code too.
#[tokio::test]
async fn confirming_with_two_step_sign_in_on_needs_a_code() {
    let app = spawn_app().await;
    app.register(&app.api(), "confirmer", PASSWORD).await;
    let first = sign_in(&app, "confirmer").await;
    let (secret, _) = enrol(&app, &first.access).await;
    let reauth = |form: Vec<(&'static str, String)>| {
        app.api()
            .post(app.url("/api/reauth"))
            .bearer_auth(&first.access)
            .form(&form)
            .send()
    };
    let res = reauth(vec![("password", PASSWORD.into())]).await.unwrap();
    assert_eq!(error_of(res).await, (403, "second_factor_required".into()));
    let res = reauth(vec![
        ("password", PASSWORD.into()),
        ("code", "111111".into()),
    ])
    .await
    .unwrap();
    assert_eq!(error_of(res).await, (401, "invalid_code".into()));
    let res = reauth(vec![
        ("password", PASSWORD.into()),
        ("code", code(&secret, 0)),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    // Turning it off ends the other sessions and makes the password enough again.
    let res = app
        .api()
        .post(app.url("/api/totp/remove"))
        .bearer_auth(&first.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["totp_enabled"], false);
    assert_eq!(
        app.login(&app.api(), "confirmer", PASSWORD).await.status(),
        200
    );
    app.stop().await;
}
