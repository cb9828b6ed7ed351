//! Typed configuration, loaded once at start-up from defaults, an optional TOML file and the
//! environment (env wins), and validated before anything binds a port.
//!
//! Every setting has one name: its environment variable (`GATEWAY_PORT`). In the TOML file the
//! same name is written in lowercase (`gateway_port = 8000`). Errors name both, so an operator can
//! find the bad value wherever it came from. docs/CONFIG.md lists every setting.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;

/// Every variable the gateway reads. Anything else in the config file is an error (a typo must
/// not silently fall back to a default).
/// Secret settings: each may instead be read from the file named by `<NAME>_FILE` (how
/// container platforms hand secrets over).
pub const SECRET_VARS: &[(&str, &str)] = &[
    ("JWT_SECRET", "JWT_SECRET_FILE"),
    ("ENCRYPTION_KEY", "ENCRYPTION_KEY_FILE"),
    ("ADMIN_PASSWORD", "ADMIN_PASSWORD_FILE"),
    ("DATABASE_URL", "DATABASE_URL_FILE"),
    ("METRICS_TOKEN", "METRICS_TOKEN_FILE"),
    ("OAUTH_DCR_TOKEN", "OAUTH_DCR_TOKEN_FILE"),
];

pub const KNOWN_VARS: &[&str] = &[
    "CONFIG_FILE",
    "GATEWAY_HOST",
    "GATEWAY_PORT",
    "PUBLIC_URL",
    "DATA_DIR",
    "KEY_DIR",
    "WEB_DIR",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_CONNECT_TIMEOUT_SECS",
    "JWT_SECRET",
    "ENCRYPTION_KEY",
    "ADMIN_USERNAME",
    "ADMIN_PASSWORD",
    "PASSWORD_MIN_LENGTH",
    "ALLOWED_ORIGINS",
    "TRUSTED_PROXIES",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "ACCESS_LOG",
    "MAX_BODY_BYTES",
    "REQUEST_TIMEOUT_SECS",
    "SHUTDOWN_TIMEOUT_SECS",
    "HTTP_HEADER_TIMEOUT_SECS",
    "HTTP_IDLE_TIMEOUT_SECS",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "ACCESS_TOKEN_TTL_SECS",
    "REFRESH_TOKEN_TTL_SECS",
    "ALLOW_REGISTRATION",
    "LOGIN_MAX_FAILURES",
    "LOGIN_LOCKOUT_SECS",
    "LOGIN_LOCKOUT_MAX_SECS",
    "LOGIN_IP_MAX_FAILURES",
    "LOGIN_IP_WINDOW_SECS",
    "AUTH_CACHE_TTL_MS",
    "MCP_MAX_REQUEST_BYTES",
    "MCP_MAX_RESPONSE_BYTES",
    "MCP_HEALTH_INTERVAL_SECS",
    "MCP_SESSION_IDLE_SECS",
    "MCP_DEFAULT_TIMEOUT_SECS",
    "MCP_AGGREGATE_PAGE_SIZE",
    "MCP_MAX_CONCURRENT_PER_USER",
    "MCP_RATE_LIMIT_USER_BYTES_PER_MINUTE",
    "MCP_RATE_LIMIT_USER_PER_MINUTE",
    "MCP_RATE_LIMIT_USER_SERVER_PER_MINUTE",
    "MCP_RATE_LIMIT_USER_TOOL_PER_MINUTE",
    "LOG_DIR",
    "LOG_RETENTION_DAYS",
    "LIVE_FEED_BUFFER",
    "METRICS_TOKEN",
    "METRICS_PUBLIC",
    "OAUTH_DCR",
    "OAUTH_DCR_TOKEN",
    "OAUTH_CIMD",
    "OAUTH_CIMD_ALLOW_HTTP",
    "OAUTH_CIMD_ALLOW_PRIVATE",
    "OAUTH_REGISTER_PER_MINUTE",
    "OAUTH_MAX_CLIENTS_PER_ADDRESS",
    "OAUTH_UNUSED_CLIENT_TTL_SECS",
    "OAUTH_TOKEN_PER_MINUTE",
    "JWT_SECRET_FILE",
    "ENCRYPTION_KEY_FILE",
    "ADMIN_PASSWORD_FILE",
    "DATABASE_URL_FILE",
    "METRICS_TOKEN_FILE",
    "OAUTH_DCR_TOKEN_FILE",
    "REQUIRE_AUTH",
];

