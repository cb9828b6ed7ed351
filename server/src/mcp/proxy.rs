//! `/mcp/{server}`: the per-server proxy.
//!
//! Every request is authenticated and authorised anew (sessions are never credentials), its
//! body read up to `MCP_MAX_REQUEST_BYTES`, its JSON-RPC envelope parsed (nothing more), and
//! then, by era:
//!
//! * `initialize` starts a client session (handshake era): forwarded to a handshake backend,
//!   answered by the gateway for a 2026-07-28-only or HTTP+SSE backend it bridges to.
//! * a request with `Mcp-Session-Id` continues one; a backend that forgot its session (404) is
//!   re-initialised and the request sent again, once.
//! * a request without a session and with `MCP-Protocol-Version: 2026-07-28` is stateless:
//!   passed through to a modern backend, or sent within a gateway-held backend session (one per
//!   user and server) to an older one.
//!
//! Responses stream: SSE events are relayed as they arrive, so progress and log notifications
//! reach the client before the result; JSON stays JSON, 202 stays 202.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::identity::RequestMeta;
use crate::error::AppPath;
use crate::events::{EventType, Severity};
use crate::mcp::backend::{BackendError, is_event_stream};
use crate::mcp::bridge::{
    held, initialize_bridged_modern, initialize_legacy, legacy_call, new_session,
};
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::gate::{self, Caller, Payload, Recorder, Route, finish};
use crate::mcp::gate::{Call, authenticate, check_modern_headers, header_str};
use crate::mcp::inspect;
use crate::mcp::message::Message;
use crate::mcp::pins::Pinning;
use crate::mcp::protocol::{self, H_LAST_EVENT_ID, H_SESSION, H_VERSION};
use crate::mcp::registry::Era;
use crate::mcp::relay::{
    KEEP_ALIVE, PASS, Shape, backend_error, fail, filter_response, hub_response,
    method_not_allowed, relay, relay_stream, sse_response, sse_stream_response, with_session_id,
};
use crate::mcp::session::{ClientInit, ProxySession, Upstream};
use crate::mcp::sse;
use crate::mcp::upstream::{
    detect_era, end_backend_session, forward, forward_in, forwarded_headers, with_modern_meta,
};
use crate::state::AppState;

/// Authenticates the caller and finds the (enabled) server; the policy checks are the gate's.
async fn find(
    state: &AppState,
    server: &str,
    resource: &str,
    headers: &HeaderMap,
    meta: &RequestMeta,
) -> Result<Call, Response> {
    let principal = authenticate(state, resource, headers, meta).await?;
    let Some(backend) = state.mcp.registry.get(server).filter(|b| b.enabled) else {
        return Err(McpError::new(None, ErrorKind::NoSuchServer).into_response());
    };
    // A server with per-user connected accounts acts with the caller's own token.
    let backend = state.mcp.registry.for_user(&backend, principal.user_id);
    Ok(Call {
        principal,
        backend,
        started: Instant::now(),
    })
}

