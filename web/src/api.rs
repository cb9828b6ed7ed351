//! The only place that talks HTTP. Every request goes through `send`, which attaches the
//! in-memory access token, retries once after a transparent refresh when the token has expired,
//! and turns any non-2xx answer into an `ApiError` decoded from the server's
//! `{"error": {"code", "message"}}` envelope.
//!
//! Two sessions, one per audience: the admin pages (`/admin/api`) and the user portal
//! (`/portal/api`). Each survives reloads without any credential readable by JavaScript: its
//! refresh token lives in an `HttpOnly; SameSite=Strict` cookie scoped to its session path, and
//! its access token only in this module's memory. A request carries the token of the realm its
//! path belongs to, and no token at all outside the two.

use std::cell::RefCell;

use gloo_net::http::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::audit::{AuditRequest, AuditScan};
use shared::auth::{
    ApiKey, CreateApiKey, CreatedApiKey, LoginRequest, Me, SessionMode, SetupAccount, SetupStatus,
    TokenResponse,
};
use shared::console::{ConsoleCall, ConsoleResult, ConsoleTarget, ConsoleTool};
use shared::error::ApiErrorBody;
use shared::events::SecurityEvent;
use shared::health::{Health, Ready};
use shared::live::LiveTicket;
use shared::oauth::{
    ConsentDecision, ConsentRequest, ConsentResult, CreateOAuthClient, CreatedOAuthClient,
    OAuthClient, OAuthGrant,
};
use shared::portal::MyServers;
use shared::servers::{
    ActivityRecord, ConnectStart, ConnectionTest, ConnectionsUser, CreateServer, GatewaySettings,
    McpServer, MyConnections, PinDecision, RateLimits, ServerPermission, SetServerPermission,
    SettingsUpdate, TokenHealth, ToolPin, ToolRules, UpdateServer,
};
use shared::stats::Stats;
use shared::teams::{SetTeamMember, Team, TeamMember, TeamName};
use shared::users::{ChangePassword, CreateUser, Page, ResetPassword, UpdateUser, User};

/// An error as the UI shows it: the server's code and message, or a transport failure.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Whose access token a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    Admin,
    Portal,
}

impl Realm {
    /// The realm of an API path (`None`: send no token).
    fn of(path: &str) -> Option<Realm> {
        if path.starts_with("/admin/api/") {
            Some(Realm::Admin)
        } else if path.starts_with("/portal/api/") {
            Some(Realm::Portal)
        } else {
            None
        }
    }

    fn refresh_path(self) -> &'static str {
        match self {
            Realm::Admin => "/admin/api/session/refresh",
            Realm::Portal => "/portal/api/session/refresh",
        }
    }
}

