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

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::identity::{self, Accept, Principal, RequestMeta};
use crate::auth::tokens::Audience;
use crate::error::{ApiError, AppPath};
use crate::events::{EventType, Severity};
use crate::mcp::backend::{BackendError, BackendResponse, Target, client_info, is_event_stream};
use crate::mcp::error::McpError;
use crate::mcp::gate::{self, Caller, Payload, Recorder, Route, finish};
use crate::mcp::inspect;
use crate::mcp::legacy::LegacySession;
use crate::mcp::message::{Kind, Message};
use crate::mcp::protocol::{
    self, H_LAST_EVENT_ID, H_METHOD, H_NAME, H_PARAM_PREFIX, H_SESSION, H_VERSION, code,
};
use crate::mcp::registry::{Backend, Era};
use crate::mcp::session::{ProxySession, Upstream};
use crate::mcp::sse;
use crate::state::AppState;

/// Sent on otherwise idle client streams so proxies keep them open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// An admitted request: who, to which backend.
struct Call {
    principal: Principal,
    backend: Arc<Backend>,
    started: Instant,
}

pub(crate) fn rpc_error(
    status: StatusCode,
    id: Option<&str>,
    code: i64,
    message: &str,
) -> Response {
    rpc_error_data(status, id, code, message, None)
}

pub(crate) fn rpc_error_data(
    status: StatusCode,
    id: Option<&str>,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        protocol::error_body(id, code, message, data),
    )
        .into_response()
}

pub(crate) fn backend_error(id: Option<&str>, e: &BackendError) -> Response {
    let status = match e {
        BackendError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    rpc_error(status, id, e.code(), &e.to_string())
}

/// 401 with the pointer to the protected-resource metadata (RFC 9728).
pub(crate) fn unauthorized(state: &AppState, resource: &str) -> Response {
    let mut res = rpc_error(
        StatusCode::UNAUTHORIZED,
        None,
        code::UNAUTHORIZED,
        "authentication required",
    );
    let challenge = format!(
        "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/{resource}\", scope=\"{}\"",
        state.config.public_url,
        crate::oauth::SCOPE_FULL,
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    res
}

/// `Origin`, when present, must be the gateway's own or one of `ALLOWED_ORIGINS`.
pub(crate) fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let public = url::Url::parse(&state.config.public_url).ok();
    let own = public
        .as_ref()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    origin == own
        || state.config.allowed_origins.iter().any(|o| o == origin)
        || public.is_some_and(|public| same_loopback(&public, origin))
}

/// A gateway served on loopback accepts loopback origins (`localhost`, `127.0.0.1`, `[::1]`, any
/// port: local clients and local proxies in front of it); a DNS-rebinding page still arrives
/// with its own, foreign origin. Origins are no credential: every request still authenticates.
fn same_loopback(public: &url::Url, origin: &str) -> bool {
    fn loopback(url: &url::Url) -> bool {
        match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
    }
    let Ok(origin) = url::Url::parse(origin) else {
        return false;
    };
    loopback(public)
        && loopback(&origin)
        && matches!(origin.scheme(), "http" | "https")
        && origin.path() == "/"
}

/// The gate every MCP request passes first: `Origin`, then authentication against current
/// state (401 with the protected-resource metadata of `resource`, e.g. `mcp/github`).
pub(crate) async fn authenticate(
    state: &AppState,
    resource: &str,
    headers: &HeaderMap,
    meta: &RequestMeta,
) -> Result<Principal, Response> {
    if !origin_allowed(state, headers) {
        state.events.record(
            EventType::OriginRejected,
            Severity::Medium,
            &meta.ctx(),
            None,
            None,
            json!({ "origin": headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), "resource": resource }),
        );
        return Err(rpc_error(
            StatusCode::FORBIDDEN,
            None,
            code::FORBIDDEN,
            "origin not allowed",
        ));
    }
    let accept = Accept {
        audience: Audience::Mcp,
        api_keys: true,
        resource: Some(resource),
    };
    match identity::authenticate(state, headers, meta, accept).await {
        Ok(p) => Ok(p),
        Err(ApiError::Unauthorized) => Err(unauthorized(state, resource)),
        Err(ApiError::Forbidden(m)) => {
            Err(rpc_error(StatusCode::FORBIDDEN, None, code::FORBIDDEN, m))
        }
        Err(e) => {
            tracing::error!(error = %e, "authentication failed unexpectedly");
            Err(internal_error())
        }
    }
}

