//! Admin sign-in, session refresh and sign-out, the caller's identity, and signing-key rotation.
//!
//! The SPA signs in with `session: "cookie"`: the refresh token then travels only in an
//! `HttpOnly; SameSite=Strict` cookie scoped to `/admin/api/session`, never readable by
//! JavaScript, while the short-lived access token stays in memory.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared::auth::{LoginRequest, Me, RefreshRequest, SessionMode, TokenResponse};
use shared::error::ApiErrorBody;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::identity::{self, Accept, AdminUser, AuthMethod, RequestMeta};
use crate::auth::tokens::{self, Audience};
use crate::auth::{login, me_of};
use crate::error::{ApiError, AppJson};
use crate::state::AppState;

const COOKIE: &str = "amg_admin_refresh";
const COOKIE_PATH: &str = "/admin/api/session";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_login))
        .routes(routes!(admin_refresh))
        .routes(routes!(admin_logout))
        .routes(routes!(admin_me))
        .routes(routes!(rotate_signing_key))
}

fn refresh_cookie(state: &AppState, token: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
    crate::cookies::set(
        &state.config.public_url,
        COOKIE,
        token,
        COOKIE_PATH,
        "Strict",
        max_age,
    )
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    crate::cookies::read(headers, COOKIE)
}

/// Moves the refresh token from the body into the cookie.
fn into_cookie_response(state: &AppState, mut tokens: TokenResponse) -> Result<Response, ApiError> {
    let refresh = tokens.refresh_token.take().unwrap_or_default();
    let cookie = refresh_cookie(state, &refresh, state.runtime.get().refresh_token_ttl_secs)?;
    let mut response = AppJson(tokens).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
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
    let tokens = login::login(&state, &meta, &req, Audience::Admin).await?;
    match req.session {
        SessionMode::Cookie => into_cookie_response(&state, tokens),
        SessionMode::Body => Ok(AppJson(tokens).into_response()),
    }
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
    state
        .oauth
        .token_limit
        .admit(&state, &meta, "admin_refresh")?;
    match (req.refresh_token, cookie_token(&headers)) {
        (Some(token), _) => Ok(AppJson(
            tokens::refresh(&state, &meta, &token, Audience::Admin).await?,
        )
        .into_response()),
        (None, Some(token)) => {
            let tokens = tokens::refresh(&state, &meta, &token, Audience::Admin).await?;
            into_cookie_response(&state, tokens)
        }
        (None, None) => Err(ApiError::Unauthorized),
    }
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
    let accept = Accept {
        audience: Audience::Admin,
        api_keys: false,
        resource: None,
    };
    let mut signed_out = None;
    if identity::bearer(&headers).is_some()
        && let Ok(principal) = identity::authenticate(&state, &headers, &meta, accept).await
        && let AuthMethod::Jwt { session_id } = &principal.method
    {
        tokens::revoke_session(&state, session_id, "logout").await?;
        signed_out = Some(principal.user_id);
    }
    if let Some(token) = cookie_token(&headers)
        && let Some(session) = tokens::session_of_refresh_token(&state, &token).await?
        && session.audience == Audience::Admin.as_str()
    {
        tokens::revoke_session(&state, &session.id, "logout").await?;
        signed_out = signed_out.or(Some(session.user_id));
    }
    let consent = crate::oauth::flow::end_consent_sign_in(&state, &headers).await?;
    // Recorded once everything is revoked: a failed record never leaves a sign-in alive.
    if let Some(user_id) = signed_out
        && let Ok(Some(user)) = crate::db::users::find_by_id(&state.db.pool, user_id).await
        && let Err(e) = crate::accounts::record_auth(
            &state.db.pool,
            user.id,
            &user.username,
            &meta.ip.0.to_string(),
            "auth.sign_out",
            serde_json::json!({ "audience": "admin" }),
        )
        .await
    {
        tracing::warn!(error = %e, "recording a sign-out failed");
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, refresh_cookie(&state, "", 0)?);
    response.headers_mut().append(header::SET_COOKIE, consent);
    Ok(response)
}

/// The signed-in admin.
#[utoipa::path(get, path = "/admin/api/me", tag = "admin", operation_id = "admin_me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn admin_me(AdminUser(principal): AdminUser) -> AppJson<Me> {
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
