//! `/mcp`: one MCP server made of every backend the caller may use.
//!
//! The gateway is the MCP server here (it answers `initialize`, `server/discover`, `ping` and
//! the lists itself) and an MCP client of each backend through `Link`s (`mcp/link.rs`). Lists fan
//! out in parallel to the caller's enabled backends (from the per-backend `Catalog` cache), are
//! merged under prefixed names (`mcp/naming.rs`), filtered by the caller's tool rules, and
//! paginated with cursors that carry each backend's position. `tools/call`, `prompts/get`,
//! `resources/*` and `completion/complete` are routed by those names — never broadcast.
//!
//! Sessions survive replicas: the `Mcp-Session-Id` is the client's user id, protocol version,
//! capabilities and clientInfo sealed with the gateway's encryption key (AES-256-GCM). Any
//! replica sharing the key opens the backend sessions it needs from that, lazily, per
//! (client session, backend); a backend whose session expired is re-initialised alone.

pub mod catalog;
pub mod links;
pub mod lists;
pub mod resolve;
pub mod route;
pub mod session;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::identity::{Principal, RequestMeta};
use crate::keys::random_bytes;
use crate::mcp::aggregate::catalog::Kind as ListKind;
use crate::mcp::aggregate::lists::list;
use crate::mcp::aggregate::resolve::{resolve_name, resolve_uri};
use crate::mcp::aggregate::route::{SERVER_REQUEST_PREFIX, route};
use crate::mcp::aggregate::session::{
    SESSION_LIFETIME, Sess, SessionToken, end_session, live_session, seal_session,
};
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::gate::{self, Caller, Route};
use crate::mcp::message::{Kind, Message};
use crate::mcp::protocol::{self, H_SESSION, H_VERSION, code};
use crate::mcp::registry::{Backend, ToolFilter};
use crate::mcp::relay;
use crate::mcp::session::ClientInit;
use crate::mcp::splice::{self, Outgoing};
use crate::mcp::sse;
use crate::state::AppState;

/// What the aggregated endpoint is called in activity records and events.
pub const AGGREGATED: &str = "*";

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long `logging/setLevel` waits for the backends it is passed on to.
const SET_LEVEL_WAIT: Duration = Duration::from_secs(5);

/// The raw JSON id as a value.
fn id_value(raw: Option<&str>) -> Value {
    raw.and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null)
}

fn result_body(raw_id: Option<&str>, result: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id_value(raw_id), "result": result }).to_string()
}

/// A JSON-RPC error answered with HTTP 200: the request was well-formed MCP, the answer is no.
fn rpc_refusal(raw_id: Option<&str>, code: i64, message: &str) -> Response {
    let refused = ErrorKind::Refused {
        code,
        message: message.to_string(),
    };
    McpError::new(raw_id, refused).into_response()
}

/// Everything one aggregated request needs.
pub(crate) struct Ctx {
    state: AppState,
    principal: Principal,
    meta: RequestMeta,
    started: Instant,
    /// The raw request (for the detection pre-check, without re-serialising).
    body: Bytes,
    accepts_sse: bool,
    /// The client's `clientInfo.name`, once the session is known.
    client_name: Option<String>,
    /// The user's budget was taken (`gate::Caller::charged`).
    charged: std::sync::atomic::AtomicBool,
    /// Changes since the request was authenticated (`gate::revocable`).
    changes: tokio::sync::watch::Receiver<u64>,
}

