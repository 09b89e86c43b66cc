//! `/security`: two-step sign-in. Turn on an authenticator app (a QR code and the key as text,
//! confirmed by its first code; ten recovery codes shown once), make new recovery codes, or turn
//! it off. Each change needs a recent sign-in: when the server answers `reauth_required`, the
//! page asks for the password (and a code) inline, then makes the change it was asked for.
//!
//! What the account has is read by the server before the page renders (see
//! [`page_facts`](crate::pages::mail::page_facts)); the changes are the page's actions (they
//! need the WASM: the QR code and the codes are in their answers).

use leptos::{prelude::*, server_fn::ServerFn};

use crate::{
    api::{
        BeginTotp, ConfirmTotp, Reauthenticate, RecoveryCodes, RemovePasskey, RemoveTotp,
        RenamePasskey, RenewRecoveryCodes, TotpEnrolment,
    },
    clock::LocalTime,
    components::{
        form::{failure, field, submit_with, ErrorFn, Failure, SubmitButton},
        reauth::ReauthForm,
    },
    error::ErrorCode,
    pages::mail::page_facts,
    routes,
    signed_in::{sign_in_when_signed_out, use_auth},
};

/// The change a `reauth_required` interrupted, made again once the person confirmed.
#[derive(Clone, PartialEq)]
enum Interrupted {
    Begin,
    Confirm(String),
    Remove,
    Renew,
}

/// Now, by the browser's clock (unix seconds): when two-step sign-in was just turned on.
fn browser_now() -> i64 {
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        (js_sys::Date::now() / 1000.0) as i64
    }
    #[cfg(not(all(feature = "hydrate", not(feature = "ssr"))))]
    {
        0
    }
}

