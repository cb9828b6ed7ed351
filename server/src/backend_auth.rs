//! OAuth credentials toward backends: the gateway as an OAuth client of its backends'
//! authorization servers.
//!
//! Three kinds, configured per server (the configuration is the server's sealed credential):
//! - `oauth_client_credentials`: the gateway's own token from the client-credentials grant;
//! - `oauth_admin`: an account connected once by an admin (authorization code + PKCE), whose
//!   refresh token the gateway keeps;
//! - `oauth_user`: the same flow run by each user, so a user's calls carry their own token.
//!
//! Tokens live in `backend_tokens`, sealed. A `TokenCell` holds the current access token of one
//! (server, user) in memory and renews it: proactively shortly before it expires (a jittered
//! margin), and when the backend refuses it (401). Renewal is single-flight: one task per cell
//! in this process (a mutex), one replica per row (a lease in the row, `claim`), and new tokens
//! are written only over the version that was read, so a refresh token is used once even with
//! rotation. Every request to an authorization server goes through `fetch.rs`.
//! Submodules: `discovery` (RFC 9728 / RFC 8414 metadata, registration), `connect` (the
//! authorization-code flow in the browser).

pub mod connect;
pub mod discovery;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::db::{self, Db, backend_tokens::NewTokens};
use crate::events::{EventContext, EventSink, EventType, Severity};
use crate::fetch::{self, FetchError};
use crate::keys::SecretBox;

/// Time and size limits of every request to an authorization server.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
pub const FETCH_MAX_BYTES: usize = 256 * 1024;
/// How long one replica may hold the right to refresh a credential.
const LEASE: Duration = Duration::from_secs(20);
/// After a failure that may pass (the authorization server unreachable), calls answer the
/// same error for this long instead of asking again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// At most this many cells in memory (per-user cells of idle users are dropped first).
const MAX_CELLS: usize = 20_000;

/// The kind of an OAuth credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ClientCredentials,
    Admin,
    User,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ClientCredentials => "oauth_client_credentials",
            Kind::Admin => "oauth_admin",
            Kind::User => "oauth_user",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "oauth_client_credentials" => Some(Kind::ClientCredentials),
            "oauth_admin" => Some(Kind::Admin),
            "oauth_user" => Some(Kind::User),
            _ => None,
        }
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<ClientAuth> {
        match s {
            "client_secret_basic" => Some(ClientAuth::ClientSecretBasic),
            "client_secret_post" => Some(ClientAuth::ClientSecretPost),
            "none" => Some(ClientAuth::None),
            _ => None,
        }
    }
}

/// A server's OAuth configuration: the sealed content of `mcp_servers.credential`. The
/// authorization-code kinds fill in what discovery and registration found on first connect.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct OAuthConfig {
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub authorization_url: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub auth_method: ClientAuth,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    /// Sent as `resource` (RFC 8707); default: the server's URL.
    #[serde(default)]
    pub resource: Option<String>,
    /// The client was registered by the gateway (dynamic registration), for `redirect_uri`.
    #[serde(default)]
    pub registered_redirect_uri: Option<String>,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("token_url", &self.token_url)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl OAuthConfig {
    pub fn seal(&self, secret_box: &SecretBox, server_id: i64) -> anyhow::Result<Vec<u8>> {
        secret_box.seal(
            &serde_json::to_vec(self)?,
            &crate::mcp::registry::credential_context(server_id),
        )
    }
}

/// One server's OAuth setup, shared by its server-wide cell or all its per-user cells.
#[derive(Debug)]
pub struct ServerAuth {
    pub server_id: i64,
    pub server: String,
    pub url: String,
    pub kind: Kind,
    pub config: OAuthConfig,
    policy: tokio::sync::OnceCell<fetch::Policy>,
}

impl ServerAuth {
    pub fn new(row: &crate::db::servers::ServerRow, kind: Kind, config: OAuthConfig) -> ServerAuth {
        ServerAuth {
            server_id: row.id,
            server: row.name.clone(),
            url: row.url.clone(),
            kind,
            config,
            policy: tokio::sync::OnceCell::new(),
        }
    }