thread_local! {
    /// The access tokens live in memory only (never in localStorage or a readable cookie).
    static ADMIN_TOKEN: RefCell<Option<String>> = const { RefCell::new(None) };
    static PORTAL_TOKEN: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn set_access_token(realm: Realm, token: Option<String>) {
    let cell = match realm {
        Realm::Admin => &ADMIN_TOKEN,
        Realm::Portal => &PORTAL_TOKEN,
    };
    cell.with(|t| *t.borrow_mut() = token);
}

fn access_token(realm: Option<Realm>) -> Option<String> {
    match realm? {
        Realm::Admin => ADMIN_TOKEN.with(|t| t.borrow().clone()),
        Realm::Portal => PORTAL_TOKEN.with(|t| t.borrow().clone()),
    }
}

fn transport_error(e: gloo_net::Error) -> ApiError {
    ApiError {
        status: 0,
        code: "network_error".into(),
        message: format!("could not reach the gateway: {e}"),
    }
}

/// One HTTP exchange with `realm`'s token; `Ok(None)` for 204. `body` is JSON text.
///
/// The exchange itself is not generic: only turning values into JSON and back is compiled
/// per type, which keeps the wasm small (docs/PERFORMANCE.md).
async fn send_once(
    realm: Option<Realm>,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Result<Option<gloo_net::http::Response>, ApiError> {
    let mut builder = RequestBuilder::new(path).method(method);
    if let Some(token) = access_token(realm) {
        builder = builder.header("Authorization", &format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => builder
            .header("Content-Type", "application/json")
            .body(body)
            .map_err(transport_error)?,
        None => builder.build().map_err(transport_error)?,
    };
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    if status == 204 {
        return Ok(None);
    }
    if (200..300).contains(&status) {
        return Ok(Some(response));
    }
    Err(match response.json::<ApiErrorBody>().await {
        Ok(body) => ApiError {
            status,
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => ApiError {
            status,
            code: "http_error".into(),
            message: format!("the server answered {status}"),
        },
    })
}

/// Sends a request with `realm`'s token; on a 401 with a token in hand, refreshes that
/// session once and retries.
async fn send_in(
    realm: Option<Realm>,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Result<Option<gloo_net::http::Response>, ApiError> {
    let had_token = access_token(realm).is_some();
    match send_once(realm, method.clone(), path, body).await {
        Err(e) if e.status == 401 && had_token => {
            if let Some(realm) = realm {
                refresh(realm).await?;
            }
            send_once(realm, method, path, body).await
        }
        other => other,
    }
}

/// Sends a request with the token of the realm its path belongs to.
async fn send(
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Result<Option<gloo_net::http::Response>, ApiError> {
    send_in(Realm::of(path), method, path, body).await
}

/// A request body as JSON text.
fn to_json<B: Serialize>(body: &B) -> Result<String, ApiError> {
    serde_json::to_string(body).map_err(|e| transport_error(gloo_net::Error::SerdeError(e)))
}

/// The text of an answer that must have content.
async fn content(response: Option<gloo_net::http::Response>) -> Result<String, ApiError> {
    let response = response.ok_or_else(|| ApiError {
        status: 204,
        code: "no_content".into(),
        message: "the server sent no content".into(),
    })?;
    response.text().await.map_err(transport_error)
}

/// Reads an answer's JSON text as `T`.
fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|e| transport_error(gloo_net::Error::SerdeError(e)))
}

/// Sends a request and answers the text of its (non-empty) answer.
async fn exchange(method: Method, path: &str, body: Option<String>) -> Result<String, ApiError> {
    content(send(method, path, body.as_deref()).await?).await
}

async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    from_json(&exchange(Method::GET, path, None).await?)
}

async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    let body = to_json(body)?;
    from_json(&exchange(Method::POST, path, Some(body)).await?)
}

async fn patch<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    let body = to_json(body)?;
    from_json(&exchange(Method::PATCH, path, Some(body)).await?)
}

async fn put<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> Result<T, ApiError> {
    let body = to_json(body)?;
    from_json(&exchange(Method::PUT, path, Some(body)).await?)
}

/// For endpoints that answer 204.
async fn post_empty<B: Serialize>(path: &str, body: &B) -> Result<(), ApiError> {
    let body = to_json(body)?;
    send(Method::POST, path, Some(&body)).await.map(|_| ())
}

async fn delete(path: &str) -> Result<(), ApiError> {
    send(Method::DELETE, path, None).await.map(|_| ())
}

/// Percent-encodes a query value.
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn list_users(q: &str) -> Result<Page<User>, ApiError> {
    get(&format!(
        "/admin/api/users?per_page=200&q={}",
        query_value(q)
    ))
    .await
}

pub async fn create_user(user: &CreateUser) -> Result<User, ApiError> {
    post("/admin/api/users", user).await
}

pub async fn get_user(id: i64) -> Result<User, ApiError> {
    get(&format!("/admin/api/users/{id}")).await
}

pub async fn update_user(id: i64, change: &UpdateUser) -> Result<User, ApiError> {
    patch(&format!("/admin/api/users/{id}"), change).await
}

pub async fn reset_password(id: i64, password: &str) -> Result<(), ApiError> {
    post_empty(
        &format!("/admin/api/users/{id}/password"),
        &ResetPassword {
            password: password.into(),
        },
    )
    .await
}

pub async fn delete_user(id: i64) -> Result<(), ApiError> {
    delete(&format!("/admin/api/users/{id}")).await
}

pub async fn permissions(user: i64) -> Result<Vec<ServerPermission>, ApiError> {
    get(&format!("/admin/api/users/{user}/mcp-permissions")).await
}

pub async fn set_permission(
    user: i64,
    server_id: i64,
    can_access: bool,
) -> Result<Vec<ServerPermission>, ApiError> {
    patch(
        &format!("/admin/api/users/{user}/mcp-permissions"),
        &SetServerPermission {
            server_id,
            can_access,
        },
    )
    .await
}

pub async fn consent_request(request: &str) -> Result<ConsentRequest, ApiError> {
    get(&format!(
        "/oauth/api/request?request={}",
        query_value(request)
    ))
    .await
}

pub async fn consent_decision(decision: &ConsentDecision) -> Result<ConsentResult, ApiError> {
    post("/oauth/api/decision", decision).await
}

pub async fn oauth_clients() -> Result<Vec<OAuthClient>, ApiError> {
    get("/admin/api/oauth/clients").await
}

pub async fn create_oauth_client(req: &CreateOAuthClient) -> Result<CreatedOAuthClient, ApiError> {
    post("/admin/api/oauth/clients", req).await
}

pub async fn revoke_oauth_client(id: i64) -> Result<(), ApiError> {
    delete(&format!("/admin/api/oauth/clients/{id}")).await
}

pub async fn user_grants(user: i64) -> Result<Vec<OAuthGrant>, ApiError> {
    get(&format!("/admin/api/users/{user}/oauth-grants")).await
}

pub async fn revoke_grant(user: i64, client: i64) -> Result<(), ApiError> {
    delete(&format!("/admin/api/users/{user}/oauth-grants/{client}")).await
}

pub async fn stats(window: &str) -> Result<Stats, ApiError> {
    get(&format!("/admin/api/stats?window={}", query_value(window))).await
}

pub async fn live_ticket() -> Result<LiveTicket, ApiError> {
    post("/admin/api/live/ticket", &serde_json::json!({})).await
}

pub async fn gateway_settings() -> Result<GatewaySettings, ApiError> {
    get("/admin/api/settings").await
}

pub async fn set_gateway_settings(update: &SettingsUpdate) -> Result<GatewaySettings, ApiError> {
    put("/admin/api/settings", update).await
}

pub async fn rate_limits() -> Result<RateLimits, ApiError> {
    get("/admin/api/rate-limits").await
}

pub async fn set_rate_limits(limits: &RateLimits) -> Result<RateLimits, ApiError> {
    put("/admin/api/rate-limits", limits).await
}

pub async fn console_tools(target: &ConsoleTarget) -> Result<Vec<ConsoleTool>, ApiError> {
    post("/admin/api/console/tools", target).await
}

pub async fn console_call(call: &ConsoleCall) -> Result<ConsoleResult, ApiError> {
    post("/admin/api/console/call", call).await
}

pub async fn tool_rules(user: i64) -> Result<ToolRules, ApiError> {
    get(&format!("/admin/api/users/{user}/tool-rules")).await
}

pub async fn set_tool_rules(user: i64, rules: &ToolRules) -> Result<ToolRules, ApiError> {
    put(&format!("/admin/api/users/{user}/tool-rules"), rules).await
}

pub async fn api_keys(user: i64) -> Result<Vec<ApiKey>, ApiError> {
    get(&format!("/admin/api/users/{user}/api-keys")).await
}

pub async fn create_api_key(user: i64, key: &CreateApiKey) -> Result<CreatedApiKey, ApiError> {
    post(&format!("/admin/api/users/{user}/api-keys"), key).await
}

pub async fn revoke_api_key(user: i64, key: i64) -> Result<(), ApiError> {
    delete(&format!("/admin/api/users/{user}/api-keys/{key}")).await
}

pub async fn list_servers() -> Result<Vec<McpServer>, ApiError> {
    get("/admin/api/mcp-servers").await
}

pub async fn create_server(server: &CreateServer) -> Result<McpServer, ApiError> {
    post("/admin/api/mcp-servers", server).await
}

pub async fn update_server(id: i64, change: &UpdateServer) -> Result<McpServer, ApiError> {
    patch(&format!("/admin/api/mcp-servers/{id}"), change).await
}

pub async fn delete_server(id: i64) -> Result<(), ApiError> {
    delete(&format!("/admin/api/mcp-servers/{id}")).await
}

pub async fn test_server(id: i64) -> Result<ConnectionTest, ApiError> {
    post(
        &format!("/admin/api/mcp-servers/{id}/test"),
        &serde_json::json!({}),
    )
    .await
}

/// The audit log, newest first; `kind`: `""`, `sign_in`, `sign_out`, `authorization`, `change`.
pub async fn audit_log(kind: &str) -> Result<Page<shared::users::AuditEntry>, ApiError> {
    get(&format!(
        "/admin/api/audit-log?per_page=100&{}",
        query(&[("kind", kind.to_string())])
    ))
    .await
}

/// `filter` is a query string such as `type=auth_failed&severity=high` (already encoded).
pub async fn security_events(filter: &str) -> Result<Page<SecurityEvent>, ApiError> {
    get(&format!("/admin/api/security-events?per_page=100&{filter}")).await
}

/// The filtered events as JSON Lines text.
pub async fn export_security_events(filter: &str) -> Result<String, ApiError> {
    let path = format!("/admin/api/security-events/export?{filter}");
    match send(Method::GET, &path, None).await? {
        Some(res) => res.text().await.map_err(transport_error),
        None => Ok(String::new()),
    }
}

/// Builds a query string from (key, value) pairs, skipping empty values.
pub fn query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", query_value(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn activity() -> Result<Page<ActivityRecord>, ApiError> {
    get("/admin/api/mcp-activity?per_page=100").await
}

