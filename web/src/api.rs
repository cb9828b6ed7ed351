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
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::LocalBoxFuture;

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

/// A request on its way. Boxed, so the exchange's state machine is compiled once and not
/// into every endpoint's, page's and resource's future (docs/PERFORMANCE.md).
pub type Pending<T> = LocalBoxFuture<'static, Result<T, ApiError>>;

/// Sends a request with `realm`'s token and answers the text of its (non-empty) answer.
/// `body` is JSON text, or the error turning the value into JSON met.
fn exchange_in(
    realm: Option<Realm>,
    method: Method,
    path: String,
    body: Option<Result<String, ApiError>>,
) -> Pending<String> {
    Box::pin(async move {
        let body = body.transpose()?;
        content(send_in(realm, method, &path, body.as_deref()).await?).await
    })
}

/// Like `exchange_in`, with the token of the realm the path belongs to.
fn exchange(
    method: Method,
    path: String,
    body: Option<Result<String, ApiError>>,
) -> Pending<String> {
    exchange_in(Realm::of(&path), method, path, body)
}

/// A request whose answer (204 or any content) is not read.
fn done_in(
    realm: Option<Realm>,
    method: Method,
    path: String,
    body: Option<Result<String, ApiError>>,
) -> Pending<()> {
    Box::pin(async move {
        let body = body.transpose()?;
        send_in(realm, method, &path, body.as_deref())
            .await
            .map(|_| ())
    })
}

/// Like `done_in`, with the token of the realm the path belongs to.
fn done(method: Method, path: String, body: Option<Result<String, ApiError>>) -> Pending<()> {
    done_in(Realm::of(&path), method, path, body)
}

/// An answer that is read as `T`: all that is compiled per type is the JSON reading.
pub struct Json<T> {
    text: Pending<String>,
    value: PhantomData<fn() -> T>,
}

