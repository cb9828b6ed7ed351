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
//! Changes have a queue of their own, sent before any live traffic, so a busy live feed
//! never delays or drops a revocation; a change that cannot be queued or sent becomes one
//! `All` as soon as the database takes it.
//!
//! Every notification is sealed with the gateway's key (`SecretBox`, AES-256-GCM, one
//! context per channel) and carries its time: Postgres lets any role that can connect
//! `NOTIFY` and `LISTEN` on any channel, so a note that does not open, or is older than a
//! minute (a replay), is ignored, and other roles cannot read the live traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::live::LiveMessage;
use tokio::sync::{mpsc, watch};

use crate::keys::SecretBox;

/// The Postgres channel of access and routing changes.
pub const CHANGES_CHANNEL: &str = "authmcp_changes";
/// The Postgres channel of live-feed messages (and replicas' heartbeats).
pub const LIVE_CHANNEL: &str = "authmcp_live";
/// Postgres refuses a `NOTIFY` payload of 8000 bytes or more; sealed and base64-encoded, a
/// note of this much JSON stays below.
const MAX_JSON: usize = 5800;
/// How often a replica says it is alive (and whether it has live subscribers).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A listener that heard nothing, not even its own heartbeat, for this long reconnects.
const SILENCE: Duration = Duration::from_secs(20);
/// How long another replica's "I have live subscribers" holds.
const WATCHING_HOLDS: i64 = 3 * 5;
/// Notes older (or newer) than this are ignored: replays.
const MAX_AGE: i64 = 60;
/// Changes waiting to be sent; past this, they collapse into one `All`.
const QUEUE: usize = 4096;
/// Live-feed notifications waiting to be sent; past this, live traffic is dropped.
const LIVE_QUEUE: usize = 256;

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
    /// A backend OAuth credential was connected, reconnected or disconnected: (server, user;
    /// 0 for the server's own).
    BackendToken(i64, i64),
    /// A server's pinned tool definitions changed (a backend sent another one, or an admin
    /// decided): by server id.
    Pins(i64),
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
                | Change::BackendToken(..)
                | Change::Pins(_)
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
    /// When it was sent (Unix seconds).
    t: i64,
    c: Change,
}

#[derive(Serialize, Deserialize)]
struct LiveNote {
    r: String,
    t: i64,
    /// Live-feed messages (absent in a heartbeat).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    m: Vec<LiveMessage>,
    /// Heartbeat: whether the sender has live subscribers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    w: Option<bool>,
}

fn seal_context(channel: &str) -> String {
    format!("feed:{channel}")
}

/// The sending side on Postgres: queues to the task that issues `NOTIFY`s.
struct Outbound {
    replica: String,
    secret: Arc<SecretBox>,
    /// Sealed change notes (sent first).
    changes: mpsc::Sender<String>,
    /// Sealed live notes (packed messages, heartbeats).
    live_out: mpsc::Sender<String>,
    /// A change could not be queued or sent: the publisher sends `All` once it can.
    overflowed: AtomicBool,
    /// Until when (Unix seconds) another replica has live subscribers.
    watched_until: AtomicI64,
    live: mpsc::Sender<Arc<LiveMessage>>,
    /// Sends a heartbeat now (a live subscriber arrived: others start sharing at once).
    wake: tokio::sync::Notify,
}

