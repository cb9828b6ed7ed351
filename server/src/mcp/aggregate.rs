//! `/mcp`: one MCP server made of every backend the caller may use.
//!
//! The gateway is the MCP server here (it answers `initialize`, `server/discover`, `ping` and
//! the lists itself) and an MCP client of each backend through [`Link`]s. Lists fan out in
//! parallel to the caller's enabled backends (from the per-backend [`Catalog`] cache), are
//! merged under prefixed names (`mcp/naming.rs`), filtered by the caller's tool rules, and
//! paginated with cursors that carry each backend's position. `tools/call`, `prompts/get`,
//! `resources/*` and `completion/complete` are routed by those names — never broadcast.
//!
//! Sessions survive replicas: the `Mcp-Session-Id` is the client's user id, protocol version,
//! capabilities and clientInfo sealed with the gateway's encryption key (AES-256-GCM). Any
//! replica sharing the key opens the backend sessions it needs from that, lazily, per
//! (client session, backend); a backend whose session expired is re-initialised alone.

pub mod catalog;

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::identity::{Principal, RequestMeta};
use crate::keys::random_bytes;
use crate::mcp::aggregate::catalog::{Catalog, Kind as ListKind, Listed};
use crate::mcp::backend::BackendError;
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::gate::{self, Caller, Payload, Route};
use crate::mcp::inspect;
use crate::mcp::link::Link;
use crate::mcp::message::{Kind, Message};
use crate::mcp::naming;
use crate::mcp::protocol::{self, H_SESSION, H_VERSION, code};
use crate::mcp::registry::{Backend, ToolFilter};
use crate::mcp::relay;
use crate::mcp::relay::Chunks;
use crate::mcp::sse;
use crate::mcp::upstream;
use crate::state::AppState;

/// What the aggregated endpoint is called in activity records and events.
pub const AGGREGATED: &str = "*";
const SESSION_CONTEXT: &str = "mcp:aggregated-session";
/// Sealed session contents larger than this keep only the names of the client's capabilities.
const MAX_SESSION_JSON: usize = 4096;
/// Prefix of the ids the gateway gives backend-to-client requests: `amg.{server}.{id}`.
const SERVER_REQUEST_PREFIX: &str = "amg.";
/// Prefix of resource URIs rewritten because two backends use the same one.
const URI_SCHEME: &str = "mcpgw://";
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Aggregated client sessions one user may have backend sessions for on one replica.
const MAX_SESSIONS_PER_USER: usize = 256;

type LinkSlot = Arc<tokio::sync::Mutex<Option<Arc<Link>>>>;
/// A backend request in flight (owned, so a streaming answer can keep polling it).
type BackendCall =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, BackendError>> + Send>>;
/// A client request on its way: (session key, the client's raw JSON id).
type Inflight = (Arc<str>, String);

/// The aggregated endpoint's state on this replica: cached lists, backend sessions per client
/// session, and the clients' GET streams.
#[derive(Default)]
pub struct AggregateState {
    pub catalog: Catalog,
    links: Mutex<HashMap<(Arc<str>, i64), LinkSlot>>,
    keys_by_user: Mutex<HashMap<i64, VecDeque<Arc<str>>>>,
    outboxes: Mutex<HashMap<Arc<str>, mpsc::Sender<Value>>>,
    /// (session, client request id) → (server, gateway id), for `notifications/cancelled`.
    inflight: Mutex<HashMap<Inflight, (i64, Value)>>,
}

impl AggregateState {
    fn slot(&self, key: &Arc<str>, user_id: i64, server_id: i64) -> LinkSlot {
        let mut evicted = Vec::new();
        let slot = {
            let Ok(mut links) = self.links.lock() else {
                return LinkSlot::default();
            };
            if let Some(slot) = links.get(&(key.clone(), server_id)) {
                return slot.clone();
            }
            if let Ok(mut keys) = self.keys_by_user.lock() {
                let queue = keys.entry(user_id).or_default();
                if !queue.contains(key) {
                    while queue.len() >= MAX_SESSIONS_PER_USER {
                        if let Some(old) = queue.pop_front() {
                            evicted.push(old);
                        }
                    }
                    queue.push_back(key.clone());
                }
            }
            links.retain(|(k, _), _| !evicted.contains(k));
            links.entry((key.clone(), server_id)).or_default().clone()
        };
        if let Ok(mut outboxes) = self.outboxes.lock() {
            outboxes.retain(|k, _| !evicted.contains(k));
        }
        slot
    }

