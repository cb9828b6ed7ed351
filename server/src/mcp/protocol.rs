//! MCP/JSON-RPC vocabulary: protocol versions, header and `_meta` names, error codes, JSON-RPC
//! error bodies and `Mcp-*` header values. Reading a client's message is `message.rs`.

use serde_json::{Value, json};

pub const LATEST_VERSION: &str = "2026-07-28";
/// Versions the gateway speaks to clients, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "2026-07-28",
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];
/// The newest handshake-era version (the one the gateway offers backends in `initialize`).
pub const LATEST_HANDSHAKE_VERSION: &str = "2025-11-25";
/// Assumed when a handshake-era request carries no `MCP-Protocol-Version`.
pub const DEFAULT_VERSION: &str = "2025-03-26";

pub const H_SESSION: &str = "mcp-session-id";
pub const H_VERSION: &str = "mcp-protocol-version";
pub const H_METHOD: &str = "mcp-method";
pub const H_NAME: &str = "mcp-name";
pub const H_PARAM_PREFIX: &str = "mcp-param-";
pub const H_LAST_EVENT_ID: &str = "last-event-id";

pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// JSON-RPC / MCP error codes the gateway answers with.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// Authentication required or failed.
    pub const UNAUTHORIZED: i64 = -32001;
    /// Authenticated but not allowed (server, tool, origin).
    pub const FORBIDDEN: i64 = -32003;
    /// No such server, or unknown/expired session.
    pub const NOT_FOUND: i64 = -32004;
    /// The request or response exceeds the configured size limit.
    pub const TOO_LARGE: i64 = -32005;
    /// Over a rate limit; `data.retryAfterSeconds` says when to try again.
    pub const RATE_LIMITED: i64 = -32029;
    /// `Mcp-Method`/`Mcp-Name` headers disagree with the body (2026-07-28).
    pub const HEADER_MISMATCH: i64 = -32020;
    /// Unsupported `MCP-Protocol-Version` (2026-07-28).
    pub const UNSUPPORTED_VERSION: i64 = -32022;
    /// The backend could not be reached.
    pub const BACKEND_UNAVAILABLE: i64 = -32050;
    /// The backend did not answer in time.
    pub const BACKEND_TIMEOUT: i64 = -32051;
    /// The backend answered with an error status or something that is not MCP.
    pub const BACKEND_ERROR: i64 = -32052;
}

/// A JSON-RPC error response body for `id` (raw JSON; `null` when unknown).
pub fn error_body(id: Option<&str>, code: i64, message: &str, data: Option<Value>) -> String {
    let id: Value = id
        .and_then(|raw| serde_json::from_str(raw).ok())
        .unwrap_or(Value::Null);
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error }).to_string()
}

/// Decodes an `Mcp-*` header value, which 2026-07-28 base64-wraps (`=?base64?…?=`) when it is
/// not plain ASCII.
pub fn decode_header_value(raw: &str) -> Option<String> {
    use base64::Engine;
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values() {
        assert_eq!(decode_header_value("echo").as_deref(), Some("echo"));
        assert_eq!(
            decode_header_value("=?base64?w6ljaG8=?=").as_deref(),
            Some("écho")
        );
        assert_eq!(decode_header_value("=?base64?!!?="), None);
    }

    #[test]
    fn error_bodies_echo_the_id() {
        let body: Value =
            serde_json::from_str(&error_body(Some("\"x\""), -32004, "nope", None)).unwrap();
        assert_eq!(body["id"], "x");
        assert_eq!(body["error"]["code"], -32004);
        let body: Value =
            serde_json::from_str(&error_body(None, -32700, "bad", Some(json!({"a": 1})))).unwrap();
        assert_eq!(body["id"], Value::Null);
        assert_eq!(body["error"]["data"]["a"], 1);
    }
}
