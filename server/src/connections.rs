//! The HTTP edge of backend OAuth credentials (`backend_auth.rs`):
//! - admins: token health of every held credential, "refresh now", "disconnect", and
//!   connecting a server's own account (`oauth_admin`);
//! - users: the connections page's sign-in (the consent page's sign-in cookie) and their own
//!   connected accounts (`oauth_user`): list, connect, disconnect;
//! - the callback every connection flow returns to.
//!
//! Cookie-authenticated requests that change something must come from the gateway's own pages
//! (`Origin`). No endpoint returns a token.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use shared::auth::LoginRequest;
use shared::error::ApiErrorBody;
use shared::servers::{ConnectStart, ConnectionsUser, MyConnections, TokenHealth, UserConnection};
use utoipa::IntoParams;

use crate::accounts::{self, Actor};
use crate::admin::actor;
use crate::auth::identity::{self, AdminScope, Principal, RequestMeta, ScopedAdmin};
use crate::backend_auth::{Kind, connect};
use crate::db::{self, backend_tokens::TokenRow};
use crate::error::{ApiError, AppJson, AppPath, AppQuery};
use crate::mcp::backend::Credential;
use crate::mcp::registry::Backend;
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_tokens))
        .routes(routes!(refresh_token))
        .routes(routes!(disconnect_token))
        .routes(routes!(connect_server))
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(my_connections))
        .routes(routes!(connect_mine, disconnect_mine))
        .routes(routes!(callback))
        .routes(routes!(client_metadata))
}

/// The gateway's OAuth client ID metadata document, for backends' authorization servers that
/// take one instead of a registration: a public client (PKCE) whose only redirect URI is the
/// callback.
#[utoipa::path(get, path = "/oauth/backend/client-metadata.json", tag = "connections", operation_id = "backend_client_metadata",
    responses(
        (status = 200, description = "The client ID metadata document", body = serde_json::Value),
    ))]
async fn client_metadata(State(state): State<AppState>) -> Response {
    let mut res = AppJson(json!({
        "client_id": connect::client_metadata_url(&state),
        "client_name": "AuthMCP Gateway",
        "client_uri": state.config.public_url,
        "redirect_uris": [connect::redirect_uri(&state)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }))
    .into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("public, max-age=3600"),
    );
    res
}

/// The status shown for a held credential.
fn status_of(row: Option<&TokenRow>, now: i64) -> &'static str {
    match row {
        None => "not_connected",
        Some(r) if r.status == "failed" => "failed",
        Some(r) if r.access_token.is_none() => "not_connected",
        Some(r) if r.expires_at.is_some_and(|e| e <= now) => "expired",
        Some(_) => "ok",
    }
}

fn health(
    backend: &Backend,
    kind: Kind,
    user: Option<(i64, String)>,
    row: Option<&TokenRow>,
) -> TokenHealth {
    let now = db::now();
    TokenHealth {
        server_id: backend.id,
        server: backend.name.clone(),
        kind: kind.as_str().to_string(),
        user_id: user.as_ref().map(|u| u.0),
        username: user.map(|u| u.1),
        status: status_of(row, now).to_string(),
        expires_in: row.and_then(|r| r.expires_at).map(|e| e - now),
        has_refresh_token: row.is_some_and(|r| r.refresh_token.is_some()),
        scope: row.and_then(|r| r.scope.clone()),
        connected_at: row
            .filter(|r| r.access_token.is_some())
            .map(|r| r.connected_at),
        last_refresh_at: row.and_then(|r| r.last_refresh_at),
        refresh_count: row.map_or(0, |r| r.refresh_count),
        last_error: row.and_then(|r| r.last_error.clone()),
        last_error_at: row.and_then(|r| r.last_error_at),
    }
}

/// A server `scope` may see (another team's is answered as one that does not exist).
fn backend_by_id(
    state: &AppState,
    scope: &AdminScope,
    id: i64,
) -> Result<std::sync::Arc<Backend>, ApiError> {
    state
        .mcp
        .registry
        .snapshot()
        .values()
        .find(|b| b.id == id && scope.has_team(b.row.team_id))
        .cloned()
        .ok_or(ApiError::NotFound("no such server"))
}

