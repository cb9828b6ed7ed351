//! The database: a `sqlx::AnyPool` over SQLite (default) or Postgres, the embedded
//! migrations, and — in the submodules — every SQL statement the gateway runs.
//!
//! Queries are runtime queries with `$n` placeholders, which both databases accept, so one
//! statement text serves both. Transactions are opened by callers, never inside `db::*`.

pub mod api_keys;
pub mod audits;
pub mod backend_tokens;
pub mod events;
pub mod feed;
pub mod keys;
pub mod limits;
pub mod login_failures;
pub mod oauth;
pub mod replicas;
pub mod servers;
pub mod sessions;
pub mod setup;
pub mod teams;
pub mod tool_pins;
pub mod tool_rules;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::config::{DatabaseConfig, redact_url_password};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

/// How long an idle SQLite connection of the main pool stays open. A SQLite connection is a
/// thread of our own with its page cache, schema and prepared statements (about 700 KB
/// measured, PERFORMANCE.md), and opening one costs a thread and four pragmas, not a network
/// round trip; so what a burst (logins, an admin page) opened is closed 5–10 s after the burst
/// (sqlx's reaper runs every `SQLITE_IDLE_TIMEOUT`), while steady traffic keeps its
/// connections (the activity writer flushes every 250 ms). Postgres keeps sqlx's 10-minute
/// default: there a connection costs a handshake.
const SQLITE_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A cheap-to-clone handle on the pool.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    /// Where the periodic tasks (registry, limits and settings reloads, signing keys, the
    /// audit tail, the MCP session sweep, which also deletes) run: on SQLite one connection of
    /// its own, so that their ticks every few seconds do not keep every connection of `pool`
    /// warm (sqlx hands out idle connections first in, first out, so pollers on `pool` would
    /// reuse each one before it timed out);
    /// on Postgres `pool` itself (a connection there is a server process; the pool's own
    /// 10-minute idle timeout applies).
    background: AnyPool,
    pub backend: Backend,
}

impl Db {
    /// Connects like `connect`, retrying for up to `patience` while the database cannot be
    /// reached (a replica started before its database, a database restarting), with a
    /// doubling pause of at most 2 s. Errors that a retry cannot mend (a bad URL, a wrong
    /// password, a missing database) fail at once.
    pub async fn connect_patiently(
        config: &DatabaseConfig,
        max_connections: u32,
        patience: Duration,
    ) -> anyhow::Result<Db> {
        let deadline = std::time::Instant::now() + patience;
        let mut pause = Duration::from_millis(100);
        loop {
            match Db::connect(config, max_connections).await {
                Ok(db) => return Ok(db),
                Err(e) if std::time::Instant::now() + pause < deadline && retryable(&e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "the database is not reachable yet; retrying"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Connects (creating the SQLite file and its directory if missing) without migrating.
    pub async fn connect(config: &DatabaseConfig, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let (url, backend) = match config {
            DatabaseConfig::Sqlite { path } => {
                create_parent_dir(path)?;
                (sqlite_url(path), Backend::Sqlite)
            }
            DatabaseConfig::Postgres { url } => (url.expose().clone(), Backend::Postgres),
        };
        let options = AnyConnectOptions::from_str(&url).context("parsing DATABASE_URL")?;
        let context = || match config {
            DatabaseConfig::Sqlite { path } => {
                format!("opening the SQLite database {}", path.display())
            }
            DatabaseConfig::Postgres { url } => {
                format!("connecting to {}", redact_url_password(url.expose()))
            }
        };
        let pool = pool_options(backend, max_connections)
            .connect_with(options.clone())
            .await
            .with_context(context)?;
        let background = match backend {
            // Opened on first use, and kept: the pollers use it every few seconds.
            Backend::Sqlite => pool_options(backend, 1)
                .idle_timeout(None)
                .connect_lazy_with(options),
            Backend::Postgres => pool.clone(),
        };
        Ok(Db {
            pool,
            background,
            backend,
        })
    }

    /// The same database for the periodic tasks: a handle whose `pool` is the background pool
    /// (see the field). Their statements are short, one at a time; a task holding a connection
    /// of it must not wait for a second one.
    pub fn background(&self) -> Db {
        Db {
            pool: self.background.clone(),
            background: self.background.clone(),
            backend: self.backend,
        }
    }

    /// Applies every embedded migration not yet applied.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.backend
            .migrator()
            .run(&self.pool)
            .await
            .context("applying database migrations")
    }

    /// Number of migrations embedded in this binary.
    pub fn expected_migrations(&self) -> u32 {
        u32::try_from(self.backend.migrator().iter().count()).unwrap_or(u32::MAX)
    }

    /// Number of migrations applied successfully (fails if the database is unreachable).
    pub async fn applied_migrations(&self) -> Result<u32, sqlx::Error> {
        let count: i64 =
            sqlx::query_scalar("select count(*) from _sqlx_migrations where success = $1")
                .bind(true)
                .fetch_one(&self.pool)
                .await?;
        Ok(u32::try_from(count).unwrap_or(0))
    }

    /// Starts a transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`):
    /// a deferred transaction that reads and then writes can fail at once with "database is
    /// locked" when another writer got in between, which the busy timeout does not cover.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.background.close().await;
    }
}

fn pool_options(backend: Backend, max_connections: u32) -> AnyPoolOptions {
    let options = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers run beside the writer; the busy timeout makes a second
                    // writer wait instead of failing; foreign keys are off by default in
                    // SQLite.
                    conn.execute("pragma journal_mode = wal").await?;
                    conn.execute("pragma busy_timeout = 5000").await?;
                    conn.execute("pragma foreign_keys = on").await?;
                    conn.execute("pragma synchronous = normal").await?;
                }
                Ok(())
            })
        });
    match backend {
        Backend::Sqlite => options.idle_timeout(SQLITE_IDLE_TIMEOUT),
        Backend::Postgres => options,
    }
}

