//! Second factors through the core: enrolment, the sign-in's two steps, single use, recovery
//! codes, fresh authentication, and changes racing each other.

use std::sync::Arc;

use super::*;
use crate::{
    authn::{self, Step},
    testing, users,
};

const PASSWORD: &str = "correct horse battery";

/// A core with "alice" (id 1) and a session of hers.
async fn core() -> (tempfile::TempDir, crate::store::Pool, Arc<Auth>, uuid::Uuid) {
    let (dir, pool, auth) = testing::auth().await;
    let hash = auth.passwords.hash(PASSWORD.into()).await.unwrap();
    assert_eq!(users::create(&pool, "alice", &hash).await.unwrap().id, 1);
    let auth = Arc::new(auth);
    let issued = auth
        .start_session(&testing::proof(&auth, 1).await, "test", None)
        .await
        .unwrap()
        .unwrap();
    (dir, pool, auth, issued.session_id)
}

/// TOTP turned on for alice through `session`: the secret and the recovery codes.
async fn enrolled(auth: &Arc<Auth>, session: uuid::Uuid) -> (totp::TotpSecret, Vec<String>) {
    let enrolment = auth.begin_totp(1, "alice").await.unwrap();
    assert!(enrolment.url.contains(&enrolment.secret));
    assert!(enrolment.qr_svg.contains("<svg"));
    let secret = totp::TotpSecret::from_base32(&enrolment.secret).unwrap();
    // A code of the step before: the step of now stays free for the tests' sign-ins.
    let code = secret.code_at(now_unix() / totp::STEP - 1).unwrap();
    let codes = auth
        .confirm_totp(1, session, &code, testing::ORIGIN)
        .await
        .unwrap();
    (secret, codes)
}

fn now_code(secret: &totp::TotpSecret) -> String {
    secret.code_at(now_unix() / totp::STEP).unwrap()
}

async fn password_step(auth: &Arc<Auth>) -> Step {
    authn::sign_in(auth, "alice", None, Vec::new(), PASSWORD.into(), "test")
        .await
        .unwrap()
}

/// The token of a sign-in held at its second step.
async fn held(auth: &Arc<Auth>) -> String {
    match password_step(auth).await {
        Step::AnotherFactorNeeded(pending) => auth.hold_sign_in(&pending).await.unwrap(),
        Step::Done(_) => panic!("no second step was asked for"),
    }
}

