//! `cargo xtask bench [--quick]`: measures the MCP path directly against a minimal Rust backend
//! and through the gateway (auth, access check and activity logging on), in the same run, and
//! reports throughput, latency percentiles, the latency the gateway adds, gateway CPU time per
//! request and gateway memory. Markdown on stdout, JSON in `target/bench/`.
//!
//! Usage: bench --gateway <bin> --backend <bin> [--quick] [--out <dir>]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const PASSWORD: &str = "bench passphrase 1234";
/// The scenario name of the bare-proxy reference row.
const REFERENCE: &str = "reference: bare hyper proxy, no auth (tools/call, session, JSON)";
/// The nginx reference rows (prefix): nginx as a bare reverse proxy, no auth.
const NGINX: &str = "reference: nginx, no auth";

struct Args {
    gateway: PathBuf,
    backend: PathBuf,
    quick: bool,
    out: PathBuf,
    /// `--only a,b`: run only scenarios whose name contains one of these (`streams` selects
    /// the open-stream measurement). For profiling one path; the report covers what ran.
    only: Vec<String>,
}

impl Args {
    fn selects(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| name.contains(o.as_str()))
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut gateway, mut backend, mut quick, mut out) =
        (None, None, false, PathBuf::from("target/bench"));
    let mut only = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--gateway" => gateway = args.next().map(PathBuf::from),
            "--backend" => backend = args.next().map(PathBuf::from),
            "--quick" => quick = true,
            "--out" => out = args.next().map(PathBuf::from).unwrap_or(out),
            "--only" => {
                only = args
                    .next()
                    .context("--only needs a comma-separated list")?
                    .split(',')
                    .map(str::to_string)
                    .collect();
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        gateway: gateway.context("--gateway <path> is required")?,
        backend: backend.context("--backend <path> is required")?,
        quick,
        out,
        only,
    })
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_port(port: u16) -> anyhow::Result<()> {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("nothing listens on port {port}")
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: state is field 3, utime 14, stime 15 (1-based), in clock ticks.
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / 100.0
}

/// CPU seconds of a process and its children (nginx's master and workers).
fn cpu_seconds_with_children(pid: u32) -> f64 {
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // After the command name: state, then the parent's pid.
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .map(cpu_seconds)
        .sum();
    cpu_seconds(pid) + children
}

