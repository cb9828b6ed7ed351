//! Security events: recorded without blocking the request that raised them.
//!
//! `EventSink::record` puts the event on a bounded channel; one background task writes them to
//! the `security_events` table, the `security-YYYY-MM-DD.jsonl` log and the live feed. When the
//! channel is full the event is dropped and counted, so a flood of bad requests can never slow
//! the gateway down or exhaust its memory. Identical events within a minute are folded: the
//! first is written at once, the repeats as one event whose details carry `repeated: N`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::live::LiveMessage;
use tokio::sync::mpsc;

use crate::db::events::SecurityEventRow;
use crate::db::{self, Db};
use crate::filelog::FileLog;
use crate::live::LiveHub;

const QUEUE: usize = 4096;

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
}

impl EventType {
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
/// Distinct keys tracked for folding; past it, events are written unfolded.
const DEDUP_KEYS: usize = 10_000;

struct Folded {
    first: Instant,
    repeats: u64,
    row: SecurityEventRow,
}

#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<SecurityEventRow>,
    dropped: Arc<AtomicU64>,
    /// Events recorded since start, by type (for `/metrics`; repeats included).
    counts: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
    folding: Arc<Mutex<HashMap<u64, Folded>>>,
}

impl EventSink {
    /// Starts the writer task (database, JSONL file, live feed) and the folding sweep.
    pub fn spawn(db: Db, live: LiveHub, file: Option<FileLog>) -> EventSink {
        let (tx, mut rx) = mpsc::channel::<SecurityEventRow>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(64);
            while rx.recv_many(&mut batch, 64).await > 0 {
                let mut lines = Vec::with_capacity(batch.len());
                for event in &batch {
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

    /// Writes the summaries of windows that ended (all of them when `all`).
    fn sweep(&self, all: bool) {
        let mut summaries = Vec::new();
        if let Ok(mut folding) = self.folding.lock() {
            folding.retain(|_, f| {
                if !all && f.first.elapsed() < DEDUP_WINDOW {
                    return true;
                }
                if f.repeats > 0 {
                    let mut row = f.row.clone();
                    let mut details: Value = row
                        .details
                        .as_deref()
                        .and_then(|d| serde_json::from_str(d).ok())
                        .unwrap_or_else(|| Value::Object(Default::default()));
                    if let Some(obj) = details.as_object_mut() {
                        obj.insert("repeated".into(), Value::from(f.repeats));
                        obj.insert("window_seconds".into(), Value::from(DEDUP_WINDOW.as_secs()));
                    }
                    row.details = Some(details.to_string());
                    row.created_at = db::now();
                    summaries.push(row);
                }
                false
            });
        }
        for row in summaries {
            self.enqueue(row);
        }
    }

    fn enqueue(&self, row: SecurityEventRow) {
        if self.tx.try_send(row).is_err() {
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
            user_agent: ctx.user_agent.clone(),
            endpoint: ctx.endpoint.clone(),
            // The MCP server and tool, when the details name them, get their own columns so
            // events can be filtered by them.
            server: details["server"].as_str().map(str::to_string),
            tool: details["tool"].as_str().map(str::to_string),
            details: (!details.is_null()).then(|| details.to_string()),
            created_at: db::now(),
            ..Default::default()
        };
        // Fold repeats: the first of a kind is written at once, the rest counted.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            &row.event_type,
            row.user_id,
            &row.username,
            &row.ip,
            &row.endpoint,
            &row.details,
        )
            .hash(&mut hasher);
        let key = hasher.finish();
        if let Ok(mut folding) = self.folding.lock() {
            if let Some(f) = folding.get_mut(&key)
                && f.first.elapsed() < DEDUP_WINDOW
            {
                f.repeats += 1;
                return;
            }
            if folding.len() < DEDUP_KEYS {
                folding.insert(
                    key,
                    Folded {
                        first: Instant::now(),
                        repeats: 0,
                        row: row.clone(),
                    },
                );
            }
        }
        self.enqueue(row);
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
