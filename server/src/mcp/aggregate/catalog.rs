//! What each backend offers — its capabilities and its tools, prompts, resources and resource
//! templates — fetched through a backend session the gateway holds for itself and cached per
//! backend. A cache entry goes when the backend says its list changed (on the gateway's own
//! stream or any aggregated client's), when an admin edits the server, or after `LIST_TTL`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::mcp::backend::{BackendError, client_info};
use crate::mcp::link::Link;
use crate::mcp::naming;
use crate::mcp::registry::Backend;
use crate::state::AppState;

/// How long a list is trusted without a change notification.
const LIST_TTL: Duration = Duration::from_secs(300);
/// A backend that pages forever is cut off here.
const MAX_PAGES: usize = 100;
const MAX_ITEMS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl Kind {
    pub fn method(self) -> &'static str {
        match self {
            Kind::Tools => "tools/list",
            Kind::Prompts => "prompts/list",
            Kind::Resources => "resources/list",
            Kind::Templates => "resources/templates/list",
        }
    }

    /// The result field holding the items.
    pub fn field(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Prompts => "prompts",
            Kind::Resources => "resources",
            Kind::Templates => "resourceTemplates",
        }
    }

    /// The capability a backend must declare to be asked.
    pub fn capability(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Prompts => "prompts",
            Kind::Resources | Kind::Templates => "resources",
        }
    }

    pub fn from_method(method: &str) -> Option<Kind> {
        [Kind::Tools, Kind::Prompts, Kind::Resources, Kind::Templates]
            .into_iter()
            .find(|k| k.method() == method)
    }

    /// The kinds a `notifications/*/list_changed` invalidates.
    pub fn changed_by(method: &str) -> &'static [Kind] {
        match method {
            "notifications/tools/list_changed" => &[Kind::Tools],
            "notifications/prompts/list_changed" => &[Kind::Prompts],
            "notifications/resources/list_changed" => &[Kind::Resources, Kind::Templates],
            _ => &[],
        }
    }
}

/// A backend's list changed: aggregated clients' GET streams forward it.
#[derive(Debug, Clone)]
pub struct Change {
    pub server_id: i64,
    pub method: &'static str,
}

/// One backend's list: the items as the backend sent them, and each rendered once as it is
/// exposed on `/mcp` (tools and prompts renamed `{prefix}__{name}`), ready to be copied into
/// answers without re-serialising.
#[derive(Default)]
pub struct Listed {
    pub items: Vec<Value>,
    pub rendered: Vec<Box<RawValue>>,
    /// Tools: each item's pinned-definition fingerprint (`pins.rs`), `None` for an item
    /// without a usable name; empty for other kinds.
    pub fingerprints: Vec<Option<crate::mcp::pins::Fingerprint>>,
}

impl Listed {
    fn new(
        backend: &Backend,
        kind: Kind,
        items: Vec<Value>,
        fingerprints: Vec<Option<crate::mcp::pins::Fingerprint>>,
    ) -> Listed {
        let rendered = items
            .iter()
            .filter_map(|item| {
                let mut item = item.clone();
                if matches!(kind, Kind::Tools | Kind::Prompts)
                    && let Some(name) = item["name"].as_str()
                {
                    item["name"] = json!(naming::exposed(&backend.prefix, name));
                }
                serde_json::value::to_raw_value(&item).ok()
            })
            .collect();
        Listed {
            items,
            rendered,
            fingerprints,
        }
    }

    /// Whether item `i` may be shown: under pinning, only a tool that could be pinned (one with
    /// a usable name); under quarantine, only in its approved version.
    pub fn pinned(&self, state: &AppState, backend: &Backend, i: usize) -> bool {
        use crate::mcp::pins::Pinning;
        if backend.pinning == Pinning::Off || self.fingerprints.is_empty() {
            return true;
        }
        match (self.name(i), self.fingerprints.get(i).copied().flatten()) {
            (Some(name), Some(fp)) => {
                backend.pinning != Pinning::Quarantine
                    || state.mcp.pins.approved(backend.id, name, &fp)
            }
            _ => false,
        }
    }

    /// The backend's own name of item `i` (tools and prompts).
    pub fn name(&self, i: usize) -> Option<&str> {
        self.items.get(i).and_then(|item| item["name"].as_str())
    }
}