pub async fn health() -> Result<Health, ApiError> {
    get(shared::routes::HEALTH).await
}

pub async fn ready() -> Result<Ready, ApiError> {
    get(shared::routes::READY).await
}

pub async fn setup_status() -> Result<SetupStatus, ApiError> {
    get("/setup/status").await
}

pub async fn setup_create_admin(account: &SetupAccount) -> Result<User, ApiError> {
    post("/setup/create-admin", account).await
}

/// Signs an admin in; the refresh token goes into the HttpOnly cookie, the access token into
/// memory.
pub async fn admin_login(username: &str, password: &str) -> Result<Me, ApiError> {
    sign_in(Realm::Admin, username, password).await
}

/// Signs a user in to the portal (any user), like `admin_login`.
pub async fn portal_login(username: &str, password: &str) -> Result<Me, ApiError> {
    sign_in(Realm::Portal, username, password).await
}

async fn sign_in(realm: Realm, username: &str, password: &str) -> Result<Me, ApiError> {
    let path = match realm {
        Realm::Admin => "/admin/api/login",
        Realm::Portal => "/portal/api/login",
    };
    let login = to_json(&LoginRequest {
        username: username.into(),
        password: password.into(),
        session: SessionMode::Cookie,
    })?;
    let tokens: TokenResponse =
        from_json(&content(send_once(None, Method::POST, path, Some(&login)).await?).await?)?;
    set_access_token(realm, Some(tokens.access_token));
    me_in(realm).await
}

