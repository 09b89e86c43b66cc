//! Passkeys: signing in with one (`POST /api/passkeys/sign-in/begin`, then
//! `/api/passkeys/sign-in`), adding one (`/api/passkeys/register/begin`, then
//! `/api/passkeys/register`), confirming it is you with one (`/api/passkeys/reauth`), and the
//! account's list (`GET /api/passkeys`, `/api/passkeys/rename`, `/api/passkeys/remove`).
//!
//! A ceremony is two requests: `begin` answers the options for `navigator.credentials` (JSON
//! text, as the browser's `PublicKeyCredential.parse…OptionsFromJSON` takes it) and a
//! `ceremony` token; the second sends the token back with the browser's credential (JSON text,
//! as `PublicKeyCredential.toJSON()` gives it). The site's own pages do this in
//! `public/passkeys.js`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;
#[cfg(feature = "ssr")]
use server_fn::ServerFn;

#[cfg(feature = "ssr")]
use super::server::answered;
use super::{Reauthenticated, TokenResponse};
use crate::error::ApiError;

/// The first half of a ceremony.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PasskeyChallenge {
    /// Sent back with the credential (`wa1.…`); good once, for 5 minutes.
    pub ceremony: String,
    /// `{"publicKey": {…}}` (and `"mediation"` for a sign-in), as JSON text.
    pub options: String,
}

/// A passkey of the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PasskeyInfo {
    /// What `/api/passkeys/rename` and `/api/passkeys/remove` take to name it.
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// Whether the key says it is backed up (synced to the person's other devices).
    pub backed_up: bool,
}

/// `POST /api/passkeys/sign-in/begin`: the options of a usernameless sign-in.
#[server(prefix = "/api", endpoint = "passkeys/sign-in/begin")]
pub async fn passkey_sign_in_begin() -> Result<PasskeyChallenge, ApiError> {
    answered(PasskeySignInBegin::PATH, server::sign_in_begin().await)
}

/// `POST /api/passkeys/sign-in` (`ceremony`, `credential`): signs in with the passkey, on its
/// own (no second step); answers as `POST /api/login`.
#[server(prefix = "/api", endpoint = "passkeys/sign-in")]
pub async fn passkey_sign_in(
    ceremony: String,
    credential: String,
    next: Option<String>,
) -> Result<TokenResponse, ApiError> {
    answered(
        PasskeySignIn::PATH,
        server::sign_in(ceremony, credential, next).await,
    )
}

/// `POST /api/passkeys/sign-in`, `/api/passkeys/reauth`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAssertionBody {
    /// The `ceremony` of the begin's answer.
    ceremony: String,
    /// The browser's credential (`PublicKeyCredential.toJSON()`), as JSON text.
    credential: String,
    /// Where a browser goes next (a path on this site).
    #[serde(default)]
    next: Option<String>,
}

#[cfg(feature = "ssr")]
impl From<PasskeyAssertionBody> for PasskeySignIn {
    fn from(b: PasskeyAssertionBody) -> Self {
        let PasskeyAssertionBody {
            ceremony,
            credential,
            next,
        } = b;
        Self {
            ceremony,
            credential,
            next,
        }
    }
}

#[cfg(feature = "ssr")]
impl From<PasskeyAssertionBody> for PasskeyReauth {
    fn from(b: PasskeyAssertionBody) -> Self {
        let PasskeyAssertionBody {
            ceremony,
            credential,
            ..
        } = b;
        Self {
            ceremony,
            credential,
        }
    }
}

/// `POST /api/passkeys/reauth` (`ceremony` of a sign-in begin, `credential`): confirms it is
/// you with a passkey of this account, as `POST /api/reauth` does with the password.
#[server(prefix = "/api", endpoint = "passkeys/reauth")]
pub async fn passkey_reauth(
    ceremony: String,
    credential: String,
) -> Result<Reauthenticated, ApiError> {
    answered(
        PasskeyReauth::PATH,
        server::reauth(ceremony, credential).await,
    )
}

