//! MCP server administration: validation, credentials sealed at rest, per-user access, and
//! applying every change to the live proxy at once.

use serde_json::json;
use shared::servers::{
    CreateServer, CredentialInfo, CredentialInput, McpServer, ServerPermission, Transport,
    UpdateServer,
};

use crate::accounts::{self, Actor, validate_server_name};
use crate::auth::identity::AdminScope;
use crate::db::{self, servers::ServerRow};
use crate::error::ApiError;
use crate::mcp::naming;
use crate::mcp::registry::{
    credential_context, credential_header, derive_prefix, effective_prefix,
};
use crate::state::AppState;
use crate::teams;

const MAX_TIMEOUT_SECS: u32 = 3600;

fn transport_str(t: Transport) -> &'static str {
    match t {
        Transport::StreamableHttp => "streamable-http",
        Transport::Sse => "sse",
        Transport::Auto => "auto",
    }
}

fn parse_transport(s: &str) -> Transport {
    match s {
        "streamable-http" => Transport::StreamableHttp,
        "sse" => Transport::Sse,
        _ => Transport::Auto,
    }
}

fn validate_url(raw: &str) -> Result<String, ApiError> {
    let url =
        url::Url::parse(raw.trim()).map_err(|_| ApiError::validation("url", "not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::validation(
            "url",
            "the URL must be http:// or https://",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::validation(
            "url",
            "put credentials in the credential field, not in the URL",
        ));
    }
    if url.fragment().is_some() {
        return Err(ApiError::validation(
            "url",
            "the URL must not have a fragment",
        ));
    }
    // Names are checked when connecting (`backend::GuardedResolver`); literals skip resolvers.
    let literal = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
        _ => None,
    };
    if literal.is_some_and(crate::fetch::is_never_allowed) {
        return Err(ApiError::ForbiddenAddress(
            "the gateway never reaches link-local, cloud-metadata or other reserved addresses"
                .into(),
        ));
    }
    Ok(url.to_string())
}

fn validate_timeout(secs: Option<u32>, default: u64) -> Result<i64, ApiError> {
    match secs {
        None => Ok(i64::try_from(default).unwrap_or(60) * 1000),
        Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Ok(i64::from(s) * 1000),
        Some(_) => Err(ApiError::validation(
            "timeout_seconds",
            format!("timeout_seconds must be 1 to {MAX_TIMEOUT_SECS}"),
        )),
    }
}

fn validate_description(d: Option<&str>) -> Result<Option<String>, ApiError> {
    match d.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) if d.chars().count() > 1000 => Err(ApiError::validation(
            "description",
            "description must be at most 1000 characters",
        )),
        other => Ok(other.map(str::to_string)),
    }
}

/// A credential to store: (type, header name, secret, hint shown by the API).
type CredentialParts = (&'static str, Option<String>, String, String);

/// An OAuth scope value: space-separated scope tokens (RFC 6749 §3.3), at most 1000 characters.
fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= 1000
        && scope.split(' ').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        })
}

/// An absolute http(s) URL without credentials or fragment, at most 2000 characters.
fn valid_endpoint(raw: &str) -> bool {
    raw.len() <= 2000
        && url::Url::parse(raw).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && u.fragment().is_none()
        })
}

fn valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 512 && id.chars().all(|c| !c.is_control())
}