async fn method_of(pool: &crate::store::Pool, session: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT auth_method FROM sessions WHERE id = ?")
        .bind(session.as_bytes().as_slice())
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn turning_totp_on_asks_every_password_sign_in_for_a_code_accepted_once() {
    let (_dir, pool, auth, session) = core().await;
    let other = auth
        .start_session(&testing::proof(&auth, 1).await, "other", None)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(password_step(&auth).await, Step::Done(_)));
    let (secret, codes) = enrolled(&auth, session).await;
    assert_eq!(codes.len(), recovery::COUNT);
    // Every other session ended; this one goes on.
    assert!(auth.sessions.is_ended(&other.session_id));
    assert!(!auth.sessions.is_ended(&session));
    let status = auth.factor_status(1).await.unwrap();
    assert!(status.totp_since.is_some());
    assert_eq!(status.recovery_left, 10);
    // The secret is sealed at rest: the database alone does not hold it.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM totp_secrets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!sealed
        .windows(secret.as_bytes().len())
        .any(|w| w == secret.as_bytes()));
    // Nor the recovery codes.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT code_hash FROM recovery_codes")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 10);
    assert!(stored.iter().all(|h| codes
        .iter()
        .all(|c| !h.windows(5).any(|w| w == &c.as_bytes()[..5]))));

    // A password sign-in now stops half-way.
    let token = held(&auth).await;
    assert!(matches!(
        auth.finish_sign_in(&token, "000000", testing::ORIGIN).await,
        Err(FinishError::Code(CodeError::Wrong))
    ));
    let code = now_code(&secret);
    let proof = auth
        .finish_sign_in(&token, &code, testing::ORIGIN)
        .await
        .unwrap();
    assert_eq!(proof.method(), Method::PasswordTotp);
    let issued = auth
        .start_session(&proof, "phone", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(method_of(&pool, issued.session_id).await, "password_totp");
    // The held sign-in is spent; the code too, for any other sign-in.
    assert!(matches!(
        auth.finish_sign_in(&token, &code, testing::ORIGIN).await,
        Err(FinishError::Over)
    ));
    let again = held(&auth).await;
    assert!(matches!(
        auth.finish_sign_in(&again, &code, testing::ORIGIN).await,
        Err(FinishError::Code(CodeError::Wrong))
    ));
    // A recovery code, once.
    let proof = auth
        .finish_sign_in(&again, &codes[3], testing::ORIGIN)
        .await
        .unwrap();
    assert_eq!(proof.method(), Method::RecoveryCode);
    let third = held(&auth).await;
    assert!(matches!(
        auth.finish_sign_in(&third, &codes[3], testing::ORIGIN)
            .await,
        Err(FinishError::Code(CodeError::Wrong))
    ));
    assert_eq!(auth.factor_status(1).await.unwrap().recovery_left, 9);
    // Typed differently, another code still works.
    let typed = codes[4].to_uppercase().replace('-', " ");
    assert!(auth
        .finish_sign_in(&third, &typed, testing::ORIGIN)
        .await
        .is_ok());
    // Forged and malformed tokens are over.
    for bad in ["", "ps1.", "ps1.AAAA", "xx1.abc", &format!("{token}x")] {
        assert!(matches!(
            auth.finish_sign_in(bad, &codes[5], testing::ORIGIN).await,
            Err(FinishError::Over)
        ));
    }
}

/// Wrong codes are counted on the account: after the burst, even the right code waits.
#[tokio::test]
async fn wrong_codes_are_throttled_per_account() {
    let (_dir, _pool, auth, session) = core().await;
    let (secret, _codes) = enrolled(&auth, session).await;
    let token = held(&auth).await;
    for _ in 0..crate::throttle::CODE_BURST {
        assert!(matches!(
            auth.finish_sign_in(&token, "123456", testing::ORIGIN).await,
            Err(FinishError::Code(CodeError::Wrong))
        ));
    }
    assert!(matches!(
        auth.finish_sign_in(&token, &now_code(&secret), testing::ORIGIN)
            .await,
        Err(FinishError::Code(CodeError::Throttled(_)))
    ));
}

/// 64 requests with one right code for one held sign-in: one proof. And 64 held sign-ins with
/// the same code: one passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_code_sixty_four_times_at_once_passes_once() {
    let (_dir, _pool, auth, session) = core().await;
    let (secret, codes) = enrolled(&auth, session).await;
    let token = held(&auth).await;
    let code = now_code(&secret);
    let tries: Vec<_> = (0..64)
        .map(|_| {
            let (auth, token, code) = (auth.clone(), token.clone(), code.clone());
            tokio::spawn(async move { auth.finish_sign_in(&token, &code, testing::ORIGIN).await })
        })
        .collect();
    let mut passed = 0;
    for t in tries {
        if t.await.unwrap().is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, 1);
    // One recovery code through many held sign-ins at once (the throttle forgives each pass).
    let mut tokens = Vec::new();
    for _ in 0..8 {
        tokens.push(held(&auth).await);
    }
    let tries: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (auth, code) = (auth.clone(), codes[0].clone());
            tokio::spawn(async move { auth.finish_sign_in(&token, &code, testing::ORIGIN).await })
        })
        .collect();
    let mut passed = 0;
    for t in tries {
        if t.await.unwrap().is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, 1);
}

