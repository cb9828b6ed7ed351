//! The user portal (`/portal/api`): what a signed-in user sees of their own access.

use serde::{Deserialize, Serialize};

/// The servers the caller may use, with the URLs their MCP clients connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MyServers {
    /// The aggregated endpoint (`<PUBLIC_URL>/mcp`): every server below through one URL.
    pub aggregate_url: String,
    pub servers: Vec<MyServer>,
}

/// One server the caller may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MyServer {
    pub id: i64,
    /// The URL segment (`/mcp/{name}`) and the prefix of its tools on `/mcp`.
    pub name: String,
    /// What the UI shows (the name when none was given).
    pub display_name: String,
    pub description: Option<String>,
    /// `<PUBLIC_URL>/mcp/{name}`.
    pub url: String,
    /// The server acts with each user's own account there, which the user connects
    /// (`/oauth/backend/connections`).
    pub per_user_account: bool,
}
