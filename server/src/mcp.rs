//! The MCP side of the gateway: the registry of backends, the backend client, client sessions,
//! the per-server proxy (`/mcp/{server}`), activity records and health checks.
//! `mcp/README.md` explains the protocol handling.

pub mod activity;
pub mod aggregate;
pub mod backend;
pub mod bridge;
pub mod error;
pub mod gate;
pub mod health;
pub mod hub;
pub mod inspect;
pub mod legacy;
pub mod link;
pub mod message;
pub mod naming;
pub mod pins;
pub mod protocol;
pub mod proxy;
pub mod registry;
pub mod relay;
pub mod session;
pub mod splice;
pub mod sse;
pub mod upstream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};

use crate::config::Config;
use crate::db::Db;
use crate::filelog::FileLog;
use crate::keys::SecretBox;
use crate::live::LiveHub;
use crate::mcp::activity::ActivitySink;
use crate::mcp::aggregate::links::AggregateState;
use crate::mcp::backend::{BackendClient, BackendError, client_info};
use crate::mcp::registry::{Era, Registry};
use crate::mcp::session::{ClientInit, ProxySession, SessionStore, Upstream};
use crate::metrics::Metrics;
use crate::ratelimit::{LimitTable, McpLimits};
use crate::state::AppState;

/// How often the server list is re-read for edits made by other replicas.
const REGISTRY_RELOAD: Duration = Duration::from_secs(5);
const SESSION_SWEEP: Duration = Duration::from_secs(60);

pub struct McpState {
    pub registry: Registry,
    /// OAuth credentials toward backends (`backend_auth.rs`).
    pub tokens: Arc<crate::backend_auth::Tokens>,
    pub client: BackendClient,
    pub sessions: Arc<SessionStore>,
    /// Backend sessions the gateway holds for 2026-07-28 clients of older backends, per
    /// (user, server).
    held: Mutex<HashMap<(i64, i64), Arc<ProxySession>>>,
    pub activity: ActivitySink,
    pub metrics: Arc<Metrics>,
    pub limits: McpLimits,
    /// MCP requests in progress per user (`MCP_MAX_CONCURRENT_PER_USER`).
    pub concurrency: crate::ratelimit::Concurrency,
    pub aggregate: AggregateState,
    /// Pinned tool definitions (`pins.rs`).
    pub pins: pins::Pins,
    ids: AtomicU64,
    db: Db,
    secret_box: Arc<SecretBox>,
    changes: crate::feed::Changes,
    /// Sessions ended elsewhere lately (SHA-256 of the id → when): a restore that read the
    /// row before the end was applied does not bring the session back.
    recently_ended: Mutex<HashMap<String, i64>>,
    /// `MCP_SESSION_IDLE_SECS`: a stored session's `last_seen` is refreshed well within it.
    session_idle: Duration,
}

/// How long an ended session is remembered against a racing restore, and how many.
const RECENTLY_ENDED_SECS: i64 = 120;
const RECENTLY_ENDED_MAX: usize = 10_000;

/// Associated data of a stored backend session id: bound to its row.
fn backend_session_context(id_hash: &str) -> String {
    format!("mcp_client_sessions:{id_hash}:backend")
}

