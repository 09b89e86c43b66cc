//! The account, as its signed-in owner changes it, once their password is checked
//! ([`check_password`](crate::credentials::check_password) with
//! [`Attempt::SignedIn`](crate::credentials::Attempt::SignedIn)): a new password, or the end of
//! the account. Each is one transaction of the store, in the one lock order
//! ([`crate::store::accounts`]); memory follows the commit.

use crate::{
    email::{Origin, Told},
    mail::compose::Notice,
    sessions::{LiveSession, WriteError},
    store::accounts::Switched,
    Auth,
};

impl Auth {
    /// Changes the password of `user_id` through their session `current` (see
    /// [`Store::change_password`](crate::store::Store::change_password)): the password hash and
    /// the credential stamp replaced, every other session ended (in memory too, from the next
    /// request on), this one renewed with no grace for its previous refresh token. The renewed
    /// session, or `None` (nothing changed) when `current` is no longer live.
    pub async fn change_password(
        &self,
        user_id: i64,
        current: uuid::Uuid,
        password_hash: &str,
        now: i64,
        origin: Origin<'_>,
    ) -> Result<Option<LiveSession>, WriteError> {
        let username = self.users.get(user_id).await?.map(|u| u.username);
        let told = Told::new(origin, now);
        let notice = |to: &str| {
            self.mail(
                Some(user_id),
                to,
                &Notice::PasswordChanged {
                    username: username.as_deref().unwrap_or_default(),
                    by_reset: false,
                    event: told.event(),
                },
            )
        };
        let event = crate::audit::Entry {
            user_id,
            kind: crate::audit::Kind::PasswordChanged,
            detail: "",
            seen: origin.into(),
            session: Some(current),
        };
        let changed = self
            .sessions
            .change_password(
                user_id,
                current,
                password_hash,
                now,
                self.when_mailing(&notice),
                &event,
            )
            .await?;
        if changed.is_some() {
            self.mail.wake.wake();
        }
        Ok(changed)
    }

    /// Deletes an account: every session of it ends (in the database, then in memory, so that
    /// from the next request on each of its tokens is refused as revoked), then its rows go
    /// (sessions and revocations with the user), and the user is forgotten. Forgetting is part of the deletion: SQLite hands a deleted id to
    /// the next account, and a remembered user would go on answering for it (its name on the
    /// newcomer's pages, its `created_at` in the token check). `false` when there was no such
    /// account.
    ///
    /// `by`: who deleted it, for its event (`owner` or `operator`).
    pub async fn delete_account(
        &self,
        user_id: i64,
        now: i64,
        origin: Origin<'_>,
        by: &str,
    ) -> Result<bool, WriteError> {
        let username = self.users.get(user_id).await?.map(|u| u.username);
        let told = Told::new(origin, now);
        let notice = |to: &str| {
            self.mail(
                Some(user_id),
                to,
                &Notice::AccountDeleted {
                    username: username.as_deref().unwrap_or_default(),
                    event: told.event(),
                },
            )
        };
        // What outlives the account: when, and by whom; nothing of the owner's device.
        let event = crate::audit::Entry {
            user_id,
            kind: crate::audit::Kind::AccountDeleted,
            detail: by,
            seen: if by == "operator" {
                crate::audit::Seen::OPERATOR
            } else {
                crate::audit::Seen::client(None, "")
            },
            session: None,
        };
        let deleted = self
            .sessions
            .delete_account(user_id, now, self.when_mailing(&notice), &event)
            .await?;
        self.users.forget(user_id);
        if deleted {
            self.mail.wake.wake();
        }
        Ok(deleted)
    }
}

/// What an operator's command did to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorDid {
    /// Done: this many sessions ended.
    Done { sessions_ended: usize },
    /// The account was so already: nothing changed.
    Already,
    /// No such account.
    NoSuchUser,
}

impl Auth {
    /// The operator disables account `user_id`: no sign-in from now on (a right password is
    /// answered `account_disabled`), every session ended (refused at once here; on
    /// PostgreSQL by every instance through the revocation feed, on SQLite by a running
    /// server within a second, see `store::Store::session_endings_after`).
    pub async fn disable_account(&self, user_id: i64) -> Result<OperatorDid, WriteError> {
        let now = crate::tokens::access::now_unix();
        let event = crate::audit::Entry {
            user_id,
            kind: crate::audit::Kind::AccountDisabled,
            detail: "",
            seen: crate::audit::Seen::OPERATOR,
            session: None,
        };
        let store = self.health.store();
        let did = self
            .sessions
            .credential_change(crate::sessions::EndReason::AccountDisabled, async {
                Ok(
                    match store.set_disabled(user_id, true, &event, now).await? {
                        Switched::Done(ended) => (
                            OperatorDid::Done {
                                sessions_ended: ended.len(),
                            },
                            Some(ended),
                        ),
                        Switched::Already => (OperatorDid::Already, None),
                        Switched::NoSuchUser => (OperatorDid::NoSuchUser, None),
                    },
                )
            })
            .await?;
        self.users.forget(user_id);
        Ok(did)
    }

