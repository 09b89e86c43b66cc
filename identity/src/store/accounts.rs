//! The use cases that span the `users` and `sessions` tables, one transaction each, every one
//! taking the one lock order ([`lock_sessions_of`]): starting a session, changing the password,
//! deleting the account. Memory (the ended sessions, the users kept) follows the commit, in
//! their callers ([`crate::sessions::Sessions`], [`crate::account`]).

use uuid::Uuid;

use super::{
    email::Notify,
    sessions::{lock_sessions_of, COLUMNS},
    Dialect, Store, StoreError,
};
use crate::{
    credentials::CredentialStamp,
    sessions::{EndReason, Session},
};

/// Sessions that a change ended: each one's id and the latest expiry of its access tokens, for
/// the in-memory set of ended sessions.
pub type Ended = Vec<(Vec<u8>, i64)>;

/// What a password change did: the current session as renewed, and the others it ended.
#[derive(Debug)]
pub struct PasswordChanged {
    pub session: Session,
    pub ended: Ended,
}

/// How the current session is renewed by a password change: it must still be live (not idle
/// since `idle_since`), and its access tokens may then live until `access_until` at most.
#[derive(Debug, Clone, Copy)]
pub struct Renewal {
    pub now: i64,
    pub access_until: i64,
    pub idle_since: i64,
}

