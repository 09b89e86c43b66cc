use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::{Login, LoginCode},
    components::form::{
        failure, field, submit_with, ErrorFn, Failure, PasswordInput, SubmitButton, UsernameInput,
    },
    error::{ApiError, ErrorCode},
    signed_in::use_auth,
};

/// The error a refused second step names in the address (`error=invalid_code`, a code posted
/// back without JavaScript), in our words.
fn error_in_address(code: Option<String>) -> Option<ApiError> {
    let error = match code?.as_str() {
        "invalid_code" => ErrorCode::InvalidCode,
        "sign_in_expired" => ErrorCode::SignInExpired,
        "too_many_requests" => ErrorCode::TooManyRequests,
        "temporarily_unavailable" => ErrorCode::TemporarilyUnavailable,
        _ => return None,
    };
    Some(
        ApiError {
            error,
            description: String::new(),
            retry_after: None,
            pending_token: None,
        }
        .in_our_words(false),
    )
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let auth = use_auth();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let registered = move || query.read().get("registered").is_some();
    let from_address = move || error_in_address(query.read().get("error"));
    // The second step: asked for by the password's answer (or, without JavaScript, by the
    // address it redirected to), until the code's answer says the sign-in is over.
    let second_step = {
        let (signed_in, code_answer) = (auth.signed_in.clone(), auth.code_answer.clone());
        Memo::new(move |_| {
            let code_error = failure(code_answer.try_get()).map(|e| e.error);
            if code_error == Some(ErrorCode::SignInExpired) {
                return false;
            }
            let asked = failure(signed_in.try_get())
                .is_some_and(|e| e.error == ErrorCode::SecondFactorRequired);
            asked || query.read().get("step").as_deref() == Some("code")
        })
    };
    let password_step = {
        let auth = auth.clone();
        move || {
            let submit = submit_with(auth.login.clone(), |form| Login {
                username: field(form, "username"),
                password: field(form, "password"),
                next: Some(field(form, "next")),
                // The browser's proof is in its HttpOnly cookie, which the request carries.
                device_token: None,
            });
            let (signed_in, code_answer) = (auth.signed_in.clone(), auth.code_answer.clone());
            let password_error: ErrorFn = {
                let code_answer = code_answer.clone();
                Box::new(move || {
                    failure(code_answer.try_get())
                        .filter(|e| e.error == ErrorCode::SignInExpired)
                        .or_else(|| failure(signed_in.try_get()))
                        .or_else(from_address)
                })
            };
            view! {
                <form
                    action=Login::url()
                    method="post"
                    class="auth-form"
                    aria-label="Sign in"
                    on:submit=move |ev| {
                        code_answer.set(None);
                        submit(ev)
                    }
                >
                    <input type="hidden" name="next" value=next/>
                    <UsernameInput login=true/>
                    <PasswordInput id="password" label="Password" autocomplete="current-password"/>
                    <Failure error=password_error/>
                    <SubmitButton pending=auth.signing_in.clone() idle="Sign in" busy="Signing in…"/>
                </form>
            }
        }
    };
    let code_step = {
        let auth = auth.clone();
        move || {
            let code_answer = auth.code_answer.clone();
            let code_error: ErrorFn =
                Box::new(move || failure(code_answer.try_get()).or_else(from_address));
            view! {
                <form
                    action=LoginCode::url()
                    method="post"
                    class="auth-form"
                    aria-labelledby="code-heading"
                    on:submit=submit_with(auth.login_code.clone(), |form| LoginCode {
                        code: field(form, "code"),
                        pending_token: None,
                        next: Some(field(form, "next")),
                    })
                >
                    <h2 id="code-heading">"Two-step sign-in"</h2>
                    <p id="code-hint">
                        "Enter the 6-digit code your authenticator app shows now, "
                        "or one of your recovery codes."
                    </p>
                    <input type="hidden" name="next" value=next/>
                    <label for="code">"Code"</label>
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
                    <Failure error=code_error/>
                    <SubmitButton pending=auth.checking_code.clone() idle="Continue" busy="Checking…"/>
                </form>
                <p><a href="/login" rel="external">"Start again"</a></p>
            }
        }
    };
    view! {
        <h1>"Sign in"</h1>
        {move || registered().then(|| view! {
            <p class="notice" role="status">"Your account was created. Sign in to continue."</p>
        })}
        {move || if second_step.get() { code_step().into_any() } else { password_step().into_any() }}
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
