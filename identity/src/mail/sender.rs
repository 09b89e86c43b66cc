//! Delivery: the background sender that takes mail from the outbox and hands it to the mail
//! server over SMTP (lettre, rustls).
//!
//! It loops: claim the mails that are due ([`Store::claim_outbox`], a lease that keeps every
//! other sender off them), send each, record the outcome ([`Store::mark_outbox`]), then wait for
//! a [`Wake`] or the next poll (other instances queue mail too). A mail the server takes is
//! marked sent; one it answers "later" (4xx), or that could not be handed over at all (no
//! connection, a timeout, a TLS failure), is tried again after a backoff; one it refuses for
//! good (5xx about the mail) is given up on, and so is one tried too often. Nothing here waits
//! on a request or makes one wait, and neither an unreachable database nor an unreachable mail
//! server stops it: it logs and tries again later.
//!
//! The log names a mail by its outbox id and kind and says what became of it; never its
//! bodies (a link in them is a credential), and its recipient only at debug level.

use std::{
    fmt,
    path::Path,
    time::{Duration, SystemTime},
};

use lettre::{
    message::{Mailbox, MultiPart},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
        AsyncSmtpTransport, Error as SmtpError, PoolConfig,
    },
    Address, AsyncTransport, Message, Tokio1Executor,
};

use super::Wake;
use crate::store::{
    outbox::{Entry, Mark},
    Store, StoreError,
};

/// How long the mail server may take to answer one command (or to accept a connection).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the whole of one mail's sending may take, connection and TLS included.
pub const SEND_LIMIT: Duration = Duration::from_secs(60);

/// How long a mail that is done (sent, or given up on) stays in the outbox, its bodies blanked,
/// for the operator to see what became of it.
pub const KEEP_DONE: Duration = Duration::from_secs(7 * 86_400);

/// How a connection to the mail server is secured (`SMTP_URL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: plain, then STARTTLS, which the server must offer (the default; port 587).
    StartTls,
    /// `smtp://...?tls=opportunistic`: STARTTLS when the server offers it, plain otherwise.
    Opportunistic,
    /// `smtp://...?tls=none`: never encrypted; for a relay on the same machine.
    Plain,
    /// `smtps://`: TLS from the first byte (port 465).
    Implicit,
}

/// Where and how to send mail: `SMTP_URL`, `MAIL_FROM` and `SMTP_CA_FILE`, checked.
#[derive(Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The user and password of `user:password@`, percent-decoded.
    credentials: Option<(String, String)>,
    /// Who the mails are from (`MAIL_FROM`).
    pub from: Mailbox,
    /// A PEM certificate authority trusted beside the system's (`SMTP_CA_FILE`).
    extra_root: Option<Vec<u8>>,
    /// One conversation's limit.
    pub timeout: Duration,
}

// The password is never printed.
impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("from", &self.from.to_string())
            .field("extra_root", &self.extra_root.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why the mail settings cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmtpConfigError {
    #[error("SMTP_URL is not a URL: {0}")]
    NotUrl(String),
    #[error("SMTP_URL must start with smtp:// (STARTTLS) or smtps:// (TLS), not {0}://")]
    Scheme(String),
    #[error("SMTP_URL names no host")]
    NoHost,
    #[error(
        "SMTP_URL: tls={0:?} is not one of required (the default), opportunistic or none \
         (and smtps:// is always TLS)"
    )]
    TlsMode(String),
    #[error("SMTP_URL: unknown parameter {0:?} (only tls= is read)")]
    Parameter(String),
    #[error("SMTP_URL: a path ({0:?}) means nothing here")]
    Path(String),
    #[error("SMTP_URL: the user name or password is not valid percent-encoded UTF-8")]
    Credentials,
    #[error("SMTP_URL: a password needs a user name")]
    PasswordWithoutUser,
    #[error("MAIL_FROM is required with SMTP_URL: the address the mails are from")]
    NoFrom,
    #[error("MAIL_FROM is not a mailbox (addr@example.com or Name <addr@example.com>): {0}")]
    From(String),
    #[error("SMTP_CA_FILE {0}: {1}")]
    CaFile(String, String),
    #[error("cannot prepare TLS for the mail server: {0}")]
    Tls(String),
}