/// nginx's master process, stopped on drop with SIGTERM so that it takes its workers along
/// (killed outright, it would leave them holding the ports).
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // Signalled directly (no `kill` program: procps is not in a minimal image); if that
        // fails, killed outright rather than waited for forever.
        let term = i32::try_from(self.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .is_some_and(|pid| {
                rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
            });
        if !term {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// nginx from Debian's package as a bare reverse proxy, the way operators put one in front of
/// anything: one worker per core, keep-alive to the client and to the upstream, no buffering
/// (answers stream through, as the gateway's do), no access log, no auth. Listens on two
/// ports, one per backend (JSON, SSE). `NGINX` overrides the binary's path.
fn start_nginx(dir: &Path, json_port: u16, sse_port: u16) -> anyhow::Result<(Nginx, u16, u16)> {
    let nginx = std::env::var("NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into());
    let dir = dir.join("nginx");
    std::fs::create_dir_all(&dir)?;
    let (front_json, front_sse) = (free_port()?, free_port()?);
    let server = |listen: u16, upstream: &str| {
        format!(
            "server {{ listen 127.0.0.1:{listen}; keepalive_requests 1000000; \
             location / {{ proxy_pass http://{upstream}; proxy_http_version 1.1; \
             proxy_set_header Connection \"\"; proxy_buffering off; }} }}"
        )
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let d = dir.display();
    let conf = format!(
        "worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n access_log off;\n\
         client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         upstream json {{ server 127.0.0.1:{json_port}; keepalive 256; keepalive_requests 1000000; }}\n\
         upstream sse {{ server 127.0.0.1:{sse_port}; keepalive 256; keepalive_requests 1000000; }}\n\
         {}\n{}\n}}\n",
        server(front_json, "json"),
        server(front_sse, "sse"),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let proc = Nginx(
        Command::new(&nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {nginx} (Debian's nginx package; `cargo xtask bench` installs it)"
                )
            })?,
    );
    Ok((proc, front_json, front_sse))
}

/// How long the idle gateway is left alone before its settled RSS is read.
const SETTLE: Duration = Duration::from_secs(20);

/// (VmRSS, VmHWM) in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One kind of request to send repeatedly.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    path: String,
    headers: Vec<(String, String)>,
    /// Requests sent in order per iteration; a response's `mcp-session-id` is carried to the
    /// next request of the same iteration (the new-session scenario).
    bodies: Vec<Bytes>,
}

#[derive(Default)]
struct Measured {
    iterations: u64,
    requests: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    seconds: f64,
}

impl Measured {
    fn rps(&self) -> f64 {
        self.iterations as f64 / self.seconds.max(1e-9)
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// Drives `target` over `conns` keep-alive HTTP/1.1 connections for `duration`.
async fn load(target: &Target, conns: usize, duration: Duration) -> anyhow::Result<Measured> {
    let target = Arc::new(target.clone());
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers = (0..conns).map(|_| {
        let target = target.clone();
        tokio::spawn(async move { worker(&target, deadline).await })
    });
    let mut total = Measured::default();
    for w in futures_util::future::join_all(workers).await {
        let m = w??;
        total.iterations += m.iterations;
        total.requests += m.requests;
        total.errors += m.errors;
        total.latencies_us.extend(m.latencies_us);
    }
    total.seconds = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    Ok(total)
}

async fn worker(target: &Target, deadline: Instant) -> anyhow::Result<Measured> {
    let stream = tokio::net::TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut m = Measured::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        let mut session: Option<String> = None;
        let mut ok = true;
        for body in &target.bodies {
            let mut req = Request::post(&target.path)
                .header("host", target.addr.to_string())
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream");
            for (k, v) in &target.headers {
                req = req.header(k, v);
            }
            if let Some(s) = &session {
                req = req.header("mcp-session-id", s);
            }
            sender.ready().await?;
            let res = sender
                .send_request(req.body(Full::new(body.clone()))?)
                .await?;
            if let Some(s) = res
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                session = Some(s.to_string());
            }
            ok &= res.status().is_success();
            res.into_body().collect().await?;
            m.requests += 1;
        }
        if ok {
            m.iterations += 1;
            m.latencies_us
                .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        } else {
            m.errors += 1;
        }
    }
    Ok(m)
}

fn rpc(id: u64, method: &str, params: Value) -> Bytes {
    Bytes::from(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string())
}

fn call_echo() -> Bytes {
    rpc(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hello"}}),
    )
}

fn initialize() -> Bytes {
    rpc(
        0,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
    )
}

struct Setup {
    /// Gateway RSS right after start, before any login (KiB).
    start_rss: u64,
    _dir: PathBuf,
    gateway: Proc,
    _backends: Vec<Proc>,
    gateway_port: u16,
    json_port: u16,
    sse_port: u16,
    token: String,
    /// Tokens of users who may use 1, 5 and 20 servers (`agg-01` …), for the aggregated `/mcp`.
    aggregated: Vec<(usize, String)>,
    /// The hostile scenario's attacker (default per-user limits, no servers).
    hostile_token: String,
}

/// Backends behind the aggregated-endpoint scenarios (all served by the JSON bench backend).
const AGGREGATED: [usize; 3] = [1, 5, 20];

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<(reqwest::header::HeaderMap, Value)> {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await?;
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {text}");
    }
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok((headers, value))
}

async fn setup(args: &Args) -> anyhow::Result<Setup> {
    let dir = std::env::temp_dir().join(format!("authmcp-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let json_port = free_port()?;
    let sse_port = free_port()?;
    let gateway_port = free_port()?;
    let spawn_backend = |port: u16, mode: &str| -> anyhow::Result<Proc> {
        Ok(Proc(
            Command::new(&args.backend)
                .arg(port.to_string())
                .arg(mode)
                .stdout(Stdio::null())
                .spawn()?,
        ))
    };
    let backends = vec![
        spawn_backend(json_port, "json")?,
        spawn_backend(sse_port, "sse")?,
    ];
    let mut gateway_cmd = Command::new(&args.gateway);
    gateway_cmd.env_clear();
    // `BENCH_GATEWAY_ENV="K=V K2=V2"`: extra environment for the gateway (`WORKER_THREADS=1`,
    // allocator tunables…).
    if let Ok(extra) = std::env::var("BENCH_GATEWAY_ENV") {
        for pair in extra.split_whitespace() {
            if let Some((k, v)) = pair.split_once('=') {
                gateway_cmd.env(k, v);
            }
        }
    }
    let gateway = Proc(
        gateway_cmd
            .env("GATEWAY_HOST", "127.0.0.1")
            .env("GATEWAY_PORT", gateway_port.to_string())
            .env("DATA_DIR", &dir)
            .env("KEY_DIR", dir.join("keys"))
            .env("WEB_DIR", dir.join("no-ui"))
            .env("ADMIN_USERNAME", "admin")
            .env("ADMIN_PASSWORD", PASSWORD)
            .env(
                "LOG_LEVEL",
                std::env::var("BENCH_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("MCP_HEALTH_INTERVAL_SECS", "0")
            // Rate limiting on, set high enough never to trigger.
            .env("MCP_RATE_LIMIT_USER_PER_MINUTE", "1000000000")
            .env("MCP_RATE_LIMIT_USER_SERVER_PER_MINUTE", "1000000000")
            // The harness opens 10,000 streams from one address; the hostile scenario floods
            // from another address (127.0.0.2), so this cap would hide its cost.
            .env("MAX_CONNECTIONS_PER_IP", "0")
            // The 128-connection row is one user with 128 requests in progress: under the
            // default cap of 64 per user, half of them would be answered 429.
            .env("MCP_MAX_CONCURRENT_PER_USER", "256")
            .stdout(if std::env::var_os("BENCH_GATEWAY_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .context("starting the gateway")?,
    );
    for port in [json_port, sse_port, gateway_port] {
        wait_port(port).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start_rss = memory_kib(gateway.0.id()).0;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{gateway_port}");
    let login = json!({"username": "admin", "password": PASSWORD});
    let (_, admin) = post_json(&http, &format!("{base}/admin/api/login"), None, login).await?;
    let admin = admin["access_token"]
        .as_str()
        .context("admin token")?
        .to_string();
    // A plain user with grants, so the access check is the real one (not the admin shortcut).
    let (_, user) = post_json(
        &http,
        &format!("{base}/admin/api/users"),
        Some(&admin),
        json!({"username": "loadtest", "password": PASSWORD, "role": "user"}),
    )
    .await?;
    let user_id = user["id"].as_i64().context("user id")?;
    for (name, port) in [("bench", json_port), ("bench-sse", sse_port)] {
        let (_, server) = post_json(&http, &format!("{base}/admin/api/mcp-servers"), Some(&admin),
            json!({"name": name, "url": format!("http://127.0.0.1:{port}/mcp"), "backend_token": "bench-backend-credential"})).await?;
        let res = http
            .patch(format!("{base}/admin/api/users/{user_id}/mcp-permissions"))
            .bearer_auth(&admin)
            .json(&json!({"server_id": server["id"], "can_access": true}))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("granting {name}: {}", res.status());
        }
    }
    let (_, tokens) = post_json(
        &http,
        &format!("{base}/auth/login"),
        None,
        json!({"username": "loadtest", "password": PASSWORD}),
    )
    .await?;
    // Twenty more servers for the aggregated endpoint, and users granted 1, 5 and 20 of them.
    let mut aggregated_ids = Vec::new();
    for i in 1..=20 {
        let (_, server) = post_json(&http, &format!("{base}/admin/api/mcp-servers"), Some(&admin),
            json!({"name": format!("agg-{i:02}"), "url": format!("http://127.0.0.1:{json_port}/mcp"), "backend_token": "bench-backend-credential"})).await?;
        aggregated_ids.push(server["id"].clone());
    }
    let mut aggregated = Vec::new();
    for n in AGGREGATED {
        let username = format!("agg{n}");
        let (_, user) = post_json(
            &http,
            &format!("{base}/admin/api/users"),
            Some(&admin),
            json!({"username": username, "password": PASSWORD, "role": "user"}),
        )
        .await?;
        for server_id in &aggregated_ids[..n] {
            let res = http
                .patch(format!(
                    "{base}/admin/api/users/{}/mcp-permissions",
                    user["id"]
                ))
                .bearer_auth(&admin)
                .json(&json!({"server_id": server_id, "can_access": true}))
                .send()
                .await?;
            if !res.status().is_success() {
                bail!("granting {username}: {}", res.status());
            }
        }
        let (_, t) = post_json(
            &http,
            &format!("{base}/auth/login"),
            None,
            json!({"username": username, "password": PASSWORD}),
        )
        .await?;
        aggregated.push((n, t["access_token"].as_str().context("token")?.to_string()));
    }
    // The hostile scenario's attacker: a user with the gateway's default per-user request
    // limit (the other bench users have limits high enough never to trigger).
    let (_, hostile_user) = post_json(
        &http,
        &format!("{base}/admin/api/users"),
        Some(&admin),
        json!({"username": "hostile", "password": PASSWORD, "role": "user"}),
    )
    .await?;
    let res = http
        .put(format!("{base}/admin/api/rate-limits"))
        .bearer_auth(&admin)
        .json(
            &json!({"user_per_minute": 1_000_000_000, "user_server_per_minute": 1_000_000_000,
            "user_tool_per_minute": 0,
            "overrides": [{"kind": "user", "user_id": hostile_user["id"], "per_minute": 6000}]}),
        )
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("limiting the hostile user: {}", res.status());
    }
    let (_, hostile) = post_json(
        &http,
        &format!("{base}/auth/login"),
        None,
        json!({"username": "hostile", "password": PASSWORD}),
    )
    .await?;
    Ok(Setup {
        hostile_token: hostile["access_token"]
            .as_str()
            .context("token")?
            .to_string(),
        aggregated,
        start_rss,
        _dir: dir,
        gateway,
        _backends: backends,
        gateway_port,
        json_port,
        sse_port,
        token: tokens["access_token"]
            .as_str()
            .context("token")?
            .to_string(),
    })
}

/// Opens a handshake-era session at `path` and returns its id.
async fn open_session(port: u16, path: &str, token: Option<&str>) -> anyhow::Result<String> {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut req = http
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(initialize());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await?;
    let session = res
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .context("no session id")?
        .to_string();
    res.bytes().await?;
    let mut note = http
        .post(&url)
        .header("content-type", "application/json")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    if let Some(t) = token {
        note = note.bearer_auth(t);
    }
    note.send().await?;
    Ok(session)
}

struct Row {
    scenario: String,
    conns: usize,
    direct: Measured,
    gateway: Measured,
    cpu_us_per_request: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The hostile scenario's attacker runs as its own (niced) process: see `hostile_run`.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--attack") {
        return attack_main(&argv[2..]).await;
    }
    let args = parse_args()?;
    let secs = if args.quick {
        Duration::from_millis(700)
    } else {
        Duration::from_secs(8)
    };
    let s = setup(&args).await?;
    let gw_pid = s.gateway.0.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle_rss, _) = memory_kib(gw_pid);
    // Idle as an operator sees it: after start-up's and setup's freed memory has gone back
    // (jemalloc's background thread purges freed pages over its 10-second decay). The budget
    // (idle ≤ 25 MB) is compared with this figure; the two above are reported as they were.
    let settled_rss = if args.quick {
        None
    } else {
        tokio::time::sleep(SETTLE).await;
        Some(memory_kib(gw_pid).0)
    };
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let auth = ("authorization".to_string(), format!("Bearer {}", s.token));
    let version = ("mcp-protocol-version".to_string(), "2025-11-25".to_string());
    let direct_session = open_session(s.json_port, "/mcp", None).await?;
    let gateway_session = open_session(s.gateway_port, "/mcp/bench", Some(&s.token)).await?;
    let direct_sse_session = open_session(s.sse_port, "/mcp", None).await?;
    let gateway_sse_session =
        open_session(s.gateway_port, "/mcp/bench-sse", Some(&s.token)).await?;
    let session = |id: &str| ("mcp-session-id".to_string(), id.to_string());
    let modern = vec![
        ("mcp-protocol-version".to_string(), "2026-07-28".to_string()),
        ("mcp-method".to_string(), "tools/call".to_string()),
        ("mcp-name".to_string(), "echo".to_string()),
    ];
    let modern_call = rpc(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hello"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}),
    );

    // Warm `tools/call` on the JSON backend, directly: the baseline of several scenarios.
    let direct_call = Target {
        addr: addr(s.json_port),
        path: "/mcp".into(),
        headers: vec![version.clone(), session(&direct_session)],
        bodies: vec![call_echo()],
    };
    let conns_list: &[usize] = if args.quick {
        &[1, 8]
    } else {
        &[1, 8, 32, 128]
    };
    let mut scenarios: Vec<(String, usize, Target, Target)> = Vec::new();
    for &conns in conns_list {
        scenarios.push((
            "tools/call (session, JSON)".into(),
            conns,
            direct_call.clone(),
            Target {
                addr: addr(s.gateway_port),
                path: "/mcp/bench".into(),
                headers: vec![auth.clone(), version.clone(), session(&gateway_session)],
                bodies: vec![call_echo()],
            },
        ));
    }
    let c = if args.quick { 8 } else { 32 };
    scenarios.push((
        "tools/list (session, JSON)".into(),
        c,
        Target {
            addr: addr(s.json_port),
            path: "/mcp".into(),
            headers: vec![version.clone(), session(&direct_session)],
            bodies: vec![rpc(2, "tools/list", json!({}))],
        },
        Target {
            addr: addr(s.gateway_port),
            path: "/mcp/bench".into(),
            headers: vec![auth.clone(), version.clone(), session(&gateway_session)],
            bodies: vec![rpc(2, "tools/list", json!({}))],
        },
    ));
    let direct_sse_call = Target {
        addr: addr(s.sse_port),
        path: "/mcp".into(),
        headers: vec![version.clone(), session(&direct_sse_session)],
        bodies: vec![call_echo()],
    };
    // The gateway against nginx: warm calls at 1, 8 and 32 connections (quick: 1 and 8).
    let reference_conns: &[usize] = if args.quick { &[1, 8] } else { &[1, 8, 32] };
    for &conns in reference_conns {
        scenarios.push((
            "tools/call (session, SSE response)".into(),
            conns,
            direct_sse_call.clone(),
            Target {
                addr: addr(s.gateway_port),
                path: "/mcp/bench-sse".into(),
                headers: vec![auth.clone(), version.clone(), session(&gateway_sse_session)],
                bodies: vec![call_echo()],
            },
        ));
    }
    scenarios.push((
        "tools/call (2026-07-28 stateless)".into(),
        c,
        Target {
            addr: addr(s.json_port),
            path: "/mcp".into(),
            headers: modern.clone(),
            bodies: vec![modern_call.clone()],
        },
        Target {
            addr: addr(s.gateway_port),
            path: "/mcp/bench".into(),
            headers: [vec![auth.clone()], modern.clone()].concat(),
            bodies: vec![modern_call.clone()],
        },
    ));
    scenarios.push((
        "new session: initialize + tools/list".into(),
        c,
        Target {
            addr: addr(s.json_port),
            path: "/mcp".into(),
            headers: vec![version.clone()],
            bodies: vec![initialize(), rpc(2, "tools/list", json!({}))],
        },
        Target {
            addr: addr(s.gateway_port),
            path: "/mcp/bench".into(),
            headers: vec![auth.clone(), version.clone()],
            bodies: vec![initialize(), rpc(2, "tools/list", json!({}))],
        },
    ));

    // The aggregated endpoint: lists merged over 1, 5 and 20 backends (warm: from the catalog),
    // and a routed call, against the same calls made directly to one backend.
    for (n, token) in &s.aggregated {
        let agg_auth = ("authorization".to_string(), format!("Bearer {token}"));
        let agg_session = open_session(s.gateway_port, "/mcp", Some(token)).await?;
        scenarios.push((
            format!("aggregated /mcp tools/list ({n} backends)"),
            c,
            Target {
                addr: addr(s.json_port),
                path: "/mcp".into(),
                headers: vec![version.clone(), session(&direct_session)],
                bodies: vec![rpc(2, "tools/list", json!({}))],
            },
            Target {
                addr: addr(s.gateway_port),
                path: "/mcp".into(),
                headers: vec![agg_auth.clone(), version.clone(), session(&agg_session)],
                bodies: vec![rpc(2, "tools/list", json!({}))],
            },
        ));
        if *n == 1 || *n == 20 {
            scenarios.push((
                format!("aggregated /mcp tools/call ({n} backends)"),
                c,
                direct_call.clone(),
                Target {
                    addr: addr(s.gateway_port),
                    path: "/mcp".into(),
                    headers: vec![agg_auth, version.clone(), session(&agg_session)],
                    bodies: vec![rpc(
                        1,
                        "tools/call",
                        json!({"name": "agg-01__echo", "arguments": {"text": "hello"}}),
                    )],
                },
            ));
        }
    }

    // The reference: the same call through a bare hyper proxy (no auth, no logging), the floor
    // for any gateway built on hyper on this machine. Its CPU is measured on its own process.
    let reference_port = free_port()?;
    let reference = Proc(
        Command::new(args.backend.with_file_name("bare-proxy"))
            .arg(reference_port.to_string())
            .arg(s.json_port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the reference proxy")?,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    scenarios.push((
        REFERENCE.into(),
        c,
        direct_call.clone(),
        Target {
            addr: addr(reference_port),
            path: "/mcp".into(),
            headers: vec![version.clone(), session(&direct_session)],
            bodies: vec![call_echo()],
        },
    ));

    // nginx, measured like the gateway (its CPU: master and workers); started only when one of
    // its rows is selected.
    let nginx_selected = reference_conns.iter().any(|c| {
        ["JSON", "SSE response"]
            .iter()
            .any(|kind| args.selects(&format!("{NGINX} (tools/call, session, {kind}) @{c}")))
    });
    let (nginx, nginx_json, nginx_sse) = if nginx_selected {
        let (nginx, json, sse) = start_nginx(&s._dir, s.json_port, s.sse_port)?;
        for port in [json, sse] {
            wait_port(port).await.with_context(|| {
                format!(
                    "nginx did not start: see {}",
                    s._dir.join("nginx/error.log").display()
                )
            })?;
        }
        (Some(nginx), json, sse)
    } else {
        (None, 0, 0)
    };
    for &conns in reference_conns {
        scenarios.push((
            format!("{NGINX} (tools/call, session, JSON)"),
            conns,
            direct_call.clone(),
            Target {
                addr: addr(nginx_json),
                path: "/mcp".into(),
                headers: vec![version.clone(), session(&direct_session)],
                bodies: vec![call_echo()],
            },
        ));
    }
    for &conns in reference_conns {
        scenarios.push((
            format!("{NGINX} (tools/call, session, SSE response)"),
            conns,
            direct_sse_call.clone(),
            Target {
                addr: addr(nginx_sse),
                path: "/mcp".into(),
                headers: vec![version.clone(), session(&direct_sse_session)],
                bodies: vec![call_echo()],
            },
        ));
    }

    let mut rows = Vec::new();
    for (name, conns, direct, through) in scenarios {
        if !args.selects(&format!("{name} @{conns}")) {
            continue;
        }
        let cpu = |pid: u32| {
            if name.starts_with(NGINX) {
                cpu_seconds_with_children(pid)
            } else {
                cpu_seconds(pid)
            }
        };
        let pid = if name == REFERENCE {
            reference.0.id()
        } else if let (true, Some(nginx)) = (name.starts_with(NGINX), &nginx) {
            nginx.0.id()
        } else {
            gw_pid
        };
        let direct = load(&direct, conns, secs).await?;
        let cpu_before = cpu(pid);
        eprintln!("through the gateway: {name} @ {conns}");
        let gateway = load(&through, conns, secs).await?;
        // Let the activity writer finish the batch this run queued: it is part of the cost.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let cpu = cpu(pid) - cpu_before;
        let cpu_us_per_request = cpu * 1e6 / (gateway.requests.max(1) as f64);
        eprintln!(
            "{name} @ {conns}: direct {:.0} rps, gateway {:.0} rps",
            direct.rps(),
            gateway.rps()
        );
        rows.push(Row {
            scenario: name,
            conns,
            direct,
            gateway,
            cpu_us_per_request,
        });
    }
    let (_, peak_rss) = memory_kib(gw_pid);

    // Hostile: the warm tools/call at 32 (8 quick) connections, quiet and then while another
    // address holds idle half-open connections and another user sends maximum-size initializes.
    let hostile = if args.selects("hostile") {
        // A fresh session: the new-session scenario churned the first one out of the user's
        // session budget (every legitimate call then failed).
        let hostile_session = open_session(s.gateway_port, "/mcp/bench", Some(&s.token)).await?;
        let legit = Target {
            addr: addr(s.gateway_port),
            path: "/mcp/bench".into(),
            headers: vec![auth.clone(), version.clone(), session(&hostile_session)],
            bodies: vec![call_echo()],
        };
        let (flood_conns, senders) = if args.quick { (300, 1) } else { (5000, 2) };
        // `BENCH_HOSTILE=flood,senders`: other sizes (e.g. one kind of attack alone).
        let (flood_conns, senders) = std::env::var("BENCH_HOSTILE")
            .ok()
            .and_then(|v| {
                let (f, s) = v.split_once(',')?;
                Some((f.trim().parse().ok()?, s.trim().parse().ok()?))
            })
            .unwrap_or((flood_conns, senders));
        Some(
            hostile_run(
                &legit,
                c,
                secs,
                gw_pid,
                s.gateway_port,
                flood_conns,
                senders,
                &s.hostile_token,
            )
            .await?,
        )
    } else {
        None
    };

    // Open server-to-client streams through the gateway and measure what they cost.
    let streams = match (args.quick, args.selects("streams")) {
        (_, false) => 0,
        (true, true) => 200,
        (false, true) => 10_000,
    };
    // `BENCH_STREAMS=n`: a different count (e.g. under a heap profiler).
    let streams = std::env::var("BENCH_STREAMS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(streams);
    let before_streams = memory_kib(gw_pid).0;
    // A fresh session: the new-session scenario churned through the user's session budget.
    let stream_session = open_session(s.gateway_port, "/mcp/bench", Some(&s.token)).await?;
    let (opened, handles) = open_streams(s.gateway_port, &stream_session, &s.token, streams).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_streams = memory_kib(gw_pid).0;
    for h in handles {
        h.abort();
    }
    let reported = report(
        &args,
        &rows,
        hostile.as_ref(),
        (s.start_rss, idle_rss, settled_rss),
        peak_rss,
        opened,
        before_streams,
        with_streams,
    );
    // Stop the processes before removing their data directory (nginx's is inside it).
    let dir = s._dir.clone();
    drop(nginx);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    reported
}

/// Opens `n` GET streams in one session; returns the live connections (dropped to close).
async fn open_streams(
    port: u16,
    session: &str,
    token: &str,
    n: usize,
) -> (usize, Vec<tokio::task::JoinHandle<()>>) {
    let mut handles = Vec::with_capacity(n);
    let mut ok = 0;
    for _ in 0..n {
        let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            break;
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await
        else {
            break;
        };
        let req = Request::get("/mcp/bench")
            .header("host", format!("127.0.0.1:{port}"))
            .header("accept", "text/event-stream")
            .header("authorization", format!("Bearer {token}"))
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .body(Full::new(Bytes::new()));
        let Ok(req) = req else { break };
        let driver = tokio::spawn(conn);
        // Count a stream only once the gateway has answered it with 200.
        let Ok(res) = sender.send_request(req).await else {
            driver.abort();
            break;
        };
        if !res.status().is_success() {
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            eprintln!(
                "opening SSE streams stopped: the gateway answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            driver.abort();
            break;
        }
        let handle = tokio::spawn(async move {
            let mut body = res.into_body();
            while let Some(Ok(_)) = body.frame().await {}
            driver.abort();
        });
        handles.push(handle);
        ok += 1;
    }
    (ok, handles)
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    rows: &[Row],
    hostile: Option<&Hostile>,
    (start_rss, idle_rss, settled_rss): (u64, u64, Option<u64>),
    peak_rss: u64,
    streams: usize,
    before: u64,
    with_streams: u64,
) -> anyhow::Result<()> {
    let mode = if args.quick {
        "quick (debug build, seconds; proves the harness works, says nothing about speed)"
    } else {
        "full (release build)"
    };
    println!("## MCP path benchmark: {mode}\n");
    println!(
        "| scenario | conns | direct req/s | gateway req/s | ratio | direct p50 / p90 / p99 ms | gateway p50 / p90 / p99 ms | added p50 / p99 ms | gateway CPU µs/req | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut json_rows = Vec::new();
    for r in rows {
        let (d, g) = (&r.direct, &r.gateway);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.3} / {:.3} / {:.3} | {:.3} / {:.3} / {:.3} | {:.3} / {:.3} | {:.1} | {} |",
            r.scenario,
            r.conns,
            d.rps(),
            g.rps(),
            g.rps() / d.rps().max(1e-9),
            d.percentile(0.5),
            d.percentile(0.9),
            d.percentile(0.99),
            g.percentile(0.5),
            g.percentile(0.9),
            g.percentile(0.99),
            g.percentile(0.5) - d.percentile(0.5),
            g.percentile(0.99) - d.percentile(0.99),
            r.cpu_us_per_request,
            d.errors + g.errors,
        );
        json_rows.push(json!({
            "scenario": r.scenario, "connections": r.conns,
            "direct": {"rps": d.rps(), "p50_ms": d.percentile(0.5), "p90_ms": d.percentile(0.9), "p99_ms": d.percentile(0.99), "errors": d.errors},
            "gateway": {"rps": g.rps(), "p50_ms": g.percentile(0.5), "p90_ms": g.percentile(0.9), "p99_ms": g.percentile(0.99), "errors": g.errors},
            "added_p50_ms": g.percentile(0.5) - d.percentile(0.5),
            "added_p99_ms": g.percentile(0.99) - d.percentile(0.99),
            "gateway_cpu_us_per_request": r.cpu_us_per_request,
        }));
    }
    // The gateway against nginx measured in the same run: the yardstick of #21.
    let mut against = Vec::new();
    for (kind, gateway_name) in [
        ("JSON", "tools/call (session, JSON)"),
        ("SSE response", "tools/call (session, SSE response)"),
    ] {
        let nginx_name = format!("{NGINX} (tools/call, session, {kind})");
        for g in rows.iter().filter(|r| r.scenario == gateway_name) {
            let Some(n) = rows
                .iter()
                .find(|r| r.scenario == nginx_name && r.conns == g.conns)
            else {
                continue;
            };
            let added = |r: &Row, p: f64| r.gateway.percentile(p) - r.direct.percentile(p);
            against.push(json!({
                "scenario": gateway_name, "connections": g.conns,
                "gateway_rps": g.gateway.rps(), "nginx_rps": n.gateway.rps(),
                "ratio": g.gateway.rps() / n.gateway.rps().max(1e-9),
                "gateway_added_p50_ms": added(g, 0.5), "nginx_added_p50_ms": added(n, 0.5),
                "gateway_added_p99_ms": added(g, 0.99), "nginx_added_p99_ms": added(n, 0.99),
                "gateway_cpu_us_per_request": g.cpu_us_per_request,
                "nginx_cpu_us_per_request": n.cpu_us_per_request,
            }));
        }
    }
    if !against.is_empty() {
        println!(
            "\n### Against nginx (same run)\n\n| scenario | conns | gateway req/s | nginx req/s | gateway ÷ nginx | added p50 ms, gateway / nginx | added p99 ms, gateway / nginx | CPU µs/req, gateway / nginx |\n|---|---|---|---|---|---|---|---|"
        );
        for a in &against {
            let f = |k: &str| a[k].as_f64().unwrap_or(0.0);
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.3} / {:.3} | {:.3} / {:.3} | {:.1} / {:.1} |",
                a["scenario"].as_str().unwrap_or(""),
                a["connections"],
                f("gateway_rps"),
                f("nginx_rps"),
                f("ratio"),
                f("gateway_added_p50_ms"),
                f("nginx_added_p50_ms"),
                f("gateway_added_p99_ms"),
                f("nginx_added_p99_ms"),
                f("gateway_cpu_us_per_request"),
                f("nginx_cpu_us_per_request"),
            );
        }
    }
    let stream_cost_mib = (with_streams.saturating_sub(before)) as f64 / 1024.0;
    let settled = settled_rss.map_or_else(
        || "not measured in quick mode".to_string(),
        |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
    );
    println!(
        "\nGateway memory: idle RSS at start {:.1} MiB, idle after setup (6 argon2id logins) {:.1} MiB, settled ({} s later, no requests; budget 25 MB) {settled}, peak during the runs {:.1} MiB, {streams} open SSE streams: +{:.1} MiB.",
        start_rss as f64 / 1024.0,
        idle_rss as f64 / 1024.0,
        SETTLE.as_secs(),
        peak_rss as f64 / 1024.0,
        stream_cost_mib
    );
    if let Some(h) = hostile {
        let ratio = h.attacked.rps() / h.quiet.rps().max(1e-9);
        println!(
            "\nHostile load (warm tools/call, session, JSON @ {}): quiet {:.0} req/s (p50 {:.3} ms, p99 {:.3} ms); while {} idle half-open connections from 127.0.0.2 are held open and {} sender(s) post {:.1} MiB initializes: {:.0} req/s (p50 {:.3} ms, p99 {:.3} ms), {:.2}× quiet (target ≥ 0.8), {} errors. Peak RSS during it {:.1} MiB = idle + {:.1} MiB (target ≤ idle + 150). Flood sockets (re)opened: {}; oversized initializes refused: {} (answered otherwise: {}).",
            h.conns,
            h.quiet.rps(),
            h.quiet.percentile(0.5),
            h.quiet.percentile(0.99),
            h.flood_conns,
            h.senders,
            h.init_bytes as f64 / 1048576.0,
            h.attacked.rps(),
            h.attacked.percentile(0.5),
            h.attacked.percentile(0.99),
            ratio,
            h.attacked.errors,
            h.peak_rss as f64 / 1024.0,
            h.peak_rss.saturating_sub(idle_rss) as f64 / 1024.0,
            h.flood_opened,
            h.refused,
            h.other,
        );
    }
    println!(
        "Rate limiting and activity logging are on (limits set high enough not to trigger). Aggregated scenarios: the same bench backend registered as 1, 5 or 20 servers; warm lists come from the gateway's catalog, so \"added\" is gateway time."
    );
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let out = json!({
        "mode": if args.quick { "quick" } else { "full" },
        "machine": {"cpu": machine, "cpus": cpus},
        "rows": json_rows,
        "against_nginx": against,
        "hostile": hostile.map(|h| json!({
            "connections": h.conns,
            "quiet_rps": h.quiet.rps(), "attacked_rps": h.attacked.rps(),
            "ratio": h.attacked.rps() / h.quiet.rps().max(1e-9),
            "attacked_p99_ms": h.attacked.percentile(0.99), "errors": h.attacked.errors,
            "idle_flood_connections": h.flood_conns, "flood_opened": h.flood_opened,
            "oversized_initialize_bytes": h.init_bytes, "oversized_refused": h.refused,
            "peak_rss_mib": h.peak_rss as f64 / 1024.0,
            "peak_over_idle_mib": h.peak_rss.saturating_sub(idle_rss) as f64 / 1024.0,
        })),
        "memory": {"start_rss_mib": start_rss as f64 / 1024.0, "idle_rss_mib": idle_rss as f64 / 1024.0, "settled_rss_mib": settled_rss.map(|kib| kib as f64 / 1024.0), "peak_rss_mib": peak_rss as f64 / 1024.0, "open_streams": streams, "open_streams_added_mib": stream_cost_mib},
    });
    std::fs::create_dir_all(&args.out)?;
    let file = args.out.join(if args.quick {
        "quick.json"
    } else {
        "results.json"
    });
    std::fs::write(&file, serde_json::to_string_pretty(&out)?)?;
    eprintln!("results written to {}", Path::new(&file).display());
    // A run with failed requests measured something else: the harness fails (the smoke test in
    // `cargo xtask test` relies on it).
    let mut failed: Vec<String> = rows
        .iter()
        .filter(|r| {
            r.direct.errors + r.gateway.errors > 0
                || r.direct.iterations == 0
                || r.gateway.iterations == 0
        })
        .map(|r| format!("{} @{}", r.scenario, r.conns))
        .collect();
    if let Some(h) = hostile
        && (h.quiet.errors > 0 || h.quiet.iterations == 0)
    {
        failed.push("hostile (quiet)".into());
    }
    if !failed.is_empty() {
        bail!("requests failed in: {}", failed.join(", "));
    }
    Ok(())
}

/// What the hostile scenario measured.
struct Hostile {
    conns: usize,
    quiet: Measured,
    attacked: Measured,
    flood_conns: usize,
    flood_opened: u64,
    senders: usize,
    init_bytes: usize,
    refused: u64,
    other: u64,
    peak_rss: u64,
}

/// An `initialize` of `size` bytes (a long array in `capabilities.experimental`).
fn oversized_initialize(size: usize) -> Bytes {
    let filler = "1,".repeat(size / 2 - 64);
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{"experimental":{{"x":[{filler}1]}}}},"clientInfo":{{"name":"hostile","version":"1"}}}}}}"#
    ))
}