    /// The open backend sessions of a client session.
    fn links_of(&self, key: &str) -> Vec<LinkSlot> {
        self.links
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|((k, _), _)| &**k == key)
                    .map(|(_, s)| s.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn link_slot(&self, key: &str, server_id: i64) -> Option<LinkSlot> {
        self.links
            .lock()
            .ok()?
            .iter()
            .find(|((k, s), _)| &**k == key && *s == server_id)
            .map(|(_, slot)| slot.clone())
    }

    /// Forgets a client session here; returns its backend sessions to end.
    fn remove_session(&self, key: &str) -> Vec<LinkSlot> {
        if let Ok(mut outboxes) = self.outboxes.lock() {
            outboxes.remove(key);
        }
        if let Ok(mut inflight) = self.inflight.lock() {
            inflight.retain(|(k, _), _| &**k != key);
        }
        let Ok(mut links) = self.links.lock() else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        links.retain(|(k, _), slot| {
            let keep = &**k != key;
            if !keep {
                removed.push(slot.clone());
            }
            keep
        });
        removed
    }

    /// Drops backend sessions of servers that are gone, of users who lost access, or idle.
    pub fn retain_links(&self, keep: impl Fn(i64, i64) -> bool, idle: Option<Duration>) {
        if let Ok(mut links) = self.links.lock() {
            links.retain(|(_, server_id), slot| {
                let Ok(guard) = slot.try_lock() else {
                    return true;
                };
                match &*guard {
                    None => false,
                    Some(link) => {
                        keep(link.session.user_id, *server_id)
                            && idle.is_none_or(|idle| !link.session.idle_for(idle))
                    }
                }
            });
        }
    }

    fn outbox(&self, key: &str) -> Option<mpsc::Sender<Value>> {
        self.outboxes.lock().ok()?.get(key).cloned()
    }
}

/// What the sealed `Mcp-Session-Id` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionToken {
    /// User id: a session presented by anyone else is unknown.
    u: i64,
    /// Random session key.
    k: String,
    /// Negotiated protocol version.
    v: String,
    /// The client's capabilities and clientInfo (to open backend sessions on any replica).
    c: Value,
    i: Value,
}

/// One request's client session: a handshake-era session, or a 2026-07-28 client's
/// per-user context.
struct Sess {
    key: Arc<str>,
    capabilities: Value,
    client: Value,
    modern: bool,
}

fn seal_session(state: &AppState, token: &SessionToken) -> anyhow::Result<String> {
    let mut json = serde_json::to_vec(token)?;
    if json.len() > MAX_SESSION_JSON {
        let names: serde_json::Map<String, Value> = token
            .c
            .as_object()
            .map(|c| c.keys().map(|k| (k.clone(), json!({}))).collect())
            .unwrap_or_default();
        let slim = SessionToken {
            c: Value::Object(names),
            i: json!({ "name": token.i["name"].as_str().unwrap_or("client").chars().take(100).collect::<String>() }),
            ..token.clone()
        };
        json = serde_json::to_vec(&slim)?;
    }
    let sealed = state.secret_box.seal(&json, SESSION_CONTEXT)?;
    Ok(format!("s1.{}", URL_SAFE_NO_PAD.encode(sealed)))
}

fn open_session(state: &AppState, id: &str) -> Option<SessionToken> {
    let sealed = URL_SAFE_NO_PAD.decode(id.strip_prefix("s1.")?).ok()?;
    let json = state.secret_box.open(&sealed, SESSION_CONTEXT).ok()?;
    serde_json::from_slice(&json).ok()
}

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
struct Ctx {
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
        match gate::admit(&self.caller(), Some(msg), route).await {
            // Answered here (or routed later): `record` or the routed admission writes the one
            // record.
            Ok(pass) => {
                if let Some(recorder) = pass.recorder {
                    recorder.discard();
                }
                Ok(())
            }
            Err(e) => Err(e.into_response()),
        }
    }

    /// The enabled backends the caller may use, by name.
    async fn usable(&self) -> Result<Vec<Arc<Backend>>, Response> {
        self.state
            .mcp
            .registry
            .usable(&self.principal)
            .await
            .map_err(|e| McpError::new(None, ErrorKind::Internal(e)).into_response())
    }

    async fn tool_filter(&self) -> Result<ToolFilter, Response> {
        self.state
            .mcp
            .registry
            .tool_filter(&self.principal)
            .await
            .map_err(|e| McpError::new(None, ErrorKind::Internal(e)).into_response())
    }
}

