use super::uses::PENDING_USES_MAX;
use super::*;
use crate::{
    store::Pool,
    testing,
    throttle::RefreshLimits,
    tokens::{access::now_unix, refresh::RefreshSecret},
};

async fn sessions(lifetimes: Lifetimes) -> (tempfile::TempDir, Pool, Sessions) {
    let (dir, pool, _) = testing::auth().await;
    testing::user(&pool, 1, 0).await;
    testing::user(&pool, 2, 0).await;
    // Unlimited: the races below rotate one session far faster than a person would.
    let sessions = load(&pool, lifetimes)
        .await
        .with_refresh_limits(RefreshLimits::default().disabled());
    (dir, pool, sessions)
}

/// The sessions of `pool` as a start-up finds them: the ended ones loaded into the set of
/// revocations.
async fn load(pool: &Pool, lifetimes: Lifetimes) -> Sessions {
    let store = Store::new(pool.clone());
    let revocations = Revocations::load(store.clone()).await.unwrap();
    Sessions::new(
        store,
        lifetimes,
        testing::refresh_secret(),
        Arc::new(revocations),
    )
}

/// The refresh token `secret` makes for `session` as it is.
fn encode(secret: &RefreshSecret, session: &Session) -> String {
    crate::tokens::refresh::encode(
        secret,
        &session.refresh_key,
        session.id.0,
        session.generation,
    )
}

/// A session of `user` (whose credential stamp `testing::user` leaves at `testing::STAMP`).
async fn start(s: &Sessions, user: i64, now: i64) -> LiveSession {
    s.create(
        user,
        testing::STAMP,
        "Mozilla/5.0",
        None,
        now,
        None,
        crate::factors::Method::Password,
        false,
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn a_rotation_moves_the_generation_on() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let token = first.refresh_token();
    let second = s.rotate(&token, None, now + 60).await.unwrap();
    assert_eq!(second.generation(), 2);
    assert_ne!(second.refresh_token(), token);
    assert_eq!(second.token_exp, now + 60 + 900);
    let third = s
        .rotate(&second.refresh_token(), None, now + 120)
        .await
        .unwrap();
    assert_eq!(third.generation(), 3);
    assert!(!s.is_ended(&first.id()));
}

#[tokio::test]
async fn the_previous_token_within_the_interval_gets_the_current_pair() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let old = first.refresh_token();
    let rotated = s.rotate(&old, None, now + 1).await.unwrap();
    s.record_use_now(first.id(), rotated.generation(), now + 2)
        .await
        .unwrap();
    // The other tab, 5 s later, with the token the first tab just rotated.
    let again = s.rotate(&old, None, now + 6).await.unwrap();
    assert_eq!(again.generation(), rotated.generation());
    assert_eq!(again.refresh_token(), rotated.refresh_token());
    assert!(!s.is_ended(&first.id()));
    // And the current token still rotates.
    assert!(s
        .rotate(&rotated.refresh_token(), None, now + 7)
        .await
        .is_ok());
}

/// A replay of the previous token is answered from what was read: no write, so it is
/// answered while the write lock is held, the row is untouched, and its access token ends no
/// later than those already issued for the generation (which an ending remembers).
#[tokio::test]
async fn a_replayed_previous_token_writes_nothing() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let old = first.refresh_token();
    let rotated = s.rotate(&old, None, now + 1).await.unwrap();
    let before = s.find(first.id()).await.unwrap().unwrap();
    let held = s.write.clone().lock_owned().await;
    // Within the reuse interval, then as an answer that may have been lost.
    for later in [2, 5, 300] {
        let again = tokio::time::timeout(Duration::from_secs(1), s.rotate(&old, None, now + later))
            .await
            .expect("answered while the write lock is held")
            .unwrap();
        assert_eq!(again.refresh_token(), rotated.refresh_token());
        assert!(again.token_exp <= before.access_exp);
        assert!(again.token_exp > now + later);
    }
    drop(held);
    assert_eq!(s.find(first.id()).await.unwrap().unwrap(), before);
    // Ended by another instance, its revocation followed into memory before its row was
    // read here: the replay is refused from memory.
    s.remember_ended([(first.id().as_bytes().to_vec(), now + 900)]);
    assert!(matches!(
        s.rotate(&old, None, now + 302).await,
        Err(RefreshError::Ended)
    ));
}