impl Ctx {
    /// The gate's view of this request.
    fn caller(&self) -> Caller<'_> {
        Caller {
            state: &self.state,
            principal: &self.principal,
            meta: Some(&self.meta),
            resource: "mcp",
            started: self.started,
            bytes_in: self.body.len(),
            client_name: self.client_name.clone(),
            charged: self.charged.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The activity record of a request the gateway answers itself (or refuses before routing).
    fn record(&self, server: &str, msg: &Message, status: &str, http: u16, bytes_out: usize) {
        if msg.kind == Kind::Request {
            gate::Recorder::new(&self.caller(), msg, server, None).finish(status, http, bytes_out);
        }
    }

    /// The gate, for a message the gateway answers itself.
    async fn admit_here(&self, msg: &Message, routed: bool) -> Result<(), Response> {
        let route = if routed {
            Route::Resolving { server: AGGREGATED }
        } else {
            Route::Gateway { server: AGGREGATED }
        };
        // Answered here (`record` writes the one record) or routed later (the backend's
        // admission carries it): no recorder comes back for these routes.
        gate::admit(&self.caller(), Some(msg), route)
            .await
            .map(|_| ())
            .map_err(IntoResponse::into_response)
    }

    /// The enabled backends the caller may use, by name.
    async fn usable(&self) -> Result<Vec<Arc<Backend>>, Response> {
        self.state
            .mcp
            .registry
            .usable(&self.principal)
            .await
            .map_err(|e| {
                let e = e.context("permission check failed");
                McpError::new(None, ErrorKind::Internal(e)).into_response()
            })
    }

    async fn tool_filter(&self) -> Result<ToolFilter, Response> {
        self.state
            .mcp
            .registry
            .tool_filter(&self.principal)
            .await
            .map_err(|e| {
                let e = e.context("tool rules could not be read");
                McpError::new(None, ErrorKind::Internal(e)).into_response()
            })
    }
}

/// `POST /mcp`.
pub async fn post(State(state): State<AppState>, meta: RequestMeta, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let changes = state.auth_cache.subscribe();
    let principal = match gate::authenticate(&state, "mcp", headers, &meta).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    // The slot is held until the answer is on its way.
    let held = state.clone();
    let (body, _slot) = match gate::receive(&held, &principal, &meta, "mcp", headers, body).await {
        Ok(received) => received,
        Err(res) => return res,
    };
    let mut ctx = Ctx {
        client_name: None,
        accepts_sse: gate::header_str(headers, header::ACCEPT.as_str())
            .is_some_and(|a| a.contains("text/event-stream")),
        state,
        principal,
        meta,
        started: Instant::now(),
        body: body.clone(),
        charged: Default::default(),
        changes,
    };
    let msg = match gate::read(&ctx.caller(), headers, &body) {
        Ok(msg) => msg,
        Err(e) => return e.into_response(),
    };
    let version = gate::header_str(headers, H_VERSION);
    if msg.is("initialize") {
        ctx.client_name = msg.client_name.clone();
        if let Err(res) = ctx.admit_here(&msg, false).await {
            return res;
        }
        return initialize(&ctx, &msg, &body).await;
    }
    let sess = if let Some(sid) = gate::header_str(headers, H_SESSION) {
        match live_session(&ctx.state, sid, ctx.principal.user_id).await {
            Some(t) => Sess {
                key: Arc::from(t.k),
                capabilities: t.c,
                client: t.i,
                modern: false,
            },
            None => {
                ctx.record(AGGREGATED, &msg, "session_not_found", 404, 0);
                return McpError::new(msg.id.as_deref(), ErrorKind::SessionNotFound)
                    .into_response();
            }
        }
    } else if version == Some(protocol::LATEST_VERSION) {
        if let Some(res) = gate::check_modern_headers(headers, &msg) {
            ctx.record(AGGREGATED, &msg, "header_mismatch", 400, 0);
            return res;
        }
        let (capabilities, client) = match crate::mcp::bridge::modern_client(&body) {
            Ok(found) => found,
            Err(malformed) => {
                ctx.record(AGGREGATED, &msg, "malformed", 400, 0);
                return McpError::malformed(msg.id.as_deref(), malformed, true).into_response();
            }
        };
        Sess {
            key: Arc::from(format!("u{}", ctx.principal.user_id)),
            capabilities,
            client,
            modern: true,
        }
    } else {
        ctx.record(AGGREGATED, &msg, "missing_session", 400, 0);
        return McpError::new(msg.id.as_deref(), ErrorKind::MissingSession).into_response();
    };
    ctx.client_name = sess.client["name"]
        .as_str()
        .map(crate::mcp::message::client_label);
    let res = dispatch(&ctx, &sess, &msg).await;
    // A streamed answer ends if the caller loses access meanwhile (routed calls also when they
    // lose their server: `route`).
    gate::revocable(&ctx.state, &ctx.principal, None, ctx.changes.clone(), res)
}

/// The union of what the caller's backends offer.
async fn capabilities(ctx: &Ctx) -> Result<(Value, Option<String>), Response> {
    let backends = ctx.usable().await?;
    let infos = futures_util::future::join_all(backends.iter().map(|b| async move {
        let info = tokio::time::timeout(
            b.target.timeout,
            ctx.state.mcp.aggregate.catalog.info(&ctx.state, b),
        )
        .await;
        (b, info)
    }))
    .await;
    let mut caps = json!({ "tools": { "listChanged": true } });
    let mut instructions = Vec::new();
    for (backend, info) in infos {
        let info = match info {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                tracing::info!(server = %backend.name, error = %e, "backend left out of the aggregated capabilities");
                continue;
            }
            Err(_) => continue,
        };
        let theirs = &info["capabilities"];
        if theirs.get("prompts").is_some() {
            caps["prompts"] = json!({ "listChanged": true });
        }
        if let Some(resources) = theirs.get("resources") {
            let subscribe = resources["subscribe"].as_bool().unwrap_or(false)
                || caps["resources"]["subscribe"].as_bool().unwrap_or(false);
            caps["resources"] = json!({ "listChanged": true, "subscribe": subscribe });
        }
        if theirs.get("logging").is_some() {
            caps["logging"] = json!({});
        }
        if theirs.get("completions").is_some() {
            caps["completions"] = json!({});
        }
        if let Some(text) = info["instructions"].as_str() {
            instructions.push(format!("[{}] {text}", backend.prefix));
        }
    }
    let instructions = (!instructions.is_empty()).then(|| {
        format!(
            "Tools and prompts of several MCP servers, named `<server>__<name>`.\n{}",
            instructions.join("\n")
        )
    });
    Ok((caps, instructions))
}

