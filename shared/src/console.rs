//! The admin UI's MCP test console (`/admin/api/console/…`): the admin API calls tools on the
//! admin's behalf (audited), so the UI never holds an MCP-audience token.

use serde::{Deserialize, Serialize};

/// Which endpoint: one server by name, or `None` for the aggregated `/mcp` (prefixed names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsoleTarget {
    #[serde(default)]
    pub server: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsoleTool {
    pub name: String,
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsoleCall {
    #[serde(default)]
    pub server: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::console_tool))]
    pub tool: String,
    // The call's `params.arguments` (`mcp::message`): an object; null or absent for `{}`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsoleResult {
    /// The tool's result (`content`, `structuredContent`, `isError`), when it answered.
    pub result: Option<serde_json::Value>,
    /// The JSON-RPC error, when it failed.
    pub error: Option<serde_json::Value>,
    pub duration_ms: u64,
    /// Progress notifications received before the result, in order.
    pub progress: Vec<serde_json::Value>,
    /// Other messages the server sent meanwhile (log messages …).
    pub messages: Vec<serde_json::Value>,
}
