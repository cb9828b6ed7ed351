//! Settings admins change while the gateway runs (`PUT /admin/api/settings`): token lifetimes,
//! self-registration, dynamic client registration, log retention. They start from the
//! configuration; saved values (the `settings` table) win, apply at once on this replica, and
//! are re-read every few seconds by the others.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::db::{self, Db};

pub const SETTING_KEY: &str = "gateway";
const RELOAD: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub allow_registration: bool,
    pub oauth_dcr: bool,
    pub log_retention_days: u32,
}

impl Runtime {
    pub fn from_config(config: &Config) -> Runtime {
        Runtime {
            access_token_ttl_secs: config.auth.access_token_ttl.as_secs(),
            refresh_token_ttl_secs: config.auth.refresh_token_ttl.as_secs(),
            allow_registration: config.auth.allow_registration,
            oauth_dcr: config.oauth.dcr,
            log_retention_days: config.log_retention_days,
        }
    }

    /// The same bounds as the environment variables.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(60..=86_400).contains(&self.access_token_ttl_secs) {
            return Err(("access_token_ttl_secs", "60 seconds to 1 day"));
        }
        if !(300..=365 * 86_400).contains(&self.refresh_token_ttl_secs) {
            return Err(("refresh_token_ttl_secs", "5 minutes to 365 days"));
        }
        if self.refresh_token_ttl_secs <= self.access_token_ttl_secs {
            return Err((
                "refresh_token_ttl_secs",
                "longer than the access token lifetime",
            ));
        }
        if !(1..=3650).contains(&self.log_retention_days) {
            return Err(("log_retention_days", "1 to 3650 days"));
        }
        Ok(())
    }
}

pub struct RuntimeSettings {
    current: RwLock<Arc<Runtime>>,
    /// Shared with the JSONL logs, which prune by it.
    pub retention_days: Arc<AtomicU32>,
    defaults: Runtime,
}

impl RuntimeSettings {
    pub async fn load(db: &Db, config: &Config) -> anyhow::Result<RuntimeSettings> {
        let defaults = Runtime::from_config(config);
        let settings = RuntimeSettings {
            retention_days: Arc::new(AtomicU32::new(defaults.log_retention_days)),
            current: RwLock::new(Arc::new(defaults.clone())),
            defaults,
        };
        settings.reload(db).await?;
        Ok(settings)
    }

    pub fn get(&self) -> Arc<Runtime> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, runtime: Runtime) {
        self.retention_days
            .store(runtime.log_retention_days, Ordering::Relaxed);
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(runtime),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(runtime),
        }
    }

    /// Re-reads what admins saved (the configuration's values when nothing was saved).
    pub async fn reload(&self, db: &Db) -> anyhow::Result<()> {
        let saved = db::limits::get_setting(&db.pool, SETTING_KEY).await?;
        let runtime = saved
            .and_then(|s| serde_json::from_str::<Runtime>(&s).ok())
            .filter(|r| r.validate().is_ok())
            .unwrap_or_else(|| self.defaults.clone());
        if *self.get() != runtime {
            self.set(runtime);
        }
        Ok(())
    }

    pub fn spawn_reload(self: &Arc<Self>, db: Db) {
        let settings = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD);
            loop {
                tick.tick().await;
                if db.pool.is_closed() {
                    break;
                }
                if let Err(e) = settings.reload(&db).await {
                    tracing::debug!(error = format!("{e:#}"), "reloading settings failed");
                }
            }
        });
    }
}
