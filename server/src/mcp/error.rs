//! `McpError`: the one error type of the MCP surfaces (`/mcp/{server}`, `/mcp`). Each kind has
//! one HTTP status and one JSON-RPC code (single matches below); the response is a JSON-RPC
//! error body echoing the request's id, with `WWW-Authenticate` or `Retry-After` where the kind
//! needs it. Internal errors are logged once, here, and answered without detail.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::mcp::backend::BackendError;
use crate::mcp::inspect;
use crate::mcp::message::Malformed;
use crate::mcp::protocol::{self, code};
use crate::ratelimit::Limited;

#[derive(Debug)]
pub struct McpError {
    /// The request's id as JSON text (`None` before the body was read, or for notifications).
    pub id: Option<String>,
    pub kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    /// 401 + `WWW-Authenticate` (`challenge`: the protected-resource metadata to sign in with).
    Unauthorized { challenge: String },
    /// 403: a browser `Origin` that is not allowed.
    OriginRejected,
    /// 403: authenticated, but refused by the identity rules (the reason).
    Forbidden(&'static str),
    /// 404 + -32004: no such (enabled) server.
    NoSuchServer,
    /// 404 + -32004: an unknown or expired session, or another user's.
    SessionNotFound,
    /// 404 + -32004: the backend session that sent a request to the client is gone.
    AskerGone,
    /// 400 + -32600: no session, and not a 2026-07-28 request.
    MissingSession,
    /// 400 + -32600: a client response to no request of this session.
    UnknownResponse,
    /// 405 + `Allow: POST` (the reason).
    MethodNotAllowed(&'static str),
    /// 409: a stream is already open for this session.
    StreamOpen,
    /// 413 + -32005: the request exceeds `MCP_MAX_REQUEST_BYTES`.
    TooLarge,
    /// 408 + -32600: the request body did not arrive within `REQUEST_TIMEOUT_SECS`.
    BodyTimeout,
    /// 400 + -32020: `Mcp-Method`/`Mcp-Name` disagree with the body (which one).
    HeaderMismatch(&'static str),
    /// 200 + a JSON-RPC error: a request the aggregated endpoint cannot route (unknown method,
    /// name or URI, invalid params).
    Refused { code: i64, message: String },
    /// 400 (404 + -32601 for an unknown method of a 2026-07-28 request): a message the gateway
    /// cannot read unambiguously.
    Malformed { malformed: Malformed, modern: bool },
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 400 + -32022: an `MCP-Protocol-Version` the gateway does not serve; `data` lists the
    /// versions it does (as `server/discover` does) and echoes the one requested.
    UnsupportedVersion { requested: String },
    /// 403 + `WWW-Authenticate: Bearer error="insufficient_scope"`: an OAuth token whose scope
    /// does not cover the request. `metadata` is the protected-resource metadata URL.
    InsufficientScope { metadata: String },
    /// The caller may not use this server: 403 where the server is the whole endpoint
    /// (`/mcp/{server}`), 200 + -32003 where it is one of several (`/mcp`).
    NoAccess { whole_endpoint: bool },
    /// 200 + -32003: a tool rule denies the tool.
    ToolDenied,
    /// 200 + -32003: the tool's definition changed (or the tool is new) and waits for an
    /// admin's approval (tool pinning under `quarantine`).
    ToolQuarantined,
    /// 429 + `Retry-After`: over a rate limit.
    RateLimited(Limited),
    /// 200 + `inspect::BLOCKED`: the payload rules block the call.
    Blocked,
    /// 502/504: the backend failed.
    Backend(BackendError),
    /// 500: logged here, answered without detail.
    Internal(anyhow::Error),
}

impl McpError {
    pub fn new(id: Option<&str>, kind: ErrorKind) -> McpError {
        McpError {
            id: id.map(str::to_string),
            kind,
        }
    }

    /// A message (of a 2026-07-28 request when `modern`) refused for `malformed`.
    pub fn malformed(id: Option<&str>, malformed: Malformed, modern: bool) -> McpError {
        McpError::new(id, ErrorKind::Malformed { malformed, modern })
    }

    pub fn status(&self) -> StatusCode {
        match &self.kind {
            ErrorKind::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ErrorKind::OriginRejected | ErrorKind::Forbidden(_) => StatusCode::FORBIDDEN,
            ErrorKind::NoSuchServer | ErrorKind::SessionNotFound | ErrorKind::AskerGone => {
                StatusCode::NOT_FOUND
            }
            ErrorKind::MissingSession
            | ErrorKind::UnknownResponse
            | ErrorKind::HeaderMismatch(_) => StatusCode::BAD_REQUEST,
            ErrorKind::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::StreamOpen => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Refused { .. } => StatusCode::OK,
            ErrorKind::Malformed { malformed, modern } => {
                if *modern && malformed.code == code::METHOD_NOT_FOUND {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::BAD_REQUEST
                }
            }
            ErrorKind::UnsupportedVersion { .. } => StatusCode::BAD_REQUEST,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            ErrorKind::NoAccess {
                whole_endpoint: true,
            } => StatusCode::FORBIDDEN,
            ErrorKind::NoAccess {
                whole_endpoint: false,
            }
            | ErrorKind::ToolDenied
            | ErrorKind::ToolQuarantined
            | ErrorKind::Blocked => StatusCode::OK,
            ErrorKind::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Backend(BackendError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Backend(_) => StatusCode::BAD_GATEWAY,
            ErrorKind::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> i64 {
        match &self.kind {
            ErrorKind::Unauthorized { .. } => code::UNAUTHORIZED,
            ErrorKind::OriginRejected | ErrorKind::Forbidden(_) => code::FORBIDDEN,
            ErrorKind::NoSuchServer | ErrorKind::SessionNotFound | ErrorKind::AskerGone => {
                code::NOT_FOUND
            }
            ErrorKind::MissingSession
            | ErrorKind::UnknownResponse
            | ErrorKind::MethodNotAllowed(_)
            | ErrorKind::StreamOpen
            | ErrorKind::BodyTimeout => code::INVALID_REQUEST,
            ErrorKind::TooLarge => code::TOO_LARGE,
            ErrorKind::HeaderMismatch(_) => code::HEADER_MISMATCH,
            ErrorKind::Refused { code, .. } => *code,
            ErrorKind::Malformed { malformed, .. } => malformed.code,
            ErrorKind::UnsupportedVersion { .. } => code::UNSUPPORTED_VERSION,
            ErrorKind::UnsupportedMediaType => code::INVALID_REQUEST,
            ErrorKind::InsufficientScope { .. }
            | ErrorKind::NoAccess { .. }
            | ErrorKind::ToolDenied
            | ErrorKind::ToolQuarantined => code::FORBIDDEN,
            ErrorKind::RateLimited(_) => code::RATE_LIMITED,
            ErrorKind::Blocked => inspect::BLOCKED,
            ErrorKind::Backend(e) => e.code(),
            ErrorKind::Internal(_) => code::BACKEND_ERROR,
        }
    }

    /// The activity record's status for a refused request.
    pub fn label(&self) -> &'static str {
        match &self.kind {
            ErrorKind::Unauthorized { .. } => "unauthorized",
            ErrorKind::OriginRejected | ErrorKind::Forbidden(_) => "forbidden",
            ErrorKind::NoSuchServer => "no_such_server",
            ErrorKind::SessionNotFound => "session_not_found",
            ErrorKind::AskerGone => "not_found",
            ErrorKind::MissingSession => "missing_session",
            ErrorKind::UnknownResponse => "invalid_request",
            ErrorKind::MethodNotAllowed(_) => "method_not_allowed",
            ErrorKind::StreamOpen => "conflict",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::BodyTimeout => "timeout",
            ErrorKind::HeaderMismatch(_) => "header_mismatch",
            ErrorKind::Refused { .. } => "refused",
            ErrorKind::Malformed { .. } => "malformed",
            ErrorKind::UnsupportedVersion { .. } => "unsupported_version",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::InsufficientScope { .. } => "insufficient_scope",
            ErrorKind::NoAccess { .. } | ErrorKind::ToolDenied => "access_denied",
            ErrorKind::ToolQuarantined => "tool_quarantined",
            ErrorKind::RateLimited(_) => "rate_limited",
            ErrorKind::Blocked => "blocked",
            ErrorKind::Backend(e) => e.label(),
            ErrorKind::Internal(_) => "internal_error",
        }
    }

    fn message(&self) -> String {
        match &self.kind {
            ErrorKind::Unauthorized { .. } => "authentication required".into(),
            ErrorKind::OriginRejected => "origin not allowed".into(),
            ErrorKind::Forbidden(reason)
            | ErrorKind::MethodNotAllowed(reason)
            | ErrorKind::HeaderMismatch(reason) => (*reason).into(),
            ErrorKind::NoSuchServer => "no such MCP server".into(),
            ErrorKind::SessionNotFound => "session not found; initialize again".into(),
            ErrorKind::AskerGone => "the backend session that asked is gone".into(),
            ErrorKind::MissingSession => {
                "missing Mcp-Session-Id: send initialize first, or use MCP-Protocol-Version 2026-07-28".into()
            }
            ErrorKind::UnknownResponse => "a response to no request of this session".into(),
            ErrorKind::StreamOpen => "a stream is already open for this session".into(),
            ErrorKind::TooLarge => "request body exceeds MCP_MAX_REQUEST_BYTES".into(),
            ErrorKind::BodyTimeout => "the request body did not arrive in time".into(),
            ErrorKind::Refused { message, .. } => message.clone(),
            ErrorKind::Malformed { malformed, .. } => malformed.reason.to_string(),
            ErrorKind::UnsupportedVersion { .. } => "unsupported MCP-Protocol-Version".into(),
            ErrorKind::UnsupportedMediaType => "Content-Type must be application/json".into(),
            ErrorKind::InsufficientScope { .. } => {
                "the token's scope does not allow this request".into()
            }
            ErrorKind::NoAccess { .. } => "you do not have access to this MCP server".into(),
            ErrorKind::ToolDenied => "you are not allowed to call this tool".into(),
            ErrorKind::ToolQuarantined => {
                "this tool's definition changed or is new and awaits an administrator's approval"
                    .into()
            }
            ErrorKind::RateLimited(_) => "rate limit exceeded; retry later".into(),
            ErrorKind::Blocked => "the call was blocked by the gateway's payload rules".into(),
            ErrorKind::Backend(e) => e.to_string(),
            ErrorKind::Internal(_) => "internal error".into(),
        }
    }

    fn data(&self) -> Option<Value> {
        match &self.kind {
            ErrorKind::UnsupportedVersion { requested } => {
                Some(json!({ "supported": protocol::SUPPORTED_VERSIONS, "requested": requested }))
            }
            ErrorKind::RateLimited(limited) => Some(
                json!({ "retryAfterSeconds": retry_after_secs(limited), "scope": limited.scope }),
            ),
            _ => None,
        }
    }
}

impl std::fmt::Display for McpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

fn retry_after_secs(limited: &Limited) -> u64 {
    limited.retry_after.as_secs_f64().ceil().max(1.0) as u64
}

impl McpError {
    /// The JSON-RPC error message (also sent as an SSE event when a stream fails midway).
    pub fn body(&self) -> String {
        protocol::error_body(
            self.id.as_deref(),
            self.code(),
            &self.message(),
            self.data(),
        )
    }
}

impl IntoResponse for McpError {
    fn into_response(self) -> Response {
        if let ErrorKind::Internal(e) = &self.kind {
            tracing::error!(error = format!("{e:#}"), "MCP request failed");
        }
        let body = self.body();
        let mut res = (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        match &self.kind {
            ErrorKind::Unauthorized { challenge } => {
                if let Ok(value) = HeaderValue::from_str(challenge) {
                    res.headers_mut().insert(header::WWW_AUTHENTICATE, value);
                }
            }
            ErrorKind::MethodNotAllowed(_) => {
                res.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            ErrorKind::RateLimited(limited) => {
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(limited)),
                );
            }
            ErrorKind::InsufficientScope { metadata } => {
                let challenge = format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{metadata}\"",
                    crate::oauth::SCOPE_FULL,
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    res.headers_mut().insert(header::WWW_AUTHENTICATE, value);
                }
            }
            _ => {}
        }
        res
    }
}
