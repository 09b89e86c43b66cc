//! Second factors and fresh authentication: the sign-in's second step (`POST /api/login/code`),
//! confirming it is you again (`POST /api/reauth`), and the account's authenticator app and
//! recovery codes (`GET /api/account/factors`, `POST /api/totp/begin`, `/api/totp/confirm`,
//! `/api/totp/remove`, `/api/recovery-codes`).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;
#[cfg(feature = "ssr")]
use server_fn::ServerFn;

#[cfg(feature = "ssr")]
use super::server::answered;
use super::TokenResponse;
use crate::error::ApiError;

/// The account's second factors, and how fresh this session's authentication is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct FactorsInfo {
    /// Whether sign-in asks for an authenticator app's code after the password.
    pub totp_enabled: bool,
    /// When it was turned on (unix seconds).
    pub totp_since: Option<i64>,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
    /// Until when this session may make dangerous changes without confirming it is you again
    /// (unix seconds; in the past when it must confirm first).
    pub fresh_until: i64,
    /// Seconds from now until then (0 when past), as the server counted.
    pub fresh_for: i64,
}

/// An authenticator app's enrolment, waiting for its first code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TotpEnrolment {
    /// The secret in base32, for typing into the app by hand.
    pub secret: String,
    /// The `otpauth://` address the QR code holds.
    pub otpauth_url: String,
    /// The QR code, an SVG document.
    pub qr_svg: String,
}

/// A new set of recovery codes: shown this once, each works once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    pub codes: Vec<String>,
}

/// The answer to confirming it is you.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Reauthenticated {
    /// Until when this session may make dangerous changes (unix seconds).
    pub fresh_until: i64,
}

/// The second step's page (`/two-step`), with where to go next and, after a refused code
/// posted without JavaScript, the refusal's code (`error`, never text).
#[cfg(feature = "ssr")]
pub fn code_step(next: Option<&str>, error: Option<crate::error::ErrorCode>) -> String {
    let mut url = String::from("/two-step");
    let mut sep = '?';
    if let Some(next) = crate::validate::safe_next(next) {
        url.push(sep);
        sep = '&';
        url.push_str("next=");
        url.push_str(&crate::routes::encode_component(&next));
    }
    if let Some(error) = error {
        url.push(sep);
        url.push_str("error=");
        url.push_str(error.as_str());
    }
    url
}

/// `POST /api/login/code`: the second step of a sign-in whose account has a second factor:
/// `code` is the authenticator app's code now, or an unused recovery code. The waiting sign-in
/// is the page's cookie, or `pending_token` (an API client's, from the 403 of
/// `POST /api/login`). Answers as `POST /api/login` does.
#[server(prefix = "/api", endpoint = "login/code")]
pub async fn login_code(
    code: String,
    pending_token: Option<String>,
    next: Option<String>,
) -> Result<TokenResponse, ApiError> {
    answered(
        LoginCode::PATH,
        server::login_code(code, pending_token, next).await,
    )
}

/// `POST /api/login/code`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginCodeBody {
    /// Six digits from the authenticator app, or a recovery code (`xxxxx-xxxxx`).
    code: String,
    /// The `pending_token` of the 403 `second_factor_required` (`ps1.…`); left out, the
    /// page's cookie is used.
    #[serde(default)]
    pending_token: Option<String>,
    /// Where a browser goes next (a path on this site).
    #[serde(default)]
    next: Option<String>,
}

#[cfg(feature = "ssr")]
impl From<LoginCodeBody> for LoginCode {
    fn from(b: LoginCodeBody) -> Self {
        let LoginCodeBody {
            code,
            pending_token,
            next,
        } = b;
        Self {
            code,
            pending_token,
            next,
        }
    }
}

/// `POST /api/reauth`: confirms it is you (the password, and a code when the account has a
/// second factor), so that this session may make dangerous changes for `REAUTH_WINDOW`.
#[server(prefix = "/api", endpoint = "reauth")]
pub async fn reauthenticate(
    password: String,
    code: Option<String>,
    next: Option<String>,
) -> Result<Reauthenticated, ApiError> {
    answered(
        Reauthenticate::PATH,
        server::reauthenticate(password, code, next).await,
    )
}

/// `POST /api/reauth`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReauthBody {
    /// The account's password.
    password: String,
    /// With a second factor on: the authenticator app's code, or a recovery code.
    #[serde(default)]
    code: Option<String>,
    /// The page a browser goes back to (a path on this site).
    #[serde(default)]
    next: Option<String>,
}

