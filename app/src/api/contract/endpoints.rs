//! The table of the API: every route under `/api`, its method, body, answer, errors and who may
//! call it. The one source of what the API door lets through, of the 405s and of the document.

use http::Method;
use serde::{de::DeserializeOwned, Serialize};
use server_fn::ServerFn;
use utoipa::{openapi::RefOr, openapi::Schema, ToSchema};

use super::{
    document::{answer, component, reference},
    encoding::{read_body, Encoding, NoFields},
};
use crate::{
    api::{
        account::{ChangePasswordBody, DeleteAccountBody},
        email::{ChangeEmailBody, ConfirmEmailBody, ForgotPasswordBody, ResetPasswordBody},
        factors::{ConfirmTotpBody, LoginCodeBody, ReauthBody},
        passkeys::{
            PasskeyAssertionBody, PasskeyRegisterBody, RemovePasskeyBody, RenamePasskeyBody,
        },
        sessions::RevokeSessionBody,
        sign_in::{LoginBody, LogoutBody, RefreshBody, RegisterBody},
        AccountDeleted, AccountEmail, AccountFactors, Activity, BeginTotp, ChangeEmail,
        ChangePassword, ConfirmEmail, ConfirmTotp, CurrentUser, DeleteAccount, EmailConfirmed,
        EmailStatus, EndOtherSessions, EndSession, FactorsInfo, ForgotPassword, ListActivity,
        ListPasskeys, ListSessions, LoggedOut, Login, LoginCode, Logout, PasskeyChallenge,
        PasskeyInfo, PasskeyReauth, PasskeyRegister, PasskeyRegisterBegin, PasskeySignIn,
        PasskeySignInBegin, Reauthenticate, Reauthenticated, RecoveryCodes, Refresh, Register,
        Registered, RemovePasskey, RemoveTotp, RenamePasskey, RenewRecoveryCodes, ResendEmail,
        ResetPassword, ResetRequested, SessionInfo, SessionsEnded, SignedInUser, TokenResponse,
        TotpEnrolment,
    },
    error::{ApiError, ErrorCode},
};

/// `GET /api/me`: a plain axum route (the API's hot path), not a server function.
pub const ME_PATH: &str = "/api/me";
/// `GET /api/openapi.json`: the document itself.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (sign-up, sign-in).
    Anyone,
    /// An access token, as a Bearer token or in the access cookie (`/api/me`, which never
    /// renews a session on the way in).
    AccessToken,
    /// An access token, or the refresh cookie alone: a page's session is renewed on the way in
    /// when its access cookie has expired.
    SignedIn,
    /// A refresh token, in the body or in the refresh cookie.
    RefreshToken,
    /// An access token, or a refresh token (in the body or the refresh cookie): signing out.
    AccessOrRefreshToken,
    /// Anyone; an access token, if sent, must be valid.
    Optional,
}

impl Access {
    /// Whether a page's session is renewed on the way in (its refresh cookie rotated when its
    /// access cookie has expired) for a request to an endpoint called so: only where the
    /// endpoint reads the access token the renewal would bring. Signing in, up and out and the
    /// refresh endpoint handle the refresh cookie themselves; `/api/me` never renews.
    pub fn renews_session(self) -> bool {
        match self {
            Self::SignedIn | Self::Optional => true,
            Self::Anyone | Self::AccessToken | Self::RefreshToken | Self::AccessOrRefreshToken => {
                false
            }
        }
    }
}

/// A POST body: its schema and how it is read.
pub struct Body {
    pub(super) name: fn() -> std::borrow::Cow<'static, str>,
    pub(super) schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
    pub(super) required: bool,
    read: fn(Encoding, &[u8]) -> Result<Option<String>, ApiError>,
}

impl Body {
    const fn of<B, F>(required: bool) -> Self
    where
        B: ToSchema + DeserializeOwned + Into<F>,
        F: Serialize,
    {
        Self {
            name: B::name,
            schemas: component::<B>,
            required,
            read: read_body::<B, F>,
        }
    }
}

