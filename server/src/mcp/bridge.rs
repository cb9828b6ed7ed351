//! Bridging protocol eras on `/mcp/{server}`: handshake-era clients in front of 2026-07-28-only
//! and HTTP+SSE backends, and 2026-07-28 clients in front of older backends (a backend session
//! the gateway holds per user and server).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::mcp::backend::{BackendError, client_info};
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::gate::{Call, Recorder, finish};
use crate::mcp::legacy::LegacySession;
use crate::mcp::message::{Kind, Message};
use crate::mcp::protocol::{self, H_SESSION};
use crate::mcp::registry::Era;
use crate::mcp::relay::{
    Shape, backend_error, fail, json_response, modernize_shape, outcome_of, relay, reshape,
    response_status, sse_response, swap_ids,
};
use crate::mcp::session::{ClientInit, ProxySession, Upstream};
use crate::mcp::splice::Outgoing;
use crate::mcp::sse;
use crate::mcp::upstream::forward_in;
use crate::state::AppState;

pub(crate) fn init_result(
    msg: &Message,
    version: &str,
    backend_result: &Value,
    fallback_name: &str,
) -> String {
    let server_info = backend_result
        .get("serverInfo")
        .cloned()
        .unwrap_or_else(|| json!({ "name": fallback_name, "version": "unknown" }));
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": backend_result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "serverInfo": server_info,
    });
    if let Some(instructions) = backend_result.get("instructions") {
        result["instructions"] = instructions.clone();
    }
    let id: Value = msg
        .id
        .as_deref()
        .and_then(|raw| serde_json::from_str(raw).ok())
        .unwrap_or(Value::Null);
    json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string()
}

/// A handshake-era client in front of a 2026-07-28-only backend: the gateway answers
/// `initialize` from `server/discover` and sends later requests stateless.
pub(crate) async fn initialize_bridged_modern(
    state: &AppState,
    call: &Call,
    msg: &Message,
    client_version: String,
    init_params: ClientInit,
    recorder: Option<Recorder>,
) -> Response {
    let discovered = match state.mcp.client.discover(&call.backend.target).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            let e = BackendError::Protocol(call.backend.name.clone());
            return fail(recorder, msg.id.as_deref(), &e);
        }
        Err(e) => return fail(recorder, msg.id.as_deref(), &e),
    };
    let info = json!({
        "capabilities": discovered.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "serverInfo": discovered["_meta"]["io.modelcontextprotocol/serverInfo"].clone(),
        "instructions": discovered.get("instructions").cloned().unwrap_or(Value::Null),
    });
    let info = strip_nulls(info);
    let body = init_result(msg, &client_version, &info, &call.backend.name);
    start_session(
        state,
        call,
        msg,
        client_version,
        init_params,
        Upstream::Modern,
        body,
        recorder,
    )
    .await
}

