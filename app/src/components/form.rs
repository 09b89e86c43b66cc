//! Form plumbing: posting to a server function with or without the WASM, the submit button,
//! the inputs and the inline error.

use leptos::{ev::SubmitEvent, prelude::*, server_fn::ServerFn, wasm_bindgen::JsCast, web_sys};

use crate::{
    error::ApiError,
    validate::{PASSWORD_MAX, USERNAME_MAX, USERNAME_MIN},
};

/// True once this component runs in the browser (never during server rendering).
pub fn hydrated() -> ReadSignal<bool> {
    let (ready, set_ready) = signal(false);
    Effect::new(move |_| set_ready.set(true));
    ready
}

/// The submit handler of a form that posts to a server function. Without the WASM the browser
/// posts the form itself to the same URL (and the server redirects back); once hydrated, the
/// fields are read by `args` and sent through `action`, whose pending state and value the page
/// shows. (Leptos's `ActionForm` does the same through a generic form decoder, which costs the
/// WASM several kilobytes per form.)
pub(crate) fn submit_with<S>(
    action: ArcServerAction<S>,
    args: fn(&web_sys::FormData) -> S,
) -> impl Fn(SubmitEvent)
where
    S: ServerFn + Clone + Send + Sync + 'static,
    S::Output: Send + Sync + 'static,
    S::Error: Send + Sync + 'static,
{
    move |ev: SubmitEvent| {
        let form = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok());
        let Some(data) = form.and_then(|f| web_sys::FormData::new_with_form(&f).ok()) else {
            return; // let the browser post it
        };
        ev.prevent_default();
        action.dispatch(args(&data));
    }
}

/// The error of an action's last answer, if it failed.
pub(crate) fn failure<T>(answer: Option<Option<Result<T, ApiError>>>) -> Option<ApiError> {
    answer.flatten().and_then(Result::err)
}

/// A form's submit button, disabled and relabelled while its action runs.
#[component]
pub(crate) fn SubmitButton(
    pending: ArcMemo<bool>,
    idle: &'static str,
    busy: &'static str,
    #[prop(optional)] class: Option<&'static str>,
) -> impl IntoView {
    let busy_now = pending.clone();
    view! {
        <button type="submit" class=class disabled=move || pending.try_get().unwrap_or(false)>
            {move || if busy_now.try_get().unwrap_or(false) { busy } else { idle }}
        </button>
    }
}

/// A text field of a submitted form ("" when absent).
pub(crate) fn field(form: &web_sys::FormData, name: &str) -> String {
    form.get(name).as_string().unwrap_or_default()
}

/// An inline error under a form, announced to screen readers: the error of the action's last
/// answer, if it failed.
#[component]
pub(crate) fn FormError<T>(answer: ArcMappedSignal<Option<Result<T, ApiError>>>) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
{
    let error: ErrorFn = Box::new(move || failure(answer.try_get()));
    view! { <Failure error/> }
}

/// Where a form's error comes from.
pub(crate) type ErrorFn = Box<dyn Fn() -> Option<ApiError> + Send + Sync>;

/// An inline error, announced to screen readers, when `error` has one. (Boxed: one copy of
/// this view in the WASM, whatever closure each page passes.)
#[component]
pub(crate) fn Failure(error: ErrorFn) -> impl IntoView {
    move || {
        error().map(|e| {
            view! { <p class="form-error" role="alert" data-error=format!("{:?}", e.error)>{e.description}</p> }
        })
    }
}

/// The username field. For a new account it also states the rules (the hint follows it); to
/// sign in (`login`) it takes an e-mail address as well.
#[component]
pub(crate) fn UsernameInput(
    #[prop(optional)] new_account: bool,
    #[prop(optional)] login: bool,
) -> impl IntoView {
    view! {
        <label for="username">{if login { "Username or e-mail address" } else { "Username" }}</label>
        <input
            id="username"
            name="username"
            type="text"
            autocomplete=if login { "username webauthn" } else { "username" }
            autocapitalize="none"
            spellcheck="false"
            required
            minlength=new_account.then(|| USERNAME_MIN.to_string())
            maxlength=if login { "254".to_string() } else { USERNAME_MAX.to_string() }
            pattern=new_account.then_some("[A-Za-z0-9_.\\-]+")
            aria-describedby=new_account.then_some("username-hint")
        />
    }
}

/// A password input with a show/hide button. The button needs the WASM, so it stays hidden
/// until the page is hydrated; the field itself works without it.
#[component]
pub(crate) fn PasswordInput(
    id: &'static str,
    label: &'static str,
    autocomplete: &'static str,
    #[prop(optional)] name: Option<&'static str>,
    #[prop(optional)] minlength: Option<usize>,
) -> impl IntoView {
    let visible = RwSignal::new(false);
    let ready = hydrated();
    view! {
        <label for=id>{label}</label>
        <div class="password-row">
            <input
                id=id
                name=name.unwrap_or(id)
                type=move || if visible.get() { "text" } else { "password" }
                autocomplete=autocomplete
                required
                minlength=minlength.map(|n| n.to_string())
                maxlength=PASSWORD_MAX.to_string()
            />
            <button
                type="button"
                class="toggle"
                hidden=move || !ready.get()
                aria-controls=id
                aria-pressed=move || visible.get().to_string()
                on:click=move |_| visible.update(|v| *v = !*v)
            >
                {move || if visible.get() { "Hide" } else { "Show" }}
            </button>
        </div>
    }
}

/// A new password and its repetition, with the length rule between them.
#[component]
pub(crate) fn NewPasswordInputs(
    id: &'static str,
    label: &'static str,
    confirm_id: &'static str,
    confirm_label: &'static str,
) -> impl IntoView {
    use crate::validate::PASSWORD_MIN;
    let hint = format!("{PASSWORD_MIN}–{PASSWORD_MAX} characters.");
    view! {
        <PasswordInput id=id label=label autocomplete="new-password" minlength=PASSWORD_MIN/>
        <p class="hint">{hint}</p>
        <PasswordInput
            id=confirm_id
            label=confirm_label
            autocomplete="new-password"
            minlength=PASSWORD_MIN
        />
    }
}
