//! `/sessions`: every session of the signed-in person, "this device" marked, a "Sign out" on
//! each of the others and "Sign out everywhere else". The buttons are plain form posts, with the
//! WASM or without: the server ends the session and sends the browser back here, where the
//! page is rendered anew (an error comes back in the address, in our words).
//!
//! The list is an ordinary view of rows the server prepares before the page renders (the
//! server's `sessions_page` layer, [`crate::api::sessions::server::sessions_list`]): every value
//! is already text, times formatted, button labels worded. They reach the browser inside the page
//! itself, as a [`SharedValue`] of plain text that hydration reads back (see
//! [`SessionsList`]), so the WASM holds no server function, no JSON decoding and no time
//! formatting for this page, and makes no request to show it. The page cannot wait for data
//! itself: a resource on it would need those in the browser.
//!
//! A page that the browser's router would render by itself (a client-side navigation to
//! `/sessions`) has no rows, so it loads the page from the server.

use leptos::{either::Either, prelude::*, server::SharedValue, server_fn::ServerFn};
use leptos_router::hooks::use_query_map;

use crate::{
    api::{EndOtherSessions, EndSession, SessionRow, SessionsList},
    components::form::{ErrorFn, Failure},
    routes,
    signed_in::{sign_in_when_signed_out, use_auth},
};

#[component]
pub fn SessionsPage() -> impl IntoView {
    let auth = use_auth();
    sign_in_when_signed_out(&auth, routes::SESSIONS);
    // Written into the page on the server, read back from it while hydrating.
    let list = SharedValue::new_str(prepared).into_inner();
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
        {sessions_list(list)}
        <form action=EndOtherSessions::url() method="post">
            <button type="submit" class="danger">"Sign out everywhere else"</button>
        </form>
        <Failure error=others_error/>
        <p><a href="/profile">"Back to your profile"</a></p>
    }
}

/// On the server, the list prepared for this request.
#[cfg(feature = "ssr")]
fn prepared() -> SessionsList {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<SessionsList>().cloned())
        .unwrap_or_else(|| SessionsList(Err("Your sessions could not be listed.".into())))
}

/// In the browser, the list comes from the page being hydrated; a page rendered here is replaced
/// by the server's at once (see [`SessionsPage`]).
#[cfg(not(feature = "ssr"))]
fn prepared() -> SessionsList {
    SessionsList(Ok(Vec::new()))
}

/// The list, or why it could not be read.
fn sessions_list(list: SessionsList) -> impl IntoView {
    match list.0 {
        Ok(rows) => Either::Left(view! {
            <ul class="sessions" data-testid="sessions">
                {rows.into_iter().map(session_row).collect_view()}
            </ul>
        }),
        Err(error) => Either::Right(view! { <p class="form-error" role="alert">{error}</p> }),
    }
}

