//! Who is signed in, as the UI sees it: a reactive context shared by every page.
//!
//! The token itself stays in an `HttpOnly` cookie the page cannot read. What the UI keeps is
//! who is signed in and until when, fetched from `/api/whoami`, refetched after each login
//! or logout, and dropped (with a message) as soon as any server function answers that the
//! token was rejected.

use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};
use server_fn::error::ServerFnUrlError;

use crate::{
    api::{
        current_user, LoggedOut, Login, Logout, Register, Registered, SignedInUser, TokenResponse,
    },
    error::ApiError,
};

/// One answer of `/api/whoami`, with the version of the sign-in state it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// How many sign-ins and sign-outs had completed when it was asked (see
    /// [`AuthState::settled`]).
    pub version: usize,
    /// `Ok(Some(user))` signed in, `Ok(None)` signed out, `Err` a rejected token or a failure.
    pub user: Result<Option<SignedInUser>, ApiError>,
}

/// Cloned into every view closure that reads it.
///
/// Every reactive value here is reference-counted (`Arc*`), not owned by the component tree.
/// On the server, Leptos resolves a `<Transition>` in an effect of its own, which can still be
/// running on another thread when a client hangs up and the request's reactive owner is
/// dropped: values owned by that owner would be disposed under the running closure, and
/// Leptos's own read of them panics (it checks `is_disposed` and then unwraps, racing the
/// disposal). A closure holding these keeps what it reads alive until it is done.
#[derive(Clone)]
pub struct AuthState {
    pub login: ArcServerAction<Login>,
    pub logout: ArcServerAction<Logout>,
    pub register: ArcServerAction<Register>,
    /// Completed sign-ins and sign-outs. Their sum only grows: it versions the sign-in state.
    logins: ArcRwSignal<usize>,
    logouts: ArcRwSignal<usize>,
    /// What the server last said about this browser's session.
    current: ArcResource<Snapshot>,
    /// Why the session ended, when it ended without the user asking (expired, revoked elsewhere).
    notice: ArcRwSignal<Option<String>>,
    /// The last answers of the actions. A sign-out refused because the token was already dead
    /// (or such an answer handed back to a page without JavaScript) is shown as the reason.
    signed_out: ArcMappedSignal<Option<Result<LoggedOut, ApiError>>>,
    pub signed_in: ArcMappedSignal<Option<Result<TokenResponse, ApiError>>>,
    pub registered: ArcMappedSignal<Option<Result<Registered, ApiError>>>,
    /// Whether each action is on its way. Made once, here: `pending()` makes a new memo at
    /// every call.
    pub signing_in: ArcMemo<bool>,
    pub signing_out: ArcMemo<bool>,
    pub registering: ArcMemo<bool>,
}

pub fn provide_auth() {
    let login = ArcServerAction::<Login>::new();
    let logout = ArcServerAction::<Logout>::new();
    let register = ArcServerAction::<Register>::new();

    // A form posted without JavaScript comes back to its page with `__path` and `__err` in the
    // query. Anyone can write such a link, so only the error's code is taken from it: the text
    // shown is ours (`ApiError::in_our_words`), then handed to the action that posted it.
    let query = use_query_map();
    let posted = query.with_untracked(|q| Some((q.get("__path")?, q.get("__err")?)));
    if let Some((path, err)) = posted {
        let claimed = ServerFnUrlError::<ApiError>::decode_err(&err);
        if path == Login::PATH {
            login.value().set(Some(Err(claimed.in_our_words(false))));
        } else if path == Register::PATH {
            register.value().set(Some(Err(claimed.in_our_words(true))));
        } else if path == Logout::PATH {
            logout.value().set(Some(Err(claimed.in_our_words(false))));
        }
    }

    let (logins, logouts) = (login.version(), logout.version());
    let current = {
        let (logins, logouts) = (logins.clone(), logouts.clone());
        ArcResource::new_blocking(
            move || logins.get() + logouts.get(),
            |version| async move {
                Snapshot {
                    version,
                    user: current_user().await,
                }
            },
        )
    };
    let s = AuthState {
        logins,
        logouts,
        current,
        notice: ArcRwSignal::new(None),
        signed_out: logout.value(),
        signed_in: login.value(),
        registered: register.value(),
        signing_in: login.pending(),
        signing_out: logout.pending(),
        registering: register.pending(),
        login,
        logout,
        register,
    };
    // A successful sign-in clears an old "your session ended" message.
    Effect::new({
        let s = s.clone();
        move |_| {
            if matches!(s.signed_in.get(), Some(Ok(_))) {
                s.notice.set(None);
                s.signed_out.set(None);
            }
        }
    });
    // Signing out with a token that was already dead still ends the session, with the reason.
    Effect::new({
        let s = s.clone();
        move |_| {
            if let Some(Err(e)) = s.signed_out.get() {
                s.rejected(&e);
            }
        }
    });
    provide_context(s);
}

pub fn use_auth() -> AuthState {
    expect_context::<AuthState>()
}

impl AuthState {
    /// Tell the session about an error from any server function: a token rejection means this
    /// browser is no longer signed in, whatever the UI believed.
    pub fn rejected(&self, err: &ApiError) {
        if err.error.is_token_rejection() {
            self.notice.set(Some(err.description.clone()));
            self.current.refetch();
        }
    }

    /// The signed-in user, if any, as last fetched. Reactive.
    ///
    /// Every read here is a `try_` read: on the server a view closure can still run after the
    /// request's reactive owner was disposed (a client that hung up mid-render), and a plain
    /// read would panic there. A disposed session reads as "signed out, nothing settled".
    pub fn user(&self) -> Option<SignedInUser> {
        self.current
            .try_get()
            .flatten()
            .and_then(|s| s.user.ok().flatten())
    }

    /// The server's answer about this browser, once it is current: `Ok(Some(user))` signed
    /// in, `Ok(None)` signed out, `Err` a rejected token or a failure. `None` until then: while
    /// a sign-in is on its way, and until the refetch after the last sign-in or sign-out has
    /// landed (a sign-in's redirect opens the next page before the action completes and the
    /// refetch starts). Reactive.
    pub fn settled(&self) -> Option<Result<Option<SignedInUser>, ApiError>> {
        let snapshot = self.current.try_get().flatten()?;
        let version = self.logins.try_get()? + self.logouts.try_get()?;
        let signing_in = self.signing_in.try_get().unwrap_or(true);
        (!signing_in && snapshot.version == version).then_some(snapshot.user)
    }

    /// A session found missing: ask the visitor to sign in, unless a reason is already shown.
    pub fn ended(&self, message: &str) {
        if self.notice.with_untracked(Option::is_none) {
            self.notice.set(Some(message.to_string()));
        }
    }

    /// The message to show about a session that ended by itself.
    pub fn notice(&self) -> Option<String> {
        let signed_out = || {
            self.signed_out
                .try_get()
                .flatten()
                .and_then(Result::err)
                .filter(|e| e.error.is_token_rejection())
                .map(|e| e.description)
        };
        self.notice
            .try_get()
            .flatten()
            .or_else(signed_out)
            .or_else(|| {
                self.current
                    .try_get()
                    .flatten()
                    .and_then(|s| s.user.err())
                    .filter(|e| e.error.is_token_rejection())
                    .map(|e| e.description)
            })
    }
}