/// `POST /mcp`.
pub async fn post(State(state): State<AppState>, meta: RequestMeta, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let principal = match gate::authenticate(&state, "mcp", headers, &meta).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let body = match gate::read_body(body, state.config.mcp.max_request_bytes).await {
        Ok(body) => body,
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
    // The body as a JSON tree, parsed once (the 2026-07-28 branch needs it for `_meta`).
    let mut parsed: Option<Value> = None;
    let sess = if let Some(sid) = gate::header_str(headers, H_SESSION) {
        match open_session(&ctx.state, sid).filter(|t| t.u == ctx.principal.user_id) {
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
    } else if version == Some(protocol::LATEST_VERSION)
        || msg.meta_version.as_deref() == Some(protocol::LATEST_VERSION)
    {
        if let Some(res) = gate::check_modern_headers(headers, &msg) {
            ctx.record(AGGREGATED, &msg, "header_mismatch", 400, 0);
            return res;
        }
        let message = upstream::parse_value(&body);
        let meta = &message["params"]["_meta"];
        let sess = Sess {
            key: Arc::from(format!("u{}", ctx.principal.user_id)),
            capabilities: meta[protocol::META_CAPABILITIES].clone(),
            client: meta[protocol::META_CLIENT_INFO].clone(),
            modern: true,
        };
        parsed = Some(message);
        sess
    } else {
        ctx.record(AGGREGATED, &msg, "missing_session", 400, 0);
        return McpError::new(msg.id.as_deref(), ErrorKind::MissingSession).into_response();
    };
    ctx.client_name = sess.client["name"]
        .as_str()
        .map(|n| n.chars().take(100).collect());
    let message = parsed.unwrap_or_else(|| upstream::parse_value(&body));
    dispatch(&ctx, &sess, &msg, message).await
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
    let message = upstream::parse_value(body);
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
        c: message["params"]["capabilities"].clone(),
        i: message["params"]["clientInfo"].clone(),
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

async fn dispatch(ctx: &Ctx, sess: &Sess, msg: &Message, message: Value) -> Response {
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
        Kind::Response => return client_response(ctx, sess, message).await,
        Kind::Notification => return client_notification(ctx, sess, msg, message).await,
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
            match list(ctx, sess, msg, &message, kind).await {
                Ok(body) => {
                    ctx.record(AGGREGATED, msg, "ok", 200, body.len());
                    relay::json_response(StatusCode::OK, body, None)
                }
                Err(res) => res,
            }
        }
        "logging/setLevel" => {
            for slot in ctx.state.mcp.aggregate.links_of(&sess.key) {
                if let Some(link) = slot.lock().await.clone() {
                    let mut forwarded = message.clone();
                    forwarded["id"] = json!(format!("amg-{}", ctx.state.mcp.next_id()));
                    let state = ctx.state.clone();
                    tokio::spawn(async move {
                        let _ = link.call(&state, forwarded, None).await;
                    });
                }
            }
            reply(json!({}), false)
        }
        "tools/call" | "prompts/get" => {
            let kind = if method == "tools/call" {
                ListKind::Tools
            } else {
                ListKind::Prompts
            };
            let Some(exposed) = message["params"]["name"].as_str() else {
                return invalid(ctx, msg, "params.name is required");
            };
            match resolve_name(ctx, msg, kind, exposed).await {
                Ok((backend, name)) => {
                    let mut message = message.clone();
                    message["params"]["name"] = json!(name);
                    route(ctx, sess, msg, message, backend, Some(name), None).await
                }
                Err(res) => res,
            }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let Some(uri) = message["params"]["uri"].as_str() else {
                return invalid(ctx, msg, "params.uri is required");
            };
            match resolve_uri(ctx, msg, uri).await {
                Ok((backend, original)) => {
                    let mut message = message.clone();
                    message["params"]["uri"] = json!(original);
                    // A rewritten URI: the answer names it the way the client asked.
                    let rename = (original != uri).then(|| (original.clone(), uri.to_string()));
                    route(ctx, sess, msg, message, backend, None, rename).await
                }
                Err(res) => res,
            }
        }
        "completion/complete" => {
            let reference = &message["params"]["ref"];
            let resolved = match (
                reference["type"].as_str(),
                reference["name"].as_str(),
                reference["uri"].as_str(),
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
                    let mut message = message.clone();
                    message["params"]["ref"][field] = json!(value);
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
async fn client_response(ctx: &Ctx, sess: &Sess, mut message: Value) -> Response {
    let routed = message["id"]
        .as_str()
        .and_then(|id| id.strip_prefix(SERVER_REQUEST_PREFIX))
        .and_then(|rest| rest.split_once('.'))
        .and_then(|(server, raw)| {
            Some((
                server.parse::<i64>().ok()?,
                serde_json::from_str::<Value>(raw).ok()?,
            ))
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
    message["id"] = original;
    match link.send(&ctx.state, message).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => relay::backend_error(None, &e),
    }
}

async fn client_notification(ctx: &Ctx, sess: &Sess, msg: &Message, message: Value) -> Response {
    let aggregate = &ctx.state.mcp.aggregate;
    match msg.method.as_deref() {
        Some("notifications/cancelled") => {
            let client_id = message["params"]["requestId"].to_string();
            let target = aggregate
                .inflight
                .lock()
                .ok()
                .and_then(|i| i.get(&(sess.key.clone(), client_id)).cloned());
            if let Some((server_id, gateway_id)) = target
                && let Some(slot) = aggregate.link_slot(&sess.key, server_id)
                && let Some(link) = slot.lock().await.clone()
            {
                let mut forwarded = message.clone();
                forwarded["params"]["requestId"] = gateway_id;
                let _ = link.send(&ctx.state, forwarded).await;
            }
        }
        Some("notifications/initialized") => {}
        Some(_) => {
            // roots/list_changed and the like concern every backend session of the client.
            for slot in aggregate.links_of(&sess.key) {
                if let Some(link) = slot.lock().await.clone() {
                    let _ = link.send(&ctx.state, message.clone()).await;
                }
            }
        }
        None => {}
    }
    StatusCode::ACCEPTED.into_response()
}

/// The cursor of the aggregated lists: each backend's next offset (backends absent are done).
fn decode_cursor(raw: &str) -> Option<HashMap<i64, usize>> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let pairs: Vec<(i64, usize)> = serde_json::from_slice(&bytes).ok()?;
    Some(pairs.into_iter().collect())
}

fn encode_cursor(positions: &[(i64, usize)]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(positions).unwrap_or_default())
}

/// Merges one list over the caller's backends into the JSON-RPC response body. Items are
/// copied from the catalog's pre-rendered JSON; only colliding resource URIs are rewritten.
async fn list(
    ctx: &Ctx,
    sess: &Sess,
    msg: &Message,
    message: &Value,
    kind: ListKind,
) -> Result<String, Response> {
    let positions = match message["params"]["cursor"].as_str() {
        Some(raw) => match decode_cursor(raw) {
            Some(p) => Some(p),
            None => return Err(invalid(ctx, msg, "invalid cursor")),
        },
        None => None,
    };
    let backends: Vec<Arc<Backend>> = ctx
        .usable()
        .await?
        .into_iter()
        .filter(|b| positions.as_ref().is_none_or(|p| p.contains_key(&b.id)))
        .collect();
    let filter = if kind == ListKind::Tools {
        Some(ctx.tool_filter().await?)
    } else {
        None
    };
    let fetched = fetch_lists(ctx, msg, &backends, kind).await;
    // Only resources can need rewriting (two backends with one URI).
    let rewritten = (kind == ListKind::Resources)
        .then(|| colliding_uris(&fetched))
        .flatten();
    let page_size = ctx.state.config.mcp.aggregate_page_size;
    let mut page: Vec<std::borrow::Cow<'_, RawValue>> = Vec::new();
    let mut next: Vec<(i64, usize)> = Vec::new();
    for (backend, listed) in &fetched {
        // Positions count the items this caller can see.
        let visible: Vec<usize> = (0..listed.rendered.len())
            .filter(|&i| {
                filter
                    .as_ref()
                    .is_none_or(|f| listed.name(i).is_some_and(|n| f.permits(backend.id, n)))
            })
            .collect();
        let start = positions
            .as_ref()
            .and_then(|p| p.get(&backend.id).copied())
            .unwrap_or(0)
            .min(visible.len());
        let room = page_size.saturating_sub(page.len());
        let end = (start + room).min(visible.len());
        for &i in &visible[start..end] {
            match rewritten.as_ref().and_then(|r| r.get(&(backend.id, i))) {
                Some(raw) => page.push(std::borrow::Cow::Owned(raw.clone())),
                None => page.push(std::borrow::Cow::Borrowed(&*listed.rendered[i])),
            }
        }
        if end < visible.len() {
            next.push((backend.id, end));
        }
    }
    let mut body =
        String::with_capacity(64 + page.iter().map(|r| r.get().len() + 1).sum::<usize>());
    body.push_str(r#"{"jsonrpc":"2.0","id":"#);
    body.push_str(msg.id.as_deref().unwrap_or("null"));
    body.push_str(r#","result":{""#);
    body.push_str(kind.field());
    body.push_str(r#"":["#);
    for (i, item) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item.get());
    }
    body.push(']');
    if !next.is_empty() {
        body.push_str(r#","nextCursor":""#);
        body.push_str(&encode_cursor(&next));
        body.push('"');
    }
    if sess.modern {
        body.push_str(r#","resultType":"complete","ttlMs":0,"cacheScope":"private""#);
    }
    body.push_str("}}");
    Ok(body)
}

/// Fetches one list from each backend: fresh cached lists at once, the others in parallel; a
/// backend that fails or is too slow is left out (and an activity record says why).
async fn fetch_lists(
    ctx: &Ctx,
    msg: &Message,
    backends: &[Arc<Backend>],
    kind: ListKind,
) -> Vec<(Arc<Backend>, Arc<Listed>)> {
    let catalog = &ctx.state.mcp.aggregate.catalog;
    let registry = &ctx.state.mcp.registry;
    let mut out: Vec<Option<(Arc<Backend>, Arc<Listed>)>> = Vec::with_capacity(backends.len());
    let mut missing = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        if registry.is_offline(b.id) {
            ctx.record(&b.name, msg, "backend_offline", 200, 0);
            out.push(None);
            continue;
        }
        match catalog.cached_list(b, kind) {
            Some(listed) => out.push(Some((b.clone(), listed))),
            None => {
                out.push(None);
                missing.push(i);
            }
        }
    }
    if !missing.is_empty() {
        let fetched = futures_util::future::join_all(missing.iter().map(|&i| {
            let b = &backends[i];
            async move {
                let result =
                    match tokio::time::timeout(b.target.timeout, catalog.list(&ctx.state, b, kind))
                        .await
                    {
                        Ok(Ok(listed)) => Ok(listed),
                        Ok(Err(e)) => Err(e.label()),
                        Err(_) => Err("backend_timeout"),
                    };
                (i, result)
            }
        }))
        .await;
        for (i, result) in fetched {
            let backend = &backends[i];
            match result {
                Ok(listed) => out[i] = Some((backend.clone(), listed)),
                Err(label) => {
                    tracing::info!(server = %backend.name, reason = label, list = kind.method(), "backend left out of an aggregated list");
                    ctx.record(&backend.name, msg, label, 200, 0);
                }
            }
        }
    }
    out.into_iter().flatten().collect()
}

fn percent_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Resources whose URI more than one backend lists, rendered with the URI
/// `mcpgw://{prefix}/{percent-encoded uri}`, by (server, index); `None` when nothing collides.
fn colliding_uris(
    fetched: &[(Arc<Backend>, Arc<Listed>)],
) -> Option<HashMap<(i64, usize), Box<RawValue>>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (_, listed) in fetched {
        let unique: HashSet<&str> = listed
            .items
            .iter()
            .filter_map(|r| r["uri"].as_str())
            .collect();
        for uri in unique {
            *seen.entry(uri).or_default() += 1;
        }
    }
    if seen.values().all(|&n| n < 2) {
        return None;
    }
    let mut out = HashMap::new();
    for (backend, listed) in fetched {
        for (i, item) in listed.items.iter().enumerate() {
            if let Some(uri) = item["uri"].as_str()
                && seen.get(uri).copied().unwrap_or(0) > 1
            {
                let mut item = item.clone();
                item["uri"] = json!(format!(
                    "{URI_SCHEME}{}/{}",
                    backend.prefix,
                    percent_encode(uri)
                ));
                if let Ok(raw) = serde_json::value::to_raw_value(&item) {
                    out.insert((backend.id, i), raw);
                }
            }
        }
    }
    Some(out)
}

/// The enabled server with this prefix.
fn by_prefix(state: &AppState, prefix: &str) -> Option<Arc<Backend>> {
    state
        .mcp
        .registry
        .snapshot()
        .values()
        .find(|b| b.enabled && b.prefix == prefix)
        .cloned()
}

/// The backend and its own name for an exposed tool or prompt name (`Ok(None)`: no such name,
/// or an alias on a server the caller may not use).
/// Natural names are split at the prefix; aliases are looked up in the backend's list.
pub(crate) async fn resolve_exposed(
    state: &AppState,
    principal: &Principal,
    kind: ListKind,
    exposed: &str,
) -> Result<Option<(Arc<Backend>, String)>, BackendError> {
    let Some(backend) = naming::prefix_of(exposed).and_then(|p| by_prefix(state, p)) else {
        return Ok(None);
    };
    // A natural name resolves without a lookup (the gate then refuses a server the caller may
    // not use, with an `access_denied` event); an alias needs the server's list, which is never
    // fetched for someone without access.
    if let Some(name) = naming::natural_name(&backend.prefix, exposed) {
        return Ok(Some((backend, name.to_string())));
    }
    if !state
        .mcp
        .registry
        .may_use(principal, &backend)
        .await
        .unwrap_or(false)
    {
        return Ok(None);
    }
    let listed = state
        .mcp
        .aggregate
        .catalog
        .list(state, &backend, kind)
        .await?;
    let name = listed
        .items
        .iter()
        .filter_map(|t| t["name"].as_str())
        .find(|n| naming::exposed(&backend.prefix, n) == exposed)
        .map(str::to_string);
    Ok(name.map(|n| (backend, n)))
}

fn unknown(raw_id: Option<&str>, kind: ListKind, name: &str) -> Response {
    let what = if kind == ListKind::Tools {
        "tool"
    } else {
        "prompt"
    };
    rpc_refusal(
        raw_id,
        code::INVALID_PARAMS,
        &format!("unknown {what}: {name}"),
    )
}

/// The backend and its own name for an exposed tool or prompt name.
async fn resolve_name(
    ctx: &Ctx,
    msg: &Message,
    kind: ListKind,
    exposed: &str,
) -> Result<(Arc<Backend>, String), Response> {
    let raw_id = msg.id.as_deref();
    match resolve_exposed(&ctx.state, &ctx.principal, kind, exposed).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => {
            ctx.record(AGGREGATED, msg, "unknown_name", 200, 0);
            Err(unknown(raw_id, kind, exposed))
        }
        Err(e) => Err(relay::backend_error(raw_id, &e)),
    }
}

/// A URI template matches a URI when its literal parts appear in order (`{…}` matches
/// anything).
fn template_matches(template: &str, uri: &str) -> bool {
    let mut pattern = String::new();
    let mut in_var = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_var = true;
                pattern.push('*');
            }
            '}' => in_var = false,
            c if !in_var => pattern.push(c),
            _ => {}
        }
    }
    naming::glob_match(&pattern, uri)
}

/// The backend and its own URI for a URI the client reads.
async fn resolve_uri(
    ctx: &Ctx,
    msg: &Message,
    uri: &str,
) -> Result<(Arc<Backend>, String), Response> {
    if let Some(rest) = uri.strip_prefix(URI_SCHEME)
        && let Some((prefix, encoded)) = rest.split_once('/')
        && let Some(backend) = by_prefix(&ctx.state, prefix)
    {
        return Ok((backend, crate::oauth::form_decode(encoded)));
    }
    let backends = ctx.usable().await?;
    let resources = fetch_lists(ctx, msg, &backends, ListKind::Resources).await;
    let exact: Vec<&Arc<Backend>> = resources
        .iter()
        .filter(|(_, listed)| listed.items.iter().any(|r| r["uri"].as_str() == Some(uri)))
        .map(|(b, _)| b)
        .collect();
    if exact.len() == 1 {
        return Ok((exact[0].clone(), uri.to_string()));
    }
    if exact.is_empty() {
        let templates = fetch_lists(ctx, msg, &backends, ListKind::Templates).await;
        let matching: Vec<&Arc<Backend>> = templates
            .iter()
            .filter(|(_, listed)| {
                listed
                    .items
                    .iter()
                    .filter_map(|t| t["uriTemplate"].as_str())
                    .any(|t| template_matches(t, uri))
            })
            .map(|(b, _)| b)
            .collect();
        if matching.len() == 1 {
            return Ok((matching[0].clone(), uri.to_string()));
        }
        if matching.is_empty() {
            ctx.record(AGGREGATED, msg, "not_found", 200, 0);
            return Err(rpc_refusal(msg.id.as_deref(), -32002, "resource not found"));
        }
    }
    ctx.record(AGGREGATED, msg, "ambiguous", 200, 0);
    Err(rpc_refusal(
        msg.id.as_deref(),
        code::INVALID_PARAMS,
        "more than one server offers this resource; use the URI from resources/list",
    ))
}

/// The cached backend session under `key` with `backend` (reused while the server is unchanged
/// and the session alive), or a new one; `true` when it was opened now.
async fn cached_link(
    state: &AppState,
    key: &Arc<str>,
    user_id: i64,
    backend: &Arc<Backend>,
    capabilities: Value,
    client: Value,
) -> Result<(Arc<Link>, bool), BackendError> {
    let slot = state.mcp.aggregate.slot(key, user_id, backend.id);
    let mut guard = slot.lock().await;
    if let Some(link) = &*guard
        && link.backend.row.updated_at == backend.row.updated_at
        && link.alive().await
    {
        link.session.touch();
        return Ok((link.clone(), false));
    }
    let link = Arc::new(Link::open(state, backend.clone(), user_id, capabilities, client).await?);
    *guard = Some(link.clone());
    Ok((link, true))
}

/// The backend session of this client session with `backend`, opened on first use.
async fn link_for(
    ctx: &Ctx,
    sess: &Sess,
    backend: &Arc<Backend>,
) -> Result<Arc<Link>, BackendError> {
    let (link, fresh) = cached_link(
        &ctx.state,
        &sess.key,
        ctx.principal.user_id,
        backend,
        sess.capabilities.clone(),
        sess.client.clone(),
    )
    .await?;
    if fresh && let Some(mut rx) = link.listen(&ctx.state).await {
        let state = ctx.state.clone();
        let key = sess.key.clone();
        let server_id = backend.id;
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let Some(message) = from_backend(&state, server_id, message, None) else {
                    continue;
                };
                if let Some(outbox) = state.mcp.aggregate.outbox(&key) {
                    let _ = outbox.try_send(message);
                }
            }
        });
    }
    Ok(link)
}

