//! MCP server registry wire types.

use serde::{Deserialize, Serialize};

/// How the gateway talks to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Streamable HTTP (2025-03-26 and later, both eras).
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05): `GET` the URL for an `endpoint` event.
    Sse,
    /// Try streamable HTTP, fall back to HTTP+SSE on 400/404/405.
    #[default]
    Auto,
}

/// A backend credential as written by an admin. Never returned by any endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// Read through `CredentialFields`, a plain struct: serde reads an internally tagged enum by
// buffering every field first, so which fields a variant then ignores could not be told
// (server/src/error.rs `nul_read` needs to).
#[serde(tag = "type", rename_all = "lowercase", try_from = "CredentialFields")]
pub enum CredentialInput {
    /// No credential.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        // No control character but tab (a header value); at most 8192 bytes
        // (`servers::credential_parts`), which no character count states exactly.
        #[cfg_attr(
            feature = "openapi",
            schema(min_length = 1, pattern = r"^[^\u0000-\u0008\u000A-\u001F\u007F]+$")
        )]
        token: String,
    },
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        // At most 8192 bytes, which no character count states exactly.
        #[cfg_attr(
            feature = "openapi",
            schema(min_length = 1, pattern = r"^[^:\u0000]+$")
        )]
        username: String,
        password: String,
    },
    /// A custom header, e.g. `X-API-Key: <value>`.
    Header {
        // An HTTP field name (token characters); the reserved names `servers::credential_parts`
        // refuses (`host`, `content-type`, `mcp-session-id`, …) are not stated.
        #[cfg_attr(
            feature = "openapi",
            schema(max_length = 65535, pattern = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
        )]
        name: String,
        // No control character but tab; at most 8192 bytes, which no character count states
        // exactly.
        #[cfg_attr(
            feature = "openapi",
            schema(min_length = 1, pattern = r"^[^\u0000-\u0008\u000A-\u001F\u007F]+$")
        )]
        value: String,
    },
    /// OAuth client credentials (RFC 6749 §4.4): the gateway gets and renews its own token.
    #[serde(rename = "oauth_client_credentials")]
    OAuthClientCredentials {
        /// The authorization server's token endpoint.
        #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::token_url))]
        token_url: String,
        // No control character; at most 512 bytes, which no character count states exactly.
        #[cfg_attr(
            feature = "openapi",
            schema(min_length = 1, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")
        )]
        client_id: String,
        // At most 8192 bytes, which no character count states exactly.
        #[cfg_attr(feature = "openapi", schema(min_length = 1))]
        client_secret: String,
        // Space-separated scope tokens (RFC 6749 §3.3), `servers::valid_scope`.
        #[serde(default)]
        #[cfg_attr(
            feature = "openapi",
            schema(
                max_length = 1000,
                pattern = r"^[\u0021\u0023-\u005B\u005D-\u007E]+(?: [\u0021\u0023-\u005B\u005D-\u007E]+)*$"
            )
        )]
        scope: Option<String>,
        /// Sent as `audience` (some authorization servers want it).
        // No control character; at most 2000 bytes, which no character count states exactly.
        #[serde(default)]
        #[cfg_attr(
            feature = "openapi",
            schema(min_length = 1, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")
        )]
        audience: Option<String>,
        /// Sent as `resource` (RFC 8707); default: the server's URL.
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::resource_url))]
        resource: Option<String>,
        /// `client_secret_basic` (default) or `client_secret_post`.
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::client_auth_method))]
        auth_method: Option<String>,
    },
    /// OAuth authorization code with PKCE, connected once by an admin (`POST
    /// /admin/api/servers/{id}/connect`); every call uses that account's token.
    #[serde(rename = "oauth_admin")]
    OAuthAdmin(OAuthCodeInput),
    /// OAuth authorization code with PKCE, connected by each user for themselves
    /// (`/connect/{server}` on the gateway); a user's calls carry that user's own token.
    #[serde(rename = "oauth_user")]
    OAuthUser(OAuthCodeInput),
}

