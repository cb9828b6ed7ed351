//! The one policy gate every MCP path passes: the per-server proxy, the aggregated `/mcp` and
//! the admin test console (and any path added later).
//!
//! `read` is the one strict reading of a request body (`message.rs`); `admit` decides on that
//! reading, in this order: OAuth scope → server access → tool rule → rate limits (user,
//! user × server, user × tool) → payload detection. Every refusal raises the same security event
//! and writes the same activity record on every path; an admitted request carries a `Recorder`
//! that writes exactly one activity record when the request ends. Whatever the gate cannot find
//! (a `tools/call` without a tool) is refused, never waved through.
//!
//! Before the body, the edges call `authenticate` (origin, then the bearer credential against
//! current state); `check_modern_headers` compares a 2026-07-28 request's `Mcp-*` headers with
//! the reading.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::identity::{self, Accept, McpScope, Principal, RequestMeta};
use crate::auth::tokens::Audience;
use crate::db::{self, servers::ActivityRow};
use crate::detect::{self, Mode};
use crate::error::ApiError;
use crate::events::{EventContext, EventType, Severity};
use crate::mcp::aggregate::catalog::Kind as ListKind;
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::inspect;
use crate::mcp::message::{Kind, Malformed, Message};
use crate::mcp::pins::{Pinning, Verdict};
use crate::mcp::protocol::{self, H_METHOD, H_NAME, H_VERSION, code};
use crate::mcp::registry::Backend;
use crate::state::AppState;

/// Who is asking, on which path.
pub struct Caller<'a> {
    pub state: &'a AppState,
    pub principal: &'a Principal,
    /// The request's context for security events; `None` when the path has none to give.
    pub meta: Option<&'a RequestMeta>,
    /// The MCP resource addressed (`mcp/github`, `mcp`; `console` for the admin console), for
    /// the step-up challenge and events.
    pub resource: &'a str,
    pub started: Instant,
    pub bytes_in: usize,
    /// The client's name for activity records.
    pub client_name: Option<String>,
    /// The user's own budget was taken for this request already (the aggregated endpoint admits
    /// a routed request once before resolving its name, and again for the backend).
    pub charged: bool,
}

/// Where an admitted message goes.
pub enum Route<'a> {
    /// Answered by the gateway itself (the aggregated endpoint's lists, `ping`, `initialize`);
    /// recorded under `server`.
    Gateway { server: &'a str },
    /// A request the aggregated endpoint will route once it has resolved the name: scope and the
    /// user's budget now (before any lookup), the rest when it is admitted for its `Backend`.
    Resolving { server: &'a str },
    /// One backend. `tool` is the backend's own name of a `tools/call`'s tool; `payload` is what
    /// the detection rules scan (the arguments are read from it).
    Backend {
        backend: &'a Backend,
        tool: Option<&'a str>,
        payload: Payload<'a>,
    },
}

/// The message as the payload rules read it: the body's bytes (none: nothing to scan). Its
/// `params.arguments` are scanned as text, only when the cheap pre-check finds something.
#[derive(Clone, Copy)]
pub struct Payload<'a> {
    pub raw: Option<&'a [u8]>,
}

/// An admitted request.
pub struct Pass {
    /// Writes the request's one activity record (`None` for notifications and responses, and
    /// for `Gateway`/`Resolving` routes, whose edge records the request itself).
    pub recorder: Option<Recorder>,
    /// A payload rule matched the arguments (logged, not blocked).
    pub suspicious: bool,
}

