//! Sign-in, as steps.
//!
//! 1. **A first factor.** [`sign_in`] checks a username and password with
//!    [`check_password`](crate::credentials::check_password), the one password check (the
//!    database's health, a place in the hashing queue, the throttle's count, the hash or the
//!    dummy hash, the count forgiven or kept). A wrong password, an unknown user, a refusal
//!    stop here, as a [`CheckError`]. A right password gives a [`Step`]:
//!    - [`Step::Done`]: a [`Proof`] that this user passed every factor their account asks for,
//!      carrying the user and the credential stamp read with the password;
//!    - [`Step::AnotherFactorNeeded`]: the account asks for another factor before a session
//!      starts ([`Pending`]): TOTP is on. The door keeps it
//!      ([`Auth::hold_sign_in`](crate::Auth::hold_sign_in)) and the second step
//!      ([`Auth::finish_sign_in`](crate::Auth::finish_sign_in)) turns it and a code into a
//!      `Proof`.
//! 2. **The session.** [`Auth::start_session`] takes the proof (nothing else starts a session)
//!    and writes the session only if the proof's credential stamp is still the account's, in
//!    the statement that writes it: a sign-in whose check ran while the password changed or the
//!    account was deleted starts nothing (`None`), whatever its factors were. Its tokens are
//!    then issued, and the user is kept in memory, so they are checked from memory from their
//!    first use on.
//!
//! What the door does around the steps (reading the form, the device proof it hands out, the
//! cookies) stays in the app.

use std::{net::IpAddr, sync::Arc};

use crate::{
    credentials::{check_password, Attempt, CheckError, Checked, CredentialStamp},
    device,
    factors::Method,
    throttle::Via,
    users::{ReadStamp, User},
    Auth, IssueError, Issued,
};

/// Where a sign-in stands after a factor was checked.
#[derive(Debug)]
#[must_use]
pub enum Step {
    /// Signed in: start the session with the proof ([`Auth::start_session`]).
    Done(Proof),
    /// The account asks for another factor first (TOTP is on).
    AnotherFactorNeeded(Pending),
}

/// Proof that a user passed every factor of their account just now: what starting a session
/// takes. Made only by the sign-in's steps (no public constructor), used once.
#[derive(Debug)]
pub struct Proof {
    user: User,
    /// The account's credential stamp when its credentials were checked.
    stamp: CredentialStamp,
    /// How the attempt was counted (the device, or the pair).
    via: Via,
    /// Where the users kept in memory stood before the account was read.
    read: ReadStamp,
    /// Whether the account has a verified address (a sign-in from a new device tells it).
    has_address: bool,
    /// How the user signed in (the session records it).
    method: Method,
}

impl Proof {
    fn passed(checked: Checked, via: Via) -> Self {
        Self {
            user: checked.user,
            stamp: checked.stamp,
            via,
            read: checked.read,
            has_address: checked.has_address,
            method: Method::Password,
        }
    }

    /// The proof of a sign-in whose second step passed (see
    /// [`Auth::finish_sign_in`](crate::Auth::finish_sign_in)).
    pub(crate) fn second_factor(
        user: User,
        stamp: CredentialStamp,
        via: Via,
        read: ReadStamp,
        has_address: bool,
        method: Method,
    ) -> Self {
        Self {
            user,
            stamp,
            via,
            read,
            has_address,
            method,
        }
    }

    /// The proof a reset link gives, once it has set a new password (whose stamp is `stamp`):
    /// a full sign-in, from no known device (a reset sends its own notice).
    pub(crate) fn by_link(user: User, stamp: CredentialStamp, read: ReadStamp) -> Self {
        Self {
            user,
            stamp,
            via: Via::Unknown,
            read,
            has_address: false,
            method: Method::ResetLink,
        }
    }

    /// A proof for `user` whose credentials carry `stamp`, as if they had just signed in, for
    /// tests (see [`crate::testing::proof`]).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn for_tests(user: User, stamp: CredentialStamp, read: ReadStamp) -> Self {
        Self {
            user,
            stamp,
            via: Via::Unknown,
            read,
            has_address: false,
            method: Method::Password,
        }
    }

    pub fn user(&self) -> &User {
        &self.user
    }

    pub fn stamp(&self) -> CredentialStamp {
        self.stamp
    }

    /// How the user signed in.
    pub fn method(&self) -> Method {
        self.method
    }

    /// How the sign-in was counted: through a known device's proof, or not.
    pub fn via(&self) -> Via {
        self.via
    }

    /// The account, as device proofs name it ([`device::Account`]).
    pub fn account(&self) -> device::Account {
        device::Account {
            user_id: self.user.id,
            created_at: self.user.created_at,
        }
    }
}