fn session_row(row: SessionRow) -> impl IntoView {
    let current = row.sign_out.is_none();
    view! {
        <li class="session" data-testid="session" data-current=if current { "true" } else { "false" }>
            <p class="device">
                <strong>{row.device}</strong>
                {current.then(|| view! {
                    " "<span class="badge" data-testid="this-device">"This device"</span>
                })}
            </p>
            <dl>
                <dt>"Address"</dt><dd>{row.address}</dd>
                <dt>"Signed in"</dt><dd>{row.signed_in}</dd>
                <dt>"Last active"</dt><dd>{row.last_active}</dd>
                <dt>"Signed in with"</dt><dd>{row.method}</dd>
            </dl>
            {row.sign_out.map(|(id, label)| view! {
                <form action=EndSession::PATH method="post">
                    <input type="hidden" name="id" value=id/>
                    <button type="submit" aria-label=label>"Sign out"</button>
                </form>
            })}
        </li>
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;
    use crate::api::{server::session_row, SessionInfo};
    use crate::clock::Clock;

    fn row_of(info: &SessionInfo) -> SessionRow {
        session_row(info, &Clock::default())
    }

    fn info(current: bool, text: &str) -> SessionInfo {
        SessionInfo {
            id: text.into(),
            device: text.into(),
            user_agent: text.into(),
            address: text.into(),
            created_at: 1_700_000_000,
            last_used_at: 1_700_000_060,
            auth_method: "password_totp".into(),
            authenticated_at: 1_700_000_000,
            current,
        }
    }

    fn html(list: SessionsList) -> String {
        Owner::new().with(|| sessions_list(list).to_html())
    }

    #[test]
    fn rows_are_worded_on_the_server() {
        let this = row_of(&info(true, "Chrome on Linux"));
        assert_eq!(this.sign_out, None);
        assert_eq!(this.signed_in, "2023-11-14 22:13 UTC");
        assert_eq!(this.last_active, "2023-11-14 22:14 UTC");
        assert_eq!(this.method, "Password and authenticator code");
        let mut other = info(false, "Firefox");
        other.address = String::new();
        let other = row_of(&other);
        assert_eq!(other.address, "unknown");
        assert_eq!(
            other.sign_out,
            Some(("Firefox".into(), "Sign out Firefox at unknown".into()))
        );
    }

    #[test]
    fn this_device_is_marked_and_every_other_has_its_sign_out() {
        let html = html(SessionsList(Ok(vec![
            row_of(&info(true, "Chrome on Linux")),
            row_of(&info(false, "Firefox")),
        ])));
        assert!(html.contains(r#"data-testid="sessions""#), "{html}");
        assert_eq!(html.matches(r#"data-testid="session""#).count(), 2);
        assert_eq!(html.matches(r#"data-current="true""#).count(), 1);
        assert_eq!(html.matches(r#"data-testid="this-device""#).count(), 1);
        assert_eq!(html.matches("<form").count(), 1, "{html}");
        assert!(
            html.contains(r#"<form action="/api/sessions/revoke" method="post">"#),
            "{html}"
        );
        assert!(html.contains(r#"name="id" value="Firefox""#), "{html}");
        assert!(
            html.contains(r#"aria-label="Sign out Firefox at Firefox""#),
            "{html}"
        );
        assert!(html.contains("2023-11-14 22:13 UTC"), "{html}");
    }

    /// Every value comes from a request (an address, a device named from anyone's user agent).
    #[test]
    fn every_value_is_escaped() {
        let nasty = r#"<b onclick="x()">'&'</b>"#;
        let html = html(SessionsList(Ok(vec![row_of(&info(false, nasty))])));
        // No element of theirs; in text a quote is harmless, in an attribute value it is
        // escaped too.
        assert!(!html.contains("<b "), "{html}");
        assert!(html.contains("&lt;b onclick="), "{html}");
        assert!(
            html.contains(r#"value="&lt;b onclick=&quot;x()&quot;&gt;"#),
            "{html}"
        );
        let html = html_error(nasty);
        assert!(!html.contains("<b "), "{html}");
        assert!(html.contains("&lt;b onclick="), "{html}");
    }

    fn html_error(text: &str) -> String {
        html(SessionsList(Err(text.into())))
    }

    /// What the server writes into the page is what hydration reads back, whatever the values.
    #[test]
    fn the_list_travels_in_the_page_as_it_was() {
        let mut odd = info(false, "tab\there, line\nthere\r\n\u{1e}");
        odd.address = String::new();
        let rows = vec![
            row_of(&info(true, "Chrome on Linux")),
            row_of(&odd),
            row_of(&info(false, r#"<b onclick="x()">'&'</b> ünïcødé"#)),
        ];
        let text = SessionsList(Ok(rows.clone())).to_string();
        let back: SessionsList = text.parse().unwrap();
        let rows = rows
            .into_iter()
            .map(|mut row| {
                let plain = |t: String| t.replace(|c: char| c.is_control(), " ");
                row.device = plain(row.device);
                row.sign_out = row.sign_out.map(|(id, label)| (plain(id), plain(label)));
                row
            })
            .collect();
        assert_eq!(back, SessionsList(Ok(rows)), "{text:?}");
        assert_eq!(
            back.0.as_ref().unwrap()[1].device,
            "tab here, line there   "
        );

        for list in [
            SessionsList(Ok(Vec::new())),
            SessionsList(Err("Your sessions could not be listed.".into())),
        ] {
            assert_eq!(list.to_string().parse::<SessionsList>(), Ok(list));
        }
        let broken = SessionsList(Err("one\ntwo".into())).to_string();
        assert_eq!(broken.parse(), Ok(SessionsList(Err("one two".into()))));
        for garbage in [
            "",
            "rows\n",
            "rows\na\tb",
            "rows\na\tb\tc\td",
            "rows\na\tb\tc\td\te\tf",
            "rows\na\tb\tc\td\te\tf\tg\th",
            "error",
            "html",
        ] {
            assert_eq!(garbage.parse::<SessionsList>(), Err(()), "{garbage:?}");
        }
    }

    #[test]
    fn a_list_that_could_not_be_read_says_so() {
        let html = html_error("Your sessions could not be listed.");
        assert!(html.starts_with("<p "), "{html}");
        assert!(html.contains(r#"class="form-error""#), "{html}");
        assert!(html.contains(r#"role="alert""#), "{html}");
        assert!(
            html.contains(">Your sessions could not be listed.</p>"),
            "{html}"
        );
        assert!(!html.contains("data-testid"), "{html}");
    }
}
