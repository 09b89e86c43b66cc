//! The API as its clients see it. One table, [`ENDPOINTS`], says for every route under `/api`
//! its method, body, answers and who may call it; two things are made from it:
//!
//! - the OpenAPI 3.1 document served at `GET /api/openapi.json` ([`document`]), whose schemas
//!   are derived from the Rust types the endpoints take and answer, and whose error statuses are
//!   the ones [`ErrorCode::status`] gives;
//! - the reading of a POST body ([`Endpoint::form_body`]): JSON or a form, checked against the
//!   same body type, then handed to the server function as the form it decodes. Both encodings
//!   therefore get the same validation and the same answers.
//!
//! Each body type converts into its server function's own argument struct by naming every
//! field, so a field added to or removed from a server function fails to compile until its body
//! type (and so the document) says the same.

use http::Method;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use server_fn::ServerFn;
use utoipa::{
    openapi::{
        header::{Header, HeaderBuilder},
        path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder},
        request_body::RequestBodyBuilder,
        schema::{AllOfBuilder, ObjectBuilder, Type},
        security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        },
        ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
        Required, ResponseBuilder, ResponsesBuilder, Schema,
    },
    PartialSchema, ToSchema,
};

use crate::{
    api::{
        AccountDeleted, ChangePassword, CurrentUser, DeleteAccount, ListSessions, LoggedOut, Login,
        Logout, Refresh, Register, Registered, RevokeOtherSessions, RevokeSession, SessionInfo,
        SessionsEnded, SignedInUser, TokenResponse,
    },
    auth::cookie::AuthCookie,
    error::{ApiError, ErrorCode},
};

/// `GET /api/me`: a plain axum route (the API's hot path), not a server function.
pub const ME_PATH: &str = "/api/me";
/// `GET /api/openapi.json`: the document itself.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";

/// The two encodings a POST body may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Form,
}

pub const JSON: &str = "application/json";
pub const FORM: &str = "application/x-www-form-urlencoded";

impl Encoding {
    /// The encoding a `Content-Type` names, or 415 `unsupported_media_type`. A body with no
    /// `Content-Type` is taken as a form only when it is empty (`POST /api/logout` with a Bearer
    /// token and nothing else).
    pub fn of(content_type: Option<&[u8]>, body_is_empty: bool) -> Result<Self, ApiError> {
        let Some(value) = content_type else {
            return if body_is_empty {
                Ok(Self::Form)
            } else {
                Err(ApiError::unsupported_media_type())
            };
        };
        let value = std::str::from_utf8(value).map_err(|_| ApiError::unsupported_media_type())?;
        let mut params = value.split(';').map(str::trim);
        let essence = params.next().unwrap_or_default();
        // Both are UTF-8 by definition; a charset parameter may only say so.
        let utf8 = params.all(|p| match p.split_once('=') {
            Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => {
                let charset = charset.trim().trim_matches('"');
                charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
            }
            _ => true,
        });
        match essence {
            e if e.eq_ignore_ascii_case(JSON) && utf8 => Ok(Self::Json),
            e if e.eq_ignore_ascii_case(FORM) && utf8 => Ok(Self::Form),
            _ => Err(ApiError::unsupported_media_type()),
        }
    }
}

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (sign-up, sign-in).
    Anyone,
    /// An access token, as a Bearer token or in the access cookie (`/api/me`, which never
    /// renews a session on the way in).
    AccessToken,
    /// An access token, or the refresh cookie alone: a page's session is renewed on the way in
    /// when its access cookie has expired.
    SignedIn,
    /// A refresh token, in the body or in the refresh cookie.
    RefreshToken,
    /// An access token, or a refresh token (in the body or the refresh cookie): signing out.
    AccessOrRefreshToken,
    /// Anyone; an access token, if sent, must be valid.
    Optional,
}

/// A POST body: its schema and how it is read.
pub struct Body {
    name: fn() -> std::borrow::Cow<'static, str>,
    schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
    required: bool,
    read: fn(Encoding, &[u8]) -> Result<Option<String>, ApiError>,
}

impl Body {
    const fn of<B, F>(required: bool) -> Self
    where
        B: ToSchema + DeserializeOwned + Into<F>,
        F: Serialize,
    {
        Self {
            name: B::name,
            schemas: component::<B>,
            required,
            read: read_body::<B, F>,
        }
    }
}

