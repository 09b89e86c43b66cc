//! The layers in front of the pages and the API, one file each, in the order a request meets
//! them (see `crate::router`, where they are put together):
//!
//! 1. [`headers`]: the security headers every answer carries, and its `Cache-Control` (`no-store`
//!    but for the site's files);
//! 2. [`errors`]: the status and JSON body of what only a layer can answer for (a bare 413, a
//!    server function's arguments Leptos could not decode);
//! 3. the body-size limit (tower-http's), then [`origin`]: the CSRF check of a POST to `/api`;
//! 4. [`api_door`]: only the API table's routes under `/api`, and a POST body read as JSON or
//!    a form;
//! 5. [`refresh`]: a page's session renewed on the way in when its access token has expired;
//! 6. [`pages`]: protected pages sent to sign in without a valid session, and the sessions
//!    page's list prepared before it renders.

pub mod api_door;
pub mod errors;
pub mod headers;
pub mod origin;
pub mod pages;
pub mod refresh;

pub use api_door::{api_requests, BODY_TIMEOUT};
pub use errors::api_error_status;
pub use headers::{caching, security_headers, HSTS, NOSNIFF, NO_STORE};
pub use origin::same_origin_posts;
pub use pages::{page_data, protect_pages};
pub use refresh::{refresh_session, SessionOver, REFRESH_AHEAD_SECS};

/// What the layers' tests share: a core on a throwaway database, a signed-in session, and
/// reading an answer. Each layer is tested alone, in front of a handler that says what reached
/// it, with `oneshot` (no server, no socket).
#[cfg(test)]
#[allow(clippy::unwrap_used)] // test set-up: a failure is the test's failure
pub(crate) mod testing {
    use app::{
        auth::{Auth, Issued},
        store::Pool,
    };
    use axum::{http::header, response::Response};
    use std::sync::Arc;

    /// A complete core on a fresh SQLite file (kept alive by the returned folder).
    pub(crate) async fn auth() -> (tempfile::TempDir, Pool, Arc<Auth>) {
        let (dir, pool, auth) = identity::testing::auth().await;
        (dir, pool, Arc::new(auth))
    }

    /// A session of a new user (id 1), as a sign-in starts it.
    pub(crate) async fn signed_in(auth: &Auth, pool: &Pool) -> Issued {
        identity::testing::user(pool, 1, 0).await;
        let proof = identity::testing::proof(auth, 1).await;
        auth.start_session(&proof, "test", None)
            .await
            .unwrap()
            .unwrap()
    }

    pub(crate) async fn text(res: Response) -> String {
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// The `Set-Cookie` values of an answer.
    pub(crate) fn set_cookies(res: &Response) -> Vec<String> {
        res.headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}
