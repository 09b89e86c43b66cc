//! The server's tests in one binary: the real router over HTTP (a fresh database per test:
//! a SQLite file, or a PostgreSQL database with `AUTHAPP_TEST_DB=postgres`; see `helpers`), and
//! the real binary as a separate process.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
#![allow(unreachable_pub)] // a test binary exports nothing: `pub` is how its modules share

mod helpers;

// By feature, each module with its own story; the shared tools are in `helpers`.
mod abuse; // brute force, concurrency and headers: what an attacker would try
mod account; // password change and account deletion
mod activity; // security events, the activity API and page, /ready
mod contract; // the API's contract: bodies, answers, errors, the OpenAPI document
mod delivery; // the outbox's sender against a real SMTP server
mod email; // addresses, mailed links, forgot/reset and notices, through a real SMTP server
mod factors; // two-step sign-in, recovery codes and fresh authentication
mod instances; // several instances on one PostgreSQL database
mod passkey_device; // a software passkey, as a browser's authenticator answers
mod passkeys; // adding passkeys and signing in with them
mod process; // the real binary: crashes, shutdown, logs, files, `server backup` and `seed`
mod sessions; // rotation, reuse, renewal, the sessions API and page
mod sign_in; // signing up and in, by cookie and by Bearer, across restarts
