//! `/account`: change the password (every other session is signed out, this one gets new
//! tokens) or delete the account. Both ask for the current password. The forms are plain posts,
//! with the WASM or without: the server answers with a redirect (back here with `changed=1`, or
//! home with `deleted=1`), and an error comes back in the address, shown in our words. Keeping
//! these forms out of the WASM keeps it small.

use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::{ChangePassword, DeleteAccount},
    components::form::{ErrorFn, Failure, NewPasswordInputs, PasswordInput},
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
    let change_error: ErrorFn = {
        let auth = auth.clone();
        Box::new(move || auth.posted_to(ChangePassword::PATH))
    };
    let delete_error: ErrorFn = Box::new(move || auth.posted_to(DeleteAccount::PATH));

    view! {
        <h1>"Password and account"</h1>
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
