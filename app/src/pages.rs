//! The pages and the pieces they share.

use leptos::{
    either::{Either, EitherOf3},
    ev::SubmitEvent,
    prelude::*,
    server_fn::ServerFn,
    wasm_bindgen::JsCast,
    web_sys,
};
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::{
    api::{Login, Logout, Register},
    error::ApiError,
    session::{use_session, Session},
    time_fmt::utc,
    validate::{PASSWORD_MAX, PASSWORD_MIN, USERNAME_MAX, USERNAME_MIN},
};

const SIGN_IN_AGAIN: &str = "Please sign in to see your profile.";

/// True once this component runs in the browser (never during server rendering).
pub fn hydrated() -> ReadSignal<bool> {
    let (ready, set_ready) = signal(false);
    Effect::new(move |_| set_ready.set(true));
    ready
}

/// The header: the brand, and links or the signed-in user, on every page.
#[component]
pub fn Nav() -> impl IntoView {
    let session = use_session();
    // The session is read inside transitions: the server waits for it before it renders them,
    // and a refetch in the browser keeps them as they were until the answer lands.
    view! {
        <Transition fallback=|| ()>
        <header class="site-header">
            <a href="/" class="brand">"Auth app"</a>
            <nav aria-label="Main">
                {move || match session.user() {
                    Some(user) => Either::Left(view! {
                        <span class="who" data-testid="nav-user">
                            "Signed in as " <strong>{user.username}</strong>
                        </span>
                        <a href="/profile">"Profile"</a>
                        <SignOutButton session/>
                    }),
                    None => Either::Right(view! {
                        <a href="/login">"Sign in"</a>
                        <a href="/register">"Sign up"</a>
                    }),
                }}
            </nav>
        </header>
        {move || session.notice().map(|text| view! {
            <p class="notice warning" role="alert" data-testid="session-notice">{text}</p>
        })}
        </Transition>
    }
}

/// Rendered inside view closures, which on the server may run after the request's owner is
/// gone (see `Session::user`): the session comes as a prop, since a context lookup from there
/// can find nothing.
#[component]
fn SignOutButton(session: Session) -> impl IntoView {
    let logout = session.logout;
    view! {
        <form
            action=Logout::url()
            method="post"
            class="inline"
            on:submit=submit_with(logout, |_| Logout {})
        >
            <SubmitButton pending=session.signing_out idle="Sign out" busy="Signing out…" class="link-button"/>
        </form>
    }
}

/// The submit handler of a form that posts to a server function. Without the WASM the browser
/// posts the form itself to the same URL (and the server redirects back); once hydrated, the
/// fields are read by `args` and sent through `action`, whose pending state and value the page
/// shows. (Leptos's `ActionForm` does the same through a generic form decoder, which costs the
/// WASM several kilobytes per form.)
fn submit_with<S>(
    action: ServerAction<S>,
    args: fn(&web_sys::FormData) -> S,
) -> impl Fn(SubmitEvent)
where
    S: ServerFn + Clone + Send + Sync + 'static,
    S::Output: Send + Sync + 'static,
    S::Error: Send + Sync + 'static,
{
    move |ev: SubmitEvent| {
        let form = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok());
        let Some(data) = form.and_then(|f| web_sys::FormData::new_with_form(&f).ok()) else {
            return; // let the browser post it
        };
        ev.prevent_default();
        action.dispatch(args(&data));
    }
}

/// A form's submit button, disabled and relabelled while its action runs.
#[component]
fn SubmitButton(
    pending: Memo<bool>,
    idle: &'static str,
    busy: &'static str,
    #[prop(optional)] class: Option<&'static str>,
) -> impl IntoView {
    view! {
        <button type="submit" class=class disabled=move || pending.try_get().unwrap_or(false)>
            {move || if pending.try_get().unwrap_or(false) { busy } else { idle }}
        </button>
    }
}

/// A text field of a submitted form ("" when absent).
fn field(form: &web_sys::FormData, name: &str) -> String {
    form.get(name).as_string().unwrap_or_default()
}

