//! The statements of e-mail: addresses on accounts, the links mailed to them (`email_links`),
//! and the use cases that spend a link. Each mail a change causes is queued in the change's own
//! transaction ([`super::outbox::enqueue`]).

use uuid::Uuid;

use super::{accounts::Ended, sessions::lock_sessions_of, Store, StoreError};
use crate::{
    credentials::CredentialStamp,
    mail::{
        links::{Link, LinkState, Purpose},
        OutgoingMail,
    },
};

/// Makes the notice a change sends to the account's verified address (given to it).
pub type Notify<'a> = &'a (dyn Fn(&str) -> OutgoingMail + Send + Sync);

/// A link about to be put in place: its token's hash and when it ends.
#[derive(Debug, Clone, Copy)]
pub struct NewLink {
    pub hash: [u8; 32],
    pub expires_at: i64,
    /// A link of the same account and purpose made less than this many seconds ago is not
    /// replaced: the request is refused as too soon (0: always replaced).
    pub min_gap: i64,
}

/// A link could not be sent yet: the last one is too recent. Seconds until one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSoon(pub i64);

/// The mail a link is sent with, to the address it confirms (or resets through), and the notice
/// sent instead when that address is already another account's verified address (which must
/// never receive a link that would fail, nor tell the sender anything).
pub struct LinkMails<'a> {
    pub link: Notify<'a>,
    pub in_use: Notify<'a>,
    /// Whether to send either: `false` when the recipient had too many mails lately (the link
    /// is put in place all the same, so the answer is the same).
    pub send: bool,
}

/// What following an address-confirming link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// The address is now the account's, verified.
    Done { user_id: i64, address: String },
    /// Another account verified this address first: nothing changed.
    InUse,
    /// The link was not live (used, expired, unknown): nothing changed.
    NotLive(LinkState),
}

/// What a reset link did.
#[derive(Debug)]
pub enum Reset {
    /// The password replaced, the stamp with it, every session ended.
    Done {
        user_id: i64,
        stamp: CredentialStamp,
        ended: Ended,
    },
    NotLive(LinkState),
}

/// An account whose password a reset may set: its verified address.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ResetTarget {
    pub id: i64,
    pub username: String,
    pub email: String,
}

/// What a change of address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressChange {
    /// A link is on its way to the new address.
    Sent,
    /// That is the account's verified address already.
    Unchanged,
    TooSoon(TooSoon),
}

/// The account's address as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressStatus {
    /// The account's address, if any.
    pub email: Option<String>,
    pub verified: bool,
    /// An address a confirming link was sent to and not yet followed (a change, or the
    /// unverified address itself).
    pub pending: Option<String>,
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// A link as [`Store::link_state`] reads it: user, address, expiry, when used, the stamp it
/// was sent under, the account's stamp now, and the account's verified address.
type LinkRow = (i64, String, i64, Option<i64>, i64, i64, Option<String>);

/// The verified address of `user_id`, in `tx`.
async fn verified_address(tx: &mut Tx<'_>, user_id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT email FROM users WHERE id = $1 AND email IS NOT NULL \
         AND email_verified_at IS NOT NULL",
    )
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await
    .map(Option::flatten)
}

/// Ends every unspent link of `user_id` (of `purpose`, when given), in `tx`: following one is
/// then answered "expired". Its credentials changed, and a link someone else may have asked
/// for (a change of address to their own) must not outlive that.
pub(super) async fn expire_links(
    tx: &mut Tx<'_>,
    user_id: i64,
    purpose: Option<Purpose>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE email_links SET expires_at = 0 WHERE user_id = $1 AND used_at IS NULL \
         AND ($2 = '' OR purpose = $2)",
    )
    .bind(user_id)
    .bind(purpose.map_or("", Purpose::as_str))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues `notice` to the verified address of `user_id`, in `tx`, if it has one.
