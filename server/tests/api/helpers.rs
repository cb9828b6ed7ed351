//! `TestEnv` (a data directory and a database that outlive restarts) and `TestApp` (a running
//! gateway on that environment), plus the `db_test!` macro.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Once};

use authmcp_gateway::app::App;
use authmcp_gateway::config::{Config, DatabaseConfig, Secret};
use authmcp_gateway::state::AppState;
use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Defines `mod $name { sqlite(), postgres() }`: the same test body against both databases.
/// The Postgres variant needs `TEST_POSTGRES_URL` (set by `cargo xtask test`); it fails without
/// it unless `TEST_SKIP_POSTGRES=1` says to skip.
macro_rules! db_test {
    ($(#[$meta:meta])* async fn $name:ident($env:ident: TestEnv) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(#[$meta])*
            async fn body($env: $crate::helpers::TestEnv) $body

            #[tokio::test]
            async fn sqlite() {
                body($crate::helpers::TestEnv::new($crate::helpers::Backend::Sqlite).await).await
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(env) = $crate::helpers::TestEnv::postgres_or_skip().await {
                    body(env).await
                }
            }
        }
    };
}
pub(crate) use db_test;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A data directory and a database; several gateways can be started on it in turn.
pub struct TestEnv {
    pub backend: Backend,
    pub data_dir: Arc<tempfile::TempDir>,
    pub database: DatabaseConfig,
    /// Extra variables layered over the test defaults.
    pub vars: BTreeMap<String, String>,
    pub web_dir: Option<PathBuf>,
}

fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            authmcp_gateway::telemetry::init(
                authmcp_gateway::config::LogFormat::Human,
                "info,authmcp_gateway=debug",
            );
        }
    });
}

impl TestEnv {
    pub async fn new(backend: Backend) -> TestEnv {
        init_tracing();
        let data_dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let database = match backend {
            Backend::Sqlite => DatabaseConfig::Sqlite {
                path: data_dir.path().join("authmcp.db"),
            },
            Backend::Postgres => DatabaseConfig::Postgres {
                url: Secret::new(create_postgres_database().await),
            },
        };
        TestEnv {
            backend,
            data_dir,
            database,
            vars: BTreeMap::new(),
            web_dir: None,
        }
    }

    pub async fn postgres_or_skip() -> Option<TestEnv> {
        if std::env::var_os("TEST_POSTGRES_URL").is_none()
            && std::env::var("TEST_SKIP_POSTGRES").as_deref() == Ok("1")
        {
            eprintln!("skipped: TEST_SKIP_POSTGRES=1");
            return None;
        }
        Some(TestEnv::new(Backend::Postgres).await)
    }

    /// Creates the first admin (`admin` / `ADMIN_PASSWORD`) at start-up.
    pub fn with_admin(self) -> Self {
        self.with_var("ADMIN_USERNAME", "admin")
            .with_var("ADMIN_PASSWORD", ADMIN_PASSWORD)
    }

    /// Listens on a fixed free port and says so in `PUBLIC_URL` (for flows where clients follow
    /// the gateway's own URLs, such as OAuth discovery).
    pub fn with_public_port(self) -> Self {
        let port = crate::peers::free_port();
        self.with_var("GATEWAY_PORT", &port.to_string())
            .with_var("PUBLIC_URL", &format!("http://127.0.0.1:{port}"))
    }

    pub fn with_var(mut self, key: &str, value: &str) -> Self {
        self.vars.insert(key.into(), value.into());
        self
    }

    /// The same data directory and database with one more variable.
    pub fn clone_with_var(&self, key: &str, value: &str) -> Self {
        TestEnv {
            backend: self.backend,
            data_dir: self.data_dir.clone(),
            database: self.database.clone(),
            vars: self.vars.clone(),
            web_dir: self.web_dir.clone(),
        }
        .with_var(key, value)
    }

    /// The environment variables a gateway on this environment would be started with.
    pub fn env_vars(&self) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::from([
            ("GATEWAY_HOST".to_string(), "127.0.0.1".to_string()),
            (
                "DATA_DIR".to_string(),
                self.data_dir.path().display().to_string(),
            ),
            (
                "KEY_DIR".to_string(),
                self.data_dir.path().join("keys").display().to_string(),
            ),
            (
                "WEB_DIR".to_string(),
                self.web_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.path().join("no-web-dir"))
                    .display()
                    .to_string(),
            ),
            ("DATABASE_URL".to_string(), self.database_url()),
        ]);
        vars.extend(self.vars.clone());
        vars
    }

    pub fn database_url(&self) -> String {
        match &self.database {
            DatabaseConfig::Sqlite { path } => format!("sqlite://{}", path.display()),
            DatabaseConfig::Postgres { url } => url.expose().clone(),
        }
    }

    pub fn config(&self) -> Config {
        let mut config = Config::from_sources(&self.env_vars(), None).expect("test config");
        if !self.vars.contains_key("GATEWAY_PORT") {
            config.port = 0;
        }
        config
    }

    pub async fn try_spawn(&self) -> anyhow::Result<TestApp> {
        let app = App::build(self.config()).await?;
        let addr = app.local_addr()?;
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Ok(TestApp {
            addr,
            client: reqwest::Client::new(),
            state,
            shutdown: Some(tx),
            handle: Some(handle),
            _data_dir: self.data_dir.clone(),
        })
    }

    pub async fn spawn(&self) -> TestApp {
        self.try_spawn().await.expect("gateway starts")
    }
}

