//! `/sessions`: every session of the signed-in person, "this device" marked, a "Sign out" on
//! each of the others and "Sign out everywhere else". The buttons are plain form posts, with the
//! WASM or without: the server ends the session and sends the browser back here, where the
//! page is rendered anew (an error comes back in the address, in our words). Keeping these
//! forms out of the WASM keeps it small.

use leptos::{either::Either, prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::{list_sessions, RevokeOtherSessions, RevokeSession, SessionInfo},
    auth_state::{retrying, sign_in_when_signed_out, use_auth},
    components::form::Failure,
    time_fmt::utc,
};

#[component]
pub fn SessionsPage() -> impl IntoView {
    let auth = use_auth();
    sign_in_when_signed_out(&auth, "%2Fsessions");
    let sessions = ArcResource::new_blocking(|| (), |_| retrying(list_sessions));
    let revoke_error = {
        let auth = auth.clone();
        move || auth.posted_to(RevokeSession::PATH)
    };
    let others_error = move || auth.posted_to(RevokeOtherSessions::PATH);
    let ended = move || {
        let ended = use_query_map().read().get("ended")?.parse::<usize>().ok()?;
        let text = match ended {
            0 => "There was no other session to sign out.".to_string(),
            1 => "One other session was signed out.".to_string(),
            n => format!("{n} other sessions were signed out."),
        };
        Some(view! { <p class="notice" role="status" data-testid="sessions-ended">{text}</p> })
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
                            .map(|s| view! { <SessionItem session=s/> })
                            .collect_view()}
                    </ul>
                }),
                Err(e) => Either::Right(view! { <p class="form-error" role="alert">{e.description}</p> }),
            })}
        </Transition>
        <form action=RevokeOtherSessions::url() method="post">
            <button type="submit" class="danger">"Sign out everywhere else"</button>
        </form>
        <Failure error=others_error/>
        <p><a href="/profile">"Back to your profile"</a></p>
    }
}

#[component]
fn SessionItem(session: SessionInfo) -> impl IntoView {
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
                <form action=RevokeSession::url() method="post">
                    <input type="hidden" name="id" value=session.id/>
                    <button type="submit" aria-label=label>"Sign out"</button>
                </form>
            })}
        </li>
    }
}
