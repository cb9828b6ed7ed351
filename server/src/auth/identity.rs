//! Who is calling: bearer-token authentication, checked against current state on every request.
//!
//! A JWT's signature is verified once and its claims cached (keyed by the token's SHA-256,
//! bounded, until expiry); the session it belongs to and its user are then checked on every
//! request from an in-memory view of the database that is at most `AUTH_CACHE_TTL_MS` old and
//! is invalidated at once by every change made through this replica (logout, disable, demote,
//! delete, password reset, key revocation). See docs/ARCHITECTURE.md, "Identity".

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::auth::Role;

use crate::auth::client_ip::ClientIp;
use crate::auth::tokens::{API_KEY_PREFIX, AccessClaims, Audience};
use crate::cache::TtlMap;
use crate::db;
use crate::error::ApiError;
use crate::events::{EventContext, EventType, Severity};
use crate::feed::Change;
use crate::keys::TokenError;
use crate::state::AppState;

/// `last_used_at` of an API key is written at most this often.
const API_KEY_TOUCH_SECS: i64 = 60;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    pub email: Option<String>,
    pub role: Role,
    pub method: AuthMethod,
    /// What an OAuth token's scopes allow on MCP endpoints.
    pub scope: McpScope,
    /// The teams the user administers (`team_admin`), as of this request; read for the admin
    /// audience only (empty elsewhere).
    pub admin_of: Arc<[i64]>,
}

/// What an admin-audience caller may see and change: everything (a global admin) or only what
/// belongs to the teams they administer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminScope {
    All,
    Teams(Arc<[i64]>),
}

impl AdminScope {
    /// The caller's teams as the bound value of `team_filter!` (`None`: every team).
    pub fn filter(&self) -> Option<String> {
        match self {
            AdminScope::All => None,
            AdminScope::Teams(teams) => Some(
                teams
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        }
    }

    pub fn has_team(&self, team_id: i64) -> bool {
        match self {
            AdminScope::All => true,
            AdminScope::Teams(teams) => teams.contains(&team_id),
        }
    }

    pub fn is_global(&self) -> bool {
        *self == AdminScope::All
    }
}

impl Principal {
    /// A user who proved who they are in a browser (the consent and connections pages'
    /// sign-in): their own role, full MCP scope, no session of the token kind.
    pub fn signed_in(user: &crate::db::users::UserRow) -> Principal {
        Principal {
            user_id: user.id,
            username: user.username.clone(),
            email: None,
            role: Role::parse(&user.role).unwrap_or(Role::User),
            method: AuthMethod::Jwt {
                session_id: String::new(),
            },
            scope: McpScope::Full,
            admin_of: Arc::from([]),
        }
    }

    /// What the caller may see and change in the admin API.
    pub fn admin_scope(&self) -> AdminScope {
        if self.role == Role::Admin {
            AdminScope::All
        } else {
            AdminScope::Teams(self.admin_of.clone())
        }
    }
}

/// OAuth scopes on the MCP side: `mcp` is everything, `mcp:read` discovery and lists only.
/// Password sessions and API keys have `Full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpScope {
    Full,
    Read,
    None,
}

impl McpScope {
    pub fn from_claim(scope: Option<&str>) -> McpScope {
        let Some(scope) = scope else {
            return McpScope::Full;
        };
        let mut words = scope.split(' ');
        if words.clone().any(|w| w == "mcp") {
            McpScope::Full
        } else if words.any(|w| w == "mcp:read") {
            McpScope::Read
        } else {
            McpScope::None
        }
    }
}

#[derive(Debug, Clone)]
pub enum AuthMethod {
    Jwt {
        session_id: String,
    },
    ApiKey {
        id: i64,
        /// Server names the key is restricted to; `None` = all the user may use.
        servers: Option<Vec<String>>,
    },
}

#[derive(Debug, Clone)]
struct UserState {
    username: String,
    email: Option<String>,
    role: Role,
    enabled: bool,
}

#[derive(Debug, Clone)]
struct SessionState {
    user_id: i64,
    audience: String,
    revoked: bool,
    expires_at: i64,
}

#[derive(Debug, Clone)]
struct ApiKeyState {
    id: i64,
    user_id: i64,
    revoked: bool,
    expires_at: Option<i64>,
    servers: Option<Vec<String>>,
}

