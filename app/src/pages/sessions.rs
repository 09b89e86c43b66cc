//! `/sessions`: every session of the signed-in person, "this device" marked, a "Sign out" on
//! each of the others and "Sign out everywhere else". The buttons are plain form posts, with the
//! WASM or without: the server ends the session and sends the browser back here, where the
//! page is rendered anew (an error comes back in the address, in our words).
//!
//! The list itself is rendered by the server alone, as HTML (`api::server::render_sessions`,
//! every value escaped), prepared for the request before the page renders (the server's
//! `sessions_page` middleware) and placed with `inner_html`. Hydration keeps the server's
//! content of such an element, so the browser never needs the data: decoding and rendering the
//! list in the WASM (a resource, a server function, a list view) cost it about 15 KB
//! compressed, past its budget. A page that the browser's router would render by itself (a
//! client-side navigation to `/sessions`) has no list, so it loads the page from the server.

use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::{EndOtherSessions, EndSession},
    components::form::{ErrorFn, Failure},
    routes,
    signed_in::{sign_in_when_signed_out, use_auth},
};

#[component]
pub fn SessionsPage() -> impl IntoView {
    let auth = use_auth();
    sign_in_when_signed_out(&auth, routes::SESSIONS);
    // On the server: the list prepared for this request. In the browser: nothing, and while
    // hydrating that leaves the server's list in place.
    #[cfg(feature = "ssr")]
    let list = use_context::<http::request::Parts>()
        .and_then(|parts| {
            parts
                .extensions
                .get::<crate::api::SessionsFragment>()
                .cloned()
        })
        .map(|fragment| fragment.0)
        .unwrap_or_else(|| {
            r#"<p class="form-error" role="alert">Your sessions could not be listed.</p>"#.into()
        });
    #[cfg(not(feature = "ssr"))]
    let list = String::new();
    // Rendered by the browser's router rather than hydrated: there is no list, so load the page
    // from the server. (Not `reload()`: the router moves the address bar only after this runs,
    // so that would reload the page we came from.)
    #[cfg(not(feature = "ssr"))]
    if !Owner::current_shared_context().is_some_and(|context| context.during_hydration()) {
        let _ = window().location().assign("/sessions");
    }
    let revoke_error: ErrorFn = {
        let auth = auth.clone();
        Box::new(move || auth.posted_to(EndSession::PATH))
    };
    let others_error: ErrorFn = Box::new(move || auth.posted_to(EndOtherSessions::PATH));
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
        <div inner_html=list></div>
        <form action=EndOtherSessions::url() method="post">
            <button type="submit" class="danger">"Sign out everywhere else"</button>
        </form>
        <Failure error=others_error/>
        <p><a href="/profile">"Back to your profile"</a></p>
    }
}
