//! `GET /dev/mail`: the development mail page, the way Rails' letter_opener or a local mail
//! catcher shows what would have been sent. In development without `SMTP_URL` the mails stay
//! in the outbox; this page lists the newest with their words and links, and
//! `GET /dev/mail/{id}` shows one mail's HTML as a mail client would. Routed only in
//! development without a mail server (see `identity::mail::Mail::dev_page`), and answered only
//! to a client on this machine: its links are every account's keys.

use std::sync::Arc;

use app::{api::escape, auth::Auth};
use axum::{
    extract::{ConnectInfo, Path, Request},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Extension,
};
use std::net::SocketAddr;

/// How many mails the page lists.
const SHOWN: usize = 50;

fn html_page(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Text with its `http(s)://…` links made into links (everything escaped).
fn linked(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for (j, word) in line.split(' ').enumerate() {
            if j > 0 {
                out.push(' ');
            }
            if word.starts_with("http://") || word.starts_with("https://") {
                let w = escape(word);
                out.push_str(&format!("<a href=\"{w}\">{w}</a>"));
            } else {
                out.push_str(&escape(word));
            }
        }
    }
    out
}

/// Whether the client (as the trusted proxies name it) is on this machine.
fn from_this_machine(auth: &Auth, req: &Request) -> bool {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| {
            auth.proxies.client(peer.ip(), req.headers()).is_loopback()
        })
}

fn elsewhere() -> Response {
    (StatusCode::NOT_FOUND, "Not found.").into_response()
}

pub(crate) async fn list(Extension(auth): Extension<Arc<Auth>>, req: Request) -> Response {
    if !from_this_machine(&auth, &req) {
        return elsewhere();
    }
    let mails = match auth.health.store().recent_outbox(SHOWN).await {
        Ok(mails) => mails,
        Err(e) => {
            tracing::warn!(error = %e, "the development mail page could not read the outbox");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "The outbox could not be read.",
            )
                .into_response();
        }
    };
    let mut body = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Outbox (development)</title>\
         <style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}\
         article{border:1px solid #999;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}\
         pre{white-space:pre-wrap;overflow-wrap:anywhere}</style></head><body>\
         <h1>Outbox (development only)</h1>\
         <p>Every mail the app queued, newest first. Without <code>SMTP_URL</code> nothing is \
         sent: follow the links from here. This page does not exist in production.</p>",
    );
    if mails.is_empty() {
        body.push_str("<p data-testid=\"no-mail\">No mail yet.</p>");
    }
    for m in mails {
        let state = match (m.sent_at, m.failed_at, &m.last_error) {
            (Some(_), _, _) => "sent".to_owned(),
            (_, Some(_), e) => format!("given up: {}", e.as_deref().unwrap_or_default()),
            (_, _, Some(e)) => format!("waiting (last try: {e})"),
            _ => "waiting".to_owned(),
        };
        let when = app::auth::mail::compose::when(m.created_at);
        body.push_str(&format!(
            "<article data-testid=\"mail\" data-kind=\"{kind}\" data-to=\"{to}\">\
             <h2>{subject}</h2><p>To <strong>{to}</strong> · {when} · {kind} · {state}</p>\
             <pre>{text}</pre><p><a href=\"/dev/mail/{id}\">As HTML</a></p></article>",
            kind = escape(&m.kind),
            to = escape(&m.recipient),
            subject = escape(&m.subject),
            when = escape(&when),
            state = escape(&state),
            text = linked(&m.text),
            id = m.id,
        ));
    }
    body.push_str("</body></html>");
    html_page(body)
}

pub(crate) async fn one(
    Extension(auth): Extension<Arc<Auth>>,
    Path(id): Path<i64>,
    req: Request,
) -> Response {
    if !from_this_machine(&auth, &req) {
        return elsewhere();
    }
    let mails = auth
        .health
        .store()
        .recent_outbox(usize::MAX)
        .await
        .unwrap_or_default();
    match mails.into_iter().find(|m| m.id == id) {
        Some(m) if !m.html.is_empty() => html_page(m.html),
        Some(_) => html_page(
            "<!doctype html><title>Sent</title><p>This mail was sent: its words \
                              are no longer kept.</p>"
                .into(),
        ),
        None => (StatusCode::NOT_FOUND, "No such mail.").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_made_links_and_everything_else_escaped() {
        assert_eq!(
            linked("Go to https://x.example/reset?token=a&b=<c>\nthen <b>"),
            "Go to <a href=\"https://x.example/reset?token=a&amp;b=&lt;c&gt;\">\
             https://x.example/reset?token=a&amp;b=&lt;c&gt;</a>\nthen &lt;b&gt;"
        );
    }
}
