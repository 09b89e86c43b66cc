//! The one error type every server function returns.
//!
//! It travels as JSON `{"error": "<code>", "description": "<text a person can act on>"}` in both
//! directions (server → browser, server → API client), and its code alone decides the HTTP status,
//! so the status mapping lives in one place ([`ErrorCode::status`]).

use serde::{Deserialize, Serialize};
use server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};

/// Machine-readable reason of a failure. Serialised in snake_case (`token_revoked`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No token in the `Authorization` header nor in the auth cookie.
    MissingToken,
    /// Malformed, tampered, wrongly signed or otherwise unacceptable token.
    InvalidToken,
    /// A well-signed token whose `exp` has passed.
    TokenExpired,
    /// A well-signed, unexpired token whose `jti` is on the revocation list (signed out).
    TokenRevoked,
    /// Unknown user or wrong password: deliberately indistinguishable.
    InvalidCredentials,
    /// Registration with a username that already exists.
    UsernameTaken,
    /// Well-formed request whose values break a rule (length, character set, ...).
    InvalidInput,
    /// The request could not be read at all (missing field, wrong encoding).
    BadRequest,
    /// The request body did not arrive in time.
    RequestTimeout,
    /// The request body is larger than the auth routes accept.
    PayloadTooLarge,
    /// A body that is neither JSON nor a form (`Content-Type`).
    UnsupportedMediaType,
    /// Too many sign-in attempts, or sign-ups from one address; see `retry_after`.
    TooManyRequests,
    /// A cookie-authenticated state change from another origin.
    Forbidden,
    /// Too many requests are waiting for a password check, or the database cannot be reached
    /// just now; see `retry_after`.
    TemporarilyUnavailable,
    /// No such thing for this caller (another person's session answers the same).
    NotFound,
    /// Something failed on our side; the cause is in the server log, not in the answer.
    Internal,
    /// A mailed link that is not (or no longer) one: forged, mistyped, or replaced by a newer
    /// one.
    LinkInvalid,
    /// A mailed link past its time, or made void by a password change since it was sent.
    LinkExpired,
    /// A mailed link that was followed already: each works once.
    LinkUsed,
    /// An address that another account confirmed first.
    EmailTaken,
    /// No address is waiting to be confirmed.
    NothingToConfirm,
    /// The password was right; the account asks for a second factor (an authenticator's code
    /// or a recovery code) before a session starts: `POST /api/login/code`.
    SecondFactorRequired,
    /// A second-factor code that is wrong, or was used already.
    InvalidCode,
    /// A sign-in waiting for its second factor that is over (too slow, finished already, or
    /// its account's credentials changed): sign in again.
    SignInExpired,
    /// A dangerous change needs an authentication within the last `REAUTH_WINDOW`: confirm
    /// with `POST /api/reauth`, then try again.
    ReauthRequired,
    /// A second factor that is already on (enrolling) or not on (removing, new codes), or an
    /// enrolment that is not waiting.
    FactorConflict,
    /// A passkey that did not verify, or is no passkey of ours.
    PasskeyRefused,
    /// A passkey ceremony that is unknown, spent or past its 5 minutes: begin again.
    CeremonyExpired,
    /// The password (or passkey) was right, but the operator disabled the account.
    AccountDisabled,
    /// Client side only: the server could not be reached or answered something unreadable.
    Network,
}