impl McpState {
    /// A fresh number for the gateway's own JSON-RPC ids.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    pub async fn init(
        db: Db,
        secret_box: Arc<SecretBox>,
        config: Arc<Config>,
        live: LiveHub,
        retention_days: Arc<std::sync::atomic::AtomicU32>,
        changes: crate::feed::Changes,
        events: crate::events::EventSink,
    ) -> anyhow::Result<Arc<McpState>> {
        let mut limits = McpLimits::new(&config.mcp.rate_limits, config.mcp.user_bytes_per_minute);
        if db.backend == crate::db::Backend::Postgres {
            limits = limits.share(db.pool.clone());
        }
        limits.set(load_limit_table(db.clone(), &config).await?);
        let tokens = crate::backend_auth::Tokens::new(
            db.clone(),
            secret_box.clone(),
            events,
            config.public_url.clone(),
        );
        let registry = Registry::load(
            db.clone(),
            secret_box.clone(),
            config.clone(),
            changes.clone(),
            tokens.clone(),
        )
        .await?;
        let metrics = Arc::new(Metrics::default());
        let aggregate = AggregateState::default();
        let pins = pins::Pins::load(db.clone()).await?;
        // Sessions ended by DELETE before this replica started.
        for (key, expires_at) in
            crate::db::replicas::ended_aggregated(&db.pool, crate::db::now(), 100_001).await?
        {
            aggregate.mark_ended(&key, expires_at);
        }
        Ok(Arc::new(McpState {
            registry,
            tokens,
            client: BackendClient::new()?,
            sessions: Arc::default(),
            held: Mutex::default(),
            activity: ActivitySink::spawn(
                db.clone(),
                metrics.clone(),
                live,
                Some(FileLog::new(&config.log_dir, "activity", retention_days)),
            ),
            metrics,
            limits,
            concurrency: crate::ratelimit::Concurrency::new(config.mcp.max_concurrent_per_user),
            aggregate,
            pins,
            ids: AtomicU64::new(1),
            recently_ended: Mutex::default(),
            session_idle: config.mcp.session_idle,
            db,
            secret_box,
            changes,
        }))
    }

    /// Re-reads the rate limits (after an admin edit here, or periodically for other replicas).
    pub async fn reload_limits(&self, db: &Db, config: &Config) -> anyhow::Result<()> {
        let table = load_limit_table(db.clone(), config).await?;
        if *self.limits.table() != table {
            self.limits.set(table);
        }
        Ok(())
    }

    /// Applies an admin edit to the live proxy at once.
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.registry.reload().await?;
        let live = self.registry.snapshot();
        let live_ids: Vec<i64> = live.values().filter(|b| b.enabled).map(|b| b.id).collect();
        self.pins
            .retain(&live.values().map(|b| b.id).collect::<Vec<_>>());
        self.sessions
            .remove_where(|s| live_ids.contains(&s.server_id));
        if let Ok(mut held) = self.held.lock() {
            held.retain(|(_, server), _| live_ids.contains(server));
        }
        let versions = live
            .values()
            .filter(|b| b.enabled)
            .map(|b| (b.id, b.row.updated_at))
            .collect();
        self.aggregate.catalog.retain_current(&versions);
        self.aggregate
            .retain_links(|_, server| live_ids.contains(&server), None);
        Ok(())
    }

    /// Applies a grant change: the cached grants go; on a revoke, so do the user's sessions
    /// with that server (they would be refused anyway: every request is authorised anew).
    pub fn forget_access(&self, user_id: i64, server_id: i64, can_access: bool) {
        self.registry.invalidate_grants(user_id);
        if !can_access {
            self.sessions
                .remove_where(|s| !(s.user_id == user_id && s.server_id == server_id));
            if let Ok(mut held) = self.held.lock() {
                held.remove(&(user_id, server_id));
            }
            self.aggregate.retain_links(
                |user, server| !(user == user_id && server == server_id),
                None,
            );
        }
    }

    /// Forgets a user's sessions and cached grants (user disabled, demoted or deleted).
    pub fn forget_user(&self, user_id: i64) {
        self.registry.invalidate_grants(user_id);
        self.drop_user_sessions(user_id);
    }

    /// A user's client sessions, held sessions and aggregated backend links here.
    fn drop_user_sessions(&self, user_id: i64) {
        self.sessions.remove_where(|s| s.user_id != user_id);
        if let Ok(mut held) = self.held.lock() {
            held.retain(|(user, _), _| *user != user_id);
        }
        self.aggregate.retain_links(|user, _| user != user_id, None);
    }

    /// Whether client sessions are stored for other replicas (Postgres). On SQLite there is
    /// one process: sessions stay in its memory and cost no database round trip.
    fn shares_sessions(&self) -> bool {
        self.db.backend == crate::db::Backend::Postgres
    }

    /// Starts a `/mcp/{server}` client session, stored so any replica can serve it.
    pub async fn create_session(
        &self,
        user_id: i64,
        server_id: i64,
        client_version: String,
        init: ClientInit,
        upstream: Upstream,
    ) -> anyhow::Result<Arc<ProxySession>> {
        let (capabilities, client_info) = init.stored();
        let session = self
            .sessions
            .create(user_id, server_id, client_version, init, upstream)?;
        if !self.shares_sessions() {
            return Ok(session);
        }
        let (kind, backend_session, backend_version) = self.stored_upstream(&session).await?;
        let now = crate::db::now();
        let row = crate::db::replicas::ClientSessionRow {
            id_hash: session.id_hash.clone(),
            user_id,
            server_id,
            client_version: session.client_version.clone(),
            capabilities,
            client_info,
            upstream: kind.into(),
            backend_session,
            backend_version,
            created_at: now,
            last_seen: now,
        };
        let keep = i64::try_from(crate::mcp::session::MAX_SESSIONS_PER_USER).unwrap_or(256);
        if let Err(e) = crate::db::replicas::insert_client_session(&self.db.pool, &row, keep).await
        {
            self.sessions.remove(&session.id);
            return Err(anyhow::Error::new(e).context("storing the session"));
        }
        Ok(session)
    }

    /// How a session's upstream is stored: kind, sealed backend session id, backend version.
    async fn stored_upstream(
        &self,
        session: &ProxySession,
    ) -> anyhow::Result<(&'static str, Option<String>, Option<String>)> {
        use base64::Engine;
        Ok(match session.upstream_now().await {
            Upstream::Http {
                session_id,
                version,
            } => {
                let sealed = match session_id {
                    Some(id) => Some(
                        base64::engine::general_purpose::STANDARD.encode(
                            self.secret_box
                                .seal(id.as_bytes(), &backend_session_context(&session.id_hash))?,
                        ),
                    ),
                    None => None,
                };
                ("http", sealed, Some(version))
            }
            Upstream::Modern => ("modern", None, None),
            Upstream::Legacy(_) => ("legacy", None, None),
        })
    }

    /// Stores the backend session a re-initialisation opened, for the other replicas.
    pub async fn store_upstream(&self, session: &ProxySession) {
        if session.id_hash.is_empty() || !self.shares_sessions() {
            return;
        }
        let stored = match self.stored_upstream(session).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "sealing a backend session id failed"
                );
                return;
            }
        };
        if let (_, backend, Some(version)) = stored
            && let Err(e) = crate::db::replicas::set_backend_session(
                &self.db.pool,
                &session.id_hash,
                backend.as_deref(),
                &version,
            )
            .await
        {
            tracing::warn!(error = %e, "storing a re-initialised backend session failed");
        }
    }

    /// The caller's session on this server: from memory, else from the database (created on
    /// another replica, or forgotten here after idling), re-opening the backend side where it
    /// is a stream this replica must hold itself.
    pub async fn find_session(
        &self,
        id: &str,
        user_id: i64,
        backend: &crate::mcp::registry::Backend,
    ) -> Result<Arc<ProxySession>, Option<i64>> {
        if let Some(session) = self.sessions.get(id, user_id, backend.id) {
            self.store_seen(&session);
            return Ok(session);
        }
        // `Err(Some(owner))`: the id names a session of this owner (someone else's, or this
        // caller's on another server), read once for the caller's hijack check.
        if let Some(owner) = self.sessions.owner(id) {
            return Err(Some(owner));
        }
        if !self.shares_sessions() || id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(None);
        }
        let hash = crate::mcp::session::id_hash(id);
        let row = match crate::db::replicas::client_session(&self.db.pool, &hash).await {
            Ok(Some(row)) if row.user_id == user_id && row.server_id == backend.id => row,
            Ok(Some(row)) => return Err(Some(row.user_id)),
            Ok(None) => return Err(None),
            Err(e) => {
                tracing::warn!(error = %e, "reading an MCP session failed");
                return Err(None);
            }
        };
        self.restore(id, &row, backend).await.ok_or(None)
    }

    /// Rebuilds a stored session here, opening the backend side where it is a stream this
    /// replica must hold itself.
    async fn restore(
        &self,
        id: &str,
        row: &crate::db::replicas::ClientSessionRow,
        backend: &crate::mcp::registry::Backend,
    ) -> Option<Arc<ProxySession>> {
        let user_id = row.user_id;
        let init = ClientInit::from_stored(row.capabilities.clone(), row.client_info.clone());
        let upstream = match row.upstream.as_str() {
            "http" => {
                use base64::Engine;
                let session_id = match &row.backend_session {
                    Some(sealed) => {
                        let opened = base64::engine::general_purpose::STANDARD
                            .decode(sealed)
                            .ok()
                            .and_then(|b| {
                                self.secret_box
                                    .open(&b, &backend_session_context(&row.id_hash))
                                    .ok()
                            })
                            .and_then(|b| String::from_utf8(b).ok());
                        Some(opened?)
                    }
                    None => None,
                };
                Upstream::Http {
                    session_id,
                    version: row
                        .backend_version
                        .clone()
                        .unwrap_or_else(|| row.client_version.clone()),
                }
            }
            "modern" => Upstream::Modern,
            _ => {
                // The HTTP+SSE stream was held by another replica: this one opens its own.
                let target = &backend.target;
                let mut legacy = crate::mcp::legacy::LegacySession::connect(&self.client, target)
                    .await
                    .ok()?;
                legacy
                    .initialize(init.capabilities(), init.info().unwrap_or_else(client_info))
                    .await
                    .ok()?;
                Upstream::Legacy(Arc::new(tokio::sync::Mutex::new(legacy)))
            }
        };
        let session = Arc::new(ProxySession::restored(id.to_string(), row, init, upstream));
        // Another request may have restored it meanwhile: keep one.
        if let Some(existing) = self.sessions.get(id, user_id, backend.id) {
            return Some(existing);
        }
        self.sessions.insert(session.clone());
        // Ended elsewhere while it was being restored (the end was applied before the insert).
        if self.ended_lately(&session.id_hash) {
            self.sessions.remove(id);
            return None;
        }
        self.store_seen(&session);
        Some(session)
    }

    /// Whether a session was ended on another replica within `RECENTLY_ENDED_SECS`.
    fn ended_lately(&self, hash: &str) -> bool {
        self.recently_ended
            .lock()
            .map_or(true, |ended| ended.contains_key(hash))
    }

    /// Refreshes the stored `last_seen` of a session in use (at most once a minute, and at
    /// least four times per `MCP_SESSION_IDLE_SECS`); a row that is gone (ended or evicted
    /// elsewhere) ends the session here too.
    fn store_seen(&self, session: &Arc<ProxySession>) {
        let every = i64::try_from(self.session_idle.as_secs() / 4)
            .unwrap_or(60)
            .clamp(1, 60);
        if !self.shares_sessions() || session.id_hash.is_empty() || !session.claim_store_seen(every)
        {
            return;
        }
        let (pool, session) = (self.db.pool.clone(), session.clone());
        let sessions = Arc::downgrade(&self.sessions);
        tokio::spawn(async move {
            if let Ok(0) =
                crate::db::replicas::touch_client_session(&pool, &session.id_hash, crate::db::now())
                    .await
                && let Some(sessions) = sessions.upgrade()
            {
                sessions.remove(&session.id);
            }
        });
    }

    /// Ends a session everywhere: here, in the database, and on every other replica.
    /// `Err` when the stored row could not be deleted (the session would come back: the client
    /// is told to retry rather than that it ended).
    pub async fn end_session(
        &self,
        session: &ProxySession,
    ) -> anyhow::Result<Option<Arc<ProxySession>>> {
        if !self.shares_sessions() {
            return Ok(self.sessions.remove(&session.id));
        }
        crate::db::replicas::delete_client_session(&self.db.pool, &session.id_hash).await?;
        self.changes
            .send(crate::feed::Change::McpSession(session.id_hash.clone()));
        Ok(self.sessions.remove(&session.id))
    }

    /// Applies a change another replica made: cached grants and rules go, and a changed user's
    /// sessions here (the next request re-reads them; streams re-check at once).
    pub async fn apply(&self, change: &crate::feed::Change) {
        use crate::feed::Change;
        self.registry.forget(change);
        match change {
            Change::User(user_id) => self.drop_user_sessions(*user_id),
            Change::McpSession(hash) => {
                if let Ok(mut ended) = self.recently_ended.lock() {
                    let now = crate::db::now();
                    if ended.len() >= RECENTLY_ENDED_MAX {
                        ended.retain(|_, at| *at > now - RECENTLY_ENDED_SECS);
                    }
                    if ended.len() < RECENTLY_ENDED_MAX {
                        ended.insert(hash.clone(), now);
                    }
                }
                self.sessions.remove_where(|s| s.id_hash != *hash);
            }
            Change::Ended(key, expires_at) => self.aggregate.mark_ended(key, *expires_at),
            Change::BackendToken(server_id, user_id) => {
                self.tokens.forget(*server_id, Some(*user_id));
            }
            Change::Pins(server_id) => {
                if let Err(e) = self.pins.reload(Some(*server_id)).await {
                    tracing::warn!(error = format!("{e:#}"), "re-reading tool pins failed");
                }
                self.aggregate
                    .catalog
                    .changed(*server_id, "notifications/tools/list_changed");
            }
            Change::Servers => {
                if let Err(e) = self.reload().await {
                    tracing::warn!(error = format!("{e:#}"), "reloading MCP servers failed");
                }
            }
            Change::All => {
                self.tokens.forget_all();
                // Anything may have been missed: stored sessions are read again on their next
                // request (and ended ones stay ended), ended aggregated sessions are re-read.
                if self.shares_sessions() {
                    self.sessions.remove_where(|_| false);
                }
                match crate::db::replicas::ended_aggregated(
                    &self.db.pool,
                    crate::db::now(),
                    100_001,
                )
                .await
                {
                    Ok(rows) => {
                        for (key, expires_at) in rows {
                            self.aggregate.mark_ended(&key, expires_at);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "re-reading ended sessions failed"),
                }
                if let Err(e) = self.pins.reload(None).await {
                    tracing::warn!(error = format!("{e:#}"), "re-reading tool pins failed");
                }
                if let Err(e) = self.reload().await {
                    tracing::warn!(error = format!("{e:#}"), "reloading MCP servers failed");
                }
            }
            _ => {}
        }
    }

    pub(crate) async fn held_session(
        &self,
        call_user: i64,
        backend: &registry::Backend,
        capabilities: Value,
        client: Value,
    ) -> Result<Arc<ProxySession>, BackendError> {
        let key = (call_user, backend.id);
        if let Some(existing) = self.held.lock().ok().and_then(|h| h.get(&key).cloned()) {
            let alive = match &*existing.upstream.lock().await {
                Upstream::Legacy(l) => !l.lock().await.is_closed(),
                _ => true,
            };
            if alive {
                existing.touch();
                return Ok(existing);
            }
        }
        let capabilities = if capabilities.is_object() {
            capabilities
        } else {
            json!({})
        };
        let client = if client.is_object() {
            client
        } else {
            client_info()
        };
        let mut init_params = ClientInit::new(&capabilities, &client);
        let (upstream, result, version) = if backend.era() == Era::Legacy {
            let mut legacy = legacy::LegacySession::connect(&self.client, &backend.target).await?;
            let handshake = legacy.initialize(capabilities, client).await?;
            (
                Upstream::Legacy(Arc::new(tokio::sync::Mutex::new(legacy))),
                handshake.result,
                handshake.protocol_version,
            )
        } else {
            let handshake = self
                .client
                .initialize(
                    &backend.target,
                    protocol::LATEST_HANDSHAKE_VERSION,
                    capabilities,
                    client,
                )
                .await?;
            (
                Upstream::Http {
                    session_id: handshake.session_id,
                    version: handshake.protocol_version.clone(),
                },
                handshake.result,
                handshake.protocol_version,
            )
        };
        init_params.backend_result = result;
        let session = Arc::new(ProxySession::detached(
            call_user,
            backend.id,
            version,
            init_params,
            upstream,
        ));
        if let Ok(mut held) = self.held.lock() {
            held.insert(key, session.clone());
        }
        Ok(session)
    }

    /// `server/discover` answered for an older backend, from its InitializeResult.
    pub(crate) fn held_discover(&self, session: &ProxySession) -> Value {
        let result = &session.init.backend_result;
        let mut capabilities = result
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({}));
        // A held session carries no `subscriptions/listen`: list changes and resource updates
        // are not offered to 2026-07-28 clients of it.
        for kind in ["tools", "prompts", "resources"] {
            if let Some(c) = capabilities.get_mut(kind).and_then(Value::as_object_mut) {
                c.remove("listChanged");
                c.remove("subscribe");
            }
        }
        json!({
            "supportedVersions": protocol::SUPPORTED_VERSIONS,
            "capabilities": capabilities,
            "resultType": "complete",
            "_meta": { "io.modelcontextprotocol/serverInfo": result.get("serverInfo").cloned().unwrap_or(Value::Null) },
        })
    }

    /// The periodic tasks; `db` is the handle they read and prune through (`Db::background`).
    pub fn spawn_background(self: &Arc<Self>, config: &Config, db: Db) {
        let state = self.clone();
        let config_for_reload = config.clone();
        let sweep_db = db.clone();
        tokio::spawn(async move {
            let config = config_for_reload;
            let mut tick = tokio::time::interval(REGISTRY_RELOAD);
            tick.tick().await;
            loop {
                tick.tick().await;
                if db.pool.is_closed() {
                    break;
                }
                if let Err(e) = state.registry.reload_from(&db).await {
                    tracing::debug!(
                        error = format!("{e:#}"),
                        "reloading the MCP server registry failed"
                    );
                }
                if let Err(e) = state.reload_limits(&db, &config).await {
                    tracing::debug!(error = format!("{e:#}"), "reloading rate limits failed");
                }
            }
        });
        let state = self.clone();
        let idle = config.mcp.session_idle;
        let db = sweep_db;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SESSION_SWEEP);
            loop {
                tick.tick().await;
                if db.pool.is_closed() {
                    break;
                }
                let expired = state.sessions.expire(idle);
                let now = crate::db::now();
                let idle_secs = i64::try_from(idle.as_secs()).unwrap_or(i64::MAX);
                if let Err(e) =
                    crate::db::replicas::prune(&db.pool, now.saturating_sub(idle_secs), now).await
                {
                    tracing::debug!(error = %e, "pruning stored MCP sessions failed");
                }
                // More ended aggregated sessions than memory held: once the expired ones are
                // gone and the rest fit, memory answers again.
                if state.aggregate.ended_overflowed()
                    && let Ok(rows) = crate::db::replicas::ended_aggregated(
                        &db.pool,
                        now,
                        i64::try_from(crate::mcp::aggregate::links::MAX_ENDED + 1)
                            .unwrap_or(i64::MAX),
                    )
                    .await
                {
                    state.aggregate.reload_ended(rows);
                }
                state.limits.shrink();
                if let Ok(mut held) = state.held.lock() {
                    held.retain(|_, s| !s.idle_for(idle));
                }
                state.aggregate.retain_links(|_, _| true, Some(idle));
                if expired > 0 {
                    tracing::debug!(expired, "expired idle MCP sessions");
                }
            }
        });
        health::spawn(self.clone(), config.mcp.health_interval);
    }
}

