//! One set of helpers: the real router on a free loopback port with a database of its own,
//! clients, and the small tools several test modules share.
//!
//! The suite runs on either database. By default each test's data is a SQLite file in a
//! temporary folder; with `AUTHAPP_TEST_DB=postgres` (as `make test`'s second pass sets it) it
//! is a fresh database in the throwaway cluster that `DATABASE_URL_PG` names
//! (`scripts/pg-tmp.sh run`), and its URL is kept in the folder, so that a test restarting on
//! the same folder finds the same data.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use leptos::config::LeptosOptions;
use reqwest::{header, redirect::Policy, Client, Response};
use serde_json::Value;
use server::{build_state, router, serve, Config};
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};

/// Taken by the tests that load the CPU hard or depend on timing, so that they do not run at
/// the same time as each other (the other tests still run beside them).
pub async fn cpu_heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// Now, in unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// URL-safe base64 without padding, as in a JWT.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Registers `username` with [`PASSWORD`] at `base`, signs in, and returns the access token.
pub async fn register_and_login(client: &Client, base: &str, username: &str) -> String {
    let form = [("username", username), ("password", PASSWORD)];
    let res = client
        .post(format!("{base}/api/register"))
        .form(&form)
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 200, "register {username}");
    let res = client
        .post(format!("{base}/api/login"))
        .form(&form)
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 200, "login {username}");
    let body: Value = res.json().await.expect("json");
    body["access_token"].as_str().expect("token").to_string()
}

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const PASSWORD: &str = "correct horse battery staple";

/// How many cells a limiter refilling one per `period` has got back since `started`, at most.
pub fn refills_since(started: std::time::Instant, period: Duration) -> u32 {
    (started.elapsed().as_secs_f64() / period.as_secs_f64()).ceil() as u32
}

/// Whether this pass of the suite runs on PostgreSQL (`AUTHAPP_TEST_DB=postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("AUTHAPP_TEST_DB").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("AUTHAPP_TEST_DB={other}: give sqlite or postgres"),
    }
}

/// The `DATABASE_URL` of the test data kept in `dir`: a SQLite file in it, or on PostgreSQL
/// ([`on_postgres`]) a fresh database, made at the first call and named in the folder's
/// `database_url` file for the later ones.
pub async fn database_url(dir: &std::path::Path) -> String {
    if !on_postgres() {
        return format!("sqlite://{}", dir.join("app.db").display());
    }
    let kept = dir.join("database_url");
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return url;
    }
    let url = fresh_database()
        .await
        .expect("AUTHAPP_TEST_DB=postgres needs DATABASE_URL_PG: run under scripts/pg-tmp.sh");
    std::fs::write(&kept, &url).expect("keep the database URL");
    url
}

/// The database of a test server in `dir`, opened beside it (either kind).
pub async fn database(dir: &std::path::Path) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&database_url(dir).await)
        .await
        .unwrap()
}

/// A fresh, empty database in the test cluster, and its URL; `None` when there is no cluster
/// (`DATABASE_URL_PG` unset), which fails the test when `AUTHAPP_REQUIRE_PG` is set.
pub async fn fresh_database() -> Option<String> {
    use sqlx::Connection;
    let Ok(admin) = std::env::var("DATABASE_URL_PG") else {
        assert!(
            std::env::var_os("AUTHAPP_REQUIRE_PG").is_none(),
            "AUTHAPP_REQUIRE_PG is set but DATABASE_URL_PG is not: run under scripts/pg-tmp.sh"
        );
        eprintln!("skipped: no PostgreSQL (DATABASE_URL_PG is not set)");
        return None;
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    /// The folder holding the database (or its URL): pass it to [`spawn_app_in`] to "restart"
    /// on the same data.
    pub dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_in(Arc::new(tempfile::tempdir().expect("tempdir"))).await
}

pub async fn spawn_app_in(dir: Arc<TempDir>) -> TestApp {
    spawn_app_in_with(dir, |_| {}).await
}

/// [`spawn_app`] with the configuration changed by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_in_with(Arc::new(tempfile::tempdir().expect("tempdir")), tweak).await
}

