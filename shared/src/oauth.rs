//! The OAuth authorization server's consent API (used by the SPA's consent page) and the admin
//! API for OAuth clients and grants.

use serde::{Deserialize, Serialize};

/// What the consent page shows about a pending authorization request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentRequest {
    pub client_id: String,
    pub client_name: String,
    /// `dynamic`, `admin` or `cimd` (a client identified by its metadata document URL).
    pub client_kind: String,
    pub client_uri: Option<String>,
    /// Where the browser will be sent: shown so the user can recognise the application.
    pub redirect_uri: String,
    pub redirect_host: String,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// The MCP endpoint the access will be bound to.
    pub resource: String,
    /// The user already signed in on this browser for the consent page, if any.
    pub signed_in_as: Option<String>,
}

/// The user's answer. Without `username`/`password` the browser's consent sign-in is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentDecision {
    pub request: String,
    pub approve: bool,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// Where to send the browser next (the client's redirect URI with a code or an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentResult {
    pub redirect_to: String,
}

/// An OAuth client as admins see it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthClient {
    /// Admin API id.
    pub id: i64,
    pub client_id: String,
    pub kind: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub application_type: String,
    pub client_uri: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// Users who granted it access.
    pub grants: i64,
}

/// An admin pre-registers a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "Team Cursor", "redirect_uris": ["http://127.0.0.1/callback"], "confidential": false})))]
pub struct CreateOAuthClient {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::oauth_client_name))]
    pub name: String,
    /// 1 to 10 redirect URIs: https, or http on a loopback host (`localhost`, `127.0.0.1`,
    /// `[::1]`); no fragment.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::redirect_uris))]
    pub redirect_uris: Vec<String>,
    /// Confidential clients get a secret (shown once) and authenticate with
    /// `client_secret_basic` or `client_secret_post`; public ones use PKCE alone.
    #[serde(default)]
    pub confidential: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedOAuthClient {
    pub client: OAuthClient,
    /// Shown once; only its hash is kept.
    pub client_secret: Option<String>,
}

/// A user's consent to a client, with when it was last used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthGrant {
    pub user_id: i64,
    /// Admin API id of the client.
    pub client: i64,
    pub client_id: String,
    pub client_name: String,
    /// Every scope approved anywhere (for display).
    pub scope: String,
    /// What was approved per MCP endpoint: a request is remembered only when every scope it
    /// asks for was approved for its endpoint.
    #[serde(default)]
    pub resources: Vec<GrantResource>,
    pub created_at: i64,
    /// When the client last obtained tokens with it.
    pub last_used_at: Option<i64>,
}

/// The scopes a user approved for a client on one MCP endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantResource {
    pub resource: String,
    /// Space-separated.
    pub scope: String,
}
