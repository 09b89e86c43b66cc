use leptos::{either::EitherOf3, prelude::*};

use crate::{
    clock::LocalTime,
    components::nav::SignOutButton,
    routes,
    signed_in::{sign_in_when_signed_out, use_auth, SIGN_IN_AGAIN},
};

#[component]
pub fn ProfilePage() -> impl IntoView {
    let auth = use_auth();
    sign_in_when_signed_out(&auth, routes::PROFILE);

    // The answer the nav shows, not a second fetch. On the server the request already passed
    // the token check (the page is protected: see `routes`), so the profile is in the HTML.
    view! {
        <h1>"Your profile"</h1>
        <Transition fallback=Loading>
        {move || match auth.settled() {
                    None => EitherOf3::A(Loading()),
                    Some(Ok(Some(user))) => EitherOf3::B(view! {
                        <dl class="profile" data-testid="profile">
                            <dt>"Username"</dt>
                            <dd data-testid="profile-username">{user.username}</dd>
                            <dt>"Member since"</dt>
                            <dd><LocalTime at=user.created_at/></dd>
                            <dt>"Access token renews by"</dt>
                            <dd data-testid="profile-expires"><LocalTime at=user.expires_at/></dd>
                        </dl>
                        <p class="actions">
                            // Pages the server renders whole (see `pages::sessions` and
                            // `pages::mail::page_facts`): followed by the router, each would be
                            // loaded once more, and Back would land on the same page again.
                            <a href="/sessions" rel="external">"Your sessions"</a>
                            <a href="/account" rel="external">"Password and account"</a>
                            <a href="/security" rel="external">"Two-step sign-in and passkeys"</a>
                            <a href="/activity" rel="external">"Security activity"</a>
                        </p>
                        <SignOutButton auth=auth.clone()/>
                    }),
                    Some(other) => EitherOf3::C(view! {
                        <p class="form-error" role="alert">
                            {other.err().map_or(SIGN_IN_AGAIN.to_string(), |e| e.description)}
                        </p>
                        <p><a href=routes::PROFILE.sign_in>"Sign in"</a></p>
                    }),
        }}
        </Transition>
    }
}

#[component]
fn Loading() -> impl IntoView {
    view! { <p>"Loading…"</p> }
}