/// Reads a POST body strictly: the media type, the version header (once, supported), then the
/// message (see `message.rs`). A refusal raises a `malformed_request` event (folded).
pub fn read(caller: &Caller<'_>, headers: &HeaderMap, body: &Bytes) -> Result<Message, McpError> {
    for name in [H_VERSION, H_METHOD, H_NAME] {
        if single(headers, name).is_err() {
            let reason = "MCP-Protocol-Version, Mcp-Method and Mcp-Name may appear once each, as visible ASCII";
            malformed_event(caller, reason);
            let malformed = Malformed {
                code: code::INVALID_REQUEST,
                reason,
            };
            let modern = false;
            return Err(McpError::new(
                None,
                ErrorKind::Malformed { malformed, modern },
            ));
        }
    }
    let version = single(headers, H_VERSION).ok().flatten();
    let modern = version == Some(protocol::LATEST_VERSION);
    let refuse = |malformed: Malformed, id: Option<String>| {
        malformed_event(caller, malformed.reason);
        McpError {
            id,
            kind: ErrorKind::Malformed { malformed, modern },
        }
    };
    if !is_json(headers) {
        malformed_event(caller, "Content-Type must be application/json");
        return Err(McpError::new(None, ErrorKind::UnsupportedMediaType));
    }
    let msg = if modern {
        Message::parse_modern(body)
    } else {
        Message::parse(body)
    }
    .map_err(|u| refuse(u.malformed, u.id))?;
    if let Some(version) = version
        && !protocol::SUPPORTED_VERSIONS.contains(&version)
    {
        malformed_event(caller, "unsupported MCP-Protocol-Version");
        return Err(McpError::new(
            msg.id.as_deref(),
            ErrorKind::UnsupportedVersion {
                requested: version.chars().take(64).collect(),
            },
        ));
    }
    // The header and the body's `_meta` version agree, in either direction (a body that claims
    // 2026-07-28 under another header would be routed as one but read as the other).
    if msg.meta_version.is_some() && msg.meta_version.as_deref() != version {
        malformed_event(caller, "MCP-Protocol-Version does not match params._meta");
        return Err(McpError::new(
            msg.id.as_deref(),
            ErrorKind::Malformed {
                malformed: Malformed {
                    code: code::HEADER_MISMATCH,
                    reason: "MCP-Protocol-Version does not match params._meta's protocol version",
                },
                modern,
            },
        ));
    }
    Ok(msg)
}

/// `Content-Type: application/json`, optionally with a UTF-8 charset; nothing else
/// (`application/json-seq` is another format).
fn is_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
    {
        return false;
    }
    parts.all(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case("charset")
            && v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}

/// A header that repeats or is not visible ASCII.
#[derive(Debug, PartialEq, Eq)]
pub struct BadHeader;

/// A header that may appear at most once.
pub fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, BadHeader> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => v.to_str().map(Some).map_err(|_| BadHeader),
        (Some(_), Some(_)) => Err(BadHeader),
    }
}

/// Decides on one message (or, with `None`, on opening or ending a session's stream) against
/// current state. See the module documentation for the order.
pub async fn admit(
    caller: &Caller<'_>,
    msg: Option<&Message>,
    route: Route<'_>,
) -> Result<Pass, McpError> {
    let state = caller.state;
    let principal = caller.principal;
    let id = msg.and_then(|m| m.id.as_deref());
    let (server, backend, tool) = match &route {
        Route::Gateway { server } => (*server, None, None),
        Route::Resolving { server } => (*server, None, None),
        Route::Backend { backend, tool, .. } => (backend.name.as_str(), Some(*backend), *tool),
    };
    let refuse = |kind: ErrorKind| {
        let e = McpError::new(id, kind);
        if let Some(msg) = msg
            && msg.kind == Kind::Request
        {
            let mut r = Recorder::new(caller, msg, server, tool);
            if matches!(e.kind, ErrorKind::Blocked) {
                r.row.suspicious = 1;
                r.row.rpc_error_code = Some(inspect::BLOCKED);
            }
            r.finish(e.label(), e.status().as_u16(), 0);
        }
        e
    };
    let scope_ok = match msg {
        Some(msg) => scope_allows(principal.scope, msg),
        // Opening or ending a session's stream: any MCP scope.
        None => principal.scope != McpScope::None,
    };
    if !scope_ok {
        deny(
            caller,
            server,
            tool,
            "the token's scope does not allow this request",
        );
        return Err(refuse(ErrorKind::InsufficientScope {
            metadata: format!(
                "{}/.well-known/oauth-protected-resource/{}",
                state.config.public_url, caller.resource
            ),
        }));
    }
    if let Some(backend) = backend {
        match state.mcp.registry.may_use(principal, backend).await {
            Ok(true) => {}
            Ok(false) => {
                deny(caller, server, tool, "no access to this server");
                return Err(refuse(ErrorKind::NoAccess {
                    whole_endpoint: caller.resource != "mcp",
                }));
            }
            Err(e) => return Err(refuse(ErrorKind::Internal(e))),
        }
    }
    let is_call = msg.is_some_and(|m| m.is("tools/call"));
    if is_call && !matches!(route, Route::Resolving { .. }) {
        // Fail closed: a call whose tool the gate cannot name is refused.
        let (Some(backend), Some(tool)) = (backend, tool) else {
            return Err(refuse(ErrorKind::Malformed {
                malformed: Malformed {
                    code: code::INVALID_PARAMS,
                    reason: "params.name is required",
                },
                modern: false,
            }));
        };
        match state.mcp.registry.tool_filter(principal).await {
            Ok(filter) if filter.permits(backend.id, tool) => {}
            Ok(_) => {
                deny(caller, server, Some(tool), "tool denied by a rule");
                return Err(refuse(ErrorKind::ToolDenied));
            }
            Err(e) => return Err(refuse(ErrorKind::Internal(e))),
        }
        if backend.pinning == Pinning::Quarantine && !pinned(state, backend, tool).await {
            return Err(refuse(ErrorKind::ToolQuarantined));
        }
    }
    let limits = &state.mcp.limits;
    let mut limited = if caller.charged {
        Ok(())
    } else {
        limits.check_user(principal.user_id).await
    };
    if limited.is_ok()
        && let Some(b) = backend
    {
        limited = limits.check_server(principal.user_id, b.id).await;
        if limited.is_ok()
            && is_call
            && let Some(t) = tool
        {
            limited = limits.check_tool(principal.user_id, b.id, t).await;
        }
    }
    if let Err(limited) = limited {
        // Repeats within a minute are folded into one event with a count (`EventSink`).
        state.events.record(
            EventType::RateLimited,
            Severity::Medium,
            &event_context(caller),
            Some(principal.user_id),
            Some(&principal.username),
            json!({ "server": server, "scope": limited.scope, "endpoint": caller.resource }),
        );
        return Err(refuse(ErrorKind::RateLimited(limited)));
    }
    let mut suspicious = false;
    if let (Some(backend), Route::Backend { payload, .. }) = (backend, &route)
        && is_call
        && backend.detection != Mode::Off
    {
        // Scanned as text: no tree of the message is built.
        let arguments = payload
            .raw
            .filter(|raw| detect::maybe_suspicious(raw))
            .and_then(|raw| std::str::from_utf8(raw).ok())
            .and_then(|text| crate::mcp::splice::get(text, &["params", "arguments"]));
        if let Some(arguments) = arguments
            && let Some((_, block)) = inspect::check_call(
                state,
                &event_context(caller),
                principal,
                server,
                backend.detection,
                tool,
                arguments.get(),
            )
        {
            if block {
                return Err(refuse(ErrorKind::Blocked));
            }
            suspicious = true;
        }
    }
    let recorder = msg
        .filter(|m| m.kind == Kind::Request && backend.is_some())
        .map(|m| {
            let mut r = Recorder::new(caller, m, server, tool);
            r.row.suspicious = i64::from(suspicious);
            r
        });
    Ok(Pass {
        recorder,
        suspicious,
    })
}

