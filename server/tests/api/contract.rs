//! The API's contract with its clients: JSON or form bodies with the same answers, 415 for
//! anything else, an OpenAPI document that lists exactly the routes there are; and everything an
//! attacker or a careless client might send gets a clear 4xx, never a 500.

use std::collections::BTreeSet;

use crate::helpers::{
    assert_rejected, b64url, now_unix, sessions_of, spawn_app, TestApp, PASSWORD, SECRET,
};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
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
        server::layers::BODY_TIMEOUT + std::time::Duration::from_secs(5),
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
        waited >= server::layers::BODY_TIMEOUT - second,
        "{waited:?}"
    );
    assert!(
        waited <= server::layers::BODY_TIMEOUT + 5 * second,
        "{waited:?}"
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
    for path in [
        app::api::contract::ME_PATH,
        app::api::contract::DOCUMENT_PATH,
    ] {
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

fn sign(claims: &Value, alg: Algorithm, key: &[u8]) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).unwrap()
}

fn claims(sub: &str, iat: i64, exp: i64) -> Value {
    json!({
        "sub": sub, "sid": uuid::Uuid::new_v4().to_string(), "gen": 1, "jti": uuid::Uuid::new_v4().to_string(),
        "iat": iat, "exp": exp, "iss": "authapp"
    })
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_reason() {
    let app = spawn_app().await;
    let good = app.token_for("mallory").await;
    let user_id = {
        let me: Value = app.me_bearer(&good).await.json().await.unwrap();
        me["user_id"].as_i64().unwrap().to_string()
    };
    let key = SECRET.as_bytes();

    // Expired: well signed by our key, but past its `exp`.
    let expired = sign(
        &claims(&user_id, now_unix() - 7200, now_unix() - 3600),
        Algorithm::HS256,
        key,
    );
    assert_rejected(app.me_bearer(&expired).await, "token_expired").await;

    // Tampered: the payload changed after signing.
    let parts: Vec<&str> = good.split('.').collect();
    let forged_body = b64url(
        claims("1", now_unix(), now_unix() + 3600)
            .to_string()
            .as_bytes(),
    );
    let tampered = format!("{}.{}.{}", parts[0], forged_body, parts[2]);
    assert_rejected(app.me_bearer(&tampered).await, "invalid_token").await;

    // alg: none, with and without the trailing dot.
    let none_header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64url(
        claims(&user_id, now_unix(), now_unix() + 3600)
            .to_string()
            .as_bytes(),
    );
    for t in [
        format!("{none_header}.{body}."),
        format!("{none_header}.{body}"),
    ] {
        assert_rejected(app.me_bearer(&t).await, "invalid_token").await;
    }

    // Another key; another HMAC algorithm with our key; another issuer.
    let c = claims(&user_id, now_unix(), now_unix() + 3600);
    let wrong_key = sign(&c, Algorithm::HS256, b"another-secret-another-secret-!!");
    let hs512 = sign(&c, Algorithm::HS512, key);
    let mut other_iss = c.clone();
    other_iss["iss"] = json!("someone-else");
    let other_iss = sign(&other_iss, Algorithm::HS256, key);
    for t in [wrong_key, hs512, other_iss] {
        assert_rejected(app.me_bearer(&t).await, "invalid_token").await;
    }

    // Garbage, an oversized token, and Authorization headers of the wrong shape.
    for t in ["garbage", "a.b.c", &"x".repeat(5000)] {
        assert_rejected(app.me_bearer(t).await, "invalid_token").await;
    }
    for value in ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer ", &good] {
        let res = app
            .api()
            .get(app.url("/api/me"))
            .header(header::AUTHORIZATION, value)
            .send()
            .await
            .unwrap();
        assert_rejected(res, "invalid_token").await;
    }
    assert_rejected(
        app.api().get(app.url("/api/me")).send().await.unwrap(),
        "missing_token",
    )
    .await;

    // The good token still works after all that.
    assert_eq!(app.me_bearer(&good).await.status(), 200);
    app.stop().await;
}

async fn error_of(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let body = res.json::<Value>().await.expect("JSON error body");
    (status, body)
}

