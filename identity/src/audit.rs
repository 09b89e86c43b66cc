//! Security activity: one row per security event of an account, written in the same
//! transaction as the change it records, so that a change is never made without its event nor
//! an event without its change (`store::audit`). An ending of a session is written by the
//! database itself, in the ending's own statement (a trigger on `sessions`, both dialects).
//!
//! What a row holds: the account, the time, what happened ([`Kind`]) and a word more
//! (`detail`: a sign-in's method, why a session ended, which sign-in step failed), the client's
//! address as the throttle saw it (behind a trusted proxy, the one it named), the device (its
//! user agent, as the sessions keep it; shown in words) and the session it is about. Never a
//! password, a code, a token or a link.
//!
//! Kept for `AUDIT_RETENTION` (90 days by default), purged with the rest; an account's rows go
//! with it when it is deleted, but for the row of the deletion itself.

use std::net::IpAddr;

use serde::Serialize;
use uuid::Uuid;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A session started (`detail`: the method), from a device that had signed in before.
    SignIn,
    /// A session started from a device never seen on this account (no proof of an earlier
    /// sign-in from it).
    SignInNewDevice,
    /// A sign-in of this account failed (`detail`: `password`, or `code` for the second step).
    SignInFailed,
    /// A session ended (`detail`: why; written by the database, see the module).
    SessionEnded,
    PasswordChanged,
    PasswordReset,
    /// An address was set where there was none confirmed (on the account page).
    AddressAdded,
    /// A change of the confirmed address was asked for (a link went to the new one).
    AddressChangeRequested,
    /// The address was confirmed by its link (the first one).
    AddressVerified,
    /// A new address was confirmed in place of a confirmed one.
    AddressChanged,
    TotpAdded,
    TotpRemoved,
    RecoveryCodesRenewed,
    PasskeyAdded,
    PasskeyRemoved,
    /// The operator removed every second factor and passkey (`server admin remove-factors`).
    FactorsRemovedByOperator,
    /// The operator ended every session (`server admin end-sessions`; `detail`: how many).
    SessionsEndedByOperator,
    AccountDisabled,
    AccountEnabled,
    AccountDeleted,
}

impl Kind {
    /// Every kind, in the order of the list above.
    pub const ALL: [Kind; 20] = [
        Kind::SignIn,
        Kind::SignInNewDevice,
        Kind::SignInFailed,
        Kind::SessionEnded,
        Kind::PasswordChanged,
        Kind::PasswordReset,
        Kind::AddressAdded,
        Kind::AddressChangeRequested,
        Kind::AddressVerified,
        Kind::AddressChanged,
        Kind::TotpAdded,
        Kind::TotpRemoved,
        Kind::RecoveryCodesRenewed,
        Kind::PasskeyAdded,
        Kind::PasskeyRemoved,
        Kind::FactorsRemovedByOperator,
        Kind::SessionsEndedByOperator,
        Kind::AccountDisabled,
        Kind::AccountEnabled,
        Kind::AccountDeleted,
    ];

    /// The kind as stored and as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SignInNewDevice => "sign_in_new_device",
            Self::SignInFailed => "sign_in_failed",
            Self::SessionEnded => "session_ended",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::AddressAdded => "address_added",
            Self::AddressChangeRequested => "address_change_requested",
            Self::AddressVerified => "address_verified",
            Self::AddressChanged => "address_changed",
            Self::TotpAdded => "totp_added",
            Self::TotpRemoved => "totp_removed",
            Self::RecoveryCodesRenewed => "recovery_codes_renewed",
            Self::PasskeyAdded => "passkey_added",
            Self::PasskeyRemoved => "passkey_removed",
            Self::FactorsRemovedByOperator => "factors_removed_by_operator",
            Self::SessionsEndedByOperator => "sessions_ended_by_operator",
            Self::AccountDisabled => "account_disabled",
            Self::AccountEnabled => "account_enabled",
            Self::AccountDeleted => "account_deleted",
        }
    }

    /// The kind a stored word names.
    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == stored)
    }
}

/// Where a change came from: the client's address (as the throttle sees it) and its user
/// agent, or the operator's command line (no address; `operator`, which no client can claim:
/// it is never read from a request).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub address: Option<IpAddr>,
    pub user_agent: &'a str,
    pub operator: bool,
}

impl<'a> Seen<'a> {
    /// The operator's command line.
    pub const OPERATOR: Seen<'static> = Seen {
        address: None,
        user_agent: OPERATOR_AGENT,
        operator: true,
    };

    /// A client's request.
    pub fn client(address: Option<IpAddr>, user_agent: &'a str) -> Self {
        Self {
            address,
            user_agent,
            operator: false,
        }
    }

    /// What a row keeps of it: the address as text (or ``), the agent trimmed as a session's,
    /// and who acted (`person` or `operator`).
    pub(crate) fn stored(&self) -> (String, String, &'static str) {
        (
            self.address.map(|a| a.to_string()).unwrap_or_default(),
            crate::sessions::agent::trim_user_agent(self.user_agent),
            if self.operator { "operator" } else { "person" },
        )
    }
}

impl<'a> From<crate::email::Origin<'a>> for Seen<'a> {
    fn from(origin: crate::email::Origin<'a>) -> Self {
        Self::client(origin.address, origin.user_agent)
    }
}

/// The user agent the operator's commands are recorded with.
pub const OPERATOR_AGENT: &str = "server admin";

/// One event to write: what, a word more, where from, which session.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub user_id: i64,
    pub kind: Kind,
    pub detail: &'a str,
    pub seen: Seen<'a>,
    pub session: Option<Uuid>,
}

/// One event as read back, for the activity page, the API and the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Increasing: the key of the next page (`before`).
    pub id: i64,
    /// When (unix seconds).
    pub at: i64,
    /// What happened (see [`Kind::as_str`]).
    pub kind: String,
    /// A word more: a sign-in's method, why a session ended, which step failed.
    pub detail: String,
    /// The client's address, or `` when unknown.
    pub address: String,
    /// The device in words ("Firefox on Linux"), `The operator` for the operator's command,
    /// or `` when unknown.
    pub device: String,
    /// The session it is about, when there is one.
    pub session_id: Option<String>,
}

/// The most events one page lists.
pub const PAGE_MAX: u32 = 100;
