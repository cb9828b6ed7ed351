//! The live view of the MCP servers registry: every backend with its decrypted credential ready
//! to attach, its health, and who may use it.
//!
//! The server list is small and read on every proxied request, so it is held in memory as an
//! immutable snapshot swapped on change: at once after an edit made through this replica, and
//! by a reload every few seconds for edits made elsewhere. Per-user grants are cached like
//! identity state (`AUTH_CACHE_TTL_MS`, invalidated at once on change).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use shared::auth::Role;
use shared::servers::{ServerHealth, Transport};

use crate::auth::identity::{AuthMethod, Principal};
use crate::backend_auth::{self, ServerAuth, Tokens};
use crate::cache::TtlMap;
use crate::config::Config;
use crate::db::{self, Db, servers::ServerRow, tool_rules::Subject};
use crate::feed::Change;
use crate::keys::SecretBox;
use crate::mcp::backend::{Credential, Target};
use crate::mcp::naming;

/// What the gateway has learnt about how a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    Unknown,
    /// Streamable HTTP with `initialize` (2025-03-26 … 2025-11-25); whether it also speaks
    /// 2026-07-28 is not known yet.
    Handshake,
    /// Streamable HTTP with `initialize` only (`server/discover` was tried and refused).
    HandshakeOnly,
    /// Streamable HTTP that speaks 2026-07-28 (`server/discover` works); it may speak the
    /// handshake era too, which `initialize` finds out by trying.
    Modern,
    /// Speaks 2026-07-28 and refuses `initialize`: handshake-era clients are bridged.
    ModernOnly,
    /// HTTP+SSE (2024-11-05).
    Legacy,
}

pub struct Backend {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    pub transport: Transport,
    pub target: Target,
    pub row: ServerRow,
    /// The prefix of its names on the aggregated endpoint (`mcp/naming.rs`).
    pub prefix: String,
    /// Suspicious-payload detection mode.
    pub detection: crate::detect::Mode,
    /// Tool-definition pinning mode.
    pub pinning: crate::mcp::pins::Pinning,
    /// For a server with per-user connected accounts: the user this copy acts for (its
    /// credential is that user's token); 0 for the shared copy.
    pub owner: i64,
    era: Mutex<Era>,
}

impl Backend {
    /// The OAuth kind of its credential, if it has one.
    pub fn oauth_kind(&self) -> Option<crate::backend_auth::Kind> {
        match &self.target.credential {
            crate::mcp::backend::Credential::OAuth(cell) => Some(cell.auth.kind),
            crate::mcp::backend::Credential::PerUser(auth) => Some(auth.kind),
            _ => None,
        }
    }

    pub fn era(&self) -> Era {
        self.era.lock().map(|e| *e).unwrap_or(Era::Unknown)
    }

    pub fn set_era(&self, era: Era) {
        if let Ok(mut e) = self.era.lock() {
            *e = era;
        }
    }

    /// Records what was learnt only if nothing was known yet (concurrent first requests must
    /// not flip a finding back and forth).
    pub fn learn_era(&self, era: Era) {
        if let Ok(mut e) = self.era.lock()
            && *e == Era::Unknown
        {
            *e = era;
        }
    }
}

type Snapshot = Arc<HashMap<String, Arc<Backend>>>;

pub struct Registry {
    db: Db,
    secret_box: Arc<SecretBox>,
    config: Arc<Config>,
    servers: RwLock<Snapshot>,
    health: Mutex<HashMap<i64, ServerHealth>>,
    grants: TtlMap<i64, Arc<HashSet<i64>>>,
    tool_rules: TtlMap<Subject, Arc<ToolRules>>,
    /// Moved when grants or servers change, so open streams re-check access.
    changes: crate::feed::Changes,
    /// What the servers table held at the last reload.
    fingerprint: Mutex<u64>,
    tokens: Arc<Tokens>,
    /// Per-user copies of servers with per-user connected accounts, by (server, user), with
    /// the shared copy each was made from.
    per_user: Mutex<HashMap<(i64, i64), PerUserCopy>>,
}

/// A per-user copy of a server and the shared copy it was made from.
type PerUserCopy = (Arc<Backend>, Arc<Backend>);

/// Per-user copies kept at most (the oldest go first when full).
const MAX_PER_USER_COPIES: usize = 10_000;

/// The prefix a server's names get on the aggregated endpoint: its `tool_prefix`, else its name
/// (made valid if the name predates the prefix rules; the admin API stores a valid one).
pub fn effective_prefix(row: &ServerRow) -> String {
    let raw = row.tool_prefix.as_deref().unwrap_or(&row.name);
    if naming::validate_prefix(raw).is_ok() {
        return raw.to_string();
    }
    derive_prefix(raw)
}

