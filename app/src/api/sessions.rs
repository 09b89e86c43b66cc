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
    /// The session this request was made with.
    pub current: bool,
}

/// The sessions list of the sessions page as HTML, rendered on the server for the request (see
/// [`crate::pages::sessions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsFragment(pub String);

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
    use crate::api::{escape, server::*};
    use crate::auth::{
        access::AuthUser,
        sessions::{describe_device, EndReason},
        tokens::access::now_unix,
        Auth, HealthAnswer,
    };
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

    /// The sessions list of the sessions page, rendered for `user` (see
    /// [`crate::pages::sessions`]).
    pub async fn sessions_fragment(auth: &Auth, user: &AuthUser) -> SessionsFragment {
        let listed = match auth.health.check() {
            Ok(()) => auth.sessions.list(user.user_id, now_unix()).await,
            Err(e) => Err(e.into()),
        };
        match listed {
            Ok(sessions) => {
                let listed: Vec<SessionInfo> = sessions
                    .into_iter()
                    .map(|s| session_info(s, user.session_id))
                    .collect();
                SessionsFragment(render_sessions(&listed))
            }
            Err(e) => {
                let err = auth.health.answer("listing sessions failed", &e);
                SessionsFragment(format!(
                    r#"<p class="form-error" role="alert">{}</p>"#,
                    escape(&err.description)
                ))
            }
        }
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
        }
    }

    /// The sessions list of the sessions page. Everything that comes from a request (the user
    /// agent, above all: anyone signing in chooses it) is escaped.
    pub fn render_sessions(sessions: &[SessionInfo]) -> String {
        use crate::clock::utc;
        use std::fmt::Write;
        let mut html = String::from(r#"<ul class="sessions" data-testid="sessions">"#);
        for s in sessions {
            let device = escape(&s.device);
            let address = if s.address.is_empty() {
                "unknown".to_string()
            } else {
                escape(&s.address)
            };
            let _ = write!(
                html,
                r#"<li class="session" data-testid="session" data-current="{current}"><p class="device"><strong>{device}</strong>{badge}</p><dl><dt>Address</dt><dd>{address}</dd><dt>Signed in</dt><dd>{created}</dd><dt>Last active</dt><dd>{used}</dd></dl>"#,
                current = s.current,
                badge = if s.current {
                    r#" <span class="badge" data-testid="this-device">This device</span>"#
                } else {
                    ""
                },
                created = utc(s.created_at),
                used = utc(s.last_used_at),
            );
            if !s.current {
                let _ = write!(
                    html,
                    r#"<form action="{action}" method="post"><input type="hidden" name="id" value="{id}"><button type="submit" aria-label="Sign out {device} at {address}">Sign out</button></form>"#,
                    action = EndSession::PATH,
                    id = escape(&s.id),
                );
            }
            html.push_str("</li>");
        }
        html.push_str("</ul>");
        html
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
