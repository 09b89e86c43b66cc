//! The one password check: sign-in, password change and account deletion all go through
//! [`check_password`].

use std::{net::IpAddr, sync::Arc};

use uuid::Uuid;

use super::{password::PasswordError, CredentialStamp, Credentials};
use crate::{
    store::StoreError,
    throttle::{Throttled, Via},
    tokens::access::now_unix,
    users::{ReadStamp, User},
    Auth,
};

/// Whose password is checked, and so how the attempt is counted. Its `Debug` leaves out the
/// device proofs (each one is a credential of its device).
#[derive(Clone)]
pub enum Attempt {
    /// Signing in to the account named `username` (already a valid name) from `address`, with
    /// the device proofs the client presented, the first that proves an earlier sign-in to this
    /// very account counting (see [`crate::throttle`]).
    SignIn {
        username: String,
        address: Option<IpAddr>,
        device_proofs: Vec<String>,
        /// The client's user agent, for the failed sign-in's event.
        user_agent: String,
    },
    /// The signed-in owner of `session` confirming it is them before a change to their account
    /// (the password, a deletion): counted on the session alone, not on the account's ceiling
    /// nor the address, so an attack on the account cannot stop its owner from changing the
    /// password.
    SignedIn { user_id: i64, session: Uuid },
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SignIn {
                address,
                device_proofs,
                ..
            } => f
                .debug_struct("SignIn")
                .field("address", address)
                .field("device_proofs", &device_proofs.len())
                .finish_non_exhaustive(),
            Self::SignedIn { user_id, session } => f
                .debug_struct("SignedIn")
                .field("user_id", user_id)
                .field("session", session)
                .finish(),
        }
    }
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
    /// Whether the account has a verified address.
    pub(crate) has_address: bool,
    /// Whether the account asks for a second factor after the password.
    pub second_factor: bool,
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
    /// The password was right, but the operator disabled the account.
    #[error("the account is disabled")]
    Disabled,
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
    let mut agent = String::new();
    let (found, counted) = match attempt {
        Attempt::SignIn {
            username,
            address,
            device_proofs,
            user_agent,
        } => {
            agent = user_agent;
            let counting = auth.clone();
            let (found, via, username) = tokio::spawn(async move {
                count_sign_in(&counting, &username, address, &device_proofs).await
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
        (false, Some(found)) => {
            if let Counted::SignIn { address, .. } = &counted {
                failed_sign_in(auth, found.id, *address, agent);
            }
            return Err(CheckError::Wrong);
        }
        _ => return Err(CheckError::Wrong),
    };
    // Told only to whoever knows the password: a disabled account is not revealed to a guess.
    if found.disabled_at.is_some() {
        return Err(CheckError::Disabled);
    }
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
        has_address: found.email.is_some(),
        second_factor: found.second_factor != 0,
    })
}

