//! The MCP servers registry and the per-server proxy, against real MCP peers.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, TestEnv, USER_PASSWORD, db_test};
use crate::peers::{
    EVERYTHING, EverythingServer, PYTHON_PEER, PeerServer, Sdk, run_python_client, run_ts_client,
};

/// Registers a server and returns its id.
pub async fn add_server(app: &TestApp, admin: &str, body: Value) -> i64 {
    let res = app
        .post_json("/admin/api/mcp-servers", Some(admin), body.clone())
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "register {body}");
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

pub async fn set_access(app: &TestApp, admin: &str, user: i64, server: i64, can_access: bool) {
    let res = app
        .send(
            Method::PATCH,
            &format!("/admin/api/users/{user}/mcp-permissions"),
            Some(admin),
            Some(json!({"server_id": server, "can_access": can_access})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

pub async fn user_token(app: &TestApp, username: &str) -> String {
    app.mcp_token(username, USER_PASSWORD).await
}

/// One raw MCP POST; returns status, headers and the JSON-RPC message it answered with
/// (from JSON or from the SSE stream).
async fn rpc(
    app: &TestApp,
    server: &str,
    token: Option<&str>,
    session: Option<&str>,
    extra: &[(&str, &str)],
    body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    rpc_at(app, &format!("/mcp/{server}"), token, session, extra, body).await
}

/// `rpc` to any MCP path (`/mcp` for the aggregated endpoint).
pub async fn rpc_at(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    session: Option<&str>,
    extra: &[(&str, &str)],
    body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = app
        .client
        .post(app.url(path))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(session) = session {
        req = req.header("mcp-session-id", session);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let message = if headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"))
    {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|m| m.get("id").is_some() && m.get("method").is_none())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (status, headers, message)
}

fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
}

/// Initializes a session and returns its id.
async fn open_session(app: &TestApp, server: &str, token: &str) -> String {
    let (status, headers, message) =
        rpc(app, server, Some(token), None, &[], initialize_body()).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert!(
        message["result"]["protocolVersion"].is_string(),
        "{message}"
    );
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    let (status, _, _) = rpc(
        app,
        server,
        Some(token),
        Some(&session),
        &[("mcp-protocol-version", "2025-11-25")],
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    session
}

async fn call_echo(
    app: &TestApp,
    server: &str,
    token: &str,
    session: &str,
    text: &str,
) -> (StatusCode, Value) {
    let (status, _, message) = rpc(
        app,
        server,
        Some(token),
        Some(session),
        &[("mcp-protocol-version", "2025-11-25")],
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}}),
    )
    .await;
    (status, message)
}

/// Every real client × every kind of real backend, through `/mcp/{server}` with a user token.
#[tokio::test]
async fn real_clients_reach_every_kind_of_backend_in_every_mode() {
    let (app, admin) = TestApp::sqlite_with_admin().await;
    let py2 = PeerServer::start(Sdk::Py2, "py2", &["--token", "backend-secret-py2"]).await;
    let py2_stateless =
        PeerServer::start(Sdk::Py2, "py2stateless", &["--stateless", "--json"]).await;
    let py1 = PeerServer::start(Sdk::Py1, "py1", &[]).await;
    let py1_sse = PeerServer::start(Sdk::Py1, "py1sse", &["--transport", "sse"]).await;
    let everything = EverythingServer::start("streamableHttp").await;
    let everything_sse = EverythingServer::start("sse").await;
    // (name, url, script, expected text, streams progress)
    let backends = [
        ("py2", py2.url(), &PYTHON_PEER, "py2:hi", true),
        (
            "py2stateless",
            py2_stateless.url(),
            &PYTHON_PEER,
            "py2stateless:hi",
            false,
        ),
        ("py1", py1.url(), &PYTHON_PEER, "py1:hi", true),
        ("py1sse", py1_sse.url(), &PYTHON_PEER, "py1sse:hi", true),
        (
            "everything",
            everything.url(),
            &EVERYTHING,
            "Echo: hi",
            true,
        ),
        (
            "everythingsse",
            everything_sse.url(),
            &EVERYTHING,
            "Echo: hi",
            true,
        ),
    ];
    for (name, url, _, _, _) in &backends {
        let mut body = json!({"name": name, "url": url});
        if *name == "py2" {
            body["backend_token"] = json!("backend-secret-py2");
        }
        add_server(&app, &admin, body).await;
    }
    // A plain user with access, not the admin.
    let user = app.create_user(&admin, "carol", "user").await;
    let servers: Value = app
        .get_as("/admin/api/mcp-servers", &admin)
        .await
        .json()
        .await
        .unwrap();
    for server in servers.as_array().unwrap() {
        set_access(&app, &admin, user, server["id"].as_i64().unwrap(), true).await;
    }
    let token = user_token(&app, "carol").await;
    for (name, _, script, text, streams_progress) in &backends {
        let url = app.url(&format!("/mcp/{name}"));
        let python = ["auto", "legacy", "2026-07-28"].map(|mode| {
            let (url, token) = (url.clone(), token.clone());
            async move {
                (
                    format!("python {mode}"),
                    run_python_client(&url, &token, mode, script).await,
                )
            }
        });
        let ts = {
            let (url, token) = (url.clone(), token.clone());
            async move {
                (
                    "typescript".to_string(),
                    run_ts_client(&url, &token, script).await,
                )
            }
        };
        let (mut runs, ts) = futures::future::join(futures::future::join_all(python), ts).await;
        runs.push(ts);
        for (client, out) in runs {
            assert!(out.get("error").is_none(), "{client} → {name}: {out}");
            let tools = out["tools"].as_array().unwrap();
            assert!(
                tools.contains(&json!(script.tool)) && tools.contains(&json!(script.progress_tool)),
                "{client} → {name}: {out}"
            );
            assert_eq!(out["text"], *text, "{client} → {name}");
            assert!(out["progress_result"].is_string(), "{client} → {name}");
            if *streams_progress {
                let progress: Vec<f64> = out["progress"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_f64().unwrap())
                    .collect();
                assert_eq!(
                    progress,
                    vec![1.0, 2.0, 3.0],
                    "{client} → {name}: progress relayed"
                );
                assert_eq!(out["progress_before_result"], true, "{client} → {name}");
            }
        }
    }
}

/// The Rust SDK (rmcp) as a client of `/mcp/{server}`, against a handshake-era and a
/// 2026-07-28-capable backend.
#[tokio::test]
async fn the_rust_sdk_client_lists_and_calls_tools() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let (app, admin) = TestApp::sqlite_with_admin().await;
    let py1 = PeerServer::start(Sdk::Py1, "py1", &[]).await;
    let py2 = PeerServer::start(Sdk::Py2, "py2", &[]).await;
    let everything = EverythingServer::start("streamableHttp").await;
    add_server(&app, &admin, json!({"name": "py1", "url": py1.url()})).await;
    add_server(&app, &admin, json!({"name": "py2", "url": py2.url()})).await;
    add_server(
        &app,
        &admin,
        json!({"name": "everything", "url": everything.url()}),
    )
    .await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    for (name, args, expected) in [
        ("py1", json!({"text": "rs"}), "py1:rs"),
        ("py2", json!({"text": "rs"}), "py2:rs"),
        ("everything", json!({"message": "rs"}), "Echo: rs"),
    ] {
        let config =
            StreamableHttpClientTransportConfig::with_uri(app.url(&format!("/mcp/{name}")))
                .auth_header(token.clone());
        let client =
            ().serve(StreamableHttpClientTransport::from_config(config))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let tools = client.list_all_tools().await.unwrap();
        assert!(tools.iter().any(|t| t.name == "echo"), "{name}");
        let Value::Object(args) = args else {
            unreachable!()
        };
        let result = client
            .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = result.content[0].as_text().map(|t| t.text.clone());
        assert_eq!(text.as_deref(), Some(expected), "{name}");
        client.cancel().await.unwrap();
    }
}

