//! `/portal/api`: the user portal, for every user (admins included) signed in with a
//! portal-audience session (`auth::browser::PORTAL`): their servers with the URLs to give MCP
//! clients, their API keys, the OAuth applications they approved, their password and their
//! recent MCP activity. Backend account connections are `/oauth/backend/connections`, which
//! takes the portal's token too. Portal tokens open nothing else (not `/mcp`, not the admin
//! API), and an API key never opens the portal.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use shared::auth::{
    ApiKey, CreateApiKey, CreatedApiKey, LoginRequest, Me, RefreshRequest, TokenResponse,
};
use shared::error::ApiErrorBody;
use shared::oauth::OAuthGrant;
use shared::portal::{MyServer, MyServers};
use shared::servers::ActivityRecord;
use shared::users::{ChangePassword, Page};

use crate::accounts::{self, Actor};
use crate::admin::PageQuery;
use crate::auth::identity::{PortalUser, RequestMeta};
use crate::auth::{browser, login, me_of};
use crate::db;
use crate::error::{ApiError, AppJson, AppPath, AppQuery};
use crate::oauth::grants;
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(portal_login))
        .routes(routes!(portal_refresh))
        .routes(routes!(portal_logout))
        .routes(routes!(portal_me))
        .routes(routes!(my_servers))
        .routes(routes!(my_api_keys, create_my_api_key))
        .routes(routes!(revoke_my_api_key))
        .routes(routes!(my_applications))
        .routes(routes!(revoke_my_application))
        .routes(routes!(change_my_password))
        .routes(routes!(my_activity))
}

/// Signs a user in to the portal (any enabled user); returns a portal-audience access token,
/// accepted only by `/portal/api` and `/oauth/backend/connections`.
#[utoipa::path(post, path = "/portal/api/login", tag = "portal", operation_id = "portal_login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; in cookie mode the refresh token is only in the `amg_portal_refresh` cookie", body = TokenResponse),
        (status = 400, description = "Malformed body", body = ApiErrorBody),
        (status = 401, description = "`invalid_credentials`", body = ApiErrorBody),
        (status = 429, description = "`login_locked` or `too_many_attempts`", body = ApiErrorBody),
    ))]
async fn portal_login(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<Response, ApiError> {
    browser::PORTAL.login(&state, &meta, &req).await
}

/// Rotates a portal refresh token, from the body or from the `amg_portal_refresh` cookie.
#[utoipa::path(post, path = "/portal/api/session/refresh", tag = "portal", operation_id = "portal_refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Unknown, expired, spent or revoked refresh token", body = ApiErrorBody),
        (status = 429, description = "`too_many_attempts`", body = ApiErrorBody),
    ))]
async fn portal_refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    AppJson(req): AppJson<RefreshRequest>,
) -> Result<Response, ApiError> {
    browser::PORTAL.refresh(&state, &meta, &headers, req).await
}

/// Ends the portal session named by the bearer token and/or the refresh cookie, and this
/// browser's sign-in on the consent and connections pages. Idempotent.
#[utoipa::path(post, path = "/portal/api/session/logout", tag = "portal", operation_id = "portal_logout",
    responses((status = 204, description = "Signed out")))]
async fn portal_logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    browser::PORTAL.logout(&state, &meta, &headers).await
}

/// The signed-in user.
#[utoipa::path(get, path = "/portal/api/me", tag = "portal", operation_id = "portal_me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not signed in to the portal", body = ApiErrorBody),
    ))]
async fn portal_me(PortalUser(principal): PortalUser) -> AppJson<Me> {
    AppJson(me_of(&principal))
}

/// The MCP servers the caller may use now (enabled, granted), with their endpoint URLs.
#[utoipa::path(get, path = "/portal/api/servers", tag = "portal", operation_id = "my_servers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "My servers", body = MyServers),
        (status = 401, description = "Not signed in to the portal", body = ApiErrorBody),
    ))]
async fn my_servers(
    State(state): State<AppState>,
    PortalUser(principal): PortalUser,
) -> Result<AppJson<MyServers>, ApiError> {
    let public = &state.config.public_url;
    let servers = state
        .mcp
        .registry
        .usable(&principal)
        .await?
        .into_iter()
        .map(|b| MyServer {
            id: b.id,
            name: b.name.clone(),
            display_name: b.row.display_name.clone().unwrap_or_else(|| b.name.clone()),
            description: b.row.description.clone(),
            url: format!("{public}/mcp/{}", b.name),
            per_user_account: b.oauth_kind() == Some(crate::backend_auth::Kind::User),
        })
        .collect();
    Ok(AppJson(MyServers {
        aggregate_url: format!("{public}/mcp"),
        servers,
    }))
}

/// The caller's API keys (secrets are never shown again after creation).
#[utoipa::path(get, path = "/portal/api/api-keys", tag = "portal", operation_id = "my_api_keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "My keys", body = Vec<ApiKey>),
        (status = 401, description = "Not signed in to the portal", body = ApiErrorBody),
    ))]
async fn my_api_keys(
    State(state): State<AppState>,
    PortalUser(principal): PortalUser,
) -> Result<AppJson<Vec<ApiKey>>, ApiError> {
    Ok(AppJson(
        accounts::list_api_keys(&state, principal.user_id).await?,
    ))
}