/// One route of the API.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub access: Access,
    body: Option<Body>,
    /// The success answer (200).
    answer: fn() -> RefOr<Schema>,
    /// The failures this endpoint itself can answer; those every endpoint can answer (bad
    /// input, too large, wrong encoding, a cross-site cookie post, our own failure) are added.
    errors: &'static [ErrorCode],
}

impl Endpoint {
    /// The body of a POST to this endpoint, as the form its server function decodes: `None`
    /// when the body is already that form (it is then passed on byte for byte), `Some(form)` when
    /// it was JSON. A body that does not fit the endpoint's body type is 400 `bad_request`.
    pub fn form_body(&self, encoding: Encoding, bytes: &[u8]) -> Result<Option<String>, ApiError> {
        match &self.body {
            Some(body) => (body.read)(encoding, bytes),
            None => Ok(None),
        }
    }

    /// True when the endpoint takes a body (every POST does, if only an empty one).
    pub fn has_body(&self) -> bool {
        self.body.is_some()
    }
}

/// Reads a body as `B` (unknown fields, wrong types and duplicates refused), and for JSON
/// re-encodes it as the form of `F`, the server function's arguments.
fn read_body<B, F>(encoding: Encoding, bytes: &[u8]) -> Result<Option<String>, ApiError>
where
    B: DeserializeOwned + Into<F>,
    F: Serialize,
{
    match encoding {
        Encoding::Form => {
            // Both form decoders would put U+FFFD for bytes that are not UTF-8 (`caf%E9`), so
            // that two different passwords could be one: refused, as JSON cannot carry them.
            if !form_is_utf8(bytes) {
                return Err(ApiError::bad_request(
                    "The request could not be read: send a UTF-8 form body.",
                ));
            }
            // Checked here for the same rules as JSON; the bytes themselves go on unchanged.
            serde_urlencoded::from_bytes::<B>(bytes).map_err(|e| {
                ApiError::bad_request(format!("The request could not be read: {e}"))
            })?;
            Ok(None)
        }
        Encoding::Json => {
            // serde would also take an array, field by field in order: not what we document.
            if bytes.trim_ascii_start().first() != Some(&b'{') {
                return Err(ApiError::bad_request("The body must be a JSON object."));
            }
            let body: B = serde_json::from_slice(bytes).map_err(|e| {
                use serde_json::error::Category;
                ApiError::bad_request(match e.classify() {
                    // serde_json adds where it stopped; the form decoder does not say it.
                    Category::Data => {
                        let text = e.to_string();
                        let suffix = format!(" at line {} column {}", e.line(), e.column());
                        let text = text.strip_suffix(&suffix).unwrap_or(&text);
                        format!("The request could not be read: {text}")
                    }
                    Category::Syntax | Category::Eof | Category::Io => format!(
                        "The body is not valid JSON (line {}, column {}).",
                        e.line(),
                        e.column()
                    ),
                })
            })?;
            let form = serde_urlencoded::to_string(body.into()).map_err(|e| {
                tracing::error!(error = %e, "re-encoding a JSON body as a form failed");
                ApiError::internal()
            })?;
            Ok(Some(form))
        }
    }
}

/// True when a form body, percent-decoded, is UTF-8 text (each `%XX` is one byte; a `%` not
/// followed by two hex digits stands for itself, as form decoders read it).
fn form_is_utf8(bytes: &[u8]) -> bool {
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match (b, hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

// ---------------------------------------------------------------- the bodies

/// `POST /api/register`. The page's form also sends `password_confirm`, which must then equal
/// `password`; API clients leave it out.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// 3 to 32 characters from `A-Z a-z 0-9 _ . -` (surrounding ASCII spaces are trimmed);
    /// compared without regard to case.
    #[schema(pattern = "^[ \\t\\n\\f\\r]*[A-Za-z0-9_.-]{3,32}[ \\t\\n\\f\\r]*$")]
    username: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    #[serde(default)]
    #[schema(ignore)]
    password_confirm: Option<String>,
}

impl From<RegisterBody> for Register {
    fn from(b: RegisterBody) -> Self {
        let RegisterBody {
            username,
            password,
            password_confirm,
        } = b;
        Self {
            username,
            password,
            password_confirm,
        }
    }
}

/// `POST /api/login`
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
    /// Where a browser goes next (a path on this site); API clients leave it out.
    #[serde(default)]
    next: Option<String>,
    /// The `device_token` of this client's last sign-in to this account: the attempt then
    /// counts on this device's own allowance, which guesses from elsewhere cannot use up. Left
    /// out, the device cookie is used; any other value counts as an unknown device.
    #[serde(default)]
    device_token: Option<String>,
}