/// `POST /api/passkeys/register/begin`: the options that make a new passkey for this account.
/// Needs a fresh authentication.
#[server(prefix = "/api", endpoint = "passkeys/register/begin")]
pub async fn passkey_register_begin() -> Result<PasskeyChallenge, ApiError> {
    answered(PasskeyRegisterBegin::PATH, server::register_begin().await)
}

/// `POST /api/passkeys/register` (`ceremony`, `credential` [, `name`]): stores the new passkey;
/// every other session ends and the owner is told.
#[server(prefix = "/api", endpoint = "passkeys/register")]
pub async fn passkey_register(
    ceremony: String,
    credential: String,
    name: Option<String>,
) -> Result<PasskeyInfo, ApiError> {
    answered(
        PasskeyRegister::PATH,
        server::register(ceremony, credential, name).await,
    )
}

/// `POST /api/passkeys/register`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegisterBody {
    /// The `ceremony` of the begin's answer.
    ceremony: String,
    /// The browser's new credential (`PublicKeyCredential.toJSON()`), as JSON text.
    credential: String,
    /// What to call it (else the device's name, "Chrome on Linux"); at most 64 characters.
    #[serde(default)]
    name: Option<String>,
}

#[cfg(feature = "ssr")]
impl From<PasskeyRegisterBody> for PasskeyRegister {
    fn from(b: PasskeyRegisterBody) -> Self {
        let PasskeyRegisterBody {
            ceremony,
            credential,
            name,
        } = b;
        Self {
            ceremony,
            credential,
            name,
        }
    }
}

/// `GET /api/passkeys`: the caller's passkeys, oldest first.
#[server(prefix = "/api", endpoint = "passkeys", input = GetUrl)]
pub async fn list_passkeys() -> Result<Vec<PasskeyInfo>, ApiError> {
    answered(ListPasskeys::PATH, server::list().await)
}

/// `POST /api/passkeys/rename` (`id`, `name`): the list as it is now.
#[server(prefix = "/api", endpoint = "passkeys/rename")]
pub async fn rename_passkey(id: String, name: String) -> Result<Vec<PasskeyInfo>, ApiError> {
    answered(RenamePasskey::PATH, server::rename(id, name).await)
}

/// `POST /api/passkeys/rename`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenamePasskeyBody {
    /// The passkey's `id`.
    id: String,
    /// Its new name: at most 64 characters (longer is cut).
    name: String,
}

#[cfg(feature = "ssr")]
impl From<RenamePasskeyBody> for RenamePasskey {
    fn from(b: RenamePasskeyBody) -> Self {
        Self {
            id: b.id,
            name: b.name,
        }
    }
}

/// `POST /api/passkeys/remove` (`id`): removes the passkey; every other session ends and the
/// owner is told. Needs a fresh authentication. The list as it is now.
#[server(prefix = "/api", endpoint = "passkeys/remove")]
pub async fn remove_passkey(id: String) -> Result<Vec<PasskeyInfo>, ApiError> {
    answered(RemovePasskey::PATH, server::remove(id).await)
}

/// `POST /api/passkeys/remove`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemovePasskeyBody {
    /// The passkey's `id`.
    id: String,
}

#[cfg(feature = "ssr")]
impl From<RemovePasskeyBody> for RemovePasskey {
    fn from(b: RemovePasskeyBody) -> Self {
        Self { id: b.id }
    }
}

#[cfg(feature = "ssr")]
impl From<super::contract::NoFields> for PasskeySignInBegin {
    fn from(super::contract::NoFields {}: super::contract::NoFields) -> Self {
        Self {}
    }
}

#[cfg(feature = "ssr")]
impl From<super::contract::NoFields> for PasskeyRegisterBegin {
    fn from(super::contract::NoFields {}: super::contract::NoFields) -> Self {
        Self {}
    }
}

