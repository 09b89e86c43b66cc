//! E-mail: a forgotten password (`POST /api/password/forgot`, then `POST /api/password/reset`
//! from the page the mailed link opens), confirming an address (`POST /api/email/verify`), and
//! the signed-in person's address (`GET /api/account/email`, `POST /api/account/email/change`,
//! `POST /api/account/email/resend`).
//!
//! A mailed link only opens a page; only that page's POST spends it, so a mail scanner that
//! follows every link changes nothing.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;
#[cfg(feature = "ssr")]
use server_fn::ServerFn;

#[cfg(feature = "ssr")]
use super::server::answered;
use super::TokenResponse;
use crate::error::ApiError;

/// What a request for a reset link answers, whatever it found.
pub const RESET_REQUESTED: &str = "If that is the username or the confirmed e-mail address of \
    an account, a link to set a new password is on its way to the account's address. It works \
    for 30 minutes, once.";

/// The answer to a request for a reset link: the same words whatever was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ResetRequested {
    pub message: String,
}

/// The account's address as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EmailStatus {
    /// The account's address, if it has one.
    pub email: Option<String>,
    /// Whether `email` was confirmed by a link sent to it: only then does it receive reset
    /// links and notices, and sign in.
    pub verified: bool,
    /// An address a confirming link was sent to and not yet followed (a change waiting, or
    /// `email` itself while unverified).
    pub pending: Option<String>,
}

/// The answer to following an address-confirming link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EmailConfirmed {
    /// The address now confirmed as the account's.
    pub email: String,
}

/// What the server read for a page about e-mail before rendering it (the account's address, a
/// link's state, whether sign-up needs an address), as plain text fields: handed to the page in
/// the request's extensions, and to the browser inside the page itself, as the sessions list is
/// (see `crate::pages::sessions`), so the WASM needs no server function to show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailFacts(pub Vec<String>);

impl MailFacts {
    /// The `i`th field ("" when absent).
    pub fn get(&self, i: usize) -> &str {
        self.0.get(i).map_or("", String::as_str)
    }
}

/// Fields apart: the ASCII unit separator, which no field holds (it is taken out).
const SEPARATOR: char = '\u{1f}';

impl std::fmt::Display for MailFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields: Vec<String> = self.0.iter().map(|x| x.replace(SEPARATOR, "")).collect();
        f.write_str(&fields.join(&SEPARATOR.to_string()))
    }
}

impl std::str::FromStr for MailFacts {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.split(SEPARATOR).map(str::to_owned).collect()))
    }
}

/// `POST /api/password/forgot` (`login`: a username or an address): mails a link that sets a
/// new password to the account's confirmed address, if there is such an account. Answers the
/// same words, in the same time, whether or not there is.
#[server(prefix = "/api", endpoint = "password/forgot")]
pub async fn forgot_password(login: String) -> Result<ResetRequested, ApiError> {
    answered(ForgotPassword::PATH, server::forgot_password(login).await)
}

/// The schema of an optional address in a form: an address, or empty (a form's field left
/// blank, which means none).
#[cfg(feature = "ssr")]
pub(crate) fn address_or_empty() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
                .max_length(Some(254)),
        )
        // Empty, or only spaces: no address (a form's empty field).
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*$")),
        )
        .build()
        .into()
}

/// `POST /api/password/forgot`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordBody {
    /// The account's username, or its confirmed e-mail address.
    #[schema(max_length = 254)]
    login: String,
}

#[cfg(feature = "ssr")]
impl From<ForgotPasswordBody> for ForgotPassword {
    fn from(b: ForgotPasswordBody) -> Self {
        Self { login: b.login }
    }
}

/// `POST /api/password/reset` (`token` from the mailed link, `password`): sets the new
/// password, ends every session of the account, and signs this client in (cookies for a page,
/// tokens in the body for an API client). Each link works once, for 30 minutes, and not after a
/// password change.
#[server(prefix = "/api", endpoint = "password/reset")]
pub async fn reset_password(
    token: String,
    password: String,
    password_confirm: Option<String>,
    code: Option<String>,
) -> Result<TokenResponse, ApiError> {
    answered(
        ResetPassword::PATH,
        server::reset_password(token, password, password_confirm, code).await,
    )
}

