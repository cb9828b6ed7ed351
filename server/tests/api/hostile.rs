//! Bounded under hostile load: floods of connections, messages, tokens and guesses must not
//! lock anybody else out or pin unbounded memory.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{ADMIN_PASSWORD, Backend, TestApp, TestEnv, db_test};

/// A gateway on a fresh SQLite store with the bootstrap admin and these settings.
async fn gateway_with(vars: &[(&str, &str)]) -> TestApp {
    let mut env = TestEnv::new(Backend::Sqlite).await.with_admin();
    for (key, value) in vars {
        env = env.with_var(key, value);
    }
    env.spawn().await
}

/// A socket from `source` (any 127.0.0.0/8 address works on Linux) that sends an unfinished
/// request head and then nothing.
async fn half_open_head(source: &str, gateway: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(format!("{source}:0").parse().ok()?).ok()?;
    let mut stream = socket.connect(gateway).await.ok()?;
    let _ = stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await;
    Some(stream)
}

/// Whether the gateway has closed `stream` (EOF or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A 503 or similar before closing is fine: keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// An MCP client's `initialize` on the aggregated endpoint (served without any backend).
async fn mcp_initialize(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
) -> reqwest::StatusCode {
    client
        .post(app.url("/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}
        }))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(reqwest::StatusCode::GATEWAY_TIMEOUT)
}

