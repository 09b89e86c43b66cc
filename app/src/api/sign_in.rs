//! Signing up, in and out, and renewing a session: `POST /api/register`, `/api/login`,
//! `/api/logout` and `/api/refresh`, each with its body as the API takes it.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
#[cfg(feature = "ssr")]
use server_fn::ServerFn;

#[cfg(feature = "ssr")]
use super::server::answered;
use crate::error::ApiError;

/// The answer to a successful login or refresh, in the OAuth 2 token-response shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// Seconds from now until the access token expires.
    pub expires_in: u64,
    /// Single use: `POST /api/refresh` answers a new pair for it. Not sent to a page, which
    /// has it in an `HttpOnly` cookie (so the browser's build has no field for it).
    #[cfg(feature = "ssr")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub username: String,
    /// A sign-in's proof that this client signed in to this account (`dv1.…`, good for a
    /// year): sent back as `device_token` with the next sign-in, it is counted on this device's
    /// own allowance, which guesses from elsewhere cannot use up. Not sent to a page, which has
    /// it in an `HttpOnly` cookie (so the browser's build has no field for it).
    #[cfg(feature = "ssr")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

/// The answer to a successful registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Registered {
    pub user_id: i64,
    pub username: String,
}

/// The answer to a successful logout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LoggedOut {
    pub revoked: bool,
}

/// `POST /api/register`: creates an account. 409 `username_taken` if the name is in use,
/// 422 `invalid_input` if a rule is broken, 429 when the address has created too many accounts
/// lately. Browsers are then sent to the sign-in page.
#[server(prefix = "/api", endpoint = "register")]
pub async fn register(
    username: String,
    password: String,
    password_confirm: Option<String>,
    email: Option<String>,
) -> Result<Registered, ApiError> {
    answered(
        Register::PATH,
        server::register(username, password, password_confirm, email).await,
    )
}

/// `POST /api/register`. The page's form also sends `password_confirm`, which must then equal
/// `password`; API clients leave it out.
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// 3 to 32 characters from `A-Z a-z 0-9 _ . -` (surrounding ASCII spaces are trimmed);
    /// compared without regard to case.
    #[schema(pattern = "^[ \\t\\n\\f\\r]*[A-Za-z0-9_.-]{3,32}[ \\t\\n\\f\\r]*$")]
    username: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    #[serde(default)]
    #[schema(ignore)]
    password_confirm: Option<String>,
    /// An e-mail address for the account (required when the site says so; empty or left out:
    /// none): a link sent to it confirms it, and only then does it receive reset links and
    /// notices, and sign in.
    #[serde(default)]
    #[schema(schema_with = crate::api::email::address_or_empty)]
    email: String,
}

#[cfg(feature = "ssr")]
impl From<RegisterBody> for Register {
    fn from(b: RegisterBody) -> Self {
        let RegisterBody {
            username,
            password,
            password_confirm,
            email,
        } = b;
        Self {
            username,
            password,
            password_confirm,
            email: Some(email),
        }
    }
}

/// `POST /api/login`: checks the password, sets the auth cookies and returns the token.
/// Browsers are sent on to `next` (a path on this site) or to `/profile`. `device_token` (else
/// the device cookie) is the proof of an earlier sign-in to this account from this client.
#[server(prefix = "/api", endpoint = "login")]
pub async fn login(
    username: String,
    password: String,
    next: Option<String>,
    device_token: Option<String>,
) -> Result<TokenResponse, ApiError> {
    answered(
        Login::PATH,
        server::login(username, password, next, device_token).await,
    )
}

/// `POST /api/login`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
    /// Where a browser goes next (a path on this site); API clients leave it out.
    #[serde(default)]
    next: Option<String>,
    /// The `device_token` of this client's last sign-in to this account: the attempt then
    /// counts on this device's own allowance, which guesses from elsewhere cannot use up. Left
    /// out, the device cookie is used; any other value counts as an unknown device.
    #[serde(default)]
    device_token: Option<String>,
}

