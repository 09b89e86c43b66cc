//! `server admin …`: what the person on call does to one account, against the configured
//! database, while the servers run (on SQLite as on PostgreSQL: each change is one
//! transaction, in the lock order the servers take).
//!
//! - `find QUERY`: the accounts a username, an address (confirmed or not) or `#ID` names;
//! - `show USER`: the account, its live sessions and its recent security events;
//! - `end-sessions USER`: every session of it ends (it signs in again as before);
//! - `disable USER`: no sign-in from now on, every session ended; `enable USER` undoes it;
//! - `delete USER --yes`: the account and everything of it, for good;
//! - `remove-factors USER`: its authenticator app, recovery codes and passkeys removed (for a
//!   person who lost all of them and proved who they are another way), every session ended.
//!
//! `USER` is a username, a confirmed address or `#ID`. Each change is a security event of the account
//! (its device: "the operator"); its sessions are refused at once by every running server (on
//! PostgreSQL through the revocation feed; on SQLite within a second). `--json` prints one JSON
//! object instead of words, for scripts. Exit codes: 0 done, 1 failed (or no such account, or
//! nothing to do), 2 a bad command line.

use app::auth::{account::OperatorDid, audit::Seen, email::Origin, factors::ChangeError, Auth};
use app::store::accounts::AccountSummary;
use serde_json::json;

use crate::{state::build_auth, Config};

/// What an admin command did, or why it did not.
#[derive(Debug)]
pub enum AdminError {
    /// No such account.
    NoSuchUser(String),
    /// Only an address never confirmed names an account: act by its id.
    UnconfirmedAddress(String),
    /// Several accounts match.
    Ambiguous(String),
    /// The account is not in the state the command changes.
    Nothing(String),
    /// The database or the configuration.
    Failed(String),
}

impl AdminError {
    /// The error's name in `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSuchUser(_) => "no_such_user",
            Self::UnconfirmedAddress(_) => "unconfirmed_address",
            Self::Ambiguous(_) => "ambiguous",
            Self::Nothing(_) => "nothing_to_do",
            Self::Failed(_) => "failed",
        }
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSuchUser(who) => write!(
                f,
                "no account is named {who:?} (give a username, a confirmed address or '#ID'; \
                 `server admin find` lists what matches)"
            ),
            Self::UnconfirmedAddress(what)
            | Self::Ambiguous(what)
            | Self::Nothing(what)
            | Self::Failed(what) => f.write_str(what),
        }
    }
}

/// What a command did: words for a person, and the same as JSON for a script.
#[derive(Debug)]
pub struct Done {
    pub text: String,
    pub json: serde_json::Value,
}

/// A command of `server admin`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Find(String),
    Show { who: String, events: u32 },
    EndSessions(String),
    Disable(String),
    Enable(String),
    Delete(String),
    RemoveFactors(String),
}

/// Events `show` lists unless told (`--events N`).
const SHOWN_EVENTS: u32 = 20;

