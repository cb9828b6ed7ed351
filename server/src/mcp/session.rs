//! Client sessions of the per-server proxy (handshake era): the gateway mints its own
//! `Mcp-Session-Id`, bound to the authenticated user and the server, and maps it to the
//! backend's session. Sessions are never authentication: the bearer token is checked on every
//! request, and a session presented by another user (or for another server) is unknown (404).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::auth::identity::hex;
use crate::db;
use crate::keys::random_bytes;
use crate::mcp::legacy::LegacySession;

/// How the gateway reaches the backend for one client session.
#[derive(Clone)]
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

/// The most a session keeps of a client's `initialize` (its `capabilities` and `clientInfo`
/// as sent, together). Real clients send well under 2 KiB; a larger `initialize` is refused
/// with -32602, so one identity can pin at most this times `MAX_SESSIONS_PER_USER` per server.
pub const MAX_CLIENT_INIT: usize = 16 * 1024;

/// What a session keeps of the client's `initialize`: its `capabilities` and `clientInfo` as
/// the JSON text the client sent (no tree), to re-initialise a backend that lost its session
/// or to send them on to a 2026-07-28 backend.
pub struct ClientInit {
    /// `None`: none sent, read as `{}`.
    capabilities: Option<Box<RawValue>>,
    info: Option<Box<RawValue>>,
    /// `clientInfo.name`, at most 100 characters (read once: every request's record names it).
    name: Option<String>,
    /// The backend's InitializeResult (sessions the gateway holds for itself).
    pub backend_result: Value,
}

