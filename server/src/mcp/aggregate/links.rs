//! The aggregated endpoint's state on this replica: backend sessions (`Link`s) per client
//! session and backend, in-flight requests, the clients' GET streams, and the catalog.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::mcp::aggregate::Ctx;
use crate::mcp::aggregate::catalog::Catalog;
use crate::mcp::aggregate::route::from_backend;
use crate::mcp::aggregate::session::Sess;
use crate::mcp::backend::BackendError;
use crate::mcp::link::Link;
use crate::mcp::registry::Backend;
use crate::state::AppState;

/// Aggregated client sessions one user may have backend sessions for on one replica.
pub(crate) const MAX_SESSIONS_PER_USER: usize = 256;

pub(crate) type LinkSlot = Arc<tokio::sync::Mutex<Option<Arc<Link>>>>;

/// A client request on its way: (session key, the client's raw JSON id).
pub(crate) type Inflight = (Arc<str>, String);

/// The aggregated endpoint's state on this replica: cached lists, backend sessions per client
/// session, and the clients' GET streams.
#[derive(Default)]
pub struct AggregateState {
    pub catalog: Catalog,
    pub(crate) links: Mutex<HashMap<(Arc<str>, i64), LinkSlot>>,
    pub(crate) keys_by_user: Mutex<HashMap<i64, VecDeque<Arc<str>>>>,
    pub(crate) outboxes: Mutex<HashMap<Arc<str>, mpsc::Sender<Value>>>,
    /// (session, client request id) → (server, gateway id), for `notifications/cancelled`.
    pub(crate) inflight: Mutex<HashMap<Inflight, (i64, Value)>>,
    /// Sessions ended by `DELETE` (session key → expiry), on any replica.
    ended: Mutex<HashMap<String, i64>>,
    /// More ended sessions than `MAX_ENDED`: those not in memory are looked up in the database.
    ended_overflow: std::sync::atomic::AtomicBool,
}

/// Ended sessions kept in memory; beyond this the database answers.
pub const MAX_ENDED: usize = 100_000;

impl AggregateState {
    /// Remembers an ended session until it would expire anyway.
    pub fn mark_ended(&self, key: &str, expires_at: i64) {
        let Ok(mut ended) = self.ended.lock() else {
            self.ended_overflow
                .store(true, std::sync::atomic::Ordering::Release);
            return;
        };
        if ended.len() >= MAX_ENDED {
            let now = crate::db::now();
            ended.retain(|_, e| *e > now);
        }
        if ended.len() >= MAX_ENDED {
            self.ended_overflow
                .store(true, std::sync::atomic::Ordering::Release);
            return;
        }
        ended.insert(key.to_string(), expires_at);
    }

