//! Configuration from the environment (and an optional `.env`, loaded by `main`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `LEPTOS_SITE_ADDR` | `127.0.0.1:3000` | address to listen on (read by Leptos) |
//! | `DATABASE_URL` | `sqlite://data/app.db` | SQLite database, created on first run (0600, its folder 0700) |
//! | `JWT_SECRET` | generated into `data/jwt_secret` in development | HS256 key, ≥ 32 bytes |
//! | `ACCESS_TTL` (or its old name `JWT_TTL`) | `15m` | access-token lifetime: `900`, `900s`, `15m`, `2h` |
//! | `SESSION_TTL` | `30d` | a session's absolute lifetime from sign-in |
//! | `SESSION_IDLE_TTL` | `7d` | a session unused this long ends |
//! | `REFRESH_REUSE_INTERVAL` | `10s` | the previous refresh token still answers this long after a rotation |
//! | `APP_ENV` | `development` | `production` requires `JWT_SECRET` and `Secure` cookies |
//! | `COOKIE_SECURE` | `true` in production | add `Secure` to the auth cookie (https only); `false` is refused in production |
//! | `DATA_DIR` | `data` | folder for the generated development secret (created 0700) |
//! | `PURGE_INTERVAL` (or its old name `BLOCKLIST_PURGE_INTERVAL`) | `10m` | how often what is over is dropped: expired revocations, ended sessions, full sign-in and refresh allowances |
//! | `HOT_CACHE_ENTRIES` | `200000` | verified tokens, users and sessions' last writes kept in memory, each (0: none) |
//! | `TRUSTED_PROXIES` | none | reverse proxies (addresses or CIDRs) whose `X-Forwarded-For` names the client |
//! | `LOGIN_THROTTLE` | `on` | `off` lifts the sign-in, sign-up and refresh limits, for load tests only; refused in production |

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use app::auth::{proxies::TrustedProxies, sessions::Lifetimes, tokens::access::MIN_SECRET_LEN};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not valid: {1}")]
    Invalid(&'static str, String),
    #[error(
        "APP_ENV=production requires JWT_SECRET (at least {MIN_SECRET_LEN} bytes of random data)"
    )]
    MissingSecret,
    #[error(
        "APP_ENV=production requires COOKIE_SECURE=true (or unset): production is served over \
         https, and a cookie without Secure would also be sent over plain http"
    )]
    InsecureCookie,
    #[error("JWT_SECRET must be at least {MIN_SECRET_LEN} bytes long (it has {0})")]
    ShortSecret(usize),
    #[error("cannot use the development secret file {0}: {1}")]
    SecretFile(String, std::io::Error),
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/app.db";

/// Everything the server needs to start, besides Leptos's own options.
pub struct Config {
    pub database_url: String,
    pub jwt_secret: Vec<u8>,
    /// Access tokens, sessions and the refresh-token reuse interval.
    pub lifetimes: Lifetimes,
    pub production: bool,
    pub secure_cookie: bool,
    pub purge_interval: Duration,
    /// PostgreSQL only: how often revocations are read without a wake-up.
    pub resync_interval: Duration,
    /// Sign-in and sign-up limits (off only for load tests, never in production).
    pub throttle: bool,
    /// Entries in each of the hot path's caches (verified tokens, users); 0 turns them off.
    pub cache_entries: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
}

/// `scheme://user:***@host/...`: a URL with its password, if any, hidden (in the user info or
/// as a `password=` parameter).
fn redact_password(url: &str) -> String {
    let url = match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|p| {
                    if p.starts_with("password=") {
                        "password=***"
                    } else {
                        p
                    }
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url.to_owned(),
    };
    let url = url.as_str();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

impl std::fmt::Debug for Config {
    // The secret is never printed, nor the database URL's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_password(&self.database_url))
            .field("lifetimes", &self.lifetimes)
            .field("production", &self.production)
            .field("secure_cookie", &self.secure_cookie)
            .field("purge_interval", &self.purge_interval)
            .field("resync_interval", &self.resync_interval)
            .field("throttle", &self.throttle)
            .field("cache_entries", &self.cache_entries)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

/// `"900"`, `"900s"`, `"15m"`, `"2h"` → a duration of at least one second.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn parse_bool(name: &'static str, text: &str) -> Result<bool, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(ConfigError::Invalid(
            name,
            format!("{other:?} is not true or false"),
        )),
    }
}

/// Reads the development secret from `dir/jwt_secret`, creating it (mode 0600, and `dir` 0700
/// if it is missing) on first use.
pub fn dev_secret(dir: &Path) -> Result<Vec<u8>, ConfigError> {
    let path = dir.join("jwt_secret");
    let fail = |e| ConfigError::SecretFile(path.display().to_string(), e);
    match fs::read(&path) {
        Ok(bytes) => {
            let secret = String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec();
            if secret.len() < MIN_SECRET_LEN {
                return Err(ConfigError::ShortSecret(secret.len()));
            }
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The data folder, when this makes it, is the owner's only (0700), as the secret is.
            app::store::create_private_dir_all(dir).map_err(fail)?;
            let random: [u8; 32] = rand::random();
            let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let mut file = app::store::create_private(&path).map_err(fail)?;
            file.write_all(hex.as_bytes()).map_err(fail)?;
            file.sync_all().map_err(fail)?;
            Ok(hex.into_bytes())
        }
        Err(e) => Err(fail(e)),
    }
}

