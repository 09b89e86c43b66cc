//! The HTTP door: server functions at stable paths under `/api`.
//!
//! Input is form-encoded (so the forms work before the WASM loads), output is JSON. Errors are
//! [`ApiError`], answered with the status their code calls for (see [`server::answered`]).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;
#[cfg(feature = "ssr")]
use server_fn::ServerFn;

use crate::error::ApiError;

/// The signed-in user as the UI and `/api/me` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SignedInUser {
    pub user_id: i64,
    pub username: String,
    /// When the account was created (unix seconds).
    pub created_at: i64,
    /// When the access token expires (unix seconds).
    pub expires_at: i64,
    /// Seconds until then, as the server counted when it answered (the browser's clock may be
    /// off: the UI schedules its refresh by this).
    pub expires_in: i64,
}

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

/// One signed-in session, as the sessions page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub id: String,
    /// The device as a person says it: "Chrome on Linux".
    pub device: String,
    pub user_agent: String,
    /// The client's address at sign-in or at the latest refresh.
    pub address: String,
    pub created_at: i64,
    pub last_used_at: i64,
    /// The session this request was made with.
    pub current: bool,
}

/// The sessions list of the sessions page as HTML, rendered on the server for the request (see
/// [`crate::pages::sessions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsFragment(pub String);

/// The answer to ending sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SessionsEnded {
    pub ended: usize,
}

/// The answer to deleting an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AccountDeleted {
    pub deleted: bool,
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
) -> Result<Registered, ApiError> {
    server::answered(
        Register::PATH,
        server::register(username, password, password_confirm).await,
    )
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
    server::answered(
        Login::PATH,
        server::login(username, password, next, device_token).await,
    )
}

/// `POST /api/logout`: revokes the presented token (cookie or Bearer) and ends its session, and
/// clears the cookies. Without a valid access token, the refresh token (the form field
/// `refresh_token`, else the refresh cookie) ends its session instead.
#[server(prefix = "/api", endpoint = "logout")]
pub async fn logout(refresh_token: Option<String>) -> Result<LoggedOut, ApiError> {
    server::answered(Logout::PATH, server::logout(refresh_token).await)
}

/// `POST /api/refresh`: rotates a refresh token (the form field `refresh_token`, else the
/// refresh cookie) and answers a new access token and a new refresh token. A refresh token used
/// twice ends its whole session, except the previous one within `REFRESH_REUSE_INTERVAL`.
#[server(prefix = "/api", endpoint = "refresh")]
pub async fn refresh(refresh_token: Option<String>) -> Result<TokenResponse, ApiError> {
    server::answered(Refresh::PATH, server::refresh(refresh_token).await)
}

/// `GET /api/sessions`: the caller's live sessions, most recently used first.
#[server(prefix = "/api", endpoint = "sessions", input = GetUrl)]
pub async fn list_sessions() -> Result<Vec<SessionInfo>, ApiError> {
    server::answered(ListSessions::PATH, server::list_sessions().await)
}

/// `POST /api/sessions/revoke` (`id`): ends one of the caller's sessions; 404 for any other id.
#[server(prefix = "/api", endpoint = "sessions/revoke")]
pub async fn revoke_session(id: String) -> Result<SessionsEnded, ApiError> {
    server::answered(RevokeSession::PATH, server::revoke_session(id).await)
}

/// `POST /api/sessions/revoke-others`: ends every session of the caller but this one.
#[server(prefix = "/api", endpoint = "sessions/revoke-others")]
pub async fn revoke_other_sessions() -> Result<SessionsEnded, ApiError> {
    server::answered(
        RevokeOtherSessions::PATH,
        server::revoke_other_sessions().await,
    )
}

/// `POST /api/password`: changes the password (the current one is checked, throttled per
/// session), ends every other session and rotates this one's tokens.
#[server(prefix = "/api", endpoint = "password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
    new_password_confirm: Option<String>,
) -> Result<TokenResponse, ApiError> {
    server::answered(
        ChangePassword::PATH,
        server::change_password(current_password, new_password, new_password_confirm).await,
    )
}

