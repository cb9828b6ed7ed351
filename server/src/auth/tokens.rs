//! Sessions and the tokens issued in them.
//!
//! * Access token: a JWT (EdDSA, `kid` header) with `iss`, `aud`, `sub`, `exp`, `iat`, `jti` and
//!   `sid` (the session). Audiences keep the two worlds apart: `<PUBLIC_URL>/mcp` for MCP
//!   clients and scripts, `<PUBLIC_URL>/admin/api` for the admin API.
//! * Refresh token: opaque (`amr_` + 256 random bits), stored only as its SHA-256, single use.
//!   Each refresh marks the presented token used and issues a new one in the same session;
//!   presenting a used token again revokes the session (all its access and refresh tokens) and
//!   raises a `token_reuse` security event.
//! * Revoking a session (logout, reuse, password reset, disable, demotion) rejects every access
//!   token carrying its `sid` on the next request.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::auth::{Role, TokenResponse};

use crate::auth::identity::{RequestMeta, hex};
use crate::db::{self, sessions::RefreshTokenRow, sessions::SessionRow};
use crate::error::ApiError;
use crate::events::{EventType, Severity};
use crate::keys::random_bytes;
use crate::state::AppState;

pub const API_KEY_PREFIX: &str = "amg_";
pub const REFRESH_TOKEN_PREFIX: &str = "amr_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// MCP endpoints and user self-service.
    Mcp,
    /// The admin API.
    Admin,
    /// The user portal (`/portal/api`): a user's own servers, keys, applications and password.
    Portal,
}

impl Audience {
    /// The value stored in `sessions.audience`.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Mcp => "mcp",
            Audience::Admin => "admin",
            Audience::Portal => "portal",
        }
    }

    /// Whether a user of `role` may hold a session of this audience: the admin API is for
    /// global admins and team admins (`team_admin`: the user administers a team); the MCP
    /// endpoints and the portal are for every enabled user.
    pub fn admits(self, role: &str, team_admin: bool) -> bool {
        self != Audience::Admin || role == Role::Admin.as_str() || team_admin
    }

    /// `admits` for an enabled user, looking up team administration only when it decides.
    pub async fn admits_user(
        self,
        db: &sqlx::AnyPool,
        user: &crate::db::users::UserRow,
    ) -> Result<bool, sqlx::Error> {
        if user.enabled == 0 {
            return Ok(false);
        }
        if self.admits(&user.role, false) {
            return Ok(true);
        }
        Ok(self.admits(
            &user.role,
            crate::db::teams::is_team_admin(db, user.id).await?,
        ))
    }

    /// The `aud` claim.
    pub fn claim(self, public_url: &str) -> String {
        format!("{public_url}{}", self.path())
    }

    /// Whether `aud` is this audience's claim (`claim` without building it).
    pub fn is_claim(self, aud: &str, public_url: &str) -> bool {
        aud.strip_prefix(public_url) == Some(self.path())
    }

    fn path(self) -> &'static str {
        match self {
            Audience::Mcp => "/mcp",
            Audience::Admin => "/admin/api",
            Audience::Portal => "/portal/api",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub sid: String,
    /// OAuth scopes granted (space-separated); absent for password sessions (everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The OAuth client the token was issued to (RFC 9068 `client_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// What an OAuth session's tokens carry beyond a password session's.
pub struct OAuthBinding<'a> {
    pub client_key: i64,
    pub client_id: &'a str,
    /// The resource (`aud`) the tokens are bound to.
    pub resource: &'a str,
    pub scope: &'a str,
}