/// `POST /mcp/{server}`.
pub async fn post(
    State(state): State<AppState>,
    AppPath(server): AppPath<String>,
    meta: RequestMeta,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    // Changes from here on end a streamed answer (`gate::revocable`).
    let changes = state.auth_cache.subscribe();
    let resource = format!("mcp/{server}");
    let call = match find(&state, &server, &resource, &parts.headers, &meta).await {
        Ok(call) => call,
        Err(res) => return res,
    };
    // The slot is held until the answer is on its way.
    let (body, _slot) = match gate::receive(
        &state,
        &call.principal,
        &meta,
        &resource,
        &parts.headers,
        body,
    )
    .await
    {
        Ok(received) => received,
        Err(res) => return res,
    };
    let caller = call.caller(&state, &meta, &resource, body.len());
    let headers = &parts.headers;
    let msg = match gate::read(&caller, headers, &body) {
        Ok(msg) => msg,
        Err(e) => return e.into_response(),
    };
    let caller = Caller {
        client_name: msg.client_name.clone(),
        ..caller
    };
    let route = Route::Backend {
        backend: &call.backend,
        tool: msg.tool.as_deref(),
        payload: Payload { raw: Some(&body) },
    };
    let pass = match gate::admit(&caller, Some(&msg), route).await {
        Ok(pass) => pass,
        Err(e) => return e.into_response(),
    };
    // Per-tool rules also leave denied tools out of tools/list.
    let tool_filter = if msg.is("tools/list") {
        match state.mcp.registry.tool_filter(&call.principal).await {
            Ok(f) if f.restricts(call.backend.id) => Some(f),
            Ok(_) => None,
            Err(e) => {
                gate::finish(pass.recorder, "internal_error", 500, 0);
                return McpError::new(msg.id.as_deref(), crate::mcp::error::ErrorKind::Internal(e))
                    .into_response();
            }
        }
    } else {
        None
    };
    // A server's first pinned list is a whole one: the catalog fetches every page.
    if call.backend.pinning != Pinning::Off
        && msg.is("tools/list")
        && !state.mcp.pins.has_baseline(call.backend.id)
        && let Err(e) = state
            .mcp
            .aggregate
            .catalog
            .list(
                &state,
                &call.backend,
                crate::mcp::aggregate::catalog::Kind::Tools,
            )
            .await
    {
        tracing::debug!(error = %e, server = call.backend.name, "listing tools to pin them failed");
    }
    let res = dispatch(&state, &call, &msg, headers, body, pass.recorder, &meta).await;
    // Answers are checked too (results and tool descriptions).
    let res = if call.backend.detection != crate::detect::Mode::Off
        && (msg.is("tools/call") || msg.is("tools/list"))
    {
        let (state2, meta2, principal) = (state.clone(), meta.clone(), call.principal.clone());
        let (server2, mode, tool) = (server.clone(), call.backend.detection, msg.tool.clone());
        filter_response(
            res,
            state.config.mcp.max_response_bytes,
            crate::detect::maybe_suspicious,
            move |message| {
                inspect::check_answer(
                    &state2,
                    &meta2.ctx(),
                    Some(&principal),
                    &server2,
                    mode,
                    tool.as_deref(),
                    message,
                );
            },
        )
        .await
    } else {
        res
    };
    // Tool lists are held against the pinned definitions (under quarantine only approved
    // versions stay) and the caller's tool rules.
    let pinning = call.backend.pinning;
    let res = if tool_filter.is_some() || (pinning != Pinning::Off && msg.is("tools/list")) {
        let (server_id, state2, name) = (call.backend.id, state.clone(), server.clone());
        filter_response(
            res,
            state.config.mcp.max_response_bytes,
            |_| true,
            move |message| {
                hold_tools(
                    &state2,
                    server_id,
                    &name,
                    pinning,
                    tool_filter.as_ref(),
                    message,
                );
            },
        )
        .await
    } else {
        res
    };
    // A streamed answer ends if the caller loses access meanwhile.
    gate::revocable(&state, &call.principal, Some(&call.backend), changes, res)
}

/// A message that may carry a tool list (the key, or an escape that could spell it).
fn mentions_tools(raw: &[u8]) -> bool {
    memchr::memmem::find(raw, b"tools").is_some() || memchr::memmem::find(raw, b"\\u").is_some()
}

/// Holds a backend message's tool list against the pins (observed; under quarantine only
/// approved versions stay) and the caller's tool rules. A message that is not one JSON object,
/// or whose `result.tools` is not a list, carries no tools to the client.
fn hold_tools(
    state: &AppState,
    server_id: i64,
    name: &str,
    pinning: Pinning,
    tool_filter: Option<&crate::mcp::registry::ToolFilter>,
    message: &mut Value,
) {
    if !message.is_object() {
        *message = json!({"jsonrpc": "2.0", "id": null, "error": {
            "code": protocol::code::BACKEND_UNAVAILABLE,
            "message": "the server's answer could not be read unambiguously"}});
        return;
    }
    let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(tools) = result.get_mut("tools") else {
        return;
    };
    let Some(tools) = tools.as_array_mut() else {
        result.insert("tools".into(), json!([]));
        return;
    };
    let fps = state
        .mcp
        .pins
        .observe(state, server_id, name, pinning, tools, false);
    let mut fps = fps.into_iter();
    tools.retain(|t| {
        let fp = fps.next().flatten();
        let Some(n) = t["name"].as_str() else {
            return false;
        };
        // Under pinning every tool listed is pinned: one that cannot be (no usable name) is not
        // listed, whatever the mode.
        tool_filter.is_none_or(|f| f.permits(server_id, n))
            && (pinning == Pinning::Off || fp.is_some())
            && (pinning != Pinning::Quarantine
                || fp.is_some_and(|fp| state.mcp.pins.approved(server_id, n, &fp)))
    });
}

