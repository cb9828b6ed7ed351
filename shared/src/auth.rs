//! Authentication wire types.

use serde::{Deserialize, Serialize};

/// A JSON Web Key Set (RFC 7517) with the gateway's token-verification keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwks {
    /// The current signing key first, then keys that still verify older tokens.
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "pYx9dAq6Hnt2Kd1c", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})))]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub key_use: String,
    pub kid: String,
    /// The base64url-encoded public key.
    pub x: String,
}

/// A user's role. Admins manage the gateway and may use every MCP server; users only the
/// servers they are granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// Where the refresh token of a new session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// In the response body (scripts, MCP clients). The default.
    #[default]
    Body,
    /// Only in an `HttpOnly; SameSite=Strict` cookie scoped to the refresh endpoint, never
    /// readable by JavaScript (the admin SPA). Admin login only.
    Cookie,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"username": "alice", "password": "correct horse battery"})))]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub session: SessionMode,
}

/// Tokens for a new or refreshed session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9...", "refresh_token": "amr_n4dG...", "token_type": "bearer", "expires_in": 900})))]
pub struct TokenResponse {
    /// A JWT (EdDSA) to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Opaque; single use: each refresh returns a new one. Absent in cookie mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    /// The refresh token. The admin endpoint also accepts it from its cookie instead.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub role: Role,
    /// `jwt` or `api_key`.
    pub auth_method: String,
    /// The API key's id when authenticated by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<i64>,
    /// The teams the user administers (`team_admin`): a user who is not a global admin sees
    /// the admin pages of these teams only. Filled by `/admin/api/me`; empty elsewhere.
    #[serde(default)]
    pub admin_of: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetupStatus {
    /// True while no user exists: the first admin still has to be created.
    pub setup_required: bool,
    /// True when creating the first admin needs the one-time setup token the gateway printed
    /// in its log at start-up (it listens on a non-loopback address and `ADMIN_PASSWORD` is
    /// not set).
    #[serde(default)]
    pub token_required: bool,
}

/// Body of `POST /setup/create-admin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"username": "admin", "password": "a long unusual passphrase", "email": "admin@example.com", "setup_token": "k3Jx…"})))]
pub struct SetupAccount {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::username))]
    pub username: String,
    // `password::validate_password` with the default `PASSWORD_MIN_LENGTH` (12); the password
    // must also not contain the username nor be a well-known one.
    #[cfg_attr(feature = "openapi", schema(min_length = 12, max_length = 256))]
    pub password: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::email))]
    pub email: Option<String>,
    /// The one-time setup token from the gateway's log, when `token_required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_token: Option<String>,
}

/// Body of `POST /setup/create-admin` and `POST /auth/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"username": "admin", "password": "a long unusual passphrase", "email": "admin@example.com"})))]
pub struct NewAccount {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::username))]
    pub username: String,
    // `password::validate_password` with the default `PASSWORD_MIN_LENGTH` (12); the password
    // must also not contain the username nor be a well-known one.
    #[cfg_attr(feature = "openapi", schema(min_length = 12, max_length = 256))]
    pub password: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::email))]
    pub email: Option<String>,
}

/// An API key as listed (the secret is never returned after creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// The first characters of the secret (`amg_abcd…`), to recognise a key.
    pub prefix: String,
    /// MCP servers the key is restricted to; `null` means every server the user may use.
    pub servers: Option<Vec<String>>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "ci-agent", "expires_in_days": 90, "servers": ["github"]})))]
pub struct CreateApiKey {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::api_key_name))]
    pub name: String,
    /// Days until the key expires; absent means no expiry.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    pub expires_in_days: Option<u32>,
    /// Restrict the key to these MCP servers (by name).
    // Each a server name (`accounts::validate_server_name`); the item constraints go to the items.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 64, pattern = "^[a-z0-9][a-z0-9_-]*$")
    )]
    pub servers: Option<Vec<String>>,
}

/// Returned once, at creation: `secret` is not retrievable later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    pub key: ApiKey,
    /// `amg_…`: send it as `Authorization: Bearer amg_…` to `/mcp`.
    pub secret: String,
}
