//! The HTTP door: server functions at stable paths under `/api`, one file per feature, each with
//! its server functions, the bodies the API takes for them and their work on the server:
//!
//! - [`sign_in`]: signing up, in and out, and renewing a session;
//! - [`sessions`]: the caller's sessions;
//! - [`activity`]: the account's security activity;
//! - [`account`]: the signed-in user, the password and the account itself;
//! - [`factors`]: the sign-in's second step, confirming it is you, the authenticator app and
//!   the recovery codes;
//! - [`passkeys`]: signing in with a passkey, adding, renaming and removing them;
//! - [`contract`] (server only): the table of every route under `/api`, how a POST body is read,
//!   and the OpenAPI document made from the table;
//! - [`renewal`] (server only): what the refresh endpoint and the server's refresh layer share.
//!
//! Input is form-encoded (so the forms work before the WASM loads), output is JSON. Errors are
//! [`ApiError`](crate::error::ApiError), answered with the status their code calls for (see
//! [`server::answered`]).

pub mod account;
pub mod activity;
pub mod email;
pub mod factors;
pub mod passkeys;
pub mod sessions;
pub mod sign_in;
pub mod table;

#[cfg(feature = "ssr")]
pub mod contract;
#[cfg(feature = "ssr")]
pub mod renewal;

pub use account::{
    change_password, current_user, delete_account, AccountDeleted, ChangePassword, CurrentUser,
    DeleteAccount, SignedInUser,
};
pub use activity::{
    list_activity, Activity, ActivityEvent, ActivityList, ActivityRow, ListActivity,
};
pub use email::{
    account_email, change_email, confirm_email, forgot_password, reset_password, AccountEmail,
    ChangeEmail, ConfirmEmail, EmailConfirmed, EmailStatus, ForgotPassword, ResendEmail,
    ResetPassword, ResetRequested, RESET_REQUESTED,
};
pub use factors::{
    account_factors, begin_totp, confirm_totp, login_code, reauthenticate, remove_totp,
    renew_recovery_codes, AccountFactors, BeginTotp, ConfirmTotp, FactorsInfo, LoginCode,
    Reauthenticate, Reauthenticated, RecoveryCodes, RemoveTotp, RenewRecoveryCodes, TotpEnrolment,
};
pub use passkeys::{
    list_passkeys, passkey_reauth, passkey_register, passkey_register_begin, passkey_sign_in,
    passkey_sign_in_begin, remove_passkey, rename_passkey, ListPasskeys, PasskeyChallenge,
    PasskeyInfo, PasskeyReauth, PasskeyRegister, PasskeyRegisterBegin, PasskeySignIn,
    PasskeySignInBegin, RemovePasskey, RenamePasskey,
};
pub use sessions::{
    end_other_sessions, end_session, list_sessions, EndOtherSessions, EndSession, ListSessions,
    SessionInfo, SessionRow, SessionsEnded, SessionsList,
};
pub use sign_in::{
    login, logout, refresh, register, LoggedOut, Login, Logout, Refresh, Register, Registered,
    TokenResponse,
};

/// Text made safe for HTML, in element content and in quoted attribute values alike.
#[cfg(feature = "ssr")]
pub use identity::mail::compose::escape;

/// What every feature's server side shares: the state, the error hook, the client's address,
/// the session's cookies and small helpers.
#[cfg(feature = "ssr")]
pub mod server {
    use super::renewal;
    use super::*;
    use crate::auth::{
        access::AuthUser, credentials::password::Ticket, credentials::CheckError,
        extractor::Authenticated, sessions::WriteError, throttle::Throttled,
        tokens::access::now_unix, AppState, Auth, HealthAnswer, Issued,
    };
    use crate::error::ApiError;
    use axum::{extract::ConnectInfo, http::header::SET_COOKIE};
    use leptos::prelude::use_context;
    use leptos_axum::{extract, ResponseOptions};
    use std::net::SocketAddr;

    pub use super::{
        account::server::me_handler,
        sessions::server::{session_row, sessions_list},
    };