pub(crate) fn strip_nulls(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    v
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_session(
    state: &AppState,
    call: &Call,
    msg: &Message,
    client_version: String,
    init_params: ClientInit,
    upstream: Upstream,
    body: String,
    recorder: Option<Recorder>,
) -> Response {
    match new_session(state, call, msg, client_version, init_params, upstream).await {
        Ok(session) => {
            finish(recorder, "ok", 200, body.len());
            json_response(StatusCode::OK, body, Some(&session.id))
        }
        Err(res) => res,
    }
}

/// Registers a client session for the caller and server, stored for every replica (a 500
/// only if the OS random generator or the database fails).
#[allow(clippy::result_large_err)] // the error is the response itself, on a path taken never
pub(crate) async fn new_session(
    state: &AppState,
    call: &Call,
    msg: &Message,
    client_version: String,
    init_params: ClientInit,
    upstream: Upstream,
) -> Result<Arc<ProxySession>, Response> {
    state
        .mcp
        .create_session(
            call.principal.user_id,
            call.backend.id,
            client_version,
            init_params,
            upstream,
        )
        .await
        .map_err(|e| {
            McpError::new(
                msg.id.as_deref(),
                ErrorKind::Internal(e.context("creating a session failed")),
            )
            .into_response()
        })
}

/// A handshake-era client in front of an HTTP+SSE backend: the gateway holds the SSE stream.
pub(crate) async fn initialize_legacy(
    state: &AppState,
    call: &Call,
    msg: &Message,
    client_version: String,
    init_params: ClientInit,
    recorder: Option<Recorder>,
) -> Response {
    let target = &call.backend.target;
    let result = async {
        let mut session = LegacySession::connect(&state.mcp.client, target).await?;
        let capabilities = init_params.capabilities();
        let info = init_params.info().unwrap_or_else(client_info);
        let handshake = session.initialize(capabilities, info).await?;
        Ok::<_, BackendError>((session, handshake))
    }
    .await;
    match result {
        Ok((session, handshake)) => {
            call.backend.set_era(Era::Legacy);
            let body = init_result(msg, &client_version, &handshake.result, &call.backend.name);
            let upstream = Upstream::Legacy(Arc::new(tokio::sync::Mutex::new(session)));
            start_session(
                state,
                call,
                msg,
                client_version,
                init_params,
                upstream,
                body,
                recorder,
            )
            .await
        }
        Err(e) => fail(recorder, msg.id.as_deref(), &e),
    }
}

/// A 2026-07-28 request's client capabilities and clientInfo (`params._meta`), read without a
/// tree of the message, at most `MAX_CLIENT_INIT` together (as for `initialize`).
pub(crate) fn modern_client(body: &[u8]) -> Result<(Value, Value), crate::mcp::message::Malformed> {
    let text = std::str::from_utf8(body).unwrap_or_default();
    let raw = |key: &str| crate::mcp::splice::get(text, &["params", "_meta", key]);
    let (capabilities, client) = (
        raw(protocol::META_CAPABILITIES),
        raw(protocol::META_CLIENT_INFO),
    );
    let size = capabilities.map_or(0, |c| c.get().len()) + client.map_or(0, |c| c.get().len());
    if size > crate::mcp::session::MAX_CLIENT_INIT {
        return Err(crate::mcp::message::Malformed {
            code: protocol::code::INVALID_PARAMS,
            reason: "_meta: clientCapabilities and clientInfo exceed 16 KiB",
        });
    }
    let parse = |raw: Option<&serde_json::value::RawValue>| {
        raw.and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or(Value::Null)
    };
    Ok((parse(capabilities), parse(client)))
}

/// Sends a message through a held HTTP+SSE stream.
pub(crate) async fn legacy_call(
    call: &Call,
    legacy: &Arc<tokio::sync::Mutex<LegacySession>>,
    msg: &Message,
    body: Bytes,
    session_id: Option<&str>,
    shape: Shape,
    mut recorder: Option<Recorder>,
) -> Response {
    let target = call.backend.target.clone();
    let message = Outgoing::new(body);
    if msg.kind != Kind::Request {
        let result = legacy.lock().await.notify(message.body).await;
        return match result {
            Ok(()) => {
                let mut res = StatusCode::ACCEPTED.into_response();
                if let Some(sid) = session_id.and_then(|s| HeaderValue::from_str(s).ok()) {
                    res.headers_mut().insert(H_SESSION, sid);
                }
                res
            }
            Err(e) => backend_error(msg.id.as_deref(), &e),
        };
    }
    let started = legacy.lock().await.start(&message).await;
    let mut rx = match started {
        Ok(rx) => rx,
        Err(e) => return fail(recorder, msg.id.as_deref(), &e),
    };
    let wants_progress = message.progress.is_some();
    let mut response = if wants_progress {
        // Progress first, then the result, on one SSE response.
        let (tx, chunks) = mpsc::channel(32);
        let want_id = msg.id.clone();
        tokio::spawn(async move {
            let mut bytes_out = 0;
            let mut outcome = None;
            loop {
                // A client that hangs up is noticed at once, not at the backend's next message
                // (which may be the server timeout away).
                let next = tokio::select! {
                    () = tx.closed() => {
                        outcome = Some("client_closed");
                        break;
                    }
                    next = tokio::time::timeout(target.timeout, rx.recv()) => next,
                };
                let message = match next {
                    Ok(Some(m)) => m,
                    Ok(None) | Err(_) => break,
                };
                let data = reshape(message.to_string(), &shape);
                let is_response = response_status(data.as_bytes(), want_id.as_deref());
                let bytes = sse::Event::message(data).encode();
                bytes_out += bytes.len();
                if tx.send(Ok(bytes)).await.is_err() {
                    outcome = Some("client_closed");
                    break;
                }
                if let Some(result) = is_response {
                    outcome = Some(outcome_of(result, &mut recorder));
                    break;
                }
            }
            if outcome.is_none() {
                let e = BackendError::Timeout(target.name.clone());
                let data = McpError::new(want_id.as_deref(), ErrorKind::Backend(e.clone())).body();
                let _ = tx.send(Ok(sse::Event::message(data).encode())).await;
                outcome = Some(e.label());
            }
            finish(recorder, outcome.unwrap_or("ok"), 200, bytes_out);
        });
        sse_response(chunks)
    } else {
        let reply = async {
            loop {
                let next = tokio::time::timeout(target.timeout, rx.recv())
                    .await
                    .map_err(|_| BackendError::Timeout(target.name.clone()))?
                    .ok_or_else(|| BackendError::Unavailable(target.name.clone()))?;
                if next.get("method").is_none() {
                    return Ok::<Value, BackendError>(next);
                }
            }
        }
        .await;
        match reply {
            Ok(message) => {
                let body = reshape(message.to_string(), &shape);
                let result = match message.get("error") {
                    Some(e) => Err(e["code"].as_i64().unwrap_or(0)),
                    None => Ok(()),
                };
                let mut recorder = recorder;
                let outcome = outcome_of(result, &mut recorder);
                finish(recorder, outcome, 200, body.len());
                json_response(StatusCode::OK, body, None)
            }
            Err(e) => fail(recorder, msg.id.as_deref(), &e),
        }
    };
    if let Some(sid) = session_id.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(H_SESSION, sid);
    }
    response
}

