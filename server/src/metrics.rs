//! `GET /metrics`: Prometheus text format.
//!
//! Request counters and latency histograms are fed by the activity writer from the records it
//! already receives, so the proxy's hot path pays nothing for them (they lag by at most one
//! activity flush, 250 ms). Gauges (sessions, backend health) are read when scraped.
//!
//! Access: off unless configured; `METRICS_TOKEN` requires `Authorization: Bearer <token>`,
//! `METRICS_PUBLIC=true` opens it (for an internal-only bind).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::auth::identity::bearer;
use crate::db::servers::ActivityRow;
use crate::error::ApiError;
use crate::state::AppState;

/// Distinct server labels kept; past it (servers added and removed many times over), new ones
/// are counted as `other`.
const MAX_SERVER_LABELS: usize = 1000;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counts {
    /// By (server, method label, status): methods are MCP's own or `other`, statuses the
    /// gateway's own labels, servers registered ones (at most `MAX_SERVER_LABELS`).
    requests: BTreeMap<(String, &'static str, String), u64>,
    latency: BTreeMap<String, Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
}

impl Metrics {
    /// Counts a batch of activity records (called by the activity writer).
    pub fn observe(&self, rows: &[ActivityRow]) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        // Counted per distinct key first (borrowed: no allocation per record), then merged.
        let mut requests: std::collections::HashMap<(&str, &'static str, &str), u64> =
            Default::default();
        let mut latency: std::collections::HashMap<&str, Histogram> = Default::default();
        for row in rows {
            *requests
                .entry((
                    &row.server,
                    crate::mcp::message::method_label(&row.method),
                    &row.status,
                ))
                .or_default() += 1;
            let seconds = row.latency_ms as f64 / 1000.0;
            let h = latency.entry(&row.server).or_default();
            h.count += 1;
            h.sum += seconds;
            for (i, le) in BUCKETS.iter().enumerate() {
                if seconds <= *le {
                    h.buckets[i] += 1;
                }
            }
        }
        // Each server's label: itself while there is room (or it has one), else `other`.
        let mut labels: std::collections::HashMap<&str, String> = Default::default();
        for (server, batch) in latency {
            let label = if counts.latency.contains_key(server)
                || counts.latency.len() < MAX_SERVER_LABELS
            {
                server.to_string()
            } else {
                "other".to_string()
            };
            labels.insert(server, label.clone());
            let h = counts.latency.entry(label).or_default();
            h.count += batch.count;
            h.sum += batch.sum;
            for (total, n) in h.buckets.iter_mut().zip(batch.buckets) {
                *total += n;
            }
        }
        for ((server, method, status), n) in requests {
            let label = labels
                .get(server)
                .cloned()
                .unwrap_or_else(|| "other".to_string());
            *counts
                .requests
                .entry((label, method, status.to_string()))
                .or_default() += n;
        }
    }
}

/// A label value, escaped as the text format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header_lines(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn render(state: &AppState) -> String {
    let mut out = String::with_capacity(4096);
    header_lines(
        &mut out,
        "authmcp_build_info",
        "gauge",
        "Build information.",
    );
    let _ = writeln!(
        out,
        "authmcp_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    header_lines(
        &mut out,
        "authmcp_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
    );
    let _ = writeln!(
        out,
        "authmcp_uptime_seconds {}",
        state.started.elapsed().as_secs()
    );

    if let Ok(counts) = state.mcp.metrics.counts.lock() {
        header_lines(
            &mut out,
            "authmcp_mcp_requests_total",
            "counter",
            "Proxied MCP requests by server, method and outcome.",
        );
        for ((server, method, status), n) in &counts.requests {
            let _ = writeln!(
                out,
                "authmcp_mcp_requests_total{{server=\"{}\",method=\"{}\",status=\"{}\"}} {n}",
                label(server),
                label(method),
                label(status)
            );
        }
        header_lines(
            &mut out,
            "authmcp_mcp_request_duration_seconds",
            "histogram",
            "Latency of proxied MCP requests as the gateway saw it.",
        );
        for (server, h) in &counts.latency {
            let server = label(server);
            for (le, n) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "authmcp_mcp_request_duration_seconds_bucket{{server=\"{server}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "authmcp_mcp_request_duration_seconds_bucket{{server=\"{server}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "authmcp_mcp_request_duration_seconds_sum{{server=\"{server}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "authmcp_mcp_request_duration_seconds_count{{server=\"{server}\"}} {}",
                h.count
            );
        }
    }

    header_lines(
        &mut out,
        "authmcp_security_events_total",
        "counter",
        "Security events by type (auth failures, token misuse, access denied, …).",
    );
    for (kind, n) in state.events.counts() {
        let _ = writeln!(out, "authmcp_security_events_total{{type=\"{kind}\"}} {n}");
    }
    header_lines(
        &mut out,
        "authmcp_backend_up",
        "gauge",
        "1 when the last health check found the server online or degraded.",
    );
    let mut servers: Vec<_> = state.mcp.registry.snapshot().values().cloned().collect();
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    for server in servers {
        let health = state.mcp.registry.health(server.id);
        let up = u8::from(matches!(health.status.as_str(), "online" | "degraded"));
        let _ = writeln!(
            out,
            "authmcp_backend_up{{server=\"{}\",status=\"{}\"}} {up}",
            label(&server.name),
            label(&health.status)
        );
    }
    header_lines(
        &mut out,
        "authmcp_mcp_sessions",
        "gauge",
        "Open MCP client sessions on this replica.",
    );
    let _ = writeln!(out, "authmcp_mcp_sessions {}", state.mcp.sessions.len());
    header_lines(
        &mut out,
        "authmcp_activity_dropped_total",
        "counter",
        "Activity records dropped because the write queue was full.",
    );
    let _ = writeln!(
        out,
        "authmcp_activity_dropped_total {}",
        state.mcp.activity.dropped()
    );
    header_lines(
        &mut out,
        "authmcp_security_events_dropped_total",
        "counter",
        "Security events dropped because the write queue was full.",
    );
    let _ = writeln!(
        out,
        "authmcp_security_events_dropped_total {}",
        state.events.dropped()
    );
    process_metrics(&mut out, state.started.elapsed());
    out
}

/// The standard process metrics, named as Prometheus's client libraries name them (so stock
/// dashboards and alerts work): CPU time, memory, descriptors and start time, from `/proc`.
fn process_metrics(out: &mut String, uptime: std::time::Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    header_lines(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    let _ = writeln!(
        out,
        "process_start_time_seconds {:.3}",
        now.saturating_sub(uptime).as_secs_f64()
    );
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(max) = limit.current {
        header_lines(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
        );
        let _ = writeln!(out, "process_max_fds {max}");
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        header_lines(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(out, "process_open_fds {}", entries.count());
    }
    let Some(stat) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ProcStat::parse(&s))
    else {
        return;
    };
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    header_lines(
        out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    );
    let _ = writeln!(
        out,
        "process_cpu_seconds_total {:.2}",
        (stat.utime + stat.stime) as f64 / ticks.max(1.0)
    );
    header_lines(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    let _ = writeln!(
        out,
        "process_resident_memory_bytes {}",
        stat.rss_pages
            .saturating_mul(rustix::param::page_size() as u64)
    );
    header_lines(
        out,
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    );
    let _ = writeln!(out, "process_virtual_memory_bytes {}", stat.vsize);
}

/// The fields of `/proc/self/stat` the process metrics use.
#[derive(Debug, PartialEq, Eq)]
struct ProcStat {
    utime: u64,
    stime: u64,
    vsize: u64,
    rss_pages: u64,
}

impl ProcStat {
    /// The command name (field 2) is in parentheses and may contain spaces or parentheses:
    /// the fields are counted after its last `)`.
    fn parse(text: &str) -> Option<ProcStat> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state): field n is at index n - 3.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(ProcStat {
            utime: field(14)?,
            stime: field(15)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// `GET /metrics`.
pub async fn handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let config = &state.config.metrics;
    match &config.token {
        Some(token) => {
            let presented = bearer(&headers).map(digest);
            if presented != Some(digest(token.expose())) {
                return ApiError::Unauthorized.into_response();
            }
        }
        None if config.public => {}
        None => {
            return ApiError::NotFound("metrics are off: set METRICS_TOKEN or METRICS_PUBLIC")
                .into_response();
        }
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: &str, method: &str) -> ActivityRow {
        ActivityRow {
            server: server.into(),
            method: method.into(),
            status: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn labels_stay_bounded_whatever_the_records_say() {
        let metrics = Metrics::default();
        let rows: Vec<_> = (0..10_000)
            .map(|i| row("alpha", &format!("notifications/x{i}")))
            .chain((0..10).map(|_| row("alpha", "tools/call")))
            .collect();
        metrics.observe(&rows);
        let counts = metrics.counts.lock().unwrap();
        assert_eq!(counts.requests.len(), 2, "{:?}", counts.requests.keys());
        assert_eq!(
            counts.requests[&("alpha".into(), "other", "ok".into())],
            10_000
        );
        assert_eq!(
            counts.requests[&("alpha".into(), "tools/call", "ok".into())],
            10
        );
        drop(counts);

        let servers: Vec<_> = (0..MAX_SERVER_LABELS + 500)
            .map(|i| row(&format!("s{i}"), "ping"))
            .collect();
        metrics.observe(&servers);
        let counts = metrics.counts.lock().unwrap();
        assert!(counts.latency.len() <= MAX_SERVER_LABELS + 1);
        assert!(counts.latency.contains_key("other"));
    }
}

#[cfg(test)]
mod process_tests {
    use super::*;

    #[test]
    fn proc_stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    150 30 0 0 20 0 9 0 777 123456789 2048 18446744073709551615";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                utime: 150,
                stime: 30,
                vsize: 123_456_789,
                rss_pages: 2048,
            })
        );
        assert_eq!(ProcStat::parse("4242 (x) S 1"), None);
        assert_eq!(ProcStat::parse("no parenthesis"), None);
    }

    #[test]
    fn this_process_reports_itself() {
        let mut out = String::new();
        process_metrics(&mut out, std::time::Duration::from_secs(5));
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(out.contains(&format!("\n{name} ")), "{name} missing: {out}");
        }
    }
}

/// Prometheus metrics in the text exposition format (docs/LOGGING.md names them). Off unless
/// `METRICS_TOKEN` (then a bearer of that token is required) or `METRICS_PUBLIC` is set.
#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "metrics",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "`unauthorized`: `METRICS_TOKEN` is set and was not presented", body = shared::error::ApiErrorBody),
        (status = 404, description = "`not_found`: metrics are off", body = shared::error::ApiErrorBody),
    ))]
#[allow(dead_code)]
pub(crate) fn doc_metrics() {}