#[cfg(feature = "ssr")]
impl From<LoginBody> for Login {
    fn from(b: LoginBody) -> Self {
        let LoginBody {
            username,
            password,
            next,
            device_token,
        } = b;
        Self {
            username,
            password,
            next,
            device_token,
        }
    }
}

/// `POST /api/logout`: revokes the presented token (cookie or Bearer) and ends its session, and
/// clears the cookies. Without a valid access token, the refresh token (the form field
/// `refresh_token`, else the refresh cookie) ends its session instead.
#[server(prefix = "/api", endpoint = "logout")]
pub async fn logout(refresh_token: Option<String>) -> Result<LoggedOut, ApiError> {
    answered(Logout::PATH, server::logout(refresh_token).await)
}

/// `POST /api/logout`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutBody {
    /// A refresh token (`rt2.…`) whose session ends too: the way to sign out for an API client
    /// whose access token has expired. Without a valid access token and without this field,
    /// the refresh cookie is used.
    #[serde(default)]
    refresh_token: Option<String>,
}

#[cfg(feature = "ssr")]
impl From<LogoutBody> for Logout {
    fn from(b: LogoutBody) -> Self {
        let LogoutBody { refresh_token } = b;
        Self { refresh_token }
    }
}

/// `POST /api/refresh`: rotates a refresh token (the form field `refresh_token`, else the
/// refresh cookie) and answers a new access token and a new refresh token. A refresh token used
/// twice ends its whole session, except the previous one within `REFRESH_REUSE_INTERVAL`.
#[server(prefix = "/api", endpoint = "refresh")]
pub async fn refresh(refresh_token: Option<String>) -> Result<TokenResponse, ApiError> {
    answered(Refresh::PATH, server::refresh(refresh_token).await)
}

/// `POST /api/refresh`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// The refresh token (`rt2.…`). Left out, the refresh cookie is used.
    #[serde(default)]
    refresh_token: Option<String>,
}

#[cfg(feature = "ssr")]
impl From<RefreshBody> for Refresh {
    fn from(b: RefreshBody) -> Self {
        let RefreshBody { refresh_token } = b;
        Self { refresh_token }
    }
}

#[cfg(feature = "ssr")]
pub mod server {
    use super::*;
    use crate::api::server::*;
    use crate::auth::{
        authn::{self, Step},
        credentials::CheckError,
        device::DeviceId,
        sessions::{EndReason, EndedByToken},
        throttle::{Throttled, Via},
        tokens::access::now_unix,
        users::CreateUserError,
        AppState, IssueError,
    };
    use crate::validate;
    use leptos_axum::redirect;

    /// A typed name without the spaces (or tab, newline) around it. Only ASCII whitespace: what
    /// the API document's pattern for a username allows, word for word.
    fn trim_ascii(text: &str) -> &str {
        text.trim_matches(|c: char| c.is_ascii_whitespace())
    }

