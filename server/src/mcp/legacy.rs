//! Backends on the legacy HTTP+SSE transport (2024-11-05): `GET` the URL for an SSE stream whose
//! first `endpoint` event names where to POST; every server message, responses included, comes
//! back on that one stream.
//!
//! A `LegacySession` owns the stream and routes what arrives: a response goes to the request
//! that waits for it (with the progress notifications for that request's `progressToken` before
//! it), everything else to the session's `unsolicited` channel (the client's GET stream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::mcp::backend::{BackendClient, BackendError, Handshake, Target};
use crate::mcp::splice::Outgoing;
use crate::mcp::sse;

const UNSOLICITED_QUEUE: usize = 256;
const PER_REQUEST_QUEUE: usize = 64;

type Routes = Arc<Mutex<RouteTable>>;

#[derive(Default)]
struct RouteTable {
    /// Raw JSON id → where its progress and response go.
    by_id: HashMap<String, mpsc::Sender<Value>>,
    /// Raw JSON progress token → raw JSON id.
    by_token: HashMap<String, String>,
    closed: bool,
}

pub struct LegacySession {
    client: BackendClient,
    target: Target,
    endpoint: String,
    routes: Routes,
    pub unsolicited: Option<mpsc::Receiver<Value>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for LegacySession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl LegacySession {
    pub async fn connect(
        client: &BackendClient,
        target: &Target,
    ) -> Result<LegacySession, BackendError> {
        let req = client
            .request(target, reqwest::Method::GET)
            .header(ACCEPT, "text/event-stream");
        let res = client.send(target, req).await?;
        if !res.status().is_success() {
            return Err(BackendError::Status(
                target.name.clone(),
                res.status().as_u16(),
            ));
        }
        let mut stream = res.bytes_stream();
        let mut parser = sse::Parser::new(target.max_response_bytes);
        let mut early = Vec::new();
        let mut early_bytes = 0;
        let endpoint = loop {
            let chunk = tokio::time::timeout(target.timeout, stream.next())
                .await
                .map_err(|_| BackendError::Timeout(target.name.clone()))?
                .ok_or_else(|| BackendError::Protocol(target.name.clone()))?
                .map_err(|_| BackendError::Unavailable(target.name.clone()))?;
            let mut found = None;
            let events = parser
                .push(&chunk)
                .map_err(|_| BackendError::TooLarge(target.name.clone()))?;
            for event in events {
                if event.event.as_deref() == Some("endpoint") && found.is_none() {
                    found = Some(event.data.clone());
                } else {
                    // What comes before the endpoint is kept for later, within the same limit.
                    early_bytes += event.data.len();
                    if early_bytes > target.max_response_bytes {
                        return Err(BackendError::TooLarge(target.name.clone()));
                    }
                    early.push(event);
                }
            }
            if let Some(endpoint) = found {
                break resolve_endpoint(target, &endpoint)?;
            }
        };
        let routes: Routes = Arc::default();
        let (tx, rx) = mpsc::channel(UNSOLICITED_QUEUE);
        let reader = tokio::spawn(read_stream(stream, parser, early, routes.clone(), tx));
        Ok(LegacySession {
            client: client.clone(),
            target: target.clone(),
            endpoint,
            routes,
            unsolicited: Some(rx),
            reader,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.reader.is_finished() || self.routes.lock().map(|r| r.closed).unwrap_or(true)
    }

    async fn post(&self, body: bytes::Bytes) -> Result<(), BackendError> {
        let req = self
            .client
            .request_to(&self.target, reqwest::Method::POST, self.endpoint.as_str())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let res = self.client.send(&self.target, req).await?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(BackendError::Status(
                self.target.name.clone(),
                res.status().as_u16(),
            ))
        }
    }

    /// Sends a request; the returned channel yields its progress notifications, then the response.
    pub async fn start(&self, message: &Outgoing) -> Result<mpsc::Receiver<Value>, BackendError> {
        let id = message.id.clone().unwrap_or_else(|| "null".into());
        let (tx, rx) = mpsc::channel(PER_REQUEST_QUEUE);
        if let Ok(mut routes) = self.routes.lock() {
            routes.by_id.insert(id.clone(), tx);
            if let Some(token) = &message.progress {
                routes.by_token.insert(token.clone(), id.clone());
            }
        }
        if let Err(e) = self.post(message.body.clone()).await {
            if let Ok(mut routes) = self.routes.lock() {
                routes.by_id.remove(&id);
            }
            return Err(e);
        }
        Ok(rx)
    }

    /// Sends a request and waits for its response (progress is dropped).
    pub async fn request(&mut self, message: Value) -> Result<Value, BackendError> {
        let mut rx = self.start(&Outgoing::of(&message)).await?;
        loop {
            let next = tokio::time::timeout(self.target.timeout, rx.recv())
                .await
                .map_err(|_| BackendError::Timeout(self.target.name.clone()))?
                .ok_or_else(|| BackendError::Unavailable(self.target.name.clone()))?;
            if next.get("result").is_some() || next.get("error").is_some() {
                return Ok(next);
            }
        }
    }

    pub async fn notify(&self, body: bytes::Bytes) -> Result<(), BackendError> {
        self.post(body).await
    }

    pub async fn initialize(
        &mut self,
        capabilities: Value,
        client_info: Value,
    ) -> Result<Handshake, BackendError> {
        let reply = self
            .request(json!({
                "jsonrpc": "2.0", "id": "authmcp-init", "method": "initialize",
                "params": { "protocolVersion": "2024-11-05", "capabilities": capabilities, "clientInfo": client_info },
            }))
            .await?;
        let result = reply
            .get("result")
            .cloned()
            .ok_or_else(|| BackendError::Protocol(self.target.name.clone()))?;
        self.notify(bytes::Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ))
        .await?;
        Ok(Handshake {
            session_id: None,
            protocol_version: result["protocolVersion"]
                .as_str()
                .unwrap_or("2024-11-05")
                .to_string(),
            result,
        })
    }
}

/// The endpoint must stay on the backend's own origin (no SSRF through a rogue `endpoint`).
fn resolve_endpoint(target: &Target, endpoint: &str) -> Result<String, BackendError> {
    let base =
        url::Url::parse(&target.url).map_err(|_| BackendError::Protocol(target.name.clone()))?;
    let resolved = base
        .join(endpoint.trim())
        .map_err(|_| BackendError::Protocol(target.name.clone()))?;
    if resolved.origin() != base.origin() {
        return Err(BackendError::Protocol(target.name.clone()));
    }
    Ok(resolved.to_string())
}

async fn read_stream(
    mut stream: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    mut parser: sse::Parser,
    early: Vec<sse::Event>,
    routes: Routes,
    unsolicited: mpsc::Sender<Value>,
) {
    for event in early {
        route(&event, &routes, &unsolicited).await;
    }
    while let Some(Ok(chunk)) = stream.next().await {
        // An event over the limit ends the stream (and fails the calls waiting on it).
        let Ok(events) = parser.push(&chunk) else {
            tracing::warn!(
                "a backend's HTTP+SSE stream sent an event over MCP_MAX_RESPONSE_BYTES; dropped it"
            );
            break;
        };
        for event in events {
            route(&event, &routes, &unsolicited).await;
        }
    }
    if let Ok(mut routes) = routes.lock() {
        routes.closed = true;
        routes.by_id.clear();
        routes.by_token.clear();
    }
}

async fn route(event: &sse::Event, routes: &Routes, unsolicited: &mpsc::Sender<Value>) {
    if !matches!(event.event.as_deref(), None | Some("message")) {
        return;
    }
    let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
        return;
    };
    let is_response = message.get("method").is_none()
        && (message.get("result").is_some() || message.get("error").is_some());
    let target = {
        let Ok(mut table) = routes.lock() else {
            return;
        };
        if is_response {
            let id = message["id"].to_string();
            table.by_token.retain(|_, waiting| *waiting != id);
            table.by_id.remove(&id)
        } else if message["method"] == "notifications/progress" {
            let token = message["params"]["progressToken"].to_string();
            table
                .by_token
                .get(&token)
                .and_then(|id| table.by_id.get(id))
                .cloned()
        } else {
            None
        }
    };
    match target {
        Some(tx) => {
            let _ = tx.send(message).await;
        }
        None if !is_response => {
            let _ = unsolicited.try_send(message);
        }
        None => {}
    }
}
