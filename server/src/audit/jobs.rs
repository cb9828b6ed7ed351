//! Scans as background jobs: stored in `audit_scans`, their progress on the live feed and in
//! the row, cancellable from any replica (the row's status is read between checks), at most
//! `MAX_RUNNING` at a time per replica.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use shared::audit::{AuditProgress, AuditReport, AuditRequest, AuditScan, AuditSummary};
use shared::live::LiveMessage;
use tokio::sync::Semaphore;

use crate::audit::{self, CHECKS, Target};
use crate::db::{self, audits::ScanRow};
use crate::error::ApiError;
use crate::mcp::aggregate::catalog::Kind;
use crate::state::AppState;

/// Scans running at once on one replica.
pub const MAX_RUNNING: usize = 2;
/// Other servers' tools compared for shadowing, at most.
const MAX_OTHER_TOOLS: usize = 5_000;
/// How long starting a scan of a registered server waits for the others' tool lists.
const OTHERS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

pub struct Jobs {
    running: Arc<Semaphore>,
    /// Cancel flags of the scans running here.
    cancels: Mutex<HashMap<i64, Arc<AtomicBool>>>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            running: Arc::new(Semaphore::new(MAX_RUNNING)),
            cancels: Mutex::default(),
        }
    }
}

fn summary_of(row: &ScanRow) -> AuditSummary {
    let n = |v: i64| u32::try_from(v).unwrap_or(0);
    AuditSummary {
        high: n(row.high),
        medium: n(row.medium),
        low: n(row.low),
        info: n(row.info),
    }
}

pub fn to_api(row: ScanRow) -> AuditScan {
    let report = row
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str::<AuditReport>(r).ok());
    AuditScan {
        id: row.id,
        summary: summary_of(&row),
        target: row.target,
        server: row.server_name,
        status: row.status,
        requested_by: row.requested_by,
        started_at: row.started_at,
        finished_at: row.finished_at,
        progress: u32::try_from(row.progress).unwrap_or(0),
        total: u32::try_from(row.total).unwrap_or(0),
        error: row.error,
        report,
    }
}

fn counts(s: &AuditSummary) -> [i64; 4] {
    [s.high, s.medium, s.low, s.info].map(i64::from)
}

/// What a request names, checked before anything is stored or sent.
pub async fn resolve(state: &AppState, req: &AuditRequest) -> Result<(Target, url::Url), ApiError> {
    if req.bearer_token.as_ref().is_some_and(|t| t.len() > 8192) {
        return Err(ApiError::validation(
            "bearer_token",
            "at most 8192 characters",
        ));
    }
    let (url, server, others, private_default) = match (req.server_id, &req.url) {
        (Some(id), None) => {
            let row = db::servers::find(&state.db.pool, id)
                .await?
                .ok_or(ApiError::NotFound("no such server"))?;
            let parsed = url::Url::parse(&row.url)
                .map_err(|_| ApiError::validation("server_id", "the server's URL is not valid"))?;
            let private = crate::fetch::is_private_url(&parsed).await;
            let others = other_tools(state, id).await;
            (row.url, Some(row.name), others, private)
        }
        (None, Some(url)) => {
            if url.len() > 2000 {
                return Err(ApiError::validation("url", "at most 2000 characters"));
            }
            // Shadowing is judged between registered servers only: a URL's relation to them
            // is unknown (it may be one of them, behind the gateway).
            (url.clone(), None, Vec::new(), false)
        }
        _ => {
            return Err(ApiError::validation("url", "give either url or server_id"));
        }
    };
    let allow_private = req.allow_private.unwrap_or(private_default);
    let parsed = audit::preflight(&url, allow_private)
        .await
        .map_err(|refusal| match refusal {
            audit::Refusal::Invalid(why) => ApiError::validation("url", why),
            audit::Refusal::Address(why) => ApiError::ForbiddenAddress(why),
        })?;
    Ok((
        Target {
            url,
            token: req.bearer_token.clone().filter(|t| !t.is_empty()),
            allow_private,
            server,
            server_id: req.server_id,
            others,
        },
        parsed,
    ))
}

/// The tools of every other enabled server, from the gateway's catalog (listed if not cached).
/// The request that starts a scan waits for this, so it has one deadline for all servers
/// (`OTHERS_DEADLINE`); servers that have not answered by then are left out.
async fn other_tools(state: &AppState, except: i64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + OTHERS_DEADLINE;
    let backends: Vec<_> = state
        .mcp
        .registry
        .snapshot()
        .values()
        .filter(|b| b.enabled && b.id != except)
        .cloned()
        .collect();
    for backend in backends {
        let listed = tokio::time::timeout_at(
            deadline,
            state
                .mcp
                .aggregate
                .catalog
                .list(state, &backend, Kind::Tools),
        )
        .await;
        if let Ok(Ok(listed)) = listed {
            for i in 0..listed.items.len() {
                if out.len() >= MAX_OTHER_TOOLS {
                    return out;
                }
                if let Some(name) = listed.name(i) {
                    out.push((backend.name.clone(), name.to_string()));
                }
            }
        }
    }
    out
}

