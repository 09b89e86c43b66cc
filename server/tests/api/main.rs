//! The server's tests in one binary: the real router over HTTP (a fresh database per test:
//! a SQLite file, or a PostgreSQL database with `AUTHAPP_TEST_DB=postgres`; see `helpers`), and
//! the real binary as a separate process.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
#![allow(unreachable_pub)] // a test binary exports nothing: `pub` is how its modules share

mod helpers;

mod abuse;
mod api_clients;
mod auth_flow;
mod bad_input;
mod postgres;
mod process;
mod sessions;