fn server_info() -> Value {
    json!({ "name": "authmcp-gateway", "title": "AuthMCP Gateway", "version": env!("CARGO_PKG_VERSION") })
}

async fn initialize(ctx: &Ctx, msg: &Message, body: &Bytes) -> Response {
    let init = match ClientInit::from_body(body) {
        Ok(init) => init,
        Err(malformed) => {
            ctx.record(AGGREGATED, msg, "malformed", 400, 0);
            return McpError::malformed(msg.id.as_deref(), malformed, false).into_response();
        }
    };
    let version = msg
        .init_version
        .as_deref()
        .filter(|v| protocol::SUPPORTED_VERSIONS.contains(v) && *v != protocol::LATEST_VERSION)
        .unwrap_or(protocol::LATEST_HANDSHAKE_VERSION)
        .to_string();
    let key = match random_bytes::<16>() {
        Ok(bytes) => URL_SAFE_NO_PAD.encode(bytes),
        Err(e) => {
            return McpError::new(msg.id.as_deref(), ErrorKind::Internal(e)).into_response();
        }
    };
    let token = SessionToken {
        u: ctx.principal.user_id,
        k: key,
        v: version.clone(),
        c: init.capabilities(),
        i: init.info().unwrap_or(Value::Null),
        e: crate::db::now() + SESSION_LIFETIME,
    };
    let session_id = match seal_session(&ctx.state, &token) {
        Ok(id) => id,
        Err(e) => return McpError::new(msg.id.as_deref(), ErrorKind::Internal(e)).into_response(),
    };
    let (caps, instructions) = match capabilities(ctx).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": caps,
        "serverInfo": server_info(),
    });
    if let Some(text) = instructions {
        result["instructions"] = json!(text);
    }
    let body = result_body(msg.id.as_deref(), result);
    ctx.record(AGGREGATED, msg, "ok", 200, body.len());
    relay::json_response(StatusCode::OK, body, Some(&session_id))
}

/// Adds what 2026-07-28 requires of results.
fn modernize(sess: &Sess, result: &mut Value, list: bool) {
    if !sess.modern {
        return;
    }
    if let Some(obj) = result.as_object_mut() {
        obj.entry("resultType")
            .or_insert_with(|| Value::String("complete".into()));
        if list {
            obj.entry("ttlMs").or_insert_with(|| json!(0));
            obj.entry("cacheScope")
                .or_insert_with(|| Value::String("private".into()));
        }
    }
}

