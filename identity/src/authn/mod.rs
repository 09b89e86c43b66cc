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
//!      starts ([`Pending`]). Not produced yet: no account has a second factor. The issue that
//!      adds one adds the step that turns a `Pending` and that factor into a `Proof`; the door
//!      and the session's start stay as they are.
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
    /// The account asks for another factor first (none does yet).
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
}

impl Proof {
    fn passed(checked: Checked, via: Via) -> Self {
        Self {
            user: checked.user,
            stamp: checked.stamp,
            via,
            read: checked.read,
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
        }
    }

    pub fn user(&self) -> &User {
        &self.user
    }

    pub fn stamp(&self) -> CredentialStamp {
        self.stamp
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
/// what the first one proved; nothing turns it into a [`Proof`] yet.
#[derive(Debug)]
pub struct Pending {
    first: Proof,
}

impl Pending {
    /// The user signing in.
    pub fn user(&self) -> &User {
        self.first.user()
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
) -> Result<Step, CheckError> {
    let attempt = Attempt::SignIn {
        username: username.to_owned(),
        address,
        device_proofs,
    };
    let checked = check_password(auth, attempt, Some(password)).await?;
    // Counted as a sign-in, so counted on a way in.
    let via = checked.via.unwrap_or(Via::Unknown);
    // No account has a second factor yet: a right password is every factor there is.
    Ok(Step::Done(Proof::passed(checked, via)))
}

impl Auth {
    /// Starts a session for the user `proof` is about, and hands out its tokens. `None` when
    /// the account's credentials changed (or the account went) since they were checked: the
    /// session is written only if the proof's credential stamp is still the account's.
    pub async fn start_session(
        &self,
        proof: &Proof,
        user_agent: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<Issued>, IssueError> {
        let now = crate::jwt::now_unix();
        let started = self
            .sessions
            .create(proof.user.id, proof.stamp, user_agent, address, now)
            .await?;
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
