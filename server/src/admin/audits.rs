//! `/admin/api/audits`: the MCP security scanner over HTTP (`audit.rs` is the engine,
//! `audit/jobs.rs` the background jobs), and the original gateway's two endpoints.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shared::audit::{AuditReport, AuditRequest, AuditScan, LegacyAuditRequest};
use shared::error::ApiErrorBody;

use crate::accounts;
use crate::admin::actor;
use crate::audit::jobs;
use crate::auth::identity::{AdminUser, RequestMeta};
use crate::db;
use crate::error::{ApiError, AppJson, AppPath};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

/// Scans listed at most.
const MAX_LISTED: i64 = 200;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(start_scan, list_scans))
        .routes(routes!(get_scan))
        .routes(routes!(cancel_scan))
        .routes(routes!(export_scan))
        .routes(routes!(run_mcp_audit))
        .routes(routes!(export_mcp_audit))
}

async fn start(
    state: &AppState,
    admin: &AdminUser,
    meta: &RequestMeta,
    req: &AuditRequest,
) -> Result<(AuditScan, tokio::task::JoinHandle<()>), ApiError> {
    let (target, url) = jobs::resolve(state, req).await?;
    let allow_private = target.allow_private;
    let (scan, task) = state
        .audits
        .start(state, target, url, &admin.0.username)
        .await?;
    // The token is never recorded.
    let mut tx = state.db.begin().await?;
    accounts::audit(
        &mut *tx,
        &actor(admin, meta),
        "audit.start",
        "audit_scan",
        Some(scan.id.to_string()),
        None,
        Some(json!({ "target": scan.target, "server": scan.server, "with_token": req.bearer_token.is_some(), "allow_private": allow_private })),
    )
    .await?;
    tx.commit().await?;
    Ok((scan, task))
}

/// Starts a security scan of a registered server or a URL, in the background: follow it with
/// `GET /admin/api/audits/{id}` or on the live feed (`audit_progress`). Loopback and private
/// addresses are refused before anything is sent unless `allow_private` is set.
#[utoipa::path(post, path = "/admin/api/audits", tag = "audit", operation_id = "start_audit",
    security(("bearer" = [])),
    request_body = AuditRequest,
    responses(
        (status = 403, description = "`forbidden_address`: the target is on a reserved address, or a private one without `allow_private`", body = ApiErrorBody),
        (status = 202, description = "The scan, running", body = AuditScan),
        (status = 400, description = "No target (or both), an invalid URL, or one that does not resolve", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such server", body = ApiErrorBody),
        (status = 409, description = "Too many scans running", body = ApiErrorBody),
    ))]
async fn start_scan(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppJson(req): AppJson<AuditRequest>,
) -> Result<(StatusCode, AppJson<AuditScan>), ApiError> {
    let (scan, _task) = start(&state, &admin, &meta, &req).await?;
    Ok((StatusCode::ACCEPTED, AppJson(scan)))
}

/// Recent scans, newest first (at most 200; without reports).
#[utoipa::path(get, path = "/admin/api/audits", tag = "audit", operation_id = "list_audits",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The scans", body = Vec<AuditScan>),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn list_scans(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
) -> Result<AppJson<Vec<AuditScan>>, ApiError> {
    let rows = db::audits::list(&state.db.pool, MAX_LISTED).await?;
    Ok(AppJson(rows.into_iter().map(jobs::to_api).collect()))
}

/// One scan with its report once done.
#[utoipa::path(get, path = "/admin/api/audits/{id}", tag = "audit", operation_id = "get_audit",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Scan id")),
    responses(
        (status = 200, description = "The scan", body = AuditScan),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such scan", body = ApiErrorBody),
    ))]
async fn get_scan(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<AuditScan>, ApiError> {
    let row = db::audits::find(&state.db.pool, id)
        .await?
        .ok_or(ApiError::NotFound("no such scan"))?;
    Ok(AppJson(jobs::to_api(row)))
}

/// Cancels a running scan (on any replica; it stops before its next check).
#[utoipa::path(post, path = "/admin/api/audits/{id}/cancel", tag = "audit", operation_id = "cancel_audit",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Scan id")),
    responses(
        (status = 200, description = "The scan, cancelled", body = AuditScan),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such scan", body = ApiErrorBody),
        (status = 409, description = "The scan is not running", body = ApiErrorBody),
    ))]
