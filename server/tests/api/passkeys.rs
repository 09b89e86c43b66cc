//! Passkeys over HTTP, with a software passkey ([`SoftPasskey`]): adding one (a ceremony bound
//! to the session that began it), signing in with it on its own (no username, no second step),
//! each ceremony spent once, a replayed assertion and a cloned key refused, renaming and
//! removing it, and the site without a domain name having none.

use serde_json::Value;

use crate::helpers::{
    error_of, sessions_of, sign_in, spawn_app, spawn_app_with, TestApp, PASSWORD,
};
use crate::passkey_device::SoftPasskey;

/// The origin of the tests' servers as passkeys see it: their PUBLIC_URL is
/// `http://127.0.0.1:3000`, a loopback address, taken as `localhost`.
pub const ORIGIN: &str = "http://localhost:3000";

async fn post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app.api().post(app.url(path)).form(form);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

/// (ceremony, options) of a begin.
async fn begin(app: &TestApp, path: &str, token: Option<&str>) -> (String, String) {
    let res = post(app, path, token, &[]).await;
    assert_eq!(res.status(), 200, "{path}");
    let body: Value = res.json().await.unwrap();
    (
        body["ceremony"].as_str().unwrap().to_owned(),
        body["options"].as_str().unwrap().to_owned(),
    )
}