/// The rate limits in force: the configuration's defaults, unless an admin saved others, plus
/// the overrides.
pub async fn load_limit_table(db: Db, config: &Config) -> anyhow::Result<LimitTable> {
    let saved = crate::db::limits::get_setting(&db.pool, crate::admin::RATE_LIMITS_SETTING).await?;
    let overrides = crate::db::limits::list_overrides(&db.pool).await?;
    Ok(limit_table(config, saved.as_deref(), overrides))
}

/// The limits from the configuration, what admins saved, and the overrides.
pub fn limit_table(
    config: &Config,
    saved: Option<&str>,
    overrides: Vec<crate::db::limits::OverrideRow>,
) -> LimitTable {
    let mut table = LimitTable::from_config(&config.mcp.rate_limits);
    if let Some(defaults) = saved.and_then(|s| serde_json::from_str::<LimitTable>(s).ok()) {
        table.user_per_minute = defaults.user_per_minute;
        table.user_server_per_minute = defaults.user_server_per_minute;
        table.user_tool_per_minute = defaults.user_tool_per_minute;
    }
    for o in overrides {
        let per_minute = u32::try_from(o.per_minute).unwrap_or(u32::MAX);
        match (o.kind.as_str(), o.user_id, o.server_id, o.tool) {
            ("user", Some(user), _, _) => {
                table.users.insert(user, per_minute);
            }
            ("server", _, Some(server), _) => {
                table.servers.insert(server, per_minute);
            }
            ("tool", _, Some(server), Some(tool)) => {
                table.tools.insert((server, tool), per_minute);
            }
            _ => {}
        }
    }
    table
}

/// `/mcp/{server}` (POST, GET, DELETE). Not under the API layers: MCP streams are long-lived and
/// bodies are read by the proxy itself with its own limit.
pub fn router() -> Router<AppState> {
    let methods = post(proxy::post).get(proxy::get).delete(proxy::delete);
    let aggregated = post(aggregate::post)
        .get(aggregate::get)
        .delete(aggregate::delete);
    Router::new()
        .route("/mcp/{server}", methods) // not json: MCP streamable HTTP (see openapi.rs)
        .route("/mcp", aggregated) // not json: MCP streamable HTTP (see openapi.rs)
}