/// The authorization-code kinds: everything is discovered from the backend (RFC 9728, RFC 8414)
/// and the gateway registers itself, unless a pre-registered client is given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthCodeInput {
    /// A client registered beforehand with the authorization server (its redirect URI:
    /// `{PUBLIC_URL}/oauth/backend/callback`); without it the gateway registers one.
    // No control character; at most 512 bytes, which no character count states exactly.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")
    )]
    pub client_id: Option<String>,
    // At most 8192 bytes, which no character count states exactly.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub client_secret: Option<String>,
    /// Scopes to ask for; default: the protected-resource metadata's `scopes_supported`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 1000,
            pattern = r"^[\u0021\u0023-\u005B\u005D-\u007E]+(?: [\u0021\u0023-\u005B\u005D-\u007E]+)*$"
        )
    )]
    pub scope: Option<String>,
}

/// Every field of every kind of `CredentialInput`, as one struct: how it is read (see there).
/// Fields no kind has are ignored, as serde ignores them; those of another kind are read and
/// then left unused.
#[derive(Deserialize)]
struct CredentialFields {
    #[serde(rename = "type")]
    kind: String,
    token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    name: Option<String>,
    value: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
    auth_method: Option<String>,
}

impl TryFrom<CredentialFields> for CredentialInput {
    type Error = String;

    fn try_from(f: CredentialFields) -> Result<Self, String> {
        let need = |value: Option<String>, field: &str| {
            value.ok_or_else(|| format!("missing field `{field}`"))
        };
        Ok(match f.kind.as_str() {
            "none" => CredentialInput::None,
            "bearer" => CredentialInput::Bearer {
                token: need(f.token, "token")?,
            },
            "basic" => CredentialInput::Basic {
                username: need(f.username, "username")?,
                password: need(f.password, "password")?,
            },
            "header" => CredentialInput::Header {
                name: need(f.name, "name")?,
                value: need(f.value, "value")?,
            },
            "oauth_client_credentials" => CredentialInput::OAuthClientCredentials {
                token_url: need(f.token_url, "token_url")?,
                client_id: need(f.client_id, "client_id")?,
                client_secret: need(f.client_secret, "client_secret")?,
                scope: f.scope,
                audience: f.audience,
                resource: f.resource,
                auth_method: f.auth_method,
            },
            kind @ ("oauth_admin" | "oauth_user") => {
                let code = OAuthCodeInput {
                    client_id: f.client_id,
                    client_secret: f.client_secret,
                    scope: f.scope,
                };
                if kind == "oauth_admin" {
                    CredentialInput::OAuthAdmin(code)
                } else {
                    CredentialInput::OAuthUser(code)
                }
            }
            other => {
                return Err(format!(
                    "unknown credential type `{other}`, expected one of `none`, `bearer`, \
                     `basic`, `header`, `oauth_client_credentials`, `oauth_admin`, `oauth_user`"
                ));
            }
        })
    }
}

/// What the API shows of a credential: its kind and a hint (the last 4 characters of a static
/// secret; the client id of an OAuth credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CredentialInfo {
    /// `bearer`, `basic`, `header`, `oauth_client_credentials`, `oauth_admin` or `oauth_user`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `…abcd`.
    pub hint: String,
    /// For `header` credentials: the header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
}

/// Health as last seen by the background checker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerHealth {
    /// `online`, `degraded` (answers, but slowly or with errors), `offline`, or `unknown`
    /// (not checked yet, or disabled).
    pub status: String,
    pub latency_ms: Option<u64>,
    pub last_error: Option<String>,
    pub tool_count: Option<u32>,
    pub protocol_version: Option<String>,
    /// Unix seconds of the last check.
    pub checked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpServer {
    pub id: i64,
    /// URL-safe; the path segment of `/mcp/{name}`.
    pub name: String,
    /// What the UI shows ("GitHub MCP"); the name when none was given.
    pub display_name: String,
    pub url: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub transport: Transport,
    pub timeout_seconds: u32,
    /// Whether a backend credential is set, and a hint of it; never the secret.
    pub credential: Option<CredentialInfo>,
    /// The gateway URL clients use for this server.
    pub endpoint: String,
    /// What its tool and prompt names start with on the aggregated `/mcp` endpoint
    /// (`{prefix}__{tool}`): the `tool_prefix` set, else the name.
    pub tool_prefix: String,
    /// Suspicious-payload detection on tool calls and answers: `off`, `log` or `block`.
    pub detection: String,
    /// Tool-definition pinning: `off`, `warn` (changed definitions are reported) or
    /// `quarantine` (changed and new tools are also hidden and refused until approved).
    pub tool_pinning: String,
    pub health: ServerHealth,
    /// The team that owns the server (1: the default team).
    pub team_id: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "github", "url": "http://127.0.0.1:9000/mcp", "backend_token": "ghp_example"})))]