/// A refresh shared by every request that waits for it.
type Refresh = futures_util::future::Shared<
    futures_util::future::LocalBoxFuture<'static, Result<(), ApiError>>,
>;

thread_local! {
    /// The refresh in flight per realm, with its generation: requests that find the token
    /// expired at once share one refresh, since a refresh token is single use and a second
    /// use of it would end the session as stolen.
    static REFRESHING: RefCell<[(u64, Option<Refresh>); 2]> = const { RefCell::new([(0, None), (0, None)]) };
}

/// Trades the refresh cookie for a new access token (and a new cookie), once for every
/// request that asks meanwhile.
async fn refresh(realm: Realm) -> Result<(), ApiError> {
    use futures_util::FutureExt;
    let slot = realm as usize;
    let (generation, shared) = REFRESHING.with(|r| {
        let mut r = r.borrow_mut();
        let (generation, in_flight) = &mut r[slot];
        if let Some(shared) = in_flight {
            return (*generation, shared.clone());
        }
        *generation += 1;
        let shared = refresh_once(realm).boxed_local().shared();
        *in_flight = Some(shared.clone());
        (*generation, shared)
    });
    let result = shared.await;
    REFRESHING.with(|r| {
        let mut r = r.borrow_mut();
        if r[slot].0 == generation {
            r[slot].1 = None;
        }
    });
    result
}