/// A change of credentials between the steps (TOTP turned off and on again, the password
/// changed) ends the held sign-in.
#[tokio::test]
async fn a_credential_change_between_the_steps_ends_the_held_sign_in() {
    let (_dir, _pool, auth, session) = core().await;
    let (secret, _codes) = enrolled(&auth, session).await;
    let token = held(&auth).await;
    let hash = auth.passwords.hash("a new password!".into()).await.unwrap();
    auth.change_password(1, session, &hash, now_unix(), testing::ORIGIN)
        .await
        .unwrap()
        .unwrap();
    // Its code is right, but the stamp it read is not the account's any more.
    match auth
        .finish_sign_in(&token, &now_code(&secret), testing::ORIGIN)
        .await
    {
        Err(FinishError::Over) => {}
        other => panic!("{other:?}"),
    }
    // Removing the factor drops every held sign-in.
    let token = match authn::sign_in(
        &auth,
        "alice",
        None,
        Vec::new(),
        "a new password!".into(),
        "test",
    )
    .await
    .unwrap()
    {
        Step::AnotherFactorNeeded(p) => auth.hold_sign_in(&p).await.unwrap(),
        Step::Done(_) => panic!(),
    };
    auth.remove_totp(1, Some(session), testing::ORIGIN)
        .await
        .unwrap();
    assert!(auth.held_sign_in(&token).await.unwrap().is_none());
    assert!(matches!(
        auth.remove_totp(1, Some(session), testing::ORIGIN).await,
        Err(ChangeError::Conflict)
    ));
    // Off: the password is the whole sign-in again, and no codes are left.
    assert!(matches!(
        authn::sign_in(
            &auth,
            "alice",
            None,
            Vec::new(),
            "a new password!".into(),
            "test"
        )
        .await
        .unwrap(),
        Step::Done(_)
    ));
    assert_eq!(auth.factor_status(1).await.unwrap().recovery_left, 0);
}

#[tokio::test]
async fn enrolment_waits_for_its_own_first_code() {
    let (_dir, _pool, auth, session) = core().await;
    // Nothing waits: nothing to confirm.
    assert!(matches!(
        auth.confirm_totp(1, session, "123456", testing::ORIGIN)
            .await,
        Err(ChangeError::Conflict)
    ));
    let first = auth.begin_totp(1, "alice").await.unwrap();
    let second = auth.begin_totp(1, "alice").await.unwrap();
    assert_ne!(first.secret, second.secret);
    // The first tab's secret was replaced: its code does not turn anything on.
    let old = totp::TotpSecret::from_base32(&first.secret).unwrap();
    assert!(matches!(
        auth.confirm_totp(1, session, &now_code(&old), testing::ORIGIN)
            .await,
        Err(ChangeError::Code(CodeError::Wrong))
    ));
    let new = totp::TotpSecret::from_base32(&second.secret).unwrap();
    auth.confirm_totp(1, session, &now_code(&new), testing::ORIGIN)
        .await
        .unwrap();
    // On: no second enrolment, no second confirmation.
    assert!(matches!(
        auth.begin_totp(1, "alice").await,
        Err(ChangeError::Conflict)
    ));
    assert!(matches!(
        auth.confirm_totp(1, session, &now_code(&new), testing::ORIGIN)
            .await,
        Err(ChangeError::Conflict)
    ));
    // New recovery codes replace the old.
    let codes = auth
        .renew_recovery_codes(1, session, testing::ORIGIN)
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);
    let token = held(&auth).await;
    assert!(auth
        .finish_sign_in(&token, &codes[0], testing::ORIGIN)
        .await
        .is_ok());
}

