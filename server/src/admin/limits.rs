//! `/admin/api/rate-limits`: MCP rate limits (defaults and overrides), applied at once on this
//! replica and within 5 seconds on the others.

use axum::extract::State;
use serde_json::json;
use shared::error::ApiErrorBody;
use shared::servers::{
    GatewaySettings, RateLimitOverride, RateLimits, ServerRateLimits, SettingsUpdate, ToolRateLimit,
};

use crate::accounts;
use crate::admin::actor;
use crate::auth::identity::{AdminUser, RequestMeta, ScopedAdmin};
use crate::db::{self, limits::OverrideRow};
use crate::error::{ApiError, AppJson};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;
use crate::teams;

pub const SETTING_KEY: &str = "rate_limits";
const MAX_OVERRIDES: usize = 1000;
/// The largest budget in requests per minute (as for the `MCP_RATE_LIMIT_*` settings).
pub const MAX_PER_MINUTE: u32 = 1_000_000_000;

fn check_budget(field: &'static str, per_minute: u32) -> Result<(), ApiError> {
    if per_minute > MAX_PER_MINUTE {
        return Err(ApiError::validation(
            field,
            format!("{field} is 0 (off) to {MAX_PER_MINUTE} requests per minute"),
        ));
    }
    Ok(())
}

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(get_limits, set_limits))
        .routes(routes!(get_server_limits, set_server_limits))
        .routes(routes!(settings, set_settings))
}

/// The settings that come from the configuration (read-only: environment or file, then
/// restart).
#[utoipa::path(get, path = "/admin/api/settings", tag = "admin", operation_id = "gateway_settings",
    security(("bearer" = [])),
    responses((status = 200, description = "The configuration in force (no secrets)", body = GatewaySettings)))]
async fn settings(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
) -> AppJson<GatewaySettings> {
    AppJson(gateway_settings(&state))
}

fn gateway_settings(state: &AppState) -> GatewaySettings {
    let c = &state.config;
    let r = state.runtime.get();
    GatewaySettings {
        public_url: c.public_url.clone(),
        access_token_ttl_secs: r.access_token_ttl_secs,
        refresh_token_ttl_secs: r.refresh_token_ttl_secs,
        allow_registration: r.allow_registration,
        oauth_dcr: r.oauth_dcr,
        oauth_cimd: c.oauth.cimd,
        log_retention_days: r.log_retention_days,
        mcp_session_idle_secs: c.mcp.session_idle.as_secs(),
        mcp_default_timeout_secs: c.mcp.default_timeout.as_secs(),
        metrics_enabled: c.metrics.token.is_some() || c.metrics.public,
    }
}

/// Changes the live settings (token lifetimes, self-registration, dynamic client registration,
/// retention): validated, audited, in force at once here and within 5 s on other replicas.
#[utoipa::path(put, path = "/admin/api/settings", tag = "admin", operation_id = "set_gateway_settings",
    security(("bearer" = [])),
    request_body = SettingsUpdate,
    responses(
        (status = 200, description = "The settings now in force", body = GatewaySettings),
        (status = 400, description = "A value out of range", body = ApiErrorBody),
    ))]
async fn set_settings(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppJson(req): AppJson<SettingsUpdate>,
) -> Result<AppJson<GatewaySettings>, ApiError> {
    let before = (*state.runtime.get()).clone();
    let mut next = before.clone();
    if let Some(v) = req.access_token_ttl_secs {
        next.access_token_ttl_secs = v;
    }
    if let Some(v) = req.refresh_token_ttl_secs {
        next.refresh_token_ttl_secs = v;
    }
    if let Some(v) = req.allow_registration {
        next.allow_registration = v;
    }
    if let Some(v) = req.oauth_dcr {
        next.oauth_dcr = v;
    }
    if let Some(v) = req.log_retention_days {
        next.log_retention_days = v;
    }
    next.validate()
        .map_err(|(field, message)| ApiError::validation(field, message))?;
    let mut tx = state.db.begin().await?;
    db::limits::set_setting(
        &mut *tx,
        crate::runtime::SETTING_KEY,
        &serde_json::to_string(&next).map_err(|e| ApiError::Internal(e.into()))?,
        db::now(),
    )
    .await?;
    accounts::audit(
        &mut *tx,
        &actor(&admin, &meta),
        "settings.set",
        "settings",
        Some(crate::runtime::SETTING_KEY.into()),
        Some(serde_json::to_value(&before).unwrap_or_default()),
        Some(serde_json::to_value(&next).unwrap_or_default()),
    )
    .await?;
    tx.commit().await?;
    state.runtime.set(next);
    state.changes.send(crate::feed::Change::Settings);
    Ok(AppJson(gateway_settings(&state)))
}

/// The limits in force (from the store, or the configuration until an admin saved some).
pub async fn current(state: &AppState) -> Result<RateLimits, ApiError> {
    Ok(load(state).await?.0)
}

