//! The caller's sessions: `GET /api/sessions`, `POST /api/sessions/revoke` and
//! `POST /api/sessions/revoke-others`, and the list the sessions page shows.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;
#[cfg(feature = "ssr")]
use server_fn::ServerFn;

#[cfg(feature = "ssr")]
use super::server::answered;
use crate::error::ApiError;

/// One signed-in session, as the sessions page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub id: String,
    /// The device as a person says it: "Chrome on Linux".
    pub device: String,
    pub user_agent: String,
    /// The client's address at sign-in or at the latest refresh.
    pub address: String,
    pub created_at: i64,
    pub last_used_at: i64,
    /// How it was signed in: `password`, `password_totp`, `recovery_code`, `passkey` or
    /// `reset_link`. A refresh never changes it.
    pub auth_method: String,
    /// When its holder last proved who they are: the sign-in, or a later confirmation
    /// (`POST /api/reauth`).
    pub authenticated_at: i64,
    /// The session this request was made with.
    pub current: bool,
}

/// The sessions list as the sessions page shows it, prepared on the server for the request (see
/// [`crate::pages::sessions`]): the rows, or why they could not be read.
///
/// It travels in the page as text ([`Display`](std::fmt::Display) on the server,
/// [`FromStr`](std::str::FromStr) in the browser): a first line `rows` or `error`, then one line
/// per row with its fields separated by tabs, or the error's text. Decoding that takes a few
/// lines of WASM, where a derived `Deserialize` would bring serde's decoding of structs,
/// sequences and options for these types into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsList(pub Result<Vec<SessionRow>, String>);

/// One row of the sessions page, every value already worded and formatted, so that the browser
/// needs neither the data's types nor the formatting code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// "Chrome on Linux".
    pub device: String,
    /// The client's address, or "unknown".
    pub address: String,
    pub signed_in: String,
    pub last_active: String,
    /// How it was signed in, in words ("Password and authenticator code").
    pub method: String,
    /// The session's id and its "Sign out" button's accessible name; `None` for the session of
    /// this request ("This device"), which is ended by signing out.
    pub sign_out: Option<(String, String)>,
}

impl std::fmt::Display for SessionsList {
    /// Control characters (tabs and line breaks among them) in a value are written as spaces:
    /// they would end its field or its row.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let plain = |f: &mut std::fmt::Formatter<'_>, text: &str| {
            text.chars()
                .try_for_each(|c| f.write_char(if c.is_control() { ' ' } else { c }))
        };
        match &self.0 {
            Ok(rows) => {
                f.write_str("rows")?;
                for row in rows {
                    let SessionRow {
                        device,
                        address,
                        signed_in,
                        last_active,
                        method,
                        sign_out,
                    } = row;
                    let sign_out = sign_out.iter().flat_map(|(id, label)| [id, label]);
                    for (i, field) in [device, address, signed_in, last_active, method]
                        .into_iter()
                        .chain(sign_out)
                        .enumerate()
                    {
                        f.write_char(if i == 0 { '\n' } else { '\t' })?;
                        plain(f, field)?;
                    }
                }
                Ok(())
            }
            Err(error) => {
                f.write_str("error\n")?;
                plain(f, error)
            }
        }
    }
}

impl std::str::FromStr for SessionsList {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        if let Some(error) = text.strip_prefix("error\n") {
            return Ok(SessionsList(Err(error.to_string())));
        }
        let mut lines = text.split('\n');
        if lines.next() != Some("rows") {
            return Err(());
        }
        let mut rows = Vec::new();
        for line in lines {
            rows.push(SessionRow::from_line(line).ok_or(())?);
        }
        Ok(SessionsList(Ok(rows)))
    }
}

impl SessionRow {
    /// Five fields, or seven with the sign-out's.
    fn from_line(line: &str) -> Option<Self> {
        let mut fields = line.split('\t').map(str::to_string);
        let row = SessionRow {
            device: fields.next()?,
            address: fields.next()?,
            signed_in: fields.next()?,
            last_active: fields.next()?,
            method: fields.next()?,
            sign_out: match (fields.next(), fields.next()) {
                (Some(id), Some(label)) => Some((id, label)),
                (None, _) => None,
                (Some(_), None) => return None,
            },
        };
        fields.next().is_none().then_some(row)
    }
}

/// The answer to ending sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SessionsEnded {
    pub ended: usize,
}

/// `GET /api/sessions`: the caller's live sessions, most recently used first.
#[server(prefix = "/api", endpoint = "sessions", input = GetUrl)]
pub async fn list_sessions() -> Result<Vec<SessionInfo>, ApiError> {
    answered(ListSessions::PATH, server::list_sessions().await)
}

/// `POST /api/sessions/revoke` (`id`): ends one of the caller's sessions; 404 for any other id.
#[server(prefix = "/api", endpoint = "sessions/revoke")]
pub async fn end_session(id: String) -> Result<SessionsEnded, ApiError> {
    answered(EndSession::PATH, server::end_session(id).await)
}