/// The validated configuration. Passed around as `Arc<Config>`; never a global.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// Base URL clients use to reach the gateway, without a trailing slash. Issuer of tokens
    /// and base of OAuth resource identifiers.
    pub public_url: String,
    pub data_dir: PathBuf,
    /// Where the encryption key is generated when `ENCRYPTION_KEY` is not set: apart from
    /// `DATA_DIR`, so that the database's volume and its backups do not carry the key.
    pub key_dir: PathBuf,
    /// `WEB_DIR`: serve the admin UI from this directory (development) instead of the one
    /// built into the binary.
    pub web_dir: Option<PathBuf>,
    pub database: DatabaseConfig,
    pub database_max_connections: u32,
    /// How long start-up keeps retrying an unreachable database (0: try once).
    pub database_connect_timeout: std::time::Duration,
    /// When set, the JWT signing key is derived from it (stable across replicas without a
    /// shared database row). When unset, a key is generated once and stored in the database.
    pub jwt_secret: Option<Secret<String>>,
    /// 32-byte key for encrypting secrets at rest. When unset, generated once and kept in
    /// `KEY_DIR/encryption.key` (mode 0600).
    pub encryption_key: Option<Secret<[u8; 32]>>,
    pub admin_username: Option<String>,
    pub admin_password: Option<Secret<String>>,
    pub password_min_length: usize,
    /// Exact origins (`scheme://host[:port]`) allowed for browser CORS requests.
    pub allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed. Empty: the socket address is the client.
    pub trusted_proxies: Vec<IpNet>,
    pub log_format: LogFormat,
    /// Which requests get an access-log line (`ACCESS_LOG`).
    pub access_log: AccessLog,
    pub log_level: String,
    /// Where the JSONL activity, security and audit logs go (`DATA_DIR/logs` by default).
    pub log_dir: PathBuf,
    /// Days of JSONL files, activity records and security events kept.
    pub log_retention_days: u32,
    /// Messages the live feed buffers; a subscriber that falls further behind is dropped.
    pub live_feed_buffer: usize,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub connections: ConnConfig,
    pub auth: AuthConfig,
    pub mcp: McpConfig,
    pub metrics: MetricsConfig,
    pub oauth: OAuthConfig,
    /// Where the values came from (for `check-config`).
    pub config_file: Option<PathBuf>,
}

/// Client connections (`conn.rs`).
#[derive(Debug, Clone, Copy)]
pub struct ConnConfig {
    /// A started request head must be complete within this long.
    pub header_timeout: Duration,
    /// A connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// `None`: derived from the open-file limit.
    pub max_connections: Option<usize>,
    /// Per client address (IPv6 per /64); 0 turns the cap off.
    pub max_per_ip: usize,
}

/// MCP rate limits (requests per minute; 0 turns a limit off). Bursts of ten seconds' worth.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    pub user_per_minute: u32,
    pub user_server_per_minute: u32,
    pub user_tool_per_minute: u32,
}

/// The OAuth authorization server for MCP clients.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Dynamic client registration (RFC 7591) at `/oauth/register`.
    pub dcr: bool,
    /// When set, registration requires `Authorization: Bearer <token>` (an initial access token).
    pub dcr_token: Option<Secret<String>>,
    /// Client ID metadata documents (URL client ids).
    pub cimd: bool,
    /// Fetch metadata documents over plain http (development only).
    pub cimd_allow_http: bool,
    /// Fetch metadata documents from loopback/private addresses (development only).
    pub cimd_allow_private: bool,
    /// Registrations per client IP per minute.
    pub register_per_minute: u32,
    /// Token and revocation requests per client IP per minute.
    pub token_per_minute: u32,
    /// Dynamically registered clients stored per registering address (0 = no cap).
    pub max_clients_per_address: u32,
    /// A dynamically registered client that never completed an authorization is removed
    /// this long after registering (0 = kept).
    pub unused_client_ttl: std::time::Duration,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    pub token: Option<Secret<String>>,
    /// Without a token: whether `/metrics` is open (it is off otherwise).
    pub public: bool,
}