/// Token health: every OAuth credential the gateway holds or lacks (a server's own, each
/// user's connected account). Never includes a token.
#[utoipa::path(get, path = "/admin/api/tokens", tag = "tokens", operation_id = "list_backend_tokens",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every OAuth credential toward backends", body = Vec<TokenHealth>),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn list_tokens(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
) -> Result<AppJson<Vec<TokenHealth>>, ApiError> {
    let scope = admin.admin_scope();
    let rows = db::backend_tokens::list_all(&state.db.pool).await?;
    let mut backends: Vec<_> = state
        .mcp
        .registry
        .snapshot()
        .values()
        .filter(|b| scope.has_team(b.row.team_id))
        .cloned()
        .collect();
    backends.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for backend in backends {
        let Some(kind) = backend.oauth_kind() else {
            continue;
        };
        let mine = rows.iter().filter(|r| r.row.server_id == backend.id);
        if kind == Kind::User {
            for named in mine.filter(|r| r.row.user_id != 0) {
                let name = named.username.clone().unwrap_or_default();
                out.push(health(
                    &backend,
                    kind,
                    Some((named.row.user_id, name)),
                    Some(&named.row),
                ));
            }
        } else {
            let row = mine.map(|r| &r.row).find(|r| r.user_id == 0);
            out.push(health(&backend, kind, None, row));
        }
    }
    Ok(AppJson(out))
}

/// `user_id` 0 is the server's own credential.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct TokenPath {
    /// Server id.
    server_id: i64,
    /// The user whose connected account it is; 0 for the server's own credential.
    user_id: i64,
}

/// "Refresh now": renews the credential at once (a client-credentials server asks for a new
/// token, a connected account uses its refresh token), also after a failure.
#[utoipa::path(post, path = "/admin/api/tokens/{server_id}/{user_id}/refresh", tag = "tokens", operation_id = "refresh_backend_token",
    security(("bearer" = [])),
    params(TokenPath),
    responses(
        (status = 200, description = "The credential's health after the attempt (a failure shows in `last_error`)", body = TokenHealth),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such server or credential", body = ApiErrorBody),
    ))]
async fn refresh_token(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppPath(TokenPath { server_id, user_id }): AppPath<TokenPath>,
) -> Result<AppJson<TokenHealth>, ApiError> {
    let backend = backend_by_id(&state, &admin.0.admin_scope(), server_id)?;
    let cell = match (&backend.target.credential, user_id) {
        (Credential::OAuth(cell), 0) => cell.clone(),
        (Credential::PerUser(auth), u) if u > 0 => state.mcp.tokens.cell(auth, u),
        _ => return Err(ApiError::NotFound("no such credential")),
    };
    if cell.auth.kind != Kind::ClientCredentials
        && db::backend_tokens::get(&state.db.pool, server_id, user_id)
            .await?
            .is_none()
    {
        return Err(ApiError::NotFound("no such credential"));
    }
    let outcome = cell.renew_now().await;
    if user_id == 0 && outcome.is_ok() {
        recheck_health(&state, server_id);
    }
    let mut tx = state.db.begin().await?;
    accounts::audit_in(
        &mut *tx,
        &actor(&admin, &meta),
        team_of(&state, server_id),
        "backend_token.refresh",
        "mcp_server",
        Some(server_id.to_string()),
        None,
        Some(json!({ "user_id": user_id, "ok": outcome.is_ok() })),
    )
    .await?;
    tx.commit().await?;
    let row = db::backend_tokens::get(&state.db.pool, server_id, user_id).await?;
    let user = if user_id == 0 {
        None
    } else {
        let name = db::users::find_by_id(&state.db.pool, user_id)
            .await?
            .map(|u| u.username)
            .unwrap_or_default();
        Some((user_id, name))
    };
    Ok(AppJson(health(
        &backend,
        cell.auth.kind,
        user,
        row.as_ref(),
    )))
}

/// "Disconnect": forgets the credential's tokens (the server's own, or a user's connected
/// account). Calls then fail with a clear error until it is connected again.
#[utoipa::path(delete, path = "/admin/api/tokens/{server_id}/{user_id}", tag = "tokens", operation_id = "disconnect_backend_token",
    security(("bearer" = [])),
    params(TokenPath),
    responses(
        (status = 204, description = "Disconnected"),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such credential", body = ApiErrorBody),
    ))]