/// The limits as the API shows them, and as the limiter applies them, from one read.
async fn load(state: &AppState) -> Result<(RateLimits, crate::ratelimit::LimitTable), ApiError> {
    let saved = db::limits::get_setting(&state.db.pool, SETTING_KEY).await?;
    let overrides = db::limits::list_overrides(&state.db.pool).await?;
    let table = crate::mcp::limit_table(&state.config, saved.as_deref(), overrides.clone());
    let shown = RateLimits {
        user_per_minute: table.user_per_minute,
        user_server_per_minute: table.user_server_per_minute,
        user_tool_per_minute: table.user_tool_per_minute,
        overrides: overrides
            .into_iter()
            .map(|o| RateLimitOverride {
                kind: o.kind,
                user_id: o.user_id,
                server_id: o.server_id,
                tool: o.tool,
                per_minute: u32::try_from(o.per_minute).unwrap_or(0),
                label: o.label,
            })
            .collect(),
    };
    Ok((shown, table))
}

/// MCP rate limits: defaults per user, per user × server and per user × tool, and overrides.
#[utoipa::path(get, path = "/admin/api/rate-limits", tag = "admin", operation_id = "get_rate_limits",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The limits in force", body = RateLimits),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn get_limits(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
) -> Result<AppJson<RateLimits>, ApiError> {
    Ok(AppJson(current(&state).await?))
}

fn check(o: &RateLimitOverride) -> Result<(), ApiError> {
    let ok = match o.kind.as_str() {
        "user" => o.user_id.is_some() && o.server_id.is_none() && o.tool.is_none(),
        "server" => o.server_id.is_some() && o.user_id.is_none() && o.tool.is_none(),
        "tool" => {
            o.server_id.is_some()
                && o.user_id.is_none()
                && o.tool
                    .as_deref()
                    .is_some_and(|t| !t.is_empty() && t.len() <= 200)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            "overrides",
            "an override is {kind: user, user_id}, {kind: server, server_id} or {kind: tool, server_id, tool}",
        ))
    }
}

/// Replaces the limits (defaults and all overrides) and applies them at once.
#[utoipa::path(put, path = "/admin/api/rate-limits", tag = "admin", operation_id = "set_rate_limits",
    security(("bearer" = [])),
    request_body = RateLimits,
    responses(
        (status = 404, description = "An override names no user or server", body = ApiErrorBody),
        (status = 200, description = "The limits now in force", body = RateLimits),
        (status = 400, description = "An invalid override, or an unknown user or server", body = ApiErrorBody),
    ))]
async fn set_limits(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppJson(req): AppJson<RateLimits>,
) -> Result<AppJson<RateLimits>, ApiError> {
    if req.overrides.len() > MAX_OVERRIDES {
        return Err(ApiError::validation(
            "overrides",
            format!("at most {MAX_OVERRIDES} overrides"),
        ));
    }
    check_budget("user_per_minute", req.user_per_minute)?;
    check_budget("user_server_per_minute", req.user_server_per_minute)?;
    check_budget("user_tool_per_minute", req.user_tool_per_minute)?;
    for o in &req.overrides {
        check(o)?;
        check_budget("per_minute", o.per_minute)?;
    }
    let before = current(&state).await?;
    let now = db::now();
    let mut tx = state.db.begin().await?;
    let defaults = json!({
        "user_per_minute": req.user_per_minute,
        "user_server_per_minute": req.user_server_per_minute,
        "user_tool_per_minute": req.user_tool_per_minute,
    });
    db::limits::set_setting(&mut *tx, SETTING_KEY, &defaults.to_string(), now).await?;
    db::limits::clear_overrides(&mut *tx).await?;
    for o in &req.overrides {
        if let Some(user) = o.user_id
            && db::users::find_by_id(&mut *tx, user).await?.is_none()
        {
            return Err(ApiError::NotFound("no such user"));
        }
        if let Some(server) = o.server_id
            && db::servers::find(&mut *tx, server).await?.is_none()
        {
            return Err(ApiError::NotFound("no such server"));
        }
        db::limits::insert_override(
            &mut *tx,
            &OverrideRow {
                kind: o.kind.clone(),
                user_id: o.user_id,
                server_id: o.server_id,
                tool: o.tool.clone(),
                per_minute: i64::from(o.per_minute),
                label: None,
            },
            now,
        )
        .await?;
    }
    accounts::audit(
        &mut *tx,
        &actor(&admin, &meta),
        "rate_limits.set",
        "settings",
        Some(SETTING_KEY.into()),
        Some(serde_json::to_value(&before).unwrap_or_default()),
        Some(serde_json::to_value(&req).unwrap_or_default()),
    )
    .await?;
    tx.commit().await?;
    let (now, table) = load(&state).await?;
    state.mcp.limits.set(table);
    state.changes.send(crate::feed::Change::Limits);
    Ok(AppJson(now))
}