/// Fresh authentication: a session is fresh from its sign-in for the window, a
/// reauthentication makes it fresh again, a refresh never does.
#[tokio::test]
async fn a_session_is_fresh_after_a_sign_in_or_a_reauthentication_only() {
    let (_dir, pool, auth, session) = core().await;
    let window = crate::sessions::secs(auth.factors.reauth_window);
    let until = auth.fresh_until(session).await.unwrap().unwrap();
    assert!(until >= now_unix() + window - 5);
    // An hour old.
    sqlx::query("UPDATE sessions SET authenticated_at = authenticated_at - 3600")
        .execute(&pool)
        .await
        .unwrap();
    assert!(auth.fresh_until(session).await.unwrap().unwrap() < now_unix());
    let refresh = {
        let s = auth.sessions.find(session).await.unwrap().unwrap();
        crate::tokens::refresh::encode(
            &testing::refresh_secret(),
            &s.refresh_key,
            session,
            s.generation,
        )
    };
    auth.refresh(&refresh, None).await.unwrap();
    assert!(auth.fresh_until(session).await.unwrap().unwrap() < now_unix());
    // The wrong password changes nothing; the right one makes it fresh.
    assert!(matches!(
        auth.reauthenticate(1, session, Some("wrong password!".into()), None)
            .await,
        Err(ReauthError::Password(_))
    ));
    auth.reauthenticate(1, session, Some(PASSWORD.into()), None)
        .await
        .unwrap();
    assert!(auth.fresh_until(session).await.unwrap().unwrap() >= now_unix() + window - 5);
    // With TOTP on, the password alone is not enough.
    let (secret, _codes) = enrolled(&auth, session).await;
    assert!(matches!(
        auth.reauthenticate(1, session, Some(PASSWORD.into()), None)
            .await,
        Err(ReauthError::CodeNeeded)
    ));
    auth.reauthenticate(1, session, Some(PASSWORD.into()), Some(&now_code(&secret)))
        .await
        .unwrap();
    assert_eq!(method_of(&pool, session).await, "password");
}

/// The operator's removal (no session kept) ends every session of the account.
#[tokio::test]
async fn the_operators_removal_ends_every_session() {
    let (_dir, _pool, auth, session) = core().await;
    enrolled(&auth, session).await;
    auth.remove_totp(1, None, testing::ORIGIN).await.unwrap();
    assert!(auth.sessions.is_ended(&session));
    assert_eq!(auth.factor_status(1).await.unwrap().totp_since, None);
}

/// A change through a session that has ended (another instance, the operator, or a change of
/// its own) changes nothing, whatever the token in hand still says.
#[tokio::test]
async fn an_ended_session_changes_no_factor() {
    let (_dir, _pool, auth, session) = core().await;
    let (_secret, _codes) = enrolled(&auth, session).await;
    auth.sessions
        .end_one(
            session,
            Some(1),
            crate::sessions::EndReason::EndedOnSessionsPage,
            now_unix(),
        )
        .await
        .unwrap();
    assert_eq!(auth.fresh_until(session).await.unwrap(), None);
    assert!(matches!(
        auth.remove_totp(1, Some(session), testing::ORIGIN).await,
        Err(ChangeError::SessionOver)
    ));
    assert!(matches!(
        auth.renew_recovery_codes(1, session, testing::ORIGIN).await,
        Err(ChangeError::SessionOver)
    ));
    assert!(auth.factor_status(1).await.unwrap().totp_since.is_some());
}

/// A recovery code posted to a held sign-in that is over (another tab finished it) is not
/// spent: the code and the held sign-in go together or not at all.
#[tokio::test]
async fn a_code_is_not_spent_on_a_sign_in_that_is_over() {
    let (_dir, _pool, auth, session) = core().await;
    let (secret, codes) = enrolled(&auth, session).await;
    let token = held(&auth).await;
    auth.finish_sign_in(&token, &now_code(&secret), testing::ORIGIN)
        .await
        .unwrap();
    assert!(matches!(
        auth.finish_sign_in(&token, &codes[0], testing::ORIGIN)
            .await,
        Err(FinishError::Over)
    ));
    assert_eq!(auth.factor_status(1).await.unwrap().recovery_left, 10);
    let fresh = held(&auth).await;
    assert!(auth
        .finish_sign_in(&fresh, &codes[0], testing::ORIGIN)
        .await
        .is_ok());
}