async fn disconnect_token(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppPath(TokenPath { server_id, user_id }): AppPath<TokenPath>,
) -> Result<StatusCode, ApiError> {
    backend_by_id(&state, &admin.0.admin_scope(), server_id)?;
    disconnect(&state, &actor(&admin, &meta), server_id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn disconnect(
    state: &AppState,
    actor: &Actor<'_>,
    server_id: i64,
    user_id: i64,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await?;
    if !db::backend_tokens::delete(&mut *tx, server_id, user_id).await? {
        return Err(ApiError::NotFound("no such credential"));
    }
    accounts::audit_in(
        &mut *tx,
        actor,
        team_of(state, server_id),
        "backend_token.disconnect",
        "mcp_server",
        Some(server_id.to_string()),
        Some(json!({ "user_id": user_id })),
        None,
    )
    .await?;
    tx.commit().await?;
    state.mcp.tokens.forget(server_id, Some(user_id));
    state
        .changes
        .send(crate::feed::Change::BackendToken(server_id, user_id));
    Ok(())
}

/// Checks a server's health again now (its own credential was just connected or renewed: the
/// last check may have found none), off the request.
fn recheck_health(state: &AppState, server_id: i64) {
    let Ok(backend) = backend_by_id(state, &AdminScope::All, server_id) else {
        return;
    };
    let state = state.clone();
    tokio::spawn(async move {
        let probe = state
            .mcp
            .client
            .probe(&backend.target, backend.transport)
            .await;
        state
            .mcp
            .registry
            .set_health(backend.id, crate::mcp::health::to_health(&probe));
    });
}

fn flow_cookie(state: &AppState, secret: &str) -> Result<axum::http::HeaderValue, ApiError> {
    crate::cookies::set(
        &state.config.public_url,
        connect::FLOW_COOKIE,
        secret,
        connect::CALLBACK_PATH,
        "Lax",
        600,
    )
}

fn started(state: &AppState, started: connect::Started) -> Result<Response, ApiError> {
    let mut res = AppJson(ConnectStart {
        authorization_url: started.authorization_url,
    })
    .into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        flow_cookie(state, &started.browser_secret)?,
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

/// Connects (or reconnects) the account of an `oauth_admin` server: discovers its
/// authorization server, registers the gateway if needed, and returns where to send this
/// browser (PKCE S256, `resource`). The flow must finish in the same browser within 10 minutes.
#[utoipa::path(post, path = "/admin/api/servers/{id}/connect", tag = "tokens", operation_id = "connect_backend_account",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Server id")),
    responses(
        (status = 409, description = "`not_oauth`: the server's credential is not connected this way", body = ApiErrorBody),
        (status = 200, description = "Where to send the browser; sets the flow cookie", body = ConnectStart),
        (status = 400, description = "Not an `oauth_admin` server, or discovery/registration failed (`backend_oauth_failed`)", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such server", body = ApiErrorBody),
        (status = 429, description = "Too many connections in progress", body = ApiErrorBody),
    ))]
async fn connect_server(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
) -> Result<Response, ApiError> {
    backend_by_id(&state, &admin.0.admin_scope(), id)?;
    let flow = connect::start(&state, id, 0, admin.0.user_id, "/admin/tokens").await?;
    let mut tx = state.db.begin().await?;
    accounts::audit_in(
        &mut *tx,
        &actor(&admin, &meta),
        team_of(&state, id),
        "backend_token.connect_started",
        "mcp_server",
        Some(id.to_string()),
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    started(&state, flow)
}

/// The user of a connections request: the portal's (a portal-audience bearer token) or the
/// one signed in on this browser's connections page (the consent page's sign-in).
async fn page_user(
    state: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    if identity::bearer(headers).is_some() {
        let accept = identity::Accept {
            audience: crate::auth::tokens::Audience::Portal,
            api_keys: false,
            resource: None,
        };
        return identity::authenticate(state, headers, meta, accept).await;
    }
    let user = crate::oauth::flow::cookie_user(state, headers)
        .await
        .ok_or(ApiError::Unauthorized)?;
    Ok(Principal::signed_in(&user))
}

/// Where the browser returns after connecting: the portal, or the connections page.
fn return_page(headers: &HeaderMap) -> &'static str {
    if identity::bearer(headers).is_some() {
        "/account"
    } else {
        "/connect"
    }
}

/// Signs in on the connections page (the same sign-in as the OAuth consent page: an HttpOnly
/// cookie for 12 hours; lockout rules as for login). Same-origin only.
#[utoipa::path(post, path = "/oauth/backend/signin", tag = "connections", operation_id = "connections_sign_in",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; sets the sign-in cookie", body = ConnectionsUser),
        (status = 401, description = "`invalid_credentials`", body = ApiErrorBody),
        (status = 403, description = "Cross-origin request", body = ApiErrorBody),
        (status = 429, description = "`login_locked` / `too_many_attempts`", body = ApiErrorBody),
    ))]