/// Near the end of the pair's access lifetime, an answer with no write would carry a token
/// born expired: that answer moves `access_exp` on first.
#[tokio::test]
async fn a_late_replay_gets_a_token_that_lives() {
    let (_dir, pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let old = first.refresh_token();
    s.rotate(&old, None, now).await.unwrap();
    let late = now + 900 - 10;
    let again = s.rotate(&old, None, late).await.unwrap();
    assert_eq!(again.token_exp, late + 900);
    assert_eq!(stored(&pool, first.id(), "access_exp").await, late + 900);
}

/// A write waits for its turn [`WRITE_WAIT`] at most, then is `Busy` with nothing written.
#[tokio::test]
async fn a_write_that_cannot_get_its_turn_is_busy_not_queued_forever() {
    let (_dir, pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let held = s.write.clone().lock_owned().await;
    let started = std::time::Instant::now();
    let token = first.refresh_token();
    let (ended, rotated, created, signed_out) = tokio::join!(
        s.end_one(first.id(), None, EndReason::EndedOnSessionsPage, now),
        s.rotate(&token, None, now),
        s.create(
            1,
            testing::STAMP,
            "ua",
            None,
            now,
            None,
            crate::factors::Method::Password,
            false
        ),
        s.sign_out(Uuid::new_v4(), 1, now + 60, first.id(), now),
    );
    let waited = started.elapsed();
    assert!(matches!(ended, Err(WriteError::Busy)), "{ended:?}");
    assert!(matches!(rotated, Err(RefreshError::Busy)), "{rotated:?}");
    assert!(matches!(created, Err(WriteError::Busy)), "{created:?}");
    assert!(
        matches!(signed_out, Err(WriteError::Busy)),
        "{signed_out:?}"
    );
    assert!(
        waited >= WRITE_WAIT && waited < WRITE_WAIT + Duration::from_secs(2),
        "{waited:?}"
    );
    drop(held);
    // Nothing was written, and the abandoned rotation is not made by a later batch either.
    assert!(!s.is_ended(&first.id()));
    let row = s.find(first.id()).await.unwrap().unwrap();
    assert_eq!((row.generation, row.revoked_at), (1, None));
    assert_eq!(s.rotate(&token, None, now).await.unwrap().generation(), 2);
    assert_eq!(generation_in_db(&pool, first.id()).await, 2);
}

/// Refreshes of one session beyond its allowance are refused for now and end nothing; a
/// forged token naming the session spends none of it.
#[tokio::test]
async fn a_throttled_refresh_ends_nothing() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let s = s.with_refresh_limits(RefreshLimits::default());
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let forged = encode(&RefreshSecret::derive(&[3; 32]), &first.session);
    for _ in 0..100 {
        assert!(matches!(
            s.rotate(&forged, None, now).await,
            Err(RefreshError::Invalid)
        ));
    }
    let mut current = first.refresh_token();
    for _ in 0..crate::throttle::REFRESH_SESSION_BURST {
        current = s.rotate(&current, None, now).await.unwrap().refresh_token();
    }
    let err = s.rotate(&current, None, now).await.unwrap_err();
    assert!(matches!(err, RefreshError::Throttled(_)), "{err}");
    assert!(!err.session_is_over());
    assert!(!s.is_ended(&first.id()));
    tokio::time::sleep(crate::throttle::REFRESH_SESSION_PERIOD).await;
    assert!(s.rotate(&current, None, now).await.is_ok());
}

#[tokio::test]
async fn reuse_after_the_interval_ends_the_whole_session() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let old = first.refresh_token();
    let current = s.rotate(&old, None, now + 1).await.unwrap();
    // The new pair reached its holder: its access token was used.
    s.record_use_now(first.id(), current.generation(), now + 2)
        .await
        .unwrap();
    let err = s.rotate(&old, None, now + 12).await.unwrap_err();
    assert!(matches!(err, RefreshError::Reused), "{err}");
    assert!(s.is_ended(&first.id()));
    // The current token is refused too: the session is over for everyone holding it.
    let err = s
        .rotate(&current.refresh_token(), None, now + 13)
        .await
        .unwrap_err();
    assert!(matches!(err, RefreshError::Ended), "{err}");
    let row = s.find(first.id()).await.unwrap().unwrap();
    assert_eq!(row.revoked_reason.as_deref(), Some("reuse"));
}

