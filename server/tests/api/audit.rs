//! The MCP security scanner against real peers: server-everything without auth, a Python SDK
//! server with a poisoned tool and a tool that shadows another server's, the gateway's own
//! endpoint (clean), a target that redirects to another host and one on a private address
//! without the opt-in (nothing sent there), cancellation, the live feed, the original's two
//! endpoints, and the CLI's exit codes.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestEnv};
use crate::mcp::{add_server, set_access, user_token};
use crate::observe::{next_json, ws_connect};
use crate::peers::{EverythingServer, PeerServer, Sdk};

async fn wait_done(app: &TestApp, admin: &str, id: i64) -> Value {
    for _ in 0..600 {
        let scan: Value = app
            .get_as(&format!("/admin/api/audits/{id}"), admin)
            .await
            .json()
            .await
            .unwrap();
        if scan["status"] != "running" {
            return scan;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("scan {id} did not finish");
}

async fn scan(app: &TestApp, admin: &str, body: Value) -> Value {
    let res = app
        .post_json("/admin/api/audits", Some(admin), body.clone())
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "{body}");
    let started: Value = res.json().await.unwrap();
    assert_eq!(started["status"], "running");
    let done = wait_done(app, admin, started["id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], "done", "{done}");
    done
}

fn checks_with_findings(report: &Value, severity: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == severity)
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect()
}

/// A listener that counts connections and answers every request with `answer`.
async fn counting_listener(answer: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/mcp"), count)
}

#[tokio::test]
async fn the_scanner_finds_what_real_servers_get_wrong() {
    let env = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_public_port();
    let app = env.spawn().await;
    let admin = app.admin_token().await;
    let mut live = ws_connect(&app, &admin, "&kinds=audit").await;
    assert_eq!(next_json(&mut live).await.unwrap()["type"], "subscribed");

    // A private address without the opt-in: refused before anything is sent.
    let (quiet_url, quiet_count) =
        counting_listener("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    let res = app
        .post_json("/admin/api/audits", Some(&admin), json!({"url": quiet_url}))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden_address", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("private")
            || body.to_string().contains("private"),
        "{body}"
    );
    // Hostile targets are refused the same way.
    for url in [
        "http://169.254.169.254/mcp",
        "file:///etc/passwd",
        "http://user:pw@example.com/mcp",
        "not a url",
    ] {
        let res = app
            .post_json(
                "/admin/api/audits",
                Some(&admin),
                json!({"url": url, "allow_private": true}),
            )
            .await;
        // Where it points is refused (403 `forbidden_address`), what it is malformed (400).
        let expected = if url.starts_with("http://169.254") {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(res.status(), expected, "{url}");
    }
    let res = app
        .post_json("/admin/api/audits", Some(&admin), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(quiet_count.load(Ordering::SeqCst), 0, "nothing was sent");

    // A target that redirects to another host: the other host hears nothing.
    let (elsewhere, elsewhere_count) =
        counting_listener("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    let elsewhere = elsewhere.replace("127.0.0.1", "localhost");
    let redirect: &'static str = Box::leak(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere}\r\ncontent-length: 0\r\n\r\n"
        )
        .into_boxed_str(),
    );
    let (redirecting, _) = counting_listener(redirect).await;
    let done = scan(
        &app,
        &admin,
        json!({"url": redirecting, "allow_private": true}),
    )
    .await;
    assert_eq!(
        elsewhere_count.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
    assert!(
        done["report"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "error"),
        "{done}"
    );

    // The private-address opt-in covers the target only: a host its 401 names gets nothing.
    let (named, named_count) =
        counting_listener("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
    let named = named.replace("/mcp", "/.well-known/oauth-protected-resource");
    let challenge: &'static str = Box::leak(
        format!("HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer resource_metadata=\"{named}\"\r\ncontent-length: 0\r\n\r\n").into_boxed_str(),
    );
    let (guarded, guarded_count) = counting_listener(challenge).await;
    let done = scan(&app, &admin, json!({"url": guarded, "allow_private": true})).await;
    assert!(
        guarded_count.load(Ordering::SeqCst) > 5,
        "the target itself was scanned"
    );
    assert_eq!(
        named_count.load(Ordering::SeqCst),
        0,
        "the host the target named was not contacted"
    );
    let medium = checks_with_findings(&done["report"], "medium");
    assert!(
        medium.contains(&"authorization_metadata".to_string()),
        "{medium:?}"
    );

    // server-everything has no authentication: the unauthenticated checks fire.
    let everything = EverythingServer::start("streamableHttp").await;
    let done = scan(
        &app,
        &admin,
        json!({"url": everything.url(), "allow_private": true}),
    )
    .await;
    let high = checks_with_findings(&done["report"], "high");
    for check in [
        "unauthenticated_initialize",
        "unauthenticated_tools_list",
        "unauthenticated_tools_call",
    ] {
        assert!(
            high.contains(&check.to_string()),
            "{check} in {high:?}: {:#}",
            done["report"]
        );
    }
    assert!(done["summary"]["high"].as_u64().unwrap() >= 3);
    assert!(done["report"]["tools"].as_u64().unwrap() > 5, "{done}");
    let every_id = done["id"].as_i64().unwrap();
    // Its progress was on the live feed, up to the end.
    let mut statuses = Vec::new();
    while let Some(m) = next_json(&mut live).await {
        if m["type"] == "audit_progress" && m["scan"]["id"] == every_id {
            statuses.push(m["scan"]["status"].as_str().unwrap().to_string());
            if m["scan"]["status"] != "running" {
                break;
            }
        }
    }
    assert!(
        statuses.len() > 5 && statuses.last().unwrap() == "done",
        "{statuses:?}"
    );

    // A Python SDK server with a poisoned tool, and one whose `echo` it shadows.
    let alpha = PeerServer::start(Sdk::Py1, "alpha", &["--poisoned"]).await;
    let beta = PeerServer::start(Sdk::Py1, "beta", &[]).await;
    let alpha_id = add_server(&app, &admin, json!({"name": "alpha", "url": alpha.url()})).await;
    let beta_id = add_server(&app, &admin, json!({"name": "beta", "url": beta.url()})).await;
    // A registered server on a private address is scanned without the opt-in.
    let done = scan(&app, &admin, json!({"server_id": alpha_id})).await;
    assert_eq!(done["server"], "alpha");
    let findings = done["report"]["findings"].as_array().unwrap();
    let poisoned = findings
        .iter()
        .find(|f| f["check"] == "tool_poisoning")
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert_eq!(poisoned["severity"], "high");
    assert!(
        poisoned["evidence"].as_str().unwrap().contains("weather")
            || poisoned["title"].as_str().unwrap().contains("weather"),
        "{poisoned}"
    );
    let shadow = findings
        .iter()
        .find(|f| f["check"] == "tool_shadowing" && f["title"].as_str().unwrap().contains("echo"))
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert!(
        shadow["evidence"].as_str().unwrap().contains("beta"),
        "{shadow}"
    );
    for f in findings {
        assert!(
            !f["detail"].as_str().unwrap().is_empty() && !f["fix"].as_str().unwrap().is_empty()
        );
    }

    // The gateway's own endpoint, with a user's token: clean (nothing high or medium), and the
    // token appears nowhere in what is stored.
    let user = app.create_user(&admin, "carol", "user").await;
    set_access(&app, &admin, user, beta_id, true).await;
    let token = user_token(&app, "carol").await;
    let own = app.url("/mcp/beta");
    let res = app
        .post_json(
            "/admin/api/run-mcp-audit",
            Some(&admin),
            json!({"url": own, "bearer_token": token, "allow_private": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["summary"]["high"], 0, "{report:#}");
    assert_eq!(report["summary"]["medium"], 0, "{report:#}");
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] != "error"),
        "{report:#}"
    );
    assert!(report["tools"].as_u64().unwrap() >= 3, "{report}");
    let scans: Value = app
        .get_as("/admin/api/audits", &admin)
        .await
        .json()
        .await
        .unwrap();
    let own_scan = scans
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["target"] == own.as_str())
        .unwrap();
    let id = own_scan["id"].as_i64().unwrap();
    let res = app
        .get_as(&format!("/admin/api/audits/{id}/export"), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let exported = res.text().await.unwrap();
    assert!(!exported.contains(&token), "the token is never stored");
    let events: Value = app
        .get_as("/admin/api/audit-log", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(!events.to_string().contains(&token));
    // The original's export endpoint.
    let res = app
        .post_json(
            "/admin/api/export-mcp-audit",
            Some(&admin),
            json!({"url": everything.url(), "allow_private": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let exported: Value = res.json().await.unwrap();
    assert!(exported["summary"]["high"].as_u64().unwrap() >= 3);

    // Cancellation: a target that accepts and never answers.
    // (A key in its query string is not stored.)
    let (stalled, _) = counting_listener("").await;
    let stalled = format!("{stalled}?api_key=s3cr3t");
    let res = app
        .post_json(
            "/admin/api/audits",
            Some(&admin),
            json!({"url": stalled, "allow_private": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let started: Value = res.json().await.unwrap();
    assert!(!started.to_string().contains("s3cr3t"), "{started}");
    assert!(
        started["target"].as_str().unwrap().ends_with("/mcp?…"),
        "{started}"
    );
    let id = started["id"].as_i64().unwrap();
    let res = app
        .post_json(
            &format!("/admin/api/audits/{id}/cancel"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "cancelled");
    let res = app
        .post_json(
            &format!("/admin/api/audits/{id}/cancel"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = app.get_as("/admin/api/audits/999999", &admin).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// `authmcp-gateway audit`: exit 1 with high findings, 2 when it cannot run (a private address
/// without --allow-private), 0 for a clean endpoint; --json prints the report.
#[tokio::test]
async fn the_audit_command_exits_by_severity() {
    let everything = EverythingServer::start("streamableHttp").await;
    let bin = env!("CARGO_BIN_EXE_authmcp-gateway");
    let url = everything.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["audit", &url, "--allow-private", "--json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["summary"]["high"].as_u64().unwrap() >= 3);

    let url = everything.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin).args(["audit", &url]).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("private"));

    let env = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_public_port();
    let app = env.spawn().await;
    let admin = app.admin_token().await;
    let peer = PeerServer::start(Sdk::Py1, "clean", &[]).await;
    add_server(&app, &admin, json!({"name": "clean", "url": peer.url()})).await;
    let token = app.mcp_token("admin", crate::helpers::ADMIN_PASSWORD).await;
    let url = app.url("/mcp/clean");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["audit", &url, "--allow-private", "--token", &token])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("0 high, 0 medium"), "{stdout}");
}
