//! Connecting an account at a backend's authorization server: the authorization-code flow with
//! PKCE (S256) and `resource` (RFC 8707), run in the browser of the admin (`oauth_admin`, the
//! server's one account) or of each user (`oauth_user`).
//!
//! `start` discovers the authorization server, registers the gateway if it has no client yet,
//! and records the flow (`backend_oauth_pending`: the state's hash, the PKCE verifier sealed,
//! the hash of a cookie set on the browser that started it, 10 minutes). `finish` (the
//! callback) takes the flow once, checks it comes back to the same browser, exchanges the code
//! and stores the tokens. A flow started by one person cannot be completed by another's
//! browser, so nobody can attach their backend account to someone else's gateway account.

use std::sync::Arc;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::auth::tokens::{hash_token, random_token};
use crate::backend_auth::{Kind, OAuthConfig, ServerAuth, discovery, grant};
use crate::db::{self, backend_tokens::PendingRow, servers::ServerRow};
use crate::error::ApiError;
use crate::state::AppState;

/// The cookie that binds a flow to the browser that started it.
pub const FLOW_COOKIE: &str = "authmcp_backend_flow";
pub const CALLBACK_PATH: &str = "/oauth/backend/callback";
/// The gateway's client ID metadata document, for authorization servers that take one.
pub const CLIENT_METADATA_PATH: &str = "/oauth/backend/client-metadata.json";
const FLOW_TTL: i64 = 600;
/// Flows one user may have open at once.
const MAX_PENDING_PER_USER: i64 = 10;

pub fn redirect_uri(state: &AppState) -> String {
    format!("{}{CALLBACK_PATH}", state.config.public_url)
}

/// The gateway's client id where client ID metadata documents are taken.
pub fn client_metadata_url(state: &AppState) -> String {
    format!("{}{CLIENT_METADATA_PATH}", state.config.public_url)
}

fn pending_context(state_hash: &str) -> String {
    format!("backend_oauth_pending:{state_hash}")
}

/// The server's OAuth setup as stored now (not the registry's copy, which may lag).
pub async fn load(
    state: &AppState,
    server_id: i64,
) -> Result<(ServerRow, Kind, OAuthConfig), ApiError> {
    let row = db::servers::find(&state.db.pool, server_id)
        .await?
        .ok_or(ApiError::NotFound("no such server"))?;
    let kind = row
        .credential_type
        .as_deref()
        .and_then(Kind::parse)
        .ok_or_else(|| {
            ApiError::conflict("not_oauth", "this server does not use an OAuth credential")
        })?;
    let sealed = row
        .credential
        .as_ref()
        .ok_or(ApiError::NotFound("no such server"))?;
    let config: OAuthConfig = serde_json::from_slice(
        &state
            .secret_box
            .open(sealed, &crate::mcp::registry::credential_context(row.id))?,
    )
    .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((row, kind, config))
}

fn upstream_error(message: String) -> ApiError {
    ApiError::Validation {
        code: "backend_oauth_failed",
        message,
        field: None,
    }
}

/// What `start` hands back: where to send the browser, and the cookie to set on it.
pub struct Started {
    pub authorization_url: String,
    pub browser_secret: String,
}

