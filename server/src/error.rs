//! The one error type of the HTTP surface, and the JSON extractor that reports its rejections
//! through it.
//!
//! Every failure becomes `{"error": {"code", "message"}}` with a status chosen here. Internal
//! errors are logged with their detail and answered with an opaque `internal_error`.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::error::ApiErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request body or parameters are malformed or break a rule.
    #[error("{message}")]
    Validation {
        code: &'static str,
        message: String,
        field: Option<&'static str>,
    },
    /// 401: no credentials, or credentials that are invalid, expired or revoked.
    #[error("authentication required")]
    Unauthorized,
    /// 401: a login with a wrong username or password (or, on the admin login, a non-admin:
    /// the two are indistinguishable on purpose).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 403 `forbidden_address`: a URL the gateway will not reach (a reserved address; a
    /// private one where that needs an opt-in).
    #[error("{0}")]
    ForbiddenAddress(String),
    /// 404: no such resource or route.
    #[error("{0}")]
    NotFound(&'static str),
    /// 404 with its own code: what the request names (a consent request, a connection
    /// attempt) is unknown, expired or used up.
    #[error("{message}")]
    Unknown { code: &'static str, message: String },
    /// 405: the route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with current state (duplicate name, setup already done).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413: the body is larger than `MAX_BODY_BYTES`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("expected an application/json body")]
    UnsupportedMediaType,
    /// 429: too many attempts; `retry_after` seconds go into `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
    /// 503: a dependency (the database) is not available.
    #[error("{0}")]
    Unavailable(&'static str),
    /// 504: the request took longer than `REQUEST_TIMEOUT_SECS`.
    #[error("request timed out")]
    Timeout,
    /// 500: a database error; the detail is logged, never returned.
    #[error("database error")]
    Db(#[from] sqlx::Error),
    /// 500: anything else unexpected; the detail is logged, never returned.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::Validation {
            code: "validation_failed",
            message: message.into(),
            field: Some(field),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) | ApiError::ForbiddenAddress(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::Unknown { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Db(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code clients branch on (docs/API.md lists them).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { code, .. }
            | ApiError::Unknown { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::TooManyRequests { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::ForbiddenAddress(_) => "forbidden_address",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout => "timeout",
            ApiError::Db(_) | ApiError::Internal(_) => "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Db(e) => tracing::error!(error = %e, "database error"),
            ApiError::Internal(e) => tracing::error!(error = format!("{e:#}"), "internal error"),
            _ => {}
        }
        let mut body = ApiErrorBody::new(self.code(), self.to_string());
        body.error.details = match &self {
            ApiError::Validation {
                field: Some(field), ..
            } => Some(serde_json::json!({ "field": field })),
            ApiError::TooManyRequests { retry_after, .. } => {
                Some(serde_json::json!({ "retry_after_seconds": retry_after }))
            }
            _ => None,
        };
        let mut response = (self.status_code(), axum::Json(body)).into_response();
        match self {
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        response
    }
}

/// A JSON body, read like `axum::Json` (an `application/json` or `+json` content type, the
/// body limit) with two differences: rejections answer with the API error envelope, and a
/// number written with a fraction or exponent that is a whole number (`30.0`, `3e1`) reads as
/// that integer, as JSON Schema's `integer` (and so the OpenAPI document) defines it. Struct
/// fields are still read strictly: a duplicate or misspelt key is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge);
            }
            Err(r) => {
                return Err(ApiError::Validation {
                    code: "invalid_json",
                    message: r.body_text(),
                    field: None,
                });
            }
        };
        // Every body of this API is an object; serde would also read a struct from an array.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::Validation {
                code: "invalid_body",
                message: "the body must be a JSON object".into(),
                field: None,
            });
        }
        // The body as sent; only when that does not fit the type is it read once more with its
        // whole numbers written as integers (so a value that reads as is, such as the console's
        // free-form arguments, is never rewritten).
        let first = read_json(&bytes);
        if matches!(
            first,
            Err(ApiError::Validation {
                code: "invalid_body",
                ..
            })
        ) && let std::borrow::Cow::Owned(text) = integral_numbers(&bytes)
        {
            return read_json(&text).map(AppJson);
        }
        first.map(AppJson)
    }
}

