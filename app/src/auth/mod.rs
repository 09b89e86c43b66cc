//! The server side of the app's authentication: the core ([`identity`], re-exported here so
//! that `crate::auth::sessions` and the like name it), the application state, the extractors and
//! the answer a failure of the core gets. Nothing here is compiled into the browser's WASM.
//!
//! Four names, four things: [`Auth`] is the core's state (keys, sessions, revocations,
//! throttle), [`AppState`] the server's state handed to every handler (the Leptos options, the
//! pool and the `Auth`), this module the server-side glue between them and HTTP, and
//! [`crate::signed_in`] who is signed in as the UI sees it.

pub mod extractor;

pub use identity::{
    access, account, audit, authn, cache, cookie, credentials, device, email, factors, mail,
    metrics, proxies, revocation, sessions, throttle, tokens, users, Auth, IssueError, Issued,
};

use std::sync::Arc;

use crate::error::ApiError;
use identity::store::{Health, Pool, Verdict};

impl From<Verdict> for ApiError {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Unavailable => ApiError::database_unavailable(),
            Verdict::Internal => ApiError::internal(),
        }
    }
}

/// The answer to a failure on our side, its cause logged and never sent: `503` with
/// `Retry-After` when the database cannot be reached or is busy, the generic `500` otherwise
/// (see [`Health::judge`]).
pub trait HealthAnswer {
    fn answer(&self, context: &str, err: &(dyn std::error::Error + 'static)) -> ApiError;
}

impl HealthAnswer for Arc<Health> {
    fn answer(&self, context: &str, err: &(dyn std::error::Error + 'static)) -> ApiError {
        self.judge(context, err).into()
    }
}

/// The generic 500, its cause logged (never sent).
pub fn internal(context: &str, err: &dyn std::fmt::Display) -> ApiError {
    identity::store::log_internal(context, err).into()
}

/// The application state handed to the router and, as context, to every server function.
///
/// Cloned for every request and every server-function call, so it is one `Arc`: cloning
/// `LeptosOptions` (several strings) for each would cost every page render.
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppStateInner>);

#[derive(Debug)]
pub struct AppStateInner {
    pub leptos_options: leptos::config::LeptosOptions,
    pub pool: Pool,
    pub auth: Arc<Auth>,
}

impl AppState {
    pub fn new(leptos_options: leptos::config::LeptosOptions, pool: Pool, auth: Arc<Auth>) -> Self {
        Self(Arc::new(AppStateInner {
            leptos_options,
            pool,
            auth,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// Leptos's handlers ask the state for the options (e.g. to serve a static file).
impl axum::extract::FromRef<AppState> for leptos::config::LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
