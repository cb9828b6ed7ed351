//! Authentication: who is calling (`identity`), sessions and tokens (`tokens`), password login
//! (`login`), the client's address (`client_ip`), and the `/auth/*` endpoints plus the JWKS.

pub mod browser;
pub mod client_ip;
pub mod identity;
pub mod login;
pub mod tokens;

use axum::extract::State;
use axum::http::StatusCode;
use shared::auth::{
    ApiKey, CreateApiKey, CreatedApiKey, Jwks, LoginRequest, Me, NewAccount, RefreshRequest, Role,
    SessionMode, TokenResponse,
};
use shared::error::ApiErrorBody;
use shared::users::{ChangePassword, User};

use crate::accounts;
use crate::auth::identity::{AuthMethod, McpUser, Principal, RequestMeta, SessionUser};
use crate::auth::tokens::Audience;
use crate::error::{ApiError, AppJson, AppPath};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(jwks))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(change_password))
        .routes(routes!(me))
        .routes(routes!(register))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
}

/// The public keys that verify the gateway's JWTs (RFC 7517). During a key rotation both the
/// new key and the previous one are listed.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", operation_id = "jwks",
    responses((status = 200, description = "JSON Web Key Set", body = Jwks)))]
async fn jwks(State(state): State<AppState>) -> AppJson<Jwks> {
    AppJson(state.keys.jwks())
}

/// `LoginRequest` as `/auth/login` takes it (for the document): its tokens are always in the
/// body, so `session` can only be `body`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct McpLogin {
    username: String,
    password: String,
    /// `body` (the default): the tokens are in the answer. Cookie sessions are the admin
    /// login's.
    #[schema(schema_with = body_session)]
    session: Option<String>,
}

fn body_session() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["body"]))
        .description(Some("`body` (the default): the tokens are in the answer."))
        .build()
}

/// Signs in with a username and password and returns an MCP-audience access token (for `/mcp`
/// and self-service) and a refresh token. Wrong username and wrong password get the same
/// answer; repeated failures lock the username for a while (429 `login_locked`).
#[utoipa::path(post, path = "/auth/login", tag = "auth", operation_id = "login",
    request_body = McpLogin,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 400, description = "Malformed body", body = ApiErrorBody),
        (status = 401, description = "`invalid_credentials`", body = ApiErrorBody),
        (status = 429, description = "`login_locked` or `too_many_attempts`; see `Retry-After`", body = ApiErrorBody),
    ))]
async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<AppJson<TokenResponse>, ApiError> {
    if req.session == SessionMode::Cookie {
        return Err(ApiError::validation(
            "session",
            "cookie sessions are only for the admin login",
        ));
    }
    Ok(AppJson(
        login::login(&state, &meta, &req, Audience::Mcp).await?,
    ))
}

/// Exchanges a refresh token for a new access token **and** a new refresh token. The old
/// refresh token is spent; presenting it again revokes the whole session (`token_reuse`).
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", operation_id = "refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Unknown, expired, spent or revoked refresh token", body = ApiErrorBody),
    ))]
async fn refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req): AppJson<RefreshRequest>,
) -> Result<AppJson<TokenResponse>, ApiError> {
    state
        .oauth
        .token_limit
        .admit(&state, &meta, "auth_refresh")?;
    let token = req.refresh_token.ok_or(ApiError::Unauthorized)?;
    Ok(AppJson(
        tokens::refresh(&state, &meta, &token, Audience::Mcp).await?,
    ))
}

/// Changes the caller's own password. The current password is required (wrong ones count
/// towards the account's sign-in lockout like failed sign-ins); every other session of the
/// caller ends, this one goes on. Needs a signed-in session (`POST /auth/login`), not an API key.
#[utoipa::path(post, path = "/auth/password", tag = "auth", operation_id = "change_password",
    security(("bearer" = [])),
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; other sessions ended"),
        (status = 400, description = "`validation_failed`: the new password breaks the rules", body = ApiErrorBody),
        (status = 401, description = "Not signed in, or `invalid_credentials`: the current password is wrong", body = ApiErrorBody),
        (status = 429, description = "`login_locked` / `too_many_attempts`", body = ApiErrorBody),
    ))]
async fn change_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    SessionUser(principal): SessionUser,
    AppJson(req): AppJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    login::change_password(&state, &meta, &principal, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends the session of the presented access token: it and every token of its session
/// (including the refresh token) stop working on the next request.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", operation_id = "logout",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ApiErrorBody),
    ))]
