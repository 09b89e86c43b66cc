//! The header on every page, and the sign-out button it shares with the profile.

use leptos::{either::Either, prelude::*, server_fn::ServerFn};

use crate::{
    api::Logout,
    components::form::{submit_with, SubmitButton},
    signed_in::{use_auth, AuthState},
};

/// The header: the brand, and links or the signed-in user, on every page.
#[component]
pub fn Nav() -> impl IntoView {
    let auth = use_auth();
    // The auth state is read inside transitions: the server waits for it before it renders them,
    // and a refetch in the browser keeps them as they were until the answer lands.
    view! {
        <Transition fallback=|| ()>
        <header class="site-header">
            <a href="/" class="brand">"Auth app"</a>
            <nav aria-label="Main">
                {let auth = auth.clone(); move || match auth.user() {
                    Some(user) => Either::Left(view! {
                        <span class="who" data-testid="nav-user">
                            "Signed in as " <strong>{user.username}</strong>
                        </span>
                        <a href="/profile">"Profile"</a>
                        <SignOutButton auth=auth.clone()/>
                    }),
                    None => Either::Right(view! {
                        <a href="/login">"Sign in"</a>
                        <a href="/register" rel="external">"Sign up"</a>
                    }),
                }}
            </nav>
        </header>
        {move || auth.notice().map(|text| view! {
            <p class="notice warning" role="alert" data-testid="session-notice">{text}</p>
        })}
        </Transition>
    }
}

/// Rendered inside view closures, which on the server may run after the request's owner is
/// gone (see `AuthState::user`): the auth state comes as a prop, since a context lookup from there
/// can find nothing.
#[component]
pub(crate) fn SignOutButton(auth: AuthState) -> impl IntoView {
    let logout = auth.logout.clone();
    view! {
        <form
            action=Logout::url()
            method="post"
            class="inline"
            on:submit=submit_with(logout, |_| Logout { refresh_token: None })
        >
            <SubmitButton pending=auth.signing_out idle="Sign out" busy="Signing out…" class="link-button"/>
        </form>
    }
}
