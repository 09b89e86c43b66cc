use super::*;
use crate::store::{connect, Pool, Store};

async fn pool() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let pool = connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'alice', 'x', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    (dir, pool)
}

#[tokio::test]
async fn revoke_is_seen_and_survives_a_reload() {
    let (_dir, pool) = pool().await;
    let list = Revocations::load(Store::new(pool.clone())).await.unwrap();
    let jti = Uuid::new_v4();
    assert!(!list.is_token_revoked(&jti));
    list.revoke(jti, 1, now_unix() + 600).await.unwrap();
    list.revoke(jti, 1, now_unix() + 600).await.unwrap(); // idempotent
    assert!(list.is_token_revoked(&jti));

    let reloaded = Revocations::load(Store::new(pool)).await.unwrap();
    assert!(reloaded.is_token_revoked(&jti));
    assert_eq!(reloaded.len(), 1);
}

#[tokio::test]
async fn purge_drops_only_expired_entries() {
    let (_dir, pool) = pool().await;
    let list = Revocations::load(Store::new(pool.clone())).await.unwrap();
    let live = Uuid::new_v4();
    let dead = Uuid::new_v4();
    list.revoke(live, 1, now_unix() + 600).await.unwrap();
    list.revoke(dead, 1, now_unix() - LEEWAY_SECS as i64 - 10)
        .await
        .unwrap();

    assert_eq!(list.purge_expired().await.unwrap(), 1);
    assert!(list.is_token_revoked(&live));
    assert!(!list.is_token_revoked(&dead));
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn load_reads_every_part_of_the_key_space() {
    let (_dir, pool) = pool().await;
    let list = Revocations::load(Store::new(pool.clone())).await.unwrap();
    let mut ids: Vec<Uuid> = (0..500).map(|_| Uuid::new_v4()).collect();
    // The edges of the first-byte ranges.
    ids.push(Uuid::from_u128(0));
    ids.push(Uuid::from_u128(u128::MAX));
    ids.push(Uuid::from_u128(0x10 << 120));
    ids.push(Uuid::from_u128((0x10 << 120) - 1));
    for id in &ids {
        list.revoke(*id, 1, now_unix() + 600).await.unwrap();
    }
    let reloaded = Revocations::load(Store::new(pool)).await.unwrap();
    assert_eq!(reloaded.len(), ids.len());
    assert!(ids.iter().all(|id| reloaded.is_token_revoked(id)));
}

/// A million revocations (plus expired ones) seeded straight into SQLite all come back,
/// and only they do. The time is printed here; its budget is checked by `make bench`.
#[tokio::test]
async fn a_million_revocations_load() {
    const ROWS: i64 = 1_000_000;
    let (_dir, pool) = pool().await;
    let now = now_unix();
    sqlx::query(
        // Random jtis, inserted in key order: appending to the B-tree takes seconds,
        // inserting at random places took twenty.
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         INSERT INTO revoked_tokens (jti, user_id, exp, revoked_at) \
         SELECT jti, 1, CASE WHEN i % 1000 = 0 THEN ? ELSE ? END, ? \
         FROM (SELECT i, randomblob(16) AS jti FROM n) ORDER BY jti",
    )
    .bind(ROWS + ROWS / 999)
    .bind(now - 60)
    .bind(now + 3600)
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    let expected: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revoked_tokens WHERE exp >= $1")
        .bind(now)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(expected >= ROWS, "seeded {expected}");

    let started = std::time::Instant::now();
    let list = Revocations::load(Store::new(pool.clone())).await.unwrap();
    eprintln!(
        "loaded {} revoked jtis in {:.2} s (debug build)",
        list.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(list.len() as i64, expected);
    let sample: Vec<(Vec<u8>, i64)> =
        sqlx::query_as("SELECT jti, exp FROM revoked_tokens ORDER BY random() LIMIT 200")
            .fetch_all(&pool)
            .await
            .unwrap();
    for (jti, exp) in sample {
        let jti = Uuid::from_slice(&jti).unwrap();
        assert_eq!(list.is_token_revoked(&jti), exp >= now, "{jti}");
    }
    // The purge drops exactly the rows that had expired, and nothing loaded.
    let expired = ROWS + ROWS / 999 - expected;
    assert_eq!(list.purge_expired().await.unwrap() as i64, expired);
    assert_eq!(list.len() as i64, expected);
}

/// A token is accepted until `exp` + leeway: its revocation must outlive `exp` by as much,
/// through a purge and through a restart.
#[tokio::test]
async fn a_revocation_is_kept_through_the_leeway() {
    let (_dir, pool) = pool().await;
    let list = Revocations::load(Store::new(pool.clone())).await.unwrap();
    let in_leeway = Uuid::new_v4();
    let past = Uuid::new_v4();
    // Expires now: accepted for the leeway still, so kept through it.
    list.revoke(in_leeway, 1, now_unix()).await.unwrap();
    list.revoke(past, 1, now_unix() - LEEWAY_SECS as i64 - 2)
        .await
        .unwrap();
    assert_eq!(list.purge_expired().await.unwrap(), 1);
    assert!(list.is_token_revoked(&in_leeway));
    assert!(!list.is_token_revoked(&past));
    let reloaded = Revocations::load(Store::new(pool)).await.unwrap();
    assert!(reloaded.is_token_revoked(&in_leeway));
}

/// A revoke the database refuses (another connection holds the write lock) changes
/// nothing: the token is not refused in memory either, and a retry once the lock is gone
/// is stored and survives a reload.
#[tokio::test]
async fn a_failed_revoke_leaves_memory_and_database_agreeing() {
    use sqlx::{sqlite::SqliteConnectOptions, ConnectOptions, Connection};
    use std::str::FromStr;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    connect(&url).await.unwrap().close().await;
    // The revocations' pool gives up on a locked database after 100 ms.
    let options = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .busy_timeout(std::time::Duration::from_millis(100));
    let pool = sqlx::any::AnyPoolOptions::new()
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(conn, "PRAGMA busy_timeout = 100").await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'a', 'x', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let list = Revocations::load(Store::new(pool.clone())).await.unwrap();

    let mut holder = options.connect().await.unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::query("INSERT INTO users (username, password_hash, created_at) VALUES ('b', 'x', 0)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let jti = Uuid::new_v4();
    assert!(list.revoke(jti, 1, now_unix() + 600).await.is_err());
    assert!(
        !list.is_token_revoked(&jti),
        "memory says revoked, the database does not"
    );
    tx.rollback().await.unwrap();

    list.revoke(jti, 1, now_unix() + 600).await.unwrap();
    assert!(list.is_token_revoked(&jti));
    assert!(Revocations::load(Store::new(pool))
        .await
        .unwrap()
        .is_token_revoked(&jti));
}

#[tokio::test]
async fn load_skips_expired_rows() {
    let (_dir, pool) = pool().await;
    let list = Revocations::load(Store::new(pool.clone())).await.unwrap();
    list.revoke(Uuid::new_v4(), 1, now_unix() - LEEWAY_SECS as i64 - 10)
        .await
        .unwrap();
    assert_eq!(Revocations::load(Store::new(pool)).await.unwrap().len(), 0);
}

/// A session row of user 1, ended at `now` (when `ended`), its access tokens valid until
/// `access_exp`.
async fn session_row(pool: &Pool, id: Uuid, access_exp: i64, ended: bool) {
    let now = now_unix();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, refresh_key, generation, confirmed_generation, \
         rotated_at, created_at, last_used_at, expires_at, access_exp, user_agent, address, \
         revoked_at, revoked_reason) VALUES ($1, 1, $2, 1, 1, $3, $4, $5, $6, $7, '', '', $8, $9)",
    )
    .bind(id.as_bytes().as_slice())
    .bind([0u8; 32].as_slice())
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(now + 86_400)
    .bind(access_exp)
    .bind(ended.then_some(now))
    .bind(ended.then_some("revoked"))
    .execute(pool)
    .await
    .unwrap();
}

/// One set, one look-up, both kinds: a token is refused when its `jti` is revoked or when its
/// session ended, and the kinds never answer for each other. Each purge drops only its own
/// kind, and a restart loads both, but for what could no longer be presented.
#[tokio::test]
async fn one_set_refuses_revoked_tokens_and_ended_sessions() {
    let (_dir, pool) = pool().await;
    let store = Store::new(pool.clone());
    let set = Revocations::load(store.clone()).await.unwrap();
    let [jti, other_jti, session, other_session, live, gone] = [(); 6].map(|_| Uuid::new_v4());
    let now = now_unix();
    assert!(!set.is_revoked(&jti, &session));

    set.revoke(jti, 1, now + 600).await.unwrap();
    assert!(set.is_revoked(&jti, &other_session));
    assert!(!set.is_revoked(&other_jti, &session));
    session_row(&pool, session, now + 600, true).await;
    set.remember_ended(session, now + 600);
    assert!(set.is_revoked(&other_jti, &session));
    assert!(set.is_session_ended(&session) && !set.is_token_revoked(&session));
    assert!(set.is_token_revoked(&jti) && !set.is_session_ended(&jti));
    // A live session, and one ended so long ago that none of its tokens is accepted.
    session_row(&pool, live, now + 600, false).await;
    session_row(&pool, gone, now - LEEWAY_SECS as i64 - 1, true).await;

    let reloaded = Revocations::load(store).await.unwrap();
    assert_eq!((reloaded.len(), reloaded.sessions_len()), (1, 1));
    assert!(reloaded.is_revoked(&jti, &other_session));
    assert!(reloaded.is_revoked(&other_jti, &session));
    assert!(!reloaded.is_revoked(&other_jti, &live) && !reloaded.is_revoked(&other_jti, &gone));

    // The sessions' purge forgets ended sessions only, the tokens' purge tokens only.
    reloaded.forget_sessions_ended_before(now + 601);
    assert!(!reloaded.is_session_ended(&session));
    assert!(reloaded.is_token_revoked(&jti));
    reloaded.remember_ended(session, now - LEEWAY_SECS as i64 - 1);
    reloaded
        .revoke(other_jti, 1, now - LEEWAY_SECS as i64 - 1)
        .await
        .unwrap();
    assert_eq!(reloaded.purge_expired().await.unwrap(), 1);
    assert!(!reloaded.is_token_revoked(&other_jti));
    assert!(reloaded.is_token_revoked(&jti));
    assert!(reloaded.is_session_ended(&session));
}

/// What the feed reads from other instances enters the set by kind.
#[test]
fn what_is_read_from_other_instances_is_remembered_by_kind() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_dir, pool) = rt.block_on(pool());
    let set = rt.block_on(Revocations::load(Store::new(pool))).unwrap();
    let [token, session] = [(); 2].map(|_| Uuid::new_v4());
    set.remember([(Kind::Token, token, 10), (Kind::Session, session, 20)]);
    assert!(set.is_token_revoked(&token) && !set.is_session_ended(&token));
    assert!(set.is_session_ended(&session) && !set.is_token_revoked(&session));
    set.forget_sessions_ended_before(21);
    assert!(!set.is_session_ended(&session));
    assert!(set.is_token_revoked(&token));
}