impl ErrorCode {
    /// The HTTP status that goes with this code.
    pub fn status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::MissingToken | Self::InvalidToken | Self::TokenExpired | Self::TokenRevoked => {
                S::UNAUTHORIZED
            }
            Self::InvalidCredentials => S::UNAUTHORIZED,
            Self::UsernameTaken => S::CONFLICT,
            Self::InvalidInput => S::UNPROCESSABLE_ENTITY,
            Self::BadRequest => S::BAD_REQUEST,
            Self::RequestTimeout => S::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => S::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests => S::TOO_MANY_REQUESTS,
            Self::Forbidden => S::FORBIDDEN,
            Self::NotFound => S::NOT_FOUND,
            Self::TemporarilyUnavailable => S::SERVICE_UNAVAILABLE,
            Self::Internal => S::INTERNAL_SERVER_ERROR,
            Self::LinkInvalid => S::NOT_FOUND,
            Self::LinkExpired | Self::LinkUsed => S::GONE,
            Self::EmailTaken | Self::NothingToConfirm => S::CONFLICT,
            Self::SecondFactorRequired | Self::ReauthRequired => S::FORBIDDEN,
            Self::InvalidCode | Self::SignInExpired => S::UNAUTHORIZED,
            Self::FactorConflict => S::CONFLICT,
            Self::PasskeyRefused | Self::CeremonyExpired => S::UNAUTHORIZED,
            Self::AccountDisabled => S::FORBIDDEN,
            Self::Network => S::SERVICE_UNAVAILABLE,
        }
    }

    /// The code as it is written on the wire (`token_revoked`).
    #[cfg(feature = "ssr")]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked => "token_revoked",
            Self::InvalidCredentials => "invalid_credentials",
            Self::UsernameTaken => "username_taken",
            Self::InvalidInput => "invalid_input",
            Self::BadRequest => "bad_request",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::TooManyRequests => "too_many_requests",
            Self::Forbidden => "forbidden",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::NotFound => "not_found",
            Self::Internal => "internal",
            Self::LinkInvalid => "link_invalid",
            Self::LinkExpired => "link_expired",
            Self::LinkUsed => "link_used",
            Self::EmailTaken => "email_taken",
            Self::NothingToConfirm => "nothing_to_confirm",
            Self::SecondFactorRequired => "second_factor_required",
            Self::InvalidCode => "invalid_code",
            Self::SignInExpired => "sign_in_expired",
            Self::ReauthRequired => "reauth_required",
            Self::FactorConflict => "factor_conflict",
            Self::PasskeyRefused => "passkey_refused",
            Self::CeremonyExpired => "ceremony_expired",
            Self::AccountDisabled => "account_disabled",
            Self::Network => "network",
        }
    }

    /// Every code.
    #[cfg(any(test, feature = "ssr"))]
    pub const ALL: [Self; 30] = [
        Self::MissingToken,
        Self::InvalidToken,
        Self::TokenExpired,
        Self::TokenRevoked,
        Self::InvalidCredentials,
        Self::UsernameTaken,
        Self::InvalidInput,
        Self::BadRequest,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::TooManyRequests,
        Self::Forbidden,
        Self::TemporarilyUnavailable,
        Self::NotFound,
        Self::Internal,
        Self::LinkInvalid,
        Self::LinkExpired,
        Self::LinkUsed,
        Self::EmailTaken,
        Self::NothingToConfirm,
        Self::SecondFactorRequired,
        Self::InvalidCode,
        Self::SignInExpired,
        Self::ReauthRequired,
        Self::FactorConflict,
        Self::PasskeyRefused,
        Self::CeremonyExpired,
        Self::AccountDisabled,
        Self::Network,
    ];

    /// The token rejection named by `text` (`"token_revoked"`), if it names one: what a
    /// `reason` in a page's address may say.
    pub fn token_rejection(text: &str) -> Option<Self> {
        match text {
            "missing_token" => Some(Self::MissingToken),
            "invalid_token" => Some(Self::InvalidToken),
            "token_expired" => Some(Self::TokenExpired),
            "token_revoked" => Some(Self::TokenRevoked),
            _ => None,
        }
    }

    /// A refusal named by its code in a page's address, as the server writes it there after a
    /// form posted without JavaScript (`error=invalid_code`, `reauth=…`): the few it writes.
    pub fn in_address(text: &str) -> Option<Self> {
        match text {
            "invalid_credentials" => Some(Self::InvalidCredentials),
            "second_factor_required" => Some(Self::SecondFactorRequired),
            "invalid_code" => Some(Self::InvalidCode),
            "sign_in_expired" => Some(Self::SignInExpired),
            "too_many_requests" => Some(Self::TooManyRequests),
            "temporarily_unavailable" => Some(Self::TemporarilyUnavailable),
            _ => None,
        }
    }

    /// True for the four token rejections: the caller has no valid session.
    pub fn is_token_rejection(self) -> bool {
        matches!(
            self,
            Self::MissingToken | Self::InvalidToken | Self::TokenExpired | Self::TokenRevoked
        )
    }
}

/// The error body. `description` is written for a person; `error` for a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[error("{description}")]
pub struct ApiError {
    pub error: ErrorCode,
    pub description: String,
    /// Seconds to wait before trying again (only with `too_many_requests` and
    /// `temporarily_unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// With `second_factor_required`, to an API client: the token of the waiting sign-in, sent
    /// back with the code to `POST /api/login/code` (a page has it in an `HttpOnly` cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_token: Option<String>,
}