/// `POST /api/password/reset`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordBody {
    /// The `token` of the mailed link (`ml1.…`).
    token: String,
    /// The new password: 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    #[serde(default)]
    #[schema(ignore)]
    password_confirm: Option<String>,
    /// When the account has two-step sign-in on: the authenticator app's code, or a recovery
    /// code (without it, such an account's reset is `403 second_factor_required`).
    #[serde(default)]
    code: Option<String>,
}

#[cfg(feature = "ssr")]
impl From<ResetPasswordBody> for ResetPassword {
    fn from(b: ResetPasswordBody) -> Self {
        let ResetPasswordBody {
            token,
            password,
            password_confirm,
            code,
        } = b;
        Self {
            token,
            password,
            password_confirm,
            code,
        }
    }
}

/// `POST /api/email/verify` (`token` from the mailed link): the address the link was sent to
/// becomes the account's, confirmed. No session needed: the link is the proof.
#[server(prefix = "/api", endpoint = "email/verify")]
pub async fn confirm_email(token: String) -> Result<EmailConfirmed, ApiError> {
    answered(ConfirmEmail::PATH, server::confirm_email(token).await)
}

/// `POST /api/email/verify`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmEmailBody {
    /// The `token` of the mailed link (`ml1.…`).
    token: String,
}

#[cfg(feature = "ssr")]
impl From<ConfirmEmailBody> for ConfirmEmail {
    fn from(b: ConfirmEmailBody) -> Self {
        Self { token: b.token }
    }
}

/// `GET /api/account/email`: the signed-in person's address and its state.
#[server(prefix = "/api", endpoint = "account/email", input = GetUrl)]
pub async fn account_email() -> Result<EmailStatus, ApiError> {
    answered(AccountEmail::PATH, server::account_email().await)
}

/// `POST /api/account/email/change` (`email`, `password`): mails a confirming link to the new
/// address; it becomes the account's once the link is followed. The current address, if
/// confirmed, stays the account's until then, and is told of the change.
#[server(prefix = "/api", endpoint = "account/email/change")]
pub async fn change_email(email: String, password: String) -> Result<EmailStatus, ApiError> {
    answered(
        ChangeEmail::PATH,
        server::change_email(email, password).await,
    )
}

/// `POST /api/account/email/change`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmailBody {
    /// The new address (at most 254 characters, ASCII).
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// The account's current password.
    password: String,
}

#[cfg(feature = "ssr")]
impl From<ChangeEmailBody> for ChangeEmail {
    fn from(b: ChangeEmailBody) -> Self {
        let ChangeEmailBody { email, password } = b;
        Self { email, password }
    }
}

/// `POST /api/account/email/resend`: a new confirming link to the address waiting to be
/// confirmed (at most one a minute).
#[server(prefix = "/api", endpoint = "account/email/resend")]
pub async fn resend_email() -> Result<EmailStatus, ApiError> {
    answered(ResendEmail::PATH, server::resend_email().await)
}

#[cfg(feature = "ssr")]
impl From<super::contract::NoFields> for ResendEmail {
    fn from(super::contract::NoFields {}: super::contract::NoFields) -> Self {
        Self {}
    }
}

