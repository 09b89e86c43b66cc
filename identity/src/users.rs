//! The `users` table.

use super::cache::Bounded;
use crate::store::Pool;

use super::jwt::now_unix;

/// A user as the rest of the app sees it. The password hash is deliberately not here.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub created_at: i64,
}

/// What login needs: the account's row, stored hash included. Not `Serialize`: it can never
/// reach a response.
#[derive(sqlx::FromRow)]
pub struct Credentials {
    pub id: i64,
    pub username: String,
    pub created_at: i64,
    pub password_hash: String,
}

impl Credentials {
    /// The user, without the hash.
    pub fn user(&self) -> User {
        User {
            id: self.id,
            username: self.username.clone(),
            created_at: self.created_at,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("username already taken")]
    Taken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub async fn create(
    pool: &Pool,
    username: &str,
    password_hash: &str,
) -> Result<User, CreateUserError> {
    let created_at = now_unix();
    let result = sqlx::query_as::<_, User>(
        "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) \
         RETURNING id, username, created_at",
    )
    .bind(username)
    .bind(password_hash)
    .bind(created_at)
    .fetch_one(pool)
    .await;
    match result {
        Ok(user) => Ok(user),
        // Mapped by the kind of constraint, not by matching the message.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(CreateUserError::Taken),
        Err(e) => Err(e.into()),
    }
}

/// Replaces a user's password hash.
pub async fn set_password(
    db: impl sqlx::Executor<'_, Database = sqlx::Any>,
    id: i64,
    password_hash: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a user; their sessions and revocations go with them (`ON DELETE CASCADE`), the
/// sessions locked first in the order every other writer takes them. Only through
/// [`UserCache::delete`], which forgets the user too.
async fn delete(pool: &Pool, id: i64) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    super::sessions::lock_sessions_of(&mut tx, crate::store::dialect(pool), id).await?;
    let done = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

pub async fn credentials(pool: &Pool, username: &str) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as("SELECT id, username, created_at, password_hash FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await
}

pub async fn by_id(pool: &Pool, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as("SELECT id, username, created_at FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Where [`UserCache::forget`]s stood when a read began (see [`UserCache::stamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStamp(u64);

/// Users by id, kept in memory after the first look-up so the extractor, `/api/me` and page
/// renders cost no database round trip (the SQLite read would dominate them). A change to a
/// user must call [`UserCache::forget`] (a deletion goes through [`UserCache::delete`], which
/// does; a password change touches nothing kept here). A row changed behind the server's back
/// stays in memory until it is evicted or the server restarts.
#[derive(Debug)]
pub struct UserCache {
    /// The database, and whether it can be reached: a miss is refused at once while it cannot.
    health: std::sync::Arc<crate::store::Health>,
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
            health,
            users: Bounded::new(entries),
            forgets: Default::default(),
        }
    }

    pub async fn get(&self, id: i64) -> Result<Option<User>, sqlx::Error> {
        Ok(self.shared(id).await?.map(|u| User::clone(&u)))
    }

    /// The user, shared with the cache (no copy of the name).
    pub async fn shared(&self, id: i64) -> Result<Option<std::sync::Arc<User>>, sqlx::Error> {
        if let Some(user) = self.users.get(&id) {
            return Ok(Some(user));
        }
        // Not in memory, and the database known to be unreachable: refused without waiting.
        self.health.check()?;
        let before = self.stamp();
        let found = by_id(self.health.pool(), id)
            .await?
            .map(std::sync::Arc::new);
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

    /// Deletes the user's row (see [`delete`]) and forgets them. Forgetting is part of the
    /// deletion: SQLite hands a deleted id to the next account, and a remembered user would go
    /// on answering for it (its name on the newcomer's pages, its `created_at` in the token
    /// check).
    pub async fn delete(&self, id: i64) -> Result<bool, sqlx::Error> {
        let deleted = delete(self.health.pool(), id).await?;
        self.forget(id);
        Ok(deleted)
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
        let creds = credentials(&pool, "ALICE").await.unwrap().unwrap();
        assert_eq!((creds.id, creds.created_at), (user.id, user.created_at));

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