impl From<LoginBody> for Login {
    fn from(b: LoginBody) -> Self {
        let LoginBody {
            username,
            password,
            next,
            device_token,
        } = b;
        Self {
            username,
            password,
            next,
            device_token,
        }
    }
}

/// `POST /api/refresh`
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// The refresh token (`rt2.…`). Left out, the refresh cookie is used.
    #[serde(default)]
    refresh_token: Option<String>,
}

impl From<RefreshBody> for Refresh {
    fn from(b: RefreshBody) -> Self {
        let RefreshBody { refresh_token } = b;
        Self { refresh_token }
    }
}

/// `POST /api/sessions/revoke`
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSessionBody {
    /// The session's `id`, as `GET /api/sessions` lists it.
    id: String,
}

impl From<RevokeSessionBody> for RevokeSession {
    fn from(b: RevokeSessionBody) -> Self {
        let RevokeSessionBody { id } = b;
        Self { id }
    }
}

/// `POST /api/password`. The page's form also sends `new_password_confirm`, which must then
/// equal `new_password`; API clients leave it out.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    current_password: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    new_password: String,
    #[serde(default)]
    #[schema(ignore)]
    new_password_confirm: Option<String>,
}

impl From<ChangePasswordBody> for ChangePassword {
    fn from(b: ChangePasswordBody) -> Self {
        let ChangePasswordBody {
            current_password,
            new_password,
            new_password_confirm,
        } = b;
        Self {
            current_password,
            new_password,
            new_password_confirm,
        }
    }
}

/// `POST /api/account/delete`
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountBody {
    /// The account's current password.
    password: String,
}

impl From<DeleteAccountBody> for DeleteAccount {
    fn from(b: DeleteAccountBody) -> Self {
        let DeleteAccountBody { password } = b;
        Self { password }
    }
}

/// The body of an endpoint that takes no fields: empty, `{}` or an empty form.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// `POST /api/logout`
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutBody {
    /// A refresh token (`rt2.…`) whose session ends too: the way to sign out for an API client
    /// whose access token has expired. Without a valid access token and without this field,
    /// the refresh cookie is used.
    #[serde(default)]
    refresh_token: Option<String>,
}

impl From<LogoutBody> for Logout {
    fn from(b: LogoutBody) -> Self {
        let LogoutBody { refresh_token } = b;
        Self { refresh_token }
    }
}

impl From<NoFields> for RevokeOtherSessions {
    fn from(NoFields {}: NoFields) -> Self {
        Self {}
    }
}

// ---------------------------------------------------------------- the table

/// `T`'s schema and those it refers to, for the document's components.
fn component<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((T::name().into_owned(), T::schema()));
    T::schemas(out);
}

fn answer<T: PartialSchema>() -> RefOr<Schema> {
    T::schema()
}

fn reference<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

use ErrorCode as E;

/// The token rejections: every endpoint that needs an access token can answer them.
const TOKEN: [ErrorCode; 4] = [
    E::MissingToken,
    E::InvalidToken,
    E::TokenExpired,
    E::TokenRevoked,
];

/// The token rejections, and 503 for a change that could not be written in time.
const TOKEN_OR_BUSY: [ErrorCode; 5] = [
    E::MissingToken,
    E::InvalidToken,
    E::TokenExpired,
    E::TokenRevoked,
    E::TemporarilyUnavailable,
];

