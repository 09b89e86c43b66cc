//! `/sessions`: every session of the signed-in person, "this device" marked, a "Sign out" on
//! each of the others and "Sign out everywhere else". Works before the WASM loads (plain form
//! posts, the server redirects back here) and after (the list is read again after each change).

use leptos::{either::Either, prelude::*, server_fn::ServerFn};

use crate::{
    api::{list_sessions, RevokeOtherSessions, RevokeSession, SessionInfo},
    auth_state::{retrying, retrying_action, sign_in_when_signed_out, use_auth},
    components::form::{failure, field, submit_with, Failure, SubmitButton},
    time_fmt::utc,
};

#[component]
pub fn SessionsPage() -> impl IntoView {
    let auth = use_auth();
    sign_in_when_signed_out(&auth, "%2Fsessions");
    let revoke = retrying_action::<RevokeSession>();
    let revoke_others = retrying_action::<RevokeOtherSessions>();
    let sessions = {
        let (one, others) = (revoke.version(), revoke_others.version());
        ArcResource::new_blocking(
            move || one.get() + others.get(),
            |_| retrying(list_sessions),
        )
    };
    let (revoking, revoking_others) = (revoke.pending(), revoke_others.pending());
    let revoke_error = {
        let (value, auth) = (revoke.value(), auth.clone());
        move || failure(value.try_get()).or_else(|| auth.posted_to(RevokeSession::PATH))
    };
    let others_error = {
        let (value, auth) = (revoke_others.value(), auth.clone());
        move || failure(value.try_get()).or_else(|| auth.posted_to(RevokeOtherSessions::PATH))
    };
    let ended = {
        let value = revoke_others.value();
        move || {
            value.try_get().flatten().and_then(Result::ok).map(|done| {
                let text = match done.ended {
                    0 => "There was no other session to sign out.".to_string(),
                    1 => "One other session was signed out.".to_string(),
                    n => format!("{n} other sessions were signed out."),
                };
                view! { <p class="notice" role="status">{text}</p> }
            })
        }
    };

    view! {
        <h1>"Your sessions"</h1>
        <p>
            "Every browser and program signed in to your account. Sign out any you do not "
            "recognise; it is refused from its next request on."
        </p>
        {ended}
        <Failure error=revoke_error/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || sessions.try_get().flatten().map(|answer| match answer {
                Ok(list) => Either::Left(view! {
                    <ul class="sessions" data-testid="sessions">
                        {list
                            .into_iter()
                            .map(|s| view! {
                                <SessionItem session=s revoke=revoke.clone() pending=revoking.clone()/>
                            })
                            .collect_view()}
                    </ul>
                }),
                Err(e) => Either::Right(view! { <p class="form-error" role="alert">{e.description}</p> }),
            })}
        </Transition>
        <form
            action=RevokeOtherSessions::url()
            method="post"
            on:submit=submit_with(revoke_others.clone(), |_| RevokeOtherSessions {})
        >
            <SubmitButton
                pending=revoking_others
                idle="Sign out everywhere else"
                busy="Signing out…"
                class="danger"
            />
        </form>
        <Failure error=others_error/>
        <p><a href="/profile">"Back to your profile"</a></p>
    }
}

#[component]
fn SessionItem(
    session: SessionInfo,
    revoke: ArcAction<RevokeSession, Result<crate::api::SessionsEnded, crate::error::ApiError>>,
    pending: ArcMemo<bool>,
) -> impl IntoView {
    let address = if session.address.is_empty() {
        "unknown".to_string()
    } else {
        session.address.clone()
    };
    let label = format!("Sign out {} at {address}", session.device);
    view! {
        <li class="session" data-testid="session" data-current=session.current.to_string()>
            <p class="device">
                <strong>{session.device.clone()}</strong>
                {session.current.then(|| view! { <span class="badge" data-testid="this-device">"This device"</span> })}
            </p>
            <dl>
                <dt>"Address"</dt>
                <dd>{address}</dd>
                <dt>"Signed in"</dt>
                <dd>{utc(session.created_at)}</dd>
                <dt>"Last active"</dt>
                <dd>{utc(session.last_used_at)}</dd>
            </dl>
            {(!session.current).then(|| view! {
                <form
                    action=RevokeSession::url()
                    method="post"
                    on:submit=submit_with(revoke, |form| RevokeSession { id: field(form, "id") })
                >
                    <input type="hidden" name="id" value=session.id/>
                    <button type="submit" aria-label=label disabled=move || pending.try_get().unwrap_or(false)>
                        "Sign out"
                    </button>
                </form>
            })}
        </li>
    }
}