/// One route of the API.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub(super) body: Option<Body>,
    /// The success answer (200).
    pub(super) answer: fn() -> RefOr<Schema>,
    /// The failures this endpoint itself can answer; those every endpoint can answer (bad
    /// input, too large, wrong encoding, a cross-site cookie post, our own failure) are added.
    pub(super) errors: &'static [ErrorCode],
}

impl Endpoint {
    /// The body of a POST to this endpoint, as the form its server function decodes: `None`
    /// when the body is already that form (it is then passed on byte for byte), `Some(form)` when
    /// it was JSON. A body that does not fit the endpoint's body type is 400 `bad_request`.
    pub fn form_body(&self, encoding: Encoding, bytes: &[u8]) -> Result<Option<String>, ApiError> {
        match &self.body {
            Some(body) => (body.read)(encoding, bytes),
            None => Ok(None),
        }
    }

    /// True when the endpoint takes a body (every POST does, if only an empty one).
    pub fn has_body(&self) -> bool {
        self.body.is_some()
    }
}

use ErrorCode as E;

/// The token rejections: every endpoint that needs an access token can answer them.
const TOKEN: [ErrorCode; 4] = [
    E::MissingToken,
    E::InvalidToken,
    E::TokenExpired,
    E::TokenRevoked,
];

/// The token rejections, and 503 for a change that could not be written in time.
const TOKEN_OR_BUSY: [ErrorCode; 5] = [
    E::MissingToken,
    E::InvalidToken,
    E::TokenExpired,
    E::TokenRevoked,
    E::TemporarilyUnavailable,
];

/// The token rejections, a session not fresh enough, a factor not in the state the change
/// needs, and 503.
const FRESH: [ErrorCode; 7] = [
    E::MissingToken,
    E::InvalidToken,
    E::TokenExpired,
    E::TokenRevoked,
    E::ReauthRequired,
    E::FactorConflict,
    E::TemporarilyUnavailable,
];

