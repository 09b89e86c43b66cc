//! The account: the signed-in user (`GET /api/me`, `GET /api/whoami`), changing the password
//! (`POST /api/password`) and deleting the account (`POST /api/account/delete`).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;
#[cfg(feature = "ssr")]
use server_fn::ServerFn;

#[cfg(feature = "ssr")]
use super::server::answered;
use super::TokenResponse;
use crate::error::ApiError;

/// The signed-in user as the UI and `/api/me` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SignedInUser {
    pub user_id: i64,
    pub username: String,
    /// When the account was created (unix seconds).
    pub created_at: i64,
    /// When the access token expires (unix seconds).
    pub expires_at: i64,
    /// Seconds until then, as the server counted when it answered (the browser's clock may be
    /// off: the UI schedules its refresh by this).
    pub expires_in: i64,
}

/// The answer to deleting an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AccountDeleted {
    pub deleted: bool,
}

/// `POST /api/password`: changes the password (the current one is checked, throttled per
/// session), ends every other session and rotates this one's tokens.
#[server(prefix = "/api", endpoint = "password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
    new_password_confirm: Option<String>,
) -> Result<TokenResponse, ApiError> {
    answered(
        ChangePassword::PATH,
        server::change_password(current_password, new_password, new_password_confirm).await,
    )
}

/// `POST /api/password`. The page's form also sends `new_password_confirm`, which must then
/// equal `new_password`; API clients leave it out.
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    current_password: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    new_password: String,
    #[serde(default)]
    #[schema(ignore)]
    new_password_confirm: Option<String>,
}

#[cfg(feature = "ssr")]
impl From<ChangePasswordBody> for ChangePassword {
    fn from(b: ChangePasswordBody) -> Self {
        let ChangePasswordBody {
            current_password,
            new_password,
            new_password_confirm,
        } = b;
        Self {
            current_password,
            new_password,
            new_password_confirm,
        }
    }
}

/// `POST /api/account/delete` (`password`): deletes the account and everything of it; every
/// session and token is refused at once.
#[server(prefix = "/api", endpoint = "account/delete")]
pub async fn delete_account(password: String) -> Result<AccountDeleted, ApiError> {
    answered(DeleteAccount::PATH, server::delete_account(password).await)
}

/// `POST /api/account/delete`
#[cfg(feature = "ssr")]
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountBody {
    /// The account's current password.
    password: String,
}

#[cfg(feature = "ssr")]
impl From<DeleteAccountBody> for DeleteAccount {
    fn from(b: DeleteAccountBody) -> Self {
        let DeleteAccountBody { password } = b;
        Self { password }
    }
}

/// `GET /api/whoami`: like `/api/me`, but "no token" is `null` rather than a 401,
/// so every page can ask it. A bad token is still a 401 with its reason.
#[server(prefix = "/api", endpoint = "whoami", input = GetUrl)]
pub async fn current_user() -> Result<Option<SignedInUser>, ApiError> {
    answered(CurrentUser::PATH, server::current_user().await)
}

#[cfg(feature = "ssr")]
pub mod server {
    use super::*;
    use crate::api::server::*;
    use crate::auth::{
        access::{AuthRejection, AuthUser},
        credentials::{self, Attempt},
        extractor::{MaybeAuthUser, SignedIn},
        tokens::access::now_unix,
        users, AppState,
    };
    use crate::validate;
    use leptos_axum::{extract, redirect};

    /// The signed-in user's name, once the password given is theirs. Counted per session before
    /// any password work, not on the account's ceiling nor the address: an attack on the
    /// account cannot stop its owner from changing the password (see
    /// [`credentials::check_password`]).
    pub(crate) async fn check_password(
        state: &AppState,
        user: &AuthUser,
        password: String,
    ) -> Result<String, ApiError> {
        // Outside the rules, it is no account's password: counted, then refused unhashed.
        let password = validate::password(&password).is_ok().then_some(password);
        let attempt = Attempt::SignedIn {
            user_id: user.user_id,
            session: user.session_id,
        };
        let checked = credentials::check_password(&state.auth, attempt, password)
            .await
            .map_err(|e| {
                check_refused(e, "the password check count failed", || {
                    tracing::info!(user_id = user.user_id, "wrong current password");
                    ApiError::wrong_password()
                })
            })?;
        Ok(checked.user.username)
    }

