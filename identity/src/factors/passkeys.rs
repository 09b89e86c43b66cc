//! Passkeys (WebAuthn, through webauthn-rs): added from the security page, signing in on their
//! own with no username typed (a discoverable credential; the browser may offer it in the
//! username field's autofill), and removable. A passkey sign-in is a full sign-in: it proves
//! possession of a device-bound key and the person's presence and verification (UV required),
//! phishing-resistant by origin, so it skips the second step.
//!
//! The relying party is the site's public address (`PUBLIC_URL`): its host is the RP ID, its
//! origin the only origin accepted. A loopback IP (development, tests) is taken as `localhost`:
//! browsers refuse IP addresses as RP IDs.
//!
//! Each ceremony's state is kept on the server (`webauthn_ceremonies`, its token hashed), for
//! [`CEREMONY_TTL`], and spent once as it is read: a replayed or late response finds nothing. It
//! lives in the database, so a ceremony begun on one instance finishes on another.
//!
//! The signature counter and the backup flags are checked by webauthn-rs as the specification
//! says (a counter that does not move forward, or a backup-eligibility that changes, fails the
//! ceremony); the credential's new counter and backup state are written back with a guard, so
//! that of two sign-ins racing with one counter value (a cloned key) only one goes through.

use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};

use super::{ChangeError, FactorWrite, Method};
use crate::{
    authn::Proof,
    email::Origin,
    mail::compose::FactorChange,
    store::{passkeys::PasskeyRow, StoreError},
    tokens::access::now_unix,
    Auth,
};

/// How long a ceremony waits for the browser (the authenticator's own timeout is the same).
pub const CEREMONY_TTL: i64 = 300;
/// The longest credential id the specification allows.
const MAX_CREDENTIAL_ID: usize = 1023;
/// The longest passkey name kept (characters).
pub const MAX_NAME: usize = 64;

/// The relying party: who the passkeys are for.
#[derive(Debug, Clone)]
pub struct PasskeySettings {
    webauthn: Webauthn,
    /// The RP ID (`example.com`, or `localhost`).
    pub rp_id: String,
    /// The one origin accepted (`https://example.com`).
    pub origin: String,
}

impl PasskeySettings {
    /// The relying party of the site served at `public_url`, named `name` to the person. Out
    /// of production, a loopback address is taken as `localhost`; in production it is refused
    /// (a server behind a proxy whose PUBLIC_URL was left out would name a party no browser of
    /// its users can reach).
    pub fn from_public_url(public_url: &str, name: &str, production: bool) -> Result<Self, String> {
        let mut url = Url::parse(public_url).map_err(|e| format!("{public_url:?}: {e}"))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            _ => false,
        };
        match url.host() {
            Some(url::Host::Domain(_)) => {}
            Some(_) if loopback && !production => {
                url.set_host(Some("localhost")).map_err(|e| e.to_string())?;
            }
            _ => {
                return Err(format!(
                    "{public_url:?}: passkeys need the site's domain name (browsers refuse an IP \
                     address as a relying party)"
                ))
            }
        }
        url.set_path("/");
        url.set_query(None);
        url.set_fragment(None);
        let rp_id = url.host_str().unwrap_or_default().to_owned();
        let webauthn = WebauthnBuilder::new(&rp_id, &url)
            .and_then(|b| b.rp_name(name).build())
            .map_err(|e| format!("{public_url:?}: {e}"))?;
        Ok(Self {
            webauthn,
            rp_id,
            origin: url.origin().ascii_serialization(),
        })
    }
}

