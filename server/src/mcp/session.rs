//! Client sessions of the per-server proxy (handshake era): the gateway mints its own
//! `Mcp-Session-Id`, bound to the authenticated user and the server, and maps it to the
//! backend's session. Sessions are never authentication: the bearer token is checked on every
//! request, and a session presented by another user (or for another server) is unknown (404).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::auth::identity::hex;
use crate::db;
use crate::keys::random_bytes;
use crate::mcp::legacy::LegacySession;

/// How the gateway reaches the backend for one client session.
pub enum Upstream {
    /// Streamable HTTP, handshake era: the backend's own session id (if it issued one) and the
    /// version negotiated with it.
    Http {
        session_id: Option<String>,
        version: String,
    },
    /// A 2026-07-28-only backend behind a handshake-era client: each request is sent stateless,
    /// with the client's capabilities in `_meta`.
    Modern,
    /// HTTP+SSE backend: the gateway holds the stream.
    Legacy(Arc<tokio::sync::Mutex<LegacySession>>),
}

pub struct ProxySession {
    pub id: String,
    pub user_id: i64,
    pub server_id: i64,
    /// The version negotiated with the client.
    pub client_version: String,
    /// The client's `initialize` params, to re-initialise a backend that lost its session.
    pub init_params: Value,
    pub upstream: tokio::sync::Mutex<Upstream>,
    /// The backend GET stream shared by this session's client GET streams (`hub.rs`).
    pub stream_hub: tokio::sync::Mutex<Option<Arc<crate::mcp::hub::StreamHub>>>,
    last_seen: AtomicI64,
}

impl ProxySession {
    /// A session not registered in the store (the gateway-held ones).
    pub fn detached(
        user_id: i64,
        server_id: i64,
        client_version: String,
        init_params: Value,
        upstream: Upstream,
    ) -> ProxySession {
        ProxySession {
            id: String::new(),
            user_id,
            server_id,
            client_version,
            init_params,
            upstream: tokio::sync::Mutex::new(upstream),
            stream_hub: tokio::sync::Mutex::new(None),
            last_seen: AtomicI64::new(db::now()),
        }
    }

    pub fn idle_for(&self, idle: Duration) -> bool {
        self.last_seen.load(Ordering::Relaxed)
            < db::now() - i64::try_from(idle.as_secs()).unwrap_or(i64::MAX)
    }

    pub fn touch(&self) {
        self.last_seen.store(db::now(), Ordering::Relaxed);
    }
}

/// Sessions one user may hold on the replica; a new one beyond this evicts their oldest (a
/// client that never ends its sessions cannot exhaust the gateway's memory; an evicted
/// client gets 404 and initialises again, as the protocol expects).
pub const MAX_SESSIONS_PER_USER: usize = 256;

#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, Arc<ProxySession>>,
    /// Each user's session ids in creation order (may hold ids already removed).
    order: HashMap<i64, VecDeque<String>>,
}

#[derive(Default)]
pub struct SessionStore {
    inner: Mutex<Sessions>,
}

impl SessionStore {
    /// Creates a session with a fresh 256-bit id (visible ASCII, hex).
    pub fn create(
        &self,
        user_id: i64,
        server_id: i64,
        client_version: String,
        init_params: Value,
        upstream: Upstream,
    ) -> anyhow::Result<Arc<ProxySession>> {
        let id = hex(&random_bytes::<32>()?);
        let session = Arc::new(ProxySession {
            id: id.clone(),
            user_id,
            server_id,
            client_version,
            init_params,
            upstream: tokio::sync::Mutex::new(upstream),
            stream_hub: tokio::sync::Mutex::new(None),
            last_seen: AtomicI64::new(db::now()),
        });
        if let Ok(mut inner) = self.inner.lock() {
            let Sessions { by_id, order } = &mut *inner;
            let queue = order.entry(user_id).or_default();
            // Evict the oldest live sessions (skipping ids already gone) to stay under the cap.
            while queue.len() >= MAX_SESSIONS_PER_USER {
                if let Some(old) = queue.pop_front() {
                    by_id.remove(&old);
                }
            }
            queue.push_back(id.clone());
            by_id.insert(id, session.clone());
        }
        Ok(session)
    }

    /// The session, only for the user and server it belongs to.
    pub fn get(&self, id: &str, user_id: i64, server_id: i64) -> Option<Arc<ProxySession>> {
        let inner = self.inner.lock().ok()?;
        let session = inner.by_id.get(id)?;
        (session.user_id == user_id && session.server_id == server_id).then(|| session.clone())
    }

    /// Who a session belongs to, whoever asks (to tell a stale id from another user's).
    pub fn owner(&self, id: &str) -> Option<i64> {
        let inner = self.inner.lock().ok()?;
        inner.by_id.get(id).map(|s| s.user_id)
    }

    pub fn remove(&self, id: &str) -> Option<Arc<ProxySession>> {
        let mut inner = self.inner.lock().ok()?;
        let session = inner.by_id.remove(id)?;
        if let Some(queue) = inner.order.get_mut(&session.user_id) {
            queue.retain(|q| q != id);
        }
        Some(session)
    }

    /// Forgets every session for which `keep` is false (access revoked, server deleted).
    pub fn remove_where(&self, keep: impl Fn(&ProxySession) -> bool) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.by_id.retain(|_, s| keep(s));
            let Sessions { by_id, order } = &mut *inner;
            for queue in order.values_mut() {
                queue.retain(|id| by_id.contains_key(id));
            }
            order.retain(|_, q| !q.is_empty());
        }
    }

    /// Drops sessions idle for longer than `idle`.
    pub fn expire(&self, idle: Duration) -> usize {
        let before = self.len();
        self.remove_where(|s| !s.idle_for(idle));
        before - self.len()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|s| s.by_id.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream() -> Upstream {
        Upstream::Http {
            session_id: None,
            version: "2025-11-25".into(),
        }
    }

    #[test]
    fn sessions_are_bound_and_capped_per_user() {
        let store = SessionStore::default();
        let first = store
            .create(1, 10, "v".into(), Value::Null, upstream())
            .unwrap();
        assert!(store.get(&first.id, 1, 10).is_some());
        assert!(store.get(&first.id, 2, 10).is_none(), "another user");
        assert!(store.get(&first.id, 1, 11).is_none(), "another server");
        for _ in 0..MAX_SESSIONS_PER_USER {
            store
                .create(1, 10, "v".into(), Value::Null, upstream())
                .unwrap();
        }
        assert_eq!(store.len(), MAX_SESSIONS_PER_USER);
        assert!(
            store.get(&first.id, 1, 10).is_none(),
            "the least recently used went first"
        );
        let other = store
            .create(2, 10, "v".into(), Value::Null, upstream())
            .unwrap();
        assert!(
            store.get(&other.id, 2, 10).is_some(),
            "other users are not evicted"
        );
        assert_eq!(store.len(), MAX_SESSIONS_PER_USER + 1);
    }
}
