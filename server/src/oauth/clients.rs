//! OAuth clients: dynamic registration (RFC 7591), client ID metadata documents (URL client
//! ids, fetched with SSRF protection), admin-registered clients, redirect-URI rules and client
//! authentication at the token endpoint.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use crate::auth::identity::{RequestMeta, bearer};
use crate::auth::tokens::{hash_token, random_token};
use crate::db::{self, oauth::ClientRow};
use crate::error::ApiError;
use crate::oauth::{OAuthError, SCOPES, no_store};
use crate::state::AppState;

/// How long a fetched metadata document is trusted.
const CIMD_TTL: Duration = Duration::from_secs(300);
const CIMD_MAX_BYTES: usize = 64 * 1024;
const CIMD_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_ID_PREFIX: &str = "amc_";
const CLIENT_SECRET_PREFIX: &str = "amcs_";
const MAX_REDIRECT_URIS: usize = 10;
/// The longest redirect URI (and client or logo URI) accepted.
const MAX_URI_LEN: usize = 2000;
/// The largest registration request body.
const MAX_REGISTRATION_BYTES: usize = 16 * 1024;

/// Whether a redirect URI may be registered: https anywhere; http only on a loopback host;
/// a private-use scheme (`com.example.app:/cb`) only for native applications. Never a
/// fragment.
pub fn validate_redirect_uri(raw: &str, native: bool) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|_| format!("`{raw}` is not an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(format!("`{raw}` has a fragment"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" => Err(format!(
            "`{raw}`: http is only allowed for loopback redirects"
        )),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" => {
            Err(format!("`{raw}`: scheme not allowed"))
        }
        _ if native => Ok(()),
        _ => Err(format!(
            "`{raw}`: custom schemes need application_type \"native\""
        )),
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Exact match, except that a loopback http redirect may use any port (RFC 8252 §7.3).
pub fn redirect_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(mut a), Ok(mut b)) = (url::Url::parse(registered), url::Url::parse(presented)) else {
        return false;
    };
    if a.scheme() != "http"
        || b.scheme() != "http"
        || !is_loopback_host(&a)
        || !is_loopback_host(&b)
    {
        return false;
    }
    let _ = a.set_port(None);
    let _ = b.set_port(None);
    a == b
}

pub fn to_api(row: &ClientRow, grants: i64) -> shared::oauth::OAuthClient {
    shared::oauth::OAuthClient {
        id: row.id,
        client_id: row.client_id.clone(),
        kind: row.kind.clone(),
        name: row.name.clone(),
        redirect_uris: row.redirect_uris(),
        token_endpoint_auth_method: row.token_endpoint_auth_method.clone(),
        application_type: row.application_type.clone(),
        client_uri: row.client_uri.clone(),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
        grants,
    }
}

/// What a registration or a metadata document may say (RFC 7591 §2).
#[derive(Debug, Deserialize)]
struct ClientMetadata {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    client_uri: Option<String>,
    #[serde(default)]
    logo_uri: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    application_type: Option<String>,
}

struct Checked {
    name: String,
    redirect_uris: Vec<String>,
    auth_method: String,
    application_type: String,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    scope: Option<String>,
}