/// The MCP proxy.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// Largest JSON-RPC message a client may send.
    pub max_request_bytes: usize,
    /// Largest JSON response, or single SSE event, a backend may send.
    pub max_response_bytes: usize,
    /// Background health-check period (jittered); zero turns the checks off.
    pub health_interval: Duration,
    /// A client session unused this long is forgotten (the backend session is ended too).
    pub session_idle: Duration,
    /// Timeout of new servers that do not set their own.
    pub default_timeout: Duration,
    /// Items per page of the aggregated endpoint's lists.
    pub aggregate_page_size: usize,
    /// MCP POST requests one user may have in progress at once (0: no cap).
    pub max_concurrent_per_user: u32,
    /// Request-body bytes one user may send per minute to the MCP endpoints (0: off).
    pub user_bytes_per_minute: u64,
    pub rate_limits: RateLimitConfig,
}

/// Token lifetimes, registration and login protection.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// `POST /auth/register` works only when true (off by default).
    pub allow_registration: bool,
    /// Consecutive failures for one username before it is locked.
    pub login_max_failures: u32,
    /// First lock duration; each further failure doubles it, up to `login_lockout_max`.
    pub login_lockout: Duration,
    pub login_lockout_max: Duration,
    /// Failed logins from one client IP within `login_ip_window` before that IP is refused.
    pub login_ip_max_failures: u32,
    pub login_ip_window: Duration,
    /// How long a replica may reuse a user's or session's state read from the database.
    /// Changes made through this replica invalidate it at once; see docs/ARCHITECTURE.md.
    pub cache_ttl: Duration,
}

#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A SQLite file; created (with its directory) if missing.
    Sqlite { path: PathBuf },
    /// A Postgres connection URL (may carry a password, hence redacted in `Debug`).
    Postgres { url: Secret<String> },
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseConfig::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
            DatabaseConfig::Postgres { url } => write!(f, "{}", redact_url_password(url.expose())),
        }
    }
}

