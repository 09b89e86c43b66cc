use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::Login,
    components::form::{
        failure, field, submit_with, ErrorFn, Failure, PasswordInput, SubmitButton, UsernameInput,
    },
    error::{ApiError, ErrorCode},
    signed_in::use_auth,
};

#[component]
pub fn LoginPage() -> impl IntoView {
    let auth = use_auth();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let registered = move || query.read().get("registered").is_some();
    // A sign-in whose second step took too long (`error=sign_in_expired`) starts here again.
    let expired = move || {
        (query.read().get("error").as_deref() == Some("sign_in_expired"))
            .then(ApiError::sign_in_expired)
    };
    // The password was right and a second factor is asked for: on to its page (a full load:
    // the server renders it, and the half-way sign-in is in this browser's cookie).
    #[cfg(not(feature = "ssr"))]
    Effect::new({
        let signed_in = auth.signed_in.clone();
        move |_| {
            let asked = failure(signed_in.try_get())
                .is_some_and(|e| e.error == ErrorCode::SecondFactorRequired);
            if asked {
                let next = query.read_untracked().get("next").unwrap_or_default();
                let to = if next.is_empty() {
                    "/two-step".to_owned()
                } else {
                    format!("/two-step?next={}", crate::routes::encode_component(&next))
                };
                let _ = window().location().assign(&to);
            }
        }
    });
    let signed_in = auth.signed_in.clone();
    // The password's answer "a second factor is needed" is no error here: the server sends the
    // browser on to /two-step.
    let error: ErrorFn = Box::new(move || {
        failure(signed_in.try_get())
            .filter(|e| e.error != ErrorCode::SecondFactorRequired)
            .or_else(expired)
    });
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
            on:submit=submit_with(auth.login.clone(), |form| Login {
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
            <Failure error/>
            <SubmitButton pending=auth.signing_in.clone() idle="Sign in" busy="Signing in…"/>
        </form>
        <div class="passkey-only">
            <button type="button" class="secondary" data-passkey="sign-in" data-testid="passkey-sign-in">
                "Sign in with a passkey"
            </button>
            <p class="form-error" role="alert" data-passkey-error hidden></p>
        </div>
        <p><a href="/forgot" data-testid="forgot-link">"Forgot your password?"</a></p>
        <p>"No account yet? " <a href="/register" rel="external">"Create one"</a></p>
    }
}
