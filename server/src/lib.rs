//! The server: configuration, database, router and serving. The app's logic lives in `app`;
//! this crate only wires it together, so tests can build the same router on their own database.
//!
//! - [`config`]: the settings, from the environment;
//! - [`admin`]: `server admin …`, what the person on call does to one account;
//! - `state`: the shared state built at start-up ([`build_state`]);
//! - `router` and `hot_path`: the HTTP surface ([`router`]), the hot path in front;
//! - [`layers`]: the layers in front of the pages and the API, one file each;
//! - [`metrics`]: Prometheus metrics on their own address (`METRICS_ADDR`);
//! - `background`: the tasks beside the requests ([`spawn_purge`], the revocation feed);
//! - `serve`: serving with a graceful shutdown ([`serve`], [`shutdown_signal`]).

pub mod admin;
mod background;
pub mod config;
mod dev_mail;
mod hot_path;
pub mod layers;
pub mod metrics;
mod router;
mod serve;
mod state;

pub use background::spawn_purge;
pub use config::{Config, DEFAULT_DATABASE_URL};
pub use router::router;
pub use serve::{serve, shutdown_signal, SHUTDOWN_GRACE};
pub use state::{build_auth, build_state, StartError};

/// Largest request body accepted (the auth forms are a few hundred bytes).
pub const BODY_LIMIT: usize = 8 * 1024;
/// Token issuer (`iss`) written and required.
pub const ISSUER: &str = "authapp";
