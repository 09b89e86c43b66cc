//! The headers every answer carries.

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::Response,
};

/// `Cache-Control` of every answer, from its path ([`cache_control`]); an answer that already
/// says how it may be cached keeps its own word. Only a found site file may be kept: a 404 for
/// a file name is not (the file may be on its way, in a deployment that is rolling out). A site
/// file's answer depends on the `Accept-Encoding` asked with (it is sent precompressed when the
/// browser accepts brotli or gzip), which `Vary` tells every cache on the way.
pub async fn caching(req: Request, next: Next) -> Response {
    let policy = cache_control(req.uri().path());
    let mut res = next.run(req).await;
    // An answer that sets a cookie is someone's own, whatever its path.
    let found = (res.status().is_success() || res.status() == StatusCode::NOT_MODIFIED)
        && !res.headers().contains_key(header::SET_COOKIE);
    let headers = res.headers_mut();
    if policy != NO_STORE {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(if found { policy } else { NO_STORE });
    res
}

/// How long a browser may keep what a path answers:
/// - a site file whose name carries its content's hash (`/pkg/authapp.<hash>.wasm`, as a
///   release build names them): a year, never asked again (`immutable`), since a new build
///   gives new content a new name;
/// - any other site file (`/favicon.svg`, the unhashed `/pkg/` files of a development build):
///   kept, but checked with the server before each use (`no-cache`);
/// - everything else, `no-store`: API answers carry tokens and private data, and pages are
///   rendered for whoever is signed in. Neither the browser's cache nor a shared one may keep
///   them (a "back" after signing out must not show them).
pub fn cache_control(path: &str) -> HeaderValue {
    if let Some(file) = path.strip_prefix("/pkg/") {
        if names_its_hash(file) {
            IMMUTABLE
        } else {
            NO_CACHE
        }
    } else if STATIC_FILES.contains(&path) {
        NO_CACHE
    } else {
        NO_STORE
    }
}

/// The site's files outside `/pkg/` (public/, copied to the site's root by the build).
const STATIC_FILES: [&str; 2] = ["/favicon.svg", "/passkeys.js"];

/// Whether `path` names one of the site's files (served as they are, for anyone): no session is
/// renewed on the way to one, and only one may be kept by a cache.
pub fn is_site_file(path: &str) -> bool {
    path.starts_with("/pkg/") || STATIC_FILES.contains(&path)
}

/// Whether a file name carries a content hash as cargo-leptos writes them: one of its
/// dot-separated parts before the extension is 22 characters of unpadded base64url (an MD5).
/// (`authapp.kT3x0_pQ-7vY2mNw9aBcDe.wasm`, and the split build's chunks, named by hash alone.)
fn names_its_hash(file: &str) -> bool {
    let Some((stem, _extension)) = file.rsplit_once('.') else {
        return false;
    };
    !file.contains('/')
        && stem.split('.').any(|part| {
            part.len() == 22
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
pub const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// HSTS, sent only when the site is served over https (`Secure` cookies): browsers then refuse
/// plain http to this host for a year, so the cookie never travels unencrypted.
pub const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");

/// Headers every response carries.
pub fn security_headers() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (header::X_CONTENT_TYPE_OPTIONS, NOSNIFF),
        // Same-origin requests keep the full Referer: forms without JavaScript need it to
        // come back to the page they were sent from.
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test set-up: a failure is the test's failure
mod tests {
    use super::*;
    use axum::{body::Body, http::Request as HttpRequest, Router};
    use tower::ServiceExt;

    /// The site's files as the server serves them (Leptos's static handler: precompressed
    /// variants beside each file), behind this layer.
    fn site(root: &std::path::Path) -> Router {
        let options = leptos::config::LeptosOptions::builder()
            .output_name("authapp")
            .site_root(root.to_str().unwrap())
            .build();
        Router::new()
            .fallback_service(leptos_axum::site_pkg_dir_service(&options))
            .layer(axum::middleware::from_fn(caching))
    }

    async fn get(site: &Router, path: &str, accept: &str) -> Response {
        let req = HttpRequest::get(path)
            .header(header::ACCEPT_ENCODING, accept)
            .body(Body::empty())
            .unwrap();
        site.clone().oneshot(req).await.unwrap()
    }

    /// Whatever its path, an answer that sets a cookie (a session renewed on the way) is never
    /// kept by a cache.
    #[tokio::test]
    async fn an_answer_setting_a_cookie_is_never_kept() {
        let site = Router::new()
            .fallback(|| async { ([(header::SET_COOKIE, "a=b")], "hello") })
            .layer(axum::middleware::from_fn(caching));
        for path in [
            "/favicon.svg",
            "/pkg/authapp.kT3x0_pQ-7vY2mNw9aBcDe.wasm",
            "/",
        ] {
            let res = get(&site, path, "br").await;
            assert_eq!(res.headers()[header::CACHE_CONTROL], NO_STORE, "{path}");
        }
    }

    #[tokio::test]
    async fn a_hashed_file_is_sent_compressed_and_kept_a_year() {
        let root = tempfile::tempdir().unwrap();
        let pkg = root.path().join("pkg");
        std::fs::create_dir(&pkg).unwrap();
        let name = "authapp.kT3x0_pQ-7vY2mNw9aBcDe.wasm";
        std::fs::write(pkg.join(name), b"the wasm itself").unwrap();
        std::fs::write(pkg.join(format!("{name}.br")), b"brotli").unwrap();
        std::fs::write(pkg.join(format!("{name}.gz")), b"gzip").unwrap();
        std::fs::write(root.path().join("favicon.svg"), b"<svg/>").unwrap();
        let site = site(root.path());
        let path = format!("/pkg/{name}");

        for (accept, encoding, body) in [
            ("br, gzip", Some("br"), "brotli"),
            ("gzip, deflate", Some("gzip"), "gzip"),
            ("identity", None, "the wasm itself"),
        ] {
            let res = get(&site, &path, accept).await;
            assert_eq!(res.status(), StatusCode::OK, "{accept}");
            let h = res.headers();
            assert_eq!(
                h.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap()),
                encoding,
                "{accept}"
            );
            assert_eq!(h[header::CACHE_CONTROL], IMMUTABLE, "{accept}");
            assert_eq!(h[header::VARY], "accept-encoding", "{accept}");
            assert_eq!(h[header::CONTENT_TYPE], "application/wasm", "{accept}");
            let bytes = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
            assert_eq!(bytes, body.as_bytes(), "{accept}");
        }

        let favicon = get(&site, "/favicon.svg", "br").await;
        assert_eq!(favicon.status(), StatusCode::OK);
        assert_eq!(favicon.headers()[header::CACHE_CONTROL], NO_CACHE);

        assert!(
            is_site_file("/favicon.svg") && is_site_file("/pkg/x.js") && !is_site_file("/profile")
        );

        // A hashed name that is not (or not yet) there: a 404 nobody keeps.
        let missing = get(&site, "/pkg/authapp.AAAAAAAAAAAAAAAAAAAAAA.wasm", "br").await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.headers()[header::CACHE_CONTROL], NO_STORE);
    }

    #[test]
    fn hashed_site_files_are_immutable_and_nothing_else_is() {
        for path in [
            "/pkg/authapp.kT3x0_pQ-7vY2mNw9aBcDe.wasm",
            "/pkg/authapp.kT3x0_pQ-7vY2mNw9aBcDe.js",
            "/pkg/authapp.kT3x0_pQ-7vY2mNw9aBcDe.wasm.br",
            "/pkg/kT3x0_pQ-7vY2mNw9aBcDe.wasm",
            "/pkg/__wasm_split.kT3x0_pQ-7vY2mNw9aBcDe.js",
        ] {
            assert_eq!(cache_control(path), IMMUTABLE, "{path}");
        }
        for path in [
            "/pkg/authapp.wasm",
            "/pkg/authapp.css",
            "/pkg/authapp.kT3x0_pQ-7vY2mNw9aBcD.wasm",
            "/pkg/authapp.kT3x0_pQ-7vY2mNw9aBcDe!.wasm",
            "/pkg/snippets/kT3x0_pQ-7vY2mNw9aBcDe/x.js",
            "/favicon.svg",
        ] {
            assert_eq!(cache_control(path), NO_CACHE, "{path}");
        }
        for path in [
            "/",
            "/profile",
            "/api/me",
            "/kT3x0_pQ-7vY2mNw9aBcDe.wasm",
            "/api/kT3x0_pQ-7vY2mNw9aBcDe.js",
        ] {
            assert_eq!(cache_control(path), NO_STORE, "{path}");
        }
    }
}