#[tokio::test]
async fn a_slowloris_flood_locks_nobody_out_and_is_closed_after_the_head_timeout() {
    let app = gateway_with(&[
        ("HTTP_HEADER_TIMEOUT_SECS", "2"),
        ("MAX_CONNECTIONS", "1000"),
        ("MAX_CONNECTIONS_PER_IP", "0"),
    ])
    .await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    assert_eq!(mcp_initialize(&app, &app.client, &token).await, 200);

    // Three times the connection cap of unfinished heads from another address.
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..3000 {
        if let Some(stream) = half_open_head("127.0.0.2", app.addr).await {
            flood.push(stream);
        }
    }
    assert!(flood.len() >= 2900, "the flood connected: {}", flood.len());

    // The burst filled the cap and its slack faster than the shed's quiet minimum (250 ms), so
    // a connection made at once may be refused; shedding (not the 2 s head timeout) must make
    // room within a moment, so a client retrying is let in well inside a second.
    let flood_done = Instant::now();
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let health = |client: reqwest::Client| {
        let url = app.url("/health");
        async move {
            client
                .get(url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .map(|r| r.status())
        }
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        match health(fresh.clone()).await {
            Ok(status) => {
                assert_eq!(status, 200);
                break;
            }
            Err(e) => assert!(
                flood_done.elapsed() < Duration::from_secs(1),
                "still refused {:?} after the flood ({attempts} attempts): {e}",
                flood_done.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // From then on health and an authenticated MCP client are served on every new connection
    // (each request on its own: a pooled keep-alive connection is quiet and may be shed just
    // as it is reused, as with any server's keep-alive timeout).
    for _ in 0..5 {
        let status = health(fresh.clone())
            .await
            .expect("/health answers during the flood");
        assert_eq!(status, 200);
        assert_eq!(
            mcp_initialize(&app, &fresh, &token).await,
            200,
            "MCP during the flood"
        );
    }
    let open = app.state.connections.open();
    assert!(
        open <= 1000 + 1000 / 8,
        "the gateway holds at most the cap (and its slack): {open}"
    );

    // Every flood socket is closed: shed, or at the latest after the 2 s head timeout.
    let deadline = started + Duration::from_secs(6);
    let mut still_open = 0;
    for stream in &mut flood {
        let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(50);
        if !closed_within(stream, wait).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "half-open heads outlived the head timeout");
    app.stop().await;
}

#[tokio::test]
async fn one_address_gets_at_most_its_share_of_connections() {
    let app = gateway_with(&[("MAX_CONNECTIONS_PER_IP", "50")]).await;
    let mut flood = Vec::new();
    for _ in 0..80 {
        if let Some(stream) = half_open_head("127.0.0.3", app.addr).await {
            flood.push(stream);
        }
    }
    // Let the gateway accept all of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut closed = 0;
    for stream in &mut flood {
        if closed_within(stream, Duration::from_millis(20)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 30,
        "the connections over the cap of 50 are closed at once"
    );
    let health = app.get("/health").await;
    assert_eq!(health.status(), 200, "other addresses are served");
    drop(flood);
    // Places are given back when the sockets close.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.connections.open() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.state.connections.open() <= 1);
    let again = half_open_head("127.0.0.3", app.addr).await.unwrap();
    let mut again = again;
    assert!(
        !closed_within(&mut again, Duration::from_millis(200)).await,
        "the address is admitted again once its sockets closed"
    );
    app.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_but_streams_are_not() {
    let app = gateway_with(&[("HTTP_IDLE_TIMEOUT_SECS", "1")]).await;
    // A finished request, then silence on the same connection.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(4)).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed only after the idle timeout: {waited:?}"
    );

    // A streaming response in progress is not idle, however quiet: the aggregated session's
    // GET stream sends nothing for 15 s.
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    let init = app
        .client
        .post(app.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}
        }))
        .send()
        .await
        .unwrap();
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut stream = app
        .client
        .get(app.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let quiet = tokio::time::timeout(Duration::from_millis(2500), stream.chunk()).await;
    assert!(
        quiet.is_err(),
        "the stream stayed open past the idle timeout: {quiet:?}"
    );
    // Closed by the client (shutdown would otherwise wait for it to drain).
    drop(stream);
    app.stop().await;
}

/// Sums what the stored `token_invalid` events stand for: one each, or their `repeated` /
/// `folded` count.
async fn stored_token_invalid(app: &TestApp) -> (usize, u64) {
    let rows = app.events("token_invalid", 100_000).await;
    let total = rows
        .iter()
        .map(|r| {
            let details: serde_json::Value =
                serde_json::from_str(r.details.as_deref().unwrap_or("{}")).unwrap();
            details["repeated"]
                .as_u64()
                .or(details["folded"].as_u64())
                .unwrap_or(1)
        })
        .sum();
    (rows.len(), total)
}

#[tokio::test]
async fn a_flood_of_bad_tokens_folds_and_cannot_crowd_out_a_real_event() {
    let (app, admin) = TestApp::sqlite_with_admin().await;
    let server = crate::mcp::add_server(
        &app,
        &admin,
        json!({"name": "guarded", "url": "http://127.0.0.1:9/mcp"}),
    )
    .await;
    let _eve = app.create_user(&admin, "eve", "user").await;
    let eve = crate::mcp::user_token(&app, "eve").await;
    assert!(server > 0);

    // 100,000 distinct bad tokens on distinct paths: no two events are identical.
    let url = app.url("");
    let flood = futures::stream::iter(0..100_000u32)
        .map(|i| {
            let client = app.client.clone();
            let url = format!("{url}/mcp/s{i}");
            async move {
                client
                    .post(url)
                    .bearer_auth(format!("eyJhbGciOiJFZERTQSJ9.{i:x}.AAAA"))
                    .header("accept", "application/json, text/event-stream")
                    .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
                    .header("content-type", "application/json")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(64)
        .fold(0u32, |refused, status| async move {
            refused + u32::from(status == 401)
        })
        .await;
    assert_eq!(flood, 100_000, "every bad token was refused");
    let recorded = app
        .state
        .events
        .counts()
        .into_iter()
        .find(|(t, _)| *t == "token_invalid")
        .map(|(_, n)| n)
        .unwrap_or(0);
    assert_eq!(recorded, 100_000);

    // A real event right after the flood is written at once.
    let (status, _, body) = crate::mcp::rpc_at(
        &app,
        "/mcp/guarded",
        Some(&eve),
        None,
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let denied = app.wait_for_event("access_denied").await;
    assert_eq!(denied.server.as_deref(), Some("guarded"));
    assert_eq!(app.state.events.dropped(), 0, "nothing was dropped");

    // The flood is a handful of rows that still account for every bad token.
    app.state.events.flush_repeats();
    let mut stored = (0, 0);
    for _ in 0..100 {
        stored = stored_token_invalid(&app).await;
        if stored.1 == 100_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored.1, 100_000, "rows stand for every event: {stored:?}");
    assert!(
        stored.0 <= 200,
        "the flood folded into few rows: {}",
        stored.0
    );
    app.stop().await;
}

/// Sends `n` concurrent logins (`username(i)`, wrong password); returns how many were answered
/// 401 (a password was verified and was wrong) and how many 429.
async fn login_burst(
    app: &TestApp,
    n: usize,
    username: impl Fn(usize) -> String,
) -> (usize, usize) {
    let attempts = (0..n).map(|i| {
        let req = app
            .client
            .post(app.url("/auth/login"))
            .json(&json!({"username": username(i), "password": "wrong password 12345"}));
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    });
    let statuses = futures::future::join_all(attempts).await;
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert_eq!(count(401) + count(429), n, "{statuses:?}");
    (count(401), count(429))
}

/// The bootstrap admin's login with the right password.
async fn admin_login(app: &TestApp) -> reqwest::Response {
    app.post_json(
        "/auth/login",
        None,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await
}

#[tokio::test]
async fn a_burst_of_guesses_verifies_no_more_passwords_than_the_budgets() {
    // The username's budget (5 failures) holds against 200 concurrent guesses.
    let app = gateway_with(&[("LOGIN_IP_MAX_FAILURES", "100000")]).await;
    let (wrong, refused) = login_burst(&app, 200, |_| "admin".into()).await;
    assert!(wrong <= 5, "at most the threshold was verified: {wrong}");
    assert_eq!(wrong + refused, 200);
    let res = admin_login(&app).await;
    assert_eq!(res.status(), 429, "the account is locked after the burst");
    app.stop().await;

    // The address's budget (10 failures) holds against 200 concurrent guesses at 200 names.
    let app = gateway_with(&[
        ("LOGIN_IP_MAX_FAILURES", "10"),
        ("LOGIN_MAX_FAILURES", "100"),
    ])
    .await;
    let (wrong, _) = login_burst(&app, 200, |i| format!("user{i}")).await;
    assert!(
        wrong <= 10,
        "at most the address's budget was verified: {wrong}"
    );
    let res = admin_login(&app).await;
    assert_eq!(res.status(), 429, "the address has used its budget");
    app.stop().await;
}

use crate::helpers::GatewayProcess;

impl GatewayProcess {
    /// Registers a server as the bootstrap admin; the admin's MCP token.
    async fn with_server(&self, server: serde_json::Value) -> String {
        let client = reqwest::Client::new();
        let token_of = |path: &str| {
            let req = client
                .post(format!("{}{path}", self.url))
                .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}));
            async move {
                let res: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
                res["access_token"].as_str().unwrap().to_string()
            }
        };
        let admin = token_of("/admin/api/login").await;
        let res = client
            .post(format!("{}/admin/api/mcp-servers", self.url))
            .bearer_auth(&admin)
            .json(&server)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        token_of("/auth/login").await
    }

    /// Resident memory in KiB (`VmRSS`).
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

/// An `initialize` whose capabilities hold `size` bytes of JSON.
fn initialize_of(size: usize) -> Vec<u8> {
    let filler = "[1,".to_string() + &"1,".repeat(size / 2) + "1]";
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{"experimental":{{"x":{{"big":{filler}}}}}}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn one_user_cannot_pin_memory_with_large_messages() {
    let backend = crate::gate::RecordingBackend::start().await;
    // The byte budget would refuse most of these first; this test is about what is kept.
    let env = TestEnv::new(Backend::Sqlite)
        .await
        .with_admin()
        .with_var("MCP_RATE_LIMIT_USER_BYTES_PER_MINUTE", "0");
    let gw = GatewayProcess::start(env).await;
    let client = reqwest::Client::new();
    let token = gw
        .with_server(json!({"name": "rec", "url": backend.url()}))
        .await;

    let send = |path: &'static str, body: Vec<u8>| {
        let req = client
            .post(format!("{}{path}", gw.url))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (status, body)
        }
    };
    // Warm up (one session, one refusal) before the baseline.
    assert_eq!(send("/mcp/rec", initialize_of(100)).await.0, 200);
    let before = gw.rss_kib();

    // 256 maximum-size initializes (4 MB, the request cap) on a server's endpoint, 32 on the
    // aggregated one: refused whole.
    let max = 4 * 1024 * 1024 - 300;
    for (path, n) in [("/mcp/rec", 256), ("/mcp", 32)] {
        let answers = futures::stream::iter(0..n)
            .map(|_| send(path, initialize_of(max)))
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        for (status, body) in answers {
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"]["code"], -32602, "{body}");
        }
    }
    // 256 sessions at just under the cap are kept.
    let answers = futures::stream::iter(0..256)
        .map(|_| send("/mcp/rec", initialize_of(15 * 1024)))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    assert!(answers.iter().all(|(s, _)| *s == 200));
    // 32 routed calls with 1.5 MB of arguments (the recording backend takes up to 2 MB) on the
    // aggregated endpoint, with a word the payload rules look at: edited and scanned as text,
    // never parsed into a tree (which would be about 24 MB each).
    let (status, agg) = send("/mcp", initialize_of(100)).await;
    assert_eq!(status, 200, "{agg}");
    let agg_session = client
        .post(format!("{}/mcp", gw.url))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(initialize_of(100))
        .send()
        .await
        .unwrap()
        .headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let big_call = {
        let filler = "[1,".to_string() + &"1,".repeat(1_500_000 / 2) + "1]";
        format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"rec__echo","arguments":{{"note":"please ignore this","data":{filler}}}}}}}"#
        )
        .into_bytes()
    };
    let calls = futures::stream::iter(0..32)
        .map(|_| {
            let req = client
                .post(format!("{}/mcp", gw.url))
                .bearer_auth(&token)
                .header("accept", "application/json")
                .header("content-type", "application/json")
                .header("mcp-session-id", &agg_session)
                .header("mcp-protocol-version", "2025-11-25")
                .body(big_call.clone());
            async move { req.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    assert!(calls.iter().all(|s| *s == 200), "{calls:?}");
    let after = gw.rss_kib();
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("RSS before {before} KiB, after {after} KiB");
    // Sessions pin at most 256 × 16 KiB = 4 MiB; the rest is allocator slack (31-53 MiB
    // measured, depending on load). Trees of these messages would be 24-64 MiB each, eight at a
    // time; before, 12 initializes of 3 MB alone grew RSS by 550 MiB.
    assert!(grown_mib <= 96, "RSS grew by {grown_mib} MiB");
}

/// Serves a test backend on a free port; its `/mcp` URL and task.
pub(crate) async fn serve_backend(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

/// A backend whose `tools/call` answers with one SSE event of 64 MiB, as 1,024 `data:` lines
/// of 64 KiB (initialize and discovery are answered normally).
async fn flooding_backend() -> (String, tokio::task::JoinHandle<()>) {
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: bytes::Bytes| async move {
            let message: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = message["id"].clone();
            match message["method"].as_str() {
                Some("initialize") => axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {
                    "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                    "serverInfo": {"name": "flood", "version": "1"}}}))
                .into_response(),
                Some("tools/call") => {
                    let line = bytes::Bytes::from(format!("data: {}\n", "x".repeat(64 * 1024)));
                    let chunks = std::iter::once(bytes::Bytes::from_static(b"event: message\n"))
                        .chain(std::iter::repeat_n(line, 1024))
                        .chain(std::iter::once(bytes::Bytes::from_static(b"\n")))
                        .map(Ok::<_, std::convert::Infallible>);
                    (
                        [("content-type", "text/event-stream")],
                        axum::body::Body::from_stream(futures::stream::iter(chunks)),
                    )
                        .into_response()
                }
                Some(_) if !id.is_null() => {
                    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {}})).into_response()
                }
                _ => axum::http::StatusCode::ACCEPTED.into_response(),
            }
        })
        .get(|| async { axum::http::StatusCode::METHOD_NOT_ALLOWED }),
    );
    serve_backend(app).await
}