impl Jobs {
    /// Stores a scan and runs it in the background; the returned scan is `running`.
    pub async fn start(
        &self,
        state: &AppState,
        target: Target,
        url: url::Url,
        requested_by: &str,
    ) -> Result<(AuditScan, tokio::task::JoinHandle<()>), ApiError> {
        let Ok(permit) = self.running.clone().try_acquire_owned() else {
            return Err(ApiError::conflict(
                "too_many_scans",
                format!("{MAX_RUNNING} scans are already running; wait for one to finish"),
            ));
        };
        let now = db::now();
        db::audits::prune(
            &state.db.pool,
            now - 2 * audit::SCAN_DEADLINE.as_secs() as i64,
        )
        .await?;
        let id = db::audits::insert(
            &state.db.pool,
            &audit::shown_url(&url),
            target.server_id,
            target.server.as_deref(),
            requested_by,
            CHECKS.len() as i64,
            now,
        )
        .await?;
        let row = db::audits::find(&state.db.pool, id)
            .await?
            .ok_or(ApiError::NotFound("no such scan"))?;
        let cancel = Arc::new(AtomicBool::new(false));
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(id, cancel.clone());
        }
        let state2 = state.clone();
        let task = tokio::spawn(async move {
            run_job(&state2, id, target, url, cancel).await;
            if let Ok(mut c) = state2.audits.cancels.lock() {
                c.remove(&id);
            }
            drop(permit);
        });
        Ok((to_api(row), task))
    }

    /// Cancels a running scan (here or on another replica). `false`: it was not running.
    pub async fn cancel(&self, state: &AppState, id: i64) -> Result<bool, ApiError> {
        let row = db::audits::find(&state.db.pool, id)
            .await?
            .ok_or(ApiError::NotFound("no such scan"))?;
        let done = db::audits::finish(
            &state.db.pool,
            id,
            "cancelled",
            row.progress,
            [row.high, row.medium, row.low, row.info],
            Some("cancelled by an admin"),
            None,
            db::now(),
        )
        .await?;
        if let Ok(c) = self.cancels.lock()
            && let Some(flag) = c.get(&id)
        {
            flag.store(true, Ordering::Release);
        }
        if done {
            publish(
                state,
                id,
                &row.target,
                "cancelled",
                row.progress as u32,
                None,
                summary_of(&row),
            );
        }
        Ok(done)
    }
}

fn publish(
    state: &AppState,
    id: i64,
    target: &str,
    status: &str,
    progress: u32,
    check: Option<&str>,
    summary: AuditSummary,
) {
    state.live.publish(|| LiveMessage::AuditProgress {
        scan: AuditProgress {
            id,
            target: target.to_string(),
            status: status.to_string(),
            progress,
            total: CHECKS.len() as u32,
            check: check.map(str::to_string),
            summary,
        },
    });
}

async fn run_job(
    state: &AppState,
    id: i64,
    target: Target,
    url: url::Url,
    cancel: Arc<AtomicBool>,
) {
    let shown = audit::shown_url(&url);
    let hook_state = state.clone();
    let hook_cancel = cancel.clone();
    let hook_target = shown.clone();
    let hook: audit::Hook<'_> = Box::new(move |done, next, summary| {
        let state = hook_state.clone();
        let cancel = hook_cancel.clone();
        let target = hook_target.clone();
        Box::pin(async move {
            if cancel.load(Ordering::Acquire) {
                return false;
            }
            // Cancelled on another replica?
            match db::audits::status(&state.db.pool, id).await {
                Ok(Some(s)) if s == "running" => {}
                Ok(_) => return false,
                Err(_) => {}
            }
            let _ = db::audits::progress(&state.db.pool, id, done as i64, counts(&summary)).await;
            publish(&state, id, &target, "running", done as u32, next, summary);
            true
        })
    });
    let ran = tokio::time::timeout(audit::SCAN_DEADLINE, audit::run(target, url, hook)).await;
    let now = db::now();
    let (status, error, report) = match ran {
        Ok(report) if cancel.load(Ordering::Acquire) || report.checks.len() < CHECKS.len() => (
            "cancelled",
            Some("cancelled by an admin".to_string()),
            Some(report),
        ),
        Ok(report) => ("done", None, Some(report)),
        Err(_) => (
            "failed",
            Some(format!(
                "the scan took longer than {} s",
                audit::SCAN_DEADLINE.as_secs()
            )),
            None,
        ),
    };
    let summary = report.as_ref().map(|r| r.summary).unwrap_or_default();
    let progress = report.as_ref().map_or(0, |r| r.checks.len()) as i64;
    let text = report.as_ref().and_then(|r| serde_json::to_string(r).ok());
    match db::audits::finish(
        &state.db.pool,
        id,
        status,
        progress,
        counts(&summary),
        error.as_deref(),
        text.as_deref(),
        now,
    )
    .await
    {
        Ok(true) => publish(state, id, &shown, status, progress as u32, None, summary),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, scan = id, "storing a scan's report failed"),
    }
}