#[cfg(feature = "ssr")]
impl From<ReauthBody> for Reauthenticate {
    fn from(b: ReauthBody) -> Self {
        let ReauthBody {
            password,
            code,
            next,
        } = b;
        Self {
            password,
            code,
            next,
        }
    }
}

/// `GET /api/account/factors`: the caller's second factors.
#[server(prefix = "/api", endpoint = "account/factors", input = GetUrl)]
pub async fn account_factors() -> Result<FactorsInfo, ApiError> {
    answered(AccountFactors::PATH, server::account_factors().await)
}

/// `POST /api/totp/begin`: a new authenticator secret to scan (or type), waiting for its first
/// code. Needs a fresh authentication.
#[server(prefix = "/api", endpoint = "totp/begin")]
pub async fn begin_totp() -> Result<TotpEnrolment, ApiError> {
    answered(BeginTotp::PATH, server::begin_totp().await)
}

/// `POST /api/totp/confirm` (`code`): turns the waiting authenticator on with its first code;
/// answers ten recovery codes (shown once). Every other session ends. Needs a fresh
/// authentication.
#[server(prefix = "/api", endpoint = "totp/confirm")]
pub async fn confirm_totp(code: String) -> Result<RecoveryCodes, ApiError> {
    answered(ConfirmTotp::PATH, server::confirm_totp(code).await)
}

/// `POST /api/totp/confirm`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotpBody {
    /// The six digits the authenticator app shows now.
    code: String,
}

#[cfg(feature = "ssr")]
impl From<ConfirmTotpBody> for ConfirmTotp {
    fn from(b: ConfirmTotpBody) -> Self {
        Self { code: b.code }
    }
}

/// `POST /api/totp/remove`: turns the authenticator off and drops the recovery codes. Every
/// other session ends. Needs a fresh authentication.
#[server(prefix = "/api", endpoint = "totp/remove")]
pub async fn remove_totp() -> Result<FactorsInfo, ApiError> {
    answered(RemoveTotp::PATH, server::remove_totp().await)
}

/// `POST /api/recovery-codes`: ten new recovery codes; the old ones stop working. Needs a
/// fresh authentication.
#[server(prefix = "/api", endpoint = "recovery-codes")]
pub async fn renew_recovery_codes() -> Result<RecoveryCodes, ApiError> {
    answered(
        RenewRecoveryCodes::PATH,
        server::renew_recovery_codes().await,
    )
}

#[cfg(feature = "ssr")]
pub mod server {
    use super::*;
    use crate::api::server::*;
    use crate::api::sign_in::server::{not_started, signed_in};
    use crate::auth::{
        access::AuthUser,
        factors::{ChangeError, CodeError, FinishError, ReauthError},
        tokens::access::now_unix,
        AppState,
    };
    use crate::validate;
    use leptos_axum::redirect;

    fn pending_cookie(state: &AppState) -> Option<String> {
        let parts = use_context::<http::request::Parts>()?;
        state
            .auth
            .cookie
            .read_pending(&parts.headers)
            .map(str::to_owned)
    }

    /// A code that was not accepted.
    pub(crate) fn code_refused(e: CodeError) -> ApiError {
        match e {
            CodeError::Wrong => ApiError::invalid_code(),
            CodeError::Throttled(t) => sign_in_refused(t),
            CodeError::DatabaseDown => ApiError::database_unavailable(),
            CodeError::Store(e) => internal("checking a code failed", e),
        }
    }

    fn change_refused(e: ChangeError, conflict: &str) -> ApiError {
        match e {
            ChangeError::Conflict => ApiError::factor_conflict(conflict),
            ChangeError::SessionOver => ApiError::session_ended(),
            ChangeError::Code(e) => code_refused(e),
            ChangeError::Write(e) => not_written("changing a second factor failed", e),
        }
    }

    /// The signed-in caller, when their session's authentication is recent enough for a
    /// dangerous change: else `403 reauth_required`.
    pub(crate) async fn fresh_caller(state: &AppState) -> Result<AuthUser, ApiError> {
        let user = authenticate().await?;
        database(state)?;
        match state.auth.fresh_until(user.session_id).await {
            Ok(Some(until)) if until >= now_unix() => Ok(user),
            Ok(Some(_)) => Err(ApiError::reauth_required()),
            Ok(None) => Err(ApiError::session_ended()),
            Err(e) => Err(internal("reading a session failed", e)),
        }
    }

