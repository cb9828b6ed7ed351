//! The parts of MCP/JSON-RPC the gateway reads: the envelope of a message (never the whole
//! payload), protocol versions, header names, and JSON-RPC error bodies.

use serde::Deserialize;
use serde_json::value::RawValue;
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

/// The fields of one JSON-RPC message that routing, authorization and logging need.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ParamsPeek {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(rename = "protocolVersion", default)]
    pub protocol_version: Option<String>,
    #[serde(rename = "_meta", default)]
    pub meta: Option<MetaPeek>,
    /// `initialize`'s client.
    #[serde(rename = "clientInfo", default)]
    pub client_info: Option<NamePeek>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NamePeek {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct MetaPeek {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", default)]
    pub protocol_version: Option<String>,
    #[serde(rename = "progressToken", default)]
    pub progress_token: Option<Value>,
    /// A 2026-07-28 request's client.
    #[serde(rename = "io.modelcontextprotocol/clientInfo", default)]
    pub client_info: Option<NamePeek>,
}

/// What kind of message a body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// A parsed client message: its envelope fields, owned.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    /// The raw JSON of the id (a number or a string), for echoing in errors.
    pub id: Option<String>,
    pub method: Option<String>,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read).
    pub name: Option<String>,
    /// `params.name` only.
    pub tool: Option<String>,
    pub init_version: Option<String>,
    pub meta_version: Option<String>,
    /// The client's name (`initialize`'s clientInfo, or a 2026-07-28 request's `_meta`), for
    /// activity records; at most 100 characters.
    pub client_name: Option<String>,
}

impl Message {
    pub fn parse(body: &[u8]) -> Result<Message, (i64, &'static str)> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            return Err((
                code::INVALID_REQUEST,
                "JSON-RPC batches are not supported; send one message per request",
            ));
        }
        let env: Envelope<'_> = serde_json::from_slice(body)
            .map_err(|_| (code::PARSE_ERROR, "the body is not a JSON-RPC message"))?;
        let kind = match (
            &env.method,
            env.id.is_some(),
            env.result.is_some() || env.error.is_some(),
        ) {
            (Some(_), true, _) => Kind::Request,
            (Some(_), false, _) => Kind::Notification,
            (None, true, true) => Kind::Response,
            _ => {
                return Err((
                    code::INVALID_REQUEST,
                    "not a JSON-RPC request, notification or response",
                ));
            }
        };
        let params: ParamsPeek = env
            .params
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or_default();
        let method = env.method.clone();
        let name = match method.as_deref() {
            Some("tools/call" | "prompts/get") => params.name.clone(),
            Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => {
                params.uri.clone()
            }
            _ => None,
        };
        let tool = (method.as_deref() == Some("tools/call"))
            .then(|| params.name.clone())
            .flatten();
        let (meta_version, meta_client) = match params.meta {
            Some(m) => (m.protocol_version, m.client_info.and_then(|c| c.name)),
            None => (None, None),
        };
        let client_name = params
            .client_info
            .and_then(|c| c.name)
            .or(meta_client)
            .map(|n| n.chars().take(100).collect());
        Ok(Message {
            kind,
            id: env.id.map(|id| id.get().to_string()),
            method,
            name,
            tool,
            init_version: params.protocol_version,
            meta_version,
            client_name,
        })
    }

    pub fn is(&self, method: &str) -> bool {
        self.method.as_deref() == Some(method)
    }
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
    fn envelopes() {
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#).unwrap();
        assert_eq!(m.kind, Kind::Request);
        assert_eq!(m.id.as_deref(), Some("7"));
        assert_eq!(m.tool.as_deref(), Some("echo"));
        assert_eq!(m.name.as_deref(), Some("echo"));
        let m =
            Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(m.kind, Kind::Notification);
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(m.kind, Kind::Response);
        assert_eq!(m.id.as_deref(), Some("\"a\""));
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#).unwrap();
        assert_eq!(m.init_version.as_deref(), Some("2025-06-18"));
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"clientInfo":{"name":"claude"}}}"#).unwrap();
        assert_eq!(m.client_name.as_deref(), Some("claude"));
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#).unwrap();
        assert_eq!(m.name.as_deref(), Some("file:///a"));
        assert_eq!(m.meta_version.as_deref(), Some("2026-07-28"));
        assert!(Message::parse(b"[{}]").is_err());
        assert!(Message::parse(b"{nope").is_err());
        assert!(Message::parse(br#"{"jsonrpc":"2.0"}"#).is_err());
    }

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