/// The answer of a rotation never reached the browser (closed tab, lost network): it still
/// holds the previous token, and presenting it later is not theft.
#[tokio::test]
async fn a_lost_rotation_answer_is_answered_again_not_taken_for_reuse() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let old = first.refresh_token();
    let lost = s.rotate(&old, None, now + 1).await.unwrap();
    let later = s.rotate(&old, None, now + 600).await.unwrap();
    assert_eq!(later.refresh_token(), lost.refresh_token());
    assert!(!s.is_ended(&first.id()));
    // Once the current pair is in use, the previous token is reuse again.
    s.record_use_now(first.id(), lost.generation(), now + 601)
        .await
        .unwrap();
    assert!(matches!(
        s.rotate(&old, None, now + 700).await,
        Err(RefreshError::Reused)
    ));
}

/// Not forever, though: past an access lifetime, the previous token of a pair never seen
/// in use is reuse (or a thief holding it could follow the session indefinitely).
#[tokio::test]
async fn an_undelivered_pair_is_answered_again_for_an_access_lifetime_only() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let old = first.refresh_token();
    s.rotate(&old, None, now + 1).await.unwrap();
    assert!(matches!(
        s.rotate(&old, None, now + 1 + 901).await,
        Err(RefreshError::Reused)
    ));
}

#[tokio::test]
async fn an_older_generation_is_reuse_even_within_the_interval() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let g1 = first.refresh_token();
    let g2 = s.rotate(&g1, None, now).await.unwrap().refresh_token();
    s.rotate(&g2, None, now).await.unwrap();
    assert!(matches!(
        s.rotate(&g1, None, now).await,
        Err(RefreshError::Reused)
    ));
}

#[tokio::test]
async fn a_clock_stepped_back_is_no_grace() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let old = first.refresh_token();
    let current = s.rotate(&old, None, now + 100).await.unwrap();
    s.record_use_now(first.id(), current.generation(), now + 100)
        .await
        .unwrap();
    assert!(matches!(
        s.rotate(&old, None, now + 50).await,
        Err(RefreshError::Reused)
    ));
}

#[tokio::test]
async fn forged_and_garbled_tokens_change_nothing() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let genuine = first.refresh_token();
    // The right session and an old generation, but a MAC made with another session key;
    // then the session's own key and generation (a copy of the database) under another
    // server secret.
    let forged = encode(
        &s.secret,
        &Session {
            generation: 0,
            refresh_key: vec![7; 32],
            ..first.session.clone()
        },
    );
    let copied = encode(&RefreshSecret::derive(&[9; 32]), &first.session);
    let mut flipped = genuine.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    // The shape of tokens before the server's secret went into them: still refused.
    let before = genuine.replacen("rt2.", "rt1.", 1);
    for bad in [
        forged.as_str(),
        copied.as_str(),
        before.as_str(),
        flipped.as_str(),
        "",
        "rt2.",
        "rt2.????",
        "not a token",
        &"rt2.".repeat(1000),
    ] {
        assert!(
            matches!(s.rotate(bad, None, now).await, Err(RefreshError::Invalid)),
            "{bad}"
        );
        assert_eq!(
            s.end_by_refresh_token(bad, EndReason::Logout, now)
                .await
                .unwrap(),
            EndedByToken::NotGenuine
        );
    }
    assert!(!s.is_ended(&first.id()));
    assert!(s.rotate(&genuine, None, now).await.is_ok());
}