#[component]
pub fn SecurityPage() -> impl IntoView {
    let auth = use_auth();
    sign_in_when_signed_out(&auth, routes::SECURITY);
    let facts = page_facts(routes::SECURITY.path);
    if facts.get(0) == "unknown" {
        return view! {
            <h1>"Two-step sign-in"</h1>
            <p class="form-error" role="alert">
                "Your settings could not be read just now. Please reload the page in a moment."
            </p>
        }
        .into_any();
    }
    let since = RwSignal::new(facts.get(0).parse::<i64>().ok());
    let left = RwSignal::new(facts.get(1).parse::<i64>().unwrap_or(0));

    let begin = ArcServerAction::<BeginTotp>::new();
    let confirm = ArcServerAction::<ConfirmTotp>::new();
    let remove = ArcServerAction::<RemoveTotp>::new();
    let renew = ArcServerAction::<RenewRecoveryCodes>::new();
    let reauth = ArcServerAction::<Reauthenticate>::new();
    let interrupted = RwSignal::new(None::<Interrupted>);
    // The first code last sent to turn the app on (made again after a confirmation).
    let last_code = RwSignal::new(String::new());
    // The codes last shown (from turning it on, or new ones).
    let codes = RwSignal::new(None::<RecoveryCodes>);

    // Each answer: the state it leaves, or the change to make again after confirming.
    let needs_reauth = |e: &Option<crate::error::ApiError>| {
        e.as_ref()
            .is_some_and(|e| e.error == ErrorCode::ReauthRequired)
    };
    Effect::new({
        let (begin, confirm, remove, renew) = (
            begin.clone(),
            confirm.clone(),
            remove.clone(),
            renew.clone(),
        );
        move |_| {
            if needs_reauth(&failure(begin.value().try_get())) {
                interrupted.set(Some(Interrupted::Begin));
            }
            if needs_reauth(&failure(confirm.value().try_get())) {
                interrupted.set(Some(Interrupted::Confirm(last_code.get_untracked())));
            }
            if needs_reauth(&failure(remove.value().try_get())) {
                interrupted.set(Some(Interrupted::Remove));
            }
            if needs_reauth(&failure(renew.value().try_get())) {
                interrupted.set(Some(Interrupted::Renew));
            }
        }
    });
    Effect::new({
        let confirm = confirm.clone();
        move |_| {
            if let Some(Ok(new)) = confirm.value().try_get().flatten() {
                since.set(Some(browser_now()));
                left.set(new.codes.len() as i64);
                codes.set(Some(new));
            }
        }
    });
    Effect::new({
        let renew = renew.clone();
        move |_| {
            if let Some(Ok(new)) = renew.value().try_get().flatten() {
                left.set(new.codes.len() as i64);
                codes.set(Some(new));
            }
        }
    });
    Effect::new({
        let remove = remove.clone();
        move |_| {
            if let Some(Ok(info)) = remove.value().try_get().flatten() {
                since.set(info.totp_since);
                left.set(info.recovery_codes_left);
                codes.set(None);
            }
        }
    });
    // Confirmed: the interrupted change is made now.
    Effect::new({
        let (reauth, begin, confirm, remove, renew) = (
            reauth.clone(),
            begin.clone(),
            confirm.clone(),
            remove.clone(),
            renew.clone(),
        );
        move |_| {
            if !matches!(reauth.value().try_get().flatten(), Some(Ok(_))) {
                return;
            }
            reauth.value().set(None);
            match interrupted.try_get_untracked().flatten() {
                Some(Interrupted::Begin) => {
                    begin.dispatch(BeginTotp {});
                }
                Some(Interrupted::Confirm(code)) => {
                    confirm.dispatch(ConfirmTotp { code });
                }
                Some(Interrupted::Remove) => {
                    remove.dispatch(RemoveTotp {});
                }
                Some(Interrupted::Renew) => {
                    renew.dispatch(RenewRecoveryCodes {});
                }
                None => {}
            }
            interrupted.set(None);
        }
    });

    let reauth_form = {
        let reauth = reauth.clone();
        move || {
            interrupted.get().map(|_| {
                view! {
                    <ReauthForm
                        back=routes::SECURITY.path
                        code=since.get_untracked().is_some()
                        action=reauth.clone()
                    />
                }
            })
        }
    };

    let state = {
        let (begin, confirm, remove, renew) = (
            begin.clone(),
            confirm.clone(),
            remove.clone(),
            renew.clone(),
        );
        move || match since.get() {
            Some(at) => {
                let remove_error: ErrorFn = {
                    let remove = remove.clone();
                    Box::new(move || {
                        failure(remove.value().try_get())
                            .filter(|e| e.error != ErrorCode::ReauthRequired)
                    })
                };
                let renew_error: ErrorFn = {
                    let renew = renew.clone();
                    Box::new(move || {
                        failure(renew.value().try_get())
                            .filter(|e| e.error != ErrorCode::ReauthRequired)
                    })
                };
                view! {
                    <p data-testid="totp-state" data-state="on">
                        "Two-step sign-in is on since " <LocalTime at/> ". "
                        "Signing in with your password asks for a code from your authenticator app."
                    </p>
                    <p data-testid="recovery-left">
                        {move || match left.get() {
                            1 => "1 recovery code left.".to_string(),
                            n => format!("{n} recovery codes left."),
                        }}
                    </p>
                    <form
                        action=RenewRecoveryCodes::url()
                        method="post"
                        class="inline-form"
                        on:submit=submit_with(renew.clone(), |_| RenewRecoveryCodes {})
                    >
                        <SubmitButton pending=renew.pending() idle="Make new recovery codes" busy="Making them…"/>
                    </form>
                    <Failure error=renew_error/>
                    <form
                        action=RemoveTotp::url()
                        method="post"
                        class="inline-form"
                        on:submit=submit_with(remove.clone(), |_| RemoveTotp {})
                    >
                        <SubmitButton pending=remove.pending() idle="Turn two-step sign-in off" busy="Turning it off…" class="danger"/>
                    </form>
                    <Failure error=remove_error/>
                }
                .into_any()
            }
            None => {
                let begin_error: ErrorFn = {
                    let begin = begin.clone();
                    Box::new(move || {
                        failure(begin.value().try_get())
                            .filter(|e| e.error != ErrorCode::ReauthRequired)
                    })
                };
                let enrolment = {
                    let (begin, confirm) = (begin.clone(), confirm.clone());
                    move || match begin.value().get() {
                        Some(Ok(enrolment)) => Some(view! {
                            <Enrol enrolment confirm=confirm.clone() last_code/>
                        }),
                        _ => None,
                    }
                };
                view! {
                    <p data-testid="totp-state" data-state="off">
                        "Two-step sign-in is off. Turn it on to ask for a code from an "
                        "authenticator app on your phone after your password, so that a stolen "
                        "password alone cannot sign in."
                    </p>
                    <form
                        action=BeginTotp::url()
                        method="post"
                        class="inline-form"
                        on:submit=submit_with(begin.clone(), |_| BeginTotp {})
                    >
                        <SubmitButton pending=begin.pending() idle="Set up an authenticator app" busy="Preparing…"/>
                    </form>
                    <Failure error=begin_error/>
                    {enrolment}
                }
                .into_any()
            }
        }
    };

    let shown_codes = move || {
        codes.get().map(|shown| {
            view! {
                <section aria-labelledby="codes-heading" class="recovery-codes">
                    <h2 id="codes-heading">"Your recovery codes"</h2>
                    <p>
                        "Each code signs you in once in place of a code from your app: keep them "
                        "somewhere safe, away from your phone. They are shown this once; older "
                        "codes no longer work."
                    </p>
                    <ol data-testid="recovery-codes">
                        {shown.codes.into_iter().map(|c| view! { <li><code>{c}</code></li> }).collect_view()}
                    </ol>
                </section>
            }
        })
    };

    let passkeys = (facts.get(3) == "on").then(|| {
        let listed: Vec<Vec<String>> = facts
            .0
            .get(4..)
            .unwrap_or_default()
            .chunks(5)
            .filter(|c| c.len() == 5)
            .map(<[String]>::to_vec)
            .collect();
        view! { <Passkeys listed/> }
    });
    // A change posted without JavaScript (or the passkey button) that needs a recent sign-in.
    let query = leptos_router::hooks::use_query_map();
    let reauth_in_address = query.read_untracked().get("reauth");
    let posted_reauth = [RemovePasskey::PATH, RenamePasskey::PATH]
        .iter()
        .any(|path| {
            auth.posted_to(path)
                .is_some_and(|e| e.error == ErrorCode::ReauthRequired)
        });
    let has_totp = !facts.get(0).is_empty();
    let page_reauth = match reauth_in_address.as_deref() {
        Some("ok") => Some(
            view! {
                <p class="notice" role="status" data-testid="reauth-ok">
                    "Thank you. Now make your change again."
                </p>
            }
            .into_any(),
        ),
        Some(_) => {
            Some(view! { <ReauthForm back=routes::SECURITY.path code=has_totp/> }.into_any())
        }
        None if posted_reauth => {
            Some(view! { <ReauthForm back=routes::SECURITY.path code=has_totp/> }.into_any())
        }
        None => None,
    };

    view! {
        <h1>"Two-step sign-in and passkeys"</h1>
        {page_reauth}
        {reauth_form}
        <section aria-labelledby="totp-heading">
            <h2 id="totp-heading">"Authenticator app"</h2>
            {state}
        </section>
        {shown_codes}
        {passkeys}
        <p><a href="/profile">"Back to your profile"</a></p>
    }
    .into_any()
}