/// Under pinning, tool lists on a session's server-to-client stream go through the pins as
/// well: a resumed stream replays answers, and a backend may send a list anywhere.
async fn hold_stream_tools(state: &AppState, call: &Call, res: Response) -> Response {
    let pinning = call.backend.pinning;
    if pinning == Pinning::Off {
        return res;
    }
    let (state2, server_id, name) = (state.clone(), call.backend.id, call.backend.name.clone());
    filter_response(
        res,
        state.config.mcp.max_response_bytes,
        mentions_tools,
        move |message| hold_tools(&state2, server_id, &name, pinning, None, message),
    )
    .await
}

/// The per-server proxy once the request is admitted and parsed.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    state: &AppState,
    call: &Call,
    msg: &Message,
    headers: &HeaderMap,
    body: Bytes,
    mut recorder: Option<Recorder>,
    meta: &RequestMeta,
) -> Response {
    let (state, call, msg) = (state.clone(), call, msg);
    let version = header_str(headers, H_VERSION);
    if msg.is("initialize") {
        return initialize(&state, call, msg, body, recorder).await;
    }
    if let Some(sid) = header_str(headers, H_SESSION) {
        let found = state
            .mcp
            .find_session(sid, call.principal.user_id, &call.backend)
            .await;
        let session = match found {
            Ok(session) => session,
            Err(owner) => {
                if let Some(owner) = owner
                    && owner != call.principal.user_id
                {
                    state.events.record(
                    EventType::SessionHijackAttempt,
                    Severity::High,
                    &meta.ctx(),
                    Some(call.principal.user_id),
                    Some(&call.principal.username),
                    json!({ "server": call.backend.name, "reason": "another user's MCP session id" }),
                );
                }
                finish(recorder, "session_not_found", 404, 0);
                return McpError::new(msg.id.as_deref(), ErrorKind::SessionNotFound)
                    .into_response();
            }
        };
        session.touch();
        if let Some(r) = &mut recorder {
            r.row.client_name = session.init.client_name();
        }
        return in_session(&state, call, &session, msg, headers, body, recorder).await;
    }
    // `gate::read` made the body's `_meta` version equal the header's.
    if version == Some(protocol::LATEST_VERSION) {
        return stateless(&state, call, msg, headers, body, recorder).await;
    }
    finish(recorder, "missing_session", 400, 0);
    McpError::new(msg.id.as_deref(), ErrorKind::MissingSession).into_response()
}

