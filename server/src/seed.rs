//! `server seed`: many accounts, each signed in once, and many revoked tokens, written in bulk
//! into `DATABASE_URL`'s database, for the benchmarks (`bench/run.py`): as many people signed in
//! at once, and years of sign-outs.
//!
//! What it writes is what the server itself writes and reads: the database is opened (and
//! migrated) by [`app::store::connect`], the password hash is the app's own argon2id
//! ([`Passwords`]), and every access token is signed by the app's [`TokenKeys`] with the
//! server's configuration (`JWT_SECRET`, `ACCESS_TTL`, `SESSION_TTL`), so the server accepts
//! them as its own. The rows are written in batches by the store (`Store::seed_accounts`,
//! `Store::seed_revocations`): a sign-in through the app writes one session per transaction,
//! and a hundred thousand of them would take minutes of waiting for the disk.
//!
//! The password is hashed once and the hash reused for every account (`SEED_PASSWORD`, or a
//! random one nobody knows). The access tokens go to a new file, readable by its owner only:
//! one JSON object a line, `{"user_id", "username", "session_id", "access_token"}`.

use std::{
    ffi::OsString,
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use app::{
    auth::{credentials::password::Passwords, tokens::access::TokenKeys},
    store::{SeedSession, SeedTimes},
};

use server::config::{Config, ConfigError};

/// Rows per statement, and accounts (or revocations) per transaction: few enough for every
/// database's limit on bound values (four or two a row), many enough that commits cost little.
const BATCH: usize = 1000;

/// What the seeded sessions give as their device (seen in the sessions list).
const USER_AGENT: &str = "server seed";

/// How long the seeded revocations stay unexpired: no purge drops them while a benchmark runs.
const REVOKED_FOR: i64 = 86_400;

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Args {
    pub(crate) users: usize,
    pub(crate) revoked: usize,
    pub(crate) out: PathBuf,
}

impl Args {
    /// `--users N [--revoked M] --out FILE`, in any order.
    pub(crate) fn parse(args: &[OsString]) -> Result<Self, String> {
        let (mut users, mut revoked, mut out) = (0, 0, None);
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let flag = flag.to_string_lossy();
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let count = || {
                value
                    .to_str()
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or_else(|| format!("{flag}: {value:?} is not a count"))
            };
            match &*flag {
                "--users" => users = count()?,
                "--revoked" => revoked = count()?,
                "--out" => out = Some(PathBuf::from(value)),
                other => return Err(format!("unknown option {other}")),
            }
        }
        if users == 0 {
            return Err("give --users N, at least one".into());
        }
        let out = out.ok_or("give --out FILE, the new file for the access tokens")?;
        Ok(Self {
            users,
            revoked,
            out,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SeedError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "seeding accounts and writing their tokens to a file is refused with APP_ENV=production"
    )]
    Production,
    #[error("SEED_PASSWORD: {0}")]
    Password(String),
    #[error(transparent)]
    Db(#[from] app::store::DbError),
    #[error("writing the rows failed: {0}")]
    Write(#[from] app::store::StoreError),
    #[error("a username to seed ({0}…) is taken already: the batch with it was not written")]
    Taken(String),
    #[error(transparent)]
    Hash(#[from] app::auth::credentials::password::PasswordError),
    #[error(transparent)]
    Keys(#[from] app::auth::tokens::access::KeyError),
    #[error("signing a token failed: {0}")]
    Sign(String),
    #[error("cannot write {0}: {1}")]
    Out(String, std::io::Error),
}

/// What [`run`] wrote.
#[derive(Debug)]
pub(crate) struct Seeded {
    pub(crate) users: usize,
    pub(crate) revoked: usize,
    pub(crate) took: Duration,
}

/// Seeds `args.users` accounts and `args.revoked` revocations into the database the
/// configuration names, and writes the accounts' access tokens to `args.out`.
pub(crate) async fn run(config: &Config, args: &Args) -> Result<Seeded, SeedError> {
    if config.production {
        return Err(SeedError::Production);
    }
    let password = match std::env::var("SEED_PASSWORD") {
        Ok(p) => {
            app::validate::password(&p).map_err(SeedError::Password)?;
            p
        }
        Err(_) => {
            let random: [u8; 16] = rand::random();
            random.iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    let started = Instant::now();
    let out = &args.out;
    let fail = |e| SeedError::Out(out.display().to_string(), e);
    // Made first: a file that exists already stops the run before anything is written.
    let mut tokens = std::io::BufWriter::new(app::store::create_private(out).map_err(fail)?);

    let store = app::store::Store::connect(&config.database_url).await?;
    let hash = Passwords::new(1)?.hash(password).await?;
    let keys = TokenKeys::new(&config.jwt_secret, server::ISSUER, config.lifetimes.access)?;
    let now = app::auth::tokens::access::now_unix();
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let expires_at = now.saturating_add(secs(config.lifetimes.session));
    let times = SeedTimes {
        now,
        expires_at,
        token_exp: now
            .saturating_add(secs(config.lifetimes.access))
            .min(expires_at),
    };

    // Names numbered past every id so far: a second run beside the first takes none of its.
    let first = store.next_user_id().await?;
    let prefix = "seed_";
    let mut ids = Vec::with_capacity(args.users);
    for start in (0..args.users).step_by(BATCH) {
        let batch = start..args.users.min(start + BATCH);
        let names: Vec<String> = batch
            .clone()
            .map(|k| format!("{prefix}{}", first.saturating_add(k as i64)))
            .collect();
        let sessions: Vec<SeedSession> = batch
            .clone()
            .map(|_| (uuid::Uuid::new_v4(), rand::random()))
            .collect();
        let batch_ids = store
            .seed_accounts(&names, &hash, &sessions, times, USER_AGENT)
            .await?
            .ok_or_else(|| SeedError::Taken(prefix.into()))?;
        for ((name, user_id), (session_id, _)) in names.iter().zip(&batch_ids).zip(&sessions) {
            let (access_token, _) = keys
                .issue_until(*user_id, *session_id, 1, now, times.token_exp)
                .map_err(|e| SeedError::Sign(e.to_string()))?;
            let line = serde_json::json!({
                "user_id": user_id,
                "username": name,
                "session_id": session_id.to_string(),
                "access_token": access_token,
            });
            writeln!(tokens, "{line}").map_err(fail)?;
        }
        ids.extend(batch_ids);
    }
    tokens.flush().map_err(fail)?;
    tokens.get_ref().sync_all().map_err(fail)?;

    // Random jtis, written in key order: SQLite appends to its B-tree instead of splitting
    // pages all over it (seconds instead of tens of seconds for a million).
    let mut jtis: Vec<[u8; 16]> = (0..args.revoked).map(|_| rand::random()).collect();
    jtis.sort_unstable();
    for (n, batch) in jtis.chunks(BATCH).enumerate() {
        // Spread over the accounts seeded above, in turn.
        let owners: Vec<i64> = (0..batch.len())
            .map(|i| ids[(n * BATCH + i) % ids.len()])
            .collect();
        store
            .seed_revocations(batch, &owners, now + REVOKED_FOR, now)
            .await?;
    }
    store.pool().close().await;
    Ok(Seeded {
        users: ids.len(),
        revoked: jtis.len(),
        took: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse(&["--revoked", "5", "--out", "t.jsonl", "--users", "3"]),
            Ok(Args {
                users: 3,
                revoked: 5,
                out: "t.jsonl".into(),
            })
        );
        let refused = [
            (&["--out", "t"][..], "--users"),
            (&["--users", "2"][..], "--out"),
            (&["--users", "0", "--out", "t"][..], "at least one"),
            (&["--users", "-1", "--out", "t"][..], "not a count"),
            (&["--users", "2", "--out"][..], "needs a value"),
            (
                &["--users", "2", "--out", "t", "--force", "1"][..],
                "--force",
            ),
        ];
        for (args, says) in refused {
            let err = parse(args).unwrap_err();
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }
}
