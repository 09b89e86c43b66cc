//! The words of every mail the service sends, in plain text and in HTML.
//!
//! Each notice is first written as a [`Letter`]: a subject, a heading and a few blocks (paragraphs,
//! the facts of an event, links). The text and the HTML are both rendered from it, so the two
//! always say the same thing. Every value that comes from outside the code (a username, a device
//! described from a User-Agent, an address someone typed, the site's name) is first made one
//! line of printable text ([`clean`]), then HTML-escaped wherever the HTML holds it, in text and in
//! attributes alike. A mail carries no token beyond the one link it exists for, and loads nothing:
//! no remote image, no tracking pixel, no stylesheet, only inline styles.

use super::{MailKind, OutgoingMail};

/// What the mails call the service, and where their links point.
#[derive(Debug, Clone)]
pub struct Site {
    /// The service's name, as a person sees it in a subject line.
    pub name: String,
    /// `https://example.com`: the public address of the site, without a trailing slash.
    pub public_url: String,
}

/// Where and when something happened, as a notice tells it (already in words).
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// e.g. `5 December 2026, 00:52 UTC` (see [`when`]).
    pub when: &'a str,
    /// The device in words, e.g. `Firefox on Linux`.
    pub device: &'a str,
    /// The client's network address, e.g. `203.0.113.7`, or `unknown`.
    pub address: &'a str,
}

/// A mail to compose.
#[derive(Debug, Clone, Copy)]
pub enum Notice<'a> {
    /// A link that confirms an address: after sign-up (`change: false`) or to make it the
    /// account's new address (`change: true`).
    VerifyAddress {
        username: &'a str,
        link: &'a str,
        valid_minutes: i64,
        change: bool,
    },
    /// Someone signed up with this address, which is already an account's: no link, no name
    /// of the account beyond what its owner knows; how to sign in or reset instead.
    AddressInUse,
    /// A link that sets a new password.
    ResetPassword {
        username: &'a str,
        link: &'a str,
        valid_minutes: i64,
    },
    /// The password was changed (signed in) or reset (through a mailed link).
    PasswordChanged {
        username: &'a str,
        by_reset: bool,
        event: Event<'a>,
    },
    /// A sign-in from a device not seen before on this account.
    NewSignIn { username: &'a str, event: Event<'a> },
    /// To the old address: the account's address is being changed to `new_address`.
    AddressChanging {
        username: &'a str,
        new_address: &'a str,
        event: Event<'a>,
    },
    /// The account was deleted.
    AccountDeleted { username: &'a str, event: Event<'a> },
    /// A second factor was added or removed.
    FactorChanged {
        username: &'a str,
        change: FactorChange,
        event: Event<'a>,
    },
}

/// What happened to an account's second factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorChange {
    /// Its owner turned on an authenticator app (and got recovery codes).
    TotpAdded,
    /// Its owner turned the authenticator app off.
    TotpRemoved,
    /// The operator removed every second factor (for an owner who lost them all).
    RemovedByOperator,
    /// Its owner made a new set of recovery codes (the old ones stopped working).
    CodesRenewed,
    /// Its owner added a passkey.
    PasskeyAdded,
    /// Its owner removed a passkey.
    PasskeyRemoved,
}

impl Notice<'_> {
    pub fn kind(&self) -> MailKind {
        match self {
            Self::VerifyAddress { .. } => MailKind::VerifyAddress,
            Self::AddressInUse => MailKind::AddressInUse,
            Self::ResetPassword { .. } => MailKind::ResetPassword,
            Self::PasswordChanged { .. } => MailKind::PasswordChanged,
            Self::NewSignIn { .. } => MailKind::NewSignIn,
            Self::AddressChanging { .. } => MailKind::AddressChanging,
            Self::AccountDeleted { .. } => MailKind::AccountDeleted,
            Self::FactorChanged { .. } => MailKind::FactorChanged,
        }
    }
}

/// The mail telling `notice` to `to` (an address already normalised), about account `user_id`.
pub fn compose(site: &Site, notice: &Notice<'_>, user_id: Option<i64>, to: &str) -> OutgoingMail {
    let letter = letter(site, notice);
    OutgoingMail {
        kind: notice.kind(),
        link: None,
        user_id,
        to: to.to_owned(),
        // Already one line (every value in it went through `clean`); stripped again because a
        // line break in a subject would end the header and start the attacker's own.
        subject: letter.subject.replace(['\r', '\n'], " "),
        text: letter.text(site),
        html: letter.html(site),
    }
}

/// `unix` (seconds) as a notice says it: `5 December 2026, 00:52 UTC`.
pub fn when(unix: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[day padding:none] [month repr:long] [year], [hour]:[minute] UTC"
    );
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|at| at.format(FORMAT).ok())
        // Out of the calendar's range (years past 9999): still words, never a panic.
        .unwrap_or_else(|| format!("{unix} seconds after 1 January 1970, 00:00 UTC"))
}

/// A mail's words before they are rendered: what both the text and the HTML say.
struct Letter {
    subject: String,
    /// The HTML's `<h1>` and the text's first line.
    heading: &'static str,
    /// Whom the mail greets: the account's username, or nobody by name.
    greeting: Option<String>,
    /// What happened, in one or two sentences: the first paragraph, and the preview a mail
    /// client shows beside the subject.
    lead: String,
    blocks: Vec<Block>,
}