/// Every route under `/api`, in the order the document lists them.
pub static ENDPOINTS: [Endpoint; 12] = [
    Endpoint {
        method: Method::POST,
        path: Register::PATH,
        operation_id: "register",
        summary: "Create an account",
        access: Access::Anyone,
        body: Some(Body::of::<RegisterBody, Register>(true)),
        answer: reference::<Registered>,
        errors: &[
            E::InvalidInput,
            E::UsernameTaken,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: Login::PATH,
        operation_id: "login",
        summary: "Sign in: an access token and a refresh token (cookies too, for a page)",
        access: Access::Anyone,
        body: Some(Body::of::<LoginBody, Login>(true)),
        answer: reference::<TokenResponse>,
        errors: &[
            E::InvalidCredentials,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: Refresh::PATH,
        operation_id: "refresh",
        summary: "Rotate a refresh token: a new access token and a new refresh token",
        access: Access::RefreshToken,
        body: Some(Body::of::<RefreshBody, Refresh>(false)),
        answer: reference::<TokenResponse>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: Logout::PATH,
        operation_id: "logout",
        summary: "Sign out: the access token is revoked and its session ended (or the session of \
                  the refresh token sent, when no valid access token is)",
        access: Access::AccessOrRefreshToken,
        body: Some(Body::of::<LogoutBody, Logout>(false)),
        answer: reference::<LoggedOut>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::GET,
        path: ME_PATH,
        operation_id: "me",
        summary: "The signed-in user",
        access: Access::AccessToken,
        body: None,
        answer: reference::<SignedInUser>,
        errors: &TOKEN,
    },
    Endpoint {
        method: Method::GET,
        path: CurrentUser::PATH,
        operation_id: "whoami",
        summary: "The signed-in user, or null without a token",
        access: Access::Optional,
        body: None,
        answer: answer::<Option<SignedInUser>>,
        errors: &[E::InvalidToken, E::TokenExpired, E::TokenRevoked],
    },
    Endpoint {
        method: Method::GET,
        path: ListSessions::PATH,
        operation_id: "list_sessions",
        summary: "The caller's live sessions, most recently used first",
        access: Access::SignedIn,
        body: None,
        answer: answer::<Vec<SessionInfo>>,
        errors: &TOKEN,
    },
    Endpoint {
        method: Method::POST,
        path: RevokeSession::PATH,
        operation_id: "revoke_session",
        summary: "End one of the caller's sessions (404 for any other id)",
        access: Access::SignedIn,
        body: Some(Body::of::<RevokeSessionBody, RevokeSession>(true)),
        answer: reference::<SessionsEnded>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::NotFound,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: RevokeOtherSessions::PATH,
        operation_id: "revoke_other_sessions",
        summary: "End every session of the caller but this one",
        access: Access::SignedIn,
        body: Some(Body::of::<NoFields, RevokeOtherSessions>(false)),
        answer: reference::<SessionsEnded>,
        errors: &TOKEN_OR_BUSY,
    },
    Endpoint {
        method: Method::POST,
        path: ChangePassword::PATH,
        operation_id: "change_password",
        summary: "Change the password: every other session ends, this one gets new tokens",
        access: Access::SignedIn,
        body: Some(Body::of::<ChangePasswordBody, ChangePassword>(true)),
        answer: reference::<TokenResponse>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::InvalidCredentials,
            E::InvalidInput,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::POST,
        path: DeleteAccount::PATH,
        operation_id: "delete_account",
        summary: "Delete the account and everything of it",
        access: Access::SignedIn,
        body: Some(Body::of::<DeleteAccountBody, DeleteAccount>(true)),
        answer: reference::<AccountDeleted>,
        errors: &[
            E::MissingToken,
            E::InvalidToken,
            E::TokenExpired,
            E::TokenRevoked,
            E::InvalidCredentials,
            E::TooManyRequests,
            E::TemporarilyUnavailable,
        ],
    },
    Endpoint {
        method: Method::GET,
        path: DOCUMENT_PATH,
        operation_id: "openapi",
        summary: "This document",
        access: Access::Anyone,
        body: None,
        answer: answer::<serde_json::Value>,
        errors: &[],
    },
];

/// The `Allow` header of `path` (`None` when no endpoint is there). Every path of the API has
/// one method.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    let e = ENDPOINTS.iter().find(|e| e.path == path)?;
    Some(if e.method == Method::GET {
        "GET,HEAD"
    } else {
        "POST"
    })
}

/// The endpoint at `path` for `method`, if the API has one.
pub fn endpoint(method: &Method, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .find(|e| e.path == path && e.method == *method)
}

/// An [`ApiError`] whose `error` is one of `codes`: the document says which codes each status
/// carries, and schemathesis checks every answer against it.
fn error_body(codes: &[ErrorCode]) -> RefOr<Schema> {
    let narrowed = ObjectBuilder::new().property(
        "error",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes.iter().map(|c| c.as_str()))),
    );
    RefOr::T(Schema::AllOf(
        AllOfBuilder::new()
            .item(reference::<ApiError>())
            .item(narrowed)
            .build(),
    ))
}

