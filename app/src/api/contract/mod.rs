//! The API as its clients see it. One table, [`ENDPOINTS`] ([`endpoints`]), says for every route
//! under `/api` its method, body, answers and who may call it; everything else is made from it:
//!
//! - which routes the server's API door lets through at all (404 for any other path, 405 with
//!   `Allow` for another method), and which renew a page's session on the way in;
//! - the reading of a POST body ([`encoding`], [`Endpoint::form_body`]): JSON or a form, checked
//!   against the same body type, then handed to the server function as the form it decodes.
//!   Both encodings therefore get the same validation and the same answers;
//! - the OpenAPI 3.1 document served at `GET /api/openapi.json` ([`document`]), whose schemas
//!   are derived from the Rust types the endpoints take and answer, and whose error statuses are
//!   the ones [`ErrorCode::status`](crate::error::ErrorCode::status) gives.
//!
//! Each body type (beside its server function, in the feature's module) converts into its
//! server function's own argument struct by naming every field, so a field added to or removed
//! from a server function fails to compile until its body type (and so the document) says the
//! same.

pub mod document;
pub mod encoding;
pub mod endpoints;

pub use document::document;
pub use encoding::{Encoding, NoFields, FORM, JSON};
pub use endpoints::{
    allowed_methods, endpoint, Access, Body, Endpoint, DOCUMENT_PATH, ENDPOINTS, ME_PATH,
};