async fn refresh_once(realm: Realm) -> Result<(), ApiError> {
    let answer = send_once(None, Method::POST, realm.refresh_path(), Some("{}")).await?;
    let result: Result<TokenResponse, ApiError> = match content(answer).await {
        Ok(text) => from_json(&text),
        Err(e) => Err(e),
    };
    match result {
        Ok(tokens) => {
            set_access_token(realm, Some(tokens.access_token));
            Ok(())
        }
        Err(e) => {
            set_access_token(realm, None);
            Err(e)
        }
    }
}

/// Restores a realm's session after a reload, if its refresh cookie is still good.
pub async fn resume(realm: Realm) -> Option<Me> {
    refresh(realm).await.ok()?;
    me_in(realm).await.ok()
}

async fn me_in(realm: Realm) -> Result<Me, ApiError> {
    match realm {
        Realm::Admin => get("/admin/api/me").await,
        Realm::Portal => get("/portal/api/me").await,
    }
}

/// Signs out of a realm (its session and this browser's consent-page sign-in end).
pub async fn logout(realm: Realm) -> Result<(), ApiError> {
    let path = match realm {
        Realm::Admin => "/admin/api/session/logout",
        Realm::Portal => "/portal/api/session/logout",
    };
    let result = send_once(Some(realm), Method::POST, path, None).await;
    set_access_token(realm, None);
    result.map(|_| ())
}

/// Token health of every OAuth credential toward backends.
pub async fn audits() -> Result<Vec<AuditScan>, ApiError> {
    get("/admin/api/audits").await
}

pub async fn audit(id: i64) -> Result<AuditScan, ApiError> {
    get(&format!("/admin/api/audits/{id}")).await
}

pub async fn start_audit(req: &AuditRequest) -> Result<AuditScan, ApiError> {
    post("/admin/api/audits", req).await
}

pub async fn cancel_audit(id: i64) -> Result<AuditScan, ApiError> {
    post(&format!("/admin/api/audits/{id}/cancel"), &()).await
}

/// Pinned tool definitions: one server's (`server`), or every pin of a `status`.
pub async fn tool_pins(server: Option<i64>, status: &str) -> Result<Vec<ToolPin>, ApiError> {
    let mut query = Vec::new();
    if let Some(s) = server {
        query.push(format!("server_id={s}"));
    }
    if !status.is_empty() {
        query.push(format!("status={status}"));
    }
    get(&format!("/admin/api/tool-pins?{}", query.join("&"))).await
}

pub async fn decide_tool_pin(server: i64, decision: &PinDecision) -> Result<ToolPin, ApiError> {
    post(
        &format!("/admin/api/mcp-servers/{server}/tool-pins/decision"),
        decision,
    )
    .await
}

pub async fn backend_tokens() -> Result<Vec<TokenHealth>, ApiError> {
    get("/admin/api/tokens").await
}

pub async fn refresh_backend_token(server: i64, user: i64) -> Result<TokenHealth, ApiError> {
    post(&format!("/admin/api/tokens/{server}/{user}/refresh"), &()).await
}

pub async fn disconnect_backend_token(server: i64, user: i64) -> Result<(), ApiError> {
    delete(&format!("/admin/api/tokens/{server}/{user}")).await
}

/// Starts connecting an `oauth_admin` server's account (the flow cookie lands in this browser).
pub async fn connect_backend_account(server: i64) -> Result<ConnectStart, ApiError> {
    post(&format!("/admin/api/servers/{server}/connect"), &()).await
}

/// The connections page (signed in with the consent page's cookie).
pub async fn my_connections() -> Result<MyConnections, ApiError> {
    get("/oauth/backend/connections").await
}

pub async fn connections_sign_in(req: &LoginRequest) -> Result<ConnectionsUser, ApiError> {
    post("/oauth/backend/signin", req).await
}

