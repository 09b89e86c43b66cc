//! `/account`: change the password (every other session is signed out, this one gets new
//! tokens) or delete the account. Both ask for the current password, and both work before the
//! WASM loads.

use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::{ChangePassword, DeleteAccount},
    auth_state::{retrying_action, sign_in_when_signed_out, use_auth},
    components::form::{
        failure, field, submit_with, Failure, NewPasswordInputs, PasswordInput, SubmitButton,
    },
};

#[component]
pub fn AccountPage() -> impl IntoView {
    let auth = use_auth();
    sign_in_when_signed_out(&auth, "%2Faccount");
    let change = retrying_action::<ChangePassword>();
    let delete = retrying_action::<DeleteAccount>();
    let query = use_query_map();
    let changed = {
        let value = change.value();
        move || {
            let done = query.read().get("changed").is_some()
                || matches!(value.try_get().flatten(), Some(Ok(_)));
            done.then(|| {
                view! {
                    <p class="notice" role="status" data-testid="password-changed">
                        "Your password was changed. Every other session was signed out."
                    </p>
                }
            })
        }
    };
    let change_error = {
        let (value, auth) = (change.value(), auth.clone());
        move || failure(value.try_get()).or_else(|| auth.posted_to(ChangePassword::PATH))
    };
    let delete_error = {
        let (value, auth) = (delete.value(), auth.clone());
        move || failure(value.try_get()).or_else(|| auth.posted_to(DeleteAccount::PATH))
    };
    // Deleted: the answer's redirect takes the browser home; the header must forget the user.
    Effect::new({
        let (value, auth) = (delete.value(), auth.clone());
        move |_| {
            if matches!(value.get(), Some(Ok(_))) {
                auth.reload();
            }
        }
    });

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
                on:submit=submit_with(change.clone(), |form| ChangePassword {
                    current_password: field(form, "current_password"),
                    new_password: field(form, "new_password"),
                    new_password_confirm: Some(field(form, "new_password_confirm")),
                })
            >
                <PasswordInput id="current_password" label="Current password" autocomplete="current-password"/>
                <NewPasswordInputs
                    id="new_password"
                    label="New password"
                    confirm_id="new_password_confirm"
                    confirm_label="Repeat the new password"
                />
                <Failure error=change_error/>
                <SubmitButton pending=change.pending() idle="Change password" busy="Changing…"/>
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
                on:submit=submit_with(delete.clone(), |form| DeleteAccount {
                    password: field(form, "password"),
                })
            >
                <PasswordInput
                    id="delete_password"
                    name="password"
                    label="Your password"
                    autocomplete="current-password"
                />
                <Failure error=delete_error/>
                <SubmitButton
                    pending=delete.pending()
                    idle="Delete my account"
                    busy="Deleting…"
                    class="danger"
                />
            </form>
        </section>
        <p><a href="/profile">"Back to your profile"</a></p>
    }
}
