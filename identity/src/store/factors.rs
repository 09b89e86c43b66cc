//! The statements of second factors ([`crate::factors`]): TOTP secrets, recovery codes, the
//! sign-ins waiting for their second step, and when each session was last authenticated. A
//! change of an account's factors is one transaction in the lock order
//! ([`lock_sessions_of`]): the factor, a new credential stamp, every other session ended, the
//! waiting sign-ins dropped, the owner told.

use uuid::Uuid;

use super::{accounts::Ended, email::Notify, sessions::lock_sessions_of, Store, StoreError};
use crate::{credentials::CredentialStamp, factors::FactorStatus, sessions::EndReason};

/// A sign-in waiting for its second factor.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Held {
    pub user_id: i64,
    #[sqlx(try_from = "i64")]
    pub stamp: CredentialStamp,
    /// The device proof's id the password was counted on (hex), if any.
    pub device: Option<String>,
}

/// Ends every session of `user_id` but `keep` (all of them when `None`), in `tx`, in the lock
/// order taken by the caller.
async fn end_sessions_but(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
    keep: Option<Uuid>,
    reason: EndReason,
    now: i64,
) -> Result<Ended, sqlx::Error> {
    let keep = keep.map(|id| id.as_bytes().to_vec()).unwrap_or_default();
    sqlx::query_as(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE user_id = $3 AND revoked_at IS NULL AND id != $4 RETURNING id, access_exp",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(user_id)
    .bind(keep)
    .fetch_all(&mut **tx)
    .await
}

/// What every change of an account's factors does besides the factor itself, in `tx`: a new
/// credential stamp (a sign-in, a reset link or a waiting second step that read the old one
/// starts nothing), the waiting sign-ins dropped, every session but `keep` ended, the owner
/// told.
pub(super) async fn factors_changed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
    keep: Option<Uuid>,
    notice: Option<Notify<'_>>,
    event: &crate::audit::Entry<'_>,
    now: i64,
) -> Result<Ended, sqlx::Error> {
    sqlx::query("UPDATE users SET credential_stamp = $1 WHERE id = $2")
        .bind(CredentialStamp::new().get())
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM pending_sign_ins WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    // The operator's removal ends the sessions as the operator's; the owner's change, as a
    // change of factors.
    let reason = match event.kind {
        crate::audit::Kind::FactorsRemovedByOperator => EndReason::Operator,
        _ => EndReason::FactorsChanged,
    };
    super::audit::record(tx, event, now).await?;
    let ended = end_sessions_but(tx, user_id, keep, reason, now).await?;
    super::email::notify_owner(tx, user_id, notice, now).await?;
    Ok(ended)
}

/// Whether session `id` of `user_id` is still live, read in `tx` after the lock order was
/// taken: a change made through a session that another instance, the operator or a
/// concurrent change has just ended changes nothing.
pub(super) async fn session_is_live(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: Uuid,
    user_id: i64,
) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT user_id FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(id.as_bytes().as_slice())
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

/// What a factor change through a session found.
#[derive(Debug)]
pub enum FactorWritten {
    /// Done: the sessions it ended.
    Done(Ended),
    /// The account is not in the state the change needs.
    Conflict,
    /// The session it was made through has ended.
    SessionOver,
}

/// What a second factor spends: an authenticator's step, or a recovery code's MAC.
#[derive(Debug, Clone)]
pub enum Spend {
    Step(i64),
    Recovery(Vec<u8>),
}

/// Spends `spend` for `user_id` in `tx`, once: whether it was still unspent.
async fn spend_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
    spend: &Spend,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = match spend {
        Spend::Step(step) => {
            sqlx::query(
                "UPDATE totp_secrets SET last_step = $1 \
                 WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $3",
            )
            .bind(*step)
            .bind(user_id)
            .bind(*step)
            .execute(&mut **tx)
            .await?
        }
        Spend::Recovery(hash) => {
            sqlx::query(
                "UPDATE recovery_codes SET used_at = $1 \
                 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .bind(hash.as_slice())
            .execute(&mut **tx)
            .await?
        }
    };
    Ok(done.rows_affected() == 1)
}

