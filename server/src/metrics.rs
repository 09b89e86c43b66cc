//! Prometheus metrics, on their own listen address (`METRICS_ADDR`, off by default; never the
//! public port): requests by route and status with their latency, and the core's counters
//! (`identity::metrics`), plus what is read when scraped: the hashing queue, the database
//! pool, the outbox, the revocation feed's lag.
//!
//! Off (no `METRICS_ADDR`), no recorder is installed and nothing on the request path measures.

use std::{sync::Arc, time::Instant};

use app::auth::Auth;
use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by route, method and status, with how long each took (seconds).
pub const REQUEST_SECONDS: &str = "authapp_http_request_duration_seconds";
/// Requests waiting for a password hash, or hashing (the queue refuses past its length).
pub const HASHING_QUEUE: &str = "authapp_hashing_queue_depth";
/// The database pool's connections, by `state` (`in_use`, `idle`).
pub const DB_CONNECTIONS: &str = "authapp_db_connections";
/// Mails in the outbox not yet sent nor given up on.
pub const OUTBOX_DEPTH: &str = "authapp_outbox_depth";
/// Revoked tokens and ended sessions refused from memory.
pub const REVOKED_IN_MEMORY: &str = "authapp_revocations_in_memory";
/// Whether the database answered the last scrape's query (1) or not (0).
pub const DATABASE_UP: &str = "authapp_database_up";

/// Latency buckets (seconds): a hot-path answer takes tens of microseconds, a sign-in a few
/// tens of milliseconds, a slow database seconds.
const BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Whether the recorder is installed (and the routers measure their requests).
static ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether metrics are on in this process.
pub fn on() -> bool {
    ON.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the Prometheus recorder as the process's: from now on every counter counts, and
/// routers built after measure their requests. `None` when one was installed already.
pub fn install() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_SECONDS.to_owned()), &BUCKETS)
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    ON.store(true, std::sync::atomic::Ordering::Relaxed);
    describe();
    // The counters of a fixed set of outcomes start at 0: the first event after a start is an
    // increase to Prometheus too (a series born at 1 is not).
    for outcome in app::auth::metrics::SIGN_IN_OUTCOMES {
        metrics::counter!(app::auth::metrics::SIGN_INS, "outcome" => outcome).absolute(0);
    }
    for outcome in app::auth::metrics::REFRESH_OUTCOMES {
        metrics::counter!(app::auth::metrics::REFRESHES, "outcome" => outcome).absolute(0);
    }
    for retry in ["yes", "no"] {
        metrics::counter!(app::auth::metrics::MAIL_FAILURES, "retry" => retry).absolute(0);
    }
    metrics::counter!(app::auth::metrics::MAIL_SENT).absolute(0);
    metrics::counter!(app::auth::metrics::REVOCATIONS_FOLLOWED).absolute(0);
    Some(handle)
}

/// The help text of each metric, in the exposition.
fn describe() {
    use app::auth::metrics as core;
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Requests answered, by route, method and status, and how long each took"
    );
    metrics::describe_counter!(core::SIGN_INS, "Password sign-ins, by outcome");
    metrics::describe_counter!(core::REFRESHES, "Refresh-token presentations, by outcome");
    metrics::describe_counter!(core::SESSIONS_STARTED, "Sessions started, by method");
    metrics::describe_counter!(core::SESSIONS_ENDED, "Sessions ended, by reason");
    metrics::describe_counter!(
        core::REVOCATIONS_FOLLOWED,
        "Revocations learnt from the other instances"
    );
    metrics::describe_gauge!(
        core::FEED_LAG,
        metrics::Unit::Seconds,
        "Seconds since the other instances' revocations were last read in full"
    );
    metrics::describe_counter!(core::MAIL_SENT, "Mails handed over to the mail server");
    metrics::describe_counter!(
        core::MAIL_FAILURES,
        "Mails the mail server did not take, by whether they are tried again"
    );
    metrics::describe_counter!(core::AUDIT_EVENTS, "Security events recorded, by kind");
    metrics::describe_gauge!(
        HASHING_QUEUE,
        "Requests waiting for a password hash or hashing"
    );
    metrics::describe_gauge!(DB_CONNECTIONS, "Database pool connections, by state");
    metrics::describe_gauge!(OUTBOX_DEPTH, "Mails waiting to be sent");
    metrics::describe_gauge!(REVOKED_IN_MEMORY, "Revocations refused from memory");
    metrics::describe_gauge!(DATABASE_UP, "1 when the database answered the last scrape");
}

/// What the metrics listener serves: `GET /metrics`, the exposition, read fresh.
pub fn router(handle: PrometheusHandle, auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state((handle, auth))
}

