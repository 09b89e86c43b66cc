//! The tests' mail server: scripts/smtp-sink.py (Debian's aiosmtpd, a real SMTP server) on a
//! free loopback port, started and stopped by its PID, and the mails it received read back
//! (feature `testing`; its package comes with `make smtp-sink`).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The script, beside this crate.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/smtp-sink.py");

/// How the sink secures its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SinkTls {
    /// Plain SMTP; the sender must be told `tls=none`.
    #[default]
    None,
    /// STARTTLS offered and required, under a certificate of its own authority ([`SmtpSink::ca_file`]).
    StartTls,
    /// TLS from the first byte (smtps).
    Implicit,
}

/// How to start the sink.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    pub tls: SinkTls,
    /// A user and password it requires (AUTH PLAIN or LOGIN).
    pub auth: Option<(String, String)>,
}

/// A running smtp-sink.py, stopped (SIGTERM to its PID) when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: SinkOptions,
}

/// One mail the sink accepted: its envelope and the message as it came.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub raw: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct Envelope {
    mail_from: String,
    rcpt_tos: Vec<String>,
    eml: String,
}

impl SmtpSink {
    /// A plain sink on a free port.
    pub fn start() -> Self {
        Self::start_with(SinkOptions::default())
    }

    pub fn start_with(options: SinkOptions) -> Self {
        let dir = tempfile::tempdir().expect("a folder for the received mail");
        let mut sink = Self {
            child: None,
            port: 0,
            dir,
            options,
        };
        sink.launch();
        sink
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.log_path()).expect("the sink's log");
        let mut command = Command::new(SCRIPT);
        command
            .arg(self.dir.path())
            .arg("--port")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        match self.options.tls {
            SinkTls::None => {}
            SinkTls::StartTls => {
                command.arg("--tls");
            }
            SinkTls::Implicit => {
                command.arg("--implicit-tls");
            }
        }
        if let Some((user, password)) = &self.options.auth {
            command.arg("--auth").arg(format!("{user}:{password}"));
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SCRIPT}: {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the sink's standard output");
        // Its one line; a sink that exits first (aiosmtpd missing, the port taken) says why in
        // its log.
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Some(port) = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "smtp-sink.py did not start (is python3-aiosmtpd installed? `make smtp-sink`): {}",
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
        };
        self.port = port;
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sink.log")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder the mails are written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The authority the sink's certificate is signed by (with TLS): `SMTP_CA_FILE`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `SMTP_URL` for this sink (its credentials included).
    pub fn url(&self) -> String {
        let auth = match &self.options.auth {
            Some((user, password)) => format!("{user}:{password}@"),
            None => String::new(),
        };
        match self.options.tls {
            SinkTls::None => format!("smtp://{auth}127.0.0.1:{}?tls=none", self.port),
            SinkTls::StartTls => format!("smtp://{auth}localhost:{}", self.port),
            SinkTls::Implicit => format!("smtps://{auth}localhost:{}", self.port),
        }
    }

    /// Stops it (SIGTERM to its PID, then waits for it). Its mails stay.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// Starts it again after a [`stop`](Self::stop), on the same port, into the same folder.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Every mail received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.extension().is_some_and(|x| x == "json")
                            && p.file_stem()
                                .and_then(|s| s.to_str())
                                .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|path| {
                let json = std::fs::read(path).expect("an envelope");
                let envelope: Envelope = serde_json::from_slice(&json).expect("an envelope");
                let raw = std::fs::read(self.dir.path().join(&envelope.eml)).expect("a message");
                Received {
                    mail_from: envelope.mail_from,
                    rcpt_tos: envelope.rcpt_tos,
                    raw,
                }
            })
            .collect()
    }

    /// Waits (up to `timeout`) until at least `n` mails were received; all of them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= n || tokio::time::Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Received {
    /// The message, parsed.
    pub fn parsed(&self) -> mailparse::ParsedMail<'_> {
        mailparse::parse_mail(&self.raw).expect("a well-formed message")
    }

    /// The first value of header `name`, decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        use mailparse::MailHeaderMap;
        self.parsed().headers.get_first_value(name)
    }

    /// The decoded body of the first part of type `mime` (`text/plain`, `text/html`).
    pub fn body(&self, mime: &str) -> Option<String> {
        fn find(part: &mailparse::ParsedMail<'_>, mime: &str) -> Option<String> {
            if part.subparts.is_empty() {
                return (part.ctype.mimetype == mime)
                    .then(|| part.get_body().ok())
                    .flatten();
            }
            part.subparts.iter().find_map(|p| find(p, mime))
        }
        find(&self.parsed(), mime)
    }
}