/// The failures every endpoint can answer, beside its own: among them a failure of ours, 500
/// `internal`, or 503 `temporarily_unavailable` while the database cannot be reached (even
/// `GET /api/me`, for a user not in memory).
fn common_errors(method: &Method) -> &'static [ErrorCode] {
    if *method == Method::POST {
        &[
            E::BadRequest,
            E::Forbidden,
            E::RequestTimeout,
            E::PayloadTooLarge,
            E::UnsupportedMediaType,
            E::TemporarilyUnavailable,
            E::Internal,
        ]
    } else {
        // The body limit looks at `Content-Length` whatever the method.
        &[E::PayloadTooLarge, E::TemporarilyUnavailable, E::Internal]
    }
}

/// An answer's header, described.
fn header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

const BEARER: &str = "bearer";
const ACCESS_COOKIE: &str = "access_cookie";
const REFRESH_COOKIE: &str = "refresh_cookie";

fn requirement(name: &str) -> SecurityRequirement {
    SecurityRequirement::new(name, Vec::<String>::new())
}

/// The OpenAPI 3.1 document of the API, with the cookie names this server uses.
pub fn document(cookie: AuthCookie) -> OpenApi {
    let mut schemas = Vec::new();
    let mut paths = PathsBuilder::new();
    for e in &ENDPOINTS {
        let mut op = OperationBuilder::new()
            .operation_id(Some(e.operation_id))
            .summary(Some(e.summary));
        if e.path == Login::PATH {
            // The device cookie is no credential (it authorises nothing), so it is described
            // here rather than as a security scheme.
            op = op.description(Some(format!(
                "A successful sign-in answers a device proof: `device_token` in the body for an \
                 API client, the HttpOnly cookie `{}` (a year) for a page. Sent back with a later \
                 sign-in to the same account (`device_token` in the body, else the cookie), the \
                 attempt counts on that device's own allowance (5, then one a minute), which \
                 guesses from elsewhere cannot use up; without it, or with any other value, the \
                 attempt counts on the (account, address) pair and the account's ceiling, which \
                 a distributed attack can use up (429). After 10 attempts through one proof with \
                 no success between, it counts as no proof for an hour.",
                cookie.device_name()
            )));
        }
        if let Some(body) = &e.body {
            (body.schemas)(&mut schemas);
            let schema = || {
                ContentBuilder::new()
                    .schema(Some(RefOr::<Schema>::Ref(Ref::from_schema_name((body
                        .name)(
                    )))))
                    .build()
            };
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(if body.required {
                        Required::True
                    } else {
                        Required::False
                    }))
                    .content(JSON, schema())
                    .content(FORM, schema())
                    .build(),
            ));
        }
        let mut responses = ResponsesBuilder::new().response(
            "200",
            ResponseBuilder::new().description("Success.").content(
                JSON,
                ContentBuilder::new().schema(Some((e.answer)())).build(),
            ),
        );
        let mut by_status: Vec<(http::StatusCode, Vec<ErrorCode>)> = Vec::new();
        for &code in e.errors.iter().chain(common_errors(&e.method)) {
            match by_status.iter_mut().find(|(s, _)| *s == code.status()) {
                Some((_, codes)) if codes.contains(&code) => {}
                Some((_, codes)) => codes.push(code),
                None => by_status.push((code.status(), vec![code])),
            }
        }
        by_status.sort_by_key(|(s, _)| s.as_u16());
        for (status, codes) in by_status {
            let names: Vec<String> = codes.iter().map(|c| format!("`{}`", c.as_str())).collect();
            let mut response = ResponseBuilder::new()
                .description(format!(
                    "{}: `error` is {}.",
                    status.canonical_reason().unwrap_or("Error"),
                    names.join(" or ")
                ))
                .content(
                    JSON,
                    ContentBuilder::new()
                        .schema(Some(error_body(&codes)))
                        .build(),
                );
            if codes.iter().any(|c| c.is_token_rejection()) {
                response = response.header(
                    "WWW-Authenticate",
                    header(
                        "On a token rejection: `Bearer realm=\"authapp\"`, with \
                         `error=\"invalid_token\"` when a token was sent.",
                    ),
                );
            }
            if codes
                .iter()
                .any(|c| matches!(c, E::TooManyRequests | E::TemporarilyUnavailable))
            {
                response = response.header("Retry-After", header("Seconds to wait."));
            }
            responses = responses.response(status.as_str(), response);
        }
        if e.method == Method::POST {
            responses = responses.response(
                "302",
                ResponseBuilder::new()
                    .description(
                        "A page's form post (`Accept: text/html`) is sent on to the next page, \
                         or back to its form with the error.",
                    )
                    .header("Location", header("Where the browser goes next.")),
            );
        }
        op = op.responses(responses.build());
        let security: Vec<SecurityRequirement> = match e.access {
            Access::Anyone => Vec::new(),
            Access::AccessToken => vec![requirement(BEARER), requirement(ACCESS_COOKIE)],
            Access::SignedIn => vec![
                requirement(BEARER),
                requirement(ACCESS_COOKIE),
                requirement(REFRESH_COOKIE),
            ],
            Access::RefreshToken => {
                vec![SecurityRequirement::default(), requirement(REFRESH_COOKIE)]
            }
            Access::Optional | Access::AccessOrRefreshToken => vec![
                SecurityRequirement::default(),
                requirement(BEARER),
                requirement(ACCESS_COOKIE),
                requirement(REFRESH_COOKIE),
            ],
        };
        if !security.is_empty() {
            op = op.securities(Some(security));
        }
        let method = if e.method == Method::POST {
            HttpMethod::Post
        } else {
            HttpMethod::Get
        };
        paths = paths.path(e.path, PathItem::new(method, op.build()));
    }
    component::<ApiError>(&mut schemas);
    component::<Registered>(&mut schemas);
    component::<TokenResponse>(&mut schemas);
    component::<LoggedOut>(&mut schemas);
    component::<SignedInUser>(&mut schemas);
    component::<SessionInfo>(&mut schemas);
    component::<SessionsEnded>(&mut schemas);
    component::<AccountDeleted>(&mut schemas);
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The access token of a sign-in or refresh: `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            ACCESS_COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                cookie.name(),
                "The access token in the HttpOnly cookie a sign-in sets for a page. A POST that \
                 carries a cookie must name this site in `Origin` (or `Referer`), else 403.",
            ))),
        )
        .security_scheme(
            REFRESH_COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                cookie.refresh_name(),
                "The refresh token in the HttpOnly cookie a sign-in sets for a page: with it \
                 alone, an endpoint that needs a session renews it on the way in (new cookies). \
                 A POST that carries a cookie must name this site in `Origin` (or `Referer`), \
                 else 403.",
            ))),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("authapp API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Accounts and sessions. POST bodies are JSON or form-encoded, with the same \
                     fields and the same answers. A browser's form post (`Accept: text/html`) is \
                     answered with a redirect (302) instead. Every failure is JSON \
                     `{\"error\": <code>, \"description\": <text>}` with the status its code \
                     calls for; 401 answers carry `WWW-Authenticate`, 429 and 503 `Retry-After`.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;

    fn schema_of(name: &str) -> serde_json::Value {
        let doc = serde_json::to_value(document(AuthCookie::new(false))).unwrap_or_default();
        doc["components"]["schemas"][name].clone()
    }

    /// The limits the document states are the ones the server enforces.
    #[test]
    fn documented_limits_are_the_enforced_ones() {
        for (body, field) in [
            ("RegisterBody", "password"),
            ("ChangePasswordBody", "new_password"),
        ] {
            let field = &schema_of(body)["properties"][field];
            assert_eq!(field["minLength"], validate::PASSWORD_MIN, "{body}");
            assert_eq!(field["maxLength"], validate::PASSWORD_MAX, "{body}");
        }
        let pattern = schema_of("RegisterBody")["properties"]["username"]["pattern"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(
            pattern.contains(&format!(
                "{{{},{}}}",
                validate::USERNAME_MIN,
                validate::USERNAME_MAX
            )),
            "{pattern}"
        );
        // The confirmations are the pages' business: not offered to API clients, still read.
        assert!(schema_of("RegisterBody")["properties"]
            .get("password_confirm")
            .is_none());
        assert_eq!(schema_of("RegisterBody")["additionalProperties"], false);
    }

    /// The device proof is part of the API: the field a sign-in takes, the one it answers, and
    /// the cookie, by the name this server gives it.
    #[test]
    fn the_device_proof_is_documented() {
        let doc = serde_json::to_value(document(AuthCookie::new(true))).unwrap_or_default();
        for schema in ["LoginBody", "TokenResponse"] {
            assert_eq!(
                doc["components"]["schemas"][schema]["properties"]["device_token"]["type"],
                serde_json::json!(["string", "null"]),
                "{schema}"
            );
        }
        let login = doc["paths"][Login::PATH]["post"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(login.contains("`__Host-device_token`"), "{login}");
        let form = endpoint(&Method::POST, Login::PATH).map(|e| {
            e.form_body(
                Encoding::Json,
                br#"{"username": "ann", "password": "p", "device_token": "dv1.x"}"#,
            )
        });
        assert!(
            matches!(&form, Some(Ok(Some(f))) if f == "username=ann&password=p&device_token=dv1.x"),
            "{:?}",
            form.map(|r| r.map_err(|e| e.description))
        );
    }

    #[test]
    fn content_types_are_read_as_http_says() {
        use Encoding::{Form, Json};
        for (value, expected) in [
            ("application/json", Some(Json)),
            ("application/json; charset=utf-8", Some(Json)),
            ("APPLICATION/JSON;CHARSET=\"UTF-8\"", Some(Json)),
            ("application/x-www-form-urlencoded", Some(Form)),
            (
                "application/x-www-form-urlencoded; charset=UTF-8",
                Some(Form),
            ),
            ("application/json; charset=iso-8859-1", None),
            ("application/jsonx", None),
            ("text/plain", None),
            ("multipart/form-data; boundary=x", None),
            ("", None),
        ] {
            assert_eq!(
                Encoding::of(Some(value.as_bytes()), false).ok(),
                expected,
                "{value}"
            );
        }
        assert_eq!(Encoding::of(Some(b"\xff"), false).ok(), None);
        assert_eq!(Encoding::of(None, true).ok(), Some(Form));
        assert_eq!(Encoding::of(None, false).ok(), None);
    }

    #[test]
    fn forms_must_be_utf8_once_decoded() {
        for ok in [
            &b"username=caf%C3%A9&password=x"[..],
            b"a=%",
            b"a=%zz%4",
            b"a=100%25+b",
            b"",
        ] {
            assert!(form_is_utf8(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"password=caf%E9"[..],
            b"a=%FF",
            b"a=%c3",
            b"\xff=1",
            b"a=%C3%28",
        ] {
            assert!(!form_is_utf8(bad), "{}", String::from_utf8_lossy(bad));
        }
        let read = endpoint(&Method::POST, Login::PATH)
            .map(|e| e.form_body(Encoding::Form, b"username=ann&password=caf%E9caf%E9"));
        assert!(matches!(
            read,
            Some(Err(ApiError {
                error: ErrorCode::BadRequest,
                ..
            }))
        ));
    }

    #[test]
    fn json_becomes_the_form_the_server_function_reads() {
        let login = endpoint(&Method::POST, Login::PATH).map(|e| {
            e.form_body(
                Encoding::Json,
                br#"{"username": "a b&c=d", "password": "p%w", "next": null}"#,
            )
        });
        let Some(Ok(Some(form))) = login else {
            panic!("{:?}", login.map(|r| r.map_err(|e| e.description)));
        };
        assert_eq!(form, "username=a+b%26c%3Dd&password=p%25w");
        let wrong = endpoint(&Method::POST, Login::PATH)
            .map(|e| e.form_body(Encoding::Json, br#"{"username": 1, "password": "x"}"#));
        assert!(matches!(
            wrong,
            Some(Err(ApiError {
                error: ErrorCode::BadRequest,
                ..
            }))
        ));
    }
}