/// A random URL-safe token with a recognisable prefix.
pub fn random_token(prefix: &str) -> Result<String, ApiError> {
    use base64::Engine;
    let bytes: [u8; 32] = random_bytes()?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn random_id() -> Result<String, ApiError> {
    let bytes: [u8; 16] = random_bytes()?;
    Ok(hex(&bytes))
}

/// Starts a session for a user who just proved who they are.
pub async fn start_session(
    state: &AppState,
    user_id: i64,
    audience: Audience,
) -> Result<TokenResponse, ApiError> {
    let now = db::now();
    let ttl = state.runtime.get().refresh_token_ttl_secs as i64;
    let session = SessionRow {
        id: random_id()?,
        user_id,
        audience: audience.as_str().into(),
        created_at: now,
        expires_at: now + ttl,
        revoked_at: None,
        client_key: None,
        resource: None,
        scope: None,
    };
    let refresh_token = random_token(REFRESH_TOKEN_PREFIX)?;
    let mut tx = state.db.begin().await?;
    db::sessions::insert(&mut *tx, &session).await?;
    db::sessions::insert_refresh(
        &mut *tx,
        &RefreshTokenRow {
            token_hash: hash_token(&refresh_token),
            session_id: session.id.clone(),
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
        },
    )
    .await?;
    db::users::touch_login(&mut *tx, user_id, now).await?;
    tx.commit().await?;
    let aud = audience.claim(&state.config.public_url);
    access_token(state, user_id, &session.id, &aud, None, Some(refresh_token))
}

/// Starts the session of an OAuth grant inside the caller's transaction (the code is spent in
/// the same one); returns the session id and the refresh token.
pub async fn start_oauth_session(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    user_id: i64,
    binding: &OAuthBinding<'_>,
) -> Result<(String, String), ApiError> {
    let now = db::now();
    let ttl = state.runtime.get().refresh_token_ttl_secs as i64;
    let session = SessionRow {
        id: random_id()?,
        user_id,
        audience: Audience::Mcp.as_str().into(),
        created_at: now,
        expires_at: now + ttl,
        revoked_at: None,
        client_key: Some(binding.client_key),
        resource: Some(binding.resource.to_string()),
        scope: Some(binding.scope.to_string()),
    };
    let refresh_token = random_token(REFRESH_TOKEN_PREFIX)?;
    db::sessions::insert(&mut *tx, &session).await?;
    db::sessions::insert_refresh(
        &mut *tx,
        &RefreshTokenRow {
            token_hash: hash_token(&refresh_token),
            session_id: session.id.clone(),
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
        },
    )
    .await?;
    Ok((session.id, refresh_token))
}

/// The access token of an OAuth session.
pub fn oauth_access_token(
    state: &AppState,
    user_id: i64,
    session_id: &str,
    binding: &OAuthBinding<'_>,
    refresh_token: Option<String>,
) -> Result<TokenResponse, ApiError> {
    access_token(
        state,
        user_id,
        session_id,
        binding.resource,
        Some(binding),
        refresh_token,
    )
}

fn access_token(
    state: &AppState,
    user_id: i64,
    session_id: &str,
    aud: &str,
    oauth: Option<&OAuthBinding<'_>>,
    refresh_token: Option<String>,
) -> Result<TokenResponse, ApiError> {
    let now = db::now();
    let ttl = state.runtime.get().access_token_ttl_secs;
    let claims = AccessClaims {
        iss: state.config.public_url.clone(),
        aud: aud.to_string(),
        sub: user_id.to_string(),
        exp: now + ttl as i64,
        iat: now,
        jti: random_id()?,
        sid: session_id.to_string(),
        scope: oauth.map(|o| o.scope.to_string()),
        client_id: oauth.map(|o| o.client_id.to_string()),
    };
    Ok(TokenResponse {
        access_token: state.keys.sign(&claims)?,
        refresh_token,
        token_type: "bearer".into(),
        expires_in: ttl,
    })
}

/// Rotates a refresh token: the presented one is spent, a new one is issued in the same session.
pub async fn refresh(
    state: &AppState,
    meta: &RequestMeta,
    refresh_token: &str,
    audience: Audience,
) -> Result<TokenResponse, ApiError> {
    let (session, next) = rotate(state, meta, refresh_token, audience, None).await?;
    let aud = audience.claim(&state.config.public_url);
    access_token(state, session.user_id, &session.id, &aud, None, Some(next))
}

/// Spends a refresh token and issues the next one in the same session. `client_key` is the
/// authenticated OAuth client (`None` for password sessions): a session is refreshed only by
/// the kind of caller that started it.
pub async fn rotate(
    state: &AppState,
    meta: &RequestMeta,
    refresh_token: &str,
    audience: Audience,
    client_key: Option<i64>,
) -> Result<(SessionRow, String), ApiError> {
    let now = db::now();
    let hash = hash_token(refresh_token);
    let Some(row) = db::sessions::find_refresh(&state.db.pool, &hash).await? else {
        return Err(ApiError::Unauthorized);
    };
    let Some(session) = db::sessions::find(&state.db.pool, &row.session_id).await? else {
        return Err(ApiError::Unauthorized);
    };
    if session.audience != audience.as_str() || session.client_key != client_key {
        return Err(ApiError::Unauthorized);
    }
    if row.used_at.is_some() {
        reuse_detected(state, meta, &session).await?;
        return Err(ApiError::Unauthorized);
    }
    if session.revoked_at.is_some() || session.expires_at <= now || row.expires_at <= now {
        return Err(ApiError::Unauthorized);
    }
    let user = db::users::find_by_id(&state.db.pool, session.user_id).await?;
    let allowed = match &user {
        Some(u) => audience.admits_user(&state.db.pool, u).await?,
        None => false,
    };
    if !allowed {
        return Err(ApiError::Unauthorized);
    }

    let ttl = state.runtime.get().refresh_token_ttl_secs as i64;
    let next = random_token(REFRESH_TOKEN_PREFIX)?;
    let mut tx = state.db.begin().await?;
    if db::sessions::mark_refresh_used(&mut *tx, &hash, now).await? == 0 {
        // Somebody spent it between our read and this write: the same as reuse.
        tx.rollback().await?;
        reuse_detected(state, meta, &session).await?;
        return Err(ApiError::Unauthorized);
    }
    db::sessions::insert_refresh(
        &mut *tx,
        &RefreshTokenRow {
            token_hash: hash_token(&next),
            session_id: session.id.clone(),
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
        },
    )
    .await?;
    db::sessions::extend(&mut *tx, &session.id, now + ttl).await?;
    tx.commit().await?;
    Ok((session, next))
}

async fn reuse_detected(
    state: &AppState,
    meta: &RequestMeta,
    session: &SessionRow,
) -> Result<(), ApiError> {
    revoke_session(state, &session.id, "refresh_token_reuse").await?;
    state.events.record(
        EventType::TokenReuse,
        Severity::High,
        &meta.ctx(),
        Some(session.user_id),
        None,
        json!({ "session_id": session.id, "action": "session revoked" }),
    );
    Ok(())
}

/// Revokes a session: its refresh tokens stop working and its access tokens are refused on the
/// next request.
pub async fn revoke_session(
    state: &AppState,
    session_id: &str,
    reason: &str,
) -> Result<(), ApiError> {
    db::sessions::revoke(&state.db.pool, session_id, db::now(), reason).await?;
    state.auth_cache.invalidate_session(session_id);
    Ok(())
}

/// The session a refresh token belongs to, if it is known (for logout by cookie).
pub async fn session_of_refresh_token(
    state: &AppState,
    refresh_token: &str,
) -> Result<Option<SessionRow>, ApiError> {
    let Some(row) = db::sessions::find_refresh(&state.db.pool, &hash_token(refresh_token)).await?
    else {
        return Ok(None);
    };
    Ok(db::sessions::find(&state.db.pool, &row.session_id).await?)
}