/// The sealed configuration of an OAuth credential.
fn oauth_parts(input: &CredentialInput) -> Result<Option<CredentialParts>, ApiError> {
    use crate::backend_auth::{ClientAuth, Kind, OAuthConfig};
    let field = "credential";
    let bad = |m: &str| Err(ApiError::validation(field, m.to_string()));
    let optional_scope = |scope: &Option<String>| -> Result<(), ApiError> {
        match scope {
            Some(s) if !valid_scope(s) => Err(ApiError::validation(
                field,
                "scope is space-separated scope tokens (printable ASCII without '\"' or '\\'), at most 1000 characters",
            )),
            _ => Ok(()),
        }
    };
    let (kind, config, hint) = match input {
        CredentialInput::OAuthClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
            resource,
            auth_method,
        } => {
            if !valid_endpoint(token_url) {
                return bad(
                    "token_url must be an absolute http(s) URL without credentials or fragment",
                );
            }
            if !valid_client_id(client_id) {
                return bad("client_id must be 1 to 512 characters without control characters");
            }
            if client_secret.is_empty() || client_secret.len() > 8192 {
                return bad("client_secret must be 1 to 8192 characters");
            }
            optional_scope(scope)?;
            if audience
                .as_ref()
                .is_some_and(|a| a.is_empty() || a.len() > 2000 || a.chars().any(char::is_control))
            {
                return bad("audience must be 1 to 2000 characters without control characters");
            }
            if resource.as_ref().is_some_and(|r| !valid_endpoint(r)) {
                return bad("resource must be an absolute http(s) URL without fragment");
            }
            let auth_method = match auth_method.as_deref() {
                None | Some("client_secret_basic") => ClientAuth::ClientSecretBasic,
                Some("client_secret_post") => ClientAuth::ClientSecretPost,
                Some(_) => {
                    return bad("auth_method is \"client_secret_basic\" or \"client_secret_post\"");
                }
            };
            let config = OAuthConfig {
                token_url: Some(token_url.clone()),
                client_id: Some(client_id.clone()),
                client_secret: Some(client_secret.clone()),
                auth_method,
                scope: scope.clone(),
                audience: audience.clone(),
                resource: resource.clone(),
                ..OAuthConfig::default()
            };
            (
                Kind::ClientCredentials,
                config,
                format!("client {client_id}"),
            )
        }
        CredentialInput::OAuthAdmin(code) | CredentialInput::OAuthUser(code) => {
            if code
                .client_id
                .as_deref()
                .is_some_and(|id| !valid_client_id(id))
            {
                return bad("client_id must be 1 to 512 characters without control characters");
            }
            if code.client_secret.is_some() && code.client_id.is_none() {
                return bad("a client_secret needs its client_id");
            }
            if code
                .client_secret
                .as_ref()
                .is_some_and(|s| s.is_empty() || s.len() > 8192)
            {
                return bad("client_secret must be 1 to 8192 characters");
            }
            optional_scope(&code.scope)?;
            let config = OAuthConfig {
                client_id: code.client_id.clone(),
                auth_method: if code.client_secret.is_some() {
                    ClientAuth::ClientSecretBasic
                } else {
                    ClientAuth::None
                },
                client_secret: code.client_secret.clone(),
                scope: code.scope.clone(),
                ..OAuthConfig::default()
            };
            let kind = if matches!(input, CredentialInput::OAuthAdmin(_)) {
                Kind::Admin
            } else {
                Kind::User
            };
            let hint = match &code.client_id {
                Some(id) => format!("client {id}"),
                None => "registered on first connect".to_string(),
            };
            (kind, config, hint)
        }
        _ => return Ok(None),
    };
    let json = serde_json::to_string(&config).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Some((kind.as_str(), None, json, hint)))
}

/// The credential to store, or `None` to clear it.
fn credential_parts(input: &CredentialInput) -> Result<Option<CredentialParts>, ApiError> {
    let field = "credential";
    let non_empty = |s: &str, what: &str| {
        if s.is_empty() || s.len() > 8192 {
            Err(ApiError::validation(
                field,
                format!("{what} must be 1 to 8192 characters"),
            ))
        } else {
            Ok(())
        }
    };
    if let Some(parts) = oauth_parts(input)? {
        return Ok(Some(parts));
    }
    let parts = match input {
        CredentialInput::None => return Ok(None),
        CredentialInput::Bearer { token } => {
            non_empty(token, "token")?;
            ("bearer", None, token.clone(), hint(token))
        }
        CredentialInput::Basic { username, password } => {
            non_empty(username, "username")?;
            if username.contains(':') {
                return Err(ApiError::validation(
                    field,
                    "a basic-auth username cannot contain ':'",
                ));
            }
            let secret = format!("{username}:{password}");
            let shown = hint(&secret);
            ("basic", None, secret, shown)
        }
        CredentialInput::Header { name, value } => {
            non_empty(value, "value")?;
            let lower = name.to_ascii_lowercase();
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || matches!(
                    lower.as_str(),
                    "host"
                        | "content-length"
                        | "content-type"
                        | "accept"
                        | "connection"
                        | "transfer-encoding"
                        | "mcp-session-id"
                        | "mcp-protocol-version"
                )
            {
                return Err(ApiError::validation(
                    field,
                    format!("`{name}` cannot be used as a credential header"),
                ));
            }
            ("header", Some(lower), value.clone(), hint(value))
        }
        _ => return Ok(None),
    };
    // The header must be valid on the wire.
    credential_header(parts.0, parts.1.as_deref(), &parts.2).map_err(|_| {
        ApiError::validation(
            field,
            "the credential contains characters not allowed in an HTTP header",
        )
    })?;
    Ok(Some(parts))
}

