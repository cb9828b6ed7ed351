//! `/admin/api/console/…`: the MCP test console. The admin API lists and calls tools on the
//! signed-in admin's behalf, through the same policy gate as MCP traffic (`mcp/gate.rs`: server
//! access, tool rules, rate limits, payload rules, one activity record) and audited, so the
//! admin UI never needs an MCP-audience token.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use serde_json::{Value, json};
use shared::console::{ConsoleCall, ConsoleResult, ConsoleTarget, ConsoleTool};
use shared::error::ApiErrorBody;
use tokio::sync::mpsc;

use crate::accounts;
use crate::admin::actor;
use crate::auth::identity::{RequestMeta, ScopedAdmin};
use crate::error::{ApiError, AppJson};
use crate::mcp::aggregate::catalog::Kind;
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::gate::{self, Caller, Payload, Route};
use crate::mcp::message::Message;
use crate::mcp::registry::Backend;
use crate::mcp::{aggregate, inspect, naming};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

const CLIENT_NAME: &str = "admin console";

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(tools))
        .routes(routes!(call))
}

/// The server as it acts for the admin (a server with per-user accounts uses the admin's own).
/// An enabled server the caller administers (a team admin: one of their teams'; another
/// team's is answered as one that does not exist).
fn backend_named(
    state: &AppState,
    name: &str,
    principal: &crate::auth::identity::Principal,
) -> Result<Arc<Backend>, ApiError> {
    let registry = &state.mcp.registry;
    let scope = principal.admin_scope();
    registry
        .get(name)
        .filter(|b| b.enabled && scope.has_team(b.row.team_id))
        .map(|b| registry.for_user(&b, principal.user_id))
        .ok_or(ApiError::NotFound("no such (enabled) MCP server"))
}

fn unavailable(e: &crate::mcp::backend::BackendError) -> ApiError {
    tracing::info!(error = %e, "console: backend unavailable");
    ApiError::Validation {
        code: "backend_unavailable",
        message: e.to_string(),
        field: None,
    }
}

/// The tools the console can call: one server's, or every server's under their `/mcp` names.
#[utoipa::path(post, path = "/admin/api/console/tools", tag = "mcp-servers", operation_id = "console_tools",
    security(("bearer" = [])),
    request_body = ConsoleTarget,
    responses(
        (status = 200, description = "Tools with their input schemas", body = Vec<ConsoleTool>),
        (status = 400, description = "`backend_unavailable`", body = ApiErrorBody),
        (status = 404, description = "No such server", body = ApiErrorBody),
    ))]
async fn tools(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppJson(target): AppJson<ConsoleTarget>,
) -> Result<AppJson<Vec<ConsoleTool>>, ApiError> {
    let backends = match &target.server {
        Some(name) => vec![backend_named(&state, name, &admin)?],
        None => state.mcp.registry.usable(&admin).await?,
    };
    let filter = state.mcp.registry.tool_filter(&admin).await?;
    let mut out = Vec::new();
    for backend in backends {
        let listed = match state
            .mcp
            .aggregate
            .catalog
            .list(&state, &backend, Kind::Tools)
            .await
        {
            Ok(l) => l,
            Err(e) if target.server.is_some() => return Err(unavailable(&e)),
            Err(_) => continue,
        };
        for tool in &listed.items {
            let Some(name) = tool["name"].as_str() else {
                continue;
            };
            if !filter.permits(backend.id, name) {
                continue;
            }
            out.push(ConsoleTool {
                name: if target.server.is_some() {
                    name.to_string()
                } else {
                    naming::exposed(&backend.prefix, name)
                },
                description: tool["description"].as_str().map(str::to_string),
                input_schema: tool["inputSchema"].clone(),
            });
        }
    }
    Ok(AppJson(out))
}

/// The backend and its own tool name for a console call.
async fn resolve(
    state: &AppState,
    principal: &crate::auth::identity::Principal,
    call: &ConsoleCall,
) -> Result<(Arc<Backend>, String), ApiError> {
    if let Some(name) = &call.server {
        return Ok((backend_named(state, name, principal)?, call.tool.clone()));
    }
    aggregate::resolve::resolve_exposed(state, principal, Kind::Tools, &call.tool)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or(ApiError::NotFound("no tool of that name on /mcp"))
}

/// Calls a tool as the signed-in admin and returns its result, duration and the progress it
/// reported. Tool rules and payload rules apply; the call is recorded as activity (client
/// "admin console") and in the audit log (tool name, not arguments).
#[utoipa::path(post, path = "/admin/api/console/call", tag = "mcp-servers", operation_id = "console_call",
    security(("bearer" = [])),
    request_body = ConsoleCall,
    responses(
        (status = 200, description = "The outcome (a result or a JSON-RPC error)", body = ConsoleResult),
        (status = 400, description = "Unknown tool, or `backend_unavailable`", body = ApiErrorBody),
        (status = 403, description = "A tool rule denies it", body = ApiErrorBody),
        (status = 404, description = "No such server", body = ApiErrorBody),
    ))]
