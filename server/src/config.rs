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
//! | `EMAIL` | `on` | `off`: the service sends no mail (no addresses at sign-up, no resets) and needs no mail server |
//! | `SMTP_URL` | none | the mail server: `smtp://[user:password@]host[:port]` (STARTTLS required, 587; `?tls=opportunistic`, `?tls=none` for a relay on this machine), `smtps://...` (TLS, 465); required in production with e-mail on; in development without it mail stays in the outbox (`/dev/mail`) |
//! | `MAIL_FROM` | none | who the mails are from, `addr@example.com` or `Name <addr@example.com>`; required with `SMTP_URL` |
//! | `SMTP_CA_FILE` | none | a PEM certificate authority trusted for the mail server beside the system's |
//! | `PUBLIC_URL` | `http://` + `LEPTOS_SITE_ADDR` in development | the site's public address, for the links in mails; required (`https://`) in production with e-mail on |
//! | `APP_NAME` | `authapp` | the service's name in the mails |
//! | `RESET_TTL` | `30m` | how long a password-reset link lives |
//! | `EMAIL_REQUIRED` | `false` | sign-up requires an address |

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use app::auth::{
    mail::sender::{Smtp, SmtpConfigError},
    proxies::TrustedProxies,
    sessions::Lifetimes,
    tokens::access::MIN_SECRET_LEN,
};

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
    #[error(transparent)]
    Smtp(#[from] SmtpConfigError),
    #[error(
        "APP_ENV=production with e-mail on requires SMTP_URL (the mail server) and MAIL_FROM; \
         or set EMAIL=off for a service that sends no mail"
    )]
    NoMailServer,
    #[error(
        "APP_ENV=production with e-mail on requires PUBLIC_URL, the site's https:// address \
         that the links in mails point to"
    )]
    NoPublicUrl,
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
    /// How the service mails.
    pub mail: MailConfig,
    /// What seals the TOTP secrets and keys the recovery codes (`FACTOR_KEY`, at least 32
    /// bytes; else `JWT_SECRET`).
    pub factor_key: Vec<u8>,
    /// Dangerous changes need an authentication this recent (`REAUTH_WINDOW`, 10 minutes).
    pub reauth_window: Duration,
    /// Where Prometheus metrics are served (`METRICS_ADDR`); `None`: nowhere, and nothing
    /// measured.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How long security events are kept (`AUDIT_RETENTION`, 90 days).
    pub audit_retention: Duration,
}

/// The mail settings (`EMAIL`, `SMTP_URL`, `MAIL_FROM`, `SMTP_CA_FILE`, `PUBLIC_URL`,
/// `APP_NAME`, `RESET_TTL`, `EMAIL_REQUIRED`).
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `EMAIL=off` turns mail off altogether.
    pub enabled: bool,
    /// The mail server; none in development keeps mail in the outbox.
    pub smtp: Option<Smtp>,
    /// `https://example.com`, without a trailing slash.
    pub public_url: String,
    pub app_name: String,
    pub reset_ttl: Duration,
    pub required: bool,
}

/// Mail on, kept in the outbox (no mail server), links to the development address.
impl Default for MailConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            smtp: None,
            public_url: "http://127.0.0.1:3000".into(),
            app_name: "authapp".into(),
            reset_ttl: Duration::from_secs(30 * 60),
            required: false,
        }
    }
}