impl Smtp {
    /// The settings of `url` (`SMTP_URL`), `from` (`MAIL_FROM`) and `ca_file` (`SMTP_CA_FILE`).
    pub fn parse(
        url: &str,
        from: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<Self, SmtpConfigError> {
        let parsed =
            url::Url::parse(url.trim()).map_err(|e| SmtpConfigError::NotUrl(e.to_string()))?;
        let implicit = match parsed.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => return Err(SmtpConfigError::Scheme(other.to_owned())),
        };
        let host = match parsed.host() {
            // Kept as written by the URL parser for a scheme it does not know: lower-cased here.
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(SmtpConfigError::NoHost),
        };
        if !matches!(parsed.path(), "" | "/") {
            return Err(SmtpConfigError::Path(parsed.path().to_owned()));
        }
        let mut security = if implicit {
            Security::Implicit
        } else {
            Security::StartTls
        };
        for (name, value) in parsed.query_pairs() {
            if name != "tls" {
                return Err(SmtpConfigError::Parameter(name.into_owned()));
            }
            security = match (implicit, value.as_ref()) {
                (false, "required" | "starttls") => Security::StartTls,
                (false, "opportunistic") => Security::Opportunistic,
                (false, "none") => Security::Plain,
                (true, "required" | "implicit") => Security::Implicit,
                _ => return Err(SmtpConfigError::TlsMode(value.into_owned())),
            };
        }
        let port = parsed.port().unwrap_or(if implicit { 465 } else { 587 });
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| SmtpConfigError::Credentials)
        };
        let credentials = match (parsed.username(), parsed.password()) {
            ("", None) => None,
            ("", Some(_)) => return Err(SmtpConfigError::PasswordWithoutUser),
            (user, password) => Some((decode(user)?, decode(password.unwrap_or_default())?)),
        };
        let from = from
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .ok_or(SmtpConfigError::NoFrom)?;
        let from: Mailbox = from
            .parse()
            .map_err(|e: lettre::address::AddressError| SmtpConfigError::From(e.to_string()))?;
        let extra_root = match ca_file {
            Some(path) => {
                let fail = |e: String| SmtpConfigError::CaFile(path.display().to_string(), e);
                let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(fail("holds no PEM certificate".into()));
                }
                Certificate::from_pem(&pem).map_err(|e| fail(e.to_string()))?;
                Some(pem)
            }
            None => None,
        };
        Ok(Self {
            host,
            port,
            security,
            credentials,
            from,
            extra_root,
            timeout: SMTP_TIMEOUT,
        })
    }

    /// Whether mail (and the password, if any) may cross the network unencrypted.
    pub fn insecure(&self) -> bool {
        matches!(self.security, Security::Plain | Security::Opportunistic)
    }

    /// The user name, if the server is signed in to.
    pub fn user(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(user, _)| user.as_str())
    }

    /// The transport these settings describe. Reads the system's certificate authorities.
    pub fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, SmtpConfigError> {
        let tls = || {
            let mut params = TlsParameters::builder(self.host.clone());
            if let Some(pem) = &self.extra_root {
                let root =
                    Certificate::from_pem(pem).map_err(|e| SmtpConfigError::Tls(e.to_string()))?;
                params = params.add_root_certificate(root);
            }
            params
                .build_rustls()
                .map_err(|e| SmtpConfigError::Tls(e.to_string()))
        };
        let tls = match self.security {
            Security::StartTls => Tls::Required(tls()?),
            Security::Opportunistic => Tls::Opportunistic(tls()?),
            Security::Plain => Tls::None,
            Security::Implicit => Tls::Wrapper(tls()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(self.timeout))
            // The sender sends one mail at a time: one connection, kept while mail flows.
            .pool_config(PoolConfig::new().max_size(1));
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(builder.build())
    }
}

