//! Who is signed in, as the UI sees it: a reactive context shared by every page.
//!
//! The tokens themselves stay in `HttpOnly` cookies the page cannot read. What the UI keeps is
//! who is signed in and until when, fetched from `/api/whoami`, refetched after each login
//! or logout, and dropped (with a message) as soon as any server function answers that the
//! token was rejected. A tab left open stays signed in: shortly before the access token expires
//! the UI reads the session again, and the server renews it on that request (new cookies); a
//! server function answering `token_expired` is called once more ([`retrying`]).

use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};
use server_fn::error::ServerFnUrlError;

use crate::{
    api::{
        current_user, LoggedOut, Login, Logout, Register, Registered, SignedInUser, TokenResponse,
    },
    error::{ApiError, ErrorCode},
    routes::Page,
};

/// Calls a server function; if it answers `token_expired`, calls it once more, and that
/// answer is final. The retried request renews the session on its way in: the server's
/// `refresh_session` middleware rotates the refresh cookie of any page or server-function
/// request whose access token has expired (the first answer can only have been `token_expired`
/// if that renewal could not be made then, say the database was busy). Renewing from the
/// browser with `POST /api/refresh` would do the same at the cost of another server function
/// in the WASM.
pub async fn retrying<T, F, Fut>(call: F) -> Result<T, ApiError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    match call().await {
        Err(e) if e.error == ErrorCode::TokenExpired => call().await,
        other => other,
    }
}

/// The error of a form posted without JavaScript, as it comes back in the page's address
/// (`__path` and `__err`): the server function's path and the error in our own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub path: String,
    pub error: ApiError,
}

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
    /// Why the session ended, when it ended without the user asking (expired, ended elsewhere).
    notice: ArcRwSignal<Option<String>>,
    /// The error of a form posted without JavaScript to a server function of another page
    /// (sessions, account), for that page to show.
    pub posted: Option<Posted>,
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
    let mut posted_elsewhere = None;
    if let Some((path, err)) = posted {
        let claimed = ServerFnUrlError::<ApiError>::decode_err(&err);
        if path == Login::PATH {
            login.value().set(Some(Err(claimed.in_our_words(false))));
        } else if path == Register::PATH {
            register.value().set(Some(Err(claimed.in_our_words(true))));
        } else if path == Logout::PATH {
            logout.value().set(Some(Err(claimed.in_our_words(false))));
        } else {
            posted_elsewhere = Some(Posted {
                error: claimed.in_our_words(false),
                path,
            });
        }
    }
    // A protected page the server would not render names why in `reason` (a code, never text):
    // the notice says it in our words.
    let reason = query.with_untracked(|q| {
        q.get("reason")
            .as_deref()
            .and_then(ErrorCode::token_rejection)
    });
    let notice = reason.map(|code| ApiError::of_code(code).description);

    let (logins, logouts) = (login.version(), logout.version());
    let current = {
        let (logins, logouts) = (logins.clone(), logouts.clone());
        ArcResource::new_blocking(
            move || logins.get() + logouts.get(),
            |version| async move {
                Snapshot {
                    version,
                    user: retrying(current_user).await,
                }
            },
        )
    };
    let s = AuthState {
        logins,
        logouts,
        current,
        notice: ArcRwSignal::new(notice),
        posted: posted_elsewhere,
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
    keep_signed_in(&s);
    provide_context(s);
}

/// In the browser: reads the session again shortly before the access token expires (20 s
/// before, or at four fifths of its remaining life when that is later). The server renews the
/// session on that request (its cookies are due: see the server's `refresh_session`), so the
/// answer carries the new expiry, which schedules the next read. One timer per tab; a rejected
/// session ends with its reason.
fn keep_signed_in(s: &AuthState) {
    let s = s.clone();
    Effect::new(move |_| {
        let Some(user) = s.user() else {
            return;
        };
        let left = user.expires_in.max(1);
        let delay = (left - 20).max(left * 4 / 5).max(1);
        let current = s.current.clone();
        let timer = set_timeout_with_handle(
            move || current.refetch(),
            std::time::Duration::from_secs(delay as u64),
        );
        if let Ok(timer) = timer {
            on_cleanup(move || timer.clear());
        }
    });
}

