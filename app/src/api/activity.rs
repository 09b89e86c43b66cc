//! The account's security activity: `GET /api/activity` for API clients, and the list the
//! activity page shows (prepared on the server, as the sessions page's is: see
//! [`crate::pages::activity`]).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;
#[cfg(feature = "ssr")]
use server_fn::ServerFn;

#[cfg(feature = "ssr")]
use super::server::answered;
use crate::error::ApiError;

/// One security event of the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ActivityEvent {
    /// Increasing with time: pass the last one's as `before` for the next page.
    pub id: i64,
    /// When (unix seconds).
    pub at: i64,
    /// What happened: `sign_in`, `sign_in_new_device`, `sign_in_failed`, `session_ended`,
    /// `password_changed`, `password_reset`, `address_added`, `address_change_requested`,
    /// `address_verified`, `address_changed`, `totp_added`, `totp_removed`,
    /// `recovery_codes_renewed`, `passkey_added`, `passkey_removed`,
    /// `factors_removed_by_operator`, `sessions_ended_by_operator`, `account_disabled`,
    /// `account_enabled`.
    pub kind: String,
    /// A word more: a sign-in's method, why a session ended (`logout`, `revoked`,
    /// `signed_out_elsewhere`, `reuse`, `password_changed`, `password_reset`,
    /// `factors_changed`, `operator`, `account_disabled`), which step of a sign-in failed
    /// (`password`, `code`).
    pub detail: String,
    /// The event in words, as the activity page shows it.
    pub description: String,
    /// The client's address (as the server saw it behind its trusted proxies), or empty.
    pub address: String,
    /// The device in words ("Firefox on Linux"), or empty.
    pub device: String,
    /// The session the event is about, when there is one.
    pub session_id: Option<String>,
}

/// A page of the account's security activity, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Activity {
    pub events: Vec<ActivityEvent>,
    /// The `before` of the next (older) page, when there is one.
    pub next_before: Option<String>,
}

/// Events one page holds.
pub const PAGE_SIZE: u32 = 25;

/// The activity list as the page shows it (see [`crate::pages::activity`]): every value already
/// worded, carried in the page as text by [`super::table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityList {
    /// The rows (when, what, device, address), or why they could not be read.
    pub rows: Result<Vec<ActivityRow>, String>,
    /// The `before` of the next (older) page, when there is one.
    pub older: Option<String>,
}

/// One row of the activity page, worded on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    pub when: String,
    pub what: String,
    pub device: String,
    pub address: String,
}

impl std::fmt::Display for ActivityList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = self.rows.as_ref().map(|rows| {
            rows.iter()
                .map(|r| vec![&*r.when, &*r.what, &*r.device, &*r.address])
                .collect::<Vec<_>>()
        });
        let older = self.older.as_deref().unwrap_or("");
        super::table::write(f, older, rows.as_ref().map_err(|e| e.as_str()))
    }
}

impl std::str::FromStr for ActivityList {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (older, rows) = super::table::read(text).ok_or(())?;
        let rows = match rows {
            Ok(rows) => Ok(rows
                .into_iter()
                .map(|fields| match <[String; 4]>::try_from(fields) {
                    Ok([when, what, device, address]) => Some(ActivityRow {
                        when,
                        what,
                        device,
                        address,
                    }),
                    Err(_) => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or(())?),
            Err(e) => Err(e),
        };
        Ok(ActivityList {
            rows,
            older: (!older.is_empty()).then_some(older),
        })
    }
}

/// `GET /api/activity` (`before`: a page's `next_before`): the account's security events,
/// newest first, 25 a page.
#[server(prefix = "/api", endpoint = "activity", input = GetUrl)]
pub async fn list_activity(before: Option<String>) -> Result<Activity, ApiError> {
    answered(ListActivity::PATH, server::list_activity(before).await)
}

#[cfg(feature = "ssr")]
pub mod server {
    use super::*;
    use crate::api::server::*;
    use crate::auth::{access::AuthUser, audit::Event, Auth, HealthAnswer};
    use crate::clock::Clock;

