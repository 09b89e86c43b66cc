//! Credentials: what a person proves who they are with. Today a password ([`password`]: the
//! hashing and its queue), checked by [`check_password`], the one way a password is checked, for
//! a sign-in ([`crate::authn`]) and for the password checks of a signed-in person (changing the
//! password, deleting the account) alike.
//!
//! Every account has a **credential stamp** (`users.credential_stamp`, [`CredentialStamp`]): a
//! number replaced whenever its credentials change. A check reads it with the credential, and
//! a session is started only if it is still the account's when the session is written
//! ([`crate::store::Store::start_session`]): whatever else a sign-in may one day present (a
//! passkey, a second factor), the guard against a change racing it stays this one number.

mod check;
pub mod password;

pub use check::{check_password, Attempt, CheckError, Checked};

use crate::users::User;

/// An account's credential stamp: a random number, replaced by a new one at every change of the
/// account's credentials (today: its password). Random rather than counted: SQLite hands a
/// deleted account's id to the next account, which must not hold a stamp that a sign-in of the
/// deleted one read. Not a secret: it names a version of the credentials, and proves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialStamp(pub(crate) i64);

impl CredentialStamp {
    /// A new random stamp.
    pub(crate) fn new() -> Self {
        Self(rand::random())
    }

    /// As stored.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl From<i64> for CredentialStamp {
    fn from(stored: i64) -> Self {
        Self(stored)
    }
}

/// An account as a credential check needs it: the row, stored hash and stamp included. Not
/// `Serialize` nor `Debug`: it can never reach a response or a log.
#[derive(sqlx::FromRow)]
pub struct Credentials {
    pub id: i64,
    pub username: String,
    pub created_at: i64,
    pub password_hash: String,
    #[sqlx(rename = "credential_stamp", try_from = "i64")]
    pub stamp: CredentialStamp,
    /// The account's verified address, if it has one (where its notices go).
    pub email: Option<String>,
    /// 1 when a sign-in with the password must then pass a second factor (TOTP is on), else 0
    /// (an integer: the one type both databases give an expression).
    pub second_factor: i64,
    /// When the operator disabled the account (`server admin disable`), if they did.
    pub disabled_at: Option<i64>,
}

impl Credentials {
    /// The user, without the hash.
    pub fn user(&self) -> User {
        User {
            id: self.id,
            username: self.username.clone(),
            created_at: self.created_at,
        }
    }
}