async fn scrape(State((handle, auth)): State<(PrometheusHandle, Arc<Auth>)>) -> Response {
    let store = auth.health.store();
    metrics::gauge!(HASHING_QUEUE).set(auth.passwords.queued() as f64);
    let pool = store.pool();
    let idle = pool.num_idle();
    let open = pool.size() as usize;
    metrics::gauge!(DB_CONNECTIONS, "state" => "in_use").set(open.saturating_sub(idle) as f64);
    metrics::gauge!(DB_CONNECTIONS, "state" => "idle").set(idle as f64);
    metrics::gauge!(REVOKED_IN_MEMORY).set(auth.revocations.len() as f64);
    let now = app::auth::tokens::access::now_unix();
    if let Some(lag) = app::auth::revocation::feed::lag(now) {
        metrics::gauge!(app::auth::metrics::FEED_LAG).set(lag as f64);
    }
    // One short query: a database that does not answer within a second is reported down.
    let depth = tokio::time::timeout(std::time::Duration::from_secs(1), store.outbox_depth()).await;
    match depth {
        Ok(Ok(depth)) => {
            metrics::gauge!(OUTBOX_DEPTH).set(depth as f64);
            metrics::gauge!(DATABASE_UP).set(1.0);
        }
        _ => metrics::gauge!(DATABASE_UP).set(0.0),
    }
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// Serves the metrics on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The route label of a request to the full stack: the API's route (from the table of
/// endpoints), else the page route that matched, else `other` (assets, unknown paths): a few
/// dozen values in all, whatever the paths asked for.
fn route_of(req: &Request) -> &'static str {
    let path = req.uri().path();
    if path == "/health" {
        return "/health";
    }
    if let Some(endpoint) = app::api::contract::ENDPOINTS
        .iter()
        .find(|e| e.path == path)
    {
        return endpoint.path;
    }
    match req.extensions().get::<MatchedPath>() {
        Some(matched) => page_route(matched.as_str()),
        None if path.starts_with("/pkg/") => "/pkg",
        None => "other",
    }
}

/// A matched page route as a `'static` label: leaked once per distinct route (the router's
/// routes, a fixed few), remembered after.
fn page_route(matched: &str) -> &'static str {
    static SEEN: std::sync::OnceLock<std::sync::Mutex<Vec<&'static str>>> =
        std::sync::OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let mut seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = seen.iter().find(|s| **s == matched) {
        return known;
    }
    if seen.len() >= 256 {
        return "other";
    }
    let leaked: &'static str = Box::leak(matched.to_owned().into_boxed_str());
    seen.push(leaked);
    leaked
}

/// Measures a request of the full stack (a middleware, when metrics are on).
pub async fn measure(req: Request, next: Next) -> Response {
    let route = route_of(&req);
    let method = method_label(req.method());
    let started = Instant::now();
    let res = next.run(req).await;
    record(route, method, res.status(), started);
    res
}

/// The layer that times a hot route (`GET /health`, `GET /api/me`; a route layer, so another
/// method, which the full stack answers, is measured there, once): no boxed future, and the
/// histograms of its usual answers looked up once, so that the hot path pays a clock read and
/// an atomic add or two.
#[derive(Clone, Copy)]
pub(crate) struct Timed {
    route: &'static str,
    usual: &'static [(StatusCode, metrics::Histogram); 3],
}

/// [`Timed`] for `route` (looked up once per router built: kept for the process's life).
pub(crate) fn timed(route: &'static str) -> Timed {
    let of = |status: StatusCode| {
        (
            status,
            metrics::histogram!(
                REQUEST_SECONDS,
                "route" => route,
                "method" => "GET",
                "status" => status_str(status),
            ),
        )
    };
    Timed {
        route,
        usual: Box::leak(Box::new([
            of(StatusCode::OK),
            of(StatusCode::UNAUTHORIZED),
            of(StatusCode::SERVICE_UNAVAILABLE),
        ])),
    }
}

impl<S> tower::Layer<S> for Timed {
    type Service = TimedService<S>;

    fn layer(&self, inner: S) -> TimedService<S> {
        TimedService {
            inner,
            timed: *self,
        }
    }
}

/// A hot route's service, timed.
#[derive(Clone)]
pub(crate) struct TimedService<S> {
    inner: S,
    timed: Timed,
}

impl<S> tower::Service<Request> for TimedService<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TimedFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        TimedFuture {
            answer: self.inner.call(req),
            started: Instant::now(),
            timed: self.timed,
        }
    }
}

pin_project_lite::pin_project! {
    /// A hot route's answer, recorded when it is ready.
    pub(crate) struct TimedFuture<F> {
        #[pin]
        answer: F,
        started: Instant,
        timed: Timed,
    }
}

impl<F, E> std::future::Future for TimedFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.answer.poll(cx));
        if let Ok(res) = &res {
            let status = res.status();
            match this.timed.usual.iter().find(|(usual, _)| *usual == status) {
                Some((_, histogram)) => histogram.record(this.started.elapsed().as_secs_f64()),
                None => record(this.timed.route, "GET", status, *this.started),
            }
        }
        std::task::Poll::Ready(res)
    }
}

/// Records one answer.
pub(crate) fn record(
    route: &'static str,
    method: &'static str,
    status: StatusCode,
    started: Instant,
) {
    metrics::histogram!(
        REQUEST_SECONDS,
        "route" => route,
        "method" => method,
        "status" => status_str(status),
    )
    .record(started.elapsed().as_secs_f64());
}

/// The method as a label: the usual ones by name, any other as `other`.
pub(crate) fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The status as a label, without formatting a string per request: the usual ones by code,
/// any other as `other`.
fn status_str(status: StatusCode) -> &'static str {
    const CODES: [(u16, &str); 24] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (303, "303"),
        (304, "304"),
        (307, "307"),
        (308, "308"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (410, "410"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    CODES
        .iter()
        .find(|(code, _)| *code == status.as_u16())
        .map_or("other", |(_, s)| s)
}