    pub async fn register(
        username: String,
        password: String,
        password_confirm: Option<String>,
        email: Option<String>,
    ) -> Result<Registered, ApiError> {
        let username = trim_ascii(&username).to_string();
        validate::username(&username).map_err(ApiError::invalid_input)?;
        validate::password(&password).map_err(ApiError::invalid_input)?;
        if let Some(confirm) = password_confirm.filter(|c| !c.is_empty()) {
            if confirm != password {
                return Err(ApiError::invalid_input(validate::PASSWORDS_DIFFER));
            }
        }
        let state = state()?;
        let email = match email.filter(|e| !e.trim().is_empty()) {
            Some(_) if !state.auth.mail.enabled => {
                return Err(ApiError::invalid_input(validate::EMAIL_OFF))
            }
            Some(typed) => Some(
                crate::auth::mail::address::normalise(&typed)
                    .map_err(|e| ApiError::invalid_input(e.to_string()))?,
            ),
            None if state.auth.mail.enabled && state.auth.mail.required => {
                return Err(ApiError::invalid_input(validate::EMAIL_REQUIRED))
            }
            None => None,
        };
        database(&state)?;
        let ticket = hashing_ticket(&state)?;
        // Every sign-up that gets this far costs a hash and a row: counted per address.
        state
            .auth
            .throttle
            .sign_up(client_addr(&state).await)
            .await
            .map_err(|t| match t {
                Throttled::TooMany { retry_after } => ApiError::too_many_signups(retry_after),
                Throttled::Unavailable => throttle_unavailable(),
            })?;
        let hash = ticket
            .hash(password)
            .await
            .map_err(|e| internal("password hashing failed", e))?;
        let user = match state.auth.sign_up(&username, &hash, email.as_deref()).await {
            Ok(user) => user,
            Err(CreateUserError::Taken) => return Err(ApiError::username_taken()),
            Err(CreateUserError::Db(e)) => return Err(internal("creating a user failed", e)),
        };
        tracing::info!(user_id = user.id, "user registered");
        redirect("/login?registered=1");
        Ok(Registered {
            user_id: user.id,
            username: user.username,
        })
    }

    pub async fn login(
        username: String,
        password: String,
        next: Option<String>,
        device_token: Option<String>,
    ) -> Result<TokenResponse, ApiError> {
        let username = trim_ascii(&username);
        // Out-of-range input cannot match an account: refused before it touches the throttle
        // (whose memory it would fill) or any hashing. Same answer as a wrong password.
        // The one field takes a username or a verified address (kept normalised).
        let login = if username.contains('@') {
            crate::auth::mail::address::normalise(username).ok()
        } else {
            validate::username(username)
                .ok()
                .map(|()| username.to_owned())
        };
        let Some(login) = login.filter(|_| validate::password(&password).is_ok()) else {
            return Err(ApiError::invalid_credentials());
        };
        let state = state()?;
        let auth = &state.auth;
        let addr = client_addr(&state).await;
        let cookie = use_context::<http::request::Parts>()
            .and_then(|p| auth.cookie.read_device(&p.headers).map(str::to_owned));
        let proofs: Vec<String> = [device_token, cookie].into_iter().flatten().collect();
        let failed = || {
            // The username is not logged: people type passwords into it by mistake.
            tracing::info!("login failed");
            ApiError::invalid_credentials()
        };
        // The password checked and the attempt counted, the steps of `authn` (the database's
        // health and a place in the hashing queue first, the count before any password work).
        let step = authn::sign_in(auth, &login, addr, proofs, password, &user_agent()).await;
        crate::auth::metrics::sign_in(match &step {
            Ok(Step::Done(_)) => "ok",
            Ok(Step::AnotherFactorNeeded(_)) => "second_factor",
            Err(CheckError::Wrong | CheckError::Gone) => "wrong_password",
            Err(CheckError::Disabled) => "disabled",
            Err(CheckError::Throttled(_)) => "throttled",
            Err(CheckError::Busy) => "busy",
            Err(CheckError::DatabaseDown) => "unavailable",
            Err(CheckError::Store(_) | CheckError::Hash(_) | CheckError::Task(_)) => "error",
        });
        let step = step.map_err(|e| check_refused(e, "the sign-in count failed", failed))?;
        let proof = match step {
            Step::Done(proof) => proof,
            Step::AnotherFactorNeeded(pending) => {
                // No session yet: the sign-in waits for its code, bound to this browser by a
                // cookie (an API client holds the token itself).
                let token = auth
                    .hold_sign_in(&pending)
                    .await
                    .map_err(|e| internal("holding a sign-in failed", e))?;
                tracing::info!(
                    user_id = pending.user().id,
                    "password right; second factor asked for"
                );
                let page = from_a_page();
                if page {
                    let ttl = auth.factors.pending_ttl.as_secs();
                    if let Some(cookie) = auth.cookie.set_pending(&token, ttl) {
                        set_cookie(cookie);
                    }
                }
                if page {
                    // On to the second step's page (the WASM follows the redirect too).
                    redirect(&crate::api::factors::code_step(next.as_deref(), None));
                }
                return Err(ApiError::second_factor_required((!page).then_some(token)));
            }
        };
        let user_id = proof.user().id;
        // Only if the password just checked is still the account's (see `authn`).
        let issued = auth
            .start_session(&proof, &user_agent(), addr)
            .await
            .map_err(not_started)?
            .ok_or_else(failed)?;
        tracing::info!(
            user_id,
            known_device = matches!(proof.via(), Via::Device(_)),
            "login succeeded"
        );
        let next = validate::safe_next(next.as_deref()).unwrap_or_else(|| "/profile".into());
        Ok(signed_in(auth, &proof, &issued, &next))
    }

