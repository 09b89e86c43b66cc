//! The use cases of e-mail, as the door calls them: an address given at sign-up, confirmed by
//! a link, changed; a forgotten password reset through a link; and the notices that changes to
//! an account send its owner. Each composes its mail ([`crate::mail::compose`]), has the store
//! queue it in the change's own transaction, and wakes the sender after the commit.

use std::net::IpAddr;

use crate::{
    authn::Proof,
    mail::{
        compose::{self, Event, Notice},
        links::{self, LinkState, Purpose},
        OutgoingMail,
    },
    sessions::{agent::describe_device, WriteError},
    store::{
        email::{
            AddressChange, AddressStatus, Confirmed, LinkMails, NewLink, Reset, SignUpAddress,
            TooSoon,
        },
        StoreError,
    },
    tokens::access::now_unix,
    users::{CreateUserError, User},
    Auth,
};

/// A new link a minute per account and purpose at most (resends, changes, resets).
pub const LINK_GAP: i64 = 60;

/// Where a change came from, as its notice tells it.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub user_agent: &'a str,
    pub address: Option<IpAddr>,
}

/// An [`Event`]'s words, owned.
pub(crate) struct Told {
    when: String,
    device: String,
    address: String,
}

impl Told {
    pub(crate) fn new(origin: Origin<'_>, now: i64) -> Self {
        Self {
            when: compose::when(now),
            device: describe_device(origin.user_agent),
            address: origin
                .address
                .map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
        }
    }

    pub(crate) fn event(&self) -> Event<'_> {
        Event {
            when: &self.when,
            device: &self.device,
            address: &self.address,
        }
    }
}

/// What following a reset link did.
#[derive(Debug)]
pub enum ResetOutcome {
    /// The password is set, every session ended: the proof starts this browser's session.
    Done(Proof),
    NotLive(LinkState),
    /// The account has a second factor: the reset needs a code too, accepted before (see
    /// [`Auth::accept_code`]); the link is not spent.
    CodeNeeded,
}

impl Auth {
    pub(crate) fn mail(&self, user_id: Option<i64>, to: &str, notice: &Notice<'_>) -> OutgoingMail {
        compose::compose(&self.mail.site, notice, user_id, to)
    }

    /// `mail`, carrying the link whose token hashes to `hash`.
    fn with_link(mut mail: OutgoingMail, hash: [u8; 32]) -> OutgoingMail {
        mail.link = Some(hash);
        mail
    }

    fn new_link(&self, purpose: Purpose, now: i64, min_gap: i64) -> (String, NewLink) {
        let (token, hash) = links::new_token();
        let ttl = match purpose {
            Purpose::Verify => self.mail.verify_ttl,
            Purpose::Reset => self.mail.reset_ttl,
        };
        let link = NewLink {
            hash,
            expires_at: now.saturating_add(ttl),
            min_gap,
        };
        (
            links::url(&self.mail.site.public_url, purpose, &token),
            link,
        )
    }

    fn minutes(secs: i64) -> i64 {
        (secs + 59) / 60
    }

    /// Whether a mail to `address`, not confirmed yet, may go: counted on the recipient, so
    /// that sign-ups, resends and changes cannot flood someone's mailbox (see
    /// [`Throttle::mail_to`](crate::throttle::Throttle::mail_to)).
    async fn mail_budget(&self, address: &str) -> bool {
        if self.throttle.mail_to(address).await.is_ok() {
            return true;
        }
        tracing::info!("a mail to an unconfirmed address was not sent: too many lately");
        false
    }