/// Which requests get an INFO access-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    /// Everything but MCP traffic (which has its activity records and JSONL log).
    Api,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// A value that must never be printed: `Debug` shows `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An IPv4 or IPv6 network in CIDR notation (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) compare as the IPv4 address they carry.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR network"))?;
        let addr = canonical_ip(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has an invalid prefix length (0-{max})"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

/// A configuration error that names the offending setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var} (config key {key}): {message}", key = var.to_ascii_lowercase())]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    fn new(var: &str, message: impl Into<String>) -> Self {
        Self {
            var: var.to_string(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Loads from the process environment plus the file named by `file` or `CONFIG_FILE`.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| KNOWN_VARS.contains(&k.as_str()))
            .collect();
        Self::from_sources(&env, file)
    }

    /// Builds the configuration from an explicit environment map (tests use this instead of
    /// touching the process environment) and an optional TOML file.
    pub fn from_sources(
        env: &BTreeMap<String, String>,
        file: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("CONFIG_FILE").map(PathBuf::from));
        let mut values = match &file {
            Some(path) => read_toml_file(path)?,
            None => BTreeMap::new(),
        };
        for (k, v) in env {
            if KNOWN_VARS.contains(&k.as_str()) {
                values.insert(k.clone(), v.clone());
            }
        }
        // `<NAME>_FILE`: the secret is the file's content (one trailing newline dropped).
        for (name, file_var) in SECRET_VARS {
            let Some(path) = values
                .get(*file_var)
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
            else {
                continue;
            };
            if values.get(*name).is_some_and(|v| !v.trim().is_empty()) {
                return Err(ConfigError::new(
                    file_var,
                    format!("set either {name} or {file_var}, not both"),
                ));
            }
            let text = read_secret_file(&path)
                .map_err(|m| ConfigError::new(file_var, format!("`{path}`: {m}")))?;
            // An empty secret file is a failed mount, not "unset": fail rather than fall back
            // to a default (an open registration, a local database, a generated key).
            if text.trim().is_empty() {
                return Err(ConfigError::new(file_var, format!("`{path}` is empty")));
            }
            values.insert((*name).to_string(), text.trim().to_string());
        }
        let vars = Vars(&values);
        // The original gateway's switch: authentication cannot be turned off here.
        if let Some(raw) = vars.get("REQUIRE_AUTH")
            && !matches!(parse_bool(raw), Ok(true))
        {
            return Err(ConfigError::new(
                "REQUIRE_AUTH",
                format!(
                    "authentication is always on in AuthMCP Gateway and cannot be turned off; remove REQUIRE_AUTH (got `{raw}`)"
                ),
            ));
        }

        let port: u16 = vars.parse("GATEWAY_PORT", 8000, |s| {
            s.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or("expected a port number 1-65535")
        })?;
        let host: IpAddr = vars.parse("GATEWAY_HOST", IpAddr::from([0, 0, 0, 0]), |s| {
            s.parse()
                .map_err(|_| "expected an IP address such as 0.0.0.0 or 127.0.0.1")
        })?;
        let public_url = match vars.get("PUBLIC_URL") {
            Some(raw) => parse_public_url(raw).map_err(|m| ConfigError::new("PUBLIC_URL", m))?,
            None => format!("http://localhost:{port}"),
        };
        let data_dir = PathBuf::from(vars.get("DATA_DIR").unwrap_or("./data"));
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("DATA_DIR", "must not be empty"));
        }
        let key_dir = PathBuf::from(vars.get("KEY_DIR").unwrap_or("./keys"));
        if key_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("KEY_DIR", "must not be empty"));
        }
        let web_dir = vars
            .get("WEB_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        let log_dir = match vars.get("LOG_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => data_dir.join("logs"),
        };
        let log_retention_days = u32::try_from(vars.parse("LOG_RETENTION_DAYS", 30, |s| {
            ranged(s, 1, 3650, "expected days 1-3650")
        })?)
        .unwrap_or(30);
        let live_feed_buffer = usize::try_from(vars.parse("LIVE_FEED_BUFFER", 4096, |s| {
            ranged(s, 16, 65_536, "expected messages 16-65536")
        })?)
        .unwrap_or(4096);
        let database = match vars.get("DATABASE_URL") {
            None => DatabaseConfig::Sqlite {
                path: data_dir.join("authmcp.db"),
            },
            Some(url) => {
                parse_database_url(url).map_err(|m| ConfigError::new("DATABASE_URL", m))?
            }
        };
        let database_max_connections = vars.parse("DATABASE_MAX_CONNECTIONS", 10, |s| {
            s.parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or("expected a number of connections 1-1000")
        })?;
        let database_connect_timeout = std::time::Duration::from_secs(vars.parse(
            "DATABASE_CONNECT_TIMEOUT_SECS",
            60,
            |s| {
                s.parse::<u64>()
                    .ok()
                    .filter(|n| *n <= 3600)
                    .ok_or("expected seconds 0-3600")
            },
        )?);
        let jwt_secret = match vars.get("JWT_SECRET") {
            None => None,
            Some(s) if s.len() < 32 => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "must be at least 32 characters (leave it unset to have a key generated and persisted)",
                ));
            }
            Some(s) => Some(Secret::new(s.to_string())),
        };
        let encryption_key = match vars.get("ENCRYPTION_KEY") {
            None => None,
            Some(s) => Some(Secret::new(
                parse_key32(s).map_err(|m| ConfigError::new("ENCRYPTION_KEY", m))?,
            )),
        };
        let admin_username = vars.get("ADMIN_USERNAME").map(str::to_string);
        let admin_password = vars
            .get("ADMIN_PASSWORD")
            .map(|s| Secret::new(s.to_string()));
        if admin_username.is_some() != admin_password.is_some() {
            let missing = if admin_username.is_some() {
                "ADMIN_PASSWORD"
            } else {
                "ADMIN_USERNAME"
            };
            return Err(ConfigError::new(
                missing,
                "ADMIN_USERNAME and ADMIN_PASSWORD must be set together",
            ));
        }
        let password_min_length = vars.parse("PASSWORD_MIN_LENGTH", 12, |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| (8..=256).contains(n))
                .ok_or("expected a length 8-256")
        })?;
        let allowed_origins = vars
            .list("ALLOWED_ORIGINS")
            .into_iter()
            .map(|o| parse_origin(&o).map_err(|m| ConfigError::new("ALLOWED_ORIGINS", m)))
            .collect::<Result<Vec<_>, _>>()?;
        let trusted_proxies = vars
            .list("TRUSTED_PROXIES")
            .into_iter()
            .map(|p| {
                p.parse::<IpNet>()
                    .map_err(|m| ConfigError::new("TRUSTED_PROXIES", m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let log_format = vars.parse("LOG_FORMAT", LogFormat::Human, |s| {
            match s.to_ascii_lowercase().as_str() {
                "human" | "text" | "pretty" => Ok(LogFormat::Human),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected `human` or `json`"),
            }
        })?;
        let access_log = vars.parse("ACCESS_LOG", AccessLog::Api, |s| {
            match s.to_ascii_lowercase().as_str() {
                "off" | "false" | "0" => Ok(AccessLog::Off),
                "api" => Ok(AccessLog::Api),
                "all" => Ok(AccessLog::All),
                _ => Err("expected `off`, `api` or `all`"),
            }
        })?;
        let log_level = vars.get("LOG_LEVEL").unwrap_or("info").to_string();
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(ConfigError::new(
                "LOG_LEVEL",
                "expected a level (error, warn, info, debug, trace) or a tracing filter such as `info,authmcp_gateway=debug`",
            ));
        }
        let max_body_bytes = vars.parse("MAX_BODY_BYTES", 4 * 1024 * 1024, |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| (1024..=256 * 1024 * 1024).contains(n))
                .ok_or("expected a size in bytes between 1024 and 268435456")
        })?;
        let request_timeout = Duration::from_secs(vars.parse("REQUEST_TIMEOUT_SECS", 30, secs)?);
        let shutdown_timeout =
            Duration::from_secs(vars.parse("SHUTDOWN_TIMEOUT_SECS", 30, secs)?);
        let connections = ConnConfig {
            header_timeout: Duration::from_secs(vars.parse("HTTP_HEADER_TIMEOUT_SECS", 15, |s| {
                ranged(s, 1, 3600, "expected a number of seconds 1-3600")
            })?),
            idle_timeout: Duration::from_secs(vars.parse("HTTP_IDLE_TIMEOUT_SECS", 75, secs)?),
            max_connections: match vars.parse("MAX_CONNECTIONS", 0, |s| {
                ranged(s, 0, 10_000_000, "expected 0 (derived from the open-file limit) or a number of connections up to 10000000")
            })? {
                0 => None,
                n => Some(usize::try_from(n.max(16)).unwrap_or(usize::MAX)),
            },
            max_per_ip: usize::try_from(vars.parse("MAX_CONNECTIONS_PER_IP", 1024, |s| {
                ranged(s, 0, 10_000_000, "expected 0 (no cap) or a number of connections up to 10000000")
            })?)
            .unwrap_or(usize::MAX),
        };

        let auth = AuthConfig {
            access_token_ttl: Duration::from_secs(vars.parse(
                "ACCESS_TOKEN_TTL_SECS",
                900,
                |s| ranged(s, 60, 86_400, "expected a number of seconds 60-86400"),
            )?),
            refresh_token_ttl: Duration::from_secs(vars.parse(
                "REFRESH_TOKEN_TTL_SECS",
                30 * 86_400,
                |s| {
                    ranged(
                        s,
                        300,
                        365 * 86_400,
                        "expected a number of seconds 300-31536000",
                    )
                },
            )?),
            allow_registration: vars.parse("ALLOW_REGISTRATION", false, parse_bool)?,
            login_max_failures: u32::try_from(vars.parse("LOGIN_MAX_FAILURES", 5, |s| {
                ranged(s, 1, 100, "expected a number 1-100")
            })?)
            .unwrap_or(5),
            login_lockout: Duration::from_secs(vars.parse("LOGIN_LOCKOUT_SECS", 60, |s| {
                ranged(s, 1, 86_400, "expected a number of seconds 1-86400")
            })?),
            login_lockout_max: Duration::from_secs(vars.parse(
                "LOGIN_LOCKOUT_MAX_SECS",
                3600,
                |s| ranged(s, 1, 7 * 86_400, "expected a number of seconds 1-604800"),
            )?),
            login_ip_max_failures: u32::try_from(vars.parse("LOGIN_IP_MAX_FAILURES", 20, |s| {
                ranged(s, 1, 100_000, "expected a number 1-100000")
            })?)
            .unwrap_or(20),
            login_ip_window: Duration::from_secs(vars.parse("LOGIN_IP_WINDOW_SECS", 900, |s| {
                ranged(s, 1, 86_400, "expected a number of seconds 1-86400")
            })?),
            cache_ttl: Duration::from_millis(vars.parse("AUTH_CACHE_TTL_MS", 2000, |s| {
                ranged(s, 0, 60_000, "expected milliseconds 0-60000")
            })?),
        };
        if auth.login_lockout_max < auth.login_lockout {
            return Err(ConfigError::new(
                "LOGIN_LOCKOUT_MAX_SECS",
                "must not be smaller than LOGIN_LOCKOUT_SECS",
            ));
        }

        let mcp = McpConfig {
            max_request_bytes: usize::try_from(vars.parse(
                "MCP_MAX_REQUEST_BYTES",
                4 * 1024 * 1024,
                |s| ranged(s, 1024, 256 * 1024 * 1024, "expected bytes 1024-268435456"),
            )?)
            .unwrap_or(4 * 1024 * 1024),
            max_response_bytes: usize::try_from(vars.parse(
                "MCP_MAX_RESPONSE_BYTES",
                16 * 1024 * 1024,
                |s| {
                    ranged(
                        s,
                        1024,
                        1024 * 1024 * 1024,
                        "expected bytes 1024-1073741824",
                    )
                },
            )?)
            .unwrap_or(16 * 1024 * 1024),
            health_interval: Duration::from_secs(vars.parse(
                "MCP_HEALTH_INTERVAL_SECS",
                30,
                |s| {
                    ranged(
                        s,
                        0,
                        86_400,
                        "expected seconds 0-86400 (0 turns health checks off)",
                    )
                },
            )?),
            session_idle: Duration::from_secs(vars.parse("MCP_SESSION_IDLE_SECS", 3600, |s| {
                ranged(s, 10, 7 * 86_400, "expected seconds 10-604800")
            })?),
            default_timeout: Duration::from_secs(vars.parse(
                "MCP_DEFAULT_TIMEOUT_SECS",
                60,
                |s| ranged(s, 1, 3600, "expected seconds 1-3600"),
            )?),
            aggregate_page_size: usize::try_from(vars.parse(
                "MCP_AGGREGATE_PAGE_SIZE",
                500,
                |s| ranged(s, 1, 10_000, "expected items per page 1-10000"),
            )?)
            .unwrap_or(500),
            max_concurrent_per_user: u32::try_from(vars.parse(
                "MCP_MAX_CONCURRENT_PER_USER",
                64,
                |s| ranged(s, 0, 100_000, "expected requests 0-100000 (0 = no cap)"),
            )?)
            .unwrap_or(64),
            user_bytes_per_minute: vars.parse(
                "MCP_RATE_LIMIT_USER_BYTES_PER_MINUTE",
                512 * 1024 * 1024,
                |s| ranged(s, 0, 1 << 40, "expected bytes per minute (0 = off)"),
            )?,
            rate_limits: RateLimitConfig {
                user_per_minute: u32::try_from(vars.parse(
                    "MCP_RATE_LIMIT_USER_PER_MINUTE",
                    6000,
                    |s| {
                        ranged(
                            s,
                            0,
                            1_000_000_000,
                            "expected requests per minute (0 = off)",
                        )
                    },
                )?)
                .unwrap_or(6000),
                user_server_per_minute: u32::try_from(vars.parse(
                    "MCP_RATE_LIMIT_USER_SERVER_PER_MINUTE",
                    0,
                    |s| {
                        ranged(
                            s,
                            0,
                            1_000_000_000,
                            "expected requests per minute (0 = off)",
                        )
                    },
                )?)
                .unwrap_or(0),
                user_tool_per_minute: u32::try_from(vars.parse(
                    "MCP_RATE_LIMIT_USER_TOOL_PER_MINUTE",
                    0,
                    |s| {
                        ranged(
                            s,
                            0,
                            1_000_000_000,
                            "expected requests per minute (0 = off)",
                        )
                    },
                )?)
                .unwrap_or(0),
            },
        };

        let metrics = MetricsConfig {
            token: match vars.get("METRICS_TOKEN") {
                None => None,
                Some(t) if t.len() < 16 => {
                    return Err(ConfigError::new(
                        "METRICS_TOKEN",
                        "must be at least 16 characters",
                    ));
                }
                Some(t) => Some(Secret::new(t.to_string())),
            },
            public: vars.parse("METRICS_PUBLIC", false, parse_bool)?,
        };

        let oauth = OAuthConfig {
            dcr: vars.parse("OAUTH_DCR", true, parse_bool)?,
            dcr_token: match vars.get("OAUTH_DCR_TOKEN") {
                None => None,
                Some(t) if t.len() < 16 => {
                    return Err(ConfigError::new(
                        "OAUTH_DCR_TOKEN",
                        "must be at least 16 characters",
                    ));
                }
                Some(t) => Some(Secret::new(t.to_string())),
            },
            cimd: vars.parse("OAUTH_CIMD", true, parse_bool)?,
            cimd_allow_http: vars.parse("OAUTH_CIMD_ALLOW_HTTP", false, parse_bool)?,
            cimd_allow_private: vars.parse("OAUTH_CIMD_ALLOW_PRIVATE", false, parse_bool)?,
            register_per_minute: u32::try_from(vars.parse(
                "OAUTH_REGISTER_PER_MINUTE",
                20,
                |s| ranged(s, 1, 1_000_000, "expected registrations per minute"),
            )?)
            .unwrap_or(20),
            token_per_minute: u32::try_from(vars.parse("OAUTH_TOKEN_PER_MINUTE", 120, |s| {
                ranged(s, 1, 1_000_000, "expected requests per minute")
            })?)
            .unwrap_or(120),
            max_clients_per_address: u32::try_from(vars.parse(
                "OAUTH_MAX_CLIENTS_PER_ADDRESS",
                50,
                |s| ranged(s, 0, 1_000_000, "expected a number of clients"),
            )?)
            .unwrap_or(50),
            // At least the 10 minutes a sign-in request lives, so no client goes while its
            // user is on the consent page.
            unused_client_ttl: std::time::Duration::from_secs(vars.parse(
                "OAUTH_UNUSED_CLIENT_TTL_SECS",
                86_400,
                |s| {
                    ranged(s, 0, 31_536_000, "expected seconds: 0, or 600-31536000").and_then(|n| {
                        if n == 0 || n >= 600 {
                            Ok(n)
                        } else {
                            Err("expected seconds: 0, or 600-31536000")
                        }
                    })
                },
            )?),
        };

        Ok(Config {
            oauth,
            log_dir,
            log_retention_days,
            live_feed_buffer,
            host,
            port,
            public_url,
            data_dir,
            key_dir,
            web_dir,
            database,
            database_max_connections,
            database_connect_timeout,
            jwt_secret,
            encryption_key,
            admin_username,
            admin_password,
            password_min_length,
            allowed_origins,
            trusted_proxies,
            log_format,
            access_log,
            log_level,
            max_body_bytes,
            request_timeout,
            shutdown_timeout,
            connections,
            auth,
            mcp,
            metrics,
            config_file: file,
        })
    }
}