#[tokio::test]
async fn a_backends_64_mib_event_gets_a_clean_error_and_bounded_memory() {
    let (backend, _task) = flooding_backend().await;
    let env = TestEnv::new(Backend::Sqlite).await.with_admin();
    let gw = GatewayProcess::start(env).await;
    let client = reqwest::Client::new();
    let token = gw
        // It lists no tools: under quarantine its tool would be refused.
        .with_server(json!({"name": "flood", "url": backend, "transport": "streamable-http", "tool_pinning": "warn"}))
        .await;
    let rpc = |session: Option<String>, body: serde_json::Value| {
        let mut req = client
            .post(format!("{}/mcp/flood", gw.url))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            req = req
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        req.send()
    };
    let init = rpc(
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let before = gw.rss_kib();
    for i in 0..3 {
        let res = rpc(
            Some(session.clone()),
            json!({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call",
                   "params": {"name": "big", "arguments": {}}}),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(
            text.len() < 64 * 1024,
            "nothing of the event was relayed: {} bytes",
            text.len()
        );
        let error: serde_json::Value = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_else(|| panic!("an error event: {text}"));
        assert_eq!(error["id"], 10 + i, "{error}");
        assert_eq!(error["error"]["code"], -32005, "{error}");
    }
    let after = gw.rss_kib();
    eprintln!("RSS before {before} KiB, after {after} KiB");
    // At most one event's limit (16 MiB, MCP_MAX_RESPONSE_BYTES) held at a time, plus slack.
    assert!(
        after.saturating_sub(before) / 1024 <= 48,
        "RSS grew from {before} to {after} KiB"
    );
}

#[tokio::test]
async fn ten_thousand_random_methods_leave_the_metrics_bounded() {
    let backend = crate::gate::RecordingBackend::start().await;
    let app = gateway_with(&[
        ("METRICS_PUBLIC", "true"),
        ("MCP_RATE_LIMIT_USER_PER_MINUTE", "0"),
        ("MCP_RATE_LIMIT_USER_SERVER_PER_MINUTE", "0"),
    ])
    .await;
    let admin = app.admin_token().await;
    crate::mcp::add_server(&app, &admin, json!({"name": "rec", "url": backend.url()})).await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    let (status, headers, _) = crate::mcp::rpc_at(
        &app,
        "/mcp/rec",
        Some(&token),
        None,
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200);
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();

    // 5,000 notifications with random methods (passed on) and 5,000 requests with random
    // methods (refused): 10,000 distinct method strings.
    let url = app.url("/mcp/rec");
    let statuses = futures::stream::iter(0..10_000u32)
        .map(|i| {
            let method = if i % 2 == 0 {
                format!("notifications/r{:x}", i.wrapping_mul(2_654_435_761))
            } else {
                format!("r{:x}/call", i.wrapping_mul(2_654_435_761))
            };
            let body = if i % 2 == 0 {
                json!({"jsonrpc": "2.0", "method": method})
            } else {
                json!({"jsonrpc": "2.0", "id": i, "method": method})
            };
            let req = app
                .client
                .post(&url)
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", &session)
                .header("mcp-protocol-version", "2025-11-25")
                .json(&body);
            async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 400),
        "{:?}",
        &statuses[..10]
    );
    assert!(statuses.iter().filter(|s| **s == 202).count() >= 4_900);

    // The activity writer feeds the metrics every 250 ms; one more request to see when it has.
    let (status, _, _) = crate::mcp::rpc_at(
        &app,
        "/mcp/rec",
        Some(&token),
        Some(&session),
        &[("mcp-protocol-version", "2025-11-25")],
        json!({"jsonrpc": "2.0", "id": "last", "method": "tools/list"}),
    )
    .await;
    assert_eq!(status, 200);
    let mut series = 0;
    let mut counted = 0.0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = app.get("/metrics").await.text().await.unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("valid text format");
        let requests: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "authmcp_mcp_requests_total")
            .collect();
        series = requests.len();
        counted = requests
            .iter()
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum();
        if counted >= 2.0 {
            break;
        }
    }
    assert!(
        counted >= 2.0,
        "initialize and tools/list counted: {counted}"
    );
    assert!(series <= 10, "a bounded number of series: {series}");
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !text.contains("notifications/r") && !text.contains("/call\""),
        "no client-chosen method became a label"
    );
    app.stop().await;
}

