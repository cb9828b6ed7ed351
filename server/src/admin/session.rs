//! Admin sign-in, session refresh and sign-out (`auth::browser::ADMIN`), the caller's identity,
//! and signing-key rotation.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use shared::auth::{LoginRequest, Me, RefreshRequest, TokenResponse};
use shared::error::ApiErrorBody;
use utoipa::ToSchema;

use crate::auth::identity::{AdminUser, RequestMeta, ScopedAdmin};
use crate::auth::{browser, me_of};
use crate::error::{ApiError, AppJson};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(admin_login))
        .routes(routes!(admin_refresh))
        .routes(routes!(admin_logout))
        .routes(routes!(admin_me))
        .routes(routes!(rotate_signing_key))
}

/// Signs an admin in; returns an admin-audience access token (accepted only by `/admin/api`).
/// A non-admin gets exactly the answer a wrong password gets.
#[utoipa::path(post, path = "/admin/api/login", tag = "admin", operation_id = "admin_login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; in cookie mode the refresh token is only in the `amg_admin_refresh` cookie", body = TokenResponse),
        (status = 401, description = "`invalid_credentials` (also for non-admins)", body = ApiErrorBody),
        (status = 429, description = "`login_locked` or `too_many_attempts`", body = ApiErrorBody),
    ))]
async fn admin_login(
    State(state): State<AppState>,
    meta: RequestMeta,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<Response, ApiError> {
    browser::ADMIN.login(&state, &meta, &req).await
}

/// Rotates an admin refresh token, from the body or from the `amg_admin_refresh` cookie
/// (the answer goes back the same way).
#[utoipa::path(post, path = "/admin/api/session/refresh", tag = "admin", operation_id = "admin_refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Unknown, expired, spent or revoked refresh token", body = ApiErrorBody),
    ))]
async fn admin_refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    AppJson(req): AppJson<RefreshRequest>,
) -> Result<Response, ApiError> {
    browser::ADMIN.refresh(&state, &meta, &headers, req).await
}

/// Ends the admin session named by the bearer token and/or the refresh cookie, and clears the
/// cookie; also ends this browser's sign-in on the OAuth consent page. Idempotent.
#[utoipa::path(post, path = "/admin/api/session/logout", tag = "admin", operation_id = "admin_logout",
    responses((status = 204, description = "Signed out")))]
async fn admin_logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    browser::ADMIN.logout(&state, &meta, &headers).await
}

/// The signed-in admin.
#[utoipa::path(get, path = "/admin/api/me", tag = "admin", operation_id = "admin_me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn admin_me(ScopedAdmin(principal): ScopedAdmin) -> AppJson<Me> {
    AppJson(me_of(&principal))
}

#[derive(Debug, Serialize, ToSchema)]
struct Rotated {
    /// The new signing key's id.
    kid: String,
}

/// Generates a new JWT signing key and signs with it from now on. Tokens signed by the previous
/// key keep verifying (it stays in the JWKS) until they expire.
#[utoipa::path(post, path = "/admin/api/signing-keys/rotate", tag = "admin", operation_id = "rotate_signing_key",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rotated", body = Rotated),
        (status = 409, description = "`keys_from_secret`: the key is derived from JWT_SECRET", body = ApiErrorBody),
    ))]
async fn rotate_signing_key(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
) -> Result<AppJson<Rotated>, ApiError> {
    if state.config.jwt_secret.is_some() {
        return Err(ApiError::conflict(
            "keys_from_secret",
            "the signing key is derived from JWT_SECRET; change JWT_SECRET to rotate it",
        ));
    }
    let kid = state.keys.rotate().await?;
    state.changes.send(crate::feed::Change::Keys);
    Ok(AppJson(Rotated { kid }))
}