/// Tools one server may have overrides for.
const MAX_TOOL_LIMITS: usize = 200;

async fn server_limits(state: &AppState, server_id: i64) -> Result<ServerRateLimits, ApiError> {
    let overrides = db::limits::server_overrides(&state.db.pool, server_id).await?;
    let mut out = ServerRateLimits::default();
    for o in overrides {
        let per_minute = u32::try_from(o.per_minute).unwrap_or(0);
        match (o.kind.as_str(), o.tool) {
            ("server", _) => out.per_minute = Some(per_minute),
            ("tool", Some(tool)) => out.tools.push(ToolRateLimit { tool, per_minute }),
            _ => {}
        }
    }
    Ok(out)
}

/// One server's rate-limit overrides (its team's admins and global admins).
#[utoipa::path(get, path = "/admin/api/mcp-servers/{id}/rate-limits", tag = "mcp-servers", operation_id = "get_server_rate_limits",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Server id")),
    responses(
        (status = 200, description = "The server's overrides", body = ServerRateLimits),
        (status = 400, description = "`validation_failed`: malformed id", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such server", body = ApiErrorBody),
    ))]
async fn get_server_limits(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    crate::error::AppPath(id): crate::error::AppPath<i64>,
) -> Result<AppJson<ServerRateLimits>, ApiError> {
    teams::server(&state, &admin.admin_scope(), id).await?;
    Ok(AppJson(server_limits(&state, id).await?))
}

/// Replaces one server's rate-limit overrides (each user's budget on it and per tool); the
/// gateway-wide defaults and other servers' overrides stay. Applied at once.
#[utoipa::path(put, path = "/admin/api/mcp-servers/{id}/rate-limits", tag = "mcp-servers", operation_id = "set_server_rate_limits",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Server id")),
    request_body = ServerRateLimits,
    responses(
        (status = 200, description = "The server's overrides now", body = ServerRateLimits),
        (status = 400, description = "`validation_failed`: a tool name, too many tools, or a malformed body", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such server", body = ApiErrorBody),
    ))]
async fn set_server_limits(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    crate::error::AppPath(id): crate::error::AppPath<i64>,
    AppJson(req): AppJson<ServerRateLimits>,
) -> Result<AppJson<ServerRateLimits>, ApiError> {
    let server = teams::server(&state, &admin.0.admin_scope(), id).await?;
    if req.tools.len() > MAX_TOOL_LIMITS {
        return Err(ApiError::validation(
            "tools",
            format!("at most {MAX_TOOL_LIMITS} tools"),
        ));
    }
    if let Some(per_minute) = req.per_minute {
        check_budget("per_minute", per_minute)?;
    }
    let mut seen = std::collections::HashSet::new();
    for t in &req.tools {
        check_budget("per_minute", t.per_minute)?;
        if t.tool.is_empty() || t.tool.len() > 200 || !seen.insert(t.tool.as_str()) {
            return Err(ApiError::validation(
                "tools",
                "each tool is named once, with 1 to 200 bytes",
            ));
        }
    }
    let before = server_limits(&state, id).await?;
    let now = db::now();
    let mut tx = state.db.begin().await?;
    db::limits::clear_server_overrides(&mut *tx, id).await?;
    let rows = req
        .per_minute
        .map(|p| ("server", None, p))
        .into_iter()
        .chain(
            req.tools
                .iter()
                .map(|t| ("tool", Some(t.tool.clone()), t.per_minute)),
        );
    for (kind, tool, per_minute) in rows {
        db::limits::insert_override(
            &mut *tx,
            &OverrideRow {
                kind: kind.into(),
                user_id: None,
                server_id: Some(id),
                tool,
                per_minute: i64::from(per_minute),
                label: None,
            },
            now,
        )
        .await?;
    }
    // One cap for every override, whoever sets them (the whole table's PUT checks the same).
    if db::limits::count_overrides(&mut *tx).await? > MAX_OVERRIDES as i64 {
        return Err(ApiError::validation(
            "tools",
            format!("the gateway holds at most {MAX_OVERRIDES} rate-limit overrides in all"),
        ));
    }
    accounts::audit_in(
        &mut *tx,
        &actor(&admin, &meta),
        Some(server.team_id),
        "rate_limits.set_server",
        "mcp_server",
        Some(id.to_string()),
        Some(serde_json::to_value(&before).unwrap_or_default()),
        Some(serde_json::to_value(&req).unwrap_or_default()),
    )
    .await?;
    tx.commit().await?;
    let (_, table) = load(&state).await?;
    state.mcp.limits.set(table);
    state.changes.send(crate::feed::Change::Limits);
    Ok(AppJson(server_limits(&state, id).await?))
}