/// Measures `legit` quiet, then under attack: another process (`--attack`, niced so that on a
/// small machine its own CPU use does not count against the gateway, as if it ran elsewhere)
/// keeps `flood_conns` idle half-open connections open from 127.0.0.2 (reopened when the
/// gateway closes them) and runs `senders` loops of maximum-size initializes as another user.
/// The gateway's RSS is sampled meanwhile.
#[allow(clippy::too_many_arguments)]
async fn hostile_run(
    legit: &Target,
    conns: usize,
    secs: Duration,
    gw_pid: u32,
    gateway_port: u16,
    flood_conns: usize,
    senders: usize,
    attacker_token: &str,
) -> anyhow::Result<Hostile> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let quiet = load(legit, conns, secs).await?;
    let warmup = Duration::from_secs(2);
    let attack_for = warmup + secs + Duration::from_millis(500);
    let attacker = Command::new("nice")
        .arg("-n")
        .arg("19")
        .arg(std::env::current_exe()?)
        .arg("--attack")
        .arg(gateway_port.to_string())
        .arg(attacker_token)
        .arg(flood_conns.to_string())
        .arg(senders.to_string())
        .arg(attack_for.as_millis().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the attacker (nice)")?;
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(memory_kib(gw_pid).0, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Let the flood build up before measuring.
    tokio::time::sleep(warmup).await;
    eprintln!("through the gateway: hostile @ {conns}");
    let attacked = load(legit, conns, secs).await?;
    let out = tokio::task::spawn_blocking(move || attacker.wait_with_output()).await??;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let counts: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    eprintln!(
        "hostile @ {conns}: quiet {:.0} rps, attacked {:.0} rps; attacker {counts}",
        quiet.rps(),
        attacked.rps()
    );
    Ok(Hostile {
        conns,
        quiet,
        attacked,
        flood_conns,
        flood_opened: counts["opened"].as_u64().unwrap_or(0),
        senders,
        init_bytes: ATTACK_INIT_BYTES,
        refused: counts["refused"].as_u64().unwrap_or(0),
        other: counts["other"].as_u64().unwrap_or(0),
        peak_rss: peak.load(Ordering::Relaxed),
    })
}

/// The size of the attacker's initializes (just under `MCP_MAX_REQUEST_BYTES`).
const ATTACK_INIT_BYTES: usize = 4 * 1024 * 1024 - 1024;

/// `bench --attack <port> <token> <flood> <senders> <ms>`: the hostile scenario's attacker.
/// Prints `{"opened", "refused", "other"}` when done: flood sockets (re)opened, initializes
/// refused as too large (400) and answered otherwise (429 once over the user's byte budget or
/// request limit).
async fn attack_main(argv: &[String]) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use tokio::io::AsyncWriteExt;
    let arg = |i: usize| {
        argv.get(i)
            .context("bench --attack <port> <token> <flood> <senders> <ms>")
    };
    let gateway = SocketAddr::from(([127, 0, 0, 1], arg(0)?.parse::<u16>()?));
    let token = arg(1)?.clone();
    let flood: usize = arg(2)?.parse()?;
    let senders: usize = arg(3)?.parse()?;
    let duration = Duration::from_millis(arg(4)?.parse()?);
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // The idle flood: each task keeps one half-open head open, and opens another when the
    // gateway closes it.
    for _ in 0..flood {
        let (stop, opened) = (stop.clone(), opened.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                    return;
                };
                if socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).is_err() {
                    return;
                }
                let Ok(mut stream) = socket.connect(gateway).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let _ = stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                    .await;
                let mut buf = [0u8; 64];
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buf);
                    if let Ok(Ok(0) | Err(_)) =
                        tokio::time::timeout(Duration::from_millis(500), read).await
                    {
                        break;
                    }
                }
            }
        }));
    }
    // The oversized initializes, from another user.
    let body = oversized_initialize(ATTACK_INIT_BYTES);
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::new();
    for _ in 0..senders {
        let (stop, refused, other, http, body) = (
            stop.clone(),
            refused.clone(),
            other.clone(),
            http.clone(),
            body.clone(),
        );
        let (url, token) = (format!("http://{gateway}/mcp"), token.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let res = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .body(body.clone())
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 400 => refused.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    println!(
        "{}",
        json!({"opened": opened.load(Ordering::Relaxed), "refused": refused.load(Ordering::Relaxed),
            "other": other.load(Ordering::Relaxed)})
    );
    Ok(())
}
