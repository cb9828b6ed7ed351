//! `/admin/api/tool-pins`: pinned tool definitions — what changed, side by side — and the
//! admin's decision on each (`mcp/pins.rs` is the engine).

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::error::ApiErrorBody;
use shared::servers::{PinDecision, ToolPin};

use crate::accounts;
use crate::admin::actor;
use crate::auth::identity::{RequestMeta, ScopedAdmin};
use crate::db::{self, tool_pins::PinRow};
use crate::error::{ApiError, AppJson, AppPath, AppQuery};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;
use crate::teams;

/// Pins listed at most in one answer (each carries up to two definitions of at most 64 KiB).
const MAX_LISTED: i64 = 200;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_pins))
        .routes(routes!(decide))
}

fn to_api(row: PinRow) -> ToolPin {
    let read = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    ToolPin {
        server_id: row.server_id,
        server: row.server_name,
        name: row.name,
        status: row.status,
        approved: row.approved_def.as_deref().map(read),
        approved_fingerprint: row.approved_fp,
        current: read(&row.seen_def),
        fingerprint: row.seen_fp,
        first_seen: row.first_seen,
        changed_at: row.changed_at,
        decided_at: row.decided_at,
        decided_by: row.decided_by,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PinQuery {
    /// Only this server's pins.
    server_id: Option<i64>,
    /// `approved`, `pending` or `rejected`.
    #[param(schema_with = pin_status)]
    status: Option<String>,
}

const STATUSES: [&str; 3] = ["approved", "pending", "rejected"];

/// The statuses, or `""` for all.
fn pin_status() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(&["", STATUSES[0], STATUSES[1], STATUSES[2]])
}

/// Pinned tool definitions, most recently changed first (at most 200): what was approved
/// and what the backend sends now.
#[utoipa::path(get, path = "/admin/api/tool-pins", tag = "mcp-servers", operation_id = "list_tool_pins",
    security(("bearer" = [])),
    params(PinQuery),
    responses(
        (status = 200, description = "The pins", body = Vec<ToolPin>),
        (status = 400, description = "Unknown status", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn list_pins(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppQuery(q): AppQuery<PinQuery>,
) -> Result<AppJson<Vec<ToolPin>>, ApiError> {
    let status = q.status.as_deref().unwrap_or("");
    if !status.is_empty() && !STATUSES.contains(&status) {
        return Err(ApiError::validation(
            "status",
            "status is \"approved\", \"pending\" or \"rejected\"",
        ));
    }
    // A team admin's list is filtered in the query: another team's busy servers cannot crowd
    // theirs out of it.
    let teams = admin.admin_scope().filter();
    let rows = db::tool_pins::list(
        &state.db.pool,
        q.server_id.unwrap_or(0),
        status,
        teams.as_deref(),
        MAX_LISTED,
    )
    .await?;
    Ok(AppJson(rows.into_iter().map(to_api).collect()))
}

/// Approves or rejects the definition a backend sends now for one tool. The decision names
/// the fingerprint the admin reviewed: if the backend has sent another definition since, it
/// is refused (409) and the new one must be reviewed. Approval makes the tool visible and
/// callable again at once on every replica.
#[utoipa::path(post, path = "/admin/api/mcp-servers/{id}/tool-pins/decision", tag = "mcp-servers", operation_id = "decide_tool_pin",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Server id")),
    request_body = PinDecision,
    responses(
        (status = 200, description = "The pin after the decision", body = ToolPin),
        (status = 400, description = "Unknown decision", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such server or tool", body = ApiErrorBody),
        (status = 409, description = "The backend has sent another definition since", body = ApiErrorBody),
    ))]
async fn decide(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<PinDecision>,
) -> Result<AppJson<ToolPin>, ApiError> {
    let server = teams::server(&state, &admin.0.admin_scope(), id).await?;
    let approve = match req.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return Err(ApiError::validation(
                "decision",
                "decision is \"approve\" or \"reject\"",
            ));
        }
    };
    let mut tx = state.db.begin().await?;
    let before = db::tool_pins::find(&mut *tx, id, &req.name)
        .await?
        .filter(|p| !p.name.is_empty())
        .ok_or(ApiError::NotFound("no such tool on this server"))?;
    // A definition too large to store whole cannot be shown whole: it is not approved blind.
    if approve && before.seen_def.contains("\"_truncated\":true") {
        return Err(ApiError::conflict(
            "definition_too_large",
            "this definition is larger than 64 KiB and cannot be reviewed here; keep it quarantined or set the server's pinning to warn",
        ));
    }
    let done = db::tool_pins::decide(
        &mut *tx,
        id,
        &req.name,
        &req.fingerprint,
        approve,
        &admin.0.username,
        db::now(),
    )
    .await?;
    if !done {
        return Err(ApiError::conflict(
            "definition_changed",
            if before.seen_fp == req.fingerprint {
                "this definition is already approved"
            } else {
                "the backend has sent another definition since; review it again"
            },
        ));
    }
    accounts::audit_in(
        &mut *tx,
        &actor(&admin, &meta),
        Some(server.team_id),
        if approve {
            "tool_pin.approve"
        } else {
            "tool_pin.reject"
        },
        "mcp_server",
        Some(id.to_string()),
        Some(json!({ "tool": before.name, "status": before.status, "approved_fingerprint": before.approved_fp })),
        Some(json!({ "tool": before.name, "fingerprint": req.fingerprint })),
    )
    .await?;
    let after = db::tool_pins::find(&mut *tx, id, &req.name)
        .await?
        .ok_or(ApiError::NotFound("no such tool on this server"))?;
    tx.commit().await?;
    state.mcp.pins.changed(&state, id).await;
    Ok(AppJson(to_api(after)))
}