/// Every route under `/api`, in the order the document lists them.
pub static ENDPOINTS: [Endpoint; 34] = [
    Endpoint {
        method: Method::POST,
        path: Register::PATH,
        operation_id: "register",
        summary: "Create an account",
        access: Access::Anyone,
        body: Some(Body::of::<RegisterBody, Register>(true)),
        answer: reference::<Registered>,
        errors: &[
            E::InvalidInput,
            E::UsernameTaken,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: Login::PATH,
        operation_id: "login",
        summary: "Sign in: an access token and a refresh token (cookies too, for a page)",
        access: Access::Anyone,
        body: Some(Body::of::<LoginBody, Login>(true)),
        answer: reference::<TokenResponse>,
        errors: &[
            E::InvalidCredentials,
            E::SecondFactorRequired,
            E::AccountDisabled,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: LoginCode::PATH,
        operation_id: "login_code",
        summary: "Sign in, second step: an authenticator app's code or a recovery code for the \
                  sign-in that answered 403 second_factor_required",
        access: Access::Anyone,
        body: Some(Body::of::<LoginCodeBody, LoginCode>(true)),
        answer: reference::<TokenResponse>,
        errors: &[
            E::InvalidCode,
            E::SignInExpired,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: Refresh::PATH,
        operation_id: "refresh",
        summary: "Rotate a refresh token: a new access token and a new refresh token",
        access: Access::RefreshToken,
        body: Some(Body::of::<RefreshBody, Refresh>(false)),
        answer: reference::<TokenResponse>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: Logout::PATH,
        operation_id: "logout",
        summary: "Sign out: the access token is revoked and its session ended (or the session of \
                  the refresh token sent, when no valid access token is)",
        access: Access::AccessOrRefreshToken,
        body: Some(Body::of::<LogoutBody, Logout>(false)),
        answer: reference::<LoggedOut>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::GET,
        path: ME_PATH,
        operation_id: "me",
        summary: "The signed-in user",
        access: Access::AccessToken,
        body: None,
        answer: reference::<SignedInUser>,
        errors: &TOKEN,
    },
    Endpoint {
        method: Method::GET,
        path: CurrentUser::PATH,
        operation_id: "whoami",
        summary: "The signed-in user, or null without a token",
        access: Access::Optional,
        body: None,
        answer: answer::<Option<SignedInUser>>,
        errors: &[E::InvalidToken, E::TokenExpired, E::TokenRevoked],
    },
    Endpoint {
        method: Method::GET,
        path: ListSessions::PATH,
        operation_id: "list_sessions",
        summary: "The caller's live sessions, most recently used first",
        access: Access::SignedIn,
        body: None,
        answer: answer::<Vec<SessionInfo>>,
        errors: &TOKEN,
    },
    Endpoint {
        method: Method::GET,
        path: ListActivity::PATH,
        operation_id: "list_activity",
        summary: "The account's security events, newest first, 25 a page (the query's `before`: \
                  the `next_before` of the page before)",
        access: Access::SignedIn,
        body: None,
        answer: reference::<Activity>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::BadRequest,
            E::InvalidInput,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: EndSession::PATH,
        operation_id: "revoke_session",
        summary: "End one of the caller's sessions (404 for any other id)",
        access: Access::SignedIn,
        body: Some(Body::of::<RevokeSessionBody, EndSession>(true)),
        answer: reference::<SessionsEnded>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::NotFound,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: EndOtherSessions::PATH,
        operation_id: "revoke_other_sessions",
        summary: "End every session of the caller but this one",
        access: Access::SignedIn,
        body: Some(Body::of::<NoFields, EndOtherSessions>(false)),
        answer: reference::<SessionsEnded>,
        errors: &TOKEN_OR_BUSY,
    },
    Endpoint {
        method: Method::POST,
        path: ChangePassword::PATH,
        operation_id: "change_password",
        summary: "Change the password: every other session ends, this one gets new tokens",
        access: Access::SignedIn,
        body: Some(Body::of::<ChangePasswordBody, ChangePassword>(true)),
        answer: reference::<TokenResponse>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::InvalidCredentials,
            E::ReauthRequired,
            E::InvalidInput,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: DeleteAccount::PATH,
        operation_id: "delete_account",
        summary: "Delete the account and everything of it",
        access: Access::SignedIn,
        body: Some(Body::of::<DeleteAccountBody, DeleteAccount>(true)),
        answer: reference::<AccountDeleted>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::InvalidCredentials,
            E::ReauthRequired,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: ForgotPassword::PATH,
        operation_id: "forgot_password",
        summary: "Mail a link that sets a new password to the account's confirmed address (the \
                  same answer whether or not there is such an account)",
        access: Access::Anyone,
        body: Some(Body::of::<ForgotPasswordBody, ForgotPassword>(true)),
        answer: reference::<ResetRequested>,
        errors: &[
            E::InvalidInput,
            E::TooManyRequests,
            E::NotFound,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: ResetPassword::PATH,
        operation_id: "reset_password",
        summary: "Set a new password with a mailed link's token: every session of the account \
                  ends, and this client is signed in",
        access: Access::Anyone,
        body: Some(Body::of::<ResetPasswordBody, ResetPassword>(true)),
        answer: reference::<TokenResponse>,
        errors: &[
            E::InvalidInput,
            E::LinkInvalid,
            E::LinkExpired,
            E::LinkUsed,
            E::TokenRevoked,
            E::SecondFactorRequired,
            E::InvalidCode,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: ConfirmEmail::PATH,
        operation_id: "confirm_email",
        summary: "Confirm an address with a mailed link's token",
        access: Access::Anyone,
        body: Some(Body::of::<ConfirmEmailBody, ConfirmEmail>(true)),
        answer: reference::<EmailConfirmed>,
        errors: &[
            E::LinkInvalid,
            E::LinkExpired,
            E::LinkUsed,
            E::EmailTaken,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::GET,
        path: AccountEmail::PATH,
        operation_id: "account_email",
        summary: "The caller's e-mail address and whether it is confirmed",
        access: Access::SignedIn,
        body: None,
        answer: reference::<EmailStatus>,
        errors: &TOKEN_OR_BUSY,
    },
    Endpoint {
        method: Method::POST,
        path: ChangeEmail::PATH,
        operation_id: "change_email",
        summary: "Change the address: a confirming link goes to the new one, which counts once \
                  it is followed; the old one is told",
        access: Access::SignedIn,
        body: Some(Body::of::<ChangeEmailBody, ChangeEmail>(true)),
        answer: reference::<EmailStatus>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::InvalidCredentials,
            E::ReauthRequired,
            E::InvalidInput,
            E::TooManyRequests,
            E::NotFound,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: ResendEmail::PATH,
        operation_id: "resend_email",
        summary: "Send the address waiting to be confirmed a new link (one a minute)",
        access: Access::SignedIn,
        body: Some(Body::of::<NoFields, ResendEmail>(false)),
        answer: reference::<EmailStatus>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::NothingToConfirm,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: Reauthenticate::PATH,
        operation_id: "reauthenticate",
        summary: "Confirm it is you (the password, and a code with two-step sign-in on): this \
                  session may make dangerous changes for REAUTH_WINDOW",
        access: Access::SignedIn,
        body: Some(Body::of::<ReauthBody, Reauthenticate>(true)),
        answer: reference::<Reauthenticated>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::InvalidCredentials,
            E::SecondFactorRequired,
            E::InvalidCode,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::GET,
        path: AccountFactors::PATH,
        operation_id: "account_factors",
        summary: "The caller's second factors, and until when this session may make dangerous \
                  changes",
        access: Access::SignedIn,
        body: None,
        answer: reference::<FactorsInfo>,
        errors: &TOKEN_OR_BUSY,
    },
    Endpoint {
        method: Method::POST,
        path: BeginTotp::PATH,
        operation_id: "begin_totp",
        summary: "Start turning on two-step sign-in: a new authenticator secret (QR code and \
                  text), waiting for its first code",
        access: Access::SignedIn,
        body: Some(Body::of::<NoFields, BeginTotp>(false)),
        answer: reference::<TotpEnrolment>,
        errors: &FRESH,
    },
    Endpoint {
        method: Method::POST,
        path: ConfirmTotp::PATH,
        operation_id: "confirm_totp",
        summary: "Turn two-step sign-in on with the authenticator's first code: ten recovery \
                  codes, shown once; every other session ends",
        access: Access::SignedIn,
        body: Some(Body::of::<ConfirmTotpBody, ConfirmTotp>(true)),
        answer: reference::<RecoveryCodes>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::ReauthRequired,
            E::InvalidCode,
            E::FactorConflict,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: RemoveTotp::PATH,
        operation_id: "remove_totp",
        summary: "Turn two-step sign-in off (the recovery codes go too); every other session ends",
        access: Access::SignedIn,
        body: Some(Body::of::<NoFields, RemoveTotp>(false)),
        answer: reference::<FactorsInfo>,
        errors: &FRESH,
    },
    Endpoint {
        method: Method::POST,
        path: RenewRecoveryCodes::PATH,
        operation_id: "renew_recovery_codes",
        summary: "Ten new recovery codes, shown once; the old ones stop working",
        access: Access::SignedIn,
        body: Some(Body::of::<NoFields, RenewRecoveryCodes>(false)),
        answer: reference::<RecoveryCodes>,
        errors: &FRESH,
    },
    Endpoint {
        method: Method::POST,
        path: PasskeySignInBegin::PATH,
        operation_id: "passkey_sign_in_begin",
        summary: "Begin a passkey sign-in (no username): the options for \
                  navigator.credentials.get and the ceremony's token",
        access: Access::Anyone,
        body: Some(Body::of::<NoFields, PasskeySignInBegin>(false)),
        answer: reference::<PasskeyChallenge>,
        errors: &[E::NotFound, E::TooManyRequests, E::TemporarilyUnavailable],
    },
    Endpoint {
        method: Method::POST,
        path: PasskeySignIn::PATH,
        operation_id: "passkey_sign_in",
        summary: "Sign in with a passkey (a full sign-in: no second step)",
        access: Access::Anyone,
        body: Some(Body::of::<PasskeyAssertionBody, PasskeySignIn>(true)),
        answer: reference::<TokenResponse>,
        errors: &[
            E::PasskeyRefused,
            E::CeremonyExpired,
            E::NotFound,
            E::TemporarilyUnavailable,
            E::AccountDisabled,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: PasskeyReauth::PATH,
        operation_id: "passkey_reauth",
        summary: "Confirm it is you with a passkey of this account (a sign-in begin's ceremony)",
        access: Access::SignedIn,
        body: Some(Body::of::<PasskeyAssertionBody, PasskeyReauth>(true)),
        answer: reference::<Reauthenticated>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::PasskeyRefused,
            E::CeremonyExpired,
            E::NotFound,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: PasskeyRegisterBegin::PATH,
        operation_id: "passkey_register_begin",
        summary: "Begin adding a passkey: the options for navigator.credentials.create and the \
                  ceremony's token",
        access: Access::SignedIn,
        body: Some(Body::of::<NoFields, PasskeyRegisterBegin>(false)),
        answer: reference::<PasskeyChallenge>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::ReauthRequired,
            E::NotFound,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: PasskeyRegister::PATH,
        operation_id: "passkey_register",
        summary: "Add the passkey the browser made: every other session ends",
        access: Access::SignedIn,
        body: Some(Body::of::<PasskeyRegisterBody, PasskeyRegister>(true)),
        answer: reference::<PasskeyInfo>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::PasskeyRefused,
            E::CeremonyExpired,
            E::FactorConflict,
            E::NotFound,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::GET,
        path: ListPasskeys::PATH,
        operation_id: "list_passkeys",
        summary: "The caller's passkeys, oldest first",
        access: Access::SignedIn,
        body: None,
        answer: answer::<Vec<PasskeyInfo>>,
        errors: &TOKEN_OR_BUSY,
    },
    Endpoint {
        method: Method::POST,
        path: RenamePasskey::PATH,
        operation_id: "rename_passkey",
        summary: "Rename one of the caller's passkeys",
        access: Access::SignedIn,
        body: Some(Body::of::<RenamePasskeyBody, RenamePasskey>(true)),
        answer: answer::<Vec<PasskeyInfo>>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::NotFound,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: RemovePasskey::PATH,
        operation_id: "remove_passkey",
        summary: "Remove one of the caller's passkeys: every other session ends",
        access: Access::SignedIn,
        body: Some(Body::of::<RemovePasskeyBody, RemovePasskey>(true)),
        answer: answer::<Vec<PasskeyInfo>>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::ReauthRequired,
            E::NotFound,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::GET,
        path: DOCUMENT_PATH,
        operation_id: "openapi",
        summary: "This document",
        access: Access::Anyone,
        body: None,
        answer: answer::<serde_json::Value>,
        errors: &[],
    },
];

/// The `Allow` header of `path` (`None` when no endpoint is there). Every path of the API has
/// one method.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    let e = ENDPOINTS.iter().find(|e| e.path == path)?;
    Some(if e.method == Method::GET {
        "GET,HEAD"
    } else {
        "POST"
    })
}

/// The endpoint at `path` for `method`, if the API has one.
pub fn endpoint(method: &Method, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .find(|e| e.path == path && e.method == *method)
}