async fn call(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppJson(req): AppJson<ConsoleCall>,
) -> Result<AppJson<ConsoleResult>, ApiError> {
    let principal = &admin.0;
    let (backend, tool) = resolve(&state, principal, &req).await?;
    let arguments = if req.arguments.is_null() {
        json!({})
    } else {
        req.arguments.clone()
    };
    let n = state.mcp.next_id();
    let message = json!({
        "jsonrpc": "2.0",
        "id": format!("amg-{n}"),
        "method": "tools/call",
        "params": { "name": tool, "arguments": arguments, "_meta": { "progressToken": format!("console-{n}") } },
    });
    // The console's call is read like any client's message (one reading for the gate).
    let bytes = serde_json::to_vec(&message).map_err(anyhow::Error::from)?;
    let msg = Message::parse(&bytes).map_err(|u| ApiError::Validation {
        code: "invalid_call",
        message: u.malformed.reason.to_string(),
        field: None,
    })?;
    accounts::audit(
        &state.db.pool,
        &actor(&admin, &meta),
        "console.call",
        "mcp_server",
        Some(backend.id.to_string()),
        None,
        Some(json!({ "server": backend.name, "tool": tool })),
    )
    .await?;
    let started = Instant::now();
    let caller = Caller {
        state: &state,
        principal,
        meta: Some(&meta),
        resource: "console",
        started,
        bytes_in: bytes.len(),
        client_name: Some(CLIENT_NAME.into()),
        charged: false,
    };
    let route = Route::Backend {
        backend: &backend,
        tool: Some(&tool),
        payload: Payload { raw: Some(&bytes) },
    };
    let recorder = match gate::admit(&caller, Some(&msg), route).await {
        Ok(pass) => pass.recorder,
        Err(McpError {
            kind: ErrorKind::Blocked,
            ..
        }) => {
            return Ok(AppJson(ConsoleResult {
                result: None,
                error: Some(
                    json!({ "code": inspect::BLOCKED, "message": "the call was blocked by the gateway's payload rules" }),
                ),
                duration_ms: 0,
                progress: Vec::new(),
                messages: Vec::new(),
            }));
        }
        Err(e) => return Err(refusal(e)),
    };
    let link = match aggregate::links::console_link(&state, principal.user_id, &backend).await {
        Ok(link) => link,
        Err(e) => {
            gate::finish(recorder, e.label(), 502, 0);
            return Err(unavailable(&e));
        }
    };
    let (tx, mut rx) = mpsc::channel::<Value>(256);
    let outcome = link
        .call(
            &state,
            crate::mcp::splice::Outgoing::of(&message),
            Some(&tx),
        )
        .await;
    drop(tx);
    let (mut progress, mut messages) = (Vec::new(), Vec::new());
    while let Ok(m) = rx.try_recv() {
        if m["method"] == "notifications/progress" {
            progress.push(m["params"].clone());
        } else {
            messages.push(m);
        }
    }
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut recorder = recorder;
    let (status, http, bytes_out);
    let result = match outcome {
        Ok(mut reply) => {
            inspect::check_answer(
                &state,
                &meta.ctx(),
                Some(principal),
                &backend.name,
                backend.detection,
                Some(&tool),
                &mut reply,
            );
            if let Some(e) = reply.get("error") {
                status = "error";
                if let Some(r) = &mut recorder {
                    r.row.rpc_error_code = e["code"].as_i64();
                }
            } else {
                status = "ok";
            }
            http = 200;
            bytes_out = reply.to_string().len();
            ConsoleResult {
                result: reply.get("result").cloned(),
                error: reply.get("error").cloned(),
                duration_ms,
                progress,
                messages,
            }
        }
        Err(e) => {
            (status, http, bytes_out) = (e.label(), 502, 0);
            ConsoleResult {
                result: None,
                error: Some(json!({ "code": e.code(), "message": e.to_string() })),
                duration_ms,
                progress,
                messages,
            }
        }
    };
    gate::finish(recorder, status, http, bytes_out);
    Ok(AppJson(result))
}

/// The gate's refusals on the admin API's surface.
fn refusal(e: McpError) -> ApiError {
    match e.kind {
        ErrorKind::RateLimited(limited) => ApiError::TooManyRequests {
            code: "rate_limited",
            message: "rate limit exceeded; retry later".into(),
            retry_after: limited.retry_after.as_secs_f64().ceil().max(1.0) as u64,
        },
        ErrorKind::ToolDenied => ApiError::Forbidden("a tool rule denies this tool to you"),
        ErrorKind::NoAccess { .. } | ErrorKind::InsufficientScope { .. } => {
            ApiError::Forbidden("you do not have access to this MCP server")
        }
        ErrorKind::Internal(e) => ApiError::Internal(e),
        kind => ApiError::Validation {
            code: "invalid_call",
            message: McpError { id: None, kind }.to_string(),
            field: None,
        },
    }
}
