//! The MCP conformance suite (`@modelcontextprotocol/conformance`, server scenarios) against real
//! backends directly and through `/mcp/{server}`: the gateway must lose no check the backend
//! passes on its own.

use std::collections::BTreeMap;
use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestEnv};
use crate::mcp::add_server;
use crate::peers::{EverythingServer, PeerServer, Sdk, conformance_suite};

/// A loopback proxy that adds the gateway credential to every request (the suite cannot send
/// one) and passes everything else, streams included, both ways.
async fn credential_proxy(
    upstream: String,
    token: String,
) -> (String, tokio::task::JoinHandle<()>) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (client, upstream, token) = (client.clone(), upstream.clone(), token.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 16 << 20)
                .await
                .unwrap_or_default();
            let mut forwarded = client
                .request(parts.method, &upstream)
                .bearer_auth(&token)
                .body(body);
            for (name, value) in &parts.headers {
                if !matches!(
                    name.as_str(),
                    "host" | "content-length" | "authorization" | "connection"
                ) {
                    forwarded = forwarded.header(name, value);
                }
            }
            let res = match forwarded.send().await {
                Ok(res) => res,
                Err(_) => {
                    return Response::builder().status(502).body(Body::empty()).unwrap();
                }
            };
            let mut out = Response::builder().status(res.status().as_u16());
            for (name, value) in res.headers() {
                if !matches!(
                    name.as_str(),
                    "content-length" | "transfer-encoding" | "connection"
                ) {
                    out = out.header(name, value);
                }
            }
            out.body(Body::from_stream(
                res.bytes_stream().map(|c| c.map_err(std::io::Error::other)),
            ))
            .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/mcp",
        listener.local_addr().unwrap().port()
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

/// Runs the suite's server scenarios for one revision; returns each check's status by
/// (scenario, check id).
async fn run_suite(url: &str, requirements: &str) -> BTreeMap<(String, String), String> {
    let (node, suite) = conformance_suite();
    let out = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        tokio::process::Command::new(node)
            .arg(suite)
            .args(["server", "--url", url, "--requirements", requirements, "-o"])
            .arg(out.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the conformance suite finished")
    .expect("run the conformance suite");
    let checks = read_checks(out.path());
    assert!(
        !checks.is_empty(),
        "the suite wrote no results for {url}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    checks
}

fn read_checks(dir: &Path) -> BTreeMap<(String, String), String> {
    let mut checks = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let scenario = path.file_name().unwrap().to_string_lossy().to_string();
        // `server-<scenario>-<YYYY-MM-DDTHH-MM-SS…>`
        let name = scenario.strip_prefix("server-").unwrap_or(&scenario);
        let cut = name
            .match_indices('-')
            .map(|(i, _)| i)
            .find(|&i| {
                let rest = &name.as_bytes()[i + 1..];
                rest.len() > 10
                    && rest[..4].iter().all(u8::is_ascii_digit)
                    && rest[4] == b'-'
                    && rest[10] == b'T'
            })
            .unwrap_or(name.len());
        let scenario = name[..cut].to_string();
        let Ok(text) = std::fs::read_to_string(path.join("checks.json")) else {
            continue;
        };
        for check in serde_json::from_str::<Vec<Value>>(&text).unwrap() {
            let id = check["id"].as_str().unwrap_or_default().to_string();
            let mut status = check["status"].as_str().unwrap_or_default().to_string();
            if status != "SUCCESS"
                && let Some(why) = check["errorMessage"].as_str()
            {
                status = format!("{status} ({why})");
            }
            checks.insert((scenario.clone(), id), status);
        }
    }
    checks
}

/// Every check a backend passes directly passes through `/mcp/{server}`, for the 2025-11-25 and
/// 2026-07-28 requirements, against server-everything and the Python SDK 2.x server.
#[tokio::test]
async fn the_gateway_loses_no_conformance_check() {
    let everything = EverythingServer::start("streamableHttp").await;
    let python = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let app = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_public_port()
        .with_var("MCP_RATE_LIMIT_USER_PER_MINUTE", "100000")
        .with_var("MCP_RATE_LIMIT_USER_SERVER_PER_MINUTE", "100000")
        .with_var("MCP_RATE_LIMIT_USER_TOOL_PER_MINUTE", "100000")
        .spawn()
        .await;
    let admin = app.admin_token().await;
    let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
    let backends = [("everything", everything.url()), ("python", python.url())];
    let mut lost = Vec::new();
    let mut compared = 0;
    for (name, url) in &backends {
        // The suite calls tools the servers never list (`test_simple_text`, …): under
        // quarantine (the default) the gateway refuses calls to tools it has not seen listed
        // and approved, which is not what this compares.
        add_server(
            &app,
            &admin,
            json!({"name": name, "url": url, "tool_pinning": "warn"}),
        )
        .await;
        let (proxy, _task) =
            credential_proxy(app.url(&format!("/mcp/{name}")), token.clone()).await;
        for requirements in ["2025-11-25", "2026-07-28"] {
            let direct = run_suite(url, requirements).await;
            let through = run_suite(&proxy, requirements).await;
            for (check, status) in &direct {
                if status != "SUCCESS" {
                    continue;
                }
                compared += 1;
                let got = through.get(check).map_or("missing", String::as_str);
                // SKIPPED: not applicable through the gateway (e.g. list-change notifications
                // of a backend bridged from the handshake era, which the gateway does not
                // advertise), not a failed check.
                if got != "SUCCESS" && got != "SKIPPED" {
                    lost.push(format!("{name} {requirements} {check:?}: {got}"));
                }
            }
        }
    }
    assert!(
        compared > 40,
        "too few checks pass directly to compare: {compared}"
    );
    assert!(
        lost.is_empty(),
        "checks lost through the gateway:\n{}",
        lost.join("\n")
    );
}