/// Serves a message on the aggregated endpoint. Its body is edited in place where it is
/// routed (`splice.rs`), never parsed into a tree.
async fn dispatch(ctx: &Ctx, sess: &Sess, msg: &Message) -> Response {
    let text = std::str::from_utf8(&ctx.body).unwrap_or_default();
    let routed = msg.kind == Kind::Request
        && matches!(
            msg.method.as_deref(),
            Some(
                "tools/call"
                    | "prompts/get"
                    | "resources/read"
                    | "resources/subscribe"
                    | "resources/unsubscribe"
                    | "completion/complete"
            )
        );
    // Every request passes the gate here first (scope, the user's budget), routed ones before
    // their names are resolved; routed ones pass it again for their backend in `route`.
    if let Err(res) = ctx.admit_here(msg, routed).await {
        return res;
    }
    if routed {
        ctx.charged
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    match msg.kind {
        Kind::Response => return client_response(ctx, sess, text).await,
        Kind::Notification => return client_notification(ctx, sess, msg, text).await,
        Kind::Request => {}
    }
    let method = msg.method.as_deref().unwrap_or_default();
    let reply = |mut result: Value, list: bool| {
        modernize(sess, &mut result, list);
        let body = result_body(msg.id.as_deref(), result);
        ctx.record(AGGREGATED, msg, "ok", 200, body.len());
        relay::json_response(StatusCode::OK, body, None)
    };
    match method {
        "ping" => reply(json!({}), false),
        "server/discover" => match capabilities(ctx).await {
            Ok((caps, instructions)) => {
                let mut result = json!({
                    "supportedVersions": protocol::SUPPORTED_VERSIONS,
                    "capabilities": caps,
                    "_meta": { "io.modelcontextprotocol/serverInfo": server_info() },
                });
                if let Some(text) = instructions {
                    result["instructions"] = json!(text);
                }
                reply(result, false)
            }
            Err(res) => res,
        },
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            let kind = ListKind::from_method(method).unwrap_or(ListKind::Tools);
            match list(ctx, sess, msg, kind).await {
                Ok(body) => {
                    ctx.record(AGGREGATED, msg, "ok", 200, body.len());
                    relay::json_response(StatusCode::OK, body, None)
                }
                Err(res) => res,
            }
        }
        "logging/setLevel" => {
            // Passed on to every open backend session, within this request: its slot and
            // timeout bound the calls, and a client that hangs up takes them with it (detached,
            // each setLevel would leave one call per backend running outside every bound).
            // Backends not reached and answered within `SET_LEVEL_WAIT` (a slot busy opening
            // its backend session counts) are not waited for: their calls are dropped.
            let state = &ctx.state;
            let calls =
                state
                    .mcp
                    .aggregate
                    .links_of(&sess.key)
                    .into_iter()
                    .map(|slot| async move {
                        let link = slot.lock().await.clone();
                        let id = splice::quoted(&format!("amg-{}", state.mcp.next_id()));
                        if let Some(link) = link
                            && let Some(forwarded) = splice::set(text, &["id"], &id)
                        {
                            let forwarded = Outgoing::new(Bytes::from(forwarded));
                            let _ = link.call(state, forwarded, None).await;
                        }
                    });
            let _ =
                tokio::time::timeout(SET_LEVEL_WAIT, futures_util::future::join_all(calls)).await;
            reply(json!({}), false)
        }
        "tools/call" | "prompts/get" => {
            let kind = if method == "tools/call" {
                ListKind::Tools
            } else {
                ListKind::Prompts
            };
            let Some(exposed) = msg.name.as_deref() else {
                return invalid(ctx, msg, "params.name is required");
            };
            match resolve_name(ctx, msg, kind, exposed).await {
                Ok((backend, name)) => {
                    let Some(message) =
                        splice::set(text, &["params", "name"], &splice::quoted(&name))
                    else {
                        return invalid(ctx, msg, "params must be an object");
                    };
                    route(ctx, sess, msg, message, backend, Some(name), None).await
                }
                Err(res) => res,
            }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let Some(uri) = msg.name.as_deref() else {
                return invalid(ctx, msg, "params.uri is required");
            };
            match resolve_uri(ctx, msg, uri).await {
                Ok((backend, original)) => {
                    let Some(message) =
                        splice::set(text, &["params", "uri"], &splice::quoted(&original))
                    else {
                        return invalid(ctx, msg, "params must be an object");
                    };
                    // A rewritten URI: the answer names it the way the client asked.
                    let rename = (original != uri).then(|| (original.clone(), uri.to_string()));
                    route(ctx, sess, msg, message, backend, None, rename).await
                }
                Err(res) => res,
            }
        }
        "completion/complete" => {
            let field = |f: &str| splice::get_str(text, &["params", "ref", f]);
            let resolved = match (
                field("type").as_deref(),
                field("name").as_deref(),
                field("uri").as_deref(),
            ) {
                (Some("ref/prompt"), Some(name), _) => {
                    resolve_name(ctx, msg, ListKind::Prompts, name)
                        .await
                        .map(|(b, n)| (b, "name", n))
                }
                (Some("ref/resource"), _, Some(uri)) => {
                    resolve_uri(ctx, msg, uri).await.map(|(b, u)| (b, "uri", u))
                }
                _ => return invalid(ctx, msg, "params.ref must name a prompt or a resource"),
            };
            match resolved {
                Ok((backend, field, value)) => {
                    let Some(message) =
                        splice::set(text, &["params", "ref", field], &splice::quoted(&value))
                    else {
                        return invalid(ctx, msg, "params.ref must be an object");
                    };
                    route(ctx, sess, msg, message, backend, None, None).await
                }
                Err(res) => res,
            }
        }
        _ => {
            ctx.record(AGGREGATED, msg, "method_not_found", 200, 0);
            rpc_refusal(
                msg.id.as_deref(),
                code::METHOD_NOT_FOUND,
                "method not found",
            )
        }
    }
}