pub(crate) async fn notify_owner(
    tx: &mut Tx<'_>,
    user_id: i64,
    notice: Option<Notify<'_>>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let Some(notice) = notice else {
        return Ok(false);
    };
    let Some(address) = verified_address(tx, user_id).await? else {
        return Ok(false);
    };
    super::outbox::enqueue(tx, &notice(&address), now).await?;
    Ok(true)
}

/// The verified address of an account other than `user_id` that `address` names (as that
/// account keeps it), if there is one.
async fn taken(
    tx: &mut Tx<'_>,
    address: &str,
    user_id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT email FROM users WHERE email = $1 AND email_verified_at IS NOT NULL AND id != $2",
    )
    .bind(address)
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await
    .map(Option::flatten)
}

/// Puts a link of `purpose` for `user_id` to `address` in place of the last one, bound to the
/// account's credential stamp as it is; `Err(TooSoon)` (nothing written) when the last one is
/// still live and was made less than `link.min_gap` seconds ago. One statement: two requests at once cannot both
/// replace it.
async fn put_link(
    tx: &mut Tx<'_>,
    user_id: i64,
    purpose: Purpose,
    address: &str,
    link: NewLink,
    now: i64,
) -> Result<Result<(), TooSoon>, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO email_links (user_id, purpose, token_hash, address, stamp, created_at, \
         expires_at) SELECT id, $1, $2, $3, credential_stamp, $4, $5 FROM users WHERE id = $6 \
         ON CONFLICT (user_id, purpose) DO UPDATE SET token_hash = excluded.token_hash, \
         address = excluded.address, stamp = excluded.stamp, created_at = excluded.created_at, \
         expires_at = excluded.expires_at, used_at = NULL \
         WHERE email_links.created_at <= $7 OR email_links.used_at IS NOT NULL \
         OR email_links.expires_at <= $8",
    )
    .bind(purpose.as_str())
    .bind(link.hash.as_slice())
    .bind(address)
    .bind(now)
    .bind(link.expires_at)
    .bind(user_id)
    .bind(now - link.min_gap)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(Ok(()));
    }
    let made: Option<i64> = sqlx::query_scalar(
        "SELECT created_at FROM email_links WHERE user_id = $1 AND purpose = $2",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let wait = made.map_or(1, |made| (made + link.min_gap - now).max(1));
    Ok(Err(TooSoon(wait)))
}

/// Sends a confirming link to `address` for `user_id` (or, when the address is another
/// account's verified one, the notice that says so instead), in `tx`.
async fn send_confirmation(
    tx: &mut Tx<'_>,
    user_id: i64,
    address: &str,
    link: NewLink,
    mails: &LinkMails<'_>,
    now: i64,
) -> Result<Result<(), TooSoon>, sqlx::Error> {
    if let Err(soon) = put_link(tx, user_id, Purpose::Verify, address, link, now).await? {
        return Ok(Err(soon));
    }
    if !mails.send {
        return Ok(Ok(()));
    }
    let mail = match taken(tx, address, user_id).await? {
        // To the owner's mailbox as the owner's account keeps it.
        Some(owners) => (mails.in_use)(&owners),
        None => (mails.link)(address),
    };
    super::outbox::enqueue(tx, &mail, now).await?;
    Ok(Ok(()))
}

/// The address a sign-up gives its new account.
pub struct SignUpAddress<'a> {
    /// Normalised ([`crate::mail::address::normalise`]).
    pub address: &'a str,
    pub link: NewLink,
    pub mails: LinkMails<'a>,
}

/// Gives new account `user_id` its address (unverified) and sends it a confirming link, or
/// (the address is another account's) the notice that says so: the sign-up answers the same
/// either way. In `tx`, the sign-up's own.
pub(super) async fn sign_up_address(
    tx: &mut Tx<'_>,
    user_id: i64,
    given: &SignUpAddress<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
        .bind(given.address)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    // A new account has no link yet: never too soon.
    let _ = send_confirmation(tx, user_id, given.address, given.link, &given.mails, now).await?;
    Ok(())
}

