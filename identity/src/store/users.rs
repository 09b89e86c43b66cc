//! The `users` table's statements.

use super::{email::SignUpAddress, Store, StoreError};
use crate::{
    credentials::{CredentialStamp, Credentials},
    users::{CreateUserError, User},
};

/// The columns of [`Credentials`]: the verified address only.
const CREDENTIALS: &str = "id, username, created_at, password_hash, credential_stamp, \
    CASE WHEN email_verified_at IS NOT NULL THEN email END AS email, \
    CAST(CASE WHEN EXISTS (SELECT 1 FROM totp_secrets t WHERE t.user_id = users.id \
    AND t.confirmed_at IS NOT NULL) THEN 1 ELSE 0 END AS BIGINT) AS second_factor, disabled_at";

impl Store {
    /// Creates an account, with a credential stamp of its own (see [`CredentialStamp`]), and
    /// the address it was given, if any, with the mail that confirms it, in one transaction.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        created_at: i64,
        address: Option<&SignUpAddress<'_>>,
    ) -> Result<User, CreateUserError> {
        let taken = |e: sqlx::Error| match e {
            // Mapped by the kind of constraint, not by matching the message.
            sqlx::Error::Database(e) if e.is_unique_violation() => CreateUserError::Taken,
            e => StoreError(e).into(),
        };
        let mut tx = self.pool().begin().await.map_err(StoreError)?;
        let user = sqlx::query_as::<_, User>(
            "INSERT INTO users (username, password_hash, created_at, credential_stamp) \
             VALUES ($1, $2, $3, $4) RETURNING id, username, created_at",
        )
        .bind(username)
        .bind(password_hash)
        .bind(created_at)
        .bind(CredentialStamp::new().get())
        .fetch_one(&mut *tx)
        .await
        .map_err(taken)?;
        if let Some(address) = address {
            super::email::sign_up_address(&mut tx, user.id, address, created_at)
                .await
                .map_err(StoreError)?;
        }
        tx.commit().await.map_err(StoreError)?;
        Ok(user)
    }

    /// The credentials of the account that `login` names: its username (in any case), or its
    /// verified address (a username has no `@`).
    pub async fn credentials(&self, login: &str) -> Result<Option<Credentials>, StoreError> {
        let by = if login.contains('@') {
            "email = $1 AND email_verified_at IS NOT NULL"
        } else {
            "username = $1"
        };
        Ok(
            sqlx::query_as(&format!("SELECT {CREDENTIALS} FROM users WHERE {by}"))
                .bind(login)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The credentials of account `id`.
    pub async fn credentials_of(&self, id: i64) -> Result<Option<Credentials>, StoreError> {
        Ok(
            sqlx::query_as(&format!("SELECT {CREDENTIALS} FROM users WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
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
