//! Second factors and fresh authentication.
//!
//! - **TOTP** ([`totp`]): an authenticator app's secret, sealed at rest under the server's
//!   [`FactorKey`]; enrolled in two steps (a secret shown, then confirmed by its first code),
//!   then asked for at every password sign-in. A code is accepted once.
//! - **Recovery codes** ([`recovery`]): ten, shown once when TOTP is confirmed, each accepted
//!   once in place of a code; a new set replaces the old.
//! - **The sign-in half-way** ([`Auth::hold_sign_in`], [`Auth::finish_sign_in`]): a right
//!   password for an account with a second factor starts no session; a short-lived token,
//!   bound to the credential stamp it read, waits for the code.
//! - **Fresh authentication** ([`Auth::require_fresh`], [`Auth::reauthenticate`]): dangerous
//!   changes need a sign-in (or a confirmation with the password) within `REAUTH_WINDOW`; a
//!   refresh never makes a session fresh.
//!
//! Every wrong code is counted on the account ([`crate::throttle::Limit::Code`]) before it is
//! checked, as a wrong password is.

pub mod key;
pub mod passkeys;
pub mod recovery;
pub mod totp;

use std::time::Duration;

pub use key::FactorKey;

use crate::{
    authn::{Pending, Proof},
    email::{Origin, Told},
    mail::compose::{FactorChange, Notice},
    sessions::WriteError,
    store::{
        factors::{FactorWritten, Finished, Spend},
        StoreError,
    },
    throttle::{Throttled, Via},
    tokens::access::now_unix,
    Auth,
};

/// How a session was signed in, as its row records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Password,
    /// A password, then an authenticator's code.
    PasswordTotp,
    /// A password, then a recovery code.
    RecoveryCode,
    Passkey,
    /// A mailed reset link that set a new password (and the second factor, if the account has
    /// one).
    ResetLink,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::PasswordTotp => "password_totp",
            Self::RecoveryCode => "recovery_code",
            Self::Passkey => "passkey",
            Self::ResetLink => "reset_link",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        [
            Self::Password,
            Self::PasswordTotp,
            Self::RecoveryCode,
            Self::Passkey,
            Self::ResetLink,
        ]
        .into_iter()
        .find(|m| m.as_str() == stored)
    }

    /// In words, for the sessions page.
    pub fn words(self) -> &'static str {
        match self {
            Self::Password => "Password",
            Self::PasswordTotp => "Password and authenticator code",
            Self::RecoveryCode => "Password and recovery code",
            Self::Passkey => "Passkey",
            Self::ResetLink => "Password reset link",
        }
    }
}

/// The settings of second factors and fresh authentication.
#[derive(Debug, Clone)]
pub struct Factors {
    pub key: FactorKey,
    /// Dangerous changes need an authentication this recent (`REAUTH_WINDOW`, 10 minutes).
    pub reauth_window: Duration,
    /// A sign-in waits this long for its second factor (5 minutes).
    pub pending_ttl: Duration,
    /// The name authenticator apps show for the account (`APP_NAME`).
    pub issuer: String,
    /// The relying party of passkeys (`None`: passkeys are off, the site has no domain name).
    pub passkeys: Option<passkeys::PasskeySettings>,
}

impl Factors {
    pub fn new(key: FactorKey) -> Self {
        Self {
            key,
            reauth_window: Duration::from_secs(600),
            pending_ttl: Duration::from_secs(300),
            issuer: "Auth App".into(),
            passkeys: None,
        }
    }
}

/// What an account has of second factors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorStatus {
    /// When TOTP was confirmed, if it is on.
    pub totp_since: Option<i64>,
    /// Unused recovery codes.
    pub recovery_left: i64,
}

/// A TOTP enrolment waiting for its first code: what the page shows.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The secret in base32, to type by hand.
    pub secret: String,
    /// The `otpauth://` address in the QR code.
    pub url: String,
    /// The QR code, as an SVG document.
    pub qr_svg: String,
}

