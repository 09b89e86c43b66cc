//! The real binary as a separate process: crash durability, graceful shutdown, and what it logs.

use std::{
    io::Read,
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::{database, database_url, now_unix, on_postgres, register_and_login, PASSWORD};
use reqwest::Client;
use serde_json::Value;

const SECRET: &str = "process-test-secret-0123456789abcdef0123";

struct Server {
    child: Child,
    base: String,
}

/// A free address for a child server: a loopback address of its own (127.0.1.N), so that no
/// in-process test server (they bind 127.0.0.1:0) can take the port between the check and the
/// child's bind.
fn free_addr() -> std::net::SocketAddr {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    TcpListener::bind(("127.0.1.".to_string() + &n.to_string(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts the server binary on a free port with its database in `dir` (a SQLite file, or the
/// URL of its PostgreSQL database: [`database_url`]), and waits for /health.
async fn start(dir: &Path, rust_log: &str) -> Server {
    start_with(dir, rust_log, &[]).await
}

/// [`start`] with more environment variables.
async fn start_with(dir: &Path, rust_log: &str, env: &[(&str, &str)]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
    command
        .envs(env.iter().copied())
        .env("DATABASE_URL", database_url(dir).await)
        .env("JWT_SECRET", SECRET)
        .env("RUST_LOG", rust_log);
    spawn_server(command, dir).await
}

/// Runs `command` (the server binary, or a shell that execs it) in `dir` on a free port, and
/// waits for /health.
async fn spawn_server(mut command: Command, dir: &Path) -> Server {
    let addr = free_addr();
    let child = command
        .current_dir(dir)
        .env("LEPTOS_OUTPUT_NAME", "authapp")
        .env("LEPTOS_SITE_ADDR", addr.to_string())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server binary");
    let base = format!("http://{addr}");
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(format!("{base}/health")).send().await {
            if res.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child, base }
}

fn signal(server: &Server, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for the process to end and returns its exit code and everything it printed.
fn finish(mut server: Server) -> (Option<i32>, String) {
    let status = server.child.wait().expect("wait");
    let mut out = String::new();
    if let Some(mut s) = server.child.stdout.take() {
        s.read_to_string(&mut out).unwrap();
    }
    if let Some(mut s) = server.child.stderr.take() {
        s.read_to_string(&mut out).unwrap();
    }
    (status.code(), out)
}

/// Runs the binary with `env` until it exits on its own (30 s at most) and returns its exit
/// code and output.
fn run_to_exit(dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
    command
        .current_dir(dir)
        .env_remove("JWT_SECRET")
        .env_remove("APP_ENV")
        .env("LEPTOS_OUTPUT_NAME", "authapp")
        .env("LEPTOS_SITE_ADDR", free_addr().to_string())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("app.db").display()),
        )
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("server binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started instead of refusing to");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let base = String::new();
    finish(Server { child, base })
}

async fn logout(base: &str, token: &str) -> reqwest::Response {
    Client::new()
        .post(format!("{base}/api/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn me(base: &str, token: &str) -> reqwest::Response {
    Client::new()
        .get(format!("{base}/api/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn refuses_to_start_without_a_production_secret_or_on_a_broken_database() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run_to_exit(dir.path(), &[("APP_ENV", "production")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("APP_ENV=production requires JWT_SECRET"),
        "{out}"
    );

    let (code, out) = run_to_exit(
        dir.path(),
        &[
            ("APP_ENV", "production"),
            ("JWT_SECRET", "too-short-secret"),
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("at least 32 bytes"), "{out}");

    // Production cookies without `Secure` would travel over plain http.
    let (code, out) = run_to_exit(
        dir.path(),
        &[
            ("APP_ENV", "production"),
            ("JWT_SECRET", SECRET),
            ("COOKIE_SECURE", "false"),
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("APP_ENV=production requires COOKIE_SECURE=true"),
        "{out}"
    );

    // Production with e-mail on and no mail server: the mail would never go out.
    let (code, out) = run_to_exit(
        dir.path(),
        &[
            ("APP_ENV", "production"),
            ("JWT_SECRET", SECRET),
            ("PUBLIC_URL", "https://auth.example.com"),
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("APP_ENV=production with e-mail on requires SMTP_URL"),
        "{out}"
    );

    // A database whose `users` table is not ours: the first migration cannot run.
    let db = dir.path().join("broken.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", db.display()))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE users (name TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let url = format!("sqlite://{}", db.display());
    let (code, out) = run_to_exit(
        dir.path(),
        &[("DATABASE_URL", &url), ("JWT_SECRET", SECRET)],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("database migration failed"), "{out}");

    // A URL of another database, or a bare path: refused at start, with the scheme named and
    // never the password, and nothing created where sqlx would have taken it for a file name.
    for (url, says) in [
        (
            "mysql://app:hunter2@db.example/app",
            "mysql: is not a database",
        ),
        ("data/app.db", "names no scheme"),
    ] {
        let (code, out) = run_to_exit(dir.path(), &[("DATABASE_URL", url), ("JWT_SECRET", SECRET)]);
        assert_eq!(code, Some(1), "{url}: {out}");
        assert!(
            out.contains("DATABASE_URL must be a sqlite: or postgres: URL"),
            "{url}: {out}"
        );
        assert!(out.contains(says), "{url}: {out}");
        assert!(!out.contains("hunter2"), "{url}: {out}");
    }
    // A PostgreSQL that does not answer: the server stops (after the pool's 10 s), saying so,
    // and never with the password.
    let (code, out) = run_to_exit(
        dir.path(),
        &[
            ("DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:1/app"),
            ("JWT_SECRET", SECRET),
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot open the database"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    let created: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("broken.db"))
        .collect();
    assert!(created.is_empty(), "{created:?}");
}

/// The `exp` of every revocation in the database.
async fn revoked_exps(db: &sqlx::AnyPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT exp FROM revoked_tokens ORDER BY exp")
        .fetch_all(db)
        .await
        .unwrap()
}

/// Writes a revocation of a random token of `username` beside the server, as another instance
/// would.
async fn insert_revocation(db: &sqlx::AnyPool, username: &str, exp: i64, revoked_at: i64) {
    sqlx::query(
        "INSERT INTO revoked_tokens (jti, user_id, exp, revoked_at) \
         SELECT $1, id, $2, $3 FROM users WHERE username = $4",
    )
    .bind(uuid::Uuid::new_v4().as_bytes().to_vec())
    .bind(exp)
    .bind(revoked_at)
    .bind(username)
    .execute(db)
    .await
    .unwrap();
}

#[tokio::test]
async fn expired_revocations_are_purged_on_a_timer_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let quick = [("JWT_TTL", "2s"), ("BLOCKLIST_PURGE_INTERVAL", "1s")];
    let server = start_with(dir.path(), "warn", &quick).await;
    let token = register_and_login(&Client::new(), &server.base, "pat").await;
    assert_eq!(logout(&server.base, &token).await.status(), 200);
    let db = database(dir.path()).await;
    let revoked_exp: i64 = sqlx::query_scalar("SELECT exp FROM revoked_tokens")
        .fetch_one(&db)
        .await
        .unwrap();
    // A revocation that has an hour to go, written beside it: the purge must keep it.
    insert_revocation(&db, "pat", now_unix() + 3600, now_unix()).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let remaining: Vec<i64> = loop {
        let exps = revoked_exps(&db).await;
        if !exps.contains(&revoked_exp) {
            break exps;
        }
        assert!(Instant::now() < deadline, "the timer never purged the row");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // What went had expired; what stays has not.
    assert!(now_unix() > revoked_exp);
    assert_eq!(remaining.len(), 1);
    assert!(remaining[0] > now_unix());
    signal(&server, "-TERM");
    finish(server);

    // Stopped, an already-expired row is added: the next start purges it before it listens.
    insert_revocation(&db, "pat", now_unix() - 10, now_unix() - 100).await;
    let server = start_with(dir.path(), "warn", &[("BLOCKLIST_PURGE_INTERVAL", "1h")]).await;
    let exps = revoked_exps(&db).await;
    assert_eq!(exps, remaining);
    signal(&server, "-TERM");
    finish(server);
}

#[tokio::test]
async fn a_revoke_survives_sigkill_right_after_logout() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "warn").await;
    let token = register_and_login(&Client::new(), &server.base, "kim").await;
    assert_eq!(logout(&server.base, &token).await.status(), 200);
    // No grace: the process dies the instant the answer is in.
    signal(&server, "-KILL");
    let (code, _) = finish(server);
    assert_eq!(code, None, "killed by a signal");

    let server = start(dir.path(), "warn").await;
    let res = me(&server.base, &token).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "token_revoked");
    signal(&server, "-TERM");
    finish(server);
}

/// `server backup PATH` with the server's environment, as an operator runs it.
fn run_backup(dir: &Path, to: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("backup")
        .arg(to)
        .current_dir(dir)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("app.db").display()),
        )
        .env("NO_COLOR", "1")
        .output()
        .expect("server binary")
}

async fn sign_in(base: &str, username: &str) -> reqwest::Response {
    Client::new()
        .post(format!("{base}/api/login"))
        .form(&[("username", username), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
}

/// A backup taken while the server serves (and writes): nobody waits for it, and the copy,
/// restored as the database of a new server, has the accounts and the revocations made before
/// it and nothing made after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_accounts_and_revocations() {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    if on_postgres() {
        eprintln!("skipped: `server backup` copies a SQLite file (PostgreSQL has pg_dump)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "warn").await;
    let revoked = register_and_login(&Client::new(), &server.base, "before").await;
    assert_eq!(logout(&server.base, &revoked).await.status(), 200);
    let res = sign_in(&server.base, "before").await;
    assert_eq!(res.status(), 200);
    let live = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Reads and writes go on all through the backup, and every one is answered.
    let done = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (done, base, live) = (done.clone(), server.base.clone(), live.clone());
        tokio::spawn(async move {
            let mut answered = 0;
            while !done.load(Ordering::Relaxed) {
                assert_eq!(me(&base, &live).await.status(), 200);
                let token =
                    register_and_login(&Client::new(), &base, &format!("during{answered}")).await;
                assert_eq!(logout(&base, &token).await.status(), 200);
                answered += 1;
            }
            answered
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let copy = dir.path().join("backup.db");
    let out = {
        let (dir, copy) = (dir.path().to_owned(), copy.clone());
        tokio::task::spawn_blocking(move || run_backup(&dir, &copy))
            .await
            .unwrap()
    };
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("backup written to"), "{said}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::Relaxed);
    assert!(traffic.await.unwrap() > 0);
    // A backup never overwrites a file.
    let again = run_backup(dir.path(), &copy);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let after = register_and_login(&Client::new(), &server.base, "after").await;
    signal(&server, "-TERM");
    finish(server);

    // Restored: the copy is the database of a server in a new folder.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&copy, restored.path().join("app.db")).unwrap();
    let server = start(restored.path(), "warn").await;
    assert_eq!(sign_in(&server.base, "before").await.status(), 200);
    assert_eq!(me(&server.base, &live).await.status(), 200);
    let res = me(&server.base, &revoked).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "token_revoked");
    // Made after the backup: not in it.
    assert_eq!(sign_in(&server.base, "after").await.status(), 401);
    assert_eq!(me(&server.base, &after).await.status(), 401);
    signal(&server, "-TERM");
    let (code, out) = finish(server);
    assert_eq!(code, Some(0), "{out}");
}

/// `server seed ARGS` with the server's environment, as `make bench` runs it.
async fn run_seed(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
    command
        .arg("seed")
        .args(args)
        .current_dir(dir)
        .env_remove("APP_ENV")
        .env("DATABASE_URL", database_url(dir).await)
        .env("JWT_SECRET", SECRET)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied());
    tokio::task::spawn_blocking(move || command.output().expect("server binary"))
        .await
        .unwrap()
}

/// The JSON lines `server seed` wrote to `path`.
fn seeded(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// What `server seed` writes is the server's own: each access token is accepted as its
/// account's, in the session the line names, and the accounts sign in with `SEED_PASSWORD`;
/// the revocations are unexpired rows of the seeded accounts. A second run beside a running
/// server takes none of the first one's names; the tokens file is never overwritten, and
/// production refuses to seed at all.
#[tokio::test]
async fn seeded_accounts_are_the_servers_own() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.jsonl");
    let password = [("SEED_PASSWORD", PASSWORD)];
    let out = run_seed(
        dir.path(),
        &[
            "--users",
            "3",
            "--revoked",
            "7",
            "--out",
            first.to_str().unwrap(),
        ],
        &password,
    )
    .await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("seeded 3 accounts") && said.contains("7 revoked"),
        "{said}"
    );
    #[cfg(unix)]
    assert_eq!(mode(&first), 0o600);
    let lines = seeded(&first);
    assert_eq!(lines.len(), 3);

    let server = start(dir.path(), "warn").await;
    let second = dir.path().join("second.jsonl");
    let out = run_seed(
        dir.path(),
        &["--users", "2", "--out", second.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = lines.into_iter().chain(seeded(&second)).collect();
    let mut names: Vec<&str> = lines
        .iter()
        .map(|l| l["username"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 5, "{names:?}");
    for line in &lines {
        let token = line["access_token"].as_str().unwrap();
        let res = me(&server.base, token).await;
        assert_eq!(res.status(), 200, "{line}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["user_id"], line["user_id"], "{body}");
        assert_eq!(body["username"], line["username"], "{body}");
        let res = Client::new()
            .get(format!("{}/api/sessions", server.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let sessions: Vec<Value> = res.json().await.unwrap();
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        assert_eq!(sessions[0]["id"], line["session_id"], "{sessions:?}");
        assert_eq!(sessions[0]["current"], true, "{sessions:?}");
    }
    let signed_in = sign_in(&server.base, lines[0]["username"].as_str().unwrap()).await;
    assert_eq!(signed_in.status(), 200);
    // The second run's password is a random one: nobody signs in with ours.
    let refused = sign_in(&server.base, lines[4]["username"].as_str().unwrap()).await;
    assert_eq!(refused.status(), 401);

    let db = database(dir.path()).await;
    let revoked: Vec<(i64, i64)> = sqlx::query_as("SELECT user_id, exp FROM revoked_tokens")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(revoked.len(), 7);
    let first_ids: Vec<i64> = lines[..3]
        .iter()
        .map(|l| l["user_id"].as_i64().unwrap())
        .collect();
    for (user_id, exp) in revoked {
        assert!(first_ids.contains(&user_id), "{user_id}");
        assert!(exp > now_unix() + 3600, "{exp}");
    }

    // Nothing is written when the tokens file exists already, nor in production.
    let users = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let before = users().await;
    let again = run_seed(
        dir.path(),
        &["--users", "2", "--out", first.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    assert_eq!(seeded(&first).len(), 3);
    let third = dir.path().join("third.jsonl");
    let production = [("APP_ENV", "production")];
    let refused = run_seed(
        dir.path(),
        &["--users", "2", "--out", third.to_str().unwrap()],
        &production,
    )
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("APP_ENV=production"));
    assert!(!third.exists());
    assert_eq!(users().await, before);
    signal(&server, "-TERM");
    let (code, out) = finish(server);
    assert_eq!(code, Some(0), "{out}");
}

/// The server binary run by `sh` with umask 000, the loosest there is: a file created with
/// the default mode would be readable and writable by every user on the host.
#[cfg(unix)]
fn with_umask_000() -> Command {
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "umask 000; exec \"$0\" \"$@\"",
        env!("CARGO_BIN_EXE_server"),
    ]);
    command
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o777
}

/// Whatever the umask, what the server writes is its user's alone: the folders it creates
/// (the data folder, the database's folders) 0700, the database and its `-wal` and `-shm` 0600,
/// the development secret and a backup 0600. A database file left readable by others is made
/// owner-only at the next start, with a warning.
#[cfg(unix)]
#[tokio::test]
async fn files_and_folders_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let folders = [dir.path().join("db"), dir.path().join("db").join("nested")];
    let db = folders[1].join("app.db");
    let [wal, shm] = ["-wal", "-shm"].map(|s| folders[1].join(format!("app.db{s}")));
    let url = format!("sqlite://{}", db.display());
    // No JWT_SECRET: the development secret is made in DATA_DIR.
    let server_command = || {
        let mut command = with_umask_000();
        command
            .env_remove("JWT_SECRET")
            .env_remove("APP_ENV")
            .env("DATA_DIR", &secrets)
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "warn");
        command
    };
    let server = spawn_server(server_command(), dir.path()).await;
    // A write: the WAL holds something.
    register_and_login(&Client::new(), &server.base, "private").await;
    for folder in [&secrets, &folders[0], &folders[1]] {
        assert_eq!(
            mode(folder),
            0o700,
            "{}: {:o}",
            folder.display(),
            mode(folder)
        );
    }
    for file in [&secrets.join("jwt_secret"), &db, &wal, &shm] {
        assert_eq!(mode(file), 0o600, "{}: {:o}", file.display(), mode(file));
    }

    let copy = dir.path().join("backup.db");
    let out = with_umask_000()
        .arg("backup")
        .arg(&copy)
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&copy), 0o600, "{:o}", mode(&copy));
    signal(&server, "-TERM");
    finish(server);

    // Loosened behind the server's back (or made by an older version): tightened at start.
    for file in [&db, &wal, &shm].into_iter().filter(|f| f.exists()) {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let server = spawn_server(server_command(), dir.path()).await;
    for file in [&db, &wal, &shm] {
        assert_eq!(mode(file), 0o600, "{}: {:o}", file.display(), mode(file));
    }
    signal(&server, "-TERM");
    let (code, out) = finish(server);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("the database file was readable by others (0644)"),
        "{out}"
    );
}

async fn post_refresh(base: &str, token: &str) -> reqwest::Response {
    Client::new()
        .post(format!("{base}/api/refresh"))
        .form(&[("refresh_token", token)])
        .send()
        .await
        .unwrap()
}

/// A rotation that answered is durable: killed with no grace right after, the server comes back
/// knowing the new refresh token, and the one it replaced is reuse (the session ends).
#[tokio::test]
async fn a_rotation_survives_sigkill_right_after_it_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "warn").await;
    register_and_login(&Client::new(), &server.base, "rot").await;
    let res = sign_in(&server.base, "rot").await;
    let first: Value = res.json().await.unwrap();
    let old = first["refresh_token"].as_str().unwrap().to_owned();
    let res = post_refresh(&server.base, &old).await;
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    signal(&server, "-KILL");
    let (code, _) = finish(server);
    assert_eq!(code, None, "killed by a signal");

    let server = start(dir.path(), "warn").await;
    let new = rotated["refresh_token"].as_str().unwrap();
    let res = post_refresh(&server.base, new).await;
    assert_eq!(
        res.status(),
        200,
        "the rotated token is the current one after the restart"
    );
    let current: Value = res.json().await.unwrap();
    // Two generations back: reuse, whatever the time.
    let res = post_refresh(&server.base, &old).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "token_revoked");
    let access = current["access_token"].as_str().unwrap();
    assert_eq!(me(&server.base, access).await.status(), 401);
    signal(&server, "-TERM");
    finish(server);
}

/// Sessions ended from the sessions page (no token revoked, only the sessions) stay ended after
/// a `kill -9` right after the answer.
#[tokio::test]
async fn ended_sessions_stay_ended_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "warn").await;
    register_and_login(&Client::new(), &server.base, "ends").await;
    let mut access = Vec::new();
    for _ in 0..3 {
        let body: Value = sign_in(&server.base, "ends").await.json().await.unwrap();
        access.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let res = Client::new()
        .post(format!("{}/api/sessions/revoke-others", server.base))
        .bearer_auth(&access[0])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    signal(&server, "-KILL");
    finish(server);

    let server = start(dir.path(), "warn").await;
    assert_eq!(me(&server.base, &access[0]).await.status(), 200);
    for token in &access[1..] {
        let res = me(&server.base, token).await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "token_revoked");
    }
    signal(&server, "-TERM");
    finish(server);
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    // Two dozen sign-ins of one account at once: the throttle would refuse all but five.
    let server = start_with(dir.path(), "info", &[("LOGIN_THROTTLE", "off")]).await;
    let base = server.base.clone();
    let client = Client::new();
    client
        .post(format!("{base}/api/register"))
        .form(&[("username", "lee"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    // Two dozen logins queue behind argon2 (one hash per core at a time, tens of ms each):
    // most are still waiting or running when the signal arrives.
    let logins: Vec<_> = (0..24)
        .map(|_| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                client
                    .post(format!("{base}/api/login"))
                    .form(&[("username", "lee"), ("password", PASSWORD)])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(&server, "-TERM");
    for login in logins {
        assert_eq!(login.await.unwrap().expect("answered"), 200);
    }
    let (code, out) = finish(server);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("shutting down"), "{out}");
    // And it is gone: new connections are refused.
    assert!(client.get(format!("{base}/health")).send().await.is_err());
}

#[tokio::test]
async fn logs_never_contain_passwords_tokens_or_cookies() {
    let dir = tempfile::tempdir().unwrap();
    // As verbose as it gets for our code, the HTTP layer and the database.
    let server = start(dir.path(), "debug").await;
    let base = server.base.clone();
    let browser = Client::builder().cookie_store(true).build().unwrap();
    let origin = [("origin", base.clone())];
    let send = |req: reqwest::RequestBuilder| {
        let req = origin.iter().fold(req, |r, (k, v)| r.header(*k, v));
        async move { req.send().await.unwrap() }
    };
    send(
        browser
            .post(format!("{base}/api/register"))
            .form(&[("username", "moe"), ("password", PASSWORD)]),
    )
    .await;
    send(
        browser
            .post(format!("{base}/api/login"))
            .form(&[("username", "moe"), ("password", "wrong password here")]),
    )
    .await;
    let res = send(
        browser
            .post(format!("{base}/api/login"))
            .form(&[("username", "moe"), ("password", PASSWORD)]),
    )
    .await;
    let cookie = res
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let token: Value = res.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    send(browser.get(format!("{base}/profile"))).await;
    send(browser.get(format!("{base}/api/me"))).await;
    send(browser.post(format!("{base}/api/logout"))).await;
    me(&base, &token).await;
    signal(&server, "-TERM");
    let (_, out) = finish(server);

    assert!(
        out.contains("login succeeded"),
        "the log was captured: {out}"
    );
    let signature = token.rsplit('.').next().unwrap();
    for secret in [PASSWORD, "wrong password here", &token, signature, SECRET] {
        assert!(
            !out.contains(secret),
            "{secret:?} appears in the log:\n{out}"
        );
    }
    let cookie_value = cookie.split(';').next().unwrap();
    assert!(!out.contains(cookie_value), "the cookie appears in the log");
    // On PostgreSQL, the database's password (postgres://USER:PASSWORD@…) neither.
    let url = database_url(dir.path()).await;
    if let Some((_, password)) = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user_info, _)| user_info.split_once(':'))
    {
        assert!(
            !out.contains(password),
            "the database password appears in the log"
        );
    }
}

/// (threads other than sqlx's SQLite connection workers, resident KiB) of a process.
fn threads_and_rss(pid: u32) -> (u64, u64) {
    // The kernel keeps 15 bytes of a thread's name.
    let threads = thread_names(pid)
        .filter(|name| !name.starts_with("sqlx-sqlite-wor"))
        .count() as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    (threads, field("VmRSS:"))
}

/// The names of the process's threads.
fn thread_names(pid: u32) -> impl Iterator<Item = String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            name.trim_end().to_owned()
        })
}

/// Threads named `argon2-hasher` in the process.
fn hashing_threads(pid: u32) -> u64 {
    thread_names(pid)
        .filter(|name| name == "argon2-hasher")
        .count() as u64
}

/// The median time of 21 `/api/me` requests.
async fn me_median(base: &str, token: &str) -> Duration {
    let client = Client::new();
    let mut times = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let res = client
            .get(format!("{base}/api/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// Hundreds of sign-ins, each abandoned by its client about 30 ms in. A hash that has started
/// keeps its permit until it ends, and abandoned requests still waiting never start one: the
/// server's threads and memory stay bounded, and `/api/me` is as quick right after as before.
/// (When the permit was freed with the request, every hand-over started one more argon2 run
/// on a new blocking thread while the abandoned ones ran on.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_logins_do_not_pile_up_hashes() {
    let _alone = crate::helpers::cpu_heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "error").await;
    let token = register_and_login(&Client::new(), &server.base, "steady").await;
    let pid = server.child.id();
    let usual = me_median(&server.base, &token).await;
    let (threads_before, rss_before) = threads_and_rss(pid);

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut most = (0, 0);
            let mut hashing = std::collections::BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (t, r) = threads_and_rss(pid);
                most = (most.0.max(t), most.1.max(r));
                hashing.insert(hashing_threads(pid));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (most, hashing)
        })
    };
    // 16 client addresses × 20 attempts, 4 names each: inside every throttle limit, so each
    // attempt is one that would be hashed.
    let clients: Vec<_> = (0..16u8)
        .map(|a| {
            let base = server.base.clone();
            tokio::spawn(async move {
                let client = Client::builder()
                    .local_address(std::net::IpAddr::from([127, 0, 0, 10 + a]))
                    .timeout(Duration::from_millis(30))
                    .build()
                    .unwrap();
                for i in 0..20 {
                    let name = format!("gone{a}x{}", i % 4);
                    let _ = client
                        .post(format!("{base}/api/login"))
                        .form(&[("username", name.as_str()), ("password", "wrong password")])
                        .send()
                        .await;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let right_after = me_median(&server.base, &token).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let ((threads_most, rss_most), hashing) = sampler.await.unwrap();

    eprintln!(
        "threads {threads_before} → {threads_most}, resident {rss_before} → {rss_most} KiB, \
         /api/me {usual:?} → {right_after:?}"
    );
    // The server hashes on one thread per core of its own, started with it, never more or fewer.
    // A few more threads named like the runtime's workers (tokio's blocking pool, which the
    // server's own code no longer uses) were seen to come and go while the database pool grew
    // to its 8 connections; anything past that bound would be a pile-up. Argon2 needs 19 MiB a
    // hash.
    let hashers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert_eq!(
        hashing.into_iter().collect::<Vec<_>>(),
        [hashers],
        "hashing threads seen"
    );
    assert!(
        threads_most <= threads_before + u64::from(app::store::MAX_CONNECTIONS),
        "threads {threads_before} → {threads_most}"
    );
    assert!(
        rss_most <= rss_before + (100 + 20 * hashers) * 1024,
        "resident {rss_before} KiB → {rss_most} KiB"
    );
    assert!(
        right_after <= (usual * 5).max(Duration::from_millis(50)),
        "/api/me took {right_after:?} right after, {usual:?} before"
    );
    signal(&server, "-TERM");
    let (code, out) = finish(server);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

/// Clients that hang up while signed-in pages render. Leptos resolves a page's `<Transition>`s in
/// tasks of their own, which run on after the request (and its reactive owner) is gone: a view
/// closure there must neither read a disposed value nor look up a context that went with it.
/// Nothing the server prints may be a panic. This is the whole server under that load, but
/// whether a run lands a hang-up inside a running closure is luck: the cause is pinned by a test
/// that fails every time, `signed_in::tests::what_a_page_reads_outlives_its_request` (app).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_abandoned_mid_render_never_panic() {
    let _alone = crate::helpers::cpu_heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), "warn", &[("RUST_BACKTRACE", "1")]).await;
    let token = register_and_login(&Client::new(), &server.base, "hangup").await;
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let requests: Vec<_> = (0..48u64)
            .map(|i| {
                let base = server.base.clone();
                let cookie = format!("auth_token={token}");
                tokio::spawn(async move {
                    let client = Client::builder()
                        .timeout(Duration::from_millis(1 + (i * 7 + round) % 25))
                        .build()
                        .unwrap();
                    let path = ["/", "/profile", "/login"][(i % 3) as usize];
                    let _ = client
                        .get(format!("{base}{path}"))
                        .header("cookie", cookie)
                        .send()
                        .await;
                })
            })
            .collect();
        for r in requests {
            r.await.unwrap();
        }
    }
    // Still serving, and no panic was printed.
    assert_eq!(me(&server.base, &token).await.status(), 200);
    signal(&server, "-TERM");
    let (code, out) = finish(server);
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let panics: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("panicked"))
        .collect();
    if let Some(&first) = panics.first() {
        let context = lines[first..lines.len().min(first + 80)].join("\n");
        panic!("{} panics, the first:\n{context}", panics.len());
    }
}

/// The token of the one link in a received mail's text.
fn link_token(mail: &identity::mail::sink::Received) -> String {
    let text = mail.body("text/plain").unwrap();
    let at = text.find("token=ml1.").expect("a link") + "token=".len();
    text[at..at + 47].to_owned()
}

/// A reset asked for while the mail server is down, and the server killed (`kill -9`) before
/// it could send: nothing is lost. Once both are back, the mail arrives and its link works;
/// and not a link, a token nor a password reached the log of either run (at debug level, over
/// STARTTLS).
#[tokio::test]
async fn mail_survives_sigkill_and_no_link_reaches_the_log() {
    use identity::mail::sink::{SinkOptions, SinkTls, SmtpSink};
    let dir = tempfile::tempdir().unwrap();
    let mut sink = SmtpSink::start_with(SinkOptions {
        tls: SinkTls::StartTls,
        ..Default::default()
    });
    let ca = sink.ca_file().display().to_string();
    let url = sink.url();
    let env = [
        ("SMTP_URL", url.as_str()),
        ("SMTP_CA_FILE", ca.as_str()),
        ("MAIL_FROM", "authapp <noreply@authapp.test>"),
    ];
    let server = start_with(dir.path(), "debug", &env).await;
    let base = server.base.clone();
    let client = Client::new();
    let res = client
        .post(format!("{base}/api/register"))
        .form(&[
            ("username", "mia"),
            ("password", PASSWORD),
            ("email", "mia@example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let confirm = link_token(&sink.wait_for(1, Duration::from_secs(20)).await[0]);
    let res = client
        .post(format!("{base}/api/email/verify"))
        .form(&[("token", confirm.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The mail server goes away; the reset is committed; the process dies at once.
    sink.stop();
    let res = client
        .post(format!("{base}/api/password/forgot"))
        .form(&[("login", "mia@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The look-up runs after the answer: give it its moment to commit, and the sender its
    // first (failed) try, then kill. (Killed in the middle of a try, the mail would wait for
    // its claim to lapse: minutes, for this test.)
    let db = database(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queued: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'reset_password' AND attempts >= 1 \
             AND claimed_until IS NULL AND sent_at IS NULL",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if queued == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the reset mail was never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&server, "-KILL");
    let (_, first_log) = finish(server);

    sink.restart();
    let server = start_with(dir.path(), "debug", &env).await;
    let mails = sink.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 2, "the reset mail arrived once");
    let reset = link_token(&mails[1]);
    let res = client
        .post(format!("{}/api/password/reset", server.base))
        .form(&[
            ("token", reset.as_str()),
            ("password", "a brand new password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    signal(&server, "-TERM");
    let (_, second_log) = finish(server);

    let log = format!("{first_log}\n{second_log}");
    assert!(
        log.contains("password reset requested"),
        "the log was captured: {log}"
    );
    for secret in [
        confirm.as_str(),
        &confirm[4..],
        reset.as_str(),
        &reset[4..],
        PASSWORD,
        "a brand new password",
        access.as_str(),
    ] {
        assert!(
            !log.contains(secret),
            "{secret:?} appears in the log:\n{log}"
        );
    }
}

/// `server admin remove-factors USER` with the server's environment, as the person on call
/// runs it while the server runs.
async fn run_admin(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("admin")
        .args(args)
        .current_dir(dir)
        .env("DATABASE_URL", database_url(dir).await)
        .env("JWT_SECRET", SECRET)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .output()
        .expect("server binary")
}

/// A person who lost every second factor: the operator removes them while the server runs.
/// The password alone signs in again, the factor's secret and codes are gone, the action is
/// logged (with no secret), and a mistyped name or an account without a factor is an error.
#[tokio::test]
async fn the_operator_removes_a_locked_out_persons_second_factors() {
    use app::auth::factors::totp::{TotpSecret, STEP};
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "info").await;
    let token = register_and_login(&Client::new(), &server.base, "lockedout").await;
    let client = Client::new();
    let begin: Value = client
        .post(format!("{}/api/totp/begin", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = TotpSecret::from_base32(begin["secret"].as_str().unwrap()).unwrap();
    let confirmed = client
        .post(format!("{}/api/totp/confirm", server.base))
        .bearer_auth(&token)
        .form(&[("code", secret.code_at(now_unix() / STEP).unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    assert_eq!(sign_in(&server.base, "lockedout").await.status(), 403);

    let nobody = run_admin(dir.path(), &["remove-factors", "nobody"]).await;
    assert_eq!(nobody.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no account is named"));
    let usage = run_admin(dir.path(), &["remove-factor"]).await;
    assert_eq!(usage.status.code(), Some(2));

    let done = run_admin(dir.path(), &["remove-factors", "lockedout"]).await;
    let out = String::from_utf8_lossy(&done.stdout);
    let log = String::from_utf8_lossy(&done.stderr).into_owned() + &out;
    assert_eq!(done.status.code(), Some(0), "{log}");
    assert!(
        out.contains("removed the second factors of lockedout"),
        "{out}"
    );
    assert!(
        log.contains("admin: the account's second factors were removed"),
        "{log}"
    );
    assert!(
        !log.contains(&secret.base32()),
        "the secret reached the output"
    );
    assert!(!log.contains(SECRET));
    // The password alone signs in again; the session from before is over (refused at once by
    // the instances on PostgreSQL, which follow the revocations).
    assert_eq!(sign_in(&server.base, "lockedout").await.status(), 200);
    if on_postgres() {
        assert_eq!(me(&server.base, &token).await.status(), 401);
    }
    let again = run_admin(dir.path(), &["remove-factors", "#1"]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no second factor"));
    signal(&server, "-TERM");
    let (_, log) = finish(server);
    assert!(
        !log.contains(&secret.base32()),
        "the secret reached the server's log"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// `server admin ARGS` (with `--json`): its exit code and the one JSON object it printed.
async fn admin_json(dir: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let mut args = args.to_vec();
    args.push("--json");
    let out = run_admin(dir, &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

/// Polls `/api/me` with `token` until it is refused (the running server learns of an
/// operator's command from the database: at once on PostgreSQL, within a second on SQLite).
async fn refused_soon(base: &str, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = me(base, token).await;
        if res.status() == 401 {
            return res.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the token was still accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The person on call, against a running server: finds an account, disables it (its tokens
/// refused at once, its sign-in refused in words, every other account untouched), enables it
/// again, ends its sessions, deletes it; each change an event of the account; a bad command
/// line is exit 2, an unknown account exit 1, with `--json` too.
#[tokio::test]
async fn the_operator_disables_enables_ends_and_deletes_an_account() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "info").await;
    let base = server.base.clone();
    let client = Client::new();
    let token = register_and_login(&client, &base, "mallory").await;
    let bystander = register_and_login(&client, &base, "trent").await;

    let (code, found) = admin_json(dir.path(), &["find", "MALLORY"]).await;
    assert_eq!(code, Some(0), "{found}");
    let account = &found["accounts"][0];
    assert_eq!(account["username"], "mallory");
    assert!(account["disabled_at"].is_null());
    let id = account["id"].as_i64().unwrap();
    let by_id = run_admin(dir.path(), &["find", &format!("#{id}")]).await;
    assert!(String::from_utf8_lossy(&by_id.stdout).contains("mallory"));

    let (code, nobody) = admin_json(dir.path(), &["disable", "nobody"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(nobody["error"], "no_such_user");
    let words = run_admin(dir.path(), &["disable", "nobody"]).await;
    assert!(String::from_utf8_lossy(&words.stderr).contains("no account is named \"nobody\""));
    let (code, usage) = admin_json(dir.path(), &["disable"]).await;
    assert_eq!((code, usage["error"].as_str()), (Some(2), Some("usage")));
    assert!(usage["description"]
        .as_str()
        .unwrap()
        .contains("needs a USER"));
    for bad in [
        &["disable"][..],
        &["delete", "mallory"],
        &["show", "mallory", "--events", "0"],
        &["frobnicate", "mallory"],
        &["find", "mallory", "--frob"],
    ] {
        let out = run_admin(dir.path(), bad).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }

    // An address never confirmed names no account to act on: the operator checks, then uses
    // the id.
    let registered = client
        .post(format!("{base}/api/register"))
        .form(&[
            ("username", "una"),
            ("password", PASSWORD),
            ("email", "una@example.org"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let (code, unconfirmed) = admin_json(dir.path(), &["disable", "una@example.org"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(unconfirmed["error"], "unconfirmed_address", "{unconfirmed}");
    let (code, listed) = admin_json(dir.path(), &["find", "una@example.org"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(listed["accounts"][0]["username"], "una");
    // Run where the database is not (a relative DATABASE_URL from another folder): refused,
    // rather than a new, empty database where nobody is found.
    let elsewhere = tempfile::tempdir().unwrap();
    let lost = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["admin", "show", "mallory"])
        .current_dir(elsewhere.path())
        .env("DATABASE_URL", "sqlite://data/app.db")
        .env("JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(lost.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&lost.stderr).contains("there is no database at"));
    assert!(!elsewhere.path().join("data").exists());

    let (code, disabled) = admin_json(dir.path(), &["disable", "mallory"]).await;
    assert_eq!(code, Some(0), "{disabled}");
    assert_eq!(disabled["sessions_ended"], 1);
    let refused = refused_soon(&base, &token).await;
    assert_eq!(refused["error"], "token_revoked");
    assert_eq!(me(&base, &bystander).await.status(), 200);
    let res = sign_in(&base, "mallory").await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "account_disabled");
    assert!(body["description"].as_str().unwrap().contains("disabled"));
    // A wrong password on a disabled account says nothing of it.
    let wrong = client
        .post(format!("{base}/api/login"))
        .form(&[
            ("username", "mallory"),
            ("password", "not the password at all"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let (code, again) = admin_json(dir.path(), &["disable", "mallory"]).await;
    assert_eq!(
        (code, again["error"].as_str()),
        (Some(1), Some("nothing_to_do"))
    );

    let (code, shown) = admin_json(dir.path(), &["show", "mallory"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(shown["sessions"].as_array().unwrap().len(), 0);
    let kinds: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "account_disabled").count(),
        1,
        "{kinds:?}"
    );
    let words = run_admin(dir.path(), &["show", "mallory"]).await;
    let words = String::from_utf8_lossy(&words.stdout);
    assert!(words.contains("DISABLED since"), "{words}");
    assert!(words.contains("account_disabled"), "{words}");

    let (code, enabled) = admin_json(dir.path(), &["enable", "mallory"]).await;
    assert_eq!(code, Some(0), "{enabled}");
    let res = sign_in(&base, "mallory").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&base, &token).await.status(), 200);

    let (code, ended) = admin_json(dir.path(), &["end-sessions", "mallory"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(ended["sessions_ended"], 1);
    refused_soon(&base, &token).await;
    // With none live, the command is an event of the account all the same.
    let (code, none) = admin_json(dir.path(), &["end-sessions", "mallory"]).await;
    assert_eq!((code, none["sessions_ended"].as_i64()), (Some(0), Some(0)));
    let (_, shown) = admin_json(dir.path(), &["show", "mallory"]).await;
    let by_operator = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "sessions_ended_by_operator")
        .count();
    assert_eq!(by_operator, 2, "{shown}");
    let res = sign_in(&base, "mallory").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&base, &token).await.status(), 200);

    let (code, deleted) = admin_json(dir.path(), &["delete", "mallory", "--yes"]).await;
    assert_eq!(code, Some(0), "{deleted}");
    // Its sessions are gone with it (on SQLite too, where the rows are deleted at once).
    refused_soon(&base, &token).await;
    assert_eq!(sign_in(&base, "mallory").await.status(), 401);
    let (code, _) = admin_json(dir.path(), &["find", "mallory"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(me(&base, &bystander).await.status(), 200);
    signal(&server, "-TERM");
    let (_, log) = finish(server);
    assert!(!log.contains("panicked"), "{log}");
}

/// A free port on loopback for a listener the child opens itself.
fn free_port_addr() -> String {
    free_addr().to_string()
}

/// The exposition on METRICS_ADDR passes Prometheus's own checker, a sign-in moves its
/// counter, the requests are counted by route and status; the public port serves no metrics.
#[tokio::test]
async fn metrics_pass_promtool_and_a_sign_in_moves_its_counter() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = free_port_addr();
    let server = start_with(dir.path(), "info", &[("METRICS_ADDR", &metrics_addr)]).await;
    let base = server.base.clone();
    let client = Client::new();
    let scrape = || async {
        let res = client
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        res.text().await.unwrap()
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    let ok = "authapp_sign_ins_total{outcome=\"ok\"}";
    let wrong = "authapp_sign_ins_total{outcome=\"wrong_password\"}";
    let before = scrape().await;
    let token = register_and_login(&client, &base, "counted").await;
    let _ = client
        .post(format!("{base}/api/login"))
        .form(&[
            ("username", "counted"),
            ("password", "not the password at all"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(me(&base, &token).await.status(), 200);
    let after = scrape().await;
    assert_eq!(value(&after, ok) - value(&before, ok), 1.0, "{after}");
    assert_eq!(value(&after, wrong) - value(&before, wrong), 1.0, "{after}");
    for series in [
        "authapp_http_request_duration_seconds_count{route=\"/api/me\",method=\"GET\",status=\"200\"}",
        "authapp_http_request_duration_seconds_count{route=\"/api/login\",method=\"POST\",status=\"401\"}",
        "authapp_sessions_started_total{method=\"password\"}",
        "authapp_hashing_queue_depth",
        "authapp_db_connections{state=\"idle\"}",
        "authapp_outbox_depth",
        "authapp_database_up",
    ] {
        assert!(
            after.lines().any(|l| l.starts_with(series)),
            "{series} is missing:\n{after}"
        );
    }
    assert_eq!(value(&after, "authapp_database_up"), 1.0);
    // Prometheus's own checker reads it: format, names, help and types.
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; `make promtool` installs it)");
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(after.as_bytes())
            .unwrap();
    }
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{after}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // Never on the public port.
    let public = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    signal(&server, "-TERM");
    let (_, log) = finish(server);
    assert!(!log.contains("panicked"), "{log}");
}

/// LOG_FORMAT=json: every line one JSON object, and the same never-log rules as the text.
#[tokio::test]
async fn json_logs_are_one_object_a_line_and_never_hold_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), "debug", &[("LOG_FORMAT", "json")]).await;
    let base = server.base.clone();
    let client = Client::new();
    let token = register_and_login(&client, &base, "jason").await;
    let _ = client
        .post(format!("{base}/api/login"))
        .form(&[("username", "jason"), ("password", "wrong password here")])
        .send()
        .await
        .unwrap();
    assert_eq!(me(&base, &token).await.status(), 200);
    assert_eq!(logout(&base, &token).await.status(), 200);
    signal(&server, "-TERM");
    let (_, out) = finish(server);
    let mut lines = 0;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        assert!(value.is_object() && value.get("level").is_some(), "{line}");
        lines += 1;
    }
    assert!(out.contains("login succeeded"), "{out}");
    assert!(lines > 5, "{out}");
    let signature = token.rsplit('.').next().unwrap();
    for secret in [PASSWORD, "wrong password here", &token, signature, SECRET] {
        assert!(
            !out.contains(secret),
            "{secret:?} appears in the log:\n{out}"
        );
    }
    // A bad format is refused at start, in words.
    let (code, said) = run_to_exit(dir.path(), &[("LOG_FORMAT", "yaml")]);
    assert_eq!(code, Some(1));
    assert!(said.contains("LOG_FORMAT"), "{said}");
}
