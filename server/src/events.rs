//! Security events: recorded without blocking the request that raised them.
//!
//! `EventSink::record` puts the event on a bounded channel; one background task writes them to
//! the `security_events` table, the `security-YYYY-MM-DD.jsonl` log and the live feed. A flood
//! of one kind can neither slow the gateway down, exhaust its memory, nor crowd out other
//! events; within a minute's window:
//!
//! * identical events are folded: the first is written at once, the repeats as one event whose
//!   details carry `repeated: N`;
//! * one source (client address, else username) writes at most `PER_SOURCE` events of a type
//!   one by one; further ones are counted and written as one event per (type, source) whose
//!   details carry `folded: N` and a sample;
//! * each type may hold at most `SHARE` places of the queue; events over its share are counted
//!   the same way rather than queued, so the other types always find room;
//! * the maps that count are bounded; past their bound, events fold per type alone.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::live::LiveMessage;
use tokio::sync::mpsc;

use crate::db::events::SecurityEventRow;
use crate::db::{self, Db};
use crate::filelog::FileLog;
use crate::live::LiveHub;

const QUEUE: usize = 8192;
/// Places of the queue one event type may hold (12 types: three quarters of the queue at most,
/// the rest kept for the folded summaries).
const SHARE: usize = QUEUE / 16;
/// Events of one type from one source written one by one per window; the rest are folded.
const PER_SOURCE: u64 = 20;
/// Folded summaries written one by one per type per sweep; the rest merge into one.
const SUMMARIES_PER_TYPE: usize = 50;

/// Event types (the `event_type` column). docs/API.md lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A login with a wrong username or password.
    AuthFailed,
    /// A bearer token that is forged, tampered, for another audience, or revoked.
    TokenInvalid,
    /// A refresh token presented a second time: its whole session was revoked.
    TokenReuse,
    /// A username was locked after too many failed logins.
    AccountLocked,
    /// An authenticated caller tried something it may not do.
    AccessDenied,
    /// A client IP exceeded its failed-login budget.
    RateLimited,
    /// A browser request to an MCP endpoint from an origin not in `ALLOWED_ORIGINS`.
    OriginRejected,
    /// A suspicious-payload rule matched a tool call's arguments or a backend's answer.
    SuspiciousPayload,
    /// An MCP session id presented by a user it does not belong to.
    SessionHijackAttempt,
    /// An admin changed something (also in the audit log).
    AdminAction,
    /// A backend refused the gateway's stored credential (401/403).
    BackendCredentialError,
    /// An MCP message the gateway cannot read unambiguously (duplicate keys, wrong types, a
    /// null id, …): refused before any backend saw it.
    MalformedRequest,
    /// A backend sent a tool definition that differs from the approved one, or a new tool
    /// (tool pinning; under `quarantine` the tool is hidden and refused until approved).
    ToolDefinitionChanged,
}

impl EventType {
    const ALL: [EventType; 13] = [
        EventType::AuthFailed,
        EventType::TokenInvalid,
        EventType::TokenReuse,
        EventType::AccountLocked,
        EventType::AccessDenied,
        EventType::RateLimited,
        EventType::OriginRejected,
        EventType::SuspiciousPayload,
        EventType::SessionHijackAttempt,
        EventType::AdminAction,
        EventType::BackendCredentialError,
        EventType::MalformedRequest,
        EventType::ToolDefinitionChanged,
    ];

    fn index(self) -> usize {
        EventType::ALL
            .iter()
            .position(|t| *t == self)
            .unwrap_or_default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AuthFailed => "auth_failed",
            EventType::TokenInvalid => "token_invalid",
            EventType::TokenReuse => "token_reuse",
            EventType::AccountLocked => "account_locked",
            EventType::AccessDenied => "access_denied",
            EventType::RateLimited => "rate_limited",
            EventType::OriginRejected => "origin_rejected",
            EventType::SuspiciousPayload => "suspicious_payload",
            EventType::SessionHijackAttempt => "session_hijack_attempt",
            EventType::AdminAction => "admin_action",
            EventType::BackendCredentialError => "backend_credential_error",
            EventType::MalformedRequest => "malformed_request",
            EventType::ToolDefinitionChanged => "tool_definition_changed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Who and where, for an event.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub endpoint: Option<String>,
}

/// Identical events (same type, user, address, endpoint and details) within this window are
/// folded into one: the first is written at once, the repeats as one event with a count.
const DEDUP_WINDOW: Duration = Duration::from_secs(60);
const DEDUP_SWEEP: Duration = Duration::from_secs(5);
/// Distinct identical-event keys tracked for folding; past it, events are written unfolded
/// (still within their source's and type's budgets).
const DEDUP_KEYS: usize = 10_000;
/// Distinct sources tracked per event type; past it, that type's new sources fold together
/// (other types keep their own sources).
const SOURCES_PER_TYPE: usize = 2_000;
/// Longest endpoint kept in an event (a client chooses the path).
const MAX_ENDPOINT: usize = 256;

/// Identical events in a window.
struct Exact {
    first: Instant,
    repeats: u64,
    row: SecurityEventRow,
}

/// One (type, source)'s events in a window.
struct Source {
    first: Instant,
    event_type: EventType,
    written: u64,
    folded: u64,
    /// The first event folded, kept as the summary's sample.
    sample: Option<SecurityEventRow>,
}

#[derive(Default)]
struct Folding {
    exact: HashMap<u64, Exact>,
    sources: HashMap<u64, Source>,
    /// Sources tracked per type.
    per_type: [usize; EventType::ALL.len()],
}

/// Who an event comes from, for folding: the client address (IPv6 per /64, as one host
/// usually holds a whole /64), else the username.
fn source_of(ip: Option<&str>, username: Option<&str>) -> Option<String> {
    match ip.and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
        Some(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
        }
        _ => ip.or(username).map(str::to_string),
    }
}