/// Validates client metadata; the error is `(error code, description)` per RFC 7591 §3.2.2.
fn check_metadata(
    m: ClientMetadata,
    default_auth: &str,
) -> Result<Checked, (&'static str, String)> {
    let application_type = m.application_type.unwrap_or_else(|| "web".into());
    if application_type != "web" && application_type != "native" {
        return Err((
            "invalid_client_metadata",
            "application_type must be \"web\" or \"native\"".into(),
        ));
    }
    if m.redirect_uris.is_empty() || m.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err((
            "invalid_redirect_uri",
            format!("1 to {MAX_REDIRECT_URIS} redirect_uris are required"),
        ));
    }
    for uri in &m.redirect_uris {
        if uri.len() > MAX_URI_LEN {
            return Err((
                "invalid_redirect_uri",
                format!("a redirect URI may have at most {MAX_URI_LEN} characters"),
            ));
        }
        // The URL parser would take (and encode) one; stored and sent back as written, it
        // must hold none (a NUL Postgres text cannot hold).
        if uri.chars().any(char::is_control) {
            return Err((
                "invalid_redirect_uri",
                "a redirect URI may not contain control characters".into(),
            ));
        }
        validate_redirect_uri(uri, application_type == "native")
            .map_err(|e| ("invalid_redirect_uri", e))?;
    }
    let auth_method = m
        .token_endpoint_auth_method
        .unwrap_or_else(|| default_auth.to_string());
    if !matches!(
        auth_method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return Err((
            "invalid_client_metadata",
            "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post"
                .into(),
        ));
    }
    if let Some(grants) = &m.grant_types
        && grants
            .iter()
            .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return Err((
            "invalid_client_metadata",
            "only the authorization_code and refresh_token grants are supported".into(),
        ));
    }
    if let Some(types) = &m.response_types
        && types.iter().any(|t| t != "code")
    {
        return Err((
            "invalid_client_metadata",
            "only the \"code\" response type is supported".into(),
        ));
    }
    if let Some(scope) = &m.scope
        && (scope.len() > 100
            || scope
                .split(' ')
                .any(|s| !s.is_empty() && !SCOPES.contains(&s)))
    {
        return Err((
            "invalid_client_metadata",
            format!("supported scopes: {}", SCOPES.join(" ")),
        ));
    }
    // Shown as links; a control character (a NUL, which Postgres text cannot hold) is none.
    let https_uri = |u: Option<String>| {
        u.filter(|u| {
            u.starts_with("https://") && u.len() <= MAX_URI_LEN && !u.chars().any(char::is_control)
        })
    };
    // The consent screen shows the name: control, invisible and direction-changing
    // characters go (a name cannot pose as another or hide part of itself).
    let name: String = m
        .client_name
        .map(|n| crate::mcp::message::client_label(&n))
        .filter(|n: &String| !n.is_empty())
        .unwrap_or_else(|| "Unnamed client".into());
    Ok(Checked {
        name,
        redirect_uris: m.redirect_uris,
        auth_method,
        application_type,
        client_uri: https_uri(m.client_uri),
        logo_uri: https_uri(m.logo_uri),
        // Stored normalised: each known scope once.
        scope: m.scope.map(|s| {
            SCOPES
                .iter()
                .filter(|k| s.split(' ').any(|p| p == **k))
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        }),
    })
}

fn registration_error(error: &'static str, description: &str) -> OAuthError {
    OAuthError::new(StatusCode::BAD_REQUEST, error, description)
}

/// Stores a new client; returns it with its secret (confidential clients) in the clear, once.
async fn insert(
    state: &AppState,
    kind: &str,
    checked: Checked,
    ip: Option<String>,
) -> Result<(ClientRow, Option<String>), ApiError> {
    let secret = (checked.auth_method != "none")
        .then(|| random_token(CLIENT_SECRET_PREFIX))
        .transpose()?;
    let now = db::now();
    let mut row = ClientRow {
        id: 0,
        client_id: random_token(CLIENT_ID_PREFIX)?,
        kind: kind.into(),
        name: checked.name,
        redirect_uris: serde_json::to_string(&checked.redirect_uris)
            .unwrap_or_else(|_| "[]".into()),
        token_endpoint_auth_method: checked.auth_method,
        secret_hash: secret.as_deref().map(hash_token),
        application_type: checked.application_type,
        client_uri: checked.client_uri,
        logo_uri: checked.logo_uri,
        scope: checked.scope,
        registered_ip: ip,
        created_at: now,
        updated_at: now,
        revoked_at: None,
    };
    row.id = db::oauth::insert_client(&state.db.pool, &row).await?;
    Ok((row, secret))
}

/// Dynamic client registration (RFC 7591). Public clients (`token_endpoint_auth_method:
/// "none"`) get no secret; others get one, shown only in this answer. Rate limited per IP;
/// can be turned off (`OAUTH_DCR`) or require an initial access token (`OAUTH_DCR_TOKEN`).
#[utoipa::path(post, path = "/oauth/register", tag = "oauth", operation_id = "oauth_register",
    request_body(content = Object, description = "RFC 7591 client metadata", content_type = "application/json"),
    responses(
        (status = 201, description = "Registered: client_id (and client_secret for confidential clients)", body = Object),
        (status = 400, description = "`invalid_redirect_uri` or `invalid_client_metadata`", body = Object),
        (status = 401, description = "An initial access token is required", body = Object),
        (status = 403, description = "Registration is turned off", body = Object),
        (status = 429, description = "Too many registrations from this address", body = Object),
    ))]