    /// Replaces the ended set with what the database holds (`rows` were asked for with a
    /// limit of `MAX_ENDED + 1`): memory knows everything again when they fit.
    pub fn reload_ended(&self, rows: Vec<(String, i64)>) {
        if rows.len() > MAX_ENDED {
            return;
        }
        if let Ok(mut ended) = self.ended.lock() {
            *ended = rows.into_iter().collect();
            self.ended_overflow
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }

    pub fn ended_overflowed(&self) -> bool {
        self.ended_overflow
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// `Some(ended)` when memory knows; `None`: ask the database.
    pub fn is_ended(&self, key: &str) -> Option<bool> {
        let ended = self.ended.lock().ok()?;
        if ended.contains_key(key) {
            return Some(true);
        }
        (!self
            .ended_overflow
            .load(std::sync::atomic::Ordering::Acquire))
        .then_some(false)
    }

    pub(crate) fn slot(&self, key: &Arc<str>, user_id: i64, server_id: i64) -> LinkSlot {
        let mut evicted = Vec::new();
        let slot = {
            let Ok(mut links) = self.links.lock() else {
                return LinkSlot::default();
            };
            if let Some(slot) = links.get(&(key.clone(), server_id)) {
                return slot.clone();
            }
            if let Ok(mut keys) = self.keys_by_user.lock() {
                let queue = keys.entry(user_id).or_default();
                if !queue.contains(key) {
                    while queue.len() >= MAX_SESSIONS_PER_USER {
                        if let Some(old) = queue.pop_front() {
                            evicted.push(old);
                        }
                    }
                    queue.push_back(key.clone());
                }
            }
            links.retain(|(k, _), _| !evicted.contains(k));
            links.entry((key.clone(), server_id)).or_default().clone()
        };
        if let Ok(mut outboxes) = self.outboxes.lock() {
            outboxes.retain(|k, _| !evicted.contains(k));
        }
        slot
    }

    /// The open backend sessions of a client session.
    pub(crate) fn links_of(&self, key: &str) -> Vec<LinkSlot> {
        self.links
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|((k, _), _)| &**k == key)
                    .map(|(_, s)| s.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn link_slot(&self, key: &str, server_id: i64) -> Option<LinkSlot> {
        self.links
            .lock()
            .ok()?
            .iter()
            .find(|((k, s), _)| &**k == key && *s == server_id)
            .map(|(_, slot)| slot.clone())
    }

    /// Forgets a client session here; returns its backend sessions to end.
    pub(crate) fn remove_session(&self, key: &str) -> Vec<LinkSlot> {
        if let Ok(mut outboxes) = self.outboxes.lock() {
            outboxes.remove(key);
        }
        if let Ok(mut inflight) = self.inflight.lock() {
            inflight.retain(|(k, _), _| &**k != key);
        }
        let Ok(mut links) = self.links.lock() else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        links.retain(|(k, _), slot| {
            let keep = &**k != key;
            if !keep {
                removed.push(slot.clone());
            }
            keep
        });
        removed
    }

    /// Drops backend sessions of servers that are gone, of users who lost access, or idle. A
    /// backend session is not idle while its client holds the GET stream open: what the
    /// backend sends unasked (log messages, resource updates) is what that client waits for.
    pub fn retain_links(&self, keep: impl Fn(i64, i64) -> bool, idle: Option<Duration>) {
        let listening: std::collections::HashSet<Arc<str>> = match idle {
            Some(_) => self
                .outboxes
                .lock()
                .map(|o| {
                    o.iter()
                        .filter(|(_, tx)| !tx.is_closed())
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default(),
            None => Default::default(),
        };
        if let Ok(mut links) = self.links.lock() {
            links.retain(|(key, server_id), slot| {
                let Ok(guard) = slot.try_lock() else {
                    return true;
                };
                match &*guard {
                    None => false,
                    Some(link) => {
                        keep(link.session.user_id, *server_id)
                            && idle.is_none_or(|idle| {
                                listening.contains(key) || !link.session.idle_for(idle)
                            })
                    }
                }
            });
        }
    }

    /// Client requests on their way to a backend here (entries of `inflight`).
    pub fn requests_in_flight(&self) -> usize {
        self.inflight.lock().map_or(0, |i| i.len())
    }

    pub(crate) fn outbox(&self, key: &str) -> Option<mpsc::Sender<Value>> {
        self.outboxes.lock().ok()?.get(key).cloned()
    }
}

/// A client request's entry in `inflight` (for `notifications/cancelled`), removed when the
/// request ends however it ends: answered, failed, or dropped because the client hung up or
/// the request timed out. Only its own entry is removed (two requests may carry one id).
pub(crate) struct InflightEntry {
    state: AppState,
    key: Inflight,
    gateway_id: Value,
}

impl InflightEntry {
    pub(crate) fn new(state: &AppState, key: Inflight, server_id: i64, gateway_id: Value) -> Self {
        if let Ok(mut inflight) = state.mcp.aggregate.inflight.lock() {
            inflight.insert(key.clone(), (server_id, gateway_id.clone()));
        }
        InflightEntry {
            state: state.clone(),
            key,
            gateway_id,
        }
    }
}

impl Drop for InflightEntry {
    fn drop(&mut self) {
        if let Ok(mut inflight) = self.state.mcp.aggregate.inflight.lock()
            && inflight
                .get(&self.key)
                .is_some_and(|(_, id)| *id == self.gateway_id)
        {
            inflight.remove(&self.key);
        }
    }
}

/// The cached backend session under `key` with `backend` (reused while the server is unchanged
/// and the session alive), or a new one; `true` when it was opened now.
pub(super) async fn cached_link(
    state: &AppState,
    key: &Arc<str>,
    user_id: i64,
    backend: &Arc<Backend>,
    capabilities: &Value,
    client: &Value,
) -> Result<(Arc<Link>, bool), BackendError> {
    let slot = state.mcp.aggregate.slot(key, user_id, backend.id);
    let mut guard = slot.lock().await;
    if let Some(link) = &*guard
        && link.backend.row.updated_at == backend.row.updated_at
        && link.alive().await
    {
        link.session.touch();
        return Ok((link.clone(), false));
    }
    // Copied only when a backend session is opened, not on every routed request.
    let (capabilities, client) = (capabilities.clone(), client.clone());
    let link = Arc::new(Link::open(state, backend.clone(), user_id, capabilities, client).await?);
    *guard = Some(link.clone());
    Ok((link, true))
}

/// The backend session of this client session with `backend`, opened on first use.
pub(super) async fn link_for(
    ctx: &Ctx,
    sess: &Sess,
    backend: &Arc<Backend>,
) -> Result<Arc<Link>, BackendError> {
    let (link, fresh) = cached_link(
        &ctx.state,
        &sess.key,
        ctx.principal.user_id,
        backend,
        &sess.capabilities,
        &sess.client,
    )
    .await?;
    if fresh && let Some(mut rx) = link.listen(&ctx.state).await {
        let state = ctx.state.clone();
        let key = sess.key.clone();
        let server_id = backend.id;
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let Some(message) = from_backend(&state, server_id, message, None) else {
                    continue;
                };
                if let Some(outbox) = state.mcp.aggregate.outbox(&key) {
                    let _ = outbox.try_send(message);
                }
            }
        });
    }
    Ok(link)
}

/// A backend session for the admin console: one per admin and backend, with no client
/// capabilities and no client stream.
pub(crate) async fn console_link(
    state: &AppState,
    user_id: i64,
    backend: &Arc<Backend>,
) -> Result<Arc<Link>, BackendError> {
    let key: Arc<str> = Arc::from(format!("console:{user_id}"));
    let client = json!({ "name": "authmcp-console", "version": env!("CARGO_PKG_VERSION") });
    cached_link(state, &key, user_id, backend, &json!({}), &client)
        .await
        .map(|(link, _)| link)
}
