//! `/admin/api/audit-log` and `/admin/api/security-events`.

use axum::extract::State;
use serde::Deserialize;
use shared::error::ApiErrorBody;
use shared::events::SecurityEvent;
use shared::users::{AuditEntry, Page};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::PageQuery;
use crate::app::AppState;
use crate::auth::identity::AdminUser;
use crate::db;
use crate::error::{ApiError, AppJson, AppQuery};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit_log))
        .routes(routes!(security_events))
}

fn parse_json(text: Option<&str>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

/// Admin changes, newest first.
#[utoipa::path(get, path = "/admin/api/audit-log", tag = "admin", operation_id = "audit_log",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "One page of audit entries", body = Page<AuditEntry>),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn audit_log(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    AppQuery(page): AppQuery<PageQuery>,
) -> Result<AppJson<Page<AuditEntry>>, ApiError> {
    let (limit, offset) = page.limit_offset();
    let rows = db::events::list_audit(&state.db.pool, limit, offset).await?;
    let total = db::events::count_audit(&state.db.pool).await?;
    Ok(AppJson(Page {
        items: rows
            .into_iter()
            .map(|r| AuditEntry {
                before: parse_json(r.before_state.as_deref()),
                after: parse_json(r.after_state.as_deref()),
                id: r.id,
                actor_user_id: r.actor_user_id,
                actor_username: r.actor_username,
                action: r.action,
                target_type: r.target_type,
                target_id: r.target_id,
                ip: r.ip,
                created_at: r.created_at,
            })
            .collect(),
        total,
        page: page.page(),
        per_page: page.per_page(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventQuery {
    /// Only events of this type, e.g. `token_reuse`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

/// Security events, newest first.
#[utoipa::path(get, path = "/admin/api/security-events", tag = "admin", operation_id = "security_events",
    security(("bearer" = [])),
    params(EventQuery),
    responses(
        (status = 200, description = "One page of security events", body = Page<SecurityEvent>),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn security_events(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    AppQuery(query): AppQuery<EventQuery>,
) -> Result<AppJson<Page<SecurityEvent>>, ApiError> {
    let page = PageQuery {
        page: query.page,
        per_page: query.per_page,
    };
    let (limit, offset) = page.limit_offset();
    let event_type = query.event_type.as_deref();
    let rows = db::events::list_security_events(&state.db.pool, event_type, limit, offset).await?;
    let total = db::events::count_security_events(&state.db.pool, event_type).await?;
    Ok(AppJson(Page {
        items: rows
            .into_iter()
            .map(|r| SecurityEvent {
                details: parse_json(r.details.as_deref()),
                id: r.id,
                event_type: r.event_type,
                severity: r.severity,
                user_id: r.user_id,
                username: r.username,
                ip: r.ip,
                user_agent: r.user_agent,
                endpoint: r.endpoint,
                server: r.server,
                tool: r.tool,
                created_at: r.created_at,
            })
            .collect(),
        total,
        page: page.page(),
        per_page: page.per_page(),
    }))
}