/// Why a passkey ceremony did not go through.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// The site has no relying party (its public address is an IP address).
    #[error("passkeys are not set up on this site")]
    Off,
    /// The ceremony is unknown, spent, or past its time (or another session's).
    #[error("the ceremony is over")]
    CeremonyOver,
    /// What the browser sent is not a credential.
    #[error("not a credential: {0}")]
    Malformed(String),
    /// The credential did not verify (signature, origin, challenge, user verification, counter,
    /// backup flags), or names no passkey of ours.
    #[error("the passkey was refused: {0}")]
    Refused(String),
    /// The passkey is already an account's.
    #[error("that passkey is registered already")]
    Taken,
    /// The passkey was right, but the operator disabled the account.
    #[error("the account is disabled")]
    Disabled,
    #[error("{0}")]
    Change(#[from] ChangeError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A passkey sign-in's outcome: who, and the proof that starts their session.
#[derive(Debug)]
pub struct PasskeySignIn {
    pub proof: Proof,
}

/// A passkey's name as kept: trimmed, control characters out, at most [`MAX_NAME`] characters,
/// `fallback` when nothing is left.
fn clean_name(typed: &str, fallback: &str) -> String {
    let name: String = typed
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_NAME)
        .collect();
    if name.is_empty() {
        fallback.chars().take(MAX_NAME).collect()
    } else {
        name
    }
}

impl Auth {
    fn passkey_settings(&self) -> Result<&PasskeySettings, PasskeyError> {
        self.factors.passkeys.as_ref().ok_or(PasskeyError::Off)
    }

    /// Begins adding a passkey to `user_id`'s account through its session `session`: the
    /// options for `navigator.credentials.create` (JSON), a discoverable credential with user
    /// verification, none of the account's passkeys again; and the ceremony's token.
    pub async fn begin_passkey_registration(
        &self,
        user_id: i64,
        session: uuid::Uuid,
        username: &str,
    ) -> Result<(String, String), PasskeyError> {
        let settings = self.passkey_settings()?;
        let store = self.health.store();
        let handle = store.webauthn_handle(user_id).await?;
        let exclude = store
            .passkeys_of(user_id)
            .await?
            .into_iter()
            .filter_map(|row| row.passkey().ok())
            .map(|p| p.cred_id().clone())
            .collect();
        let (options, state) = settings
            .webauthn
            .start_passkey_registration(
                webauthn_rs::prelude::Uuid::from_bytes(handle),
                username,
                username,
                Some(exclude),
            )
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        // webauthn-rs asks for a credential that is not discoverable; a usernameless sign-in
        // needs one that is (the server checks nothing of this flag).
        let mut options =
            serde_json::to_value(&options).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        if let Some(selection) = options
            .pointer_mut("/publicKey/authenticatorSelection")
            .and_then(|s| s.as_object_mut())
        {
            selection.insert("residentKey".into(), "required".into());
            selection.insert("requireResidentKey".into(), true.into());
        }
        let state =
            serde_json::to_string(&state).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let (token, hash) = super::new_token(super::CEREMONY_PREFIX);
        let now = now_unix();
        store
            .begin_ceremony(
                &hash,
                "register",
                Some((user_id, session)),
                &state,
                now,
                now + CEREMONY_TTL,
            )
            .await?;
        Ok((token, options.to_string()))
    }

    /// Finishes adding a passkey: the ceremony `token` of this very session spent, the
    /// credential verified, and the passkey stored under `name` (else the device's name) —
    /// with the account's credential stamp replaced, every other session ended and the owner
    /// told, as for every new factor. The passkey as listed.
    pub async fn finish_passkey_registration(
        &self,
        user_id: i64,
        session: uuid::Uuid,
        token: &str,
        credential: &str,
        name: &str,
        origin: Origin<'_>,
    ) -> Result<PasskeyRow, PasskeyError> {
        let settings = self.passkey_settings()?;
        let hash =
            super::token_hash(token, super::CEREMONY_PREFIX).ok_or(PasskeyError::CeremonyOver)?;
        let store = self.health.store();
        let state = store
            .take_ceremony(&hash, "register", Some((user_id, session)), now_unix())
            .await?
            .ok_or(PasskeyError::CeremonyOver)?;
        let state: PasskeyRegistration =
            serde_json::from_str(&state).map_err(|_| PasskeyError::CeremonyOver)?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_str(credential).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let passkey = settings
            .webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        let cred_id = passkey.cred_id().to_vec();
        if cred_id.is_empty() || cred_id.len() > MAX_CREDENTIAL_ID {
            return Err(PasskeyError::Refused("credential id length".into()));
        }
        let stored = serde_json::to_value(&passkey)
            .map_err(|e| PasskeyError::Refused(format!("a passkey that cannot be kept: {e}")))?;
        // webauthn-rs keeps the flags in the credential (no getter): read as stored.
        let flag = |name: &str| stored.pointer(&format!("/cred/{name}")) == Some(&true.into());
        let (backup_eligible, backed_up) = (flag("backup_eligible"), flag("backup_state"));
        let stored = stored.to_string();
        let name = clean_name(
            name,
            &crate::sessions::agent::describe_device(origin.user_agent),
        );
        let now = now_unix();
        let write = FactorWrite::AddPasskey {
            current: session,
            cred_id: &cred_id,
            credential: &stored,
            name: &name,
            flags: (backup_eligible, backed_up),
        };
        match self
            .factor_change(user_id, now, origin, FactorChange::PasskeyAdded, write)
            .await
        {
            Ok(()) => {}
            Err(ChangeError::Conflict) => return Err(PasskeyError::Taken),
            Err(e) => return Err(e.into()),
        }
        store
            .passkeys_of(user_id)
            .await?
            .into_iter()
            .find(|row| row.cred_id == cred_id)
            .ok_or(PasskeyError::CeremonyOver)
    }