fn hint(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if secret.chars().count() <= 8 {
        "…".into()
    } else {
        format!("…{tail}")
    }
}

pub fn to_api(state: &AppState, row: &ServerRow) -> McpServer {
    McpServer {
        id: row.id,
        name: row.name.clone(),
        display_name: row.display_name.clone().unwrap_or_else(|| row.name.clone()),
        url: row.url.clone(),
        description: row.description.clone(),
        enabled: row.enabled != 0,
        transport: parse_transport(&row.transport),
        timeout_seconds: u32::try_from(row.timeout_ms / 1000).unwrap_or(60),
        credential: row.credential_type.as_ref().map(|kind| CredentialInfo {
            kind: kind.clone(),
            hint: row.credential_hint.clone().unwrap_or_else(|| "…".into()),
            header_name: row.credential_header.clone(),
        }),
        endpoint: format!("{}/mcp/{}", state.config.public_url, row.name),
        tool_prefix: effective_prefix(row),
        detection: row.detection.clone(),
        tool_pinning: row.tool_pinning.clone(),
        health: state.mcp.registry.health(row.id),
        team_id: row.team_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn snapshot(server: &McpServer) -> serde_json::Value {
    json!({
        "name": server.name, "display_name": server.display_name, "url": server.url, "enabled": server.enabled,
        "transport": server.transport, "timeout_seconds": server.timeout_seconds,
        "credential": server.credential.as_ref().map(|c| &c.kind), "tool_prefix": server.tool_prefix, "detection": server.detection, "tool_pinning": server.tool_pinning, "team_id": server.team_id,
    })
}

fn name_taken(e: sqlx::Error) -> ApiError {
    if db::is_unique_violation(&e, "mcp_servers_name_key", "mcp_servers.name") {
        ApiError::conflict(
            "server_name_taken",
            "a server with this name already exists",
        )
    } else if db::is_unique_violation(&e, "mcp_servers_prefix_key", "mcp_servers_prefix_key") {
        ApiError::conflict(
            "tool_prefix_taken",
            "another server already uses this tool prefix (its name or its tool_prefix); \
             choose another tool_prefix",
        )
    } else {
        ApiError::Db(e)
    }
}

async fn store_credential(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    id: i64,
    input: &CredentialInput,
) -> Result<(), ApiError> {
    // Tokens held under the earlier credential are void (another client, scope or kind).
    db::backend_tokens::delete_server(&mut *tx, id).await?;
    match credential_parts(input)? {
        None => db::servers::set_credential(&mut *tx, id, None, None, None, None).await?,
        Some((kind, header, secret, hint)) => {
            let sealed = state
                .secret_box
                .seal(secret.as_bytes(), &credential_context(id))?;
            db::servers::set_credential(
                &mut *tx,
                id,
                Some(kind),
                header.as_deref(),
                Some(&sealed),
                Some(&hint),
            )
            .await?;
        }
    }
    Ok(())
}

fn validate_pinning(mode: Option<&str>) -> Result<Option<&'static str>, ApiError> {
    match mode {
        None => Ok(None),
        Some("off") => Ok(Some("off")),
        Some("warn") => Ok(Some("warn")),
        Some("quarantine") => Ok(Some("quarantine")),
        Some(_) => Err(ApiError::validation(
            "tool_pinning",
            "tool_pinning is \"off\", \"warn\" or \"quarantine\"",
        )),
    }
}

fn validate_detection(mode: Option<&str>) -> Result<Option<&'static str>, ApiError> {
    match mode {
        None => Ok(None),
        Some("off") => Ok(Some("off")),
        Some("log") => Ok(Some("log")),
        Some("block") => Ok(Some("block")),
        Some(_) => Err(ApiError::validation(
            "detection",
            "detection is \"off\", \"log\" or \"block\"",
        )),
    }
}

/// The prefix to store: the one asked for (validated), else none when the name is a valid
/// prefix, else one derived from the name.
fn stored_prefix(requested: Option<&str>, name: &str) -> Result<Option<String>, ApiError> {
    match requested {
        Some(p) if !p.is_empty() => {
            naming::validate_prefix(p).map_err(|m| ApiError::validation("tool_prefix", m))?;
            Ok(Some(p.to_string()))
        }
        _ if naming::validate_prefix(name).is_ok() => Ok(None),
        _ => Ok(Some(derive_prefix(name))),
    }
}

