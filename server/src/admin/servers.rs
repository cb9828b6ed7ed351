//! `/admin/api/mcp-servers`, per-user server access, and proxied-request activity.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use shared::error::ApiErrorBody;
use shared::servers::{
    ActivityRecord, ConnectionTest, CreateServer, McpServer, ServerPermission, SetServerPermission,
    UpdateServer,
};
use shared::users::Page;
use utoipa::IntoParams;

use crate::admin::PageQuery;
use crate::admin::actor;
use crate::auth::identity::{RequestMeta, ScopedAdmin};
use crate::db;
use crate::error::{ApiError, AppJson, AppPath, AppQuery};
use crate::mcp::health::to_health;
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::servers;
use crate::state::AppState;
use crate::teams;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_servers, create_server))
        .routes(routes!(get_server, update_server, delete_server))
        .routes(routes!(test_server))
        .routes(routes!(list_permissions, set_permission))
        .routes(routes!(activity))
}

/// Every registered MCP server with its health. Credentials are never included, only whether
/// one is set and its last 4 characters.
#[utoipa::path(get, path = "/admin/api/mcp-servers", tag = "mcp-servers", operation_id = "list_mcp_servers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "All servers", body = Vec<McpServer>),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn list_servers(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
) -> Result<AppJson<Vec<McpServer>>, ApiError> {
    let scope = admin.admin_scope();
    let rows = db::servers::list(&state.db.pool).await?;
    Ok(AppJson(
        rows.iter()
            .filter(|r| scope.has_team(r.team_id))
            .map(|r| servers::to_api(&state, r))
            .collect(),
    ))
}

/// Registers a backend. `backend_token` is shorthand for a bearer credential. The credential
/// is encrypted at rest and never returned.
#[utoipa::path(post, path = "/admin/api/mcp-servers", tag = "mcp-servers", operation_id = "create_mcp_server",
    security(("bearer" = [])),
    request_body = CreateServer,
    responses(
        (status = 404, description = "No such team", body = ApiErrorBody),
        (status = 403, description = "`forbidden_address`: the URL is on a reserved address", body = ApiErrorBody),
        (status = 201, description = "Registered", body = McpServer),
        (status = 400, description = "Invalid name, URL, timeout or credential", body = ApiErrorBody),
        (status = 409, description = "`server_name_taken`", body = ApiErrorBody),
    ))]
async fn create_server(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppJson(req): AppJson<CreateServer>,
) -> Result<(StatusCode, AppJson<McpServer>), ApiError> {
    let scope = admin.0.admin_scope();
    let server = servers::create(&state, &actor(&admin, &meta), &scope, &req).await?;
    Ok((StatusCode::CREATED, AppJson(server)))
}

#[utoipa::path(get, path = "/admin/api/mcp-servers/{id}", tag = "mcp-servers", operation_id = "get_mcp_server",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Server id")),
    responses(
        (status = 200, description = "The server", body = McpServer),
        (status = 404, description = "No such server", body = ApiErrorBody),
    ))]
async fn get_server(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<McpServer>, ApiError> {
    let row = teams::server(&state, &admin.admin_scope(), id).await?;
    Ok(AppJson(servers::to_api(&state, &row)))
}

/// Changes a server; the live proxy uses the change on the next request. A credential of
/// `{"type": "none"}` (or an empty `backend_token`) removes it.
#[utoipa::path(patch, path = "/admin/api/mcp-servers/{id}", tag = "mcp-servers", operation_id = "update_mcp_server",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Server id")),
    request_body = UpdateServer,
    responses(
        (status = 403, description = "`forbidden_address`: the URL is on a reserved address", body = ApiErrorBody),
        (status = 200, description = "Updated", body = McpServer),
        (status = 400, description = "Invalid field", body = ApiErrorBody),
        (status = 404, description = "No such server", body = ApiErrorBody),
        (status = 409, description = "`server_name_taken`", body = ApiErrorBody),
    ))]
async fn update_server(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<UpdateServer>,
) -> Result<AppJson<McpServer>, ApiError> {
    Ok(AppJson(
        servers::update(
            &state,
            &actor(&admin, &meta),
            &admin.0.admin_scope(),
            id,
            &req,
        )
        .await?,
    ))
}

/// Removes a server, its grants and its sessions.
#[utoipa::path(delete, path = "/admin/api/mcp-servers/{id}", tag = "mcp-servers", operation_id = "delete_mcp_server",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Server id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such server", body = ApiErrorBody),
    ))]