impl Store {
    /// Writes `session`, a sign-in's new session, only if `stamp` is still its user's credential
    /// stamp: the one read when the credential was checked. A sign-in whose check ran while the
    /// password changed or the account was deleted (and its id perhaps given to a new account,
    /// whose stamp is another) starts nothing: `false`. One statement, so nothing can come
    /// between the check and the write.
    pub async fn start_session(
        &self,
        session: &Session,
        stamp: CredentialStamp,
        notice: Option<Notify<'_>>,
        new_device: bool,
    ) -> Result<bool, StoreError> {
        // On PostgreSQL the check waits for a password change or a deletion in progress (from
        // another instance: each holds the user's row, see `lock_sessions_of`) and reads the
        // row as it commits; SQLite has one writer at a time.
        let for_share = match self.dialect() {
            Dialect::Postgres => " FOR SHARE",
            Dialect::Sqlite => "",
        };
        let insert = format!(
            "INSERT INTO sessions (id, user_id, refresh_key, generation, confirmed_generation, \
             rotated_at, created_at, last_used_at, expires_at, access_exp, user_agent, address, \
             auth_method, authenticated_at) \
             SELECT $1, $2, $3, 1, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
             WHERE EXISTS (SELECT 1 FROM users WHERE id = $13 AND credential_stamp = $14 \
             AND disabled_at IS NULL{for_share})"
        );
        let query = sqlx::query(&insert)
            .bind(session.id.0.as_bytes().as_slice())
            .bind(session.user_id)
            .bind(&session.refresh_key)
            .bind(session.rotated_at)
            .bind(session.created_at)
            .bind(session.last_used_at)
            .bind(session.expires_at)
            .bind(session.access_exp)
            .bind(&session.user_agent)
            .bind(&session.address)
            .bind(&session.auth_method)
            .bind(session.authenticated_at)
            .bind(session.user_id)
            .bind(stamp.get());
        let mut tx = self.pool().begin().await?;
        if query.execute(&mut *tx).await?.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        // The sign-in's event, with the session's address and device.
        let event = crate::audit::Entry {
            user_id: session.user_id,
            kind: if new_device {
                crate::audit::Kind::SignInNewDevice
            } else {
                crate::audit::Kind::SignIn
            },
            detail: &session.auth_method,
            seen: crate::audit::Seen::client(session.address.parse().ok(), &session.user_agent),
            session: Some(session.id.0),
        };
        super::audit::record(&mut tx, &event, session.created_at).await?;
        if notice.is_some() {
            super::email::notify_owner(&mut tx, session.user_id, notice, session.created_at)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// A password change, all or nothing: the current session (still live) moves on to a new
    /// refresh-token generation with no grace for the one it replaces; the password hash is
    /// replaced and the credential stamp with it, so no sign-in that checked the old password
    /// starts a session; and, as for every change of a credential, every other session of the
    /// user ends. `None` (and nothing changed) when the current session is no longer live.
    pub async fn change_password(
        &self,
        user_id: i64,
        current: Uuid,
        password_hash: &str,
        renewal: Renewal,
        notice: Option<Notify<'_>>,
        event: &crate::audit::Entry<'_>,
    ) -> Result<Option<PasswordChanged>, StoreError> {
        let (max, min) = self.dialect().max_min();
        let mut tx = self.pool().begin().await?;
        lock_sessions_of(&mut tx, self.dialect(), user_id).await?;
        // In an UPDATE every right-hand side reads the row as it was: the new generation and
        // the confirmed one are both the old generation + 1; `rotated_at = 0` means no grace.
        let renewed: Option<Session> = sqlx::query_as(&format!(
            "UPDATE sessions SET generation = generation + 1, \
             confirmed_generation = generation + 1, rotated_at = 0, last_used_at = $1, \
             access_exp = {max}(access_exp, {min}($2, expires_at)) \
             WHERE id = $3 AND user_id = $4 AND revoked_at IS NULL AND expires_at > $5 \
             AND last_used_at > $6 RETURNING {COLUMNS}"
        ))
        .bind(renewal.now)
        .bind(renewal.access_until)
        .bind(current.as_bytes().as_slice())
        .bind(user_id)
        .bind(renewal.now)
        .bind(renewal.idle_since)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(session) = renewed else {
            tx.rollback().await?;
            return Ok(None);
        };
        super::users::set_password(&mut tx, user_id, password_hash).await?;
        super::audit::record(&mut tx, event, renewal.now).await?;
        let ended = end_others(
            &mut tx,
            user_id,
            current,
            EndReason::PasswordChanged,
            renewal.now,
        )
        .await?;
        super::email::expire_links(&mut tx, user_id, None).await?;
        super::email::notify_owner(&mut tx, user_id, notice, renewal.now).await?;
        tx.commit().await?;
        Ok(Some(PasswordChanged { session, ended }))
    }

    /// Deletes account `user_id`'s row, and with it (`ON DELETE CASCADE`) their sessions and
    /// revocations, in the lock order. Its sessions are ended first, in a transaction of their
    /// own ([`Store::end_sessions_of`], so that every instance learns of it, see
    /// `migrations/postgres/0002`): this one then holds no revocation lock while it waits for
    /// the user's row, which another instance's sign-out may hold a key-share lock on until its
    /// own revocation is recorded. `false` when there was no such account.
    pub async fn delete_user(
        &self,
        user_id: i64,
        notice: Option<Notify<'_>>,
        event: &crate::audit::Entry<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        lock_sessions_of(&mut tx, self.dialect(), user_id).await?;
        // The owner is told in the transaction that deletes: their address goes with it.
        super::email::notify_owner(&mut tx, user_id, notice, now).await?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        // The account's events go with it; the deletion's own stays, for the operator (until
        // the retention ends it).
        super::audit::forget(&mut tx, user_id).await?;
        if done.rows_affected() > 0 {
            super::audit::record(&mut tx, event, now).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

/// A credential of `user_id` changed (in `tx`, in the lock order): every session but `keep`
/// ends. A session holds no credential of its own, so one started with the old credential must
/// not outlive it; `keep` is the one the change was made in, renewed by the caller.
pub(super) async fn end_others(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
    keep: Uuid,
    reason: EndReason,
    now: i64,
) -> Result<Ended, sqlx::Error> {
    sqlx::query_as(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE user_id = $3 AND revoked_at IS NULL AND id != $4 RETURNING id, access_exp",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(user_id)
    .bind(keep.as_bytes().as_slice())
    .fetch_all(&mut **tx)
    .await
}

/// What the operator's switch of an account did.
#[derive(Debug)]
pub enum Switched {
    /// Done; the sessions it ended (none when enabling).
    Done(Ended),
    /// The account was so already (disabled, or enabled): nothing changed.
    Already,
    /// No such account.
    NoSuchUser,
}

impl Store {
    /// Disables account `user_id` (`disabled`: the operator's `server admin disable`) or
    /// enables it again, in one transaction, in the lock order, with `event`. Disabling marks
    /// it, replaces its credential stamp (a sign-in or a second step under way starts
    /// nothing), drops its waiting sign-ins and ends every session (each ending an event, as
    /// every ending is); enabling only clears the mark: it signs in as before.
    pub async fn set_disabled(
        &self,
        user_id: i64,
        disabled: bool,
        event: &crate::audit::Entry<'_>,
        now: i64,
    ) -> Result<Switched, StoreError> {
        let mut tx = self.pool().begin().await?;
        lock_sessions_of(&mut tx, self.dialect(), user_id).await?;
        let state: Option<Option<i64>> =
            sqlx::query_scalar("SELECT disabled_at FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(disabled_at) = state else {
            tx.rollback().await?;
            return Ok(Switched::NoSuchUser);
        };
        if disabled_at.is_some() == disabled {
            tx.rollback().await?;
            return Ok(Switched::Already);
        }
        super::audit::record(&mut tx, event, now).await?;
        if !disabled {
            sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Switched::Done(Vec::new()));
        }
        sqlx::query("UPDATE users SET disabled_at = $1, credential_stamp = $2 WHERE id = $3")
            .bind(now)
            .bind(CredentialStamp::new().get())
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM pending_sign_ins WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let ended = end_others(
            &mut tx,
            user_id,
            Uuid::nil(),
            EndReason::AccountDisabled,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Switched::Done(ended))
    }
}

/// An account as the operator sees it (`server admin find`, `show`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AccountSummary {
    pub id: i64,
    pub username: String,
    pub created_at: i64,
    /// The address, confirmed or waiting for its link.
    pub email: Option<String>,
    pub email_verified_at: Option<i64>,
    pub disabled_at: Option<i64>,
    /// 1 when an authenticator app is on.
    pub totp: i64,
    pub passkeys: i64,
    pub recovery_codes_left: i64,
}

const SUMMARY: &str = "SELECT u.id, u.username, u.created_at, u.email, u.email_verified_at, \
    u.disabled_at, \
    (SELECT COUNT(*) FROM totp_secrets t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) \
    AS totp, \
    (SELECT COUNT(*) FROM passkeys p WHERE p.user_id = u.id) AS passkeys, \
    (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = u.id AND r.used_at IS NULL) \
    AS recovery_codes_left \
    FROM users u";

impl Store {
    /// The accounts `query` names: `#ID`, a username (any case), or an address (any case;
    /// only a confirmed one when `confirmed`). At most a few.
    pub async fn find_accounts(
        &self,
        query: &str,
        confirmed: bool,
    ) -> Result<Vec<AccountSummary>, StoreError> {
        let query = query.trim();
        let rows = if let Some(id) = query.strip_prefix('#') {
            let Ok(id) = id.parse::<i64>() else {
                return Ok(Vec::new());
            };
            sqlx::query_as(&format!("{SUMMARY} WHERE u.id = $1"))
                .bind(id)
                .fetch_all(self.pool())
                .await?
        } else if query.contains('@') {
            let confirmed = if confirmed {
                " AND u.email_verified_at IS NOT NULL"
            } else {
                ""
            };
            sqlx::query_as(&format!(
                "{SUMMARY} WHERE LOWER(u.email) = LOWER($1){confirmed} ORDER BY u.id LIMIT 10"
            ))
            .bind(query)
            .fetch_all(self.pool())
            .await?
        } else {
            sqlx::query_as(&format!("{SUMMARY} WHERE u.username = $1"))
                .bind(query)
                .fetch_all(self.pool())
                .await?
        };
        Ok(rows)
    }
}