/// When to try again and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Mails claimed at a time.
    pub batch: usize,
    /// How long a claim keeps other senders off: longer than a batch can take to send
    /// ([`SEND_LIMIT`] a mail, at worst), so that a live sender never loses its claim.
    pub lease: Duration,
    /// The wait after a first temporary failure; it doubles with each further one ...
    pub first_retry: Duration,
    /// ... up to this.
    pub max_retry: Duration,
    /// Attempts before a mail is given up on: about an hour and a quarter of trying with the
    /// defaults, long enough to ride out a mail server's restart or a short outage.
    pub max_attempts: i64,
    /// How often the outbox is read without a wake-up (other instances queue mail too, and a
    /// retry falls due).
    pub poll: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            batch: 4,
            lease: Duration::from_secs(5 * 60),
            first_retry: Duration::from_secs(2),
            max_retry: Duration::from_secs(5 * 60),
            max_attempts: 20,
            poll: Duration::from_secs(2),
        }
    }
}

impl Policy {
    /// The wait after `attempts` attempts, all failed: `first_retry` doubled each time, capped.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.first_retry
            .saturating_mul(1u32 << doublings)
            .min(self.max_retry)
    }
}

/// What one round of the sender did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

/// The background sender of one instance.
#[derive(Clone)]
pub struct Sender {
    store: Store,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    wake: Wake,
    policy: Policy,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended.
enum Outcome {
    Sent,
    /// Try again later; the error for the operator, and what of it may be logged.
    Later(String, String),
    /// Refused for good.
    Refused(String, String),
}

impl Sender {
    /// A sender of the outbox of `store` through the mail server of `smtp`, woken by `wake`.
    pub fn new(store: Store, smtp: &Smtp, wake: Wake) -> Result<Self, SmtpConfigError> {
        Ok(Self {
            store,
            transport: smtp.transport()?,
            from: smtp.from.clone(),
            wake,
            policy: Policy::default(),
        })
    }

    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Runs the sender for as long as the process lives. Should it ever panic, it is logged
    /// and started again: mail keeps going out.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let sender = self.clone();
                match tokio::spawn(sender.run()).await {
                    Err(e) if e.is_panic() => {
                        tracing::error!("the mail sender panicked; it starts again");
                        tokio::time::sleep(self.policy.poll).await;
                    }
                    // Cancelled: the runtime is shutting down.
                    _ => return,
                }
            }
        })
    }

    async fn run(self) {
        loop {
            match self.round().await {
                // A full batch: more may be due at once.
                Ok(round) if round.claimed == self.policy.batch => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    "the mail sender cannot read the outbox; it tries again shortly"
                ),
            }
            tokio::select! {
                () = self.wake.woken() => {}
                () = tokio::time::sleep(self.policy.poll) => {}
            }
        }
    }

    /// Claims the mails that are due, tries each once and records how it went.
    pub async fn round(&self) -> Result<Round, StoreError> {
        let now = crate::tokens::access::now_unix();
        let dropped = self.store.drop_dead_links(now).await?;
        if dropped > 0 {
            tracing::info!(
                dropped,
                "mails whose link died before they went out: given up on"
            );
        }
        let lease_until = now + secs(self.policy.lease);
        let claimed = self
            .store
            .claim_outbox(now, lease_until, self.policy.batch)
            .await?;
        let mut round = Round {
            claimed: claimed.len(),
            ..Round::default()
        };
        for mail in &claimed {
            let attempts = mail.attempts + 1;
            let outcome = self.send(mail).await;
            let now = crate::tokens::access::now_unix();
            let mark = match outcome {
                Outcome::Sent => {
                    round.sent += 1;
                    crate::metrics::mail_sent();
                    tracing::info!(outbox_id = mail.id, kind = %mail.kind, attempts, "mail sent");
                    Mark::Sent
                }
                Outcome::Refused(error, logged) => {
                    round.failed += 1;
                    crate::metrics::mail_failed(false);
                    tracing::warn!(
                        outbox_id = mail.id, kind = %mail.kind, attempts, error = %logged,
                        "the mail server refused a mail for good; it is given up on"
                    );
                    Mark::Failed { error }
                }
                Outcome::Later(error, logged) if attempts >= self.policy.max_attempts => {
                    round.failed += 1;
                    crate::metrics::mail_failed(false);
                    tracing::warn!(
                        outbox_id = mail.id, kind = %mail.kind, attempts, error = %logged,
                        "a mail could not be sent after its last attempt; it is given up on"
                    );
                    Mark::Failed {
                        error: format!("given up after {attempts} attempts: {error}"),
                    }
                }
                Outcome::Later(error, logged) => {
                    round.retried += 1;
                    crate::metrics::mail_failed(true);
                    let wait = self.policy.backoff(attempts);
                    tracing::warn!(
                        outbox_id = mail.id, kind = %mail.kind, attempts, error = %logged,
                        retry_in = ?wait, "a mail could not be sent yet; it is tried again later"
                    );
                    Mark::Retry {
                        next_attempt_at: now + secs(wait),
                        error,
                    }
                }
            };
            tracing::debug!(outbox_id = mail.id, recipient = %mail.recipient, "mail recipient");
            // Unrecorded (the database went away), the claim lapses and the mail is tried
            // again: sent a second time, if it was sent.
            if let Err(e) = self.store.mark_outbox(mail.id, attempts, &mark, now).await {
                tracing::warn!(
                    outbox_id = mail.id, error = %e,
                    "cannot record a mail's outcome; it is tried again when its claim lapses"
                );
            }
        }
        Ok(round)
    }

    async fn send(&self, mail: &Entry) -> Outcome {
        let message = match self.message(mail) {
            Ok(message) => message,
            Err(e) => return Outcome::Refused(e.clone(), e),
        };
        match tokio::time::timeout(SEND_LIMIT, self.transport.send(message)).await {
            Ok(Ok(_)) => Outcome::Sent,
            Ok(Err(e)) => classify(&e),
            Err(_) => {
                let e = format!("no answer within {SEND_LIMIT:?}");
                Outcome::Later(e.clone(), e)
            }
        }
    }

    /// The mail as it goes out: plain text and HTML as alternatives. Its Message-ID and Date
    /// are the outbox row's, so that a second copy (see [`Store::claim_outbox`]) is recognisably
    /// the same mail.
    fn message(&self, mail: &Entry) -> Result<Message, String> {
        let to: Address = mail
            .recipient
            .parse()
            .map_err(|e| format!("the recipient's address cannot be sent to: {e}"))?;
        let domain = self.from.email.domain();
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(mail.subject.clone())
            .message_id(Some(format!(
                "<outbox.{}.{}@{domain}>",
                mail.id, mail.created_at
            )))
            .date(
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(mail.created_at).unwrap_or_default()),
            )
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| format!("the mail cannot be written: {e}"))
    }
}