fn sqlite_url(path: &Path) -> String {
    // mode=rwc creates the file when missing.
    format!("sqlite://{}?mode=rwc", path.display())
}

/// The database's directory (`0700` when created) and the file itself, created `0600` before
/// SQLite opens it (SQLite gives its `-wal` and `-shm` files the database file's mode).
fn create_parent_dir(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::files::private_dir(parent)
            .with_context(|| format!("creating the database directory {}", parent.display()))?;
    }
    crate::files::private_file()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("creating the database file {}", path.display()))?;
    Ok(())
}

/// Seconds since the Unix epoch, the timestamp unit of every table.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// True when `err` is a violation of the unique constraint `name` (named in the migrations so
/// this works on both databases; SQLite reports the columns instead, so `columns` is checked too).
pub fn is_unique_violation(err: &sqlx::Error, name: &str, columns: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                && (db.constraint() == Some(name)
                    || db.message().contains(name)
                    || db.message().contains(columns))
        }
        _ => false,
    }
}

/// Whether a failed connection may succeed later: the server did not answer (refused, reset,
/// timed out, not resolvable yet) or is starting up or shutting down.
fn retryable(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            // 57P03 cannot_connect_now: the server is starting up; 57P01 admin_shutdown.
            Some(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("57P03" | "57P01"))
            }
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a burst opened on SQLite closes again while the periodic readers keep running on
    /// their own connection: the readers must not keep the main pool's connections warm.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_connections_of_a_burst_close_while_the_readers_poll() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig::Sqlite {
            path: dir.path().join("gateway.db"),
        };
        let db = Db::connect(&config, 4).await.unwrap();
        db.migrate().await.unwrap();
        // A burst: four connections held at once.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(db.pool.acquire().await.unwrap());
        }
        drop(held);
        assert_eq!(db.pool.size(), 4);
        let background = db.background();
        // Poll through the background handle more often than the pollers do (every 2 s at the
        // fastest) until the burst's connections are gone: the reaper closes them 5–10 s after
        // the burst; four times the idle timeout is the deadline.
        let deadline = std::time::Instant::now() + SQLITE_IDLE_TIMEOUT * 4;
        while db.pool.size() > 0 && std::time::Instant::now() < deadline {
            events::max_audit_id(&background.pool).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(db.pool.size(), 0, "the burst's connections were closed");
        assert_eq!(background.pool.size(), 1, "the readers kept one connection");
        // The main pool opens a connection again when asked.
        events::max_audit_id(&db.pool).await.unwrap();
        db.close().await;
        assert!(
            background.pool.is_closed(),
            "closing the handle closes the readers' pool"
        );
    }
}