/// A valid prefix derived from a server name: runs of `_` collapsed, cut to the maximum length,
/// no trailing `_`.
pub fn derive_prefix(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    let mut out: String = out
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(naming::MAX_PREFIX)
        .collect();
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() { "server".into() } else { out }
}

/// One subject's per-tool rules, by server.
#[derive(Default)]
pub struct ToolRules {
    by_server: HashMap<i64, Vec<(String, bool)>>,
}

impl ToolRules {
    fn from_rows(rows: Vec<db::tool_rules::ToolRuleRow>) -> ToolRules {
        let mut by_server: HashMap<i64, Vec<(String, bool)>> = HashMap::new();
        for r in rows {
            by_server
                .entry(r.server_id)
                .or_default()
                .push((r.pattern, r.effect == "allow"));
        }
        ToolRules { by_server }
    }

    /// A matching deny wins; when allow rules exist, the tool must match one.
    pub fn permits(&self, server_id: i64, tool: &str) -> bool {
        let Some(rules) = self.by_server.get(&server_id) else {
            return true;
        };
        let mut any_allow = false;
        let mut allowed = false;
        for (pattern, allow) in rules {
            let hit = naming::glob_match(pattern, tool);
            if *allow {
                any_allow = true;
                allowed |= hit;
            } else if hit {
                return false;
            }
        }
        !any_allow || allowed
    }

    pub fn has_rules_for(&self, server_id: i64) -> bool {
        self.by_server.contains_key(&server_id)
    }
}

/// The tool rules that apply to a caller: their user's, and their API key's.
#[derive(Clone)]
pub struct ToolFilter {
    user: Arc<ToolRules>,
    key: Option<Arc<ToolRules>>,
}

impl ToolFilter {
    pub fn permits(&self, server_id: i64, tool: &str) -> bool {
        self.user.permits(server_id, tool)
            && self.key.as_ref().is_none_or(|k| k.permits(server_id, tool))
    }

    /// Whether any rule concerns this server (lists need filtering only then).
    pub fn restricts(&self, server_id: i64) -> bool {
        self.user.has_rules_for(server_id)
            || self
                .key
                .as_ref()
                .is_some_and(|k| k.has_rules_for(server_id))
    }
}

pub fn credential_context(id: i64) -> String {
    format!("mcp_servers:{id}:credential")
}

impl Registry {
    pub async fn load(
        db: Db,
        secret_box: Arc<SecretBox>,
        config: Arc<Config>,
        changes: crate::feed::Changes,
        tokens: Arc<Tokens>,
    ) -> anyhow::Result<Registry> {
        let registry = Registry {
            tokens,
            per_user: Mutex::default(),
            db,
            secret_box,
            config,
            servers: RwLock::new(Arc::default()),
            health: Mutex::default(),
            grants: TtlMap::new(),
            tool_rules: TtlMap::new(),
            changes,
            fingerprint: Mutex::new(0),
        };
        registry.reload().await?;
        Ok(registry)
    }

