//! The statements of passkeys ([`crate::factors::passkeys`]): the account's user handle, its
//! passkeys, and the ceremonies waiting for the browser. Adding and removing a passkey are
//! factor changes, one transaction in the lock order (see [`super::factors`]).

use uuid::Uuid;

use super::{
    accounts::Ended,
    email::Notify,
    factors::{factors_changed, session_is_live, FactorWritten},
    sessions::lock_sessions_of,
    Store, StoreError,
};

/// A passkey as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasskeyRow {
    pub id: i64,
    pub cred_id: Vec<u8>,
    /// webauthn-rs's `Passkey`, as JSON.
    pub credential: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// 1 when the key is backed up (synced to other devices), as it last said.
    pub backed_up: i64,
}

impl PasskeyRow {
    /// The credential, as webauthn-rs checks it.
    pub fn passkey(&self) -> Result<webauthn_rs::prelude::Passkey, serde_json::Error> {
        serde_json::from_str(&self.credential)
    }
}

/// A passkey about to be stored.
#[derive(Debug)]
pub struct NewPasskey<'a> {
    pub cred_id: &'a [u8],
    pub credential: &'a str,
    pub name: &'a str,
    pub backup_eligible: bool,
    pub backed_up: bool,
}

const COLUMNS: &str = "id, cred_id, credential, name, created_at, last_used_at, backed_up";

/// A ceremony as it is spent: its state, and the account and session that began it.
#[derive(sqlx::FromRow)]
struct Taken {
    state: String,
    user_id: Option<i64>,
    session_id: Option<Vec<u8>>,
    expires_at: i64,
}

impl Store {
    /// The account's WebAuthn user handle, made (16 random bytes) at the first call.
    pub async fn webauthn_handle(&self, user_id: i64) -> Result<[u8; 16], StoreError> {
        let new: [u8; 16] = rand::random();
        sqlx::query(
            "UPDATE users SET webauthn_handle = $1 WHERE id = $2 AND webauthn_handle IS NULL",
        )
        .bind(new.as_slice())
        .bind(user_id)
        .execute(self.pool())
        .await?;
        let handle: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT webauthn_handle FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?
                .flatten();
        Ok(handle
            .and_then(|h| <[u8; 16]>::try_from(h.as_slice()).ok())
            .unwrap_or(new))
    }

    /// The account whose user handle is `handle`.
    pub async fn user_by_handle(&self, handle: &[u8]) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM users WHERE webauthn_handle = $1")
                .bind(handle)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// `user_id`'s passkeys, oldest first.
    pub async fn passkeys_of(&self, user_id: i64) -> Result<Vec<PasskeyRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY id"
        ))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Writes back passkey `id` after a sign-in with it: the credential as updated, its counter
    /// and backup state, when. Guarded: only if the counter moves forward (or the key keeps
    /// none, 0), so of two sign-ins with one counter value only one is written. Whether it was.
    pub async fn passkey_used(
        &self,
        id: i64,
        credential: &str,
        counter: i64,
        backed_up: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE passkeys SET credential = $1, sign_count = $2, backed_up = $3, \
             last_used_at = $4 WHERE id = $5 AND (sign_count < $6 OR $7 = 0)",
        )
        .bind(credential)
        .bind(counter)
        .bind(i64::from(backed_up))
        .bind(now)
        .bind(id)
        .bind(counter)
        .bind(counter)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Renames passkey `id` of `user_id`. Whether there was such a passkey.
    pub async fn rename_passkey(
        &self,
        user_id: i64,
        id: i64,
        name: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE passkeys SET name = $1 WHERE id = $2 AND user_id = $3")
            .bind(name)
            .bind(id)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a new passkey of `user_id` through live session `current`, and does what every
    /// factor change does. `Conflict` when the credential is already registered.
    pub async fn add_passkey(
        &self,
        user_id: i64,
        current: Uuid,
        new: &NewPasskey<'_>,
        notice: Option<Notify<'_>>,
        event: &crate::audit::Entry<'_>,
        now: i64,
    ) -> Result<FactorWritten, StoreError> {
        let mut tx = self.pool().begin().await?;
        lock_sessions_of(&mut tx, self.dialect(), user_id).await?;
        if !session_is_live(&mut tx, current, user_id).await? {
            tx.rollback().await?;
            return Ok(FactorWritten::SessionOver);
        }
        let inserted = sqlx::query(
            "INSERT INTO passkeys \
             (user_id, cred_id, credential, name, created_at, backup_eligible, backed_up) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (cred_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(new.cred_id)
        .bind(new.credential)
        .bind(new.name)
        .bind(now)
        .bind(i64::from(new.backup_eligible))
        .bind(i64::from(new.backed_up))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(FactorWritten::Conflict);
        }
        let ended: Ended =
            factors_changed(&mut tx, user_id, Some(current), notice, event, now).await?;
        tx.commit().await?;
        Ok(FactorWritten::Done(ended))
    }

    /// Removes passkey `id` of `user_id` through live session `current`, and does what every
    /// factor change does. `Conflict` when there is no such passkey.
    pub async fn remove_passkey(
        &self,
        user_id: i64,
        current: Uuid,
        id: i64,
        notice: Option<Notify<'_>>,
        event: &crate::audit::Entry<'_>,
        now: i64,
    ) -> Result<FactorWritten, StoreError> {
        let mut tx = self.pool().begin().await?;
        lock_sessions_of(&mut tx, self.dialect(), user_id).await?;
        if !session_is_live(&mut tx, current, user_id).await? {
            tx.rollback().await?;
            return Ok(FactorWritten::SessionOver);
        }
        let removed = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if removed.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(FactorWritten::Conflict);
        }
        let ended = factors_changed(&mut tx, user_id, Some(current), notice, event, now).await?;
        tx.commit().await?;
        Ok(FactorWritten::Done(ended))
    }

    /// Keeps a ceremony's state until `expires_at` (a registration: of `owner`, the account and
    /// the session that began it).
    pub async fn begin_ceremony(
        &self,
        hash: &[u8; 32],
        kind: &str,
        owner: Option<(i64, Uuid)>,
        state: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        // What is over goes as new ones come (besides the periodic purge): the table holds
        // at most the last few minutes' ceremonies.
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO webauthn_ceremonies \
             (token_hash, kind, user_id, session_id, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash.as_slice())
        .bind(kind)
        .bind(owner.map(|(user, _)| user))
        .bind(owner.map(|(_, session)| session.as_bytes().to_vec()))
        .bind(state)
        .bind(now)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Spends the ceremony `hash` names, if it is of `kind` (and `owner`'s), not past its time:
    /// its state. Deleted as it is read, so a replay finds nothing.
    pub async fn take_ceremony(
        &self,
        hash: &[u8; 32],
        kind: &str,
        owner: Option<(i64, Uuid)>,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let taken: Option<Taken> = sqlx::query_as(
            "DELETE FROM webauthn_ceremonies WHERE token_hash = $1 AND kind = $2 \
             RETURNING state, user_id, session_id, expires_at",
        )
        .bind(hash.as_slice())
        .bind(kind)
        .fetch_optional(self.pool())
        .await?;
        let Some(taken) = taken else {
            return Ok(None);
        };
        let same_owner = match owner {
            None => true,
            Some((user_id, id)) => {
                taken.user_id == Some(user_id)
                    && taken.session_id.as_deref() == Some(id.as_bytes().as_slice())
            }
        };
        Ok((same_owner && taken.expires_at > now).then_some(taken.state))
    }

    /// Drops the ceremonies past their time.
    pub async fn purge_ceremonies(&self, now: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1")
                .bind(now)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }
}
