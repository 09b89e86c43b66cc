//! The server: configuration, database, router and serving. The app's logic lives in `app`;
//! this crate only wires it together, so tests can build the same router on their own database.

pub mod config;
pub mod middleware;

use std::{sync::Arc, time::Duration};

use app::{
    auth::{
        cookie::AuthCookie,
        device::DeviceProofs,
        follow,
        jwt::TokenKeys,
        password::Passwords,
        revocation::Revocations,
        sessions::{RefreshSecret, Sessions},
        throttle::{RefreshLimits, Throttle},
        users::UserCache,
        AppState, Auth,
    },
    shell, store, App,
};
use axum::{
    http::header, middleware as mw, response::IntoResponse, routing::get, Extension, Router,
};
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::{
    limit::RequestBodyLimitLayer, set_header::SetResponseHeaderLayer, trace::TraceLayer,
};

pub use config::{Config, DEFAULT_DATABASE_URL};

/// Largest request body accepted (the auth forms are a few hundred bytes).
pub const BODY_LIMIT: usize = 8 * 1024;
/// Token issuer (`iss`) written and required.
pub const ISSUER: &str = "authapp";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Db(#[from] store::DbError),
    #[error("cannot load the revoked tokens and ended sessions: {0}")]
    Blocklist(store::StoreError),
    #[error("cannot load the sessions: {0}")]
    Sessions(store::StoreError),
    #[error("cannot read the revocations: {0}")]
    Revocations(store::StoreError),
    #[error("invalid token settings: {0}")]
    Keys(#[from] app::auth::jwt::KeyError),
    #[error("cannot prepare password hashing: {0}")]
    Passwords(#[from] app::auth::password::PasswordError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the database (running migrations), loads the blocklist and builds the shared state.
pub async fn build_state(
    config: &Config,
    leptos_options: LeptosOptions,
) -> Result<AppState, StartError> {
    let pool = store::connect(&config.database_url).await?;
    let db = store::Store::new(pool.clone());
    let health = store::Health::new(pool.clone());
    // On PostgreSQL other instances revoke too: where their revocations stand is read before
    // anything is loaded, and followed from there (`app::auth::follow`).
    let cursor = match store::dialect(&pool) {
        store::Dialect::Postgres => {
            Some(follow::cursor(&db).await.map_err(StartError::Revocations)?)
        }
        store::Dialect::Sqlite => None,
    };
    // Revoked tokens and ended sessions, in one set.
    let revocations = Arc::new(
        Revocations::load(db.clone())
            .await
            .map_err(StartError::Blocklist)?,
    );
    let purged = revocations
        .purge_expired()
        .await
        .map_err(StartError::Blocklist)?;
    tracing::info!(revoked = revocations.len(), purged, "blocklist loaded");
    let sessions = Sessions::new(
        db.clone(),
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
        .purge(app::auth::jwt::now_unix())
        .await
        .map_err(StartError::Sessions)?;
    tracing::info!(ended = sessions.ended_len(), purged, "sessions loaded");
    // One core is left to the async runtime: a login storm must not stall every other request.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hashers = cores.saturating_sub(1).max(1);
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
            let throttle = match store::dialect(&pool) {
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
    };
    let auth = Arc::new(auth);
    if let Some(cursor) = cursor {
        follow::spawn(&db, auth.clone(), cursor, config.resync_interval);
        tracing::info!(
            resync = ?config.resync_interval,
            "PostgreSQL: following the revocations of every instance"
        );
    }
    Ok(AppState::new(leptos_options, pool, auth))
}

/// The whole HTTP surface: Leptos pages and server functions, `/health`, and the layers.
///
/// Two stacks. The hot path (`GET /health`, `GET /api/me`) answers small JSON or text from
/// memory, so it goes through only what such an answer needs: the auth state and the static
/// headers every answer carries, as one layer. Everything else (pages, server functions,
/// assets, and another method on `/api/me`) goes through the full stack, whose layers each cost
/// a boxed future per request; measured with `make bench`.
pub fn router(state: AppState) -> Router {
    let https = state.auth.cookie.secure();
    let pages = pages(state.clone());
    // The headers every answer carries, set in one unboxed step: one layer in all. The
    // user comes from the state (`SignedIn`), so no `Extension` is inserted either.
    let headers = ServiceBuilder::new().map_response(move |mut res: axum::response::Response| {
        let h = res.headers_mut();
        for (name, value) in middleware::security_headers() {
            h.entry(name).or_insert(value);
        }
        h.entry(header::CACHE_CONTROL)
            .or_insert(middleware::NO_STORE);
        if https {
            h.insert(header::STRICT_TRANSPORT_SECURITY, middleware::HSTS);
        }
        res
    });
    let [health, me] = HOT_PATHS;
    let hot = Router::new()
        .route(health, get(|| async { "ok" }))
        .route(
            me,
            // Another method is the API door's to answer (405 with `Allow`): it goes on to the
            // full stack, inside these layers too (which change nothing there).
            get(app::api::server::me_handler).fallback_service(pages.clone()),
        )
        .with_state(state)
        .layer(headers);
    // A span per request on the hot path only when it would be recorded (not at
    // RUST_LOG=warn): its answers are logged where they fail, and `/health` cannot fail.
    let hot = if tracing::span_enabled!(tracing::Level::INFO) {
        hot.layer(trace())
    } else {
        hot
    };
    // Set after the hot path's layers, so the pages go through their own stack only.
    hot.fallback_service(pages)
}

/// The paths whose `GET` (and `HEAD`) the hot stack answers: `/health` and `/api/me`.
const HOT_PATHS: [&str; 2] = ["/health", app::openapi::ME_PATH];

/// Makes the service of each connection: the router, and the client's address.
#[derive(Clone)]
struct WithPeer(Router);

/// The service of one connection. The client's address (axum's `ConnectInfo`, read by the
/// sign-in throttle and for the sessions' addresses) is put in the extensions of every request
/// but the hot path's, which never reads it: one boxed value and one map insert fewer per
/// request on the path `make bench` holds to 90 % of bare axum.
#[derive(Clone)]
struct Peer {
    router: Router,
    addr: std::net::SocketAddr,
}

impl<'a, L> tower::Service<axum::serve::IncomingStream<'a, L>> for WithPeer
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    type Response = Peer;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Peer, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: axum::serve::IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(Peer {
            router: self.0.clone(),
            addr: *incoming.remote_addr(),
        }))
    }
}

impl tower::Service<axum::extract::Request> for Peer {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower::Service<axum::extract::Request>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::<axum::extract::Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut req: axum::extract::Request) -> Self::Future {
        let hot = matches!(*req.method(), http::Method::GET | http::Method::HEAD)
            && HOT_PATHS.contains(&req.uri().path());
        if !hot {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(self.addr));
        }
        self.router.call(req)
    }
}