#[derive(Default)]
struct Entry {
    /// The server row version the entry was filled from (an edit empties it).
    updated_at: i64,
    link: Option<Arc<Link>>,
    lists: HashMap<Kind, (Arc<Listed>, Instant)>,
}

/// A catalog entry's key: (server, owner). A server with per-user connected accounts has one
/// entry per user (its lists are that user's), every other server one (owner 0).
type Key = (i64, i64);

fn key(backend: &Backend) -> Key {
    (backend.id, backend.owner)
}

/// Per-user entries kept at most (all of them go when full).
const MAX_PER_USER_ENTRIES: usize = 4096;

pub struct Catalog {
    entries: Mutex<HashMap<Key, Entry>>,
    /// One fetch at a time per backend (concurrent callers wait and read the cache).
    fetching: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    pub changes: broadcast::Sender<Change>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            entries: Mutex::default(),
            fetching: Mutex::default(),
            changes: broadcast::channel(256).0,
        }
    }
}

impl Catalog {
    fn gate(&self, key: Key) -> Arc<tokio::sync::Mutex<()>> {
        self.fetching
            .lock()
            .map(|mut f| {
                if key.1 != 0 && f.len() >= MAX_PER_USER_ENTRIES {
                    f.retain(|k, g| k.1 == 0 || Arc::strong_count(g) > 1);
                }
                f.entry(key).or_default().clone()
            })
            .unwrap_or_default()
    }

    fn cached_link(&self, backend: &Backend) -> Option<Arc<Link>> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&key(backend))?;
        (entry.updated_at == backend.row.updated_at)
            .then(|| entry.link.clone())
            .flatten()
    }

    /// The cached list if it is fresh (no waiting, no backend traffic).
    pub fn cached_list(&self, backend: &Backend, kind: Kind) -> Option<Arc<Listed>> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&key(backend))?;
        if entry.updated_at != backend.row.updated_at {
            return None;
        }
        let (items, at) = entry.lists.get(&kind)?;
        (at.elapsed() < LIST_TTL).then(|| items.clone())
    }

    /// The gateway's own session with the backend (opened on first use; its stream, when the
    /// backend offers one, is watched for list changes).
    async fn link(
        &self,
        state: &AppState,
        backend: &Arc<Backend>,
    ) -> Result<Arc<Link>, BackendError> {
        if let Some(link) = self.cached_link(backend)
            && link.alive().await
        {
            return Ok(link);
        }
        let gate = self.gate(key(backend));
        let _fetching = gate.lock().await;
        if let Some(link) = self.cached_link(backend)
            && link.alive().await
        {
            return Ok(link);
        }
        let link = Arc::new(Link::open(state, backend.clone(), 0, json!({}), client_info()).await?);
        if let Ok(mut entries) = self.entries.lock() {
            if backend.owner != 0 && entries.len() >= MAX_PER_USER_ENTRIES {
                entries.retain(|k, _| k.1 == 0);
            }
            let entry = entries.entry(key(backend)).or_default();
            if entry.updated_at != backend.row.updated_at {
                *entry = Entry {
                    updated_at: backend.row.updated_at,
                    ..Entry::default()
                };
            }
            entry.link = Some(link.clone());
        }
        if let Some(mut rx) = link.listen(state).await {
            let state = state.clone();
            let server_id = backend.id;
            tokio::spawn(async move {
                while let Some(message) = rx.recv().await {
                    if let Some(method) = message["method"].as_str() {
                        state.mcp.aggregate.catalog.changed(server_id, method);
                    }
                }
            });
        }
        Ok(link)
    }

    /// The backend's InitializeResult (capabilities, serverInfo, instructions).
    pub async fn info(
        &self,
        state: &AppState,
        backend: &Arc<Backend>,
    ) -> Result<Value, BackendError> {
        Ok(self.link(state, backend).await?.result.clone())
    }

    /// Every item of one list (all pages), from the cache when fresh.
    pub async fn list(
        &self,
        state: &AppState,
        backend: &Arc<Backend>,
        kind: Kind,
    ) -> Result<Arc<Listed>, BackendError> {
        if let Some(items) = self.cached_list(backend, kind) {
            return Ok(items);
        }
        let link = self.link(state, backend).await?;
        if link.result["capabilities"].get(kind.capability()).is_none() {
            return Ok(Arc::default());
        }
        let gate = self.gate(key(backend));
        let _fetching = gate.lock().await;
        if let Some(items) = self.cached_list(backend, kind) {
            return Ok(items);
        }
        let fetched = fetch_all(state, &link, kind).await;
        let items = match fetched {
            Ok(items) => {
                let items = screen(state, backend, kind, items);
                // Every tool list the gateway fetches is held against the pinned definitions.
                let fingerprints = if kind == Kind::Tools {
                    state.mcp.pins.observe(
                        state,
                        backend.id,
                        &backend.name,
                        backend.pinning,
                        &items,
                        true,
                    )
                } else {
                    Vec::new()
                };
                Arc::new(Listed::new(backend, kind, items, fingerprints))
            }
            Err(e) => {
                // The session may be what broke: the next attempt opens a fresh one.
                self.forget_link(key(backend));
                return Err(e);
            }
        };
        if let Ok(mut entries) = self.entries.lock() {
            let entry = entries.entry(key(backend)).or_default();
            if entry.updated_at == backend.row.updated_at {
                entry.lists.insert(kind, (items.clone(), Instant::now()));
            }
        }
        Ok(items)
    }

    fn forget_link(&self, key: Key) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&key)
        {
            entry.link = None;
        }
    }

    /// A backend said a list changed: the cached list goes and aggregated clients hear of it.
    pub fn changed(&self, server_id: i64, method: &str) {
        let kinds = Kind::changed_by(method);
        if kinds.is_empty() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            for (_, entry) in entries.iter_mut().filter(|(k, _)| k.0 == server_id) {
                for kind in kinds {
                    entry.lists.remove(kind);
                }
            }
        }
        let method = match kinds[0] {
            Kind::Tools => "notifications/tools/list_changed",
            Kind::Prompts => "notifications/prompts/list_changed",
            Kind::Resources | Kind::Templates => "notifications/resources/list_changed",
        };
        let _ = self.changes.send(Change { server_id, method });
    }

    /// Forgets everything about servers that are gone or were edited (admin edits), and tells
    /// aggregated clients their lists changed.
    pub fn retain_current(&self, current: &HashMap<i64, i64>) {
        let mut changed = Vec::new();
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(id, _), entry| {
                let keep = current.get(id) == Some(&entry.updated_at);
                if !keep {
                    changed.push(*id);
                }
                keep
            });
        }
        changed.sort_unstable();
        changed.dedup();
        for server_id in changed {
            for method in [
                "notifications/tools/list_changed",
                "notifications/prompts/list_changed",
                "notifications/resources/list_changed",
            ] {
                let _ = self.changes.send(Change { server_id, method });
            }
        }
    }
}

