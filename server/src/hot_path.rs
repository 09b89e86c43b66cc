//! The hot path: `GET /health` and `GET /api/me`, answered from memory through as little as
//! such an answer needs, and the per-connection service that keeps the client's address off
//! their requests.

use app::auth::AppState;
use axum::{http::header, routing::get, Router};
use tower::ServiceBuilder;

use crate::{layers, router::trace};

/// The hot routes, in front of `pages` (the full stack), which answers everything else.
pub(crate) fn in_front_of(pages: Router, state: AppState) -> Router {
    let https = state.auth.cookie.secure();
    // The headers every answer carries, set in one unboxed step: one layer in all. The
    // user comes from the state (`SignedIn`), so no `Extension` is inserted either.
    let headers = ServiceBuilder::new().map_response(move |mut res: axum::response::Response| {
        let h = res.headers_mut();
        for (name, value) in layers::security_headers() {
            h.entry(name).or_insert(value);
        }
        h.entry(header::CACHE_CONTROL).or_insert(layers::NO_STORE);
        if https {
            h.insert(header::STRICT_TRANSPORT_SECURITY, layers::HSTS);
        }
        res
    });
    let [health, me] = HOT_PATHS;
    let health_route = get(|| async { "ok" });
    // Another method is the API door's to answer (405 with `Allow`): it goes on to the full
    // stack, inside these layers too (which change nothing there).
    let me_route = get(app::api::server::me_handler);
    // Timed only when metrics are on (a route layer: the full stack times the other methods):
    // off, the hot path has not one step more.
    let (health_route, me_route) = if crate::metrics::on() {
        (
            health_route.route_layer(crate::metrics::timed(health)),
            me_route.route_layer(crate::metrics::timed(me)),
        )
    } else {
        (health_route, me_route)
    };
    let hot = Router::new()
        .route(health, health_route)
        .route(me, me_route.fallback_service(pages.clone()))
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
const HOT_PATHS: [&str; 2] = ["/health", app::api::contract::ME_PATH];

/// Makes the service of each connection: the router, and the client's address.
#[derive(Clone)]
pub(crate) struct WithPeer(pub(crate) Router);

/// The service of one connection. The client's address (axum's `ConnectInfo`, read by the
/// sign-in throttle and for the sessions' addresses) is put in the extensions of every request
/// but the hot path's, which never reads it: one boxed value and one map insert fewer per
/// request on the path `make bench` holds to 90 % of bare axum.
#[derive(Clone)]
pub(crate) struct Peer {
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
