//! `server admin …`: what the person on call does to one account, against the configured
//! database, while the servers run.
//!
//! - `server admin remove-factors USER`: removes the account's second factors (the
//!   authenticator app and its recovery codes) and its passkeys, for a person who lost all of
//!   them, or whose account someone took over and protected with their own, and proved
//!   who they are another way. The account's credential stamp is replaced, every session of it
//!   ends, and its owner is mailed a notice; the action is logged. `USER` is a username, a
//!   confirmed address, or `#ID`.

use app::auth::{email::Origin, factors::ChangeError, Auth};

use crate::{state::build_auth, Config};

/// What an admin command did, or why it did not.
#[derive(Debug)]
pub enum AdminError {
    /// No such account.
    NoSuchUser(String),
    /// The account is not in the state the command changes (it has no second factor).
    Nothing(String),
    /// The database or the configuration.
    Failed(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSuchUser(who) => write!(f, "no account is named {who:?}"),
            Self::Nothing(what) | Self::Failed(what) => f.write_str(what),
        }
    }
}

/// The account `who` names: `#ID`, a username or a confirmed address. Its id and username.
async fn find(auth: &Auth, who: &str) -> Result<(i64, String), AdminError> {
    let failed =
        |e: &dyn std::fmt::Display| AdminError::Failed(format!("reading the account failed: {e}"));
    let found = match who.strip_prefix('#').map(str::parse::<i64>) {
        Some(Ok(id)) => auth
            .users
            .credentials_of(id)
            .await
            .map_err(|e| failed(&e))?,
        Some(Err(_)) => return Err(AdminError::NoSuchUser(who.to_owned())),
        None => auth
            .users
            .credentials(who.trim())
            .await
            .map_err(|e| failed(&e))?,
    };
    found
        .map(|c| (c.id, c.username))
        .ok_or_else(|| AdminError::NoSuchUser(who.to_owned()))
}

/// `server admin remove-factors USER`: what it did, in words.
pub async fn remove_factors(config: &Config, who: &str) -> Result<String, AdminError> {
    let (auth, _store, _cursor) = build_auth(config)
        .await
        .map_err(|e| AdminError::Failed(e.to_string()))?;
    let (user_id, username) = find(&auth, who).await?;
    let origin = Origin {
        user_agent: "server admin",
        address: None,
    };
    match auth.remove_totp(user_id, None, origin).await {
        Ok(()) => {
            tracing::warn!(
                user_id,
                "admin: the account's second factors were removed; every session of it ended"
            );
            Ok(format!(
                "removed the second factors of {username} (#{user_id}): every session of the \
                 account ended, and its owner is mailed a notice"
            ))
        }
        Err(ChangeError::Conflict) => Err(AdminError::Nothing(format!(
            "{username} (#{user_id}) has no second factor nor passkey: nothing to remove"
        ))),
        Err(e) => Err(AdminError::Failed(format!(
            "removing the second factors failed: {e}"
        ))),
    }
}