/// Records a failed sign-in of account `user_id` (a known account: an unknown name has no
/// activity to show), off the answer's path: a write only for known accounts, waited for,
/// would tell a guesser which names exist by the time the answer takes.
fn failed_sign_in(auth: &Arc<Auth>, user_id: i64, address: Option<IpAddr>, user_agent: String) {
    let store = auth.health.store().clone();
    tokio::spawn(async move {
        let entry = crate::audit::Entry {
            user_id,
            kind: crate::audit::Kind::SignInFailed,
            detail: "password",
            seen: crate::audit::Seen::client(address, &user_agent),
            session: None,
        };
        let now = crate::tokens::access::now_unix();
        if let Err(e) = store.record_event(&entry, now).await {
            tracing::warn!(error = %e, "recording a failed sign-in failed");
        }
    });
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

/// Counts a sign-in attempt on the account `login` names (a username, or a confirmed address)
/// from `address`: on the address first, before the account is even looked up, then on the
/// device of the first of `proofs` that proves an earlier sign-in to this very account from
/// this client, else (no proof, or another account's, forged, expired) on the pair and the
/// account's ceiling. An account is counted under its username however it was named, so its
/// username and its address share one allowance; a name that is no account's is counted under
/// what was typed. The account's credentials, if it exists, how the attempt was counted, and
/// the name it was counted under.
async fn count_sign_in(
    auth: &Auth,
    login: &str,
    address: Option<IpAddr>,
    proofs: &[String],
) -> Result<(Option<Credentials>, Via, String), CheckError> {
    auth.throttle
        .sign_in_from(address)
        .await
        .map_err(CheckError::Throttled)?;
    let found = auth.users.credentials(login).await?;
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
    let counted_as = found
        .as_ref()
        .map_or_else(|| login.to_owned(), |c| c.username.clone());
    let via = auth
        .throttle
        .sign_in(&counted_as, address, device)
        .await
        .map_err(CheckError::Throttled)?;
    Ok((found, via, counted_as))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        credentials::password::Passwords,
        testing,
        throttle::{Limit, PAIR_BURST, SESSION_BURST},
        users,
    };

    const PASSWORD: &str = "correct horse battery";

    /// A core whose hasher has `queue` places, and the account "alice": its id.
    async fn core(queue: usize) -> (tempfile::TempDir, Arc<Auth>, i64) {
        let (dir, pool, auth) = testing::auth().await;
        let auth = Auth {
            passwords: Passwords::with_queue(1, queue).unwrap(),
            ..auth
        };
        let hash = auth.passwords.hash(PASSWORD.into()).await.unwrap();
        let id = users::create(&pool, "alice", &hash).await.unwrap().id;
        (dir, Arc::new(auth), id)
    }

    fn sign_in(username: &str) -> Attempt {
        Attempt::SignIn {
            username: username.into(),
            address: Some([192, 0, 2, 1].into()),
            device_proofs: Vec::new(),
            user_agent: "test".into(),
        }
    }

    async fn check(
        auth: &Arc<Auth>,
        attempt: Attempt,
        password: &str,
    ) -> Result<Checked, CheckError> {
        check_password(auth, attempt, Some(password.into())).await
    }

    /// A wrong password and an unknown user: the same answer, after the same work (one hash,
    /// the dummy one for the unknown user) and the same count.
    #[tokio::test]
    async fn an_unknown_user_and_a_wrong_password_take_the_same_path() {
        let (_dir, auth, id) = core(8).await;
        let hashed = auth.passwords.started();
        let wrong = check(&auth, sign_in("alice"), "not the password").await;
        assert!(matches!(wrong, Err(CheckError::Wrong)), "{wrong:?}");
        assert_eq!(auth.passwords.started(), hashed + 1);
        let unknown = check(&auth, sign_in("nobody"), PASSWORD).await;
        assert!(matches!(unknown, Err(CheckError::Wrong)), "{unknown:?}");
        assert_eq!(auth.passwords.started(), hashed + 2);
        // Each counted on the address, its pair and its account's ceiling, account or not.
        let tracked = |limit| auth.throttle.tracked(limit);
        assert_eq!(
            (
                tracked(Limit::Address),
                tracked(Limit::Pair),
                tracked(Limit::Account)
            ),
            (1, 2, 2)
        );

        // The right one: the account, its stamp as stored, the way it was counted, whose
        // record it forgives (the pair's), not the address's nor the ceiling's.
        let checked = check(&auth, sign_in("ALICE"), PASSWORD).await.unwrap();
        assert_eq!(auth.passwords.started(), hashed + 3);
        assert_eq!(
            (checked.user.id, checked.user.username.as_str()),
            (id, "alice")
        );
        let stored = auth.users.credentials_of(id).await.unwrap().unwrap().stamp;
        assert_eq!(checked.stamp, stored);
        assert_eq!(checked.via, Some(Via::Unknown));
        assert_eq!(
            (
                tracked(Limit::Address),
                tracked(Limit::Pair),
                tracked(Limit::Account)
            ),
            (1, 1, 2)
        );
    }

    /// The database's health is asked first, then the hashing queue, then the throttle, and
    /// the hash comes last: each refusal happens before the work of the steps after it.
    #[tokio::test]
    async fn health_then_ticket_then_count_then_hash() {
        let (_dir, auth, _) = core(1).await;
        let held = auth.passwords.ticket().unwrap();
        // Down, with the queue full too: down is the answer, and nothing is counted.
        auth.health.observe(&sqlx::Error::PoolTimedOut);
        let down = check(&auth, sign_in("alice"), PASSWORD).await;
        assert!(matches!(down, Err(CheckError::DatabaseDown)), "{down:?}");
        // The probe finds the file opens again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while auth.health.is_down() {
            assert!(std::time::Instant::now() < deadline, "still down");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The queue full: refused before the count.
        let hashed = auth.passwords.started();
        for attempt in [
            sign_in("alice"),
            Attempt::SignedIn {
                user_id: 1,
                session: uuid::Uuid::new_v4(),
            },
        ] {
            let busy = check(&auth, attempt, PASSWORD).await;
            assert!(matches!(busy, Err(CheckError::Busy)), "{busy:?}");
        }
        assert_eq!(auth.throttle.tracked(Limit::Address), 0);
        assert_eq!(auth.throttle.tracked(Limit::Session), 0);
        drop(held);
        // The pair's allowance spent on wrong guesses (each hashed), the next attempt is
        // refused by the count, with no hash, even with the right password.
        for _ in 0..PAIR_BURST {
            let wrong = check(&auth, sign_in("alice"), "not the password").await;
            assert!(matches!(wrong, Err(CheckError::Wrong)), "{wrong:?}");
        }
        assert_eq!(auth.passwords.started(), hashed + PAIR_BURST as usize);
        let throttled = check(&auth, sign_in("alice"), PASSWORD).await;
        assert!(
            matches!(
                throttled,
                Err(CheckError::Throttled(Throttled::TooMany { .. }))
            ),
            "{throttled:?}"
        );
        assert_eq!(auth.passwords.started(), hashed + PAIR_BURST as usize);
    }

    /// A signed-in check counts on its session alone (not the address, the pair nor the
    /// account), a password outside the rules included (counted, never hashed); a right
    /// password forgives the session's count.
    #[tokio::test]
    async fn a_signed_in_check_counts_on_its_session_alone() {
        let (_dir, auth, id) = core(8).await;
        let session = uuid::Uuid::new_v4();
        let confirm = |session| Attempt::SignedIn {
            user_id: id,
            session,
        };
        let hashed = auth.passwords.started();
        let unhashed = check_password(&auth, confirm(session), None).await;
        assert!(matches!(unhashed, Err(CheckError::Wrong)), "{unhashed:?}");
        assert_eq!(auth.passwords.started(), hashed);
        for _ in 1..SESSION_BURST {
            let wrong = check(&auth, confirm(session), "not the password").await;
            assert!(matches!(wrong, Err(CheckError::Wrong)), "{wrong:?}");
        }
        let throttled = check(&auth, confirm(session), PASSWORD).await;
        assert!(
            matches!(throttled, Err(CheckError::Throttled(_))),
            "{throttled:?}"
        );
        assert_eq!(
            auth.passwords.started(),
            hashed + SESSION_BURST as usize - 1
        );
        let tracked = |limit| auth.throttle.tracked(limit);
        assert_eq!(
            (
                tracked(Limit::Address),
                tracked(Limit::Pair),
                tracked(Limit::Account)
            ),
            (0, 0, 0)
        );
        // Another session of the same account is not held back, and a right password there
        // forgives its count.
        let other = uuid::Uuid::new_v4();
        let checked = check(&auth, confirm(other), PASSWORD).await.unwrap();
        assert_eq!((checked.user.id, checked.via), (id, None));
        assert_eq!(tracked(Limit::Session), 1);
        // An account that is gone: no hash, and its own answer.
        let gone = check(
            &auth,
            Attempt::SignedIn {
                user_id: id + 1,
                session: other,
            },
            PASSWORD,
        )
        .await;
        assert!(matches!(gone, Err(CheckError::Gone)), "{gone:?}");
    }
}
