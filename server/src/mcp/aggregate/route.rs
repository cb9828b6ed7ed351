//! A routed request (tools/call, prompts/get, resources/*, completion/complete): the gate for
//! its backend, the call through the backend session, and the answer as JSON or a stream that
//! carries what the backend sends meanwhile.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::mcp::aggregate::links::{InflightEntry, link_for};
use crate::mcp::aggregate::session::Sess;
use crate::mcp::aggregate::{Ctx, id_value};
use crate::mcp::backend::BackendError;
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::gate::{self, Payload, Route};
use crate::mcp::inspect;
use crate::mcp::message::Message;
use crate::mcp::registry::Backend;
use crate::mcp::relay;
use crate::mcp::relay::Chunks;
use crate::mcp::splice::{self, Outgoing};
use crate::mcp::sse;
use crate::state::AppState;

/// Prefix of the ids the gateway gives backend-to-client requests: `amg.{server}.{id}`.
pub(super) const SERVER_REQUEST_PREFIX: &str = "amg.";

/// A backend request in flight (owned, so a streaming answer can keep polling it).
pub(super) type BackendCall =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, BackendError>> + Send>>;

/// A message a backend sent outside a response, on its way to the client: list changes
/// invalidate the catalog (and reach clients through the change feed), server requests get an
/// id that names the backend, progress gets the client's token back.
pub(super) fn from_backend(
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

/// Sends a request (its text, names already the backend's) to the backend that owns it and
/// relays the answer: as SSE (progress and other messages first) when the client accepts it,
/// else as JSON.
pub(super) async fn route(
    ctx: &Ctx,
    sess: &Sess,
    msg: &Message,
    message: String,
    backend: Arc<Backend>,
    tool: Option<String>,
    rename_uri: Option<(String, String)>,
) -> Response {
    let state = &ctx.state;
    let is_tool_call = msg.is("tools/call");
    let tool_name = tool.filter(|_| is_tool_call);
    let payload = Payload {
        raw: Some(&ctx.body),
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
    let gateway_token = json!(format!("amg-p-{n}"));
    // The gateway's own id and progress token, edited in place (no tree of the message).
    let raw_token = splice::get(&message, &["params", "_meta", "progressToken"]);
    let client_token = raw_token
        .filter(|raw| raw.get().len() <= splice::MAX_ID_TEXT)
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
    // A progress token that cannot be swapped is refused, not forwarded as it is.
    let message = if raw_token.is_some() && client_token.is_none() {
        None
    } else {
        Some(message)
    };
    let message =
        message.and_then(|message| splice::set(&message, &["id"], &gateway_id.to_string()));
    let message = message.and_then(|m| {
        if client_token.is_some() {
            splice::set(
                &m,
                &["params", "_meta", "progressToken"],
                &gateway_token.to_string(),
            )
        } else {
            Some(m)
        }
    });
    let Some(message) = message else {
        record("malformed", 400, 0);
        return McpError::new(
            msg.id.as_deref(),
            ErrorKind::Refused {
                code: crate::mcp::protocol::code::INVALID_PARAMS,
                message: "params must be an object".into(),
            },
        )
        .into_response();
    };
    let message = Outgoing::new(Bytes::from(message));
    let client_id = msg.id.clone().unwrap_or_default();
    let inflight = InflightEntry::new(state, (sess.key.clone(), client_id), backend.id, gateway_id);
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
    let mut early = tokio::select! {
        result = &mut call => Some(result),
        Some(m) = events_rx.recv() => {
            pending.push(m);
            None
        }
    };
    if early.is_some() {
        while let Ok(m) = events_rx.try_recv() {
            pending.push(m);
        }
    }
    if let Some(result) = early.take_if(|_| pending.is_empty() || !ctx.accepts_sse) {
        let outbox = state.mcp.aggregate.outbox(&sess.key);
        for m in pending {
            if let Some(m) = from_backend(state, server_id, m, None)
                && let Some(outbox) = &outbox
            {
                let _ = outbox.try_send(m);
            }
        }
        drop(inflight);
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
        drop(inflight);
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
        // The client's going is noticed when it goes, not at the next message the backend
        // sends: the per-user slot was given back with the answer's head, so a backend call
        // left running after a hang-up would be outside every bound.
        let result = if client_gone {
            None
        } else {
            loop {
                tokio::select! {
                    () = chunks_tx.closed() => break None,
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
        drop(inflight);
        gate::finish(recorder, status, 200, bytes_out);
    });
    // Ends if the caller loses this server meanwhile (grant removed, server disabled).
    gate::revocable(
        &ctx.state,
        &ctx.principal,
        Some(&backend),
        ctx.changes.clone(),
        relay::sse_response(chunks_rx),
    )
}
