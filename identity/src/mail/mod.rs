//! E-mail: the account's address ([`address`]), the links sent to it ([`links`]), the words of
//! every mail ([`compose`]), and their delivery ([`sender`]).
//!
//! A mail is never sent from a request. The change that causes it writes it to the outbox table
//! in its own transaction ([`crate::store::outbox`]), so a change is never made without its mail
//! nor a mail queued for a change that did not happen; a background sender delivers it over
//! SMTP, retries it on a temporary failure and gives up, recording why, on a permanent one.

pub mod address;
pub mod compose;
pub mod links;
pub mod sender;
#[cfg(any(test, feature = "testing"))]
pub mod sink;

#[cfg(test)]
mod delivery_tests;

/// What a mail is for: its row's `kind`, for the operator and the development mail page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// A link that confirms an address (after sign-up, or to change to it).
    VerifyAddress,
    /// Someone signed up with an address that is already an account's: its owner is told.
    AddressInUse,
    /// A link that sets a new password.
    ResetPassword,
    /// The password was changed, or reset through a link.
    PasswordChanged,
    /// A sign-in from a device not seen before.
    NewSignIn,
    /// To the old address: the account's address is being changed.
    AddressChanging,
    /// The account was deleted.
    AccountDeleted,
    /// A second factor was added or removed.
    FactorChanged,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyAddress => "verify_address",
            Self::AddressInUse => "address_in_use",
            Self::ResetPassword => "reset_password",
            Self::PasswordChanged => "password_changed",
            Self::NewSignIn => "new_sign_in",
            Self::AddressChanging => "address_changing",
            Self::AccountDeleted => "account_deleted",
            Self::FactorChanged => "factor_changed",
        }
    }
}

/// A mail as it is queued: its recipient, its words in plain text and in HTML. Its `Debug`
/// leaves out the bodies (a link in them is a credential).
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub kind: MailKind,
    /// The account it is about, if any.
    pub user_id: Option<i64>,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The hash of the link the mail carries, if any: a mail whose link died before it went
    /// out (replaced, spent, expired) is not sent.
    pub link: Option<[u8; 32]>,
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// Wakes the background sender when a mail was queued (after the commit), so that it goes out
/// at once rather than at the sender's next look at the outbox. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Wake(std::sync::Arc<tokio::sync::Notify>);

impl Wake {
    /// A mail was committed to the outbox.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Until the next [`wake`](Self::wake) (one that came while nobody waited counts).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// How the service mails: what the mails call it and where their links point, how long a link
/// lives, whether an address is required at sign-up; and the sender's wake-up.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Whether the service mails at all (`EMAIL`, on by default): off, it takes no addresses
    /// and queues nothing.
    pub enabled: bool,
    pub site: compose::Site,
    /// How long a reset link lives (`RESET_TTL`, 30 minutes).
    pub reset_ttl: i64,
    /// How long an address-confirming link lives (a day).
    pub verify_ttl: i64,
    /// Sign-up requires an address (`EMAIL_REQUIRED`).
    pub required: bool,
    /// Wakes the background sender after a mail was committed.
    pub wake: Wake,
    /// Serve the development mail page (`/dev/mail`): never in production.
    pub dev_page: bool,
}

impl Default for Mail {
    fn default() -> Self {
        Self {
            enabled: true,
            site: compose::Site {
                name: "authapp".into(),
                public_url: "http://localhost:3000".into(),
            },
            reset_ttl: 30 * 60,
            verify_ttl: 24 * 3600,
            required: false,
            wake: Wake::default(),
            dev_page: false,
        }
    }
}