    pub async fn change_password(
        current_password: String,
        new_password: String,
        new_password_confirm: Option<String>,
    ) -> Result<TokenResponse, ApiError> {
        validate::password(&new_password).map_err(ApiError::invalid_input)?;
        if let Some(confirm) = new_password_confirm.filter(|c| !c.is_empty()) {
            if confirm != new_password {
                return Err(ApiError::invalid_input(validate::PASSWORDS_DIFFER));
            }
        }
        let state = state()?;
        let user = crate::api::factors::server::fresh_caller(&state).await?;
        let username = check_password(&state, &user, current_password).await?;
        let hash = hashing_ticket(&state)?
            .hash(new_password)
            .await
            .map_err(|e| internal("password hashing failed", e))?;
        let auth = state.auth.clone();
        let requester = Requester::of(&state).await;
        let renewed = detached("the password task failed", async move {
            let origin = requester.origin();
            auth.change_password(user.user_id, user.session_id, &hash, now_unix(), origin)
                .await
        })
        .await?
        .map_err(|e| not_written("changing a password failed", e))?;
        let current = renewed.ok_or_else(ApiError::session_ended)?;
        let issued = state
            .auth
            .issue(&current, now_unix())
            .map_err(|e| internal("signing a token failed", e))?;
        set_session_cookies(&state.auth, &issued);
        tracing::info!(
            user_id = user.user_id,
            "password changed; other sessions ended"
        );
        redirect("/account?changed=1");
        Ok(token_response(
            &issued,
            username,
            user.source == crate::auth::access::TokenSource::Cookie,
        ))
    }

    pub async fn delete_account(password: String) -> Result<AccountDeleted, ApiError> {
        let state = state()?;
        let user = crate::api::factors::server::fresh_caller(&state).await?;
        check_password(&state, &user, password).await?;
        let auth = state.auth.clone();
        let requester = Requester::of(&state).await;
        detached("the account deletion task failed", async move {
            let origin = requester.origin();
            auth.delete_account(user.user_id, now_unix(), origin, "owner")
                .await
        })
        .await?
        .map_err(|e| not_written("deleting an account failed", e))?;
        clear_session_cookies(&state.auth);
        // Its proofs name an account that is gone: worth nothing, so not kept either.
        set_cookie(state.auth.cookie.clear_device());
        tracing::info!(user_id = user.user_id, "account deleted");
        redirect("/?deleted=1");
        Ok(AccountDeleted { deleted: true })
    }

    /// `GET /api/me`: the signed-in user, or 401 with the reason. A plain axum handler whose
    /// extractor ([`SignedIn`]) hands over the user the token check found: the API's hottest
    /// route skips the server-function machinery and a second look-up, and the browser (which
    /// asks `/api/whoami`) does not need it.
    pub async fn me_handler(signed_in: SignedIn) -> axum::Json<SignedInUser> {
        axum::Json(signed_in_user(&signed_in.user, signed_in.auth))
    }

    fn signed_in_user(found: &users::User, user: AuthUser) -> SignedInUser {
        SignedInUser {
            user_id: found.id,
            username: found.username.clone(),
            created_at: found.created_at,
            expires_at: user.exp,
            expires_in: (user.exp - now_unix()).max(0),
        }
    }

    async fn current_user_of(state: &AppState, user: AuthUser) -> Result<SignedInUser, ApiError> {
        let found = state
            .auth
            .users
            .shared(user.user_id)
            .await
            .map_err(|e| internal("looking up a user failed", e))?;
        // A valid token for a user that no longer exists is no session.
        let found = found.ok_or_else(|| ApiError::from(AuthRejection::InvalidToken))?;
        Ok(signed_in_user(&found, user))
    }

    pub async fn current_user() -> Result<Option<SignedInUser>, ApiError> {
        let MaybeAuthUser(user) = extract::<Result<MaybeAuthUser, ApiError>>()
            .await
            .map_err(|e| internal("cannot read the request", e))??;
        match user {
            Some(user) => current_user_of(&state()?, user).await.map(Some),
            None => Ok(None),
        }
    }
}
