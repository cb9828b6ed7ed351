//! Security events as the admin API returns them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityEvent {
    pub id: i64,
    /// `auth_failed`, `token_invalid`, `token_reuse`, `account_locked`, `access_denied`,
    /// `rate_limited`, …
    pub event_type: String,
    /// `info`, `low`, `medium`, `high`, `critical`.
    pub severity: String,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `METHOD /path`.
    pub endpoint: Option<String>,
    pub server: Option<String>,
    pub tool: Option<String>,
    pub details: Option<serde_json::Value>,
    pub created_at: i64,
}
