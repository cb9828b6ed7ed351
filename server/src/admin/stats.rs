//! `/admin/api/stats`: MCP traffic over a window (requests per bucket, success rate, latency
//! percentiles, top tools, per-server and per-user breakdowns), computed from the activity
//! records.

use std::collections::HashMap;

use axum::extract::State;
use serde::Deserialize;
use shared::error::ApiErrorBody;
use shared::stats::{Stats, StatsPoint, StatsRow};
use utoipa::IntoParams;

use crate::auth::identity::ScopedAdmin;
use crate::db::{self, servers::StatRow};
use crate::error::{ApiError, AppJson, AppQuery};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

/// Most records one answer reads (the newest of the window).
const MAX_ROWS: i64 = 200_000;
const POINTS: i64 = 60;

pub fn router() -> ApiRouter {
    ApiRouter::new().routes(routes!(stats))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StatsQuery {
    /// `5m`, `15m`, `1h`, `6h`, `24h`, `7d` or `30d` (default `24h`).
    #[param(schema_with = window_schema)]
    window: Option<String>,
}

/// The windows the statistics cover, in seconds.
const WINDOWS: [(&str, i64); 7] = [
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
    ("6h", 6 * 3600),
    ("24h", 86_400),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
];

fn window_schema() -> utoipa::openapi::schema::Object {
    crate::openapi::one_of(&WINDOWS.map(|(name, _)| name))
}

fn window_seconds(w: Option<&str>) -> Result<i64, ApiError> {
    let w = w.unwrap_or("24h");
    WINDOWS
        .iter()
        .find(|(name, _)| *name == w)
        .map(|(_, seconds)| *seconds)
        .ok_or_else(|| {
            ApiError::validation("window", "window is one of 5m, 15m, 1h, 6h, 24h, 7d, 30d")
        })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(Default)]
struct Acc {
    requests: u64,
    errors: u64,
    latencies: Vec<u64>,
}

impl Acc {
    fn add(&mut self, r: &StatRow) {
        self.requests += 1;
        if r.status != "ok" {
            self.errors += 1;
        }
        self.latencies
            .push(u64::try_from(r.latency_ms).unwrap_or(0));
    }

    fn p95(&mut self) -> u64 {
        self.latencies.sort_unstable();
        percentile(&self.latencies, 0.95)
    }
}

fn ranked(map: HashMap<String, Acc>, limit: usize) -> Vec<StatsRow> {
    let mut rows: Vec<StatsRow> = map
        .into_iter()
        .map(|(name, mut a)| StatsRow {
            p95_ms: a.p95(),
            name,
            requests: a.requests,
            errors: a.errors,
        })
        .collect();
    rows.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.name.cmp(&b.name)));
    rows.truncate(limit);
    rows
}

/// Computes the statistics of `rows` for the window ending at `now`.
pub fn compute(rows: &[StatRow], window: i64, now: i64, truncated: bool) -> Stats {
    let bucket = (window / POINTS).max(60);
    let start = now - window;
    let first = start - start.rem_euclid(bucket);
    let buckets = usize::try_from((now - first) / bucket + 1).unwrap_or(1);
    let mut series: Vec<Acc> = (0..buckets).map(|_| Acc::default()).collect();
    let mut all = Acc::default();
    let (mut tools, mut servers, mut users) = (HashMap::new(), HashMap::new(), HashMap::new());
    for r in rows {
        all.add(r);
        if let Ok(i) = usize::try_from((r.at - first) / bucket)
            && let Some(b) = series.get_mut(i)
        {
            b.add(r);
        }
        if let Some(tool) = &r.tool {
            tools
                .entry(format!("{}/{tool}", r.server))
                .or_insert_with(Acc::default)
                .add(r);
        }
        servers
            .entry(r.server.clone())
            .or_insert_with(Acc::default)
            .add(r);
        users
            .entry(r.username.clone().unwrap_or_else(|| "(unknown)".into()))
            .or_insert_with(Acc::default)
            .add(r);
    }
    all.latencies.sort_unstable();
    Stats {
        window_seconds: window,
        bucket_seconds: bucket,
        requests: all.requests,
        errors: all.errors,
        success_rate: if all.requests == 0 {
            1.0
        } else {
            (all.requests - all.errors) as f64 / all.requests as f64
        },
        p50_ms: percentile(&all.latencies, 0.50),
        p95_ms: percentile(&all.latencies, 0.95),
        p99_ms: percentile(&all.latencies, 0.99),
        series: series
            .into_iter()
            .enumerate()
            .map(|(i, mut b)| StatsPoint {
                at: first + i64::try_from(i).unwrap_or(0) * bucket,
                requests: b.requests,
                errors: b.errors,
                p95_ms: b.p95(),
            })
            .collect(),
        top_tools: ranked(tools, 10),
        servers: ranked(servers, 50),
        users: ranked(users, 50),
        truncated,
    }
}

/// MCP traffic statistics over a window.
#[utoipa::path(get, path = "/admin/api/stats", tag = "mcp-servers", operation_id = "mcp_stats",
    security(("bearer" = [])),
    params(StatsQuery),
    responses(
        (status = 200, description = "Statistics", body = Stats),
        (status = 400, description = "Unknown window", body = ApiErrorBody),
    ))]
async fn stats(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppQuery(query): AppQuery<StatsQuery>,
) -> Result<AppJson<Stats>, ApiError> {
    let window = window_seconds(query.window.as_deref())?;
    let now = db::now();
    let teams = admin.admin_scope().filter();
    let rows =
        db::servers::activity_since(&state.db.pool, now - window, teams.as_deref(), MAX_ROWS)
            .await?;
    let truncated = rows.len() as i64 >= MAX_ROWS;
    Ok(AppJson(compute(&rows, window, now, truncated)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: i64, server: &str, tool: Option<&str>, status: &str, latency: i64) -> StatRow {
        StatRow {
            at,
            username: Some("u".into()),
            server: server.into(),
            tool: tool.map(str::to_string),
            status: status.into(),
            latency_ms: latency,
        }
    }

    #[test]
    fn computes_rates_percentiles_series_and_rankings() {
        let now = 1_000_000;
        let mut rows = Vec::new();
        for i in 0..100 {
            rows.push(row(
                now - 10 - i,
                "a",
                Some("echo"),
                if i < 10 { "error" } else { "ok" },
                i,
            ));
        }
        rows.push(row(now - 3000, "b", None, "ok", 500));
        let s = compute(&rows, 3600, now, false);
        assert_eq!(s.requests, 101);
        assert_eq!(s.errors, 10);
        assert!((s.success_rate - 91.0 / 101.0).abs() < 1e-9);
        assert_eq!(s.p50_ms, 50);
        assert_eq!(s.p99_ms, 99);
        assert_eq!(s.bucket_seconds, 60);
        assert_eq!(s.series.iter().map(|p| p.requests).sum::<u64>(), 101);
        assert_eq!(s.top_tools[0].name, "a/echo");
        assert_eq!(s.servers[0].name, "a");
        assert_eq!(s.servers[1].requests, 1);
        let empty = compute(&[], 300, now, false);
        assert_eq!(empty.success_rate, 1.0);
        assert!(!empty.series.is_empty());
    }
}
