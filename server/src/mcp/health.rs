//! Background health checks: every `MCP_HEALTH_INTERVAL_SECS` (±20 % jitter, so replicas and
//! servers do not beat in step) each enabled server is probed as "test connection" does, and
//! the result kept in memory for the API.

use std::sync::Arc;
use std::time::Duration;

use shared::servers::ServerHealth;

use crate::db;
use crate::keys::random_bytes;
use crate::mcp::McpState;
use crate::mcp::backend::Probe;

/// Slower than this is `degraded`.
const SLOW_MS: u64 = 2_000;

/// A probe's outcome as health: unreachable is `offline`; slow, or reachable without a usable
/// credential, is `degraded`; a server with per-user accounts that refuses the gateway's own
/// (credential-less) probe is `online` (it answers; its tools are each user's).
pub fn to_health(probe: &Probe) -> ServerHealth {
    if probe.per_user && probe.refused {
        return ServerHealth {
            status: "online".into(),
            latency_ms: Some(probe.latency_ms),
            last_error: None,
            tool_count: None,
            protocol_version: None,
            checked_at: Some(db::now()),
        };
    }
    let status = match (&probe.error, probe.latency_ms) {
        (Some(_), _) if probe.credential_error || probe.refused => "degraded",
        (Some(_), _) => "offline",
        (None, ms) if ms > SLOW_MS => "degraded",
        (None, _) => "online",
    };
    ServerHealth {
        status: status.into(),
        latency_ms: Some(probe.latency_ms),
        last_error: probe.error.clone(),
        tool_count: probe
            .error
            .is_none()
            .then(|| u32::try_from(probe.tools.len()).unwrap_or(u32::MAX)),
        protocol_version: probe.protocol_version.clone(),
        checked_at: Some(db::now()),
    }
}

fn jittered(interval: Duration) -> Duration {
    let r = random_bytes::<2>().map(u16::from_le_bytes).unwrap_or(0);
    // 0.8× … 1.2×
    let factor = 0.8 + 0.4 * (f64::from(r) / f64::from(u16::MAX));
    interval.mul_f64(factor)
}

pub fn spawn(state: Arc<McpState>, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(jittered(Duration::from_secs(2))).await;
        loop {
            let backends: Vec<_> = state
                .registry
                .snapshot()
                .values()
                .filter(|b| b.enabled)
                .cloned()
                .collect();
            let checks = backends.into_iter().map(|backend| {
                let state = state.clone();
                async move {
                    let probe = state.client.probe(&backend.target, backend.transport).await;
                    state.registry.set_health(backend.id, to_health(&probe));
                }
            });
            futures_util::future::join_all(checks).await;
            tokio::time::sleep(jittered(interval)).await;
        }
    });
}
