//! Security events: recorded without blocking the request that raised them.
//!
//! `EventSink::record` puts the event on a bounded channel; one background task writes them to
//! the `security_events` table. When the channel is full the event is dropped and counted, so a
//! flood of bad requests can never slow the gateway down or exhaust its memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::db::events::SecurityEventRow;
use crate::db::{self, Db};

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

#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<SecurityEventRow>,
    dropped: Arc<AtomicU64>,
    /// Events recorded since start, by type (for `/metrics`).
    counts: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
}

impl EventSink {
    /// Starts the writer task on the current runtime.
    pub fn spawn(db: Db) -> EventSink {
        let (tx, mut rx) = mpsc::channel::<SecurityEventRow>(QUEUE);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let Err(e) = db::events::insert_security_event(&db.pool, &event).await {
                    tracing::warn!(error = %e, event_type = %event.event_type, "could not store a security event");
                }
            }
        });
        EventSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            counts: Arc::default(),
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
        if self.tx.try_send(row).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
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