/// An inline error under a form, announced to screen readers.
#[component]
fn FormError(#[prop(into)] error: Signal<Option<ApiError>>) -> impl IntoView {
    move || {
        error.try_get().flatten().map(|e| {
            view! { <p class="form-error" role="alert" data-error=format!("{:?}", e.error)>{e.description}</p> }
        })
    }
}

/// The username field. For a new account it also states the rules (the hint follows it).
#[component]
fn UsernameInput(#[prop(optional)] new_account: bool) -> impl IntoView {
    view! {
        <label for="username">"Username"</label>
        <input
            id="username"
            name="username"
            type="text"
            autocomplete="username"
            autocapitalize="none"
            spellcheck="false"
            required
            minlength=new_account.then(|| USERNAME_MIN.to_string())
            maxlength=USERNAME_MAX.to_string()
            pattern=new_account.then_some("[A-Za-z0-9_.\\-]+")
            aria-describedby=new_account.then_some("username-hint")
        />
    }
}

/// A password input with a show/hide button. The button needs the WASM, so it stays hidden
/// until the page is hydrated; the field itself works without it.
#[component]
fn PasswordInput(
    id: &'static str,
    label: &'static str,
    autocomplete: &'static str,
    #[prop(optional)] name: Option<&'static str>,
    #[prop(optional)] minlength: Option<usize>,
) -> impl IntoView {
    let visible = RwSignal::new(false);
    let ready = hydrated();
    view! {
        <label for=id>{label}</label>
        <div class="password-row">
            <input
                id=id
                name=name.unwrap_or(id)
                type=move || if visible.get() { "text" } else { "password" }
                autocomplete=autocomplete
                required
                minlength=minlength.map(|n| n.to_string())
                maxlength=PASSWORD_MAX.to_string()
            />
            <button
                type="button"
                class="toggle"
                hidden=move || !ready.get()
                aria-controls=id
                aria-pressed=move || visible.get().to_string()
                on:click=move |_| visible.update(|v| *v = !*v)
            >
                {move || if visible.get() { "Hide" } else { "Show" }}
            </button>
        </div>
    }
}

