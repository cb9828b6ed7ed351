//! The aggregated `/mcp` endpoint and per-tool authorization, against real MCP peers.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestEnv, db_test};
use crate::mcp::{add_server, rpc_at, set_access, user_token};
use crate::peers::{PeerServer, Script, Sdk, run_python_client, run_ts_client};

const LONG_TOOL: &str = "fetch_the_quarterly_financial_report_for_the_board_of_directors";

fn req(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// `initialize` on `/mcp`; returns the session id.
async fn initialize(app: &TestApp, token: &str) -> String {
    let (status, headers, message) = rpc_at(
        app,
        "/mcp",
        Some(token),
        None,
        &[],
        req(
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["result"]["serverInfo"]["name"], "authmcp-gateway");
    assert_eq!(message["result"]["protocolVersion"], "2025-06-18");
    headers["mcp-session-id"].to_str().unwrap().to_string()
}

async fn call(app: &TestApp, token: &str, session: &str, tool: &str, args: Value) -> Value {
    let (status, _, message) = rpc_at(
        app,
        "/mcp",
        Some(token),
        Some(session),
        &[("mcp-protocol-version", "2025-06-18")],
        req(7, "tools/call", json!({"name": tool, "arguments": args})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tool}: {message}");
    message
}

async fn call_text(app: &TestApp, token: &str, session: &str, tool: &str, args: Value) -> String {
    text(&call(app, token, session, tool, args).await).to_string()
}

fn text(message: &Value) -> &str {
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {message}"))
}

/// Every tool name through `/mcp`, following cursors.
async fn tool_names(app: &TestApp, token: &str, session: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let params = cursor
            .as_ref()
            .map(|c| json!({"cursor": c}))
            .unwrap_or_else(|| json!({}));
        let (status, _, message) = rpc_at(
            app,
            "/mcp",
            Some(token),
            Some(session),
            &[("mcp-protocol-version", "2025-06-18")],
            req(2, "tools/list", params),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{message}");
        for tool in message["result"]["tools"].as_array().unwrap() {
            names.push(tool["name"].as_str().unwrap().to_string());
        }
        match message["result"]["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return names,
        }
    }
    panic!("pagination did not end");
}

fn error_code(message: &Value) -> i64 {
    message["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {message}"))
}

/// Real clients (Python SDK in both eras, TypeScript SDK) through `/mcp` over three backends of
/// three kinds that all offer `echo` and `add`: distinct names, each callable, progress before
/// the result, a long name aliased and callable.
#[tokio::test]
async fn real_clients_see_every_backend_under_distinct_names() {
    let (app, admin) = TestApp::sqlite_with_admin().await;
    let alpha = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let beta = PeerServer::start(Sdk::Py1, "beta", &["--long-tool"]).await;
    let gamma = PeerServer::start(Sdk::Py1, "gamma", &["--transport", "sse"]).await;
    for (name, peer, transport) in [
        ("alpha", &alpha, "streamable-http"),
        ("beta", &beta, "auto"),
        ("gamma", &gamma, "sse"),
    ] {
        add_server(
            &app,
            &admin,
            json!({"name": name, "url": peer.url(), "transport": transport}),
        )
        .await;
    }
    let user = app.create_user(&admin, "dana", "user").await;
    let servers: Value = app
        .get_as("/admin/api/mcp-servers", &admin)
        .await
        .json()
        .await
        .unwrap();
    for server in servers.as_array().unwrap() {
        set_access(&app, &admin, user, server["id"].as_i64().unwrap(), true).await;
    }
    let token = user_token(&app, "dana").await;

    let script = Script {
        tool: "beta__echo",
        args: r#"{"text": "hi"}"#,
        progress_tool: "alpha__slow",
        progress_args: r#"{"steps": 3}"#,
    };
    let url = app.url("/mcp");
    let python = ["auto", "legacy", "2026-07-28"].map(|mode| {
        let (url, token, script) = (url.clone(), token.clone(), script.clone());
        async move {
            (
                format!("python {mode}"),
                run_python_client(&url, &token, mode, &script).await,
            )
        }
    });
    let ts = {
        let (url, token, script) = (url.clone(), token.clone(), script.clone());
        async move {
            (
                "typescript".to_string(),
                run_ts_client(&url, &token, &script).await,
            )
        }
    };
    let (mut runs, ts) = futures::future::join(futures::future::join_all(python), ts).await;
    runs.push(ts);
    for (client, out) in runs {
        assert!(out.get("error").is_none(), "{client}: {out}");
        let tools: Vec<&str> = out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        for expected in [
            "alpha__echo",
            "alpha__add",
            "alpha__slow",
            "beta__echo",
            "beta__add",
            "gamma__echo",
            "gamma__add",
        ] {
            assert!(
                tools.contains(&expected),
                "{client}: {expected} in {tools:?}"
            );
        }
        assert!(
            tools.iter().all(|t| t.len() <= 64),
            "{client}: names fit 64 characters: {tools:?}"
        );
        assert_eq!(out["text"], "beta:hi", "{client}");
        assert_eq!(out["progress_result"], "done", "{client}");
        let progress: Vec<f64> = out["progress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert_eq!(progress, [1.0, 2.0, 3.0], "{client}: progress relayed");
        assert_eq!(out["progress_before_result"], true, "{client}");
    }

    let session = initialize(&app, &token).await;
    let names = tool_names(&app, &token, &session).await;
    let alias = names
        .iter()
        .find(|n| n.starts_with("beta__fetch_the_quarterly"))
        .unwrap_or_else(|| panic!("the long tool is listed: {names:?}"))
        .clone();
    assert!(alias.len() <= 64 && alias != format!("beta__{LONG_TOOL}"));
    let reply = call(&app, &token, &session, &alias, json!({"quarter": "Q3"})).await;
    assert_eq!(
        text(&reply),
        "beta:report Q3",
        "the alias routes to the long name"
    );
    // The same alias after a restart of the gateway: a pure function of prefix and name.
    assert_eq!(
        alias,
        names
            .iter()
            .find(|n| n.starts_with("beta__fetch"))
            .unwrap()
            .clone()
    );
    for (tool, expected) in [("alpha__echo", "alpha:x"), ("gamma__echo", "gamma:x")] {
        let reply = call(&app, &token, &session, tool, json!({"text": "x"})).await;
        assert_eq!(text(&reply), expected, "{tool}");
    }
    let reply = call(
        &app,
        &token,
        &session,
        "gamma__add",
        json!({"a": 2, "b": 3}),
    )
    .await;
    assert_eq!(text(&reply), "5");
    // Unknown names are refused, never guessed or broadcast.
    for name in ["echo", "nosuch__echo", "alpha__nosuchtool_0123456789ab"] {
        let reply = call(&app, &token, &session, name, json!({})).await;
        assert!(
            reply.get("error").is_some() || reply["result"]["isError"] == true,
            "{name}: {reply}"
        );
    }
    // The unprefixed backend name is not a tool of the aggregated server.
    let reply = call(&app, &token, &session, "echo", json!({"text": "x"})).await;
    assert_eq!(error_code(&reply), -32602);

    // The aggregated lists are recorded as activity of "*", the calls under their backend.
    let mut activity = Value::Null;
    for _ in 0..100 {
        activity = app
            .get_as("/admin/api/mcp-activity?server=gamma", &admin)
            .await
            .json()
            .await
            .unwrap();
        let rows = activity["items"].as_array().unwrap();
        if rows
            .iter()
            .any(|a| a["method"] == "tools/call" && a["tool"] == "add" && a["status"] == "ok")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the routed call is recorded under its backend: {activity}");
}

db_test! {
    /// Per-server access and per-tool rules decide what a user sees and may call, on `/mcp` and
    /// on `/mcp/{server}`, for JWTs and API keys, on the next request after a change.
    async fn access_and_tool_rules_filter_and_refuse(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let alpha = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
        let beta = PeerServer::start(Sdk::Py2, "beta", &[]).await;
        let alpha_id = add_server(&app, &admin, json!({"name": "alpha", "url": alpha.url()})).await;
        let beta_id = add_server(&app, &admin, json!({"name": "beta", "url": beta.url()})).await;
        let user = app.create_user(&admin, "erin", "user").await;
        set_access(&app, &admin, user, alpha_id, true).await;
        let token = user_token(&app, "erin").await;
        let session = initialize(&app, &token).await;

        let mut names = tool_names(&app, &token, &session).await;
        names.sort();
        assert_eq!(names, ["alpha__add", "alpha__echo", "alpha__slow"], "only the granted server");
        // A server the caller may not use answers like an unknown name (#22), and is recorded.
        let reply = call(&app, &token, &session, "beta__echo", json!({"text": "x"})).await;
        assert_eq!(error_code(&reply), -32602, "{reply}");
        let event = app.wait_for_event("access_denied").await;
        assert_eq!(event.server.as_deref(), Some("beta"));

        // Deny `add`, allow everything else.
        let res = app
            .send(
                Method::PUT,
                &format!("/admin/api/users/{user}/tool-rules"),
                Some(&admin),
                Some(json!({"rules": [{"server_id": alpha_id, "pattern": "ad?", "effect": "deny"}]})),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let rules: Value = res.json().await.unwrap();
        assert_eq!(rules["rules"][0]["server"], "alpha");
        let names = tool_names(&app, &token, &session).await;
        assert!(!names.contains(&"alpha__add".to_string()) && names.contains(&"alpha__echo".to_string()), "{names:?}");
        let reply = call(&app, &token, &session, "alpha__add", json!({"a": 1, "b": 2})).await;
        assert_eq!(error_code(&reply), -32003, "a denied tool is refused: {reply}");
        let reply = call(&app, &token, &session, "alpha__echo", json!({"text": "ok"})).await;
        assert_eq!(text(&reply), "alpha:ok");
        // The same rule on the per-server endpoint.
        let (_, headers, _) = rpc_at(&app, "/mcp/alpha", Some(&token), None, &[], req(1, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}))).await;
        let direct = headers["mcp-session-id"].to_str().unwrap().to_string();
        let version = [("mcp-protocol-version", "2025-06-18")];
        let (_, _, listed) = rpc_at(&app, "/mcp/alpha", Some(&token), Some(&direct), &version, req(2, "tools/list", json!({}))).await;
        let direct_names: Vec<&str> = listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert!(!direct_names.contains(&"add") && direct_names.contains(&"echo"), "{listed}");
        let (status, _, refused) = rpc_at(&app, "/mcp/alpha", Some(&token), Some(&direct), &version, req(3, "tools/call", json!({"name": "add", "arguments": {"a": 1, "b": 2}}))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(error_code(&refused), -32003);

        // Allow rules: only matching tools remain.
        app.send(
            Method::PUT,
            &format!("/admin/api/users/{user}/tool-rules"),
            Some(&admin),
            Some(json!({"rules": [{"server_id": alpha_id, "pattern": "ec*", "effect": "allow"}]})),
        )
        .await;
        assert_eq!(tool_names(&app, &token, &session).await, ["alpha__echo"]);

        // An API key's rules narrow its owner's further; the JWT is unaffected.
        let created: Value = app
            .post_json("/auth/api-keys", Some(&token), json!({"name": "ci"}))
            .await
            .json()
            .await
            .unwrap();
        let secret = created["secret"].as_str().unwrap().to_string();
        let key_id = created["key"]["id"].as_i64().unwrap();
        let res = app
            .send(
                Method::PUT,
                &format!("/admin/api/api-keys/{key_id}/tool-rules"),
                Some(&admin),
                Some(json!({"rules": [{"server_id": alpha_id, "pattern": "echo", "effect": "deny"}]})),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let key_session = initialize(&app, &secret).await;
        assert!(tool_names(&app, &secret, &key_session).await.is_empty());
        let reply = call(&app, &secret, &key_session, "alpha__echo", json!({"text": "x"})).await;
        assert_eq!(error_code(&reply), -32003);
        assert_eq!(tool_names(&app, &token, &session).await, ["alpha__echo"]);

        // Bad rules are refused whole and change nothing (a rule naming no server: 400, for the
        // body; 404 is for the path's user, below).
        for (bad, expected) in [
            (json!({"rules": [{"server_id": alpha_id, "pattern": "", "effect": "deny"}]}), StatusCode::BAD_REQUEST),
            (json!({"rules": [{"server_id": 999_999, "pattern": "x", "effect": "deny"}]}), StatusCode::BAD_REQUEST),
            (json!({"rules": [{"server_id": alpha_id, "pattern": "x", "effect": "maybe"}]}), StatusCode::BAD_REQUEST),
        ] {
            let res = app
                .send(Method::PUT, &format!("/admin/api/users/{user}/tool-rules"), Some(&admin), Some(bad.clone()))
                .await;
            assert_eq!(res.status(), expected, "{bad}");
        }
        assert_eq!(tool_names(&app, &token, &session).await, ["alpha__echo"]);
        let res = app
            .send(Method::PUT, "/admin/api/users/424242/tool-rules", Some(&admin), Some(json!({"rules": []})))
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);

        // Clearing the rules and granting beta shows everything again, at once.
        app.send(Method::PUT, &format!("/admin/api/users/{user}/tool-rules"), Some(&admin), Some(json!({"rules": []}))).await;
        set_access(&app, &admin, user, beta_id, true).await;
        let mut names = tool_names(&app, &token, &session).await;
        names.sort();
        assert_eq!(names, ["alpha__add", "alpha__echo", "alpha__slow", "beta__add", "beta__echo", "beta__slow"]);
        let reply = call(&app, &token, &session, "beta__add", json!({"a": 40, "b": 2})).await;
        assert_eq!(text(&reply), "42");
    }
}

/// A session outlives a backend restart (only that backend is re-initialised) and works on
/// another replica; lists paginate with per-backend cursors; admin edits reach clients as
/// list_changed on their GET stream.
#[tokio::test]
async fn sessions_survive_restarts_and_replicas() {
    let env = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_var("MCP_AGGREGATE_PAGE_SIZE", "2");
    let app = env.spawn().await;
    let admin = app.admin_token().await;
    let alpha = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let mut beta = PeerServer::start(Sdk::Py1, "beta", &[]).await;
    let alpha_id = add_server(&app, &admin, json!({"name": "alpha", "url": alpha.url()})).await;
    add_server(
        &app,
        &admin,
        json!({"name": "beta", "url": beta.url(), "transport": "streamable-http"}),
    )
    .await;
    let token = app.mcp_token("admin", crate::helpers::ADMIN_PASSWORD).await;
    let session = initialize(&app, &token).await;

    // Pages of 2 over 6 tools: every tool exactly once.
    let names = tool_names(&app, &token, &session).await;
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 6, "{names:?}");
    assert_eq!(names.len(), 6, "no duplicates across pages: {names:?}");
    let (_, _, bad) = rpc_at(
        &app,
        "/mcp",
        Some(&token),
        Some(&session),
        &[],
        req(3, "tools/list", json!({"cursor": "garbage!"})),
    )
    .await;
    assert_eq!(error_code(&bad), -32602);

    assert_eq!(
        call_text(&app, &token, &session, "beta__echo", json!({"text": "1"})).await,
        "beta:1"
    );
    beta.restart().await;
    assert_eq!(
        call_text(&app, &token, &session, "beta__echo", json!({"text": "2"})).await,
        "beta:2",
        "the restarted backend is re-initialised behind the same client session"
    );
    assert_eq!(
        call_text(&app, &token, &session, "alpha__echo", json!({"text": "3"})).await,
        "alpha:3"
    );

    // Another replica on the same store and key serves the same session.
    let replica = env.spawn().await;
    assert_eq!(
        call_text(
            &replica,
            &token,
            &session,
            "alpha__echo",
            json!({"text": "4"})
        )
        .await,
        "alpha:4"
    );
    assert_eq!(
        call_text(
            &replica,
            &token,
            &session,
            "beta__add",
            json!({"a": 1, "b": 1})
        )
        .await,
        "2"
    );
    // The session is bound to its user, and a forged one is unknown.
    app.create_user(&admin, "frank", "admin").await;
    let frank = user_token(&app, "frank").await;
    let (status, _, _) = rpc_at(
        &app,
        "/mcp",
        Some(&frank),
        Some(&session),
        &[],
        req(4, "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // One character in the middle changed (the last one may already be the replacement, or
    // carry only padding bits).
    let mid = session.len() / 2;
    let swap = if &session[mid..=mid] == "A" { "B" } else { "A" };
    let forged = format!("{}{swap}{}", &session[..mid], &session[mid + 1..]);
    let (status, _, _) = rpc_at(
        &app,
        "/mcp",
        Some(&token),
        Some(&forged),
        &[],
        req(4, "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = rpc_at(
        &app,
        "/mcp",
        None,
        Some(&session),
        &[],
        req(4, "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An admin edit (a new prefix) reaches the client's GET stream as list_changed.
    let res = app
        .client
        .get(app.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = res.bytes_stream();
    let res = app
        .send(
            Method::PATCH,
            &format!("/admin/api/mcp-servers/{alpha_id}"),
            Some(&admin),
            Some(json!({"tool_prefix": "al"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("notifications/tools/list_changed") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "list_changed on the GET stream: {seen}");
    let names = tool_names(&app, &token, &session).await;
    assert!(
        names.contains(&"al__echo".to_string()) && !names.contains(&"alpha__echo".to_string()),
        "{names:?}"
    );
    // A prefix another server already has is refused.
    let res = app
        .send(
            Method::PATCH,
            &format!("/admin/api/mcp-servers/{alpha_id}"),
            Some(&admin),
            Some(json!({"tool_prefix": "beta"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = app
        .send(
            Method::PATCH,
            &format!("/admin/api/mcp-servers/{alpha_id}"),
            Some(&admin),
            Some(json!({"tool_prefix": "bad__prefix"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // DELETE ends the session's backend sessions here.
    let res = app
        .client
        .delete(app.url("/mcp"))
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    replica.stop().await;
}

/// server-everything (streamable HTTP) registered as `every`; keep it alive while it is used.
async fn add_everything(app: &TestApp, admin: &str) -> crate::peers::EverythingServer {
    let everything = crate::peers::EverythingServer::start("streamableHttp").await;
    add_server(
        app,
        admin,
        // Its sampling tool is listed only to clients that can sample, so the gateway's own
        // list (its baseline under quarantine) lacks it: pinning is not what this tests.
        json!({"name": "every", "url": everything.url(), "transport": "streamable-http", "tool_pinning": "warn"}),
    )
    .await;
    everything
}

/// A backend's request to the client (sampling) reaches the client on the call's stream with an
/// id that names the backend, and the client's answer goes back to that backend.
#[tokio::test]
async fn server_requests_reach_the_client_and_answers_go_back() {
    let (app, admin) = TestApp::sqlite_with_admin().await;
    let _everything = add_everything(&app, &admin).await;
    let alpha = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    add_server(&app, &admin, json!({"name": "alpha", "url": alpha.url()})).await;
    let token = app.mcp_token("admin", crate::helpers::ADMIN_PASSWORD).await;
    let (_, headers, _) = rpc_at(
        &app,
        "/mcp",
        Some(&token),
        None,
        &[],
        req(1, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {"sampling": {}}, "clientInfo": {"name": "t", "version": "1"}})),
    )
    .await;
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    let res = app
        .client
        .post(app.url("/mcp"))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .json(&req(
            5,
            "tools/call",
            json!({"name": "every__trigger-sampling-request", "arguments": {"prompt": "hello"}}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = res.bytes_stream();
    let mut buffer = String::new();
    let mut answered = false;
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(chunk)) = stream.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                    continue;
                };
                let message: Value = serde_json::from_str(data).unwrap();
                if message["method"] == "sampling/createMessage" {
                    let id = message["id"].as_str().unwrap().to_string();
                    assert!(id.starts_with("amg."), "the request id names its backend: {id}");
                    let (status, _, _) = rpc_at(
                        &app,
                        "/mcp",
                        Some(&token),
                        Some(&session),
                        &[("mcp-protocol-version", "2025-06-18")],
                        json!({"jsonrpc": "2.0", "id": id, "result": {"role": "assistant", "content": {"type": "text", "text": "sampled reply"}, "model": "test-model"}}),
                    )
                    .await;
                    assert_eq!(status, StatusCode::ACCEPTED);
                    answered = true;
                } else if message["id"] == 5 {
                    return message;
                }
            }
        }
        Value::Null
    })
    .await
    .expect("the call finished");
    assert!(answered, "the sampling request reached the client");
    assert!(outcome.to_string().contains("sampled reply"), "{outcome}");
    // Meanwhile the other backend answered normally on the same session.
    assert_eq!(
        call_text(
            &app,
            &token,
            &session,
            "alpha__add",
            json!({"a": 1, "b": 2})
        )
        .await,
        "3"
    );
    // An answer to nothing is refused.
    let (status, _, _) = rpc_at(
        &app,
        "/mcp",
        Some(&token),
        Some(&session),
        &[],
        json!({"jsonrpc": "2.0", "id": "amg.999.1", "result": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Prompts, resources and templates through `/mcp`: listed under their names, routed by name
/// or URI (exact, or the one matching template), colliding URIs rewritten and still readable.
#[tokio::test]
async fn prompts_and_resources_are_routed() {
    let (app, admin) = TestApp::sqlite_with_admin().await;
    let everything = add_everything(&app, &admin).await;
    let token = app.mcp_token("admin", crate::helpers::ADMIN_PASSWORD).await;
    let session = initialize(&app, &token).await;
    let ask = |method: &'static str, params: Value| {
        let (app, token, session) = (&app, &token, &session);
        async move {
            let (status, _, message) = rpc_at(
                app,
                "/mcp",
                Some(token),
                Some(session),
                &[("mcp-protocol-version", "2025-06-18")],
                req(5, method, params),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{method}: {message}");
            message
        }
    };
    let prompts = ask("prompts/list", json!({})).await;
    assert!(
        prompts["result"]["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "every__simple-prompt"),
        "{prompts}"
    );
    let got = ask("prompts/get", json!({"name": "every__simple-prompt"})).await;
    assert!(
        !got["result"]["messages"].as_array().unwrap().is_empty(),
        "{got}"
    );
    let resources = ask("resources/list", json!({})).await;
    let uri = resources["result"]["resources"][0]["uri"]
        .as_str()
        .unwrap_or_else(|| panic!("{resources}"))
        .to_string();
    let read = ask("resources/read", json!({"uri": uri})).await;
    assert_eq!(read["result"]["contents"][0]["uri"], uri.as_str(), "{read}");
    let templates = ask("resources/templates/list", json!({})).await;
    let template = templates["result"]["resourceTemplates"][0]["uriTemplate"]
        .as_str()
        .unwrap_or_else(|| panic!("{templates}"))
        .to_string();
    let concrete = template.replace("{resourceId}", "1");
    let read = ask("resources/read", json!({"uri": concrete})).await;
    assert!(
        read["result"]["contents"].is_array(),
        "a templated URI is routed: {read}"
    );
    let missing = ask("resources/read", json!({"uri": "nosuch://nothing"})).await;
    assert_eq!(missing["error"]["code"], -32002);

    // A second server with the same resources: the URIs collide and are rewritten.
    add_server(
        &app,
        &admin,
        json!({"name": "evry2", "url": everything.url(), "transport": "streamable-http"}),
    )
    .await;
    let resources = ask("resources/list", json!({})).await;
    let uris: Vec<String> = resources["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap().to_string())
        .collect();
    assert!(uris.iter().all(|u| u.starts_with("mcpgw://")), "{uris:?}");
    let mine = uris
        .iter()
        .find(|u| u.starts_with("mcpgw://evry2/"))
        .unwrap()
        .clone();
    let read = ask("resources/read", json!({"uri": mine})).await;
    assert_eq!(
        read["result"]["contents"][0]["uri"],
        mine.as_str(),
        "named as the client asked: {read}"
    );
}