    pub async fn login_code(
        code: String,
        pending_token: Option<String>,
        next: Option<String>,
    ) -> Result<TokenResponse, ApiError> {
        let state = state()?;
        let auth = state.auth.clone();
        // Without JavaScript, a refusal goes back to the sign-in page at the step to take next,
        // its reason as a code in the address.
        let back = |e: ApiError| {
            if form_post() {
                let to = if e.error == crate::error::ErrorCode::SignInExpired {
                    let next = validate::safe_next(next.as_deref())
                        .map(|n| format!("&next={}", crate::routes::encode_component(&n)))
                        .unwrap_or_default();
                    format!("/login?error=sign_in_expired{next}")
                } else {
                    super::code_step(next.as_deref(), Some(e.error))
                };
                redirect(&to);
            }
            e
        };
        let Some(token) = pending_token
            .filter(|t| !t.trim().is_empty())
            .or_else(|| pending_cookie(&state))
        else {
            return Err(back(ApiError::sign_in_expired()));
        };
        let addr = client_addr(&state).await;
        let agent = user_agent();
        // The code spent, the waiting sign-in spent and the session started, in a task of
        // their own: a client that hangs up halfway leaves no code spent for nothing.
        let finished = detached("the sign-in's second step failed", {
            let auth = auth.clone();
            async move {
                let origin = crate::auth::email::Origin {
                    user_agent: &agent,
                    address: addr,
                };
                let proof = auth.finish_sign_in(&token, &code, origin).await?;
                let issued = auth.start_session(&proof, &agent, addr).await;
                Ok::<_, FinishError>((proof, issued))
            }
        })
        .await?;
        let over = || {
            set_cookie(auth.cookie.clear_pending());
            back(ApiError::sign_in_expired())
        };
        let (proof, issued) = match finished {
            Ok(done) => done,
            Err(FinishError::Over) => return Err(over()),
            Err(FinishError::Code(e)) => {
                if matches!(e, CodeError::Wrong) {
                    tracing::info!("second factor refused");
                }
                return Err(back(code_refused(e)));
            }
        };
        let issued = issued.map_err(not_started)?.ok_or_else(over)?;
        set_cookie(auth.cookie.clear_pending());
        tracing::info!(
            user_id = proof.user().id,
            method = proof.method().as_str(),
            "login succeeded"
        );
        let next = validate::safe_next(next.as_deref()).unwrap_or_else(|| "/profile".into());
        Ok(signed_in(&auth, &proof, &issued, &next))
    }