/// Creates an API key for the caller, optionally restricted to some of their servers and
/// with an expiry. The `secret` is in this response only. Audited.
#[utoipa::path(post, path = "/portal/api/api-keys", tag = "portal", operation_id = "create_my_api_key",
    security(("bearer" = [])),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; the secret is shown once", body = CreatedApiKey),
        (status = 400, description = "`validation_failed`: name, expiry or server list", body = ApiErrorBody),
        (status = 401, description = "Not signed in to the portal", body = ApiErrorBody),
    ))]
async fn create_my_api_key(
    State(state): State<AppState>,
    meta: RequestMeta,
    PortalUser(principal): PortalUser,
    AppJson(req): AppJson<CreateApiKey>,
) -> Result<(StatusCode, AppJson<CreatedApiKey>), ApiError> {
    let actor = Actor::of(&principal, &meta);
    let created = accounts::create_api_key(&state, principal.user_id, &req, &actor).await?;
    Ok((StatusCode::CREATED, AppJson(created)))
}

/// Revokes one of the caller's API keys (404 for anybody else's).
#[utoipa::path(delete, path = "/portal/api/api-keys/{id}", tag = "portal", operation_id = "revoke_my_api_key",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "`validation_failed`: malformed id", body = ApiErrorBody),
        (status = 401, description = "Not signed in to the portal", body = ApiErrorBody),
        (status = 404, description = "No such active key of the caller", body = ApiErrorBody),
    ))]
async fn revoke_my_api_key(
    State(state): State<AppState>,
    meta: RequestMeta,
    PortalUser(principal): PortalUser,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    let actor = Actor::of(&principal, &meta);
    accounts::revoke_api_key(&state, principal.user_id, id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OAuth applications (MCP clients) the caller approved, with when each last obtained
/// tokens.
#[utoipa::path(get, path = "/portal/api/applications", tag = "portal", operation_id = "my_applications",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "My approved applications", body = Vec<OAuthGrant>),
        (status = 401, description = "Not signed in to the portal", body = ApiErrorBody),
    ))]
async fn my_applications(
    State(state): State<AppState>,
    PortalUser(principal): PortalUser,
) -> Result<AppJson<Vec<OAuthGrant>>, ApiError> {
    Ok(AppJson(grants::of_user(&state, principal.user_id).await?))
}

/// Revokes the caller's approval of an application: it is asked again next time, and its
/// sessions of the caller end at once.
#[utoipa::path(delete, path = "/portal/api/applications/{client}", tag = "portal", operation_id = "revoke_my_application",
    security(("bearer" = [])),
    params(("client" = i64, Path, description = "The application's id (`client` in the list)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "`validation_failed`: malformed id", body = ApiErrorBody),
        (status = 401, description = "Not signed in to the portal", body = ApiErrorBody),
        (status = 404, description = "No such approval of the caller", body = ApiErrorBody),
    ))]
async fn revoke_my_application(
    State(state): State<AppState>,
    meta: RequestMeta,
    PortalUser(principal): PortalUser,
    AppPath(client): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    grants::revoke(
        &state,
        &Actor::of(&principal, &meta),
        principal.user_id,
        client,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the caller's password. The current password is required (wrong ones count towards
/// the sign-in lockout); every other session of the caller ends, this one goes on.
#[utoipa::path(post, path = "/portal/api/password", tag = "portal", operation_id = "change_my_password",
    security(("bearer" = [])),
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; other sessions ended"),
        (status = 400, description = "`validation_failed`: the new password breaks the rules", body = ApiErrorBody),
        (status = 401, description = "Not signed in, or `invalid_credentials`: the current password is wrong", body = ApiErrorBody),
        (status = 429, description = "`login_locked` / `too_many_attempts`", body = ApiErrorBody),
    ))]
async fn change_my_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    PortalUser(principal): PortalUser,
    AppJson(req): AppJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    login::change_password(&state, &meta, &principal, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own MCP requests through the gateway, newest first.
#[utoipa::path(get, path = "/portal/api/activity", tag = "portal", operation_id = "my_activity",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "One page of my activity", body = Page<ActivityRecord>),
        (status = 400, description = "`validation_failed`: `page` or `per_page` out of range", body = ApiErrorBody),
        (status = 401, description = "Not signed in to the portal", body = ApiErrorBody),
    ))]
async fn my_activity(
    State(state): State<AppState>,
    PortalUser(principal): PortalUser,
    AppQuery(query): AppQuery<PageQuery>,
) -> Result<AppJson<Page<ActivityRecord>>, ApiError> {
    let page = PageQuery::checked(query.page, query.per_page)?;
    let (limit, offset) = page.limit_offset();
    let filter = db::servers::ActivityFilter {
        user_id: Some(principal.user_id),
        ..Default::default()
    };
    let rows = db::servers::list_activity(&state.db.pool, &filter, limit, offset).await?;
    let total = db::servers::count_activity(&state.db.pool, &filter).await?;
    Ok(AppJson(Page {
        items: rows.iter().map(crate::live::activity).collect(),
        total,
        page: page.page(),
        per_page: page.per_page(),
    }))
}
