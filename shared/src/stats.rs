//! MCP traffic statistics for the dashboard (`GET /admin/api/stats`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    pub window_seconds: i64,
    /// Width of one point of `series`.
    pub bucket_seconds: i64,
    pub requests: u64,
    pub errors: u64,
    /// Share of requests that succeeded (1.0 with no traffic).
    pub success_rate: f64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    /// Oldest first, one point per bucket (empty buckets included).
    pub series: Vec<StatsPoint>,
    pub top_tools: Vec<StatsRow>,
    pub servers: Vec<StatsRow>,
    pub users: Vec<StatsRow>,
    /// True when the window held more records than were read (the newest were used).
    pub truncated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsPoint {
    /// Start of the bucket (Unix seconds).
    pub at: i64,
    pub requests: u64,
    pub errors: u64,
    pub p95_ms: u64,
}

/// One server, user or tool (`server/tool`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsRow {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub p95_ms: u64,
}