pub async fn register(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, OAuthError> {
    let oauth = &state.config.oauth;
    if !state.runtime.get().oauth_dcr {
        return Err(OAuthError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "dynamic client registration is turned off; ask an administrator for a client",
        ));
    }
    if let Some(expected) = &oauth.dcr_token {
        let presented = bearer(&headers).unwrap_or_default();
        if !crate::keys::constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
            return Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "registration requires an initial access token",
            ));
        }
    }
    state
        .oauth
        .register_limit
        .admit(&state, &meta, "oauth_register")
        .map_err(|limited| {
            OAuthError::slow_down(limited, "too many registrations from this address")
        })?;
    // Read only up to the registration limit (not the API's general body limit): nothing
    // larger is ever buffered for an unauthenticated caller.
    let Ok(body) = axum::body::to_bytes(body, MAX_REGISTRATION_BYTES).await else {
        return Err(registration_error(
            "invalid_client_metadata",
            &format!("client metadata may be at most {MAX_REGISTRATION_BYTES} bytes"),
        ));
    };
    // What one address may keep stored (registrations that complete an authorization stay;
    // others are removed after OAUTH_UNUSED_CLIENT_TTL_SECS).
    let cap = oauth.max_clients_per_address;
    if cap > 0
        && db::oauth::count_dynamic_clients_from(&state.db.pool, &meta.ip.0.to_string())
            .await
            .map_err(|e| OAuthError::from(ApiError::from(e)))?
            >= i64::from(cap)
    {
        return Err(OAuthError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_client_metadata",
            "too many clients are registered from this address; use one you registered before",
        ));
    }
    let metadata: ClientMetadata = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return Err(registration_error(
                "invalid_client_metadata",
                &format!("the body is not client metadata JSON: {e}"),
            ));
        }
    };
    // RFC 7591: the default method is client_secret_basic.
    let checked = match check_metadata(metadata, "client_secret_basic") {
        Ok(c) => c,
        Err((code, message)) => return Err(registration_error(code, &message)),
    };
    let (row, secret) = insert(&state, "dynamic", checked, Some(meta.ip.0.to_string())).await?;
    tracing::info!(client_id = %row.client_id, name = %row.name, "OAuth client registered");
    let mut doc = json!({
        "client_id": row.client_id,
        "client_id_issued_at": row.created_at,
        "client_name": row.name,
        "redirect_uris": row.redirect_uris(),
        "token_endpoint_auth_method": row.token_endpoint_auth_method,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "application_type": row.application_type,
    });
    if let Some(secret) = secret {
        doc["client_secret"] = json!(secret);
        doc["client_secret_expires_at"] = json!(0);
    }
    if let Some(scope) = &row.scope {
        doc["scope"] = json!(scope);
    }
    if let Some(uri) = &row.client_uri {
        doc["client_uri"] = json!(uri);
    }
    let mut res = (StatusCode::CREATED, axum::Json(doc)).into_response();
    no_store(res.headers_mut());
    Ok(res)
}

/// An admin registers a client (always allowed, whatever `OAUTH_DCR` says).
pub async fn create_by_admin(
    state: &AppState,
    req: &shared::oauth::CreateOAuthClient,
) -> Result<(ClientRow, Option<String>), ApiError> {
    let metadata = ClientMetadata {
        client_id: None,
        redirect_uris: req.redirect_uris.clone(),
        token_endpoint_auth_method: Some(
            if req.confidential {
                "client_secret_basic"
            } else {
                "none"
            }
            .into(),
        ),
        grant_types: None,
        response_types: None,
        client_name: Some(req.name.clone()),
        client_uri: None,
        logo_uri: None,
        scope: None,
        application_type: Some(
            if req.redirect_uris.iter().all(|u| u.starts_with("https://")) {
                "web"
            } else {
                "native"
            }
            .into(),
        ),
    };
    let checked = check_metadata(metadata, "none")
        .map_err(|(_, m)| ApiError::validation("redirect_uris", m))?;
    insert(state, "admin", checked, None).await
}

/// Why a client id could not be used.
#[derive(Debug)]
pub enum LookupError {
    Unknown,
    Revoked,
    /// A metadata document could not be used (the reason is shown to the user, never sent to
    /// a redirect URI).
    Document(String),
    Internal(ApiError),
}