#[cfg(feature = "ssr")]
pub mod server {
    use super::*;
    use crate::api::factors::server::fresh_caller;
    use crate::api::server::*;
    use crate::api::sign_in::server::{not_started, signed_in};
    use crate::auth::{
        factors::{passkeys::PasskeyError, ChangeError},
        throttle::Throttled,
        tokens::access::now_unix,
        AppState,
    };
    use crate::store::passkeys::PasskeyRow;
    use crate::validate;
    use leptos_axum::redirect;

    fn info(row: PasskeyRow) -> PasskeyInfo {
        PasskeyInfo {
            id: row.id.to_string(),
            name: row.name,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            backed_up: row.backed_up != 0,
        }
    }

    /// A ceremony that did not go through.
    pub(crate) fn refused(e: PasskeyError) -> ApiError {
        match e {
            PasskeyError::Off => ApiError::passkeys_off(),
            PasskeyError::CeremonyOver => ApiError::ceremony_expired(),
            // What cannot be read as a credential did not verify either.
            PasskeyError::Malformed(why) => {
                tracing::info!(why, "passkey refused: not a credential");
                ApiError::passkey_refused()
            }
            PasskeyError::Refused(why) => {
                tracing::info!(why, "passkey refused");
                ApiError::passkey_refused()
            }
            PasskeyError::Taken => ApiError::factor_conflict("That passkey is registered already."),
            PasskeyError::Disabled => ApiError::account_disabled(),
            PasskeyError::Change(ChangeError::SessionOver) => ApiError::session_ended(),
            PasskeyError::Change(ChangeError::Write(e)) => {
                not_written("changing a passkey failed", e)
            }
            PasskeyError::Change(e) => internal("changing a passkey failed", e),
            PasskeyError::Store(e) => internal("a passkey ceremony failed", e),
        }
    }

    async fn counted(state: &AppState) -> Result<(), ApiError> {
        database(state)?;
        state
            .auth
            .throttle
            .ceremony(client_addr(state).await)
            .await
            .map_err(|t| match t {
                Throttled::TooMany { retry_after } => ApiError::too_many_requests(retry_after),
                Throttled::Unavailable => throttle_unavailable(),
            })
    }

    fn challenge((ceremony, options): (String, String)) -> PasskeyChallenge {
        PasskeyChallenge { ceremony, options }
    }

    pub async fn sign_in_begin() -> Result<PasskeyChallenge, ApiError> {
        let state = state()?;
        counted(&state).await?;
        state
            .auth
            .begin_passkey_sign_in()
            .await
            .map(challenge)
            .map_err(refused)
    }

    pub async fn sign_in(
        ceremony: String,
        credential: String,
        next: Option<String>,
    ) -> Result<TokenResponse, ApiError> {
        let state = state()?;
        database(&state)?;
        let auth = state.auth.clone();
        let requester = Requester::of(&state).await;
        // The proof of an earlier sign-in from this browser, if it has one: no "new device"
        // notice then.
        let proofs: Vec<String> = use_context::<http::request::Parts>()
            .and_then(|p| auth.cookie.read_device(&p.headers).map(str::to_owned))
            .into_iter()
            .collect();
        // The ceremony spent, the counter written and the session started in a task of their
        // own: a client that hangs up does not leave the ceremony spent for nothing.
        let finished = detached("the passkey sign-in task failed", {
            let auth = auth.clone();
            async move {
                let proof = auth
                    .finish_passkey_sign_in(&ceremony, &credential, &proofs)
                    .await?;
                let issued = auth
                    .start_session(&proof, &requester.agent, requester.address)
                    .await;
                Ok::<_, PasskeyError>((proof, issued))
            }
        })
        .await?;
        let (proof, issued) = finished.map_err(refused)?;
        let issued = issued
            .map_err(not_started)?
            .ok_or_else(ApiError::passkey_refused)?;
        tracing::info!(
            user_id = proof.user().id,
            method = "passkey",
            "login succeeded"
        );
        let next = validate::safe_next(next.as_deref()).unwrap_or_else(|| "/profile".into());
        Ok(signed_in(&auth, &proof, &issued, &next))
    }