    /// `before` as typed: a positive whole number, or none at all (an empty one is no page's).
    fn before_of(before: Option<&str>) -> Result<Option<i64>, ApiError> {
        match before {
            None => Ok(None),
            Some(b) => b
                .parse::<i64>()
                .ok()
                .filter(|b| *b > 0)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::invalid_input("before must be the next_before of an earlier page.")
                }),
        }
    }

    /// One page of `user_id`'s events, and the `before` of the next.
    async fn page(
        auth: &Auth,
        user_id: i64,
        before: Option<i64>,
    ) -> Result<(Vec<Event>, Option<String>), crate::store::StoreError> {
        // One more than a page: whether there is a next one.
        let mut events = auth
            .health
            .store()
            .events_of(user_id, before, PAGE_SIZE + 1)
            .await?;
        let more = events.len() > PAGE_SIZE as usize;
        events.truncate(PAGE_SIZE as usize);
        let next = more
            .then(|| events.last().map(|e| e.id.to_string()))
            .flatten();
        Ok((events, next))
    }

    pub async fn list_activity(before: Option<String>) -> Result<Activity, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        // An empty `before=` reaches the function as none at all: read from the address.
        let empty = leptos::prelude::use_context::<http::request::Parts>().is_some_and(|p| {
            p.uri.query().is_some_and(|q| {
                q.split('&')
                    .any(|pair| pair == "before" || pair == "before=")
            })
        });
        let before = if empty {
            before_of(Some(""))?
        } else {
            before_of(before.as_deref())?
        };
        database(&state)?;
        let (events, next_before) = page(&state.auth, user.user_id, before)
            .await
            .map_err(|e| internal("listing the activity failed", e))?;
        Ok(Activity {
            events: events
                .into_iter()
                .map(|e| ActivityEvent {
                    description: describe(&e.kind, &e.detail),
                    id: e.id,
                    at: e.at,
                    kind: e.kind,
                    detail: e.detail,
                    address: e.address,
                    device: e.device,
                    session_id: e.session_id,
                })
                .collect(),
            next_before,
        })
    }

    /// The activity list of the page, for `user`, times written by `clock`, older than
    /// `before` (the page's address, `?before=`).
    pub async fn activity_list(
        auth: &Auth,
        user: &AuthUser,
        clock: &Clock,
        before: Option<&str>,
    ) -> ActivityList {
        let before = match before_of(before) {
            Ok(before) => before,
            Err(e) => {
                return ActivityList {
                    rows: Err(e.description),
                    older: None,
                }
            }
        };
        let listed = match auth.health.check() {
            Ok(()) => page(auth, user.user_id, before).await,
            Err(e) => Err(e.into()),
        };
        match listed {
            Ok((events, older)) => ActivityList {
                rows: Ok(events
                    .into_iter()
                    .map(|e| ActivityRow {
                        when: clock.format(e.at),
                        what: describe(&e.kind, &e.detail),
                        device: if e.device.is_empty() {
                            "Unknown device".into()
                        } else {
                            e.device
                        },
                        address: if e.address.is_empty() {
                            "unknown".into()
                        } else {
                            e.address
                        },
                    })
                    .collect()),
                older,
            },
            Err(e) => ActivityList {
                rows: Err(auth
                    .health
                    .answer("listing the activity failed", &e)
                    .description),
                older: None,
            },
        }
    }

    /// An event in words.
    pub fn describe(kind: &str, detail: &str) -> String {
        use crate::auth::audit::Kind;
        let method = || {
            crate::auth::factors::Method::parse(detail)
                .map_or("an unknown way", |m| m.words())
                .to_lowercase()
        };
        let Some(kind) = Kind::parse(kind) else {
            return "Something else happened".into();
        };
        match kind {
            Kind::SignIn => format!("Signed in ({})", method()),
            Kind::SignInNewDevice => format!("Signed in from a new device ({})", method()),
            Kind::SignInFailed if detail == "code" => {
                "A sign-in failed: the password was right, the code was wrong".into()
            }
            Kind::SignInFailed => "A sign-in failed: wrong password".into(),
            Kind::SessionEnded => match detail {
                "logout" => "Signed out",
                "revoked" => "Signed out from the sessions page",
                "signed_out_elsewhere" => "Signed out by \"Sign out everywhere else\"",
                "reuse" => {
                    "Signed out: a copy of this session's refresh token was used (it may have \
                     been stolen)"
                }
                "password_changed" => "Signed out by a password change",
                "password_reset" => "Signed out by a password reset",
                "factors_changed" => "Signed out by a change of the second factor or passkeys",
                "operator" => "Signed out by the site's administrator",
                "account_disabled" => "Signed out: the account was disabled",
                _ => "Signed out",
            }
            .into(),
            Kind::PasswordChanged => "Password changed".into(),
            Kind::PasswordReset => "Password reset by an e-mailed link".into(),
            Kind::AddressAdded => "E-mail address added".into(),
            Kind::AddressChangeRequested => "A new e-mail address was asked for".into(),
            Kind::AddressVerified => "E-mail address confirmed".into(),
            Kind::AddressChanged => "E-mail address changed".into(),
            Kind::TotpAdded => "Authenticator app turned on".into(),
            Kind::TotpRemoved => "Authenticator app turned off".into(),
            Kind::RecoveryCodesRenewed => "New recovery codes made".into(),
            Kind::PasskeyAdded => "Passkey added".into(),
            Kind::PasskeyRemoved => "Passkey removed".into(),
            Kind::FactorsRemovedByOperator => {
                "Second factors and passkeys removed by the site's administrator".into()
            }
            Kind::SessionsEndedByOperator => {
                "Every session ended by the site's administrator".into()
            }
            Kind::AccountDisabled => "Account disabled by the site's administrator".into(),
            Kind::AccountEnabled => "Account enabled again by the site's administrator".into(),
            Kind::AccountDeleted => "Account deleted".into(),
        }
    }
}
