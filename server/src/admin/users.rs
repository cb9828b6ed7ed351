//! `/admin/api/users`: list, create, read, update, reset password, delete, and the users' API keys.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use shared::auth::{ApiKey, CreateApiKey, CreatedApiKey, Role};
use shared::error::ApiErrorBody;
use shared::users::{CreateUser, Page, ResetPassword, UpdateUser, User};
use utoipa::IntoParams;

use crate::accounts;
use crate::admin::PageQuery;
use crate::admin::actor;
use crate::auth::identity::{AdminUser, RequestMeta, ScopedAdmin};
use crate::db::{self, users::UserFilter};
use crate::error::{ApiError, AppJson, AppPath, AppQuery};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;
use crate::teams;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(reset_password))
        .routes(routes!(list_user_api_keys, create_user_api_key))
        .routes(routes!(revoke_user_api_key))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UserListQuery {
    /// `admin` or `user`.
    role: Option<Role>,
    enabled: Option<bool>,
    /// Case-insensitive substring of the username or email.
    q: Option<String>,
    /// 1-based page number (default 1, at most 1,000,000).
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<u32>,
    /// Items per page (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    per_page: Option<u32>,
}

/// Lists users, filtered and paginated (ordered by username).
#[utoipa::path(get, path = "/admin/api/users", tag = "users", operation_id = "list_users",
    security(("bearer" = [])),
    params(UserListQuery),
    responses(
        (status = 400, description = "`validation_failed`: `page` or `per_page` out of range", body = ApiErrorBody),
        (status = 200, description = "One page of users", body = Page<User>),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn list_users(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppQuery(query): AppQuery<UserListQuery>,
) -> Result<AppJson<Page<User>>, ApiError> {
    let page = PageQuery::checked(query.page, query.per_page)?;
    let filter = UserFilter {
        role: query.role.map(|r| r.as_str().to_string()),
        enabled: query.enabled.map(i64::from),
        text: query.q.filter(|q| !q.trim().is_empty()),
        teams: admin.admin_scope().filter(),
    };
    let (limit, offset) = page.limit_offset();
    let rows = db::users::list(&state.db.pool, &filter, limit, offset).await?;
    let total = db::users::count_matching(&state.db.pool, &filter).await?;
    Ok(AppJson(Page {
        items: rows.iter().map(accounts::to_user).collect(),
        total,
        page: page.page(),
        per_page: page.per_page(),
    }))
}

/// Creates a user. New users can use no MCP server until granted.
#[utoipa::path(post, path = "/admin/api/users", tag = "users", operation_id = "create_user",
    security(("bearer" = [])),
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 400, description = "Invalid username, email or password", body = ApiErrorBody),
        (status = 409, description = "`username_taken`", body = ApiErrorBody),
    ))]
async fn create_user(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppJson(req): AppJson<CreateUser>,
) -> Result<(StatusCode, AppJson<User>), ApiError> {
    let user = accounts::admin_create_user(
        &state,
        &actor(&admin, &meta),
        &req.username,
        &req.password,
        req.email.as_deref(),
        req.role,
    )
    .await?;
    Ok((StatusCode::CREATED, AppJson(user)))
}

#[utoipa::path(get, path = "/admin/api/users/{id}", tag = "users", operation_id = "get_user",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 404, description = "No such user", body = ApiErrorBody),
    ))]
async fn get_user(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<User>, ApiError> {
    teams::member(&state, &admin.admin_scope(), id).await?;
    let row = db::users::find_by_id(&state.db.pool, id)
        .await?
        .ok_or(ApiError::NotFound("no such user"))?;
    Ok(AppJson(accounts::to_user(&row)))
}

/// Changes email, role or enabled. Disabling or demoting ends the user's sessions at once;
/// the last enabled admin can be neither disabled nor demoted (409 `last_admin`).
#[utoipa::path(patch, path = "/admin/api/users/{id}", tag = "users", operation_id = "update_user",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "Updated", body = User),
        (status = 400, description = "Invalid email", body = ApiErrorBody),
        (status = 404, description = "No such user", body = ApiErrorBody),
        (status = 409, description = "`last_admin`", body = ApiErrorBody),
    ))]
async fn update_user(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<UpdateUser>,
) -> Result<AppJson<User>, ApiError> {
    Ok(AppJson(
        accounts::admin_update_user(&state, &actor(&admin, &meta), id, &req).await?,
    ))
}

/// Deletes a user with their sessions and API keys (409 `last_admin` for the last enabled admin).
#[utoipa::path(delete, path = "/admin/api/users/{id}", tag = "users", operation_id = "delete_user",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such user", body = ApiErrorBody),
        (status = 409, description = "`last_admin`", body = ApiErrorBody),
    ))]
async fn delete_user(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    accounts::admin_delete_user(&state, &actor(&admin, &meta), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a new password and ends all of the user's sessions.
#[utoipa::path(post, path = "/admin/api/users/{id}/password", tag = "users", operation_id = "reset_password",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    request_body = ResetPassword,
    responses(
        (status = 204, description = "Password changed"),
        (status = 400, description = "Password breaks the policy", body = ApiErrorBody),
        (status = 404, description = "No such user", body = ApiErrorBody),
    ))]
async fn reset_password(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<ResetPassword>,
) -> Result<StatusCode, ApiError> {
    accounts::admin_reset_password(&state, &actor(&admin, &meta), id, &req.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/admin/api/users/{id}/api-keys", tag = "api-keys", operation_id = "list_user_api_keys",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "The user's keys (no secrets)", body = Vec<ApiKey>)))]
async fn list_user_api_keys(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<Vec<ApiKey>>, ApiError> {
    Ok(AppJson(accounts::list_api_keys(&state, id).await?))
}

/// Creates an API key for a user (audited). The secret is in this response only.
#[utoipa::path(post, path = "/admin/api/users/{id}/api-keys", tag = "api-keys", operation_id = "create_user_api_key",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; the secret is shown once", body = CreatedApiKey),
        (status = 400, description = "Invalid name, expiry or server list", body = ApiErrorBody),
        (status = 404, description = "No such user", body = ApiErrorBody),
    ))]
async fn create_user_api_key(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<CreateApiKey>,
) -> Result<(StatusCode, AppJson<CreatedApiKey>), ApiError> {
    let created = accounts::create_api_key(&state, id, &req, &actor(&admin, &meta)).await?;
    Ok((StatusCode::CREATED, AppJson(created)))
}

#[utoipa::path(delete, path = "/admin/api/users/{id}/api-keys/{key_id}", tag = "api-keys", operation_id = "revoke_user_api_key",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id"), ("key_id" = i64, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such active key of this user", body = ApiErrorBody),
    ))]
async fn revoke_user_api_key(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath((id, key_id)): AppPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    accounts::revoke_api_key(&state, id, key_id, &actor(&admin, &meta)).await?;
    Ok(StatusCode::NO_CONTENT)
}