    pub async fn reauth(ceremony: String, credential: String) -> Result<Reauthenticated, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        database(&state)?;
        let auth = state.auth.clone();
        detached("the passkey confirmation task failed", async move {
            auth.reauthenticate_with_passkey(user.user_id, user.session_id, &ceremony, &credential)
                .await
        })
        .await?
        .map_err(refused)?;
        tracing::info!(
            user_id = user.user_id,
            "session reauthenticated with a passkey"
        );
        let window = crate::auth::sessions::secs(state.auth.factors.reauth_window);
        Ok(Reauthenticated {
            fresh_until: now_unix().saturating_add(window),
        })
    }

    pub async fn register_begin() -> Result<PasskeyChallenge, ApiError> {
        let state = state()?;
        let user = fresh_caller(&state).await?;
        counted(&state).await?;
        let username = state
            .auth
            .users
            .get(user.user_id)
            .await
            .map_err(|e| internal("looking up a user failed", e))?
            .ok_or_else(ApiError::session_ended)?
            .username;
        state
            .auth
            .begin_passkey_registration(user.user_id, user.session_id, &username)
            .await
            .map(challenge)
            .map_err(refused)
    }

    pub async fn register(
        ceremony: String,
        credential: String,
        name: Option<String>,
    ) -> Result<PasskeyInfo, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        database(&state)?;
        let auth = state.auth.clone();
        let requester = Requester::of(&state).await;
        let added = detached("adding a passkey failed", async move {
            auth.finish_passkey_registration(
                user.user_id,
                user.session_id,
                &ceremony,
                &credential,
                name.as_deref().unwrap_or_default(),
                requester.origin(),
            )
            .await
        })
        .await?
        .map_err(refused)?;
        tracing::info!(user_id = user.user_id, "passkey added");
        Ok(info(added))
    }

    async fn listed(state: &AppState, user_id: i64) -> Result<Vec<PasskeyInfo>, ApiError> {
        state
            .auth
            .passkeys(user_id)
            .await
            .map(|rows| rows.into_iter().map(info).collect())
            .map_err(|e| internal("listing passkeys failed", e))
    }

    pub async fn list() -> Result<Vec<PasskeyInfo>, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        database(&state)?;
        listed(&state, user.user_id).await
    }

    /// A passkey's id as the API names it; what is no number names no passkey.
    fn passkey_id(id: &str) -> Result<i64, ApiError> {
        id.trim().parse().map_err(|_| ApiError::no_such_passkey())
    }

    pub async fn rename(id: String, name: String) -> Result<Vec<PasskeyInfo>, ApiError> {
        let state = state()?;
        let user = authenticate().await?;
        database(&state)?;
        let id = passkey_id(&id)?;
        let renamed = state
            .auth
            .rename_passkey(user.user_id, id, &name)
            .await
            .map_err(|e| internal("renaming a passkey failed", e))?;
        if !renamed {
            return Err(ApiError::no_such_passkey());
        }
        redirect("/security?passkey=renamed");
        listed(&state, user.user_id).await
    }

    pub async fn remove(id: String) -> Result<Vec<PasskeyInfo>, ApiError> {
        let state = state()?;
        let user = fresh_caller(&state).await?;
        let id = passkey_id(&id)?;
        let auth = state.auth.clone();
        let requester = Requester::of(&state).await;
        detached("removing a passkey failed", async move {
            auth.remove_passkey(user.user_id, user.session_id, id, requester.origin())
                .await
        })
        .await?
        .map_err(|e| match e {
            ChangeError::Conflict => ApiError::no_such_passkey(),
            e => refused(PasskeyError::Change(e)),
        })?;
        tracing::info!(user_id = user.user_id, "passkey removed");
        redirect("/security?passkey=removed");
        listed(&state, user.user_id).await
    }
}
