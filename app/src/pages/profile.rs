use leptos::{either::EitherOf3, prelude::*};
use leptos_router::hooks::use_navigate;

use crate::{auth_state::use_auth, components::nav::SignOutButton, time_fmt::utc};

const SIGN_IN_AGAIN: &str = "Please sign in to see your profile.";

#[component]
pub fn ProfilePage() -> impl IntoView {
    let auth = use_auth();

    // In the browser: once the answer is settled, no session or a rejected token (expired,
    // or signed out elsewhere) sends the visitor to sign in, then back here.
    let navigate = use_navigate();
    Effect::new({
        let auth = auth.clone();
        move |_| {
            let Some(answer) = auth.settled() else {
                return;
            };
            match answer {
                Ok(Some(_)) => return,
                Ok(None) => auth.ended(SIGN_IN_AGAIN),
                Err(e) if e.error.is_token_rejection() => auth.rejected(&e),
                // Any other failure is shown on the page; signing in again would not help.
                Err(_) => return,
            }
            navigate("/login?next=%2Fprofile", Default::default());
        }
    });

    // The answer the nav shows, not a second fetch. On the server the request already passed
    // the token check (see PROTECTED_PATHS), so the profile is in the HTML.
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
                            <dd>{utc(user.created_at)}</dd>
                            <dt>"Session expires"</dt>
                            <dd data-testid="profile-expires">{utc(user.expires_at)}</dd>
                        </dl>
                        <SignOutButton auth=auth.clone()/>
                    }),
                    Some(other) => EitherOf3::C(view! {
                        <p class="form-error" role="alert">
                            {other.err().map_or(SIGN_IN_AGAIN.to_string(), |e| e.description)}
                        </p>
                        <p><a href="/login?next=%2Fprofile">"Sign in"</a></p>
                    }),
        }}
        </Transition>
    }
}

#[component]
fn Loading() -> impl IntoView {
    view! { <p>"Loading…"</p> }
}
