//! The `users` table.

use sqlx::SqlitePool;

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
    pool: &SqlitePool,
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

pub async fn credentials(
    pool: &SqlitePool,
    username: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as("SELECT id, password_hash FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(pool)
        .await
}

pub async fn by_id(pool: &SqlitePool, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as("SELECT id, username, created_at FROM users WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await
}