pub(crate) fn internal_error() -> Response {
    rpc_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        None,
        code::BACKEND_ERROR,
        "internal error",
    )
}

/// Authenticates the caller and finds the (enabled) server; the policy checks are the gate's.
async fn find(
    state: &AppState,
    server: &str,
    headers: &HeaderMap,
    meta: &RequestMeta,
) -> Result<Call, Response> {
    let principal = authenticate(state, &format!("mcp/{server}"), headers, meta).await?;
    let Some(backend) = state.mcp.registry.get(server).filter(|b| b.enabled) else {
        return Err(rpc_error(
            StatusCode::NOT_FOUND,
            None,
            code::NOT_FOUND,
            "no such MCP server",
        ));
    };
    Ok(Call {
        principal,
        backend,
        started: Instant::now(),
    })
}

impl Call {
    fn caller<'a>(
        &'a self,
        state: &'a AppState,
        meta: &'a RequestMeta,
        resource: &'a str,
        bytes_in: usize,
    ) -> Caller<'a> {
        Caller {
            state,
            principal: &self.principal,
            meta: Some(meta),
            resource,
            started: self.started,
            bytes_in,
            client_name: None,
            charged: false,
        }
    }
}

/// Records a backend failure and answers the client with it. A backend that refuses the
/// gateway's stored credential also raises `backend_credential_error`.
fn fail(recorder: Option<Recorder>, id: Option<&str>, e: &BackendError) -> Response {
    if let (Some(r), BackendError::Status(server, status @ (401 | 403))) = (&recorder, e) {
        r.state.events.record(
            EventType::BackendCredentialError,
            Severity::High,
            &crate::events::EventContext::default(),
            r.row.user_id,
            r.row.username.as_deref(),
            json!({ "server": server, "status": status, "reason": "the backend refused the stored credential" }),
        );
    }
    finish(recorder, e.label(), 502, 0);
    backend_error(id, e)
}