fn invalid(ctx: &Ctx, msg: &Message, message: &str) -> Response {
    ctx.record(AGGREGATED, msg, "invalid_params", 200, 0);
    rpc_refusal(msg.id.as_deref(), code::INVALID_PARAMS, message)
}

/// A client's response to a backend's request (sampling, elicitation, roots): back to the
/// backend that asked, with its own id.
async fn client_response(ctx: &Ctx, sess: &Sess, text: &str) -> Response {
    let routed = splice::get_str(text, &["id"])
        .as_deref()
        .and_then(|id| id.strip_prefix(SERVER_REQUEST_PREFIX))
        .and_then(|rest| rest.split_once('.'))
        .and_then(|(server, raw)| {
            // The backend's own id, as JSON text (checked to be one).
            serde_json::from_str::<Value>(raw).ok()?;
            Some((server.parse::<i64>().ok()?, raw.to_string()))
        });
    let Some((server_id, original)) = routed else {
        return McpError::new(None, ErrorKind::UnknownResponse).into_response();
    };
    let link = match ctx.state.mcp.aggregate.link_slot(&sess.key, server_id) {
        Some(slot) => slot.lock().await.clone(),
        None => None,
    };
    let Some(link) = link else {
        return McpError::new(None, ErrorKind::AskerGone).into_response();
    };
    let Some(message) = splice::set(text, &["id"], &original) else {
        return McpError::new(None, ErrorKind::UnknownResponse).into_response();
    };
    match link.send(&ctx.state, Bytes::from(message)).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => relay::backend_error(None, &e),
    }
}

