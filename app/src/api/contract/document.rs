//! The OpenAPI 3.1 document of the API, made from its table ([`ENDPOINTS`]): one operation per
//! endpoint, each made of its request body, its answers and its security requirements, and the
//! components (schemas, security schemes) they refer to.

use http::Method;
use utoipa::{
    openapi::{
        header::{Header, HeaderBuilder},
        path::{HttpMethod, Operation, OperationBuilder, PathItem, PathsBuilder},
        request_body::{RequestBody, RequestBodyBuilder},
        response::Responses,
        schema::{AllOfBuilder, ObjectBuilder, Type},
        security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        },
        Components, ComponentsBuilder, ContentBuilder, Info, InfoBuilder, OpenApi, OpenApiBuilder,
        Ref, RefOr, Required, ResponseBuilder, ResponsesBuilder, Schema,
    },
    PartialSchema, ToSchema,
};

use super::{
    encoding::{FORM, JSON},
    endpoints::{Access, Body, Endpoint, ENDPOINTS},
};
use crate::{
    api::{
        AccountDeleted, LoggedOut, Login, Registered, SessionInfo, SessionsEnded, SignedInUser,
        TokenResponse,
    },
    auth::cookie::AuthCookie,
    error::{ApiError, ErrorCode},
};
use server_fn::ServerFn;

use ErrorCode as E;

/// `T`'s schema and those it refers to, for the document's components.
pub(super) fn component<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((T::name().into_owned(), T::schema()));
    T::schemas(out);
}

pub(super) fn answer<T: PartialSchema>() -> RefOr<Schema> {
    T::schema()
}

pub(super) fn reference<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
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
        let method = if e.method == Method::POST {
            HttpMethod::Post
        } else {
            HttpMethod::Get
        };
        paths = paths.path(
            e.path,
            PathItem::new(method, operation(e, cookie, &mut schemas)),
        );
    }
    component::<ApiError>(&mut schemas);
    component::<Registered>(&mut schemas);
    component::<TokenResponse>(&mut schemas);
    component::<LoggedOut>(&mut schemas);
    component::<SignedInUser>(&mut schemas);
    component::<SessionInfo>(&mut schemas);
    component::<SessionsEnded>(&mut schemas);
    component::<AccountDeleted>(&mut schemas);
    component::<crate::api::ResetRequested>(&mut schemas);
    component::<crate::api::EmailStatus>(&mut schemas);
    component::<crate::api::EmailConfirmed>(&mut schemas);
    component::<crate::api::Activity>(&mut schemas);
    component::<crate::api::ActivityEvent>(&mut schemas);
    OpenApiBuilder::new()
        .info(info())
        .paths(paths.build())
        .components(Some(components(cookie, schemas)))
        .build()
}

/// The operation of one endpoint; the schemas of its body are added to `schemas`.
fn operation(
    e: &Endpoint,
    cookie: AuthCookie,
    schemas: &mut Vec<(String, RefOr<Schema>)>,
) -> Operation {
    let mut op = OperationBuilder::new()
        .operation_id(Some(e.operation_id))
        .summary(Some(e.summary));
    if e.path == crate::api::ListActivity::PATH {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        op = op.parameter(
            ParameterBuilder::new()
                .name("before")
                .parameter_in(ParameterIn::Query)
                .required(utoipa::openapi::Required::False)
                .description(Some(
                    "The `next_before` of the page before (a whole number)",
                ))
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String)
                        .pattern(Some("^[1-9][0-9]{0,18}$")),
                )),
        );
    }
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
        (body.schemas)(schemas);
        op = op.request_body(Some(request_body(body)));
    }
    op = op.responses(responses(e));
    let security = security(e.access);
    if !security.is_empty() {
        op = op.securities(Some(security));
    }
    op.build()
}

/// A POST body: the same schema in either encoding.
fn request_body(body: &Body) -> RequestBody {
    let schema = || {
        ContentBuilder::new()
            .schema(Some(RefOr::<Schema>::Ref(Ref::from_schema_name((body
                .name)(
            )))))
            .build()
    };
    RequestBodyBuilder::new()
        .required(Some(if body.required {
            Required::True
        } else {
            Required::False
        }))
        .content(JSON, schema())
        .content(FORM, schema())
        .build()
}

/// The success answer, then one answer per error status with the codes it can carry (the
/// endpoint's own and those every endpoint can answer), and a POST's redirect for a page.
fn responses(e: &Endpoint) -> Responses {
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
    responses.build()
}

/// The ways an endpoint may be called, one of which is enough (the empty one: with none).
fn security(access: Access) -> Vec<SecurityRequirement> {
    match access {
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
    }
}

/// The schemas, and the security schemes by the names this server gives its cookies.
fn components(cookie: AuthCookie, schemas: Vec<(String, RefOr<Schema>)>) -> Components {
    ComponentsBuilder::new()
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
        .build()
}

fn info() -> Info {
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
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::contract::{endpoint, Encoding};
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
}