fn credential_input(
    backend_token: Option<&String>,
    credential: Option<&CredentialInput>,
) -> Option<CredentialInput> {
    credential.cloned().or_else(|| {
        backend_token.map(|token| {
            if token.is_empty() {
                CredentialInput::None
            } else {
                CredentialInput::Bearer {
                    token: token.clone(),
                }
            }
        })
    })
}

/// Claims `name` for `team` (409 when another team's server had it: a name and the history
/// recorded under it never pass between teams).
async fn claim_name(conn: &mut sqlx::AnyConnection, name: &str, team: i64) -> Result<(), ApiError> {
    if db::teams::claim_name(conn, name, team).await? {
        Ok(())
    } else {
        // The same answer as for a server of this name now: nothing about whose it was.
        Err(ApiError::conflict(
            "server_name_taken",
            "a server with this name already exists",
        ))
    }
}

pub async fn create(
    state: &AppState,
    actor: &Actor<'_>,
    scope: &AdminScope,
    req: &CreateServer,
) -> Result<McpServer, ApiError> {
    let team = match req.team_id {
        Some(team) => team,
        None => teams::default_team(scope)?,
    };
    teams::team(state, scope, team).await?;
    // A name that is not a URL segment is a display name the segment is derived from.
    let (name, derived_display) = match validate_server_name(&req.name) {
        Ok(()) => (req.name.clone(), None),
        Err(m) => {
            accounts::validate_display_name(&req.name)
                .map_err(|_| ApiError::validation("name", m.clone()))?;
            let name = accounts::server_name_from(&req.name).ok_or_else(|| {
                ApiError::validation(
                    "name",
                    "no URL segment can be derived from this name (it needs letters or digits)",
                )
            })?;
            (name, Some(req.name.clone()))
        }
    };
    let display_name = match &req.display_name {
        Some(d) if !d.is_empty() => {
            accounts::validate_display_name(d)
                .map_err(|m| ApiError::validation("display_name", m))?;
            Some(d.clone())
        }
        _ => derived_display,
    };
    let now = db::now();
    let row = ServerRow {
        id: 0,
        name: name.clone(),
        url: validate_url(&req.url)?,
        description: validate_description(req.description.as_deref())?,
        enabled: i64::from(req.enabled),
        transport: transport_str(req.transport).into(),
        timeout_ms: validate_timeout(
            req.timeout_seconds,
            state.config.mcp.default_timeout.as_secs(),
        )?,
        credential_type: None,
        credential_header: None,
        credential: None,
        credential_hint: None,
        tool_prefix: stored_prefix(req.tool_prefix.as_deref(), &name)?,
        detection: validate_detection(req.detection.as_deref())?
            .unwrap_or("log")
            .into(),
        // New servers are quarantined: a definition that changes after the first list waits
        // for an admin (docs/SECURITY_TESTING.md).
        tool_pinning: validate_pinning(req.tool_pinning.as_deref())?
            .unwrap_or("quarantine")
            .into(),
        display_name,
        team_id: team,
        created_at: now,
        updated_at: now,
    };
    let credential = credential_input(req.backend_token.as_ref(), req.credential.as_ref());
    if let Some(c) = &credential {
        credential_parts(c)?;
    }
    let mut tx = state.db.begin().await?;
    // Inside the transaction: a team deleted meanwhile gets no server (SQLite has no foreign
    // key on the column).
    db::teams::find(&mut *tx, team)
        .await?
        .ok_or(ApiError::NotFound("no such team"))?;
    let id = db::servers::insert(&mut *tx, &row)
        .await
        .map_err(name_taken)?;
    claim_name(&mut tx, &row.name, team).await?;
    if let Some(c) = &credential {
        store_credential(state, &mut tx, id, c).await?;
    }
    let row = db::servers::find(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("no such server"))?;
    let server = to_api(state, &row);
    accounts::audit_in(
        &mut *tx,
        actor,
        Some(team),
        "mcp_server.create",
        "mcp_server",
        Some(id.to_string()),
        None,
        Some(snapshot(&server)),
    )
    .await?;
    tx.commit().await?;
    // Whatever a removed server of this name left behind (a code exchanged late) goes.
    retire_resource(state, &row.name).await?;
    state.mcp.reload().await?;
    state.changes.send(crate::feed::Change::Servers);
    Ok(server)
}