/// A backend session for the admin console: one per admin and backend, with no client
/// capabilities and no client stream.
pub(crate) async fn console_link(
    state: &AppState,
    user_id: i64,
    backend: &Arc<Backend>,
) -> Result<Arc<Link>, BackendError> {
    let key: Arc<str> = Arc::from(format!("console:{user_id}"));
    let client = json!({ "name": "authmcp-console", "version": env!("CARGO_PKG_VERSION") });
    cached_link(state, &key, user_id, backend, json!({}), client)
        .await
        .map(|(link, _)| link)
}

/// A message a backend sent outside a response, on its way to the client: list changes
/// invalidate the catalog (and reach clients through the change feed), server requests get an
/// id that names the backend, progress gets the client's token back.
fn from_backend(
    state: &AppState,
    server_id: i64,
    mut message: Value,
    progress: Option<(&Value, &Value)>,
) -> Option<Value> {
    let method = message["method"].as_str()?.to_string();
    if method.ends_with("/list_changed") && method != "notifications/roots/list_changed" {
        state.mcp.aggregate.catalog.changed(server_id, &method);
        return None;
    }
    if let Some(id) = message.get("id").cloned() {
        message["id"] = json!(format!("{SERVER_REQUEST_PREFIX}{server_id}.{id}"));
    }
    if method == "notifications/progress"
        && let Some((gateway, client)) = progress
        && message["params"]["progressToken"] == *gateway
    {
        message["params"]["progressToken"] = client.clone();
    }
    Some(message)
}

