//! The change feed: how a change made through one replica reaches the others at once.
//!
//! Every change that can take access away or reroute a request (identity state, grants, tool
//! rules, servers, settings, limits, signing keys, ended MCP sessions) is a [`Change`]. The
//! replica that makes it applies it to its own caches first, then [`Changes::send`] moves the
//! local change counter (open connections re-check their caller) and, on Postgres, queues a
//! `NOTIFY` on [`CHANGES_CHANNEL`], sent after the change's transaction committed. Every
//! replica `LISTEN`s (one dedicated connection) and applies what others sent the same way
//! (`state::apply_change`), so a change is enforced everywhere within milliseconds. Polling
//! (the 2 s identity cache, the 5 s reloads) stays as the safety net for a lost notification;
//! a listener that lost its connection, or heard nothing (not even its own heartbeat) for
//! [`SILENCE`], reconnects and applies [`Change::All`], since it may have missed something.
//!
//! On SQLite there is one process, so the feed is the in-process counter only.
//!
//! The live feed rides on [`LIVE_CHANNEL`]: a replica publishes its activity records and
//! security events there only while some other replica has a live subscriber (each says so
//! in its heartbeat), packed into notifications below Postgres's 8000-byte payload limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::live::LiveMessage;
use tokio::sync::{mpsc, watch};

/// The Postgres channel of access and routing changes.
pub const CHANGES_CHANNEL: &str = "authmcp_changes";
/// The Postgres channel of live-feed messages (and replicas' heartbeats).
pub const LIVE_CHANNEL: &str = "authmcp_live";
/// Postgres refuses a `NOTIFY` payload of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;
/// How often a replica says it is alive (and whether it has live subscribers).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A listener that heard nothing, not even its own heartbeat, for this long reconnects.
const SILENCE: Duration = Duration::from_secs(20);
/// How long another replica's "I have live subscribers" holds.
const WATCHING_HOLDS: i64 = 3 * 5;
/// Notifications waiting to be sent; past this, changes collapse into one `All`.
const QUEUE: usize = 4096;

/// A change another replica must apply. Ids only: the receiver re-reads current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", content = "v", rename_all = "snake_case")]
pub enum Change {
    /// A user's role, enabled flag, password or existence changed (and so their sessions).
    User(i64),
    /// A session (sign-in, refresh family, OAuth grant) was revoked: by its id.
    Session(String),
    /// An API key was revoked, changed or deleted.
    ApiKey(i64),
    /// A user's server grants or tool rules changed.
    Grants(i64),
    /// An API key's tool rules changed.
    KeyRules(i64),
    /// Grants of many users changed (a server's grants were replaced).
    AllGrants,
    /// A server was added, changed or removed.
    Servers,
    /// Runtime settings changed.
    Settings,
    /// Rate limits changed.
    Limits,
    /// Signing keys were rotated.
    Keys,
    /// A `/mcp/{server}` client session ended (by the SHA-256 of its id, hex).
    McpSession(String),
    /// An aggregated session ended (its key, and when it would have expired).
    Ended(String, i64),
    /// Anything may have changed: drop every cache and re-read everything.
    All,
}

impl Change {
    /// Whether it can take access away, so open connections must re-check their caller
    /// (ended sessions, settings, limits and key rotations cannot).
    pub fn takes_access(&self) -> bool {
        !matches!(
            self,
            Change::McpSession(_)
                | Change::Ended(..)
                | Change::Settings
                | Change::Limits
                | Change::Keys
        )
    }
}

#[derive(Serialize, Deserialize)]
struct ChangeNote {
    /// The sending replica.
    r: String,
    c: Change,
}

#[derive(Serialize, Deserialize)]
struct LiveNote {
    r: String,
    /// Live-feed messages (absent in a heartbeat).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    m: Vec<LiveMessage>,
    /// Heartbeat: whether the sender has live subscribers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    w: Option<bool>,
}

