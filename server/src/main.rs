//! Starts the server: configuration, database and migrations, router, graceful shutdown.

use leptos::config::get_configuration;
use server::{build_state, router, serve, shutdown_signal, spawn_purge, Config, StartError};
use tracing_subscriber::EnvFilter;

// Server-side rendering allocates many small, short-lived objects on both worker threads;
// profiled under load, glibc's malloc (and its arena locks) was the largest single cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let _ = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info")),
        )
        .init();
    if let Err(e) = run().await {
        tracing::error!("cannot start: {e}");
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), StartError> {
    let config = Config::from_env()?;
    // cargo-leptos bakes its settings in at build time; LEPTOS_SITE_ADDR overrides the address.
    let leptos_options = get_configuration(None)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .leptos_options;
    let addr = leptos_options.site_addr;
    let state = build_state(&config, leptos_options).await?;
    spawn_purge(&state, config.purge_interval);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    serve(listener, router(state), shutdown_signal()).await?;
    Ok(())
}
