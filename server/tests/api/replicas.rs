//! Two gateway processes on one Postgres behind nginx (round robin, Debian's nginx installed by
//! the test command): real SDK clients through the load balancer, sessions and streams across
//! replicas, changes made on one replica enforced on the other within a second, one rate
//! limit for both, one live feed for both.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::{ADMIN_PASSWORD, GatewayProcess, TestEnv, USER_PASSWORD};
use crate::peers::{
    PYTHON_PEER, PeerServer, Script, Sdk, free_port, run_oauth_client, run_python_client,
    run_ts_client,
};

/// A gateway process and a client for it.
struct Replica {
    _process: GatewayProcess,
    url: String,
    http: reqwest::Client,
}

impl Replica {
    async fn start(env: &TestEnv) -> Replica {
        let process = GatewayProcess::on(env, false).await;
        Replica {
            url: process.url.clone(),
            _process: process,
            http: reqwest::Client::new(),
        }
    }

    /// `DELETE` of an MCP session.
    async fn end_session(&self, path: &str, token: &str, session: &str) -> StatusCode {
        self.http
            .delete(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    /// An access token from `/auth/login` or `/admin/api/login`.
    async fn login(&self, path: &str, username: &str, password: &str) -> String {
        let res = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path} as {username}");
        let body: Value = res.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn create_user(&self, admin: &str, username: &str, role: &str) -> i64 {
        let res = self
            .send(
                Method::POST,
                "/admin/api/users",
                admin,
                Some(json!({"username": username, "password": USER_PASSWORD, "role": role})),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "create {username}");
        res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    async fn add_server(&self, admin: &str, body: Value) -> i64 {
        let res = self
            .send(Method::POST, "/admin/api/mcp-servers", admin, Some(body))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    async fn grant(&self, admin: &str, user: i64, server: i64) {
        let res = self
            .send(
                Method::PATCH,
                &format!("/admin/api/users/{user}/mcp-permissions"),
                admin,
                Some(json!({"server_id": server, "can_access": true})),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    /// One MCP POST: status, headers, and the JSON-RPC answer (from JSON or SSE).
    async fn rpc(
        &self,
        path: &str,
        token: &str,
        session: Option<&str>,
        body: Value,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body);
        if let Some(session) = session {
            req = req.header("mcp-session-id", session);
        }
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let text = res.text().await.unwrap();
        let message = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: ").or(Some(l)))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|m| m.get("id").is_some() && m.get("method").is_none())
            .unwrap_or(Value::Null);
        (status, headers, message)
    }

    async fn initialize(&self, path: &str, token: &str) -> String {
        let (status, headers, body) = self
            .rpc(
                path,
                token,
                None,
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "replica-test", "version": "1"}}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "initialize {path}: {body}");
        let session = headers["mcp-session-id"].to_str().unwrap().to_string();
        let (status, _, _) = self
            .rpc(
                path,
                token,
                Some(&session),
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "notifications/initialized on {path}"
        );
        session
    }

    async fn call(
        &self,
        path: &str,
        token: &str,
        session: &str,
        tool: &str,
    ) -> (StatusCode, Value) {
        let (status, _, body) = self
            .rpc(
                path,
                token,
                Some(session),
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": {"name": tool, "arguments": {"text": "hi"}}}),
            )
            .await;
        (status, body)
    }

    async fn open_stream(&self, path: &str, token: &str, session: &str) -> reqwest::Response {
        let res = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {path} on {}", self.url);
        res
    }

    async fn live_feed(
        &self,
        admin: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let ticket: Value = self
            .send(
                Method::POST,
                "/admin/api/live/ticket",
                admin,
                Some(json!({})),
            )
            .await
            .json()
            .await
            .unwrap();
        let url = format!(
            "{}/admin/api/live?ticket={}",
            self.url.replace("http://", "ws://"),
            ticket["ticket"].as_str().unwrap()
        );
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }
}

/// nginx as the load balancer (round robin, upstream keep-alive, WebSocket upgrade, no
/// buffering), logging which replica served each request.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
}

impl Drop for Nginx {
    /// A fast shutdown (SIGTERM): the master takes its workers with it, which a SIGKILL
    /// would orphan.
    fn drop(&mut self) {
        // Signalled directly (no `kill` program: procps is not in a minimal image).
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            if rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_err() {
                let _ = self.child.kill();
            }
        } else {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx is installed by `cargo xtask test` (Debian package nginx)")
}

impl Nginx {
    async fn start(port: u16, replicas: &[&Replica]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let servers: String = replicas
            .iter()
            .map(|r| format!("server {};\n", r.url.trim_start_matches("http://")))
            .collect();
        let conf = format!(
            r#"
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  log_format upstream '$upstream_addr $request_method $uri $status';
  access_log {d}/access.log upstream;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream gateway {{
    {servers}
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 4m;
    location / {{
      proxy_pass http://gateway;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
    }}
  }}
}}
"#
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        // From here on, dropping it stops nginx and reaps it.
        let nginx = Nginx {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if reqwest::get(format!("{}/health", nginx.url)).await.is_ok() {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default()
        );
    }

    /// How many requests each upstream served, by its address.
    fn served(&self) -> std::collections::HashMap<String, usize> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        let mut served = std::collections::HashMap::new();
        for line in log.lines() {
            if let Some(upstream) = line.split(' ').next() {
                *served.entry(upstream.to_string()).or_default() += 1;
            }
        }
        served
    }
}

/// How long until `check` holds (polled every 10 ms, at most `limit`).
async fn time_until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn two_replicas_behind_nginx_share_everything() {
    let Some(env) = TestEnv::postgres_or_skip().await else {
        return;
    };
    let lb_port = free_port();
    let public = format!("http://127.0.0.1:{lb_port}");
    let env = env.with_admin().with_var("PUBLIC_URL", &public);
    // One after the other: the first creates the signing key and the encryption key file.
    let a = Replica::start(&env).await;
    let b = Replica::start(&env).await;
    let lb = Nginx::start(lb_port, &[&a, &b]).await;
    let admin_a = a.login("/admin/api/login", "admin", ADMIN_PASSWORD).await;
    let admin_b = b.login("/admin/api/login", "admin", ADMIN_PASSWORD).await;

    // Servers registered on A are served by B at once (the change feed, not the 5 s reload).
    let alpha = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let gamma = PeerServer::start(Sdk::Py1, "gamma", &["--transport", "sse"]).await;
    let (streamy, _streamy_task) = crate::observe::streaming_backend().await;
    let alpha_id = a
        .add_server(&admin_a, json!({"name": "alpha", "url": alpha.url()}))
        .await;
    let gamma_id = a
        .add_server(
            &admin_a,
            json!({"name": "gamma", "url": gamma.url(), "transport": "sse"}),
        )
        .await;
    let streamy_id = a
        .add_server(
            &admin_a,
            // It answers calls, not lists: under quarantine its tool would be refused.
            json!({"name": "streamy", "url": streamy, "transport": "streamable-http", "tool_pinning": "warn"}),
        )
        .await;
    let ann = a.create_user(&admin_a, "ann", "user").await;
    for server in [alpha_id, gamma_id, streamy_id] {
        a.grant(&admin_a, ann, server).await;
    }
    let ann_token = b.login("/auth/login", "ann", USER_PASSWORD).await;
    let session = b.initialize("/mcp/alpha", &ann_token).await;
    let (status, reply) = b.call("/mcp/alpha", &ann_token, &session, "echo").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "B serves what A registered: {reply}"
    );

    // Real SDK clients through the load balancer, both eras, per server (streamable HTTP and
    // an HTTP+SSE backend whose stream each replica holds itself) and aggregated: every
    // request goes to the next replica.
    let aggregated = Script {
        tool: "alpha__echo",
        args: r#"{"text": "hi"}"#,
        progress_tool: "alpha__slow",
        progress_args: r#"{"steps": 3}"#,
    };
    let runs = [
        ("python auto", "/mcp/alpha", "auto", PYTHON_PEER, "alpha:hi"),
        (
            "python legacy",
            "/mcp/alpha",
            "legacy",
            PYTHON_PEER,
            "alpha:hi",
        ),
        (
            "python 2026-07-28",
            "/mcp/alpha",
            "2026-07-28",
            PYTHON_PEER,
            "alpha:hi",
        ),
        (
            "python, HTTP+SSE backend",
            "/mcp/gamma",
            "auto",
            PYTHON_PEER,
            "gamma:hi",
        ),
        (
            "python aggregated",
            "/mcp",
            "auto",
            aggregated.clone(),
            "alpha:hi",
        ),
        (
            "python aggregated 2026-07-28",
            "/mcp",
            "2026-07-28",
            aggregated.clone(),
            "alpha:hi",
        ),
        ("typescript", "/mcp/alpha", "ts", PYTHON_PEER, "alpha:hi"),
        (
            "typescript aggregated",
            "/mcp",
            "ts",
            aggregated.clone(),
            "alpha:hi",
        ),
    ];
    let before = lb.served();
    for (what, path, mode, script, text) in runs {
        let url = format!("{}{path}", lb.url);
        let out = if mode == "ts" {
            run_ts_client(&url, &ann_token, &script).await
        } else {
            run_python_client(&url, &ann_token, mode, &script).await
        };
        assert!(out.get("error").is_none(), "{what}: {out}");
        assert_eq!(out["text"], text, "{what}: {out}");
        let progress: Vec<f64> = out["progress"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {out}"))
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert_eq!(progress, [1.0, 2.0, 3.0], "{what}: progress relayed: {out}");
        assert_eq!(out["progress_before_result"], true, "{what}: {out}");
    }
    let after = lb.served();
    for replica in [&a, &b] {
        let upstream = replica.url.trim_start_matches("http://");
        let served =
            after.get(upstream).copied().unwrap_or(0) - before.get(upstream).copied().unwrap_or(0);
        assert!(
            served >= 10,
            "{upstream} served {served} of the SDK requests: {after:?}"
        );
    }

    // The SDK's OAuth login through the load balancer (discovery, registration, PKCE,
    // consent, token, calls, refresh: each step on whichever replica).
    let out = run_oauth_client(
        &format!("{public}/mcp/alpha"),
        "ann",
        USER_PASSWORD,
        &["--tool", "echo"],
    )
    .await;
    assert!(out.get("error").is_none(), "oauth: {out}");
    assert_eq!(out["text"], "alpha:hi", "oauth: {out}");
    assert_eq!(out["refreshed"], true, "oauth: {out}");

    // A session started on A: its GET stream opens on B, DELETE on B ends it on A too.
    let session = a.initialize("/mcp/streamy", &ann_token).await;
    let mut stream = b.open_stream("/mcp/streamy", &ann_token, &session).await;
    assert!(
        stream.chunk().await.unwrap().is_some(),
        "B relays the backend's stream"
    );
    assert_eq!(
        b.end_session("/mcp/streamy", &ann_token, &session).await,
        StatusCode::NO_CONTENT
    );
    // The end reaches A through the change feed (milliseconds, not in the DELETE's answer).
    let (replica, token, sid) = (&a, &ann_token, &session);
    let elapsed = time_until(Duration::from_secs(1), || async move {
        replica.call("/mcp/streamy", token, sid, "echo").await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert!(elapsed.is_some(), "ended on every replica");
    drop(stream);
    // The same for an aggregated session.
    let session = a.initialize("/mcp", &ann_token).await;
    assert_eq!(
        b.end_session("/mcp", &ann_token, &session).await,
        StatusCode::NO_CONTENT
    );
    let (replica, token, sid) = (&a, &ann_token, &session);
    let elapsed = time_until(Duration::from_secs(1), || async move {
        replica.call("/mcp", token, sid, "alpha__echo").await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert!(
        elapsed.is_some(),
        "an aggregated session ended on B is unknown on A"
    );

    // A user disabled on A: refused on B and their open event stream on B ends, within 1 s.
    let bob = a.create_user(&admin_a, "bob", "user").await;
    a.grant(&admin_a, bob, streamy_id).await;
    let bob_token = a.login("/auth/login", "bob", USER_PASSWORD).await;
    let session = b.initialize("/mcp/streamy", &bob_token).await;
    let mut stream = b.open_stream("/mcp/streamy", &bob_token, &session).await;
    assert!(stream.chunk().await.unwrap().is_some());
    assert_eq!(
        b.call("/mcp/streamy", &bob_token, &session, "echo").await.0,
        StatusCode::OK
    );
    let disabled_at = Instant::now();
    let res = a
        .send(
            Method::PATCH,
            &format!("/admin/api/users/{bob}"),
            &admin_a,
            Some(json!({"enabled": false})),
        )
        .await;
    assert!(res.status().is_success());
    assert!(
        crate::observe::ends_within(&mut stream, Duration::from_secs(1)).await,
        "bob's stream on B ends within a second"
    );
    let ended = disabled_at.elapsed();
    let (replica, token, sid) = (&b, &bob_token, &session);
    time_until(
        Duration::from_secs(1).saturating_sub(disabled_at.elapsed()),
        || async move {
            let status = replica.call("/mcp/streamy", token, sid, "echo").await.0;
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
        },
    )
    .await
    .expect("B refuses bob within a second of the disable");
    let refused = disabled_at.elapsed();
    eprintln!("disabled on A: stream on B ended after {ended:?}, B refused after {refused:?}");

    // An admin demoted on A: their live feed on B closes (4003) within 1 s.
    let carol = a.create_user(&admin_a, "carol", "admin").await;
    let carol_token = b.login("/admin/api/login", "carol", USER_PASSWORD).await;
    let mut feed = b.live_feed(&carol_token).await;
    let demoted_at = Instant::now();
    let res = a
        .send(
            Method::PATCH,
            &format!("/admin/api/users/{carol}"),
            &admin_a,
            Some(json!({"role": "user"})),
        )
        .await;
    assert!(res.status().is_success());
    assert_eq!(
        crate::observe::close_code(&mut feed, Duration::from_secs(1)).await,
        Some(4003),
        "carol's live feed on B closes within a second"
    );
    eprintln!(
        "demoted on A: live feed on B closed after {:?}",
        demoted_at.elapsed()
    );

    // The live feed on B shows calls served by A.
    let mut feed = b.live_feed(&admin_b).await;
    let session = a.initialize("/mcp/alpha", &ann_token).await;
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            assert_eq!(
                a.call("/mcp/alpha", &ann_token, &session, "echo").await.0,
                StatusCode::OK
            );
            let next = tokio::time::timeout(Duration::from_millis(300), feed.next()).await;
            if let Ok(Some(Ok(WsMessage::Text(text)))) = next {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "activity" && message["record"]["username"] == "ann" {
                    return message;
                }
            }
        }
    })
    .await
    .expect("B's live feed shows A's traffic");
    assert_eq!(seen["record"]["server"], "alpha", "{seen}");
    // Any role that can connect to the database may NOTIFY: a forged note (not sealed with
    // the gateway's key) reaches no admin. (A forged `all` change is sent too: it would only
    // make B re-read everything, which this test cannot observe.) The feed is drained first,
    // and a marked genuine call (tool `add`) follows the forgeries: every activity before it
    // must be genuine.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(600), feed.next()).await {}
    let pg = sqlx::PgPool::connect(&env.database_url()).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut forged_record = seen["record"].clone();
    forged_record["username"] = json!("mallory");
    for (channel, note) in [
        (
            "authmcp_live",
            json!({"r": "forged", "t": now, "m": [{"type": "activity", "record": forged_record}]}),
        ),
        (
            "authmcp_changes",
            json!({"r": "forged", "t": now, "c": {"k": "all"}}),
        ),
    ] {
        sqlx::query("select pg_notify($1, $2)")
            .bind(channel)
            .bind(note.to_string())
            .execute(&pg)
            .await
            .unwrap();
    }
    a.call("/mcp/alpha", &ann_token, &session, "add").await;
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Ok(WsMessage::Text(text))) = feed.next().await {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] != "activity" {
                    continue;
                }
                assert_eq!(
                    message["record"]["username"], "ann",
                    "a forged record was shown: {message}"
                );
                if message["record"]["tool"] == "add" {
                    return;
                }
            }
        }
    })
    .await
    .expect("the marked genuine call arrives");
    pg.close().await;

    // A burst over a per-user limit spread over both replicas is held to the one budget
    // (60 a minute: a burst of 10; 10 % tolerance).
    // (On streamy, which answers concurrent calls of one session at once; the Python SDK
    // server answers them one after another.)
    let dan = a.create_user(&admin_a, "dan", "user").await;
    a.grant(&admin_a, dan, streamy_id).await;
    let res = a
        .send(
            Method::PUT,
            "/admin/api/rate-limits",
            &admin_a,
            Some(
                json!({"user_per_minute": 0, "user_server_per_minute": 0, "user_tool_per_minute": 0,
                "overrides": [{"kind": "user", "user_id": dan, "per_minute": 60}]}),
            ),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let dan_token = a.login("/auth/login", "dan", USER_PASSWORD).await;
    let sessions = [
        a.initialize("/mcp/streamy", &dan_token).await,
        b.initialize("/mcp/streamy", &dan_token).await,
    ];
    // The two handshakes (initialize, initialized) took four requests of the budget.
    let burst = (0..40).map(|i| {
        let (replica, session) = if i % 2 == 0 {
            (&a, &sessions[0])
        } else {
            (&b, &sessions[1])
        };
        let token = &dan_token;
        async move {
            tokio::time::timeout(
                Duration::from_secs(30),
                replica.call("/mcp/streamy", token, session, "echo"),
            )
            .await
            .map_or(StatusCode::REQUEST_TIMEOUT, |(status, _)| status)
        }
    });
    let statuses = futures::future::join_all(burst).await;
    let admitted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    eprintln!("burst of 40 over two replicas: {admitted} admitted, {limited} limited");
    assert_eq!(admitted + limited, 40, "{statuses:?}");
    assert!(
        (5..=6).contains(&admitted),
        "the budget left after two handshakes is 6, no more (10 % tolerance: 6.6): {admitted} admitted"
    );
    drop(lb);
}

