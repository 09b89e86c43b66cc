//! Building the shared state at start-up: the database (migrations run), the revocations and
//! sessions loaded, the token keys, the hashing pool, the throttle and the caches.

use std::sync::Arc;

use app::{
    auth::{
        cookie::AuthCookie,
        credentials::password::Passwords,
        device::DeviceProofs,
        revocation::{feed, Revocations},
        sessions::Sessions,
        throttle::{RefreshLimits, Throttle},
        tokens::{access::TokenKeys, refresh::RefreshSecret},
        users::UserCache,
        AppState, Auth,
    },
    store,
};
use leptos::config::LeptosOptions;

use crate::{config, Config, ISSUER};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Db(#[from] store::DbError),
    #[error("cannot load the revoked tokens and ended sessions: {0}")]
    LoadRevocations(store::StoreError),
    #[error("cannot load the sessions: {0}")]
    Sessions(store::StoreError),
    #[error("cannot read the revocations: {0}")]
    RevocationFeed(store::StoreError),
    #[error("invalid token settings: {0}")]
    Keys(#[from] app::auth::tokens::access::KeyError),
    #[error("cannot prepare password hashing: {0}")]
    Passwords(#[from] app::auth::credentials::password::PasswordError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Mail(#[from] app::auth::mail::sender::SmtpConfigError),
}

/// Opens the database (running migrations), loads the revocations and builds the shared state.
pub async fn build_state(
    config: &Config,
    leptos_options: LeptosOptions,
) -> Result<AppState, StartError> {
    let (auth, store, cursor) = build_auth(config).await?;
    let pool = store.pool().clone();
    let auth = Arc::new(auth);
    crate::background::spawn_sender(&store, &auth.mail, &config.mail)?;
    match store.dialect() {
        store::Dialect::Postgres => crate::background::follow_revocations(
            &store,
            auth.clone(),
            cursor,
            config.resync_interval,
        ),
        store::Dialect::Sqlite => crate::background::follow_ended_sessions(
            &store,
            auth.clone(),
            cursor,
            config.resync_interval,
        ),
    }
    Ok(AppState::new(leptos_options, pool, auth))
}

/// The core on the configured database, with nothing running beside it (no mail sender, no
/// revocation feed): what `server admin` works with. Also where the other processes' endings
/// of sessions stood when it was built, for the running server to follow from.
pub async fn build_auth(config: &Config) -> Result<(Auth, store::Store, i64), StartError> {
    let store = store::Store::connect(&config.database_url).await?;
    let health = store::Health::new(store.clone());
    // Other processes end sessions too (other instances on PostgreSQL, the operator's
    // `server admin` on both): where their endings stand is read before anything is loaded,
    // and followed from there (`app::auth::revocation::feed`; on SQLite, the table of session
    // endings).
    let cursor = match store.dialect() {
        store::Dialect::Postgres => feed::cursor(&store).await,
        store::Dialect::Sqlite => store.session_endings_cursor().await,
    }
    .map_err(StartError::RevocationFeed)?;
    // Revoked tokens and ended sessions, in one set.
    let revocations = Arc::new(
        Revocations::load(store.clone())
            .await
            .map_err(StartError::LoadRevocations)?,
    );
    let purged = revocations
        .purge_expired()
        .await
        .map_err(StartError::LoadRevocations)?;
    tracing::info!(revoked = revocations.len(), purged, "revocations loaded");
    let sessions = Sessions::new(
        store.clone(),
        config.lifetimes,
        RefreshSecret::derive(&config.jwt_secret),
        revocations.clone(),
    )
    .with_cache(config.cache_entries)
    .with_refresh_limits(if config.throttle {
        RefreshLimits::default()
    } else {
        RefreshLimits::default().disabled()
    });
    let purged = sessions
        .purge(app::auth::tokens::access::now_unix())
        .await
        .map_err(StartError::Sessions)?;
    tracing::info!(ended = sessions.ended_len(), purged, "sessions loaded");
    // A hashing thread per core, at a lower priority than the runtime's (see
    // identity::credentials::password): sign-in uses the whole machine and a login storm still
    // leaves every other request its latency.
    let hashers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !config.trusted_proxies.is_empty() {
        tracing::info!(proxies = ?config.trusted_proxies, "client addresses are read from X-Forwarded-For when the peer is a trusted proxy");
    }
    let auth = Auth {
        keys: TokenKeys::new(&config.jwt_secret, ISSUER, config.lifetimes.access)?
            .with_cache(config.cache_entries),
        revocations,
        passwords: Passwords::new(hashers)?,
        throttle: {
            // One instance on SQLite counts in memory; on PostgreSQL the instances share one
            // set of counts, or N instances would give N times the guesses.
            let throttle = match store.dialect() {
                store::Dialect::Sqlite => Throttle::default(),
                store::Dialect::Postgres => Throttle::shared(health.clone(), &config.jwt_secret),
            };
            if config.throttle {
                throttle
            } else {
                tracing::warn!(
                    "LOGIN_THROTTLE=off: sign-ins, sign-ups and refreshes are not limited"
                );
                throttle.disabled()
            }
        },
        users: UserCache::with_capacity(health.clone(), config.cache_entries),
        sessions,
        cookie: AuthCookie::new(config.secure_cookie),
        devices: DeviceProofs::new(&config.jwt_secret),
        proxies: config.trusted_proxies.clone(),
        health,
        mail: mail(config),
        factors: factors(config),
    };
    Ok((auth, store, cursor))
}

/// Second factors and fresh authentication, from the settings.
fn factors(config: &Config) -> app::auth::factors::Factors {
    use app::auth::factors::passkeys::PasskeySettings;
    // The relying party of passkeys is the public address (checked here, at start).
    let passkeys = match PasskeySettings::from_public_url(
        &config.mail.public_url,
        &config.mail.app_name,
        config.production,
    ) {
        Ok(settings) => {
            tracing::info!(rp_id = %settings.rp_id, origin = %settings.origin, "passkeys on");
            Some(settings)
        }
        Err(e) => {
            tracing::warn!("passkeys off: PUBLIC_URL {e}");
            None
        }
    };
    app::auth::factors::Factors {
        reauth_window: config.reauth_window,
        issuer: config.mail.app_name.clone(),
        passkeys,
        ..app::auth::factors::Factors::new(app::auth::factors::FactorKey::derive(
            &config.factor_key,
        ))
    }
}

/// How the service mails, from its settings.
fn mail(config: &Config) -> app::auth::mail::Mail {
    let settings = &config.mail;
    app::auth::mail::Mail {
        enabled: settings.enabled,
        site: app::auth::mail::compose::Site {
            name: settings.app_name.clone(),
            public_url: settings.public_url.clone(),
        },
        reset_ttl: i64::try_from(settings.reset_ttl.as_secs()).unwrap_or(i64::MAX),
        required: settings.required,
        // Development without a mail server only: mail then stays in the outbox, to be read
        // at /dev/mail (from this machine).
        dev_page: !config.production && config.mail.smtp.is_none(),
        ..Default::default()
    }
}
