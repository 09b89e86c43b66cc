//! What a session is: its row, its lifetimes, why it ended, and the live session a request is
//! answered with.

use std::time::Duration;
use uuid::Uuid;

/// How long sessions and their tokens live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Access tokens (`ACCESS_TTL`, 15 minutes).
    pub access: Duration,
    /// A session from sign-in to its absolute end (`SESSION_TTL`, 30 days).
    pub session: Duration,
    /// A session unused this long ends (`SESSION_IDLE_TTL`, 7 days).
    pub idle: Duration,
    /// The previous refresh token still answers this long after its rotation
    /// (`REFRESH_REUSE_INTERVAL`, 10 seconds).
    pub reuse: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            access: Duration::from_secs(15 * 60),
            session: Duration::from_secs(30 * 86_400),
            idle: Duration::from_secs(7 * 86_400),
            reuse: Duration::from_secs(10),
        }
    }
}

impl Lifetimes {
    /// The expiry of an access token issued at `now` for a session ending at `expires_at`.
    pub fn token_exp(&self, now: i64, expires_at: i64) -> i64 {
        now.saturating_add(secs(self.access)).min(expires_at)
    }

    /// The shortest life an access token answered to the previous refresh token may have
    /// without a write: a minute, or half an access lifetime when tokens live shorter.
    pub fn min_grace_life(&self) -> i64 {
        (secs(self.access) / 2).min(60)
    }
}

/// A lifetime in whole seconds, as the database stores times.
pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Logout,
    /// Its owner ended it on the sessions page (stored as `revoked`).
    EndedOnSessionsPage,
    SignedOutElsewhere,
    Reuse,
    PasswordChanged,
    AccountDeleted,
    /// A second factor was added to the account or removed from it.
    FactorsChanged,
    /// The password was reset by a mailed link.
    PasswordReset,
    /// The operator ended it (`server admin end-sessions`, `remove-factors`).
    Operator,
    /// The operator disabled the account (`server admin disable`).
    AccountDisabled,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::EndedOnSessionsPage => "revoked",
            Self::SignedOutElsewhere => "signed_out_elsewhere",
            Self::Reuse => "reuse",
            Self::PasswordChanged => "password_changed",
            Self::AccountDeleted => "account_deleted",
            Self::FactorsChanged => "factors_changed",
            Self::PasswordReset => "password_reset",
            Self::Operator => "operator",
            Self::AccountDisabled => "account_disabled",
        }
    }
}

/// A session as stored.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    #[sqlx(try_from = "Vec<u8>")]
    pub id: SessionId,
    pub user_id: i64,
    pub refresh_key: Vec<u8>,
    pub generation: i64,
    /// The newest generation known to have reached its holder (presented, or one of its
    /// access tokens used).
    pub confirmed_generation: i64,
    /// When the current generation was issued (0: no grace for the one it replaced).
    pub rotated_at: i64,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub access_exp: i64,
    pub user_agent: String,
    pub address: String,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    /// How it was signed in ([`crate::factors::Method`], as stored); a refresh never changes it.
    pub auth_method: String,
    /// When its holder last proved who they are (the sign-in, or a reauthentication).
    pub authenticated_at: i64,
}

/// Its key, half of every refresh token of it, is never printed.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("generation", &self.generation)
            .field("confirmed_generation", &self.confirmed_generation)
            .field("rotated_at", &self.rotated_at)
            .field("expires_at", &self.expires_at)
            .field("access_exp", &self.access_exp)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// A session id as stored (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub Uuid);

impl TryFrom<Vec<u8>> for SessionId {
    type Error = uuid::Error;
    fn try_from(bytes: Vec<u8>) -> Result<Self, Self::Error> {
        Uuid::from_slice(&bytes).map(Self)
    }
}

impl Session {
    /// Whether the session can still be used at `now`.
    pub fn is_live(&self, now: i64, lifetimes: &Lifetimes) -> bool {
        self.revoked_at.is_none()
            && now < self.expires_at
            && now < self.last_used_at.saturating_add(secs(lifetimes.idle))
    }
}

/// What signing out with a refresh token alone did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedByToken {
    /// The session of this user ended.
    Ended(i64),
    /// Genuine, but its session had already ended.
    AlreadyOver,
    /// Malformed, forged, or naming no session.
    NotGenuine,
}

/// A live session and the expiry of the access token to issue for it now (never past the
/// session's own end).
#[derive(Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub session: Session,
    pub token_exp: i64,
    /// The refresh token of the session's current generation.
    pub(super) refresh_token: String,
}

/// The refresh token is never printed (tests print what they compare).
impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("session", &self.session)
            .field("token_exp", &self.token_exp)
            .finish_non_exhaustive()
    }
}

impl LiveSession {
    pub fn refresh_token(&self) -> String {
        self.refresh_token.clone()
    }

    pub fn id(&self) -> Uuid {
        self.session.id.0
    }

    pub fn generation(&self) -> i64 {
        self.session.generation
    }
}