    /// The address policy of this server's OAuth requests: public `https` endpoints only,
    /// unless the server's own URL is on a loopback or private address; then its
    /// authorization server may be too (and plain `http` is allowed there).
    pub async fn policy(&self) -> fetch::Policy {
        *self
            .policy
            .get_or_init(|| async {
                let url = url::Url::parse(&self.url).ok();
                let private = match &url {
                    Some(u) => fetch::is_private_url(u).await,
                    None => false,
                };
                fetch::Policy {
                    allow_private: private,
                    allow_http: private && url.as_ref().is_some_and(|u| u.scheme() == "http"),
                    timeout: FETCH_TIMEOUT,
                    max_bytes: FETCH_MAX_BYTES,
                    private_origin: None,
                }
            })
            .await
    }

    pub fn resource(&self) -> String {
        self.config
            .resource
            .clone()
            .unwrap_or_else(|| self.url.clone())
    }
}

/// Why a call could not get a credential; the message is for the MCP client and the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    /// No account connected (yet, or any more).
    NotConnected { connect_url: Option<String> },
    /// The refresh token or the client was refused: someone must reconnect.
    Failed {
        reason: String,
        connect_url: Option<String>,
    },
    /// The authorization server could not be reached or answered nonsense; may pass.
    Unavailable { reason: String },
}

impl CredentialError {
    pub fn message(&self, server: &str) -> String {
        match self {
            CredentialError::NotConnected {
                connect_url: Some(url),
            } => format!(
                "server '{server}' acts with your own account, which is not connected: connect it at {url}, then try again"
            ),
            CredentialError::NotConnected { connect_url: None } => {
                format!("server '{server}' has no connected account; an admin must connect it")
            }
            CredentialError::Failed {
                reason,
                connect_url: Some(url),
            } => format!(
                "your connection to server '{server}' no longer works ({reason}): reconnect at {url}, then try again"
            ),
            CredentialError::Failed {
                reason,
                connect_url: None,
            } => format!(
                "server '{server}' could not renew its credential ({reason}); an admin must reconnect it"
            ),
            CredentialError::Unavailable { reason } => {
                format!("server '{server}' could not renew its credential: {reason}")
            }
        }
    }
}

/// What a token endpoint answered.
#[derive(Debug)]
pub enum GrantError {
    /// `invalid_grant`, `invalid_client`, `unauthorized_client`, …: trying again will not help.
    Refused(String),
    /// Unreachable, timed out, a 5xx, or an answer that is not a token response.
    Unavailable(String),
}

impl GrantError {
    fn reason(&self) -> &str {
        match self {
            GrantError::Refused(r) | GrantError::Unavailable(r) => r,
        }
    }
}

impl From<FetchError> for GrantError {
    fn from(e: FetchError) -> GrantError {
        GrantError::Unavailable(e.0)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Tokens as the token endpoint issued them (plain, not yet sealed).
pub struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
}

/// One token-endpoint request: `form` plus the client's authentication.
pub async fn grant(
    auth: &ServerAuth,
    token_url: &str,
    mut form: Vec<(&'static str, String)>,
) -> Result<Issued, GrantError> {
    let config = &auth.config;
    let client_id = config.client_id.clone().unwrap_or_default();
    let secret = config.client_secret.clone();
    let basic = match (config.auth_method, &secret) {
        (ClientAuth::ClientSecretBasic, Some(secret)) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                form_encode(&client_id),
                form_encode(secret)
            ))
        )),
        (ClientAuth::ClientSecretPost, Some(secret)) => {
            form.push(("client_id", client_id.clone()));
            form.push(("client_secret", secret.clone()));
            None
        }
        _ => {
            form.push(("client_id", client_id.clone()));
            None
        }
    };
    let policy = auth.policy().await;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let res = fetch::send(&policy, reqwest::Method::POST, token_url, |r| {
        let r = r
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body.clone());
        match &basic {
            Some(value) => r.header(reqwest::header::AUTHORIZATION, value),
            None => r,
        }
    })
    .await?;
    if !(200..300).contains(&res.status) {
        let error = serde_json::from_slice::<serde_json::Value>(&res.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string));
        return Err(match (res.status, error) {
            (400 | 401, Some(code))
                if code.len() <= 64 && code.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                GrantError::Refused(format!("the authorization server answered {code}"))
            }
            (401, None) => {
                GrantError::Refused("the authorization server refused the client".into())
            }
            (status, _) => {
                GrantError::Unavailable(format!("the authorization server answered HTTP {status}"))
            }
        });
    }
    let parsed: TokenResponse = serde_json::from_slice(&res.body).map_err(|_| {
        GrantError::Unavailable("the authorization server's token response is not valid".into())
    })?;
    if !parsed.token_type.eq_ignore_ascii_case("bearer")
        || parsed.access_token.is_empty()
        || HeaderValue::from_str(&format!("Bearer {}", parsed.access_token)).is_err()
    {
        return Err(GrantError::Unavailable(
            "the authorization server issued a token that is not a usable bearer token".into(),
        ));
    }
    let expires_in = match &parsed.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.parse::<i64>().ok(),
        _ => None,
    }
    .filter(|s| *s > 0)
    .map(|s| s.min(10 * 365 * 86_400));
    Ok(Issued {
        access_token: parsed.access_token,
        refresh_token: parsed.refresh_token.filter(|t| !t.is_empty()),
        expires_at: expires_in.map(|s| db::now() + s),
        scope: parsed.scope,
    })
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1 for Basic).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn token_context(server_id: i64, user_id: i64, which: &str) -> String {
    format!("backend_tokens:{server_id}:{user_id}:{which}")
}

