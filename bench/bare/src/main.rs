//! A bare axum server: `GET /health` answers `ok`, with no layer at all, on the address given as
//! the first argument, with TCP_NODELAY as the app sets it. `make bench` measures it beside the
//! app, so the app's own cost is seen against what the framework can do on the same machine.

use axum::{routing::get, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3999".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new().route("/health", get(|| async { "ok" }));
    axum::serve(listener, app).await
}