enum Block {
    Para(String),
    /// When, from which device and which network address.
    Facts {
        when: String,
        device: String,
        address: String,
    },
    /// The one link the mail exists for: a button, and the link written out in full for mail
    /// clients that strip buttons (and for the text).
    Action {
        label: &'static str,
        href: String,
    },
    /// A sentence ending in a colon, then a link to one of the site's pages on a line of its
    /// own (so no punctuation sticks to it when a client makes it clickable).
    Link {
        lead: String,
        href: String,
    },
}

fn letter(site: &Site, notice: &Notice<'_>) -> Letter {
    let mut letter = letter_of(site, notice);
    // Each notice of a change to the account leads to the whole story.
    if matches!(
        notice,
        Notice::PasswordChanged { .. }
            | Notice::NewSignIn { .. }
            | Notice::AddressChanging { .. }
            | Notice::FactorChanged { .. }
    ) {
        letter.blocks.push(Block::Link {
            lead: "Everything that happened to your account lately is on its security activity \
                   page:"
                .into(),
            href: format!("{}/activity", site.public_url.trim_end_matches('/')),
        });
    }
    letter
}

fn letter_of(site: &Site, notice: &Notice<'_>) -> Letter {
    let name = clean(&site.name);
    let page = |path: &str| format!("{}{path}", site.public_url.trim_end_matches('/'));
    let facts = |event: &Event<'_>| Block::Facts {
        when: clean(event.when),
        device: clean(event.device),
        address: clean(event.address),
    };
    let ignore =
        || Block::Para("If you did not ask for this, ignore this mail; nothing changes.".into());
    match *notice {
        Notice::VerifyAddress {
            username,
            link,
            valid_minutes,
            change,
        } => {
            let username = clean(username);
            let lifetime = format!(
                "The link works once, within the next {}.",
                duration(valid_minutes)
            );
            let (subject, heading, lead, after) = if change {
                (
                    format!("Confirm your new e-mail address for {name}"),
                    "Confirm your new e-mail address",
                    format!(
                        "The account {username} on {name} asked to use this address from now on."
                    ),
                    format!(
                        "{lifetime} Until it is followed, the account keeps its current address."
                    ),
                )
            } else {
                (
                    format!("Confirm your e-mail address for {name}"),
                    "Confirm your e-mail address",
                    format!("This address was given for the account {username} on {name}."),
                    format!(
                        "{lifetime} Once the address is confirmed, you can sign in with it, and \
                         reset your password through it if you ever forget it."
                    ),
                )
            };
            Letter {
                subject,
                heading,
                greeting: Some(username),
                lead,
                blocks: vec![
                    Block::Para("To confirm that it is yours, follow this link:".into()),
                    Block::Action {
                        label: "Confirm this address",
                        href: link.to_owned(),
                    },
                    Block::Para(after),
                    ignore(),
                ],
            }
        }
        // The owner is told what happened and how to get in, but not the account's name: the
        // mail goes to whoever holds the address, who may not be the one who typed it.
        Notice::AddressInUse => Letter {
            subject: format!("Someone tried to sign up to {name} with your e-mail address"),
            heading: "Someone tried to sign up with this address",
            greeting: None,
            lead: format!(
                "Someone, perhaps you, tried to create an account on {name} with this e-mail \
                 address. It already belongs to an account, so no new account was created."
            ),
            blocks: vec![
                Block::Link {
                    lead: "If it was you, you already have an account. Sign in here:".into(),
                    href: page("/login"),
                },
                Block::Link {
                    lead: "If you forgot your password, you can reset it here:".into(),
                    href: page("/forgot"),
                },
                Block::Para(
                    "If it was not you, ignore this mail; nothing changes on your account.".into(),
                ),
            ],
        },
        Notice::ResetPassword {
            username,
            link,
            valid_minutes,
        } => {
            let username = clean(username);
            Letter {
                subject: format!("Reset your {name} password"),
                heading: "Reset your password",
                lead: format!(
                    "Someone asked to reset the password of your account {username} on {name}."
                ),
                greeting: Some(username),
                blocks: vec![
                    Block::Para("To choose a new password, follow this link:".into()),
                    Block::Action {
                        label: "Choose a new password",
                        href: link.to_owned(),
                    },
                    Block::Para(format!(
                        "The link works once, within the next {}. Only the newest link sent works. \
                         Setting a new password signs the account out on every other device.",
                        duration(valid_minutes)
                    )),
                    Block::Para(
                        "If you did not ask for this, ignore this mail; nothing changes, and your \
                         password stays as it is."
                            .into(),
                    ),
                ],
            }
        }
        Notice::PasswordChanged {
            username,
            by_reset,
            event,
        } => {
            let username = clean(username);
            let (how, if_not) = if by_reset {
                (
                    "was reset through a link sent to this address",
                    "If this was not you, someone else can read your mail. Make your mail account \
                     safe first, then reset your password; this ends every session of the account:",
                )
            } else {
                (
                    "was changed",
                    "If this was not you, someone else knows your password. Reset it now; this \
                     ends every session of the account:",
                )
            };
            Letter {
                subject: format!("Your {name} password was changed"),
                heading: "Your password was changed",
                lead: format!("The password of your account {username} on {name} {how}."),
                greeting: Some(username),
                blocks: vec![
                    facts(&event),
                    Block::Para("The account was signed out on every other device.".into()),
                    Block::Para("If this was you, there is nothing to do.".into()),
                    Block::Link {
                        lead: if_not.into(),
                        href: page("/forgot"),
                    },
                    Block::Link {
                        lead: "Your sessions page shows every device signed in to the account:"
                            .into(),
                        href: page("/sessions"),
                    },
                ],
            }
        }
        Notice::NewSignIn { username, event } => {
            let username = clean(username);
            Letter {
                subject: format!("New sign-in to your {name} account"),
                heading: "New sign-in to your account",
                lead: format!(
                    "Someone signed in to your account {username} on {name} from a device not seen \
                     on it before."
                ),
                greeting: Some(username),
                blocks: vec![
                    facts(&event),
                    Block::Para("If this was you, there is nothing to do.".into()),
                    Block::Link {
                        lead: "If this was not you, end that session on your sessions page:".into(),
                        href: page("/sessions"),
                    },
                    Block::Link {
                        lead: "Then reset your password, since someone else knows it; this ends \
                               every session of the account:"
                            .into(),
                        href: page("/forgot"),
                    },
                ],
            }
        }
        Notice::AddressChanging {
            username,
            new_address,
            event,
        } => {
            let username = clean(username);
            Letter {
                subject: format!("The e-mail address of your {name} account is being changed"),
                heading: "Your e-mail address is being changed",
                lead: format!(
                    "The e-mail address of your account {username} on {name} is being changed to \
                     {}.",
                    clean(new_address)
                ),
                greeting: Some(username),
                blocks: vec![
                    facts(&event),
                    Block::Para(
                        "The new address becomes the account's only once it is confirmed through a \
                         link sent to it. Until then, this address stays the account's."
                            .into(),
                    ),
                    Block::Para("If this was you, there is nothing to do.".into()),
                    Block::Link {
                        lead: "If this was not you, someone else is signed in to your account. \
                               Reset your password now; this ends every session of the account:"
                            .into(),
                        href: page("/forgot"),
                    },
                    Block::Link {
                        lead: "Then sign in and check the account's address on your account page:"
                            .into(),
                        href: page("/account"),
                    },
                ],
            }
        }
        Notice::AccountDeleted { username, event } => {
            let username = clean(username);
            Letter {
                subject: format!("Your {name} account was deleted"),
                heading: "Your account was deleted",
                lead: format!(
                    "The account {username} on {name} was deleted on {}.",
                    clean(event.when)
                ),
                greeting: Some(username),
                blocks: vec![
                    facts(&event),
                    Block::Para(format!(
                        "Its sessions were ended. This is the last mail you will get about it \
                         from {name}."
                    )),
                    Block::Para(
                        "If this was not you, someone who knew your password deleted it. If you \
                         use that password anywhere else, change it there."
                            .into(),
                    ),
                ],
            }
        }
        Notice::FactorChanged {
            username,
            change,
            event,
        } => {
            let username = clean(username);
            let (subject, heading, what) = match change {
                FactorChange::PasskeyAdded => (
                    format!("A passkey was added to your {name} account"),
                    "A passkey was added",
                    "has a new passkey, which signs in on its own",
                ),
                FactorChange::PasskeyRemoved => (
                    format!("A passkey was removed from your {name} account"),
                    "A passkey was removed",
                    "had one of its passkeys removed",
                ),
                FactorChange::CodesRenewed => (
                    format!("New recovery codes were made for your {name} account"),
                    "New recovery codes",
                    "has a new set of recovery codes; the old ones no longer work",
                ),
                FactorChange::TotpAdded => (
                    format!("Two-step sign-in was turned on for your {name} account"),
                    "Two-step sign-in is on",
                    "now asks for a code from an authenticator app after the password",
                ),
                FactorChange::TotpRemoved => (
                    format!("Two-step sign-in was turned off for your {name} account"),
                    "Two-step sign-in is off",
                    "no longer asks for a code from an authenticator app",
                ),
                FactorChange::RemovedByOperator => (
                    format!("The second factors of your {name} account were removed"),
                    "Your second factors were removed",
                    "had its second factors and passkeys removed by the site's operator, as its \
                     owner asked; it no longer asks for a code after the password",
                ),
            };
            Letter {
                subject,
                heading,
                lead: format!("Your account {username} on {name} {what}."),
                greeting: Some(username),
                blocks: vec![
                    facts(&event),
                    Block::Para(
                        if change == FactorChange::RemovedByOperator {
                            "Every session of the account was signed out."
                        } else {
                            "The account was signed out on every other device."
                        }
                        .into(),
                    ),
                    Block::Para("If this was you, there is nothing to do.".into()),
                    if change == FactorChange::PasskeyAdded {
                        Block::Link {
                            lead: "If this was not you, someone else can sign in as you: remove \
                                   the passkeys you do not know on your security page, then reset \
                                   your password:"
                                .into(),
                            href: page("/security"),
                        }
                    } else if matches!(
                        change,
                        FactorChange::TotpRemoved | FactorChange::PasskeyRemoved
                    ) {
                        Block::Link {
                            lead: "If this was not you, someone else can sign in as you. Reset \
                                   your password now; this ends every session of the account:"
                                .into(),
                            href: page("/forgot"),
                        }
                    } else {
                        // Turned on by someone else, a reset would ask for their code: only the
                        // operator can take it off.
                        Block::Link {
                            lead: "If this was not you, someone else can sign in as you, and may \
                                   have locked you out with their own authenticator: contact the \
                                   site's operator, who can remove it, then reset your password \
                                   here:"
                                .into(),
                            href: page("/forgot"),
                        }
                    },
                ],
            }
        }
    }
}

