//! Reaching a backend: POSTs with the headers a backend may see, re-initialising a backend
//! session the backend forgot (once), finding out which protocol era a backend speaks, and
//! ending backend sessions.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::json;

use crate::mcp::backend::{BackendError, BackendResponse, Target, client_info};
use crate::mcp::message::Message;
use crate::mcp::protocol::{self, H_LAST_EVENT_ID, H_METHOD, H_NAME, H_PARAM_PREFIX};
use crate::mcp::registry::{Backend, Era};
use crate::mcp::session::{ProxySession, Upstream};
use crate::state::AppState;

/// Headers the client sent that the backend should see (an allow-list; never credentials).
/// For a 2026-07-28 request (`modern`), `Mcp-Method` and `Mcp-Name` are written from the gate's
/// reading of the body, never copied from the client; `Mcp-Param-*` headers pass (intermediaries
/// must forward them).
pub(crate) fn forwarded_headers(
    headers: &HeaderMap,
    modern: Option<&Message>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name == H_LAST_EVENT_ID || (modern.is_some() && name.starts_with(H_PARAM_PREFIX))
        })
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    if let Some(msg) = modern {
        if let Some(method) = &msg.method {
            out.push((H_METHOD.to_string(), header_safe(method)));
        }
        if let Some(name) = &msg.name {
            out.push((H_NAME.to_string(), header_safe(name)));
        }
    }
    out
}

/// POSTs a message to a streamable-HTTP backend; returns once the response headers are in.
pub(crate) async fn forward(
    state: &AppState,
    target: &Target,
    body: Bytes,
    session: Option<&str>,
    version: Option<&str>,
    extra: &[(String, String)],
) -> Result<BackendResponse, BackendError> {
    state
        .mcp
        .client
        .post(target, body, session, version, extra)
        .await
}

/// Adds the 2026-07-28 request metadata (version, client capabilities as JSON text) to a
/// message, for a modern backend behind a handshake-era client; with the `Mcp-Method` and
/// `Mcp-Name` headers of the message. Edited in place (`splice.rs`): no tree of the message.
pub(crate) fn with_modern_meta(body: &Bytes, capabilities: &str) -> (Bytes, Vec<(String, String)>) {
    use crate::mcp::splice;
    let text = std::str::from_utf8(body).unwrap_or_default();
    let mut headers = Vec::new();
    // Responses carry no method and no request metadata.
    let Some(method) = splice::get_str(text, &["method"]) else {
        return (body.clone(), headers);
    };
    // The field the gate read for this method, never the other one.
    let name = match method.as_str() {
        "tools/call" | "prompts/get" => splice::get_str(text, &["params", "name"]),
        "resources/read" => splice::get_str(text, &["params", "uri"]),
        _ => None,
    };
    headers.push((H_METHOD.to_string(), method));
    if let Some(name) = name {
        headers.push((H_NAME.to_string(), header_safe(&name)));
    }
    let version = splice::quoted(protocol::LATEST_VERSION);
    let edited = splice::set(text, &["params", "_meta", protocol::META_VERSION], &version)
        .and_then(|t| {
            splice::set(
                &t,
                &["params", "_meta", protocol::META_CAPABILITIES],
                capabilities,
            )
        });
    match edited {
        Some(edited) => (Bytes::from(edited), headers),
        None => (body.clone(), headers),
    }
}

/// `Mcp-*` header values are base64-wrapped when not plain visible ASCII.
pub(crate) fn header_safe(value: &str) -> String {
    use base64::Engine;
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) && value.trim() == value {
        value.to_string()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// Forwards within a backend session; when the backend forgot the session (404), runs the
/// handshake again and sends once more (it never saw the request, so the retry is safe
/// whatever the method).
pub(crate) async fn forward_in(
    state: &AppState,
    target: &Target,
    session: &ProxySession,
    body: Bytes,
    backend_session: Option<String>,
    version: &str,
    extra: &[(String, String)],
) -> Result<BackendResponse, BackendError> {
    let res = forward(
        state,
        target,
        body.clone(),
        backend_session.as_deref(),
        Some(version),
        extra,
    )
    .await?;
    if res.status() != reqwest::StatusCode::NOT_FOUND || backend_session.is_none() {
        return Ok(res);
    }
    let fresh = reinitialize(state, target, session, backend_session.as_deref()).await?;
    forward(state, target, body, fresh.as_deref(), Some(version), extra).await
}

/// Re-runs the handshake for a session whose backend session expired. Concurrent callers that
/// saw the same stale id do it once.
pub(crate) async fn reinitialize(
    state: &AppState,
    target: &Target,
    session: &ProxySession,
    stale: Option<&str>,
) -> Result<Option<String>, BackendError> {
    let mut guard = session.upstream.lock().await;
    if let Upstream::Http { session_id, .. } = &*guard
        && session_id.as_deref() != stale
    {
        return Ok(session_id.clone());
    }
    let capabilities = session.init.capabilities();
    let info = session.init.info().unwrap_or_else(client_info);
    let handshake = state
        .mcp
        .client
        .initialize(target, &session.client_version, capabilities, info)
        .await?;
    tracing::info!(server = %target.name, "backend session expired; re-initialised it");
    *guard = Upstream::Http {
        session_id: handshake.session_id.clone(),
        version: handshake.protocol_version,
    };
    drop(guard);
    // Other replicas serving this session use the new backend session too.
    state.mcp.store_upstream(session).await;
    Ok(handshake.session_id)
}

/// Finds out (once per backend) how it speaks: `server/discover` for 2026-07-28, else a
/// throwaway handshake, whose 400/404/405 means HTTP+SSE when the transport is `auto`.
pub(crate) async fn detect_era(state: &AppState, backend: &Backend) -> Result<Era, BackendError> {
    use shared::servers::Transport;
    let era = backend.era();
    if era != Era::Unknown && era != Era::Handshake {
        return Ok(era);
    }
    let target = &backend.target;
    // A backend first met through `initialize` may speak 2026-07-28 too: ask once.
    if era == Era::Handshake {
        if backend.transport != shared::servers::Transport::Sse
            && state.mcp.client.discover(target).await?.is_some()
        {
            backend.set_era(Era::Modern);
            return Ok(Era::Modern);
        }
        backend.set_era(Era::HandshakeOnly);
        return Ok(Era::HandshakeOnly);
    }
    let era = if backend.transport == Transport::Sse {
        Era::Legacy
    } else if state.mcp.client.discover(target).await?.is_some() {
        Era::Modern
    } else if backend.transport == Transport::StreamableHttp {
        Era::HandshakeOnly
    } else {
        match state
            .mcp
            .client
            .initialize(
                target,
                protocol::LATEST_HANDSHAKE_VERSION,
                json!({}),
                client_info(),
            )
            .await
        {
            Ok(handshake) => {
                if let Some(b) = handshake.session_id {
                    let client = &state.mcp.client;
                    client
                        .end_session(target, &b, &handshake.protocol_version)
                        .await;
                }
                Era::HandshakeOnly
            }
            Err(BackendError::Status(_, 400 | 404 | 405)) => Era::Legacy,
            Err(e) => return Err(e),
        }
    };
    backend.learn_era(era);
    Ok(backend.era())
}

/// Ends the backend side of a session (best effort).
pub async fn end_backend_session(state: &AppState, target: &Target, session: &ProxySession) {
    if let Upstream::Http {
        session_id: Some(b),
        version,
    } = session.upstream_now().await
    {
        state.mcp.client.end_session(target, &b, &version).await;
    }
}