async fn sign_in(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<Response, ApiError> {
    crate::oauth::flow::same_origin_only(&state, &meta, &headers, "connections")?;
    let user = crate::auth::login::verify_credentials(
        &state,
        &meta,
        &req,
        crate::auth::tokens::Audience::Mcp,
    )
    .await?;
    crate::accounts::record_auth(
        &state.db.pool,
        user.id,
        &user.username,
        &meta.ip.0.to_string(),
        "auth.sign_in",
        serde_json::json!({ "audience": "connections" }),
    )
    .await?;
    let mut res = AppJson(ConnectionsUser {
        username: user.username.clone(),
    })
    .into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        crate::oauth::flow::consent_cookie(&state, &user)?,
    );
    Ok(res)
}

/// Signs out of the connections page (and the consent page) in this browser, on every replica.
#[utoipa::path(post, path = "/oauth/backend/signout", tag = "connections", operation_id = "connections_sign_out",
    responses(
        (status = 204, description = "Signed out"),
        (status = 403, description = "Cross-origin request", body = ApiErrorBody),
    ))]
async fn sign_out(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    crate::oauth::flow::same_origin_only(&state, &meta, &headers, "connections")?;
    let user = crate::oauth::flow::cookie_user(&state, &headers).await;
    let clear = crate::oauth::flow::end_consent_sign_in(&state, &headers).await?;
    // Recorded once the sign-in is over; a failed record never keeps it.
    if let Some(user) = user
        && let Err(e) = crate::accounts::record_auth(
            &state.db.pool,
            user.id,
            &user.username,
            &meta.ip.0.to_string(),
            "auth.sign_out",
            serde_json::json!({ "audience": "connections" }),
        )
        .await
    {
        tracing::warn!(error = %e, "recording a sign-out failed");
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear);
    Ok(res)
}

/// The servers the signed-in user may use that act with each user's own account, with the
/// state of the user's connection.
#[utoipa::path(get, path = "/oauth/backend/connections", tag = "connections", operation_id = "my_connections",
    responses(
        (status = 200, description = "Who is signed in, and their connections", body = MyConnections),
        (status = 401, description = "Not signed in on this page or the portal", body = ApiErrorBody),
    ))]
async fn my_connections(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = page_user(&state, &meta, &headers).await?;
    let rows = db::backend_tokens::list_user(&state.db.pool, principal.user_id).await?;
    let now = db::now();
    let out: Vec<UserConnection> = state
        .mcp
        .registry
        .usable(&principal)
        .await?
        .into_iter()
        .filter(|b| b.oauth_kind() == Some(Kind::User))
        .map(|b| {
            let row = rows.iter().find(|r| r.server_id == b.id);
            UserConnection {
                server_id: b.id,
                server: b.name.clone(),
                description: b.row.description.clone(),
                status: status_of(row, now).to_string(),
                expires_in: row.and_then(|r| r.expires_at).map(|e| e - now),
                connected_at: row
                    .filter(|r| r.access_token.is_some())
                    .map(|r| r.connected_at),
                last_error: row.and_then(|r| r.last_error.clone()),
            }
        })
        .collect();
    let mut res = AppJson(MyConnections {
        username: principal.username,
        connections: out,
    })
    .into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

/// The server named `server` if the signed-in user may use it and it uses per-user accounts
/// (404 otherwise, as for an unknown name).
async fn my_server(
    state: &AppState,
    principal: &Principal,
    server: &str,
) -> Result<std::sync::Arc<Backend>, ApiError> {
    state
        .mcp
        .registry
        .usable(principal)
        .await?
        .into_iter()
        .find(|b| b.name == server && b.oauth_kind() == Some(Kind::User))
        .ok_or(ApiError::NotFound("no such server"))
}

/// Connects my own account at `server`: returns where to send this browser.
#[utoipa::path(post, path = "/oauth/backend/connections/{server}", tag = "connections", operation_id = "connect_my_account",
    params(("server" = String, Path, description = "Server name")),
    responses(
        (status = 200, description = "Where to send the browser; sets the flow cookie", body = ConnectStart),
        (status = 400, description = "Discovery or registration failed (`backend_oauth_failed`)", body = ApiErrorBody),
        (status = 401, description = "Not signed in on this page or the portal", body = ApiErrorBody),
        (status = 403, description = "Cross-origin request", body = ApiErrorBody),
        (status = 404, description = "No such server (or not one of mine)", body = ApiErrorBody),
        (status = 429, description = "Too many connections in progress", body = ApiErrorBody),
    ))]