/// The client for an id: a registered one, or a metadata document fetched from its URL.
pub async fn lookup(state: &AppState, client_id: &str) -> Result<Arc<ClientRow>, LookupError> {
    if client_id.starts_with("https://") || client_id.starts_with("http://") {
        if !state.config.oauth.cimd {
            return Err(LookupError::Document(
                "client ID metadata documents are turned off".into(),
            ));
        }
        return cimd_client(state, client_id).await;
    }
    let row = db::oauth::find_client(&state.db.pool, client_id)
        .await
        .map_err(|e| LookupError::Internal(e.into()))?
        .ok_or(LookupError::Unknown)?;
    if row.revoked_at.is_some() {
        return Err(LookupError::Revoked);
    }
    Ok(Arc::new(row))
}

/// A CIMD client: cached, else fetched and validated, and kept in `oauth_clients` so grants can
/// refer to it. An admin-revoked CIMD client stays revoked.
async fn cimd_client(state: &AppState, url: &str) -> Result<Arc<ClientRow>, LookupError> {
    if let Some(row) = state.oauth.cimd_cache.get(&url.to_string(), CIMD_TTL) {
        // Revocation by an admin on another replica must count at once.
        let revoked = db::oauth::find_client_by_key(&state.db.pool, row.id)
            .await
            .map_err(|e| LookupError::Internal(e.into()))?
            .is_none_or(|r| r.revoked_at.is_some());
        if revoked {
            return Err(LookupError::Revoked);
        }
        return Ok(row);
    }
    let existing = db::oauth::find_client(&state.db.pool, url)
        .await
        .map_err(|e| LookupError::Internal(e.into()))?;
    if existing.as_ref().is_some_and(|r| r.revoked_at.is_some()) {
        return Err(LookupError::Revoked);
    }
    let metadata = fetch_document(state, url)
        .await
        .map_err(LookupError::Document)?;
    if metadata.client_id.as_deref() != Some(url) {
        return Err(LookupError::Document(
            "the metadata document's client_id is not its own URL".into(),
        ));
    }
    if metadata
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return Err(LookupError::Document(
            "metadata-document clients must be public (token_endpoint_auth_method \"none\")".into(),
        ));
    }
    let checked = check_metadata(metadata, "none").map_err(|(_, m)| LookupError::Document(m))?;
    let now = db::now();
    let mut row = ClientRow {
        id: existing.as_ref().map_or(0, |r| r.id),
        client_id: url.to_string(),
        kind: "cimd".into(),
        name: checked.name,
        redirect_uris: serde_json::to_string(&checked.redirect_uris)
            .unwrap_or_else(|_| "[]".into()),
        token_endpoint_auth_method: "none".into(),
        secret_hash: None,
        application_type: checked.application_type,
        client_uri: checked.client_uri,
        logo_uri: checked.logo_uri,
        scope: checked.scope,
        registered_ip: None,
        created_at: existing.as_ref().map_or(now, |r| r.created_at),
        updated_at: now,
        revoked_at: None,
    };
    let stored = if existing.is_some() {
        db::oauth::update_cimd_client(&state.db.pool, &row).await
    } else {
        match db::oauth::insert_client(&state.db.pool, &row).await {
            Ok(id) => {
                row.id = id;
                Ok(())
            }
            // Another request stored it first.
            Err(e)
                if db::is_unique_violation(
                    &e,
                    "oauth_clients_client_id_key",
                    "oauth_clients.client_id",
                ) =>
            {
                match db::oauth::find_client(&state.db.pool, url).await {
                    Ok(Some(r)) => {
                        row.id = r.id;
                        Ok(())
                    }
                    Ok(None) => Err(e),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    };
    stored.map_err(|e| LookupError::Internal(e.into()))?;
    let row = Arc::new(row);
    state.oauth.cimd_cache.put(url.to_string(), row.clone());
    Ok(row)
}

/// Fetches a metadata document through the guarded client (`fetch.rs`): https only (unless
/// allowed), public addresses only (unless allowed), no redirects to other hosts, at most
/// 64 KiB in 5 seconds.
async fn fetch_document(state: &AppState, raw: &str) -> Result<ClientMetadata, String> {
    let oauth = &state.config.oauth;
    let url = url::Url::parse(raw).map_err(|_| "the client id is not a valid URL".to_string())?;
    if !(url.scheme() == "https" || (oauth.cimd_allow_http && url.scheme() == "http")) {
        return Err("a client id URL must use https".into());
    }
    if url.path().len() <= 1 || url.fragment().is_some() || !url.username().is_empty() {
        return Err("a client id URL needs a path and no fragment or credentials".into());
    }
    let policy = crate::fetch::Policy {
        allow_private: oauth.cimd_allow_private,
        allow_http: oauth.cimd_allow_http,
        timeout: CIMD_TIMEOUT,
        max_bytes: CIMD_MAX_BYTES,
        private_origin: None,
    };
    let res = crate::fetch::send(&policy, reqwest::Method::GET, url.as_str(), |r| {
        r.header(header::ACCEPT, "application/json")
    })
    .await
    .map_err(|e| format!("the client metadata document could not be fetched: {e}"))?;
    if !(200..300).contains(&res.status) {
        return Err(format!(
            "fetching the client metadata document answered {}",
            res.status
        ));
    }
    serde_json::from_slice(&res.body)
        .map_err(|_| "the client metadata document is not valid JSON".into())
}

/// Authenticates the client of a token or revocation request by its registered method.
/// `client_secret_basic`: `Authorization: Basic` (id and secret form-urlencoded);
/// `client_secret_post`: `client_id` and `client_secret` in the body; `none`: `client_id` only.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    form: &std::collections::HashMap<String, String>,
) -> Result<Arc<ClientRow>, OAuthError> {
    let basic_sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    let basic = basic_sent
        .and_then(|(_, b64)| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            let (id, secret) = (
                crate::oauth::form_decode(id),
                crate::oauth::form_decode(secret),
            );
            // A NUL names no client (and Postgres text cannot hold one): no credentials.
            (!id.contains('\0') && !secret.contains('\0')).then_some((id, secret))
        });
    let invalid = |description: &str| OAuthError {
        basic_challenge: basic_sent.is_some(),
        ..OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    };
    // Basic credentials that cannot be read are refused, not passed over for the form's.
    if basic_sent.is_some() && basic.is_none() {
        return Err(invalid("the Basic credentials cannot be read"));
    }
    let (client_id, secret, method) = match (&basic, form.get("client_secret")) {
        (Some((id, secret)), None) => (id.clone(), Some(secret.clone()), "client_secret_basic"),
        (None, Some(secret)) => (
            form.get("client_id").cloned().unwrap_or_default(),
            Some(secret.clone()),
            "client_secret_post",
        ),
        (None, None) => (
            form.get("client_id").cloned().unwrap_or_default(),
            None,
            "none",
        ),
        (Some(_), Some(_)) => return Err(invalid("use one client authentication method")),
    };
    if basic.is_some() && form.get("client_id").is_some_and(|id| *id != client_id) {
        return Err(invalid("client_id does not match the Authorization header"));
    }
    let client = match lookup(state, &client_id).await {
        Ok(c) => c,
        Err(LookupError::Internal(e)) => return Err(e.into()),
        Err(_) => return Err(invalid("unknown or revoked client")),
    };
    if client.token_endpoint_auth_method != method {
        return Err(invalid(&format!(
            "this client authenticates with {}",
            client.token_endpoint_auth_method
        )));
    }
    if let Some(secret) = secret {
        let ok = client.secret_hash.as_deref().is_some_and(|h| {
            crate::keys::constant_time_eq(h.as_bytes(), hash_token(&secret).as_bytes())
        });
        if !ok {
            return Err(invalid("wrong client secret"));
        }
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules() {
        assert!(validate_redirect_uri("https://app.example.com/cb", false).is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:3000/callback", false).is_ok());
        assert!(validate_redirect_uri("http://localhost/cb", false).is_ok());
        assert!(validate_redirect_uri("http://[::1]:8/cb", false).is_ok());
        assert!(validate_redirect_uri("http://example.com/cb", false).is_err());
        assert!(validate_redirect_uri("https://app.example.com/cb#x", false).is_err());
        assert!(validate_redirect_uri("com.example.app:/cb", false).is_err());
        assert!(validate_redirect_uri("com.example.app:/cb", true).is_ok());
        assert!(validate_redirect_uri("javascript:alert(1)", true).is_err());
        assert!(validate_redirect_uri("/relative", false).is_err());
    }

    #[test]
    fn loopback_redirects_match_on_any_port_only() {
        assert!(redirect_matches(
            "https://a.example/cb",
            "https://a.example/cb"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example/cb/"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example:444/cb"
        ));
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:51234/cb"
        ));
        assert!(redirect_matches(
            "http://127.0.0.1:1/cb",
            "http://127.0.0.1:2/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5/other"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://localhost:5/cb"
        ));
    }
}