/// One strict reading of a JSON body into `T`: a syntax error is `invalid_json`, a value that
/// does not fit `T` `invalid_body` with the path of the first wrong field; nothing may follow.
/// A NUL (`\u0000`) in any string `T` reads is `invalid_body` too: Postgres text cannot hold
/// one, so the API takes none (the OpenAPI document's string patterns say so).
fn read_json<T: serde::de::DeserializeOwned>(text: &[u8]) -> Result<T, ApiError> {
    let mut reader = serde_json::Deserializer::from_slice(text);
    let syntax = |e: &serde_json::Error| ApiError::Validation {
        code: "invalid_json",
        message: format!("Failed to parse the request body as JSON: {e}"),
        field: None,
    };
    let value = match serde_path_to_error::deserialize(&mut reader) {
        Ok(value) => value,
        Err(e) if e.inner().classify() == serde_json::error::Category::Data => {
            return Err(ApiError::Validation {
                code: "invalid_body",
                message: format!("Failed to deserialize the JSON body into the target type: {e}"),
                field: None,
            });
        }
        Err(e) => return Err(syntax(e.inner())),
    };
    reader.end().map_err(|e| syntax(&e))?;
    if nul_read::<T>(text) {
        return Err(ApiError::Validation {
            code: "invalid_body",
            message: "text may not contain the NUL character (\\u0000)".into(),
            field: None,
        });
    }
    Ok(value)
}

/// Whether JSON text (read without error) has a `\u0000` escape, the only way a NUL gets into a
/// JSON string: a backslash always starts an escape there, so after one that is not `\u0000`
/// the next byte is skipped (`\\u0000` is a backslash and the text `u0000`).
pub fn escaped_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = json[i..].iter().position(|&b| b == b'\\') {
        let escape = i + at + 1;
        if json.get(escape..escape + 5) == Some(&b"u0000"[..]) {
            return true;
        }
        i = escape + 1;
        if i >= json.len() {
            return false;
        }
    }
    false
}

/// Whether reading `text` (JSON that reads as `T`) as `T` reads a NUL, in a key or a string
/// of anything but what `T` ignores (fields it does not know, which the schemas allow). Only a
/// body that has a NUL at all is read again, twice:
/// - its string values with each NUL written as a lone surrogate (`\udc00`): serde_json refuses
///   one in a string it reads but only skips one it ignores, so this is exact for values;
/// - as a tree without the fields `serde_ignored` reports as ignored, for keys (which serde
///   reads even to ignore them). A path it cannot follow leaves its part in place.
fn nul_read<T: serde::de::DeserializeOwned>(text: &[u8]) -> bool {
    if !escaped_nul(text) {
        return false;
    }
    if serde_json::from_slice::<T>(&values_nul_unreadable(text)).is_err() {
        return true;
    }
    let mut ignored: Vec<Vec<Step>> = Vec::new();
    let mut reader = serde_json::Deserializer::from_slice(text);
    let _ = serde_ignored::deserialize::<_, _, T>(&mut reader, |path| ignored.push(steps(&path)));
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(text) else {
        return true;
    };
    for path in &ignored {
        drop_at(&mut value, path);
    }
    holds_nul(&value)
}

/// `text` (valid JSON) with every `\u0000` in a string value (not a key) written `\udc00`,
/// which cannot pair with anything before it (a high surrogate there would have made the
/// string unreadable already).
fn values_nul_unreadable(text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'"' {
            i += 1;
            continue;
        }
        // A string from `i`: its NUL escapes, then whether a `:` follows (a key).
        let mut nuls = Vec::new();
        let mut j = i + 1;
        while j < text.len() && text[j] != b'"' {
            if text[j] == b'\\' {
                if text.get(j + 1..j + 6) == Some(&b"u0000"[..]) {
                    nuls.push(j + 2);
                }
                j += 2;
            } else {
                j += 1;
            }
        }
        let next = text[(j + 1).min(text.len())..]
            .iter()
            .find(|b| !b.is_ascii_whitespace());
        if next != Some(&b':') {
            for at in nuls {
                out[at..at + 4].copy_from_slice(b"dc00");
            }
        }
        i = j + 1;
    }
    out
}

enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &serde_ignored::Path<'_>) -> Vec<Step> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut steps = steps(parent);
            steps.push(Step::Index(*index));
            steps
        }
        Path::Map { parent, key } => {
            let mut steps = steps(parent);
            steps.push(Step::Key(key.clone()));
            steps
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => steps(parent),
    }
}

/// Takes out the member (key and value) or element at `path`, if it is there.
fn drop_at(value: &mut serde_json::Value, path: &[Step]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = value;
    for step in parents {
        let next = match step {
            Step::Key(key) => at.get_mut(key.as_str()),
            Step::Index(index) => at.get_mut(*index),
        };
        let Some(next) = next else {
            return;
        };
        at = next;
    }
    match (last, at) {
        (Step::Key(key), serde_json::Value::Object(map)) => {
            map.remove(key);
        }
        (Step::Index(index), serde_json::Value::Array(items)) => {
            if let Some(item) = items.get_mut(*index) {
                *item = serde_json::Value::Null;
            }
        }
        _ => {}
    }
}

fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Whether a raw path or query has a `%00` (a NUL once decoded; `%` always starts an escape).
fn encoded_nul(raw: &str) -> bool {
    raw.contains("%00")
}

/// `application/json` or `application/…+json`, as `axum::Json` requires.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The JSON text with every number that has a fraction or exponent but is whole, as decimal
/// arithmetic says (not a float's rounding: `0.99999999999999999999` stays), and within ±2^53,
/// written as an integer (`30.0`, `3e1`, `300e-1` → `30`; `-0.0` → `0`). Strings are left alone,
/// and so is every token that is not a JSON number (`01.0`, `1.`, `.5`): the parser refuses
/// those. Borrowed when there is nothing to rewrite.
pub(crate) fn integral_numbers(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len()
                    && matches!(text[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                if let Some(integer) = whole_number(&text[start..i]) {
                    let out = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
                    out.extend_from_slice(&text[copied..start]);
                    out.extend_from_slice(integer.as_bytes());
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    match out {
        Some(mut out) => {
            out.extend_from_slice(&text[copied.min(text.len())..]);
            std::borrow::Cow::Owned(out)
        }
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// The integer a JSON number token with a fraction or an exponent stands for, when it is whole
/// and within ±2^53; `None` for anything else (an integer token, a fraction, a token that is not
/// JSON's `-? (0|[1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`).
fn whole_number(token: &[u8]) -> Option<String> {
    const LIMIT: u64 = 1 << 53;
    let (negative, rest) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };
    let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (int, rest) = rest.split_at(int_len);
    if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
        return None;
    }
    let (frac, rest) = match rest.split_first() {
        Some((b'.', rest)) => {
            let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            rest.split_at(n)
        }
        _ => (&rest[..0], rest),
    };
    let exponent: i64 = match rest.split_first() {
        Some((b'e' | b'E', rest)) => {
            let (sign, digits) = match rest.split_first() {
                Some((b'-', d)) => (-1, d),
                Some((b'+', d)) => (1, d),
                _ => (1, rest),
            };
            if digits.is_empty() || digits.len() > 6 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            sign * std::str::from_utf8(digits).ok()?.parse::<i64>().ok()?
        }
        None if !frac.is_empty() => 0,
        _ => return None,
    };
    // value = digits × 10^scale, exactly.
    let digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    let scale = exponent - i64::try_from(frac.len()).ok()?;
    let significant = match digits.iter().position(|&d| d != b'0') {
        Some(first) => &digits[first..],
        None => return Some("0".into()),
    };
    let whole: &[u8] = if scale >= 0 {
        significant
    } else {
        let drop = usize::try_from(-scale).ok()?;
        if drop >= significant.len()
            || !significant[significant.len() - drop..]
                .iter()
                .all(|&d| d == b'0')
        {
            return None;
        }
        &significant[..significant.len() - drop]
    };
    let mut value: u64 = std::str::from_utf8(whole).ok()?.parse().ok()?;
    for _ in 0..scale.max(0) {
        value = value.checked_mul(10).filter(|v| *v <= LIMIT)?;
    }
    if value > LIMIT {
        return None;
    }
    Some(if negative && value != 0 {
        format!("-{value}")
    } else {
        value.to_string()
    })
}

impl<T: serde::Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejections answer with the API error envelope.
#[derive(Debug, Clone, Copy)]
pub struct AppPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for AppPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        if encoded_nul(parts.uri.path()) {
            return Err(ApiError::Validation {
                code: "invalid_path",
                message: "the path may not contain the NUL character (%00)".into(),
                field: None,
            });
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| AppPath(v))
            .map_err(|rejection| ApiError::Validation {
                code: "invalid_path",
                message: rejection.body_text(),
                field: None,
            })
    }
}

/// `axum::extract::Query` whose rejections answer with the API error envelope.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for AppQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(encoded_nul) {
            return Err(ApiError::Validation {
                code: "invalid_query",
                message: "a parameter may not contain the NUL character (%00)".into(),
                field: None,
            });
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| AppQuery(v))
            .map_err(|rejection| ApiError::Validation {
                code: "invalid_query",
                message: rejection.body_text(),
                field: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::integral_numbers;

    fn rewritten(text: &str) -> String {
        String::from_utf8(integral_numbers(text.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn whole_numbers_read_as_integers_and_nothing_else_changes() {
        for (text, expected) in [
            (r#"{"a": 30.0}"#, r#"{"a": 30}"#),
            (
                r#"{"a": 3e1, "b": -2.50e1, "c": 1E2}"#,
                r#"{"a": 30, "b": -25, "c": 100}"#,
            ),
            (r#"{"a": -0.0}"#, r#"{"a": 0}"#),
            (r#"[1.0,2.00,3]"#, r#"[1,2,3]"#),
            (r#"{"a": 9007199254740992.0}"#, r#"{"a": 9007199254740992}"#),
            // Not whole, too large to be exact, or inside a string: unchanged.
            (r#"{"a": 2.5}"#, r#"{"a": 2.5}"#),
            (
                r#"{"a": 9007199254740994.0}"#,
                r#"{"a": 9007199254740994.0}"#,
            ),
            (r#"{"a": 1e400}"#, r#"{"a": 1e400}"#),
            (
                r#"{"2.0": "3.0 \" 4.0", "b": "\\"}"#,
                r#"{"2.0": "3.0 \" 4.0", "b": "\\"}"#,
            ),
            (r#"{"a": 1.0.0}"#, r#"{"a": 1.0.0}"#),
            (r#"{"a": "unterminated 1.0"#, r#"{"a": "unterminated 1.0"#),
            // Decimal arithmetic, not a float's rounding.
            (
                r#"{"a": 0.99999999999999999999}"#,
                r#"{"a": 0.99999999999999999999}"#,
            ),
            (
                r#"{"a": 9007199254740993.0}"#,
                r#"{"a": 9007199254740993.0}"#,
            ),
            (
                r#"{"a": 300e-1, "b": 1.50e1, "c": 12.000e-2, "d": 0e5}"#,
                r#"{"a": 30, "b": 15, "c": 12.000e-2, "d": 0}"#,
            ),
            // Not JSON numbers: left for the parser to refuse.
            (
                r#"{"a": 01.0, "b": 1., "c": -.0, "d": 1.e5, "e": 00.0, "f": 1e, "g": --1.0}"#,
                r#"{"a": 01.0, "b": 1., "c": -.0, "d": 1.e5, "e": 00.0, "f": 1e, "g": --1.0}"#,
            ),
        ] {
            assert_eq!(rewritten(text), expected, "{text}");
        }
        assert!(matches!(
            integral_numbers(br#"{"a": 1, "b": "2.0"}"#),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            (-1000i64..1000).prop_map(|n| json!(n as f64)),
            ".{0,12}".prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Equal as JSON Schema compares numbers (by value): `out` is the rewrite's reading and
    /// `plain` serde_json's reading of the same text, `original` the value serialised to it.
    /// A number the rewrite made an integer is its token's exact value, which serde_json's
    /// default float parser (not correctly rounded) can miss by an ulp (found by this test:
    /// `-3607761096618926.0`), so such a number is compared with the value serialised, which
    /// the token (ryu's shortest form) stands for exactly.
    fn same(original: &Value, plain: &Value, out: &Value) -> bool {
        match (original, plain, out) {
            (Value::Number(v), Value::Number(x), Value::Number(y)) => {
                x.as_f64() == y.as_f64() || (!y.is_f64() && v.as_f64() == y.as_f64())
            }
            (Value::Array(v), Value::Array(x), Value::Array(y)) => {
                v.len() == x.len()
                    && x.len() == y.len()
                    && v.iter().zip(x).zip(y).all(|((v, x), y)| same(v, x, y))
            }
            (Value::Object(v), Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter().all(|(k, xv)| match (v.get(k), y.get(k)) {
                        (Some(vv), Some(yv)) => same(vv, xv, yv),
                        _ => false,
                    })
            }
            _ => plain == out,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

        /// Any JSON document reads as the same values after the rewrite (strings untouched,
        /// numbers equal), and a whole-number float small enough to be exact becomes an integer.
        #[test]
        fn the_rewrite_keeps_every_value(value in json_value()) {
            // Compared with what the text reads as without the rewrite (serde_json does not
            // promise that every float survives a round trip).
            for text in [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()] {
                let plain: Value = serde_json::from_str(&text).unwrap();
                let out: Value = serde_json::from_slice(&integral_numbers(text.as_bytes())).unwrap();
                prop_assert!(same(&value, &plain, &out), "{text}");
            }
        }

        #[test]
        fn whole_floats_become_integers(n in -9_007_199_254_740_992i64..=9_007_199_254_740_992) {
            let text = format!("{{\"n\": {}.0}}", n);
            let out: Value = serde_json::from_slice(&integral_numbers(text.as_bytes())).unwrap();
            prop_assert_eq!(out["n"].as_i64(), Some(n));
        }

        /// Whatever number token: rewritten only to the integer its decimal value is.
        #[test]
        fn only_whole_values_are_rewritten(
            int in "-?(0|[1-9][0-9]{0,20})",
            frac in proptest::option::of("[0-9]{1,22}"),
            exp in proptest::option::of("[eE][+-]?[0-9]{1,2}"),
        ) {
            let token = format!("{int}{}{}", frac.as_ref().map(|f| format!(".{f}")).unwrap_or_default(), exp.clone().unwrap_or_default());
            let text = format!("{{\"n\": {token}}}");
            let out = integral_numbers(text.as_bytes());
            let Value::Number(n) = serde_json::from_slice::<Value>(&out).unwrap()["n"].clone() else {
                panic!("{token}");
            };
            match (n.as_i64(), frac.is_some() || exp.is_some()) {
                (Some(i), true) => {
                    // The token was whole: its float is that integer, and no digit after the
                    // point (scaled by the exponent) was other than 0.
                    prop_assert_eq!(token.parse::<f64>().unwrap(), i as f64, "{}", token);
                    prop_assert!(i.unsigned_abs() <= 1 << 53, "{}", token);
                }
                (None, true) => prop_assert_eq!(&*out, text.as_bytes(), "{}", token),
                _ => {}
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = integral_numbers(&bytes);
        }
    }

    /// One piece of a JSON string's text: a plain character or an escape.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => any::<char>()
                .prop_filter("plain", |c| *c != '"' && *c != '\\' && !c.is_control())
                .prop_map(String::from),
            1 => prop::sample::select(vec![
                r"\\", r#"\""#, r"\/", r"\n", r"\t", r"\u0000", r"\u0041", r"\u00e9",
                r"\ud83d\ude00", r"\\u0000", r"\u000A", r"\u0001",
            ])
            .prop_map(String::from),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// `escaped_nul` finds a NUL exactly when serde_json reads one into a string (object
        /// keys included), whatever escapes surround it.
        #[test]
        fn escaped_nul_agrees_with_serde(
            key in proptest::collection::vec(piece(), 0..6),
            value in proptest::collection::vec(piece(), 0..12),
        ) {
            let (key, value) = (key.concat(), value.concat());
            let text = format!(r#"{{"{key}": ["{value}", 1, null]}}"#);
            let read: std::collections::BTreeMap<String, Value> =
                serde_json::from_str(&text).unwrap();
            let nul = read.iter().any(|(k, v)| {
                k.contains('\0') || v[0].as_str().is_some_and(|s| s.contains('\0'))
            });
            prop_assert_eq!(super::escaped_nul(text.as_bytes()), nul, "{}", text);
        }
    }

    #[test]
    fn escaped_nul_cases() {
        for (text, nul) in [
            (r#"{"a": "\u0000"}"#, true),
            (r#"{"a\u0000": 1}"#, true),
            (r#"{"a": "\\u0000"}"#, false),
            (r#"{"a": "\\\u0000"}"#, true),
            (r#"{"a": "u0000"}"#, false),
            (r#"{"a": "\u00000"}"#, true),
            (r#"{"a": "\"}"#, false),
            ("\\", false),
        ] {
            assert_eq!(super::escaped_nul(text.as_bytes()), nul, "{text}");
        }
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        list: Option<Vec<String>>,
        args: Option<Value>,
        inner: Option<Inner>,
        kind: Option<Kind>,
        credential: Option<shared::servers::CredentialInput>,
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        k: String,
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Plain,
        With { k: String },
    }

    /// A NUL counts where the type reads it (its own fields, free-form values, lists,
    /// variants), not in fields it ignores.
    #[test]
    fn a_nul_counts_only_in_what_is_read() {
        for (text, nul) in [
            (r#"{"name": "a"}"#, false),
            (r#"{"name": "a\u0000"}"#, true),
            (r#"{"name": "a", "unknown\u0000": 1}"#, false),
            (r#"{"name": "a", "extra": {"x": ["\u0000"]}}"#, false),
            (r#"{"name": "a", "args": {"x": "\u0000"}}"#, true),
            (r#"{"name": "a", "args": {"\u0000": 1}}"#, true),
            (r#"{"name": "a", "list": ["b", "\u0000"]}"#, true),
            (
                r#"{"name": "a", "inner": {"k": "v", "zz": "\u0000"}}"#,
                false,
            ),
            (r#"{"name": "a", "inner": {"k": "\u0000"}}"#, true),
            (r#"{"name": "a", "kind": {"with": {"k": "\u0000"}}}"#, true),
            // serde_ignored's path leaves out the variant's name: not followed, so it counts.
            (
                r#"{"name": "a", "kind": {"with": {"k": "v", "zz": "\u0000"}}}"#,
                true,
            ),
            // Nor can an ignored field named like the variant hide what is read.
            (
                r#"{"name": "a", "kind": {"with": {"k": "\u0000", "with": 0}}}"#,
                true,
            ),
            // A lone surrogate after the NUL: the NUL is still refused where it is read.
            (r#"{"name": "a", "args": {"x": "\u0000\udc00"}}"#, true),
            (r#"{"name": "a", "list": ["\u0000\u0000"]}"#, true),
            (r#"{"name": "a", "yy": {"\u0000": "\u0000"}}"#, false),
            // A lone surrogate (which serde_json skips where ignored) makes the tree unreadable:
            // in doubt, the NUL counts.
            (r#"{"name": "a", "zz": "\ud800\u0000"}"#, true),
            (r#"{"name": "a", "kind": "plain", "z": "\\u0000"}"#, false),
            (
                r#"{"name": "a", "credential": {"type": "bearer", "token": "\u0000"}}"#,
                true,
            ),
            (
                r#"{"name": "a", "credential": {"type": "bearer", "token": "t", "z": "\u0000"}}"#,
                false,
            ),
        ] {
            assert_eq!(super::nul_read::<Body>(text.as_bytes()), nul, "{text}");
        }
    }
}
