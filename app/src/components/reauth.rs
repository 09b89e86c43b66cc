//! "Confirm it is you": the form a page shows when a dangerous change answered
//! `reauth_required`. It posts the password (and, with two-step sign-in on, a code) to
//! `POST /api/reauth`. Without JavaScript the server sends the browser back to the page with
//! `reauth=ok` (make the change again) or the refusal's code; with it, the page's own action
//! runs and the page carries on by itself.

use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::Reauthenticate,
    components::form::{
        failure, field, submit_with, ErrorFn, Failure, PasswordInput, SubmitButton,
    },
    error::{ApiError, ErrorCode},
};

/// The refusal a reauthentication posted without JavaScript names in the address
/// (`reauth=invalid_code`), in our words; `None` for `ok` or anything else.
pub(crate) fn refusal_in_address(code: &str) -> Option<ApiError> {
    Some(match ErrorCode::in_address(code)? {
        ErrorCode::InvalidCredentials => ApiError::wrong_password(),
        code => ApiError::of_code(code),
    })
}

/// The form. `back` is the page's own path (where the server sends a browser without
/// JavaScript); `code` shows the second-factor field; `action`, when given, posts through the
/// WASM and holds the answer.
#[component]
pub(crate) fn ReauthForm(
    back: &'static str,
    code: bool,
    #[prop(optional)] action: Option<ArcServerAction<Reauthenticate>>,
) -> impl IntoView {
    let query = use_query_map();
    let answer = action.as_ref().map(|a| (a.value(), a.pending()));
    let error: ErrorFn = {
        let value = answer.as_ref().map(|(v, _)| v.clone());
        Box::new(move || {
            value
                .as_ref()
                .and_then(|v| failure(v.try_get()))
                .or_else(|| {
                    query
                        .read()
                        .get("reauth")
                        .and_then(|c| refusal_in_address(&c))
                })
        })
    };
    let pending = answer
        .map(|(_, p)| p)
        .unwrap_or_else(|| ArcMemo::new(|_| false));
    let on_submit = action.map(|action| {
        submit_with(action, |form| Reauthenticate {
            password: field(form, "password"),
            code: Some(field(form, "code")).filter(|c| !c.is_empty()),
            next: None,
        })
    });
    view! {
        <section class="reauth" aria-labelledby="reauth-heading" data-testid="reauth">
            <h2 id="reauth-heading">"Confirm it is you"</h2>
            <p>
                "This change needs a recent sign-in. Enter your password"
                {code.then_some(" and a code from your authenticator app (or a recovery code)")}
                ", then make the change again."
            </p>
            <form
                action=Reauthenticate::url()
                method="post"
                class="auth-form"
                aria-labelledby="reauth-heading"
                on:submit=move |ev| {
                    if let Some(submit) = &on_submit {
                        submit(ev);
                    }
                }
            >
                <input type="hidden" name="next" value=back/>
                <PasswordInput
                    id="reauth_password"
                    name="password"
                    label="Your password"
                    autocomplete="current-password"
                />
                {code.then(|| view! {
                    <label for="reauth_code">"Authenticator or recovery code"</label>
                    <input
                        id="reauth_code"
                        name="code"
                        type="text"
                        autocomplete="one-time-code"
                        autocapitalize="none"
                        spellcheck="false"
                        required
                        maxlength="32"
                    />
                })}
                <Failure error/>
                <SubmitButton pending idle="Confirm" busy="Checking…"/>
            </form>
            <div class="passkey-only">
                <button type="button" class="secondary" data-passkey="reauth" data-back=back>
                    "Use a passkey instead"
                </button>
                <p class="form-error" role="alert" data-passkey-error hidden></p>
            </div>
        </section>
    }
}