/// The per-replica view of identity state. Cheap to share (`Arc` in `AppState`).
pub struct AuthCache {
    ttl: std::time::Duration,
    tokens: TtlMap<[u8; 32], Arc<AccessClaims>>,
    users: TtlMap<i64, Option<UserState>>,
    /// The teams each user administers, read only for admin-audience callers (never on the MCP
    /// path) and dropped with the user's state.
    team_admin: TtlMap<i64, Arc<[i64]>>,
    sessions: TtlMap<String, Option<Arc<SessionState>>>,
    api_keys: TtlMap<[u8; 32], Option<ApiKeyState>>,
    api_key_touched: TtlMap<i64, ()>,
    /// Moved on every change of identity state made through this replica, so open
    /// connections re-check their caller at once (`still_valid`).
    changes: crate::feed::Changes,
}

impl AuthCache {
    pub fn new(ttl: std::time::Duration, changes: crate::feed::Changes) -> Self {
        Self {
            ttl,
            tokens: TtlMap::new(),
            users: TtlMap::new(),
            team_admin: TtlMap::new(),
            sessions: TtlMap::new(),
            api_keys: TtlMap::new(),
            api_key_touched: TtlMap::new(),
            changes,
        }
    }

    /// Changes that can take access away (identity state, grants, servers).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Forget a user's state (role, enabled, deletion) and everything that hangs off it.
    pub fn invalidate_user(&self, user_id: i64) {
        self.changed(Change::User(user_id));
    }

    pub fn invalidate_session(&self, session_id: &str) {
        self.changed(Change::Session(session_id.to_string()));
    }

    pub fn invalidate_api_key(&self, key_id: i64) {
        self.changed(Change::ApiKey(key_id));
    }

    /// A change made here: forgotten here, then sent to open connections and other replicas.
    fn changed(&self, change: Change) {
        self.forget(&change);
        self.changes.send(change);
    }

    /// Drops what `change` makes stale (a change made here or on another replica).
    pub fn forget(&self, change: &Change) {
        match change {
            Change::User(user_id) => {
                self.users.retain(|id, _| id != user_id);
                self.team_admin.retain(|id, _| id != user_id);
                self.sessions
                    .retain(|_, s| s.as_ref().is_none_or(|s| s.user_id != *user_id));
                self.api_keys
                    .retain(|_, k| k.as_ref().is_none_or(|k| k.user_id != *user_id));
            }
            Change::Session(session_id) => self.sessions.retain(|id, _| id != session_id),
            Change::ApiKey(key_id) => self
                .api_keys
                .retain(|_, k| k.as_ref().is_none_or(|k| k.id != *key_id)),
            Change::All => {
                self.users.clear();
                self.team_admin.clear();
                self.sessions.clear();
                self.api_keys.clear();
            }
            _ => {}
        }
    }
}

/// Request details for security events. Cheap to take (reference-counted copies of the
/// request's own bytes); the event context is only built when an event is recorded.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub ip: ClientIp,
    user_agent: Option<axum::http::HeaderValue>,
    method: axum::http::Method,
    uri: axum::http::Uri,
}

impl RequestMeta {
    /// The context recorded with a security event: client address, user agent (at most 256
    /// characters) and `METHOD /path` (never the query string).
    pub fn ctx(&self) -> EventContext {
        EventContext {
            ip: Some(self.ip.0.to_string()),
            user_agent: self
                .user_agent
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(256).collect()),
            endpoint: Some(format!("{} {}", self.method, self.uri.path())),
        }
    }
}

impl FromRequestParts<AppState> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = ClientIp::from_request_parts(parts, state).await?;
        Ok(RequestMeta {
            ip,
            user_agent: parts.headers.get(header::USER_AGENT).cloned(),
            method: parts.method.clone(),
            uri: parts.uri.clone(),
        })
    }
}

/// What a route accepts.
#[derive(Debug, Clone, Copy)]
pub struct Accept<'a> {
    pub audience: Audience,
    pub api_keys: bool,
    /// The MCP resource being called (`mcp` or `mcp/{server}`): tokens bound to it by OAuth
    /// (`aud` = `<PUBLIC_URL>/{resource}`) are accepted besides the audience's own.
    pub resource: Option<&'a str>,
}

