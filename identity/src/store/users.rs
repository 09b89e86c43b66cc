//! The `users` table's statements.

use super::{Store, StoreError};
use crate::{
    credentials::{CredentialStamp, Credentials},
    users::{CreateUserError, User},
};

impl Store {
    /// Creates an account, with a credential stamp of its own (see [`CredentialStamp`]).
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        created_at: i64,
    ) -> Result<User, CreateUserError> {
        let result = sqlx::query_as::<_, User>(
            "INSERT INTO users (username, password_hash, created_at, credential_stamp) \
             VALUES ($1, $2, $3, $4) RETURNING id, username, created_at",
        )
        .bind(username)
        .bind(password_hash)
        .bind(created_at)
        .bind(CredentialStamp::new().get())
        .fetch_one(self.pool())
        .await;
        match result {
            Ok(user) => Ok(user),
            // Mapped by the kind of constraint, not by matching the message.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(CreateUserError::Taken),
            Err(e) => Err(StoreError(e).into()),
        }
    }

    /// The credentials of the account named `username` (in any case).
    pub async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, username, created_at, password_hash, credential_stamp FROM users \
             WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The credentials of account `id`.
    pub async fn credentials_of(&self, id: i64) -> Result<Option<Credentials>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, username, created_at, password_hash, credential_stamp FROM users \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Account `id`, without its credentials.
    pub async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, username, created_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}

/// Replaces a user's password hash, and their credential stamp with a new one, in `tx` (see
/// [`Store::change_password`], which holds the lock order). Whether there was such a user.
pub(super) async fn set_password(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
    password_hash: &str,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE users SET password_hash = $1, credential_stamp = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(CredentialStamp::new().get())
            .bind(id)
            .execute(&mut **tx)
            .await?;
    Ok(done.rows_affected() == 1)
}