/// The whole seconds of `d`, at least one.
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1)
}

/// A failed attempt: given up on when the server refused the mail itself for good, tried again
/// otherwise. A 5xx about the sender's own standing (a refused sign-in, STARTTLS or
/// authentication required, a command not understood) is the operator's to fix, not the
/// mail's fault: retried, so that fixing the settings sends it. What is logged of a server's
/// answer is its code alone: its words may quote the recipient.
fn classify(e: &SmtpError) -> Outcome {
    let full = e.to_string();
    match e.status() {
        Some(code) => {
            let number = code.to_string();
            let logged = format!("the mail server answered {number}");
            let about_the_mail = matches!(number.as_str(), "550" | "551" | "552" | "553" | "554");
            if e.is_permanent() && about_the_mail {
                Outcome::Refused(full, logged)
            } else {
                Outcome::Later(full, logged)
            }
        }
        // No answer at all: a connection refused or dropped, a timeout, TLS. Nothing personal.
        None => Outcome::Later(full.clone(), full),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Smtp, SmtpConfigError> {
        Smtp::parse(url, Some("authapp <noreply@example.com>"), None)
    }

    #[test]
    fn schemes_and_tls_modes() {
        for (url, host, port, security) in [
            (
                "smtp://mail.example.com",
                "mail.example.com",
                587,
                Security::StartTls,
            ),
            (
                "smtp://mail.example.com:2525",
                "mail.example.com",
                2525,
                Security::StartTls,
            ),
            (
                "smtp://mail.example.com/?tls=required",
                "mail.example.com",
                587,
                Security::StartTls,
            ),
            (
                "smtp://mail.example.com?tls=opportunistic",
                "mail.example.com",
                587,
                Security::Opportunistic,
            ),
            (
                "smtp://127.0.0.1:25?tls=none",
                "127.0.0.1",
                25,
                Security::Plain,
            ),
            ("smtp://[::1]:25?tls=none", "::1", 25, Security::Plain),
            (
                "smtps://smtp.example.com",
                "smtp.example.com",
                465,
                Security::Implicit,
            ),
            (
                "SMTPS://Smtp.Example.com:4650",
                "smtp.example.com",
                4650,
                Security::Implicit,
            ),
        ] {
            let smtp = parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                (smtp.host.as_str(), smtp.port, smtp.security),
                (host, port, security),
                "{url}"
            );
            assert_eq!(
                smtp.insecure(),
                matches!(security, Security::Plain | Security::Opportunistic)
            );
            assert_eq!(smtp.user(), None);
            assert_eq!(smtp.timeout, SMTP_TIMEOUT);
        }
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_printed() {
        let smtp = parse("smtp://apikey:p%40ss%3Aw%2Fd%20x@smtp.example.com").unwrap();
        assert_eq!(
            smtp.credentials,
            Some(("apikey".to_owned(), "p@ss:w/d x".to_owned()))
        );
        let printed = format!("{smtp:?}");
        assert!(printed.contains("apikey"), "{printed}");
        assert!(
            !printed.contains("p@ss") && !printed.contains("p%40ss"),
            "{printed}"
        );
        let smtp = parse("smtps://user%40example.com@smtp.example.com").unwrap();
        assert_eq!(smtp.user(), Some("user@example.com"));
        assert_eq!(smtp.credentials.unwrap().1, "");
    }

    #[test]
    fn bad_urls_are_named() {
        for (url, expected) in [
            ("mail.example.com", SmtpConfigError::NotUrl(String::new())),
            (
                "http://mail.example.com",
                SmtpConfigError::Scheme("http".into()),
            ),
            ("smtp://", SmtpConfigError::NoHost),
            (
                "smtp://mail.example.com?tls=maybe",
                SmtpConfigError::TlsMode("maybe".into()),
            ),
            (
                "smtps://mail.example.com?tls=none",
                SmtpConfigError::TlsMode("none".into()),
            ),
            (
                "smtp://mail.example.com?ssl=1",
                SmtpConfigError::Parameter("ssl".into()),
            ),
            (
                "smtp://mail.example.com/inbox",
                SmtpConfigError::Path("/inbox".into()),
            ),
            (
                "smtp://:secret@mail.example.com",
                SmtpConfigError::PasswordWithoutUser,
            ),
            (
                "smtp://u:%FF@mail.example.com",
                SmtpConfigError::Credentials,
            ),
            (
                "smtp://mail.example.com:99999",
                SmtpConfigError::NotUrl(String::new()),
            ),
        ] {
            let err = parse(url).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&err),
                std::mem::discriminant(&expected),
                "{url}: {err}"
            );
            assert!(err.to_string().contains("SMTP_URL"), "{url}: {err}");
        }
    }

    #[test]
    fn the_sender_is_a_mailbox() {
        let url = "smtp://mail.example.com";
        for (from, ok) in [
            ("noreply@example.com", true),
            ("authapp <noreply@example.com>", true),
            ("\"The App\" <noreply@example.com>", true),
            ("noreply", false),
            ("", false),
        ] {
            let smtp = Smtp::parse(url, Some(from), None);
            assert_eq!(smtp.is_ok(), ok, "{from}: {smtp:?}");
            if !ok {
                assert!(smtp.unwrap_err().to_string().contains("MAIL_FROM"));
            }
        }
        let err = Smtp::parse(url, None, None).unwrap_err();
        assert_eq!(err, SmtpConfigError::NoFrom);
    }

    #[test]
    fn the_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = Smtp::parse("smtp://h", Some("a@b.c"), Some(&missing)).unwrap_err();
        assert!(matches!(err, SmtpConfigError::CaFile(..)), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let err = Smtp::parse("smtp://h", Some("a@b.c"), Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("SMTP_CA_FILE"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let policy = Policy::default();
        let waits: Vec<u64> = (1..=12).map(|n| policy.backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300]);
        assert_eq!(policy.backoff(i64::MAX).as_secs(), 300);
        assert_eq!(policy.backoff(0).as_secs(), 2);
        // The lease outlasts a batch sent at the slowest.
        assert!(policy.lease > SEND_LIMIT * u32::try_from(policy.batch).unwrap());
    }
}