impl Store {
    /// The account's address, verified or not, and the one a change waits to confirm.
    pub async fn address_status(
        &self,
        user_id: i64,
        now: i64,
    ) -> Result<AddressStatus, StoreError> {
        let row: Option<(Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT email, email_verified_at FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?;
        let Some((email, verified_at)) = row else {
            return Ok(AddressStatus::default());
        };
        let pending: Option<String> = sqlx::query_scalar(
            "SELECT address FROM email_links WHERE user_id = $1 AND purpose = 'verify' \
             AND used_at IS NULL AND expires_at > $2",
        )
        .bind(user_id)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        let verified = email.is_some() && verified_at.is_some();
        Ok(AddressStatus {
            pending: pending.filter(|p| !(verified && email.as_deref() == Some(p.as_str()))),
            email,
            verified,
        })
    }

    /// The account that `login` (a username, or an address) names, if it has a verified
    /// address: where a reset link may go.
    pub async fn reset_target(&self, login: &str) -> Result<Option<ResetTarget>, StoreError> {
        let by = if login.contains('@') {
            "email"
        } else {
            "username"
        };
        Ok(sqlx::query_as(&format!(
            "SELECT id, username, email FROM users WHERE {by} = $1 AND email IS NOT NULL \
             AND email_verified_at IS NOT NULL AND disabled_at IS NULL"
        ))
        .bind(login)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Sends a reset link to `target`'s verified address (still its address, read again in
    /// the transaction), replacing the last one, unless that was made too recently.
    /// `Ok(Ok(false))` when the account or its address has gone meanwhile.
    pub async fn send_reset_link(
        &self,
        target: &ResetTarget,
        link: NewLink,
        mail: Notify<'_>,
        now: i64,
    ) -> Result<Result<bool, TooSoon>, StoreError> {
        let mut tx = self.pool().begin().await?;
        lock_sessions_of(&mut tx, self.dialect(), target.id).await?;
        if verified_address(&mut tx, target.id).await?.as_deref() != Some(target.email.as_str()) {
            tx.rollback().await?;
            return Ok(Ok(false));
        }
        if let Err(soon) =
            put_link(&mut tx, target.id, Purpose::Reset, &target.email, link, now).await?
        {
            tx.rollback().await?;
            return Ok(Err(soon));
        }
        super::outbox::enqueue(&mut tx, &mail(&target.email), now).await?;
        tx.commit().await?;
        Ok(Ok(true))
    }

    /// Sends the account's unconfirmed address (the one a change waits for, else its own
    /// unverified one) a new confirming link. `Ok(None)` when there is nothing to confirm.
    pub async fn resend_confirmation(
        &self,
        user_id: i64,
        link: NewLink,
        mails: &LinkMails<'_>,
        now: i64,
    ) -> Result<Option<Result<(), TooSoon>>, StoreError> {
        let status = self.address_status(user_id, now).await?;
        let address = match (status.pending, status.email, status.verified) {
            (Some(pending), _, _) => pending,
            (None, Some(email), false) => email,
            _ => return Ok(None),
        };
        let mut tx = self.pool().begin().await?;
        let sent = send_confirmation(&mut tx, user_id, &address, link, mails, now).await?;
        tx.commit().await?;
        Ok(Some(sent))
    }

    /// Changes the account's address to `address`: an account without a verified address
    /// takes it at once (unverified); one with a verified address keeps it until the link
    /// sent to the new one is followed, and the old one is told (`notice`).
    #[allow(clippy::too_many_arguments)] // the change, its link, its mails and its event
    pub async fn change_address(
        &self,
        user_id: i64,
        address: &str,
        link: NewLink,
        mails: &LinkMails<'_>,
        notice: Notify<'_>,
        seen: crate::audit::Seen<'_>,
        now: i64,
    ) -> Result<AddressChange, StoreError> {
        let mut tx = self.pool().begin().await?;
        lock_sessions_of(&mut tx, self.dialect(), user_id).await?;
        let verified = verified_address(&mut tx, user_id).await?;
        if verified
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(address))
        {
            // Back to the address it has: a change waiting for its link is called off.
            expire_links(&mut tx, user_id, Some(Purpose::Verify)).await?;
            tx.commit().await?;
            return Ok(AddressChange::Unchanged);
        }
        if verified.is_none() {
            sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
                .bind(address)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Err(soon) = send_confirmation(&mut tx, user_id, address, link, mails, now).await? {
            tx.rollback().await?;
            return Ok(AddressChange::TooSoon(soon));
        }
        let event = crate::audit::Entry {
            user_id,
            kind: if verified.is_some() {
                crate::audit::Kind::AddressChangeRequested
            } else {
                crate::audit::Kind::AddressAdded
            },
            detail: "",
            seen,
            session: None,
        };
        super::audit::record(&mut tx, &event, now).await?;
        if let Some(old) = verified {
            super::outbox::enqueue(&mut tx, &notice(&old), now).await?;
        }
        tx.commit().await?;
        Ok(AddressChange::Sent)
    }

    /// What the link whose token hashes to `hash` is, for `purpose`, without spending it.
    pub async fn link_state(
        &self,
        hash: &[u8; 32],
        purpose: Purpose,
        now: i64,
    ) -> Result<LinkState, StoreError> {
        let row: Option<LinkRow> = sqlx::query_as(
            "SELECT l.user_id, l.address, l.expires_at, l.used_at, l.stamp, u.credential_stamp, \
             CASE WHEN u.email_verified_at IS NOT NULL THEN u.email END \
             FROM email_links l JOIN users u ON u.id = l.user_id \
             WHERE l.token_hash = $1 AND l.purpose = $2",
        )
        .bind(hash.as_slice())
        .bind(purpose.as_str())
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            None => LinkState::Unknown,
            Some((_, _, _, Some(_), _, _, _)) => LinkState::Used,
            // A link dies with the credentials it was sent under (a password changed or reset
            // since: whoever asked for it may have been an intruder), and a reset link with the
            // address it was sent to.
            Some((_, address, expires_at, None, stamp, current, verified))
                if expires_at <= now
                    || stamp != current
                    || (purpose == Purpose::Reset && verified.as_deref() != Some(&address)) =>
            {
                LinkState::Expired
            }
            Some((user_id, address, expires_at, None, _, _, _)) => LinkState::Live(Link {
                user_id,
                address,
                expires_at,
            }),
        })
    }

    /// Follows an address-confirming link: spent, and its address made the account's,
    /// verified, in one transaction; nothing at all when another account verified the address
    /// first.
    pub async fn confirm_address(
        &self,
        hash: &[u8; 32],
        seen: crate::audit::Seen<'_>,
        now: i64,
    ) -> Result<Confirmed, StoreError> {
        let LinkState::Live(link) = self.link_state(hash, Purpose::Verify, now).await? else {
            return Ok(Confirmed::NotLive(
                self.link_state(hash, Purpose::Verify, now).await?,
            ));
        };
        let mut tx = self.pool().begin().await?;
        // The lock order: the user's row before their links.
        lock_sessions_of(&mut tx, self.dialect(), link.user_id).await?;
        let spent: Option<String> = sqlx::query_scalar(
            "UPDATE email_links SET used_at = $1 WHERE token_hash = $2 AND purpose = 'verify' \
             AND user_id = $3 AND used_at IS NULL AND expires_at > $4 \
             AND stamp = (SELECT credential_stamp FROM users WHERE id = $5) RETURNING address",
        )
        .bind(now)
        .bind(hash.as_slice())
        .bind(link.user_id)
        .bind(now)
        .bind(link.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(address) = spent else {
            tx.rollback().await?;
            return Ok(Confirmed::NotLive(
                self.link_state(hash, Purpose::Verify, now).await?,
            ));
        };
        let before = verified_address(&mut tx, link.user_id).await?;
        let set = sqlx::query("UPDATE users SET email = $1, email_verified_at = $2 WHERE id = $3")
            .bind(&address)
            .bind(now)
            .bind(link.user_id)
            .execute(&mut *tx)
            .await;
        match set {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                tx.rollback().await?;
                return Ok(Confirmed::InUse);
            }
            Err(e) => return Err(e.into()),
        }
        // A reset link sent to the address before goes with it.
        expire_links(&mut tx, link.user_id, Some(Purpose::Reset)).await?;
        let event = crate::audit::Entry {
            user_id: link.user_id,
            kind: match before {
                Some(_) => crate::audit::Kind::AddressChanged,
                None => crate::audit::Kind::AddressVerified,
            },
            detail: "",
            seen,
            session: None,
        };
        super::audit::record(&mut tx, &event, now).await?;
        tx.commit().await?;
        Ok(Confirmed::Done {
            user_id: link.user_id,
            address,
        })
    }

    /// Follows a reset link: spent, the password and the credential stamp replaced (only if
    /// the stamp is still the one the link was sent under), every session of the account
    /// ended, and the owner told (`notice`), in one transaction, in the lock order.
    pub async fn reset_password(
        &self,
        hash: &[u8; 32],
        password_hash: &str,
        notice: Option<Notify<'_>>,
        seen: crate::audit::Seen<'_>,
        now: i64,
    ) -> Result<Reset, StoreError> {
        let LinkState::Live(link) = self.link_state(hash, Purpose::Reset, now).await? else {
            return Ok(Reset::NotLive(
                self.link_state(hash, Purpose::Reset, now).await?,
            ));
        };
        let mut tx = self.pool().begin().await?;
        lock_sessions_of(&mut tx, self.dialect(), link.user_id).await?;
        let stamp: Option<i64> = sqlx::query_scalar(
            "UPDATE email_links SET used_at = $1 WHERE token_hash = $2 AND purpose = 'reset' \
             AND user_id = $3 AND used_at IS NULL AND expires_at > $4 RETURNING stamp",
        )
        .bind(now)
        .bind(hash.as_slice())
        .bind(link.user_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let new_stamp = CredentialStamp::new();
        let changed = match stamp {
            Some(stamp) => sqlx::query(
                "UPDATE users SET password_hash = $1, credential_stamp = $2 \
                 WHERE id = $3 AND credential_stamp = $4 AND disabled_at IS NULL",
            )
            .bind(password_hash)
            .bind(new_stamp.get())
            .bind(link.user_id)
            .bind(stamp)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            None => 0,
        };
        if changed != 1 {
            tx.rollback().await?;
            return Ok(Reset::NotLive(
                self.link_state(hash, Purpose::Reset, now).await?,
            ));
        }
        let event = crate::audit::Entry {
            user_id: link.user_id,
            kind: crate::audit::Kind::PasswordReset,
            detail: "",
            seen,
            session: None,
        };
        super::audit::record(&mut tx, &event, now).await?;
        let ended = super::accounts::end_others(
            &mut tx,
            link.user_id,
            Uuid::nil(),
            crate::sessions::EndReason::PasswordReset,
            now,
        )
        .await?;
        expire_links(&mut tx, link.user_id, None).await?;
        notify_owner(&mut tx, link.user_id, notice, now).await?;
        tx.commit().await?;
        Ok(Reset::Done {
            user_id: link.user_id,
            stamp: new_stamp,
            ended,
        })
    }

    /// Drops the links made and ended before `before`.
    pub async fn purge_links(&self, before: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM email_links WHERE expires_at < $1 AND created_at < $2")
                .bind(before)
                .bind(before)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }
}
