//! `AppState`: the state every handler shares (configuration, database, keys, the MCP engine's
//! state, the OAuth server's, the event and activity sinks, runtime settings), built once at
//! start-up by `AppState::init`, which also starts the background tasks its parts need. No
//! handler module is imported here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::accounts;
use crate::auth::identity::AuthCache;
use crate::auth::login::LoginThrottle;
use crate::config::Config;
use crate::conn::Connections;
use crate::db::{self, Db};
use crate::error::ApiError;
use crate::events::EventSink;
use crate::filelog::FileLog;
use crate::keys::{KeyRing, SecretBox};
use crate::live::LiveHub;
use crate::mcp::McpState;
use crate::oauth::OAuthState;
use crate::runtime::RuntimeSettings;
use crate::spa::Spa;

/// How often expired sessions and stale login-failure rows are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// How often new audit rows are copied to the JSONL log.
const AUDIT_TAIL_INTERVAL: Duration = Duration::from_secs(2);
/// How often signing keys are re-read from the database.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// Shared state handed to every handler: one `Arc`, so a clone (axum makes one per request) is
/// one atomic increment. Fields are reached through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub config: Arc<Config>,
    pub db: Db,
    pub keys: Arc<KeyRing>,
    pub secret_box: Arc<SecretBox>,
    pub auth_cache: Arc<AuthCache>,
    pub login_throttle: Arc<LoginThrottle>,
    pub events: EventSink,
    pub mcp: Arc<McpState>,
    pub oauth: Arc<OAuthState>,
    pub live: LiveHub,
    pub runtime: Arc<RuntimeSettings>,
    pub spa: Option<Spa>,
    /// Needed to create the first admin on a non-loopback bind (`accounts::SetupToken`).
    pub setup_token: Option<accounts::SetupToken>,
    /// The change feed: every access or routing change made here goes out through it
    /// (`feed.rs`); open connections watch it.
    pub changes: crate::feed::Changes,
    /// Client connections: caps, timeouts, shedding (`conn.rs`).
    pub connections: Arc<Connections>,
    /// Security scans running as background jobs (`audit/jobs.rs`).
    pub audits: crate::audit::jobs::Jobs,
    pub started: Instant,
}

impl AppState {
    /// Connects, migrates and loads keys: everything a handler relies on. Also starts the
    /// background tasks (security-event writer, pruning).
    pub async fn init(config: Config) -> anyhow::Result<AppState> {
        let config = Arc::new(config);
        crate::files::secure_dir(&config.data_dir)
            .with_context(|| format!("creating DATA_DIR {}", config.data_dir.display()))?;
        let db = Db::connect_patiently(
            &config.database,
            config.database_max_connections,
            config.database_connect_timeout,
        )
        .await?;
        db.migrate().await?;
        let loaded = crate::keys::load_encryption_key(&config)?;
        let encryption_key = loaded.key;
        let secret_box = Arc::new(SecretBox::new(&encryption_key));
        loaded.check(&db, &secret_box, &config).await?;
        let keys = KeyRing::load(db.clone(), config.clone(), secret_box.clone()).await?;
        loaded.remember(&db, &secret_box).await?;
        bootstrap_admin(&db, &config).await?;
        let setup_token = accounts::SetupToken::issue(&db, &config, &encryption_key).await?;

        let keys = Arc::new(keys);
        // The periodic readers share one connection of their own (`Db::background`).
        let background = db.background();
        spawn_key_reload(keys.clone(), background.clone());
        // What other replicas send is applied once the state exists (`slot`).
        let slot: Arc<std::sync::OnceLock<std::sync::Weak<AppStateInner>>> = Arc::default();
        let (changes, listener) = match &config.database {
            crate::config::DatabaseConfig::Postgres { url } => {
                let (on_change, on_live, watching) = (slot.clone(), slot.clone(), slot.clone());
                let upgrade = |slot: &std::sync::OnceLock<std::sync::Weak<AppStateInner>>| {
                    slot.get().and_then(std::sync::Weak::upgrade).map(AppState)
                };
                let (changes, listener) = crate::feed::start_postgres(
                    db.pool.clone(),
                    url.expose().clone(),
                    secret_box.clone(),
                    crate::feed::Handlers {
                        change: move |change| {
                            let state = upgrade(&on_change);
                            async move {
                                if let Some(state) = state {
                                    apply_change(&state, change).await;
                                }
                            }
                        },
                        live: move |messages| {
                            if let Some(state) = upgrade(&on_live) {
                                state.live.deliver(messages);
                            }
                        },
                        watching: move || {
                            upgrade(&watching).is_some_and(|s| s.live.subscribers() > 0)
                        },
                    },
                )?;
                (changes, Some(listener))
            }
            crate::config::DatabaseConfig::Sqlite { .. } => (crate::feed::Changes::default(), None),
        };
        let live = LiveHub::new(config.live_feed_buffer, changes.clone());
        let runtime = Arc::new(RuntimeSettings::load(&db, &config).await?);
        runtime.spawn_reload(background.clone());
        spawn_pruning(db.clone(), runtime.clone(), config.oauth.unused_client_ttl);
        let events = EventSink::spawn(
            db.clone(),
            live.clone(),
            Some(FileLog::new(
                &config.log_dir,
                "security",
                runtime.retention_days.clone(),
            )),
        );
        let mcp = McpState::init(
            db.clone(),
            secret_box.clone(),
            config.clone(),
            live.clone(),
            runtime.retention_days.clone(),
            changes.clone(),
            events.clone(),
        )
        .await?;
        spawn_audit_log(background.clone(), &config, runtime.retention_days.clone());
        mcp.spawn_background(&config, background);
        let oauth = Arc::new(OAuthState::new(&config));
        {
            let oauth = oauth.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    oauth.register_limit.shrink();
                    oauth.token_limit.shrink();
                }
            });
        }
        let state = AppState(Arc::new(AppStateInner {
            oauth,
            mcp,
            spa: Spa::load(config.web_dir.as_deref()),
            auth_cache: Arc::new(AuthCache::new(config.auth.cache_ttl, changes.clone())),
            changes,
            login_throttle: Arc::new(LoginThrottle::new(
                config.auth.login_ip_max_failures,
                config.auth.login_ip_window,
            )),
            events,
            live,
            runtime: runtime.clone(),
            setup_token,
            connections: Connections::new(&config.connections, config.trusted_proxies.clone()),
            audits: crate::audit::jobs::Jobs::default(),
            config,
            db,
            keys,
            secret_box,
            started: Instant::now(),
        }));
        let _ = slot.set(Arc::downgrade(&state.0));
        // Listening starts now that changes can be applied (it applies `All` first: anything
        // changed while this replica was loading counts).
        if let Some(listener) = listener {
            listener.start();
        }
        Ok(state)
    }
}

