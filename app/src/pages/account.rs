//! `/account`: change the password (every other session is signed out, this one gets new
//! tokens) or delete the account. Both ask for the current password. The forms are plain posts,
//! with the WASM or without: the server answers with a redirect (back here with `changed=1`, or
//! home with `deleted=1`), and an error comes back in the address, shown in our words. Keeping
//! these forms out of the WASM keeps it small.

use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::{ChangeEmail, ChangePassword, DeleteAccount, ResendEmail},
    components::{
        form::{ErrorFn, Failure, NewPasswordInputs, PasswordInput},
        reauth::ReauthForm,
    },
    error::ErrorCode,
    routes,
    signed_in::{sign_in_when_signed_out, use_auth},
};

#[component]
pub fn AccountPage() -> impl IntoView {
    let auth = use_auth();
    sign_in_when_signed_out(&auth, routes::ACCOUNT);
    let query = use_query_map();
    let changed = move || {
        query.read().get("changed").is_some().then(|| {
            view! {
                <p class="notice" role="status" data-testid="password-changed">
                    "Your password was changed. Every other session was signed out."
                </p>
            }
        })
    };
    // A change refused for want of a recent sign-in (or a confirmation that was refused, or
    // went through: `reauth` in the address) shows the "confirm it is you" form, or its outcome.
    let reauth = query.read_untracked().get("reauth");
    let asked = [ChangePassword::PATH, DeleteAccount::PATH, ChangeEmail::PATH]
        .iter()
        .any(|path| {
            auth.posted_to(path)
                .is_some_and(|e| e.error == ErrorCode::ReauthRequired)
        });
    let confirm = if reauth.as_deref() == Some("ok") {
        view! {
            <p class="notice" role="status" data-testid="reauth-ok">
                "Thank you. Now make your change again."
            </p>
        }
        .into_any()
    } else if asked || reauth.is_some() {
        let code = crate::pages::mail::page_facts(routes::ACCOUNT.path).get(4) == "totp";
        view! { <ReauthForm back=routes::ACCOUNT.path code/> }.into_any()
    } else {
        ().into_any()
    };
    let not_reauth =
        |e: Option<crate::error::ApiError>| e.filter(|e| e.error != ErrorCode::ReauthRequired);
    let change_error: ErrorFn = {
        let auth = auth.clone();
        Box::new(move || not_reauth(auth.posted_to(ChangePassword::PATH)))
    };
    let delete_error: ErrorFn = {
        let auth = auth.clone();
        Box::new(move || not_reauth(auth.posted_to(DeleteAccount::PATH)))
    };

    view! {
        <h1>"Password and account"</h1>
        {confirm}
        <EmailSection/>
        <section aria-labelledby="password-heading">
            <h2 id="password-heading">"Change your password"</h2>
            <p>"Every other session is signed out; this one stays signed in."</p>
            {changed}
            <form
                action=ChangePassword::url()
                method="post"
                class="auth-form"
                aria-labelledby="password-heading"
            >
                <PasswordInput id="current_password" label="Current password" autocomplete="current-password"/>
                <NewPasswordInputs
                    id="new_password"
                    label="New password"
                    confirm_id="new_password_confirm"
                    confirm_label="Repeat the new password"
                />
                <Failure error=change_error/>
                <button type="submit">"Change password"</button>
            </form>
        </section>
        <section aria-labelledby="delete-heading">
            <h2 id="delete-heading">"Delete your account"</h2>
            <p>
                "This deletes your account and signs out every session at once. "
                "It cannot be undone."
            </p>
            <form
                action=DeleteAccount::url()
                method="post"
                class="auth-form"
                aria-labelledby="delete-heading"
            >
                <PasswordInput
                    id="delete_password"
                    name="password"
                    label="Your password"
                    autocomplete="current-password"
                />
                <Failure error=delete_error/>
                <button type="submit" class="danger">"Delete my account"</button>
            </form>
        </section>
        <p><a href="/profile">"Back to your profile"</a></p>
    }
}

/// The account's address: what it is and whether it is confirmed, a new confirming link, and
/// a change of address (confirmed from the new address before it counts).
#[component]
fn EmailSection() -> impl IntoView {
    let auth = use_auth();
    let facts = crate::pages::mail::page_facts(routes::ACCOUNT.path);
    if facts.get(3) == "off" {
        return ().into_any();
    }
    let (email, state, pending) = (
        facts.get(0).to_owned(),
        facts.get(1).to_owned(),
        facts.get(2).to_owned(),
    );
    let query = use_query_map();
    let notice = move || {
        let text = match query.read().get("email").as_deref() {
            Some("sent") => {
                "A link is on its way to the new address. It becomes your account's \
                             address once you follow it."
            }
            Some("resent") => "A new link is on its way.",
            Some("same") => "That is your account's address already.",
            _ => return None,
        };
        Some(view! { <p class="notice" role="status" data-testid="email-notice">{text}</p> })
    };
    let resend_error: ErrorFn = {
        let auth = auth.clone();
        Box::new(move || auth.posted_to(ResendEmail::PATH))
    };
    let change_error: ErrorFn = Box::new(move || {
        auth.posted_to(ChangeEmail::PATH)
            .filter(|e| e.error != ErrorCode::ReauthRequired)
    });
    let current = match (email.is_empty(), state.as_str()) {
        (true, _) => view! { <p data-testid="email-state" data-state="none">"Your account has no e-mail address."</p> }.into_any(),
        (false, "verified") => view! {
            <p data-testid="email-state" data-state="verified">
                <strong>{email.clone()}</strong>" — confirmed."
            </p>
        }
        .into_any(),
        (false, _) => view! {
            <p data-testid="email-state" data-state="unverified">
                <strong>{email.clone()}</strong>
                " — not confirmed yet: follow the link we mailed to it. Until then it receives no "
                "notices nor reset links."
            </p>
        }
        .into_any(),
    };
    let waiting = (!pending.is_empty() && pending != email).then(|| {
        view! {
            <p data-testid="email-pending">
                "Waiting for you to follow the link sent to "<strong>{pending.clone()}</strong>"."
            </p>
        }
    });
    let can_resend = !pending.is_empty() || (!email.is_empty() && state != "verified");
    let resend = can_resend.then(|| {
        view! {
            <form action=ResendEmail::url() method="post" class="inline-form">
                <button type="submit">"Send the link again"</button>
            </form>
        }
    });
    view! {
        <section aria-labelledby="email-heading">
            <h2 id="email-heading">"Your e-mail address"</h2>
            {current}
            {waiting}
            {notice}
            {resend}
            <Failure error=resend_error/>
            <form
                action=ChangeEmail::url()
                method="post"
                class="auth-form"
                aria-labelledby="email-change-heading"
            >
                <h3 id="email-change-heading">
                    {if email.is_empty() { "Add an address" } else { "Change your address" }}
                </h3>
                <label for="new_email">"New e-mail address"</label>
                <input
                    id="new_email"
                    name="email"
                    type="email"
                    autocomplete="email"
                    autocapitalize="none"
                    spellcheck="false"
                    required
                    maxlength="254"
                />
                <PasswordInput
                    id="email_password"
                    name="password"
                    label="Your password"
                    autocomplete="current-password"
                />
                <Failure error=change_error/>
                <button type="submit">"Send a confirming link"</button>
            </form>
        </section>
    }
    .into_any()
}
