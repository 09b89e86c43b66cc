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
    // Whether this site asks for an address, as the server said in the page.
    let email = crate::pages::mail::page_facts(crate::routes::REGISTER.path);
    let email_input = (email.get(0) != "off").then(|| {
        let required = email.get(0) == "required";
        let label = if required {
            "E-mail address"
        } else {
            "E-mail address (optional)"
        };
        view! {
            <label for="email">{label}</label>
            <input
                id="email"
                name="email"
                type="email"
                autocomplete="email"
                autocapitalize="none"
                spellcheck="false"
                maxlength="254"
                required=required
                aria-describedby="email-hint"
            />
            <p class="hint" id="email-hint">
                "We send it a link to confirm it. Once confirmed, it can reset a forgotten "
                "password, and it is told of new sign-ins."
            </p>
        }
    });
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
                email: Some(field(form, "email")),
            })
        >
            <UsernameInput new_account=true/>
            <p class="hint" id="username-hint">{username_hint}</p>
            {email_input}
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