/// A sign-in that passed a first factor and must pass another before a session starts. Holds
/// what the first one proved.
#[derive(Debug)]
pub struct Pending {
    first: Proof,
}

impl Pending {
    /// The user signing in.
    pub fn user(&self) -> &User {
        self.first.user()
    }

    /// What the first factor proved.
    pub(crate) fn first(&self) -> &Proof {
        &self.first
    }
}

/// The first step of a sign-in: `password` checked for the account named `username` (already a
/// valid name), from `address`, with the device proofs the client presented (see
/// [`Attempt::SignIn`]). A wrong password and an unknown user give the same
/// [`CheckError::Wrong`] after the same work.
pub async fn sign_in(
    auth: &Arc<Auth>,
    username: &str,
    address: Option<IpAddr>,
    device_proofs: Vec<String>,
    password: String,
    user_agent: &str,
) -> Result<Step, CheckError> {
    let attempt = Attempt::SignIn {
        username: username.to_owned(),
        address,
        device_proofs,
        user_agent: user_agent.to_owned(),
    };
    let checked = check_password(auth, attempt, Some(password)).await?;
    // Counted as a sign-in, so counted on a way in.
    let via = checked.via.unwrap_or(Via::Unknown);
    let second_factor = checked.second_factor;
    let first = Proof::passed(checked, via);
    if second_factor {
        return Ok(Step::AnotherFactorNeeded(Pending { first }));
    }
    Ok(Step::Done(first))
}

