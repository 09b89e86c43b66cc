//! The words of every mail the service sends, in plain text and in HTML.
//!
//! STUB: the interface is fixed (the rest of the core calls it); the words are being written.

use super::{MailKind, OutgoingMail};

/// What the mails call the service, and where their links point.
#[derive(Debug, Clone)]
pub struct Site {
    /// The service's name, as a person sees it in a subject line.
    pub name: String,
    /// `https://example.com`: the public address of the site, without a trailing slash.
    pub public_url: String,
}

/// Where and when something happened, as a notice tells it (already in words).
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// e.g. `5 December 2026, 00:52 UTC` (see [`when`]).
    pub when: &'a str,
    /// The device in words, e.g. `Firefox on Linux`.
    pub device: &'a str,
    /// The client's network address, e.g. `203.0.113.7`, or `unknown`.
    pub address: &'a str,
}

/// A mail to compose.
#[derive(Debug, Clone, Copy)]
pub enum Notice<'a> {
    /// A link that confirms an address: after sign-up (`change: false`) or to make it the
    /// account's new address (`change: true`).
    VerifyAddress {
        username: &'a str,
        link: &'a str,
        valid_minutes: i64,
        change: bool,
    },
    /// Someone signed up with this address, which is already an account's: no link, no name
    /// of the account beyond what its owner knows; how to sign in or reset instead.
    AddressInUse,
    /// A link that sets a new password.
    ResetPassword {
        username: &'a str,
        link: &'a str,
        valid_minutes: i64,
    },
    /// The password was changed (signed in) or reset (through a mailed link).
    PasswordChanged {
        username: &'a str,
        by_reset: bool,
        event: Event<'a>,
    },
    /// A sign-in from a device not seen before on this account.
    NewSignIn { username: &'a str, event: Event<'a> },
    /// To the old address: the account's address is being changed to `new_address`.
    AddressChanging {
        username: &'a str,
        new_address: &'a str,
        event: Event<'a>,
    },
    /// The account was deleted.
    AccountDeleted { username: &'a str, event: Event<'a> },
}

impl Notice<'_> {
    pub fn kind(&self) -> MailKind {
        match self {
            Self::VerifyAddress { .. } => MailKind::VerifyAddress,
            Self::AddressInUse => MailKind::AddressInUse,
            Self::ResetPassword { .. } => MailKind::ResetPassword,
            Self::PasswordChanged { .. } => MailKind::PasswordChanged,
            Self::NewSignIn { .. } => MailKind::NewSignIn,
            Self::AddressChanging { .. } => MailKind::AddressChanging,
            Self::AccountDeleted { .. } => MailKind::AccountDeleted,
        }
    }
}

/// The mail telling `notice` to `to` (an address already normalised), about account `user_id`.
pub fn compose(site: &Site, notice: &Notice<'_>, user_id: Option<i64>, to: &str) -> OutgoingMail {
    let subject = format!("{}: {}", site.name, notice.kind().as_str());
    let text = format!("{notice:?}");
    OutgoingMail {
        kind: notice.kind(),
        user_id,
        to: to.to_owned(),
        subject,
        html: crate::mail::compose::escape(&text),
        text,
    }
}

/// `unix` (seconds) as a notice says it: `5 December 2026, 00:52 UTC`.
pub fn when(unix: i64) -> String {
    format!("{unix}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;")
}
