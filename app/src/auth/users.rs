//! The `users` table.

use crate::db::Pool;

use super::jwt::now_unix;

/// A user as the rest of the app sees it. The password hash is deliberately not here.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub created_at: i64,
}

/// What login needs: the id and the stored hash. Not `Serialize`: it can never reach a response.
#[derive(sqlx::FromRow)]
pub struct Credentials {
    pub id: i64,
    pub password_hash: String,
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
        "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?) \
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

pub async fn credentials(pool: &Pool, username: &str) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as("SELECT id, password_hash FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(pool)
        .await
}

pub async fn by_id(pool: &Pool, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as("SELECT id, username, created_at FROM users WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Users by id, kept in memory after the first look-up so the extractor, `/api/me` and page
/// renders cost no database round trip. Safe because a user's id, name and creation time never
/// change here (there is no rename or delete yet). Bounded: when full it starts over.
#[derive(Debug)]
pub struct UserCache {
    pool: Pool,
    users: std::sync::RwLock<std::collections::HashMap<i64, User>>,
}

impl UserCache {
    /// Most users kept at once (~100 bytes each).
    pub const CAPACITY: usize = 100_000;

    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            users: Default::default(),
        }
    }

    fn cached<T>(&self, id: i64, f: impl FnOnce(&User) -> T) -> Option<T> {
        self.users.read().ok().and_then(|m| m.get(&id).map(f))
    }

    pub async fn get(&self, id: i64) -> Result<Option<User>, sqlx::Error> {
        if let Some(user) = self.cached(id, User::clone) {
            return Ok(Some(user));
        }
        let found = by_id(&self.pool, id).await?;
        if let (Some(user), Ok(mut m)) = (&found, self.users.write()) {
            if m.len() >= Self::CAPACITY {
                m.clear();
            }
            m.insert(id, user.clone());
        }
        Ok(found)
    }

    /// When the user was created, `None` if there is no such user. The hot path's question.
    pub async fn created_at(&self, id: i64) -> Result<Option<i64>, sqlx::Error> {
        if let Some(created_at) = self.cached(id, |u| u.created_at) {
            return Ok(Some(created_at));
        }
        Ok(self.get(id).await?.map(|u| u.created_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_find_and_cache() {
        let (_dir, pool, _auth) = crate::auth::testing::auth().await;
        let user = create(&pool, "Alice", "hash").await.unwrap();
        assert!(matches!(
            create(&pool, "alice", "hash").await,
            Err(CreateUserError::Taken)
        ));
        let creds = credentials(&pool, "ALICE").await.unwrap().unwrap();
        assert_eq!(creds.id, user.id);

        let cache = UserCache::new(pool.clone());
        assert_eq!(cache.get(user.id).await.unwrap(), Some(user.clone()));
        // Served from memory from now on: the database is not asked again.
        sqlx::query("UPDATE users SET username = 'changed' WHERE id = ?")
            .bind(user.id)
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(cache.get(user.id).await.unwrap(), Some(user.clone()));
        assert_eq!(
            cache.created_at(user.id).await.unwrap(),
            Some(user.created_at)
        );
        assert_eq!(cache.get(999).await.unwrap(), None);
        assert_eq!(cache.created_at(999).await.unwrap(), None);
    }
}