/// Scheme, host and port of a URL (`None` when it does not parse).
fn origin(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

pub async fn update(
    state: &AppState,
    actor: &Actor<'_>,
    scope: &AdminScope,
    id: i64,
    req: &UpdateServer,
) -> Result<McpServer, ApiError> {
    teams::server(state, scope, id).await?;
    if let Some(team) = req.team_id {
        teams::team(state, scope, team).await?;
    }
    let mut tx = state.db.begin().await?;
    let before_row = db::servers::find(&mut *tx, id)
        .await?
        .filter(|row| scope.has_team(row.team_id))
        .ok_or(ApiError::NotFound("no such server"))?;
    // Inside the transaction: a team deleted meanwhile gets no server.
    if let Some(team) = req.team_id {
        db::teams::find(&mut *tx, team)
            .await?
            .ok_or(ApiError::NotFound("no such team"))?;
    }
    let before = to_api(state, &before_row);
    let mut row = before_row.clone();
    if let Some(name) = &req.name {
        validate_server_name(name).map_err(|m| ApiError::validation("name", m))?;
        row.name = name.clone();
    }
    match req.display_name.as_deref() {
        None => {}
        Some("") => row.display_name = None,
        Some(d) => {
            accounts::validate_display_name(d)
                .map_err(|m| ApiError::validation("display_name", m))?;
            row.display_name = Some(d.to_string());
        }
    }
    if let Some(url) = &req.url {
        row.url = validate_url(url)?;
    }
    if let Some(d) = &req.description {
        row.description = validate_description(Some(d))?;
    }
    if let Some(enabled) = req.enabled {
        row.enabled = i64::from(enabled);
    }
    if let Some(t) = req.transport {
        row.transport = transport_str(t).into();
    }
    if req.timeout_seconds.is_some() {
        row.timeout_ms = validate_timeout(req.timeout_seconds, 60)?;
    }
    let requested = match req.tool_prefix.as_deref() {
        Some(p) => Some(p),
        None => row.tool_prefix.as_deref(),
    };
    row.tool_prefix = stored_prefix(requested, &row.name)?;
    if let Some(mode) = validate_detection(req.detection.as_deref())? {
        row.detection = mode.into();
    }
    if let Some(mode) = validate_pinning(req.tool_pinning.as_deref())? {
        row.tool_pinning = mode.into();
    }
    if let Some(team) = req.team_id {
        row.team_id = team;
    }
    row.updated_at = db::now().max(before_row.updated_at + 1);
    db::servers::update(&mut *tx, &row)
        .await
        .map_err(name_taken)?;
    if row.team_id != before_row.team_id {
        // Moved: the history recorded under its name goes with it.
        db::teams::move_name(&mut *tx, &before_row.name, row.team_id).await?;
    }
    if row.name != before_row.name || row.team_id != before_row.team_id {
        claim_name(&mut tx, &row.name, row.team_id).await?;
    }
    match credential_input(req.backend_token.as_ref(), req.credential.as_ref()) {
        Some(c) => store_credential(state, &mut tx, id, &c).await?,
        // A credential never follows its server to another origin: a URL change there clears
        // it unless the same request supplies one.
        None if before_row.credential.is_some() && origin(&before_row.url) != origin(&row.url) => {
            store_credential(state, &mut tx, id, &CredentialInput::None).await?;
        }
        None => {}
    }
    let row = db::servers::find(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("no such server"))?;
    let after = to_api(state, &row);
    accounts::audit_in(
        &mut *tx,
        actor,
        Some(row.team_id),
        "mcp_server.update",
        "mcp_server",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    if before_row.name != row.name {
        retire_resource(state, &before_row.name).await?;
        retire_resource(state, &row.name).await?;
    }
    state.mcp.reload().await?;
    state.changes.send(crate::feed::Change::Servers);
    if row.team_id != before_row.team_id {
        // Who may use it follows its team.
        state.mcp.registry.invalidate_all_grants();
    }
    Ok(after)
}

/// A server's endpoint URL names it, and OAuth consents and tokens are bound to that URL: when
/// the name goes (renamed or removed), so do the consents given for it and the OAuth sessions
/// whose tokens it names, so neither carries over to a server that takes the name later.
async fn retire_resource(state: &AppState, name: &str) -> Result<(), ApiError> {
    let resource = format!("{}/mcp/{name}", state.config.public_url);
    // Consents and unexchanged codes for it, then the sessions its tokens name.
    db::oauth::forget_resource(&state.db.pool, &resource, db::now()).await?;
    for session in db::sessions::of_resource(&state.db.pool, &resource).await? {
        crate::auth::tokens::revoke_session(state, &session, "mcp_server_retired").await?;
    }
    Ok(())
}

pub async fn delete(
    state: &AppState,
    actor: &Actor<'_>,
    scope: &AdminScope,
    id: i64,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await?;
    let row = db::servers::find(&mut *tx, id)
        .await?
        .filter(|row| scope.has_team(row.team_id))
        .ok_or(ApiError::NotFound("no such server"))?;
    db::servers::delete(&mut *tx, id).await?;
    accounts::audit_in(
        &mut *tx,
        actor,
        Some(row.team_id),
        "mcp_server.delete",
        "mcp_server",
        Some(id.to_string()),
        Some(snapshot(&to_api(state, &row))),
        None,
    )
    .await?;
    tx.commit().await?;
    retire_resource(state, &row.name).await?;
    state.mcp.reload().await?;
    state.changes.send(crate::feed::Change::Servers);
    state.mcp.registry.invalidate_all_grants();
    Ok(())
}

/// A user's grants on the servers `scope` may see (`can_access`: granted; access also needs
/// membership of the server's team).
pub async fn permissions(
    state: &AppState,
    scope: &AdminScope,
    user_id: i64,
) -> Result<Vec<ServerPermission>, ApiError> {
    teams::member(state, scope, user_id).await?;
    let granted = db::servers::grants_of(&state.db.pool, user_id).await?;
    Ok(db::servers::list(&state.db.pool)
        .await?
        .into_iter()
        .filter(|s| scope.has_team(s.team_id))
        .map(|s| ServerPermission {
            can_access: granted.contains(&s.id),
            server_id: s.id,
            name: s.name,
        })
        .collect())
}

pub async fn set_permission(
    state: &AppState,
    actor: &Actor<'_>,
    scope: &AdminScope,
    user_id: i64,
    server_id: i64,
    can_access: bool,
) -> Result<Vec<ServerPermission>, ApiError> {
    teams::member(state, scope, user_id).await?;
    // The server is named in the body: one that does not exist (or is another team's) is a 400
    // naming the field; a 404 is about the path's user.
    let server = teams::server(state, scope, server_id)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(message) => ApiError::validation("server_id", message),
            other => other,
        })?;
    let mut tx = state.db.begin().await?;
    if can_access {
        db::servers::grant(&mut *tx, user_id, server_id, db::now()).await?;
    } else {
        db::servers::revoke(&mut *tx, user_id, server_id).await?;
    }
    accounts::audit_in(
        &mut *tx,
        actor,
        Some(server.team_id),
        if can_access {
            "mcp_permission.grant"
        } else {
            "mcp_permission.revoke"
        },
        "user",
        Some(user_id.to_string()),
        None,
        Some(json!({ "server_id": server_id, "can_access": can_access })),
    )
    .await?;
    tx.commit().await?;
    state.mcp.forget_access(user_id, server_id, can_access);
    permissions(state, scope, user_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_never_reveal_short_secrets() {
        assert_eq!(hint("ghp_1234567890abcd"), "…abcd");
        assert_eq!(hint("short"), "…");
    }

    #[test]
    fn credentials_are_checked() {
        assert!(
            credential_parts(&CredentialInput::Header {
                name: "Host".into(),
                value: "x".into()
            })
            .is_err()
        );
        assert!(credential_parts(&CredentialInput::Bearer { token: "".into() }).is_err());
        assert!(
            credential_parts(&CredentialInput::Bearer {
                token: "a\nb".into()
            })
            .is_err()
        );
        assert!(
            credential_parts(&CredentialInput::Basic {
                username: "a:b".into(),
                password: "p".into()
            })
            .is_err()
        );
        let ok = credential_parts(&CredentialInput::Header {
            name: "X-Api-Key".into(),
            value: "k".into(),
        })
        .unwrap();
        assert_eq!(ok.map(|p| p.1), Some(Some("x-api-key".into())));
    }
}
