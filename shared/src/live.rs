//! The admin live feed (`/admin/api/live`, a WebSocket): what the server sends, and the filters
//! a subscriber can ask for.

use serde::{Deserialize, Serialize};

use crate::events::SecurityEvent;
use crate::servers::ActivityRecord;

/// One message on the live feed (JSON text frames, tagged by `type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveMessage {
    /// Sent first: the filters in force.
    Subscribed { filter: LiveFilter },
    /// An MCP request finished.
    Activity { record: ActivityRecord },
    /// A security event was recorded.
    SecurityEvent { event: SecurityEvent },
    /// A security scan made progress, finished, failed or was cancelled.
    AuditProgress { scan: crate::audit::AuditProgress },
}

/// Server-side filters (query parameters of the WebSocket URL). Absent = everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct LiveFilter {
    /// Only this MCP server (activity and events naming it).
    #[serde(default)]
    pub server: Option<String>,
    /// Only this username.
    #[serde(default)]
    pub user: Option<String>,
    /// Only this MCP method (activity).
    #[serde(default)]
    pub method: Option<String>,
    /// Only failed requests (activity whose status is not `ok`).
    #[serde(default)]
    pub errors_only: bool,
    /// `activity`, `security`, `audit` (scan progress), any of them comma-separated (default:
    /// all).
    #[serde(default)]
    pub kinds: Option<String>,
}

impl LiveFilter {
    pub fn wants_activity(&self, r: &ActivityRecord) -> bool {
        self.kinds.as_deref().is_none_or(|k| k.contains("activity"))
            && self.server.as_deref().is_none_or(|s| s == r.server)
            && self
                .user
                .as_deref()
                .is_none_or(|u| r.username.as_deref() == Some(u))
            && self.method.as_deref().is_none_or(|m| m == r.method)
            && (!self.errors_only || r.status != "ok")
    }

    pub fn wants_audit(&self) -> bool {
        self.kinds.as_deref().is_none_or(|k| k.contains("audit"))
    }

    pub fn wants_event(&self, e: &SecurityEvent) -> bool {
        self.kinds.as_deref().is_none_or(|k| k.contains("security"))
            && self
                .server
                .as_deref()
                .is_none_or(|s| e.server.as_deref() == Some(s))
            && self
                .user
                .as_deref()
                .is_none_or(|u| e.username.as_deref() == Some(u))
            && self.method.is_none()
    }
}

/// A single-use ticket for opening the live feed (valid 30 seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiveTicket {
    pub ticket: String,
    pub expires_in: u64,
}