/// The account's passkeys (id, name, added, last used, backed up, as the page facts carry
/// them), each renamable and removable with a plain form, and the button that adds one (in
/// public/passkeys.js: the browser's WebAuthn call).
#[component]
fn Passkeys(listed: Vec<Vec<String>>) -> impl IntoView {
    let auth = use_auth();
    let query = leptos_router::hooks::use_query_map();
    let notice = move || {
        let text = match query.read().get("passkey").as_deref() {
            Some("added") => "Your passkey was added. Every other session was signed out.",
            Some("renamed") => "The passkey was renamed.",
            Some("removed") => "The passkey was removed. Every other session was signed out.",
            _ => return None,
        };
        Some(view! { <p class="notice" role="status" data-testid="passkey-notice">{text}</p> })
    };
    let error: ErrorFn = Box::new(move || {
        auth.posted_to(RemovePasskey::PATH)
            .or_else(|| auth.posted_to(RenamePasskey::PATH))
            .filter(|e| e.error != ErrorCode::ReauthRequired)
    });
    let rows = listed
        .into_iter()
        .map(|fields| {
            let [id, name, added, used, backed_up] = <[String; 5]>::try_from(fields)
                .unwrap_or_else(|_| Default::default());
            let added = added.parse::<i64>().unwrap_or_default();
            let used = used.parse::<i64>().ok();
            let rename_id = format!("passkey-name-{id}");
            let label = format!("New name for {name}");
            let remove_label = format!("Remove {name}");
            view! {
                <li data-testid="passkey">
                    <p>
                        <strong data-testid="passkey-name">{name.clone()}</strong>
                        {(backed_up == "true").then(|| view! { " " <span class="badge">"Synced"</span> })}
                    </p>
                    <p class="hint">
                        "Added " <LocalTime at=added/> ". "
                        {match used {
                            Some(at) => view! { "Last used " <LocalTime at/> "." }.into_any(),
                            None => "Not used yet.".into_any(),
                        }}
                    </p>
                    <form action=RenamePasskey::url() method="post" class="inline-form">
                        <input type="hidden" name="id" value=id.clone()/>
                        <label for=rename_id.clone() class="visually-hidden">{label}</label>
                        <input id=rename_id name="name" type="text" required maxlength="64" value=name/>
                        <button type="submit" class="secondary">"Rename"</button>
                    </form>
                    <form action=RemovePasskey::url() method="post" class="inline-form">
                        <input type="hidden" name="id" value=id/>
                        <button type="submit" class="danger" aria-label=remove_label>"Remove"</button>
                    </form>
                </li>
            }
        })
        .collect_view();
    view! {
        <section aria-labelledby="passkeys-heading">
            <h2 id="passkeys-heading">"Passkeys"</h2>
            <p>
                "A passkey signs you in on its own, with your device's screen lock or fingerprint "
                "instead of a password, and cannot be phished."
            </p>
            {notice}
            <ul class="passkey-list" data-testid="passkeys">{rows}</ul>
            <Failure error/>
            <div class="passkey-only">
                <label for="passkey_name">"Name for a new passkey (optional)"</label>
                <input id="passkey_name" name="passkey_name" type="text" maxlength="64"/>
                <button type="button" data-passkey="add" data-testid="passkey-add">"Add a passkey"</button>
                <p class="form-error" role="alert" data-passkey-error hidden></p>
            </div>
        </section>
    }
}