db_test! {
    async fn every_request_is_authenticated_and_authorised(env: TestEnv) {
        let peer = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let alpha = add_server(&app, &admin, json!({"name": "alpha", "url": peer.url()})).await;
        let beta = add_server(&app, &admin, json!({"name": "beta", "url": peer.url()})).await;
        let bob = app.create_user(&admin, "bob", "user").await;
        let bob_token = user_token(&app, "bob").await;

        // No or bad credentials: 401 with the protected-resource metadata pointer, on every method.
        for method in [Method::POST, Method::GET, Method::DELETE] {
            for token in [None, Some("garbage")] {
                let mut req = app.client.request(method.clone(), app.url("/mcp/alpha")).json(&initialize_body());
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let res = req.send().await.unwrap();
                assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {token:?}");
                let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_string();
                assert_eq!(
                    challenge,
                    format!("Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp/alpha\", scope=\"mcp\"", app.state.config.public_url)
                );
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], -32001);
            }
        }
        // An admin-audience token is not an MCP token.
        let (status, _, _) = rpc(&app, "alpha", Some(&admin), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Default deny for users; a grant opens exactly one server; a revoke closes it again.
        let (status, _, message) = rpc(&app, "alpha", Some(&bob_token), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(message["error"]["code"], -32003);
        set_access(&app, &admin, bob, alpha, true).await;
        let session = open_session(&app, "alpha", &bob_token).await;
        let (status, message) = call_echo(&app, "alpha", &bob_token, &session, "x").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(message["result"]["content"][0]["text"], "alpha:x");
        let (status, _, _) = rpc(&app, "beta", Some(&bob_token), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "the grant covers alpha only");
        set_access(&app, &admin, bob, alpha, false).await;
        let (status, _) = call_echo(&app, "alpha", &bob_token, &session, "x").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a revoke applies to the next request, session or not");
        let perms: Value = app.get_as(&format!("/admin/api/users/{bob}/mcp-permissions"), &admin).await.json().await.unwrap();
        assert_eq!(perms, json!([
            {"server_id": alpha, "name": "alpha", "can_access": false},
            {"server_id": beta, "name": "beta", "can_access": false},
        ]));

        // An API key can be narrowed to some servers.
        set_access(&app, &admin, bob, alpha, true).await;
        set_access(&app, &admin, bob, beta, true).await;
        let key: Value = app
            .post_json("/auth/api-keys", Some(&bob_token), json!({"name": "ci", "servers": ["beta"]}))
            .await
            .json()
            .await
            .unwrap();
        let secret = key["secret"].as_str().unwrap();
        let (status, _, _) = rpc(&app, "alpha", Some(secret), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = rpc(&app, "beta", Some(secret), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::OK);

        // Unknown and disabled servers; foreign origins.
        let (status, _, message) = rpc(&app, "nope", Some(&bob_token), None, &[], initialize_body()).await;
        assert_eq!((status, message["error"]["code"].clone()), (StatusCode::NOT_FOUND, json!(-32004)));
        let res = app.send(Method::PATCH, &format!("/admin/api/mcp-servers/{beta}"), Some(&admin), Some(json!({"enabled": false}))).await;
        assert_eq!(res.status(), StatusCode::OK);
        let (status, _, _) = rpc(&app, "beta", Some(secret), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a disabled server is gone from the proxy at once");
        let (status, _, _) = rpc(&app, "alpha", Some(&bob_token), None, &[("origin", "https://evil.example")], initialize_body()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        app.wait_for_event("origin_rejected").await;
        app.wait_for_event("access_denied").await;
    }
}

db_test! {
    async fn sessions_belong_to_their_user(env: TestEnv) {
        let peer = PeerServer::start(Sdk::Py1, "alpha", &[]).await;
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let alpha = add_server(&app, &admin, json!({"name": "alpha", "url": peer.url()})).await;
        for name in ["alice", "mallory"] {
            let id = app.create_user(&admin, name, "user").await;
            set_access(&app, &admin, id, alpha, true).await;
        }
        let alice = user_token(&app, "alice").await;
        let mallory = user_token(&app, "mallory").await;
        let session = open_session(&app, "alpha", &alice).await;
        assert!(session.len() >= 32 && session.chars().all(|c| c.is_ascii_graphic()));

        let (status, message) = call_echo(&app, "alpha", &mallory, &session, "steal").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "another user's session id is unknown to mallory");
        assert_eq!(message["error"]["code"], -32004);
        for method in [Method::GET, Method::DELETE] {
            let res = app
                .client
                .request(method.clone(), app.url("/mcp/alpha"))
                .bearer_auth(&mallory)
                .header("mcp-session-id", &session)
                .header("accept", "text/event-stream")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method}");
        }
        // The session still works for its owner, and ends on DELETE.
        let (status, message) = call_echo(&app, "alpha", &alice, &session, "mine").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(message["result"]["content"][0]["text"], "alpha:mine");
        let res = app.client.delete(app.url("/mcp/alpha")).bearer_auth(&alice).header("mcp-session-id", &session).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let (status, _) = call_echo(&app, "alpha", &alice, &session, "gone").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_backend_restart_mid_session_is_survived() {
    let mut peer = PeerServer::start(Sdk::Py1, "alpha", &[]).await;
    let (app, admin) = TestApp::sqlite_with_admin().await;
    add_server(&app, &admin, json!({"name": "alpha", "url": peer.url()})).await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    let session = open_session(&app, "alpha", &token).await;
    let (status, message) = call_echo(&app, "alpha", &token, &session, "before").await;
    assert_eq!(
        (status, message["result"]["content"][0]["text"].clone()),
        (StatusCode::OK, json!("alpha:before"))
    );
    peer.restart().await;
    let (status, message) = call_echo(&app, "alpha", &token, &session, "after").await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(
        message["result"]["content"][0]["text"], "alpha:after",
        "re-initialised transparently"
    );
}

db_test! {
    async fn backend_credentials_are_sealed_and_never_returned(env: TestEnv) {
        let peer = PeerServer::start(Sdk::Py2, "alpha", &["--token", "s3cret-backend-token-0001"]).await;
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let bearer = add_server(&app, &admin, json!({"name": "alpha", "url": peer.url(), "backend_token": "s3cret-backend-token-0001"})).await;
        let basic = add_server(&app, &admin, json!({"name": "basic", "url": peer.url(),
            "credential": {"type": "basic", "username": "svc", "password": "basic-pass-9999"}})).await;
        let custom = add_server(&app, &admin, json!({"name": "custom", "url": peer.url(),
            "credential": {"type": "header", "name": "X-Api-Key", "value": "header-key-7777"}})).await;
        let secrets = ["s3cret-backend-token-0001", "basic-pass-9999", "header-key-7777"];

        let mut seen = Vec::new();
        seen.push(app.get_as("/admin/api/mcp-servers", &admin).await.text().await.unwrap());
        for id in [bearer, basic, custom] {
            seen.push(app.get_as(&format!("/admin/api/mcp-servers/{id}"), &admin).await.text().await.unwrap());
            seen.push(app.send(Method::POST, &format!("/admin/api/mcp-servers/{id}/test"), Some(&admin), None).await.text().await.unwrap());
        }
        seen.push(app.send(Method::PATCH, &format!("/admin/api/mcp-servers/{bearer}"), Some(&admin), Some(json!({"description": "d"}))).await.text().await.unwrap());
        seen.push(app.get_as("/admin/api/audit-log", &admin).await.text().await.unwrap());
        seen.push(app.get("/api-docs/openapi.json").await.text().await.unwrap());
        for text in &seen {
            for secret in secrets {
                assert!(!text.contains(secret), "a response leaked a credential: {text}");
            }
        }
        let listed: Value = serde_json::from_str(&seen[0]).unwrap();
        assert_eq!(listed[0]["credential"], json!({"type": "bearer", "hint": "…0001"}));
        assert_eq!(listed[1]["credential"]["type"], "basic");
        assert_eq!(listed[2]["credential"], json!({"type": "header", "hint": "…7777", "header_name": "x-api-key"}));

        let stored: Vec<Vec<u8>> = sqlx::query_scalar("select credential from mcp_servers where credential is not null")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(stored.len(), 3);
        for blob in &stored {
            for secret in secrets {
                assert!(!blob.windows(secret.len()).any(|w| w == secret.as_bytes()), "stored in clear");
            }
        }
        // The backend demands its own credential: the client's token is replaced by it.
        let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
        let session = open_session(&app, "alpha", &token).await;
        let (status, message) = call_echo(&app, "alpha", &token, &session, "authed").await;
        assert_eq!((status, message["result"]["content"][0]["text"].clone()), (StatusCode::OK, json!("alpha:authed")));
        // Removing the credential makes the backend refuse the gateway.
        let res = app.send(Method::PATCH, &format!("/admin/api/mcp-servers/{bearer}"), Some(&admin), Some(json!({"credential": {"type": "none"}}))).await;
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["credential"], Value::Null);
        let (status, _, _) = rpc(&app, "alpha", Some(&token), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
}

db_test! {
    async fn the_registry_validates_and_tests_connections(env: TestEnv) {
        let peer = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        for (body, field) in [
            // ("Bad Name" is a display name now: its segment `bad-name` is derived.)
            (json!({"name": "!!!", "url": peer.url()}), "name"),
            (json!({"name": " padded ", "url": peer.url()}), "name"),
            (json!({"name": "ok", "url": "ftp://x"}), "url"),
            (json!({"name": "ok", "url": "http://user:pw@host/mcp"}), "url"),
            (json!({"name": "ok", "url": peer.url(), "timeout_seconds": 0}), "timeout_seconds"),
            (json!({"name": "ok", "url": peer.url(), "credential": {"type": "header", "name": "Host", "value": "x"}}), "credential"),
        ] {
            let res = app.post_json("/admin/api/mcp-servers", Some(&admin), body).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST);
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["error"]["details"]["field"], field);
        }
        let id = add_server(&app, &admin, json!({"name": "alpha", "url": peer.url(), "description": "demo"})).await;
        let dup = app.post_json("/admin/api/mcp-servers", Some(&admin), json!({"name": "alpha", "url": peer.url()})).await;
        assert_eq!(dup.status(), StatusCode::CONFLICT);

        let test: Value = app.send(Method::POST, &format!("/admin/api/mcp-servers/{id}/test"), Some(&admin), None).await.json().await.unwrap();
        assert_eq!(test["ok"], true, "{test}");
        assert_eq!(test["tool_count"], 3);
        assert_eq!(test["server_name"], "alpha");
        assert!(test["protocol_version"].is_string());
        let server: Value = app.get_as(&format!("/admin/api/mcp-servers/{id}"), &admin).await.json().await.unwrap();
        assert_eq!(server["health"]["status"], "online");
        assert_eq!(server["health"]["tool_count"], 3);
        assert_eq!(server["endpoint"], format!("{}/mcp/alpha", app.state.config.public_url));

        // Renaming moves the endpoint at once.
        let res = app.send(Method::PATCH, &format!("/admin/api/mcp-servers/{id}"), Some(&admin), Some(json!({"name": "renamed"}))).await;
        assert_eq!(res.status(), StatusCode::OK);
        let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
        let (status, _, _) = rpc(&app, "alpha", Some(&token), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = rpc(&app, "renamed", Some(&token), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::OK);

        // A dead backend: a clear error, no internals.
        let dead = add_server(&app, &admin, json!({"name": "dead", "url": "http://127.0.0.1:9/mcp", "timeout_seconds": 2})).await;
        let test: Value = app.send(Method::POST, &format!("/admin/api/mcp-servers/{dead}/test"), Some(&admin), None).await.json().await.unwrap();
        assert_eq!(test["ok"], false);
        assert_eq!(test["error"], "server 'dead' is unreachable");
        let (status, _, message) = rpc(&app, "dead", Some(&token), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(message["error"]["code"], -32050);
        assert_eq!(message["id"], 1);
        assert!(!message.to_string().contains("127.0.0.1"), "{message}");

        let res = app.send(Method::DELETE, &format!("/admin/api/mcp-servers/{id}"), Some(&admin), None).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let (status, _, _) = rpc(&app, "renamed", Some(&token), None, &[], initialize_body()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn malformed_requests_get_json_rpc_errors_and_activity_is_recorded() {
    let peer = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let app = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_var("MCP_MAX_REQUEST_BYTES", "2048")
        .spawn()
        .await;
    let admin = app.admin_token().await;
    add_server(&app, &admin, json!({"name": "alpha", "url": peer.url()})).await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/mcp/alpha"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (body, content_type, status, code) in [
        ("{not json", "application/json", 400, -32700),
        (
            "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
            "application/json",
            400,
            -32600,
        ),
        ("{\"jsonrpc\":\"2.0\"}", "application/json", 400, -32600),
        ("{}", "text/plain", 415, -32600),
    ] {
        let res = raw(body, content_type).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{body}");
        let message: Value = res.json().await.unwrap();
        assert_eq!(message["error"]["code"], code, "{body}");
    }
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x".repeat(4096)}}});
    let (status, _, message) = rpc(&app, "alpha", Some(&token), None, &[], big).await;
    assert_eq!(
        (status, message["error"]["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!(-32005))
    );

    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}});
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
    ];
    let (status, _, message) = rpc(&app, "alpha", Some(&token), None, &modern, list.clone()).await;
    assert_eq!(
        (status, message["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(-32020)),
        "Mcp-Method mismatch"
    );
    let (status, _, message) = rpc(
        &app,
        "alpha",
        Some(&token),
        None,
        &[("mcp-protocol-version", "1999-01-01")],
        list.clone(),
    )
    .await;
    assert_eq!(
        (status, message["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(-32022))
    );
    let (status, _, message) = rpc(&app, "alpha", Some(&token), None, &[], list.clone()).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "no session and no 2026 version: {message}"
    );
    let ok = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    let (status, _, message) = rpc(&app, "alpha", Some(&token), None, &ok, list).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["result"]["tools"].as_array().unwrap().len(), 3);

    let session = open_session(&app, "alpha", &token).await;
    call_echo(&app, "alpha", &token, &session, "logged").await;
    let mut activity = Value::Null;
    for _ in 0..100 {
        activity = app
            .get_as("/admin/api/mcp-activity?server=alpha", &admin)
            .await
            .json()
            .await
            .unwrap();
        if activity["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["tool"] == "echo")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let call = activity["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tool"] == "echo")
        .expect("tools/call recorded");
    assert_eq!(call["method"], "tools/call");
    assert_eq!(call["status"], "ok");
    assert_eq!(call["username"], "admin");
    assert!(call["bytes_out"].as_u64().unwrap() > 0);
    assert!(
        activity["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "header_mismatch")
    );
}

#[tokio::test]
async fn background_health_checks_follow_the_backend() {
    let peer = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let app = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_var("MCP_HEALTH_INTERVAL_SECS", "1")
        .spawn()
        .await;
    let admin = app.admin_token().await;
    let id = add_server(
        &app,
        &admin,
        json!({"name": "alpha", "url": peer.url(), "timeout_seconds": 2}),
    )
    .await;
    let health = |want: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            for _ in 0..150 {
                let server: Value = app
                    .get_as(&format!("/admin/api/mcp-servers/{id}"), admin)
                    .await
                    .json()
                    .await
                    .unwrap();
                if server["health"]["status"] == want {
                    return server["health"].clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("health never became {want}");
        }
    };
    let online = health("online").await;
    assert_eq!(online["tool_count"], 3);
    assert!(online["checked_at"].is_i64());
    drop(peer);
    let offline = health("offline").await;
    assert_eq!(offline["last_error"], "server 'alpha' is unreachable");
}

#[tokio::test]
async fn metrics_are_off_by_default_and_move_with_traffic() {
    let app = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .spawn()
        .await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "off unless configured");
    app.stop().await;

    let peer = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let app = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_var("METRICS_TOKEN", "scrape-token-0123456789")
        .spawn()
        .await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get_as("/metrics", "wrong-token-0123456789")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let admin = app.admin_token().await;
    add_server(&app, &admin, json!({"name": "alpha", "url": peer.url()})).await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    let session = open_session(&app, "alpha", &token).await;
    for i in 0..3 {
        call_echo(&app, "alpha", &token, &session, &format!("m{i}")).await;
    }
    app.post_json(
        "/auth/login",
        None,
        json!({"username": "admin", "password": "wrong password!"}),
    )
    .await;

    let sample = |scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    let mut calls = None;
    for _ in 0..60 {
        let res = app.get_as("/metrics", "scrape-token-0123456789").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = res.text().await.unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("valid text format");
        calls = sample(
            &scrape,
            "authmcp_mcp_requests_total",
            &[
                ("server", "alpha"),
                ("method", "tools/call"),
                ("status", "ok"),
            ],
        );
        if calls == Some(3.0) {
            assert_eq!(
                sample(
                    &scrape,
                    "authmcp_security_events_total",
                    &[("type", "auth_failed")]
                ),
                Some(1.0)
            );
            assert_eq!(sample(&scrape, "authmcp_mcp_sessions", &[]), Some(1.0));
            assert!(sample(&scrape, "authmcp_build_info", &[]).is_some());
            // The standard process metrics, under their usual names.
            assert!(sample(&scrape, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
            assert!(sample(&scrape, "process_cpu_seconds_total", &[]).unwrap() > 0.0);
            let open = sample(&scrape, "process_open_fds", &[]).unwrap();
            assert!(open > 0.0 && open <= sample(&scrape, "process_max_fds", &[]).unwrap());
            let started = sample(&scrape, "process_start_time_seconds", &[]).unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            assert!(
                started <= now && started > now - 600.0,
                "{started} vs {now}"
            );
            // Names by convention: counters end in `_total`, histograms name their unit, and
            // every name is lower snake case.
            for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
                let (name, kind) = line.split_once(' ').unwrap();
                assert!(
                    name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{name}"
                );
                match kind {
                    "counter" => assert!(name.ends_with("_total"), "{name}"),
                    "histogram" => assert!(
                        name.ends_with("_seconds") || name.ends_with("_bytes"),
                        "{name}"
                    ),
                    _ => assert!(!name.ends_with("_total"), "{name} is not a counter"),
                }
            }
            assert!(
                text.contains(
                    "authmcp_mcp_request_duration_seconds_bucket{server=\"alpha\",le=\"+Inf\"} 4"
                ),
                "{text}"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("tools/call counter never reached 3: {calls:?}");
}

#[tokio::test]
async fn rate_limits_refuse_with_retry_after_and_ignore_reinitialising() {
    let peer = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    // 30 per minute: a burst of 5, then one every two seconds (so a loaded machine taking
    // over a second for the burst's handshakes cannot earn one back in the middle).
    let app = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_var("MCP_RATE_LIMIT_USER_PER_MINUTE", "30")
        .spawn()
        .await;
    let admin = app.admin_token().await;
    let alpha = add_server(&app, &admin, json!({"name": "alpha", "url": peer.url()})).await;
    let bob = app.create_user(&admin, "bob", "user").await;
    set_access(&app, &admin, bob, alpha, true).await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    let bob_token = user_token(&app, "bob").await;

    let mut admitted = 0;
    let mut refused = None;
    for _ in 0..7 {
        // Each attempt opens a new session: sessions must not reset the budget.
        let (status, headers, message) =
            rpc(&app, "alpha", Some(&token), None, &[], initialize_body()).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((headers, message));
            break;
        }
        assert_eq!(status, StatusCode::OK);
        admitted += 1;
    }
    assert_eq!(admitted, 5, "the burst");
    let (headers, message) = refused.expect("refused after the burst");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(message["error"]["code"], -32029);
    assert_eq!(message["error"]["data"]["retryAfterSeconds"], retry);
    // Another user has their own budget.
    let (status, _, _) = rpc(
        &app,
        "alpha",
        Some(&bob_token),
        None,
        &[],
        initialize_body(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // After the wait, admitted again.
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let (status, _, _) = rpc(&app, "alpha", Some(&token), None, &[], initialize_body()).await;
    assert_eq!(status, StatusCode::OK);
    let event = app.wait_for_event("rate_limited").await;
    assert_eq!(event.server.as_deref(), Some("alpha"));
}

/// A Python SDK 2.x backend registered as `alpha` on a fresh gateway (SQLite), and an MCP
/// token of the admin.
async fn py2_alpha() -> (PeerServer, TestApp, String) {
    let peer = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let (app, admin) = TestApp::sqlite_with_admin().await;
    add_server(&app, &admin, json!({"name": "alpha", "url": peer.url()})).await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    (peer, app, token)
}

/// A backend that speaks both eras keeps getting handshake-era clients' own handshake (and so
/// its GET stream), also after a 2026-07-28 client found out it is modern.
#[tokio::test]
async fn dual_era_backends_are_not_bridged_for_handshake_clients() {
    let (_peer, app, token) = py2_alpha().await;
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}});
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    let (status, _, _) = rpc(&app, "alpha", Some(&token), None, &modern, list).await;
    assert_eq!(status, StatusCode::OK);

    let session = open_session(&app, "alpha", &token).await;
    let res = app
        .client
        .get(app.url("/mcp/alpha"))
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the backend's own GET stream is relayed"
    );
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(res);
    let (status, message) = call_echo(&app, "alpha", &token, &session, "both").await;
    assert_eq!(
        (status, message["result"]["content"][0]["text"].clone()),
        (StatusCode::OK, json!("alpha:both"))
    );
}

/// A session's GET streams share one backend stream: the Python SDK allows one GET stream per
/// session (a second one is refused with 409), yet a client can hold two, or reconnect while
/// the gateway has not yet noticed its old stream is gone.
#[tokio::test]
async fn a_sessions_get_streams_share_one_backend_stream() {
    let (_peer, app, token) = py2_alpha().await;
    let session = open_session(&app, "alpha", &token).await;
    let open = |last_event_id: Option<&'static str>| {
        let mut req = app
            .client
            .get(app.url("/mcp/alpha"))
            .bearer_auth(&token)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send()
    };
    let first = open(None).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = open(None).await.unwrap();
    assert_eq!(
        second.status(),
        StatusCode::OK,
        "a second stream on the session shares the backend's one stream"
    );
    assert!(
        second.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(second.headers()["mcp-session-id"], session.as_str());
    // A resuming stream asks the backend for its own stream, which this backend refuses while
    // the shared one is open: the answer is the backend's refusal, not a shared stream.
    let resumed = open(Some("0")).await.unwrap();
    assert_eq!(resumed.status(), StatusCode::BAD_GATEWAY);
    drop((first, second));
    let (status, message) = call_echo(&app, "alpha", &token, &session, "still").await;
    assert_eq!(
        (status, message["result"]["content"][0]["text"].clone()),
        (StatusCode::OK, json!("alpha:still"))
    );
    let again = open(None).await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "a new stream after the others closed"
    );
}

db_test! {
    /// The original's `{"name": "GitHub MCP", …}`: accepted as a display name, the URL segment
    /// derived from it; hostile display names are refused; the display name can change alone.
    async fn servers_take_display_names(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let create = |body: Value| {
            let app = &app;
            let admin = admin.clone();
            async move { app.post_json("/admin/api/mcp-servers", Some(&admin), body).await }
        };
        let res = create(json!({"name": "GitHub MCP", "url": "http://127.0.0.1:9/mcp"})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let server: Value = res.json().await.unwrap();
        assert_eq!(server["name"], "github-mcp");
        assert_eq!(server["display_name"], "GitHub MCP");
        assert!(server["endpoint"].as_str().unwrap().ends_with("/mcp/github-mcp"));
        assert_eq!(server["tool_prefix"], "github-mcp");
        // The same segment again: taken.
        let res = create(json!({"name": "github mcp", "url": "http://127.0.0.1:9/mcp"})).await;
        assert_eq!(res.status(), StatusCode::CONFLICT);
        for bad in ["!!!", " GitHub", "Git\u{200b}Hub", "Git\u{202e}Hub", "日本語"] {
            let res = create(json!({"name": bad, "url": "http://127.0.0.1:9/mcp"})).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let long = "x".repeat(101);
        let res = create(json!({"name": "plain", "display_name": long, "url": "http://127.0.0.1:9/mcp"})).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        // A plain name shows as itself; an explicit display name is kept.
        let res = create(json!({"name": "jira", "display_name": "Jira (prod)", "url": "http://127.0.0.1:9/mcp"})).await;
        let jira: Value = res.json().await.unwrap();
        assert_eq!((jira["name"].as_str(), jira["display_name"].as_str()), (Some("jira"), Some("Jira (prod)")));
        let id = jira["id"].as_i64().unwrap();
        let res = app
            .send(Method::PATCH, &format!("/admin/api/mcp-servers/{id}"), Some(&admin), Some(json!({"display_name": ""})))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let jira: Value = res.json().await.unwrap();
        assert_eq!(jira["display_name"], "jira", "reset to the name");
        assert_eq!(jira["name"], "jira");
        let res = app
            .send(Method::PATCH, &format!("/admin/api/mcp-servers/{id}"), Some(&admin), Some(json!({"display_name": "Jira\u{0007}"})))
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
}