impl Command {
    /// Parses the words after `server admin`: the command, and whether `--json` was given.
    /// `Err`: what is wrong with them, for a person.
    pub fn parse(args: &[&str]) -> Result<(Self, bool), String> {
        let json = args.contains(&"--json");
        let yes = args.contains(&"--yes");
        let mut events = SHOWN_EVENTS;
        let mut words = Vec::new();
        let mut rest = args.iter().filter(|a| **a != "--json" && **a != "--yes");
        while let Some(word) = rest.next() {
            if *word == "--events" {
                events = rest
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=app::auth::audit::PAGE_MAX).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "--events takes a count from 1 to {}",
                            app::auth::audit::PAGE_MAX
                        )
                    })?;
            } else if word.starts_with("--") {
                return Err(format!("unknown option {word}"));
            } else {
                words.push(*word);
            }
        }
        const COMMANDS: [&str; 7] = [
            "find",
            "show",
            "end-sessions",
            "disable",
            "enable",
            "delete",
            "remove-factors",
        ];
        let command = match words.as_slice() {
            ["find"] => {
                return Err(
                    "find needs a QUERY: a username, an address, or '#ID' (in quotes: \
                            a shell takes an unquoted # for a comment)"
                        .into(),
                )
            }
            [command] if COMMANDS.contains(command) => {
                return Err(format!(
                    "{command} needs a USER: a username, a confirmed address, or '#ID' (in \
                     quotes: a shell takes an unquoted # for a comment)"
                ))
            }
            ["find", query] => Self::Find((*query).to_owned()),
            ["show", who] => Self::Show {
                who: (*who).to_owned(),
                events,
            },
            ["end-sessions", who] => Self::EndSessions((*who).to_owned()),
            ["disable", who] => Self::Disable((*who).to_owned()),
            ["enable", who] => Self::Enable((*who).to_owned()),
            ["delete", who] if yes => Self::Delete((*who).to_owned()),
            ["delete", _] => {
                return Err(
                    "delete removes the account and everything of it for good: add --yes".into(),
                )
            }
            ["remove-factors", who] => Self::RemoveFactors((*who).to_owned()),
            [] => return Err("which command?".into()),
            [other, ..] => return Err(format!("no command {other:?} takes these words")),
        };
        Ok((command, json))
    }
}

/// Runs `command` against the configured database: said on stderr which (without a password);
/// a SQLite file that does not exist is refused (a relative `DATABASE_URL` run from another
/// directory would name a new, empty one, where no account is found).
pub async fn run(config: &Config, command: &Command) -> Result<Done, AdminError> {
    let url = &config.database_url;
    if let Some(path) = app::store::sqlite_file(url) {
        if !path.is_file() {
            return Err(AdminError::Failed(format!(
                "there is no database at {} (DATABASE_URL={url}): run this with the servers' \
                 configuration, from their working directory",
                path.display()
            )));
        }
    }
    eprintln!("database: {}", crate::config::redact_password(url));
    let (auth, _store, _cursor) = build_auth(config)
        .await
        .map_err(|e| AdminError::Failed(e.to_string()))?;
    match command {
        Command::Find(query) => find_all(&auth, query).await,
        Command::Show { who, events } => show(&auth, who, *events).await,
        Command::EndSessions(who) => end_sessions(&auth, who).await,
        Command::Disable(who) => disable(&auth, who).await,
        Command::Enable(who) => enable(&auth, who).await,
        Command::Delete(who) => delete(&auth, who).await,
        Command::RemoveFactors(who) => remove_factors(&auth, who).await,
    }
}

fn failed(what: &str) -> impl Fn(&dyn std::fmt::Display) -> AdminError + '_ {
    move |e| AdminError::Failed(format!("{what} failed: {e}"))
}

