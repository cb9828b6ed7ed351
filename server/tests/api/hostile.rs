//! Bounded under hostile load: floods of connections, messages, tokens and guesses must not
//! lock anybody else out or pin unbounded memory.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{ADMIN_PASSWORD, Backend, TestApp, TestEnv};

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
async fn mcp_initialize(app: &TestApp, token: &str) -> reqwest::StatusCode {
    app.client
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
    let app = TestEnv::new(Backend::Sqlite)
        .await
        .with_admin()
        .with_var("HTTP_HEADER_TIMEOUT_SECS", "2")
        .with_var("MAX_CONNECTIONS", "1000")
        .with_var("MAX_CONNECTIONS_PER_IP", "0")
        .spawn()
        .await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    assert_eq!(mcp_initialize(&app, &token).await, 200);

    // Three times the connection cap of unfinished heads from another address.
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..3000 {
        if let Some(stream) = half_open_head("127.0.0.2", app.addr).await {
            flood.push(stream);
        }
    }
    assert!(flood.len() >= 2900, "the flood connected: {}", flood.len());

    // Health and an authenticated MCP client keep being served during the flood.
    for _ in 0..5 {
        let health = app
            .client
            .get(app.url("/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("/health answers during the flood");
        assert_eq!(health.status(), 200);
        assert_eq!(
            mcp_initialize(&app, &token).await,
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
    let app = TestEnv::new(Backend::Sqlite)
        .await
        .with_admin()
        .with_var("MAX_CONNECTIONS_PER_IP", "50")
        .spawn()
        .await;
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
    let app = TestEnv::new(Backend::Sqlite)
        .await
        .with_admin()
        .with_var("HTTP_IDLE_TIMEOUT_SECS", "1")
        .spawn()
        .await;
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
    app.stop().await;
}

/// Sums what the stored `token_invalid` events stand for: one each, or their `repeated` /
/// `folded` count.
async fn stored_token_invalid(app: &TestApp) -> (usize, u64) {
    let filter = authmcp_gateway::db::events::EventFilter {
        event_type: Some("token_invalid".into()),
        ..Default::default()
    };
    let rows =
        authmcp_gateway::db::events::list_security_events(&app.state.db.pool, &filter, 100_000, 0)
            .await
            .unwrap();
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

#[tokio::test]
async fn a_burst_of_guesses_verifies_no_more_passwords_than_the_budgets() {
    // The username's budget (5 failures) holds against 200 concurrent guesses.
    let app = TestEnv::new(Backend::Sqlite)
        .await
        .with_admin()
        .with_var("LOGIN_IP_MAX_FAILURES", "100000")
        .spawn()
        .await;
    let (wrong, refused) = login_burst(&app, 200, |_| "admin".into()).await;
    assert!(wrong <= 5, "at most the threshold was verified: {wrong}");
    assert_eq!(wrong + refused, 200);
    let res = app
        .post_json(
            "/auth/login",
            None,
            json!({"username": "admin", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 429, "the account is locked after the burst");
    app.stop().await;

    // The address's budget (10 failures) holds against 200 concurrent guesses at 200 names.
    let app = TestEnv::new(Backend::Sqlite)
        .await
        .with_admin()
        .with_var("LOGIN_IP_MAX_FAILURES", "10")
        .with_var("LOGIN_MAX_FAILURES", "100")
        .spawn()
        .await;
    let (wrong, _) = login_burst(&app, 200, |i| format!("user{i}")).await;
    assert!(
        wrong <= 10,
        "at most the address's budget was verified: {wrong}"
    );
    let res = app
        .post_json(
            "/auth/login",
            None,
            json!({"username": "admin", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 429, "the address has used its budget");
    app.stop().await;
}
