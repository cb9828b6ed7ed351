//! `/admin/api/audit-log` and `/admin/api/security-events`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::error::ApiErrorBody;
use shared::events::SecurityEvent;
use shared::users::{AuditEntry, Page};
use utoipa::IntoParams;

use crate::admin::PageQuery;
use crate::auth::identity::{AdminScope, ScopedAdmin};
use crate::db::{self, events::EventFilter, events::SecurityEventRow};
use crate::error::{ApiError, AppJson, AppQuery};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(audit_log))
        .routes(routes!(security_events))
        .routes(routes!(export_security_events))
}

fn parse_json(text: Option<&str>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// `sign_in`, `sign_out`, `authorization` (OAuth consents given) or `change` (what admins
    /// and users changed); absent: all.
    #[param(schema_with = audit_kind)]
    kind: Option<String>,
}

/// The kinds, or `""` for all.
fn audit_kind() -> utoipa::openapi::schema::Object {
    let mut kinds = vec![""];
    kinds.extend(db::events::AUDIT_KINDS);
    crate::openapi::one_of(&kinds)
}

/// The audit log, newest first: changes, successful sign-ins and sign-outs, OAuth
/// authorisations.
#[utoipa::path(get, path = "/admin/api/audit-log", tag = "admin", operation_id = "audit_log",
    security(("bearer" = [])),
    params(PageQuery, AuditQuery),
    responses(
        (status = 400, description = "`validation_failed`: `page` or `per_page` out of range, or an unknown `kind`", body = ApiErrorBody),
        (status = 200, description = "One page of audit entries", body = Page<AuditEntry>),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn audit_log(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppQuery(page): AppQuery<PageQuery>,
    AppQuery(query): AppQuery<AuditQuery>,
) -> Result<AppJson<Page<AuditEntry>>, ApiError> {
    let page = PageQuery::checked(page.page, page.per_page)?;
    let kind = query.kind.unwrap_or_default();
    if !kind.is_empty() && !db::events::AUDIT_KINDS.contains(&kind.as_str()) {
        return Err(ApiError::validation(
            "kind",
            "kind is sign_in, sign_out, authorization or change",
        ));
    }
    let (limit, offset) = page.limit_offset();
    let teams = admin.admin_scope().filter();
    let teams = teams.as_deref();
    let rows = db::events::list_audit(&state.db.pool, &kind, teams, limit, offset).await?;
    let total = db::events::count_audit(&state.db.pool, &kind, teams).await?;
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
    /// `info`, `low`, `medium`, `high` or `critical`.
    severity: Option<String>,
    user_id: Option<i64>,
    /// MCP server name.
    server: Option<String>,
    /// Unix seconds, inclusive.
    since: Option<i64>,
    /// Unix seconds, exclusive.
    until: Option<i64>,
    /// 1-based page number (default 1, at most 1,000,000).
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<u32>,
    /// Items per page (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    per_page: Option<u32>,
}

impl EventQuery {
    /// The filter asked for, within what `scope` may see.
    fn filter(&self, scope: &AdminScope) -> EventFilter {
        EventFilter {
            event_type: self.event_type.clone().filter(|s| !s.is_empty()),
            severity: self.severity.clone().filter(|s| !s.is_empty()),
            user_id: self.user_id,
            server: self.server.clone().filter(|s| !s.is_empty()),
            since: self.since,
            until: self.until,
            before_id: None,
            teams: scope.filter(),
        }
    }
}

fn to_event(r: SecurityEventRow) -> SecurityEvent {
    crate::live::event(&r)
}

/// Security events, newest first, filtered by type, severity, user, server and time range.
#[utoipa::path(get, path = "/admin/api/security-events", tag = "admin", operation_id = "security_events",
    security(("bearer" = [])),
    params(EventQuery),
    responses(
        (status = 400, description = "`validation_failed`: `page` or `per_page` out of range", body = ApiErrorBody),
        (status = 200, description = "One page of security events", body = Page<SecurityEvent>),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn security_events(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppQuery(query): AppQuery<EventQuery>,
) -> Result<AppJson<Page<SecurityEvent>>, ApiError> {
    let page = PageQuery::checked(query.page, query.per_page)?;
    let (limit, offset) = page.limit_offset();
    let filter = query.filter(&admin.admin_scope());
    let rows = db::events::list_security_events(&state.db.pool, &filter, limit, offset).await?;
    let total = db::events::count_security_events(&state.db.pool, &filter).await?;
    Ok(AppJson(Page {
        items: rows.into_iter().map(to_event).collect(),
        total,
        page: page.page(),
        per_page: page.per_page(),
    }))
}

/// The same events as JSON Lines (one event per line, newest first), streamed in batches;
/// takes the same filters as the list.
#[utoipa::path(get, path = "/admin/api/security-events/export", tag = "admin", operation_id = "export_security_events",
    security(("bearer" = [])),
    params(EventQuery),
    responses(
        (status = 200, description = "JSON Lines", content_type = "application/x-ndjson"),
        (status = 400, description = "`validation_failed`: `page` or `per_page` out of range (paging does not apply to the export)", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn export_security_events(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppQuery(query): AppQuery<EventQuery>,
) -> Response {
    // The list's parameters: paging does not apply to the export, but out-of-range values are
    // refused here as there.
    if let Err(e) = PageQuery::checked(query.page, query.per_page) {
        return e.into_response();
    }
    let mut filter = query.filter(&admin.admin_scope());
    // Admin sessions only (`ScopedAdmin` takes no API key): the re-check below needs one.
    let crate::auth::identity::AuthMethod::Jwt { session_id } = &admin.method else {
        return ApiError::Unauthorized.into_response();
    };
    let session = Some(session_id.clone());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        loop {
            // Every batch is for the caller as they are now: signed out, demoted or moved to
            // other teams, the export stops.
            let now = crate::auth::identity::current_admin_scope(
                &state,
                admin.user_id,
                session.as_deref(),
            )
            .await;
            if now.as_ref().map(AdminScope::filter) != Some(filter.teams.clone()) {
                let _ = tx.send(Err(std::io::Error::other("access changed"))).await;
                return;
            }
            let rows =
                match db::events::list_security_events(&state.db.pool, &filter, 1000, 0).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!(error = %e, "exporting security events failed");
                        let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
                        return;
                    }
                };
            let Some(last) = rows.last().map(|r| r.id) else {
                return;
            };
            let mut chunk = String::new();
            for row in rows {
                if let Ok(line) = serde_json::to_string(&to_event(row)) {
                    chunk.push_str(&line);
                    chunk.push('\n');
                }
            }
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
            filter.before_id = Some(last);
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"security-events.jsonl\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
