//! Answers on their way back to the client: JSON and SSE relays (events as they arrive, with
//! keep-alives and the idle limit), reshaping (ids of shared sessions, 2026-07-28 result fields,
//! `server/discover` versions), answer filters, and backend failures as answers (`fail`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::events::{EventType, Severity};
use crate::mcp::backend::{BackendError, BackendResponse, Target, is_event_stream};
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::gate::{Recorder, finish};
use crate::mcp::message::Message;
use crate::mcp::protocol::{self, H_SESSION};
use crate::mcp::sse;
use crate::state::AppState;

/// Sent on otherwise idle client streams so proxies keep them open.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A backend failure as the client's answer (502, or 504 for a timeout).
pub(crate) fn backend_error(id: Option<&str>, e: &BackendError) -> Response {
    McpError::new(id, ErrorKind::Backend(e.clone())).into_response()
}

/// Records a backend failure and answers the client with it. A backend that refuses the
/// gateway's stored credential also raises `backend_credential_error`.
pub(crate) fn fail(recorder: Option<Recorder>, id: Option<&str>, e: &BackendError) -> Response {
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

/// Rewrites every JSON-RPC message of a response (JSON or SSE) with `edit`; messages for which
/// `relevant` says no are passed on untouched (not parsed).
pub(crate) async fn filter_response(
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
    // Only for messages `relevant` picked (each caller checks it once). What is forwarded is
    // the gateway's reading; a message it cannot read is not forwarded (an empty SSE event,
    // e.g. a resumption priming event, stays as it is).
    let rewrite = move |data: &str| match serde_json::from_str::<Value>(data) {
        Ok(mut message) => {
            edit(&mut message);
            message.to_string()
        }
        Err(_) if data.trim().is_empty() => data.to_string(),
        Err(_) => McpError::new(
            None,
            ErrorKind::Backend(BackendError::Protocol("the backend".into())),
        )
        .body(),
    };
    if !is_sse {
        return match axum::body::to_bytes(body, limit).await {
            Ok(bytes) if !relevant(&bytes) => Response::from_parts(parts, Body::from(bytes)),
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                Response::from_parts(parts, Body::from(rewrite(&text)))
            }
            Err(e) => McpError::new(
                None,
                ErrorKind::Internal(
                    anyhow::Error::from(e).context("an answer could not be read to filter it"),
                ),
            )
            .into_response(),
        };
    }
    // Rewritten as the client's connection reads it: no relay task, no channel.
    let events = futures_util::stream::unfold(
        (
            body.into_data_stream(),
            Some(sse::Parser::new(limit)),
            rewrite,
        ),
        move |(mut stream, mut parser, rewrite)| async move {
            loop {
                let chunk = match stream.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(_)) | None => return None,
                };
                // `None` once the limit was exceeded: the stream ends after its error.
                let p = parser.as_mut()?;
                let events = match p.push(&chunk) {
                    Ok(events) => events,
                    Err(sse::TooLarge) => {
                        let e = BackendError::TooLarge("the backend".into());
                        let data = McpError::new(None, ErrorKind::Backend(e)).body();
                        let item: Result<Bytes, Infallible> =
                            Ok(sse::Event::message(data).encode());
                        return Some((item, (stream, None, rewrite)));
                    }
                };
                // Keep-alive comments pass through (the parser drops comments).
                if events.is_empty() && chunk.starts_with(b":") && p.pending() == 0 {
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

/// How to treat the backend's answer on its way to the client.
#[derive(Clone, Default)]
pub(crate) struct Shape {
    /// A handshake-era backend answering a 2026-07-28 client: results gain the fields that
    /// revision requires (`resultType`, and `ttlMs`/`cacheScope` on list results).
    pub(crate) modernize: bool,
    pub(crate) list: bool,
    /// A `server/discover` answer: `supportedVersions` become the versions the gateway serves
    /// on the endpoint (the same list as its unsupported-version errors).
    pub(crate) discover: bool,
    /// In a backend session shared by several clients, ids and progress tokens are the
    /// gateway's own; this maps them back.
    pub(crate) ids: Option<Arc<IdSwap>>,
}

pub(crate) const PASS: Shape = Shape {
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

pub(crate) struct IdSwap {
    pub(crate) gateway_id: Value,
    pub(crate) client_id: Value,
    pub(crate) gateway_token: Option<Value>,
    pub(crate) client_token: Option<Value>,
}

pub(crate) fn modernize_shape(msg: &Message) -> Shape {
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
/// `None` when an id or progress token cannot be read back (then nothing may be forwarded).
pub(crate) fn swap_ids(state: &AppState, body: &Bytes) -> Option<(Bytes, Option<Arc<IdSwap>>)> {
    use crate::mcp::splice;
    let text = std::str::from_utf8(body).unwrap_or_default();
    let small = |raw: &serde_json::value::RawValue| {
        (raw.get().len() <= splice::MAX_ID_TEXT)
            .then(|| serde_json::from_str::<Value>(raw.get()).ok())
            .flatten()
    };
    let Some(raw_id) = splice::get(text, &["id"]) else {
        // A notification: no id to swap.
        return Some((body.clone(), None));
    };
    // The session is shared: a client id or progress token that cannot be swapped is never
    // forwarded as it is.
    let client_id = small(raw_id)?;
    let n = state.mcp.next_id();
    let gateway_id = Value::String(format!("amg-{n}"));
    let client_token = match splice::get(text, &["params", "_meta", "progressToken"]) {
        None => None,
        Some(raw) => Some(small(raw)?),
    };
    let gateway_token = client_token
        .as_ref()
        .map(|_| Value::String(format!("amg-p-{n}")));
    // Edited in place: no tree of the message is built.
    let edited =
        splice::set(text, &["id"], &gateway_id.to_string()).and_then(|t| match &gateway_token {
            Some(token) => splice::set(
                &t,
                &["params", "_meta", "progressToken"],
                &token.to_string(),
            ),
            None => Some(t),
        });
    Some((
        Bytes::from(edited?),
        Some(Arc::new(IdSwap {
            gateway_id,
            client_id,
            gateway_token,
            client_token,
        })),
    ))
}

pub(crate) fn reshape(data: String, shape: &Shape) -> String {
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
pub(crate) struct Envelope<'a> {
    #[serde(borrow, default)]
    pub(crate) id: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    pub(crate) method: Option<serde::de::IgnoredAny>,
    #[serde(borrow, default)]
    pub(crate) error: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
pub(crate) struct ErrorCode {
    pub(crate) code: i64,
}

/// Whether a message is the response to `id` (the request's id as JSON text), and if so its
/// JSON-RPC error code (`Err`).
pub(crate) fn response_status(data: &[u8], id: Option<&str>) -> Option<Result<(), i64>> {
    answer_of(serde_json::from_slice::<Envelope>(data).ok()?, id)
}

fn same_id(got: &str, want: &str) -> bool {
    got == want
        || serde_json::from_str::<Value>(got).ok() == serde_json::from_str::<Value>(want).ok()
}

/// Whether an event on the stream answering request `want` must not reach the client: a
/// response to another request (a client matches answers by id, so a backend could answer an
/// earlier request, e.g. a `tools/list`, on a path that does not filter it), or data that is
/// not one JSON object (a batch).
pub(crate) fn foreign(data: &str, want: Option<&str>) -> bool {
    classify(data, want).is_none()
}

/// One parse of an event on the stream answering `want`: `None` when it must not reach the
/// client (`foreign`), otherwise whether it is the answer (as `response_status`).
pub(crate) fn classify(data: &str, want: Option<&str>) -> Option<Option<Result<(), i64>>> {
    let trimmed = data.trim_start();
    if trimmed.is_empty() || want.is_none() {
        return Some(
            serde_json::from_str::<Envelope>(trimmed)
                .ok()
                .and_then(|e| answer_of(e, want)),
        );
    }
    if !trimmed.starts_with('{') {
        return None;
    }
    let envelope = serde_json::from_str::<Envelope>(trimmed).ok()?;
    if let Some(want) = want
        && envelope.method.is_none()
        && envelope.id.is_some_and(|got| !same_id(got.get(), want))
    {
        return None;
    }
    Some(answer_of(envelope, want))
}

pub(crate) fn answer_of(envelope: Envelope, id: Option<&str>) -> Option<Result<(), i64>> {
    let want = id?;
    let got = envelope.id?.get();
    let same = same_id(got, want);
    (same && envelope.method.is_none()).then(|| match envelope.error {
        Some(e) => Err(serde_json::from_str::<ErrorCode>(e.get()).map_or(0, |e| e.code)),
        None => Ok(()),
    })
}

/// A JSON response body checked in one pass: `None` when it is not JSON at all; otherwise
/// whether it answers `id` (as `response_status`).
pub(crate) fn check_json(data: &[u8], id: Option<&str>) -> Option<Option<Result<(), i64>>> {
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
pub(crate) fn outcome_of(result: Result<(), i64>, recorder: &mut Option<Recorder>) -> &'static str {
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
pub(crate) async fn relay(
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
                // A JSON body answers this request or nothing: a response to another id or a
                // batch never reaches the client.
                (false, Some(None))
                    if status.is_success()
                        && want_id.is_some()
                        && foreign(&String::from_utf8_lossy(&bytes), want_id.as_deref()) =>
                {
                    fail(
                        recorder,
                        msg.id.as_deref(),
                        &BackendError::Protocol(target.name.clone()),
                    )
                }
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
pub(crate) struct Relay {
    pub(crate) stream: crate::mcp::backend::BodyStream,
    pub(crate) parser: sse::Parser,
    pub(crate) target: Target,
    pub(crate) want_id: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) shape: Shape,
    pub(crate) idle: Option<Duration>,
    pub(crate) idle_for: Duration,
    pub(crate) recorder: Option<Recorder>,
    pub(crate) bytes_out: usize,
    pub(crate) outcome: Option<&'static str>,
    pub(crate) ended: bool,
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
                    let Ok(events) = self.parser.push(&chunk) else {
                        break Some(BackendError::TooLarge(self.target.name.clone()));
                    };
                    for mut event in events {
                        let Some(answer) = classify(&event.data, self.want_id.as_deref()) else {
                            continue;
                        };
                        if let Some(result) = answer {
                            self.outcome = Some(outcome_of(result, &mut self.recorder));
                        }
                        if !event.data.is_empty() {
                            event.data = reshape(std::mem::take(&mut event.data), &self.shape);
                        }
                        out.extend_from_slice(&event.encode());
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
                McpError::new(self.client_id.as_deref(), ErrorKind::Backend(e.clone())).body();
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
pub(crate) fn relay_stream(
    res: BackendResponse,
    target: Target,
    want_id: Option<String>,
    client_id: Option<String>,
    shape: Shape,
    idle: Option<Duration>,
    recorder: Option<Recorder>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let relay = Relay {
        parser: sse::Parser::new(target.max_response_bytes),
        stream: res.bytes_stream(),
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

/// A client stream of a session's shared backend GET stream.
pub(crate) fn hub_response(rx: mpsc::Receiver<Bytes>) -> Response {
    sse_stream_response(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok(bytes), rx))
    }))
}

pub(crate) fn with_session_id(mut response: Response, session_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(session_id) {
        response.headers_mut().insert(H_SESSION, v);
    }
    response
}

pub(crate) fn method_not_allowed() -> Response {
    McpError::new(
        None,
        ErrorKind::MethodNotAllowed("method not allowed without a session"),
    )
    .into_response()
}