/// `PUBLIC_URL`: an absolute http(s) URL with neither query nor fragment; `https://` in
/// production. Returned without its trailing slashes.
fn parse_public_url(text: &str, production: bool) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::Invalid("PUBLIC_URL", format!("{text:?} {why}"));
    let url = url::Url::parse(text.trim()).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if !production => {}
        "http" => {
            return Err(bad(
                "must be https:// in production (the site is served over https)",
            ))
        }
        _ => return Err(bad("must be an http:// or https:// address")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad(
            "must be the site's address alone (no user, query or fragment)",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl MailConfig {
    fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        production: bool,
    ) -> Result<Self, ConfigError> {
        let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let enabled = match set("EMAIL") {
            Some(v) => parse_bool("EMAIL", &v)?,
            None => true,
        };
        let required = match set("EMAIL_REQUIRED") {
            Some(v) => parse_bool("EMAIL_REQUIRED", &v)?,
            None => false,
        };
        if required && !enabled {
            return Err(ConfigError::Invalid(
                "EMAIL_REQUIRED",
                "an address cannot be required with EMAIL=off".into(),
            ));
        }
        let smtp = match (enabled, set("SMTP_URL")) {
            (true, Some(url)) => {
                let ca = set("SMTP_CA_FILE").map(PathBuf::from);
                Some(Smtp::parse(
                    &url,
                    set("MAIL_FROM").as_deref(),
                    ca.as_deref(),
                )?)
            }
            _ => None,
        };
        if production && enabled && smtp.is_none() {
            return Err(ConfigError::NoMailServer);
        }
        let public_url = match set("PUBLIC_URL") {
            Some(url) => parse_public_url(&url, production)?,
            None if production && enabled => return Err(ConfigError::NoPublicUrl),
            None => format!(
                "http://{}",
                set("LEPTOS_SITE_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into())
            ),
        };
        let defaults = Self::default();
        let reset_ttl = match set("RESET_TTL") {
            Some(v) => parse_duration(&v).ok_or_else(|| {
                ConfigError::Invalid("RESET_TTL", format!("{v:?} is not a duration like 30m"))
            })?,
            None => defaults.reset_ttl,
        };
        Ok(Self {
            enabled,
            smtp,
            public_url,
            app_name: set("APP_NAME").map_or(defaults.app_name, |n| n.trim().to_owned()),
            reset_ttl,
            required,
        })
    }
}

/// `scheme://user:***@host/...`: a URL with its password, if any, hidden (in the user info or
/// as a `password=` parameter).
pub(crate) fn redact_password(url: &str) -> String {
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
            .field("mail", &self.mail)
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
        let factor_key = match get("FACTOR_KEY").filter(|s| !s.is_empty()) {
            Some(s) if s.len() < MIN_SECRET_LEN => {
                return Err(ConfigError::Invalid(
                    "FACTOR_KEY",
                    format!("{} bytes; at least {MIN_SECRET_LEN} are needed", s.len()),
                ))
            }
            Some(s) => s.into_bytes(),
            None => jwt_secret.clone(),
        };
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
            mail: MailConfig::from_lookup(&get, production)?,
            factor_key,
            reauth_window: duration("REAUTH_WINDOW", 10 * 60)?,
            metrics_addr: match get("METRICS_ADDR").filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(v) => Some(v.trim().parse().map_err(|_| {
                    ConfigError::Invalid(
                        "METRICS_ADDR",
                        format!("{v:?} is not an address and port like 127.0.0.1:9100"),
                    )
                })?),
            },
            audit_retention: duration("AUDIT_RETENTION", 90 * 86_400)?,
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
            ("EMAIL", "off"),
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
            let mut prod = vec![
                ("APP_ENV", "production"),
                ("JWT_SECRET", secret.as_str()),
                ("EMAIL", "off"),
            ];
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

    /// Production with e-mail on needs a mail server and the site's public address; `EMAIL=off`
    /// needs neither. Development needs neither and keeps mail in the outbox.
    #[test]
    fn production_mail_needs_a_server_and_a_public_address() {
        let secret = "k".repeat(32);
        let prod = |pairs: &[(&'static str, &'static str)]| {
            let mut all = vec![("APP_ENV", "production"), ("JWT_SECRET", secret.as_str())];
            all.extend_from_slice(pairs);
            Config::from_lookup(lookup(&all))
        };
        let smtp = ("SMTP_URL", "smtp://mailer:pw@smtp.example.com");
        let from = ("MAIL_FROM", "authapp <noreply@example.com>");
        let public = ("PUBLIC_URL", "https://auth.example.com/");

        let err = prod(&[public]).unwrap_err();
        assert!(matches!(err, ConfigError::NoMailServer), "{err}");
        assert!(err.to_string().contains("requires SMTP_URL"), "{err}");
        assert!(err.to_string().contains("EMAIL=off"), "{err}");
        let err = prod(&[smtp, from]).unwrap_err();
        assert!(matches!(err, ConfigError::NoPublicUrl), "{err}");
        let err = prod(&[smtp, public]).unwrap_err();
        assert!(err.to_string().contains("MAIL_FROM is required"), "{err}");
        let err = prod(&[smtp, from, ("PUBLIC_URL", "http://auth.example.com")]).unwrap_err();
        assert!(err.to_string().contains("PUBLIC_URL"), "{err}");

        let ok = prod(&[smtp, from, public]).unwrap();
        assert!(ok.mail.enabled && ok.mail.smtp.is_some());
        assert_eq!(ok.mail.public_url, "https://auth.example.com");
        // The password never reaches a printed configuration.
        let printed = format!("{ok:?}");
        assert!(
            printed.contains("smtp.example.com") && !printed.contains("pw"),
            "{printed}"
        );

        let off = prod(&[("EMAIL", "off")]).unwrap();
        assert!(!off.mail.enabled && off.mail.smtp.is_none());

        let dev = Config::from_lookup(lookup(&[
            ("JWT_SECRET", secret.as_str()),
            ("LEPTOS_SITE_ADDR", "127.0.0.1:3100"),
        ]))
        .unwrap();
        assert!(dev.mail.enabled && dev.mail.smtp.is_none());
        assert_eq!(dev.mail.public_url, "http://127.0.0.1:3100");
        assert_eq!(dev.mail.app_name, "authapp");
        assert_eq!(dev.mail.reset_ttl, Duration::from_secs(1800));
        assert!(!dev.mail.required);
    }

    #[test]
    fn mail_settings_are_read_and_bad_ones_named() {
        let secret = "k".repeat(32);
        let dev = |pairs: &[(&'static str, &'static str)]| {
            let mut all = vec![("JWT_SECRET", secret.as_str())];
            all.extend_from_slice(pairs);
            Config::from_lookup(lookup(&all))
        };
        let ok = dev(&[
            ("SMTP_URL", "smtps://smtp.example.com"),
            ("MAIL_FROM", "noreply@example.com"),
            ("PUBLIC_URL", "http://localhost:3000/"),
            ("APP_NAME", " Example "),
            ("RESET_TTL", "15m"),
            ("EMAIL_REQUIRED", "true"),
        ])
        .unwrap();
        let smtp = ok.mail.smtp.unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("smtp.example.com", 465));
        assert_eq!(ok.mail.public_url, "http://localhost:3000");
        assert_eq!(ok.mail.app_name, "Example");
        assert_eq!(ok.mail.reset_ttl, Duration::from_secs(900));
        assert!(ok.mail.required);

        for (pairs, names) in [
            (&[("SMTP_URL", "smtp.example.com")][..], "SMTP_URL"),
            (
                &[("SMTP_URL", "imap://h"), ("MAIL_FROM", "a@b.c")][..],
                "SMTP_URL",
            ),
            (
                &[("SMTP_URL", "smtp://h"), ("MAIL_FROM", "nobody")][..],
                "MAIL_FROM",
            ),
            (
                &[
                    ("SMTP_URL", "smtp://h"),
                    ("MAIL_FROM", "a@b.c"),
                    ("SMTP_CA_FILE", "/nonexistent/ca.pem"),
                ][..],
                "SMTP_CA_FILE",
            ),
            (&[("PUBLIC_URL", "example.com")][..], "PUBLIC_URL"),
            (&[("PUBLIC_URL", "ftp://example.com")][..], "PUBLIC_URL"),
            (
                &[("PUBLIC_URL", "https://example.com/?a=1")][..],
                "PUBLIC_URL",
            ),
            (&[("RESET_TTL", "soon")][..], "RESET_TTL"),
            (&[("EMAIL", "maybe")][..], "EMAIL"),
            (
                &[("EMAIL", "off"), ("EMAIL_REQUIRED", "yes")][..],
                "EMAIL_REQUIRED",
            ),
        ] {
            let err = dev(pairs).unwrap_err().to_string();
            assert!(err.contains(names), "{pairs:?}: {err}");
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