    /// Gives a server function's error its own status and headers (401 with a challenge, 429
    /// with `Retry-After`, ...) instead of Leptos's 500 — when this request *is* the server
    /// function's (not a page rendering that calls it) and the caller is not a browser posting a
    /// form without JavaScript: that one must get Leptos's redirect back to the form, which a
    /// status would replace.
    pub fn answered<T>(path: &str, result: Result<T, ApiError>) -> Result<T, ApiError> {
        if let Err(err) = &result {
            let parts = use_context::<http::request::Parts>();
            let own = parts.as_ref().is_some_and(|p| p.uri.path() == path);
            if let (true, false, Some(res)) = (own, form_post(), use_context::<ResponseOptions>()) {
                res.set_status(err.status());
                for (name, value) in err.headers() {
                    res.insert_header(name, value);
                }
            }
        }
        result
    }

    /// Whether this request is a browser posting a form without JavaScript (it accepts HTML):
    /// its answer is a redirect, to a page that shows the outcome.
    pub fn form_post() -> bool {
        use_context::<http::request::Parts>().is_some_and(|p| {
            p.headers
                .get(http::header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("text/html"))
        })
    }

    pub(super) fn state() -> Result<AppState, ApiError> {
        use_context::<AppState>().ok_or_else(|| {
            tracing::error!("AppState missing from the server function context");
            ApiError::internal()
        })
    }

    /// The answer to a failure on our side, its cause logged (never sent): `503
    /// temporarily_unavailable` with `Retry-After` when the cause is the database that cannot
    /// be reached or is busy, the generic 500 otherwise (see [`crate::auth::HealthAnswer`]).
    /// It finds the database's health in the server function's context: inside `detached`
    /// (a task of its own, with no context), ask `auth.health.answer` instead.
    pub(super) fn internal(
        context: &str,
        err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ApiError {
        let err: Box<dyn std::error::Error + Send + Sync> = err.into();
        match use_context::<AppState>() {
            Some(state) => state.auth.health.answer(context, &*err),
            None => crate::auth::internal(context, &err),
        }
    }

    /// `503 temporarily_unavailable` at once while the database is known to be unreachable:
    /// asked first by each request that needs it, so none waits for the pool in vain.
    pub(super) fn database(state: &AppState) -> Result<(), ApiError> {
        state
            .auth
            .health
            .check()
            .map_err(|_| ApiError::database_unavailable())
    }

    /// A write to the sessions that did not happen: 503 (with `Retry-After`) when it could not
    /// get its turn in time, else a 500 whose cause is logged.
    pub(super) fn not_written(context: &str, err: WriteError) -> ApiError {
        match err {
            WriteError::Busy => {
                tracing::warn!("{context}: the sessions' writes are queued too long");
                ApiError::unavailable(1)
            }
            WriteError::Db(e) => internal(context, e),
        }
    }

    pub(super) fn set_cookie(value: axum::http::HeaderValue) {
        if let Some(res) = use_context::<ResponseOptions>() {
            res.append_header(SET_COOKIE, value);
        }
    }

    /// The request's `User-Agent`, as text.
    pub(super) fn user_agent() -> String {
        use_context::<http::request::Parts>()
            .and_then(|p| {
                p.headers
                    .get(http::header::USER_AGENT)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            })
            .unwrap_or_default()
    }

    /// Who made this request, as a notice tells it (its device and address), owned so that
    /// it can move into a [`detached`] task.
    pub(super) struct Requester {
        pub(super) agent: String,
        pub(super) address: Option<std::net::IpAddr>,
    }

    impl Requester {
        pub(super) async fn of(state: &AppState) -> Self {
            Self {
                agent: user_agent(),
                address: client_addr(state).await,
            }
        }

        pub(super) fn origin(&self) -> crate::auth::email::Origin<'_> {
            crate::auth::email::Origin {
                user_agent: &self.agent,
                address: self.address,
            }
        }
    }

