//! OAuth credentials toward backends, against a real authorization server (`oidc-provider`)
//! issuing 3-second tokens and an MCP server from the Python SDK that introspects each one:
//! client credentials, an admin-connected account and per-user connected accounts keep
//! working across many expiries; a revoked refresh token degrades and "reconnect" repairs;
//! two users' tokens never mix; concurrent calls at expiry on two gateways refresh once;
//! flows cannot be completed by another browser, replayed, or started cross-origin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestEnv, USER_PASSWORD, db_test};
use crate::mcp::{add_server, rpc_at, set_access, user_token};
use crate::peers::OAuthBackend;

const TTL: u32 = 3;

/// A browser enough for OAuth redirects: follows them by hand, keeps cookies (one jar for
/// 127.0.0.1, as browsers do across ports) and submits the authorization server's forms.
#[derive(Clone)]
struct Browser {
    http: reqwest::Client,
    jar: Arc<Mutex<HashMap<String, String>>>,
}

struct Page {
    url: String,
    body: String,
    /// Every URL the browser went through, in order.
    visited: Vec<String>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: Arc::default(),
        }
    }

    fn cookie_header(&self) -> String {
        let jar = self.jar.lock().unwrap();
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&self, res: &reqwest::Response) {
        let mut jar = self.jar.lock().unwrap();
        for value in res.headers().get_all("set-cookie") {
            let raw = value.to_str().unwrap();
            let first = raw.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            if value.is_empty() || raw.to_ascii_lowercase().contains("max-age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_string(), value.to_string());
            }
        }
    }

    /// One request (no redirects followed).
    async fn send(
        &self,
        method: Method,
        url: &str,
        bearer: Option<&str>,
        origin: Option<&str>,
        body: Option<Body>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, url)
            .header("cookie", self.cookie_header());
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Form(pairs)) => req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs)
                        .finish(),
                ),
            None => req,
        };
        let res = req.send().await.unwrap();
        self.remember(&res);
        res
    }

    /// Sends and follows redirects (as GETs) to the final page.
    async fn go(&self, method: Method, url: &str, body: Option<Body>) -> Page {
        let mut visited = vec![url.to_string()];
        let mut res = self.send(method, url, None, None, body).await;
        let mut current = url.to_string();
        for _ in 0..20 {
            if !res.status().is_redirection() {
                break;
            }
            let location = res.headers()["location"].to_str().unwrap().to_string();
            current = url::Url::parse(&current)
                .unwrap()
                .join(&location)
                .unwrap()
                .to_string();
            visited.push(current.clone());
            res = self.send(Method::GET, &current, None, None, None).await;
        }
        Page {
            url: current,
            body: res.text().await.unwrap(),
            visited,
        }
    }

    /// Fills and submits the form on `page` (the authorization server's login or consent).
    async fn submit(&self, page: &Page, fields: Vec<(String, String)>) -> Page {
        let at = page.body.find("action=\"").expect("a form") + "action=\"".len();
        let action = &page.body[at..at + page.body[at..].find('"').unwrap()];
        let action = url::Url::parse(&page.url).unwrap().join(action).unwrap();
        let mut next = self
            .go(Method::POST, action.as_str(), Some(Body::Form(fields)))
            .await;
        let mut visited = page.visited.clone();
        visited.append(&mut next.visited);
        next.visited = visited;
        next
    }

    /// Runs the authorization server's pages as `account`: sign in, approve; returns the page
    /// the gateway sent the browser back to.
    async fn authorize(&self, authorization_url: &str, account: &str) -> Page {
        let mut page = self.go(Method::GET, authorization_url, None).await;
        for _ in 0..3 {
            if page.body.contains("name=\"login\"") {
                let fields = vec![
                    ("prompt".to_string(), "login".to_string()),
                    ("login".to_string(), account.to_string()),
                    ("password".to_string(), "any".to_string()),
                ];
                page = self.submit(&page, fields).await;
            } else if page.body.contains("value=\"consent\"") {
                let fields = vec![("prompt".to_string(), "consent".to_string())];
                page = self.submit(&page, fields).await;
            } else {
                break;
            }
        }
        page
    }
}

enum Body {
    Json(Value),
    Form(Vec<(String, String)>),
}