impl ClientInit {
    /// Takes `params.capabilities` and `params.clientInfo` from an `initialize` the strict
    /// reading accepted, without building a tree of the body. `Err` when they exceed
    /// `MAX_CLIENT_INIT`.
    pub fn from_body(body: &[u8]) -> Result<ClientInit, crate::mcp::message::Malformed> {
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            params: Option<Params<'a>>,
        }
        #[derive(Deserialize)]
        struct Params<'a> {
            #[serde(borrow)]
            capabilities: Option<&'a RawValue>,
            #[serde(borrow, rename = "clientInfo")]
            client_info: Option<&'a RawValue>,
        }
        let params = serde_json::from_slice::<Body>(body)
            .ok()
            .and_then(|b| b.params);
        let (capabilities, info) = params.map_or((None, None), |p| (p.capabilities, p.client_info));
        let size = capabilities.map_or(0, |c| c.get().len()) + info.map_or(0, |i| i.get().len());
        if size > MAX_CLIENT_INIT {
            return Err(crate::mcp::message::Malformed {
                code: crate::mcp::protocol::code::INVALID_PARAMS,
                reason: "initialize: capabilities and clientInfo exceed 16 KiB",
            });
        }
        let object = |raw: Option<&RawValue>| {
            raw.filter(|r| r.get().starts_with('{'))
                .map(RawValue::to_owned)
        };
        let info = object(info);
        Ok(ClientInit {
            capabilities: object(capabilities),
            name: name_of(info.as_deref()),
            info,
            backend_result: Value::Null,
        })
    }

    /// From values the gateway built itself (its own backend sessions).
    pub fn new(capabilities: &Value, info: &Value) -> ClientInit {
        let raw = |v: &Value| serde_json::value::to_raw_value(v).ok();
        let info = raw(info).filter(|_| info.is_object());
        ClientInit {
            capabilities: raw(capabilities).filter(|_| capabilities.is_object()),
            name: name_of(info.as_deref()),
            info,
            backend_result: Value::Null,
        }
    }

    /// The client's capabilities as JSON text (`{}` when it sent none).
    pub fn capabilities_json(&self) -> &str {
        self.capabilities.as_deref().map_or("{}", RawValue::get)
    }

    /// The client's capabilities (an object).
    pub fn capabilities(&self) -> Value {
        self.capabilities
            .as_ref()
            .and_then(|c| serde_json::from_str(c.get()).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// The client's clientInfo, if it sent one.
    pub fn info(&self) -> Option<Value> {
        self.info
            .as_ref()
            .and_then(|i| serde_json::from_str(i.get()).ok())
    }

    /// The raw `capabilities` and `clientInfo`, as stored for other replicas.
    pub fn stored(&self) -> (Option<String>, Option<String>) {
        (
            self.capabilities.as_ref().map(|c| c.get().to_string()),
            self.info.as_ref().map(|i| i.get().to_string()),
        )
    }

    /// What `stored` gave, read back (only objects are kept, as in `from_body`).
    pub fn from_stored(capabilities: Option<String>, info: Option<String>) -> ClientInit {
        let object = |raw: Option<String>| {
            raw.filter(|r| r.starts_with('{') && r.len() <= MAX_CLIENT_INIT)
                .and_then(|r| RawValue::from_string(r).ok())
        };
        let info = object(info);
        ClientInit {
            capabilities: object(capabilities),
            name: name_of(info.as_deref()),
            info,
            backend_result: Value::Null,
        }
    }

    /// The client's name, for activity records (at most 100 characters).
    pub fn client_name(&self) -> Option<String> {
        self.name.clone()
    }
}

/// `clientInfo.name`, at most 100 characters.
fn name_of(info: Option<&RawValue>) -> Option<String> {
    #[derive(Deserialize)]
    struct Info {
        name: Option<String>,
    }
    let info: Info = serde_json::from_str(info?.get()).ok()?;
    info.name.map(|n| n.chars().take(100).collect())
}

pub struct ProxySession {
    pub id: String,
    /// SHA-256 of `id`, hex: the session's key in the database and the change feed.
    pub id_hash: String,
    pub user_id: i64,
    pub server_id: i64,
    /// The version negotiated with the client.
    pub client_version: String,
    /// What the session keeps of the client's `initialize`.
    pub init: ClientInit,
    pub upstream: tokio::sync::Mutex<Upstream>,
    /// The backend GET stream shared by this session's client GET streams (`hub.rs`).
    pub stream_hub: tokio::sync::Mutex<Option<Arc<crate::mcp::hub::StreamHub>>>,
    last_seen: AtomicI64,
    /// When `last_seen` was last written to the database.
    stored_seen: AtomicI64,
}

/// SHA-256 of a client session id, hex.
pub fn id_hash(id: &str) -> String {
    crate::auth::tokens::hash_token(id)
}

impl ProxySession {
    /// A session not registered in the store (the gateway-held ones).
    pub fn detached(
        user_id: i64,
        server_id: i64,
        client_version: String,
        init: ClientInit,
        upstream: Upstream,
    ) -> ProxySession {
        ProxySession {
            id: String::new(),
            id_hash: String::new(),
            user_id,
            server_id,
            client_version,
            init,
            upstream: tokio::sync::Mutex::new(upstream),
            stream_hub: tokio::sync::Mutex::new(None),
            last_seen: AtomicI64::new(db::now()),
            stored_seen: AtomicI64::new(db::now()),
        }
    }

    /// A session another replica created (or this one forgot), read back from the database.
    pub fn restored(
        id: String,
        row: &db::replicas::ClientSessionRow,
        init: ClientInit,
        upstream: Upstream,
    ) -> ProxySession {
        ProxySession {
            id_hash: row.id_hash.clone(),
            id,
            user_id: row.user_id,
            server_id: row.server_id,
            client_version: row.client_version.clone(),
            init,
            upstream: tokio::sync::Mutex::new(upstream),
            stream_hub: tokio::sync::Mutex::new(None),
            last_seen: AtomicI64::new(db::now()),
            stored_seen: AtomicI64::new(row.last_seen),
        }
    }

    /// Whether the database's `last_seen` should be refreshed now (at most every `every`
    /// seconds; claims the write, so concurrent requests do it once).
    pub fn claim_store_seen(&self, every: i64) -> bool {
        let now = db::now();
        let seen = self.stored_seen.load(Ordering::Relaxed);
        now - seen >= every
            && self
                .stored_seen
                .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// How the backend is reached right now (a copy: the lock is not held while it is used).
    pub async fn upstream_now(&self) -> Upstream {
        self.upstream.lock().await.clone()
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
        init: ClientInit,
        upstream: Upstream,
    ) -> anyhow::Result<Arc<ProxySession>> {
        let id = hex(&random_bytes::<32>()?);
        let session = Arc::new(ProxySession {
            id_hash: id_hash(&id),
            id: id.clone(),
            user_id,
            server_id,
            client_version,
            init,
            upstream: tokio::sync::Mutex::new(upstream),
            stream_hub: tokio::sync::Mutex::new(None),
            last_seen: AtomicI64::new(db::now()),
            stored_seen: AtomicI64::new(db::now()),
        });
        self.insert(session.clone());
        Ok(session)
    }

    /// Keeps a session (new here, or read back from the database) under the per-user cap.
    pub fn insert(&self, session: Arc<ProxySession>) {
        let (id, user_id) = (session.id.clone(), session.user_id);
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
            by_id.insert(id, session);
        }
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
            .create(
                1,
                10,
                "v".into(),
                ClientInit::new(&Value::Null, &Value::Null),
                upstream(),
            )
            .unwrap();
        assert!(store.get(&first.id, 1, 10).is_some());
        assert!(store.get(&first.id, 2, 10).is_none(), "another user");
        assert!(store.get(&first.id, 1, 11).is_none(), "another server");
        for _ in 0..MAX_SESSIONS_PER_USER {
            store
                .create(
                    1,
                    10,
                    "v".into(),
                    ClientInit::new(&Value::Null, &Value::Null),
                    upstream(),
                )
                .unwrap();
        }
        assert_eq!(store.len(), MAX_SESSIONS_PER_USER);
        assert!(
            store.get(&first.id, 1, 10).is_none(),
            "the least recently used went first"
        );
        let other = store
            .create(
                2,
                10,
                "v".into(),
                ClientInit::new(&Value::Null, &Value::Null),
                upstream(),
            )
            .unwrap();
        assert!(
            store.get(&other.id, 2, 10).is_some(),
            "other users are not evicted"
        );
        assert_eq!(store.len(), MAX_SESSIONS_PER_USER + 1);
    }
}