#[component]
pub fn HomePage() -> impl IntoView {
    let session = use_session();
    let explain = RwSignal::new(false);
    view! {
        <h1>"Sign up, sign in, sign out — done right"</h1>
        <Transition fallback=|| ()>
        {move || match session.user() {
            Some(user) => Either::Left(view! {
                <p class="lead" data-testid="home-status">
                    "You are signed in as " <strong>{user.username}</strong> ". "
                    <a href="/profile">"Go to your profile"</a>
                </p>
            }),
            None => Either::Right(view! {
                <p class="lead" data-testid="home-status">"You are not signed in."</p>
                <p class="actions">
                    <a class="button" href="/login">"Sign in"</a>
                    <a class="button secondary" href="/register">"Create an account"</a>
                </p>
            }),
        }}
        </Transition>
        <button
            type="button"
            class="link-button"
            aria-expanded=move || explain.get().to_string()
            aria-controls="how-it-works"
            on:click=move |_| explain.update(|v| *v = !*v)
        >
            {move || if explain.get() { "Hide how it works" } else { "How does signing in work?" }}
        </button>
        <section id="how-it-works" hidden=move || !explain.get()>
            <p>
                "Signing in issues a signed token kept in a cookie your scripts cannot read. "
                "Every protected request checks its signature, its expiry and the list of "
                "signed-out tokens. Signing out puts the token on that list for good."
            </p>
        </section>
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let session = use_session();
    let login = session.login;
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let registered = move || query.read().get("registered").is_some();
    let answer = login.value();
    let error = Signal::derive(move || answer.try_get().flatten().and_then(Result::err));
    view! {
        <h1>"Sign in"</h1>
        {move || registered().then(|| view! {
            <p class="notice" role="status">"Your account was created. Sign in to continue."</p>
        })}
        <form
            action=Login::url()
            method="post"
            class="auth-form"
            aria-label="Sign in"
            on:submit=submit_with(login, |form| Login {
                username: field(form, "username"),
                password: field(form, "password"),
                next: Some(field(form, "next")),
            })
        >
            <input type="hidden" name="next" value=next/>
            <UsernameInput/>
            <PasswordInput id="password" label="Password" autocomplete="current-password"/>
            <FormError error/>
            <SubmitButton pending=session.signing_in idle="Sign in" busy="Signing in…"/>
        </form>
        <p>"No account yet? " <a href="/register">"Create one"</a></p>
    }
}

#[component]
pub fn RegisterPage() -> impl IntoView {
    let session = use_session();
    let register = session.register;
    let error = Signal::derive(move || register.value().try_get().flatten().and_then(Result::err));
    let username_hint =
        format!("{USERNAME_MIN}–{USERNAME_MAX} characters: letters, digits, '_', '.' or '-'.");
    let password_hint = format!("{PASSWORD_MIN}–{PASSWORD_MAX} characters.");
    view! {
        <h1>"Create an account"</h1>
        <form
            action=Register::url()
            method="post"
            class="auth-form"
            aria-label="Create an account"
            on:submit=submit_with(register, |form| Register {
                username: field(form, "username"),
                password: field(form, "password"),
                password_confirm: Some(field(form, "password_confirm")),
            })
        >
            <UsernameInput new_account=true/>
            <p class="hint" id="username-hint">{username_hint}</p>
            <PasswordInput
                id="password"
                label="Password"
                autocomplete="new-password"
                minlength=PASSWORD_MIN
            />
            <p class="hint">{password_hint}</p>
            <PasswordInput
                id="password_confirm"
                label="Repeat the password"
                autocomplete="new-password"
                minlength=PASSWORD_MIN
            />
            <FormError error/>
            <SubmitButton pending=session.registering idle="Create account" busy="Creating…"/>
        </form>
        <p>"Already have an account? " <a href="/login">"Sign in"</a></p>
    }
}

#[component]
pub fn ProfilePage() -> impl IntoView {
    let session = use_session();

    // In the browser: once the session is settled, no session or a rejected token (expired,
    // or signed out elsewhere) sends the visitor to sign in, then back here.
    let navigate = use_navigate();
    Effect::new(move |_| {
        let Some(snapshot) = session.current.try_get().flatten() else {
            return;
        };
        if !session.is_settled(&snapshot) {
            return;
        }
        match snapshot.user {
            Ok(Some(_)) => return,
            Ok(None) => session.ended(SIGN_IN_AGAIN),
            Err(e) if e.error.is_token_rejection() => session.rejected(&e),
            // Any other failure is shown on the page; signing in again would not help.
            Err(_) => return,
        }
        navigate("/login?next=%2Fprofile", Default::default());
    });

    // The session the nav shows, not a second fetch. On the server the request already passed
    // the session check (see PROTECTED_PATHS), so the profile is in the HTML.
    view! {
        <h1>"Your profile"</h1>
        <Transition fallback=Loading>
        {move || {
            let snapshot = session.current.try_get().flatten()?;
            Some(if !session.is_settled(&snapshot) {
                EitherOf3::A(Loading())
            } else {
                match snapshot.user {
                    Ok(Some(user)) => EitherOf3::B(view! {
                        <dl class="profile" data-testid="profile">
                            <dt>"Username"</dt>
                            <dd data-testid="profile-username">{user.username}</dd>
                            <dt>"Member since"</dt>
                            <dd>{utc(user.created_at)}</dd>
                            <dt>"Session expires"</dt>
                            <dd data-testid="profile-expires">{utc(user.expires_at)}</dd>
                        </dl>
                        <SignOutButton session/>
                    }),
                    other => EitherOf3::C(view! {
                        <p class="form-error" role="alert">
                            {other.err().map_or(SIGN_IN_AGAIN.to_string(), |e| e.description)}
                        </p>
                        <p><a href="/login?next=%2Fprofile">"Sign in"</a></p>
                    }),
                }
            })
        }}
        </Transition>
    }
}

#[component]
fn Loading() -> impl IntoView {
    view! { <p>"Loading…"</p> }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <h1>"Page not found"</h1>
        <p><a href="/">"Back to the home page"</a></p>
    }
}
