//! A minimal, fast MCP backend for benchmarking only: `echo` and `add` tools, JSON or SSE
//! responses, handshake-era sessions and 2026-07-28 stateless requests, and GET streams that
//! stay open (for the open-streams memory measurement).
//!
//! Usage: bench-backend <port> [json|sse]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use serde_json::{Value, json};

#[derive(Clone)]
struct Backend {
    sse: bool,
    sessions: Arc<AtomicU64>,
}

const TOOLS: &str = r#"[{"name":"echo","description":"Echo the text back","inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}},{"name":"add","description":"Add two integers","inputSchema":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}}]"#;

fn reply(backend: &Backend, id: &Value, result: Value, session: Option<String>) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    let mut res = if backend.sse {
        (
            [(header::CONTENT_TYPE, "text/event-stream")],
            format!("event: message\ndata: {body}\n\n"),
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    if let Some(session) = session.and_then(|s| HeaderValue::from_str(&s).ok()) {
        res.headers_mut().insert("mcp-session-id", session);
    }
    res
}

async fn handle_post(State(backend): State<Backend>, _headers: HeaderMap, body: Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(id) = message.get("id") else {
        return StatusCode::ACCEPTED.into_response();
    };
    let params = &message["params"];
    match message["method"].as_str().unwrap_or_default() {
        "initialize" => {
            let n = backend.sessions.fetch_add(1, Ordering::Relaxed);
            let version = params["protocolVersion"].as_str().unwrap_or("2025-11-25");
            reply(
                &backend,
                id,
                json!({"protocolVersion": version, "capabilities": {"tools": {}},
                       "serverInfo": {"name": "bench-backend", "version": "1"}}),
                Some(format!("bench-session-{n}")),
            )
        }
        "server/discover" => reply(
            &backend,
            id,
            json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
                   "resultType": "complete",
                   "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "bench-backend", "version": "1"}}}),
            None,
        ),
        "tools/list" => reply(
            &backend,
            id,
            json!({"tools": serde_json::from_str::<Value>(TOOLS).unwrap_or(Value::Null),
                   "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}),
            None,
        ),
        "tools/call" => {
            let args = &params["arguments"];
            let text = match params["name"].as_str() {
                Some("add") => (args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0)).to_string(),
                _ => args["text"].as_str().unwrap_or_default().to_string(),
            };
            reply(
                &backend,
                id,
                json!({"content": [{"type": "text", "text": text}], "isError": false, "resultType": "complete"}),
                None,
            )
        }
        "ping" => reply(&backend, id, json!({}), None),
        _ => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}}).to_string(),
        )
            .into_response(),
    }
}

/// A server-to-client stream that stays open and silent.
async fn handle_get() -> Response {
    let stream = futures_util::stream::pending::<Result<Bytes, std::convert::Infallible>>();
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

async fn handle_delete() -> StatusCode {
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().unwrap_or_else(|| "9100".into()).parse()?;
    let sse = args.next().as_deref() == Some("sse");
    let backend = Backend {
        sse,
        sessions: Arc::new(AtomicU64::new(0)),
    };
    let app = Router::new()
        .route(
            "/mcp",
            post(handle_post).get(handle_get).delete(handle_delete),
        ) // not json: bench backend
        .with_state(backend);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, app).await?;
    Ok(())
}