/// Under quarantine, whether `tool` is callable: its approved definition is the one the backend
/// sent last. A server whose list the gateway has never seen is listed first (that list is
/// pinned as approved), so the decision is never made without a baseline.
async fn pinned(state: &AppState, backend: &Backend, tool: &str) -> bool {
    let pins = &state.mcp.pins;
    match pins.verdict(backend.id, tool) {
        Verdict::Callable => true,
        Verdict::Quarantined => false,
        Verdict::Unseen => {
            let registry = &state.mcp.registry;
            let Some(shared) = registry.get(&backend.name).filter(|b| b.id == backend.id) else {
                return false;
            };
            let backend = if backend.owner != 0 {
                registry.for_user(&shared, backend.owner)
            } else {
                shared
            };
            let catalog = &state.mcp.aggregate.catalog;
            if let Err(e) = catalog.list(state, &backend, ListKind::Tools).await {
                tracing::debug!(error = %e, server = backend.name, "listing tools to pin them failed");
                return false;
            }
            pins.verdict(backend.id, tool) == Verdict::Callable
        }
    }
}

/// Whether a token's OAuth scope allows a message: `mcp:read` may discover and list, not call.
pub fn scope_allows(scope: McpScope, msg: &Message) -> bool {
    match scope {
        McpScope::Full => true,
        McpScope::None => false,
        McpScope::Read => {
            msg.kind != Kind::Request
                || matches!(
                    msg.method.as_deref(),
                    Some(
                        "initialize"
                            | "ping"
                            | "server/discover"
                            | "tools/list"
                            | "prompts/list"
                            | "resources/list"
                            | "resources/templates/list"
                    )
                )
        }
    }
}

fn event_context(caller: &Caller<'_>) -> EventContext {
    caller.meta.map(RequestMeta::ctx).unwrap_or_default()
}

pub(crate) fn deny(caller: &Caller<'_>, server: &str, tool: Option<&str>, reason: &str) {
    caller.state.events.record(
        EventType::AccessDenied,
        Severity::Medium,
        &event_context(caller),
        Some(caller.principal.user_id),
        Some(&caller.principal.username),
        json!({ "server": server, "tool": tool, "reason": reason, "endpoint": caller.resource }),
    );
}

