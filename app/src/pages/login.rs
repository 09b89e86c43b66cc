use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::Login,
    components::form::{field, submit_with, FormError, PasswordInput, SubmitButton, UsernameInput},
    signed_in::use_auth,
};

#[component]
pub fn LoginPage() -> impl IntoView {
    let auth = use_auth();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let registered = move || query.read().get("registered").is_some();
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
            on:submit=submit_with(auth.login, |form| Login {
                username: field(form, "username"),
                password: field(form, "password"),
                next: Some(field(form, "next")),
                // The browser's proof is in its HttpOnly cookie, which the request carries.
                device_token: None,
            })
        >
            <input type="hidden" name="next" value=next/>
            <UsernameInput login=true/>
            <PasswordInput id="password" label="Password" autocomplete="current-password"/>
            <FormError answer=auth.signed_in/>
            <SubmitButton pending=auth.signing_in idle="Sign in" busy="Signing in…"/>
        </form>
        <p><a href="/forgot" data-testid="forgot-link">"Forgot your password?"</a></p>
        <p>"No account yet? " <a href="/register" rel="external">"Create one"</a></p>
    }
}