#[tokio::test]
async fn idle_and_absolute_ends() {
    let lifetimes = Lifetimes {
        session: Duration::from_secs(1000),
        idle: Duration::from_secs(100),
        ..Lifetimes::default()
    };
    let (_dir, _pool, s) = sessions(lifetimes).await;
    let now = now_unix();
    let idle = start(&s, 1, now).await;
    assert!(matches!(
        s.rotate(&idle.refresh_token(), None, now + 100).await,
        Err(RefreshError::Expired)
    ));
    // Used every 90 s it lives on, but not past its absolute end; access tokens never
    // outlive the session.
    let mut token = start(&s, 1, now).await.refresh_token();
    let mut at = now;
    loop {
        at += 90;
        match s.rotate(&token, None, at).await {
            Ok(next) => {
                assert!(next.token_exp <= now + 1000);
                token = next.refresh_token();
            }
            Err(RefreshError::Expired) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(at >= now + 1000);
}

#[tokio::test]
async fn racing_rotations_of_one_token_all_stay_signed_in() {
    let (_dir, _pool, s) = sessions(Lifetimes::default()).await;
    let s = std::sync::Arc::new(s);
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let token = first.refresh_token();
    let racers: Vec<_> = (0..64)
        .map(|_| {
            let (s, token) = (s.clone(), token.clone());
            tokio::spawn(async move { s.rotate(&token, None, now).await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for racer in racers {
        let current = racer.await.unwrap().unwrap();
        assert_eq!(current.generation(), 2);
        tokens.insert(current.refresh_token());
    }
    assert_eq!(tokens.len(), 1, "every racer got the same current token");
    assert!(!s.is_ended(&first.id()));
}

/// One column of a session's row, as stored.
async fn stored(pool: &Pool, id: Uuid, column: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT {column} FROM sessions WHERE id = $1"))
        .bind(id.as_bytes().as_slice())
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn generation_in_db(pool: &Pool, id: Uuid) -> i64 {
    stored(pool, id, "generation").await
}

/// 64 sessions rotating at once are written together (a few transactions), and each gets
/// its own next generation, on disk when it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_rotating_at_once_each_move_on_once() {
    let (_dir, pool, s) = sessions(Lifetimes::default()).await;
    let s = std::sync::Arc::new(s);
    let now = now_unix();
    let mut firsts = Vec::new();
    for i in 0..64 {
        firsts.push(start(&s, 1 + i % 2, now).await);
    }
    let racers: Vec<_> = firsts
        .iter()
        .map(|first| {
            let (s, token) = (s.clone(), first.refresh_token());
            tokio::spawn(async move { s.rotate(&token, None, now + 1).await })
        })
        .collect();
    for (first, racer) in firsts.iter().zip(racers) {
        let current = racer.await.unwrap().unwrap();
        assert_eq!(current.id(), first.id());
        assert_eq!(current.generation(), 2);
        assert_eq!(generation_in_db(&pool, first.id()).await, 2);
        let next = s
            .rotate(&current.refresh_token(), None, now + 2)
            .await
            .unwrap();
        assert_eq!(next.generation(), 3);
    }
    assert!(s.rotations.lock().is_empty());
}

/// Rotations of `tokens` started while the write lock is held, let go once all of them
/// wait in the queue: they are written as one batch.
async fn rotate_in_one_batch(
    s: &std::sync::Arc<Sessions>,
    tokens: Vec<String>,
    now: i64,
) -> Vec<tokio::task::JoinHandle<Result<LiveSession, RefreshError>>> {
    let held = s.write.clone().lock_owned().await;
    let count = tokens.len();
    let racers = tokens
        .into_iter()
        .map(|token| {
            let s = s.clone();
            tokio::spawn(async move { s.rotate(&token, None, now).await })
        })
        .collect();
    while s.rotations.lock().len() < count {
        tokio::task::yield_now().await;
    }
    drop(held);
    racers
}

/// A batch whose transaction fails is written again one rotation at a time: the one that
/// fails gets the error, the others their new generation.
#[tokio::test]
async fn one_failing_rotation_fails_only_itself() {
    let (_dir, pool, s) = sessions(Lifetimes::default()).await;
    let s = std::sync::Arc::new(s);
    let now = now_unix();
    let mut firsts = Vec::new();
    for user in [1, 2, 1] {
        firsts.push(start(&s, user, now).await);
    }
    let failing = firsts[1].id();
    sqlx::query(&format!(
        "CREATE TRIGGER refuse_one BEFORE UPDATE ON sessions WHEN OLD.id = X'{}' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        failing.simple()
    ))
    .execute(&pool)
    .await
    .unwrap();
    let tokens = firsts.iter().map(LiveSession::refresh_token).collect();
    let racers = rotate_in_one_batch(&s, tokens, now + 1).await;
    for (first, racer) in firsts.iter().zip(racers) {
        match racer.await.unwrap() {
            Err(RefreshError::Db(e)) if first.id() == failing => {
                assert!(e.to_string().contains("refused by the test"), "{e}");
            }
            Ok(current) if first.id() != failing => assert_eq!(current.generation(), 2),
            other => panic!("{other:?}"),
        }
        let expected = if first.id() == failing { 1 } else { 2 };
        assert_eq!(generation_in_db(&pool, first.id()).await, expected);
    }
}

/// Two tabs rotating one token in the same batch: the first moves the generation on, the
/// second finds it moved (inside the same transaction) and gets the current pair.
#[tokio::test]
async fn one_token_twice_in_a_batch_rotates_once() {
    let (_dir, pool, s) = sessions(Lifetimes::default()).await;
    let s = std::sync::Arc::new(s);
    let now = now_unix();
    let first = start(&s, 1, now).await;
    let tabs = rotate_in_one_batch(&s, vec![first.refresh_token(); 2], now + 1).await;
    let mut tokens = std::collections::HashSet::new();
    for tab in tabs {
        let current = tab.await.unwrap().unwrap();
        assert_eq!(current.generation(), 2);
        tokens.insert(current.refresh_token());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(generation_in_db(&pool, first.id()).await, 2);
    assert!(!s.is_ended(&first.id()));
}

/// A rotation whose request is dropped while it waits for the write lock is never written:
/// nobody would get its new token.
#[tokio::test]
async fn an_abandoned_rotation_is_not_written_later() {
    let (_dir, pool, s) = sessions(Lifetimes::default()).await;
    let s = std::sync::Arc::new(s);
    let now = now_unix();
    let (abandoned, other) = (start(&s, 1, now).await, start(&s, 2, now).await);
    let held = s.write.clone().lock_owned().await;
    let waiting = {
        let (s, token) = (s.clone(), abandoned.refresh_token());
        tokio::spawn(async move { s.rotate(&token, None, now + 1).await })
    };
    while s.rotations.lock().is_empty() {
        tokio::task::yield_now().await;
    }
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    drop(held);
    // The next rotation takes the abandoned one's place in the queue, and skips it.
    let moved = s
        .rotate(&other.refresh_token(), None, now + 1)
        .await
        .unwrap();
    assert_eq!(moved.generation(), 2);
    assert_eq!(generation_in_db(&pool, abandoned.id()).await, 1);
    let current = s
        .rotate(&abandoned.refresh_token(), None, now + 2)
        .await
        .unwrap();
    assert_eq!(
        current.generation(),
        2,
        "the held token is still the current one"
    );
}

#[tokio::test]
async fn ending_is_remembered_across_a_restart_until_access_tokens_expire() {
    let (_dir, pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let mine = start(&s, 1, now).await;
    let other = start(&s, 1, now).await;
    let theirs = start(&s, 2, now).await;
    // Someone else's session is not found by id for user 1.
    assert!(!s
        .end_one(theirs.id(), Some(1), EndReason::EndedOnSessionsPage, now)
        .await
        .unwrap());
    assert!(!s.is_ended(&theirs.id()));
    assert_eq!(
        s.end_all(1, Some(mine.id()), EndReason::SignedOutElsewhere, None, now)
            .await
            .unwrap(),
        1
    );
    assert!(s.is_ended(&other.id()) && !s.is_ended(&mine.id()));
    let listed: Vec<_> = s
        .list(1, now)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id.0)
        .collect();
    assert_eq!(listed, [mine.id()]);

    let reloaded = load(&pool, Lifetimes::default()).await;
    assert!(reloaded.is_ended(&other.id()));
    assert!(!reloaded.is_ended(&mine.id()));
    // Purged once its last access token has expired.
    assert_eq!(reloaded.purge(other.token_exp).await.unwrap(), 0);
    assert!(reloaded.is_ended(&other.id()));
    assert_eq!(
        reloaded
            .purge(other.token_exp + LEEWAY_SECS as i64 + 1)
            .await
            .unwrap(),
        1
    );
    assert!(!reloaded.is_ended(&other.id()));
    assert!(reloaded.find(other.id()).await.unwrap().is_none());
    assert!(reloaded.find(mine.id()).await.unwrap().is_some());
}

async fn last_used(pool: &Pool, id: Uuid) -> (i64, i64) {
    (
        stored(pool, id, "last_used_at").await,
        stored(pool, id, "confirmed_generation").await,
    )
}

/// A crowd of uses from many tasks at once: the background writer alone (no flush asked
/// for) writes every one, confirms the generation each session reached, and stops; within
/// the minute, a session's next use queues nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_uses_is_written_by_the_background_writer() {
    let (_dir, pool, s) = sessions(Lifetimes::default()).await;
    let s = std::sync::Arc::new(s);
    let now = now_unix();
    let mut expected = Vec::new();
    for i in 0..600 {
        let current = start(&s, 1 + i % 2, now - 100).await;
        // Half of them rotated once: their generation 2 is confirmed by its first use.
        let generation = if i % 2 == 0 {
            s.rotate(&current.refresh_token(), None, now - 50)
                .await
                .unwrap()
                .generation()
        } else {
            1
        };
        expected.push((current.id(), generation));
    }
    let crowd: Vec<_> = (0..64)
        .map(|t| {
            let (s, expected) = (s.clone(), expected.clone());
            tokio::spawn(async move {
                for (i, (id, generation)) in expected.iter().enumerate() {
                    // Some tasks still use the previous generation's token.
                    let used = if (i + t) % 3 == 0 { 1 } else { *generation };
                    s.record_use(*id, used, now);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in crowd {
        task.await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for (id, generation) in &expected {
        loop {
            let found = last_used(&pool, *id).await;
            if found == (now, *generation) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{id}: {found:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while s.writing() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never stopped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.uses.is_empty());
    // Within the minute, nothing new is queued; a minute on, the next use is written.
    let (first, _) = expected[0];
    s.record_use(first, 1, now + 30);
    assert!(s.uses.is_empty());
    s.record_use(first, 1, now + RECORD_USE_EVERY_SECS);
    s.flush_recorded_uses().await.unwrap();
    assert_eq!(last_used(&pool, first).await.0, now + RECORD_USE_EVERY_SECS);
}

/// The queue of uses is bounded: a use that finds it full is dropped, not remembered as
/// written, so the next use of that session queues it again. The first use of a new
/// generation (which reuse detection reads) still finds room, up to twice the bound.
#[tokio::test]
async fn a_full_queue_of_uses_drops_the_use_and_tries_again_next_time() {
    let (_dir, pool, s) = sessions(Lifetimes::default()).await;
    let now = now_unix();
    let mine = start(&s, 1, now - 100).await;
    let rotated = start(&s, 1, now - 100).await;
    let rotated = s
        .rotate(&rotated.refresh_token(), None, now - 50)
        .await
        .unwrap();
    // The single-threaded test runtime runs no writer task until this test waits.
    for _ in 0..PENDING_USES_MAX {
        s.record_use(Uuid::new_v4(), 1, now);
    }
    s.record_use(mine.id(), 1, now);
    // Still what its creation wrote: not taken for written.
    assert_eq!(s.last_recorded.get(&mine.id()), Some((now - 100, 1)));
    s.record_use(rotated.id(), 2, now);
    assert_eq!(s.last_recorded.get(&rotated.id()), Some((now, 2)));
    s.flush_recorded_uses().await.unwrap();
    assert_eq!(last_used(&pool, mine.id()).await.0, now - 100);
    assert_eq!(last_used(&pool, rotated.id()).await, (now, 2));
    s.record_use(mine.id(), 1, now + 1);
    s.flush_recorded_uses().await.unwrap();
    assert_eq!(last_used(&pool, mine.id()).await.0, now + 1);
}

/// SQLite: every ending of a session is in the table of endings a running server follows
/// (another process's too: the operator's), ended or deleted with its account; an id is never
/// given again once the rows are purged, so a follower's cursor skips none.
#[tokio::test]
async fn endings_are_followed_in_order_and_never_renumbered() {
    let (_dir, pool, s) = sessions(Lifetimes::default()).await;
    let store = Store::new(pool.clone());
    let now = now_unix();
    let cursor = store.session_endings_cursor().await.unwrap();
    let first = start(&s, 1, now).await;
    assert!(s
        .end_one(first.id(), None, EndReason::Logout, now)
        .await
        .unwrap());
    let after = store.session_endings_after(cursor, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    let (id, session, _) = after[0];
    assert_eq!(session, first.id());
    // Purged (its tokens long expired), then another ending: a higher id all the same.
    assert_eq!(store.purge_session_endings(i64::MAX).await.unwrap(), 1);
    let second = start(&s, 2, now).await;
    // A live session deleted with its account is an ending too.
    sqlx::query("DELETE FROM users WHERE id = 2")
        .execute(&pool)
        .await
        .unwrap();
    let after = store.session_endings_after(id, 10).await.unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].0 > id);
    assert_eq!(after[0].1, second.id());
}