/// A 2026-07-28 client in front of an older backend: requests go through a backend session the
/// gateway holds for this user and server.
pub(crate) async fn held(
    state: &AppState,
    call: &Call,
    msg: &Message,
    body: Bytes,
    recorder: Option<Recorder>,
) -> Response {
    let (capabilities, client) = match modern_client(&body) {
        Ok(found) => found,
        Err(malformed) => {
            finish(recorder, "malformed", 400, 0);
            return McpError::malformed(msg.id.as_deref(), malformed, true).into_response();
        }
    };
    let session = match state
        .mcp
        .held_session(call.principal.user_id, &call.backend, capabilities, client)
        .await
    {
        Ok(s) => s,
        Err(e) => return fail(recorder, msg.id.as_deref(), &e),
    };
    if msg.is("server/discover") {
        let result = state.mcp.held_discover(&session);
        let id: Value = msg
            .id
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or(Value::Null);
        let body = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        finish(recorder, "ok", 200, body.len());
        return json_response(StatusCode::OK, body, None);
    }
    let target = &call.backend.target;
    // Several clients share this backend session: ids and progress tokens become the gateway's.
    let Some((body, ids)) = swap_ids(state, &body) else {
        finish(recorder, "malformed", 400, 0);
        let malformed = crate::mcp::message::Malformed {
            code: protocol::code::INVALID_PARAMS,
            reason: "the id or progress token cannot be read back",
        };
        return McpError::malformed(msg.id.as_deref(), malformed, true).into_response();
    };
    let shape = Shape {
        ids,
        ..modernize_shape(msg)
    };
    let upstream = match session.upstream_now().await {
        Upstream::Http {
            session_id,
            version,
        } => Ok((session_id, version)),
        Upstream::Legacy(l) => Err(l),
        Upstream::Modern => Ok((None, protocol::LATEST_VERSION.to_string())),
    };
    match upstream {
        Ok((backend_session, version)) => {
            let res = forward_in(
                state,
                target,
                &session,
                body,
                backend_session,
                &version,
                &[],
            )
            .await;
            match res {
                Ok(res) => relay(target, res, msg, None, shape, recorder).await,
                Err(e) => fail(recorder, msg.id.as_deref(), &e),
            }
        }
        Err(legacy) => legacy_call(call, &legacy, msg, body, None, shape, recorder).await,
    }
}