/// `POST /api/account/delete` (`password`): deletes the account and everything of it; every
/// session and token is refused at once.
#[server(prefix = "/api", endpoint = "account/delete")]
pub async fn delete_account(password: String) -> Result<AccountDeleted, ApiError> {
    server::answered(DeleteAccount::PATH, server::delete_account(password).await)
}

/// `GET /api/whoami`: like `/api/me`, but "no token" is `null` rather than a 401,
/// so every page can ask it. A bad token is still a 401 with its reason.
#[server(prefix = "/api", endpoint = "whoami", input = GetUrl)]
pub async fn current_user() -> Result<Option<SignedInUser>, ApiError> {
    server::answered(CurrentUser::PATH, server::current_user().await)
}

/// Text made safe for HTML, in element content and in quoted attribute values alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(feature = "ssr")]
pub mod server {
    use super::*;
    use crate::auth::{
        jwt::now_unix,
        sessions::{describe_device, EndReason, EndedByToken, RefreshError, WriteError},
        Auth, IssueError, Issued,
    };
    use crate::{
        auth::{
            access::{AuthRejection, AuthUser},
            authn::{self, Step},
            credentials::{self, Attempt, CheckError},
            device::DeviceId,
            extractor::{Authenticated, MaybeAuthUser, SignedIn},
            password::Ticket,
            throttle::{Throttled, Via},
            users::{self, CreateUserError},
            AppState, HealthAnswer,
        },
        validate,
    };
    use axum::{extract::ConnectInfo, http::header::SET_COOKIE};
    use leptos_axum::{extract, redirect, ResponseOptions};
    use std::net::SocketAddr;

    /// Gives a server function's error its own status and headers (401 with a challenge, 429
    /// with `Retry-After`, ...) instead of Leptos's 500 — when this request *is* the server
    /// function's (not a page rendering that calls it) and the caller is not a browser posting a
    /// form without JavaScript: that one must get Leptos's redirect back to the form, which a
    /// status would replace.
    pub fn answered<T>(path: &str, result: Result<T, ApiError>) -> Result<T, ApiError> {
        if let Err(err) = &result {
            let parts = use_context::<http::request::Parts>();
            let own = parts.as_ref().is_some_and(|p| p.uri.path() == path);
            let form_post = parts.as_ref().is_some_and(|p| {
                p.headers
                    .get(http::header::ACCEPT)
                    .and_then(|a| a.to_str().ok())
                    .is_some_and(|a| a.contains("text/html"))
            });
            if let (true, false, Some(res)) = (own, form_post, use_context::<ResponseOptions>()) {
                res.set_status(err.status());
                for (name, value) in err.headers() {
                    res.insert_header(name, value);
                }
            }
        }
        result
    }