#[tokio::test]
async fn registration_input_is_checked() {
    let app = spawn_app().await;
    let api = app.api();

    for (user, pass, needle) in [
        ("ab", PASSWORD, "3 to 32"),
        ("has space", PASSWORD, "letters, digits"),
        ("short", "1234567", "at least 8"),
        ("long", &"p".repeat(129), "at most 128"),
    ] {
        let (status, body) = error_of(app.register(&api, user, pass).await).await;
        assert_eq!(status, 422, "{user}: {body}");
        assert_eq!(body["error"], "invalid_input");
        assert!(
            body["description"].as_str().unwrap().contains(needle),
            "{body}"
        );
    }

    let res = api
        .post(app.url("/api/register"))
        .form(&[
            ("username", "gina"),
            ("password", PASSWORD),
            ("password_confirm", "different!!"),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(body["description"]
        .as_str()
        .unwrap()
        .contains("do not match"));

    assert_eq!(app.register(&api, "Gina", PASSWORD).await.status(), 200);
    // Usernames are unique regardless of case.
    let (status, body) = error_of(app.register(&api, "gina", PASSWORD).await).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"], "username_taken");
    app.stop().await;
}

#[tokio::test]
async fn login_failures_are_one_generic_401() {
    let app = spawn_app().await;
    let api = app.api();
    app.register(&api, "henry", PASSWORD).await;

    let (s1, wrong_password) = error_of(app.login(&api, "henry", "not the password").await).await;
    let (s2, unknown_user) = error_of(app.login(&api, "nobody", PASSWORD).await).await;
    let (s3, out_of_range) = error_of(app.login(&api, "x", "y").await).await;
    assert_eq!(
        (s1, s2, s3),
        (
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED
        )
    );
    assert_eq!(wrong_password, unknown_user);
    assert_eq!(wrong_password, out_of_range);
    assert_eq!(wrong_password["error"], "invalid_credentials");
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400_or_405_or_413() {
    let app = spawn_app().await;
    let api = app.api();

    // A missing field.
    let res = api
        .post(app.url("/api/login"))
        .form(&[("username", "ivy")])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad_request");

    // A body in neither of the API's encodings.
    let res = api
        .post(app.url("/api/login"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body("username=ivy&password=x")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["error"], "unsupported_media_type");

    // The wrong method.
    let res = api.get(app.url("/api/login")).send().await.unwrap();
    assert_eq!(res.status(), 405);

    // A body over the limit.
    let res = api
        .post(app.url("/api/register"))
        .form(&[("username", "ivy"), ("password", &"p".repeat(20_000))])
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "payload_too_large");
    app.stop().await;
}

#[tokio::test]
async fn cross_site_cookie_posts_are_refused() {
    let app = spawn_app().await;
    let browser = app.browser();
    app.register(&browser, "jack", PASSWORD).await;
    assert_eq!(app.login(&browser, "jack", PASSWORD).await.status(), 200);

    let res = browser
        .post(app.url("/api/logout"))
        .header(header::ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(res).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "forbidden");
    // Nothing was revoked: the session still works.
    assert_eq!(
        browser
            .get(app.url("/api/me"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Without Origin the Referer decides; a cookie with neither is refused too.
    let res = app.login(&browser, "jack", PASSWORD).await;
    let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let logout = |extra: Option<(header::HeaderName, String)>| {
        let req = app
            .api()
            .post(app.url("/api/logout"))
            .header(header::COOKIE, &cookie);
        let req = match extra {
            Some((name, value)) => req.header(name, value),
            None => req,
        };
        async move { req.send().await.unwrap().status() }
    };
    let evil = Some((header::REFERER, "http://evil.example/page".to_string()));
    assert_eq!(logout(evil).await, 403);
    assert_eq!(logout(None).await, 403);
    // Signing in (or up) from another site is refused as well: no login CSRF.
    let res = app
        .api()
        .post(app.url("/api/login"))
        .header(header::ORIGIN, "http://evil.example")
        .header(header::COOKIE, &cookie)
        .form(&[("username", "jack"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // From our own page (Referer only) it goes through.
    let ours = Some((header::REFERER, app.url("/profile")));
    assert_eq!(logout(ours).await, 200);

    // A Bearer token cannot be sent by another site's page: no origin check for it.
    let token = app.token_for("kate").await;
    let res = app
        .api()
        .post(app.url("/api/logout"))
        .header(header::ORIGIN, "http://evil.example")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let app = spawn_app().await;
    let res = app.api().get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    // Read to the end: an unread answer keeps its connection busy through the shutdown.
    res.text().await.unwrap();
    app.stop().await;
}

/// A form body that is not UTF-8 is the client's fault: 400 `bad_request`, never a 5xx, and
/// never the browser-only `network` code.
#[tokio::test]
async fn bytes_that_are_not_utf8_are_a_bad_request() {
    let app = spawn_app().await;
    for path in ["/api/login", "/api/register", "/api/logout"] {
        for body in [
            &b"\xff\xfe{{{"[..],
            b"username=\xff\xfe&password=\xc3\x28abcdefgh",
        ] {
            let res = app
                .api()
                .post(app.url(path))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            let (status, body) = error_of(res).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert_eq!(body["error"], "bad_request", "{path}: {body}");
        }
    }
    app.stop().await;
}

/// The error of a form posted without JavaScript travels in the URL, where anyone can write
/// a link: the page shows our text for the error's code, never the link's.
#[tokio::test]
async fn error_text_from_a_link_is_never_shown_as_the_sites_own() {
    use base64::Engine;
    let app = spawn_app().await;
    let forged = |code: &str| {
        let json =
            json!({"error": code, "description": "Your account is locked. Call +1 555 0100."});
        base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
    };
    for (page, fn_path, code, ours) in [
        (
            "/login",
            "/api/login",
            "invalid_credentials",
            "The username or password is incorrect.",
        ),
        (
            "/",
            "/api/logout",
            "token_revoked",
            "The token has been revoked. Please sign in again.",
        ),
        (
            "/register",
            "/api/register",
            "invalid_input",
            "Check the form and try again.",
        ),
    ] {
        let url = format!("{page}?__path={fn_path}&__err={}", forged(code));
        let html = app.page_html(&app.api(), &url).await;
        assert!(!html.contains("555"), "{page}: the link's text is shown");
        assert!(
            html.contains(ours),
            "{page}: our text for {code} is missing"
        );
    }
    app.stop().await;
}

/// Answers that carry a token or private data are never stored by a cache; static assets may be.
#[tokio::test]
async fn private_answers_are_not_cached() {
    let app = spawn_app().await;
    let browser = app.browser();
    app.register(&browser, "private", PASSWORD).await;
    let login = app.login(&browser, "private", PASSWORD).await;
    assert_eq!(login.status(), 200);
    assert_eq!(login.headers()[header::CACHE_CONTROL], "no-store");
    for path in ["/api/me", "/api/whoami", "/profile", "/", "/health"] {
        let res = browser.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store", "{path}");
        // The hot path (`/health`, `/api/me`) has a short stack of its own: it too says this.
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    // Over plain http there is no HSTS (it would be ignored, and breaks local development).
    let res = browser.get(app.url("/")).send().await.unwrap();
    assert!(!res
        .headers()
        .contains_key(header::STRICT_TRANSPORT_SECURITY));
    app.stop().await;
}

/// Served over https (Secure cookies): HSTS on every answer, the cookie named `__Host-`, and
/// the same-origin check comparing the scheme too.
#[tokio::test]
async fn over_https_cookies_are_host_only_and_hsts_is_sent() {
    let app = crate::helpers::spawn_app_with(|c| c.secure_cookie = true).await;
    let api = app.api();
    app.register(&api, "secure", PASSWORD).await;
    let res = app.login(&api, "secure", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let hsts = res.headers()[header::STRICT_TRANSPORT_SECURITY]
        .to_str()
        .unwrap();
    assert!(hsts.starts_with("max-age=31536000"), "{hsts}");
    let cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("__Host-auth_token="), "{cookie}");
    assert!(
        cookie.contains("; Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    let token = cookie
        .trim_start_matches("__Host-auth_token=")
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let me = |cookie: String| {
        api.get(app.url("/api/me"))
            .header(header::COOKIE, cookie)
            .send()
    };
    let res = me(format!("__Host-auth_token={token}")).await.unwrap();
    assert_eq!(res.status(), 200);
    // The hot path's short stack sends HSTS too, and so does a 401 from it.
    assert!(res
        .headers()
        .contains_key(header::STRICT_TRANSPORT_SECURITY));
    for path in ["/health", "/api/me"] {
        let res = api.get(app.url(path)).send().await.unwrap();
        assert!(
            res.headers()
                .contains_key(header::STRICT_TRANSPORT_SECURITY),
            "{path}"
        );
    }
    // The plain name is not ours over https: anything on http could have set it.
    assert_rejected(
        me(format!("auth_token={token}")).await.unwrap(),
        "missing_token",
    )
    .await;

    // A cookie POST from the same host over plain http is another origin.
    let host = app.addr.to_string();
    let logout = |origin: String| {
        api.post(app.url("/api/logout"))
            .header(header::COOKIE, format!("__Host-auth_token={token}"))
            .header(header::ORIGIN, origin)
            .send()
    };
    assert_eq!(
        logout(format!("http://{host}")).await.unwrap().status(),
        403
    );
    assert_eq!(
        logout(format!("https://{host}")).await.unwrap().status(),
        200
    );
    app.stop().await;
}

/// A server function gives its error its own status only when it answers its own request for a
/// program: a page that calls it while rendering keeps its 200, and a form posted without
/// JavaScript still gets the redirect back to the form, carrying the error.
#[tokio::test]
async fn error_statuses_leave_pages_and_form_posts_alone() {
    let app = spawn_app().await;
    let token = app.token_for("pagey").await;
    assert_eq!(app.logout_bearer(&token).await.status(), 200);
    let page = app
        .api()
        .get(app.url("/"))
        .header(header::COOKIE, format!("auth_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("has been revoked"));

    let form = app
        .browser()
        .post(app.url("/api/login"))
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .header(header::REFERER, app.url("/login"))
        .form(&[("username", "pagey"), ("password", "wrong password")])
        .send()
        .await
        .unwrap();
    assert!(form.status().is_redirection(), "{}", form.status());
    let location = form.headers()[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with(&app.url("/login?")), "{location}");
    assert!(location.contains("__err="), "{location}");

    let script = app.login(&app.api(), "pagey", "wrong password").await;
    let (status, body) = error_of(script).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_credentials");
    app.stop().await;
}