impl Outbound {
    fn seal(&self, channel: &str, json: &[u8]) -> Option<String> {
        use base64::Engine;
        let sealed = self.secret.seal(json, &seal_context(channel)).ok()?;
        Some(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    fn change_note(&self, change: Change) -> Option<String> {
        let json = serde_json::to_vec(&ChangeNote {
            r: self.replica.clone(),
            t: crate::db::now(),
            c: change,
        })
        .ok()?;
        (json.len() <= MAX_JSON)
            .then(|| self.seal(CHANGES_CHANNEL, &json))
            .flatten()
    }
}

/// Opens a sealed note; `None` unless it opens and is recent.
fn open_note<T: serde::de::DeserializeOwned>(
    secret: &SecretBox,
    channel: &str,
    payload: &str,
    time: impl Fn(&T) -> i64,
) -> Option<T> {
    use base64::Engine;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    let json = secret.open(&sealed, &seal_context(channel)).ok()?;
    let note: T = serde_json::from_slice(&json).ok()?;
    ((time(&note) - crate::db::now()).abs() <= MAX_AGE).then_some(note)
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
    /// counter (when it can take access away) and tells the other replicas. Never waits;
    /// call it after the change committed.
    pub fn send(&self, change: Change) {
        if change.takes_access() {
            self.publish();
        }
        let Some(out) = &self.out else { return };
        let queued = out
            .change_note(change)
            .is_some_and(|note| out.changes.try_send(note).is_ok());
        if !queued {
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
        if let Some(note) = out.change_note(change)
            && let Err(e) = crate::db::feed::notify(pool, CHANGES_CHANNEL, &note).await
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

/// The listening side, started once the state that applies changes exists.
pub struct Listener<C, L, W> {
    pool: sqlx::AnyPool,
    url: String,
    out: Arc<Outbound>,
    handlers: Handlers<C, L, W>,
}

/// Starts the feed's sending side on Postgres: the publisher (one `NOTIFY` at a time on the
/// pool, changes first), the live-message packer and the heartbeat. Returns the `Changes` to
/// hand to the caches and the `Listener` to start when the state exists. `url` is the
/// database URL (the listener holds a connection of its own).
pub fn start_postgres<C, F, L, W>(
    pool: sqlx::AnyPool,
    url: String,
    secret: Arc<SecretBox>,
    handlers: Handlers<C, L, W>,
) -> anyhow::Result<(Changes, Listener<C, L, W>)>
where
    C: Fn(Change) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
    L: Fn(Vec<LiveMessage>) + Send + Sync + 'static,
    W: Fn() -> bool + Send + Sync + 'static,
{
    let replica = crate::auth::identity::hex(&crate::keys::random_bytes::<8>()?);
    let (changes_tx, changes_rx) = mpsc::channel(QUEUE);
    let (live_out_tx, live_out_rx) = mpsc::channel(LIVE_QUEUE);
    let (live_tx, live_rx) = mpsc::channel(QUEUE);
    let out = Arc::new(Outbound {
        replica,
        secret,
        changes: changes_tx,
        live_out: live_out_tx,
        overflowed: AtomicBool::new(false),
        watched_until: AtomicI64::new(0),
        live: live_tx,
        wake: tokio::sync::Notify::new(),
    });
    // These two hold the `Outbound` weakly: when the state, the heartbeat and the listener
    // are gone (the pool closed), the queues close and they end.
    tokio::spawn(publish(
        pool.clone(),
        changes_rx,
        live_out_rx,
        Arc::downgrade(&out),
    ));
    tokio::spawn(pack_live(live_rx, Arc::downgrade(&out)));
    Ok((
        Changes {
            tick: Arc::new(watch::Sender::new(0)),
            out: Some(out.clone()),
        },
        Listener {
            pool,
            url,
            out,
            handlers,
        },
    ))
}

impl<C, F, L, W> Listener<C, L, W>
where
    C: Fn(Change) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
    L: Fn(Vec<LiveMessage>) + Send + Sync + 'static,
    W: Fn() -> bool + Send + Sync + 'static,
{
    /// Starts the heartbeat and the listener (both end when the pool is closed).
    pub fn start(self) {
        let handlers = Arc::new(self.handlers);
        {
            let (out, handlers, pool) = (self.out.clone(), handlers.clone(), self.pool.clone());
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
                    let note = LiveNote {
                        r: out.replica.clone(),
                        t: crate::db::now(),
                        m: Vec::new(),
                        w: Some((handlers.watching)()),
                    };
                    if let Some(sealed) = serde_json::to_vec(&note)
                        .ok()
                        .and_then(|json| out.seal(LIVE_CHANNEL, &json))
                    {
                        let _ = out.live_out.send(sealed).await;
                    }
                }
            });
        }
        tokio::spawn(listen(self.pool, self.url, self.out, handlers));
    }
}

/// Sends queued notifications, one at a time, changes before live traffic; after a change
/// was lost (queue full, send failed), one `All` as soon as the database takes it (other
/// replicas then re-read everything).
async fn publish(
    pool: sqlx::AnyPool,
    mut changes: mpsc::Receiver<String>,
    mut live: mpsc::Receiver<String>,
    out: std::sync::Weak<Outbound>,
) {
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next = tokio::select! {
            biased;
            note = changes.recv() => match note {
                Some(note) => Some((CHANGES_CHANNEL, note)),
                None => break,
            },
            note = live.recv() => match note {
                Some(note) => Some((LIVE_CHANNEL, note)),
                None => break,
            },
            _ = retry.tick() => None,
        };
        let Some(out) = out.upgrade() else { break };
        if let Some((channel, note)) = next
            && let Err(e) = crate::db::feed::notify(&pool, channel, &note).await
        {
            if pool.is_closed() {
                break;
            }
            if channel == CHANGES_CHANNEL {
                out.overflowed.store(true, Ordering::Release);
                tracing::warn!(error = %e, "could not tell other replicas of a change (they re-read everything once the database answers)");
            }
        }
        if changes.is_empty()
            && out.overflowed.swap(false, Ordering::AcqRel)
            && let Some(note) = out.change_note(Change::All)
            && crate::db::feed::notify(&pool, CHANGES_CHANNEL, &note)
                .await
                .is_err()
        {
            out.overflowed.store(true, Ordering::Release);
        }
    }
}

/// Packs live-feed messages into notifications below the payload limit (a message too large
/// for one is not shared; the other replicas' admins see it in the lists).
async fn pack_live(mut rx: mpsc::Receiver<Arc<LiveMessage>>, out: std::sync::Weak<Outbound>) {
    let mut carried: Option<String> = None;
    loop {
        let first = match carried.take() {
            Some(json) => json,
            None => match rx.recv().await {
                Some(message) => match serde_json::to_string(&*message) {
                    Ok(json) => json,
                    Err(_) => continue,
                },
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut size = batch[0].len();
        while let Ok(message) = rx.try_recv() {
            let Ok(json) = serde_json::to_string(&*message) else {
                continue;
            };
            if size + json.len() + 200 > MAX_JSON {
                carried = Some(json);
                break;
            }
            size += json.len() + 1;
            batch.push(json);
        }
        if size + 200 > MAX_JSON {
            continue;
        }
        let Some(out) = out.upgrade() else { return };
        let json = format!(
            "{{\"r\":\"{}\",\"t\":{},\"m\":[{}]}}",
            out.replica,
            crate::db::now(),
            batch.join(",")
        );
        if let Some(sealed) = out.seal(LIVE_CHANNEL, json.as_bytes()) {
            // Dropped when the database falls behind, like a slow subscriber's messages.
            let _ = out.live_out.try_send(sealed);
        }
    }
}

/// Listens on both channels and applies what other replicas sent. Whenever it (re)connects,
/// it applies `All` first: anything may have changed while it was not listening. It
/// reconnects when the connection is lost or silent.
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
        (h.change)(Change::All).await;
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
                    if let Some(note) =
                        open_note::<ChangeNote>(&out.secret, CHANGES_CHANNEL, next.payload(), |n| {
                            n.t
                        })
                        && note.r != out.replica
                    {
                        (h.change)(note.c).await;
                    }
                }
                LIVE_CHANNEL => {
                    let Some(note) =
                        open_note::<LiveNote>(&out.secret, LIVE_CHANNEL, next.payload(), |n| n.t)
                    else {
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
                t: 0,
                c: change.clone(),
            };
            let text = serde_json::to_string(&note).unwrap();
            assert!(text.len() < 200, "{text}");
            let back: ChangeNote = serde_json::from_str(&text).unwrap();
            assert_eq!(back.c, change);
        }
    }

