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
pub struct SignedInUser {
    pub user_id: i64,
    pub username: String,
    /// When the account was created (unix seconds).
    pub created_at: i64,
    /// When this session's token expires (unix seconds).
    pub expires_at: i64,
}

/// The answer to a successful login, in the OAuth 2 token-response shape for API clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// Seconds from now until the token expires.
    pub expires_in: u64,
    pub username: String,
}

/// The answer to a successful registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub user_id: i64,
    pub username: String,
}

/// The answer to a successful logout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// `POST /api/login`: checks the password, sets the auth cookie and returns the token.
/// Browsers are sent on to `next` (a path on this site) or to `/profile`.
#[server(prefix = "/api", endpoint = "login")]
pub async fn login(
    username: String,
    password: String,
    next: Option<String>,
) -> Result<TokenResponse, ApiError> {
    server::answered(Login::PATH, server::login(username, password, next).await)
}

/// `POST /api/logout`: revokes the presented token (cookie or Bearer) and clears the cookie.
#[server(prefix = "/api", endpoint = "logout")]
pub async fn logout() -> Result<LoggedOut, ApiError> {
    server::answered(Logout::PATH, server::logout().await)
}

/// `GET /api/whoami`: like `/api/me`, but "no token" is `null` rather than a 401,
/// so every page can ask it. A bad token is still a 401 with its reason.
#[server(prefix = "/api", endpoint = "whoami", input = GetUrl)]
pub async fn current_user() -> Result<Option<SignedInUser>, ApiError> {
    server::answered(CurrentUser::PATH, server::current_user().await)
}

#[cfg(feature = "ssr")]
pub mod server {
    use super::*;
    use crate::{
        auth::{
            extractor::{AuthRejection, AuthUser, MaybeAuthUser},
            password::Ticket,
            users::{self, CreateUserError},
            AppState,
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

    /// Logs the cause of an internal failure and answers the generic 500.
    fn internal(context: &str, err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "{context}");
        ApiError::internal()
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
        extract::<Result<AuthUser, AuthRejection>>()
            .await
            .map_err(|e| internal("cannot read the request", e))?
            .map_err(ApiError::from)
    }

    /// A place in the hashing queue, or 503 `temporarily_unavailable` before any other work.
    fn hashing_ticket(state: &AppState) -> Result<Ticket, ApiError> {
        state.auth.passwords.ticket().map_err(|_| {
            tracing::warn!("password queue full: request refused");
            ApiError::busy()
        })
    }

    pub async fn register(
        username: String,
        password: String,
        password_confirm: Option<String>,
    ) -> Result<Registered, ApiError> {
        let username = username.trim().to_string();
        validate::username(&username).map_err(ApiError::invalid_input)?;
        validate::password(&password).map_err(ApiError::invalid_input)?;
        if let Some(confirm) = password_confirm.filter(|c| !c.is_empty()) {
            if confirm != password {
                return Err(ApiError::invalid_input(validate::PASSWORDS_DIFFER));
            }
        }
        let state = state()?;
        let ticket = hashing_ticket(&state)?;
        // Every sign-up that gets this far costs a hash and a row: counted per address.
        state
            .auth
            .throttle
            .sign_up(client_addr(&state).await)
            .map_err(|r| ApiError::too_many_signups(r.retry_after))?;
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
    ) -> Result<TokenResponse, ApiError> {
        let username = username.trim();
        // Out-of-range input cannot match an account: refused before it touches the throttle
        // (whose memory it would fill) or any hashing. Same answer as a wrong password.
        if validate::username(username).is_err() || validate::password(&password).is_err() {
            return Err(ApiError::invalid_credentials());
        }
        let state = state()?;
        let auth = &state.auth;
        let ticket = hashing_ticket(&state)?;
        let addr = client_addr(&state).await;
        // Counted now, before any password work: parallel guesses cannot outrun the count,
        // and a client that hangs up during the hash has still used its attempt.
        auth.throttle
            .sign_in(username, addr)
            .map_err(|r| ApiError::too_many_requests(r.retry_after))?;
        let found = users::credentials(&state.pool, username)
            .await
            .map_err(|e| internal("looking up a user failed", e))?;
        let (user_id, hash) = match found {
            Some(c) => (Some(c.id), Some(c.password_hash)),
            None => (None, None),
        };
        // Unknown users are verified against a dummy hash: same work, same time.
        let ok = ticket
            .verify(password, hash)
            .await
            .map_err(|e| internal("password verification failed", e))?;
        let user_id = match (ok, user_id) {
            (true, Some(id)) => id,
            _ => {
                // The username is not logged: people type passwords into it by mistake.
                tracing::info!("login failed");
                return Err(ApiError::invalid_credentials());
            }
        };
        auth.throttle.signed_in(username, addr);
        let (token, claims) = auth
            .keys
            .issue(user_id)
            .map_err(|e| internal("signing a token failed", e))?;
        let ttl = auth.keys.ttl().as_secs();
        if let Some(cookie) = auth.cookie.set(&token, ttl) {
            set_cookie(cookie);
        }
        tracing::info!(user_id, "login succeeded");
        let next = validate::safe_next(next.as_deref()).unwrap_or_else(|| "/profile".into());
        redirect(&next);
        Ok(TokenResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: (claims.exp - claims.iat).max(0) as u64,
            username: username.to_string(),
        })
    }