    /// Begins a passkey sign-in (no username): the options for `navigator.credentials.get`
    /// (JSON; `mediation: "conditional"` for the username field's autofill, which a button's
    /// modal request leaves out) and the ceremony's token.
    pub async fn begin_passkey_sign_in(&self) -> Result<(String, String), PasskeyError> {
        let settings = self.passkey_settings()?;
        let (options, state) = settings
            .webauthn
            .start_discoverable_authentication()
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        let options =
            serde_json::to_string(&options).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let state =
            serde_json::to_string(&state).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let (token, hash) = super::new_token(super::CEREMONY_PREFIX);
        let now = now_unix();
        self.health
            .store()
            .begin_ceremony(&hash, "sign_in", None, &state, now, now + CEREMONY_TTL)
            .await?;
        Ok((token, options))
    }

    /// Finishes a passkey sign-in: the ceremony spent, the account named by the credential's
    /// user handle, the assertion verified against that account's passkeys only, and the
    /// passkey's counter and backup state written back (guarded: a cloned key racing it with
    /// the same counter loses). A proof that starts a session on its own.
    pub async fn finish_passkey_sign_in(
        &self,
        token: &str,
        credential: &str,
        device_proofs: &[String],
    ) -> Result<Proof, PasskeyError> {
        let settings = self.passkey_settings()?;
        let hash =
            super::token_hash(token, super::CEREMONY_PREFIX).ok_or(PasskeyError::CeremonyOver)?;
        let store = self.health.store();
        let read = self.users.stamp();
        let state = store
            .take_ceremony(&hash, "sign_in", None, now_unix())
            .await?
            .ok_or(PasskeyError::CeremonyOver)?;
        let state: DiscoverableAuthentication =
            serde_json::from_str(&state).map_err(|_| PasskeyError::CeremonyOver)?;
        let credential: PublicKeyCredential =
            serde_json::from_str(credential).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let (handle, _) = settings
            .webauthn
            .identify_discoverable_authentication(&credential)
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        let refused = || PasskeyError::Refused("no passkey of ours".into());
        let user_id = store
            .user_by_handle(handle.as_bytes())
            .await?
            .ok_or_else(refused)?;
        // Read before the check: the session starts only if the stamp is still this one.
        let found = self
            .users
            .credentials_of(user_id)
            .await?
            .ok_or_else(refused)?;
        let rows = store.passkeys_of(user_id).await?;
        let disabled = found.disabled_at.is_some();
        let passkeys: Vec<(i64, Passkey)> = rows
            .iter()
            .filter_map(|row| Some((row.id, row.passkey().ok()?)))
            .collect();
        let keys: Vec<DiscoverableKey> = passkeys.iter().map(|(_, p)| p.into()).collect();
        let result = settings
            .webauthn
            .finish_discoverable_authentication(&credential, state, &keys)
            .map_err(|e| {
                tracing::warn!(user_id, error = %e, "a passkey sign-in was refused");
                PasskeyError::Refused(e.to_string())
            })?;
        let (id, mut passkey) = passkeys
            .into_iter()
            .find(|(_, p)| p.cred_id() == result.cred_id())
            .ok_or_else(refused)?;
        passkey.update_credential(&result);
        let stored =
            serde_json::to_string(&passkey).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let used = store
            .passkey_used(
                id,
                &stored,
                i64::from(result.counter()),
                result.backup_state(),
                now_unix(),
            )
            .await?;
        if !used {
            tracing::warn!(user_id, "a passkey's counter did not move forward: refused");
            return Err(PasskeyError::Refused("counter".into()));
        }
        // Told only to whoever holds the passkey, as a password sign-in tells only whoever
        // knows the password.
        if disabled {
            return Err(PasskeyError::Disabled);
        }
        // A device that signed in to this account before (its proof) is no new device.
        let account = crate::device::Account {
            user_id,
            created_at: found.created_at,
        };
        let via = device_proofs
            .iter()
            .find_map(|proof| self.devices.verify(proof, account, now_unix()))
            .map_or(crate::throttle::Via::Unknown, crate::throttle::Via::Device);
        Ok(Proof::second_factor(
            found.user(),
            found.stamp,
            via,
            read,
            found.email.is_some(),
            Method::Passkey,
        ))
    }