pub async fn connections_sign_out() -> Result<(), ApiError> {
    post_empty("/oauth/backend/signout", &()).await
}

pub async fn connect_my_account(server: &str) -> Result<ConnectStart, ApiError> {
    post(
        &format!("/oauth/backend/connections/{}", query_value(server)),
        &(),
    )
    .await
}

pub async fn disconnect_my_account(server: &str) -> Result<(), ApiError> {
    delete(&format!(
        "/oauth/backend/connections/{}",
        query_value(server)
    ))
    .await
}

// The user portal (`/portal/api`, the portal's token).

pub async fn my_servers() -> Result<MyServers, ApiError> {
    get("/portal/api/servers").await
}

pub async fn my_api_keys() -> Result<Vec<ApiKey>, ApiError> {
    get("/portal/api/api-keys").await
}

pub async fn create_my_api_key(key: &CreateApiKey) -> Result<CreatedApiKey, ApiError> {
    post("/portal/api/api-keys", key).await
}

pub async fn revoke_my_api_key(id: i64) -> Result<(), ApiError> {
    delete(&format!("/portal/api/api-keys/{id}")).await
}

pub async fn my_applications() -> Result<Vec<OAuthGrant>, ApiError> {
    get("/portal/api/applications").await
}

pub async fn revoke_my_application(client: i64) -> Result<(), ApiError> {
    delete(&format!("/portal/api/applications/{client}")).await
}

pub async fn change_my_password(change: &ChangePassword) -> Result<(), ApiError> {
    post_empty("/portal/api/password", change).await
}

pub async fn my_activity() -> Result<Page<ActivityRecord>, ApiError> {
    get("/portal/api/activity?per_page=100").await
}

/// My backend account connections, with the portal's token.
pub async fn portal_connections() -> Result<MyConnections, ApiError> {
    let answer = send_in(
        Some(Realm::Portal),
        Method::GET,
        "/oauth/backend/connections",
        None,
    )
    .await?;
    from_json(&content(answer).await?)
}

pub async fn portal_connect(server: &str) -> Result<ConnectStart, ApiError> {
    let path = format!("/oauth/backend/connections/{}", query_value(server));
    let answer = send_in(Some(Realm::Portal), Method::POST, &path, Some("null")).await?;
    from_json(&content(answer).await?)
}

pub async fn portal_disconnect(server: &str) -> Result<(), ApiError> {
    let path = format!("/oauth/backend/connections/{}", query_value(server));
    send_in(Some(Realm::Portal), Method::DELETE, &path, None)
        .await
        .map(|_| ())
}

// Teams (`/admin/api/teams`).

pub async fn teams() -> Result<Vec<Team>, ApiError> {
    get("/admin/api/teams").await
}

pub async fn create_team(name: &str) -> Result<Team, ApiError> {
    post("/admin/api/teams", &TeamName { name: name.into() }).await
}

pub async fn delete_team(id: i64) -> Result<(), ApiError> {
    delete(&format!("/admin/api/teams/{id}")).await
}

pub async fn team_members(id: i64) -> Result<Vec<TeamMember>, ApiError> {
    get(&format!("/admin/api/teams/{id}/members")).await
}

pub async fn set_team_member(
    team: i64,
    user: i64,
    role: &str,
) -> Result<Vec<TeamMember>, ApiError> {
    put(
        &format!("/admin/api/teams/{team}/members/{user}"),
        &SetTeamMember { role: role.into() },
    )
    .await
}

pub async fn remove_team_member(team: i64, user: i64) -> Result<(), ApiError> {
    delete(&format!("/admin/api/teams/{team}/members/{user}")).await
}

pub async fn server_rate_limits(id: i64) -> Result<shared::servers::ServerRateLimits, ApiError> {
    get(&format!("/admin/api/mcp-servers/{id}/rate-limits")).await
}

pub async fn set_server_rate_limits(
    id: i64,
    limits: &shared::servers::ServerRateLimits,
) -> Result<shared::servers::ServerRateLimits, ApiError> {
    put(&format!("/admin/api/mcp-servers/{id}/rate-limits"), limits).await
}
