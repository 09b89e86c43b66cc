//! `/two-step`: the sign-in's second step, for an account with two-step sign-in on. The
//! password's answer brought the browser here (with or without JavaScript); the half-way
//! sign-in is in the browser's `pending_sign_in` cookie. The code is an authenticator app's, or
//! a recovery code. A page of its own, in a chunk of its own: the sign-in page most people see
//! carries none of it.

use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::LoginCode,
    components::form::{failure, field, submit_with, ErrorFn, Failure, SubmitButton},
    error::{ApiError, ErrorCode},
    signed_in::use_auth,
};

/// The refusal a code posted without JavaScript names in the address (`error=invalid_code`),
/// in our words.
fn error_in_address(code: Option<String>) -> Option<ApiError> {
    code.as_deref()
        .and_then(ErrorCode::in_address)
        .map(ApiError::of_code)
}

#[component]
pub fn TwoStepPage() -> impl IntoView {
    let auth = use_auth();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let action = ArcServerAction::<LoginCode>::new();
    // Signed in: the session is read again (the server's redirect opens the next page).
    Effect::new({
        let (action, auth) = (action.clone(), auth.clone());
        move |_| {
            if matches!(action.value().try_get().flatten(), Some(Ok(_))) {
                auth.signed_in_again();
            }
        }
    });
    let error: ErrorFn = {
        let value = action.value();
        Box::new(move || {
            failure(value.try_get()).or_else(|| error_in_address(query.read().get("error")))
        })
    };
    view! {
        <h1 id="two-step-heading">"Two-step sign-in"</h1>
        <form
            action=LoginCode::url()
            method="post"
            class="auth-form"
            aria-labelledby="two-step-heading"
            on:submit=submit_with(action.clone(), |form| LoginCode {
                code: field(form, "code"),
                pending_token: None,
                next: Some(field(form, "next")),
            })
        >
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
            <Failure error/>
            <SubmitButton pending=action.pending() idle="Continue" busy="Checking…"/>
        </form>
        <p><a href="/login" rel="external">"Start again"</a></p>
    }
}