#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<(usize, SecurityEventRow)>,
    dropped: Arc<AtomicU64>,
    /// Events of each type waiting in the queue.
    queued: Arc<[AtomicUsize; EventType::ALL.len()]>,
    /// Events recorded since start, by type (for `/metrics`; repeats included).
    counts: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
    folding: Arc<Mutex<Folding>>,
}

fn key(parts: impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut hasher);
    hasher.finish()
}

impl EventSink {
    /// Starts the writer task (database, JSONL file, live feed) and the folding sweep.
    pub fn spawn(db: Db, live: LiveHub, file: Option<FileLog>) -> EventSink {
        let (tx, mut rx) = mpsc::channel::<(usize, SecurityEventRow)>(QUEUE);
        let queued: Arc<[AtomicUsize; EventType::ALL.len()]> =
            Arc::new(std::array::from_fn(|_| AtomicUsize::new(0)));
        let writer_queued = queued.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(64);
            while rx.recv_many(&mut batch, 64).await > 0 {
                let mut lines = Vec::with_capacity(batch.len());
                for (index, event) in &batch {
                    writer_queued[*index].fetch_sub(1, Ordering::Relaxed);
                    if let Err(e) = db::events::insert_security_event(&db.pool, event).await {
                        tracing::warn!(error = %e, event_type = %event.event_type, "could not store a security event");
                    }
                    let api = crate::live::event(event);
                    if file.is_some()
                        && let Ok(line) = serde_json::to_string(&api)
                    {
                        lines.push(line);
                    }
                    live.publish(|| LiveMessage::SecurityEvent { event: api });
                }
                if let Some(file) = &file {
                    file.append(lines, db::now()).await;
                }
                batch.clear();
            }
        });
        let sink = EventSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            queued,
            counts: Arc::default(),
            folding: Arc::default(),
        };
        let sweeper = sink.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DEDUP_SWEEP);
            loop {
                tick.tick().await;
                if sweeper.tx.is_closed() {
                    break;
                }
                sweeper.sweep(false);
            }
        });
        sink
    }

    /// Writes the summaries of windows that ended (all of them when `all`): at most
    /// `SUMMARIES_PER_TYPE` per type one by one, the rest of a type merged into one.
    fn sweep(&self, all: bool) {
        let ended = |first: Instant| all || first.elapsed() >= DEDUP_WINDOW;
        let mut per_type: Vec<Vec<(SecurityEventRow, u64, &'static str)>> =
            (0..EventType::ALL.len()).map(|_| Vec::new()).collect();
        if let Ok(mut folding) = self.folding.lock() {
            folding.exact.retain(|_, f| {
                if !ended(f.first) {
                    return true;
                }
                if f.repeats > 0
                    && let Some(t) = EventType::ALL
                        .iter()
                        .find(|t| t.as_str() == f.row.event_type)
                {
                    per_type[t.index()].push((f.row.clone(), f.repeats, "repeated"));
                }
                false
            });
            let Folding {
                sources,
                per_type: tracked,
                ..
            } = &mut *folding;
            sources.retain(|_, f| {
                if !ended(f.first) {
                    return true;
                }
                let n = &mut tracked[f.event_type.index()];
                *n = n.saturating_sub(1);
                if f.folded > 0
                    && let Some(sample) = f.sample.take()
                {
                    per_type[f.event_type.index()].push((sample, f.folded, "folded"));
                }
                false
            });
        }
        for (index, mut summaries) in per_type.into_iter().enumerate() {
            let rest = summaries.split_off(summaries.len().min(SUMMARIES_PER_TYPE));
            for (row, count, field) in summaries {
                self.enqueue(index, summary(row, count, field, None));
            }
            if let Some((first, _, _)) = rest.first() {
                let total: u64 = rest.iter().map(|(_, n, _)| n).sum();
                let mut row = first.clone();
                row.ip = None;
                row.username = None;
                row.user_id = None;
                row.endpoint = None;
                self.enqueue(index, summary(row, total, "folded", Some(rest.len())));
            }
        }
    }

    fn enqueue(&self, index: usize, row: SecurityEventRow) {
        self.queued[index].fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send((index, row)).is_err() {
            self.queued[index].fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        event_type: EventType,
        severity: Severity,
        ctx: &EventContext,
        user_id: Option<i64>,
        username: Option<&str>,
        details: Value,
    ) {
        tracing::info!(
            event_type = event_type.as_str(),
            severity = severity.as_str(),
            user_id,
            username,
            ip = ctx.ip.as_deref(),
            endpoint = ctx.endpoint.as_deref(),
            "security event"
        );
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(event_type.as_str()).or_default() += 1;
        }
        let row = SecurityEventRow {
            event_type: event_type.as_str().into(),
            severity: severity.as_str().into(),
            user_id,
            username: username.map(str::to_string),
            ip: ctx.ip.clone(),
            user_agent: ctx
                .user_agent
                .as_ref()
                .map(|a| a.chars().take(MAX_ENDPOINT).collect()),
            endpoint: ctx
                .endpoint
                .as_ref()
                .map(|e| e.chars().take(MAX_ENDPOINT).collect()),
            // The MCP server and tool, when the details name them, get their own columns so
            // events can be filtered by them.
            server: details["server"].as_str().map(str::to_string),
            tool: details["tool"].as_str().map(str::to_string),
            details: (!details.is_null()).then(|| details.to_string()),
            created_at: db::now(),
            ..Default::default()
        };
        let index = event_type.index();
        let exact_key = key((
            &row.event_type,
            row.user_id,
            &row.username,
            &row.ip,
            &row.endpoint,
            &row.details,
        ));
        let source = source_of(row.ip.as_deref(), row.username.as_deref());
        let source_key = key((index, source));
        {
            let Ok(mut folding) = self.folding.lock() else {
                return;
            };
            let Folding {
                exact,
                sources,
                per_type,
            } = &mut *folding;
            if let Some(f) = exact.get_mut(&exact_key)
                && f.first.elapsed() < DEDUP_WINDOW
            {
                f.repeats += 1;
                return;
            }
            // Past the type's bound, its new sources are one source.
            let source_key =
                if per_type[index] < SOURCES_PER_TYPE || sources.contains_key(&source_key) {
                    source_key
                } else {
                    key((index, "*"))
                };
            if !sources.contains_key(&source_key) {
                per_type[index] += 1;
            }
            let entry = sources.entry(source_key).or_insert_with(|| Source {
                first: Instant::now(),
                event_type,
                written: 0,
                folded: 0,
                sample: None,
            });
            let over_share = self.queued[index].load(Ordering::Relaxed) >= SHARE;
            if entry.written >= PER_SOURCE || over_share {
                entry.folded += 1;
                if entry.sample.is_none() {
                    entry.sample = Some(row);
                }
                return;
            }
            entry.written += 1;
            if exact.len() < DEDUP_KEYS {
                exact.insert(
                    exact_key,
                    Exact {
                        first: Instant::now(),
                        repeats: 0,
                        row: row.clone(),
                    },
                );
            }
        }
        self.enqueue(index, row);
    }

    /// Writes pending repeat counts now (shutdown, tests).
    pub fn flush_repeats(&self) {
        self.sweep(true);
    }

    /// Events recorded since start, by type.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        self.counts
            .lock()
            .map(|c| c.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The event that stands for `count` others: `repeated` (identical events) or `folded` (more
/// events of a type from one source, or from `sources` sources, than are written one by one).
fn summary(
    mut row: SecurityEventRow,
    count: u64,
    field: &str,
    sources: Option<usize>,
) -> SecurityEventRow {
    let sample: Value = row
        .details
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_else(|| Value::Object(Default::default()));
    let mut details = if field == "repeated" {
        sample
    } else {
        serde_json::json!({ "sample": sample })
    };
    if let Some(obj) = details.as_object_mut() {
        obj.insert(field.into(), Value::from(count));
        obj.insert("window_seconds".into(), Value::from(DEDUP_WINDOW.as_secs()));
        if let Some(sources) = sources {
            obj.insert("sources".into(), Value::from(sources));
        }
    }
    row.details = Some(details.to_string());
    row.created_at = db::now();
    row
}