async fn client_notification(ctx: &Ctx, sess: &Sess, msg: &Message, text: &str) -> Response {
    let aggregate = &ctx.state.mcp.aggregate;
    match msg.method.as_deref() {
        Some("notifications/cancelled") => {
            // The request id as canonical JSON text (the key its request was kept under).
            let client_id = splice::get(text, &["params", "requestId"])
                .filter(|r| r.get().len() <= splice::MAX_ID_TEXT)
                .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
                .map(|v| v.to_string())
                .unwrap_or_default();
            let target = aggregate
                .inflight
                .lock()
                .ok()
                .and_then(|i| i.get(&(sess.key.clone(), client_id)).cloned());
            // The slot's lock is let go before the backend is written to (a guard in an `if let`
            // would live through the send, holding up this session's routed requests).
            let slot = target
                .as_ref()
                .and_then(|(server_id, _)| aggregate.link_slot(&sess.key, *server_id));
            let link = match slot {
                Some(slot) => slot.lock().await.clone(),
                None => None,
            };
            if let Some((_, gateway_id)) = target
                && let Some(link) = link
                && let Some(forwarded) =
                    splice::set(text, &["params", "requestId"], &gateway_id.to_string())
            {
                let _ = link.send(&ctx.state, Bytes::from(forwarded)).await;
            }
        }
        Some("notifications/initialized") => {}
        Some(_) => {
            // roots/list_changed and the like concern every backend session of the client.
            for slot in aggregate.links_of(&sess.key) {
                let link = slot.lock().await.clone();
                if let Some(link) = link {
                    let _ = link.send(&ctx.state, ctx.body.clone()).await;
                }
            }
        }
        None => {}
    }
    StatusCode::ACCEPTED.into_response()
}

/// GET and DELETE pass the gate too (scope, the user's budget).
async fn admit_stream(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
) -> Result<(), Response> {
    let caller = Caller {
        state,
        principal,
        meta: Some(meta),
        resource: "mcp",
        started: Instant::now(),
        bytes_in: 0,
        client_name: None,
        charged: false,
    };
    match gate::admit(&caller, None, Route::Gateway { server: AGGREGATED }).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.into_response()),
    }
}

