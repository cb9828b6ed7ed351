//! `Link`: a backend session the gateway drives itself, whatever the backend's era — what the
//! aggregated endpoint (and its catalog of lists) talks through.
//!
//! `call` sends one request with the gateway's own id and returns the response; everything else
//! the backend sends meanwhile (progress, log messages, server requests such as sampling) goes
//! to the caller's channel. A backend that forgot the session (404) is re-initialised with the
//! client's original capabilities and the request sent again, once: only that backend is
//! affected, the client's session stays as it was.

use std::sync::Arc;

use axum::body::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::mcp::backend::{BackendError, client_info, is_event_stream, read_limited};
use crate::mcp::legacy::LegacySession;
use crate::mcp::protocol::{self, H_SESSION, H_VERSION};
use crate::mcp::registry::{Backend, Era};
use crate::mcp::session::{ClientInit, ProxySession, Upstream};
use crate::mcp::splice::Outgoing;
use crate::mcp::sse;
use crate::mcp::upstream;
use crate::state::AppState;

pub struct Link {
    pub backend: Arc<Backend>,
    pub session: Arc<ProxySession>,
    /// The backend's InitializeResult (or `server/discover` result): capabilities, serverInfo,
    /// instructions.
    pub result: Value,
    /// The task reading the backend's GET stream (`listen`), ended with the `Link`: a backend
    /// session pushed out of the per-user cap, idle or replaced must not leave its stream open
    /// (nothing else refers to it, and it would run until the backend ends it).
    listener: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.get_mut().ok().and_then(Option::take) {
            listener.abort();
        }
    }
}

impl Link {
    /// Opens a backend session for `user_id` with the client's capabilities and clientInfo.
    pub async fn open(
        state: &AppState,
        backend: Arc<Backend>,
        user_id: i64,
        capabilities: Value,
        client: Value,
    ) -> Result<Link, BackendError> {
        let era = upstream::detect_era(state, &backend).await?;
        let capabilities = if capabilities.is_object() {
            capabilities
        } else {
            json!({})
        };
        let client = if client.is_object() {
            client
        } else {
            client_info()
        };
        let target = &backend.target;
        let mcp = &state.mcp;
        let (upstream, result, version) = match era {
            Era::Legacy => {
                let mut legacy = LegacySession::connect(&mcp.client, target).await?;
                let handshake = legacy
                    .initialize(capabilities.clone(), client.clone())
                    .await?;
                (
                    Upstream::Legacy(Arc::new(tokio::sync::Mutex::new(legacy))),
                    handshake.result,
                    handshake.protocol_version,
                )
            }
            Era::Modern | Era::ModernOnly => {
                let result = mcp
                    .client
                    .discover(target)
                    .await?
                    .ok_or_else(|| BackendError::Protocol(target.name.clone()))?;
                let result = json!({
                    "capabilities": result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
                    "serverInfo": result["_meta"]["io.modelcontextprotocol/serverInfo"].clone(),
                    "instructions": result.get("instructions").cloned().unwrap_or(Value::Null),
                });
                (
                    Upstream::Modern,
                    result,
                    protocol::LATEST_VERSION.to_string(),
                )
            }
            _ => {
                let handshake = mcp
                    .client
                    .initialize(
                        target,
                        protocol::LATEST_HANDSHAKE_VERSION,
                        capabilities.clone(),
                        client.clone(),
                    )
                    .await?;
                backend.learn_era(Era::Handshake);
                (
                    Upstream::Http {
                        session_id: handshake.session_id,
                        version: handshake.protocol_version.clone(),
                    },
                    handshake.result,
                    handshake.protocol_version,
                )
            }
        };
        let init_params = ClientInit::new(&capabilities, &client);
        Ok(Link {
            session: Arc::new(ProxySession::detached(
                user_id,
                backend.id,
                version,
                init_params,
                upstream,
            )),
            backend,
            result,
            listener: Default::default(),
        })
    }

    /// Whether the backend side is still usable (a held HTTP+SSE stream can end).
    pub async fn alive(&self) -> bool {
        match &*self.session.upstream.lock().await {
            Upstream::Legacy(l) => !l.lock().await.is_closed(),
            _ => true,
        }
    }