pub struct CreateServer {
    /// The path segment of `/mcp/{name}` (`a-z 0-9 - _`), or a display name ("GitHub MCP"),
    /// from which the segment is derived (`github-mcp`) and which is then kept as the display
    /// name.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::server_name_or_display_name))]
    pub name: String,
    /// The owning team (default: the default team for global admins, the caller's team for a
    /// team admin of one team).
    #[serde(default)]
    pub team_id: Option<i64>,
    /// What the UI shows (default: the name as given).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::display_name_on_create))]
    pub display_name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::server_url))]
    pub url: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::server_description))]
    pub description: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    pub timeout_seconds: Option<u32>,
    /// Shorthand for a bearer credential (the original gateway's field); `""` for none. Used
    /// only without `credential`.
    // No control character but tab (a header value), as `CredentialInput::Bearer`'s token.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[^\u0000-\u0008\u000A-\u001F\u007F]*$")
    )]
    pub backend_token: Option<String>,
    #[serde(default)]
    pub credential: Option<CredentialInput>,
    /// Prefix of its names on the aggregated `/mcp` (default: the name). `a-z 0-9 - _`, at most
    /// 32, no `__`, not ending in `_`; unique among servers.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 32, pattern = "^(?:[a-z0-9](?:[a-z0-9-]|_[a-z0-9-])*)?$")
    )]
    pub tool_prefix: Option<String>,
    /// `off`, `log` (default) or `block`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::detection_on_create))]
    pub detection: Option<String>,
    /// `off`, `warn` or `quarantine` (default for new servers).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::tool_pinning_on_create))]
    pub tool_pinning: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Fields to change; absent fields stay. A `credential` of `{"type": "none"}` removes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateServer {
    // A server name (`accounts::validate_server_name`): no display name here.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 64, pattern = "^[a-z0-9][a-z0-9_-]*$")
    )]
    pub name: Option<String>,
    /// Moves the server (and the history recorded under its name) to another team.
    #[serde(default)]
    pub team_id: Option<i64>,
    /// A new display name; `""` goes back to the name.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::display_name_on_update))]
    pub display_name: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::server_url_on_update))]
    pub url: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::server_description))]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub transport: Option<Transport>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    pub timeout_seconds: Option<u32>,
    /// A new bearer credential; `""` removes the credential. Used only without `credential`.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[^\u0000-\u0008\u000A-\u001F\u007F]*$")
    )]
    pub backend_token: Option<String>,
    #[serde(default)]
    pub credential: Option<CredentialInput>,
    /// A new prefix; `""` goes back to the default (the name).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 32, pattern = "^(?:[a-z0-9](?:[a-z0-9-]|_[a-z0-9-])*)?$")
    )]
    pub tool_prefix: Option<String>,
    /// `off`, `log` or `block`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::detection))]
    pub detection: Option<String>,
    /// `off`, `warn` or `quarantine`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::tool_pinning))]
    pub tool_pinning: Option<String>,
}

/// The result of "test connection".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionTest {
    pub ok: bool,
    pub latency_ms: u64,
    pub protocol_version: Option<String>,
    /// `streamable-http` or `sse`.
    pub transport: Option<String>,
    pub server_name: Option<String>,
    pub tool_count: Option<u32>,
    pub tools: Vec<ToolInfo>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolInfo {
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "inputSchema")]
    pub input_schema: Option<serde_json::Value>,
}

/// One row of `GET /admin/api/users/{id}/mcp-permissions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerPermission {
    pub server_id: i64,
    pub name: String,
    pub can_access: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetServerPermission {
    pub server_id: i64,
    pub can_access: bool,
}

/// One proxied MCP request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivityRecord {
    pub id: i64,
    pub at: i64,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub server: String,
    pub method: String,
    pub tool: Option<String>,
    /// `ok` or an error code.
    pub status: String,
    pub http_status: u16,
    pub latency_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The MCP client's name (`clientInfo.name`), when known.
    #[serde(default)]
    pub client_name: Option<String>,
    /// The JSON-RPC error code of a failed request.
    #[serde(default)]
    pub rpc_error_code: Option<i64>,
    /// A suspicious-payload rule matched the arguments or the result.
    #[serde(default)]
    pub suspicious: bool,
}