/// The gateway page a flow came back to (`…?connected=` or `…?error=`).
fn came_back(page: &Page) -> String {
    page.visited
        .iter()
        .find(|u| u.contains("connected=") || u.contains("error="))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the flow did not come back: {:?} {}",
                page.visited, page.body
            )
        })
}

/// A user's MCP session on `/mcp/{server}`.
struct Session {
    server: String,
    token: String,
    id: String,
}

async fn open(app: &TestApp, server: &str, token: &str) -> Result<Session, Value> {
    let (status, headers, message) = rpc_at(
        app,
        &format!("/mcp/{server}"),
        Some(token),
        None,
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "oauth-test", "version": "1"}}}),
    )
    .await;
    if status != StatusCode::OK || message.get("error").is_some() {
        return Err(message);
    }
    let id = headers["mcp-session-id"].to_str().unwrap().to_string();
    let (status, _, _) = rpc_at(
        app,
        &format!("/mcp/{server}"),
        Some(token),
        Some(&id),
        &[("mcp-protocol-version", "2025-11-25")],
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    Ok(Session {
        server: server.to_string(),
        token: token.to_string(),
        id,
    })
}

/// Calls `whoami` and returns the backend token's subject, or the JSON-RPC error. Every call
/// has its own id (concurrent calls share sessions).
async fn whoami(app: &TestApp, s: &Session) -> Result<String, Value> {
    static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(10);
    let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (_, _, message) = rpc_at(
        app,
        &format!("/mcp/{}", s.server),
        Some(&s.token),
        Some(&s.id),
        &[("mcp-protocol-version", "2025-11-25")],
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "whoami", "arguments": {}}}),
    )
    .await;
    let text = message["result"]["content"][0]["text"]
        .as_str()
        .ok_or_else(|| message.clone())?;
    let who: Value = serde_json::from_str(text).map_err(|_| message.clone())?;
    Ok(who["sub"].as_str().unwrap_or_default().to_string())
}

async fn server_json(app: &TestApp, admin: &str, id: i64) -> Value {
    app.get_as(&format!("/admin/api/mcp-servers/{id}"), admin)
        .await
        .json()
        .await
        .unwrap()
}

