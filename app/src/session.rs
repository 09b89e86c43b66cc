//! The session as the UI sees it: a reactive context shared by every page.
//!
//! The token itself stays in an `HttpOnly` cookie the page cannot read. What the UI keeps is
//! who is signed in and until when, fetched from `/api/session`, refetched after each login
//! or logout, and dropped (with a message) as soon as any server function answers that the
//! token was rejected.

use leptos::{prelude::*, server::ServerActionError};
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::{
    api::{session, Login, Logout, Register, SessionInfo},
    error::ApiError,
};

/// One answer of `/api/session`, with the sign-ins and sign-outs it already reflects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// How many sign-ins and sign-outs had completed when it was asked.
    pub after: (usize, usize),
    /// `Ok(Some(user))` signed in, `Ok(None)` signed out, `Err` a rejected token or a failure.
    pub user: Result<Option<SessionInfo>, ApiError>,
}

#[derive(Clone, Copy)]
pub struct Session {
    pub login: ServerAction<Login>,
    pub logout: ServerAction<Logout>,
    pub register: ServerAction<Register>,
    /// What the server last said about this browser's session.
    pub current: Resource<Snapshot>,
    /// Why the session ended, when it ended without the user asking (expired, revoked elsewhere).
    notice: RwSignal<Option<String>>,
    /// Whether each action is on its way. Made once, here: `pending()` makes a new memo at
    /// every call, owned by whatever component calls it.
    pub signing_in: Memo<bool>,
    pub signing_out: Memo<bool>,
    pub registering: Memo<bool>,
}

pub fn provide_session() {
    // A form posted without JavaScript comes back to its page with `__path` and `__err` in the
    // query. The router hands that error to actions created under `<Routes>`; ours are created
    // above it (the nav shares them), so hand it to them here, before they are created.
    let query = use_query_map();
    let posted_error = query.with_untracked(|q| Some((q.get("__path")?, q.get("__err")?)));
    if let Some((path, err)) = posted_error {
        provide_context(ServerActionError::new(&path, &err));
    }

    let login = ServerAction::<Login>::new();
    let logout = ServerAction::<Logout>::new();
    let register = ServerAction::<Register>::new();
    let current = Resource::new_blocking(
        move || (login.version().get(), logout.version().get()),
        |after| async move {
            Snapshot {
                after,
                user: session().await,
            }
        },
    );
    let s = Session {
        login,
        logout,
        register,
        current,
        notice: RwSignal::new(None),
        signing_in: login.pending(),
        signing_out: logout.pending(),
        registering: register.pending(),
    };
    // A successful sign-in clears an old "your session ended" message.
    Effect::new(move |_| {
        if matches!(login.value().get(), Some(Ok(_))) {
            s.notice.set(None);
        }
    });
    // Signing out with a token that was already dead still ends the session, with the reason.
    Effect::new(move |_| {
        if let Some(Err(e)) = logout.value().get() {
            s.rejected(&e);
        }
    });
    provide_context(s);
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}

impl Session {
    /// Tell the session about an error from any server function: a token rejection means this
    /// browser is no longer signed in, whatever the UI believed.
    pub fn rejected(&self, err: &ApiError) {
        if err.error.is_token_rejection() {
            self.notice.set(Some(err.description.clone()));
            self.current.refetch();
        }
    }

    /// The signed-in user, if any, as last fetched. Reactive.
    pub fn user(&self) -> Option<SessionInfo> {
        self.current.get().and_then(|s| s.user.ok().flatten())
    }

    /// Is `snapshot` the session as it stands now? Not while a sign-in is on its way, nor
    /// until the refetch after the last sign-in or sign-out has landed: a sign-in's redirect
    /// opens the next page before the action completes and the refetch starts. Reactive.
    pub fn is_settled(&self, snapshot: &Snapshot) -> bool {
        !self.signing_in.get()
            && snapshot.after == (self.login.version().get(), self.logout.version().get())
    }

    /// A session found missing: ask the visitor to sign in, unless a reason is already shown.
    pub fn ended(&self, message: &str) {
        if self.notice.with_untracked(Option::is_none) {
            self.notice.set(Some(message.to_string()));
        }
    }

    /// The message to show about a session that ended by itself.
    pub fn notice(&self) -> Option<String> {
        self.notice.get().or_else(|| {
            self.current
                .get()
                .and_then(|s| s.user.err())
                .filter(|e| e.error.is_token_rejection())
                .map(|e| e.description)
        })
    }
}