/// A reset of an account with two-step sign-in needs a code accepted for that very account.
#[tokio::test]
async fn a_reset_needs_a_code_accepted_for_its_account() {
    use crate::{email::ResetOutcome, mail::links::Purpose};
    let (_dir, pool, auth, session) = core().await;
    let (secret, codes) = enrolled(&auth, session).await;
    sqlx::query("UPDATE users SET email = 'alice@example.com', email_verified_at = 1")
        .execute(&pool)
        .await
        .unwrap();
    // A reset link as the mail would carry it: made directly in the store.
    let (token, hash) = crate::mail::links::new_token();
    let stamp: i64 = sqlx::query_scalar("SELECT credential_stamp FROM users WHERE id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO email_links (user_id, purpose, token_hash, address, stamp, created_at, expires_at) \
         VALUES (1, 'reset', ?, 'alice@example.com', ?, ?, ?)",
    )
    .bind(hash.as_slice())
    .bind(stamp)
    .bind(now_unix())
    .bind(now_unix() + 600)
    .execute(&pool)
    .await
    .unwrap();
    assert!(matches!(
        auth.link_state(&token, Purpose::Reset).await.unwrap(),
        crate::mail::links::LinkState::Live(_)
    ));
    let new_hash = auth
        .passwords
        .hash("the new password".into())
        .await
        .unwrap();
    assert!(matches!(
        auth.reset_password(&token, &new_hash, None, testing::ORIGIN)
            .await
            .unwrap(),
        ResetOutcome::CodeNeeded
    ));
    assert!(matches!(
        auth.accept_code(1, "000000").await,
        Err(CodeError::Wrong)
    ));
    let accepted = auth.accept_code(1, &codes[9]).await.unwrap();
    assert_eq!(accepted.method(), Method::RecoveryCode);
    match auth
        .reset_password(&token, &new_hash, Some(accepted), testing::ORIGIN)
        .await
        .unwrap()
    {
        ResetOutcome::Done(proof) => assert_eq!(proof.method(), Method::ResetLink),
        other => panic!("{other:?}"),
    }
    let _ = secret;
}

/// Every change of the factors is one event of the account, written with the change; a wrong
/// code at the second step is one too; the operator's removal ends the sessions as the
/// operator's.
#[tokio::test]
async fn factor_changes_and_wrong_codes_are_one_event_each() {
    use crate::audit::Kind;
    let (_dir, _pool, auth, session) = core().await;
    let store = auth.health.store().clone();
    let count = |kind| {
        let store = store.clone();
        async move { store.count_events(1, kind).await.unwrap() }
    };
    let (_secret, _codes) = enrolled(&auth, session).await;
    assert_eq!(count(Kind::TotpAdded).await, 1);
    let token = held(&auth).await;
    assert!(matches!(
        auth.finish_sign_in(&token, "000000", testing::ORIGIN).await,
        Err(FinishError::Code(CodeError::Wrong))
    ));
    assert_eq!(count(Kind::SignInFailed).await, 1);
    auth.renew_recovery_codes(1, session, testing::ORIGIN)
        .await
        .unwrap();
    assert_eq!(count(Kind::RecoveryCodesRenewed).await, 1);
    let origin = crate::email::Origin {
        user_agent: crate::audit::OPERATOR_AGENT,
        address: None,
    };
    auth.remove_totp(1, None, origin).await.unwrap();
    assert_eq!(count(Kind::FactorsRemovedByOperator).await, 1);
    assert_eq!(count(Kind::TotpRemoved).await, 0);
    let events = store.events_of(1, None, 100).await.unwrap();
    let ended: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "session_ended")
        .map(|e| e.detail.as_str())
        .collect();
    // Alice's one session, ended by the operator's removal.
    assert_eq!(ended, ["operator"]);
    let removal = events
        .iter()
        .find(|e| e.kind == "factors_removed_by_operator")
        .unwrap();
    assert_eq!(removal.device, "The operator");
    assert_eq!(removal.session_id, None);
    let added = events.iter().find(|e| e.kind == "totp_added").unwrap();
    assert_eq!(added.session_id, Some(session.to_string()));
    // No event carries a code, a secret or a token.
    for e in &events {
        assert!(!e.detail.chars().any(|c| c.is_ascii_digit()), "{e:?}");
    }
}