/// The one account `who` names: `#ID`, a username or a confirmed address. (An address that
/// was never confirmed proves nothing: whoever owns that mailbox now may not be the account's
/// owner. Such a match is named, for the operator to check and act on by `#ID`.)
async fn find(auth: &Auth, who: &str) -> Result<AccountSummary, AdminError> {
    let store = auth.health.store();
    let found = store
        .find_accounts(who, true)
        .await
        .map_err(|e| failed("reading the account")(&e))?;
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => {
            let unconfirmed = store
                .find_accounts(who, false)
                .await
                .map_err(|e| failed("reading the account")(&e))?;
            match unconfirmed.as_slice() {
                [] => Err(AdminError::NoSuchUser(who.to_owned())),
                some => Err(AdminError::UnconfirmedAddress(format!(
                    "{who:?} is only an address that was never confirmed, of {}: check that \
                     account, then name it by '#ID'",
                    some.iter()
                        .map(|a| format!("#{} {}", a.id, a.username))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
        many => Err(AdminError::Ambiguous(format!(
            "{who:?} names {} accounts ({}): give '#ID'",
            many.len(),
            many.iter()
                .map(|a| format!("#{}", a.id))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A time as a person reads it in a terminal: UTC, to the second.
fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// One account in words.
fn describe(a: &AccountSummary) -> String {
    let address = match (&a.email, a.email_verified_at) {
        (Some(e), Some(_)) => format!("{e} (confirmed)"),
        (Some(e), None) => format!("{e} (not confirmed)"),
        (None, _) => "no address".into(),
    };
    let state = match a.disabled_at {
        Some(at) => format!("DISABLED since {}", when(at)),
        None => "enabled".into(),
    };
    format!(
        "#{} {}: {address}; created {}; {state}; authenticator app {}, {} passkey{}, {} \
         recovery code{} left",
        a.id,
        a.username,
        when(a.created_at),
        if a.totp > 0 { "on" } else { "off" },
        a.passkeys,
        if a.passkeys == 1 { "" } else { "s" },
        a.recovery_codes_left,
        if a.recovery_codes_left == 1 { "" } else { "s" },
    )
}

async fn find_all(auth: &Auth, query: &str) -> Result<Done, AdminError> {
    let found = auth
        .health
        .store()
        .find_accounts(query, false)
        .await
        .map_err(|e| failed("finding accounts")(&e))?;
    if found.is_empty() {
        return Err(AdminError::NoSuchUser(query.to_owned()));
    }
    Ok(Done {
        text: found.iter().map(describe).collect::<Vec<_>>().join("\n"),
        json: json!({ "accounts": found }),
    })
}

async fn show(auth: &Auth, who: &str, events: u32) -> Result<Done, AdminError> {
    let account = find(auth, who).await?;
    let now = app::auth::tokens::access::now_unix();
    let sessions = auth
        .sessions
        .list(account.id, now)
        .await
        .map_err(|e| failed("reading the sessions")(&e))?;
    let events = auth
        .health
        .store()
        .events_of(account.id, None, events)
        .await
        .map_err(|e| failed("reading the events")(&e))?;
    let mut text = describe(&account);
    text.push_str(&format!("\n\nLive sessions ({}):", sessions.len()));
    for s in &sessions {
        text.push_str(&format!(
            "\n  {}  {}  from {}  signed in {} by {}, last used {}",
            s.id.0,
            app::auth::sessions::agent::describe_device(&s.user_agent),
            if s.address.is_empty() {
                "?"
            } else {
                &s.address
            },
            when(s.created_at),
            s.auth_method,
            when(s.last_used_at),
        ));
    }
    text.push_str(&format!(
        "\n\nRecent events ({}, newest first):",
        events.len()
    ));
    for e in &events {
        text.push_str(&format!(
            "\n  {}  {}{}  {}  {}",
            when(e.at),
            e.kind,
            if e.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.detail)
            },
            if e.device.is_empty() { "?" } else { &e.device },
            if e.address.is_empty() { "" } else { &e.address },
        ));
    }
    let sessions: Vec<_> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id.0.to_string(),
                "device": app::auth::sessions::agent::describe_device(&s.user_agent),
                "address": s.address,
                "created_at": s.created_at,
                "last_used_at": s.last_used_at,
                "expires_at": s.expires_at,
                "auth_method": s.auth_method,
            })
        })
        .collect();
    Ok(Done {
        text,
        json: json!({ "account": account, "sessions": sessions, "events": events }),
    })
}

async fn end_sessions(auth: &Auth, who: &str) -> Result<Done, AdminError> {
    let account = find(auth, who).await?;
    let n = auth
        .end_sessions_by_operator(account.id)
        .await
        .map_err(|e| failed("ending the sessions")(&e))?;
    tracing::warn!(
        user_id = account.id,
        ended = n,
        "admin: every session of the account ended"
    );
    Ok(Done {
        text: format!(
            "ended {n} session{} of {} (#{}); it can sign in again",
            if n == 1 { "" } else { "s" },
            account.username,
            account.id
        ),
        json: json!({ "user_id": account.id, "sessions_ended": n }),
    })
}

async fn disable(auth: &Auth, who: &str) -> Result<Done, AdminError> {
    let account = find(auth, who).await?;
    match auth
        .disable_account(account.id)
        .await
        .map_err(|e| failed("disabling the account")(&e))?
    {
        OperatorDid::Done { sessions_ended } => {
            tracing::warn!(
                user_id = account.id,
                ended = sessions_ended,
                "admin: the account was disabled; every session of it ended"
            );
            Ok(Done {
                text: format!(
                    "disabled {} (#{}): {sessions_ended} session{} ended; it cannot sign in \
                     until `server admin enable`",
                    account.username,
                    account.id,
                    if sessions_ended == 1 { "" } else { "s" },
                ),
                json: json!({
                    "user_id": account.id,
                    "disabled": true,
                    "sessions_ended": sessions_ended,
                }),
            })
        }
        OperatorDid::Already => Err(AdminError::Nothing(format!(
            "{} (#{}) is disabled already",
            account.username, account.id
        ))),
        OperatorDid::NoSuchUser => Err(AdminError::NoSuchUser(who.to_owned())),
    }
}

async fn enable(auth: &Auth, who: &str) -> Result<Done, AdminError> {
    let account = find(auth, who).await?;
    match auth
        .enable_account(account.id)
        .await
        .map_err(|e| failed("enabling the account")(&e))?
    {
        OperatorDid::Done { .. } => {
            tracing::warn!(user_id = account.id, "admin: the account was enabled");
            Ok(Done {
                text: format!(
                    "enabled {} (#{}): it can sign in again",
                    account.username, account.id
                ),
                json: json!({ "user_id": account.id, "disabled": false }),
            })
        }
        OperatorDid::Already => Err(AdminError::Nothing(format!(
            "{} (#{}) is not disabled",
            account.username, account.id
        ))),
        OperatorDid::NoSuchUser => Err(AdminError::NoSuchUser(who.to_owned())),
    }
}

async fn delete(auth: &Auth, who: &str) -> Result<Done, AdminError> {
    let account = find(auth, who).await?;
    let origin: Origin<'_> = Origin {
        user_agent: Seen::OPERATOR.user_agent,
        address: None,
    };
    let deleted = auth
        .delete_account(
            account.id,
            app::auth::tokens::access::now_unix(),
            origin,
            "operator",
        )
        .await
        .map_err(|e| failed("deleting the account")(&e))?;
    if !deleted {
        return Err(AdminError::NoSuchUser(who.to_owned()));
    }
    tracing::warn!(user_id = account.id, "admin: the account was deleted");
    Ok(Done {
        text: format!(
            "deleted {} (#{}) and everything of it; every session of it ended",
            account.username, account.id
        ),
        json: json!({ "user_id": account.id, "deleted": true }),
    })
}

/// `server admin remove-factors USER`.
async fn remove_factors(auth: &Auth, who: &str) -> Result<Done, AdminError> {
    let account = find(auth, who).await?;
    let (user_id, username) = (account.id, account.username);
    let origin = Origin {
        user_agent: Seen::OPERATOR.user_agent,
        address: None,
    };
    match auth.remove_totp(user_id, None, origin).await {
        Ok(()) => {
            tracing::warn!(
                user_id,
                "admin: the account's second factors were removed; every session of it ended"
            );
            Ok(Done {
                text: format!(
                    "removed the second factors of {username} (#{user_id}): every session of \
                     the account ended, and its owner is mailed a notice"
                ),
                json: json!({ "user_id": user_id, "factors_removed": true }),
            })
        }
        Err(ChangeError::Conflict) => Err(AdminError::Nothing(format!(
            "{username} (#{user_id}) has no second factor nor passkey: nothing to remove"
        ))),
        Err(e) => Err(AdminError::Failed(format!(
            "removing the second factors failed: {e}"
        ))),
    }
}