/// Starts a flow for `user_id` (0: the server's own account, `oauth_admin`), by `started_by`.
pub async fn start(
    state: &AppState,
    server_id: i64,
    user_id: i64,
    started_by: i64,
    return_to: &str,
) -> Result<Started, ApiError> {
    let (row, kind, mut config) = load(state, server_id).await?;
    match (kind, user_id) {
        (Kind::Admin, 0) => {}
        (Kind::User, u) if u > 0 => {}
        _ => {
            return Err(ApiError::conflict(
                "not_oauth",
                "this server's credential is not connected this way",
            ));
        }
    }
    let now = db::now();
    if db::backend_tokens::count_pending(&state.db.pool, started_by, now).await?
        >= MAX_PENDING_PER_USER
    {
        return Err(ApiError::TooManyRequests {
            code: "too_many_attempts",
            message: "too many connections in progress; finish or wait for one".into(),
            retry_after: 60,
        });
    }
    let auth = ServerAuth::new(&row, kind, config.clone());
    let found = discovery::discover(&auth).await.map_err(upstream_error)?;
    let redirect_uri = redirect_uri(state);
    let scope = config.scope.clone().or_else(|| found.scopes.clone());
    let mut changed = config.token_url.as_deref() != Some(&found.token_url)
        || config.authorization_url.as_deref() != Some(&found.authorization_url)
        || config.issuer.as_deref() != Some(&found.issuer);
    // The backend now names another authorization server (or token endpoint): tokens held
    // under the earlier one must never be sent to the new one.
    let repointed = (config.issuer.is_some() && config.issuer.as_deref() != Some(&found.issuer))
        || (config.token_url.is_some() && config.token_url.as_deref() != Some(&found.token_url));
    // A client registered by the gateway is registered again when the issuer or the
    // gateway's own URL changed.
    let registered_here = config.registered_redirect_uri.is_some();
    if config.client_id.is_none()
        || (registered_here
            && (config.registered_redirect_uri.as_deref() != Some(&redirect_uri)
                || config.issuer.as_deref() != Some(&found.issuer)))
    {
        // A client ID metadata document needs no registration, but the authorization server
        // must be able to fetch it: over https, or on the private network the backend is on.
        let by_document = found.client_metadata_documents
            && (state.config.public_url.starts_with("https://")
                || auth.policy().await.allow_private);
        let registered = if by_document {
            OAuthConfig {
                client_id: Some(client_metadata_url(state)),
                auth_method: crate::backend_auth::ClientAuth::None,
                registered_redirect_uri: Some(redirect_uri.clone()),
                ..OAuthConfig::default()
            }
        } else {
            discovery::register(&auth, &found, &redirect_uri, scope.as_deref())
                .await
                .map_err(upstream_error)?
        };
        config.client_id = registered.client_id;
        config.client_secret = registered.client_secret;
        config.auth_method = registered.auth_method;
        config.registered_redirect_uri = registered.registered_redirect_uri;
        changed = true;
    }
    config.token_url = Some(found.token_url.clone());
    config.authorization_url = Some(found.authorization_url.clone());
    config.issuer = Some(found.issuer.clone());
    if config.resource.is_none() {
        config.resource = Some(found.resource.clone());
        changed = true;
    }
    if changed {
        let sealed = config.seal(&state.secret_box, row.id)?;
        let before = row.credential.clone().unwrap_or_default();
        let mut tx = state.db.begin().await?;
        // Only over the configuration read (an admin's edit meanwhile wins).
        if !db::servers::set_oauth_config(&mut *tx, row.id, kind.as_str(), &before, &sealed, now)
            .await?
        {
            return Err(ApiError::Conflict {
                code: "credential_changed",
                message: "the server's credential changed meanwhile; try again".into(),
            });
        }
        if repointed {
            db::backend_tokens::delete_server(&mut *tx, row.id).await?;
            tracing::warn!(server = %row.name, issuer = %found.issuer, "the server names another authorization server: its connected accounts are forgotten");
        }
        tx.commit().await?;
        if repointed {
            state.mcp.tokens.forget(row.id, None);
        }
        state.mcp.reload().await?;
        state.changes.send(crate::feed::Change::Servers);
    }
    let verifier =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::keys::random_bytes::<32>()?);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let flow_state = random_token("")?;
    let browser_secret = random_token("")?;
    let state_hash = hash_token(&flow_state);
    db::backend_tokens::insert_pending(
        &state.db.pool,
        &PendingRow {
            verifier: state
                .secret_box
                .seal(verifier.as_bytes(), &pending_context(&state_hash))?,
            state_hash,
            server_id: row.id,
            user_id,
            started_by,
            browser_hash: hash_token(&browser_secret),
            redirect_uri: redirect_uri.clone(),
            issuer: found.issuer.clone(),
            return_to: return_to.to_string(),
            expires_at: now + FLOW_TTL,
        },
    )
    .await?;
    let mut url = url::Url::parse(&found.authorization_url)
        .map_err(|_| upstream_error("the authorization endpoint is not a URL".into()))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", config.client_id.as_deref().unwrap_or_default())
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("state", &flow_state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &auth_resource(&config, &row));
        if let Some(scope) = &scope {
            q.append_pair("scope", scope);
        }
    }
    Ok(Started {
        authorization_url: url.to_string(),
        browser_secret,
    })
}

