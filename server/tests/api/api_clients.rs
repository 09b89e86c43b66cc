//! The API as its clients use it: JSON or form bodies with the same answers, 415 for anything
//! else, and an OpenAPI document that lists exactly the routes there are.

use std::collections::BTreeSet;

use crate::helpers::{sessions_of, set_cookies, spawn_app, spawn_app_with, TestApp, PASSWORD};
use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post_json(
    client: &Client,
    app: &TestApp,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let res = client.post(app.url(path)).json(body).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post_form(
    client: &Client,
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let res = client.post(app.url(path)).form(form).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut req = app.api().post(app.url(path)).body(body.to_vec());
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
    (status, body)
}

/// The user's whole story in JSON: sign up, sign in, refresh, sessions, password, sign out,
/// delete. Each answer is the one the same request as a form gets.
#[tokio::test]
async fn every_endpoint_takes_json() {
    let app = spawn_app().await;
    let api = app.api();

    let (status, body) = post_json(
        &api,
        &app,
        "/api/register",
        &json!({"username": "jay", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "jay");

    let (status, body) = post_json(
        &api,
        &app,
        "/api/login",
        &json!({"username": "jay", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_string();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(app.me_bearer(&access).await.status(), 200);

    // `null` is a field left out.
    let (status, body) = post_json(
        &api,
        &app,
        "/api/refresh",
        &json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_string();
    let (status, body) =
        post_json(&api, &app, "/api/refresh", &json!({"refresh_token": null})).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("missing_token"))
    );

    // A second session, ended by id in JSON.
    let (_, other) = post_json(
        &api,
        &app,
        "/api/login",
        &json!({"username": "jay", "password": PASSWORD}),
    )
    .await;
    let other = other["access_token"].as_str().unwrap().to_string();
    let id = sessions_of(&app, &access)
        .await
        .into_iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .clone();
    let res = api
        .post(app.url("/api/sessions/revoke"))
        .bearer_auth(&access)
        .json(&json!({"id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"ended": 1}));
    assert_eq!(app.me_bearer(&other).await.status(), 401);
    let res = api
        .post(app.url("/api/sessions/revoke-others"))
        .bearer_auth(&access)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"ended": 0}));

    // A password change answers new tokens for this session.
    let new_password = "a whole new passphrase";
    let res = api
        .post(app.url("/api/password"))
        .bearer_auth(&access)
        .json(&json!({"current_password": PASSWORD, "new_password": new_password, "new_password_confirm": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let access = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // Sign-out with an empty JSON object; then the token is refused.
    let res = api
        .post(app.url("/api/logout"))
        .bearer_auth(&access)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.me_bearer(&access).await.status(), 401);

    let (_, body) = post_json(
        &api,
        &app,
        "/api/login",
        &json!({"username": "jay", "password": new_password}),
    )
    .await;
    let access = body["access_token"].as_str().unwrap().to_string();
    let res = api
        .post(app.url("/api/account/delete"))
        .bearer_auth(&access)
        .json(&json!({"password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"deleted": true}));
    assert_eq!(app.me_bearer(&access).await.status(), 401);
    app.stop().await;
}

/// The same request as JSON and as a form gets the same status and the same body.
#[tokio::test]
async fn json_and_form_answer_alike() {
    let app = spawn_app().await;
    let api = app.api();
    app.register(&api, "kim", PASSWORD).await;
    let long = "p".repeat(200);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/api/register",
            vec![("username", "kim"), ("password", PASSWORD)],
        ),
        (
            "/api/register",
            vec![("username", "a b"), ("password", PASSWORD)],
        ),
        (
            "/api/register",
            vec![("username", "newbie"), ("password", "short")],
        ),
        (
            "/api/register",
            vec![("username", "newbie"), ("password", &long)],
        ),
        (
            "/api/register",
            vec![
                ("username", "newbie"),
                ("password", PASSWORD),
                ("password_confirm", "different"),
            ],
        ),
        ("/api/register", vec![("username", "newbie")]),
        (
            "/api/login",
            vec![("username", "kim"), ("password", "wrong password")],
        ),
        (
            "/api/login",
            vec![("username", "nobody"), ("password", PASSWORD)],
        ),
        ("/api/login", vec![("password", PASSWORD)]),
        (
            "/api/login",
            vec![
                ("username", "kim"),
                ("password", PASSWORD),
                ("admin", "true"),
            ],
        ),
        ("/api/refresh", vec![("refresh_token", "rt2.forged")]),
        ("/api/logout", vec![]),
        ("/api/sessions/revoke", vec![("id", "nope")]),
        ("/api/account/delete", vec![("password", PASSWORD)]),
    ];
    for (path, fields) in cases {
        let (form_status, form_body) = post_form(&api, &app, path, &fields).await;
        let object: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let (json_status, json_body) = post_json(&api, &app, path, &Value::Object(object)).await;
        assert_eq!(
            form_status, json_status,
            "{path} {fields:?}: {form_body} vs {json_body}"
        );
        assert_eq!(form_body, json_body, "{path} {fields:?}");
        assert!(
            form_status.is_client_error(),
            "{path} {fields:?}: {form_status}"
        );
    }
    // An unknown field and a missing one are the caller's mistake in both encodings.
    let (status, body) = post_json(
        &api,
        &app,
        "/api/login",
        &json!({"username": "kim", "password": PASSWORD, "admin": "true"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("bad_request")),
        "{body}"
    );
    assert!(
        body["description"].as_str().unwrap().contains("admin"),
        "{body}"
    );
    app.stop().await;
}

/// JSON that is not an object of strings is 400 with a reason; a body in neither encoding is
/// 415; nothing is a 5xx.
#[tokio::test]
async fn bodies_that_do_not_fit_are_4xx_with_a_reason() {
    let app = spawn_app().await;
    let json_ct = Some("application/json");
    for (content_type, body, status, code) in [
        (
            json_ct,
            &br#"{"username": 5, "password": "correct horse"}"#[..],
            400,
            "bad_request",
        ),
        (
            json_ct,
            br#"{"username": ["a"], "password": "x"}"#,
            400,
            "bad_request",
        ),
        (
            json_ct,
            br#"{"username": {"$ne": ""}, "password": "x"}"#,
            400,
            "bad_request",
        ),
        (
            json_ct,
            br#"{"username": "a", "username": "b", "password": "x"}"#,
            400,
            "bad_request",
        ),
        (json_ct, br#"["username", "password"]"#, 400, "bad_request"),
        (json_ct, b"null", 400, "bad_request"),
        (json_ct, b"", 400, "bad_request"),
        (json_ct, br#"{"username": "a""#, 400, "bad_request"),
        (json_ct, b"\xff\xfe{}", 400, "bad_request"),
        (
            json_ct,
            b"{\"username\": \"\xff\", \"password\": \"x\"}",
            400,
            "bad_request",
        ),
        (
            Some("application/json; charset=latin1"),
            br#"{}"#,
            415,
            "unsupported_media_type",
        ),
        (
            Some("text/plain"),
            b"username=a&password=b",
            415,
            "unsupported_media_type",
        ),
        (
            Some("multipart/form-data; boundary=x"),
            b"--x--",
            415,
            "unsupported_media_type",
        ),
        (
            Some("application/xml"),
            b"<a/>",
            415,
            "unsupported_media_type",
        ),
        (Some("\u{e9}"), b"{}", 415, "unsupported_media_type"),
        (
            None,
            br#"{"username": "a", "password": "b"}"#,
            415,
            "unsupported_media_type",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            b"username=a&username=b&password=x",
            400,
            "bad_request",
        ),
        // Percent-encoded bytes that are not UTF-8: two decoders would make U+FFFD of them.
        (
            Some("application/x-www-form-urlencoded"),
            b"username=nobody&password=caf%E9caf%E9",
            400,
            "bad_request",
        ),
    ] {
        let sent = String::from_utf8_lossy(body).into_owned();
        let (got, body) = post_raw(&app, "/api/login", content_type, body).await;
        assert_eq!(got.as_u16(), status, "{content_type:?} {sent}: {body}");
        assert_eq!(body["error"], code, "{content_type:?}: {body}");
        assert!(!body["description"].as_str().unwrap().is_empty());
    }
    // Parameters and case are read as HTTP says.
    let (status, body) = post_raw(
        &app,
        "/api/login",
        Some("Application/JSON; Charset=\"UTF-8\""),
        br#"{"username": "nobody", "password": "wrong password"}"#,
    )
    .await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (401, &json!("invalid_credentials")),
        "{body}"
    );
    // A body over the limit is 413 in JSON too, whether its length is announced or not.
    let big = format!(
        r#"{{"username": "a", "password": "{}"}}"#,
        "p".repeat(20_000)
    );
    let (status, body) = post_raw(&app, "/api/login", json_ct, big.as_bytes()).await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (413, &json!("payload_too_large"))
    );
    let chunked = raw_http(
        &app,
        &format!(
            "POST /api/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        ),
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("payload_too_large"), "{chunked}");
    // An empty body with no type is an empty form: a Bearer sign-out needs nothing else.
    let (status, body) = post_raw(&app, "/api/logout", None, b"").await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (401, &json!("missing_token"))
    );
    app.stop().await;
}

/// Sends `request` as it is written and answers what came back before the server closed.
async fn raw_http(app: &TestApp, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(app.url("").trim_start_matches("http://"))
        .await
        .unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that announces a body and hangs up half-way, 64 of them at once, leaves the server
/// answering everyone else.
#[tokio::test]
async fn clients_that_hang_up_mid_body_cost_nothing() {
    let app = spawn_app().await;
    let addr = app.url("").trim_start_matches("http://").to_string();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST /api/login HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{{\"username\": \"a"
            );
            tcp.write_all(head.as_bytes()).await.unwrap();
            drop(tcp);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // And one that stops sending but keeps the connection: the others are not held up.
    let started = std::time::Instant::now();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(format!("POST /api/login HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{{").as_bytes())
        .await
        .unwrap();
    app.register(&app.api(), "lee", PASSWORD).await;
    let (status, _) = post_json(
        &app.api(),
        &app,
        "/api/login",
        &json!({"username": "lee", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200);
    // The stalled body is given up on after BODY_TIMEOUT: 408, and the task is freed.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        server::middleware::BODY_TIMEOUT + std::time::Duration::from_secs(5),
        stalled.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "the stalled request was never answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    let waited = started.elapsed();
    let second = std::time::Duration::from_secs(1);
    assert!(
        waited >= server::middleware::BODY_TIMEOUT - second,
        "{waited:?}"
    );
    assert!(
        waited <= server::middleware::BODY_TIMEOUT + 5 * second,
        "{waited:?}"
    );
    app.stop().await;
}

/// A request that goes nowhere renews no session: a wrong method on an endpoint, with only the
/// refresh cookie, is 405 with no new cookies, and that cookie still renews the session after.
#[tokio::test]
async fn a_wrong_method_renews_nothing() {
    let app = spawn_app().await;
    app.register(&app.api(), "mia", PASSWORD).await;
    let res = app.login(&app.browser(), "mia", PASSWORD).await;
    let refresh = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("refresh_token="))
        .and_then(|c| c.split(';').next().map(str::to_owned))
        .unwrap();
    let send = |method: reqwest::Method, path: &str| {
        app.api()
            .request(method, app.url(path))
            .header(header::COOKIE, &refresh)
            .header(header::ORIGIN, app.url(""))
            .send()
    };
    for (method, path) in [
        (reqwest::Method::POST, "/api/whoami"),
        // The hot path's own route hands other methods to the door.
        (reqwest::Method::POST, "/api/me"),
        (reqwest::Method::POST, "/api/sessions"),
        (reqwest::Method::GET, "/api/password"),
        (reqwest::Method::PUT, "/api/logout"),
    ] {
        let res = send(method.clone(), path).await.unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert!(
            res.headers().get(header::SET_COOKIE).is_none(),
            "{method} {path}"
        );
    }
    let res = send(reqwest::Method::GET, "/api/whoami").await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get(header::SET_COOKIE).is_some(),
        "renewed on the way in"
    );
    assert_eq!(res.json::<Value>().await.unwrap()["username"], "mia");
    app.stop().await;
}

/// 64 sign-ups of one name at once, half JSON and half forms: exactly one account is created,
/// every other answer is 409 (or 503 while the hashing queue is full), never a 5xx.
#[tokio::test]
async fn a_crowd_signing_up_as_one_name_gets_one_account() {
    let _heavy = crate::helpers::cpu_heavy().await;
    let app = spawn_app_with(|c| c.throttle = false).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = app.api();
        let url = app.url("/api/register");
        tasks.push(tokio::spawn(async move {
            let req = client.post(url);
            let req = if i % 2 == 0 {
                req.json(&json!({"username": "crowd", "password": PASSWORD}))
            } else {
                req.form(&[("username", "crowd"), ("password", PASSWORD)])
            };
            req.send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 409 || s == 503),
        "{statuses:?}"
    );
    app.stop().await;
}

/// Every route under `/api` is in the document, and everything in the document is a route.
#[tokio::test]
async fn the_document_lists_exactly_the_routes() {
    let app = spawn_app().await;
    let res = app
        .api()
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    // The server functions as Leptos registered them, and the router's own API routes.
    let mut routes: BTreeSet<(String, String)> = server_fn::axum::server_fn_paths()
        .map(|(path, method)| (method.to_string(), path.to_string()))
        .collect();
    for path in [app::openapi::ME_PATH, app::openapi::DOCUMENT_PATH] {
        routes.insert(("GET".into(), path.into()));
    }
    assert!(
        routes.iter().all(|(_, p)| p.starts_with("/api/")),
        "{routes:?}"
    );
    assert_eq!(documented, routes, "the document and the router disagree");
    // The door lets nothing else under /api through: a route added to the router without a
    // row in the table is never reached.
    for path in ["/api/nothing-here", "/api/me/", "/api/login/x", "/api/"] {
        let res = app.api().get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path}");
    }
    let res = app.api().get(app.url("/api/login")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()[header::ALLOW], "POST");
    for path in ["/api/whoami", "/api/me"] {
        let res = app.api().post(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 405, "{path}");
        assert_eq!(res.headers()[header::ALLOW], "GET,HEAD", "{path}");
    }
    // The API door answers another method on the hot path's `/api/me`: with a cookie and
    // another site's Origin, its CSRF check refuses it before the method is looked at.
    let res = app
        .api()
        .post(app.url("/api/me"))
        .header(header::COOKIE, "auth_token=x")
        .header(header::ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "forbidden");
    // HEAD is answered as GET is, without the body.
    for path in ["/api/whoami", "/api/me", "/api/openapi.json"] {
        let head = app.api().head(app.url(path)).send().await.unwrap();
        let get = app.api().get(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "{path}");
        assert_eq!(
            head.headers()[header::CONTENT_TYPE],
            get.headers()[header::CONTENT_TYPE],
            "{path}"
        );
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
    }

    // Each documented operation is answered by its route, not by the 404 page or a 405.
    for (method, path) in &documented {
        let req = match method.as_str() {
            "GET" => app.api().get(app.url(path)),
            "POST" => app.api().post(app.url(path)).json(&json!({})),
            other => panic!("undocumented method {other}"),
        };
        let res = req.send().await.unwrap();
        assert_ne!(res.status(), 405, "{method} {path}");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "application/json",
            "{method} {path}"
        );
    }

    // Both encodings for every body, both security schemes, and every error status an
    // endpoint can answer is listed with the error body.
    let login = &doc["paths"]["/api/login"]["post"];
    let content = login["requestBody"]["content"].as_object().unwrap();
    assert!(
        content.contains_key("application/json")
            && content.contains_key("application/x-www-form-urlencoded")
    );
    for status in ["200", "400", "401", "413", "415", "429", "500", "503"] {
        assert!(
            login["responses"].get(status).is_some(),
            "login lacks {status}"
        );
    }
    assert!(login["responses"]["429"]["headers"]
        .get("Retry-After")
        .is_some());
    assert!(login["responses"]["302"]["headers"]
        .get("Location")
        .is_some());
    let sessions = &doc["paths"]["/api/sessions"]["get"]["security"];
    assert_eq!(
        sessions,
        &json!([{"bearer": []}, {"access_cookie": []}, {"refresh_cookie": []}])
    );
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["access_cookie"]["in"], "cookie");
    assert_eq!(schemes["access_cookie"]["name"], "auth_token");
    assert_eq!(schemes["refresh_cookie"]["name"], "refresh_token");
    let me = &doc["paths"]["/api/me"]["get"];
    // /api/me never renews a session on the way in: an access token only.
    assert_eq!(
        me["security"],
        json!([{"bearer": []}, {"access_cookie": []}])
    );
    assert!(me["responses"]["401"]["headers"]
        .get("WWW-Authenticate")
        .is_some());
    let unauthorized = &me["responses"]["401"]["content"]["application/json"]["schema"]["allOf"];
    assert_eq!(unauthorized[0]["$ref"], "#/components/schemas/ApiError");
    assert_eq!(
        unauthorized[1]["properties"]["error"]["enum"],
        json!([
            "missing_token",
            "invalid_token",
            "token_expired",
            "token_revoked"
        ])
    );
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(codes, app::error::ErrorCode::ALL.len());
    app.stop().await;
}
