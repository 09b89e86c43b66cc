//! The account, as its signed-in owner changes it, once their password is checked
//! ([`check_password`](crate::credentials::check_password) with
//! [`Attempt::SignedIn`](crate::credentials::Attempt::SignedIn)): a new password, or the end of
//! the account. Each is one transaction of the store, in the one lock order
//! ([`crate::store::accounts`]); memory follows the commit.

use crate::{
    sessions::{Current, WriteError},
    Auth,
};

impl Auth {
    /// Changes the password of `user_id` through their session `current` (see
    /// [`Store::change_password`](crate::store::Store::change_password)): the password hash and
    /// the credential stamp replaced, every other session ended (in memory too, from the next
    /// request on), this one renewed with no grace for its previous refresh token. The renewed
    /// session, or `None` (nothing changed) when `current` is no longer live.
    pub async fn change_password(
        &self,
        user_id: i64,
        current: uuid::Uuid,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<Current>, WriteError> {
        self.sessions
            .change_password(user_id, current, password_hash, now)
            .await
    }

    /// Deletes an account: in one transaction every session of it ends and its rows go
    /// (sessions and revocations with the user); then every session of it is held as ended in
    /// memory, so that from the next request on each of its tokens is refused as revoked, and
    /// the user is forgotten. Forgetting is part of the deletion: SQLite hands a deleted id to
    /// the next account, and a remembered user would go on answering for it (its name on the
    /// newcomer's pages, its `created_at` in the token check). `false` when there was no such
    /// account.
    pub async fn delete_account(&self, user_id: i64, now: i64) -> Result<bool, WriteError> {
        let deleted = self.sessions.delete_account(user_id, now).await?;
        self.users.forget(user_id);
        Ok(deleted)
    }
}
