//! `GET /health` (liveness) and `GET /ready` (database reachable, migrations applied).

use axum::extract::State;
use shared::error::ApiErrorBody;
use shared::health::{Health, Ready};

use crate::error::{ApiError, AppJson};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
}

/// Liveness: the process answers HTTP. Never touches the database.
#[utoipa::path(get, path = "/health", tag = "health", operation_id = "health",
    responses((status = 200, description = "The gateway is up", body = Health)))]
async fn health(State(state): State<AppState>) -> AppJson<Health> {
    AppJson(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: state.started.elapsed().as_secs(),
    })
}

/// Readiness: the database answers and every embedded migration is applied.
#[utoipa::path(get, path = "/ready", tag = "health", operation_id = "ready",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "Database unreachable or migrations pending", body = ApiErrorBody),
    ))]
async fn ready(State(state): State<AppState>) -> Result<AppJson<Ready>, ApiError> {
    let applied = state.db.applied_migrations().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check: database unreachable");
        ApiError::Unavailable("database unreachable")
    })?;
    if applied < state.db.expected_migrations() {
        return Err(ApiError::Unavailable("database migrations pending"));
    }
    Ok(AppJson(Ready {
        status: "ready".into(),
        database: state.db.backend.name().into(),
        migrations: applied,
    }))
}