/// Creates `t_<random>` on the test Postgres server and returns its URL.
async fn create_postgres_database() -> String {
    let admin = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_POSTGRES_URL is not set: run the suite with `cargo xtask test` (it starts a \
             throwaway Postgres), or set TEST_SKIP_POSTGRES=1 to skip the Postgres variants"
        )
    });
    let name = format!("t_{}", uuid_like());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to TEST_POSTGRES_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (base, _) = admin.rsplit_once('/').expect("database URL with a path");
    format!("{base}/{name}")
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub const ADMIN_PASSWORD: &str = "correct horse staple 1234";
pub const USER_PASSWORD: &str = "user passphrase 5678";

/// A running gateway.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the data directory (and the SQLite file in it) alive as long as the gateway runs,
    /// even when the `TestEnv` was a temporary.
    _data_dir: Arc<tempfile::TempDir>,
}

impl TestApp {
    /// A gateway on a fresh SQLite store with the bootstrap admin, and the admin's token.
    pub async fn sqlite_with_admin() -> (TestApp, String) {
        let app = TestEnv::new(Backend::Sqlite)
            .await
            .with_admin()
            .spawn()
            .await;
        let admin = app.admin_token().await;
        (app, admin)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request")
    }

    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// `POST /auth/login`; panics unless it succeeds. Returns the token response.
    pub async fn login(&self, username: &str, password: &str) -> serde_json::Value {
        let res = self
            .post_json(
                "/auth/login",
                None,
                serde_json::json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(res.status(), 200, "login of {username}");
        res.json().await.expect("token json")
    }

    /// An MCP-audience access token (`POST /auth/login`).
    pub async fn mcp_token(&self, username: &str, password: &str) -> String {
        self.login(username, password).await["access_token"]
            .as_str()
            .expect("access token")
            .to_string()
    }

    /// `POST /admin/api/login`; panics unless it succeeds. Returns the access token.
    pub async fn admin_login(&self, username: &str, password: &str) -> String {
        let res = self
            .post_json(
                "/admin/api/login",
                None,
                serde_json::json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(res.status(), 200, "admin login of {username}");
        let body: serde_json::Value = res.json().await.expect("token json");
        body["access_token"]
            .as_str()
            .expect("access token")
            .to_string()
    }

    /// An admin-audience token for the bootstrap admin (`TestEnv::with_admin`).
    pub async fn admin_token(&self) -> String {
        self.admin_login("admin", ADMIN_PASSWORD).await
    }

    /// Creates a user through the admin API and returns its id.
    pub async fn create_user(&self, admin: &str, username: &str, role: &str) -> i64 {
        let res = self
            .post_json(
                "/admin/api/users",
                Some(admin),
                serde_json::json!({"username": username, "password": USER_PASSWORD, "role": role}),
            )
            .await;
        assert_eq!(res.status(), 201, "create {username}");
        let body: serde_json::Value = res.json().await.expect("user json");
        body["id"].as_i64().expect("id")
    }

    /// The stored security events of `event_type`, newest first, at most `limit`.
    pub async fn events(
        &self,
        event_type: &str,
        limit: i64,
    ) -> Vec<authmcp_gateway::db::events::SecurityEventRow> {
        let filter = authmcp_gateway::db::events::EventFilter {
            event_type: Some(event_type.to_string()),
            ..Default::default()
        };
        authmcp_gateway::db::events::list_security_events(&self.state.db.pool, &filter, limit, 0)
            .await
            .expect("events")
    }

    /// Waits (up to 5 s) for a security event of `event_type` written by the background writer.
    pub async fn wait_for_event(
        &self,
        event_type: &str,
    ) -> authmcp_gateway::db::events::SecurityEventRow {
        for _ in 0..100 {
            if let Some(row) = self.events(event_type, 1).await.into_iter().next() {
                return row;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no {event_type} security event was recorded");
    }

    /// Triggers graceful shutdown and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("server task")
                .expect("server exits cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

/// The gateway binary as its own process (its own memory, its own database connections),
/// killed on drop.
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub url: String,
    /// Keeps the environment (its data directory) alive when the process owns it.
    _env: Option<TestEnv>,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GatewayProcess {
    pub async fn start(env: TestEnv) -> GatewayProcess {
        GatewayProcess::start_with(env, false).await
    }

    /// Starts it on `env`, which it keeps (stdout piped when `piped`).
    pub async fn start_with(env: TestEnv, piped: bool) -> GatewayProcess {
        let mut process = GatewayProcess::on(&env, piped).await;
        process._env = Some(env);
        process
    }

    /// Starts it on `env` (shared with other processes; stdout piped when `piped`, shown with
    /// `TEST_LOG`, else discarded) and waits until `/ready` answers; a start that fails (the
    /// free port was taken meanwhile by another test) is retried.
    pub async fn on(env: &TestEnv, piped: bool) -> GatewayProcess {
        let verbose = std::env::var_os("TEST_LOG").is_some();
        for _ in 0..3 {
            let port = crate::peers::free_port();
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authmcp-gateway"))
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(env.env_vars())
                .env("GATEWAY_PORT", port.to_string())
                .env(
                    "LOG_LEVEL",
                    env.vars
                        .get("LOG_LEVEL")
                        .map_or(if verbose { "info" } else { "warn" }, String::as_str),
                )
                .stdout(if piped {
                    std::process::Stdio::piped()
                } else if verbose {
                    std::process::Stdio::inherit()
                } else {
                    std::process::Stdio::null()
                })
                .spawn()
                .expect("start the gateway binary");
            let url = format!("http://127.0.0.1:{port}");
            for _ in 0..300 {
                if reqwest::get(format!("{url}/ready"))
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return GatewayProcess {
                        child,
                        url,
                        _env: None,
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the gateway process did not start");
    }
}