#[cfg(feature = "ssr")]
pub mod server {
    /// The facts the page at `path` shows (see [`MailFacts`]), read before it renders: `None`
    /// for a page that shows none. `query` is the page address's query; `user` the signed-in
    /// caller, if any.
    pub async fn page_facts(
        auth: &crate::auth::Auth,
        path: &str,
        query: Option<&str>,
        user: Option<crate::auth::access::AuthUser>,
    ) -> Option<MailFacts> {
        use crate::auth::mail::links::Purpose;
        let token = || {
            query
                .unwrap_or_default()
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
                .unwrap_or_default()
                .to_owned()
        };
        let facts = match path {
            "/register" => vec![match (auth.mail.enabled, auth.mail.required) {
                (false, _) => "off".to_owned(),
                (true, true) => "required".to_owned(),
                (true, false) => "optional".to_owned(),
            }],
            "/account" => {
                let user_id = user?.user_id;
                match auth.address_status(user_id).await {
                    Ok(status) => vec![
                        status.email.unwrap_or_default(),
                        if status.verified {
                            "verified"
                        } else {
                            "unverified"
                        }
                        .to_owned(),
                        status.pending.unwrap_or_default(),
                        if auth.mail.enabled { "on" } else { "off" }.to_owned(),
                        totp_fact(auth, user_id).await,
                    ],
                    Err(e) => {
                        tracing::warn!(error = %e, "the account page's address could not be read");
                        vec!["".into(), "unknown".into()]
                    }
                }
            }
            "/security" => {
                let user = user?;
                match (
                    auth.factor_status(user.user_id).await,
                    auth.fresh_until(user.session_id).await,
                    auth.passkeys(user.user_id).await,
                ) {
                    (Ok(status), Ok(fresh), Ok(passkeys)) => {
                        let mut facts = vec![
                            status.totp_since.map(|t| t.to_string()).unwrap_or_default(),
                            status.recovery_left.to_string(),
                            fresh.unwrap_or_default().to_string(),
                            if auth.factors.passkeys.is_some() {
                                "on"
                            } else {
                                "off"
                            }
                            .to_owned(),
                        ];
                        // Five fields a passkey: id, name, added, last used, backed up.
                        for p in passkeys {
                            facts.extend([
                                p.id.to_string(),
                                p.name,
                                p.created_at.to_string(),
                                p.last_used_at.map(|t| t.to_string()).unwrap_or_default(),
                                (p.backed_up != 0).to_string(),
                            ]);
                        }
                        facts
                    }
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                        tracing::warn!(error = %e, "the security page's facts could not be read");
                        vec!["unknown".into()]
                    }
                }
            }
            "/reset" | "/verify" => {
                let purpose = if path == "/reset" {
                    Purpose::Reset
                } else {
                    Purpose::Verify
                };
                match auth.link_state(&token(), purpose).await {
                    Ok(LinkState::Live(link)) => {
                        // A reset of an account with two-step sign-in asks for a code too.
                        let code = purpose == Purpose::Reset
                            && auth
                                .factor_status(link.user_id)
                                .await
                                .is_ok_and(|f| f.totp_since.is_some());
                        vec![
                            "live".into(),
                            link.address,
                            if code { "code" } else { "" }.to_owned(),
                        ]
                    }
                    Ok(LinkState::Used) => vec!["used".into()],
                    Ok(LinkState::Expired) => vec!["expired".into()],
                    Ok(LinkState::Unknown) => vec!["invalid".into()],
                    Err(e) => {
                        tracing::warn!(error = %e, "a link's state could not be read");
                        vec!["unknown".into()]
                    }
                }
            }
            _ => return None,
        };
        Some(MailFacts(facts))
    }

    /// Whether two-step sign-in is on for `user_id`, as a page fact (`totp`, or empty).
    async fn totp_fact(auth: &crate::auth::Auth, user_id: i64) -> String {
        let on = auth
            .factor_status(user_id)
            .await
            .is_ok_and(|f| f.totp_since.is_some());
        if on { "totp" } else { "" }.to_owned()
    }

    use super::*;
    use crate::api::server::*;
    use crate::auth::{
        email::ResetOutcome,
        mail::{address, links::LinkState},
        AppState,
    };
    use crate::error::ErrorCode;
    use crate::validate;
    use identity::store::email::{AddressChange, AddressStatus, Confirmed, TooSoon};
    use leptos_axum::redirect;

    /// A typed username or address, as the account would keep it: an address normalised, a
    /// username trimmed. `None` when it can be neither.
    fn login_name(typed: &str) -> Option<String> {
        let typed = typed.trim();
        if typed.contains('@') {
            return address::normalise(typed).ok();
        }
        validate::username(typed).ok().map(|()| typed.to_owned())
    }

    fn link_refused(state: &LinkState) -> ApiError {
        ApiError::link(match state {
            LinkState::Used => ErrorCode::LinkUsed,
            LinkState::Expired => ErrorCode::LinkExpired,
            LinkState::Live(_) | LinkState::Unknown => ErrorCode::LinkInvalid,
        })
    }

    fn too_soon(TooSoon(secs): TooSoon) -> ApiError {
        ApiError::too_many_mails(secs.max(1) as u64)
    }

    fn status_of(status: AddressStatus) -> EmailStatus {
        EmailStatus {
            email: status.email,
            verified: status.verified,
            pending: status.pending,
        }
    }

    /// E-mail is off on this site (`EMAIL=off`): nothing is mailed.
    fn mail_off(state: &AppState) -> Result<(), ApiError> {
        if state.auth.mail.enabled {
            return Ok(());
        }
        Err(ApiError::mail_off())
    }

    pub async fn forgot_password(login: String) -> Result<ResetRequested, ApiError> {
        if login.chars().count() > crate::auth::mail::address::MAX_LEN {
            return Err(ApiError::invalid_input(validate::LOGIN_INVALID));
        }
        // What cannot be a username nor an address names no account: the same answer as for an
        // unknown one (counted all the same), rather than a hint.
        let login = login_name(&login);
        let state = state()?;
        mail_off(&state)?;
        database(&state)?;
        let auth = state.auth.clone();
        // Counted before anything is looked up: per client, then per recipient.
        auth.throttle
            .mail_request(
                client_addr(&state).await,
                login.as_deref().unwrap_or_default(),
            )
            .await
            .map_err(|t| match t {
                crate::auth::throttle::Throttled::TooMany { retry_after } => {
                    ApiError::too_many_mails(retry_after)
                }
                crate::auth::throttle::Throttled::Unavailable => throttle_unavailable(),
            })?;
        // Not waited for: the answer (its words and its time) cannot depend on what the
        // look-up finds. The request it came from may hang up; the task goes on.
        tokio::spawn(async move {
            let Some(login) = login else {
                return;
            };
            match auth.request_reset(&login).await {
                Ok(sent) => tracing::info!(sent, "password reset requested"),
                Err(e) => tracing::warn!(error = %e, "a password reset request failed"),
            }
        });
        redirect("/forgot?sent=1");
        Ok(ResetRequested {
            message: RESET_REQUESTED.into(),
        })
    }

    pub async fn reset_password(
        token: String,
        password: String,
        password_confirm: Option<String>,
        code: Option<String>,
    ) -> Result<TokenResponse, ApiError> {
        validate::password(&password).map_err(ApiError::invalid_input)?;
        if let Some(confirm) = password_confirm.filter(|c| !c.is_empty()) {
            if confirm != password {
                return Err(ApiError::invalid_input(validate::PASSWORDS_DIFFER));
            }
        }
        let state = state()?;
        database(&state)?;
        let auth = state.auth.clone();
        // A link that cannot work costs a read, never a hash.
        let link = auth
            .link_state(&token, crate::auth::mail::links::Purpose::Reset)
            .await
            .map_err(|e| internal("reading a link failed", e))?;
        let LinkState::Live(live) = &link else {
            return Err(link_refused(&link));
        };
        // An account with a second factor: its code is counted, checked and spent before any
        // hashing, so a guess costs no hash (and a wrong one leaves the link as it was).
        let factors = auth
            .factor_status(live.user_id)
            .await
            .map_err(|e| internal("reading the second factors failed", e))?;
        let accepted = match (factors.totp_since, code.filter(|c| !c.trim().is_empty())) {
            (None, _) => None,
            (Some(_), None) => return Err(ApiError::second_factor_required(None)),
            (Some(_), Some(code)) => Some(
                auth.accept_code(live.user_id, &code)
                    .await
                    .map_err(super::super::factors::server::code_refused)?,
            ),
        };
        let hash = hashing_ticket(&state)?
            .hash(password)
            .await
            .map_err(|e| internal("password hashing failed", e))?;
        let requester = Requester::of(&state).await;
        // The reset and this client's new session, in a task of their own: a client that hangs
        // up after the password is set still leaves every other session ended in memory.
        let outcome = detached("the password reset task failed", {
            let auth = auth.clone();
            async move {
                let origin = requester.origin();
                let proof = match auth.reset_password(&token, &hash, accepted, origin).await? {
                    ResetOutcome::Done(proof) => proof,
                    refused => return Ok(Err(refused)),
                };
                let issued = auth
                    .start_session(&proof, &requester.agent, requester.address)
                    .await;
                Ok::<_, crate::auth::sessions::WriteError>(Ok((proof, issued)))
            }
        })
        .await?
        .map_err(|e| not_written("resetting a password failed", e))?;
        let (proof, issued) = outcome.map_err(|refused| match refused {
            ResetOutcome::NotLive(state) => link_refused(&state),
            ResetOutcome::CodeNeeded => ApiError::second_factor_required(None),
            ResetOutcome::Done(_) => ApiError::internal(),
        })?;
        let issued = issued
            .map_err(super::super::sign_in::server::not_started)?
            // The password changed again meanwhile: set, but this client signs in anew.
            .ok_or_else(ApiError::session_ended)?;
        tracing::info!(
            user_id = issued.user_id,
            "password reset; every other session ended"
        );
        Ok(super::super::sign_in::server::signed_in(
            &auth,
            &proof,
            &issued,
            "/profile?reset=1",
        ))
    }

    pub async fn confirm_email(token: String) -> Result<EmailConfirmed, ApiError> {
        let state = state()?;
        database(&state)?;
        let requester = Requester::of(&state).await;
        match state.auth.confirm_address(&token, requester.origin()).await {
            Ok(Confirmed::Done { user_id, address }) => {
                tracing::info!(user_id, "e-mail address confirmed");
                redirect("/verify?confirmed=1");
                Ok(EmailConfirmed { email: address })
            }
            Ok(Confirmed::InUse) => Err(ApiError::email_taken()),
            Ok(Confirmed::NotLive(state)) => Err(link_refused(&state)),
            Err(e) => Err(internal("confirming an address failed", e)),
        }
    }

    async fn status(state: &AppState, user_id: i64) -> Result<EmailStatus, ApiError> {
        state
            .auth
            .address_status(user_id)
            .await
            .map(status_of)
            .map_err(|e| internal("reading an address failed", e))
    }

    pub async fn account_email() -> Result<EmailStatus, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        status(&state, user.user_id).await
    }

    pub async fn change_email(email: String, password: String) -> Result<EmailStatus, ApiError> {
        let state = state()?;
        let user = super::super::factors::server::fresh_caller(&state).await?;
        mail_off(&state)?;
        let address =
            address::normalise(&email).map_err(|e| ApiError::invalid_input(e.to_string()))?;
        let username =
            super::super::account::server::check_password(&state, &user, password).await?;
        let requester = Requester::of(&state).await;
        let auth = state.auth.clone();
        let changed = detached("the address change task failed", {
            let address = address.clone();
            async move {
                let origin = requester.origin();
                auth.change_address(user.user_id, &username, &address, origin)
                    .await
            }
        })
        .await?
        .map_err(|e| internal("changing an address failed", e))?;
        match changed {
            AddressChange::Sent => {
                tracing::info!(
                    user_id = user.user_id,
                    "address change: a link is on its way"
                );
                redirect("/account?email=sent");
            }
            AddressChange::Unchanged => redirect("/account?email=same"),
            AddressChange::TooSoon(soon) => return Err(too_soon(soon)),
        }
        status(&state, user.user_id).await
    }

    pub async fn resend_email() -> Result<EmailStatus, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        let username = state
            .auth
            .users
            .get(user.user_id)
            .await
            .map_err(|e| internal("looking up a user failed", e))?
            .ok_or_else(ApiError::session_ended)?
            .username;
        let sent = state
            .auth
            .resend_confirmation(user.user_id, &username)
            .await
            .map_err(|e| internal("sending a confirming link failed", e))?;
        match sent {
            None => return Err(ApiError::nothing_to_confirm()),
            Some(Err(soon)) => return Err(too_soon(soon)),
            Some(Ok(())) => redirect("/account?email=resent"),
        }
        status(&state, user.user_id).await
    }
}
