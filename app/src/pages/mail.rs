//! The pages of e-mail: `/forgot` (ask for a reset link), `/reset` (the page a reset link
//! opens: a new password) and `/verify` (the page a confirming link opens: one button). A
//! mailed link only opens its page; only the page's form spends it, so a mail scanner that
//! follows every link changes nothing. The forms are plain posts, with the WASM or without;
//! the server answers with a redirect, and an error comes back in the address, in our words.
//!
//! What a link is (live, used, expired, not valid) is read by the server before the page
//! renders and reaches the browser inside the page (see [`MailFacts`]).

use leptos::{prelude::*, server::SharedValue, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::{email::MailFacts, ConfirmEmail, ForgotPassword, ResetPassword, RESET_REQUESTED},
    components::form::{ErrorFn, Failure, NewPasswordInputs},
    signed_in::use_auth,
};

/// What the server read for this page (see [`MailFacts`]); in the browser, read back from the
/// page being hydrated. A page the browser's router renders by itself has none: it is loaded
/// from the server instead (as the sessions page is), which leaves the router's history entry
/// behind it: links to such a page say `rel="external"`, so that the browser loads it at once.
pub(crate) fn page_facts(path: &'static str) -> MailFacts {
    // (Not the window's address: the router moves it only after this runs.)
    #[cfg(not(feature = "ssr"))]
    if !Owner::current_shared_context().is_some_and(|context| context.during_hydration()) {
        let search = leptos_router::hooks::use_location().search.get_untracked();
        let target = if search.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", search.trim_start_matches('?'))
        };
        let _ = window().location().assign(&target);
    }
    #[cfg(feature = "ssr")]
    let _ = path;
    SharedValue::new_str(prepared).into_inner()
}

#[cfg(feature = "ssr")]
fn prepared() -> MailFacts {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<MailFacts>().cloned())
        .unwrap_or_default()
}

#[cfg(not(feature = "ssr"))]
fn prepared() -> MailFacts {
    MailFacts::default()
}

/// The token of the link that opened this page.
fn token() -> String {
    use_query_map()
        .read_untracked()
        .get("token")
        .unwrap_or_default()
}

/// A link that cannot be used, said plainly, with the way on.
#[component]
fn DeadLink(state: String, again: &'static str, again_href: &'static str) -> impl IntoView {
    let (heading, text) = match state.as_str() {
        "used" => (
            "This link was used already",
            "Each link works once, and this one has done its work.",
        ),
        "expired" => (
            "This link has expired",
            "Links work for a limited time, and a password reset link stops working as soon \
             as the password changes.",
        ),
        "unknown" => (
            "This link could not be checked",
            "Something went wrong on our side. Please try again in a moment.",
        ),
        _ => (
            "This link is not valid",
            "It may have been cut short when it was copied, or a newer link was sent since: \
             only the newest one works.",
        ),
    };
    view! {
        <h1 data-testid="dead-link" data-state=state>{heading}</h1>
        <p>{text}</p>
        <p><a href=again_href rel="external">{again}</a></p>
    }
}

/// `/forgot`: a username or an address, and the same answer whatever it names.
#[component]
pub fn ForgotPage() -> impl IntoView {
    let auth = use_auth();
    let sent = move || use_query_map().read().get("sent").is_some();
    let error: ErrorFn = Box::new(move || auth.posted_to(ForgotPassword::PATH));
    view! {
        <h1>"Forgot your password?"</h1>
        <p>
            "Enter your username or the e-mail address of your account. If the account has a "
            "confirmed address, we mail it a link to set a new password."
        </p>
        {move || sent().then(|| view! {
            <p class="notice" role="status" data-testid="reset-requested">{RESET_REQUESTED}</p>
        })}
        <form
            action=ForgotPassword::url()
            method="post"
            class="auth-form"
            aria-label="Ask for a link to set a new password"
        >
            <label for="login">"Username or e-mail address"</label>
            <input
                id="login"
                name="login"
                type="text"
                autocomplete="username"
                autocapitalize="none"
                spellcheck="false"
                required
                maxlength="254"
            />
            <Failure error/>
            <button type="submit">"Send me a link"</button>
        </form>
        <p><a href="/login">"Back to sign in"</a></p>
    }
}

/// `/reset?token=…`: a new password, when the link is live.
#[component]
pub fn ResetPage() -> impl IntoView {
    let auth = use_auth();
    let facts = page_facts("/reset");
    let error: ErrorFn = Box::new(move || auth.posted_to(ResetPassword::PATH));
    if facts.get(0) != "live" {
        return view! {
            <DeadLink state=facts.get(0).to_owned() again="Ask for a new link" again_href="/forgot"/>
            <Failure error/>
        }
        .into_any();
    }
    view! {
        <h1>"Set a new password"</h1>
        <p>
            "Setting it signs your account out everywhere, and signs you in here. The link "
            "works once."
        </p>
        <form
            action=ResetPassword::url()
            method="post"
            class="auth-form"
            aria-label="Set a new password"
        >
            <input type="hidden" name="token" value=token()/>
            <NewPasswordInputs
                id="password"
                label="New password"
                confirm_id="password_confirm"
                confirm_label="Repeat the new password"
            />
            {(facts.get(2) == "code").then(|| view! {
                <label for="code">"Authenticator or recovery code"</label>
                <p class="hint" id="code-hint">
                    "Your account has two-step sign-in: enter the code your authenticator app "
                    "shows now, or one of your recovery codes."
                </p>
                <input
                    id="code"
                    name="code"
                    type="text"
                    autocomplete="one-time-code"
                    autocapitalize="none"
                    spellcheck="false"
                    required
                    maxlength="32"
                    aria-describedby="code-hint"
                />
            })}
            <Failure error/>
            <button type="submit">"Set the new password"</button>
        </form>
    }
    .into_any()
}

/// `/verify?token=…`: one button that confirms the address, when the link is live.
#[component]
pub fn VerifyPage() -> impl IntoView {
    let auth = use_auth();
    let confirmed = use_query_map().read_untracked().get("confirmed").is_some();
    let error: ErrorFn = Box::new(move || auth.posted_to(ConfirmEmail::PATH));
    if confirmed {
        return view! {
            <h1 data-testid="address-confirmed">"Your e-mail address is confirmed"</h1>
            <p>
                "It now receives the account's notices and password reset links, and you can "
                "sign in with it."
            </p>
            <p><a href="/account" rel="external">"Go to your account"</a></p>
        }
        .into_any();
    }
    let facts = page_facts("/verify");
    if facts.get(0) != "live" {
        return view! {
            <DeadLink
                state=facts.get(0).to_owned()
                again="Go to your account to send a new link"
                again_href="/account"
            />
            <Failure error/>
        }
        .into_any();
    }
    let address = facts.get(1).to_owned();
    view! {
        <h1>"Confirm your e-mail address"</h1>
        <p>"Confirm " <strong data-testid="address">{address}</strong> " as your account's address."</p>
        <form
            action=ConfirmEmail::url()
            method="post"
            class="auth-form"
            aria-label="Confirm your e-mail address"
        >
            <input type="hidden" name="token" value=token()/>
            <Failure error/>
            <button type="submit">"Confirm this address"</button>
        </form>
    }
    .into_any()
}