/// Why authentication failed; every variant is answered with the same 401 (403 for
/// `NotAdmin`), the difference only reaches logs and security events.
#[derive(Debug)]
enum Failure {
    Missing,
    Malformed(TokenError),
    Expired,
    SessionGone,
    UserGone,
    UserDisabled(i64),
    NotAdmin(i64, String),
    ApiKeyInvalid,
    Internal(ApiError),
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Authenticates the bearer credential of a request against current state.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    meta: &RequestMeta,
    accept: Accept<'_>,
) -> Result<Principal, ApiError> {
    let result = match bearer(headers) {
        None => Err(Failure::Missing),
        Some(token) if token.starts_with(API_KEY_PREFIX) => {
            if accept.api_keys {
                authenticate_api_key(state, token).await
            } else {
                Err(Failure::ApiKeyInvalid)
            }
        }
        Some(token) => authenticate_jwt(state, token, accept.audience, accept.resource).await,
    };
    result.map_err(|failure| report(state, meta, failure))
}

/// Records the security event a failure deserves and maps it to the HTTP answer.
fn report(state: &AppState, meta: &RequestMeta, failure: Failure) -> ApiError {
    let events = &state.events;
    match failure {
        Failure::Missing | Failure::Expired => ApiError::Unauthorized,
        Failure::Malformed(e) => {
            events.record(
                EventType::TokenInvalid,
                Severity::Medium,
                &meta.ctx(),
                None,
                None,
                json!({ "reason": e.to_string() }),
            );
            ApiError::Unauthorized
        }
        Failure::SessionGone | Failure::UserGone => {
            events.record(
                EventType::TokenInvalid,
                Severity::Low,
                &meta.ctx(),
                None,
                None,
                json!({ "reason": "session revoked or user deleted" }),
            );
            ApiError::Unauthorized
        }
        Failure::ApiKeyInvalid => {
            events.record(
                EventType::TokenInvalid,
                Severity::Medium,
                &meta.ctx(),
                None,
                None,
                json!({ "reason": "unknown, revoked or expired API key, or API key not accepted here" }),
            );
            ApiError::Unauthorized
        }
        Failure::UserDisabled(user_id) => {
            events.record(
                EventType::AccessDenied,
                Severity::Medium,
                &meta.ctx(),
                Some(user_id),
                None,
                json!({ "reason": "user disabled" }),
            );
            ApiError::Unauthorized
        }
        Failure::NotAdmin(user_id, username) => {
            events.record(
                EventType::AccessDenied,
                Severity::Medium,
                &meta.ctx(),
                Some(user_id),
                Some(&username),
                json!({ "reason": "admin role required" }),
            );
            ApiError::Forbidden("admin role required")
        }
        Failure::Internal(e) => e,
    }
}

/// Whether `aud` is `<public_url>/<resource>`.
fn is_resource(aud: &str, public_url: &str, resource: &str) -> bool {
    aud.strip_prefix(public_url)
        .and_then(|rest| rest.strip_prefix('/'))
        == Some(resource)
}

async fn authenticate_jwt(
    state: &AppState,
    token: &str,
    audience: Audience,
    resource: Option<&str>,
) -> Result<Principal, Failure> {
    let cache = &state.auth_cache;
    let key = digest(token);
    let now = db::now();
    let claims = match cache.tokens.get(&key, std::time::Duration::MAX) {
        Some(claims) => claims,
        None => {
            let own = audience.claim(&state.config.public_url);
            let bound = resource.map(|r| format!("{}/{r}", state.config.public_url));
            let mut audiences = vec![own.as_str()];
            audiences.extend(bound.as_deref());
            let claims: AccessClaims = state
                .keys
                .verify(token, &state.config.public_url, &audiences)
                .await
                .map_err(|e| match e {
                    TokenError::Invalid(ref inner)
                        if matches!(
                            inner.kind(),
                            jsonwebtoken::errors::ErrorKind::ExpiredSignature
                        ) =>
                    {
                        Failure::Expired
                    }
                    other => Failure::Malformed(other),
                })?;
            let claims = Arc::new(claims);
            cache.tokens.put(key, claims.clone());
            claims
        }
    };
    // The cache is keyed by the token alone: re-check what depends on the route.
    if claims.exp <= now {
        return Err(Failure::Expired);
    }
    let public_url = &state.config.public_url;
    let aud_ok = audience.is_claim(&claims.aud, public_url)
        || resource.is_some_and(|r| is_resource(&claims.aud, public_url, r));
    if !aud_ok {
        return Err(Failure::Malformed(TokenError::Malformed));
    }
    // An OAuth client's token is for the MCP endpoints only: never self-service (API keys,
    // sessions), which would let a client escape its scope, resource and revocation.
    if resource.is_none() && claims.client_id.is_some() {
        return Err(Failure::Malformed(TokenError::Malformed));
    }
    let user_id: i64 = claims
        .sub
        .parse()
        .map_err(|_| Failure::Malformed(TokenError::Malformed))?;
    let session = session_state(state, &claims.sid).await?;
    match session {
        Some(s)
            if !s.revoked
                && s.user_id == user_id
                && s.audience == audience.as_str()
                && s.expires_at > now => {}
        _ => return Err(Failure::SessionGone),
    }
    let user = user_state(state, user_id).await?.ok_or(Failure::UserGone)?;
    if !user.enabled {
        return Err(Failure::UserDisabled(user_id));
    }
    let admin_of = if audience == Audience::Admin {
        admin_teams(state, user_id).await?
    } else {
        Arc::from([])
    };
    if audience == Audience::Admin && user.role != Role::Admin && admin_of.is_empty() {
        return Err(Failure::NotAdmin(user_id, user.username));
    }
    Ok(Principal {
        user_id,
        username: user.username,
        email: user.email,
        role: user.role,
        method: AuthMethod::Jwt {
            session_id: claims.sid.clone(),
        },
        scope: McpScope::from_claim(claims.scope.as_deref()),
        admin_of,
    })
}

