//! The layers in front of the pages and the API, one file each, in the order a request meets
//! them (see `crate::router`, where they are put together):
//!
//! 1. [`headers`]: the security headers and `Cache-Control: no-store` every answer carries;
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
pub use headers::{no_store, security_headers, HSTS, NOSNIFF, NO_STORE};
pub use origin::same_origin_posts;
pub use pages::{protect_pages, sessions_page};
pub use refresh::{refresh_session, SessionOver, REFRESH_AHEAD_SECS};