    /// Sends a request (which carries a gateway id) and waits for its response; other messages
    /// the backend sends meanwhile go to `events` (dropped when `None`). The wait between
    /// messages is bounded by the server's timeout.
    pub async fn call(
        &self,
        state: &AppState,
        message: Outgoing,
        events: Option<&mpsc::Sender<Value>>,
    ) -> Result<Value, BackendError> {
        self.session.touch();
        let target = &self.backend.target;
        let want_id = message
            .id
            .as_deref()
            .and_then(|id| serde_json::from_str::<Value>(id).ok())
            .unwrap_or(Value::Null);
        let upstream = self.upstream().await;
        let res = match upstream {
            Upstream::Legacy(legacy) => {
                let mut rx = legacy.lock().await.start(&message).await?;
                loop {
                    let next = tokio::time::timeout(target.timeout, rx.recv())
                        .await
                        .map_err(|_| BackendError::Timeout(target.name.clone()))?
                        .ok_or_else(|| BackendError::Unavailable(target.name.clone()))?;
                    if next.get("method").is_none() {
                        return Ok(next);
                    }
                    if let Some(events) = events {
                        let _ = events.send(next).await;
                    }
                }
            }
            Upstream::Http {
                session_id,
                version,
            } => {
                upstream::forward_in(
                    state,
                    target,
                    &self.session,
                    message.body,
                    session_id,
                    &version,
                    &[],
                )
                .await?
            }
            Upstream::Modern => {
                let (body, headers) = upstream::with_modern_meta(
                    &message.body,
                    self.session.init.capabilities_json(),
                );
                upstream::forward(
                    state,
                    target,
                    body,
                    None,
                    Some(protocol::LATEST_VERSION),
                    &headers,
                )
                .await?
            }
        };
        let status = res.status().as_u16();
        if status == 202 {
            return Ok(Value::Null);
        }
        if !(200..300).contains(&status) {
            // A JSON-RPC error with a 4xx status (unknown method, bad params) is an answer.
            if (400..500).contains(&status)
                && let Ok(bytes) = read_limited(target, res).await
                && let Ok(message) = serde_json::from_slice::<Value>(&bytes)
                && message.get("error").is_some()
            {
                return Ok(message);
            }
            return Err(BackendError::Status(target.name.clone(), status));
        }
        if !is_event_stream(res.headers()) {
            let bytes = read_limited(target, res).await?;
            // One JSON-RPC message: an object (anything else is not an answer).
            return serde_json::from_slice::<Value>(&bytes)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| BackendError::Protocol(target.name.clone()));
        }
        let mut stream = res.bytes_stream();
        let mut parser = sse::Parser::new(target.max_response_bytes);
        loop {
            let chunk = tokio::time::timeout(target.timeout, stream.next())
                .await
                .map_err(|_| BackendError::Timeout(target.name.clone()))?
                .ok_or_else(|| BackendError::Protocol(target.name.clone()))?
                .map_err(|_| BackendError::Unavailable(target.name.clone()))?;
            let parsed = parser
                .push(&chunk)
                .map_err(|_| BackendError::TooLarge(target.name.clone()))?;
            for event in parsed {
                let Ok(message) = serde_json::from_str::<Value>(&event.data) else {
                    continue;
                };
                if message.get("id") == Some(&want_id) && message.get("method").is_none() {
                    return Ok(message);
                }
                if let Some(events) = events {
                    let _ = events.send(message).await;
                }
            }
        }
    }

    /// Sends a notification or a response to a server request (no answer expected).
    pub async fn send(&self, state: &AppState, message: Bytes) -> Result<(), BackendError> {
        let target = &self.backend.target;
        match self.upstream().await {
            Upstream::Legacy(legacy) => legacy.lock().await.notify(message).await,
            Upstream::Http {
                session_id,
                version,
            } => {
                let res = upstream::forward(
                    state,
                    target,
                    message,
                    session_id.as_deref(),
                    Some(&version),
                    &[],
                )
                .await?;
                ok_status(target, res.status().as_u16())
            }
            Upstream::Modern => {
                let (body, headers) =
                    upstream::with_modern_meta(&message, self.session.init.capabilities_json());
                let res = upstream::forward(
                    state,
                    target,
                    body,
                    None,
                    Some(protocol::LATEST_VERSION),
                    &headers,
                )
                .await?;
                ok_status(target, res.status().as_u16())
            }
        }
    }

    /// The backend's unsolicited messages (list_changed, resource updates, log messages, server
    /// requests): the GET stream of a streamable-HTTP session, or the held HTTP+SSE stream.
    /// `None` when the backend offers no such stream. The channel ends with the stream.
    pub async fn listen(&self, state: &AppState) -> Option<mpsc::Receiver<Value>> {
        let target = self.backend.target.clone();
        match self.upstream().await {
            Upstream::Legacy(legacy) => legacy.lock().await.unsolicited.take(),
            Upstream::Modern => None,
            Upstream::Http {
                session_id,
                version,
            } => {
                let session_id = session_id?;
                let req = state
                    .mcp
                    .client
                    .request(&target, reqwest::Method::GET)
                    .header(reqwest::header::ACCEPT, "text/event-stream")
                    .header(H_SESSION, session_id)
                    .header(H_VERSION, version);
                let res = state.mcp.client.send(&target, req).await.ok()?;
                if !res.status().is_success() || !is_event_stream(res.headers()) {
                    return None;
                }
                let (tx, rx) = mpsc::channel(64);
                let reader = tokio::spawn(async move {
                    let mut stream = res.bytes_stream();
                    let mut parser = sse::Parser::new(target.max_response_bytes);
                    while let Some(Ok(chunk)) = stream.next().await {
                        // An event over the limit ends the stream.
                        let Ok(events) = parser.push(&chunk) else {
                            return;
                        };
                        for event in events {
                            if let Ok(message) = serde_json::from_str::<Value>(&event.data)
                                && tx.send(message).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                });
                if let Ok(mut listener) = self.listener.lock()
                    && let Some(earlier) = listener.replace(reader.abort_handle())
                {
                    earlier.abort();
                }
                Some(rx)
            }
        }
    }

    /// Ends the backend session (best effort).
    pub async fn close(&self, state: &AppState) {
        upstream::end_backend_session(state, &self.backend.target, &self.session).await;
    }

    async fn upstream(&self) -> Upstream {
        self.session.upstream_now().await
    }
}

fn ok_status(target: &crate::mcp::backend::Target, status: u16) -> Result<(), BackendError> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(BackendError::Status(target.name.clone(), status))
    }
}