/// Applies a change another replica made (`feed.rs`): the caches it makes stale go, what it
/// names is re-read, and open connections here re-check their callers.
async fn apply_change(state: &AppState, change: crate::feed::Change) {
    use crate::feed::Change;
    tracing::debug!(?change, "applying a change made on another replica");
    state.auth_cache.forget(&change);
    state.mcp.apply(&change).await;
    // An aggregated session ended elsewhere: its backend sessions here end too.
    // (Closed off the listener: a slow backend must not hold up the changes behind it.)
    if let Change::Ended(key, _) = &change {
        let slots = state.mcp.aggregate.remove_session(key);
        let state = state.clone();
        tokio::spawn(async move {
            for slot in slots {
                if let Some(link) = slot.lock().await.take() {
                    link.close(&state).await;
                }
            }
        });
    }
    if matches!(change, Change::Settings | Change::All)
        && let Err(e) = state.runtime.reload(&state.db).await
    {
        tracing::warn!(error = format!("{e:#}"), "reloading settings failed");
    }
    if matches!(change, Change::Limits | Change::All)
        && let Err(e) = state.mcp.reload_limits(&state.db, &state.config).await
    {
        tracing::warn!(error = format!("{e:#}"), "reloading rate limits failed");
    }
    if matches!(change, Change::Keys | Change::All)
        && let Err(e) = state.keys.reload().await
    {
        tracing::warn!(error = format!("{e:#}"), "reloading signing keys failed");
    }
    if change.takes_access() {
        state.changes.publish();
    }
}

/// Copies new audit-log rows to `audit-YYYY-MM-DD.jsonl` every few seconds (rows are written
/// inside the transactions of the changes they describe, so the file follows the table).
fn spawn_audit_log(db: Db, config: &Config, retention: Arc<std::sync::atomic::AtomicU32>) {
    let file = FileLog::new(&config.log_dir, "audit", retention);
    tokio::spawn(async move {
        let mut last = match db::events::max_audit_id(&db.pool).await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "the audit JSONL log is off: cannot read the audit log");
                return;
            }
        };
        let mut tick = tokio::time::interval(AUDIT_TAIL_INTERVAL);
        loop {
            tick.tick().await;
            if db.pool.is_closed() {
                break;
            }
            let rows = match db::events::audit_after(&db.pool, last, 1000).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::debug!(error = %e, "reading new audit rows failed");
                    continue;
                }
            };
            let Some(newest) = rows.last().map(|r| r.id) else {
                continue;
            };
            let lines = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "at": r.created_at, "actor_user_id": r.actor_user_id,
                        "actor": r.actor_username, "action": r.action, "target_type": r.target_type,
                        "target_id": r.target_id, "ip": r.ip,
                        "before": r.before_state.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
                        "after": r.after_state.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
                    })
                    .to_string()
                })
                .collect();
            file.append(lines, db::now()).await;
            last = newest;
        }
    });
}