/// Tool descriptions are checked once per fetch: flagged tools are reported (no user: the
/// catalog is the gateway's), and left out when the server blocks.
fn screen(state: &AppState, backend: &Backend, kind: Kind, items: Vec<Value>) -> Vec<Value> {
    if kind != Kind::Tools || backend.detection == crate::detect::Mode::Off {
        return items;
    }
    let ctx = crate::events::EventContext::default();
    let mut wrapped = json!({ "jsonrpc": "2.0", "id": 0, "result": { "tools": items } });
    crate::mcp::inspect::check_answer(
        state,
        &ctx,
        None,
        &backend.name,
        backend.detection,
        None,
        &mut wrapped,
    );
    match wrapped["result"]["tools"].take() {
        Value::Array(tools) => tools,
        _ => Vec::new(),
    }
}

async fn fetch_all(state: &AppState, link: &Link, kind: Kind) -> Result<Vec<Value>, BackendError> {
    let name = &link.backend.name;
    let mut items = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_PAGES {
        let mut params = json!({});
        if let Some(c) = cursor.take() {
            params["cursor"] = c;
        }
        let message = json!({
            "jsonrpc": "2.0",
            "id": format!("amg-{}", state.mcp.next_id()),
            "method": kind.method(),
            "params": params,
        });
        let reply = link
            .call(state, crate::mcp::splice::Outgoing::of(&message), None)
            .await?;
        let result = reply
            .get("result")
            .ok_or_else(|| BackendError::Protocol(name.clone()))?;
        if let Some(page) = result.get(kind.field()).and_then(Value::as_array) {
            items.extend(page.iter().cloned());
        }
        match result.get("nextCursor") {
            Some(next) if !next.is_null() && items.len() < MAX_ITEMS => cursor = Some(next.clone()),
            _ => break,
        }
    }
    items.truncate(MAX_ITEMS);
    Ok(items)
}
