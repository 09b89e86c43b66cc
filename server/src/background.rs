//! The tasks that run beside the requests for as long as the process lives: the periodic purge
//! of what has expired, the outbox's sender, and (on PostgreSQL) the feed of the other
//! instances' revocations.
//! (The sessions' use writers are started by the sessions themselves.)

use std::{sync::Arc, time::Duration};

use app::{
    auth::{
        mail::{self, sender},
        revocation::feed,
        AppState, Auth,
    },
    store,
};

use crate::config::MailConfig;

/// Starts the outbox's sender when there is a mail server to send to, woken by `mail`'s wake.
/// Without one, in development, mail stays in the outbox for /dev/mail.
pub(crate) fn spawn_sender(
    store: &store::Store,
    mail: &mail::Mail,
    settings: &MailConfig,
) -> Result<(), sender::SmtpConfigError> {
    if !settings.enabled {
        tracing::info!("EMAIL=off: the service sends no mail");
        return Ok(());
    }
    let Some(smtp) = &settings.smtp else {
        tracing::info!(
            "no SMTP_URL: mail is not sent; it stays in the outbox, and can be read at /dev/mail"
        );
        return Ok(());
    };
    if smtp.insecure() {
        tracing::warn!(
            security = ?smtp.security,
            "SMTP_URL: mail (and the mail server's password, if any) may cross the network \
             unencrypted; only for a relay on this machine or a network of its own"
        );
    }
    sender::Sender::new(store.clone(), smtp, mail.wake.clone())?.spawn();
    tracing::info!(host = %smtp.host, port = smtp.port, security = ?smtp.security, "sending mail");
    Ok(())
}

/// Follows the revocations of every instance from `cursor` on, re-reading them all every
/// `resync` (see `app::auth::revocation::feed`).
pub(crate) fn follow_revocations(
    store: &store::Store,
    auth: Arc<Auth>,
    cursor: i64,
    resync: Duration,
) {
    feed::spawn(store, auth, cursor, resync);
    tracing::info!(
        resync = ?resync,
        "PostgreSQL: following the revocations of every instance"
    );
}

/// SQLite: follows the endings of sessions from `cursor` on, looking every `every` (the file
/// has no NOTIFY), so that what another process ended (the operator's `server admin` on the
/// same database) is refused here within about that long, as the PostgreSQL feed does
/// between instances.
pub(crate) fn follow_ended_sessions(
    store: &store::Store,
    auth: Arc<Auth>,
    mut cursor: i64,
    every: Duration,
) {
    let store = store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            loop {
                match store.session_endings_after(cursor, 1000).await {
                    Ok(ended) => {
                        if std::mem::take(&mut failing) {
                            tracing::info!("following the ended sessions again");
                        }
                        let read = ended.len();
                        app::auth::metrics::revocations_followed(read);
                        for (id, session, access_exp) in ended {
                            auth.revocations.remember_ended(session, access_exp);
                            cursor = id;
                        }
                        if read < 1000 {
                            app::auth::revocation::feed::read_all_now();
                            break;
                        }
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(
                                error = %e,
                                "reading the ended sessions failed: sessions another process \
                                 ends are not refused here until it works again"
                            );
                        }
                        break;
                    }
                }
            }
        }
    });
}

/// Drops expired revocations every `interval`, for as long as the process lives.
///
/// Security events go once older than `retention` (`AUDIT_RETENTION`).
pub fn spawn_purge(
    state: &AppState,
    interval: Duration,
    retention: Duration,
) -> tokio::task::JoinHandle<()> {
    let auth = state.auth.clone();
    let store = auth.health.store().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await; // the first tick is immediate; start-up already purged
        loop {
            tick.tick().await;
            match auth.throttle.forget_stale().await {
                Ok(n) => tracing::debug!(purged = n, "sign-in limits purge"),
                Err(e) => tracing::warn!(error = %e, "sign-in limits purge failed"),
            }
            auth.sessions.refresh_limits().forget_stale();
            match auth.revocations.purge_expired().await {
                Ok(n) => tracing::debug!(purged = n, "revocations purge"),
                Err(e) => tracing::warn!(error = %e, "revocations purge failed"),
            }
            match auth
                .sessions
                .purge(app::auth::tokens::access::now_unix())
                .await
            {
                Ok(n) => tracing::debug!(purged = n, "sessions purge"),
                Err(e) => tracing::warn!(error = %e, "sessions purge failed"),
            }
            let done_before = app::auth::tokens::access::now_unix()
                - i64::try_from(sender::KEEP_DONE.as_secs()).unwrap_or(i64::MAX);
            match store.purge_outbox(done_before).await {
                Ok(n) => tracing::debug!(purged = n, "outbox purge"),
                Err(e) => tracing::warn!(error = %e, "outbox purge failed"),
            }
            // A link over for a day is forgotten: following it is then "not valid" rather
            // than "expired" or "used".
            let links_before = app::auth::tokens::access::now_unix() - 86_400;
            match store.purge_links(links_before).await {
                Ok(n) => tracing::debug!(purged = n, "mailed links purge"),
                Err(e) => tracing::warn!(error = %e, "mailed links purge failed"),
            }
            // Security events past their retention.
            let events_before = app::auth::tokens::access::now_unix()
                - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
            match store.purge_events(events_before).await {
                Ok(n) => tracing::debug!(purged = n, "security events purge"),
                Err(e) => tracing::warn!(error = %e, "security events purge failed"),
            }
            // WebAuthn ceremonies the browser never finished.
            match store
                .purge_ceremonies(app::auth::tokens::access::now_unix())
                .await
            {
                Ok(n) => tracing::debug!(purged = n, "passkey ceremonies purge"),
                Err(e) => tracing::warn!(error = %e, "passkey ceremonies purge failed"),
            }
            // A sign-in waiting for its second factor past its few minutes.
            match store
                .purge_pending_sign_ins(app::auth::tokens::access::now_unix())
                .await
            {
                Ok(n) => tracing::debug!(purged = n, "waiting sign-ins purge"),
                Err(e) => tracing::warn!(error = %e, "waiting sign-ins purge failed"),
            }
            let dead = app::auth::tokens::access::now_unix()
                - app::auth::tokens::access::LEEWAY_SECS as i64;
            let purged = match store.dialect() {
                store::Dialect::Postgres => feed::purge(&store, dead).await,
                store::Dialect::Sqlite => store.purge_session_endings(dead).await,
            };
            if let Err(e) = purged {
                tracing::warn!(error = %e, "followed revocations purge failed");
            }
        }
    })
}