async fn authenticate_api_key(state: &AppState, token: &str) -> Result<Principal, Failure> {
    let cache = &state.auth_cache;
    let key = digest(token);
    let api_key = match cache.api_keys.get(&key, cache.ttl) {
        Some(k) => k,
        None => {
            let row = db::api_keys::find_by_hash(&state.db.pool, &hex(&key))
                .await
                .map_err(|e| Failure::Internal(e.into()))?;
            let k = row.map(|r| ApiKeyState {
                id: r.id,
                user_id: r.user_id,
                revoked: r.revoked_at.is_some(),
                expires_at: r.expires_at,
                servers: r.servers.and_then(|s| serde_json::from_str(&s).ok()),
            });
            cache.api_keys.put(key, k.clone());
            k
        }
    };
    let now = db::now();
    let api_key = api_key
        .filter(|k| !k.revoked && k.expires_at.is_none_or(|e| e > now))
        .ok_or(Failure::ApiKeyInvalid)?;
    let user = user_state(state, api_key.user_id)
        .await?
        .ok_or(Failure::UserGone)?;
    if !user.enabled {
        return Err(Failure::UserDisabled(api_key.user_id));
    }
    touch_api_key(state, api_key.id, now);
    Ok(Principal {
        user_id: api_key.user_id,
        username: user.username,
        email: user.email,
        role: user.role,
        scope: McpScope::Full,
        method: AuthMethod::ApiKey {
            id: api_key.id,
            servers: api_key.servers,
        },
        admin_of: Arc::from([]),
    })
}

/// Records `last_used_at` off the request path, at most once a minute per key.
fn touch_api_key(state: &AppState, id: i64, now: i64) {
    let cache = &state.auth_cache;
    let interval = std::time::Duration::from_secs(API_KEY_TOUCH_SECS as u64);
    if cache.api_key_touched.get(&id, interval).is_some() {
        return;
    }
    cache.api_key_touched.put(id, ());
    let db = state.db.clone();
    tokio::spawn(async move {
        if let Err(e) = db::api_keys::touch(&db.pool, id, now).await {
            tracing::debug!(error = %e, "could not record API key use");
        }
    });
}

async fn session_state(state: &AppState, id: &str) -> Result<Option<Arc<SessionState>>, Failure> {
    let cache = &state.auth_cache;
    if let Some(s) = cache.sessions.get(id, cache.ttl) {
        return Ok(s);
    }
    let row = db::sessions::find(&state.db.pool, id)
        .await
        .map_err(|e| Failure::Internal(e.into()))?;
    let s = row.map(|r| {
        Arc::new(SessionState {
            user_id: r.user_id,
            audience: r.audience,
            revoked: r.revoked_at.is_some(),
            expires_at: r.expires_at,
        })
    });
    cache.sessions.put(id.to_string(), s.clone());
    Ok(s)
}

async fn user_state(state: &AppState, user_id: i64) -> Result<Option<UserState>, Failure> {
    let cache = &state.auth_cache;
    if let Some(u) = cache.users.get(&user_id, cache.ttl) {
        return Ok(u);
    }
    let row = db::users::find_by_id(&state.db.pool, user_id)
        .await
        .map_err(|e| Failure::Internal(e.into()))?;
    let u = row.map(|r| UserState {
        role: Role::parse(&r.role).unwrap_or(Role::User),
        username: r.username,
        email: r.email,
        enabled: r.enabled != 0,
    });
    cache.users.put(user_id, u.clone());
    Ok(u)
}