/// Adds `key` to the account holding `access`: the passkey as listed.
pub async fn add_passkey(app: &TestApp, access: &str, key: &mut SoftPasskey) -> Value {
    let (ceremony, options) = begin(app, "/api/passkeys/register/begin", Some(access)).await;
    let credential = key.register(&options);
    let res = post(
        app,
        "/api/passkeys/register",
        Some(access),
        &[
            ("ceremony", &ceremony),
            ("credential", &credential),
            ("name", "My laptop"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// A passkey sign-in's answer, begun and finished on `app`.
pub async fn passkey_sign_in(app: &TestApp, key: &mut SoftPasskey) -> reqwest::Response {
    let (ceremony, options) = begin(app, "/api/passkeys/sign-in/begin", None).await;
    let credential = key.sign_in(&options);
    post(
        app,
        "/api/passkeys/sign-in",
        None,
        &[("ceremony", &ceremony), ("credential", &credential)],
    )
    .await
}

#[tokio::test]
async fn a_passkey_signs_in_on_its_own_and_each_ceremony_once() {
    let app = spawn_app().await;
    app.register(&app.api(), "keyholder", PASSWORD).await;
    let first = sign_in(&app, "keyholder").await;
    let other = sign_in(&app, "keyholder").await;
    let mut key = SoftPasskey::new(ORIGIN);
    let added = add_passkey(&app, &first.access, &mut key).await;
    assert_eq!(added["name"], "My laptop");
    // A new factor: every other session ended.
    assert_eq!(
        error_of(app.me_bearer(&other.access).await).await,
        (401, "token_revoked".into())
    );

    let res = passkey_sign_in(&app, &mut key).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["username"], "keyholder");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let listed = sessions_of(&app, &access).await;
    assert!(listed
        .iter()
        .any(|s| s["auth_method"] == "passkey" && s["current"] == true));

    // A ceremony works once: the same answer again finds nothing.
    let (ceremony, options) = begin(&app, "/api/passkeys/sign-in/begin", None).await;
    let credential = key.sign_in(&options);
    let form = [
        ("ceremony", ceremony.as_str()),
        ("credential", credential.as_str()),
    ];
    assert_eq!(
        post(&app, "/api/passkeys/sign-in", None, &form)
            .await
            .status(),
        200
    );
    assert_eq!(
        error_of(post(&app, "/api/passkeys/sign-in", None, &form).await).await,
        (401, "ceremony_expired".into())
    );
    // An old assertion under a new ceremony: its challenge is not this one's.
    let (fresh, _) = begin(&app, "/api/passkeys/sign-in/begin", None).await;
    let replay = [
        ("ceremony", fresh.as_str()),
        ("credential", credential.as_str()),
    ];
    assert_eq!(
        error_of(post(&app, "/api/passkeys/sign-in", None, &replay).await).await,
        (401, "passkey_refused".into())
    );
    // A copy of the key whose counter did not move on (a clone): refused.
    key.counter -= 2;
    assert_eq!(
        error_of(passkey_sign_in(&app, &mut key).await).await,
        (401, "passkey_refused".into())
    );
    key.counter += 5;
    assert_eq!(passkey_sign_in(&app, &mut key).await.status(), 200);
    // Garbage for a credential is refused as one that did not verify, never a 500.
    let (ceremony, _) = begin(&app, "/api/passkeys/sign-in/begin", None).await;
    let res = post(
        &app,
        "/api/passkeys/sign-in",
        None,
        &[("ceremony", &ceremony), ("credential", "{not json")],
    )
    .await;
    assert_eq!(error_of(res).await, (401, "passkey_refused".into()));

    // Renamed, then removed: it signs in no more.
    let id = added["id"].as_str().unwrap().to_owned();
    let res = post(
        &app,
        "/api/passkeys/rename",
        Some(&access),
        &[("id", &id), ("name", "  Old laptop\n")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(list[0]["name"], "Old laptop");
    let res = post(&app, "/api/passkeys/remove", Some(&access), &[("id", &id)]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), serde_json::json!([]));
    assert_eq!(
        error_of(passkey_sign_in(&app, &mut key).await).await,
        (401, "passkey_refused".into())
    );
    let res = post(&app, "/api/passkeys/remove", Some(&access), &[("id", &id)]).await;
    assert_eq!(error_of(res).await, (404, "not_found".into()));
    app.stop().await;
}

/// A registration ceremony belongs to the session that began it, and a passkey belongs to one
/// account: the same key again is refused.
#[tokio::test]
async fn a_registration_is_its_sessions_and_a_key_is_one_accounts() {
    let app = spawn_app().await;
    app.register(&app.api(), "owner", PASSWORD).await;
    let owner = sign_in(&app, "owner").await;
    let mut key = SoftPasskey::new(ORIGIN);
    let (ceremony, options) =
        begin(&app, "/api/passkeys/register/begin", Some(&owner.access)).await;
    let credential = key.register(&options);
    app.register(&app.api(), "thief", PASSWORD).await;
    let thief = sign_in(&app, "thief").await;
    let form = [
        ("ceremony", ceremony.as_str()),
        ("credential", credential.as_str()),
    ];
    assert_eq!(
        error_of(post(&app, "/api/passkeys/register", Some(&thief.access), &form).await).await,
        (401, "ceremony_expired".into())
    );
    // Taken by the thief's attempt: spent, so the owner begins again.
    add_passkey(&app, &owner.access, &mut key).await;
    let (ceremony, options) =
        begin(&app, "/api/passkeys/register/begin", Some(&thief.access)).await;
    let credential = key.register(&options);
    let res = post(
        &app,
        "/api/passkeys/register",
        Some(&thief.access),
        &[("ceremony", &ceremony), ("credential", &credential)],
    )
    .await;
    assert_eq!(error_of(res).await, (409, "factor_conflict".into()));
    app.stop().await;
}

/// With two-step sign-in on, a passkey still signs in on its own: it is phishing-resistant
/// and proves the person's presence and verification.
#[tokio::test]
async fn a_passkey_skips_the_second_step() {
    use app::auth::factors::totp::{TotpSecret, STEP};
    let app = spawn_app().await;
    app.register(&app.api(), "both", PASSWORD).await;
    let first = sign_in(&app, "both").await;
    let begin_totp: Value = post(&app, "/api/totp/begin", Some(&first.access), &[])
        .await
        .json()
        .await
        .unwrap();
    let secret = TotpSecret::from_base32(begin_totp["secret"].as_str().unwrap()).unwrap();
    let code = secret.code_at(crate::helpers::now_unix() / STEP).unwrap();
    let res = post(
        &app,
        "/api/totp/confirm",
        Some(&first.access),
        &[("code", &code)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let mut key = SoftPasskey::new(ORIGIN);
    add_passkey(&app, &first.access, &mut key).await;
    assert_eq!(app.login(&app.api(), "both", PASSWORD).await.status(), 403);
    assert_eq!(passkey_sign_in(&app, &mut key).await.status(), 200);
    app.stop().await;
}

/// One ceremony's answer posted 64 times at once: one session.
#[tokio::test]
async fn one_assertion_sixty_four_times_at_once_starts_one_session() {
    let app = spawn_app().await;
    app.register(&app.api(), "racer", PASSWORD).await;
    let first = sign_in(&app, "racer").await;
    let mut key = SoftPasskey::new(ORIGIN);
    add_passkey(&app, &first.access, &mut key).await;
    let (ceremony, options) = begin(&app, "/api/passkeys/sign-in/begin", None).await;
    let credential = key.sign_in(&options);
    let posts: Vec<_> = (0..64)
        .map(|_| {
            let (client, url) = (app.api(), app.url("/api/passkeys/sign-in"));
            let form = [
                ("ceremony", ceremony.clone()),
                ("credential", credential.clone()),
            ];
            tokio::spawn(async move { client.post(url).form(&form).send().await.unwrap().status() })
        })
        .collect();
    let mut ok = 0;
    for post in posts {
        let status = post.await.unwrap().as_u16();
        assert!([200, 401, 503].contains(&status), "{status}");
        ok += usize::from(status == 200);
    }
    assert_eq!(ok, 1);
    assert_eq!(sessions_of(&app, &first.access).await.len(), 2);
    app.stop().await;
}

/// A confirmation with a passkey makes an old session fresh for dangerous changes.
#[tokio::test]
async fn a_passkey_confirms_it_is_you() {
    let app = spawn_app_with(|c| c.reauth_window = std::time::Duration::from_secs(2)).await;
    app.register(&app.api(), "confirmer", PASSWORD).await;
    let first = sign_in(&app, "confirmer").await;
    let mut key = SoftPasskey::new(ORIGIN);
    add_passkey(&app, &first.access, &mut key).await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let res = post(&app, "/api/totp/begin", Some(&first.access), &[]).await;
    assert_eq!(error_of(res).await, (403, "reauth_required".into()));
    let (ceremony, options) = begin(&app, "/api/passkeys/sign-in/begin", None).await;
    let credential = key.sign_in(&options);
    let res = post(
        &app,
        "/api/passkeys/reauth",
        Some(&first.access),
        &[("ceremony", &ceremony), ("credential", &credential)],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        post(&app, "/api/totp/begin", Some(&first.access), &[])
            .await
            .status(),
        200
    );
    // Another account's passkey confirms nothing for this one.
    app.register(&app.api(), "neighbour", PASSWORD).await;
    let neighbour = sign_in(&app, "neighbour").await;
    let (ceremony, options) = begin(&app, "/api/passkeys/sign-in/begin", None).await;
    let credential = key.sign_in(&options);
    let res = post(
        &app,
        "/api/passkeys/reauth",
        Some(&neighbour.access),
        &[("ceremony", &ceremony), ("credential", &credential)],
    )
    .await;
    assert_eq!(error_of(res).await, (401, "passkey_refused".into()));
    app.stop().await;
}

/// A site whose public address is an IP address has no passkeys (browsers refuse an IP as a
/// relying party): the endpoints say so.
#[tokio::test]
async fn without_a_domain_name_there_are_no_passkeys() {
    let app = spawn_app_with(|c| c.mail.public_url = "https://203.0.113.7".into()).await;
    let res = post(&app, "/api/passkeys/sign-in/begin", None, &[]).await;
    let (status, body) = (res.status(), res.json::<Value>().await.unwrap());
    assert_eq!(status, 404);
    assert_eq!(body["description"], "Passkeys are not set up on this site.");
    app.stop().await;
}

/// A disabled account's passkey is answered `403 account_disabled` once it verified (a
/// stranger's guess learns nothing), and starts no session.
#[tokio::test]
async fn a_disabled_accounts_passkey_is_told_so() {
    let app = spawn_app().await;
    app.register(&app.api(), "frozen", PASSWORD).await;
    let first = sign_in(&app, "frozen").await;
    let mut key = SoftPasskey::new(ORIGIN);
    add_passkey(&app, &first.access, &mut key).await;
    let db = crate::helpers::database(app.dir.path()).await;
    sqlx::query("UPDATE users SET disabled_at = 1 WHERE username = 'frozen'")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    assert_eq!(
        error_of(passkey_sign_in(&app, &mut key).await).await,
        (403, "account_disabled".into())
    );
}