/// The sending side on Postgres: a queue to the task that issues `NOTIFY`s.
struct Outbound {
    replica: String,
    tx: mpsc::Sender<(&'static str, String)>,
    /// A change could not be queued: the publisher sends `All` once the queue has room.
    overflowed: AtomicBool,
    /// Until when (Unix seconds) another replica has live subscribers.
    watched_until: AtomicI64,
    live: mpsc::Sender<Arc<LiveMessage>>,
    /// Sends a heartbeat now (a live subscriber arrived: others start sharing at once).
    wake: tokio::sync::Notify,
}

/// The change counter open connections watch, and the way out to other replicas. Cheap to
/// clone.
#[derive(Clone)]
pub struct Changes {
    tick: Arc<watch::Sender<u64>>,
    out: Option<Arc<Outbound>>,
}

impl Default for Changes {
    /// In-process only (SQLite, tests).
    fn default() -> Self {
        Changes {
            tick: Arc::new(watch::Sender::new(0)),
            out: None,
        }
    }
}

impl Changes {
    /// Moves the local counter only: open connections on this replica re-check their caller.
    /// For changes this replica applies (its own reloads, what other replicas sent).
    pub fn publish(&self) {
        self.tick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A change made through this replica, already applied to its caches: moves the local
    /// counter (when it can take access away) and tells the other replicas. Never waits; call it after the change committed.
    pub fn send(&self, change: Change) {
        if change.takes_access() {
            self.publish();
        }
        let Some(out) = &self.out else { return };
        let note = ChangeNote {
            r: out.replica.clone(),
            c: change,
        };
        let Ok(text) = serde_json::to_string(&note) else {
            return;
        };
        if text.len() > MAX_PAYLOAD || out.tx.try_send((CHANGES_CHANNEL, text)).is_err() {
            out.overflowed.store(true, Ordering::Release);
        }
    }

    /// `send` for a process about to exit (the CLI): the notification is sent before this
    /// returns.
    pub async fn send_now(&self, pool: &sqlx::AnyPool, change: Change) {
        if change.takes_access() {
            self.publish();
        }
        let Some(out) = &self.out else { return };
        let note = ChangeNote {
            r: out.replica.clone(),
            c: change,
        };
        if let Ok(text) = serde_json::to_string(&note)
            && let Err(e) = crate::db::feed::notify(pool, CHANGES_CHANNEL, &text).await
        {
            tracing::warn!(error = %e, "could not tell running replicas of the change");
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    /// A live subscriber arrived here: tells the other replicas now rather than at the next
    /// heartbeat, so they start sharing their traffic at once.
    pub fn watching_started(&self) {
        if let Some(out) = &self.out {
            out.wake.notify_one();
        }
    }

    /// Whether another replica has live subscribers right now.
    pub fn watched_elsewhere(&self) -> bool {
        self.out
            .as_ref()
            .is_some_and(|o| o.watched_until.load(Ordering::Relaxed) > crate::db::now())
    }

    /// Offers a live-feed message to other replicas (only while one has subscribers; dropped
    /// when the queue is full, like a slow local subscriber's).
    pub fn share_live(&self, message: impl FnOnce() -> Arc<LiveMessage>) {
        if let Some(out) = &self.out
            && out.watched_until.load(Ordering::Relaxed) > crate::db::now()
        {
            let _ = out.live.try_send(message());
        }
    }
}

/// What a replica does with what others sent.
pub struct Handlers<C, L, W> {
    /// Applies a change (drops caches, re-reads).
    pub change: C,
    /// Hands live-feed messages to this replica's subscribers.
    pub live: L,
    /// Whether this replica has live subscribers (said in its heartbeat).
    pub watching: W,
}

/// Starts the feed on Postgres: the publisher (one `NOTIFY` at a time on the pool), the
/// live-message packer, the heartbeat and the listener. Returns the `Changes` to hand to the
/// caches. `url` is the database URL (the listener holds a connection of its own).
pub fn start_postgres<C, F, L, W>(
    pool: sqlx::AnyPool,
    url: String,
    handlers: Handlers<C, L, W>,
) -> anyhow::Result<Changes>
where
    C: Fn(Change) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
    L: Fn(Vec<LiveMessage>) + Send + Sync + 'static,
    W: Fn() -> bool + Send + Sync + 'static,
{
    let replica = crate::auth::identity::hex(&crate::keys::random_bytes::<8>()?);
    let (tx, rx) = mpsc::channel(QUEUE);
    let (live_tx, live_rx) = mpsc::channel(QUEUE);
    let out = Arc::new(Outbound {
        replica: replica.clone(),
        tx,
        overflowed: AtomicBool::new(false),
        watched_until: AtomicI64::new(0),
        live: live_tx,
        wake: tokio::sync::Notify::new(),
    });
    let handlers = Arc::new(handlers);
    // These two hold the `Outbound` weakly: when the state and the tasks below are gone, the
    // queues close and they end.
    tokio::spawn(publish(pool.clone(), rx, Arc::downgrade(&out)));
    tokio::spawn(pack_live(live_rx, Arc::downgrade(&out)));
    {
        let out = out.clone();
        let handlers = handlers.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = out.wake.notified() => {}
                }
                if pool.is_closed() {
                    break;
                }
                let watching = (handlers.watching)();
                let note = LiveNote {
                    r: out.replica.clone(),
                    m: Vec::new(),
                    w: Some(watching),
                };
                if let Ok(text) = serde_json::to_string(&note) {
                    let _ = out.tx.send((LIVE_CHANNEL, text)).await;
                }
            }
        });
    }
    tokio::spawn(listen(pool, url, out.clone(), handlers));
    Ok(Changes {
        tick: Arc::new(watch::Sender::new(0)),
        out: Some(out),
    })
}