    /// `notice`, when the service mails at all (`EMAIL=off` queues nothing).
    pub(crate) fn when_mailing<'a>(
        &self,
        notice: crate::store::email::Notify<'a>,
    ) -> Option<crate::store::email::Notify<'a>> {
        self.mail.enabled.then_some(notice)
    }

    /// Creates an account, with its address if one was given (normalised already), and queues
    /// the mail that confirms the address — or, when the address is another account's, the
    /// notice that tells its owner; the answer is the same either way.
    pub async fn sign_up(
        &self,
        username: &str,
        password_hash: &str,
        address: Option<&str>,
    ) -> Result<User, CreateUserError> {
        let now = now_unix();
        let store = self.health.store();
        let Some(address) = address else {
            return store.create_user(username, password_hash, now, None).await;
        };
        let (url, link) = self.new_link(Purpose::Verify, now, 0);
        let valid_minutes = Self::minutes(self.mail.verify_ttl);
        let confirm = |to: &str| {
            Self::with_link(
                self.mail(
                    None,
                    to,
                    &Notice::VerifyAddress {
                        username,
                        link: &url,
                        valid_minutes,
                        change: false,
                    },
                ),
                link.hash,
            )
        };
        let in_use = |to: &str| self.mail(None, to, &Notice::AddressInUse);
        let given = SignUpAddress {
            address,
            link,
            mails: LinkMails {
                link: &confirm,
                in_use: &in_use,
                send: self.mail.enabled && self.mail_budget(address).await,
            },
        };
        let user = store
            .create_user(username, password_hash, now, Some(&given))
            .await?;
        self.mail.wake.wake();
        Ok(user)
    }

    /// The account's address and its state.
    pub async fn address_status(&self, user_id: i64) -> Result<AddressStatus, StoreError> {
        self.health
            .store()
            .address_status(user_id, now_unix())
            .await
    }

    /// A new confirming link to the account's unconfirmed address. `None`: nothing to confirm.
    pub async fn resend_confirmation(
        &self,
        user_id: i64,
        username: &str,
    ) -> Result<Option<Result<(), TooSoon>>, StoreError> {
        let now = now_unix();
        let (url, link) = self.new_link(Purpose::Verify, now, LINK_GAP);
        let valid_minutes = Self::minutes(self.mail.verify_ttl);
        let status = self.address_status(user_id).await?;
        let change = status.verified;
        let waiting = match (&status.pending, &status.email, status.verified) {
            (Some(pending), _, _) => Some(pending.as_str()),
            (None, Some(email), false) => Some(email.as_str()),
            _ => None,
        };
        let send = match waiting {
            Some(address) => self.mail.enabled && self.mail_budget(address).await,
            None => false,
        };
        let confirm = |to: &str| {
            Self::with_link(
                self.mail(
                    Some(user_id),
                    to,
                    &Notice::VerifyAddress {
                        username,
                        link: &url,
                        valid_minutes,
                        change,
                    },
                ),
                link.hash,
            )
        };
        let in_use = |to: &str| self.mail(Some(user_id), to, &Notice::AddressInUse);
        let mails = LinkMails {
            link: &confirm,
            in_use: &in_use,
            send,
        };
        let sent = self
            .health
            .store()
            .resend_confirmation(user_id, link, &mails, now)
            .await?;
        if matches!(sent, Some(Ok(()))) {
            self.mail.wake.wake();
        }
        Ok(sent)
    }

    /// Changes the account's address to `address` (normalised): see
    /// [`Store::change_address`](crate::store::Store::change_address).
    pub async fn change_address(
        &self,
        user_id: i64,
        username: &str,
        address: &str,
        origin: Origin<'_>,
    ) -> Result<AddressChange, StoreError> {
        let now = now_unix();
        let (url, link) = self.new_link(Purpose::Verify, now, LINK_GAP);
        let valid_minutes = Self::minutes(self.mail.verify_ttl);
        let told = Told::new(origin, now);
        let confirm = |to: &str| {
            Self::with_link(
                self.mail(
                    Some(user_id),
                    to,
                    &Notice::VerifyAddress {
                        username,
                        link: &url,
                        valid_minutes,
                        change: true,
                    },
                ),
                link.hash,
            )
        };
        let in_use = |to: &str| self.mail(Some(user_id), to, &Notice::AddressInUse);
        let old = |to: &str| {
            self.mail(
                Some(user_id),
                to,
                &Notice::AddressChanging {
                    username,
                    new_address: address,
                    event: told.event(),
                },
            )
        };
        let mails = LinkMails {
            link: &confirm,
            in_use: &in_use,
            send: self.mail.enabled && self.mail_budget(address).await,
        };
        let changed = self
            .health
            .store()
            .change_address(user_id, address, link, &mails, &old, origin.into(), now)
            .await?;
        if changed == AddressChange::Sent {
            self.mail.wake.wake();
        }
        Ok(changed)
    }

    /// What a link's token is, without spending it (the page a link opens shows this).
    pub async fn link_state(&self, token: &str, purpose: Purpose) -> Result<LinkState, StoreError> {
        if !links::well_formed(token) {
            return Ok(LinkState::Unknown);
        }
        self.health
            .store()
            .link_state(&links::hash(token), purpose, now_unix())
            .await
    }

    /// Follows an address-confirming link (the page's POST).
    pub async fn confirm_address(
        &self,
        token: &str,
        origin: Origin<'_>,
    ) -> Result<Confirmed, StoreError> {
        if !links::well_formed(token) {
            return Ok(Confirmed::NotLive(LinkState::Unknown));
        }
        self.health
            .store()
            .confirm_address(&links::hash(token), origin.into(), now_unix())
            .await
    }

    /// Asks for a reset link for the account `login` names (a username or an address,
    /// already checked for shape): queued when it names an account with a verified address,
    /// nothing otherwise. The caller answers the same words whatever this finds, and does not
    /// wait for it.
    pub async fn request_reset(&self, login: &str) -> Result<bool, StoreError> {
        let store = self.health.store();
        let Some(target) = store.reset_target(login).await? else {
            return Ok(false);
        };
        let now = now_unix();
        let (url, link) = self.new_link(Purpose::Reset, now, LINK_GAP);
        let valid_minutes = Self::minutes(self.mail.reset_ttl);
        let mail = |to: &str| {
            Self::with_link(
                self.mail(
                    Some(target.id),
                    to,
                    &Notice::ResetPassword {
                        username: &target.username,
                        link: &url,
                        valid_minutes,
                    },
                ),
                link.hash,
            )
        };
        let sent = store.send_reset_link(&target, link, &mail, now).await?;
        let sent = matches!(sent, Ok(true));
        if sent {
            self.mail.wake.wake();
        }
        Ok(sent)
    }

    /// Follows a reset link (the page's POST) with the new password's hash: the password set,
    /// every session of the account ended, the owner told; then a proof that starts this
    /// browser's session.
    pub async fn reset_password(
        &self,
        token: &str,
        password_hash: &str,
        code: Option<crate::factors::CodeAccepted>,
        origin: Origin<'_>,
    ) -> Result<ResetOutcome, WriteError> {
        if !links::well_formed(token) {
            return Ok(ResetOutcome::NotLive(LinkState::Unknown));
        }
        let now = now_unix();
        let read = self.users.stamp();
        let LinkState::Live(link) = self.link_state(token, Purpose::Reset).await? else {
            return Ok(ResetOutcome::NotLive(
                self.link_state(token, Purpose::Reset).await?,
            ));
        };
        let Some(user) = self.users.get(link.user_id).await? else {
            return Ok(ResetOutcome::NotLive(LinkState::Unknown));
        };
        // Losing the password is not losing the second factor: a reset asks for it too (or a
        // recovery code), checked and spent by the caller before the password was hashed.
        if self.factor_status(user.id).await?.totp_since.is_some()
            && code.is_none_or(|c| c.user_id() != user.id)
        {
            return Ok(ResetOutcome::CodeNeeded);
        }
        let told = Told::new(origin, now);
        let notice = |to: &str| {
            self.mail(
                Some(user.id),
                to,
                &Notice::PasswordChanged {
                    username: &user.username,
                    by_reset: true,
                    event: told.event(),
                },
            )
        };
        let reset = self
            .sessions
            .reset_password(
                &links::hash(token),
                password_hash,
                self.when_mailing(&notice),
                origin.into(),
                now,
            )
            .await?;
        match reset {
            Reset::Done { user_id, stamp, .. } => {
                self.mail.wake.wake();
                debug_assert_eq!(user_id, user.id);
                Ok(ResetOutcome::Done(Proof::by_link(user, stamp, read)))
            }
            Reset::NotLive(state) => Ok(ResetOutcome::NotLive(state)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        authn::{self, Step},
        store::email::AddressChange,
        testing, users,
    };
    use std::sync::Arc;

    const PASSWORD: &str = "correct horse battery";

    /// The mails queued so far: (kind, recipient, text).
    async fn outbox(pool: &crate::store::Pool) -> Vec<(String, String, String)> {
        sqlx::query_as("SELECT kind, recipient, body_text FROM outbox ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// The token of the link in a mail's text.
    fn token_in(text: &str) -> String {
        let at = text.find("token=ml1.").expect("a link") + "token=".len();
        text[at..at + 47].to_owned()
    }

    async fn core() -> (tempfile::TempDir, crate::store::Pool, Arc<Auth>) {
        let (dir, pool, auth) = testing::auth().await;
        (dir, pool, Arc::new(auth))
    }

    async fn sign_up(auth: &Auth, name: &str, address: Option<&str>) -> User {
        let hash = auth.passwords.hash(PASSWORD.into()).await.unwrap();
        auth.sign_up(name, &hash, address).await.unwrap()
    }

    async fn sign_in(auth: &Arc<Auth>, login: &str, password: &str) -> Option<Proof> {
        match authn::sign_in(auth, login, None, Vec::new(), password.into(), "test").await {
            Ok(Step::Done(proof)) => Some(proof),
            Ok(Step::AnotherFactorNeeded(p)) => panic!("{p:?}"),
            Err(_) => None,
        }
    }

    /// Signs up `name` with `address` and follows the link mailed to it.
    async fn verified(
        auth: &Arc<Auth>,
        pool: &crate::store::Pool,
        name: &str,
        address: &str,
    ) -> User {
        let user = sign_up(auth, name, Some(address)).await;
        let (kind, to, text) = outbox(pool).await.pop().unwrap();
        assert_eq!((kind.as_str(), to.as_str()), ("verify_address", address));
        let confirmed = auth
            .confirm_address(&token_in(&text), testing::ORIGIN)
            .await
            .unwrap();
        assert_eq!(
            confirmed,
            Confirmed::Done {
                user_id: user.id,
                address: address.into()
            }
        );
        user
    }

    #[tokio::test]
    async fn an_address_is_confirmed_by_its_link_once_and_then_signs_in() {
        let (_dir, pool, auth) = core().await;
        let user = sign_up(&auth, "alice", Some("Alice@example.com")).await;
        let status = auth.address_status(user.id).await.unwrap();
        assert_eq!(status.email.as_deref(), Some("Alice@example.com"));
        assert!(!status.verified);
        // Unverified: not a way in, and no reset link goes to it.
        assert!(sign_in(&auth, "alice@example.com", PASSWORD)
            .await
            .is_none());
        assert!(!auth.request_reset("alice@example.com").await.unwrap());
        let mails = outbox(&pool).await;
        assert_eq!(mails.len(), 1);
        let token = token_in(&mails[0].2);
        // Looking at the link (the page's GET) spends nothing.
        for _ in 0..3 {
            assert!(matches!(
                auth.link_state(&token, Purpose::Verify).await.unwrap(),
                LinkState::Live(_)
            ));
        }
        assert!(matches!(
            auth.confirm_address(&token, testing::ORIGIN).await.unwrap(),
            Confirmed::Done { .. }
        ));
        assert_eq!(
            auth.confirm_address(&token, testing::ORIGIN).await.unwrap(),
            Confirmed::NotLive(LinkState::Used)
        );
        assert!(auth.address_status(user.id).await.unwrap().verified);
        // Any case of the address signs in; a forged token is unknown.
        let proof = sign_in(&auth, "ALICE@example.com", PASSWORD).await.unwrap();
        assert_eq!(proof.user().id, user.id);
        assert!(sign_in(&auth, "alice@example.com", "wrong password")
            .await
            .is_none());
        let forged = format!("ml1.{}", "A".repeat(43));
        assert_eq!(
            auth.confirm_address(&forged, testing::ORIGIN)
                .await
                .unwrap(),
            Confirmed::NotLive(LinkState::Unknown)
        );
        assert_eq!(
            auth.confirm_address("not a token", testing::ORIGIN)
                .await
                .unwrap(),
            Confirmed::NotLive(LinkState::Unknown)
        );
    }

    /// Signing up with another account's verified address creates the account as any sign-up
    /// does, and mails the address's owner a notice (no link) instead.
    #[tokio::test]
    async fn signing_up_with_a_taken_address_tells_its_owner_and_nothing_else() {
        let (_dir, pool, auth) = core().await;
        verified(&auth, &pool, "alice", "alice@example.com").await;
        let mallory = sign_up(&auth, "mallory", Some("ALICE@example.com")).await;
        let (kind, to, text) = outbox(&pool).await.pop().unwrap();
        assert_eq!(kind, "address_in_use");
        // To the owner's mailbox as the account keeps it.
        assert_eq!(to, "alice@example.com");
        assert!(!text.contains("token="), "{text}");
        let status = auth.address_status(mallory.id).await.unwrap();
        assert!(!status.verified);
        // Asking again sends the notice again (after the gap), never a link.
        assert_eq!(
            auth.resend_confirmation(mallory.id, "mallory")
                .await
                .unwrap(),
            Some(Err(TooSoon(LINK_GAP)))
        );
    }

    #[tokio::test]
    async fn a_reset_link_sets_the_password_once_ends_every_session_and_tells_the_owner() {
        let (_dir, pool, auth) = core().await;
        let user = verified(&auth, &pool, "alice", "alice@example.com").await;
        let proof = sign_in(&auth, "alice", PASSWORD).await.unwrap();
        let before = auth
            .start_session(&proof, "old", None)
            .await
            .unwrap()
            .unwrap();
        assert!(auth.request_reset("alice").await.unwrap());
        // A second request within the minute sends nothing more.
        assert!(!auth.request_reset("alice@example.com").await.unwrap());
        let mails = outbox(&pool).await;
        let (kind, to, text) = mails.last().unwrap();
        assert_eq!(
            (kind.as_str(), to.as_str()),
            ("reset_password", "alice@example.com")
        );
        let token = token_in(text);
        let hash = auth
            .passwords
            .hash("a brand new password".into())
            .await
            .unwrap();
        let ResetOutcome::Done(proof) = auth
            .reset_password(&token, &hash, None, testing::ORIGIN)
            .await
            .unwrap()
        else {
            panic!("not reset")
        };
        assert_eq!(proof.user().id, user.id);
        assert!(auth.sessions.is_ended(&before.session_id));
        // One event for the reset, one for the session it ended, one for the address.
        let store = auth.health.store();
        let events = store.events_of(user.id, None, 100).await.unwrap();
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.detail.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("session_ended", "password_reset"),
                ("password_reset", ""),
                ("sign_in_new_device", "password"),
                ("address_verified", ""),
            ]
        );
        assert!(auth
            .start_session(&proof, "new", None)
            .await
            .unwrap()
            .is_some());
        let (kind, _, _) = outbox(&pool).await.pop().unwrap();
        assert_eq!(kind, "password_changed");
        assert!(matches!(
            auth.reset_password(&token, &hash, None, testing::ORIGIN)
                .await
                .unwrap(),
            ResetOutcome::NotLive(LinkState::Used)
        ));
        assert!(sign_in(&auth, "alice", PASSWORD).await.is_none());
        assert!(sign_in(&auth, "alice", "a brand new password")
            .await
            .is_some());
    }

    /// A reset link dies with the credentials it was sent under, and with time.
    #[tokio::test]
    async fn a_reset_link_dies_with_a_password_change_and_with_time() {
        let (_dir, pool, auth) = core().await;
        verified(&auth, &pool, "alice", "alice@example.com").await;
        assert!(auth.request_reset("alice").await.unwrap());
        let token = token_in(&outbox(&pool).await.pop().unwrap().2);
        let proof = sign_in(&auth, "alice", PASSWORD).await.unwrap();
        let session = auth
            .start_session(&proof, "s", None)
            .await
            .unwrap()
            .unwrap();
        let hash = auth
            .passwords
            .hash("changed meanwhile".into())
            .await
            .unwrap();
        auth.change_password(
            proof.user().id,
            session.session_id,
            &hash,
            now_unix(),
            testing::ORIGIN,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            auth.link_state(&token, Purpose::Reset).await.unwrap(),
            LinkState::Expired
        );
        assert!(matches!(
            auth.reset_password(&token, &hash, None, testing::ORIGIN)
                .await
                .unwrap(),
            ResetOutcome::NotLive(LinkState::Expired)
        ));
        // A fresh link, past its time.
        sqlx::query("UPDATE email_links SET created_at = 0")
            .execute(&pool)
            .await
            .unwrap();
        assert!(auth.request_reset("alice").await.unwrap());
        let token = token_in(&outbox(&pool).await.pop().unwrap().2);
        sqlx::query("UPDATE email_links SET expires_at = 1")
            .execute(&pool)
            .await
            .unwrap();
        assert!(matches!(
            auth.reset_password(&token, &hash, None, testing::ORIGIN)
                .await
                .unwrap(),
            ResetOutcome::NotLive(LinkState::Expired)
        ));
    }

    /// The same link spent 64 times at once: one reset, the others find it used.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reset_link_spent_64_times_at_once_resets_once() {
        let (_dir, pool, auth) = core().await;
        verified(&auth, &pool, "alice", "alice@example.com").await;
        assert!(auth.request_reset("alice").await.unwrap());
        let token = token_in(&outbox(&pool).await.pop().unwrap().2);
        let hash = auth
            .passwords
            .hash("a brand new password".into())
            .await
            .unwrap();
        let tries: Vec<_> = (0..64)
            .map(|_| {
                let (auth, token, hash) = (auth.clone(), token.clone(), hash.clone());
                tokio::spawn(async move {
                    auth.reset_password(&token, &hash, None, testing::ORIGIN)
                        .await
                })
            })
            .collect();
        let mut done = 0;
        for t in tries {
            match t.await.unwrap() {
                Ok(ResetOutcome::Done(_)) => done += 1,
                Ok(ResetOutcome::NotLive(state)) => assert_eq!(state, LinkState::Used),
                Ok(other) => panic!("{other:?}"),
                Err(WriteError::Busy) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(done, 1);
        let notices: Vec<_> = outbox(&pool)
            .await
            .into_iter()
            .filter(|m| m.0 == "password_changed")
            .collect();
        assert_eq!(notices.len(), 1);
    }

    #[tokio::test]
    async fn an_address_change_waits_for_the_new_address_and_tells_the_old_one() {
        let (_dir, pool, auth) = core().await;
        let user = verified(&auth, &pool, "alice", "alice@example.com").await;
        assert_eq!(
            auth.change_address(user.id, "alice", "alice@example.com", testing::ORIGIN)
                .await
                .unwrap(),
            AddressChange::Unchanged
        );
        assert_eq!(
            auth.change_address(user.id, "alice", "new@example.org", testing::ORIGIN)
                .await
                .unwrap(),
            AddressChange::Sent
        );
        let mails = outbox(&pool).await;
        let n = mails.len();
        assert_eq!(mails[n - 2].0, "verify_address");
        assert_eq!(mails[n - 2].1, "new@example.org");
        assert_eq!(
            (mails[n - 1].0.as_str(), mails[n - 1].1.as_str()),
            ("address_changing", "alice@example.com")
        );
        let status = auth.address_status(user.id).await.unwrap();
        assert_eq!(status.email.as_deref(), Some("alice@example.com"));
        assert_eq!(status.pending.as_deref(), Some("new@example.org"));
        // The old address still signs in until the new one is confirmed.
        assert!(sign_in(&auth, "alice@example.com", PASSWORD)
            .await
            .is_some());
        // Too soon for another change.
        assert!(matches!(
            auth.change_address(user.id, "alice", "third@example.org", testing::ORIGIN)
                .await
                .unwrap(),
            AddressChange::TooSoon(_)
        ));
        let token = token_in(&mails[n - 2].2);
        assert!(matches!(
            auth.confirm_address(&token, testing::ORIGIN).await.unwrap(),
            Confirmed::Done { .. }
        ));
        let status = auth.address_status(user.id).await.unwrap();
        assert_eq!(status.email.as_deref(), Some("new@example.org"));
        assert!(status.verified && status.pending.is_none());
        assert!(sign_in(&auth, "alice@example.com", PASSWORD)
            .await
            .is_none());
        assert!(sign_in(&auth, "new@example.org", PASSWORD).await.is_some());
    }

    /// Two accounts ask for the same address; the first to follow its link gets it, the other
    /// link then changes nothing.
    #[tokio::test]
    async fn the_first_to_confirm_an_address_holds_it() {
        let (_dir, pool, auth) = core().await;
        sign_up(&auth, "alice", Some("shared@example.com")).await;
        let alice_token = token_in(&outbox(&pool).await.pop().unwrap().2);
        let bob = sign_up(&auth, "bob", Some("shared@example.com")).await;
        let bob_token = token_in(&outbox(&pool).await.pop().unwrap().2);
        assert!(matches!(
            auth.confirm_address(&bob_token, testing::ORIGIN)
                .await
                .unwrap(),
            Confirmed::Done { .. }
        ));
        assert_eq!(
            auth.confirm_address(&alice_token, testing::ORIGIN)
                .await
                .unwrap(),
            Confirmed::InUse
        );
        let proof = sign_in(&auth, "shared@example.com", PASSWORD)
            .await
            .unwrap();
        assert_eq!(proof.user().id, bob.id);
    }

    /// A sign-in from a device with no proof of an earlier sign-in tells the verified address,
    /// in the session's transaction; one from a known device does not; an account without a
    /// verified address gets nothing.
    #[tokio::test]
    async fn a_sign_in_from_a_new_device_tells_the_owner() {
        let (_dir, pool, auth) = core().await;
        let hash = auth.passwords.hash(PASSWORD.into()).await.unwrap();
        users::create(&pool, "nomail", &hash).await.unwrap();
        let proof = sign_in(&auth, "nomail", PASSWORD).await.unwrap();
        auth.start_session(&proof, "ua", None)
            .await
            .unwrap()
            .unwrap();
        assert!(outbox(&pool).await.is_empty());

        let user = verified(&auth, &pool, "alice", "alice@example.com").await;
        let before = outbox(&pool).await.len();
        let proof = sign_in(&auth, "alice", PASSWORD).await.unwrap();
        auth.start_session(
            &proof,
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
            None,
        )
        .await
        .unwrap()
        .unwrap();
        let mails = outbox(&pool).await;
        assert_eq!(mails.len(), before + 1);
        assert_eq!(mails[before].0, "new_sign_in");
        // From a device that signed in before: no notice.
        let device = auth.devices.issue(
            crate::device::Account {
                user_id: user.id,
                created_at: user.created_at,
            },
            crate::device::DeviceId::random(),
            now_unix(),
        );
        let Ok(Step::Done(proof)) =
            authn::sign_in(&auth, "alice", None, vec![device], PASSWORD.into(), "test").await
        else {
            panic!()
        };
        auth.start_session(&proof, "ua", None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outbox(&pool).await.len(), before + 1);
    }

    /// Password changes and deletions tell the verified address, in their own transaction.
    #[tokio::test]
    async fn a_password_change_and_a_deletion_tell_the_owner() {
        let (_dir, pool, auth) = core().await;
        let user = verified(&auth, &pool, "alice", "alice@example.com").await;
        let proof = sign_in(&auth, "alice", PASSWORD).await.unwrap();
        let s = auth
            .start_session(&proof, "ua", None)
            .await
            .unwrap()
            .unwrap();
        let hash = auth
            .passwords
            .hash("another password".into())
            .await
            .unwrap();
        auth.change_password(user.id, s.session_id, &hash, now_unix(), testing::ORIGIN)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outbox(&pool).await.pop().unwrap().0, "password_changed");
        assert!(auth
            .delete_account(user.id, now_unix(), testing::ORIGIN, "owner")
            .await
            .unwrap());
        let (kind, to, _) = outbox(&pool).await.pop().unwrap();
        assert_eq!(
            (kind.as_str(), to.as_str()),
            ("account_deleted", "alice@example.com")
        );
        let links: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM email_links")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(links, 0);
    }

    /// An intruder with the password asks to move the account to their address; the owner,
    /// told, resets the password: the intruder's link is dead, and so is any link sent before.
    /// Going back to the current address calls a change off too.
    #[tokio::test]
    async fn a_reset_or_a_change_back_kills_a_pending_change_of_address() {
        let (_dir, pool, auth) = core().await;
        let user = verified(&auth, &pool, "alice", "alice@example.com").await;
        let changed = auth
            .change_address(user.id, "alice", "evil@example.net", testing::ORIGIN)
            .await
            .unwrap();
        assert_eq!(changed, AddressChange::Sent);
        let evil = token_in(
            &outbox(&pool)
                .await
                .iter()
                .rev()
                .find(|m| m.1 == "evil@example.net")
                .unwrap()
                .2,
        );
        // The owner resets the password through their (still current) address.
        sqlx::query("UPDATE email_links SET created_at = 0")
            .execute(&pool)
            .await
            .unwrap();
        assert!(auth.request_reset("alice@example.com").await.unwrap());
        let reset = token_in(&outbox(&pool).await.pop().unwrap().2);
        let hash = auth
            .passwords
            .hash("owner's new password".into())
            .await
            .unwrap();
        assert!(matches!(
            auth.reset_password(&reset, &hash, None, testing::ORIGIN)
                .await
                .unwrap(),
            ResetOutcome::Done(_)
        ));
        assert_eq!(
            auth.confirm_address(&evil, testing::ORIGIN).await.unwrap(),
            Confirmed::NotLive(LinkState::Expired)
        );
        assert_eq!(
            auth.address_status(user.id).await.unwrap().email.as_deref(),
            Some("alice@example.com")
        );
        // A change, then back: the change's link is dead.
        auth.change_address(user.id, "alice", "second@example.org", testing::ORIGIN)
            .await
            .unwrap();
        let second = token_in(
            &outbox(&pool)
                .await
                .iter()
                .rev()
                .find(|m| m.1 == "second@example.org")
                .unwrap()
                .2,
        );
        assert_eq!(
            auth.change_address(user.id, "alice", "ALICE@example.com", testing::ORIGIN)
                .await
                .unwrap(),
            AddressChange::Unchanged
        );
        assert_eq!(
            auth.confirm_address(&second, testing::ORIGIN)
                .await
                .unwrap(),
            Confirmed::NotLive(LinkState::Expired)
        );
        assert!(auth
            .address_status(user.id)
            .await
            .unwrap()
            .pending
            .is_none());
    }

    /// A reset link sent to the old address dies when a new address is confirmed.
    #[tokio::test]
    async fn a_reset_link_dies_with_the_address_it_was_sent_to() {
        let (_dir, pool, auth) = core().await;
        let user = verified(&auth, &pool, "alice", "alice@example.com").await;
        assert!(auth.request_reset("alice").await.unwrap());
        let reset = token_in(&outbox(&pool).await.pop().unwrap().2);
        auth.change_address(user.id, "alice", "new@example.org", testing::ORIGIN)
            .await
            .unwrap();
        let confirm = token_in(
            &outbox(&pool)
                .await
                .iter()
                .rev()
                .find(|m| m.1 == "new@example.org")
                .unwrap()
                .2,
        );
        assert!(matches!(
            auth.confirm_address(&confirm, testing::ORIGIN)
                .await
                .unwrap(),
            Confirmed::Done { .. }
        ));
        assert_eq!(
            auth.link_state(&reset, Purpose::Reset).await.unwrap(),
            LinkState::Expired
        );
    }

    /// Sign-ups that all give one victim's address: a few mails reach it, then no more (the
    /// sign-ups themselves answer as usual).
    #[tokio::test]
    async fn sign_ups_cannot_flood_a_mailbox() {
        let (_dir, pool, auth) = core().await;
        for i in 0..10 {
            sign_up(&auth, &format!("user{i}"), Some("victim@example.com")).await;
        }
        let to_victim = outbox(&pool)
            .await
            .into_iter()
            .filter(|m| m.1 == "victim@example.com")
            .count();
        assert_eq!(to_victim, crate::throttle::MAIL_TO_BURST as usize);
    }

    /// `EMAIL=off`: no notice is queued by a sign-in, a password change or a deletion.
    #[tokio::test]
    async fn with_mail_off_nothing_is_queued() {
        let (_dir, pool, auth) = core().await;
        let user = verified(&auth, &pool, "alice", "alice@example.com").await;
        let before = outbox(&pool).await.len();
        let mut auth = Arc::try_unwrap(auth).unwrap();
        auth.mail.enabled = false;
        let auth = Arc::new(auth);
        let proof = sign_in(&auth, "alice", PASSWORD).await.unwrap();
        let s = auth
            .start_session(&proof, "ua", None)
            .await
            .unwrap()
            .unwrap();
        let hash = auth
            .passwords
            .hash("another password".into())
            .await
            .unwrap();
        auth.change_password(user.id, s.session_id, &hash, now_unix(), testing::ORIGIN)
            .await
            .unwrap()
            .unwrap();
        assert!(auth
            .delete_account(user.id, now_unix(), testing::ORIGIN, "owner")
            .await
            .unwrap());
        assert_eq!(outbox(&pool).await.len(), before);
    }

    /// A link mail still waiting when its link dies (a newer one asked for, say, after the
    /// mail server was away) is given up on, and its text blanked, before a sender claims it;
    /// the newer one goes.
    #[tokio::test]
    async fn a_mail_whose_link_died_is_not_sent() {
        let (_dir, pool, auth) = core().await;
        verified(&auth, &pool, "alice", "alice@example.com").await;
        assert!(auth.request_reset("alice").await.unwrap());
        sqlx::query("UPDATE email_links SET created_at = 0")
            .execute(&pool)
            .await
            .unwrap();
        assert!(auth.request_reset("alice").await.unwrap());
        let store = auth.health.store();
        // The first reset mail, and the confirming mail (no sender runs here: it still waits,
        // and its link was followed already).
        assert_eq!(store.drop_dead_links(now_unix()).await.unwrap(), 2);
        let rows: Vec<(Option<i64>, String)> = sqlx::query_as(
            "SELECT failed_at, body_text FROM outbox WHERE kind = 'reset_password' ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(rows[0].0.is_some() && rows[0].1.is_empty(), "{rows:?}");
        assert!(rows[1].0.is_none() && rows[1].1.contains("token="));
        assert_eq!(store.drop_dead_links(now_unix()).await.unwrap(), 0);
    }
}
