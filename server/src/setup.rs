//! First-run setup: create the first admin while the gateway has no user.

use axum::extract::State;
use axum::http::StatusCode;
use shared::auth::{SetupAccount, SetupStatus};
use shared::error::ApiErrorBody;
use shared::users::User;

use crate::accounts;
use crate::db;
use crate::error::{ApiError, AppJson};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(create_admin))
}

/// Whether the first admin still has to be created.
#[utoipa::path(get, path = "/setup/status", tag = "setup", operation_id = "setup_status",
    responses((status = 200, description = "Setup state", body = SetupStatus)))]
async fn status(State(state): State<AppState>) -> Result<AppJson<SetupStatus>, ApiError> {
    let claimed = db::setup::is_claimed(&state.db.pool).await?;
    let users = db::users::count(&state.db.pool).await?;
    let setup_required = !claimed && users == 0;
    Ok(AppJson(SetupStatus {
        setup_required,
        token_required: setup_required && state.setup_token.is_some(),
    }))
}

/// Creates the first admin. Works only while no user exists; afterwards (and for every
/// concurrent call but one) it answers 409 `setup_complete` and creates nobody. On a
/// non-loopback bind without `ADMIN_PASSWORD` it needs the one-time `setup_token` the gateway
/// printed in its log at start-up (403 without it).
#[utoipa::path(post, path = "/setup/create-admin", tag = "setup", operation_id = "setup_create_admin",
    request_body = SetupAccount,
    responses(
        (status = 201, description = "The first admin", body = User),
        (status = 400, description = "Invalid username, email or password", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: the setup token is required and was missing or wrong", body = ApiErrorBody),
        (status = 409, description = "`setup_complete`", body = ApiErrorBody),
    ))]
async fn create_admin(
    State(state): State<AppState>,
    AppJson(req): AppJson<SetupAccount>,
) -> Result<(StatusCode, AppJson<User>), ApiError> {
    if let Some(token) = &state.setup_token {
        token.check(req.setup_token.as_deref())?;
    }
    let row = accounts::create_first_admin(
        &state.db,
        &req.username,
        &req.password,
        req.email.as_deref(),
        state.config.password_min_length,
    )
    .await?;
    tracing::info!(username = %row.username, "first admin created through setup");
    Ok((StatusCode::CREATED, AppJson(accounts::to_user(&row))))
}