/// Sends queued notifications, one at a time; after an overflow, one `All` (other replicas
/// then re-read everything, so nothing dropped is lost).
async fn publish(
    pool: sqlx::AnyPool,
    mut rx: mpsc::Receiver<(&'static str, String)>,
    out: std::sync::Weak<Outbound>,
) {
    while let Some((channel, payload)) = rx.recv().await {
        let Some(out) = out.upgrade() else { break };
        if let Err(e) = crate::db::feed::notify(&pool, channel, &payload).await {
            if pool.is_closed() {
                break;
            }
            tracing::warn!(error = %e, "could not tell other replicas of a change (they re-read within seconds)");
        }
        if rx.is_empty() && out.overflowed.swap(false, Ordering::AcqRel) {
            let note = ChangeNote {
                r: out.replica.clone(),
                c: Change::All,
            };
            if let Ok(text) = serde_json::to_string(&note) {
                let _ = crate::db::feed::notify(&pool, CHANGES_CHANNEL, &text).await;
            }
        }
    }
}

/// Packs live-feed messages into notifications below the payload limit.
async fn pack_live(mut rx: mpsc::Receiver<Arc<LiveMessage>>, out: std::sync::Weak<Outbound>) {
    let Some(prefix) = out
        .upgrade()
        .map(|o| format!("{{\"r\":\"{}\",\"m\":[", o.replica))
    else {
        return;
    };
    while let Some(first) = rx.recv().await {
        let Some(out) = out.upgrade() else { break };
        let mut text = prefix.clone();
        let mut count = 0usize;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            let Ok(json) = serde_json::to_string(&*message) else {
                next = rx.try_recv().ok();
                continue;
            };
            // A message that cannot fit one notification is not shared (the other replicas'
            // admins see it in the security-event and activity lists).
            if prefix.len() + json.len() + 2 > MAX_PAYLOAD {
                next = rx.try_recv().ok();
                continue;
            }
            if text.len() + json.len() + 2 > MAX_PAYLOAD {
                next = Some(message);
                break;
            }
            if count > 0 {
                text.push(',');
            }
            text.push_str(&json);
            count += 1;
            next = rx.try_recv().ok();
        }
        if count > 0 {
            text.push_str("]}");
            if out.tx.send((LIVE_CHANNEL, text)).await.is_err() {
                return;
            }
        }
        // A message that did not fit this notification starts the next one.
        if let Some(message) = next {
            let mut text = prefix.clone();
            if let Ok(json) = serde_json::to_string(&*message) {
                text.push_str(&json);
                text.push_str("]}");
                if text.len() <= MAX_PAYLOAD && out.tx.send((LIVE_CHANNEL, text)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Listens on both channels and applies what other replicas sent; reconnects when the
/// connection is lost or silent, then applies `All`.
async fn listen<C, F, L, W>(
    pool: sqlx::AnyPool,
    url: String,
    out: Arc<Outbound>,
    h: Arc<Handlers<C, L, W>>,
) where
    C: Fn(Change) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
    L: Fn(Vec<LiveMessage>) + Send + Sync + 'static,
    W: Fn() -> bool + Send + Sync + 'static,
{
    let mut first = true;
    loop {
        if pool.is_closed() {
            return;
        }
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "change feed: cannot connect to listen; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen_all([CHANGES_CHANNEL, LIVE_CHANNEL]).await {
            tracing::warn!(error = %e, "change feed: LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if !first {
            (h.change)(Change::All).await;
        }
        first = false;
        tracing::debug!("change feed: listening");
        loop {
            let next = match tokio::time::timeout(SILENCE, listener.try_recv()).await {
                Ok(Ok(Some(n))) => n,
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::warn!(
                        "change feed: the listening connection was lost or silent; reconnecting"
                    );
                    break;
                }
            };
            match next.channel() {
                CHANGES_CHANNEL => {
                    if let Ok(note) = serde_json::from_str::<ChangeNote>(next.payload())
                        && note.r != out.replica
                    {
                        (h.change)(note.c).await;
                    }
                }
                LIVE_CHANNEL => {
                    let Ok(note) = serde_json::from_str::<LiveNote>(next.payload()) else {
                        continue;
                    };
                    if note.r == out.replica {
                        continue;
                    }
                    if note.w == Some(true) {
                        out.watched_until
                            .store(crate::db::now() + WATCHING_HOLDS, Ordering::Relaxed);
                    }
                    if !note.m.is_empty() {
                        (h.live)(note.m);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_and_stay_small() {
        for change in [
            Change::User(7),
            Change::Session("abc".into()),
            Change::Grants(1),
            Change::All,
            Change::McpSession("ff".repeat(32)),
        ] {
            let note = ChangeNote {
                r: "0011223344556677".into(),
                c: change.clone(),
            };
            let text = serde_json::to_string(&note).unwrap();
            assert!(text.len() < 200, "{text}");
            let back: ChangeNote = serde_json::from_str(&text).unwrap();
            assert_eq!(back.c, change);
        }
    }

    #[test]
    fn local_feed_moves_the_counter() {
        let changes = Changes::default();
        let rx = changes.subscribe();
        changes.send(Change::User(1));
        assert!(rx.has_changed().unwrap());
        assert!(!changes.watched_elsewhere());
    }
}
