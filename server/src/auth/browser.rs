//! Browser sessions of the SPA, one per audience (the admin pages and the user portal).
//!
//! Signing in with `session: "cookie"` keeps the refresh token only in an
//! `HttpOnly; SameSite=Strict` cookie scoped to the audience's session path, never readable by
//! JavaScript, while the short-lived access token stays in the page's memory.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::auth::{LoginRequest, RefreshRequest, SessionMode, TokenResponse};

use crate::auth::identity::{self, Accept, AuthMethod, RequestMeta};
use crate::auth::login;
use crate::auth::tokens::{self, Audience};
use crate::error::{ApiError, AppJson};
use crate::state::AppState;

/// One audience's browser session: which cookie carries its refresh token, and where.
pub struct BrowserSession {
    pub audience: Audience,
    cookie: &'static str,
    path: &'static str,
}

/// The admin pages' session (`/admin/api`).
pub const ADMIN: BrowserSession = BrowserSession {
    audience: Audience::Admin,
    cookie: "amg_admin_refresh",
    path: "/admin/api/session",
};

/// The user portal's session (`/portal/api`).
pub const PORTAL: BrowserSession = BrowserSession {
    audience: Audience::Portal,
    cookie: "amg_portal_refresh",
    path: "/portal/api/session",
};

impl BrowserSession {
    fn cookie(&self, state: &AppState, token: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
        crate::cookies::set(
            &state.config.public_url,
            self.cookie,
            token,
            self.path,
            "Strict",
            max_age,
        )
    }

    fn cookie_token(&self, headers: &HeaderMap) -> Option<String> {
        crate::cookies::read(headers, self.cookie)
    }

    /// Moves the refresh token from the body into the cookie.
    fn cookie_response(
        &self,
        state: &AppState,
        mut tokens: TokenResponse,
    ) -> Result<Response, ApiError> {
        let refresh = tokens.refresh_token.take().unwrap_or_default();
        let cookie = self.cookie(state, &refresh, state.runtime.get().refresh_token_ttl_secs)?;
        let mut response = AppJson(tokens).into_response();
        response.headers_mut().insert(header::SET_COOKIE, cookie);
        Ok(response)
    }

    /// Signs in (the audience decides who may); the refresh token goes back as asked.
    pub async fn login(
        &self,
        state: &AppState,
        meta: &RequestMeta,
        req: &LoginRequest,
    ) -> Result<Response, ApiError> {
        let tokens = login::login(state, meta, req, self.audience).await?;
        match req.session {
            SessionMode::Cookie => self.cookie_response(state, tokens),
            SessionMode::Body => Ok(AppJson(tokens).into_response()),
        }
    }

    /// Rotates a refresh token from the body or from the cookie (the answer goes back the
    /// same way).
    pub async fn refresh(
        &self,
        state: &AppState,
        meta: &RequestMeta,
        headers: &HeaderMap,
        req: RefreshRequest,
    ) -> Result<Response, ApiError> {
        let limit_key = match self.audience {
            Audience::Admin => "admin_refresh",
            _ => "portal_refresh",
        };
        state.oauth.token_limit.admit(state, meta, limit_key)?;
        match (req.refresh_token, self.cookie_token(headers)) {
            (Some(token), _) => Ok(AppJson(
                tokens::refresh(state, meta, &token, self.audience).await?,
            )
            .into_response()),
            (None, Some(token)) => {
                let tokens = tokens::refresh(state, meta, &token, self.audience).await?;
                self.cookie_response(state, tokens)
            }
            (None, None) => Err(ApiError::Unauthorized),
        }
    }

    /// Ends the session named by the bearer token and/or the refresh cookie, clears the cookie
    /// and ends this browser's sign-in on the consent and connections pages. Idempotent.
    pub async fn logout(
        &self,
        state: &AppState,
        meta: &RequestMeta,
        headers: &HeaderMap,
    ) -> Result<Response, ApiError> {
        let accept = Accept {
            audience: self.audience,
            api_keys: false,
            resource: None,
        };
        let mut signed_out = None;
        if identity::bearer(headers).is_some()
            && let Ok(principal) = identity::authenticate(state, headers, meta, accept).await
            && let AuthMethod::Jwt { session_id } = &principal.method
        {
            tokens::revoke_session(state, session_id, "logout").await?;
            signed_out = Some(principal.user_id);
        }
        if let Some(token) = self.cookie_token(headers)
            && let Some(session) = tokens::session_of_refresh_token(state, &token).await?
            && session.audience == self.audience.as_str()
        {
            tokens::revoke_session(state, &session.id, "logout").await?;
            signed_out = signed_out.or(Some(session.user_id));
        }
        let consent = crate::oauth::flow::end_consent_sign_in(state, headers).await?;
        // Recorded once everything is revoked: a failed record never leaves a sign-in alive.
        if let Some(user_id) = signed_out
            && let Ok(Some(user)) = crate::db::users::find_by_id(&state.db.pool, user_id).await
            && let Err(e) = crate::accounts::record_auth(
                &state.db.pool,
                user.id,
                &user.username,
                &meta.ip.0.to_string(),
                "auth.sign_out",
                serde_json::json!({ "audience": self.audience.as_str() }),
            )
            .await
        {
            tracing::warn!(error = %e, "recording a sign-out failed");
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        response
            .headers_mut()
            .insert(header::SET_COOKIE, self.cookie(state, "", 0)?);
        response.headers_mut().append(header::SET_COOKIE, consent);
        Ok(response)
    }
}