fn ranged(s: &str, min: u64, max: u64, message: &'static str) -> Result<u64, &'static str> {
    s.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or(message)
}

fn parse_bool(s: &str) -> Result<bool, &'static str> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false"),
    }
}

fn secs(s: &str) -> Result<u64, &'static str> {
    s.parse::<u64>()
        .ok()
        .filter(|n| (1..=86_400).contains(n))
        .ok_or("expected a number of seconds 1-86400")
}

struct Vars<'a>(&'a BTreeMap<String, String>);

impl Vars<'_> {
    /// The trimmed value, or `None` when unset or empty (an empty variable means "default").
    fn get(&self, var: &str) -> Option<&str> {
        self.0.get(var).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    fn parse<T>(
        &self,
        var: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, &'static str>,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => parse(raw).map_err(|m| ConfigError::new(var, format!("{m}, got `{raw}`"))),
        }
    }

    /// A comma-separated list; blanks are dropped.
    fn list(&self, var: &str) -> Vec<String> {
        self.get(var)
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn read_toml_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "CONFIG_FILE",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        ConfigError::new(
            "CONFIG_FILE",
            format!("{} is not valid TOML: {e}", path.display()),
        )
    })?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let var = key.to_ascii_uppercase();
        if !KNOWN_VARS.contains(&var.as_str()) || var == "CONFIG_FILE" {
            return Err(ConfigError::new(
                "CONFIG_FILE",
                format!(
                    "unknown key `{key}` in {} (see docs/CONFIG.md)",
                    path.display()
                ),
            ));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s),
                    other => Ok(other.to_string()),
                })
                .collect::<Result<Vec<_>, ConfigError>>()?
                .join(","),
            _ => {
                return Err(ConfigError::new(
                    &var,
                    "expected a string, integer, boolean or array in the config file",
                ));
            }
        };
        values.insert(var, text);
    }
    Ok(values)
}