/// Sends a request to the backend that owns it and relays the answer: as SSE (progress and
/// other messages first) when the client accepts it, else as JSON.
async fn route(
    ctx: &Ctx,
    sess: &Sess,
    msg: &Message,
    mut message: Value,
    backend: Arc<Backend>,
    tool: Option<String>,
    rename_uri: Option<(String, String)>,
) -> Response {
    let state = &ctx.state;
    let is_tool_call = msg.is("tools/call");
    let tool_name = tool.filter(|_| is_tool_call);
    let payload = Payload {
        raw: Some(&ctx.body),
        tree: Some(&message),
    };
    let caller = ctx.caller();
    let route_to = Route::Backend {
        backend: &backend,
        tool: tool_name.as_deref(),
        payload,
    };
    let mut recorder = match gate::admit(&caller, Some(msg), route_to).await {
        Ok(pass) => pass.recorder,
        Err(e) => return e.into_response(),
    };
    let mut record = |status: &str, http: u16, bytes: usize| {
        gate::finish(recorder.take(), status, http, bytes);
    };
    let link = match link_for(ctx, sess, &backend).await {
        Ok(link) => link,
        Err(e) => {
            record(e.label(), 502, 0);
            return relay::backend_error(msg.id.as_deref(), &e);
        }
    };
    let n = state.mcp.next_id();
    let gateway_id = json!(format!("amg-{n}"));
    message["id"] = gateway_id.clone();
    let client_token = message["params"]["_meta"].get("progressToken").cloned();
    let gateway_token = json!(format!("amg-p-{n}"));
    if client_token.is_some() {
        message["params"]["_meta"]["progressToken"] = gateway_token.clone();
    }
    let client_id = msg.id.clone().unwrap_or_default();
    let inflight_key = (sess.key.clone(), client_id.clone());
    if let Ok(mut inflight) = state.mcp.aggregate.inflight.lock() {
        inflight.insert(inflight_key.clone(), (backend.id, gateway_id));
    }
    let client_id_value = id_value(msg.id.as_deref());
    let modern = sess.modern;
    let answer_check = (
        state.clone(),
        ctx.meta.clone(),
        ctx.principal.clone(),
        backend.name.clone(),
        backend.detection,
        tool_name.clone(),
    );
    let finish_reply = move |mut reply: Value| -> (String, &'static str) {
        reply["id"] = client_id_value.clone();
        if let Some((original, asked)) = &rename_uri
            && let Some(contents) = reply
                .get_mut("result")
                .and_then(|r| r.get_mut("contents"))
                .and_then(Value::as_array_mut)
        {
            for item in contents {
                if item["uri"].as_str() == Some(original.as_str()) {
                    item["uri"] = json!(asked);
                }
            }
        }
        if modern && let Some(obj) = reply.get_mut("result").and_then(Value::as_object_mut) {
            obj.entry("resultType")
                .or_insert_with(|| Value::String("complete".into()));
        }
        let mut text = reply.to_string();
        // The answer is checked (once serialised, the cheap pre-check decides whether to).
        let (state, events_ctx, principal, server, mode, tool) = &answer_check;
        if is_tool_call
            && *mode != crate::detect::Mode::Off
            && crate::detect::maybe_suspicious(text.as_bytes())
            && inspect::check_answer(
                state,
                &events_ctx.ctx(),
                Some(principal),
                server,
                *mode,
                tool.as_deref(),
                &mut reply,
            )
        {
            text = reply.to_string();
        }
        let outcome = if reply.get("error").is_some() {
            "error"
        } else {
            "ok"
        };
        (text, outcome)
    };
    let (events_tx, mut events_rx) = mpsc::channel::<Value>(64);
    let mut call: BackendCall = {
        let state = state.clone();
        let link = link.clone();
        Box::pin(async move { link.call(&state, message, Some(&events_tx)).await })
    };
    let server_id = backend.id;
    let progress = client_token.map(|c| (gateway_token, c));
    // The answer alone comes back as JSON; if the backend sends anything before it (progress,
    // log messages, a request to the client) and the client takes SSE, the answer streams.
    let mut pending = Vec::new();
    let early = tokio::select! {
        result = &mut call => Some(result),
        Some(m) = events_rx.recv() => {
            pending.push(m);
            None
        }
    };
    if let Some(result) = &early {
        while let Ok(m) = events_rx.try_recv() {
            pending.push(m);
        }
        if pending.is_empty() || !ctx.accepts_sse {
            let outbox = state.mcp.aggregate.outbox(&sess.key);
            for m in pending {
                if let Some(m) = from_backend(state, server_id, m, None)
                    && let Some(outbox) = &outbox
                {
                    let _ = outbox.try_send(m);
                }
            }
            if let Ok(mut inflight) = state.mcp.aggregate.inflight.lock() {
                inflight.remove(&inflight_key);
            }
            return match result {
                Ok(reply) => {
                    let (body, outcome) = finish_reply(reply.clone());
                    record(outcome, 200, body.len());
                    relay::json_response(StatusCode::OK, body, None)
                }
                Err(e) => {
                    record(e.label(), 502, 0);
                    relay::backend_error(msg.id.as_deref(), e)
                }
            };
        }
    }
    if !ctx.accepts_sse {
        // JSON only: whatever the backend sends meanwhile goes to the client's GET stream.
        let outbox = state.mcp.aggregate.outbox(&sess.key);
        let forward = |m: Value| {
            if let Some(m) = from_backend(state, server_id, m, None)
                && let Some(outbox) = &outbox
            {
                let _ = outbox.try_send(m);
            }
        };
        pending.into_iter().for_each(forward);
        let result = loop {
            tokio::select! {
                Some(m) = events_rx.recv() => forward(m),
                r = &mut call => break r,
            }
        };
        while let Ok(m) = events_rx.try_recv() {
            forward(m);
        }
        if let Ok(mut inflight) = state.mcp.aggregate.inflight.lock() {
            inflight.remove(&inflight_key);
        }
        return match result {
            Ok(reply) => {
                let (body, outcome) = finish_reply(reply);
                record(outcome, 200, body.len());
                relay::json_response(StatusCode::OK, body, None)
            }
            Err(e) => {
                record(e.label(), 502, 0);
                relay::backend_error(msg.id.as_deref(), &e)
            }
        };
    }
    if let Some(result) = early {
        call = Box::pin(futures_util::future::ready(result));
    }
    let (chunks_tx, chunks_rx): (mpsc::Sender<Result<Bytes, Infallible>>, Chunks) =
        mpsc::channel(32);
    let state = state.clone();
    let recorder = recorder.take();
    let raw_id = msg.id.clone();
    tokio::spawn(async move {
        let mut bytes_out = 0usize;
        let progress = progress.as_ref().map(|(g, c)| (g, c));
        let send = |m: Value, bytes_out: &mut usize| {
            let event = from_backend(&state, server_id, m, progress).map(|m| {
                let bytes = sse::Event::message(m.to_string()).encode();
                *bytes_out += bytes.len();
                bytes
            });
            let tx = chunks_tx.clone();
            async move {
                match event {
                    Some(bytes) => tx.send(Ok(bytes)).await.is_ok(),
                    None => true,
                }
            }
        };
        let mut client_gone = false;
        for m in pending {
            client_gone |= !send(m, &mut bytes_out).await;
        }
        // Dropping `call` (client gone) drops the backend stream: the request is cancelled.
        let result = if client_gone {
            None
        } else {
            loop {
                tokio::select! {
                    Some(m) = events_rx.recv() => {
                        if !send(m, &mut bytes_out).await {
                            break None;
                        }
                    }
                    r = &mut call => {
                        let mut open = true;
                        while let Ok(m) = events_rx.try_recv() {
                            open &= send(m, &mut bytes_out).await;
                        }
                        break open.then_some(r);
                    }
                }
            }
        };
        drop(call);
        let (status, body) = match result {
            None => ("client_closed", None),
            Some(Ok(reply)) => {
                let (body, outcome) = finish_reply(reply);
                (outcome, Some(body))
            }
            Some(Err(e)) => (
                e.label(),
                Some(McpError::new(raw_id.as_deref(), ErrorKind::Backend(e.clone())).body()),
            ),
        };
        if let Some(body) = body {
            let bytes = sse::Event::message(body).encode();
            bytes_out += bytes.len();
            let _ = chunks_tx.send(Ok(bytes)).await;
        }
        if let Ok(mut inflight) = state.mcp.aggregate.inflight.lock() {
            inflight.remove(&inflight_key);
        }
        gate::finish(recorder, status, 200, bytes_out);
    });
    relay::sse_response(chunks_rx)
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
    let Some(token) = open_session(&state, sid).filter(|t| t.u == principal.user_id) else {
        return McpError::new(None, ErrorKind::SessionNotFound).into_response();
    };
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
    res
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
    let Some(token) = gate::header_str(&headers, H_SESSION)
        .and_then(|sid| open_session(&state, sid))
        .filter(|t| t.u == principal.user_id)
    else {
        return McpError::new(None, ErrorKind::SessionNotFound).into_response();
    };
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
    params(("Mcp-Session-Id" = String, Header, description = "Session")),
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
    params(("Mcp-Session-Id" = String, Header, description = "Session")),
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
    use super::*;

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