    fn state() -> Result<AppState, ApiError> {
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
    fn internal(
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
    fn database(state: &AppState) -> Result<(), ApiError> {
        state
            .auth
            .health
            .check()
            .map_err(|_| ApiError::database_unavailable())
    }

    /// A write to the sessions that did not happen: 503 (with `Retry-After`) when it could not
    /// get its turn in time, else a 500 whose cause is logged.
    fn not_written(context: &str, err: WriteError) -> ApiError {
        match err {
            WriteError::Busy => {
                tracing::warn!("{context}: the sessions' writes are queued too long");
                ApiError::unavailable(1)
            }
            WriteError::Db(e) => internal(context, e),
        }
    }

    fn set_cookie(value: axum::http::HeaderValue) {
        if let Some(res) = use_context::<ResponseOptions>() {
            res.append_header(SET_COOKIE, value);
        }
    }

    /// The client's address (see [`TrustedProxies`](crate::auth::proxies::TrustedProxies)),
    /// when the server was started with connect info.
    async fn client_addr(state: &AppState) -> Option<std::net::IpAddr> {
        let ConnectInfo(peer) = extract::<ConnectInfo<SocketAddr>>().await.ok()?;
        let headers = use_context::<http::request::Parts>().map(|p| p.headers);
        Some(
            state
                .auth
                .proxies
                .client(peer.ip(), &headers.unwrap_or_default()),
        )
    }

    async fn authenticate() -> Result<AuthUser, ApiError> {
        let Authenticated(user) = extract::<Result<Authenticated, ApiError>>()
            .await
            .map_err(|e| internal("cannot read the request", e))??;
        Ok(user)
    }

    /// A place in the hashing queue, or 503 `temporarily_unavailable` before any other work.
    fn hashing_ticket(state: &AppState) -> Result<Ticket, ApiError> {
        state.auth.passwords.ticket().map_err(|_| {
            tracing::warn!("password queue full: request refused");
            ApiError::busy()
        })
    }

    /// A typed name without the spaces (or tab, newline) around it. Only ASCII whitespace: what
    /// the API document's pattern for a username allows, word for word.
    fn trim_ascii(text: &str) -> &str {
        text.trim_matches(|c: char| c.is_ascii_whitespace())
    }

    pub async fn register(
        username: String,
        password: String,
        password_confirm: Option<String>,
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
        let user = match users::create(&state.pool, &username, &hash).await {
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
        if validate::username(username).is_err() || validate::password(&password).is_err() {
            return Err(ApiError::invalid_credentials());
        }
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
        let step = authn::sign_in(auth, username, addr, proofs, password)
            .await
            .map_err(|e| check_refused(e, "the sign-in count failed", failed))?;
        let proof = match step {
            Step::Done(proof) => proof,
            Step::AnotherFactorNeeded(_) => {
                return Err(internal(
                    "signing in failed",
                    "a second factor was asked for, and no sign-in takes one yet",
                ))
            }
        };
        let user_id = proof.user().id;
        // Only if the password just checked is still the account's (see `authn`).
        let issued = auth
            .start_session(&proof, &user_agent(), addr)
            .await
            .map_err(|e| match e {
                IssueError::Write(e) => not_written("starting a session failed", e),
                IssueError::Sign(e) => internal("signing a token failed", e),
            })?
            .ok_or_else(failed)?;
        set_session_cookies(auth, &issued);
        // A new proof at every sign-in, for a device id never used before: a proof copied
        // earlier (from a backup of the browser, a shared machine) keeps its own allowance,
        // and no amount of wrong guesses through it touches the owner's current one.
        let device_proof = auth
            .devices
            .issue(proof.account(), DeviceId::random(), now_unix());
        if let Some(cookie) = auth.cookie.set_device(&device_proof) {
            set_cookie(cookie);
        }
        tracing::info!(
            user_id,
            known_device = matches!(proof.via(), Via::Device(_)),
            "login succeeded"
        );
        let next = validate::safe_next(next.as_deref()).unwrap_or_else(|| "/profile".into());
        redirect(&next);
        let page = from_a_page();
        Ok(TokenResponse {
            // A page has it in its HttpOnly cookie, where no script reads it.
            device_token: (!page).then_some(device_proof),
            ..token_response(&issued, username.to_string(), page)
        })
    }

    /// A password check that let nobody through (see [`CheckError`]): `wrong` answers a wrong
    /// password; `counting` names the task that counts the attempt, for the log.
    fn check_refused(
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
            CheckError::Store(e) => internal("looking up a user failed", e),
            CheckError::Hash(e) => internal("password verification failed", e),
            CheckError::Task(e) => internal(counting, e),
        }
    }

    /// A sign-in (or a signed-in password check) the throttle did not let through.
    fn sign_in_refused(throttled: Throttled) -> ApiError {
        match throttled {
            Throttled::TooMany { retry_after } => ApiError::too_many_requests(retry_after),
            Throttled::Unavailable => throttle_unavailable(),
        }
    }

    /// The shared limits could not be counted (see [`Throttled::Unavailable`]).
    fn throttle_unavailable() -> ApiError {
        ApiError::unavailable(crate::auth::throttle::UNAVAILABLE_RETRY_SECS)
    }

    /// The OAuth 2 token response for tokens just issued. Where the tokens go to cookies (a
    /// page's request), the refresh token stays in its `HttpOnly` cookie only: in the body, any
    /// script on the page could read it.
    fn token_response(issued: &Issued, username: String, cookies: bool) -> TokenResponse {
        TokenResponse {
            access_token: issued.access_token.clone(),
            token_type: "Bearer".into(),
            expires_in: (issued.access_exp - now_unix()).max(0) as u64,
            refresh_token: (!cookies).then(|| issued.refresh_token.clone()),
            username,
            device_token: None,
        }
    }

    /// Whether a sign-in comes from a page: a browser names the page (`Origin`, or `Referer`)
    /// on a POST; scripts and API clients name none.
    fn from_a_page() -> bool {
        use_context::<http::request::Parts>().is_some_and(|p| {
            p.headers.contains_key(http::header::ORIGIN)
                || p.headers.contains_key(http::header::REFERER)
        })
    }

    /// Both cookies, each living as long as its token.
    fn set_session_cookies(auth: &Auth, issued: &Issued) {
        let now = now_unix();
        let access = (issued.access_exp - now).max(0) as u64;
        let session = (issued.session_expires_at - now).max(0) as u64;
        if let Some(cookie) = auth.cookie.set(&issued.access_token, access) {
            set_cookie(cookie);
        }
        if let Some(cookie) = auth.cookie.set_refresh(&issued.refresh_token, session) {
            set_cookie(cookie);
        }
    }

    fn clear_session_cookies(auth: &Auth) {
        set_cookie(auth.cookie.clear());
        set_cookie(auth.cookie.clear_refresh());
    }

    /// The request's `User-Agent`, as text.
    fn user_agent() -> String {
        use_context::<http::request::Parts>()
            .and_then(|p| {
                p.headers
                    .get(http::header::USER_AGENT)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            })
            .unwrap_or_default()
    }

    /// Runs a change that writes the database and then memory in a task of its own: if the
    /// client hangs up, this request's future is dropped, but a write the database may already
    /// have committed must still reach memory (an ended session must be refused at once).
    async fn detached<T: Send + 'static>(
        what: &'static str,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, ApiError> {
        tokio::spawn(work).await.map_err(|e| internal(what, e))
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
        // The token's jti goes on the blocklist (the product's contract) and its session ends,
        // in one transaction: every token of it is refused from the next request on.
        detached("the revoke task failed", {
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
                return Err(match e {
                    RefreshError::Invalid => ApiError::invalid_refresh_token(),
                    RefreshError::Ended => ApiError::session_ended(),
                    RefreshError::Expired => ApiError::session_expired(),
                    RefreshError::Reused => ApiError::refresh_token_reused(),
                    RefreshError::Db(e) => internal("rotating a refresh token failed", e),
                    RefreshError::Sign(e) => internal("signing a token failed", e),
                    RefreshError::Busy => ApiError::unavailable(1),
                    RefreshError::Throttled(retry_after) => {
                        ApiError::too_many_refreshes(retry_after)
                    }
                });
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

    pub async fn list_sessions() -> Result<Vec<SessionInfo>, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        database(&state)?;
        let sessions = state
            .auth
            .sessions
            .list(user.user_id, now_unix())
            .await
            .map_err(|e| internal("listing sessions failed", e))?;
        Ok(sessions
            .into_iter()
            .map(|s| session_info(s, user.session_id))
            .collect())
    }

    /// The sessions list of the sessions page, rendered for `user` (see
    /// [`crate::pages::sessions`]).
    pub async fn sessions_fragment(auth: &Auth, user: &AuthUser) -> SessionsFragment {
        let listed = match auth.health.check() {
            Ok(()) => auth.sessions.list(user.user_id, now_unix()).await,
            Err(e) => Err(e),
        };
        match listed {
            Ok(sessions) => {
                let listed: Vec<SessionInfo> = sessions
                    .into_iter()
                    .map(|s| session_info(s, user.session_id))
                    .collect();
                SessionsFragment(render_sessions(&listed))
            }
            Err(e) => {
                let err = auth.health.answer("listing sessions failed", &e);
                SessionsFragment(format!(
                    r#"<p class="form-error" role="alert">{}</p>"#,
                    escape(&err.description)
                ))
            }
        }
    }

    fn session_info(s: crate::auth::sessions::Session, current: uuid::Uuid) -> SessionInfo {
        SessionInfo {
            id: s.id.0.to_string(),
            device: describe_device(&s.user_agent),
            current: s.id.0 == current,
            user_agent: s.user_agent,
            address: s.address,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
        }
    }

    /// The sessions list of the sessions page. Everything that comes from a request (the user
    /// agent, above all: anyone signing in chooses it) is escaped.
    pub fn render_sessions(sessions: &[SessionInfo]) -> String {
        use crate::time_fmt::utc;
        use std::fmt::Write;
        let mut html = String::from(r#"<ul class="sessions" data-testid="sessions">"#);
        for s in sessions {
            let device = escape(&s.device);
            let address = if s.address.is_empty() {
                "unknown".to_string()
            } else {
                escape(&s.address)
            };
            let _ = write!(
                html,
                r#"<li class="session" data-testid="session" data-current="{current}"><p class="device"><strong>{device}</strong>{badge}</p><dl><dt>Address</dt><dd>{address}</dd><dt>Signed in</dt><dd>{created}</dd><dt>Last active</dt><dd>{used}</dd></dl>"#,
                current = s.current,
                badge = if s.current {
                    r#" <span class="badge" data-testid="this-device">This device</span>"#
                } else {
                    ""
                },
                created = utc(s.created_at),
                used = utc(s.last_used_at),
            );
            if !s.current {
                let _ = write!(
                    html,
                    r#"<form action="{action}" method="post"><input type="hidden" name="id" value="{id}"><button type="submit" aria-label="Sign out {device} at {address}">Sign out</button></form>"#,
                    action = RevokeSession::PATH,
                    id = escape(&s.id),
                );
            }
            html.push_str("</li>");
        }
        html.push_str("</ul>");
        html
    }

    pub async fn revoke_session(id: String) -> Result<SessionsEnded, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        // A malformed id is as unknown as someone else's.
        let id = uuid::Uuid::parse_str(id.trim()).map_err(|_| ApiError::no_such_session())?;
        database(&state)?;
        let auth = state.auth.clone();
        let ended = detached("the revoke task failed", async move {
            auth.sessions
                .end_one(id, Some(user.user_id), EndReason::Revoked, now_unix())
                .await
        })
        .await?
        .map_err(|e| not_written("ending a session failed", e))?;
        if !ended {
            return Err(ApiError::no_such_session());
        }
        tracing::info!(
            user_id = user.user_id,
            "a session was ended from the sessions page"
        );
        if id == user.session_id {
            clear_session_cookies(&state.auth);
            redirect("/");
        } else {
            redirect("/sessions");
        }
        Ok(SessionsEnded { ended: 1 })
    }

    pub async fn revoke_other_sessions() -> Result<SessionsEnded, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        database(&state)?;
        let auth = state.auth.clone();
        let ended = detached("the revoke task failed", async move {
            auth.sessions
                .end_all(
                    user.user_id,
                    Some(user.session_id),
                    EndReason::SignedOutElsewhere,
                    now_unix(),
                )
                .await
        })
        .await?
        .map_err(|e| not_written("ending sessions failed", e))?;
        tracing::info!(user_id = user.user_id, ended, "signed out everywhere else");
        redirect(&format!("/sessions?ended={ended}"));
        Ok(SessionsEnded { ended })
    }

    /// The signed-in user's name, once the password given is theirs. Counted per session before
    /// any password work, not on the account's ceiling nor the address: an attack on the
    /// account cannot stop its owner from changing the password (see
    /// [`credentials::check_password`]).
    async fn check_password(
        state: &AppState,
        user: &AuthUser,
        password: String,
    ) -> Result<String, ApiError> {
        // Outside the rules, it is no account's password: counted, then refused unhashed.
        let password = validate::password(&password).is_ok().then_some(password);
        let attempt = Attempt::SignedIn {
            user_id: user.user_id,
            session: user.session_id,
        };
        let checked = credentials::check_password(&state.auth, attempt, password)
            .await
            .map_err(|e| {
                check_refused(e, "the password check count failed", || {
                    tracing::info!(user_id = user.user_id, "wrong current password");
                    ApiError::wrong_password()
                })
            })?;
        Ok(checked.user.username)
    }

    pub async fn change_password(
        current_password: String,
        new_password: String,
        new_password_confirm: Option<String>,
    ) -> Result<TokenResponse, ApiError> {
        validate::password(&new_password).map_err(ApiError::invalid_input)?;
        if let Some(confirm) = new_password_confirm.filter(|c| !c.is_empty()) {
            if confirm != new_password {
                return Err(ApiError::invalid_input(validate::PASSWORDS_DIFFER));
            }
        }
        let state = state()?;
        let user = authenticate().await?;
        let username = check_password(&state, &user, current_password).await?;
        let hash = hashing_ticket(&state)?
            .hash(new_password)
            .await
            .map_err(|e| internal("password hashing failed", e))?;
        let auth = state.auth.clone();
        let renewed = detached("the password task failed", async move {
            auth.change_password(user.user_id, user.session_id, &hash, now_unix())
                .await
        })
        .await?
        .map_err(|e| not_written("changing a password failed", e))?;
        let current = renewed.ok_or_else(ApiError::session_ended)?;
        let issued = state
            .auth
            .issue(&current, now_unix())
            .map_err(|e| internal("signing a token failed", e))?;
        set_session_cookies(&state.auth, &issued);
        tracing::info!(
            user_id = user.user_id,
            "password changed; other sessions ended"
        );
        redirect("/account?changed=1");
        Ok(token_response(
            &issued,
            username,
            user.source == crate::auth::access::TokenSource::Cookie,
        ))
    }

    pub async fn delete_account(password: String) -> Result<AccountDeleted, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        check_password(&state, &user, password).await?;
        let auth = state.auth.clone();
        detached("the account deletion task failed", async move {
            auth.delete_account(user.user_id, now_unix()).await
        })
        .await?
        .map_err(|e| not_written("deleting an account failed", e))?;
        clear_session_cookies(&state.auth);
        // Its proofs name an account that is gone: worth nothing, so not kept either.
        set_cookie(state.auth.cookie.clear_device());
        tracing::info!(user_id = user.user_id, "account deleted");
        redirect("/?deleted=1");
        Ok(AccountDeleted { deleted: true })
    }

    /// `GET /api/me`: the signed-in user, or 401 with the reason. A plain axum handler whose
    /// extractor ([`SignedIn`]) hands over the user the token check found: the API's hottest
    /// route skips the server-function machinery and a second look-up, and the browser (which
    /// asks `/api/whoami`) does not need it.
    pub async fn me_handler(signed_in: SignedIn) -> axum::Json<SignedInUser> {
        axum::Json(signed_in_user(&signed_in.user, signed_in.auth))
    }

    fn signed_in_user(found: &users::User, user: AuthUser) -> SignedInUser {
        SignedInUser {
            user_id: found.id,
            username: found.username.clone(),
            created_at: found.created_at,
            expires_at: user.exp,
            expires_in: (user.exp - now_unix()).max(0),
        }
    }

    async fn current_user_of(state: &AppState, user: AuthUser) -> Result<SignedInUser, ApiError> {
        let found = state
            .auth
            .users
            .shared(user.user_id)
            .await
            .map_err(|e| internal("looking up a user failed", e))?;
        // A valid token for a user that no longer exists is no session.
        let found = found.ok_or_else(|| ApiError::from(AuthRejection::InvalidToken))?;
        Ok(signed_in_user(&found, user))
    }

    pub async fn current_user() -> Result<Option<SignedInUser>, ApiError> {
        let MaybeAuthUser(user) = extract::<Result<MaybeAuthUser, ApiError>>()
            .await
            .map_err(|e| internal("cannot read the request", e))??;
        match user {
            Some(user) => current_user_of(&state()?, user).await.map(Some),
            None => Ok(None),
        }
    }
}