fn parse_public_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{raw}` must start with http:// or https://"));
    }
    if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{raw}` must be a base URL without query or fragment"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{raw}` must not carry credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn parse_origin(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|_| format!("`{raw}` is not an origin"))?;
    let origin = url.origin();
    if !origin.is_tuple() || !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{raw}` is not an http(s) origin"));
    }
    let serialized = origin.ascii_serialization();
    if raw.trim_end_matches('/') != serialized {
        return Err(format!(
            "`{raw}` must be an origin only (scheme://host[:port]), e.g. `{serialized}`"
        ));
    }
    Ok(serialized)
}

fn parse_database_url(raw: &str) -> Result<DatabaseConfig, String> {
    if let Some(rest) = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))
    {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err("a sqlite URL must name a file, e.g. sqlite://./data/authmcp.db".into());
        }
        return Ok(DatabaseConfig::Sqlite {
            path: PathBuf::from(path),
        });
    }
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        url::Url::parse(raw).map_err(|e| format!("not a valid postgres URL: {e}"))?;
        return Ok(DatabaseConfig::Postgres {
            url: Secret::new(raw.to_string()),
        });
    }
    Err("expected a sqlite://… or postgres://… URL".into())
}

fn parse_key32(raw: &str) -> Result<[u8; 32], String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let unpadded = raw.trim_end_matches('=');
    let bytes = STANDARD_NO_PAD
        .decode(unpadded)
        .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
        .map_err(|_| "expected 32 bytes in base64 (generate one with `openssl rand -base64 32`)")?;
    bytes
        .try_into()
        .map_err(|_| "expected exactly 32 bytes in base64 (`openssl rand -base64 32`)".into())
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
/// A secret file's text: a regular file of at most 64 KiB (not a FIFO or `/dev/zero`, which
/// would hang or exhaust the start-up and every health probe).
fn read_secret_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    const MAX: u64 = 64 * 1024;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut text = String::new();
    file.take(MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read it as text: {e}"))?;
    if text.len() as u64 > MAX {
        return Err("larger than 64 KiB".into());
    }
    Ok(text)
}

pub fn redact_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            // Postgres also takes the password as a query parameter.
            if url
                .query_pairs()
                .any(|(k, _)| k.eq_ignore_ascii_case("password"))
            {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string()
        }
        Err(_) => "[unparseable url]".to_string(),
    }
}

#[cfg(test)]
mod tests;