/// One named constructor per code: the texts live here, in one table.
impl ApiError {
    /// The refusal `code` in our words: what a page shows for a code it read from its address
    /// (whoever wrote the link, only the code is believed).
    pub fn of_code(code: ErrorCode) -> Self {
        Self::new(code, String::new()).in_our_words(false)
    }

    fn new(error: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
            retry_after: None,
            pending_token: None,
        }
    }

    /// The password was right; a second factor is asked for. `pending_token` for an API
    /// client (a page has it in its cookie).
    pub fn second_factor_required(pending_token: Option<String>) -> Self {
        Self {
            pending_token,
            ..Self::new(
                ErrorCode::SecondFactorRequired,
                "Enter the code from your authenticator app, or one of your recovery codes.",
            )
        }
    }

    pub fn invalid_code() -> Self {
        Self::new(
            ErrorCode::InvalidCode,
            "That code is not right, or was used already. Enter the code your authenticator \
             app shows now, or an unused recovery code.",
        )
    }

    pub fn sign_in_expired() -> Self {
        Self::new(
            ErrorCode::SignInExpired,
            "This sign-in is over: it took too long, or was finished already. Please sign in \
             again.",
        )
    }

    pub fn reauth_required() -> Self {
        Self::new(
            ErrorCode::ReauthRequired,
            "For your safety, confirm it is you: enter your password again, then try once more.",
        )
    }

    pub fn factor_conflict(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::FactorConflict, description)
    }

    pub fn passkey_refused() -> Self {
        Self::new(
            ErrorCode::PasskeyRefused,
            "That passkey could not sign you in. Try again, or sign in with your password.",
        )
    }

    pub fn ceremony_expired() -> Self {
        Self::new(
            ErrorCode::CeremonyExpired,
            "That took too long, or was finished already. Please try again.",
        )
    }

    pub fn account_disabled() -> Self {
        Self::new(
            ErrorCode::AccountDisabled,
            "This account has been disabled by the site's administrator, so it cannot sign in. \
             If you think this is a mistake, contact them.",
        )
    }

    pub fn passkeys_off() -> Self {
        Self::new(ErrorCode::NotFound, "Passkeys are not set up on this site.")
    }

    pub fn no_such_passkey() -> Self {
        Self::new(ErrorCode::NotFound, "There is no such passkey.")
    }

    pub fn missing_token() -> Self {
        Self::new(
            ErrorCode::MissingToken,
            "Authentication required: send a Bearer token or sign in.",
        )
    }

    pub fn invalid_token() -> Self {
        Self::new(
            ErrorCode::InvalidToken,
            "The token is malformed or its signature is invalid.",
        )
    }

    pub fn token_expired() -> Self {
        Self::new(
            ErrorCode::TokenExpired,
            "The token has expired. Please sign in again.",
        )
    }

    pub fn token_revoked() -> Self {
        Self::new(
            ErrorCode::TokenRevoked,
            "The token has been revoked. Please sign in again.",
        )
    }

    /// A refresh token that is malformed, forged or names no session.
    pub fn invalid_refresh_token() -> Self {
        Self::new(
            ErrorCode::InvalidToken,
            "The refresh token is invalid. Please sign in again.",
        )
    }

    pub fn session_ended() -> Self {
        Self::new(
            ErrorCode::TokenRevoked,
            "This session has ended. Please sign in again.",
        )
    }

    pub fn session_expired() -> Self {
        Self::new(
            ErrorCode::TokenExpired,
            "This session has expired. Please sign in again.",
        )
    }

    /// A refresh token presented after it was rotated: the session was ended.
    pub fn refresh_token_reused() -> Self {
        Self::new(
            ErrorCode::TokenRevoked,
            "This refresh token had already been used, so the session was ended to protect the \
             account. Please sign in again.",
        )
    }

    /// The current password given on the account page is not the account's.
    pub fn wrong_password() -> Self {
        Self::new(
            ErrorCode::InvalidCredentials,
            "The current password is incorrect.",
        )
    }

    pub fn no_such_session() -> Self {
        Self::new(ErrorCode::NotFound, "There is no such session.")
    }

    /// A rule broken; `description` is one of the `validate` module's messages.
    pub fn invalid_input(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, description)
    }

    /// The request could not be read at all.
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, description)
    }

    pub fn payload_too_large() -> Self {
        Self::new(ErrorCode::PayloadTooLarge, "The request body is too large.")
    }

    pub fn request_timeout() -> Self {
        Self::new(
            ErrorCode::RequestTimeout,
            "The request body did not arrive in time.",
        )
    }

    /// A path under `/api` that is no endpoint.
    pub fn no_such_endpoint() -> Self {
        Self::new(
            ErrorCode::NotFound,
            "There is no such API endpoint: GET /api/openapi.json lists them.",
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            ErrorCode::UnsupportedMediaType,
            "Send the body as application/json or application/x-www-form-urlencoded (UTF-8).",
        )
    }

    pub fn forbidden_origin() -> Self {
        Self::new(
            ErrorCode::Forbidden,
            "This request must come from this site's own pages.",
        )
    }

    /// Client side only: the server could not be reached or its answer not read.
    pub fn network() -> Self {
        Self::new(
            ErrorCode::Network,
            "Could not reach the server. Check your connection and try again.",
        )
    }

    pub fn invalid_credentials() -> Self {
        Self::new(
            ErrorCode::InvalidCredentials,
            "The username or password is incorrect.",
        )
    }

    /// A generic 500. The cause must already be logged by the caller; it is never sent out.
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "Something went wrong on our side. Please try again.",
        )
    }

    /// A sign-in beyond one of its limits (see `auth::throttle`).
    pub fn too_many_requests(retry_after: u64) -> Self {
        Self::retry_later(
            retry_after,
            format!("Too many sign-in attempts. Try again in {retry_after} seconds."),
        )
    }

    /// Too many mails asked for, or too soon after the last one.
    pub fn too_many_mails(retry_after: u64) -> Self {
        Self::retry_later(
            retry_after,
            format!("A mail was sent very recently. Try again in {retry_after} seconds."),
        )
    }

    /// A mailed link that cannot be used, in words that say what to do.
    pub fn link(code: ErrorCode) -> Self {
        let text = match code {
            ErrorCode::LinkExpired => {
                "This link has expired. Links work for a limited time, and a reset link stops \
                 working when the password changes. Ask for a new one."
            }
            ErrorCode::LinkUsed => "This link was used already: each link works once.",
            _ => {
                "This link is not valid. Check that it was copied whole, or ask for a new \
                 one: only the newest link sent works."
            }
        };
        Self::new(code, text)
    }

    /// A new confirming link asked for, with no address waiting to be confirmed.
    pub fn nothing_to_confirm() -> Self {
        Self::new(
            ErrorCode::NothingToConfirm,
            "There is no address waiting to be confirmed.",
        )
    }

    /// E-mail is off on this site.
    pub fn mail_off() -> Self {
        Self::new(
            ErrorCode::NotFound,
            "This site sends no e-mail: ask its operator for help.",
        )
    }

    /// An address another account confirmed first.
    pub fn email_taken() -> Self {
        Self::new(
            ErrorCode::EmailTaken,
            "This address belongs to another account now. Use another address.",
        )
    }

    /// A sign-up beyond the address's allowance.
    pub fn too_many_signups(retry_after: u64) -> Self {
        Self::retry_later(
            retry_after,
            format!(
                "Too many accounts were created from your network. Try again in {retry_after} seconds."
            ),
        )
    }

    /// Too many sign-ins are waiting for a password check: refused before any work.
    pub fn busy() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                ErrorCode::TemporarilyUnavailable,
                "The server is busy checking other passwords. Try again in a moment.",
            )
        }
    }

    /// Refreshes beyond the address's or the session's allowance (see
    /// `auth::throttle::RefreshLimits`): the session lives on.
    pub fn too_many_refreshes(retry_after: u64) -> Self {
        Self::retry_later(
            retry_after,
            format!("Too many refreshes. Try again in {retry_after} seconds."),
        )
    }

    /// Something the request needs is unavailable for a moment (its turn to write, the shared
    /// sign-in limits, say): nothing was done.
    pub fn unavailable(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorCode::TemporarilyUnavailable,
                "The server is busy. Try again in a moment.",
            )
        }
    }

    /// The database cannot be reached (or is busy) just now: what needs it is refused at once
    /// while that lasts (see `store::Health`), and a valid token goes on working from memory.
    pub fn database_unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                ErrorCode::TemporarilyUnavailable,
                "The server cannot reach its database just now. Try again in a moment.",
            )
        }
    }

    fn retry_later(retry_after: u64, description: String) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(ErrorCode::TooManyRequests, description)
        }
    }

    /// The error of a form posted without JavaScript comes back in the page's URL
    /// (`__err=<base64 JSON>`), where anyone can write a link with any text in it. Only its code
    /// is believed: the text shown is ours, chosen by the code (a validation message is kept
    /// only when it is one we write, word for word), and a wait is a number we format.
    pub fn in_our_words(&self, signing_up: bool) -> Self {
        use ErrorCode as C;
        match self.error {
            C::MissingToken => Self::missing_token(),
            C::InvalidToken => Self::invalid_token(),
            C::TokenExpired => Self::token_expired(),
            C::TokenRevoked => Self::token_revoked(),
            C::InvalidCredentials if self.description == Self::wrong_password().description => {
                Self::wrong_password()
            }
            C::InvalidCredentials => Self::invalid_credentials(),
            C::UsernameTaken => Self::username_taken(),
            C::InvalidInput if crate::validate::is_our_message(&self.description) => {
                Self::invalid_input(self.description.clone())
            }
            C::InvalidInput => Self::invalid_input("Check the form and try again."),
            // `network` never comes from the server: here it means the link's error could not
            // be decoded (the browser's word for it; the server says `bad_request`).
            C::BadRequest
            | C::RequestTimeout
            | C::PayloadTooLarge
            | C::UnsupportedMediaType
            | C::Network => Self::bad_request("The form could not be read. Please try again."),
            C::TooManyRequests => {
                // No real wait is longer than a few minutes.
                let wait = self.retry_after.unwrap_or(60).clamp(1, 300);
                if signing_up {
                    Self::too_many_signups(wait)
                } else if self.description.starts_with("A mail was sent") {
                    Self::too_many_mails(wait)
                } else {
                    Self::too_many_requests(wait)
                }
            }
            C::Forbidden => Self::forbidden_origin(),
            C::NotFound if self.description == Self::mail_off().description => Self::mail_off(),
            C::NotFound if self.description == Self::no_such_passkey().description => {
                Self::no_such_passkey()
            }
            C::NotFound => Self::no_such_session(),
            // One text for every cause (busy, the database out of reach): the page's words.
            C::TemporarilyUnavailable => Self::unavailable(1),
            C::Internal => Self::internal(),
            C::LinkInvalid | C::LinkExpired | C::LinkUsed => Self::link(self.error),
            C::EmailTaken => Self::email_taken(),
            C::NothingToConfirm => Self::nothing_to_confirm(),
            // A token from a URL is never believed: the page's cookie holds the real one.
            C::SecondFactorRequired => Self::second_factor_required(None),
            C::InvalidCode => Self::invalid_code(),
            C::SignInExpired => Self::sign_in_expired(),
            C::ReauthRequired => Self::reauth_required(),
            C::PasskeyRefused => Self::passkey_refused(),
            C::CeremonyExpired => Self::ceremony_expired(),
            C::AccountDisabled => Self::account_disabled(),
            C::FactorConflict => Self::factor_conflict(
                "That change does not fit how your account is set up now. Reload the page.",
            ),
        }
    }

    pub fn username_taken() -> Self {
        Self::new(
            ErrorCode::UsernameTaken,
            "That username is already taken. Choose another one.",
        )
    }

    pub fn status(&self) -> http::StatusCode {
        self.error.status()
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // The request's arguments could not be decoded: the caller sent something malformed.
            ServerFnErrorErr::Args(msg) => {
                Self::bad_request(format!("The request could not be read: {msg}"))
            }
            ServerFnErrorErr::MissingArg(field) => {
                Self::bad_request(format!("The request is missing the field `{field}`."))
            }
            // On the server these mean the request could not be decoded (e.g. a body that is not
            // UTF-8): the client's fault. Server functions called during rendering make no
            // requests, so the server never has a network failure of its own to report.
            #[cfg(feature = "ssr")]
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Deserialization(_) => {
                Self::bad_request("The request could not be read: send a UTF-8 form body.")
            }
            // In the browser: the server could not be reached, or its answer could not be read.
            #[cfg(not(feature = "ssr"))]
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Deserialization(_) => Self::network(),
            // Everything else is our fault; details stay out of the answer.
            _ => Self::internal(),
        }
    }
}

/// Every `ApiError` answers for itself: its status, the JSON body, and the headers its code
/// calls for (an RFC 6750 challenge on a token rejection, `Retry-After` on a wait).
#[cfg(feature = "ssr")]
mod answer;

#[cfg(test)]
mod tests;