/// The access token in hand.
#[derive(Clone)]
struct Held {
    header: HeaderValue,
    /// Unix milliseconds from which it is renewed before use (`i64::MAX`: never).
    renew_at: i64,
    /// Unix milliseconds until which a backend's 401 to it does not make the gateway renew it
    /// (a token that new was not refused for its age: renewing would only spend refreshes).
    young_until: i64,
    version: i64,
}

/// The current access token of one (server, user), renewed on demand.
pub struct TokenCell {
    pub auth: Arc<ServerAuth>,
    pub user_id: i64,
    tokens: Arc<Tokens>,
    held: RwLock<Option<Held>>,
    /// Unix milliseconds until which the last failure is answered without asking again.
    failed: Mutex<Option<(i64, CredentialError)>>,
    flight: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCell")
            .field("server", &self.auth.server)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// How a renewal ended, as the task that did it reports it: `Ok(None)` when the row was
/// written meanwhile (reconnected or disconnected), so the caller looks again.
type Renewed = Result<Option<HeaderValue>, CredentialError>;

impl TokenCell {
    fn fresh(&self) -> Option<HeaderValue> {
        let held = self.held.read().ok()?;
        let held = held.as_ref()?;
        (now_ms() < held.renew_at).then(|| held.header.clone())
    }

    fn connect_url(&self) -> Option<String> {
        (self.auth.kind == Kind::User)
            .then(|| format!("{}/connect/{}", self.tokens.public_url, self.auth.server))
    }

    /// The `Authorization` value to send now (renewing the token first when it is due).
    pub async fn header(self: &Arc<Self>) -> Result<HeaderValue, CredentialError> {
        if let Some(h) = self.fresh() {
            return Ok(h);
        }
        let _flight = self.flight.lock().await;
        if let Some(h) = self.fresh() {
            return Ok(h);
        }
        self.obtain(None, false).await
    }

    /// Renews now ("refresh now"), even after a failure: a client-credentials server asks for a
    /// new token, a connected account uses its refresh token.
    pub async fn renew_now(self: &Arc<Self>) -> Result<HeaderValue, CredentialError> {
        let _flight = self.flight.lock().await;
        self.forget();
        self.obtain(Some(-1), true).await
    }

    /// The backend refused `used`: renew (unless that already happened, or the token is too new
    /// to have been refused for its age) and return the token to send again. `Ok(None)`: keep
    /// the backend's answer.
    pub async fn rejected(
        self: &Arc<Self>,
        used: &HeaderValue,
    ) -> Result<Option<HeaderValue>, CredentialError> {
        let _flight = self.flight.lock().await;
        let held = self.held.read().ok().and_then(|h| h.clone());
        let stale = match held {
            Some(held) if held.header != *used && now_ms() < held.renew_at => {
                return Ok(Some(held.header));
            }
            Some(held) if held.header == *used && now_ms() < held.young_until => return Ok(None),
            Some(held) => held.version,
            None => -1,
        };
        if let Ok(mut slot) = self.held.write() {
            *slot = None;
        }
        self.obtain(Some(stale), false).await.map(Some)
    }

