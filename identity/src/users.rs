//! The `users` table.

use super::cache::Bounded;
use crate::{
    credentials::Credentials,
    store::{Pool, Store, StoreError},
};

use super::tokens::access::now_unix;

/// A user as the rest of the app sees it. The password hash is deliberately not here.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub created_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("username already taken")]
    Taken,
    #[error(transparent)]
    Db(#[from] StoreError),
}

/// Creates an account (see [`Store::create_user`]).
pub async fn create(
    pool: &Pool,
    username: &str,
    password_hash: &str,
) -> Result<User, CreateUserError> {
    Store::new(pool.clone())
        .create_user(username, password_hash, now_unix(), None)
        .await
}

/// Where [`UserCache::forget`]s stood when a read began (see [`UserCache::stamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStamp(u64);

/// Users by id, kept in memory after the first look-up so the extractor, `/api/me` and page
/// renders cost no database round trip (the SQLite read would dominate them). A change to a
/// user must call [`UserCache::forget`] (a deletion does, see [`crate::account`]; a password
/// change touches nothing kept here). A row changed behind the server's back stays in memory
/// until it is evicted or the server restarts. Credentials are never kept: each check reads
/// them ([`UserCache::credentials`]).
#[derive(Debug)]
pub struct UserCache {
    /// The database, and whether it can be reached: a miss is refused at once while it cannot.
    health: std::sync::Arc<crate::store::Health>,
    store: Store,
    /// Shared, so a hit costs a reference count, not a copy of the name.
    users: Bounded<i64, std::sync::Arc<User>>,
    /// Bumped by every [`UserCache::forget`]: a read that began before it must not put what it
    /// read back into the cache (it may be the very row that changed).
    forgets: std::sync::atomic::AtomicU64,
}

impl UserCache {
    pub fn new(health: std::sync::Arc<crate::store::Health>) -> Self {
        Self::with_capacity(health, super::cache::DEFAULT_ENTRIES)
    }

    /// Remembers at most `entries` users (0: none).
    pub fn with_capacity(health: std::sync::Arc<crate::store::Health>, entries: usize) -> Self {
        Self {
            store: Store::new(health.pool().clone()),
            health,
            users: Bounded::new(entries),
            forgets: Default::default(),
        }
    }

    pub async fn get(&self, id: i64) -> Result<Option<User>, StoreError> {
        Ok(self.shared(id).await?.map(|u| User::clone(&u)))
    }

    /// The user, shared with the cache (no copy of the name).
    pub async fn shared(&self, id: i64) -> Result<Option<std::sync::Arc<User>>, StoreError> {
        if let Some(user) = self.users.get(&id) {
            return Ok(Some(user));
        }
        // Not in memory, and the database known to be unreachable: refused without waiting.
        self.health.check()?;
        let before = self.stamp();
        let found = self.store.user(id).await?.map(std::sync::Arc::new);
        if let Some(user) = &found {
            self.keep(user.clone(), before);
        }
        Ok(found)
    }

    /// Where the forgets stand now: taken before a user is read from the database, and handed
    /// to [`remember`](Self::remember) with what was read.
    pub fn stamp(&self) -> ReadStamp {
        ReadStamp(self.forgets.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Keeps `user`, read from the database after `before` was taken: a sign-in remembers the
    /// user it checked, so the tokens it hands out are checked from memory from their first
    /// use on, even when the database cannot be reached by then. Not kept if any user was
    /// forgotten since (it may be this one).
    pub fn remember(&self, user: User, before: ReadStamp) {
        self.keep(std::sync::Arc::new(user), before);
    }

    fn keep(&self, user: std::sync::Arc<User>, before: ReadStamp) {
        if self.stamp() != before {
            return;
        }
        let id = user.id;
        self.users.insert(id, user);
        // A forget between the check and the insert may have removed nothing yet: undone.
        if self.stamp() != before {
            self.users.remove(&id);
        }
    }

    /// Users held in memory now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }

    /// The credentials of the account named `username`, read from the database (never kept).
    pub async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError> {
        self.store.credentials(username).await
    }

    /// The credentials of account `id`, read from the database (never kept).
    pub async fn credentials_of(&self, id: i64) -> Result<Option<Credentials>, StoreError> {
        self.store.credentials_of(id).await
    }

    /// The user changed or is gone: the next look-up reads the database.
    pub fn forget(&self, id: i64) {
        self.forgets
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.users.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_find_and_cache() {
        let (_dir, pool, _auth) = crate::testing::auth().await;
        let user = create(&pool, "Alice", "hash").await.unwrap();
        assert!(matches!(
            create(&pool, "alice", "hash").await,
            Err(CreateUserError::Taken)
        ));
        let store = Store::new(pool.clone());
        let creds = store.credentials("ALICE").await.unwrap().unwrap();
        assert_eq!((creds.id, creds.created_at), (user.id, user.created_at));
        assert_eq!(
            store.credentials_of(user.id).await.unwrap().unwrap().id,
            user.id
        );
        // Every account gets a random credential stamp of its own: none is the default a row
        // written by hand gets, and an account that takes a deleted one's id has another.
        let other = create(&pool, "bob", "hash").await.unwrap();
        let stamp = |id| {
            let store = store.clone();
            async move { store.credentials_of(id).await.unwrap().unwrap().stamp.get() }
        };
        let (a, b) = (stamp(user.id).await, stamp(other.id).await);
        assert!(a != 0 && b != 0 && a != b, "{a} {b}");
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(other.id)
            .execute(&pool)
            .await
            .unwrap();
        let again = create(&pool, "carol", "hash").await.unwrap();
        assert_eq!(again.id, other.id, "SQLite hands the id out again");
        assert_ne!(stamp(again.id).await, b);

        let health = crate::store::Health::new(pool.clone());
        let cache = UserCache::new(health.clone());
        assert_eq!(cache.get(user.id).await.unwrap(), Some(user.clone()));
        // Served from memory from now on: the database is not asked again.
        sqlx::query("UPDATE users SET username = 'changed' WHERE id = $1")
            .bind(user.id)
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(cache.get(user.id).await.unwrap(), Some(user.clone()));
        assert_eq!(
            cache.shared(user.id).await.unwrap().map(|u| u.created_at),
            Some(user.created_at)
        );
        assert_eq!(cache.get(999).await.unwrap(), None);
        assert!(cache.shared(999).await.unwrap().is_none());
        // Forgotten explicitly: the change is read.
        cache.forget(user.id);
        let name = |u: Option<User>| u.map(|u| u.username);
        assert_eq!(
            name(cache.get(user.id).await.unwrap()).as_deref(),
            Some("changed")
        );
        // A user read by a sign-in is kept, unless a user was forgotten after the read began.
        let fresh = UserCache::new(health.clone());
        let read = fresh.stamp();
        fresh.remember(user.clone(), read);
        assert_eq!(fresh.get(user.id).await.unwrap(), Some(user.clone()));
        let other = User {
            id: 999,
            username: "stale".into(),
            created_at: 0,
        };
        let read = fresh.stamp();
        fresh.forget(user.id);
        fresh.remember(other, read);
        assert_eq!(fresh.get(999).await.unwrap(), None);
        // A cache of size 0 always reads the database.
        let off = UserCache::with_capacity(health, 0);
        assert_eq!(
            name(off.get(user.id).await.unwrap()).as_deref(),
            Some("changed")
        );
    }
}