    pub async fn reauthenticate(
        password: String,
        code: Option<String>,
        next: Option<String>,
    ) -> Result<Reauthenticated, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        // Without JavaScript, back to the page the change was asked on: `reauth=ok` (make the
        // change again), or the refusal's code.
        let back = validate::safe_next(next.as_deref())
            .map(|n| n.split(['?', '#']).next().unwrap_or_default().to_owned())
            .filter(|_| form_post());
        let refused = |e: ApiError| {
            if let Some(page) = &back {
                redirect(&format!("{page}?reauth={}", e.error.as_str()));
            }
            e
        };
        // Outside the rules, it is no account's password: counted, then refused unhashed.
        let password = validate::password(&password).is_ok().then_some(password);
        let auth = state.auth.clone();
        let done = detached("the reauthentication task failed", async move {
            auth.reauthenticate(user.user_id, user.session_id, password, code.as_deref())
                .await
        })
        .await?;
        match done {
            Ok(()) => {}
            Err(ReauthError::Password(e)) => {
                return Err(refused(check_refused(
                    e,
                    "the password check count failed",
                    || {
                        tracing::info!(user_id = user.user_id, "reauthentication: wrong password");
                        ApiError::wrong_password()
                    },
                )))
            }
            Err(ReauthError::CodeNeeded) => {
                return Err(refused(ApiError::second_factor_required(None)))
            }
            Err(ReauthError::Code(e)) => return Err(refused(code_refused(e))),
            Err(ReauthError::SessionOver) => return Err(ApiError::session_ended()),
        }
        tracing::info!(user_id = user.user_id, "session reauthenticated");
        if let Some(page) = &back {
            redirect(&format!("{page}?reauth=ok"));
        }
        let window = crate::auth::sessions::secs(state.auth.factors.reauth_window);
        Ok(Reauthenticated {
            fresh_until: now_unix().saturating_add(window),
        })
    }

    pub(crate) async fn factors_of(
        state: &AppState,
        user: &AuthUser,
    ) -> Result<FactorsInfo, ApiError> {
        database(state)?;
        let status = state
            .auth
            .factor_status(user.user_id)
            .await
            .map_err(|e| internal("reading the second factors failed", e))?;
        let fresh_until = state
            .auth
            .fresh_until(user.session_id)
            .await
            .map_err(|e| internal("reading a session failed", e))?
            .ok_or_else(ApiError::session_ended)?;
        Ok(FactorsInfo {
            totp_enabled: status.totp_since.is_some(),
            totp_since: status.totp_since,
            recovery_codes_left: status.recovery_left,
            fresh_until,
            fresh_for: (fresh_until - now_unix()).max(0),
        })
    }

    pub async fn account_factors() -> Result<FactorsInfo, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        factors_of(&state, &user).await
    }

    pub async fn begin_totp() -> Result<TotpEnrolment, ApiError> {
        let state = state()?;
        let user = fresh_caller(&state).await?;
        let username = state
            .auth
            .users
            .get(user.user_id)
            .await
            .map_err(|e| internal("looking up a user failed", e))?
            .ok_or_else(ApiError::session_ended)?
            .username;
        let enrolment = state
            .auth
            .begin_totp(user.user_id, &username)
            .await
            .map_err(|e| change_refused(e, "Two-step sign-in is already on."))?;
        Ok(TotpEnrolment {
            secret: enrolment.secret,
            otpauth_url: enrolment.url,
            qr_svg: enrolment.qr_svg,
        })
    }

    pub async fn confirm_totp(code: String) -> Result<RecoveryCodes, ApiError> {
        let state = state()?;
        let user = fresh_caller(&state).await?;
        let auth = state.auth.clone();
        let requester = Requester::of(&state).await;
        let codes = detached("turning two-step sign-in on failed", async move {
            auth.confirm_totp(user.user_id, user.session_id, &code, requester.origin())
                .await
        })
        .await?
        .map_err(|e| {
            change_refused(
                e,
                "No authenticator is waiting to be confirmed: start again from the beginning.",
            )
        })?;
        tracing::info!(user_id = user.user_id, "two-step sign-in turned on");
        Ok(RecoveryCodes { codes })
    }

    pub async fn remove_totp() -> Result<FactorsInfo, ApiError> {
        let state = state()?;
        let user = fresh_caller(&state).await?;
        let auth = state.auth.clone();
        let requester = Requester::of(&state).await;
        detached("turning two-step sign-in off failed", async move {
            auth.remove_totp(user.user_id, Some(user.session_id), requester.origin())
                .await
        })
        .await?
        .map_err(|e| change_refused(e, "Two-step sign-in is not on."))?;
        tracing::info!(user_id = user.user_id, "two-step sign-in turned off");
        factors_of(&state, &user).await
    }

    pub async fn renew_recovery_codes() -> Result<RecoveryCodes, ApiError> {
        let state = state()?;
        let user = fresh_caller(&state).await?;
        let auth = state.auth.clone();
        let requester = Requester::of(&state).await;
        let codes = detached("renewing the recovery codes failed", async move {
            auth.renew_recovery_codes(user.user_id, user.session_id, requester.origin())
                .await
        })
        .await?
        .map_err(|e| {
            change_refused(
                e,
                "Recovery codes come with two-step sign-in: turn it on first.",
            )
        })?;
        tracing::info!(user_id = user.user_id, "recovery codes renewed");
        Ok(RecoveryCodes { codes })
    }
}

#[cfg(feature = "ssr")]
impl From<super::contract::NoFields> for BeginTotp {
    fn from(super::contract::NoFields {}: super::contract::NoFields) -> Self {
        Self {}
    }
}

#[cfg(feature = "ssr")]
impl From<super::contract::NoFields> for RemoveTotp {
    fn from(super::contract::NoFields {}: super::contract::NoFields) -> Self {
        Self {}
    }
}

#[cfg(feature = "ssr")]
impl From<super::contract::NoFields> for RenewRecoveryCodes {
    fn from(super::contract::NoFields {}: super::contract::NoFields) -> Self {
        Self {}
    }
}