async fn cancel_scan(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<AuditScan>, ApiError> {
    if !state.audits.cancel(&state, id).await? {
        return Err(ApiError::conflict("not_running", "the scan is not running"));
    }
    let row = db::audits::find(&state.db.pool, id)
        .await?
        .ok_or(ApiError::NotFound("no such scan"))?;
    Ok(AppJson(jobs::to_api(row)))
}

fn attachment(report: &AuditReport, id: Option<i64>) -> Response {
    let body = serde_json::to_vec_pretty(report).unwrap_or_default();
    let name = match id {
        Some(id) => format!("attachment; filename=\"mcp-audit-{id}.json\""),
        None => "attachment; filename=\"mcp-audit.json\"".to_string(),
    };
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// A finished scan's report as a JSON file.
#[utoipa::path(get, path = "/admin/api/audits/{id}/export", tag = "audit", operation_id = "export_audit",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Scan id")),
    responses(
        (status = 200, description = "The report (a JSON attachment)", body = AuditReport),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such scan", body = ApiErrorBody),
        (status = 409, description = "The scan has no report (running, failed or cancelled early)", body = ApiErrorBody),
    ))]
async fn export_scan(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<Response, ApiError> {
    let row = db::audits::find(&state.db.pool, id)
        .await?
        .ok_or(ApiError::NotFound("no such scan"))?;
    let scan = jobs::to_api(row);
    let report = scan
        .report
        .ok_or_else(|| ApiError::conflict("no_report", "the scan has no report"))?;
    Ok(attachment(&report, Some(id)))
}

/// Runs a scan and waits for its report (stored like any other).
async fn run_and_wait(
    state: &AppState,
    admin: &AdminUser,
    meta: &RequestMeta,
    req: LegacyAuditRequest,
) -> Result<(i64, AuditReport), ApiError> {
    let req = AuditRequest {
        url: Some(req.url),
        server_id: None,
        bearer_token: req.bearer_token,
        allow_private: req.allow_private,
    };
    let (scan, task) = start(state, admin, meta, &req).await?;
    let _ = task.await;
    let row = db::audits::find(&state.db.pool, scan.id)
        .await?
        .ok_or(ApiError::NotFound("no such scan"))?;
    let done = jobs::to_api(row);
    match done.report {
        Some(report) => Ok((scan.id, report)),
        None => Err(ApiError::conflict(
            "scan_failed",
            done.error
                .unwrap_or_else(|| "the scan did not finish".into()),
        )),
    }
}

/// The original gateway's scan endpoint (same request shape): runs a scan of `url` and answers
/// with its report when done.
#[utoipa::path(post, path = "/admin/api/run-mcp-audit", tag = "audit", operation_id = "run_mcp_audit",
    security(("bearer" = [])),
    request_body = LegacyAuditRequest,
    responses(
        (status = 403, description = "`forbidden_address`: the target is on a reserved address, or a private one without `allow_private`", body = ApiErrorBody),
        (status = 200, description = "The report", body = AuditReport),
        (status = 400, description = "An invalid URL, or one that does not resolve", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 409, description = "Too many scans running, or the scan failed", body = ApiErrorBody),
    ))]
async fn run_mcp_audit(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppJson(req): AppJson<LegacyAuditRequest>,
) -> Result<AppJson<AuditReport>, ApiError> {
    Ok(AppJson(run_and_wait(&state, &admin, &meta, req).await?.1))
}

/// The original gateway's export endpoint (same request shape): runs a scan and answers with
/// its report as a JSON file.
#[utoipa::path(post, path = "/admin/api/export-mcp-audit", tag = "audit", operation_id = "export_mcp_audit",
    security(("bearer" = [])),
    request_body = LegacyAuditRequest,
    responses(
        (status = 403, description = "`forbidden_address`: the target is on a reserved address, or a private one without `allow_private`", body = ApiErrorBody),
        (status = 200, description = "The report (a JSON attachment)", body = AuditReport),
        (status = 400, description = "An invalid URL, or one that does not resolve", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 409, description = "Too many scans running, or the scan failed", body = ApiErrorBody),
    ))]
async fn export_mcp_audit(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppJson(req): AppJson<LegacyAuditRequest>,
) -> Result<Response, ApiError> {
    let (id, report) = run_and_wait(&state, &admin, &meta, req).await?;
    Ok(attachment(&report, Some(id)))
}