/// `POST /api/sessions/revoke`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSessionBody {
    /// The session's `id`, as `GET /api/sessions` lists it.
    id: String,
}

#[cfg(feature = "ssr")]
impl From<RevokeSessionBody> for EndSession {
    fn from(b: RevokeSessionBody) -> Self {
        let RevokeSessionBody { id } = b;
        Self { id }
    }
}

/// `POST /api/sessions/revoke-others`: ends every session of the caller but this one.
#[server(prefix = "/api", endpoint = "sessions/revoke-others")]
pub async fn end_other_sessions() -> Result<SessionsEnded, ApiError> {
    answered(EndOtherSessions::PATH, server::end_other_sessions().await)
}

#[cfg(feature = "ssr")]
impl From<super::contract::NoFields> for EndOtherSessions {
    fn from(super::contract::NoFields {}: super::contract::NoFields) -> Self {
        Self {}
    }
}

#[cfg(feature = "ssr")]
pub mod server {
    use super::*;
    use crate::api::server::*;
    use crate::auth::{
        access::AuthUser,
        sessions::{describe_device, EndReason},
        tokens::access::now_unix,
        Auth, HealthAnswer,
    };
    use crate::clock::Clock;
    use leptos_axum::redirect;

    pub async fn list_sessions() -> Result<Vec<SessionInfo>, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        database(&state)?;
        let sessions = state
            .auth
            .sessions
            .list(user.user_id, now_unix())
            .await
            .map_err(|e| internal("listing sessions failed", e))?;
        Ok(sessions
            .into_iter()
            .map(|s| session_info(s, user.session_id))
            .collect())
    }

    /// The sessions list of the sessions page, prepared for `user` with times written by
    /// `clock` (see [`crate::pages::sessions`]).
    pub async fn sessions_list(auth: &Auth, user: &AuthUser, clock: &Clock) -> SessionsList {
        let listed = match auth.health.check() {
            Ok(()) => auth.sessions.list(user.user_id, now_unix()).await,
            Err(e) => Err(e.into()),
        };
        SessionsList(match listed {
            Ok(sessions) => Ok(sessions
                .into_iter()
                .map(|s| session_row(&session_info(s, user.session_id), clock))
                .collect()),
            Err(e) => Err(auth
                .health
                .answer("listing sessions failed", &e)
                .description),
        })
    }

    fn session_info(s: crate::auth::sessions::Session, current: uuid::Uuid) -> SessionInfo {
        SessionInfo {
            id: s.id.0.to_string(),
            device: describe_device(&s.user_agent),
            current: s.id.0 == current,
            user_agent: s.user_agent,
            address: s.address,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            auth_method: s.auth_method,
            authenticated_at: s.authenticated_at,
        }
    }

    /// A session as the sessions page shows it: times as the reader's clock writes them, an
    /// empty address as "unknown".
    pub fn session_row(s: &SessionInfo, clock: &Clock) -> SessionRow {
        let address = if s.address.is_empty() {
            "unknown".to_string()
        } else {
            s.address.clone()
        };
        SessionRow {
            sign_out: (!s.current)
                .then(|| (s.id.clone(), format!("Sign out {} at {address}", s.device))),
            device: s.device.clone(),
            address,
            signed_in: clock.format(s.created_at),
            last_active: clock.format(s.last_used_at),
            method: crate::auth::factors::Method::parse(&s.auth_method)
                .map_or("Unknown", |m| m.words())
                .to_owned(),
        }
    }

    pub async fn end_session(id: String) -> Result<SessionsEnded, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        // A malformed id is as unknown as someone else's.
        let id = uuid::Uuid::parse_str(id.trim()).map_err(|_| ApiError::no_such_session())?;
        database(&state)?;
        let auth = state.auth.clone();
        let ended = detached("the revoke task failed", async move {
            auth.sessions
                .end_one(
                    id,
                    Some(user.user_id),
                    EndReason::EndedOnSessionsPage,
                    now_unix(),
                )
                .await
        })
        .await?
        .map_err(|e| not_written("ending a session failed", e))?;
        if !ended {
            return Err(ApiError::no_such_session());
        }
        tracing::info!(
            user_id = user.user_id,
            "a session was ended from the sessions page"
        );
        if id == user.session_id {
            clear_session_cookies(&state.auth);
            redirect("/");
        } else {
            redirect("/sessions");
        }
        Ok(SessionsEnded { ended: 1 })
    }

    pub async fn end_other_sessions() -> Result<SessionsEnded, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        database(&state)?;
        let auth = state.auth.clone();
        let ended = detached("the revoke task failed", async move {
            auth.sessions
                .end_all(
                    user.user_id,
                    Some(user.session_id),
                    EndReason::SignedOutElsewhere,
                    None,
                    now_unix(),
                )
                .await
        })
        .await?
        .map_err(|e| not_written("ending sessions failed", e))?;
        tracing::info!(user_id = user.user_id, ended, "signed out everywhere else");
        redirect(&format!("/sessions?ended={ended}"));
        Ok(SessionsEnded { ended })
    }
}
