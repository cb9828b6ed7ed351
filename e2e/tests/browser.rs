//! The served admin SPA in headless Chromium (chromedriver + fantoccini).
//!
//! Needs the release SPA in `web/dist` (or `E2E_WEB_DIR`) and `/usr/bin/chromium` +
//! `/usr/bin/chromedriver` (or `CHROMIUM`/`CHROMEDRIVER`); `cargo xtask test` provides all of
//! them. Screenshots land in `target/e2e-artifacts/`.

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
    let web_dir = std::env::var_os("E2E_WEB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist"));
    assert!(
        web_dir.join("index.html").is_file(),
        "the admin SPA is not built at {}: run `cargo xtask build-web` (or the whole suite with `cargo xtask test`)",
        web_dir.display()
    );
    let data = tempfile::tempdir().unwrap();
    let vars = BTreeMap::from([
        ("GATEWAY_HOST".to_string(), "127.0.0.1".to_string()),
        ("DATA_DIR".to_string(), data.path().display().to_string()),
        ("WEB_DIR".to_string(), web_dir.display().to_string()),
    ]);
    let mut config = Config::from_sources(&vars, None).unwrap();
    config.port = 0;
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

#[tokio::test]
async fn spa_shell_routes_deep_links_and_reads_the_api() {
    let gateway = start_gateway().await;
    let base = format!("http://{}", gateway.addr);
    let driver = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path(), 1280, 800).await;

    // `/` redirects to the dashboard, which shows live data from /health and /ready.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_text(&c, "health-status", "ok").await;
    wait_text(&c, "health-version", env!("CARGO_PKG_VERSION")).await;
    wait_text(&c, "ready-database", "sqlite").await;
    assert!(c.current_url().await.unwrap().as_str().ends_with("/admin"));
    screenshot(&c, "dashboard").await;

    // A client-side route: the nav link swaps the page without a reload.
    c.find(Locator::LinkText("Sign in")).await.unwrap().click().await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("login-form"))
        .await
        .unwrap();
    assert!(c.current_url().await.unwrap().as_str().ends_with("/login"));

    // The form goes through the API funnel, which decodes the server's JSON error envelope.
    c.find(Locator::Id("login-username")).await.unwrap().send_keys("someone").await.unwrap();
    c.find(Locator::Id("login-password")).await.unwrap().send_keys("wrong password").await.unwrap();
    c.find(Locator::Id("login-submit")).await.unwrap().click().await.unwrap();
    let error = text_of(&c, "login-error").await;
    assert!(!error.is_empty());
    screenshot(&c, "login").await;

    // Deep links load the app straight onto the route, including unknown ones.
    c.goto(&format!("{base}/login")).await.unwrap();
    text_of(&c, "login-form").await;
    c.goto(&format!("{base}/admin/does-not-exist")).await.unwrap();
    assert_eq!(text_of(&c, "not-found").await, "Page not found");

    // The narrow layout renders the same app.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/admin")).await.unwrap();
    wait_text(&c, "health-status", "ok").await;
    screenshot(&c, "dashboard-390").await;

    c.close().await.unwrap();
}
