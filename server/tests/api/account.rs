//! The account over HTTP: a password change ends every other session and renews this one, and
//! a deletion refuses every token at once and frees the name; wrong current passwords are
//! throttled.

use crate::helpers::{
    browser_for, browser_refused, error_of, refresh, refused_everywhere, sessions_of, sign_in,
    spawn_app, tokens, PASSWORD,
};
use serde_json::Value;

#[tokio::test]
async fn a_password_change_ends_every_other_session_and_rotates_this_one() {
    let app = spawn_app().await;
    app.register(&app.api(), "changer", PASSWORD).await;
    let here = sign_in(&app, "changer").await;
    let elsewhere = sign_in(&app, "changer").await;
    let browser = browser_for(&app, "changer").await;
    let change = |current: &str, new: &str| {
        app.api()
            .post(app.url("/api/password"))
            .bearer_auth(&here.access)
            .form(&[("current_password", current), ("new_password", new)])
            .send()
    };
    // The wrong current password changes nothing.
    let res = change("not the password", "a brand new password")
        .await
        .unwrap();
    assert_eq!(error_of(res).await, (401, "invalid_credentials".into()));
    let res = change(PASSWORD, "short").await.unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(app.me_bearer(&elsewhere.access).await.status(), 200);

    let renewed = tokens(change(PASSWORD, "a brand new password").await.unwrap()).await;
    assert_ne!(renewed.refresh, here.refresh);
    refused_everywhere(&app, &elsewhere.access).await;
    browser_refused(&app, &browser).await;
    assert_eq!(app.me_bearer(&renewed.access).await.status(), 200);
    let next = tokens(refresh(&app, &renewed.refresh).await).await;
    // The refresh token from before the change is dead; presenting it ends this session too
    // (whoever presents it holds a copy it should not).
    assert_eq!(
        error_of(refresh(&app, &here.refresh).await).await,
        (401, "token_revoked".into())
    );
    refused_everywhere(&app, &next.access).await;
    assert_eq!(
        app.login(&app.api(), "changer", PASSWORD).await.status(),
        401
    );
    assert_eq!(
        app.login(&app.api(), "changer", "a brand new password")
            .await
            .status(),
        200
    );
    app.stop().await;
}

/// Wrong current passwords on the account page are throttled, on the session's own allowance.
#[tokio::test]
async fn password_checks_on_the_account_page_are_throttled() {
    let app = spawn_app().await;
    app.register(&app.api(), "guessed", PASSWORD).await;
    let stolen = sign_in(&app, "guessed").await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let res = app
            .api()
            .post(app.url("/api/account/delete"))
            .bearer_auth(&stolen.access)
            .form(&[("password", format!("guess number {i}"))])
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    assert_eq!(app.me_bearer(&stolen.access).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn deleting_the_account_refuses_every_token_at_once_and_frees_the_name() {
    let app = spawn_app().await;
    app.register(&app.api(), "leaving", PASSWORD).await;
    let here = sign_in(&app, "leaving").await;
    let there = sign_in(&app, "leaving").await;
    let browser = browser_for(&app, "leaving").await;
    let res = app
        .api()
        .post(app.url("/api/account/delete"))
        .bearer_auth(&here.access)
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["deleted"], true);
    refused_everywhere(&app, &here.access).await;
    refused_everywhere(&app, &there.access).await;
    browser_refused(&app, &browser).await;
    assert_eq!(refresh(&app, &there.refresh).await.status(), 401);
    assert_eq!(
        app.login(&app.api(), "leaving", PASSWORD).await.status(),
        401
    );
    // The name is free again, and the new account is not the old one.
    assert_eq!(
        app.register(&app.api(), "leaving", PASSWORD).await.status(),
        200
    );
    let again = sign_in(&app, "leaving").await;
    assert_eq!(sessions_of(&app, &again.access).await.len(), 1);
    refused_everywhere(&app, &there.access).await;
    app.stop().await;
}