    /// The client's address (see [`TrustedProxies`](crate::auth::proxies::TrustedProxies)),
    /// when the server was started with connect info.
    pub(super) async fn client_addr(state: &AppState) -> Option<std::net::IpAddr> {
        let ConnectInfo(peer) = extract::<ConnectInfo<SocketAddr>>().await.ok()?;
        let headers = use_context::<http::request::Parts>().map(|p| p.headers);
        Some(
            state
                .auth
                .proxies
                .client(peer.ip(), &headers.unwrap_or_default()),
        )
    }

    pub(super) async fn authenticate() -> Result<AuthUser, ApiError> {
        let Authenticated(user) = extract::<Result<Authenticated, ApiError>>()
            .await
            .map_err(|e| internal("cannot read the request", e))??;
        Ok(user)
    }

    /// A place in the hashing queue, or 503 `temporarily_unavailable` before any other work.
    pub(super) fn hashing_ticket(state: &AppState) -> Result<Ticket, ApiError> {
        state.auth.passwords.ticket().map_err(|_| {
            tracing::warn!("password queue full: request refused");
            ApiError::busy()
        })
    }

    /// A password check that let nobody through (see [`CheckError`]): `wrong` answers a wrong
    /// password; `counting` names the task that counts the attempt, for the log.
    pub(super) fn check_refused(
        e: CheckError,
        counting: &'static str,
        wrong: impl FnOnce() -> ApiError,
    ) -> ApiError {
        match e {
            CheckError::DatabaseDown => ApiError::database_unavailable(),
            CheckError::Busy => {
                tracing::warn!("password queue full: request refused");
                ApiError::busy()
            }
            CheckError::Throttled(throttled) => sign_in_refused(throttled),
            CheckError::Wrong => wrong(),
            CheckError::Gone => ApiError::session_ended(),
            CheckError::Disabled => ApiError::account_disabled(),
            CheckError::Store(e) => internal("looking up a user failed", e),
            CheckError::Hash(e) => internal("password verification failed", e),
            CheckError::Task(e) => internal(counting, e),
        }
    }

    /// A sign-in (or a signed-in password check) the throttle did not let through.
    pub(super) fn sign_in_refused(throttled: Throttled) -> ApiError {
        match throttled {
            Throttled::TooMany { retry_after } => ApiError::too_many_requests(retry_after),
            Throttled::Unavailable => throttle_unavailable(),
        }
    }

    /// The shared limits could not be counted (see [`Throttled::Unavailable`]).
    pub(super) fn throttle_unavailable() -> ApiError {
        ApiError::unavailable(crate::auth::throttle::UNAVAILABLE_RETRY_SECS)
    }

    /// The OAuth 2 token response for tokens just issued. Where the tokens go to cookies (a
    /// page's request), the refresh token stays in its `HttpOnly` cookie only: in the body, any
    /// script on the page could read it.
    pub(super) fn token_response(
        issued: &Issued,
        username: String,
        cookies: bool,
    ) -> TokenResponse {
        TokenResponse {
            access_token: issued.access_token.clone(),
            token_type: "Bearer".into(),
            expires_in: (issued.access_exp - now_unix()).max(0) as u64,
            refresh_token: (!cookies).then(|| issued.refresh_token.clone()),
            username,
            device_token: None,
        }
    }

    /// Both cookies of tokens just issued (see [`renewal::session_cookies`]).
    pub(super) fn set_session_cookies(auth: &Auth, issued: &Issued) {
        for cookie in renewal::session_cookies(auth, issued, now_unix()) {
            set_cookie(cookie);
        }
    }

    pub(super) fn clear_session_cookies(auth: &Auth) {
        for cookie in renewal::cleared_session_cookies(auth) {
            set_cookie(cookie);
        }
    }

    /// Runs a change that writes the database and then memory in a task of its own: if the
    /// client hangs up, this request's future is dropped, but a write the database may already
    /// have committed must still reach memory (an ended session must be refused at once).
    pub(super) async fn detached<T: Send + 'static>(
        what: &'static str,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, ApiError> {
        tokio::spawn(work).await.map_err(|e| internal(what, e))
    }
}