impl Config {
    /// Reads the configuration through `get`, a lookup of environment variables.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let production = match get("APP_ENV") {
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "production" | "prod" => true,
                "development" | "dev" | "test" => false,
                other => {
                    return Err(ConfigError::Invalid(
                        "APP_ENV",
                        format!("{other:?} is not production or development"),
                    ))
                }
            },
            None => false,
        };
        let jwt_secret = match get("JWT_SECRET").filter(|s| !s.is_empty()) {
            Some(s) if s.len() < MIN_SECRET_LEN => return Err(ConfigError::ShortSecret(s.len())),
            Some(s) => s.into_bytes(),
            None if production => return Err(ConfigError::MissingSecret),
            None => {
                let dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "data".into()));
                dev_secret(&dir)?
            }
        };
        let duration = |name: &'static str, default: u64| match get(name) {
            Some(v) => parse_duration(&v).ok_or_else(|| {
                ConfigError::Invalid(name, format!("{v:?} is not a duration like 900, 15m or 2h"))
            }),
            None => Ok(Duration::from_secs(default)),
        };
        let secure_cookie = match get("COOKIE_SECURE") {
            Some(v) => parse_bool("COOKIE_SECURE", &v)?,
            None => production,
        };
        if production && !secure_cookie {
            return Err(ConfigError::InsecureCookie);
        }
        let throttle = match get("LOGIN_THROTTLE") {
            Some(v) => parse_bool("LOGIN_THROTTLE", &v)?,
            None => true,
        };
        if production && !throttle {
            return Err(ConfigError::Invalid(
                "LOGIN_THROTTLE",
                "the limits cannot be turned off with APP_ENV=production".into(),
            ));
        }
        Ok(Self {
            database_url: get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            jwt_secret,
            lifetimes: Lifetimes {
                access: match get("ACCESS_TTL") {
                    Some(_) => duration("ACCESS_TTL", 0)?,
                    None => duration("JWT_TTL", 15 * 60)?,
                },
                session: duration("SESSION_TTL", 30 * 86_400)?,
                idle: duration("SESSION_IDLE_TTL", 7 * 86_400)?,
                reuse: duration("REFRESH_REUSE_INTERVAL", 10)?,
            },
            production,
            secure_cookie,
            purge_interval: match (get("PURGE_INTERVAL"), get("BLOCKLIST_PURGE_INTERVAL")) {
                (None, Some(_)) => {
                    tracing::warn!(
                        "BLOCKLIST_PURGE_INTERVAL is an old name: set PURGE_INTERVAL instead (it \
                         purges more than the blocklist)"
                    );
                    duration("BLOCKLIST_PURGE_INTERVAL", 0)?
                }
                _ => duration("PURGE_INTERVAL", 10 * 60)?,
            },
            resync_interval: duration(
                "REVOCATION_RESYNC_INTERVAL",
                app::auth::revocation::feed::RESYNC_INTERVAL.as_secs(),
            )?,
            throttle,
            cache_entries: match get("HOT_CACHE_ENTRIES") {
                Some(v) => v.trim().parse().map_err(|_| {
                    ConfigError::Invalid("HOT_CACHE_ENTRIES", format!("{v:?} is not a count"))
                })?,
                None => app::auth::cache::DEFAULT_ENTRIES,
            },
            trusted_proxies: TrustedProxies::parse(&get("TRUSTED_PROXIES").unwrap_or_default())
                .map_err(|e| ConfigError::Invalid("TRUSTED_PROXIES", e))?,
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn database_passwords_are_never_printed() {
        assert_eq!(
            redact_password("postgres://app:hunter2@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(
            redact_password("postgres://app@db/app"),
            "postgres://app@db/app"
        );
        assert_eq!(
            redact_password("sqlite://data/app.db"),
            "sqlite://data/app.db"
        );
        assert_eq!(
            redact_password("postgres://app@db/app?sslmode=require&password=hunter2"),
            "postgres://app@db/app?sslmode=require&password=***"
        );
    }

    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("900"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("5y"), None);
    }

    #[test]
    fn production_requires_a_long_secret() {
        let err = Config::from_lookup(lookup(&[("APP_ENV", "production")])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingSecret));
        let err = Config::from_lookup(lookup(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", "short"),
        ]))
        .unwrap_err();
        assert!(matches!(err, ConfigError::ShortSecret(5)));
        let ok = Config::from_lookup(lookup(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", &"k".repeat(32)),
        ]))
        .unwrap();
        assert!(ok.production && ok.secure_cookie);
    }

    #[test]
    fn development_secret_is_generated_once_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let d = data.to_str().unwrap();
        let a = Config::from_lookup(lookup(&[("DATA_DIR", d)])).unwrap();
        let b = Config::from_lookup(lookup(&[("DATA_DIR", d)])).unwrap();
        assert_eq!(a.jwt_secret, b.jwt_secret);
        assert!(a.jwt_secret.len() >= MIN_SECRET_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&data.join("jwt_secret")), 0o600);
            assert_eq!(mode(&data), 0o700);
        }
        assert!(!a.secure_cookie);
        assert_eq!(a.lifetimes, Lifetimes::default());
        let old_name = Config::from_lookup(lookup(&[("DATA_DIR", d), ("JWT_TTL", "2h")])).unwrap();
        assert_eq!(old_name.lifetimes.access, Duration::from_secs(7200));
        let both = [("DATA_DIR", d), ("JWT_TTL", "2h"), ("ACCESS_TTL", "5m")];
        let both = Config::from_lookup(lookup(&both)).unwrap();
        assert_eq!(both.lifetimes.access, Duration::from_secs(300));
    }

    #[test]
    fn production_cookies_are_always_secure() {
        let secret = "k".repeat(32);
        for off in ["false", "0", "no", "off", " FALSE "] {
            let prod = [
                ("APP_ENV", "production"),
                ("JWT_SECRET", secret.as_str()),
                ("COOKIE_SECURE", off),
            ];
            let err = Config::from_lookup(lookup(&prod)).unwrap_err();
            assert!(matches!(err, ConfigError::InsecureCookie), "{off}: {err}");
            assert!(
                err.to_string()
                    .contains("APP_ENV=production requires COOKIE_SECURE=true"),
                "{err}"
            );
            // Development over plain http may turn it off.
            let dev = Config::from_lookup(lookup(&prod[1..])).unwrap();
            assert!(!dev.secure_cookie);
        }
        for on in [None, Some("true"), Some("1")] {
            let mut prod = vec![("APP_ENV", "production"), ("JWT_SECRET", secret.as_str())];
            prod.extend(on.map(|v| ("COOKIE_SECURE", v)));
            assert!(Config::from_lookup(lookup(&prod)).unwrap().secure_cookie);
        }
    }

    #[test]
    fn the_throttle_stays_on_in_production() {
        let secret = "k".repeat(32);
        let off = [("JWT_SECRET", secret.as_str()), ("LOGIN_THROTTLE", "off")];
        assert!(!Config::from_lookup(lookup(&off)).unwrap().throttle);
        let prod = [off[0], off[1], ("APP_ENV", "production")];
        let err = Config::from_lookup(lookup(&prod)).unwrap_err();
        assert!(err.to_string().contains("LOGIN_THROTTLE"), "{err}");
        assert!(Config::from_lookup(lookup(&off[..1])).unwrap().throttle);
    }

    /// The log lines written while `f` runs.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Logs {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    /// `PURGE_INTERVAL` is read, and its old name `BLOCKLIST_PURGE_INTERVAL` too when it is
    /// unset, with a warning that names the new one; a bad value is named by the name it came
    /// under.
    #[test]
    fn the_purge_interval_is_read_under_its_name_and_its_old_one() {
        let secret = "k".repeat(32);
        let read = |pairs: &[(&str, &str)]| {
            let mut all = vec![("JWT_SECRET", secret.as_str())];
            all.extend_from_slice(pairs);
            logged(|| Config::from_lookup(lookup(&all)))
        };
        for (pairs, expected, warned) in [
            (&[][..], 600, false),
            (&[("PURGE_INTERVAL", "1h")][..], 3600, false),
            (&[("BLOCKLIST_PURGE_INTERVAL", "2m")][..], 120, true),
            (
                &[("PURGE_INTERVAL", "1h"), ("BLOCKLIST_PURGE_INTERVAL", "2m")][..],
                3600,
                false,
            ),
        ] {
            let (config, logs) = read(pairs);
            let config = config.unwrap();
            assert_eq!(
                config.purge_interval,
                Duration::from_secs(expected),
                "{pairs:?}"
            );
            assert_eq!(
                logs.contains("WARN") && logs.contains("set PURGE_INTERVAL instead"),
                warned,
                "{pairs:?}: {logs}"
            );
        }
        for (name, says) in [
            ("PURGE_INTERVAL", "PURGE_INTERVAL is not valid"),
            (
                "BLOCKLIST_PURGE_INTERVAL",
                "BLOCKLIST_PURGE_INTERVAL is not valid",
            ),
        ] {
            let (config, _) = read(&[(name, "soon")]);
            let err = config.unwrap_err().to_string();
            assert!(err.starts_with(says), "{name}: {err}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::from_lookup(lookup(&[
            ("JWT_SECRET", &"k".repeat(32)),
            ("JWT_TTL", "soon"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("JWT_TTL"));
        let err = Config::from_lookup(lookup(&[
            ("JWT_SECRET", &"k".repeat(32)),
            ("TRUSTED_PROXIES", "127.0.0.1, proxy.internal"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("TRUSTED_PROXIES"), "{err}");
        assert!(err.to_string().contains("proxy.internal"), "{err}");
    }
}