/// For a page that needs a session, in the browser: once the answer is settled, no session or
/// a rejected token (expired, or signed out elsewhere) sends the visitor to sign in, then back
/// to `page` ([`Page::sign_in`]).
pub fn sign_in_when_signed_out(auth: &AuthState, page: Page) {
    let navigate = leptos_router::hooks::use_navigate();
    let auth = auth.clone();
    Effect::new(move |_| {
        let Some(answer) = auth.settled() else {
            return;
        };
        match answer {
            Ok(Some(_)) => return,
            Ok(None) => auth.ended(SIGN_IN_AGAIN),
            Err(e) if e.error.is_token_rejection() => auth.rejected(&e),
            // Any other failure is shown on the page; signing in again would not help.
            Err(_) => return,
        }
        navigate(page.sign_in, Default::default());
    });
}

/// What a page that needs a session says to a visitor without one.
pub const SIGN_IN_AGAIN: &str = "Please sign in to see this page.";

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

    /// The error of a form posted without JavaScript to `path`, if this page came back with one.
    pub fn posted_to(&self, path: &str) -> Option<ApiError> {
        self.posted
            .as_ref()
            .filter(|p| p.path == path)
            .map(|p| p.error.clone())
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

    /// A sign-in finished by another action than the sign-in form's (its second step): the
    /// session is read again, as after the form's.
    pub fn signed_in_again(&self) {
        self.logins.update(|n| *n += 1);
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

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;
    use crate::{auth::AppState, components::nav::SignOutButton};
    use identity::testing;
    use leptos_router::{components::Router, location::RequestUrl};
    use std::{
        sync::{Arc, OnceLock},
        time::{Duration, Instant},
    };

    /// Hands out the auth state of a page, provided as `Layout` provides it.
    #[component]
    fn Probe(out: Arc<OnceLock<AuthState>>) -> impl IntoView {
        provide_auth();
        let _ = out.set(use_auth());
    }

    /// On the server, Leptos resolves a `<Transition>` in an effect that can still be running
    /// its view closures, on another thread, while the request's reactive owner is disposed (the
    /// client hung up, or the response ended). A closure that read a value owned by the request
    /// then, or looked up a context, would panic ("Tried to access a reactive value that has
    /// already been disposed"). So what those closures hold must outlive the owner: checked here
    /// once the owner is gone, every time, where catching the race itself
    /// (`process::pages_abandoned_mid_render_never_panic`) takes luck.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_a_page_reads_outlives_its_request() {
        let _ = any_spawner::Executor::init_tokio();
        let (_dir, pool, auth) = testing::auth().await;
        testing::user(&pool, 1, 0).await;
        let signed_in = auth
            .start_session(&testing::proof(&auth, 1).await, "test", None)
            .await
            .unwrap()
            .unwrap();
        let auth = Arc::new(auth);
        let (mut request, ()) = http::Request::get("/")
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", signed_in.access_token),
            )
            .body(())
            .unwrap()
            .into_parts();
        request.extensions.insert(auth.clone());
        let options = leptos::config::LeptosOptions::builder()
            .output_name("authapp")
            .build();
        let state = AppState::new(options, pool, auth);

        // A page request: its owner, the contexts a server function reads, the router.
        let owner = Owner::new_root(None);
        let out = Arc::new(OnceLock::new());
        owner.with(|| {
            // With a reason, as a protected page sends a visitor whose session ended: a notice.
            provide_context(RequestUrl::new("/?reason=token_revoked"));
            provide_context(state);
            provide_context(request);
            let out = out.clone();
            let _page = view! { <Router><Probe out/></Router> };
        });
        let page = out.get().cloned().expect("the router made the page");
        // `/api/whoami` answered, as the nav shows it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while page.user().is_none() {
            assert!(Instant::now() < deadline, "the session was never read");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let read = |page: &AuthState| {
            (
                page.user(),
                page.settled(),
                page.notice(),
                page.signed_in.try_get(),
                page.registered.try_get(),
                [&page.signing_in, &page.signing_out, &page.registering].map(|m| m.try_get()),
            )
        };
        let before = read(&page);
        assert_eq!(
            before.0.as_ref().map(|u| u.username.as_str()),
            Some("user1")
        );
        assert!(matches!(before.1, Some(Ok(Some(_)))), "{:?}", before.1);
        assert!(before.2.is_some());

        // The request is over: its owner goes, with everything it owns (as leptos_axum does at
        // the end of a response, and when the client hangs up). Every value reads as before.
        owner.unset_with_forced_cleanup();
        assert_eq!(read(&page), before);
        // The sign-out button the nav shows a signed-in user, made by such a closure: its owner
        // has no parent left to look a context up in.
        let html = Owner::new().with(|| view! { <SignOutButton auth=page.clone()/> }.to_html());
        assert!(html.contains("Sign out"), "{html}");
    }
}