impl<T> Json<T> {
    fn new(text: Pending<String>) -> Self {
        Self {
            text,
            value: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Future for Json<T> {
    type Output = Result<T, ApiError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.text
            .as_mut()
            .poll(cx)
            .map(|text| text.and_then(|text| from_json(&text)))
    }
}

fn get<T: DeserializeOwned>(path: String) -> Json<T> {
    Json::new(exchange(Method::GET, path, None))
}

fn post<B: Serialize, T: DeserializeOwned>(path: String, body: &B) -> Json<T> {
    Json::new(exchange(Method::POST, path, Some(to_json(body))))
}

fn patch<B: Serialize, T: DeserializeOwned>(path: String, body: &B) -> Json<T> {
    Json::new(exchange(Method::PATCH, path, Some(to_json(body))))
}

fn put<B: Serialize, T: DeserializeOwned>(path: String, body: &B) -> Json<T> {
    Json::new(exchange(Method::PUT, path, Some(to_json(body))))
}

/// For endpoints that answer 204.
fn post_empty<B: Serialize>(path: String, body: &B) -> Pending<()> {
    done(Method::POST, path, Some(to_json(body)))
}

fn delete(path: String) -> Pending<()> {
    done(Method::DELETE, path, None)
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

pub fn list_users(q: &str) -> Json<Page<User>> {
    get(format!(
        "/admin/api/users?per_page=200&q={}",
        query_value(q)
    ))
}

pub fn create_user(user: &CreateUser) -> Json<User> {
    post("/admin/api/users".into(), user)
}

pub fn get_user(id: i64) -> Json<User> {
    get(format!("/admin/api/users/{id}"))
}

pub fn update_user(id: i64, change: &UpdateUser) -> Json<User> {
    patch(format!("/admin/api/users/{id}"), change)
}

pub fn reset_password(id: i64, password: &str) -> Pending<()> {
    post_empty(
        format!("/admin/api/users/{id}/password"),
        &ResetPassword {
            password: password.into(),
        },
    )
}

pub fn delete_user(id: i64) -> Pending<()> {
    delete(format!("/admin/api/users/{id}"))
}

pub fn permissions(user: i64) -> Json<Vec<ServerPermission>> {
    get(format!("/admin/api/users/{user}/mcp-permissions"))
}

pub fn set_permission(user: i64, server_id: i64, can_access: bool) -> Json<Vec<ServerPermission>> {
    patch(
        format!("/admin/api/users/{user}/mcp-permissions"),
        &SetServerPermission {
            server_id,
            can_access,
        },
    )
}

pub fn consent_request(request: &str) -> Json<ConsentRequest> {
    get(format!(
        "/oauth/api/request?request={}",
        query_value(request)
    ))
}

pub fn consent_decision(decision: &ConsentDecision) -> Json<ConsentResult> {
    post("/oauth/api/decision".into(), decision)
}

pub fn oauth_clients() -> Json<Vec<OAuthClient>> {
    get("/admin/api/oauth/clients".into())
}

pub fn create_oauth_client(req: &CreateOAuthClient) -> Json<CreatedOAuthClient> {
    post("/admin/api/oauth/clients".into(), req)
}

pub fn revoke_oauth_client(id: i64) -> Pending<()> {
    delete(format!("/admin/api/oauth/clients/{id}"))
}

pub fn user_grants(user: i64) -> Json<Vec<OAuthGrant>> {
    get(format!("/admin/api/users/{user}/oauth-grants"))
}

pub fn revoke_grant(user: i64, client: i64) -> Pending<()> {
    delete(format!("/admin/api/users/{user}/oauth-grants/{client}"))
}

pub fn stats(window: &str) -> Json<Stats> {
    get(format!("/admin/api/stats?window={}", query_value(window)))
}

pub fn live_ticket() -> Json<LiveTicket> {
    post("/admin/api/live/ticket".into(), &serde_json::json!({}))
}

pub fn gateway_settings() -> Json<GatewaySettings> {
    get("/admin/api/settings".into())
}

pub fn set_gateway_settings(update: &SettingsUpdate) -> Json<GatewaySettings> {
    put("/admin/api/settings".into(), update)
}

pub fn rate_limits() -> Json<RateLimits> {
    get("/admin/api/rate-limits".into())
}

pub fn set_rate_limits(limits: &RateLimits) -> Json<RateLimits> {
    put("/admin/api/rate-limits".into(), limits)
}

pub fn console_tools(target: &ConsoleTarget) -> Json<Vec<ConsoleTool>> {
    post("/admin/api/console/tools".into(), target)
}

pub fn console_call(call: &ConsoleCall) -> Json<ConsoleResult> {
    post("/admin/api/console/call".into(), call)
}

pub fn tool_rules(user: i64) -> Json<ToolRules> {
    get(format!("/admin/api/users/{user}/tool-rules"))
}

pub fn set_tool_rules(user: i64, rules: &ToolRules) -> Json<ToolRules> {
    put(format!("/admin/api/users/{user}/tool-rules"), rules)
}

pub fn api_keys(user: i64) -> Json<Vec<ApiKey>> {
    get(format!("/admin/api/users/{user}/api-keys"))
}

pub fn create_api_key(user: i64, key: &CreateApiKey) -> Json<CreatedApiKey> {
    post(format!("/admin/api/users/{user}/api-keys"), key)
}

pub fn revoke_api_key(user: i64, key: i64) -> Pending<()> {
    delete(format!("/admin/api/users/{user}/api-keys/{key}"))
}

pub fn list_servers() -> Json<Vec<McpServer>> {
    get("/admin/api/mcp-servers".into())
}

pub fn create_server(server: &CreateServer) -> Json<McpServer> {
    post("/admin/api/mcp-servers".into(), server)
}

pub fn update_server(id: i64, change: &UpdateServer) -> Json<McpServer> {
    patch(format!("/admin/api/mcp-servers/{id}"), change)
}

pub fn delete_server(id: i64) -> Pending<()> {
    delete(format!("/admin/api/mcp-servers/{id}"))
}

pub fn test_server(id: i64) -> Json<ConnectionTest> {
    post(
        format!("/admin/api/mcp-servers/{id}/test"),
        &serde_json::json!({}),
    )
}

/// The audit log, newest first; `kind`: `""`, `sign_in`, `sign_out`, `authorization`, `change`.
pub fn audit_log(kind: &str) -> Json<Page<shared::users::AuditEntry>> {
    get(format!(
        "/admin/api/audit-log?per_page=100&{}",
        query(&[("kind", kind.to_string())])
    ))
}

/// `filter` is a query string such as `type=auth_failed&severity=high` (already encoded).
pub fn security_events(filter: &str) -> Json<Page<SecurityEvent>> {
    get(format!("/admin/api/security-events?per_page=100&{filter}"))
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

pub fn activity() -> Json<Page<ActivityRecord>> {
    get("/admin/api/mcp-activity?per_page=100".into())
}

pub fn health() -> Json<Health> {
    get(shared::routes::HEALTH.into())
}

pub fn ready() -> Json<Ready> {
    get(shared::routes::READY.into())
}

pub fn setup_status() -> Json<SetupStatus> {
    get("/setup/status".into())
}

pub fn setup_create_admin(account: &SetupAccount) -> Json<User> {
    post("/setup/create-admin".into(), account)
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
type Refresh = futures_util::future::Shared<Pending<()>>;

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
        Realm::Admin => get("/admin/api/me".into()).await,
        Realm::Portal => get("/portal/api/me".into()).await,
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
pub fn audits() -> Json<Vec<AuditScan>> {
    get("/admin/api/audits".into())
}

pub fn audit(id: i64) -> Json<AuditScan> {
    get(format!("/admin/api/audits/{id}"))
}

pub fn start_audit(req: &AuditRequest) -> Json<AuditScan> {
    post("/admin/api/audits".into(), req)
}

pub fn cancel_audit(id: i64) -> Json<AuditScan> {
    post(format!("/admin/api/audits/{id}/cancel"), &())
}

/// Pinned tool definitions: one server's (`server`), or every pin of a `status`.
pub fn tool_pins(server: Option<i64>, status: &str) -> Json<Vec<ToolPin>> {
    let mut query = Vec::new();
    if let Some(s) = server {
        query.push(format!("server_id={s}"));
    }
    if !status.is_empty() {
        query.push(format!("status={status}"));
    }
    get(format!("/admin/api/tool-pins?{}", query.join("&")))
}

pub fn decide_tool_pin(server: i64, decision: &PinDecision) -> Json<ToolPin> {
    post(
        format!("/admin/api/mcp-servers/{server}/tool-pins/decision"),
        decision,
    )
}

pub fn backend_tokens() -> Json<Vec<TokenHealth>> {
    get("/admin/api/tokens".into())
}

pub fn refresh_backend_token(server: i64, user: i64) -> Json<TokenHealth> {
    post(format!("/admin/api/tokens/{server}/{user}/refresh"), &())
}

pub fn disconnect_backend_token(server: i64, user: i64) -> Pending<()> {
    delete(format!("/admin/api/tokens/{server}/{user}"))
}

/// Starts connecting an `oauth_admin` server's account (the flow cookie lands in this browser).
pub fn connect_backend_account(server: i64) -> Json<ConnectStart> {
    post(format!("/admin/api/servers/{server}/connect"), &())
}

/// The connections page (signed in with the consent page's cookie).
pub fn my_connections() -> Json<MyConnections> {
    get("/oauth/backend/connections".into())
}

pub fn connections_sign_in(req: &LoginRequest) -> Json<ConnectionsUser> {
    post("/oauth/backend/signin".into(), req)
}

pub fn connections_sign_out() -> Pending<()> {
    post_empty("/oauth/backend/signout".into(), &())
}

pub fn connect_my_account(server: &str) -> Json<ConnectStart> {
    post(
        format!("/oauth/backend/connections/{}", query_value(server)),
        &(),
    )
}

pub fn disconnect_my_account(server: &str) -> Pending<()> {
    delete(format!(
        "/oauth/backend/connections/{}",
        query_value(server)
    ))
}

// The user portal (`/portal/api`, the portal's token).

pub fn my_servers() -> Json<MyServers> {
    get("/portal/api/servers".into())
}

pub fn my_api_keys() -> Json<Vec<ApiKey>> {
    get("/portal/api/api-keys".into())
}

pub fn create_my_api_key(key: &CreateApiKey) -> Json<CreatedApiKey> {
    post("/portal/api/api-keys".into(), key)
}

pub fn revoke_my_api_key(id: i64) -> Pending<()> {
    delete(format!("/portal/api/api-keys/{id}"))
}

pub fn my_applications() -> Json<Vec<OAuthGrant>> {
    get("/portal/api/applications".into())
}

pub fn revoke_my_application(client: i64) -> Pending<()> {
    delete(format!("/portal/api/applications/{client}"))
}

pub fn change_my_password(change: &ChangePassword) -> Pending<()> {
    post_empty("/portal/api/password".into(), change)
}

pub fn my_activity() -> Json<Page<ActivityRecord>> {
    get("/portal/api/activity?per_page=100".into())
}

/// My backend account connections, with the portal's token.
pub fn portal_connections() -> Json<MyConnections> {
    Json::new(exchange_in(
        Some(Realm::Portal),
        Method::GET,
        "/oauth/backend/connections".into(),
        None,
    ))
}

pub fn portal_connect(server: &str) -> Json<ConnectStart> {
    let path = format!("/oauth/backend/connections/{}", query_value(server));
    Json::new(exchange_in(
        Some(Realm::Portal),
        Method::POST,
        path,
        Some(Ok("null".into())),
    ))
}

pub fn portal_disconnect(server: &str) -> Pending<()> {
    let path = format!("/oauth/backend/connections/{}", query_value(server));
    done_in(Some(Realm::Portal), Method::DELETE, path, None)
}

// Teams (`/admin/api/teams`).

pub fn teams() -> Json<Vec<Team>> {
    get("/admin/api/teams".into())
}

pub fn create_team(name: &str) -> Json<Team> {
    post("/admin/api/teams".into(), &TeamName { name: name.into() })
}

pub fn delete_team(id: i64) -> Pending<()> {
    delete(format!("/admin/api/teams/{id}"))
}

pub fn team_members(id: i64) -> Json<Vec<TeamMember>> {
    get(format!("/admin/api/teams/{id}/members"))
}

pub fn set_team_member(team: i64, user: i64, role: &str) -> Json<Vec<TeamMember>> {
    put(
        format!("/admin/api/teams/{team}/members/{user}"),
        &SetTeamMember { role: role.into() },
    )
}

pub fn remove_team_member(team: i64, user: i64) -> Pending<()> {
    delete(format!("/admin/api/teams/{team}/members/{user}"))
}

pub fn server_rate_limits(id: i64) -> Json<shared::servers::ServerRateLimits> {
    get(format!("/admin/api/mcp-servers/{id}/rate-limits"))
}

pub fn set_server_rate_limits(
    id: i64,
    limits: &shared::servers::ServerRateLimits,
) -> Json<shared::servers::ServerRateLimits> {
    put(format!("/admin/api/mcp-servers/{id}/rate-limits"), limits)
}