/// [`spawn_app_in`] with the configuration changed by `tweak`.
async fn spawn_app_in_with(dir: Arc<TempDir>, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config {
        database_url: database_url(dir.path()).await,
        jwt_secret: SECRET.as_bytes().to_vec(),
        lifetimes: Default::default(),
        production: false,
        secure_cookie: false,
        purge_interval: Duration::from_secs(600),
        resync_interval: Duration::from_secs(1),
        throttle: true,
        cache_entries: 1000,
        trusted_proxies: Default::default(),
        mail: Default::default(),
        factor_key: SECRET.as_bytes().to_vec(),
        reauth_window: Duration::from_secs(600),
        metrics_addr: None,
        audit_retention: Duration::from_secs(90 * 86_400),
    };
    tweak(&mut config);
    let options = LeptosOptions::builder().output_name("authapp").build();
    let state = build_state(&config, options).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        serve(listener, router(state), async {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
    });
    TestApp {
        addr,
        base: format!("http://{addr}"),
        dir,
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A browser-like client: keeps cookies, sends our Origin, does not follow redirects.
    pub fn browser(&self) -> Client {
        self.browser_builder().build().expect("client")
    }

    /// [`browser`](Self::browser) whose connections come from `ip` (see [`api_from`](Self::api_from)).
    pub fn browser_from(&self, ip: [u8; 4]) -> Client {
        self.browser_builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("client")
    }

    fn browser_builder(&self) -> reqwest::ClientBuilder {
        let mut headers = header::HeaderMap::new();
        headers.insert(header::ORIGIN, self.base.parse().expect("origin"));
        Client::builder()
            .cookie_store(true)
            .default_headers(headers)
            .redirect(Policy::none())
    }

    /// A script-like client: no cookies, no Origin.
    pub fn api(&self) -> Client {
        Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("client")
    }

    /// A script-like client whose connections come from `ip`, one of 127.0.0.0/8 (all of it
    /// is loopback on Linux): another client address as far as the server can tell.
    pub fn api_from(&self, ip: [u8; 4]) -> Client {
        Client::builder()
            .redirect(Policy::none())
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("client")
    }

    pub async fn register(&self, client: &Client, username: &str, password: &str) -> Response {
        client
            .post(self.url("/api/register"))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .expect("register")
    }

    pub async fn login(&self, client: &Client, username: &str, password: &str) -> Response {
        client
            .post(self.url("/api/login"))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .expect("login")
    }

    /// The HTML of a page as `client` gets it.
    pub async fn page_html(&self, client: &Client, path: &str) -> String {
        let res = client.get(self.url(path)).send().await.expect("page");
        res.text().await.expect("html")
    }

    /// Registers `username` and returns a fresh access token for it.
    pub async fn token_for(&self, username: &str) -> String {
        register_and_login(&self.api(), &self.base, username).await
    }

    pub async fn me_bearer(&self, token: &str) -> Response {
        self.api()
            .get(self.url("/api/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("me")
    }

    pub async fn logout_bearer(&self, token: &str) -> Response {
        self.api()
            .post(self.url("/api/logout"))
            .bearer_auth(token)
            .send()
            .await
            .expect("logout")
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

/// Asserts a 401 with the given `error` code, a description and a Bearer challenge.
pub async fn assert_rejected(res: Response, code: &str) {
    assert_eq!(res.status(), 401, "expected 401 {code}");
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .expect("WWW-Authenticate")
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    if code != "missing_token" {
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
    }
    let body: Value = res.json().await.expect("json body");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["description"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

/// The `Set-Cookie` values of an answer.
pub fn set_cookies(res: &Response) -> Vec<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii cookie").to_owned())
        .collect()
}

/// The caller's live sessions, as `GET /api/sessions` lists them.
pub async fn sessions_of(app: &TestApp, access: &str) -> Vec<Value> {
    let res = app
        .api()
        .get(app.url("/api/sessions"))
        .bearer_auth(access)
        .send()
        .await
        .expect("sessions");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

/// A signed-in API client's tokens.
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

pub async fn tokens(res: Response) -> Tokens {
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    Tokens {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

pub async fn sign_in(app: &TestApp, username: &str) -> Tokens {
    tokens(app.login(&app.api(), username, PASSWORD).await).await
}

pub async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.api()
        .post(app.url("/api/refresh"))
        .form(&[("refresh_token", refresh_token)])
        .send()
        .await
        .unwrap()
}

/// A browser (cookie jar, our Origin) signed in as `username`.
pub async fn browser_for(app: &TestApp, username: &str) -> Client {
    let browser = app.browser();
    assert_eq!(app.login(&browser, username, PASSWORD).await.status(), 200);
    browser
}

pub async fn error_of(res: Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Every way in with this access token is refused as revoked: the API, a server function and a
/// protected page.
pub async fn refused_everywhere(app: &TestApp, access: &str) {
    let me = app.me_bearer(access).await;
    assert_eq!(error_of(me).await, (401, "token_revoked".into()), "/api/me");
    let whoami = app
        .api()
        .get(app.url("/api/whoami"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(whoami).await,
        (401, "token_revoked".into()),
        "/api/whoami"
    );
    let page = app
        .api()
        .get(app.url("/profile"))
        .header(header::COOKIE, format!("auth_token={access}"))
        .send()
        .await
        .unwrap();
    assert!(page.status().is_redirection(), "/profile {}", page.status());
    assert_eq!(
        page.headers()[header::LOCATION],
        "/login?next=%2Fprofile&reason=token_revoked"
    );
}

/// A cookie client's every way in is refused: its page sends it to sign in with the reason, and
/// its server-function call answers `token_revoked` or, once its cookies are gone, nobody.
pub async fn browser_refused(app: &TestApp, browser: &Client) {
    let page = browser.get(app.url("/profile")).send().await.unwrap();
    assert!(page.status().is_redirection(), "/profile {}", page.status());
    let to = page.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        to.starts_with("/login?next=%2Fprofile&reason=token_"),
        "{to}"
    );
    let whoami = browser.get(app.url("/api/whoami")).send().await.unwrap();
    let status = whoami.status();
    let body = whoami.text().await.unwrap();
    assert!(
        (status == 200 && body == "null") || status == 401,
        "{status} {body}"
    );
}
