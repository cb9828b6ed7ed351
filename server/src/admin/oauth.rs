//! `/admin/api/oauth/…`: OAuth clients (list, inspect, pre-register, revoke) and users'
//! grants (list, revoke). Revoking ends the sessions concerned at once.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use shared::error::ApiErrorBody;
use shared::oauth::{CreateOAuthClient, CreatedOAuthClient, OAuthClient, OAuthGrant};

use crate::accounts;
use crate::admin::actor;
use crate::auth::identity::{AdminUser, RequestMeta};
use crate::db;
use crate::error::{ApiError, AppJson, AppPath};
use crate::oauth::{clients, grants};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_clients, create_client))
        .routes(routes!(get_client, revoke_client))
        .routes(routes!(client_grants))
        .routes(routes!(user_grants))
        .routes(routes!(revoke_grant))
}

/// Every OAuth client: registered dynamically, by an admin, or known by its metadata document.
#[utoipa::path(get, path = "/admin/api/oauth/clients", tag = "oauth", operation_id = "list_oauth_clients",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Clients, newest first", body = Vec<OAuthClient>),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn list_clients(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
) -> Result<AppJson<Vec<OAuthClient>>, ApiError> {
    let rows = db::oauth::list_clients(&state.db.pool).await?;
    let grants = db::oauth::list_grants(&state.db.pool, None, None).await?;
    Ok(AppJson(
        rows.iter()
            .map(|r| {
                let n = grants.iter().filter(|g| g.client_key == r.id).count();
                clients::to_api(r, i64::try_from(n).unwrap_or(i64::MAX))
            })
            .collect(),
    ))
}

/// Pre-registers a client (e.g. for a team's desktop app). A confidential client's secret is
/// returned here, once.
#[utoipa::path(post, path = "/admin/api/oauth/clients", tag = "oauth", operation_id = "create_oauth_client",
    security(("bearer" = [])),
    request_body = CreateOAuthClient,
    responses(
        (status = 201, description = "Registered", body = CreatedOAuthClient),
        (status = 400, description = "Invalid name or redirect URIs", body = ApiErrorBody),
    ))]
async fn create_client(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppJson(req): AppJson<CreateOAuthClient>,
) -> Result<(StatusCode, AppJson<CreatedOAuthClient>), ApiError> {
    if req.name.trim().is_empty() || req.name.chars().count() > 100 {
        return Err(ApiError::validation("name", "1 to 100 characters"));
    }
    let (row, secret) = clients::create_by_admin(&state, &req).await?;
    accounts::audit(
        &state.db.pool,
        &actor(&admin, &meta),
        "oauth_client.create",
        "oauth_client",
        Some(row.id.to_string()),
        None,
        Some(json!({ "client_id": row.client_id, "name": row.name, "redirect_uris": row.redirect_uris(), "confidential": secret.is_some() })),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(CreatedOAuthClient {
            client: clients::to_api(&row, 0),
            client_secret: secret,
        }),
    ))
}

/// One client.
#[utoipa::path(get, path = "/admin/api/oauth/clients/{id}", tag = "oauth", operation_id = "get_oauth_client",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Admin API id of the client")),
    responses(
        (status = 200, description = "The client", body = OAuthClient),
        (status = 404, description = "No such client", body = ApiErrorBody),
    ))]
async fn get_client(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<OAuthClient>, ApiError> {
    let row = db::oauth::find_client_by_key(&state.db.pool, id)
        .await?
        .ok_or(ApiError::NotFound("no such OAuth client"))?;
    let grants = db::oauth::list_grants(&state.db.pool, None, Some(id)).await?;
    Ok(AppJson(clients::to_api(
        &row,
        i64::try_from(grants.len()).unwrap_or(i64::MAX),
    )))
}

/// Revokes a client: it can no longer sign anyone in or refresh, its users' grants go, and
/// every token it holds stops working on the next request.
#[utoipa::path(delete, path = "/admin/api/oauth/clients/{id}", tag = "oauth", operation_id = "revoke_oauth_client",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Admin API id of the client")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such client", body = ApiErrorBody),
    ))]
async fn revoke_client(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    let row = db::oauth::find_client_by_key(&state.db.pool, id)
        .await?
        .ok_or(ApiError::NotFound("no such OAuth client"))?;
    let mut tx = state.db.begin().await?;
    db::oauth::revoke_client(&mut *tx, id, db::now()).await?;
    db::oauth::delete_client_grants(&mut *tx, id).await?;
    accounts::audit(
        &mut *tx,
        &actor(&admin, &meta),
        "oauth_client.revoke",
        "oauth_client",
        Some(id.to_string()),
        Some(json!({ "client_id": row.client_id, "name": row.name })),
        None,
    )
    .await?;
    tx.commit().await?;
    state
        .oauth
        .cimd_cache
        .retain(|url, _| *url != row.client_id);
    grants::end_sessions(&state, id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The users who granted a client access.
#[utoipa::path(get, path = "/admin/api/oauth/clients/{id}/grants", tag = "oauth", operation_id = "oauth_client_grants",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Admin API id of the client")),
    responses((status = 200, description = "Grants", body = Vec<OAuthGrant>)))]
async fn client_grants(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<Vec<OAuthGrant>>, ApiError> {
    let rows = db::oauth::list_grants(&state.db.pool, None, Some(id)).await?;
    Ok(AppJson(grants::to_api(&state, rows, None, Some(id)).await?))
}

/// The OAuth clients a user granted access, with when each last obtained tokens.
#[utoipa::path(get, path = "/admin/api/users/{id}/oauth-grants", tag = "oauth", operation_id = "user_oauth_grants",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "Grants", body = Vec<OAuthGrant>)))]
async fn user_grants(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<Vec<OAuthGrant>>, ApiError> {
    Ok(AppJson(grants::of_user(&state, id).await?))
}

/// Revokes a user's grant to a client: the consent is forgotten (asked again next time) and the
/// client's sessions for that user end at once.
#[utoipa::path(delete, path = "/admin/api/users/{id}/oauth-grants/{client}", tag = "oauth", operation_id = "revoke_user_oauth_grant",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id"), ("client" = i64, Path, description = "Admin API id of the client")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such grant", body = ApiErrorBody),
    ))]
async fn revoke_grant(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath((user_id, client)): AppPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    grants::revoke(&state, &actor(&admin, &meta), user_id, client).await?;
    Ok(StatusCode::NO_CONTENT)
}