    /// Re-reads the servers table; backends whose row did not change keep their state.
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.reload_from(&self.db).await
    }

    /// `reload` reading through `db` (the periodic reload passes `Db::background`).
    pub async fn reload_from(&self, db: &Db) -> anyhow::Result<()> {
        let rows = db::servers::list(&db.pool).await?;
        let old = self.snapshot();
        let mut next = HashMap::with_capacity(rows.len());
        // Servers added, edited or removed since the last reload (by their rows, whether they
        // load or not): open streams re-check their access.
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for row in &rows {
                (row.id, &row.name, row.updated_at, row.enabled).hash(&mut h);
            }
            h.finish()
        };
        let changed = self
            .fingerprint
            .lock()
            .map(|mut f| std::mem::replace(&mut *f, fingerprint) != fingerprint)
            .unwrap_or(true);
        for row in rows {
            if let Some(existing) = old.get(&row.name)
                && existing.row.updated_at == row.updated_at
                && existing.row.id == row.id
                && existing.row.credential == row.credential
            {
                next.insert(row.name.clone(), existing.clone());
                continue;
            }
            match self.backend(row) {
                Ok(backend) => {
                    next.insert(backend.name.clone(), Arc::new(backend));
                }
                Err(e) => tracing::error!(error = format!("{e:#}"), "cannot load an MCP server"),
            }
        }
        match self.servers.write() {
            Ok(mut slot) => *slot = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
        if changed {
            self.changes.publish();
        }
        Ok(())
    }

    fn backend(&self, row: ServerRow) -> anyhow::Result<Backend> {
        let credential = match (&row.credential_type, &row.credential) {
            (Some(kind), Some(sealed)) => {
                let secret = self.secret_box.open(sealed, &credential_context(row.id))?;
                match backend_auth::Kind::parse(kind) {
                    Some(oauth) => {
                        let config = serde_json::from_slice(&secret)?;
                        let auth = Arc::new(ServerAuth::new(&row, oauth, config));
                        if oauth == backend_auth::Kind::User {
                            Credential::PerUser(auth)
                        } else {
                            Credential::OAuth(self.tokens.cell(&auth, 0))
                        }
                    }
                    None => {
                        let secret = String::from_utf8(secret)?;
                        let (name, value) =
                            credential_header(kind, row.credential_header.as_deref(), &secret)?;
                        Credential::Static(name, value)
                    }
                }
            }
            _ => Credential::None,
        };
        let transport = match row.transport.as_str() {
            "streamable-http" => Transport::StreamableHttp,
            "sse" => Transport::Sse,
            _ => Transport::Auto,
        };
        let parsed_url = reqwest::Url::parse(&row.url)?;
        Ok(Backend {
            id: row.id,
            name: row.name.clone(),
            enabled: row.enabled != 0,
            transport,
            target: Target {
                name: row.name.clone(),
                url: row.url.clone(),
                parsed_url: parsed_url.clone(),
                direct: crate::mcp::backend::direct(&parsed_url),
                credential,
                timeout: Duration::from_millis(u64::try_from(row.timeout_ms).unwrap_or(30_000)),
                max_response_bytes: self.config.mcp.max_response_bytes,
            },
            prefix: effective_prefix(&row),
            detection: crate::detect::Mode::parse(&row.detection),
            pinning: crate::mcp::pins::Pinning::parse(&row.tool_pinning),
            owner: 0,
            era: Mutex::new(if transport == Transport::Sse {
                Era::Legacy
            } else {
                Era::Unknown
            }),
            row,
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        match self.servers.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Backend>> {
        self.snapshot().get(name).cloned()
    }

    /// The copy of `backend` that acts for `user_id`: itself, unless the server uses per-user
    /// connected accounts; then a copy whose credential is that user's token (kept while the
    /// shared copy is current, so its era and sessions are learnt once per user).
    pub fn for_user(&self, backend: &Arc<Backend>, user_id: i64) -> Arc<Backend> {
        let Credential::PerUser(auth) = &backend.target.credential else {
            return backend.clone();
        };
        let key = (backend.id, user_id);
        let mut copies = match self.per_user.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((base, copy)) = copies.get(&key)
            && Arc::ptr_eq(base, backend)
        {
            return copy.clone();
        }
        let mut target = backend.target.clone();
        target.credential = Credential::OAuth(self.tokens.cell(auth, user_id));
        let copy = Arc::new(Backend {
            id: backend.id,
            name: backend.name.clone(),
            enabled: backend.enabled,
            transport: backend.transport,
            target,
            row: backend.row.clone(),
            prefix: backend.prefix.clone(),
            detection: backend.detection,
            pinning: backend.pinning,
            owner: user_id,
            era: Mutex::new(backend.era()),
        });
        if copies.len() >= MAX_PER_USER_COPIES {
            // Copies of replaced servers first; if that frees nothing, start over.
            copies.retain(|_, (base, _)| Arc::strong_count(base) > 1);
            if copies.len() >= MAX_PER_USER_COPIES {
                copies.clear();
            }
        }
        copies.insert(key, (backend.clone(), copy.clone()));
        copy
    }

    /// Drops a user's per-user copies (the user changed or was deleted).
    pub fn forget_user_copies(&self, user_id: i64) {
        if let Ok(mut copies) = self.per_user.lock() {
            copies.retain(|(_, u), _| *u != user_id);
        }
    }

    pub fn health(&self, id: i64) -> ServerHealth {
        let mut health = self
            .health
            .lock()
            .ok()
            .and_then(|h| h.get(&id).cloned())
            .unwrap_or(ServerHealth {
                status: "unknown".into(),
                latency_ms: None,
                last_error: None,
                tool_count: None,
                protocol_version: None,
                checked_at: None,
            });
        // A server whose own OAuth credential cannot be renewed is degraded whatever the
        // last check saw.
        if let Some(reason) = self.tokens.failure(id) {
            health.status = "degraded".into();
            health.last_error = Some(format!("credential renewal failed: {reason}"));
        }
        health
    }

    /// Whether the last health check found the server unreachable (cheap: no clone).
    pub fn is_offline(&self, id: i64) -> bool {
        self.health
            .lock()
            .ok()
            .and_then(|h| h.get(&id).map(|h| h.status == "offline"))
            .unwrap_or(false)
    }

    /// The enabled servers the caller may use, by name (grants read once).
    pub async fn usable(&self, principal: &Principal) -> anyhow::Result<Vec<Arc<Backend>>> {
        let snapshot = self.snapshot();
        let grants = if principal.role == Role::Admin {
            None
        } else {
            Some(self.grants_of(principal.user_id).await?)
        };
        let key_servers = match &principal.method {
            AuthMethod::ApiKey {
                servers: Some(allowed),
                ..
            } => Some(allowed),
            _ => None,
        };
        let mut out: Vec<Arc<Backend>> = snapshot
            .values()
            .filter(|b| b.enabled)
            .filter(|b| grants.as_ref().is_none_or(|g| g.contains(&b.id)))
            .filter(|b| key_servers.is_none_or(|k| k.iter().any(|s| s == &b.name)))
            .map(|b| self.for_user(b, principal.user_id))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn set_health(&self, id: i64, health: ServerHealth) {
        if let Ok(mut h) = self.health.lock() {
            h.insert(id, health);
        }
    }

    /// Admins may use every server; users only the ones granted to them; an API key can narrow
    /// that further to the servers it names.
    pub async fn may_use(&self, principal: &Principal, backend: &Backend) -> anyhow::Result<bool> {
        if let AuthMethod::ApiKey {
            servers: Some(allowed),
            ..
        } = &principal.method
            && !allowed.iter().any(|s| s == &backend.name)
        {
            return Ok(false);
        }
        if principal.role == Role::Admin {
            return Ok(true);
        }
        Ok(self
            .grants_of(principal.user_id)
            .await?
            .contains(&backend.id))
    }

    async fn grants_of(&self, user_id: i64) -> anyhow::Result<Arc<HashSet<i64>>> {
        if let Some(grants) = self.grants.get(&user_id, self.config.auth.cache_ttl) {
            return Ok(grants);
        }
        let grants: Arc<HashSet<i64>> = Arc::new(
            db::servers::granted_servers(&self.db.pool, user_id)
                .await?
                .into_iter()
                .collect(),
        );
        self.grants.put(user_id, grants.clone());
        Ok(grants)
    }

    pub fn invalidate_grants(&self, user_id: i64) {
        self.changed(Change::Grants(user_id));
    }

    /// The caller's per-tool rules (cached like grants, invalidated at once on change).
    pub async fn tool_filter(&self, principal: &Principal) -> anyhow::Result<ToolFilter> {
        let user = self.rules_of(Subject::User(principal.user_id)).await?;
        let key = match &principal.method {
            AuthMethod::ApiKey { id, .. } => Some(self.rules_of(Subject::ApiKey(*id)).await?),
            AuthMethod::Jwt { .. } => None,
        };
        Ok(ToolFilter { user, key })
    }

    async fn rules_of(&self, subject: Subject) -> anyhow::Result<Arc<ToolRules>> {
        if let Some(rules) = self.tool_rules.get(&subject, self.config.auth.cache_ttl) {
            return Ok(rules);
        }
        let rules = Arc::new(ToolRules::from_rows(
            db::tool_rules::list(&self.db.pool, subject).await?,
        ));
        self.tool_rules.put(subject, rules.clone());
        Ok(rules)
    }

    pub fn invalidate_tool_rules(&self, subject: Subject) {
        self.changed(match subject {
            Subject::User(id) => Change::Grants(id),
            Subject::ApiKey(id) => Change::KeyRules(id),
        });
    }

    pub fn invalidate_all_grants(&self) {
        self.changed(Change::AllGrants);
    }

    /// A change made here: forgotten here, then sent to open streams and other replicas.
    fn changed(&self, change: Change) {
        self.forget(&change);
        self.changes.send(change);
    }

    /// Drops the grants and rules `change` makes stale (made here or on another replica).
    pub fn forget(&self, change: &Change) {
        match change {
            Change::Grants(user_id) | Change::User(user_id) => {
                if matches!(change, Change::User(_)) {
                    self.forget_user_copies(*user_id);
                }
                self.grants.retain(|id, _| id != user_id);
                self.tool_rules.retain(|s, _| *s != Subject::User(*user_id));
            }
            Change::KeyRules(key_id) | Change::ApiKey(key_id) => {
                self.tool_rules
                    .retain(|s, _| *s != Subject::ApiKey(*key_id));
            }
            Change::AllGrants | Change::All => {
                self.grants.clear();
                self.tool_rules.clear();
            }
            _ => {}
        }
    }
}

/// The header a credential becomes.
pub fn credential_header(
    kind: &str,
    header_name: Option<&str>,
    secret: &str,
) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let mut pair = match kind {
        "bearer" => (
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {secret}"))?,
        ),
        "basic" => (
            AUTHORIZATION,
            HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(secret)
            ))?,
        ),
        "header" => (
            HeaderName::from_bytes(header_name.unwrap_or_default().as_bytes())?,
            HeaderValue::from_str(secret)?,
        ),
        other => anyhow::bail!("unknown credential type {other}"),
    };
    pair.1.set_sensitive(true);
    Ok(pair)
}
