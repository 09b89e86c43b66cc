use leptos::{prelude::*, server_fn::ServerFn};

use crate::{
    api::Register,
    auth_state::use_auth,
    components::form::{field, submit_with, FormError, PasswordInput, SubmitButton, UsernameInput},
    validate::{PASSWORD_MAX, PASSWORD_MIN, USERNAME_MAX, USERNAME_MIN},
};

#[component]
pub fn RegisterPage() -> impl IntoView {
    let auth = use_auth();
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
            on:submit=submit_with(auth.register, |form| Register {
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
            <FormError answer=auth.registered/>
            <SubmitButton pending=auth.registering idle="Create account" busy="Creating…"/>
        </form>
        <p>"Already have an account? " <a href="/login">"Sign in"</a></p>
    }
}