impl Letter {
    /// Plain text: one paragraph a line (a phone's client wraps it better than fixed breaks
    /// would), links on lines of their own.
    fn text(&self, site: &Site) -> String {
        let mut out = format!("{}\n\n", self.heading);
        match &self.greeting {
            Some(name) => out.push_str(&format!("Hello {name},\n\n")),
            None => out.push_str("Hello,\n\n"),
        }
        out.push_str(&format!("{}\n\n", self.lead));
        for block in &self.blocks {
            match block {
                Block::Para(words) => out.push_str(words),
                Block::Facts {
                    when,
                    device,
                    address,
                } => out.push_str(&format!(
                    "When: {when}\nDevice: {device}\nNetwork address: {address}"
                )),
                Block::Action { href, .. } => out.push_str(href),
                Block::Link { lead, href } => out.push_str(&format!("{lead}\n{href}")),
            }
            out.push_str("\n\n");
        }
        // "-- " (with its space) is the signature delimiter clients know to fold away.
        out.push_str(&format!(
            "-- \n{}\n{}\n",
            clean(&site.name),
            site.public_url
        ));
        out
    }

    /// HTML in one column at most 600 px wide, laid out with tables and inline styles (what
    /// mail clients render alike), colours from the site's own style sheet.
    fn html(&self, site: &Site) -> String {
        const FONT: &str =
            "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;";
        const P: &str = "margin:0 0 16px;font-size:16px;line-height:1.5;";
        const LINK: &str =
            "color:#2456d6;text-decoration:underline;word-break:break-all;overflow-wrap:anywhere;";
        let mut body = String::new();
        let greeting = match &self.greeting {
            Some(name) => format!("Hello {},", escape(name)),
            None => "Hello,".into(),
        };
        body.push_str(&format!("<p style=\"{P}\">{greeting}</p>\n"));
        body.push_str(&format!("<p style=\"{P}\">{}</p>\n", escape(&self.lead)));
        for block in &self.blocks {
            match block {
                Block::Para(words) => {
                    body.push_str(&format!("<p style=\"{P}\">{}</p>\n", escape(words)))
                }
                Block::Facts {
                    when,
                    device,
                    address,
                } => {
                    const TH: &str = "text-align:left;vertical-align:top;padding:4px 16px 4px 0;font-weight:600;white-space:nowrap;";
                    const TD: &str = "vertical-align:top;padding:4px 0;overflow-wrap:anywhere;";
                    body.push_str(
                        "<table style=\"border-collapse:collapse;margin:0 0 16px;font-size:16px;line-height:1.5;\">\n",
                    );
                    for (label, value) in [
                        ("When", when),
                        ("Device", device),
                        ("Network address", address),
                    ] {
                        body.push_str(&format!(
                            "<tr><th scope=\"row\" style=\"{TH}\">{label}</th><td style=\"{TD}\">{}</td></tr>\n",
                            escape(value)
                        ));
                    }
                    body.push_str("</table>\n");
                }
                Block::Action { label, href } => {
                    let href = escape(href);
                    body.push_str(&format!(
                        "<table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"margin:0 0 16px;\">\
                         <tr><td bgcolor=\"#2456d6\" style=\"background:#2456d6;border-radius:6px;\">\
                         <a href=\"{href}\" style=\"display:inline-block;padding:12px 24px;color:#ffffff;\
                         font-size:16px;font-weight:600;text-decoration:none;border-radius:6px;\">{label}</a>\
                         </td></tr></table>\n\
                         <p style=\"{P}color:#5b6475;\">If the button does not work, copy this link \
                         into your browser:<br><a href=\"{href}\" style=\"{LINK}\">{href}</a></p>\n"
                    ));
                }
                Block::Link { lead, href } => {
                    let href = escape(href);
                    body.push_str(&format!(
                        "<p style=\"{P}\">{}<br><a href=\"{href}\" style=\"{LINK}\">{href}</a></p>\n",
                        escape(lead)
                    ));
                }
            }
        }
        let name = escape(&clean(&site.name));
        let home = escape(&site.public_url);
        // The card's overflow-wrap (inherited): an address or a username has no place to break,
        // and a long one would otherwise widen the card past a phone's screen.
        format!(
            "<!doctype html>\n\
             <html lang=\"en\">\n\
             <head>\n\
             <meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"color-scheme\" content=\"light\">\n\
             <title>{title}</title>\n\
             </head>\n\
             <body style=\"margin:0;padding:0;background:#f7f8fb;color:#1d2330;{FONT}\">\n\
             <div style=\"display:none;max-height:0;overflow:hidden;\">{preview}</div>\n\
             <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"background:#f7f8fb;\">\n\
             <tr><td align=\"center\" style=\"padding:24px 12px;\">\n\
             <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" \
             style=\"max-width:600px;background:#ffffff;border:1px solid #d7dbe3;border-radius:8px;\">\n\
             <tr><td style=\"padding:24px;color:#1d2330;text-align:left;overflow-wrap:anywhere;{FONT}\">\n\
             <p style=\"margin:0 0 16px;font-size:16px;font-weight:700;\">{name}</p>\n\
             <h1 style=\"margin:0 0 16px;font-size:24px;line-height:1.3;color:#1d2330;\">{heading}</h1>\n\
             {body}\
             </td></tr>\n\
             </table>\n\
             <p style=\"margin:16px 0 0;font-size:14px;line-height:1.5;color:#5b6475;{FONT}\">\
             Sent by {name}, <a href=\"{home}\" style=\"{LINK}\">{home}</a></p>\n\
             </td></tr>\n\
             </table>\n\
             </body>\n\
             </html>\n",
            title = escape(&self.subject),
            preview = escape(&self.lead),
            heading = escape(self.heading),
        )
    }
}

