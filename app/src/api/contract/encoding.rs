//! The two encodings a POST body may have, and how a body is read: checked against the
//! endpoint's body type in either, and JSON re-encoded as the form its server function decodes.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

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

/// Reads a body as `B` (unknown fields, wrong types and duplicates refused), and for JSON
/// re-encodes it as the form of `F`, the server function's arguments.
pub(super) fn read_body<B, F>(encoding: Encoding, bytes: &[u8]) -> Result<Option<String>, ApiError>
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

/// The body of an endpoint that takes no fields: empty, `{}` or an empty form.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{contract::endpoint, Login};
    use crate::error::ErrorCode;
    use http::Method;
    use server_fn::ServerFn;

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