/// The teams a user administers, cached like the user's state.
async fn admin_teams(state: &AppState, user_id: i64) -> Result<Arc<[i64]>, Failure> {
    let cache = &state.auth_cache;
    if let Some(teams) = cache.team_admin.get(&user_id, cache.ttl) {
        return Ok(teams);
    }
    let teams: Arc<[i64]> = db::teams::memberships(&state.db.pool, user_id)
        .await
        .map_err(|e| Failure::Internal(e.into()))?
        .into_iter()
        .filter(|m| m.role == "team_admin")
        .map(|m| m.team_id)
        .collect();
    cache.team_admin.put(user_id, teams.clone());
    Ok(teams)
}

/// The current role of a caller authenticated earlier (at the start of a long-lived
/// connection), if it may still be served: the user exists and is enabled, and its session or
/// API key (`method`) is neither revoked nor expired. Read against current state (the cache is
/// invalidated by every change made through this replica); an error counts as no.
pub async fn current_role(
    state: &AppState,
    user_id: i64,
    method: Option<&AuthMethod>,
) -> Option<Role> {
    let user = user_state(state, user_id).await.ok()??;
    if !user.enabled {
        return None;
    }
    let now = db::now();
    let valid = match method {
        None => true,
        Some(AuthMethod::Jwt { session_id }) => matches!(
            session_state(state, session_id).await,
            Ok(Some(s)) if !s.revoked && s.expires_at > now && s.user_id == user_id
        ),
        Some(AuthMethod::ApiKey { id, .. }) => matches!(
            db::api_keys::find(&state.db.pool, *id).await,
            Ok(Some(k)) if k.revoked_at.is_none()
                && k.expires_at.is_none_or(|e| e > now)
                && k.user_id == user_id
        ),
    };
    valid.then_some(user.role)
}

/// The admin scope now of a caller authenticated earlier (with `session_id`): `None` when the
/// user is disabled, deleted, signed out, or administers nothing any more.
pub async fn current_admin_scope(
    state: &AppState,
    user_id: i64,
    session_id: Option<&str>,
) -> Option<AdminScope> {
    let method = session_id.map(|s| AuthMethod::Jwt {
        session_id: s.to_string(),
    });
    let role = current_role(state, user_id, method.as_ref()).await?;
    if role == Role::Admin {
        return Some(AdminScope::All);
    }
    let teams = admin_teams(state, user_id).await.ok()?;
    (!teams.is_empty()).then_some(AdminScope::Teams(teams))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

macro_rules! extractor {
    ($(#[$doc:meta])* $name:ident, $audience:expr, $api_keys:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Self::Rejection> {
                let meta = RequestMeta::from_request_parts(parts, state)
                    .await
                    .unwrap_or_else(|never| match never {});
                let accept = Accept { audience: $audience, api_keys: $api_keys, resource: None };
                authenticate(state, &parts.headers, &meta, accept).await.map($name)
            }
        }
    };
}

extractor!(
    /// An admin or team admin with an admin-audience JWT (the admin API's team-scoped
    /// operations; the handler applies `Principal::admin_scope`). API keys are never accepted.
    ScopedAdmin,
    Audience::Admin,
    false
);

impl AsRef<Principal> for ScopedAdmin {
    fn as_ref(&self) -> &Principal {
        &self.0
    }
}

impl AsRef<Principal> for AdminUser {
    fn as_ref(&self) -> &Principal {
        &self.0
    }
}

/// A global admin with an admin-audience JWT: every admin operation that is not team-scoped
/// (a team admin gets 403 whatever the object, so nothing is learnt about it). API keys are
/// never accepted.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Principal);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ScopedAdmin(principal) = ScopedAdmin::from_request_parts(parts, state).await?;
        if principal.role == Role::Admin {
            Ok(AdminUser(principal))
        } else {
            Err(ApiError::Forbidden("only a global admin may do this"))
        }
    }
}
extractor!(
    /// A user with an MCP-audience JWT (self-service: logout, API keys).
    SessionUser,
    Audience::Mcp,
    false
);
extractor!(
    /// A user signed in to the portal (a portal-audience JWT; `/portal/api`). API keys are
    /// never accepted.
    PortalUser,
    Audience::Portal,
    false
);
extractor!(
    /// A user with an MCP-audience JWT or an API key (`/mcp`, `/auth/me`).
    McpUser,
    Audience::Mcp,
    true
);