    /// Forgets the token in memory (disconnected, reconnected or edited elsewhere).
    pub fn forget(&self) {
        if let Ok(mut held) = self.held.write() {
            *held = None;
        }
        if let Ok(mut f) = self.failed.lock() {
            *f = None;
        }
    }

    fn unavailable(&self, reason: &str) -> CredentialError {
        CredentialError::Unavailable {
            reason: reason.to_string(),
        }
    }

    fn database_unavailable(&self) -> CredentialError {
        self.unavailable("the gateway's database is unavailable")
    }

    fn hold(&self, held: Held) -> HeaderValue {
        let header = held.header.clone();
        if let Ok(mut slot) = self.held.write() {
            *slot = Some(held);
        }
        header
    }

    /// Reads the row, uses its token when it is good, else renews it under the lease (waiting
    /// while another replica holds it). `stale`: the version whose token the backend refused
    /// (-1: whatever is stored), renewed even if it looks fresh. `force`: try even when the
    /// row says the credential failed. One deadline bounds the whole wait.
    async fn obtain(
        self: &Arc<Self>,
        stale: Option<i64>,
        force: bool,
    ) -> Result<HeaderValue, CredentialError> {
        if !force
            && let Ok(f) = self.failed.lock()
            && let Some((until, e)) = f.as_ref()
            && now_ms() < *until
        {
            return Err(e.clone());
        }
        let (server_id, user_id) = (self.auth.server_id, self.user_id);
        let db = &self.tokens.db;
        let deadline = tokio::time::Instant::now() + LEASE + FETCH_TIMEOUT;
        let mut stale = stale;
        loop {
            let row = db::backend_tokens::get(&db.pool, server_id, user_id)
                .await
                .map_err(|_| self.database_unavailable())?;
            let row = match row {
                Some(row) => row,
                None if self.auth.kind == Kind::ClientCredentials => {
                    db::backend_tokens::ensure(&db.pool, server_id, user_id, db::now())
                        .await
                        .map_err(|_| self.database_unavailable())?;
                    continue;
                }
                None => {
                    return Err(CredentialError::NotConnected {
                        connect_url: self.connect_url(),
                    });
                }
            };
            if row.status == "failed" && !force {
                return Err(CredentialError::Failed {
                    reason: row
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "the credential was refused".into()),
                    connect_url: self.connect_url(),
                });
            }
            let refused = stale.is_some_and(|v| v == row.version || v == -1);
            if !refused && let Some(held) = self.usable(&row) {
                return Ok(self.hold(held));
            }
            // Renewal is due: one replica at a time (the lease is taken on the database's
            // clock, so replicas' clocks do not matter).
            let claimed = db::backend_tokens::claim(
                &db.pool,
                db.backend,
                server_id,
                user_id,
                row.version,
                LEASE.as_millis() as i64,
            )
            .await
            .map_err(|_| self.database_unavailable())?;
            if claimed {
                match self.renew_in_task(row).await? {
                    Some(header) => return Ok(header),
                    None => {
                        stale = None;
                        continue;
                    }
                }
            }
            // Another replica (or a renewal of this one whose caller went away) holds the
            // lease: wait for a newer version, or for the lease to lapse, then look again.
            if tokio::time::Instant::now() >= deadline {
                return Err(self.unavailable("another replica is still renewing the credential"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A newer version is good even if it was ours that the backend refused.
            stale = stale
                .filter(|v| *v == row.version || *v == -1)
                .map(|_| row.version);
        }
    }

    /// The row's access token, if present and not yet due for renewal.
    fn usable(&self, row: &db::backend_tokens::TokenRow) -> Option<Held> {
        let sealed = row.access_token.as_ref()?;
        let token = self
            .tokens
            .secret_box
            .open(sealed, &token_context(row.server_id, row.user_id, "access"))
            .ok()?;
        let token = String::from_utf8(token).ok()?;
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        header.set_sensitive(true);
        let issued = row.last_refresh_at.unwrap_or(row.connected_at);
        let (renew_at, young_until) = timing(issued, row.expires_at, self.user_id ^ row.version);
        (now_ms() < renew_at).then_some(Held {
            header,
            renew_at,
            young_until,
            version: row.version,
        })
    }

    /// Renews in a task of its own, so a caller that goes away (a client disconnecting, a
    /// timeout) cannot stop it between spending the refresh token and storing the new one;
    /// the caller waits for it.
    async fn renew_in_task(self: &Arc<Self>, row: db::backend_tokens::TokenRow) -> Renewed {
        let cell = self.clone();
        tokio::spawn(async move { cell.renew(&row).await })
            .await
            .unwrap_or_else(|_| Err(self.unavailable("the renewal stopped unexpectedly")))
    }

    /// Gets new tokens (the lease is held) and stores them over the version read.
    async fn renew(self: &Arc<Self>, row: &db::backend_tokens::TokenRow) -> Renewed {
        let auth = &self.auth;
        let (server_id, user_id) = (auth.server_id, self.user_id);
        let db = &self.tokens.db;
        tracing::debug!(server = %auth.server, user_id, version = row.version, "renewing a backend credential");
        let result = match auth.kind {
            Kind::ClientCredentials => self.client_credentials().await,
            Kind::Admin | Kind::User => {
                let refresh = row.refresh_token.as_ref().and_then(|sealed| {
                    self.tokens
                        .secret_box
                        .open(sealed, &token_context(server_id, user_id, "refresh"))
                        .ok()
                        .and_then(|t| String::from_utf8(t).ok())
                });
                match (refresh, &auth.config.token_url) {
                    (Some(refresh), Some(token_url)) => {
                        let mut form = vec![
                            ("grant_type", "refresh_token".to_string()),
                            ("refresh_token", refresh),
                            ("resource", auth.resource()),
                        ];
                        if let Some(scope) = &row.scope {
                            form.push(("scope", scope.clone()));
                        }
                        grant(auth, token_url, form).await
                    }
                    _ => Err(GrantError::Refused(
                        "the access token expired and no refresh token was issued".into(),
                    )),
                }
            }
        };
        let issued = match result {
            Ok(issued) => issued,
            Err(e) => {
                let dead = matches!(e, GrantError::Refused(_));
                let reason = e.reason().to_string();
                let _ = db::backend_tokens::record_failure(
                    &db.pool,
                    server_id,
                    user_id,
                    row.version,
                    &reason,
                    dead,
                    db::now(),
                )
                .await;
                self.tokens.report_failure(self, &reason, dead);
                let error = if dead {
                    CredentialError::Failed {
                        reason,
                        connect_url: self.connect_url(),
                    }
                } else {
                    CredentialError::Unavailable { reason }
                };
                if let Ok(mut f) = self.failed.lock() {
                    *f = Some((
                        now_ms() + RETRY_AFTER_FAILURE.as_millis() as i64,
                        error.clone(),
                    ));
                }
                return Err(error);
            }
        };
        let sealed = self
            .tokens
            .seal_tokens(server_id, user_id, &issued)
            .map_err(|_| self.unavailable("the gateway could not store the credential"))?;
        // The refresh token is spent: the new one must be stored, so a passing database error
        // is tried again (within the lease).
        let mut stored = None;
        for attempt in 0..5 {
            match db::backend_tokens::store_refreshed(
                &db.pool,
                server_id,
                user_id,
                row.version,
                &sealed,
                db::now(),
            )
            .await
            {
                Ok(done) => {
                    stored = Some(done);
                    break;
                }
                Err(e) => {
                    tracing::warn!(server = %auth.server, user_id, attempt, error = %e, "storing a renewed backend credential failed");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        match stored {
            None => return Err(self.database_unavailable()),
            // Disconnected or reconnected meanwhile: what is stored now wins.
            Some(false) => return Ok(None),
            Some(true) => {}
        }
        self.tokens.report_success(self);
        let mut header = HeaderValue::from_str(&format!("Bearer {}", issued.access_token))
            .map_err(|_| self.unavailable("the issued token is not a valid header"))?;
        header.set_sensitive(true);
        let (renew_at, young_until) = timing(
            db::now(),
            issued.expires_at,
            self.user_id ^ (row.version + 1),
        );
        Ok(Some(self.hold(Held {
            header,
            renew_at,
            young_until,
            version: row.version + 1,
        })))
    }

    async fn client_credentials(&self) -> Result<Issued, GrantError> {
        let config = &self.auth.config;
        let Some(token_url) = &config.token_url else {
            return Err(GrantError::Refused(
                "no token endpoint is configured".into(),
            ));
        };
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("resource", self.auth.resource()),
        ];
        if let Some(scope) = &config.scope {
            form.push(("scope", scope.clone()));
        }
        if let Some(audience) = &config.audience {
            form.push(("audience", audience.clone()));
        }
        grant(&self.auth, token_url, form).await
    }
}

/// When to renew a token issued at `issued` and how long a backend's 401 to it is not taken as
/// a reason to renew, both in Unix ms, for a token expiring at `expires` (Unix s; `None`:
/// unknown, renewed only when refused).
fn timing(issued: i64, expires: Option<i64>, seed: i64) -> (i64, i64) {
    let Some(expires) = expires else {
        return (i64::MAX, issued * 1000 + 30_000);
    };
    let lifetime_ms = (expires - issued).max(1) * 1000;
    (
        renew_at(issued, expires, seed),
        issued * 1000 + (lifetime_ms / 2).min(30_000),
    )
}

/// When to renew a token issued at `issued` (Unix s) expiring at `expires` (Unix s), in Unix
/// ms: a margin of a fifth of its lifetime (at least 1 s, at most 60 s, never more than half
/// the lifetime) plus up to half of that again, spread by `seed` so replicas and cells do not
/// all renew at once.
fn renew_at(issued: i64, expires: i64, seed: i64) -> i64 {
    let lifetime_ms = (expires - issued).max(1) * 1000;
    let margin = (lifetime_ms / 5).clamp(1000, 60_000).min(lifetime_ms / 2);
    let jitter =
        (seed.unsigned_abs().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) as i64 % (margin / 2 + 1);
    expires * 1000 - margin - jitter
}

/// Every cell of this replica, the failures it saw, and what it needs to renew tokens.
pub struct Tokens {
    db: Db,
    secret_box: Arc<SecretBox>,
    events: EventSink,
    pub public_url: String,
    /// By (server, user, the `ServerAuth` it acts under): cells made under an earlier
    /// configuration stay reachable (`forget`) while anything still holds them.
    cells: Mutex<HashMap<(i64, i64, usize), Weak<TokenCell>>>,
    /// The last renewal failure of a server's own credential (health shows `degraded`).
    failures: Mutex<HashMap<i64, String>>,
}

impl Tokens {
    pub fn new(
        db: Db,
        secret_box: Arc<SecretBox>,
        events: EventSink,
        public_url: String,
    ) -> Arc<Tokens> {
        Arc::new(Tokens {
            db,
            secret_box,
            events,
            public_url,
            cells: Mutex::default(),
            failures: Mutex::default(),
        })
    }

    /// The cell of (server, user) under `auth`: one per pair and configuration in this process
    /// while anything holds it.
    pub fn cell(self: &Arc<Self>, auth: &Arc<ServerAuth>, user_id: i64) -> Arc<TokenCell> {
        let key = (auth.server_id, user_id, Arc::as_ptr(auth) as usize);
        let mut cells = match self.cells.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some(cell) = cells.get(&key).and_then(Weak::upgrade) {
            return cell;
        }
        if cells.len() >= MAX_CELLS {
            cells.retain(|_, c| c.strong_count() > 0);
        }
        let cell = Arc::new(TokenCell {
            auth: auth.clone(),
            user_id,
            tokens: self.clone(),
            held: RwLock::new(None),
            failed: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
        });
        if cells.len() < MAX_CELLS {
            cells.insert(key, Arc::downgrade(&cell));
        }
        cell
    }

    /// Forgets what cells hold for a server (all users) or one (server, user), under every
    /// configuration.
    pub fn forget(&self, server_id: i64, user_id: Option<i64>) {
        let cells: Vec<Arc<TokenCell>> = match self.cells.lock() {
            Ok(c) => c
                .iter()
                .filter(|((s, u, _), _)| *s == server_id && user_id.is_none_or(|x| x == *u))
                .filter_map(|(_, c)| c.upgrade())
                .collect(),
            Err(_) => Vec::new(),
        };
        for cell in cells {
            cell.forget();
        }
        if user_id.is_none_or(|u| u == 0)
            && let Ok(mut f) = self.failures.lock()
        {
            f.remove(&server_id);
        }
    }

    /// Forgets every cell's token (a change of unknown extent).
    pub fn forget_all(&self) {
        let cells: Vec<Arc<TokenCell>> = match self.cells.lock() {
            Ok(c) => c.values().filter_map(Weak::upgrade).collect(),
            Err(_) => Vec::new(),
        };
        for cell in cells {
            cell.forget();
        }
        if let Ok(mut f) = self.failures.lock() {
            f.clear();
        }
    }

    /// The last renewal failure of a server's own credential, if it has not recovered.
    pub fn failure(&self, server_id: i64) -> Option<String> {
        self.failures.lock().ok()?.get(&server_id).cloned()
    }

    fn seal_tokens(
        &self,
        server_id: i64,
        user_id: i64,
        issued: &Issued,
    ) -> anyhow::Result<NewTokens> {
        Ok(NewTokens {
            access_token: self.secret_box.seal(
                issued.access_token.as_bytes(),
                &token_context(server_id, user_id, "access"),
            )?,
            refresh_token: issued
                .refresh_token
                .as_ref()
                .map(|t| {
                    self.secret_box
                        .seal(t.as_bytes(), &token_context(server_id, user_id, "refresh"))
                })
                .transpose()?,
            expires_at: issued.expires_at,
            scope: issued.scope.clone(),
        })
    }

    /// Stores the tokens of a completed connection.
    pub async fn store_connected(
        &self,
        server_id: i64,
        user_id: i64,
        issued: &Issued,
    ) -> anyhow::Result<()> {
        let sealed = self.seal_tokens(server_id, user_id, issued)?;
        db::backend_tokens::store_connected(&self.db.pool, server_id, user_id, &sealed, db::now())
            .await?;
        self.forget(server_id, Some(user_id));
        Ok(())
    }

    fn report_failure(&self, cell: &TokenCell, reason: &str, dead: bool) {
        let auth = &cell.auth;
        if cell.user_id == 0
            && let Ok(mut f) = self.failures.lock()
        {
            f.insert(auth.server_id, reason.to_string());
        }
        self.events.record(
            EventType::BackendCredentialError,
            Severity::High,
            &EventContext::default(),
            (cell.user_id != 0).then_some(cell.user_id),
            None,
            json!({
                "server": auth.server,
                "kind": auth.kind.as_str(),
                "reason": reason,
                "action": if dead { "reconnect needed" } else { "will retry" },
            }),
        );
        tracing::warn!(server = %auth.server, user_id = cell.user_id, reason, "backend credential renewal failed");
    }

    fn report_success(&self, cell: &TokenCell) {
        if cell.user_id == 0
            && let Ok(mut f) = self.failures.lock()
        {
            f.remove(&cell.auth.server_id);
        }
        if let Ok(mut f) = cell.failed.lock() {
            *f = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_before_expiry_with_a_bounded_margin() {
        // A 4-second token is renewed between 1 and 1.5 s before it expires.
        for seed in 0..200 {
            let at = renew_at(1000, 1004, seed);
            assert!((1_002_500..=1_003_000).contains(&at), "{at}");
        }
        // An hour-long token: 60 to 90 s before.
        for seed in 0..200 {
            let at = renew_at(0, 3600, seed);
            assert!((3_510_000..=3_540_000).contains(&at), "{at}");
        }
        // A 1-second token is still used before it is renewed.
        for seed in 0..200 {
            let at = renew_at(1000, 1001, seed);
            assert!((1_000_250..=1_000_500).contains(&at), "{at}");
        }
        // Seeds spread the moment.
        let spread: std::collections::HashSet<i64> =
            (0..50).map(|s| renew_at(0, 3600, s)).collect();
        assert!(spread.len() > 10);
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = CredentialError::NotConnected {
            connect_url: Some("https://gw/connect/gh".into()),
        };
        assert!(e.message("gh").contains("https://gw/connect/gh"));
        let e = CredentialError::Failed {
            reason: "the authorization server answered invalid_grant".into(),
            connect_url: None,
        };
        assert!(e.message("gh").contains("admin must reconnect"));
    }
}
