//! The whole HTTP surface: the hot path in front (see [`crate::hot_path`]), and behind it the
//! pages, server functions, the API's other routes and the assets, through every layer.

use app::{auth::cookie::AuthCookie, auth::AppState, shell, App};
use axum::{
    http::header, middleware as mw, response::IntoResponse, routing::get, Extension, Router,
};
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::{
    limit::RequestBodyLimitLayer, set_header::SetResponseHeaderLayer, trace::TraceLayer,
};

use crate::{hot_path, layers, BODY_LIMIT};

/// The whole HTTP surface: Leptos pages and server functions, `/health`, and the layers.
///
/// Two stacks. The hot path (`GET /health`, `GET /api/me`) answers small JSON or text from
/// memory, so it goes through only what such an answer needs: the auth state and the static
/// headers every answer carries, as one layer. Everything else (pages, server functions,
/// assets, and another method on `/api/me`) goes through the full stack, whose layers each cost
/// a boxed future per request; measured with `make bench`.
pub fn router(state: AppState) -> Router {
    let pages = pages(state.clone());
    hot_path::in_front_of(pages, state)
}

/// The request span (and the ERROR log of a 5xx answer): method and path only; no headers
/// (cookies, tokens), no query, no body.
pub(crate) fn trace() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&axum::extract::Request) -> tracing::Span,
> {
    TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
    })
}

fn hsts() -> SetResponseHeaderLayer<header::HeaderValue> {
    SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, layers::HSTS)
}

/// Pages, server functions, the API's other routes and the assets, behind every layer.
fn pages(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let auth = state.auth.clone();
    let https = auth.cookie.secure();
    let mut router = Router::new()
        .route(
            app::api::contract::DOCUMENT_PATH,
            get(openapi_document(auth.cookie)),
        )
        .route("/ready", ready_route())
        .merge(dev_mail_routes(&auth))
        .leptos_routes(&state, routes, move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .with_state(state)
        // Layers run bottom-up: the last one added sees the request first.
        .layer(mw::from_fn(layers::page_data))
        .layer(mw::from_fn(layers::protect_pages))
        .layer(mw::from_fn(layers::refresh_session))
        .layer(mw::from_fn(layers::api_requests))
        .layer(mw::from_fn(layers::same_origin_posts))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        // Outside the body limit, so its bare 413 gets a JSON body too.
        .layer(mw::from_fn(layers::api_error_status))
        .layer(mw::from_fn(layers::caching))
        .layer(Extension(auth));
    for (name, value) in layers::security_headers() {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    if https {
        router = router.layer(hsts());
    }
    // Outside the other layers, so their refusals are measured too. (A layer of a router
    // wraps each of its routes: the route that matched is known here.)
    if crate::metrics::on() {
        router = router.layer(mw::from_fn(crate::metrics::measure));
    }
    router.layer(trace())
}

/// `/dev/mail` (the development mail page), when it is served: never in production.
fn dev_mail_routes(auth: &app::auth::Auth) -> Router<AppState> {
    let router = Router::new();
    if !auth.mail.dev_page {
        return router;
    }
    router
        .route("/dev/mail", get(crate::dev_mail::list))
        .route("/dev/mail/{id}", get(crate::dev_mail::one))
}

/// The handler of `GET /api/openapi.json`: the document, written once.
fn openapi_document(
    cookie: AuthCookie,
) -> impl Fn() -> std::future::Ready<axum::response::Response> + Clone + Send + Sync + 'static {
    let json = app::api::contract::document(cookie)
        .to_json()
        .expect("the OpenAPI document is plain data and always serialises");
    let json = axum::body::Bytes::from(json);
    move || {
        std::future::ready(
            ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response(),
        )
    }
}

/// What `/ready` last found, for a second: a load balancer's checks (or a flood of them) cost
/// the database one query a second at most. One check at a time: the others wait for its
/// answer (an async lock, held across the check), rather than each running one of their own
/// while the database is slow to answer.
#[derive(Default)]
struct ReadyCache(tokio::sync::Mutex<Option<(std::time::Instant, Result<(), &'static str>)>>);

/// How long `/ready`'s answer is reused.
const READY_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /ready`, for a load balancer's checks: 200 when the database answers (within two
/// seconds) and has every migration of this binary; else 503 and why, in a few words (the
/// details go to the log). (`/health` only says that the process answers.)
fn ready_route() -> axum::routing::MethodRouter<AppState> {
    let cache = std::sync::Arc::new(ReadyCache::default());
    get(
        move |axum::extract::State(state): axum::extract::State<AppState>| {
            let cache = cache.clone();
            async move { ready(&state, &cache).await }
        },
    )
}

async fn ready(state: &AppState, cache: &ReadyCache) -> axum::response::Response {
    use axum::http::StatusCode;
    let mut last = cache.0.lock().await;
    let cached = last
        .filter(|(at, _)| at.elapsed() < READY_FOR)
        .map(|(_, answer)| answer);
    let answer = match cached {
        Some(answer) => answer,
        None => {
            let found = state
                .auth
                .health
                .store()
                .ready(std::time::Duration::from_secs(2))
                .await;
            let answer = match found {
                Ok(()) => Ok(()),
                Err(app::store::NotReady::Migration(v)) => {
                    tracing::warn!(missing = v, "not ready: the database misses a migration");
                    Err("the database is not migrated for this version")
                }
                Err(app::store::NotReady::Unreachable(e)) => {
                    tracing::warn!(error = %e, "not ready: the database does not answer");
                    Err("the database does not answer")
                }
            };
            *last = Some((std::time::Instant::now(), answer));
            answer
        }
    };
    drop(last);
    match answer {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(serde_json::json!({ "status": "not_ready", "reason": reason })),
        )
            .into_response(),
    }
}