/// Whether a tool rule lets matching tools through or keeps them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ToolRuleEffect {
    Allow,
    Deny,
}

impl ToolRuleEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolRuleEffect::Allow => "allow",
            ToolRuleEffect::Deny => "deny",
        }
    }
}

/// A per-tool rule on one server. Patterns are a backend tool name or a glob (`*`, `?`). For a
/// server: a matching `deny` wins; if any `allow` exists, a tool must match one. An API key's
/// rules narrow its owner's further.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolRule {
    pub server_id: i64,
    /// The server's name (read-only).
    #[serde(default)]
    pub server: String,
    // `naming::validate_pattern`: 1 to 200 characters without control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")
    )]
    pub pattern: String,
    pub effect: ToolRuleEffect,
}

/// The complete rule set of a user or API key (replaces the previous one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"rules": [{"server_id": 1, "pattern": "delete_*", "effect": "deny"}]})))]
pub struct ToolRules {
    #[cfg_attr(feature = "openapi", schema(max_items = 500))]
    pub rules: Vec<ToolRule>,
}

/// MCP rate limits in requests per minute (0 = off), applied live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"user_per_minute": 600, "user_server_per_minute": 0, "user_tool_per_minute": 0, "overrides": [{"kind": "tool", "server_id": 1, "tool": "search", "per_minute": 30}]})))]
pub struct RateLimits {
    /// Each user's overall budget.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000000))]
    pub user_per_minute: u32,
    /// Each user's budget per server.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000000))]
    pub user_server_per_minute: u32,
    /// Each user's budget per tool.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000000))]
    pub user_tool_per_minute: u32,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::rate_limit_overrides))]
    pub overrides: Vec<RateLimitOverride>,
}

/// A limit for one user (their overall budget), one server (each user's budget on it) or one
/// tool of a server (each user's budget for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimitOverride {
    /// `user`, `server` or `tool`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::rate_limit_kind))]
    pub kind: String,
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub server_id: Option<i64>,
    /// The backend's tool name (`kind: tool`).
    // At most 200 bytes (server/src/admin/limits.rs `check`), which no character count states
    // exactly.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub tool: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000000))]
    pub per_minute: u32,
    /// The user's or server's name (read-only).
    #[serde(default)]
    pub label: Option<String>,
}

/// The settings in force. Token lifetimes, self-registration, dynamic client registration and
/// retention can be changed live (`PUT /admin/api/settings`); the others come from the
/// environment or the configuration file. Rate limits have their own endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewaySettings {
    pub public_url: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub allow_registration: bool,
    pub oauth_dcr: bool,
    pub oauth_cimd: bool,
    pub log_retention_days: u32,
    pub mcp_session_idle_secs: u64,
    pub mcp_default_timeout_secs: u64,
    pub metrics_enabled: bool,
}

/// Settings to change while the gateway runs; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingsUpdate {
    /// 60 seconds to 1 day.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 86400))]
    pub access_token_ttl_secs: Option<u64>,
    /// 5 minutes to 365 days, longer than the access token lifetime.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 300, maximum = 31536000))]
    pub refresh_token_ttl_secs: Option<u64>,
    #[serde(default)]
    pub allow_registration: Option<bool>,
    #[serde(default)]
    pub oauth_dcr: Option<bool>,
    /// 1 to 3650 days (JSONL files, activity records, security events).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    pub log_retention_days: Option<u32>,
}

/// The health of one OAuth credential the gateway holds toward a backend: a server's own
/// (`user_id` null) or a user's connected account. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenHealth {
    pub server_id: i64,
    pub server: String,
    /// `oauth_client_credentials`, `oauth_admin` or `oauth_user`.
    pub kind: String,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    /// `ok`, `expired` (refreshed on the next call), `failed` (reconnect needed) or
    /// `not_connected`.
    pub status: String,
    /// Seconds until the access token expires (negative: expired); null when unknown.
    pub expires_in: Option<i64>,
    pub has_refresh_token: bool,
    pub scope: Option<String>,
    /// Unix seconds.
    pub connected_at: Option<i64>,
    pub last_refresh_at: Option<i64>,
    pub refresh_count: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

/// Where to send the browser to connect an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectStart {
    pub authorization_url: String,
}

