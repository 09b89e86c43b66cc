//! `/activity`: the account's security activity, newest first, 25 a page, in the reader's
//! local time, the device in words; "Was this you?" leads to the sessions page. Linked from the
//! profile and from every notice mail.
//!
//! Like the sessions page (see [`crate::pages::sessions`]), the list is prepared and worded on
//! the server before the page renders (the server's `page_data` layer,
//! [`crate::api::activity::server::activity_list`]) and reaches the browser inside the page as
//! plain text that hydration reads back: the WASM holds no server function, no JSON decoding
//! and no time formatting for it. Older pages are plain links (`?before=`), loaded from the
//! server.

use leptos::{either::Either, prelude::*, server::SharedValue};

use crate::{
    api::{ActivityList, ActivityRow},
    routes,
    signed_in::{sign_in_when_signed_out, use_auth},
};

#[component]
pub fn ActivityPage() -> impl IntoView {
    let auth = use_auth();
    sign_in_when_signed_out(&auth, routes::ACTIVITY);
    let list = SharedValue::new_str(prepared).into_inner();
    // Rendered by the browser's router rather than hydrated: there is no list, so load the page
    // from the server.
    #[cfg(not(feature = "ssr"))]
    if !Owner::current_shared_context().is_some_and(|context| context.during_hydration()) {
        let _ = window().location().assign(routes::ACTIVITY.path);
    }
    let older = list.older.clone();
    view! {
        <h1>"Security activity"</h1>
        <p>
            "What happened to your account lately: sign-ins, failed sign-ins, sign-outs and "
            "changes, newest first, with the device and the address they came from."
        </p>
        <p class="notice">
            "Was something here not you? "
            <a href="/sessions" rel="external">"Review your sessions"</a>
            " and sign out any you do not recognise, then "
            <a href="/account" rel="external">"change your password"</a>"."
        </p>
        {activity_list(list)}
        {older.map(|before| view! {
            <p>
                <a href=format!("{}?before={before}", routes::ACTIVITY.path) rel="external"
                    data-testid="activity-older">"Older events"</a>
            </p>
        })}
        <p><a href="/profile">"Back to your profile"</a></p>
    }
}

/// On the server, the list prepared for this request.
#[cfg(feature = "ssr")]
fn prepared() -> ActivityList {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<ActivityList>().cloned())
        .unwrap_or_else(|| ActivityList {
            rows: Err("Your account's activity could not be listed.".into()),
            older: None,
        })
}

/// In the browser, the list comes from the page being hydrated; a page rendered here is replaced
/// by the server's at once (see [`ActivityPage`]).
#[cfg(not(feature = "ssr"))]
fn prepared() -> ActivityList {
    ActivityList {
        rows: Ok(Vec::new()),
        older: None,
    }
}

/// The list, or why it could not be read.
fn activity_list(list: ActivityList) -> impl IntoView {
    match list.rows {
        Ok(rows) if rows.is_empty() => Either::Left(Either::Left(
            view! { <p data-testid="activity-empty">"Nothing yet."</p> },
        )),
        Ok(rows) => Either::Left(Either::Right(view! {
            <ol class="activity" data-testid="activity">
                {rows.into_iter().map(activity_row).collect_view()}
            </ol>
        })),
        Err(error) => Either::Right(view! { <p class="form-error" role="alert">{error}</p> }),
    }
}

fn activity_row(row: ActivityRow) -> impl IntoView {
    view! {
        <li class="event" data-testid="event">
            <p class="what"><strong>{row.what}</strong></p>
            <dl>
                <dt>"When"</dt><dd>{row.when}</dd>
                <dt>"Device"</dt><dd>{row.device}</dd>
                <dt>"Address"</dt><dd>{row.address}</dd>
            </dl>
        </li>
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    fn html(list: ActivityList) -> String {
        Owner::new().with(|| activity_list(list).to_html())
    }

    #[test]
    fn the_list_reads_back_as_the_server_wrote_it_and_renders_each_row() {
        let list = ActivityList {
            rows: Ok(vec![ActivityRow {
                when: "5/12/2026, 9:41 AM".into(),
                what: "Signed in (passkey)".into(),
                device: "Firefox on Linux".into(),
                address: "192.0.2.7".into(),
            }]),
            older: Some("17".into()),
        };
        let read: ActivityList = list.to_string().parse().unwrap();
        assert_eq!(read, list);
        let html = html(read);
        assert!(html.contains("Signed in (passkey)"));
        assert!(html.contains("Firefox on Linux"));
        assert!(html.contains("192.0.2.7"));
        let none = ActivityList {
            rows: Ok(Vec::new()),
            older: None,
        };
        assert_eq!(none.to_string().parse::<ActivityList>().unwrap(), none);
        assert!(html_of_error().contains("could not"));
    }

    fn html_of_error() -> String {
        html(ActivityList {
            rows: Err("It could not be listed.".into()),
            older: None,
        })
    }
}