/// `minutes` in words: `30 minutes`, `1 hour`, `24 hours`, `2 days`.
fn duration(minutes: i64) -> String {
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    match minutes {
        ..=0 => "less than a minute".into(),
        m if m % (24 * 60) == 0 && m > 24 * 60 => unit(m / (24 * 60), "day"),
        m if m % 60 == 0 => unit(m / 60, "hour"),
        m => unit(m, "minute"),
    }
}

/// One line of printable text, at most 300 characters (then `…`): line breaks and tabs become
/// spaces; other control characters and the marks that reorder text (which could make an
/// address read as another) become U+FFFD, so that their presence still shows.
fn clean(value: &str) -> String {
    const VALUE_MAX: usize = 300;
    let mut out: String = value
        .chars()
        .take(VALUE_MAX)
        .map(|c| match c {
            '\t' | '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => ' ',
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                '\u{fffd}'
            }
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect();
    if value.chars().nth(VALUE_MAX).is_some() {
        out.push('…');
    }
    out
}

/// `text` safe inside an element or a quoted attribute value (the mails', and every page the
/// server writes by hand).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token of the sample links: the one secret a mail may carry.
    const TOKEN: &str = "vG3kQ9xR2mW7pL4sT8yB1nC6dF0hJ5zA_-eUoIqXwYr";
    const VERIFY_LINK: &str =
        "https://auth.example.com/verify?token=vG3kQ9xR2mW7pL4sT8yB1nC6dF0hJ5zA_-eUoIqXwYr";
    const RESET_LINK: &str =
        "https://auth.example.com/reset?token=vG3kQ9xR2mW7pL4sT8yB1nC6dF0hJ5zA_-eUoIqXwYr";

    fn site() -> Site {
        Site {
            name: "authapp".into(),
            public_url: "https://auth.example.com".into(),
        }
    }

    const EVENT: Event<'static> = Event {
        when: "5 December 2026, 00:52 UTC",
        device: "Firefox on Linux",
        address: "203.0.113.7",
    };

    /// One notice of every kind (both kinds of address confirmation), with a name for its files.
    fn samples() -> Vec<(&'static str, Notice<'static>)> {
        vec![
            (
                "verify_address",
                Notice::VerifyAddress {
                    username: "alice",
                    link: VERIFY_LINK,
                    valid_minutes: 24 * 60,
                    change: false,
                },
            ),
            (
                "verify_address_change",
                Notice::VerifyAddress {
                    username: "alice",
                    link: VERIFY_LINK,
                    valid_minutes: 24 * 60,
                    change: true,
                },
            ),
            ("address_in_use", Notice::AddressInUse),
            (
                "reset_password",
                Notice::ResetPassword {
                    username: "alice",
                    link: RESET_LINK,
                    valid_minutes: 30,
                },
            ),
            (
                "password_changed",
                Notice::PasswordChanged {
                    username: "alice",
                    by_reset: false,
                    event: EVENT,
                },
            ),
            (
                "password_reset",
                Notice::PasswordChanged {
                    username: "alice",
                    by_reset: true,
                    event: EVENT,
                },
            ),
            (
                "new_sign_in",
                Notice::NewSignIn {
                    username: "alice",
                    event: EVENT,
                },
            ),
            (
                "address_changing",
                Notice::AddressChanging {
                    username: "alice",
                    new_address: "alice.new@example.org",
                    event: EVENT,
                },
            ),
            (
                "account_deleted",
                Notice::AccountDeleted {
                    username: "alice",
                    event: EVENT,
                },
            ),
            (
                "totp_added",
                Notice::FactorChanged {
                    username: "alice",
                    change: FactorChange::TotpAdded,
                    event: EVENT,
                },
            ),
            (
                "totp_removed",
                Notice::FactorChanged {
                    username: "alice",
                    change: FactorChange::TotpRemoved,
                    event: EVENT,
                },
            ),
            (
                "passkey_added",
                Notice::FactorChanged {
                    username: "alice",
                    change: FactorChange::PasskeyAdded,
                    event: EVENT,
                },
            ),
            (
                "codes_renewed",
                Notice::FactorChanged {
                    username: "alice",
                    change: FactorChange::CodesRenewed,
                    event: EVENT,
                },
            ),
            (
                "removed_by_operator",
                Notice::FactorChanged {
                    username: "alice",
                    change: FactorChange::RemovedByOperator,
                    event: EVENT,
                },
            ),
        ]
    }

    fn link_of(notice: &Notice<'_>) -> Option<&'static str> {
        match notice {
            Notice::VerifyAddress { .. } => Some(VERIFY_LINK),
            Notice::ResetPassword { .. } => Some(RESET_LINK),
            _ => None,
        }
    }

    fn mail(notice: &Notice<'_>) -> OutgoingMail {
        compose(&site(), notice, Some(7), "alice@example.com")
    }

    /// Runs of 20 or more characters a token could be made of: nothing in a mail's own words,
    /// styles or the site's address is that long.
    fn token_like(s: &str) -> Vec<&str> {
        s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .filter(|run| run.len() >= 20)
            .collect()
    }

    /// Checks what a mail client's parser relies on: a doctype; every tag closed in order
    /// (void elements aside); attribute values quoted and holding no raw `<`, `>` or `"`; no
    /// stray `>`; every `&` an entity the escaping writes.
    fn check_html(html: &str) -> Result<(), String> {
        const VOID: &[&str] = &["meta", "br"];
        const ENTITIES: &[&str] = &["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"];
        let entity = |at: &str| {
            ENTITIES
                .iter()
                .find(|e| at.starts_with(*e))
                .map(|e| e.len())
        };
        let mut rest = html.strip_prefix("<!doctype html>\n").ok_or("no doctype")?;
        if !html.ends_with("</html>\n") {
            return Err("does not end with </html>".into());
        }
        let mut open: Vec<&str> = Vec::new();
        while let Some(at) = rest.find(['<', '>', '&']) {
            rest = &rest[at..];
            if rest.starts_with('>') {
                return Err(format!("stray > at {:?}", &rest[..rest.len().min(40)]));
            }
            if rest.starts_with('&') {
                let len = entity(rest)
                    .ok_or_else(|| format!("bare & at {:?}", &rest[..rest.len().min(40)]))?;
                rest = &rest[len..];
                continue;
            }
            let end = rest.find('>').ok_or("unclosed tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match open.pop() {
                    Some(opened) if opened == name => continue,
                    opened => return Err(format!("</{name}> closes {opened:?}")),
                }
            }
            let name_end = tag.find(' ').unwrap_or(tag.len());
            let (name, mut attributes) = tag.split_at(name_end);
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("bad tag <{tag}>"));
            }
            while let Some(attribute) = attributes.strip_prefix(' ') {
                let (key, value) = attribute
                    .split_once("=\"")
                    .ok_or_else(|| format!("unquoted attribute in <{tag}>"))?;
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                    return Err(format!("bad attribute name in <{tag}>"));
                }
                let (value, after) = value
                    .split_once('"')
                    .ok_or_else(|| format!("unclosed attribute in <{tag}>"))?;
                if value.contains('<') {
                    return Err(format!("< in an attribute of <{tag}>"));
                }
                let mut value = value;
                while let Some(amp) = value.find('&') {
                    let len = entity(&value[amp..]).ok_or_else(|| format!("bare & in <{tag}>"))?;
                    value = &value[amp + len..];
                }
                attributes = after;
            }
            if !attributes.is_empty() {
                return Err(format!("junk in <{tag}>"));
            }
            if !VOID.contains(&name) {
                open.push(name);
            }
        }
        match open.is_empty() {
            true => Ok(()),
            false => Err(format!("left open: {open:?}")),
        }
    }

    #[test]
    fn the_checker_catches_broken_html() {
        let page = |body: &str| format!("<!doctype html>\n<html>{body}</html>\n");
        assert!(check_html(&page("<p class=\"a\">x &amp; y<br></p>")).is_ok());
        for broken in [
            "<p>",
            "<p></b>",
            "<a href=x></a>",
            "<a href=\"x\"y\"></a>",
            "<a href=\"x\"></a>>",
            "<p>a & b</p>",
            "<a title=\"<b>\"></a>",
        ] {
            assert!(check_html(&page(broken)).is_err(), "{broken}");
        }
        assert!(check_html("<html></html>\n").is_err());
    }

    #[test]
    fn every_kind_has_a_sample() {
        let kinds: Vec<MailKind> = samples().iter().map(|(_, n)| n.kind()).collect();
        for kind in [
            MailKind::VerifyAddress,
            MailKind::AddressInUse,
            MailKind::ResetPassword,
            MailKind::PasswordChanged,
            MailKind::NewSignIn,
            MailKind::AddressChanging,
            MailKind::AccountDeleted,
            MailKind::FactorChanged,
        ] {
            assert!(kinds.contains(&kind), "{kind:?} has no sample");
        }
    }

    #[test]
    fn a_mail_carries_its_one_link_and_no_other_token() {
        for (name, notice) in samples() {
            let mail = mail(&notice);
            assert_eq!(mail.kind, notice.kind());
            assert_eq!(
                (mail.user_id, mail.to.as_str()),
                (Some(7), "alice@example.com")
            );
            for (part, body) in [("text", &mail.text), ("html", &mail.html)] {
                for run in token_like(body) {
                    assert_eq!(run, TOKEN, "{name} {part}: {run:?} looks like a token");
                }
            }
            match link_of(&notice) {
                Some(link) => {
                    // Once in the text; in the HTML as the button and written out in full.
                    assert_eq!(mail.text.matches(link).count(), 1, "{name}");
                    assert_eq!(mail.text.matches(TOKEN).count(), 1, "{name}");
                    assert_eq!(
                        mail.html.matches(&format!("href=\"{link}\"")).count(),
                        2,
                        "{name}"
                    );
                    assert_eq!(
                        mail.html.matches(&format!(">{link}</a>")).count(),
                        1,
                        "{name}"
                    );
                    assert_eq!(mail.html.matches(TOKEN).count(), 3, "{name}");
                }
                None => {
                    assert!(
                        !mail.text.contains(TOKEN) && !mail.html.contains(TOKEN),
                        "{name}"
                    );
                }
            }
        }
    }

    #[test]
    fn notices_say_what_happened_and_what_to_do() {
        let forgot = "https://auth.example.com/forgot";
        let sessions = "https://auth.example.com/sessions";
        for (name, notice) in samples() {
            let mail = mail(&notice);
            let has = |words: &str| {
                assert!(
                    mail.text.contains(words),
                    "{name} text lacks {words:?}:\n{}",
                    mail.text
                );
                assert!(mail.html.contains(words), "{name} html lacks {words:?}");
            };
            has("authapp");
            if let Notice::PasswordChanged { event, .. }
            | Notice::NewSignIn { event, .. }
            | Notice::AddressChanging { event, .. }
            | Notice::AccountDeleted { event, .. }
            | Notice::FactorChanged { event, .. } = notice
            {
                has(event.when);
                has(event.device);
                has(event.address);
            }
            match notice {
                Notice::VerifyAddress { change, .. } => {
                    has("24 hours");
                    has("works once");
                    has("ignore this mail; nothing changes");
                    assert_eq!(mail.subject.contains("new"), change, "{name}");
                }
                Notice::ResetPassword { .. } => {
                    has("30 minutes");
                    has("works once");
                    has("ignore this mail; nothing changes");
                    assert_eq!(mail.subject, "Reset your authapp password");
                }
                Notice::AddressInUse => {
                    has("https://auth.example.com/login");
                    has(forgot);
                    has("no new account was created");
                    assert!(!mail.text.contains("alice"), "{name} names the account");
                }
                Notice::NewSignIn { .. } => {
                    has(sessions);
                    has(forgot);
                    assert_eq!(mail.subject, "New sign-in to your authapp account");
                }
                Notice::PasswordChanged { by_reset, .. } => {
                    has(forgot);
                    assert_eq!(
                        mail.text.contains("reset through a link"),
                        by_reset,
                        "{name}"
                    );
                    assert_eq!(mail.subject, "Your authapp password was changed");
                }
                Notice::AddressChanging { new_address, .. } => {
                    has(new_address);
                    has(forgot);
                    has("only once it is confirmed");
                }
                Notice::AccountDeleted { .. } => {
                    has("The account alice on authapp was deleted on 5 December 2026, 00:52 UTC.");
                    has("last mail");
                }
                Notice::FactorChanged { change, .. } => {
                    has(if change == FactorChange::PasskeyAdded {
                        "https://auth.example.com/security"
                    } else {
                        forgot
                    });
                    has("signed out");
                    let what = match change {
                        FactorChange::CodesRenewed => "New recovery codes",
                        FactorChange::PasskeyAdded => "added",
                        FactorChange::PasskeyRemoved => "removed",
                        FactorChange::TotpAdded => "turned on",
                        FactorChange::TotpRemoved => "turned off",
                        FactorChange::RemovedByOperator => "removed",
                    };
                    assert!(mail.subject.contains(what), "{name}: {}", mail.subject);
                }
            }
        }
    }

    #[test]
    fn outside_values_are_escaped_in_html_and_intact_in_text() {
        let device = "<script>alert(1)</script>";
        let new_address = "\"o'neil&co\"@example.org";
        let link = "https://auth.example.com/verify?a=<b>&token=\"x\"";
        let event = Event {
            when: "5 December 2026, 00:52 UTC",
            device,
            address: "203.0.113.7 & <friends>",
        };
        let hostile = [
            Notice::AddressChanging {
                username: "a<b>&\"c'",
                new_address,
                event,
            },
            Notice::NewSignIn {
                username: "alice",
                event,
            },
            Notice::VerifyAddress {
                username: "alice",
                link,
                valid_minutes: 30,
                change: true,
            },
        ];
        let site = Site {
            name: "<i>auth</i> & co".into(),
            public_url: "https://auth.example.com".into(),
        };
        for notice in hostile {
            let mail = compose(&site, &notice, None, "x@example.org");
            check_html(&mail.html).unwrap_or_else(|e| panic!("{e}\n{}", mail.html));
            assert!(!mail.html.contains("<script") && !mail.html.contains("<i>"));
            assert!(mail.html.contains("&lt;i&gt;auth&lt;/i&gt; &amp; co"));
            assert!(mail.text.contains("<i>auth</i> & co"));
            match notice {
                Notice::AddressChanging { .. } => {
                    assert!(mail
                        .html
                        .contains("&quot;o&#39;neil&amp;co&quot;@example.org"));
                    assert!(mail.text.contains(new_address));
                    assert!(mail.html.contains("Hello a&lt;b&gt;&amp;&quot;c&#39;,"));
                }
                Notice::NewSignIn { .. } => {
                    assert!(mail.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
                    assert!(mail.html.contains("203.0.113.7 &amp; &lt;friends&gt;"));
                    assert!(mail.text.contains(&format!("Device: {device}\n")));
                    assert!(mail
                        .text
                        .contains("Network address: 203.0.113.7 & <friends>\n"));
                }
                _ => {
                    let escaped =
                        "https://auth.example.com/verify?a=&lt;b&gt;&amp;token=&quot;x&quot;";
                    assert_eq!(mail.html.matches(&format!("href=\"{escaped}\"")).count(), 2);
                    assert!(mail.text.contains(&format!("\n{link}\n")));
                }
            }
        }
    }

    #[test]
    fn line_breaks_in_values_break_no_line() {
        let site = Site {
            name: "authapp\r\nBcc: everyone@example.org".into(),
            public_url: "https://auth.example.com".into(),
        };
        let notice = Notice::NewSignIn {
            username: "alice",
            event: Event {
                when: "5 December 2026, 00:52 UTC",
                device: "Firefox\r\nDevice: forged\u{2028}x\u{202e}y\u{0}",
                address: "203.0.113.7\n",
            },
        };
        let mail = compose(&site, &notice, None, "x@example.org");
        assert_eq!(
            mail.subject,
            "New sign-in to your authapp  Bcc: everyone@example.org account"
        );
        assert!(mail
            .text
            .lines()
            .any(|l| l == "Device: Firefox  Device: forged x\u{fffd}y\u{fffd}"));
        assert!(mail
            .text
            .lines()
            .any(|l| l == "Network address: 203.0.113.7 "));
        assert_eq!(
            mail.text.matches("Device:").count(),
            2,
            "one line, not a forged second"
        );
        for (_, notice) in samples() {
            let subject = compose(&site, &notice, None, "x@example.org").subject;
            assert!(!subject.contains(['\r', '\n']), "{subject:?}");
        }
    }

    #[test]
    fn html_reads_on_a_phone_and_loads_nothing() {
        for (name, notice) in samples() {
            let html = mail(&notice).html;
            check_html(&html).unwrap_or_else(|e| panic!("{name}: {e}\n{html}"));
            assert!(html.contains("<html lang=\"en\">"), "{name}");
            assert!(html.contains(&format!("<title>{}</title>", mail(&notice).subject)));
            assert!(html.contains("max-width:600px"), "{name}");
            assert!(html.contains("name=\"viewport\""), "{name}");
            for remote in [
                "<img", "src=", "<link", "<style", "url(", "<script", "@import",
            ] {
                assert!(!html.contains(remote), "{name} has {remote}");
            }
            for href in html.split("href=\"").skip(1) {
                assert!(
                    href.starts_with("https://auth.example.com"),
                    "{name}: {href:.40}"
                );
            }
        }
    }

    #[test]
    fn times_and_durations_are_in_words() {
        assert_eq!(when(0), "1 January 1970, 00:00 UTC");
        assert_eq!(when(1_796_431_920), "5 December 2026, 00:52 UTC");
        assert_eq!(when(951_865_559), "29 February 2000, 23:05 UTC");
        assert!(when(i64::MAX).contains("seconds after"));
        assert!(when(i64::MIN).contains("seconds after"));
        let cases = [
            (30, "30 minutes"),
            (1, "1 minute"),
            (90, "90 minutes"),
            (60, "1 hour"),
            (24 * 60, "24 hours"),
            (48 * 60, "2 days"),
            (0, "less than a minute"),
        ];
        for (minutes, words) in cases {
            assert_eq!(duration(minutes), words);
        }
    }

    #[test]
    fn long_values_are_cut() {
        let long = "é".repeat(1000);
        let cut = clean(&long);
        assert_eq!(cut.chars().count(), 301);
        assert!(cut.ends_with('…'));
        assert_eq!(clean(&"é".repeat(300)), "é".repeat(300));
    }

    /// `MAIL_PREVIEW_DIR=/some/dir cargo test -p identity --lib mail::compose` writes every
    /// sample mail there (`<name>.html`, `<name>.txt`) to be looked at or screenshot.
    #[test]
    fn preview() {
        let Some(dir) = std::env::var_os("MAIL_PREVIEW_DIR") else {
            return;
        };
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        for (name, notice) in samples() {
            let mail = mail(&notice);
            let text = format!("Subject: {}\n\n{}", mail.subject, mail.text);
            std::fs::write(dir.join(format!("{name}.html")), &mail.html).unwrap();
            std::fs::write(dir.join(format!("{name}.txt")), text).unwrap();
        }
    }
}
