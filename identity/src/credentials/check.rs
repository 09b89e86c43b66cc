//! The one password check: sign-in, password change and account deletion all go through
//! [`check_password`].

use std::{net::IpAddr, sync::Arc};

use uuid::Uuid;

use super::{password::PasswordError, CredentialStamp, Credentials};
use crate::{
    jwt::now_unix,
    store::StoreError,
    throttle::{Throttled, Via},
    users::{ReadStamp, User},
    Auth,
};

/// Whose password is checked, and so how the attempt is counted.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// Signing in to the account named `username` (already a valid name) from `address`, with
    /// the device proofs the client presented, the first that proves an earlier sign-in to this
    /// very account counting (see [`crate::throttle`]).
    SignIn {
        username: String,
        address: Option<IpAddr>,
        device_proofs: Vec<String>,
    },
    /// The signed-in owner of `session` confirming it is them before a change to their account
    /// (the password, a deletion): counted on the session alone, not on the account's ceiling
    /// nor the address, so an attack on the account cannot stop its owner from changing the
    /// password.
    SignedIn { user_id: i64, session: Uuid },
}

/// A password that was right.
#[derive(Debug)]
pub struct Checked {
    pub user: User,
    /// The account's credential stamp, read with the hash that was checked.
    pub stamp: CredentialStamp,
    /// How a sign-in was counted (`None` for a signed-in check).
    pub via: Option<Via>,
    /// Where the users kept in memory stood before the account was read.
    pub(crate) read: ReadStamp,
}

/// Why a password check let nobody through. Every refusal before [`CheckError::Wrong`] happens
/// before any password work.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The database is known to be unreachable: refused before the attempt is counted.
    #[error("the database cannot be reached")]
    DatabaseDown,
    /// The hashing queue is full (see [`super::password::Passwords`]): refused before any other
    /// work, the attempt not even counted.
    #[error("too many requests are waiting for a password check")]
    Busy,
    /// The throttle did not let the attempt through.
    #[error("throttled: {0:?}")]
    Throttled(Throttled),
    /// The wrong password, or (signing in) no such account: the same answer after the same
    /// work.
    #[error("wrong password")]
    Wrong,
    /// The signed-in user's account is gone.
    #[error("the account is gone")]
    Gone,
    #[error("looking up a user failed: {0}")]
    Store(#[from] StoreError),
    #[error("password verification failed: {0}")]
    Hash(#[from] PasswordError),
    /// The task that counts the attempt failed.
    #[error("counting the attempt failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Checks `password` for `attempt`, in this order:
///
/// 1. the database's health: known to be unreachable, refused at once (nothing counted);
/// 2. a place in the hashing queue ([`Ticket`](super::password::Ticket)): refused when it is
///    full, before any other work;
/// 3. the count ([`crate::throttle`]), before any password work, in a task of its own: parallel
///    guesses cannot outrun the count, and a client that hangs up (while the count waits for the
///    database, or later during the hash) has still used its attempt. Signing in, it is counted
///    on the address first, then the account is read, then the attempt is counted on the device
///    of a valid proof for this account, else on the pair and the account's ceiling; signed in,
///    on the session, then the account is read;
/// 4. the hash verified, against a dummy hash when signing in to an account that does not
///    exist: an unknown user and a wrong password take the same work and time;
/// 5. a right password forgives the count of the way it came (the pair or the device, the
///    session); a wrong one keeps it.
///
/// `password` is `None` when what was typed breaks the password rules, so is no account's
/// password: counted, then refused as wrong without hashing. (A sign-in refuses such input
/// before calling this, so that it does not even fill the throttle's memory.)
pub async fn check_password(
    auth: &Arc<Auth>,
    attempt: Attempt,
    password: Option<String>,
) -> Result<Checked, CheckError> {
    auth.health.check().map_err(|_| CheckError::DatabaseDown)?;
    let ticket = auth.passwords.ticket().map_err(|_| CheckError::Busy)?;
    // Taken before the account is read: a user deleted meanwhile is not put back in memory.
    let read = auth.users.stamp();
    let (found, counted) = match attempt {
        Attempt::SignIn {
            username,
            address,
            device_proofs,
        } => {
            let counting = auth.clone();
            let (found, via, username) = tokio::spawn(async move {
                count_sign_in(&counting, &username, address, &device_proofs)
                    .await
                    .map(|(found, via)| (found, via, username))
            })
            .await??;
            let counted = Counted::SignIn {
                username,
                address,
                via,
            };
            (found, counted)
        }
        Attempt::SignedIn { user_id, session } => {
            let counting = auth.clone();
            tokio::spawn(async move { counting.throttle.password_check(session).await })
                .await?
                .map_err(CheckError::Throttled)?;
            let found = auth.users.credentials_of(user_id).await?;
            (
                Some(found.ok_or(CheckError::Gone)?),
                Counted::Session(session),
            )
        }
    };
    let right = match password {
        // Unknown users are verified against the dummy hash: same work, same time.
        Some(password) => {
            let hash = found.as_ref().map(|c| c.password_hash.clone());
            ticket.verify(password, hash).await?
        }
        None => false,
    };
    let found = match (right, found) {
        (true, Some(found)) => found,
        _ => return Err(CheckError::Wrong),
    };
    let via = match counted {
        Counted::SignIn {
            username,
            address,
            via,
        } => {
            auth.throttle.signed_in(&username, address, via).await;
            Some(via)
        }
        Counted::Session(session) => {
            auth.throttle.password_checked(session).await;
            None
        }
    };
    Ok(Checked {
        user: found.user(),
        stamp: found.stamp,
        via,
        read,
    })
}

/// How an attempt was counted: what a right password forgives.
enum Counted {
    SignIn {
        username: String,
        address: Option<IpAddr>,
        via: Via,
    },
    Session(Uuid),
}

/// Counts a sign-in attempt on `username` from `address`: on the address first, before the
/// account is even looked up, then on the device of the first of `proofs` that proves an
/// earlier sign-in to this very account from this client, else (no proof, or another
/// account's, forged, expired) on the pair and the account's ceiling. The account's
/// credentials, if it exists, and how the attempt was counted.
async fn count_sign_in(
    auth: &Auth,
    username: &str,
    address: Option<IpAddr>,
    proofs: &[String],
) -> Result<(Option<Credentials>, Via), CheckError> {
    auth.throttle
        .sign_in_from(address)
        .await
        .map_err(CheckError::Throttled)?;
    let found = auth.users.credentials(username).await?;
    let now = now_unix();
    let device = found.as_ref().and_then(|c| {
        let account = crate::device::Account {
            user_id: c.id,
            created_at: c.created_at,
        };
        proofs
            .iter()
            .find_map(|proof| auth.devices.verify(proof, account, now))
    });
    let via = auth
        .throttle
        .sign_in(username, address, device)
        .await
        .map_err(CheckError::Throttled)?;
    Ok((found, via))
}