fn malformed_event(caller: &Caller<'_>, reason: &str) {
    caller.state.events.record(
        EventType::MalformedRequest,
        Severity::Medium,
        &event_context(caller),
        Some(caller.principal.user_id),
        Some(&caller.principal.username),
        json!({ "reason": reason, "endpoint": caller.resource }),
    );
}

/// Writes the activity record of one request when it ends (success, error or client gone):
/// `finish` with the outcome, or, dropped unfinished (the client went away while the backend
/// worked, a task ended early), as `client_closed`.
pub struct Recorder {
    /// One `Arc`: the activity sink and the event sink are reached through it.
    pub state: AppState,
    pub row: ActivityRow,
    started: Instant,
    done: bool,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.done {
            self.write("client_closed", 499, 0);
        }
    }
}

impl Recorder {
    /// A record of `msg` (a request) to `server`; `tool` overrides the message's tool (the
    /// backend's own name behind an aggregated name).
    pub fn new(caller: &Caller<'_>, msg: &Message, server: &str, tool: Option<&str>) -> Recorder {
        Recorder {
            state: caller.state.clone(),
            started: caller.started,
            done: false,
            row: ActivityRow {
                at: db::now(),
                user_id: Some(caller.principal.user_id),
                username: Some(caller.principal.username.clone()),
                server: server.to_string(),
                method: msg.method.clone().unwrap_or_default(),
                tool: tool.map(str::to_string).or_else(|| msg.tool.clone()),
                bytes_in: i64::try_from(caller.bytes_in).unwrap_or(i64::MAX),
                client_name: caller.client_name.clone(),
                ..Default::default()
            },
        }
    }

    pub fn finish(mut self, status: &str, http_status: u16, bytes_out: usize) {
        self.write(status, http_status, bytes_out);
    }

    fn write(&mut self, status: &str, http_status: u16, bytes_out: usize) {
        self.done = true;
        let mut row = std::mem::take(&mut self.row);
        row.status = status.to_string();
        row.http_status = i64::from(http_status);
        row.bytes_out = i64::try_from(bytes_out).unwrap_or(i64::MAX);
        row.latency_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.state.mcp.activity.record(row);
    }
}

/// Finishes an optional recorder.
pub fn finish(recorder: Option<Recorder>, status: &str, http_status: u16, bytes_out: usize) {
    if let Some(r) = recorder {
        r.finish(status, http_status, bytes_out);
    }
}

/// An authenticated caller and the (enabled) server it addressed on `/mcp/{server}`, built by
/// `proxy::find`; not yet admitted: every message still passes `admit`.
pub(crate) struct Call {
    pub(crate) principal: Principal,
    pub(crate) backend: Arc<Backend>,
    pub(crate) started: Instant,
}

/// 401 with the pointer to the protected-resource metadata (RFC 9728).
pub(crate) fn unauthorized(state: &AppState, resource: &str) -> Response {
    let challenge = format!(
        "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/{resource}\", scope=\"{}\"",
        state.config.public_url,
        crate::oauth::SCOPE_FULL,
    );
    McpError::new(None, ErrorKind::Unauthorized { challenge }).into_response()
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
pub(crate) fn same_loopback(public: &url::Url, origin: &str) -> bool {
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
        return Err(McpError::new(None, ErrorKind::OriginRejected).into_response());
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
            Err(McpError::new(None, ErrorKind::Forbidden(m)).into_response())
        }
        Err(e) => Err(McpError::new(
            None,
            ErrorKind::Internal(anyhow::anyhow!("authentication failed unexpectedly: {e}")),
        )
        .into_response()),
    }
}