    pub async fn logout() -> Result<LoggedOut, ApiError> {
        let state = state()?;
        let user = match authenticate().await {
            Ok(user) => user,
            Err(e) => {
                // Whatever is wrong with the token, the browser should drop it.
                set_cookie(state.auth.cookie.clear());
                return Err(e);
            }
        };
        // Commit the revoke before answering, so a crash cannot resurrect the token. In a task
        // of its own: if the client hangs up, this request's future is dropped, but a write
        // the database may already have committed must still reach memory.
        let auth = state.auth.clone();
        tokio::spawn(async move {
            auth.blocklist
                .revoke(user.jti, user.user_id, user.exp)
                .await
        })
        .await
        .map_err(|e| internal("the revoke task failed", e))?
        .map_err(|e| internal("recording a revoked token failed", e))?;
        set_cookie(state.auth.cookie.clear());
        tracing::info!(user_id = user.user_id, "logout: token revoked");
        redirect("/");
        Ok(LoggedOut { revoked: true })
    }

    /// `GET /api/me`: the signed-in user, or 401 with the reason. A plain axum handler with
    /// the [`AuthUser`] extractor: the API's hottest route skips the server-function
    /// machinery, and the browser (which asks `/api/whoami`) does not need it.
    pub async fn me_handler(
        axum::extract::State(state): axum::extract::State<AppState>,
        user: AuthUser,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        match current_user_of(&state, user).await {
            Ok(info) => axum::Json(info).into_response(),
            Err(e) => e.into_response(),
        }
    }

    async fn current_user_of(state: &AppState, user: AuthUser) -> Result<SignedInUser, ApiError> {
        let found = state
            .auth
            .users
            .get(user.user_id)
            .await
            .map_err(|e| internal("looking up a user failed", e))?;
        // A valid token for a user that no longer exists is no session.
        let found = found.ok_or_else(|| ApiError::from(AuthRejection::InvalidToken))?;
        Ok(SignedInUser {
            user_id: found.id,
            username: found.username,
            created_at: found.created_at,
            expires_at: user.exp,
        })
    }

    pub async fn current_user() -> Result<Option<SignedInUser>, ApiError> {
        let MaybeAuthUser(user) = extract::<Result<MaybeAuthUser, AuthRejection>>()
            .await
            .map_err(|e| internal("cannot read the request", e))?
            .map_err(ApiError::from)?;
        match user {
            Some(user) => current_user_of(&state()?, user).await.map(Some),
            None => Ok(None),
        }
    }
}
