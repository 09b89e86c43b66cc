//! The core's metrics: what it counts, under one name each (listed in the README's "Operating
//! it"). Through the `metrics` facade: until the server installs a recorder (`METRICS_ADDR`),
//! each of these is a load of the global recorder and nothing more.
//!
//! Labels take a few fixed words only (never a user, an address or a token), so every series
//! is known in advance and their number stays small.

/// Sign-ins by outcome: `ok`, `second_factor` (the password was right; a code is asked for),
/// `wrong_password` (or no such account: the same answer), `disabled` (the password was right;
/// the operator disabled the account), `throttled`, `busy` (the hashing queue was full),
/// `unavailable` (the database), `error`.
pub const SIGN_INS: &str = "authapp_sign_ins_total";
/// Refreshes by outcome: `rotated`, `grace` (the previous token again, within its interval),
/// `reuse` (the session ended), `expired`, `ended`, `invalid`, `throttled`, `busy`, `error`.
pub const REFRESHES: &str = "authapp_refreshes_total";
/// Sessions started, by how they were authenticated (`method`).
pub const SESSIONS_STARTED: &str = "authapp_sessions_started_total";
/// Sessions ended, by why (`reason`), counted by the instance that ended them.
pub const SESSIONS_ENDED: &str = "authapp_sessions_ended_total";
/// Revocations (tokens and sessions) this instance learnt from the others (PostgreSQL).
pub const REVOCATIONS_FOLLOWED: &str = "authapp_revocations_followed_total";
/// Seconds since this instance last read every revocation of the others (PostgreSQL; set
/// when scraped): a few seconds at most while it follows (the resync interval bounds it).
pub const FEED_LAG: &str = "authapp_revocation_feed_lag_seconds";
/// Mails the sender failed to hand over (each attempt), by whether it will try again.
pub const MAIL_FAILURES: &str = "authapp_mail_failures_total";
/// Mails handed over to the mail server.
pub const MAIL_SENT: &str = "authapp_mail_sent_total";
/// Security events written to the activity log, by kind.
pub const AUDIT_EVENTS: &str = "authapp_audit_events_total";

/// Every outcome of a sign-in ([`SIGN_INS`]).
pub const SIGN_IN_OUTCOMES: [&str; 8] = [
    "ok",
    "second_factor",
    "wrong_password",
    "disabled",
    "throttled",
    "busy",
    "unavailable",
    "error",
];

/// Every outcome of a refresh ([`REFRESHES`]).
pub const REFRESH_OUTCOMES: [&str; 9] = [
    "rotated",
    "grace",
    "reuse",
    "expired",
    "ended",
    "invalid",
    "throttled",
    "busy",
    "error",
];

/// Counts one sign-in's outcome.
pub fn sign_in(outcome: &'static str) {
    metrics::counter!(SIGN_INS, "outcome" => outcome).increment(1);
}

/// Counts one refresh's outcome.
pub fn refresh(outcome: &'static str) {
    metrics::counter!(REFRESHES, "outcome" => outcome).increment(1);
}

/// Counts a session started with `method`.
pub fn session_started(method: &'static str) {
    metrics::counter!(SESSIONS_STARTED, "method" => method).increment(1);
}

/// Counts `n` sessions ended for `reason`.
pub fn sessions_ended(reason: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!(SESSIONS_ENDED, "reason" => reason).increment(n as u64);
    }
}

/// Counts `n` revocations followed from the other instances.
pub fn revocations_followed(n: usize) {
    if n > 0 {
        metrics::counter!(REVOCATIONS_FOLLOWED).increment(n as u64);
    }
}

/// Counts one mail handed over.
pub fn mail_sent() {
    metrics::counter!(MAIL_SENT).increment(1);
}

/// Counts one failed attempt to hand a mail over (`retry`: it will be tried again).
pub fn mail_failed(retry: bool) {
    metrics::counter!(MAIL_FAILURES, "retry" => if retry { "yes" } else { "no" }).increment(1);
}

/// Counts one security event written.
pub fn audit_event(kind: &'static str) {
    metrics::counter!(AUDIT_EVENTS, "kind" => kind).increment(1);
}