    /// The holder of session `session` of `user_id` proves who they are again with a passkey
    /// of that account (see [`finish_passkey_sign_in`](Self::finish_passkey_sign_in)): the
    /// session is fresh for `REAUTH_WINDOW`.
    pub async fn reauthenticate_with_passkey(
        &self,
        user_id: i64,
        session: uuid::Uuid,
        token: &str,
        credential: &str,
    ) -> Result<(), PasskeyError> {
        let proof = self.finish_passkey_sign_in(token, credential, &[]).await?;
        if proof.user().id != user_id {
            return Err(PasskeyError::Refused("another account's passkey".into()));
        }
        if self
            .health
            .store()
            .mark_authenticated(session, user_id, now_unix())
            .await?
        {
            Ok(())
        } else {
            Err(PasskeyError::Change(ChangeError::SessionOver))
        }
    }

    /// `user_id`'s passkeys, oldest first.
    pub async fn passkeys(&self, user_id: i64) -> Result<Vec<PasskeyRow>, StoreError> {
        self.health.store().passkeys_of(user_id).await
    }

    /// Renames passkey `id` of `user_id`. Whether there was such a passkey.
    pub async fn rename_passkey(
        &self,
        user_id: i64,
        id: i64,
        name: &str,
    ) -> Result<bool, StoreError> {
        let name = clean_name(name, "Passkey");
        self.health.store().rename_passkey(user_id, id, &name).await
    }

    /// Removes passkey `id` of `user_id` through session `current`: the stamp replaced, every
    /// other session ended, the owner told. [`ChangeError::Conflict`] when there is no such
    /// passkey.
    pub async fn remove_passkey(
        &self,
        user_id: i64,
        current: uuid::Uuid,
        id: i64,
        origin: Origin<'_>,
    ) -> Result<(), ChangeError> {
        let write = FactorWrite::RemovePasskey { current, id };
        self.factor_change(
            user_id,
            now_unix(),
            origin,
            FactorChange::PasskeyRemoved,
            write,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_is_the_public_address() {
        let site =
            PasskeySettings::from_public_url("https://auth.example.com/", "Auth", true).unwrap();
        assert_eq!(site.rp_id, "auth.example.com");
        assert_eq!(site.origin, "https://auth.example.com");
        let dev = PasskeySettings::from_public_url("http://127.0.0.1:3000", "Auth", false).unwrap();
        assert_eq!(dev.rp_id, "localhost");
        assert_eq!(dev.origin, "http://localhost:3000");
        assert!(PasskeySettings::from_public_url("http://127.0.0.1:3000", "Auth", true).is_err());
        assert!(PasskeySettings::from_public_url("https://203.0.113.7", "Auth", false).is_err());
        assert!(PasskeySettings::from_public_url("not a url", "Auth", false).is_err());
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("  My\tphone\n ", "x"), "My phone");
        assert_eq!(clean_name("   ", "Chrome on Linux"), "Chrome on Linux");
        assert_eq!(clean_name(&"é".repeat(100), "x").chars().count(), MAX_NAME);
    }
}