/// What finishing a held sign-in found.
#[derive(Debug)]
pub enum Finished {
    Done(Held),
    /// The held sign-in is spent, past its time, or unknown.
    Over,
    /// The code was spent already (by another request).
    Spent,
}

/// Replaces the recovery codes of `user_id` with `hashes`, in `tx`.
async fn replace_codes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
    hashes: &[Vec<u8>],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    for hash in hashes {
        sqlx::query(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(user_id)
        .bind(hash.as_slice())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    pub async fn factor_status(&self, user_id: i64) -> Result<FactorStatus, StoreError> {
        let (totp_since, recovery_left): (Option<i64>, i64) = sqlx::query_as(
            "SELECT (SELECT confirmed_at FROM totp_secrets WHERE user_id = $1), \
             (SELECT COUNT(*) FROM recovery_codes WHERE user_id = $2 AND used_at IS NULL)",
        )
        .bind(user_id)
        .bind(user_id)
        .fetch_one(self.pool())
        .await?;
        Ok(FactorStatus {
            totp_since,
            recovery_left,
        })
    }

    /// The sealed secret of `user_id`'s confirmed TOTP and the last step accepted.
    pub async fn confirmed_totp(&self, user_id: i64) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT sealed, last_step FROM totp_secrets \
             WHERE user_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The sealed secret of `user_id`'s enrolment waiting for its first code.
    pub async fn waiting_totp(&self, user_id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT sealed FROM totp_secrets WHERE user_id = $1 AND confirmed_at IS NULL",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Spends a second factor of `user_id` (the step of an authenticator's code: only if no
    /// code of that step or a later one was accepted before; or an unused recovery code), once.
    /// One statement: of two requests with one code, one gets `true`.
    pub async fn spend_factor(
        &self,
        user_id: i64,
        spend: &Spend,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let spent = spend_in(&mut tx, user_id, spend, now).await?;
        tx.commit().await?;
        Ok(spent)
    }

    /// Finishes the held sign-in `hash` names with the second factor `spend` of its account,
    /// both spent in one transaction or neither: a code is never spent on a sign-in that was
    /// over already (another tab's), nor a held sign-in on a code that was spent.
    pub async fn finish_held(
        &self,
        hash: &[u8; 32],
        spend: &Spend,
        now: i64,
    ) -> Result<Finished, StoreError> {
        let mut tx = self.pool().begin().await?;
        let held: Option<Held> = sqlx::query_as(
            "UPDATE pending_sign_ins SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $3 \
             RETURNING user_id, stamp, device",
        )
        .bind(now)
        .bind(hash.as_slice())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(held) = held else {
            tx.rollback().await?;
            return Ok(Finished::Over);
        };
        if !spend_in(&mut tx, held.user_id, spend, now).await? {
            tx.rollback().await?;
            return Ok(Finished::Spent);
        }
        tx.commit().await?;
        Ok(Finished::Done(held))
    }

    pub async fn hold_sign_in(
        &self,
        hash: &[u8; 32],
        user_id: i64,
        stamp: CredentialStamp,
        device: Option<&str>,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pending_sign_ins (token_hash, user_id, stamp, device, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash.as_slice())
        .bind(user_id)
        .bind(stamp.get())
        .bind(device)
        .bind(now)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The sign-in `hash` names, if it still waits at `now`.
    pub async fn held_sign_in(
        &self,
        hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<Held>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT user_id, stamp, device FROM pending_sign_ins \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(hash.as_slice())
        .bind(now)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Drops the waiting sign-ins that ended before `before`.
    pub async fn purge_pending_sign_ins(&self, before: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM pending_sign_ins WHERE expires_at < $1")
                .bind(before)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }

    /// When the holder of session `id`, if it has not ended, last proved who they are.
    pub async fn authenticated_at(&self, id: Uuid) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT authenticated_at FROM sessions WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id.as_bytes().as_slice())
        .fetch_optional(self.pool())
        .await?)
    }

    /// Records that live session `id` of `user_id` was authenticated again at `now`.
    pub async fn mark_authenticated(
        &self,
        id: Uuid,
        user_id: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET authenticated_at = $1 \
             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id.as_bytes().as_slice())
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps a new secret for `user_id`, waiting for its first code (replacing one that was
    /// waiting). `false` when TOTP is already on.
    pub async fn begin_totp(
        &self,
        user_id: i64,
        sealed: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO totp_secrets (user_id, sealed, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET sealed = excluded.sealed, \
             created_at = excluded.created_at, last_step = 0 \
             WHERE totp_secrets.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(sealed)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Turns on the waiting secret `sealed` of `user_id` (the one its first code was checked
    /// against: a newer enrolment from another tab is left waiting), its code of `step`
    /// accepted, with the recovery codes `hashes`; then every session but `current` ends (see
    /// [`factors_changed`]). `None` when no such enrolment waits.
    #[allow(clippy::too_many_arguments)]
    pub async fn confirm_totp(
        &self,
        user_id: i64,
        current: Uuid,
        step: i64,
        sealed: &[u8],
        hashes: &[Vec<u8>],
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
        let done = sqlx::query(
            "UPDATE totp_secrets SET confirmed_at = $1, last_step = $2 \
             WHERE user_id = $3 AND confirmed_at IS NULL AND sealed = $4",
        )
        .bind(now)
        .bind(step)
        .bind(user_id)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(FactorWritten::Conflict);
        }
        replace_codes(&mut tx, user_id, hashes, now).await?;
        let ended = factors_changed(&mut tx, user_id, Some(current), notice, event, now).await?;
        tx.commit().await?;
        Ok(FactorWritten::Done(ended))
    }

    /// Turns TOTP off for `user_id` and drops the recovery codes; then every session but
    /// `current` ends. `None` for `current` is the operator's removal: the passkeys go too, and
    /// every session ends. `Conflict` when there was nothing to remove.
    pub async fn remove_totp(
        &self,
        user_id: i64,
        current: Option<Uuid>,
        notice: Option<Notify<'_>>,
        event: &crate::audit::Entry<'_>,
        now: i64,
    ) -> Result<FactorWritten, StoreError> {
        let mut tx = self.pool().begin().await?;
        lock_sessions_of(&mut tx, self.dialect(), user_id).await?;
        if let Some(current) = current {
            if !session_is_live(&mut tx, current, user_id).await? {
                tx.rollback().await?;
                return Ok(FactorWritten::SessionOver);
            }
        }
        let removed =
            sqlx::query("DELETE FROM totp_secrets WHERE user_id = $1 AND confirmed_at IS NOT NULL")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        // The operator's removal (no session kept) takes the passkeys too: an account taken
        // over may hold the intruder's.
        let passkeys = if current.is_none() {
            sqlx::query("DELETE FROM passkeys WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        } else {
            0
        };
        if removed + passkeys == 0 {
            tx.rollback().await?;
            return Ok(FactorWritten::Conflict);
        }
        sqlx::query("DELETE FROM totp_secrets WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let ended = factors_changed(&mut tx, user_id, current, notice, event, now).await?;
        tx.commit().await?;
        Ok(FactorWritten::Done(ended))
    }

    /// Replaces the recovery codes of `user_id` (whose TOTP is on) with `hashes`, through live
    /// session `current`: new codes are new credentials, so, as for every factor change, the
    /// stamp is replaced, every other session ends and the owner is told.
    pub async fn renew_recovery_codes(
        &self,
        user_id: i64,
        current: Uuid,
        hashes: &[Vec<u8>],
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
        let on: Option<i64> = sqlx::query_scalar(
            "SELECT user_id FROM totp_secrets WHERE user_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if on.is_none() {
            tx.rollback().await?;
            return Ok(FactorWritten::Conflict);
        }
        replace_codes(&mut tx, user_id, hashes, now).await?;
        let ended = factors_changed(&mut tx, user_id, Some(current), notice, event, now).await?;
        tx.commit().await?;
        Ok(FactorWritten::Done(ended))
    }
}