async fn tokens(app: &TestApp, admin: &str) -> Vec<Value> {
    let res = app.get_as("/admin/api/tokens", admin).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Signs `browser` in on the connections page and connects its account at `server` as
/// `account`; returns where the flow came back to.
async fn connect_mine(
    app: &TestApp,
    browser: &Browser,
    user: &str,
    server: &str,
    account: &str,
) -> String {
    let origin = app.url("");
    let res = browser
        .send(
            Method::POST,
            &app.url("/oauth/backend/signin"),
            None,
            Some(&origin),
            Some(Body::Json(
                json!({"username": user, "password": USER_PASSWORD}),
            )),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = browser
        .send(
            Method::POST,
            &app.url(&format!("/oauth/backend/connections/{server}")),
            None,
            Some(&origin),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let start: Value = res.json().await.unwrap();
    let page = browser
        .authorize(start["authorization_url"].as_str().unwrap(), account)
        .await;
    came_back(&page)
}

/// Connects the admin-connected server's account in the admin's browser.
async fn connect_admin(
    app: &TestApp,
    browser: &Browser,
    admin: &str,
    id: i64,
    account: &str,
) -> String {
    let res = browser
        .send(
            Method::POST,
            &app.url(&format!("/admin/api/servers/{id}/connect")),
            Some(admin),
            None,
            None,
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    let start: Value = res.json().await.unwrap();
    let url = start["authorization_url"].as_str().unwrap();
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("resource="),
        "{url}"
    );
    let page = browser.authorize(url, account).await;
    came_back(&page)
}

db_test! {
async fn backend_credentials_refresh_themselves_and_never_mix(env: TestEnv) {
    let peers = OAuthBackend::start(TTL).await;
    let env = env.with_admin().with_public_port();
    let app = env.spawn().await;
    let admin = app.admin_token().await;
    let alice = app.create_user(&admin, "alice", "user").await;
    let bob = app.create_user(&admin, "bob", "user").await;
    let cc = add_server(&app, &admin, json!({"name": "cc", "url": peers.url(), "credential": {
        "type": "oauth_client_credentials", "token_url": format!("{}/token", peers.issuer()),
        "client_id": "cc-basic", "client_secret": "cc-basic-secret", "scope": "mcp"}})).await;
    let cc_post = add_server(&app, &admin, json!({"name": "cc-post", "url": peers.url(), "credential": {
        "type": "oauth_client_credentials", "token_url": format!("{}/token", peers.issuer()),
        "client_id": "cc-post", "client_secret": "cc-post-secret", "scope": "mcp",
        "auth_method": "client_secret_post"}})).await;
    let shared = add_server(&app, &admin, json!({"name": "shared", "url": peers.url(),
        "credential": {"type": "oauth_admin"}})).await;
    let mine = add_server(&app, &admin, json!({"name": "mine", "url": peers.url(),
        "credential": {"type": "oauth_user"}})).await;
    for user in [alice, bob] {
        for server in [cc, cc_post, shared, mine] {
            set_access(&app, &admin, user, server, true).await;
        }
    }
    // The API never shows a secret: only the kind and a hint.
    let listed = server_json(&app, &admin, cc).await;
    assert_eq!(listed["credential"]["type"], "oauth_client_credentials");
    assert!(!listed.to_string().contains("cc-basic-secret"), "{listed}");
    let (alice_token, bob_token) = (user_token(&app, "alice").await, user_token(&app, "bob").await);

    // Client credentials, with either client authentication.
    let s_cc = open(&app, "cc", &alice_token).await.expect("cc session");
    assert_eq!(whoami(&app, &s_cc).await.unwrap(), "cc-basic");
    let s_cc_post = open(&app, "cc-post", &alice_token).await.expect("cc-post session");
    assert_eq!(whoami(&app, &s_cc_post).await.unwrap(), "cc-post");

    // Admin-connected: nothing works until an admin connects, then every caller acts as that
    // account.
    let err = open(&app, "shared", &alice_token).await.err().expect("not connected yet");
    assert!(err["error"]["message"].as_str().unwrap().contains("an admin must connect it"), "{err}");
    let admin_browser = Browser::new();
    let back = connect_admin(&app, &admin_browser, &admin, shared, "team-account").await;
    assert!(back.ends_with("/tokens?connected=shared"), "{back}");
    let s_shared = open(&app, "shared", &alice_token).await.expect("shared session");
    assert_eq!(whoami(&app, &s_shared).await.unwrap(), "team-account");

    // Per-user: a user who has not connected is told where to.
    let err = open(&app, "mine", &alice_token).await.err().expect("alice not connected");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains(&app.url("/connect/mine")), "{message}");
    let (alice_browser, bob_browser) = (Browser::new(), Browser::new());
    let back = connect_mine(&app, &alice_browser, "alice", "mine", "alice-at-backend").await;
    assert!(back.ends_with("/connect?connected=mine"), "{back}");
    connect_mine(&app, &bob_browser, "bob", "mine", "bob-at-backend").await;
    let s_alice = open(&app, "mine", &alice_token).await.expect("alice session");
    let s_bob = open(&app, "mine", &bob_token).await.expect("bob session");
    let s_shared_bob = open(&app, "shared", &bob_token).await.expect("bob shared session");

    // Calls keep succeeding across several expiries, and each user's calls carry only their
    // own token.
    let started = tokio::time::Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(u64::from(TTL) * 3 + 1) {
        assert_eq!(whoami(&app, &s_alice).await.unwrap(), "alice-at-backend");
        assert_eq!(whoami(&app, &s_bob).await.unwrap(), "bob-at-backend");
        assert_eq!(whoami(&app, &s_shared_bob).await.unwrap(), "team-account");
        assert_eq!(whoami(&app, &s_cc).await.unwrap(), "cc-basic");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(calls > 10);
    let stats = peers.stats().await;
    for account in ["alice-at-backend", "bob-at-backend", "team-account"] {
        let n = stats["refresh_by_account"][account].as_i64().unwrap_or(0);
        assert!(n >= 2, "{account} refreshed {n} times: {stats}");
    }
    assert!(stats["client_credentials"].as_i64().unwrap() >= 3, "{stats}");
    // The aggregated endpoint serves the per-user server with the caller's own account.
    let (_, headers, _) = rpc_at(&app, "/mcp", Some(&alice_token), None, &[], json!({"jsonrpc": "2.0", "id": 1,
        "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}})).await;
    let agg = headers["mcp-session-id"].to_str().unwrap().to_string();
    let (_, _, answer) = rpc_at(&app, "/mcp", Some(&alice_token), Some(&agg),
        &[("mcp-protocol-version", "2025-11-25")],
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "mine__whoami", "arguments": {}}})).await;
    assert!(answer.to_string().contains("alice-at-backend"), "{answer}");

    // Concurrent calls at expiry, on two gateways sharing the database: one refresh.
    let second = env
        .with_var("GATEWAY_PORT", &crate::peers::free_port().to_string())
        .spawn()
        .await;
    let s_alice2 = open(&second, "mine", &alice_token).await.expect("alice on the second gateway");
    tokio::time::sleep(Duration::from_secs(u64::from(TTL) + 1)).await;
    peers.reset_stats().await;
    let mut burst = Vec::new();
    for i in 0..16 {
        let (app, s) = if i % 2 == 0 { (&app, &s_alice) } else { (&second, &s_alice2) };
        burst.push(whoami(app, s));
    }
    for result in futures::future::join_all(burst).await {
        assert_eq!(result.unwrap(), "alice-at-backend");
    }
    let stats = peers.stats().await;
    assert_eq!(stats["refresh_by_account"]["alice-at-backend"], 1, "{stats}");
    assert_eq!(stats["refresh_failures"], 0, "{stats}");

    // Token health: every credential, no token in it.
    let health = tokens(&app, &admin).await;
    for row in &health {
        assert!(row.get("access_token").is_none() && row.get("refresh_token").is_none(), "{row}");
    }
    let alice_row = health.iter().find(|h| h["server"] == "mine" && h["username"] == "alice").unwrap();
    assert_eq!(alice_row["status"], "ok");
    assert!(alice_row["refresh_count"].as_i64().unwrap() >= 2, "{alice_row}");
    assert!(alice_row["has_refresh_token"].as_bool().unwrap());
    let shared_row = health.iter().find(|h| h["server"] == "shared").unwrap();
    assert_eq!(shared_row["user_id"], Value::Null);

    // A revoked refresh token: the per-user call gets a clear error naming the page to
    // reconnect on, an event is recorded; reconnecting repairs it. Bob is untouched.
    peers.revoke_refresh("alice-at-backend").await;
    tokio::time::sleep(Duration::from_secs(u64::from(TTL) + 1)).await;
    let err = whoami(&app, &s_alice).await.expect_err("revoked");
    let message = err["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("reconnect at") && message.contains("/connect/mine"), "{message}");
    let event = app.wait_for_event("backend_credential_error").await;
    assert!(!event.details.as_deref().unwrap_or_default().contains("Bearer"), "{event:?}");
    assert_eq!(whoami(&app, &s_bob).await.unwrap(), "bob-at-backend");
    connect_mine(&app, &alice_browser, "alice", "mine", "alice-at-backend").await;
    assert_eq!(whoami(&app, &s_alice).await.unwrap(), "alice-at-backend");

    // The admin-connected server: revoked → degraded + a clear error; reconnect repairs it.
    peers.revoke_refresh("team-account").await;
    tokio::time::sleep(Duration::from_secs(u64::from(TTL) + 1)).await;
    let err = whoami(&app, &s_shared).await.expect_err("revoked");
    assert!(err["error"]["message"].as_str().unwrap().contains("admin must reconnect"), "{err}");
    let server = server_json(&app, &admin, shared).await;
    assert_eq!(server["health"]["status"], "degraded", "{server}");
    let row = tokens(&app, &admin).await.into_iter().find(|h| h["server"] == "shared").unwrap();
    assert_eq!(row["status"], "failed");
    assert!(row["last_error"].as_str().unwrap().contains("invalid_grant"), "{row}");
    // "Refresh now" cannot help a revoked refresh token; it says so.
    let res = app.post_json(&format!("/admin/api/tokens/{shared}/0/refresh"), Some(&admin), json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "failed");
    connect_admin(&app, &admin_browser, &admin, shared, "team-account").await;
    assert_eq!(whoami(&app, &s_shared).await.unwrap(), "team-account");
    // The health check runs again after a reconnect.
    let mut server = Value::Null;
    for _ in 0..50 {
        server = server_json(&app, &admin, shared).await;
        if server["health"]["status"] == "online" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server["health"]["status"], "online", "{server}");

    // "Refresh now" on a client-credentials server gets a new token.
    let before = peers.stats().await["client_credentials"].as_i64().unwrap();
    let res = app.post_json(&format!("/admin/api/tokens/{cc}/0/refresh"), Some(&admin), json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    assert_eq!(peers.stats().await["client_credentials"].as_i64().unwrap(), before + 1);

    // Disconnect: the user's calls stop with the page to connect on.
    let res = app.send(Method::DELETE, &format!("/admin/api/tokens/{mine}/{bob}"), Some(&admin), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let err = whoami(&app, &s_bob).await.expect_err("disconnected");
    assert!(err["error"]["message"].as_str().unwrap().contains("/connect/mine"), "{err}");
    second.stop().await;
    app.stop().await;
}
}

db_test! {
async fn connection_flows_cannot_be_hijacked_or_replayed(env: TestEnv) {
    let peers = OAuthBackend::start(30).await;
    let app = env.with_admin().with_public_port().spawn().await;
    let admin = app.admin_token().await;
    let alice = app.create_user(&admin, "alice", "user").await;
    app.create_user(&admin, "mallory", "user").await;
    let mine = add_server(&app, &admin, json!({"name": "mine", "url": peers.url(),
        "credential": {"type": "oauth_user"}})).await;
    set_access(&app, &admin, alice, mine, true).await;
    let origin = app.url("");

    // Cross-origin sign-in and connect are refused.
    let browser = Browser::new();
    let res = browser.send(Method::POST, &app.url("/oauth/backend/signin"), None, Some("https://evil.example"),
        Some(Body::Json(json!({"username": "alice", "password": USER_PASSWORD})))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = browser.send(Method::POST, &app.url("/oauth/backend/signin"), None, None,
        Some(Body::Json(json!({"username": "alice", "password": USER_PASSWORD})))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Not signed in: 401; signed in but not granted: 404 like an unknown server.
    let res = browser.send(Method::POST, &app.url("/oauth/backend/connections/mine"), None, Some(&origin), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let mallory = Browser::new();
    let res = mallory.send(Method::POST, &app.url("/oauth/backend/signin"), None, Some(&origin),
        Some(Body::Json(json!({"username": "mallory", "password": USER_PASSWORD})))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = mallory.send(Method::POST, &app.url("/oauth/backend/connections/mine"), None, Some(&origin), None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let listed: Value = mallory.send(Method::GET, &app.url("/oauth/backend/connections"), None, None, None)
        .await.json().await.unwrap();
    assert_eq!(listed["connections"], json!([]), "{listed}");
    // Signing out of the page ends the sign-in there; both are in the audit log.
    let res = mallory.send(Method::POST, &app.url("/oauth/backend/signout"), None, Some(&origin), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = mallory.send(Method::GET, &app.url("/oauth/backend/connections"), None, None, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    for kind in ["sign_in", "sign_out"] {
        let audit: Value = app
            .get_as(&format!("/admin/api/audit-log?kind={kind}&per_page=200"), &admin)
            .await
            .json()
            .await
            .unwrap();
        assert!(
            audit["items"].as_array().unwrap().iter().any(|a| a["actor_username"] == "mallory"
                && a["after"]["audience"] == "connections"),
            "{kind}: {audit}"
        );
    }

    // Alice starts a flow; a different browser (without her flow cookie) completes the
    // authorization at the backend: the callback refuses, nothing is stored.
    let res = browser.send(Method::POST, &app.url("/oauth/backend/signin"), None, Some(&origin),
        Some(Body::Json(json!({"username": "alice", "password": USER_PASSWORD})))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = browser.send(Method::POST, &app.url("/oauth/backend/connections/mine"), None, Some(&origin), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let start: Value = res.json().await.unwrap();
    let url = start["authorization_url"].as_str().unwrap().to_string();
    let page = mallory.authorize(&url, "mallory-at-backend").await;
    let back = came_back(&page);
    assert!(back.contains("/connect?error=") && back.contains("another+browser"), "{back}");
    let listed: Value = browser.send(Method::GET, &app.url("/oauth/backend/connections"), None, None, None)
        .await.json().await.unwrap();
    assert_eq!(listed["connections"][0]["status"], "not_connected", "{listed}");
    // The flow was used up by that attempt: alice's own browser cannot finish it either.
    let callback = page.visited.iter().find(|u| u.contains("/oauth/backend/callback")).unwrap().clone();
    let res = browser.send(Method::GET, &callback, None, None, None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Unknown and missing states, and an error from the authorization server.
    let res = browser.send(Method::GET, &app.url("/oauth/backend/callback?state=nope&code=x"), None, None, None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "connection_invalid");
    let res = browser.send(Method::GET, &app.url("/oauth/backend/callback"), None, None, None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = browser.send(Method::POST, &app.url("/oauth/backend/connections/mine"), None, Some(&origin), None).await;
    let start: Value = res.json().await.unwrap();
    let state = url::Url::parse(start["authorization_url"].as_str().unwrap()).unwrap()
        .query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
    let res = browser.send(Method::GET,
        &app.url(&format!("/oauth/backend/callback?state={state}&error=access_denied")), None, None, None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(res.headers()["location"].to_str().unwrap().contains("access_denied"));
    // A code that says it comes from another authorization server (a mix-up) is refused.
    let res = browser.send(Method::POST, &app.url("/oauth/backend/connections/mine"), None, Some(&origin), None).await;
    let start: Value = res.json().await.unwrap();
    let state = url::Url::parse(start["authorization_url"].as_str().unwrap()).unwrap()
        .query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
    let res = browser.send(Method::GET,
        &app.url(&format!("/oauth/backend/callback?state={state}&code=abc&iss=https%3A%2F%2Fevil.example")), None, None, None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("another+authorization+server"), "{location}");

    // Credentials are validated; a token URL with credentials or a bad scope is refused.
    for bad in [
        json!({"type": "oauth_client_credentials", "token_url": "ftp://x/token", "client_id": "a", "client_secret": "b"}),
        json!({"type": "oauth_client_credentials", "token_url": "https://u:p@x/token", "client_id": "a", "client_secret": "b"}),
        json!({"type": "oauth_client_credentials", "token_url": "https://x/token", "client_id": "", "client_secret": "b"}),
        json!({"type": "oauth_client_credentials", "token_url": "https://x/token", "client_id": "a", "client_secret": "b", "scope": "a\"b"}),
        json!({"type": "oauth_client_credentials", "token_url": "https://x/token", "client_id": "a", "client_secret": "b", "auth_method": "private_key_jwt"}),
        json!({"type": "oauth_client_credentials", "token_url": 5, "client_id": "a", "client_secret": "b"}),
        json!({"type": "oauth_user", "client_secret": "no-id"}),
        json!({"type": "oauth_admin", "scope": ""}),
    ] {
        let res = app.post_json("/admin/api/mcp-servers", Some(&admin),
            json!({"name": "bad", "url": peers.url(), "credential": bad})).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    // A client-credentials server whose token endpoint refuses the client: a clear error,
    // an event, degraded health, and the secret never in any answer.
    let wrong = add_server(&app, &admin, json!({"name": "wrong", "url": peers.url(), "credential": {
        "type": "oauth_client_credentials", "token_url": format!("{}/token", peers.issuer()),
        "client_id": "cc-basic", "client_secret": "not-the-secret", "scope": "mcp"}})).await;
    set_access(&app, &admin, alice, wrong, true).await;
    let alice_token = user_token(&app, "alice").await;
    let err = open(&app, "wrong", &alice_token).await.err().expect("refused client");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("invalid_client") && !message.contains("not-the-secret"), "{message}");
    let event = app.wait_for_event("backend_credential_error").await;
    assert!(!format!("{event:?}").contains("not-the-secret"));
    assert_eq!(server_json(&app, &admin, wrong).await["health"]["status"], "degraded");
    app.stop().await;
}
}

/// One gateway in front of another: the upstream gateway's own authorization server takes
/// client ID metadata documents, so the front gateway connects a user's account there without
/// registering (its client id is its metadata document's URL), through the upstream's consent
/// API; the user's calls then carry their own upstream account.
#[tokio::test]
async fn a_gateway_connects_to_another_with_its_client_metadata_document() {
    use crate::helpers::Backend;
    use crate::peers::{PeerServer, Sdk};
    let peer = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let upstream = TestEnv::new(Backend::Sqlite)
        .await
        .with_admin()
        .with_public_port()
        .with_var("OAUTH_CIMD_ALLOW_HTTP", "true")
        .with_var("OAUTH_CIMD_ALLOW_PRIVATE", "true")
        .spawn()
        .await;
    let up_admin = upstream.admin_token().await;
    let carol = upstream.create_user(&up_admin, "carol", "user").await;
    let alpha = add_server(
        &upstream,
        &up_admin,
        json!({"name": "alpha", "url": peer.url()}),
    )
    .await;
    set_access(&upstream, &up_admin, carol, alpha, true).await;

    let front = TestEnv::new(Backend::Sqlite)
        .await
        .with_admin()
        .with_public_port()
        .spawn()
        .await;
    let admin = front.admin_token().await;
    let alice = front.create_user(&admin, "alice", "user").await;
    let chained = add_server(
        &front,
        &admin,
        json!({"name": "chained", "url": upstream.url("/mcp/alpha"),
        "credential": {"type": "oauth_user"}}),
    )
    .await;
    set_access(&front, &admin, alice, chained, true).await;

    // The metadata document the upstream will fetch.
    let doc: Value = front
        .get("/oauth/backend/client-metadata.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["client_id"],
        front.url("/oauth/backend/client-metadata.json")
    );
    assert_eq!(
        doc["redirect_uris"],
        json!([front.url("/oauth/backend/callback")])
    );
    assert_eq!(doc["token_endpoint_auth_method"], "none");

    // Alice connects as carol through the upstream's consent API.
    let browser = Browser::new();
    let origin = front.url("");
    let res = browser
        .send(
            Method::POST,
            &front.url("/oauth/backend/signin"),
            None,
            Some(&origin),
            Some(Body::Json(
                json!({"username": "alice", "password": USER_PASSWORD}),
            )),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = browser
        .send(
            Method::POST,
            &front.url("/oauth/backend/connections/chained"),
            None,
            Some(&origin),
            None,
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    let start: Value = res.json().await.unwrap();
    let authorization = start["authorization_url"].as_str().unwrap();
    let client_id = url::Url::parse(authorization)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "client_id")
        .unwrap()
        .1
        .to_string();
    assert_eq!(client_id, front.url("/oauth/backend/client-metadata.json"));
    let page = browser.go(Method::GET, authorization, None).await;
    let request = url::Url::parse(&page.url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "request")
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("not the upstream's consent page: {}", page.url));
    let res = browser.send(Method::POST, &upstream.url("/oauth/api/decision"), None, Some(&upstream.url("")),
        Some(Body::Json(json!({"request": request, "approve": true, "username": "carol", "password": USER_PASSWORD})))).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    let decided: Value = res.json().await.unwrap();
    let back = browser
        .go(Method::GET, decided["redirect_to"].as_str().unwrap(), None)
        .await;
    assert!(
        came_back(&back).ends_with("/connect?connected=chained"),
        "{:?}",
        back.visited
    );

    // The upstream knows the front gateway by its document; alice's calls act as carol.
    let clients: Vec<Value> = upstream
        .get_as("/admin/api/oauth/clients", &up_admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        clients
            .iter()
            .any(|c| c["client_id"] == client_id && c["kind"] == "cimd"),
        "{clients:?}"
    );
    let token = user_token(&front, "alice").await;
    let s = open(&front, "chained", &token)
        .await
        .expect("a session through both gateways");
    let (_, _, answer) = rpc_at(&front, "/mcp/chained", Some(&token), Some(&s.id),
        &[("mcp-protocol-version", "2025-11-25")],
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}})).await;
    assert!(answer.to_string().contains("hi"), "{answer}");
    // Activity is written in batches off the request path.
    let mut activity = Value::Null;
    for _ in 0..50 {
        activity = upstream
            .get_as("/admin/api/mcp-activity?server=alpha", &up_admin)
            .await
            .json()
            .await
            .unwrap();
        if activity.to_string().contains("carol") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(activity.to_string().contains("carol"), "{activity}");
    front.stop().await;
    upstream.stop().await;
}