#[tokio::test]
async fn on_a_public_address_the_first_admin_needs_the_setup_token_from_the_log() {
    use std::io::BufRead;
    let env = TestEnv::new(Backend::Sqlite)
        .await
        .with_var("GATEWAY_HOST", "0.0.0.0");
    let mut gw = GatewayProcess::start_with(env, true).await;
    let stdout = gw.child.stdout.take().unwrap();
    let token = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split_whitespace()
                    .find(|w| w.starts_with("setup_"))
                    .map(str::to_string)
            })
    })
    .await
    .unwrap()
    .expect("the setup token is in the log");
    let client = reqwest::Client::new();
    let status: serde_json::Value = client
        .get(format!("{}/setup/status", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status,
        json!({"setup_required": true, "token_required": true})
    );
    let create = |token: Option<&str>| {
        let mut body = json!({"username": "first", "password": "a long unusual passphrase"});
        if let Some(token) = token {
            body["setup_token"] = json!(token);
        }
        client
            .post(format!("{}/setup/create-admin", gw.url))
            .json(&body)
            .send()
    };
    for wrong in [
        None,
        Some(""),
        Some("setup_wrong"),
        Some(&token[..token.len() - 1]),
    ] {
        let res = create(wrong).await.unwrap();
        assert_eq!(res.status(), 403, "{wrong:?}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }
    let status: serde_json::Value = client
        .get(format!("{}/setup/status", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["setup_required"], true, "nobody was created");
    assert_eq!(create(Some(&token)).await.unwrap().status(), 201);
    assert_eq!(
        create(Some(&token)).await.unwrap().status(),
        409,
        "one time: the admin exists"
    );
}

/// A backend whose `tools/call` takes `delay` (everything else answers at once).
async fn slow_backend(delay: Duration) -> (String, tokio::task::JoinHandle<()>) {
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |body: bytes::Bytes| async move {
            let message: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = message["id"].clone();
            let result = match message["method"].as_str() {
                Some("initialize") => json!({"protocolVersion": "2025-11-25",
                    "capabilities": {"tools": {}}, "serverInfo": {"name": "slow", "version": "1"}}),
                Some("tools/call") => {
                    tokio::time::sleep(delay).await;
                    json!({"content": [{"type": "text", "text": "done"}]})
                }
                _ if id.is_null() => return axum::http::StatusCode::ACCEPTED.into_response(),
                _ => json!({}),
            };
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
        })
        .get(|| async { axum::http::StatusCode::METHOD_NOT_ALLOWED }),
    );
    serve_backend(app).await
}

#[tokio::test]
async fn one_user_holds_at_most_its_share_of_requests_in_progress() {
    let (backend, _task) = slow_backend(Duration::from_millis(1500)).await;
    let app = gateway_with(&[
        ("MCP_MAX_CONCURRENT_PER_USER", "4"),
        ("MCP_RATE_LIMIT_USER_TOOL_PER_MINUTE", "0"),
    ])
    .await;
    let admin = app.admin_token().await;
    let server = crate::mcp::add_server(
        &app,
        &admin,
        json!({"name": "slow", "url": backend, "transport": "streamable-http"}),
    )
    .await;
    let other = app.create_user(&admin, "olga", "user").await;
    crate::mcp::set_access(&app, &admin, other, server, true).await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    let olga = crate::mcp::user_token(&app, "olga").await;
    let session_of = |token: String| {
        let app = &app;
        async move {
            let (status, headers, body) = crate::mcp::rpc_at(
                app,
                "/mcp/slow",
                Some(&token),
                None,
                &[],
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            headers["mcp-session-id"].to_str().unwrap().to_string()
        }
    };
    let mine = session_of(token.clone()).await;
    let hers = session_of(olga.clone()).await;
    let call = |token: String, session: String, id: u32| {
        let app = &app;
        async move {
            crate::mcp::rpc_at(
                app,
                "/mcp/slow",
                Some(&token),
                Some(&session),
                &[("mcp-protocol-version", "2025-11-25")],
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                       "params": {"name": "wait", "arguments": {}}}),
            )
            .await
        }
    };
    let burst = futures::future::join_all((0..10).map(|i| call(token.clone(), mine.clone(), i)));
    let hers = async {
        // While the burst holds its four places, another user is served.
        tokio::time::sleep(Duration::from_millis(300)).await;
        call(olga.clone(), hers.clone(), 99).await
    };
    let (answers, hers) = tokio::join!(burst, hers);
    assert_eq!(hers.0, 200, "{}", hers.2);
    let served = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(served, 4, "{answers:?}");
    assert_eq!(refused.len(), 6);
    for (_, headers, body) in refused {
        assert_eq!(body["error"]["code"], -32029, "{body}");
        assert_eq!(body["error"]["data"]["scope"], "concurrency", "{body}");
        assert!(headers.contains_key("retry-after"));
    }
    // Places are given back: the user is served again.
    let (status, _, body) = call(token.clone(), mine.clone(), 50).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

/// Sends raw bytes on a fresh connection; returns what the gateway answered within `wait`.
async fn raw_exchange(app: &TestApp, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn mcp_bodies_too_large_by_their_own_account_or_too_slow_are_refused() {
    // Sign in on the same store under the default timeout, then restart with a 1 s request
    // timeout: hashing the password can take longer than a second while the other tests load
    // both cores (CI saw three minutes of 504s in a row next to the memory-pinning test), and
    // the token outlives the restart (the signing key is kept).
    let env = TestEnv::new(Backend::Sqlite).await.with_admin();
    let app = env.spawn().await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    app.stop().await;
    let app = env
        .clone_with_var("REQUEST_TIMEOUT_SECS", "1")
        .spawn()
        .await;
    let head = |length: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    // A declared length over MCP_MAX_REQUEST_BYTES: 413 before a byte of the body is sent.
    let started = Instant::now();
    let answer = raw_exchange(&app, head("999999999").as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("-32005"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // A body that stops arriving: 408 after REQUEST_TIMEOUT_SECS.
    let mut request = head("200").into_bytes();
    request.extend_from_slice(br#"{"jsonrpc":"2.0","#);
    let started = Instant::now();
    let answer = raw_exchange(&app, &request, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("-32600"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The OAuth form endpoints are bounded in time too.
    let request = b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=";
    let answer = raw_exchange(&app, request, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn behind_trusted_proxies_the_first_admin_needs_the_setup_token_even_on_loopback() {
    let app = TestEnv::new(Backend::Sqlite)
        .await
        .with_var("TRUSTED_PROXIES", "10.0.0.0/8")
        .spawn()
        .await;
    let status: serde_json::Value = app.get("/setup/status").await.json().await.unwrap();
    assert_eq!(
        status,
        json!({"setup_required": true, "token_required": true})
    );
    let res = app
        .post_json(
            "/setup/create-admin",
            None,
            json!({"username": "first", "password": "a long unusual passphrase"}),
        )
        .await;
    assert_eq!(res.status(), 403);
    app.stop().await;

    let app = TestEnv::new(Backend::Sqlite).await.spawn().await;
    let status: serde_json::Value = app.get("/setup/status").await.json().await.unwrap();
    assert_eq!(
        status,
        json!({"setup_required": true, "token_required": false}),
        "loopback without proxies stays one step"
    );
    app.stop().await;
}

db_test! {
    /// Postgres text cannot hold a NUL (U+0000): every way a client can send one is refused
    /// with a clear error before anything is stored or looked up (on SQLite, which could store
    /// it, the same), and an MCP client's name is shown without control characters, so that no
    /// batch of activity records (everyone's) can fail on it.
    async fn a_nul_character_is_refused_everywhere_and_fails_no_write(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let code = |v: &serde_json::Value| v["error"]["code"].as_str().unwrap_or_default().to_string();
        // JSON bodies: a NUL in anything read (any field, the password too) is `invalid_body`,
        // unauthenticated or not; in a field the API ignores it is ignored with the field; the
        // text `\u0000` (an escaped backslash) is ordinary text.
        for (body, status) in [
            (r#"{"username": "ad\u0000min", "password": "x"}"#, 400),
            (r#"{"username": "admin", "password": "x\u0000"}"#, 400),
            (r#"{"username": "admin", "password": "x", "\u0000": "\u0000"}"#, 401),
        ] {
            let res = app.client.post(app.url("/auth/login"))
                .header("content-type", "application/json").body(body).send().await.unwrap();
            assert_eq!(res.status().as_u16(), status, "{body}");
            if status == 400 {
                assert_eq!(code(&res.json().await.unwrap()), "invalid_body", "{body}");
            }
        }
        let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
        for (name, status) in [(r#""k\u0000""#, 400), (r#""k\\u0000""#, 201)] {
            let res = app.client.post(app.url("/auth/api-keys")).bearer_auth(&token)
                .header("content-type", "application/json")
                .body(format!(r#"{{"name": {name}}}"#)).send().await.unwrap();
            assert_eq!(res.status().as_u16(), status, "{name}");
        }
        let keys: serde_json::Value = app.get_as("/auth/api-keys", &token).await.json().await.unwrap();
        assert!(keys.to_string().contains(r#""k\\u0000""#), "the text kept as sent: {keys}");
        // Query and path parameters: `%00` is `invalid_query` / `invalid_path`; `%2500` is text.
        let res = app.get_as("/admin/api/users?q=%00", &admin).await;
        assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
        assert_eq!(code(&res.json().await.unwrap()), "invalid_query");
        assert_eq!(app.get_as("/admin/api/users?q=%2500", &admin).await.status(), reqwest::StatusCode::OK);
        let res = app.get_as("/admin/api/security-events?severity=%00", &admin).await;
        assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
        let res = app.get_as("/admin/api/users/1%00", &admin).await;
        assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
        assert_eq!(code(&res.json().await.unwrap()), "invalid_path");
        // OAuth: forms and the authorization request refuse it; Basic credentials holding one
        // are no credentials.
        let res = app.client.post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=authorization_code&code=x&client_id=a%00b").send().await.unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("a%00b:secret");
        let res = app.client.post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body("grant_type=authorization_code&code=x").send().await.unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
        let res = app.get("/oauth/authorize?response_type=code&client_id=a%00b&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb").await;
        assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
        // MCP: a client name with a NUL and a direction control is recorded without them, and
        // the records around it (the same batch) are all stored.
        for name in ["before", "ev\u{0}il\u{202e}", "after"] {
            let res = app.client.post(app.url("/mcp")).bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                               "clientInfo": {"name": name, "version": "1"}}}))
                .send().await.unwrap();
            assert_eq!(res.status(), reqwest::StatusCode::OK, "{name}");
        }
        let mut names = Vec::new();
        for _ in 0..100 {
            let activity: serde_json::Value =
                app.get_as("/admin/api/mcp-activity", &admin).await.json().await.unwrap();
            names = activity["items"].as_array().unwrap().iter()
                .filter_map(|r| r["client_name"].as_str().map(str::to_string)).collect();
            if names.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        names.sort();
        assert_eq!(names, ["after", "before", "evil"]);
    }
}

/// Counts what is open: incremented when made, decremented when dropped.
struct Open(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Open {
    fn new(count: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Open {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A handshake-era backend that never finishes: its GET stream, its tool calls (`hang` sends
/// one progress notification first, `silent` nothing) and `logging/setLevel` stay open until
/// the gateway lets go of them, and it counts how many of each are open.
#[derive(Clone, Default)]
struct HoldingBackend {
    streams: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    set_level: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// `logging/setLevel` requests received, ended or not.
    set_level_seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HoldingBackend {
    async fn start(&self) -> String {
        use axum::response::IntoResponse;
        let held = self.clone();
        let never = |first: Option<String>, open: Open| {
            let head = futures::stream::iter(first.map(|m| {
                Ok::<_, std::convert::Infallible>(format!("event: message\ndata: {m}\n\n"))
            }));
            let body = head.chain(futures::stream::pending()).map(move |chunk| {
                let _ = &open;
                chunk
            });
            (
                [("content-type", "text/event-stream")],
                axum::body::Body::from_stream(body),
            )
                .into_response()
        };
        let post = {
            let held = held.clone();
            move |body: axum::body::Bytes| {
                let held = held.clone();
                async move {
                    let m: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let id = m["id"].clone();
                    let ok = |result: serde_json::Value| {
                        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
                    };
                    match m["method"].as_str().unwrap_or_default() {
                        "initialize" => (
                            [("mcp-session-id", "held-1")],
                            ok(json!({"protocolVersion": "2025-11-25",
                                "capabilities": {"tools": {}, "logging": {}},
                                "serverInfo": {"name": "held", "version": "1"}})),
                        )
                            .into_response(),
                        "server/discover" => axum::Json(json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": -32601, "message": "no"}}))
                        .into_response(),
                        _ if id.is_null() => axum::http::StatusCode::ACCEPTED.into_response(),
                        "tools/list" => ok(json!({"tools": [
                            {"name": "hang", "inputSchema": {"type": "object"}},
                            {"name": "silent", "inputSchema": {"type": "object"}}]}))
                        .into_response(),
                        "tools/call" => {
                            let progress = (m["params"]["name"] == "hang").then(|| {
                                json!({"jsonrpc": "2.0", "method": "notifications/progress",
                                    "params": {"progressToken": m["params"]["_meta"]["progressToken"],
                                               "progress": 1}})
                                .to_string()
                            });
                            never(progress, Open::new(&held.calls))
                        }
                        "logging/setLevel" => {
                            held.set_level_seen
                                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            never(None, Open::new(&held.set_level))
                        }
                        _ => ok(json!({})).into_response(),
                    }
                }
            }
        };
        let get = move || {
            let held = held.clone();
            async move { never(None, Open::new(&held.streams)) }
        };
        let app = axum::Router::new().route(
            "/mcp",
            axum::routing::post(post)
                .get(get)
                .delete(|| async { axum::http::StatusCode::OK }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://127.0.0.1:{port}/mcp")
    }
}

/// How long a check waits for the gateway to let go of something: long for a loaded CI
/// machine, shorter than the minute (the backend timeout) the unfixed code held it.
const SETTLE: Duration = Duration::from_secs(45);

/// Reads `read` every 20 ms until it gives `want` or `SETTLE` has passed; returns what it
/// read last.
async fn settles<T: PartialEq>(want: T, read: impl AsyncFn() -> T) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = read().await;
        if now == want || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn settles_at(count: &std::sync::atomic::AtomicUsize, want: usize) -> usize {
    settles(want, async || {
        count.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await
}

/// `alice` with access to one server and an MCP session on `path` (`/mcp` or `/mcp/{name}`).
struct Alice {
    app: TestApp,
    admin: String,
    user: i64,
    server: i64,
    token: String,
    path: &'static str,
    session: String,
}

impl Alice {
    async fn start(server: serde_json::Value, path: &'static str) -> Alice {
        use crate::mcp::{add_server, set_access, user_token};
        let app = gateway_with(&[]).await;
        let admin = app.admin_token().await;
        let user = app.create_user(&admin, "alice", "user").await;
        let server = add_server(&app, &admin, server).await;
        set_access(&app, &admin, user, server, true).await;
        let token = user_token(&app, "alice").await;
        let mut alice = Alice {
            app,
            admin,
            user,
            server,
            token,
            path,
            session: String::new(),
        };
        let res = alice
            .post(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                         "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                    "clientInfo": {"name": "t", "version": "1"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        alice.session = res.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        alice
    }

    /// A request on the session (once there is one).
    fn on_session(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = req.bearer_auth(&self.token);
        if self.session.is_empty() {
            return req;
        }
        req.header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-11-25")
    }

    fn post(&self, body: serde_json::Value) -> reqwest::RequestBuilder {
        let req = self.app.client.post(self.app.url(self.path));
        self.on_session(req)
            .header("accept", "application/json, text/event-stream")
            .json(&body)
    }

    /// Sends `body` and reads its streamed answer up to the first progress notification;
    /// returns the rest of the stream.
    async fn until_progress(
        &self,
        body: serde_json::Value,
    ) -> impl futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + use<> {
        let res = self.post(body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let mut stream = res.bytes_stream();
        let mut seen = String::new();
        while !seen.contains("notifications/progress") {
            let chunk = tokio::time::timeout(SETTLE, stream.next())
                .await
                .expect("the progress arrives")
                .expect("the stream is open")
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        stream
    }
}

/// On the aggregated endpoint nothing a client starts outlives the client: a streamed call
/// it hangs up on, a call it gives up waiting for, a `logging/setLevel` passed on to its
/// backends, and a backend session's GET stream once the session is dropped (here: access
/// revoked) all end at the backend, so the per-user bounds bound the backend work too.
#[tokio::test]
async fn abandoned_aggregated_work_ends_at_the_backend() {
    let held = HoldingBackend::default();
    let url = held.start().await;
    let alice = Alice::start(json!({"name": "held", "url": url}), "/mcp").await;
    let (app, aggregate) = (&alice.app, &alice.app.state.mcp.aggregate);
    let call = |id: i64, tool: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": format!("held__{tool}"), "arguments": {},
                          "_meta": {"progressToken": "p"}}})
    };
    let in_flight = async |want| settles(want, async || aggregate.requests_in_flight()).await;

    // A streamed call: the client reads the progress, then hangs up.
    let body = alice.until_progress(call(2, "hang")).await;
    assert_eq!(settles_at(&held.calls, 1).await, 1, "the call is open");
    // The GET streams of the catalog's backend session (shared, for list changes) and of
    // this client session's.
    assert_eq!(settles_at(&held.streams, 2).await, 2, "the GET streams");
    drop(body);
    assert_eq!(
        settles_at(&held.calls, 0).await,
        0,
        "the call ends with its client"
    );
    assert_eq!(in_flight(0).await, 0, "no entry outlives its request");

    // A call the backend never answers, given up on by the client once it is under way.
    let waiting = tokio::spawn(alice.post(call(3, "silent")).send());
    assert_eq!(settles_at(&held.calls, 1).await, 1, "the call is open");
    assert_eq!(in_flight(1).await, 1);
    waiting.abort();
    assert_eq!(
        settles_at(&held.calls, 0).await,
        0,
        "the call ends with its client"
    );
    assert_eq!(in_flight(0).await, 0, "no entry outlives its request");

    // logging/setLevel is answered, and what it passed on does not outlive it.
    let res = alice
        .post(
            json!({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel",
                     "params": {"level": "debug"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains(r#""result":{}"#));
    assert_eq!(settles_at(&held.set_level_seen, 1).await, 1, "passed on");
    assert_eq!(settles_at(&held.set_level, 0).await, 0, "and ended");

    // The idle sweep (here with no idle time allowed) drops a backend session nobody uses,
    // and its GET stream with it (the catalog's stays) ...
    assert_eq!(held.streams.load(std::sync::atomic::Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    aggregate.retain_links(|_, _| true, Some(Duration::ZERO));
    assert_eq!(settles_at(&held.streams, 1).await, 1, "an idle one ends");
    // ... but not one whose client holds its own GET stream open, waiting for what the
    // backend sends unasked.
    let waiting = tokio::spawn(alice.post(call(5, "silent")).send());
    assert_eq!(settles_at(&held.calls, 1).await, 1, "the call is open");
    waiting.abort();
    assert_eq!(settles_at(&held.calls, 0).await, 0);
    assert_eq!(
        settles_at(&held.streams, 2).await,
        2,
        "a new backend session"
    );
    let listening = alice
        .on_session(app.client.get(app.url("/mcp")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(listening.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    aggregate.retain_links(|_, _| true, Some(Duration::ZERO));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        held.streams.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "kept"
    );

    // Access revoked: the client session's backend session is dropped, and its GET stream
    // with it, listened to or not.
    crate::mcp::set_access(app, &alice.admin, alice.user, alice.server, false).await;
    assert_eq!(settles_at(&held.streams, 1).await, 1, "the GET stream ends");
    drop(listening);
    alice.app.stop().await;
}

/// An HTTP+SSE (2024-11-05) backend whose `hang` tool sends one progress notification and
/// then nothing: `/sse` gives each connection its own `/messages?c=N` endpoint.
async fn silent_legacy_backend() -> String {
    use axum::extract::Query;
    use axum::response::IntoResponse;
    type Streams = std::sync::Arc<
        std::sync::Mutex<
            std::collections::HashMap<u64, tokio::sync::mpsc::UnboundedSender<String>>,
        >,
    >;
    let streams: Streams = Default::default();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let open = {
        let streams = streams.clone();
        move || {
            let (streams, next) = (streams.clone(), next.clone());
            async move {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                tx.send(format!("event: endpoint\ndata: /messages?c={n}\n\n"))
                    .unwrap();
                streams.lock().unwrap().insert(n, tx);
                let body = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv()
                        .await
                        .map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
                });
                (
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(body),
                )
                    .into_response()
            }
        }
    };
    let message = move |Query(q): Query<std::collections::HashMap<String, u64>>,
                        body: axum::body::Bytes| {
        let streams = streams.clone();
        async move {
            let m: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let id = m["id"].clone();
            let out = |v: serde_json::Value| format!("event: message\ndata: {v}\n\n");
            let ok = |result: serde_json::Value| {
                out(json!({"jsonrpc": "2.0", "id": id, "result": result}))
            };
            let event = match m["method"].as_str().unwrap_or_default() {
                _ if id.is_null() => None,
                "initialize" => Some(ok(json!({"protocolVersion": "2024-11-05",
                    "capabilities": {"tools": {}}, "serverInfo": {"name": "old", "version": "1"}}))),
                "tools/list" => Some(ok(
                    json!({"tools": [{"name": "hang", "inputSchema": {"type": "object"}}]}),
                )),
                "tools/call" => Some(out(json!({"jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {"progressToken": m["params"]["_meta"]["progressToken"],
                               "progress": 1}}))),
                _ => Some(ok(json!({}))),
            };
            if let Some(event) = event
                && let Some(tx) = q
                    .get("c")
                    .and_then(|c| streams.lock().unwrap().get(c).cloned())
            {
                let _ = tx.send(event);
            }
            axum::http::StatusCode::ACCEPTED
        }
    };
    let app = axum::Router::new()
        .route("/sse", axum::routing::get(open))
        .route("/messages", axum::routing::post(message));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://127.0.0.1:{port}/sse")
}

/// A streamed call to an HTTP+SSE backend on `/mcp/{server}` ends when its client hangs up,
/// not when the backend next speaks: the call is recorded `client_closed` at once (it was
/// held until the server timeout, a minute, when the backend went quiet after a progress).
#[tokio::test]
async fn a_legacy_backend_call_ends_with_its_client() {
    let url = silent_legacy_backend().await;
    let alice = Alice::start(
        json!({"name": "old", "url": url, "transport": "sse"}),
        "/mcp/old",
    )
    .await;
    let body = alice
        .until_progress(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "hang", "arguments": {}, "_meta": {"progressToken": "p"}}}))
        .await;
    drop(body);
    let closed = settles(1, async || {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from mcp_activity where status = 'client_closed' and tool = 'hang'",
        )
        .fetch_one(&alice.app.state.db.pool)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(
        closed, 1,
        "recorded as the client's leaving, within seconds"
    );
    alice.app.stop().await;
}