/// A waiting enrolment: the QR code, the key as text, and the first code that turns it on.
#[component]
fn Enrol(
    enrolment: TotpEnrolment,
    confirm: ArcServerAction<ConfirmTotp>,
    last_code: RwSignal<String>,
) -> impl IntoView {
    let error: ErrorFn = {
        let confirm = confirm.clone();
        Box::new(move || {
            failure(confirm.value().try_get()).filter(|e| e.error != ErrorCode::ReauthRequired)
        })
    };
    let code_input = NodeRef::<leptos::html::Input>::new();
    view! {
        <section aria-labelledby="enrol-heading" class="enrol">
            <h2 id="enrol-heading">"Scan this with your authenticator app"</h2>
            <div class="qr" role="img" aria-label="QR code of the authenticator key" inner_html=enrolment.qr_svg></div>
            <p>
                "Or type this key into the app: "
                <code data-testid="totp-secret">{enrolment.secret}</code>
            </p>
            <form
                action=ConfirmTotp::url()
                method="post"
                class="auth-form"
                aria-labelledby="enrol-heading"
                on:submit={
                    let submit = submit_with(confirm.clone(), |form| ConfirmTotp { code: field(form, "code") });
                    move |ev: leptos::ev::SubmitEvent| {
                        if let Some(code) = code_input.get_untracked() {
                            last_code.set(code.value());
                        }
                        submit(ev)
                    }
                }
            >
                <label for="totp_code">"The 6-digit code the app shows now"</label>
                <input
                    node_ref=code_input
                    id="totp_code"
                    name="code"
                    type="text"
                    inputmode="numeric"
                    autocomplete="one-time-code"
                    required
                    maxlength="10"
                />
                <Failure error/>
                <SubmitButton pending=confirm.pending() idle="Turn on two-step sign-in" busy="Checking…"/>
            </form>
        </section>
    }
}