    #[test]
    fn notes_open_only_sealed_recent_and_on_their_channel() {
        let secret = SecretBox::new(&[7; 32]);
        let seal = |channel: &str, t: i64| {
            use base64::Engine;
            let json = serde_json::to_vec(&ChangeNote {
                r: "a".into(),
                t,
                c: Change::All,
            })
            .unwrap();
            base64::engine::general_purpose::STANDARD
                .encode(secret.seal(&json, &seal_context(channel)).unwrap())
        };
        let now = crate::db::now();
        let open = |payload: &str| {
            open_note::<ChangeNote>(&secret, CHANGES_CHANNEL, payload, |n| n.t).map(|n| n.c)
        };
        assert_eq!(open(&seal(CHANGES_CHANNEL, now)), Some(Change::All));
        assert_eq!(
            open(&seal(LIVE_CHANNEL, now)),
            None,
            "another channel's note"
        );
        assert_eq!(open(&seal(CHANGES_CHANNEL, now - 600)), None, "a replay");
        assert_eq!(
            open(r#"{"r":"x","t":0,"c":{"k":"all"}}"#),
            None,
            "not sealed"
        );
        let other = SecretBox::new(&[8; 32]);
        let foreign = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .encode(other.seal(b"{}", &seal_context(CHANGES_CHANNEL)).unwrap())
        };
        assert_eq!(open(&foreign), None, "another key");
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