async fn connect_mine(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    AppPath(server): AppPath<String>,
) -> Result<Response, ApiError> {
    crate::oauth::flow::same_origin_only(&state, &meta, &headers, "connections")?;
    let principal = page_user(&state, &meta, &headers).await?;
    let backend = my_server(&state, &principal, &server).await?;
    let flow = connect::start(
        &state,
        backend.id,
        principal.user_id,
        principal.user_id,
        return_page(&headers),
    )
    .await?;
    started(&state, flow)
}

/// Disconnects my own account at `server` (its tokens are forgotten).
#[utoipa::path(delete, path = "/oauth/backend/connections/{server}", tag = "connections", operation_id = "disconnect_my_account",
    params(("server" = String, Path, description = "Server name")),
    responses(
        (status = 204, description = "Disconnected"),
        (status = 401, description = "Not signed in on this page or the portal", body = ApiErrorBody),
        (status = 403, description = "Cross-origin request", body = ApiErrorBody),
        (status = 404, description = "No such server or connection", body = ApiErrorBody),
    ))]
async fn disconnect_mine(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    AppPath(server): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    crate::oauth::flow::same_origin_only(&state, &meta, &headers, "connections")?;
    let principal = page_user(&state, &meta, &headers).await?;
    let backend = my_server(&state, &principal, &server).await?;
    let actor = Actor {
        principal: &principal,
        ip: meta.ip.0.to_string(),
    };
    disconnect(&state, &actor, backend.id, principal.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    /// RFC 9207 issuer identification.
    iss: Option<String>,
}

/// Where a backend's authorization server sends the browser back. Completes the flow started
/// in this browser and redirects to the page it was started from (`?connected=` or `?error=`).
#[utoipa::path(get, path = "/oauth/backend/callback", tag = "connections", operation_id = "backend_oauth_callback",
    params(CallbackQuery),
    responses(
        (status = 404, description = "`connection_invalid`: the attempt is unknown, expired or used", body = ApiErrorBody),
        (status = 303, description = "Back to the page that started the flow"),
        (status = 400, description = "`invalid_query`: a malformed query", body = ApiErrorBody),
    ))]
async fn callback(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    AppQuery(q): AppQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    let browser = crate::cookies::read(&headers, connect::FLOW_COOKIE);
    let clear = crate::cookies::set(
        &state.config.public_url,
        connect::FLOW_COOKIE,
        "",
        connect::CALLBACK_PATH,
        "Lax",
        0,
    )?;
    let outcome = connect::finish(
        &state,
        connect::Callback {
            state: q.state.as_deref().unwrap_or_default(),
            code: q.code.as_deref(),
            error: q.error.as_deref(),
            iss: q.iss.as_deref(),
        },
        browser.as_deref(),
    )
    .await;
    let location = match outcome {
        Ok(done) => {
            let _ = write_connected_audit(&state, &meta, &done).await;
            if done.user_id == 0 {
                recheck_health(&state, done.server_id);
            }
            format!("{}?connected={}", done.return_to, encode(&done.server))
        }
        Err(e) => {
            tracing::info!(reason = %e.message, "a backend connection did not complete");
            match e.return_to {
                Some(to) => format!("{to}?error={}", encode(&e.message)),
                None => {
                    return Err(ApiError::Unknown {
                        code: "connection_invalid",
                        message: e.message,
                    });
                }
            }
        }
    };
    let mut res = Redirect::to(&location).into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear);
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

async fn write_connected_audit(
    state: &AppState,
    meta: &RequestMeta,
    done: &connect::Finished,
) -> Result<(), ApiError> {
    // Whoever started it (gone meanwhile: nothing to attribute it to, and nothing to record).
    let Some(user) = db::users::find_by_id(&state.db.pool, done.started_by).await? else {
        return Ok(());
    };
    let principal = Principal::signed_in(&user);
    let actor = Actor {
        principal: &principal,
        ip: meta.ip.0.to_string(),
    };
    let mut tx = state.db.begin().await?;
    accounts::audit_in(
        &mut *tx,
        &actor,
        team_of(state, done.server_id),
        "backend_token.connected",
        "mcp_server",
        Some(done.server_id.to_string()),
        None,
        Some(json!({ "server": done.server, "user_id": done.user_id })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The team of a registered server (for its audit entries).
fn team_of(state: &AppState, server_id: i64) -> Option<i64> {
    state
        .mcp
        .registry
        .snapshot()
        .values()
        .find(|b| b.id == server_id)
        .map(|b| b.row.team_id)
}