async fn logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    SessionUser(principal): SessionUser,
) -> Result<StatusCode, ApiError> {
    if let AuthMethod::Jwt { session_id } = &principal.method {
        tokens::revoke_session(&state, session_id, "logout").await?;
        // After the revocation: a failed record never leaves the session alive.
        if let Err(e) = crate::accounts::record_auth(
            &state.db.pool,
            principal.user_id,
            &principal.username,
            &meta.ip.0.to_string(),
            "auth.sign_out",
            serde_json::json!({ "audience": "mcp" }),
        )
        .await
        {
            tracing::warn!(error = %e, "recording a sign-out failed");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

pub fn me_of(principal: &Principal) -> Me {
    let (auth_method, api_key_id) = match &principal.method {
        AuthMethod::Jwt { .. } => ("jwt", None),
        AuthMethod::ApiKey { id, .. } => ("api_key", Some(*id)),
    };
    Me {
        id: principal.user_id,
        username: principal.username.clone(),
        email: principal.email.clone(),
        role: principal.role,
        auth_method: auth_method.into(),
        api_key_id,
        admin_of: principal.admin_of.to_vec(),
    }
}

/// The caller, as the gateway sees it now (an MCP-audience token or an API key).
#[utoipa::path(get, path = "/auth/me", tag = "auth", operation_id = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not signed in", body = ApiErrorBody),
    ))]
async fn me(McpUser(principal): McpUser) -> AppJson<Me> {
    AppJson(me_of(&principal))
}

/// Self-registration: only when `ALLOW_REGISTRATION=true` (off by default). New users get role
/// `user` and access to no MCP server until an admin grants it.
#[utoipa::path(post, path = "/auth/register", tag = "auth", operation_id = "register",
    request_body = NewAccount,
    responses(
        (status = 201, description = "Registered", body = User),
        (status = 400, description = "Invalid username, email or password", body = ApiErrorBody),
        (status = 403, description = "`registration_disabled`", body = ApiErrorBody),
        (status = 409, description = "`username_taken`", body = ApiErrorBody),
    ))]
async fn register(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req): AppJson<NewAccount>,
) -> Result<(StatusCode, AppJson<User>), ApiError> {
    if !state.runtime.get().allow_registration {
        return Err(ApiError::Forbidden("registration is disabled"));
    }
    state
        .oauth
        .register_limit
        .admit(&state, &meta, "auth_register")?;
    let row = accounts::create_user(
        &state.db,
        &req.username,
        &req.password,
        req.email.as_deref(),
        Role::User,
        state.config.password_min_length,
    )
    .await?;
    Ok((StatusCode::CREATED, AppJson(accounts::to_user(&row))))
}

/// The caller's API keys (secrets are never shown again after creation).
#[utoipa::path(get, path = "/auth/api-keys", tag = "api-keys", operation_id = "list_own_api_keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's keys", body = Vec<ApiKey>),
        (status = 401, description = "Not signed in (API keys cannot manage API keys)", body = ApiErrorBody),
    ))]
async fn list_api_keys(
    State(state): State<AppState>,
    SessionUser(principal): SessionUser,
) -> Result<AppJson<Vec<ApiKey>>, ApiError> {
    Ok(AppJson(
        accounts::list_api_keys(&state, principal.user_id).await?,
    ))
}

/// Creates an API key for the caller. The `secret` (`amg_…`) is in this response only; it
/// authenticates `/mcp` as `Authorization: Bearer amg_…` and never the admin API.
#[utoipa::path(post, path = "/auth/api-keys", tag = "api-keys", operation_id = "create_own_api_key",
    security(("bearer" = [])),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; the secret is shown once", body = CreatedApiKey),
        (status = 400, description = "Invalid name, expiry or server list", body = ApiErrorBody),
        (status = 401, description = "Not signed in", body = ApiErrorBody),
    ))]
async fn create_api_key(
    State(state): State<AppState>,
    meta: RequestMeta,
    SessionUser(principal): SessionUser,
    AppJson(req): AppJson<CreateApiKey>,
) -> Result<(StatusCode, AppJson<CreatedApiKey>), ApiError> {
    let actor = accounts::Actor::of(&principal, &meta);
    let created = accounts::create_api_key(&state, principal.user_id, &req, &actor).await?;
    Ok((StatusCode::CREATED, AppJson(created)))
}

/// Revokes one of the caller's API keys.
#[utoipa::path(delete, path = "/auth/api-keys/{id}", tag = "api-keys", operation_id = "revoke_own_api_key",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in", body = ApiErrorBody),
        (status = 404, description = "No such active key of the caller", body = ApiErrorBody),
    ))]
async fn revoke_api_key(
    State(state): State<AppState>,
    meta: RequestMeta,
    SessionUser(principal): SessionUser,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    let actor = accounts::Actor::of(&principal, &meta);
    accounts::revoke_api_key(&state, principal.user_id, id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