/// Reads the request body, refusing more than `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            code::TOO_LARGE,
            "request body exceeds MCP_MAX_REQUEST_BYTES",
        )
    })
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /mcp/{server}`.
pub async fn post(
    State(state): State<AppState>,
    AppPath(server): AppPath<String>,
    meta: RequestMeta,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let call = match find(&state, &server, &parts.headers, &meta).await {
        Ok(call) => call,
        Err(res) => return res,
    };
    let body = match read_body(body, state.config.mcp.max_request_bytes).await {
        Ok(body) => body,
        Err(res) => return res,
    };
    let resource = format!("mcp/{server}");
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
        payload: Payload {
            raw: Some(&body),
            tree: None,
        },
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
    match tool_filter {
        Some(filter) => {
            let server_id = call.backend.id;
            filter_response(
                res,
                state.config.mcp.max_response_bytes,
                |_| true,
                move |message| {
                    if let Some(tools) = message
                        .get_mut("result")
                        .and_then(|r| r.get_mut("tools"))
                        .and_then(Value::as_array_mut)
                    {
                        tools.retain(|t| {
                            t["name"]
                                .as_str()
                                .is_some_and(|n| filter.permits(server_id, n))
                        });
                    }
                },
            )
            .await
        }
        _ => res,
    }
}

/// Rewrites every JSON-RPC message of a response (JSON or SSE) with `edit`; messages for which
/// `relevant` says no are passed on untouched (not parsed).
async fn filter_response(
    res: Response,
    limit: usize,
    relevant: fn(&[u8]) -> bool,
    edit: impl Fn(&mut Value) + Send + Sync + 'static,
) -> Response {
    let (mut parts, body) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    // Only for messages `relevant` picked (each caller checks it once).
    let rewrite = move |data: &str| match serde_json::from_str::<Value>(data) {
        Ok(mut message) => {
            edit(&mut message);
            message.to_string()
        }
        Err(_) => data.to_string(),
    };
    if !is_sse {
        return match axum::body::to_bytes(body, limit).await {
            Ok(bytes) if !relevant(&bytes) => Response::from_parts(parts, Body::from(bytes)),
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                Response::from_parts(parts, Body::from(rewrite(&text)))
            }
            Err(_) => internal_error(),
        };
    }
    // Rewritten as the client's connection reads it: no relay task, no channel.
    let events = futures_util::stream::unfold(
        (body.into_data_stream(), sse::Parser::default(), rewrite),
        move |(mut stream, mut parser, rewrite)| async move {
            loop {
                let chunk = match stream.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(_)) | None => return None,
                };
                let events = parser.push(&chunk);
                // Keep-alive comments pass through (the parser drops comments).
                if events.is_empty() && chunk.starts_with(b":") && parser.pending() == 0 {
                    return Some((Ok(chunk), (stream, parser, rewrite)));
                }
                let mut out = Vec::new();
                for event in events {
                    let data = if relevant(event.data.as_bytes()) {
                        rewrite(&event.data)
                    } else {
                        event.data
                    };
                    let event = sse::Event { data, ..event };
                    out.extend_from_slice(&event.encode());
                }
                if !out.is_empty() {
                    let item: Result<Bytes, Infallible> = Ok(Bytes::from(out));
                    return Some((item, (stream, parser, rewrite)));
                }
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(events))
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
        let Some(session) = state
            .mcp
            .sessions
            .get(sid, call.principal.user_id, call.backend.id)
        else {
            if let Some(owner) = state.mcp.sessions.owner(sid)
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
            return rpc_error(
                StatusCode::NOT_FOUND,
                msg.id.as_deref(),
                code::NOT_FOUND,
                "session not found; initialize again",
            );
        };
        session.touch();
        if let Some(r) = &mut recorder {
            r.row.client_name = session.init_params["clientInfo"]["name"]
                .as_str()
                .map(|n| n.chars().take(100).collect());
        }
        return in_session(&state, call, &session, msg, headers, body, recorder).await;
    }
    let modern = version == Some(protocol::LATEST_VERSION)
        || msg.meta_version.as_deref() == Some(protocol::LATEST_VERSION);
    if modern {
        return stateless(&state, call, msg, headers, body, recorder).await;
    }
    finish(recorder, "missing_session", 400, 0);
    rpc_error(
        StatusCode::BAD_REQUEST,
        msg.id.as_deref(),
        code::INVALID_REQUEST,
        "missing Mcp-Session-Id: send initialize first, or use MCP-Protocol-Version 2026-07-28",
    )
}

/// Headers the client sent that the backend should see (an allow-list; never credentials).
/// For a 2026-07-28 request (`modern`), `Mcp-Method` and `Mcp-Name` are written from the gate's
/// reading of the body, never copied from the client; `Mcp-Param-*` headers pass (intermediaries
/// must forward them).
fn forwarded_headers(headers: &HeaderMap, modern: Option<&Message>) -> Vec<(String, String)> {
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

/// How to treat the backend's answer on its way to the client.
#[derive(Clone, Default)]
struct Shape {
    /// A handshake-era backend answering a 2026-07-28 client: results gain the fields that
    /// revision requires (`resultType`, and `ttlMs`/`cacheScope` on list results).
    modernize: bool,
    list: bool,
    /// A `server/discover` answer: `supportedVersions` become the versions the gateway serves
    /// on the endpoint (the same list as its unsupported-version errors).
    discover: bool,
    /// In a backend session shared by several clients, ids and progress tokens are the
    /// gateway's own; this maps them back.
    ids: Option<Arc<IdSwap>>,
}

const PASS: Shape = Shape {
    modernize: false,
    list: false,
    discover: false,
    ids: None,
};

impl Shape {
    /// Whether answers pass as they came (nothing to reshape: no parse).
    fn passes(&self) -> bool {
        !self.modernize && !self.discover && self.ids.is_none()
    }
}

struct IdSwap {
    gateway_id: Value,
    client_id: Value,
    gateway_token: Option<Value>,
    client_token: Option<Value>,
}

fn modernize_shape(msg: &Message) -> Shape {
    Shape {
        modernize: true,
        list: matches!(
            msg.method.as_deref(),
            Some("tools/list" | "prompts/list" | "resources/list" | "resources/templates/list")
        ),
        discover: false,
        ids: None,
    }
}

/// Gives a message the gateway's own id (and progress token), so that clients sharing one
/// backend session can never collide; returns the new body and the swap.
fn swap_ids(state: &AppState, mut message: Value) -> (Bytes, Option<Arc<IdSwap>>) {
    let Some(client_id) = message.get("id").cloned() else {
        return (Bytes::from(message.to_string()), None);
    };
    let n = state.mcp.next_id();
    let gateway_id = Value::String(format!("amg-{n}"));
    message["id"] = gateway_id.clone();
    let client_token = message["params"]["_meta"].get("progressToken").cloned();
    let gateway_token = client_token
        .as_ref()
        .map(|_| Value::String(format!("amg-p-{n}")));
    if let Some(token) = &gateway_token {
        message["params"]["_meta"]["progressToken"] = token.clone();
    }
    (
        Bytes::from(message.to_string()),
        Some(Arc::new(IdSwap {
            gateway_id,
            client_id,
            gateway_token,
            client_token,
        })),
    )
}

fn reshape(data: String, shape: &Shape) -> String {
    if shape.passes() {
        return data;
    }
    let Ok(mut message) = serde_json::from_str::<Value>(&data) else {
        return data;
    };
    if let Some(ids) = &shape.ids {
        if message.get("id") == Some(&ids.gateway_id) && message.get("method").is_none() {
            message["id"] = ids.client_id.clone();
        }
        if let (Some(gateway), Some(client)) = (&ids.gateway_token, &ids.client_token)
            && message["params"].get("progressToken") == Some(gateway)
        {
            message["params"]["progressToken"] = client.clone();
        }
    }
    if shape.discover
        && let Some(result) = message.get_mut("result").and_then(Value::as_object_mut)
    {
        result.insert(
            "supportedVersions".into(),
            json!(protocol::SUPPORTED_VERSIONS),
        );
    }
    if shape.modernize
        && let Some(result) = message.get_mut("result").and_then(Value::as_object_mut)
    {
        result
            .entry("resultType")
            .or_insert_with(|| Value::String("complete".into()));
        if shape.list {
            // Never cacheable beyond this user: the gateway filters per user.
            result.entry("ttlMs").or_insert_with(|| json!(0));
            result
                .entry("cacheScope")
                .or_insert_with(|| Value::String("private".into()));
        }
    }
    message.to_string()
}

/// The envelope fields of a backend message the proxy looks at; everything else (the result)
/// is skipped, not built into a tree.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
    #[serde(borrow, default)]
    error: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
struct ErrorCode {
    code: i64,
}

/// Whether a message is the response to `id` (the request's id as JSON text), and if so its
/// JSON-RPC error code (`Err`).
fn response_status(data: &[u8], id: Option<&str>) -> Option<Result<(), i64>> {
    answer_of(serde_json::from_slice::<Envelope>(data).ok()?, id)
}

fn answer_of(envelope: Envelope, id: Option<&str>) -> Option<Result<(), i64>> {
    let want = id?;
    let got = envelope.id?.get();
    let same = got == want
        || serde_json::from_str::<Value>(got).ok() == serde_json::from_str::<Value>(want).ok();
    (same && envelope.method.is_none()).then(|| match envelope.error {
        Some(e) => Err(serde_json::from_str::<ErrorCode>(e.get()).map_or(0, |e| e.code)),
        None => Ok(()),
    })
}

/// A JSON response body checked in one pass: `None` when it is not JSON at all; otherwise
/// whether it answers `id` (as `response_status`).
fn check_json(data: &[u8], id: Option<&str>) -> Option<Option<Result<(), i64>>> {
    // Skipped values (the result) are not checked for UTF-8 by the parse below.
    std::str::from_utf8(data).ok()?;
    match serde_json::from_slice::<Envelope>(data) {
        Ok(envelope) => Some(answer_of(envelope, id)),
        // Valid JSON that is not a message object (a batch, a bare value).
        Err(_) => serde_json::from_slice::<serde::de::IgnoredAny>(data)
            .ok()
            .map(|_| None),
    }
}

/// The outcome label of a response, noting its error code on the record.
fn outcome_of(result: Result<(), i64>, recorder: &mut Option<Recorder>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(code) => {
            if let Some(r) = recorder {
                r.row.rpc_error_code = Some(code);
            }
            "error"
        }
    }
}

/// Turns a backend response into the client's, streaming SSE as it arrives.
async fn relay(
    target: &Target,
    res: BackendResponse,
    msg: &Message,
    session_id: Option<&str>,
    shape: Shape,
    mut recorder: Option<Recorder>,
) -> Response {
    let status = res.status();
    // The id the backend answers to: the gateway's own when ids were swapped.
    let want_id = shape
        .ids
        .as_ref()
        .map(|ids| ids.gateway_id.to_string())
        .or_else(|| msg.id.clone());
    let mut response = if status == reqwest::StatusCode::ACCEPTED {
        finish(recorder, "ok", 202, 0);
        StatusCode::ACCEPTED.into_response()
    } else if is_event_stream(res.headers()) && status.is_success() {
        sse_stream_response(relay_stream(
            res,
            target.clone(),
            want_id,
            msg.id.clone(),
            shape,
            Some(target.timeout),
            recorder,
        ))
    } else {
        match crate::mcp::backend::read_limited(target, res).await {
            Err(e) => fail(recorder, msg.id.as_deref(), &e),
            // A 5xx, or anything that is not JSON, never reaches the client as it is: it could
            // carry the backend's internals.
            Ok(bytes) => match (
                status.is_server_error(),
                check_json(&bytes, want_id.as_deref()),
            ) {
                (false, Some(answer)) => {
                    let outcome = match answer {
                        Some(result) if status.is_success() => outcome_of(result, &mut recorder),
                        Some(Err(code)) => outcome_of(Err(code), &mut recorder),
                        _ if status.is_success() => "ok",
                        _ => "error",
                    };
                    // Passed through as it came unless the answer must be reshaped.
                    let body = if !shape.passes() {
                        Bytes::from(reshape(
                            String::from_utf8_lossy(&bytes).into_owned(),
                            &shape,
                        ))
                    } else {
                        bytes
                    };
                    finish(recorder, outcome, status.as_u16(), body.len());
                    let code =
                        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
                }
                _ => {
                    let e = if status.is_success() {
                        BackendError::Protocol(target.name.clone())
                    } else {
                        BackendError::Status(target.name.clone(), status.as_u16())
                    };
                    fail(recorder, msg.id.as_deref(), &e)
                }
            },
        }
    };
    if let Some(sid) = session_id
        && let Ok(value) = HeaderValue::from_str(sid)
    {
        response.headers_mut().insert(H_SESSION, value);
    }
    response
}

pub(crate) type Chunks = mpsc::Receiver<Result<Bytes, Infallible>>;

pub(crate) fn sse_response(rx: Chunks) -> Response {
    sse_stream_response(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

pub(crate) fn sse_stream_response(
    stream: impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
    let mut res = Response::new(Body::from_stream(stream));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// The state of one relayed backend SSE stream. Dropping it (the stream ended, or the client
/// went away) writes the activity record.
struct Relay {
    stream: crate::mcp::backend::BodyStream,
    parser: sse::Parser,
    target: Target,
    want_id: Option<String>,
    client_id: Option<String>,
    shape: Shape,
    idle: Option<Duration>,
    idle_for: Duration,
    recorder: Option<Recorder>,
    bytes_out: usize,
    outcome: Option<&'static str>,
    ended: bool,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let closed = if self.ended { "ok" } else { "client_closed" };
        finish(
            self.recorder.take(),
            self.outcome.unwrap_or(closed),
            200,
            self.bytes_out,
        );
    }
}

impl Relay {
    /// The next bytes for the client; `None` once the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let mut out = Vec::new();
        let failure = loop {
            let next = tokio::time::timeout(KEEP_ALIVE, self.stream.next()).await;
            match next {
                Err(_) => {
                    self.idle_for += KEEP_ALIVE;
                    if self.idle.is_some_and(|limit| self.idle_for >= limit) {
                        break Some(BackendError::Timeout(self.target.name.clone()));
                    }
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
                Ok(None) => break None,
                Ok(Some(Err(_))) => {
                    break Some(BackendError::Unavailable(self.target.name.clone()));
                }
                Ok(Some(Ok(chunk))) => {
                    self.idle_for = Duration::ZERO;
                    for mut event in self.parser.push(&chunk) {
                        if let Some(result) =
                            response_status(event.data.as_bytes(), self.want_id.as_deref())
                        {
                            self.outcome = Some(outcome_of(result, &mut self.recorder));
                        }
                        if !event.data.is_empty() {
                            event.data = reshape(std::mem::take(&mut event.data), &self.shape);
                        }
                        out.extend_from_slice(&event.encode());
                    }
                    if self.parser.pending() > self.target.max_response_bytes {
                        break Some(BackendError::TooLarge(self.target.name.clone()));
                    }
                    if !out.is_empty() {
                        self.bytes_out += out.len();
                        return Some(Bytes::from(out));
                    }
                }
            }
        };
        self.ended = true;
        // A response stream that ended without the response gets an error the client can act on.
        if self.outcome.is_none() && self.want_id.is_some() {
            let e = failure.unwrap_or_else(|| BackendError::Protocol(self.target.name.clone()));
            let data =
                protocol::error_body(self.client_id.as_deref(), e.code(), &e.to_string(), None);
            out.extend_from_slice(&sse::Event::message(data).encode());
            self.outcome = Some(e.label());
        }
        self.bytes_out += out.len();
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

/// Relays a backend SSE stream event by event, as the client's connection reads it (no task, no
/// channel). `idle` bounds the wait for the next event (response streams); `None` waits forever
/// (the GET stream), with keep-alives either way. Closing the client stream drops the backend
/// stream (cancellation in 2026-07-28).
fn relay_stream(
    res: BackendResponse,
    target: Target,
    want_id: Option<String>,
    client_id: Option<String>,
    shape: Shape,
    idle: Option<Duration>,
    recorder: Option<Recorder>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let relay = Relay {
        stream: res.bytes_stream(),
        parser: sse::Parser::default(),
        target,
        want_id,
        client_id,
        shape,
        idle,
        idle_for: Duration::ZERO,
        recorder,
        bytes_out: 0,
        outcome: None,
        ended: false,
    };
    futures_util::stream::unfold(relay, |mut relay| async move {
        let bytes = relay.next().await?;
        Some((Ok(bytes), relay))
    })
}

pub(crate) fn parse_value(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
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
    let init_params = parse_value(&body)["params"].clone();
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
        return match new_session(state, call, msg, client_version, init_params, upstream) {
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

pub(crate) fn json_response(
    status: StatusCode,
    body: String,
    session_id: Option<&str>,
) -> Response {
    let mut res = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(sid) = session_id
        && let Ok(value) = HeaderValue::from_str(sid)
    {
        res.headers_mut().insert(H_SESSION, value);
    }
    res
}

fn init_result(
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
async fn initialize_bridged_modern(
    state: &AppState,
    call: &Call,
    msg: &Message,
    client_version: String,
    init_params: Value,
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
}

fn strip_nulls(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn start_session(
    state: &AppState,
    call: &Call,
    msg: &Message,
    client_version: String,
    init_params: Value,
    upstream: Upstream,
    body: String,
    recorder: Option<Recorder>,
) -> Response {
    match new_session(state, call, msg, client_version, init_params, upstream) {
        Ok(session) => {
            finish(recorder, "ok", 200, body.len());
            json_response(StatusCode::OK, body, Some(&session.id))
        }
        Err(res) => res,
    }
}

/// Registers a client session for the caller and server (a 500 only if the OS random
/// generator fails).
#[allow(clippy::result_large_err)] // the error is the response itself, on a path taken never
fn new_session(
    state: &AppState,
    call: &Call,
    msg: &Message,
    client_version: String,
    init_params: Value,
    upstream: Upstream,
) -> Result<Arc<ProxySession>, Response> {
    state
        .mcp
        .sessions
        .create(
            call.principal.user_id,
            call.backend.id,
            client_version,
            init_params,
            upstream,
        )
        .map_err(|e| {
            tracing::error!(error = format!("{e:#}"), "creating a session failed");
            rpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                msg.id.as_deref(),
                code::BACKEND_ERROR,
                "internal error",
            )
        })
}

/// A handshake-era client in front of an HTTP+SSE backend: the gateway holds the SSE stream.
async fn initialize_legacy(
    state: &AppState,
    call: &Call,
    msg: &Message,
    client_version: String,
    init_params: Value,
    recorder: Option<Recorder>,
) -> Response {
    let target = &call.backend.target;
    let result = async {
        let mut session = LegacySession::connect(&state.mcp.client, target).await?;
        let capabilities = init_params
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let info = init_params
            .get("clientInfo")
            .cloned()
            .unwrap_or_else(client_info);
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
        }
        Err(e) => fail(recorder, msg.id.as_deref(), &e),
    }
}

/// Adds the 2026-07-28 request metadata (version, client capabilities) to a message, for a
/// modern backend behind a handshake-era client.
pub(crate) fn with_modern_meta(
    body: &Bytes,
    capabilities: &Value,
) -> (Bytes, Vec<(String, String)>) {
    let mut message = parse_value(body);
    let mut headers = Vec::new();
    if let Some(method) = message["method"].as_str() {
        headers.push((H_METHOD.to_string(), method.to_string()));
        // The field the gate read for this method, never the other one.
        let name = match method {
            "tools/call" | "prompts/get" => message["params"]["name"].as_str(),
            "resources/read" => message["params"]["uri"].as_str(),
            _ => None,
        };
        if let Some(name) = name {
            headers.push((H_NAME.to_string(), header_safe(name)));
        }
        if !message["params"].is_object() {
            message["params"] = json!({});
        }
        let meta = &mut message["params"]["_meta"];
        if !meta.is_object() {
            *meta = json!({});
        }
        meta[protocol::META_VERSION] = json!(protocol::LATEST_VERSION);
        meta[protocol::META_CAPABILITIES] = capabilities.clone();
    }
    (Bytes::from(message.to_string()), headers)
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
    let upstream = {
        let guard = session.upstream.lock().await;
        match &*guard {
            Upstream::Http {
                session_id,
                version,
            } => Ok((session_id.clone(), version.clone())),
            Upstream::Modern => Err(None),
            Upstream::Legacy(legacy) => Err(Some(legacy.clone())),
        }
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
            let capabilities = session
                .init_params
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let (body, extra) = with_modern_meta(&body, &capabilities);
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
    let capabilities = session
        .init_params
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let info = session
        .init_params
        .get("clientInfo")
        .cloned()
        .unwrap_or_else(client_info);
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
    Ok(handshake.session_id)
}

/// Sends a message through a held HTTP+SSE stream.
async fn legacy_call(
    call: &Call,
    legacy: &Arc<tokio::sync::Mutex<LegacySession>>,
    msg: &Message,
    body: Bytes,
    session_id: Option<&str>,
    shape: Shape,
    mut recorder: Option<Recorder>,
) -> Response {
    let target = call.backend.target.clone();
    let message = parse_value(&body);
    if msg.kind != Kind::Request {
        let result = legacy.lock().await.notify(&message).await;
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
    let wants_progress = !message["params"]["_meta"]["progressToken"].is_null();
    let mut response = if wants_progress {
        // Progress first, then the result, on one SSE response.
        let (tx, chunks) = mpsc::channel(32);
        let want_id = msg.id.clone();
        tokio::spawn(async move {
            let mut bytes_out = 0;
            let mut outcome = None;
            loop {
                let next = tokio::time::timeout(target.timeout, rx.recv()).await;
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
                let data = protocol::error_body(want_id.as_deref(), e.code(), &e.to_string(), None);
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

/// A 2026-07-28 request's `Mcp-Method`/`Mcp-Name` must agree with its body; the refusal if not.
pub(crate) fn check_modern_headers(headers: &HeaderMap, msg: &Message) -> Option<Response> {
    let header_method = header_str(headers, H_METHOD).and_then(protocol::decode_header_value);
    // A response carries no method, and so no Mcp-Method.
    if header_method.as_deref() != msg.method.as_deref() {
        return Some(rpc_error(
            StatusCode::BAD_REQUEST,
            msg.id.as_deref(),
            code::HEADER_MISMATCH,
            "Mcp-Method header does not match the body's method",
        ));
    }
    // Mcp-Name only where the body names something, and then that.
    {
        let header_name = header_str(headers, H_NAME).and_then(protocol::decode_header_value);
        if header_name.as_deref() != msg.name.as_deref() {
            return Some(rpc_error(
                StatusCode::BAD_REQUEST,
                msg.id.as_deref(),
                code::HEADER_MISMATCH,
                "Mcp-Name header does not match the body's name or uri",
            ));
        }
    }
    None
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
                    let req = state
                        .mcp
                        .client
                        .request(target, reqwest::Method::DELETE)
                        .header(H_SESSION, b)
                        .header(H_VERSION, handshake.protocol_version);
                    let _ = state.mcp.client.send(target, req).await;
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

/// A 2026-07-28 client in front of an older backend: requests go through a backend session the
/// gateway holds for this user and server.
async fn held(
    state: &AppState,
    call: &Call,
    msg: &Message,
    body: Bytes,
    recorder: Option<Recorder>,
) -> Response {
    let message = parse_value(&body);
    let capabilities = message["params"]["_meta"][protocol::META_CAPABILITIES].clone();
    let client = message["params"]["_meta"][protocol::META_CLIENT_INFO].clone();
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
    let (body, ids) = swap_ids(state, message);
    let shape = Shape {
        ids,
        ..modernize_shape(msg)
    };
    let upstream = {
        let guard = session.upstream.lock().await;
        match &*guard {
            Upstream::Http {
                session_id,
                version,
            } => Ok((session_id.clone(), version.clone())),
            Upstream::Legacy(l) => Err(l.clone()),
            Upstream::Modern => Ok((None, protocol::LATEST_VERSION.to_string())),
        }
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

/// `GET /mcp/{server}`: the server-to-client stream of a session.
pub async fn get(
    State(state): State<AppState>,
    AppPath(server): AppPath<String>,
    meta: RequestMeta,
    headers: HeaderMap,
) -> Response {
    let (call, session) = match admit_session(&state, &server, &headers, &meta).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    session.touch();
    let target = call.backend.target.clone();
    let upstream = {
        let guard = session.upstream.lock().await;
        match &*guard {
            Upstream::Http {
                session_id,
                version,
            } => Ok((session_id.clone(), version.clone())),
            Upstream::Modern => {
                tracing::debug!(server = %server, "GET on a session bridged to a 2026-07-28 backend: no stream");
                return method_not_allowed();
            }
            Upstream::Legacy(l) => Err(l.clone()),
        }
    };
    match upstream {
        Ok((backend_session, version)) => {
            let resume = header_str(&headers, H_LAST_EVENT_ID);
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
                    header_str(&headers, H_VERSION).unwrap_or(&version),
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
                return rpc_error(
                    StatusCode::CONFLICT,
                    None,
                    code::INVALID_REQUEST,
                    "a stream is already open for this session",
                );
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

/// A client stream of a session's shared backend GET stream.
fn hub_response(rx: mpsc::Receiver<Bytes>) -> Response {
    sse_stream_response(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok(bytes), rx))
    }))
}

fn with_session_id(mut response: Response, session_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(session_id) {
        response.headers_mut().insert(H_SESSION, v);
    }
    response
}

fn method_not_allowed() -> Response {
    let mut res = rpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        code::INVALID_REQUEST,
        "method not allowed without a session",
    );
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    res
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
    if let Some(session) = state.mcp.sessions.remove(&session.id) {
        end_backend_session(&state, &call.backend.target, &session).await;
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
    let call = find(state, server, headers, meta).await?;
    let resource = format!("mcp/{server}");
    let caller = call.caller(state, meta, &resource, 0);
    let route = Route::Backend {
        backend: &call.backend,
        tool: None,
        payload: Payload {
            raw: None,
            tree: None,
        },
    };
    if let Err(e) = gate::admit(&caller, None, route).await {
        return Err(e.into_response());
    }
    let Some(sid) = header_str(headers, H_SESSION) else {
        return Err(method_not_allowed());
    };
    match state
        .mcp
        .sessions
        .get(sid, call.principal.user_id, call.backend.id)
    {
        Some(session) => Ok((call, session)),
        None => Err(rpc_error(
            StatusCode::NOT_FOUND,
            None,
            code::NOT_FOUND,
            "session not found; initialize again",
        )),
    }
}

/// Ends the backend side of a session (best effort).
pub async fn end_backend_session(state: &AppState, target: &Target, session: &ProxySession) {
    let guard = session.upstream.lock().await;
    if let Upstream::Http {
        session_id: Some(b),
        version,
    } = &*guard
    {
        let req = state
            .mcp
            .client
            .request(target, reqwest::Method::DELETE)
            .header(H_SESSION, b)
            .header(H_VERSION, version);
        let _ = state.mcp.client.send(target, req).await;
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
    ))]
#[allow(dead_code)]
pub(crate) fn doc_post() {}

/// The server-to-client SSE stream of a session (handshake era).
#[utoipa::path(get, path = "/mcp/{server}", tag = "mcp", operation_id = "mcp_get",
    security(("bearer" = [])),
    params(("server" = String, Path, description = "Server name"), ("Mcp-Session-Id" = String, Header, description = "Session")),
    responses(
        (status = 200, description = "SSE stream", content_type = "text/event-stream"),
        (status = 404, description = "Unknown session"),
        (status = 405, description = "No session given, or the backend offers no stream"),
    ))]
#[allow(dead_code)]
pub(crate) fn doc_get() {}

/// Ends a session, at the gateway and at the backend.
#[utoipa::path(delete, path = "/mcp/{server}", tag = "mcp", operation_id = "mcp_delete",
    security(("bearer" = [])),
    params(("server" = String, Path, description = "Server name"), ("Mcp-Session-Id" = String, Header, description = "Session")),
    responses((status = 204, description = "Ended"), (status = 404, description = "Unknown session")))]
#[allow(dead_code)]
pub(crate) fn doc_delete() {}