    /// A session that could not be started: 503 when its write did not get its turn, else a
    /// 500 whose cause is logged.
    pub(crate) fn not_started(e: IssueError) -> ApiError {
        match e {
            IssueError::Write(e) => not_written("starting a session failed", e),
            IssueError::Sign(e) => internal("signing a token failed", e),
        }
    }

    /// The answer to a sign-in that just started a session (by password, code, passkey or
    /// reset link): the session's cookies and a new device proof, the browser sent on to
    /// `to`, and the token response (the refresh token and the device proof in the body only
    /// for an API client: a page has them in HttpOnly cookies, where no script reads them).
    pub(crate) fn signed_in(
        auth: &crate::auth::Auth,
        proof: &authn::Proof,
        issued: &crate::auth::Issued,
        to: &str,
    ) -> TokenResponse {
        set_session_cookies(auth, issued);
        let device_proof = hand_out_device_proof(auth, proof);
        redirect(to);
        let page = from_a_page();
        TokenResponse {
            device_token: (!page).then_some(device_proof),
            ..token_response(issued, proof.user().username.clone(), page)
        }
    }

    /// A new proof that this client signed in to `proof`'s account, in the device cookie (a
    /// page's) and returned (for an API client's body). A new one at every sign-in, for a
    /// device id never used before: a proof copied earlier (from a backup of the browser, a
    /// shared machine) keeps its own allowance, and no amount of wrong guesses through it
    /// touches the owner's current one.
    pub(crate) fn hand_out_device_proof(auth: &crate::auth::Auth, proof: &authn::Proof) -> String {
        let device_proof = auth
            .devices
            .issue(proof.account(), DeviceId::random(), now_unix());
        if let Some(cookie) = auth.cookie.set_device(&device_proof) {
            set_cookie(cookie);
        }
        device_proof
    }

    /// Whether a sign-in comes from a page: a browser names the page (`Origin`, or `Referer`)
    /// on a POST; scripts and API clients name none.
    pub(crate) fn from_a_page() -> bool {
        use_context::<http::request::Parts>().is_some_and(|p| {
            p.headers.contains_key(http::header::ORIGIN)
                || p.headers.contains_key(http::header::REFERER)
        })
    }