impl Call {
    pub(crate) fn caller<'a>(
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

/// Receives an authenticated MCP POST's body: takes the user's place for a request in
/// progress (`MCP_MAX_CONCURRENT_PER_USER`), the body's bytes from the user's byte budget
/// (`MCP_RATE_LIMIT_USER_BYTES_PER_MINUTE`; by `Content-Length` before reading when the client
/// sent one, else once read) and reads it (at most `MCP_MAX_REQUEST_BYTES`). So what one user
/// can make the gateway hold and parse is bounded before anything is parsed. The slot is held
/// until dropped (the handler's answer is on its way).
pub(crate) async fn receive<'s>(
    state: &'s AppState,
    principal: &Principal,
    meta: &RequestMeta,
    resource: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, Option<crate::ratelimit::Slot<'s>>), Response> {
    let limited = |limited: crate::ratelimit::Limited| {
        if limited.scope == "user_bytes" {
            state.events.record(
                EventType::RateLimited,
                Severity::Medium,
                &meta.ctx(),
                Some(principal.user_id),
                Some(&principal.username),
                json!({ "scope": limited.scope, "endpoint": resource }),
            );
        }
        McpError::new(None, ErrorKind::RateLimited(limited)).into_response()
    };
    let slot = state
        .mcp
        .concurrency
        .enter(principal.user_id)
        .map_err(limited)?;
    let max = state.config.mcp.max_request_bytes;
    let declared =
        header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    // Too large by its own account: refused before a byte of it is read.
    if declared.is_some_and(|n| n > max as u64) {
        return Err(McpError::new(None, ErrorKind::TooLarge).into_response());
    }
    let declared = declared.and_then(|n| usize::try_from(n).ok());
    if let Some(n) = declared {
        state
            .mcp
            .limits
            .check_bytes(principal.user_id, n)
            .map_err(limited)?;
    }
    // A body that trickles in is bounded in time like the JSON API's requests.
    let read = tokio::time::timeout(
        state.config.request_timeout,
        axum::body::to_bytes(body, max),
    );
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            // What was read counts against the budget too (the limit's worth).
            if declared.is_none() {
                let _ = state.mcp.limits.check_bytes(principal.user_id, max);
            }
            return Err(McpError::new(None, ErrorKind::TooLarge).into_response());
        }
        Err(_) => return Err(McpError::new(None, ErrorKind::BodyTimeout).into_response()),
    };
    if declared.is_none() {
        state
            .mcp
            .limits
            .check_bytes(principal.user_id, bytes.len())
            .map_err(limited)?;
    }
    Ok((bytes, slot))
}

/// Ends a streamed answer (SSE) when its caller loses access: whenever something that can take
/// access away changes (`cache::Changes`: identity state, grants, servers), the caller is
/// re-checked against current state (enabled, session or API key valid, still allowed to use
/// `backend`, which must still be enabled), and the stream ends if not. Other answers pass.
/// `changes` is subscribed when the request was authenticated, so a change made while the
/// backend was being reached counts too.
pub(crate) fn revocable(
    state: &AppState,
    principal: &Principal,
    backend: Option<&Arc<Backend>>,
    changes: tokio::sync::watch::Receiver<u64>,
    res: Response,
) -> Response {
    use futures_util::StreamExt;
    let is_stream = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !is_stream {
        return res;
    }
    let (parts, body) = res.into_parts();
    let watched = (
        body.into_data_stream(),
        changes,
        state.clone(),
        principal.clone(),
        backend.cloned(),
    );
    let stream = futures_util::stream::unfold(watched, |mut w| async move {
        loop {
            tokio::select! {
                chunk = w.0.next() => return chunk.map(|c| (c, w)),
                changed = w.1.changed() => {
                    if changed.is_err() || !still_allowed(&w.2, &w.3, w.4.as_deref()).await {
                        tracing::info!(user = w.3.user_id, "stream ended: the caller lost access");
                        return None;
                    }
                }
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Whether `principal` may still be served (`revocable`).
async fn still_allowed(state: &AppState, principal: &Principal, backend: Option<&Backend>) -> bool {
    let Some(role) =
        identity::current_role(state, principal.user_id, Some(&principal.method)).await
    else {
        return false;
    };
    let Some(backend) = backend else {
        return true;
    };
    let enabled = state
        .mcp
        .registry
        .snapshot()
        .values()
        .any(|b| b.id == backend.id && b.enabled);
    let current = Principal {
        role,
        ..principal.clone()
    };
    enabled
        && state
            .mcp
            .registry
            .may_use(&current, backend)
            .await
            .unwrap_or(false)
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A 2026-07-28 request's `Mcp-Method`/`Mcp-Name` must agree with its body; the refusal if not.
pub(crate) fn check_modern_headers(headers: &HeaderMap, msg: &Message) -> Option<Response> {
    let header_method = header_str(headers, H_METHOD).and_then(protocol::decode_header_value);
    // A response carries no method, and so no Mcp-Method.
    if header_method.as_deref() != msg.method.as_deref() {
        return Some(
            McpError::new(
                msg.id.as_deref(),
                ErrorKind::HeaderMismatch("Mcp-Method header does not match the body's method"),
            )
            .into_response(),
        );
    }
    // Mcp-Name only where the body names something, and then that.
    {
        let header_name = header_str(headers, H_NAME).and_then(protocol::decode_header_value);
        if header_name.as_deref() != msg.name.as_deref() {
            return Some(
                McpError::new(
                    msg.id.as_deref(),
                    ErrorKind::HeaderMismatch(
                        "Mcp-Name header does not match the body's name or uri",
                    ),
                )
                .into_response(),
            );
        }
    }
    None
}