fn auth_resource(config: &OAuthConfig, row: &ServerRow) -> String {
    config.resource.clone().unwrap_or_else(|| row.url.clone())
}

/// What the callback did.
pub struct Finished {
    pub server_id: i64,
    pub server: String,
    pub user_id: i64,
    pub started_by: i64,
    pub return_to: String,
}

/// Why a callback failed, with where to say so (the flow's page) when the flow was found.
pub struct CallbackError {
    pub return_to: Option<String>,
    pub message: String,
}

fn refused(return_to: Option<&str>, message: impl Into<String>) -> CallbackError {
    CallbackError {
        return_to: return_to.map(str::to_string),
        message: message.into(),
    }
}

/// What the authorization server sent back to the callback.
pub struct Callback<'a> {
    pub state: &'a str,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    /// RFC 9207: the issuer that answered (checked when sent).
    pub iss: Option<&'a str>,
}

/// The callback, from the browser holding `browser`.
pub async fn finish(
    state: &AppState,
    callback: Callback<'_>,
    browser: Option<&str>,
) -> Result<Finished, CallbackError> {
    let Callback {
        state: flow_state,
        code,
        error,
        iss,
    } = callback;
    let pending = db::backend_tokens::take_pending(&state.db.pool, &hash_token(flow_state))
        .await
        .map_err(|_| refused(None, "the gateway's database is unavailable"))?
        .filter(|p| p.expires_at > db::now())
        .ok_or_else(|| {
            refused(
                None,
                "this connection attempt is unknown, expired or already used; start again",
            )
        })?;
    let back = Some(pending.return_to.as_str());
    // The same browser that started it (a flow is worthless to anyone else).
    if browser.map(hash_token).as_deref() != Some(pending.browser_hash.as_str()) {
        return Err(refused(
            back,
            "this connection was started in another browser; start again here",
        ));
    }
    // A code from another authorization server than the one this flow went to (a mix-up).
    if iss.is_some_and(|i| i != pending.issuer) {
        return Err(refused(
            back,
            "the answer came from another authorization server than the one asked",
        ));
    }
    if let Some(error) = error {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        return Err(refused(
            back,
            format!("the authorization server answered {error}"),
        ));
    }
    let code = code.ok_or_else(|| refused(back, "the authorization server sent no code"))?;
    let (row, kind, config) = load(state, pending.server_id)
        .await
        .map_err(|_| refused(back, "the server or its OAuth credential is gone"))?;
    if !matches!(
        (kind, pending.user_id),
        (Kind::Admin, 0) | (Kind::User, 1..)
    ) {
        return Err(refused(
            back,
            "the server's credential changed meanwhile; start again",
        ));
    }
    let verifier = state
        .secret_box
        .open(&pending.verifier, &pending_context(&pending.state_hash))
        .ok()
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or_else(|| refused(back, "the connection attempt could not be read"))?;
    // The code goes only to the token endpoint of the server the flow went to.
    let Some(token_url) = config
        .token_url
        .clone()
        .filter(|_| config.issuer.as_deref() == Some(pending.issuer.as_str()))
    else {
        return Err(refused(
            back,
            "the server's credential changed meanwhile; start again",
        ));
    };
    let resource = auth_resource(&config, &row);
    let auth = Arc::new(ServerAuth::new(&row, kind, config));
    let issued = grant(
        &auth,
        &token_url,
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", pending.redirect_uri.clone()),
            ("code_verifier", verifier),
            ("resource", resource),
        ],
    )
    .await
    .map_err(|e| {
        refused(
            back,
            match e {
                crate::backend_auth::GrantError::Refused(r)
                | crate::backend_auth::GrantError::Unavailable(r) => r,
            },
        )
    })?;
    state
        .mcp
        .tokens
        .store_connected(row.id, pending.user_id, &issued)
        .await
        .map_err(|_| refused(back, "the gateway could not store the connection"))?;
    state
        .changes
        .send(crate::feed::Change::BackendToken(row.id, pending.user_id));
    Ok(Finished {
        server_id: row.id,
        server: row.name,
        user_id: pending.user_id,
        started_by: pending.started_by,
        return_to: pending.return_to,
    })
}