    /// The operator enables account `user_id` again: it signs in as before.
    pub async fn enable_account(&self, user_id: i64) -> Result<OperatorDid, WriteError> {
        let now = crate::tokens::access::now_unix();
        let event = crate::audit::Entry {
            user_id,
            kind: crate::audit::Kind::AccountEnabled,
            detail: "",
            seen: crate::audit::Seen::OPERATOR,
            session: None,
        };
        let did = match self
            .health
            .store()
            .set_disabled(user_id, false, &event, now)
            .await?
        {
            Switched::Done(_) => OperatorDid::Done { sessions_ended: 0 },
            Switched::Already => OperatorDid::Already,
            Switched::NoSuchUser => OperatorDid::NoSuchUser,
        };
        self.users.forget(user_id);
        Ok(did)
    }

    /// The operator ends every session of account `user_id` (each ending an event, with the
    /// reason `operator`, and the command one of its own, even when no session was live); the
    /// account signs in again as before. How many ended.
    pub async fn end_sessions_by_operator(&self, user_id: i64) -> Result<usize, WriteError> {
        let now = crate::tokens::access::now_unix();
        let event = crate::audit::Entry {
            user_id,
            kind: crate::audit::Kind::SessionsEndedByOperator,
            detail: "",
            seen: crate::audit::Seen::OPERATOR,
            session: None,
        };
        let n = self
            .sessions
            .end_all(
                user_id,
                None,
                crate::sessions::EndReason::Operator,
                Some(&event),
                now,
            )
            .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        sessions::{LiveSession, RefreshError},
        testing,
        tokens::access::now_unix,
        Auth,
    };

    async fn start(auth: &Auth, user: i64) -> LiveSession {
        auth.sessions
            .create(
                user,
                testing::STAMP,
                "test",
                None,
                now_unix(),
                None,
                crate::factors::Method::Password,
                false,
            )
            .await
            .unwrap()
            .unwrap()
    }

    async fn stored(pool: &crate::store::Pool, column: &str) -> String {
        sqlx::query_scalar(&format!(
            "SELECT CAST({column} AS TEXT) FROM users WHERE id = 1"
        ))
        .fetch_one(pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_password_change_is_all_or_nothing_and_leaves_no_grace() {
        let (_dir, pool, auth) = testing::auth().await;
        testing::user(&pool, 1, 0).await;
        testing::user(&pool, 2, 0).await;
        let now = now_unix();
        let (mine, other, theirs) = (
            start(&auth, 1).await,
            start(&auth, 1).await,
            start(&auth, 2).await,
        );
        let stamp = stored(&pool, "credential_stamp").await;
        let renewed = auth
            .change_password(1, mine.id(), "new hash", now + 1, testing::ORIGIN)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(renewed.generation(), 2);
        let ended = |c: &LiveSession| auth.sessions.is_ended(&c.id());
        assert!(ended(&other) && !ended(&mine) && !ended(&theirs));
        assert_eq!(stored(&pool, "password_hash").await, "new hash");
        let changed = stored(&pool, "credential_stamp").await;
        assert_ne!(changed, stamp);
        // The refresh token from before the change is dead at once (and ends the session).
        assert!(matches!(
            auth.sessions
                .rotate(&mine.refresh_token(), None, now + 2)
                .await,
            Err(RefreshError::Reused)
        ));
        // From an ended session: nothing changes, not the password nor the stamp.
        let none = auth
            .change_password(1, other.id(), "another hash", now + 3, testing::ORIGIN)
            .await
            .unwrap();
        assert!(none.is_none());
        assert_eq!(stored(&pool, "password_hash").await, "new hash");
        assert_eq!(stored(&pool, "credential_stamp").await, changed);
    }

    /// Deleting an account ends its sessions first (committed, then in memory): when the user's
    /// row cannot go, the database and memory still agree that every session of it has ended,
    /// its tokens are refused, and the retry deletes the account.
    #[tokio::test]
    async fn deleting_an_account_ends_its_sessions_first() {
        let (_dir, pool, auth) = testing::auth().await;
        testing::user(&pool, 1, 0).await;
        let session = start(&auth, 1).await;
        let token = auth.issue(&session, now_unix()).unwrap().access_token;
        let bearer = |token: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(
                axum::http::header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            );
            headers
        };
        assert!(auth.authenticate(&bearer(&token)).await.is_ok());
        sqlx::query(
            "CREATE TRIGGER no_deleting BEFORE DELETE ON users \
             BEGIN SELECT RAISE(ABORT, 'the disk is full'); END",
        )
        .execute(&pool)
        .await
        .unwrap();
        assert!(auth
            .delete_account(1, now_unix(), testing::ORIGIN, "owner")
            .await
            .is_err());
        // The sessions ended first, in the database and in memory alike; the account stays,
        // and a retry deletes it.
        let live: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(live, 0);
        assert!(auth.sessions.is_ended(&session.id()));
        assert!(auth.authenticate(&bearer(&token)).await.is_err());
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(users, 1);

        sqlx::query("DROP TRIGGER no_deleting")
            .execute(&pool)
            .await
            .unwrap();
        assert!(auth
            .delete_account(1, now_unix(), testing::ORIGIN, "owner")
            .await
            .unwrap());
        assert!(auth.sessions.is_ended(&session.id()));
        assert!(auth.authenticate(&bearer(&token)).await.is_err());
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
        assert!(!auth
            .delete_account(1, now_unix(), testing::ORIGIN, "owner")
            .await
            .unwrap());
    }
}
