//! The tasks that run beside the requests for as long as the process lives: the periodic purge
//! of what has expired, and (on PostgreSQL) the feed of the other instances' revocations.
//! (The sessions' use writers are started by the sessions themselves.)

use std::{sync::Arc, time::Duration};

use app::{
    auth::{revocation::feed, AppState, Auth},
    store,
};

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

/// Drops expired revocations every `interval`, for as long as the process lives.
pub fn spawn_purge(state: &AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
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
            if store.dialect() == store::Dialect::Postgres {
                let dead = app::auth::tokens::access::now_unix()
                    - app::auth::tokens::access::LEEWAY_SECS as i64;
                if let Err(e) = feed::purge(&store, dead).await {
                    tracing::warn!(error = %e, "revocations purge failed");
                }
            }
        }
    })
}
