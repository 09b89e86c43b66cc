//! Starts the server: configuration, database and migrations, router, graceful shutdown.
//!
//! `server backup PATH` instead writes a consistent copy of the database (`DATABASE_URL`) to
//! `PATH` while a server may be running on it; `server seed ...` writes accounts, sessions and
//! revocations in bulk for the benchmarks ([`seed`]).

mod seed;

use leptos::config::get_configuration;
use server::{build_state, router, serve, shutdown_signal, spawn_purge, Config, StartError};
use tracing_subscriber::EnvFilter;

// Server-side rendering allocates many small, short-lived objects on both worker threads, the
// pattern where glibc's malloc (and its arena locks) costs the most.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let _ = dotenvy::dotenv();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // LOG_FORMAT=json: one JSON object per line, for a log collector. The same fields either
    // way: what is never logged (tokens, passwords, cookies) is never handed to a log line.
    // On stderr: stdout is a command's answer (`server admin --json`, `server seed`).
    match std::env::var("LOG_FORMAT").as_deref().map(str::trim) {
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Ok("" | "text") | Err(_) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Ok(other) => {
            eprintln!("error: LOG_FORMAT is not valid: {other:?} is not text or json");
            std::process::exit(1);
        }
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        None => {
            if let Err(e) = run().await {
                tracing::error!("cannot start: {e}");
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
        Some("backup") if args.len() == 2 => backup(std::path::Path::new(&args[1])).await,
        Some("seed") => seed(&args[1..]).await,
        Some("hash-rate") if args.len() <= 2 => hash_rate(args.get(1)),
        Some("admin") => admin(&args[1..]).await,
        Some("-h" | "--help" | "help") => println!("{USAGE}"),
        Some(_) => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

const USAGE: &str =
    "usage: server                serve the app (configured by environment variables)
       server backup PATH    write a consistent copy of DATABASE_URL's database to the new file
                             PATH, while the server may be running
       server seed --users N [--revoked M] --out FILE
                             for benchmarks: N accounts into DATABASE_URL's database, each
                             signed in once, and M revoked tokens of theirs; an access token
                             of each session goes to the new file FILE (JSON lines). Their
                             password: SEED_PASSWORD, or a random one. Refused in production
       server admin COMMAND [--json]
                             what the person on call does to one account, against
                             DATABASE_URL's database, while the servers run:
         find QUERY          the accounts a username, an address or #ID names
         show USER [--events N]
                             the account, its live sessions, its last N security events
         end-sessions USER   ends every session of it (it can sign in again)
         disable USER        no sign-in from now on; every session ended at once
         enable USER         undoes disable
         delete USER --yes   deletes the account and everything of it, for good
         remove-factors USER for a person who lost every second factor (and proved who
                             they are another way): removes the authenticator app, the
                             recovery codes and the passkeys, ends every session, mails
                             the owner
                             USER: a username, a confirmed address, or '#ID' (quoted: a
                             shell takes an unquoted # for a comment). --json: one JSON object
                             on stdout (an error too: its error and description)
       server hash-rate [SECONDS]
                             how many passwords a second this machine can check with the
                             server's argon2id parameters, hashing on every core for SECONDS
                             (default 5): the ceiling of sign-ins a second";

/// `server admin ...`: exits 2 on a bad command line, 1 when the action fails (or the account
/// does not exist, or there is nothing to do), 0 when it was done.
async fn admin(args: &[std::ffi::OsString]) {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let (command, json) = match server::admin::Command::parse(&args) {
        Ok(parsed) => parsed,
        Err(e) if args.contains(&"--json") => {
            println!(
                "{}",
                serde_json::json!({ "error": "usage", "description": e })
            );
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let done = match Config::from_env() {
        Ok(config) => server::admin::run(&config, &command).await,
        Err(e) => Err(server::admin::AdminError::Failed(e.to_string())),
    };
    match (done, json) {
        (Ok(done), false) => println!("{}", done.text),
        (Ok(done), true) => println!("{}", done.json),
        (Err(e), false) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        (Err(e), true) => {
            println!(
                "{}",
                serde_json::json!({ "error": e.code(), "description": e.to_string() })
            );
            std::process::exit(1);
        }
    }
}

/// `server seed ...`: exits 2 on a bad command line, 1 when the seeding fails.
async fn seed(args: &[std::ffi::OsString]) {
    let args = match seed::Args::parse(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let done = match Config::from_env() {
        Ok(config) => seed::run(&config, &args).await,
        Err(e) => Err(e.into()),
    };
    match done {
        Ok(done) => println!(
            "seeded {} account{}, each with a session, and {} revoked token{} in {:.1} s; \
             access tokens in {}",
            done.users,
            if done.users == 1 { "" } else { "s" },
            done.revoked,
            if done.revoked == 1 { "" } else { "s" },
            done.took.as_secs_f64(),
            args.out.display()
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// `server hash-rate [SECONDS]`: exits 2 on a bad command line, 1 when hashing fails.
fn hash_rate(seconds: Option<&std::ffi::OsString>) {
    use app::auth::credentials::password;
    let seconds = match seconds.map(|s| s.to_str().and_then(|s| s.parse::<f64>().ok())) {
        None => 5.0,
        Some(Some(s)) if (0.1..=3600.0).contains(&s) => s,
        Some(_) => {
            eprintln!("error: SECONDS must be a number of seconds, 0.1 to 3600\n{USAGE}");
            std::process::exit(2);
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    match password::hash_rate(threads, std::time::Duration::from_secs_f64(seconds)) {
        Ok(rate) => println!(
            "{rate:.1} hashes/s: argon2id m={} KiB, t={}, p={} on {threads} thread{}",
            password::MEMORY_KIB,
            password::ITERATIONS,
            password::PARALLELISM,
            if threads == 1 { "" } else { "s" },
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

async fn backup(to: &std::path::Path) {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| server::DEFAULT_DATABASE_URL.into());
    match app::store::backup(&url, to).await {
        Ok(done) => println!(
            "backup written to {}: {} bytes, {} users, {} revoked tokens",
            to.display(),
            done.bytes,
            done.users,
            done.revoked
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

async fn run() -> Result<(), StartError> {
    let config = Config::from_env()?;
    // cargo-leptos bakes its settings in at build time; LEPTOS_SITE_ADDR overrides the address.
    let mut leptos_options = get_configuration(None)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .leptos_options;
    // A release folder (`make dist`) keeps the site beside the binary: found from any directory.
    if std::env::var_os("LEPTOS_SITE_ROOT").is_none() {
        if let Some(site) = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("site")))
            .filter(|site| site.join(&*leptos_options.site_pkg_dir).is_dir())
            .and_then(|site| site.to_str().map(str::to_owned))
        {
            leptos_options.site_root = site.into();
        }
    }
    // A release build names the site's files after their content and lists the names in a
    // file beside the binary (cargo-leptos's `hash-files`); the binary follows it wherever it
    // runs, with or without cargo-leptos's environment.
    if std::env::var_os("LEPTOS_HASH_FILES").is_none() {
        leptos_options.hash_files = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join(&*leptos_options.hash_file)))
            .is_some_and(|file| file.is_file());
    }
    // A site built with hashed names, served without the list of them, names files that are
    // not there: unstyled pages that never hydrate. Said at start-up, not found out by readers.
    let unhashed = std::path::Path::new(&*leptos_options.site_root)
        .join(&*leptos_options.site_pkg_dir)
        .join(format!("{}.wasm", leptos_options.output_name));
    if !leptos_options.hash_files && !unhashed.is_file() {
        tracing::error!(
            site = %leptos_options.site_root,
            "the site has no {} (a release build names its files after their content and lists \
             them in {} beside the server binary: copy that file with the binary)",
            unhashed.display(),
            leptos_options.hash_file
        );
    }
    let addr = leptos_options.site_addr;
    // Installed before anything counts, and before the router is built (it measures requests
    // only when metrics are on).
    let metrics = match config.metrics_addr {
        Some(at) if at.port() == addr.port() => {
            return Err(std::io::Error::other(format!(
                "METRICS_ADDR {at} would share the site's port: metrics are never served on the \
                 public port"
            ))
            .into())
        }
        Some(at) => {
            if !at.ip().is_loopback() {
                tracing::warn!(
                    %at,
                    "METRICS_ADDR is not a loopback address: keep its port closed to the \
                     internet (the metrics say how the service is used)"
                );
            }
            let listener = tokio::net::TcpListener::bind(at).await?;
            let handle = server::metrics::install()
                .ok_or_else(|| std::io::Error::other("a metrics recorder is installed already"))?;
            Some((listener, handle))
        }
        None => None,
    };
    let state = build_state(&config, leptos_options).await?;
    if let Some((listener, handle)) = metrics {
        tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
        let router = server::metrics::router(handle, state.auth.clone());
        tokio::spawn(async move {
            if let Err(e) = server::metrics::serve(listener, router, shutdown_signal()).await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    spawn_purge(&state, config.purge_interval, config.audit_retention);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let auth = state.auth.clone();
    let served = serve(listener, router(state), shutdown_signal()).await;
    // Session uses still queued are written before the process ends. (A connection still open
    // after the shutdown grace may queue one more: it is lost, as its answer is.)
    if let Err(e) = auth.sessions.flush_recorded_uses().await {
        tracing::warn!(error = %e, "recording sessions' last use at shutdown failed");
    }
    Ok(served?)
}