/// Deletes sessions that expired longer ago than any access token lives (so none of their
/// tokens can still be presented; an unknown session is refused anyway) and old, unlocked
/// login-failure rows, and old authorization codes.
fn spawn_pruning(db: Db, runtime: Arc<RuntimeSettings>, config_unused_ttl: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            tick.tick().await;
            let now = db::now();
            let settings = runtime.get();
            // Sessions are kept past their end as long as any access token may still exist.
            let grace =
                i64::try_from(settings.access_token_ttl_secs.max(86_400)).unwrap_or(i64::MAX);
            let retention = i64::from(settings.log_retention_days) * 86_400;
            if let Err(e) = db::sessions::prune(&db.pool, now - grace).await {
                tracing::warn!(error = %e, "pruning expired sessions failed");
            }
            if let Err(e) = db::login_failures::prune(&db.pool, now - 86_400, now).await {
                tracing::warn!(error = %e, "pruning login failures failed");
            }
            // The dashboard's data is bounded by the log retention (the JSONL files keep the
            // same span, pruned as they rotate).
            if let Err(e) = db::servers::prune_activity(&db.pool, now - retention).await {
                tracing::warn!(error = %e, "pruning MCP activity failed");
            }
            if let Err(e) = db::events::prune_security_events(&db.pool, now - retention).await {
                tracing::warn!(error = %e, "pruning security events failed");
            }
            // Every sign-in is a row: they go with the same retention (changes stay).
            if let Err(e) = db::events::prune_auth_audit(&db.pool, now - retention).await {
                tracing::warn!(error = %e, "pruning sign-in records failed");
            }
            // Registrations that never completed an authorization go after a while.
            let ttl = i64::try_from(config_unused_ttl.as_secs()).unwrap_or(i64::MAX);
            if ttl > 0
                && let Err(e) = db::oauth::prune_unused_clients(&db.pool, now - ttl).await
            {
                tracing::warn!(error = %e, "pruning unused OAuth clients failed");
            }
            // Spent or expired authorization codes are kept a day (reuse detection), then go.
            if let Err(e) = db::oauth::prune_codes(&db.pool, now - 86_400).await {
                tracing::warn!(error = %e, "pruning OAuth codes failed");
            }
            // Backend connection flows never completed.
            if let Err(e) = db::backend_tokens::prune_pending(&db.pool, now).await {
                tracing::warn!(error = %e, "pruning backend connection flows failed");
            }
            if db.pool.is_closed() {
                break;
            }
        }
    });
}

/// Re-reads the signing keys now and then, so a rotation done elsewhere (CLI, another replica)
/// is picked up without a restart.
fn spawn_key_reload(keys: Arc<KeyRing>, db: Db) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEY_RELOAD_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            if db.pool.is_closed() {
                break;
            }
            if let Err(e) = keys.reload_from(&db).await {
                tracing::warn!(error = format!("{e:#}"), "reloading signing keys failed");
            }
        }
    });
}

/// Creates the first admin from `ADMIN_USERNAME`/`ADMIN_PASSWORD` when the database has no
/// user yet; does nothing otherwise (the variables never overwrite an existing account).
async fn bootstrap_admin(db: &Db, config: &Config) -> anyhow::Result<()> {
    let (Some(username), Some(password)) = (&config.admin_username, &config.admin_password) else {
        return Ok(());
    };
    // Creates nobody (409 `setup_complete`, treated as done below) once any user exists.
    match accounts::create_first_admin(
        db,
        username,
        password.expose(),
        None,
        config.password_min_length,
    )
    .await
    {
        Ok(_) => {
            tracing::info!(%username, "created the first admin from ADMIN_USERNAME/ADMIN_PASSWORD");
            Ok(())
        }
        // Users exist already, or another replica (or the setup page) won the race.
        Err(ApiError::Conflict { .. }) => Ok(()),
        Err(ApiError::Validation { message, field, .. }) => {
            let var = if field == Some("username") {
                "ADMIN_USERNAME"
            } else {
                "ADMIN_PASSWORD"
            };
            anyhow::bail!("invalid {var}: {message}")
        }
        Err(e) => Err(anyhow::anyhow!("creating the first admin: {e}")),
    }
}
