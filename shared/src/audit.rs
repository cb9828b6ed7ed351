//! The MCP security scanner's wire types: what to scan, findings, the report, stored scans.

use serde::{Deserialize, Serialize};

/// What to scan: a registered server (`server_id`) or any URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRequest {
    /// The MCP endpoint to scan (absent when `server_id` is given).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::audit_url))]
    pub url: Option<String>,
    /// A registered server: its URL is scanned, and its tools are compared with the other
    /// registered servers' (name shadowing). Its stored credential is not used.
    #[serde(default)]
    pub server_id: Option<i64>,
    /// A token to scan as an authenticated client (never stored, never logged).
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Allow loopback and private addresses for this scan (refused otherwise, before any
    /// request is sent). Default: false for a URL; for a registered server, true when every
    /// address of its host is private.
    #[serde(default)]
    pub allow_private: Option<bool>,
}

/// The original gateway's request shape (`POST /admin/api/run-mcp-audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LegacyAuditRequest {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::legacy_audit_url))]
    pub url: String,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub allow_private: Option<bool>,
}

/// One thing found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditFinding {
    /// The check that found it (stable id).
    pub check: String,
    /// `high`, `medium`, `low` or `info`.
    pub severity: String,
    pub title: String,
    /// What it means.
    pub detail: String,
    /// How to fix it.
    pub fix: String,
    /// What was observed (never a token), clipped.
    #[serde(default)]
    pub evidence: Option<String>,
}

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditCheck {
    pub id: String,
    pub name: String,
    /// `passed`, `failed` (it produced findings), `skipped` (not applicable) or `error` (it
    /// could not run; `note` says why).
    pub status: String,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditSummary {
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub info: u32,
}

/// A finished scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditReport {
    pub target: String,
    #[serde(default)]
    pub server: Option<String>,
    pub started_at: i64,
    pub finished_at: i64,
    pub summary: AuditSummary,
    /// Tools the server listed (when it could be listed).
    pub tools: u32,
    pub findings: Vec<AuditFinding>,
    pub checks: Vec<AuditCheck>,
}

/// A stored scan (running or finished).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditScan {
    pub id: i64,
    pub target: String,
    #[serde(default)]
    pub server: Option<String>,
    /// `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    pub requested_by: String,
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: Option<i64>,
    /// Checks done so far, of `total`.
    pub progress: u32,
    pub total: u32,
    pub summary: AuditSummary,
    #[serde(default)]
    pub error: Option<String>,
    /// The report, once done (absent in lists).
    #[serde(default)]
    pub report: Option<AuditReport>,
}

/// A scan's progress, on the live feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditProgress {
    pub id: i64,
    pub target: String,
    pub status: String,
    pub progress: u32,
    pub total: u32,
    /// The check running now.
    #[serde(default)]
    pub check: Option<String>,
    pub summary: AuditSummary,
}