impl Auth {
    /// Starts a session for the user `proof` is about, and hands out its tokens. `None` when
    /// the account's credentials changed (or the account went) since they were checked: the
    /// session is written only if the proof's credential stamp is still the account's.
    /// A sign-in from a device not seen before on this account (no proof of an earlier
    /// sign-in from it) tells the account's verified address, in the session's transaction.
    pub async fn start_session(
        &self,
        proof: &Proof,
        user_agent: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<Issued>, IssueError> {
        let now = crate::tokens::access::now_unix();
        let told = crate::email::Told::new(
            crate::email::Origin {
                user_agent,
                address,
            },
            now,
        );
        let notice = |to: &str| {
            self.mail(
                Some(proof.user.id),
                to,
                &crate::mail::compose::Notice::NewSignIn {
                    username: &proof.user.username,
                    event: told.event(),
                },
            )
        };
        let new_device =
            self.mail.enabled && proof.has_address && !matches!(proof.via, Via::Device(_));
        let started = self
            .sessions
            .create(
                proof.user.id,
                proof.stamp,
                user_agent,
                address,
                now,
                new_device.then_some(&notice as crate::store::email::Notify<'_>),
                proof.method,
                !matches!(proof.via, Via::Device(_)),
            )
            .await?;
        if new_device && started.is_some() {
            self.mail.wake.wake();
        }
        let Some(current) = started else {
            return Ok(None);
        };
        let issued = self.issue(&current, now)?;
        // The row just checked is the account's as the session was written: its tokens are
        // checked from memory from their first use on, even if the database is gone by then.
        self.users.remember(proof.user.clone(), proof.read);
        Ok(Some(issued))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{testing, users};

    const PASSWORD: &str = "correct horse battery";

    /// A core with the account "alice" (id 1).
    async fn core() -> (tempfile::TempDir, crate::store::Pool, Arc<Auth>) {
        let (dir, pool, auth) = testing::auth().await;
        let hash = auth.passwords.hash(PASSWORD.into()).await.unwrap();
        assert_eq!(users::create(&pool, "alice", &hash).await.unwrap().id, 1);
        (dir, pool, Arc::new(auth))
    }

    async fn signed_in(auth: &Arc<Auth>, password: &str) -> Result<Proof, CheckError> {
        match sign_in(auth, "alice", None, Vec::new(), password.into(), "test").await? {
            Step::Done(proof) => Ok(proof),
            Step::AnotherFactorNeeded(pending) => panic!("{pending:?}"),
        }
    }

    async fn live_sessions(auth: &Auth, user: i64) -> Vec<uuid::Uuid> {
        let now = crate::tokens::access::now_unix();
        let listed = auth.sessions.list(user, now).await.unwrap();
        listed.into_iter().map(|s| s.id.0).collect()
    }

    /// A right password is the whole sign-in today: done, with a proof of the user and the
    /// stamp read, which starts a session and keeps the user in memory. A wrong one is no step.
    #[tokio::test]
    async fn a_right_password_is_done_and_its_proof_starts_a_session() {
        let (_dir, _pool, auth) = core().await;
        assert!(matches!(
            signed_in(&auth, "not the password").await,
            Err(CheckError::Wrong)
        ));
        let proof = signed_in(&auth, PASSWORD).await.unwrap();
        let stored = auth.users.credentials_of(1).await.unwrap().unwrap();
        assert_eq!((proof.user().id, proof.stamp()), (1, stored.stamp));
        assert_eq!(proof.via(), Via::Unknown);
        assert_eq!(proof.account().created_at, stored.created_at);
        assert_eq!(auth.users.len(), 0);
        let issued = auth
            .start_session(&proof, "test", None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(issued.user_id, 1);
        assert_eq!(live_sessions(&auth, 1).await, vec![issued.session_id]);
        assert_eq!(auth.users.len(), 1);
    }

    /// A sign-in whose password was checked before a password change, and whose session is
    /// started after it, starts none: the change replaced the credential stamp the proof
    /// carries. The new password signs in.
    #[tokio::test]
    async fn a_sign_in_whose_check_raced_a_password_change_starts_no_session() {
        let (_dir, _pool, auth) = core().await;
        let changer = signed_in(&auth, PASSWORD).await.unwrap();
        let changer = auth
            .start_session(&changer, "changer", None)
            .await
            .unwrap()
            .unwrap();
        let raced = signed_in(&auth, PASSWORD).await.unwrap();
        let hash = auth.passwords.hash("a new password".into()).await.unwrap();
        let now = crate::tokens::access::now_unix();
        auth.change_password(1, changer.session_id, &hash, now, testing::ORIGIN)
            .await
            .unwrap()
            .unwrap();
        assert!(auth
            .start_session(&raced, "raced", None)
            .await
            .unwrap()
            .is_none());
        assert_eq!(live_sessions(&auth, 1).await, vec![changer.session_id]);
        // The stamp moved on; a sign-in with the new password goes through.
        let proof = signed_in(&auth, "a new password").await.unwrap();
        assert_ne!(proof.stamp(), raced.stamp());
        assert!(auth
            .start_session(&proof, "after", None)
            .await
            .unwrap()
            .is_some());
    }

    /// The same race with the account's deletion, and a new account given the deleted one's
    /// id (SQLite hands it out again): no session starts for either.
    #[tokio::test]
    async fn a_sign_in_whose_check_raced_the_deletion_starts_no_session_for_the_next_account() {
        let (_dir, pool, auth) = core().await;
        let raced = signed_in(&auth, PASSWORD).await.unwrap();
        assert!(auth
            .delete_account(
                1,
                crate::tokens::access::now_unix(),
                testing::ORIGIN,
                "owner"
            )
            .await
            .unwrap());
        let next = users::create(&pool, "bob", "hash").await.unwrap();
        assert_eq!(next.id, 1);
        assert!(auth
            .start_session(&raced, "raced", None)
            .await
            .unwrap()
            .is_none());
        assert!(live_sessions(&auth, 1).await.is_empty());
    }

    /// Sign-ins and a password change at once, 64 of them: whatever the order, the only
    /// session left live is the one the password was changed in. A sign-in that wrote its
    /// session before the change was ended by it; one after it started nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sign_ins_racing_a_password_change_leave_only_the_changers_session() {
        let (_dir, _pool, auth) = core().await;
        let changer = signed_in(&auth, PASSWORD).await.unwrap();
        let changer = auth
            .start_session(&changer, "changer", None)
            .await
            .unwrap()
            .unwrap();
        let mut proofs = Vec::new();
        for _ in 0..64 {
            proofs.push(testing::proof(&auth, 1).await);
        }
        let hash = auth.passwords.hash("a new password".into()).await.unwrap();
        // Spread over 32 ms, the change at 10 ms: some sign-ins write before it, some after.
        let ms = |ms: u64| tokio::time::sleep(std::time::Duration::from_micros(ms * 500));
        let starts: Vec<_> = proofs
            .into_iter()
            .zip(0..)
            .map(|(proof, i)| {
                let auth = auth.clone();
                tokio::spawn(async move {
                    ms(i).await;
                    auth.start_session(&proof, "raced", None).await
                })
            })
            .collect();
        let change = {
            let auth = auth.clone();
            tokio::spawn(async move {
                ms(20).await;
                auth.change_password(
                    1,
                    changer.session_id,
                    &hash,
                    crate::tokens::access::now_unix(),
                    testing::ORIGIN,
                )
                .await
            })
        };
        let mut started = Vec::new();
        for start in starts {
            if let Some(issued) = start.await.unwrap().unwrap() {
                started.push(issued.session_id);
            }
        }
        change.await.unwrap().unwrap().unwrap();
        assert_eq!(live_sessions(&auth, 1).await, vec![changer.session_id]);
        for id in started {
            assert!(auth.sessions.is_ended(&id));
        }
    }
}
