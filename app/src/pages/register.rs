use leptos::{prelude::*, server_fn::ServerFn};

use crate::{
    api::Register,
    components::form::{
        field, submit_with, FormError, NewPasswordInputs, SubmitButton, UsernameInput,
    },
    signed_in::use_auth,
    validate::{USERNAME_MAX, USERNAME_MIN},
};

#[component]
pub fn RegisterPage() -> impl IntoView {
    let auth = use_auth();
    let username_hint =
        format!("{USERNAME_MIN}–{USERNAME_MAX} characters: letters, digits, '_', '.' or '-'.");
    view! {
        <h1>"Create an account"</h1>
        <form
            action=Register::url()
            method="post"
            class="auth-form"
            aria-label="Create an account"
            on:submit=submit_with(auth.register, |form| Register {
                username: field(form, "username"),
                password: field(form, "password"),
                password_confirm: Some(field(form, "password_confirm")),
            })
        >
            <UsernameInput new_account=true/>
            <p class="hint" id="username-hint">{username_hint}</p>
            <NewPasswordInputs
                id="password"
                label="Password"
                confirm_id="password_confirm"
                confirm_label="Repeat the password"
            />
            <FormError answer=auth.registered/>
            <SubmitButton pending=auth.registering idle="Create account" busy="Creating…"/>
        </form>
        <p>"Already have an account? " <a href="/login">"Sign in"</a></p>
    }
}