/// The request span (and the ERROR log of a 5xx answer): method and path only; no headers
/// (cookies, tokens), no query, no body.
fn trace() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&axum::extract::Request) -> tracing::Span,
> {
    TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
    })
}

fn hsts() -> SetResponseHeaderLayer<header::HeaderValue> {
    SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, middleware::HSTS)
}

/// Pages, server functions, the API's other routes and the assets, behind every layer.
fn pages(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let auth = state.auth.clone();
    let https = auth.cookie.secure();
    let mut router = Router::new()
        .route(
            app::openapi::DOCUMENT_PATH,
            get(openapi_document(auth.cookie)),
        )
        .leptos_routes(&state, routes, move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .with_state(state)
        // Layers run bottom-up: the last one added sees the request first.
        .layer(mw::from_fn(middleware::sessions_page))
        .layer(mw::from_fn(middleware::protect_pages))
        .layer(mw::from_fn(middleware::refresh_session))
        .layer(mw::from_fn(middleware::api_requests))
        .layer(mw::from_fn(middleware::same_origin_posts))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        // Outside the body limit, so its bare 413 gets a JSON body too.
        .layer(mw::from_fn(middleware::api_error_status))
        .layer(mw::from_fn(middleware::no_store))
        .layer(Extension(auth));
    for (name, value) in middleware::security_headers() {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    if https {
        router = router.layer(hsts());
    }
    router.layer(trace())
}

/// The handler of `GET /api/openapi.json`: the document, written once.
fn openapi_document(
    cookie: AuthCookie,
) -> impl Fn() -> std::future::Ready<axum::response::Response> + Clone + Send + Sync + 'static {
    let json = app::openapi::document(cookie)
        .to_json()
        .expect("the OpenAPI document is plain data and always serialises");
    let json = axum::body::Bytes::from(json);
    move || {
        std::future::ready(
            ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response(),
        )
    }
}

/// Drops expired revocations every `interval`, for as long as the process lives.
pub fn spawn_purge(state: &AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
    let auth = state.auth.clone();
    let db = store::Store::new(state.pool.clone());
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
                Ok(n) => tracing::debug!(purged = n, "blocklist purge"),
                Err(e) => tracing::warn!(error = %e, "blocklist purge failed"),
            }
            match auth.sessions.purge(app::auth::jwt::now_unix()).await {
                Ok(n) => tracing::debug!(purged = n, "sessions purge"),
                Err(e) => tracing::warn!(error = %e, "sessions purge failed"),
            }
            if db.dialect() == store::Dialect::Postgres {
                let dead = app::auth::jwt::now_unix() - app::auth::jwt::LEEWAY_SECS as i64;
                if let Err(e) = follow::purge(&db, dead).await {
                    tracing::warn!(error = %e, "revocations purge failed");
                }
            }
        }
    })
}

/// How long in-flight requests may take to finish once shutdown has begun.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// for up to [`SHUTDOWN_GRACE`]: a client that never reads its answer cannot hold the process.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY each keep-alive response waits ~40 ms for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let begun = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let begun = begun.clone();
        async move {
            shutdown.await;
            begun.notify_one();
        }
    };
    // Each request but the hot path's carries the client's address (`ConnectInfo`).
    let serving = axum::serve(listener, WithPeer(router)).with_graceful_shutdown(signal);
    tokio::select! {
        served = serving => served,
        () = async {
            begun.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("requests still in flight {SHUTDOWN_GRACE:?} after shutdown began: closing them");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