/// One server the signed-in user connects their own account to (`oauth_user`), as the
/// connections page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserConnection {
    pub server_id: i64,
    pub server: String,
    pub description: Option<String>,
    /// `ok`, `expired` (renewed on the next call), `failed` (reconnect) or `not_connected`.
    pub status: String,
    pub expires_in: Option<i64>,
    pub connected_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Who is signed in on the connections page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionsUser {
    pub username: String,
}

/// The connections page: who is signed in, and their connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MyConnections {
    pub username: String,
    pub connections: Vec<UserConnection>,
}

/// A pinned tool definition: what was approved and what the backend sends now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolPin {
    pub server_id: i64,
    pub server: String,
    /// The tool's name as the backend gives it.
    pub name: String,
    /// `approved` (the backend sends the approved definition), `pending` (it sends another one,
    /// or the tool is new: awaiting an admin) or `rejected`.
    pub status: String,
    /// The approved definition (name, title, description, inputSchema, outputSchema,
    /// annotations); absent for a tool never approved.
    pub approved: Option<serde_json::Value>,
    pub approved_fingerprint: Option<String>,
    /// The definition the backend sent last.
    pub current: serde_json::Value,
    /// SHA-256 (hex) of the current definition's canonical JSON: name it to approve or reject
    /// exactly this version.
    pub fingerprint: String,
    pub first_seen: i64,
    pub changed_at: i64,
    pub decided_at: Option<i64>,
    /// Who decided last (`first seen` for a definition pinned from the server's first list).
    pub decided_by: Option<String>,
}

/// An admin's decision on one tool's current definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PinDecision {
    /// The tool's name as the backend gives it.
    pub name: String,
    /// The fingerprint of the definition decided on (`ToolPin::fingerprint`); refused with 409
    /// when the backend has sent another one since.
    pub fingerprint: String,
    /// `approve` or `reject`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::pin_decision))]
    pub decision: String,
}

/// One server's rate-limit overrides (`/admin/api/mcp-servers/{id}/rate-limits`), which its
/// team's admins manage: each user's budget on the server and per tool, in requests per minute
/// (0 = off). Absent: the gateway's default applies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServerRateLimits {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000000))]
    pub per_minute: Option<u32>,
    // Each tool named once (server/src/admin/limits.rs `set_server_limits`), which `uniqueItems`
    // (whole items) does not state.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 200))]
    pub tools: Vec<ToolRateLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ToolRateLimit {
    /// The backend's own tool name (1 to 200 bytes).
    // The byte limit has no exact count in characters: only its lower bound is stated.
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub tool: String,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000000))]
    pub per_minute: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `CredentialFields` reads what the enum writes, every kind; fields no kind has are
    /// ignored; a missing field or an unknown kind is refused.
    #[test]
    fn a_credential_reads_as_it_is_written() {
        let code = OAuthCodeInput {
            client_id: Some("id".into()),
            client_secret: None,
            scope: Some("read".into()),
        };
        for credential in [
            CredentialInput::None,
            CredentialInput::Bearer { token: "t".into() },
            CredentialInput::Basic {
                username: "u".into(),
                password: "p".into(),
            },
            CredentialInput::Header {
                name: "X-Key".into(),
                value: "v".into(),
            },
            CredentialInput::OAuthClientCredentials {
                token_url: "https://as/token".into(),
                client_id: "c".into(),
                client_secret: "s".into(),
                scope: None,
                audience: Some("a".into()),
                resource: None,
                auth_method: Some("client_secret_post".into()),
            },
            CredentialInput::OAuthAdmin(code.clone()),
            CredentialInput::OAuthUser(code.clone()),
        ] {
            let text = serde_json::to_string(&credential).unwrap();
            let read: CredentialInput = serde_json::from_str(&text).unwrap();
            assert_eq!(read, credential, "{text}");
        }
        let read: CredentialInput =
            serde_json::from_str(r#"{"type": "bearer", "token": "t", "other": [1]}"#).unwrap();
        assert_eq!(read, CredentialInput::Bearer { token: "t".into() });
        for bad in [
            r#"{"type": "bearer"}"#,
            r#"{"type": "bearer", "token": null}"#,
            r#"{"type": "magic"}"#,
            r#"{"token": "t"}"#,
            r#"{"type": 1}"#,
        ] {
            assert!(
                serde_json::from_str::<CredentialInput>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
