use leptos::{either::Either, prelude::*};
use leptos_router::hooks::use_query_map;

use crate::signed_in::use_auth;

#[component]
pub fn HomePage() -> impl IntoView {
    let auth = use_auth();
    let explain = RwSignal::new(false);
    // Arrived from deleting the account (a plain form post, so a fresh page: signed out).
    let deleted = use_query_map().with_untracked(|q| q.get("deleted").is_some());
    view! {
        <h1>"Sign up, sign in, sign out — done right"</h1>
        {deleted.then(|| view! {
            <p class="notice" role="status" data-testid="account-deleted">
                "Your account was deleted, and every session of it signed out."
            </p>
        })}
        <Transition fallback=|| ()>
        {move || match auth.user() {
            Some(user) => Either::Left(view! {
                <p class="lead" data-testid="home-status">
                    "You are signed in as " <strong>{user.username}</strong> ". "
                    <a href="/profile">"Go to your profile"</a>
                </p>
            }),
            None => Either::Right(view! {
                <p class="lead" data-testid="home-status">"You are not signed in."</p>
                <p class="actions">
                    <a class="button" href="/login">"Sign in"</a>
                    <a class="button secondary" href="/register" rel="external">"Create an account"</a>
                </p>
            }),
        }}
        </Transition>
        <button
            type="button"
            class="link-button"
            aria-expanded=move || explain.get().to_string()
            aria-controls="how-it-works"
            on:click=move |_| explain.update(|v| *v = !*v)
        >
            {move || if explain.get() { "Hide how it works" } else { "How does signing in work?" }}
        </button>
        <section id="how-it-works" hidden=move || !explain.get()>
            <p>
                "Signing in issues a signed token kept in a cookie your scripts cannot read. "
                "Every protected request checks its signature, its expiry and the list of "
                "signed-out tokens. Signing out puts the token on that list for good."
            </p>
        </section>
    }
}