/// `GET /mcp`: the session's stream of backend messages and list changes.
pub async fn get(State(state): State<AppState>, meta: RequestMeta, headers: HeaderMap) -> Response {
    let access_changes = state.auth_cache.subscribe();
    let principal = match gate::authenticate(&state, "mcp", &headers, &meta).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    if let Err(res) = admit_stream(&state, &principal, &meta).await {
        return res;
    }
    let Some(sid) = gate::header_str(&headers, H_SESSION) else {
        return McpError::new(
            None,
            ErrorKind::MethodNotAllowed("GET needs an Mcp-Session-Id"),
        )
        .into_response();
    };
    let Some(token) = live_session(&state, sid, principal.user_id).await else {
        return McpError::new(None, ErrorKind::SessionNotFound).into_response();
    };
    let (state_for_stream, principal_for_stream) = (state.clone(), principal.clone());
    let key: Arc<str> = Arc::from(token.k);
    let (outbox_tx, mut outbox_rx) = mpsc::channel::<Value>(256);
    if let Ok(mut outboxes) = state.mcp.aggregate.outboxes.lock() {
        outboxes.insert(key.clone(), outbox_tx);
    }
    let mut changes = state.mcp.aggregate.catalog.changes.subscribe();
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(32);
    tokio::spawn(async move {
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.tick().await;
        // A change notification is sent once per kind even if several backends changed.
        loop {
            let message = tokio::select! {
                m = outbox_rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
                change = changes.recv() => match change {
                    Ok(change) => {
                        let visible = match state.mcp.registry.snapshot().values().find(|b| b.id == change.server_id) {
                            Some(backend) => state.mcp.registry.may_use(&principal, backend).await.unwrap_or(false),
                            // A server that is gone changed the lists too.
                            None => true,
                        };
                        if !visible {
                            continue;
                        }
                        json!({ "jsonrpc": "2.0", "method": change.method })
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" })
                    }
                    Err(_) => break,
                },
                _ = keep_alive.tick() => {
                    if tx.send(Ok(Bytes::from_static(b": keep-alive\n\n"))).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            if tx
                .send(Ok(sse::Event::message(message.to_string()).encode()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut res = relay::sse_response(rx);
    if let Ok(v) = HeaderValue::from_str(sid) {
        res.headers_mut().insert(H_SESSION, v);
    }
    // The stream ends if the caller loses access while it is open.
    gate::revocable(
        &state_for_stream,
        &principal_for_stream,
        None,
        access_changes,
        res,
    )
}

/// `DELETE /mcp`: ends the session's backend sessions on this replica.
pub async fn delete(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
) -> Response {
    let principal = match gate::authenticate(&state, "mcp", &headers, &meta).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    if let Err(res) = admit_stream(&state, &principal, &meta).await {
        return res;
    }
    let token = match gate::header_str(&headers, H_SESSION) {
        Some(sid) => live_session(&state, sid, principal.user_id).await,
        None => None,
    };
    let Some(token) = token else {
        return McpError::new(None, ErrorKind::SessionNotFound).into_response();
    };
    if let Err(e) = end_session(&state, &token).await {
        return McpError::new(
            None,
            ErrorKind::Internal(e.context("ending an aggregated session failed")),
        )
        .into_response();
    }
    for slot in state.mcp.aggregate.remove_session(&token.k) {
        if let Some(link) = slot.lock().await.take() {
            link.close(&state).await;
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Aggregated MCP endpoint: every server the caller may use, as one MCP server (tools and
/// prompts named `{prefix}__{name}`). Streamable HTTP, both protocol eras. Errors are JSON-RPC
/// error bodies; 401 carries `WWW-Authenticate: Bearer resource_metadata="…"`.
#[utoipa::path(
    post,
    path = "/mcp",
    tag = "mcp",
    operation_id = "mcp_aggregated_post",
    request_body(content = serde_json::Value, content_type = "application/json", description = "One JSON-RPC message"),
    params(
        ("Mcp-Session-Id" = Option<String>, Header, description = "Session (handshake era)"),
        ("MCP-Protocol-Version" = Option<String>, Header, description = "Negotiated version"),
    ),
    responses(
        (status = 200, description = "JSON-RPC response (application/json or text/event-stream)"),
        (status = 202, description = "Notification or response accepted"),
        (status = 400, description = "Malformed message, missing session or header mismatch"),
        (status = 401, description = "Authentication required"),
        (status = 404, description = "Unknown session"),
        (status = 413, description = "Request too large"),
        (status = 415, description = "Not sent as application/json"),
        (status = 429, description = "Rate limited (JSON-RPC error with data.retryAfterSeconds)"),
    ),
    security(("bearer" = []))
)]
#[allow(dead_code)]
pub(crate) fn doc_post() {}

/// The aggregated session's server-to-client SSE stream: backend messages and list changes.
#[utoipa::path(
    get,
    path = "/mcp",
    tag = "mcp",
    operation_id = "mcp_aggregated_get",
    params(("Mcp-Session-Id" = Option<String>, Header, description = "Session (without one: 405)")),
    responses(
        (status = 200, description = "text/event-stream"),
        (status = 401, description = "Authentication required"),
        (status = 404, description = "Unknown session"),
        (status = 405, description = "No session given"),
    ),
    security(("bearer" = []))
)]
#[allow(dead_code)]
pub(crate) fn doc_get() {}

/// Ends an aggregated session and its backend sessions.
#[utoipa::path(
    delete,
    path = "/mcp",
    tag = "mcp",
    operation_id = "mcp_aggregated_delete",
    params(("Mcp-Session-Id" = Option<String>, Header, description = "Session (without one: 404)")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "Authentication required"),
        (status = 404, description = "Unknown session"),
    ),
    security(("bearer" = []))
)]
#[allow(dead_code)]
pub(crate) fn doc_delete() {}

#[cfg(test)]
mod tests {
    use crate::mcp::aggregate::lists::{decode_cursor, encode_cursor};
    use crate::mcp::aggregate::resolve::template_matches;

    #[test]
    fn cursors_round_trip() {
        let positions = vec![(3, 10), (7, 0)];
        let decoded = decode_cursor(&encode_cursor(&positions)).unwrap();
        assert_eq!(decoded.get(&3), Some(&10));
        assert_eq!(decoded.get(&7), Some(&0));
        assert!(decode_cursor("not a cursor").is_none());
    }

    #[test]
    fn templates_match_literal_parts() {
        assert!(template_matches("file:///{path}", "file:///etc/hosts"));
        assert!(template_matches(
            "repo://{owner}/{repo}/issues",
            "repo://a/b/issues"
        ));
        assert!(!template_matches(
            "repo://{owner}/{repo}/issues",
            "repo://a/b/pulls"
        ));
        assert!(!template_matches("db://{table}", "file:///x"));
    }
}
