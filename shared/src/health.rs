//! Liveness and readiness probes.

use serde::{Deserialize, Serialize};

/// `GET /health`: the process is up and serving HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"status": "ok", "version": "0.1.0", "uptime_seconds": 42})))]
pub struct Health {
    /// Always `ok` when the gateway answers at all.
    pub status: String,
    /// The gateway's version (Cargo package version).
    pub version: String,
    pub uptime_seconds: u64,
}

/// `GET /ready`: the database answers and every embedded migration is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"status": "ready", "database": "sqlite", "migrations": 1})))]
pub struct Ready {
    /// `ready`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// Number of applied migrations.
    pub migrations: u32,
}