    pub async fn logout(refresh_token: Option<String>) -> Result<LoggedOut, ApiError> {
        let state = state()?;
        let auth = state.auth.clone();
        let body_token = refresh_token.filter(|t| !t.trim().is_empty());
        let user = match authenticate().await {
            Ok(user) => user,
            // Nothing wrong with the token: its user could not be read (see below).
            Err(e) if e.error == crate::error::ErrorCode::TemporarilyUnavailable => return Err(e),
            Err(e) => {
                // A genuine refresh token still ends its session: an API client's access token
                // had merely expired, or a page's.
                let from_body = body_token.is_some();
                let Some(token) = body_token.or_else(refresh_cookie) else {
                    clear_session_cookies(&auth);
                    return Err(e);
                };
                let ended = end_by_refresh_token(&state, token).await?;
                // Decided: the browser drops both cookies whatever the answer (a failure to
                // write, above, keeps them, so the sign-out can be tried again).
                clear_session_cookies(&auth);
                return match ended {
                    EndedByToken::Ended(user_id) => {
                        tracing::info!(user_id, "logout: session ended by its refresh token");
                        redirect("/");
                        Ok(LoggedOut { revoked: true })
                    }
                    // A token the client chose to send is answered for; a stale cookie is not
                    // the client's doing, and the access token's reason is the one to give.
                    EndedByToken::AlreadyOver if from_body => Err(ApiError::session_ended()),
                    EndedByToken::NotGenuine if from_body => Err(ApiError::invalid_refresh_token()),
                    EndedByToken::AlreadyOver | EndedByToken::NotGenuine => Err(e),
                };
            }
        };
        // Nothing is revoked while the database cannot record it: the token stays valid, and
        // the client tries again (the cookies are kept, so a browser is not signed out of a
        // session that lives on).
        database(&state)?;
        // The token's jti goes on the revocation list (the product's contract) and its session ends,
        // in one transaction: every token of it is refused from the next request on.
        detached("the sign-out task failed", {
            let auth = auth.clone();
            async move { auth.sign_out(&user, now_unix()).await }
        })
        .await?
        .map_err(|e| not_written("recording a sign-out failed", e))?;
        // A refresh token sent as well is the client's to end too (of this session, it is
        // over already; of another one, that one ends).
        if let Some(token) = body_token {
            if let EndedByToken::Ended(user_id) = end_by_refresh_token(&state, token).await? {
                tracing::info!(user_id, "logout: the refresh token's session ended too");
            }
        }
        clear_session_cookies(&auth);
        tracing::info!(
            user_id = user.user_id,
            "logout: token revoked, session ended"
        );
        redirect("/");
        Ok(LoggedOut { revoked: true })
    }

    /// Ends the session of a refresh token presented to sign out, counted against the address's
    /// refresh allowance first (each costs a read).
    async fn end_by_refresh_token(
        state: &AppState,
        token: String,
    ) -> Result<EndedByToken, ApiError> {
        database(state)?;
        let auth = state.auth.clone();
        auth.sessions
            .refresh_limits()
            .address(client_addr(state).await)
            .map_err(|r| ApiError::too_many_refreshes(r.retry_after))?;
        detached("the logout task failed", async move {
            auth.sessions
                .end_by_refresh_token(&token, EndReason::Logout, now_unix())
                .await
        })
        .await?
        .map_err(|e| not_written("ending a session failed", e))
    }

    fn refresh_cookie() -> Option<String> {
        let state = use_context::<AppState>()?;
        let parts = use_context::<http::request::Parts>()?;
        state
            .auth
            .cookie
            .read_refresh(&parts.headers)
            .map(str::to_owned)
    }

    pub async fn refresh(refresh_token: Option<String>) -> Result<TokenResponse, ApiError> {
        let state = state()?;
        let auth = state.auth.clone();
        let (token, from_cookie) = match refresh_token.filter(|t| !t.trim().is_empty()) {
            Some(token) => (token, false),
            None => (refresh_cookie().ok_or_else(ApiError::missing_token)?, true),
        };
        let addr = client_addr(&state).await;
        let refreshed = detached("the refresh task failed", {
            let auth = auth.clone();
            async move { auth.refresh(&token, addr).await }
        })
        .await?;
        let issued = match refreshed {
            Ok(issued) => issued,
            Err(e) => {
                // Only a session that is over drops the cookies: a refusal for now (throttled,
                // busy, our failure) leaves the browser signed in to try again.
                if from_cookie && e.session_is_over() {
                    clear_session_cookies(&auth);
                }
                return Err(crate::api::renewal::refused(&auth, &e));
            }
        };
        let user = auth
            .users
            .get(issued.user_id)
            .await
            .map_err(|e| internal("looking up a user failed", e))?
            .ok_or_else(ApiError::session_ended)?;
        if from_cookie {
            set_session_cookies(&auth, &issued);
        }
        Ok(token_response(&issued, user.username.clone(), from_cookie))
    }
}