/// Proof that a second factor of `user_id` was just checked and spent (see
/// [`Auth::accept_code`]): what a reset of an account with two-step sign-in takes. Made only
/// there.
#[derive(Debug)]
pub struct CodeAccepted {
    user_id: i64,
    method: Method,
}

impl CodeAccepted {
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    pub fn method(&self) -> Method {
        self.method
    }
}

/// Why a second factor was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// Neither a code of the authenticator now (or already used) nor an unused recovery code.
    #[error("wrong code")]
    Wrong,
    #[error("throttled: {0:?}")]
    Throttled(Throttled),
    /// The database is known to be unreachable.
    #[error("the database cannot be reached")]
    DatabaseDown,
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Why the second step of a sign-in did not finish.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    /// The half-way sign-in is unknown, used, expired, or its account's credentials changed:
    /// sign in again.
    #[error("the sign-in is over")]
    Over,
    #[error("{0}")]
    Code(#[from] CodeError),
}

impl From<StoreError> for FinishError {
    fn from(e: StoreError) -> Self {
        Self::Code(CodeError::Store(e))
    }
}

/// Why a factor change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// TOTP is already on (enrolling), or not on (removing, renewing the codes), or no
    /// enrolment is waiting (confirming).
    #[error("not in the state the change needs")]
    Conflict,
    /// The session the change was made in has ended.
    #[error("the session has ended")]
    SessionOver,
    #[error("{0}")]
    Code(#[from] CodeError),
    #[error("{0}")]
    Write(#[from] WriteError),
}

impl From<StoreError> for ChangeError {
    fn from(e: StoreError) -> Self {
        Self::Write(WriteError::Db(e))
    }
}

/// Why a confirmation of who the session's holder is (reauthentication) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReauthError {
    #[error("{0}")]
    Password(#[from] crate::credentials::CheckError),
    /// The account has a second factor, and no code was given.
    #[error("a code is needed")]
    CodeNeeded,
    #[error("{0}")]
    Code(#[from] CodeError),
    #[error("the session has ended")]
    SessionOver,
}

/// The token of a sign-in half-way: `ps1.` and 32 random bytes (base64url).
const PENDING_PREFIX: &str = "ps1.";
/// The token of a WebAuthn ceremony, likewise.
const CEREMONY_PREFIX: &str = "wa1.";

/// The SHA-256 kept of a token made by [`new_token`] with `prefix`; `None` for anything else.
fn token_hash(token: &str, prefix: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let body = token.trim().strip_prefix(prefix)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    (raw.len() == 32).then(|| sha2::Sha256::digest(&raw).into())
}

/// A new token (`prefix` and 32 random bytes, base64url) and the SHA-256 that is kept of it.
fn new_token(prefix: &str) -> (String, [u8; 32]) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let raw: [u8; 32] = rand::random();
    let token = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    (token, sha2::Sha256::digest(raw).into())
}

/// A second factor as typed: an authenticator's code, or a recovery code.
enum Typed {
    Totp(String),
    Recovery(String),
}

fn read_code(typed: &str) -> Option<Typed> {
    totp::normalise_code(typed)
        .map(Typed::Totp)
        .or_else(|| recovery::normalise(typed).map(Typed::Recovery))
}

impl Auth {
    /// What `user_id` has of second factors.
    pub async fn factor_status(&self, user_id: i64) -> Result<FactorStatus, StoreError> {
        self.health.store().factor_status(user_id).await
    }

    /// Reads a second factor `typed` for `user_id` without spending it: counted on the account
    /// first, then an authenticator's code of now (of a step after the last one accepted) or a
    /// recovery code. What to spend, and the way it signs in.
    async fn read_factor(&self, user_id: i64, typed: &str) -> Result<(Spend, Method), CodeError> {
        self.health.check().map_err(|_| CodeError::DatabaseDown)?;
        self.throttle
            .code(user_id)
            .await
            .map_err(CodeError::Throttled)?;
        match read_code(typed) {
            Some(Typed::Totp(code)) => {
                let store = self.health.store();
                let Some((sealed, last_step)) = store.confirmed_totp(user_id).await? else {
                    return Err(CodeError::Wrong);
                };
                let Some(secret) = self.factors.key.open(user_id, &sealed) else {
                    tracing::error!(user_id, "a TOTP secret does not open with the factor key");
                    return Err(CodeError::Wrong);
                };
                let secret = totp::TotpSecret::from_bytes(secret);
                let step = secret
                    .matching_step(&code, now_unix(), last_step)
                    .ok_or(CodeError::Wrong)?;
                Ok((Spend::Step(step), Method::PasswordTotp))
            }
            Some(Typed::Recovery(code)) => Ok((
                Spend::Recovery(recovery::hash(&self.factors.key, &code)),
                Method::RecoveryCode,
            )),
            None => Err(CodeError::Wrong),
        }
    }

    /// Checks and spends a second factor `typed` of `user_id` (see [`read_factor`]): once, in
    /// one statement, so that two requests with the same code cannot both pass. The proof of
    /// it, which a reset takes.
    ///
    /// [`read_factor`]: Self::read_factor
    pub async fn accept_code(&self, user_id: i64, typed: &str) -> Result<CodeAccepted, CodeError> {
        let (spend, method) = self.read_factor(user_id, typed).await?;
        if !self
            .health
            .store()
            .spend_factor(user_id, &spend, now_unix())
            .await?
        {
            return Err(CodeError::Wrong);
        }
        self.throttle.code_accepted(user_id).await;
        Ok(CodeAccepted { user_id, method })
    }

    /// Keeps a sign-in that passed its password and waits for a second factor: the token that
    /// finishes it (only its hash is stored), good for `pending_ttl`, once.
    pub async fn hold_sign_in(&self, pending: &Pending) -> Result<String, StoreError> {
        let (token, hash) = new_token(PENDING_PREFIX);
        let now = now_unix();
        let first = pending.first();
        let device = match first.via() {
            Via::Device(device) => Some(device.hex()),
            Via::Unknown => None,
        };
        let ttl = crate::sessions::secs(self.factors.pending_ttl);
        self.health
            .store()
            .hold_sign_in(
                &hash,
                first.user().id,
                first.stamp(),
                device.as_deref(),
                now,
                now.saturating_add(ttl),
            )
            .await?;
        Ok(token)
    }

    /// The account a held sign-in is for, if the token names one still waiting.
    pub async fn held_sign_in(&self, token: &str) -> Result<Option<i64>, StoreError> {
        let Some(hash) = token_hash(token, PENDING_PREFIX) else {
            return Ok(None);
        };
        Ok(self
            .health
            .store()
            .held_sign_in(&hash, now_unix())
            .await?
            .map(|held| held.user_id))
    }

    /// The second step of a sign-in: the code checked for the held sign-in's account, then the
    /// held sign-in spent (once: a second tab with another right code gets [`FinishError::Over`]).
    /// A proof that starts the session (which still checks the credential stamp).
    pub async fn finish_sign_in(
        &self,
        token: &str,
        typed: &str,
        origin: Origin<'_>,
    ) -> Result<Proof, FinishError> {
        let Some(hash) = token_hash(token, PENDING_PREFIX) else {
            return Err(FinishError::Over);
        };
        self.health
            .check()
            .map_err(|_| FinishError::Code(CodeError::DatabaseDown))?;
        let read = self.users.stamp();
        let store = self.health.store();
        let Some(held) = store.held_sign_in(&hash, now_unix()).await? else {
            return Err(FinishError::Over);
        };
        let user_id = held.user_id;
        // A wrong code is the account's event: someone knows its password.
        let wrong = || async move {
            let entry = crate::audit::Entry {
                user_id,
                kind: crate::audit::Kind::SignInFailed,
                detail: "code",
                seen: origin.into(),
                session: None,
            };
            if let Err(e) = store.record_event(&entry, now_unix()).await {
                tracing::warn!(error = %e, "recording a failed sign-in failed");
            }
            FinishError::Code(CodeError::Wrong)
        };
        let (spend, method) = match self.read_factor(held.user_id, typed).await {
            Ok(read) => read,
            Err(CodeError::Wrong) => return Err(wrong().await),
            Err(e) => return Err(e.into()),
        };
        // The code and the held sign-in spent together, or neither.
        let held = match store.finish_held(&hash, &spend, now_unix()).await? {
            Finished::Done(held) => held,
            Finished::Over => return Err(FinishError::Over),
            Finished::Spent => return Err(wrong().await),
        };
        self.throttle.code_accepted(held.user_id).await;
        let Some(found) = self.users.credentials_of(held.user_id).await? else {
            return Err(FinishError::Over);
        };
        if found.stamp != held.stamp {
            return Err(FinishError::Over);
        }
        let via = held
            .device
            .as_deref()
            .and_then(crate::device::DeviceId::from_hex)
            .map_or(Via::Unknown, Via::Device);
        Ok(Proof::second_factor(
            found.user(),
            held.stamp,
            via,
            read,
            found.email.is_some(),
            method,
        ))
    }

    /// Until when session `session` may make dangerous changes: its last authentication plus
    /// the reauthentication window. `None` when there is no such session.
    pub async fn fresh_until(&self, session: uuid::Uuid) -> Result<Option<i64>, StoreError> {
        let at = self.health.store().authenticated_at(session).await?;
        let window = crate::sessions::secs(self.factors.reauth_window);
        Ok(at.map(|at| at.saturating_add(window)))
    }

    /// The holder of session `session` (of `user_id`) proves who they are again: their
    /// password (counted on the session, as a password change's is) and, if the account has a
    /// second factor, a code. The session is then fresh for `REAUTH_WINDOW`; nothing else
    /// changes.
    pub async fn reauthenticate(
        self: &std::sync::Arc<Self>,
        user_id: i64,
        session: uuid::Uuid,
        password: Option<String>,
        code: Option<&str>,
    ) -> Result<(), ReauthError> {
        let attempt = crate::credentials::Attempt::SignedIn { user_id, session };
        let checked = crate::credentials::check_password(self, attempt, password).await?;
        if checked.second_factor {
            let code = code
                .filter(|c| !c.trim().is_empty())
                .ok_or(ReauthError::CodeNeeded)?;
            self.accept_code(user_id, code).await?;
        }
        let fresh = self
            .health
            .store()
            .mark_authenticated(session, user_id, now_unix())
            .await
            .map_err(|e| ReauthError::Code(CodeError::Store(e)))?;
        if fresh {
            Ok(())
        } else {
            Err(ReauthError::SessionOver)
        }
    }

    /// Begins (or begins again) a TOTP enrolment for `user_id`: a new secret, sealed and kept
    /// unconfirmed, shown to the person. [`ChangeError::Conflict`] when TOTP is already on.
    pub async fn begin_totp(&self, user_id: i64, username: &str) -> Result<Enrolment, ChangeError> {
        let secret = totp::TotpSecret::random();
        let sealed = self.factors.key.seal(user_id, secret.as_bytes());
        if !self
            .health
            .store()
            .begin_totp(user_id, &sealed, now_unix())
            .await?
        {
            return Err(ChangeError::Conflict);
        }
        let url = totp::otpauth_url(&self.factors.issuer, username, &secret);
        let qr_svg = totp::qr_svg(&url).unwrap_or_default();
        Ok(Enrolment {
            secret: secret.base32(),
            url,
            qr_svg,
        })
    }

    /// Confirms the waiting enrolment of `user_id` with its first code: TOTP on, ten new
    /// recovery codes (returned, shown once), the credential stamp replaced, every session but
    /// `current` ended, the owner told — one transaction. The codes.
    pub async fn confirm_totp(
        &self,
        user_id: i64,
        current: uuid::Uuid,
        typed: &str,
        origin: Origin<'_>,
    ) -> Result<Vec<String>, ChangeError> {
        self.health.check().map_err(|_| CodeError::DatabaseDown)?;
        self.throttle
            .code(user_id)
            .await
            .map_err(|t| ChangeError::Code(CodeError::Throttled(t)))?;
        let store = self.health.store();
        let Some(sealed) = store.waiting_totp(user_id).await? else {
            return Err(ChangeError::Conflict);
        };
        let secret = self
            .factors
            .key
            .open(user_id, &sealed)
            .map(totp::TotpSecret::from_bytes)
            .ok_or(ChangeError::Conflict)?;
        let now = now_unix();
        let Some(step) =
            totp::normalise_code(typed).and_then(|code| secret.matching_step(&code, now, 0))
        else {
            return Err(ChangeError::Code(CodeError::Wrong));
        };
        self.throttle.code_accepted(user_id).await;
        let (codes, hashes) = self.new_recovery_codes();
        let write = FactorWrite::ConfirmTotp {
            current,
            step,
            sealed: &sealed,
            hashes: &hashes,
        };
        self.factor_change(user_id, now, origin, FactorChange::TotpAdded, write)
            .await?;
        Ok(codes)
    }

    /// Ten new recovery codes, as shown and as stored.
    fn new_recovery_codes(&self) -> (Vec<String>, Vec<Vec<u8>>) {
        let codes = recovery::generate();
        let hashes = codes
            .iter()
            .map(|c| {
                // Made by `generate`, so always a code.
                let normalised = recovery::normalise(c).unwrap_or_default();
                recovery::hash(&self.factors.key, &normalised)
            })
            .collect();
        (codes, hashes)
    }

    /// Turns TOTP off for `user_id` (and drops the recovery codes), through session `current`
    /// (or, `None`, by the operator): the credential stamp replaced, every other session ended,
    /// the owner told. [`ChangeError::Conflict`] when it was not on.
    pub async fn remove_totp(
        &self,
        user_id: i64,
        current: Option<uuid::Uuid>,
        origin: Origin<'_>,
    ) -> Result<(), ChangeError> {
        let now = now_unix();
        let change = if current.is_some() {
            FactorChange::TotpRemoved
        } else {
            FactorChange::RemovedByOperator
        };
        self.factor_change(
            user_id,
            now,
            origin,
            change,
            FactorWrite::RemoveTotp { current },
        )
        .await
    }

    /// A new set of recovery codes for `user_id` (TOTP on), through session `current`: the old
    /// ones die, every other session ends, the owner is told. The codes.
    pub async fn renew_recovery_codes(
        &self,
        user_id: i64,
        current: uuid::Uuid,
        origin: Origin<'_>,
    ) -> Result<Vec<String>, ChangeError> {
        let (codes, hashes) = self.new_recovery_codes();
        let write = FactorWrite::RenewCodes {
            current,
            hashes: &hashes,
        };
        self.factor_change(
            user_id,
            now_unix(),
            origin,
            FactorChange::CodesRenewed,
            write,
        )
        .await?;
        Ok(codes)
    }

    /// Runs a change of `user_id`'s factors (one transaction of the store that ends every
    /// session but the one it is made in, and queues the notice) under the sessions' write
    /// lock, and remembers the sessions it ended.
    async fn factor_change(
        &self,
        user_id: i64,
        now: i64,
        origin: Origin<'_>,
        change: FactorChange,
        write: FactorWrite<'_>,
    ) -> Result<(), ChangeError> {
        let username = self
            .users
            .get(user_id)
            .await
            .map_err(WriteError::from)?
            .map(|u| u.username);
        let told = Told::new(origin, now);
        let notice = |to: &str| {
            self.mail(
                Some(user_id),
                to,
                &Notice::FactorChanged {
                    username: username.as_deref().unwrap_or_default(),
                    change,
                    event: told.event(),
                },
            )
        };
        let notify = self.when_mailing(&notice);
        let event = crate::audit::Entry {
            user_id,
            kind: match change {
                FactorChange::TotpAdded => crate::audit::Kind::TotpAdded,
                FactorChange::TotpRemoved => crate::audit::Kind::TotpRemoved,
                FactorChange::RemovedByOperator => crate::audit::Kind::FactorsRemovedByOperator,
                FactorChange::CodesRenewed => crate::audit::Kind::RecoveryCodesRenewed,
                FactorChange::PasskeyAdded => crate::audit::Kind::PasskeyAdded,
                FactorChange::PasskeyRemoved => crate::audit::Kind::PasskeyRemoved,
            },
            detail: "",
            seen: crate::audit::Seen {
                operator: matches!(change, FactorChange::RemovedByOperator),
                ..origin.into()
            },
            session: write.session(),
        };
        let event = &event;
        let store = self.health.store();
        let written = self
            .sessions
            .credential_change(
                match change {
                    FactorChange::RemovedByOperator => crate::sessions::EndReason::Operator,
                    _ => crate::sessions::EndReason::FactorsChanged,
                },
                async {
                    let written = match write {
                        FactorWrite::ConfirmTotp {
                            current,
                            step,
                            sealed,
                            hashes,
                        } => {
                            store
                                .confirm_totp(
                                    user_id, current, step, sealed, hashes, notify, event, now,
                                )
                                .await
                        }
                        FactorWrite::RemoveTotp { current } => {
                            store
                                .remove_totp(user_id, current, notify, event, now)
                                .await
                        }
                        FactorWrite::RenewCodes { current, hashes } => {
                            store
                                .renew_recovery_codes(user_id, current, hashes, notify, event, now)
                                .await
                        }
                        FactorWrite::AddPasskey {
                            current,
                            cred_id,
                            credential,
                            name,
                            flags: (backup_eligible, backed_up),
                        } => {
                            let new = crate::store::passkeys::NewPasskey {
                                cred_id,
                                credential,
                                name,
                                backup_eligible,
                                backed_up,
                            };
                            store
                                .add_passkey(user_id, current, &new, notify, event, now)
                                .await
                        }
                        FactorWrite::RemovePasskey { current, id } => {
                            store
                                .remove_passkey(user_id, current, id, notify, event, now)
                                .await
                        }
                    }?;
                    Ok(match written {
                        FactorWritten::Done(ended) => (Ok(()), Some(ended)),
                        FactorWritten::Conflict => (Err(ChangeError::Conflict), None),
                        FactorWritten::SessionOver => (Err(ChangeError::SessionOver), None),
                    })
                },
            )
            .await?;
        if written.is_ok() {
            self.mail.wake.wake();
        }
        written
    }
}

impl FactorWrite<'_> {
    /// The session the change is made in (none: the operator's).
    fn session(&self) -> Option<uuid::Uuid> {
        match self {
            Self::ConfirmTotp { current, .. }
            | Self::RenewCodes { current, .. }
            | Self::AddPasskey { current, .. }
            | Self::RemovePasskey { current, .. } => Some(*current),
            Self::RemoveTotp { current } => *current,
        }
    }
}

/// A change of an account's factors, as [`Auth::factor_change`] writes it.
enum FactorWrite<'a> {
    ConfirmTotp {
        current: uuid::Uuid,
        step: i64,
        sealed: &'a [u8],
        hashes: &'a [Vec<u8>],
    },
    RemoveTotp {
        current: Option<uuid::Uuid>,
    },
    RenewCodes {
        current: uuid::Uuid,
        hashes: &'a [Vec<u8>],
    },
    AddPasskey {
        current: uuid::Uuid,
        cred_id: &'a [u8],
        credential: &'a str,
        name: &'a str,
        /// Backup eligible, backed up.
        flags: (bool, bool),
    },
    RemovePasskey {
        current: uuid::Uuid,
        id: i64,
    },
}

#[cfg(test)]
mod tests;