/// A handshake-era client starts a session.
async fn initialize(
    state: &AppState,
    call: &Call,
    msg: &Message,
    body: Bytes,
    recorder: Option<Recorder>,
) -> Response {
    let backend = &call.backend;
    let target = &backend.target;
    let client_version = msg
        .init_version
        .clone()
        .filter(|v| {
            protocol::SUPPORTED_VERSIONS.contains(&v.as_str()) && v != protocol::LATEST_VERSION
        })
        .unwrap_or_else(|| protocol::LATEST_HANDSHAKE_VERSION.to_string());
    let init_params = match ClientInit::from_body(&body) {
        Ok(init) => init,
        Err(malformed) => {
            finish(recorder, "malformed", 400, 0);
            return McpError::malformed(msg.id.as_deref(), malformed, false).into_response();
        }
    };
    let era = backend.era();
    if era == Era::Legacy {
        return initialize_legacy(state, call, msg, client_version, init_params, recorder).await;
    }
    // A backend that also speaks 2026-07-28 (`Modern`) still gets the client's handshake: only
    // a backend that refused `initialize` is bridged.
    if era == Era::ModernOnly {
        return initialize_bridged_modern(state, call, msg, client_version, init_params, recorder)
            .await;
    }
    let res = match forward(state, target, body, None, None, &[]).await {
        Ok(res) => res,
        Err(e) => return fail(recorder, msg.id.as_deref(), &e),
    };
    let status = res.status().as_u16();
    if (200..300).contains(&status) {
        backend.learn_era(Era::Handshake);
        let backend_session = res
            .headers()
            .get(H_SESSION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let upstream = Upstream::Http {
            session_id: backend_session,
            version: client_version.clone(),
        };
        return match new_session(state, call, msg, client_version, init_params, upstream).await {
            Ok(session) => relay(target, res, msg, Some(&session.id), PASS, recorder).await,
            Err(res) => res,
        };
    }
    if matches!(era, Era::Unknown | Era::Modern) && matches!(status, 400 | 404 | 405) {
        drop(res);
        if let Ok(Some(_)) = state.mcp.client.discover(target).await {
            tracing::info!(server = %backend.name, status, "the backend refused initialize but speaks 2026-07-28: bridging handshake-era clients");
            backend.set_era(Era::ModernOnly);
            return initialize_bridged_modern(
                state,
                call,
                msg,
                client_version,
                init_params,
                recorder,
            )
            .await;
        }
        if backend.transport == shared::servers::Transport::Auto && era == Era::Unknown {
            return initialize_legacy(state, call, msg, client_version, init_params, recorder)
                .await;
        }
        finish(recorder, "backend_error", 502, 0);
        return backend_error(
            msg.id.as_deref(),
            &BackendError::Status(backend.name.clone(), status),
        );
    }
    relay(target, res, msg, None, PASS, recorder).await
}

/// A request within a client session.
async fn in_session(
    state: &AppState,
    call: &Call,
    session: &Arc<ProxySession>,
    msg: &Message,
    headers: &HeaderMap,
    body: Bytes,
    recorder: Option<Recorder>,
) -> Response {
    let target = &call.backend.target;
    let upstream = match session.upstream_now().await {
        Upstream::Http {
            session_id,
            version,
        } => Ok((session_id, version)),
        Upstream::Modern => Err(None),
        Upstream::Legacy(legacy) => Err(Some(legacy)),
    };
    match upstream {
        Ok((backend_session, negotiated)) => {
            let version = header_str(headers, H_VERSION)
                .map(str::to_string)
                .unwrap_or(negotiated);
            let extra = forwarded_headers(headers, None);
            let res = forward_in(
                state,
                target,
                session,
                body,
                backend_session,
                &version,
                &extra,
            )
            .await;
            match res {
                Ok(res) => relay(target, res, msg, Some(&session.id), PASS, recorder).await,
                Err(e) => fail(recorder, msg.id.as_deref(), &e),
            }
        }
        Err(None) => {
            let (body, extra) = with_modern_meta(&body, session.init.capabilities_json());
            match forward(
                state,
                target,
                body,
                None,
                Some(protocol::LATEST_VERSION),
                &extra,
            )
            .await
            {
                Ok(res) => relay(target, res, msg, Some(&session.id), PASS, recorder).await,
                Err(e) => fail(recorder, msg.id.as_deref(), &e),
            }
        }
        Err(Some(legacy)) => {
            legacy_call(call, &legacy, msg, body, Some(&session.id), PASS, recorder).await
        }
    }
}

/// A 2026-07-28 request: no session; the headers must agree with the body.
async fn stateless(
    state: &AppState,
    call: &Call,
    msg: &Message,
    headers: &HeaderMap,
    body: Bytes,
    recorder: Option<Recorder>,
) -> Response {
    if let Some(res) = check_modern_headers(headers, msg) {
        finish(recorder, "header_mismatch", 400, 0);
        return res;
    }
    let backend = &call.backend;
    let target = &backend.target;
    if let Err(e) = detect_era(state, backend).await {
        return fail(recorder, msg.id.as_deref(), &e);
    }
    if matches!(backend.era(), Era::Modern | Era::ModernOnly) {
        let extra = forwarded_headers(headers, Some(msg));
        return match forward(
            state,
            target,
            body,
            None,
            Some(protocol::LATEST_VERSION),
            &extra,
        )
        .await
        {
            Ok(res) => {
                // The gateway serves every version on this endpoint (it bridges), and says so.
                let shape = Shape {
                    discover: msg.is("server/discover"),
                    ..PASS
                };
                relay(target, res, msg, None, shape, recorder).await
            }
            Err(e) => fail(recorder, msg.id.as_deref(), &e),
        };
    }
    held(state, call, msg, body, recorder).await
}

/// `GET /mcp/{server}`: the server-to-client stream of a session.
pub async fn get(
    State(state): State<AppState>,
    AppPath(server): AppPath<String>,
    meta: RequestMeta,
    headers: HeaderMap,
) -> Response {
    let changes = state.auth_cache.subscribe();
    let (call, session) = match admit_session(&state, &server, &headers, &meta).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    session.touch();
    let res = open_get_stream(&state, &server, &headers, &call, &session).await;
    let res = hold_stream_tools(&state, &call, res).await;
    // The stream ends if the caller loses access while it is open.
    gate::revocable(&state, &call.principal, Some(&call.backend), changes, res)
}

/// The session's server-to-client stream: the shared backend GET stream, a resumed one, or the
/// held HTTP+SSE stream's unsolicited messages.
async fn open_get_stream(
    state: &AppState,
    server: &str,
    headers: &HeaderMap,
    call: &Call,
    session: &Arc<ProxySession>,
) -> Response {
    let target = call.backend.target.clone();
    let upstream = match session.upstream_now().await {
        Upstream::Http {
            session_id,
            version,
        } => Ok((session_id, version)),
        Upstream::Modern => {
            tracing::debug!(server = %server, "GET on a session bridged to a 2026-07-28 backend: no stream");
            return method_not_allowed();
        }
        Upstream::Legacy(l) => Err(l),
    };
    match upstream {
        Ok((backend_session, version)) => {
            let resume = header_str(headers, H_LAST_EVENT_ID);
            // Without Last-Event-ID, the session's GET streams share one backend stream.
            let mut hub = match resume {
                None => Some(session.stream_hub.lock().await),
                Some(_) => None,
            };
            if let Some(rx) = hub
                .as_ref()
                .and_then(|h| h.as_ref())
                .and_then(|h| h.subscribe())
            {
                return with_session_id(hub_response(rx), &session.id);
            }
            let opened = state
                .mcp
                .client
                .open_stream(
                    &target,
                    backend_session.as_deref(),
                    header_str(headers, H_VERSION).unwrap_or(&version),
                    resume,
                )
                .await;
            match opened {
                Ok(res) if res.status().is_success() && is_event_stream(res.headers()) => {
                    let response = match hub.as_mut() {
                        Some(slot) => {
                            let (shared, rx) = crate::mcp::hub::start(res, target);
                            **slot = Some(shared);
                            hub_response(rx)
                        }
                        None => sse_stream_response(relay_stream(
                            res, target, None, None, PASS, None, None,
                        )),
                    };
                    with_session_id(response, &session.id)
                }
                Ok(res) if res.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED => {
                    tracing::debug!(server = %server, "the backend offers no GET stream");
                    method_not_allowed()
                }
                Ok(res) => backend_error(
                    None,
                    &BackendError::Status(target.name.clone(), res.status().as_u16()),
                ),
                Err(e) => backend_error(None, &e),
            }
        }
        Err(legacy) => {
            let Some(mut rx) = legacy.lock().await.unsolicited.take() else {
                return McpError::new(None, ErrorKind::StreamOpen).into_response();
            };
            let (tx, chunks) = mpsc::channel(32);
            tokio::spawn(async move {
                loop {
                    let next = tokio::time::timeout(KEEP_ALIVE, rx.recv()).await;
                    let bytes = match next {
                        Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                        Ok(None) => break,
                        Ok(Some(message)) => sse::Event::message(message.to_string()).encode(),
                    };
                    if tx.send(Ok(bytes)).await.is_err() {
                        break;
                    }
                }
            });
            let mut response = sse_response(chunks);
            if let Ok(v) = HeaderValue::from_str(&session.id) {
                response.headers_mut().insert(H_SESSION, v);
            }
            response
        }
    }
}

/// `DELETE /mcp/{server}`: ends the session here and at the backend.
pub async fn delete(
    State(state): State<AppState>,
    AppPath(server): AppPath<String>,
    meta: RequestMeta,
    headers: HeaderMap,
) -> Response {
    let (call, session) = match admit_session(&state, &server, &headers, &meta).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    match state.mcp.end_session(&session).await {
        Ok(Some(session)) => end_backend_session(&state, &call.backend.target, &session).await,
        Ok(None) => {}
        Err(e) => {
            return McpError::new(
                None,
                ErrorKind::Internal(e.context("ending a stored session failed")),
            )
            .into_response();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// GET and DELETE: the same gate as POST, then the caller's own session (405 without one,
/// 404 for one that is unknown or not theirs).
async fn admit_session(
    state: &AppState,
    server: &str,
    headers: &HeaderMap,
    meta: &RequestMeta,
) -> Result<(Call, Arc<ProxySession>), Response> {
    let resource = format!("mcp/{server}");
    let call = find(state, server, &resource, headers, meta).await?;
    let caller = call.caller(state, meta, &resource, 0);
    let route = Route::Backend {
        backend: &call.backend,
        tool: None,
        payload: Payload { raw: None },
    };
    if let Err(e) = gate::admit(&caller, None, route).await {
        return Err(e.into_response());
    }
    let Some(sid) = header_str(headers, H_SESSION) else {
        return Err(method_not_allowed());
    };
    match state
        .mcp
        .find_session(sid, call.principal.user_id, &call.backend)
        .await
    {
        Ok(session) => Ok((call, session)),
        Err(_) => Err(McpError::new(None, ErrorKind::SessionNotFound).into_response()),
    }
}

/// MCP streamable HTTP endpoint of one backend server: one JSON-RPC message per POST (both
/// protocol eras). Answers `application/json`, `text/event-stream` (streamed) or 202. Errors are
/// JSON-RPC error bodies; 401 carries `WWW-Authenticate: Bearer resource_metadata="…"`.
#[utoipa::path(post, path = "/mcp/{server}", tag = "mcp", operation_id = "mcp_post",
    security(("bearer" = [])),
    params(
        ("server" = String, Path, description = "Server name"),
        ("Mcp-Session-Id" = Option<String>, Header, description = "Session (handshake era)"),
        ("MCP-Protocol-Version" = Option<String>, Header, description = "Negotiated version; 2026-07-28 for stateless requests"),
    ),
    request_body(content = Object, description = "One JSON-RPC request, notification or response", content_type = "application/json"),
    responses(
        (status = 200, description = "JSON-RPC response (JSON or SSE stream)"),
        (status = 202, description = "Notification or response accepted"),
        (status = 400, description = "Malformed message, missing session, header mismatch (-32020) or unsupported version (-32022)"),
        (status = 401, description = "Authentication required"),
        (status = 403, description = "No access to this server, or Origin not allowed"),
        (status = 404, description = "No such server, or unknown session"),
        (status = 413, description = "Request too large"),
        (status = 415, description = "Not sent as application/json"),
        (status = 429, description = "Rate limited (JSON-RPC error with data.retryAfterSeconds)"),
    ))]
#[allow(dead_code)]
pub(crate) fn doc_post() {}

/// The server-to-client SSE stream of a session (handshake era).
#[utoipa::path(get, path = "/mcp/{server}", tag = "mcp", operation_id = "mcp_get",
    security(("bearer" = [])),
    params(("server" = String, Path, description = "Server name"), ("Mcp-Session-Id" = Option<String>, Header, description = "Session (without one: 405)")),
    responses(
        (status = 200, description = "SSE stream", content_type = "text/event-stream"),
        (status = 401, description = "Authentication required"),
        (status = 403, description = "No access to this server, or Origin not allowed"),
        (status = 404, description = "No such server, or unknown session"),
        (status = 405, description = "No session given, or the backend offers no stream"),
    ))]
#[allow(dead_code)]
pub(crate) fn doc_get() {}

/// Ends a session, at the gateway and at the backend.
#[utoipa::path(delete, path = "/mcp/{server}", tag = "mcp", operation_id = "mcp_delete",
    security(("bearer" = [])),
    params(("server" = String, Path, description = "Server name"), ("Mcp-Session-Id" = Option<String>, Header, description = "Session (without one: 405)")),
    responses(
        (status = 204, description = "Ended"),
        (status = 405, description = "No session given"),
        (status = 401, description = "Authentication required"),
        (status = 403, description = "No access to this server, or Origin not allowed"),
        (status = 404, description = "No such server, or unknown session"),
    ))]
#[allow(dead_code)]
pub(crate) fn doc_delete() {}