async fn delete_server(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    servers::delete(&state, &actor(&admin, &meta), &admin.0.admin_scope(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Connects to the server, negotiates, lists its tools, and reports latency, protocol version
/// and tool count, or a clear error. Also refreshes the server's health.
#[utoipa::path(post, path = "/admin/api/mcp-servers/{id}/test", tag = "mcp-servers", operation_id = "test_mcp_server",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Server id")),
    responses(
        (status = 200, description = "The outcome (`ok: false` with `error` when it failed)", body = ConnectionTest),
        (status = 404, description = "No such server", body = ApiErrorBody),
    ))]
async fn test_server(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<ConnectionTest>, ApiError> {
    let row = teams::server(&state, &admin.admin_scope(), id).await?;
    let backend = state
        .mcp
        .registry
        .get(&row.name)
        .ok_or(ApiError::NotFound("no such server"))?;
    let probe = state
        .mcp
        .client
        .probe(&backend.target, backend.transport)
        .await;
    state.mcp.registry.set_health(id, to_health(&probe));
    Ok(AppJson(ConnectionTest {
        ok: probe.error.is_none(),
        latency_ms: probe.latency_ms,
        protocol_version: probe.protocol_version,
        transport: probe.transport,
        server_name: probe.server_name,
        tool_count: probe
            .error
            .is_none()
            .then(|| u32::try_from(probe.tools.len()).unwrap_or(u32::MAX)),
        tools: probe.tools,
        error: probe.error,
    }))
}

/// Which servers a user may use (`can_access`). Users start with none; admins may use all.
#[utoipa::path(get, path = "/admin/api/users/{id}/mcp-permissions", tag = "mcp-servers", operation_id = "list_mcp_permissions",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "One row per server", body = Vec<ServerPermission>),
        (status = 404, description = "No such user", body = ApiErrorBody),
    ))]
async fn list_permissions(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<Vec<ServerPermission>>, ApiError> {
    Ok(AppJson(
        servers::permissions(&state, &admin.admin_scope(), id).await?,
    ))
}

/// Grants or revokes one server for a user; effective on the user's next request.
#[utoipa::path(patch, path = "/admin/api/users/{id}/mcp-permissions", tag = "mcp-servers", operation_id = "set_mcp_permission",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    request_body = SetServerPermission,
    responses(
        (status = 200, description = "The user's permissions after the change", body = Vec<ServerPermission>),
        (status = 400, description = "No such server", body = ApiErrorBody),
        (status = 404, description = "No such user", body = ApiErrorBody),
    ))]
async fn set_permission(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<SetServerPermission>,
) -> Result<AppJson<Vec<ServerPermission>>, ApiError> {
    Ok(AppJson(
        servers::set_permission(
            &state,
            &actor(&admin, &meta),
            &admin.0.admin_scope(),
            id,
            req.server_id,
            req.can_access,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ActivityQuery {
    /// Only this server (by name).
    server: Option<String>,
    /// 1-based page number (default 1, at most 1,000,000).
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<u32>,
    /// Items per page (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    per_page: Option<u32>,
}

/// Proxied MCP requests, newest first.
#[utoipa::path(get, path = "/admin/api/mcp-activity", tag = "mcp-servers", operation_id = "mcp_activity",
    security(("bearer" = [])),
    params(ActivityQuery),
    responses(
        (status = 400, description = "`validation_failed`: `page` or `per_page` out of range", body = ApiErrorBody),
        (status = 200, description = "One page of activity", body = Page<ActivityRecord>)))]
async fn activity(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppQuery(query): AppQuery<ActivityQuery>,
) -> Result<AppJson<Page<ActivityRecord>>, ApiError> {
    let page = PageQuery::checked(query.page, query.per_page)?;
    let (limit, offset) = page.limit_offset();
    let server = query.server.as_deref();
    let filter = db::servers::ActivityFilter {
        server,
        user_id: None,
        teams: admin.admin_scope().filter(),
    };
    let rows = db::servers::list_activity(&state.db.pool, &filter, limit, offset).await?;
    let total = db::servers::count_activity(&state.db.pool, &filter).await?;
    Ok(AppJson(Page {
        items: rows
            .into_iter()
            .map(|r| crate::live::activity(&r))
            .collect(),
        total,
        page: page.page(),
        per_page: page.per_page(),
    }))
}