/// A replica started before its database comes up once the database answers
/// (`DATABASE_CONNECT_TIMEOUT_SECS`), instead of exiting.
#[tokio::test]
async fn a_replica_started_before_its_database_waits_for_it() {
    let Some(env) = TestEnv::postgres_or_skip().await else {
        return;
    };
    // The database is reached through a port nobody listens on yet.
    let real = env.database_url();
    let authority = real
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let port = free_port();
    let env = env.with_admin().with_var(
        "DATABASE_URL",
        &real.replacen(&authority, &format!("127.0.0.1:{port}"), 1),
    );
    let gateway_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_authmcp-gateway"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.env_vars())
        .env("GATEWAY_PORT", gateway_port.to_string())
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the gateway waits for its database rather than exiting"
    );
    // The database "comes up": a forwarder to the real server starts listening.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let forwarder = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let authority = authority.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&authority).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let url = format!("http://127.0.0.1:{gateway_port}/ready");
    let ready = time_until(Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            reqwest::get(url)
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    forwarder.abort();
    assert!(
        ready.is_some(),
        "the gateway started once the database answered"
    );
}

/// Tool pinning across replicas: a rug pull seen on A is quarantined on B at once (the change
/// feed), and an approval made on B frees the tool on A within a second.
#[tokio::test]
async fn a_quarantined_tool_is_quarantined_on_every_replica() {
    let Some(env) = TestEnv::postgres_or_skip().await else {
        return;
    };
    // One public URL for both (tokens name it).
    let env = env
        .with_admin()
        .with_var("PUBLIC_URL", "http://gateway.test");
    let a = Replica::start(&env).await;
    let b = Replica::start(&env).await;
    let admin_a = a.login("/admin/api/login", "admin", ADMIN_PASSWORD).await;
    let admin_b = b.login("/admin/api/login", "admin", ADMIN_PASSWORD).await;
    let peer = PeerServer::start(Sdk::Py1, "rates", &["--mutable"]).await;
    let id = a
        .add_server(&admin_a, json!({"name": "rates", "url": peer.url()}))
        .await;
    let token = a.login("/auth/login", "admin", ADMIN_PASSWORD).await;
    let rates = |replica: &Replica, session: String| {
        let token = token.clone();
        let url = replica.url.clone();
        async move {
            let http = reqwest::Client::new();
            let res = http
                .post(format!("{url}/mcp/rates"))
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25")
                .header("mcp-session-id", session)
                .json(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "rates", "arguments": {"currency": "USD"}}}))
                .send()
                .await
                .unwrap();
            let text = res.text().await.unwrap();
            text.contains("1 USD = 1 EUR")
        }
    };
    // Both replicas see the baseline; A sees the rug pull.
    let sa = a.initialize("/mcp/rates", &token).await;
    let sb = b.initialize("/mcp/rates", &token).await;
    assert!(rates(&a, sa.clone()).await);
    assert!(rates(&b, sb.clone()).await);
    let (_, _, pulled) = a
        .rpc(
            "/mcp/rates",
            &token,
            Some(&sa),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "rug_pull", "arguments": {}}}),
        )
        .await;
    assert_eq!(
        pulled["result"]["content"][0]["text"], "changed",
        "{pulled}"
    );
    let (_, _, _) = a
        .rpc(
            "/mcp/rates",
            &token,
            Some(&sa),
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
        )
        .await;
    // B refuses it without having listed anything since.
    let (b2, s2) = (&b, sb.clone());
    let quarantined = time_until(Duration::from_secs(1), || {
        let s2 = s2.clone();
        async move { !rates(b2, s2).await }
    })
    .await;
    assert!(quarantined.is_some(), "B quarantines what A saw");
    // Approved on B: A serves it again.
    let pins: Value = b
        .send(
            Method::GET,
            &format!("/admin/api/tool-pins?server_id={id}&status=pending"),
            &admin_b,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let pin = pins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "rates")
        .unwrap_or_else(|| panic!("{pins}"))
        .clone();
    let res = b
        .send(
            Method::POST,
            &format!("/admin/api/mcp-servers/{id}/tool-pins/decision"),
            &admin_b,
            Some(
                json!({"name": "rates", "fingerprint": pin["fingerprint"], "decision": "approve"}),
            ),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (a2, s1) = (&a, sa.clone());
    let freed = time_until(Duration::from_secs(1), || {
        let s1 = s1.clone();
        async move { rates(a2, s1).await }
    })
    .await;
    assert!(freed.is_some(), "A serves it once approved on B");
}
