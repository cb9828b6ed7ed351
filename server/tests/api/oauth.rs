//! The OAuth 2.1 authorization server: the Python SDK's real login, the conformance suite, and
//! every negative case driven by hand.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{ADMIN_PASSWORD, TestApp, TestEnv, USER_PASSWORD, db_test};
use crate::mcp::{add_server, rpc_at, set_access};
use crate::peers::{PeerServer, Sdk, conformance_suite, run_oauth_client};

/// A client that follows no redirects (the browser's first hop is what we check).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

const VERIFIER: &str = "a-pkce-code-verifier-that-is-long-enough-0123456789";

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Registers a public client (DCR) and returns its client_id.
async fn register(app: &TestApp, redirect: &str) -> String {
    let res = app
        .post_json(
            "/oauth/register",
            None,
            json!({"client_name": "Test Client", "redirect_uris": [redirect], "token_endpoint_auth_method": "none", "application_type": "native"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert!(
        body.get("client_secret").is_none(),
        "public clients get no secret"
    );
    body["client_id"].as_str().unwrap().to_string()
}

#[derive(Clone)]
struct Authz<'a> {
    client_id: &'a str,
    redirect: &'a str,
    resource: Option<String>,
    scope: Option<&'a str>,
}

/// GET /oauth/authorize; returns the response (not followed).
async fn authorize(app: &TestApp, a: &Authz<'_>, cookie: Option<&str>) -> reqwest::Response {
    let mut url = url::Url::parse(&app.url("/oauth/authorize")).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", a.client_id)
            .append_pair("redirect_uri", a.redirect)
            .append_pair("state", "xyz-state")
            .append_pair("code_challenge", &challenge(VERIFIER))
            .append_pair("code_challenge_method", "S256");
        if let Some(r) = &a.resource {
            q.append_pair("resource", r);
        }
        if let Some(s) = a.scope {
            q.append_pair("scope", s);
        }
    }
    let mut req = no_redirects().get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_string()
}

/// The consent decision; returns (status, body, Set-Cookie).
async fn decide(
    app: &TestApp,
    request: &str,
    approve: bool,
    creds: Option<(&str, &str)>,
    origin: &str,
) -> (StatusCode, Value, Option<String>) {
    let mut body = json!({"request": request, "approve": approve});
    if let Some((u, p)) = creds {
        body["username"] = json!(u);
        body["password"] = json!(p);
    }
    let res = app
        .client
        .post(app.url("/oauth/api/decision"))
        .header("origin", origin)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    (status, res.json().await.unwrap_or(Value::Null), cookie)
}

/// The whole browser step: authorize → consent page → approve with credentials → the code.
async fn code_for(app: &TestApp, a: &Authz<'_>, user: &str, password: &str) -> String {
    let res = authorize(app, a, None).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "authorize redirects to the consent page"
    );
    let consent = location(&res);
    assert!(
        consent.starts_with(&format!("{}/consent?request=", app.state.config.public_url)),
        "{consent}"
    );
    let request = query_of(&consent)["request"].clone();
    let (status, body, _) = decide(
        app,
        &request,
        true,
        Some((user, password)),
        &app.state.config.public_url,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let back = query_of(body["redirect_to"].as_str().unwrap());
    assert_eq!(back["state"], "xyz-state");
    assert_eq!(back["iss"], app.state.config.public_url, "RFC 9207 iss");
    back["code"].clone()
}

/// POSTs an `application/x-www-form-urlencoded` body.
async fn form_post(app: &TestApp, path: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    app.client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn token_request(app: &TestApp, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let res = form_post(app, "/oauth/token", form).await;
    let status = res.status();
    if status == StatusCode::OK {
        assert!(
            res.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("no-store")
        );
    }
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn exchange(
    app: &TestApp,
    client_id: &str,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    token_request(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// POST initialize at an MCP path with a bearer token; returns the HTTP status.
/// An `mcp:read` token calls `tool` on `path` in every spelling a gate could misread: plain and
/// escaped method (403 `insufficient_scope`), a null id and no id under 2026-07-28 with complete
/// request metadata (so the refusal is for the id, not for missing `_meta`), a duplicate method,
/// and look-alike keys of a response (400 -32600).
async fn read_scope_cannot_call(app: &TestApp, path: &str, token: &str, session: &str, tool: &str) {
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let cases = [
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"x"}}}}}}"#
            ),
            false,
            StatusCode::FORBIDDEN,
            -32003,
        ),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":4,"method":"tools/c\u0061ll","params":{{"name":"{tool}","arguments":{{"text":"x"}}}}}}"#
            ),
            false,
            StatusCode::FORBIDDEN,
            -32003,
        ),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"x"}},{meta}}}}}"#
            ),
            true,
            StatusCode::BAD_REQUEST,
            -32600,
        ),
        (
            format!(
                r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"x"}},{meta}}}}}"#
            ),
            true,
            StatusCode::BAD_REQUEST,
            -32600,
        ),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","method":"tools/list","params":{{"name":"{tool}"}}}}"#
            ),
            false,
            StatusCode::BAD_REQUEST,
            -32600,
        ),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"error":{{"code":0,"message":""}},"Method":"tools/call","Params":{{"name":"{tool}"}}}}"#
            ),
            false,
            StatusCode::BAD_REQUEST,
            -32600,
        ),
    ];
    for (body, modern, status, code) in cases {
        let mut req = app
            .client
            .post(app.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.clone());
        req = if modern {
            req.header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", tool)
        } else {
            req.header("mcp-protocol-version", "2025-06-18")
                .header("mcp-session-id", session)
        };
        let res = req.send().await.unwrap();
        let got = res.status();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{path} {body}: {answer}");
    }
}

async fn mcp_status(app: &TestApp, path: &str, token: &str) -> StatusCode {
    let (status, _, _) = rpc_at(
        app,
        path,
        Some(token),
        None,
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    status
}

/// The Python SDK's `OAuthClientProvider` logs in against `/mcp/{server}` and `/mcp`:
/// discovery, registration, PKCE, consent, token, calls and a refresh; a denial is reported.
#[tokio::test]
async fn python_sdk_oauth_login_end_to_end() {
    let env = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_public_port();
    let app = env.spawn().await;
    let admin = app.admin_token().await;
    let alpha = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
    let alpha_id = add_server(&app, &admin, json!({"name": "alpha", "url": alpha.url()})).await;
    let user = app.create_user(&admin, "gina", "user").await;
    set_access(&app, &admin, user, alpha_id, true).await;
    let public = app.state.config.public_url.clone();
    let runs = futures::future::join_all(
        [
            ("per-server", format!("{public}/mcp/alpha"), "echo", vec![]),
            ("aggregated", format!("{public}/mcp"), "alpha__echo", vec![]),
            (
                "per-server, 2026-07-28",
                format!("{public}/mcp/alpha"),
                "echo",
                vec!["--mode", "2026-07-28"],
            ),
            (
                "aggregated, client_secret_post",
                format!("{public}/mcp"),
                "alpha__echo",
                vec!["--token-auth-method", "client_secret_post"],
            ),
        ]
        .map(|(what, url, tool, extra)| async move {
            let mut args = vec!["--tool", tool];
            args.extend(extra);
            (
                what,
                run_oauth_client(&url, "gina", USER_PASSWORD, &args).await,
            )
        }),
    )
    .await;
    for (what, out) in runs {
        assert!(out.get("error").is_none(), "{what}: {out}");
        assert_eq!(out["text"], "alpha:hi", "{what}: {out}");
        assert_eq!(out["text_after_refresh"], "alpha:hi", "{what}: {out}");
        assert_eq!(out["refreshed"], true, "{what}: the SDK refreshed: {out}");
        assert_eq!(out["access_token_changed"], true, "{what}: {out}");
        assert_eq!(
            out["token_requests"],
            json!(["authorization_code", "refresh_token"]),
            "{what}: {out}"
        );
    }
    let out = run_oauth_client(
        &format!("{public}/mcp/alpha"),
        "gina",
        USER_PASSWORD,
        &["--decision", "deny"],
    )
    .await;
    assert_eq!(out["denied"], true, "{out}");
    assert_eq!(out["token_requests"], json!([]), "{out}");
    // The grant is listed for the admin, with its last use.
    let grants: Value = app
        .get_as(&format!("/admin/api/users/{user}/oauth-grants"), &admin)
        .await
        .json()
        .await
        .unwrap();
    let grants = grants.as_array().unwrap();
    assert!(!grants.is_empty());
    assert!(
        grants
            .iter()
            .all(|g| g["last_used_at"].is_i64() && g["scope"] == "mcp"),
        "{grants:?}"
    );
}

/// The MCP conformance suite's authorization-server scenarios, with the browser step driven
/// through the real consent flow.
#[tokio::test]
async fn conformance_suite_authorization_scenarios() {
    let env = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_public_port();
    let app = env.spawn().await;
    let issuer = app.state.config.public_url.clone();
    let client_id = register(&app, "http://127.0.0.1/callback").await;
    let (node, suite) = conformance_suite();
    let out_dir = tempfile::tempdir().unwrap();
    let port = crate::peers::free_port();
    let mut child = tokio::process::Command::new(node)
        .arg(suite)
        .args(["authorization", "--url", &issuer, "--client-id", &client_id])
        .args(["--resource", &format!("{issuer}/mcp")])
        .args(["-p", &port.to_string(), "-o"])
        .arg(out_dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the conformance suite");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut authorize_url = None;
    let mut log = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            log.push_str(&line);
            log.push('\n');
            if line.contains("/oauth/authorize?") {
                authorize_url = Some(line.trim().to_string());
            }
            if authorize_url.is_some() && line.contains("Callback server started") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "the suite asked for the browser step: {log}");
    let url = authorize_url.unwrap();
    let url = &url[url.find("http").unwrap()..];
    let res = no_redirects().get(url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let request = query_of(&location(&res))["request"].clone();
    let (status, body, _) = decide(
        &app,
        &request,
        true,
        Some(("admin", ADMIN_PASSWORD)),
        &issuer,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The browser goes back to the suite's callback.
    reqwest::get(body["redirect_to"].as_str().unwrap())
        .await
        .unwrap();
    let drain = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the suite finished")
        .unwrap();
    let rest = drain.await.unwrap_or_default();
    let mut checks = Vec::new();
    for dir in std::fs::read_dir(out_dir.path()).unwrap() {
        let file = dir.unwrap().path().join("checks.json");
        if let Ok(text) = std::fs::read_to_string(&file) {
            checks.extend(serde_json::from_str::<Vec<Value>>(&text).unwrap());
        }
    }
    assert!(
        status.success(),
        "conformance suite failed:\n{log}{rest}\n{checks:#?}"
    );
    assert!(
        checks.len() >= 3,
        "both scenarios reported their checks: {checks:#?}"
    );
    for check in &checks {
        assert!(
            matches!(check["status"].as_str(), Some("SUCCESS")),
            "{check:#}"
        );
    }
}

db_test! {
    /// Discovery documents, challenges, registration rules and the happy path by hand.
    async fn discovery_registration_and_code_flow(env: TestEnv) {
        let app = env.with_admin().with_public_port().spawn().await;
        let admin = app.admin_token().await;
        let public = app.state.config.public_url.clone();
        let alpha = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
        let alpha_id = add_server(&app, &admin, json!({"name": "alpha", "url": alpha.url()})).await;
        add_server(&app, &admin, json!({"name": "beta", "url": alpha.url()})).await;

        let meta: Value = app.get("/.well-known/oauth-authorization-server").await.json().await.unwrap();
        assert_eq!(meta["issuer"], public);
        assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
        assert_eq!(meta["registration_endpoint"], format!("{public}/oauth/register"));
        let oidc: Value = app.get("/.well-known/openid-configuration").await.json().await.unwrap();
        assert_eq!(oidc["token_endpoint"], meta["token_endpoint"]);
        for (path, resource) in [
            ("/.well-known/oauth-protected-resource/mcp/alpha", format!("{public}/mcp/alpha")),
            ("/.well-known/oauth-protected-resource/mcp", format!("{public}/mcp")),
            ("/.well-known/oauth-protected-resource", format!("{public}/mcp")),
        ] {
            let prm: Value = app.get(path).await.json().await.unwrap();
            assert_eq!(prm["resource"], resource, "{path}");
            assert_eq!(prm["authorization_servers"], json!([public]));
        }
        assert_eq!(app.get("/.well-known/oauth-protected-resource/mcp/nosuch").await.status(), StatusCode::NOT_FOUND);
        let res = app.client.post(app.url("/mcp")).json(&json!({})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()["www-authenticate"],
            format!("Bearer resource_metadata=\"{public}/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\"").as_str()
        );

        // Registration rules.
        for (bad, error) in [
            (json!({"redirect_uris": ["http://evil.example/cb"]}), "invalid_redirect_uri"),
            (json!({"redirect_uris": []}), "invalid_redirect_uri"),
            (json!({"redirect_uris": ["https://a.example/cb#frag"]}), "invalid_redirect_uri"),
            (json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]}), "invalid_client_metadata"),
            (json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}), "invalid_client_metadata"),
            (json!("not an object"), "invalid_client_metadata"),
        ] {
            let res = app.post_json("/oauth/register", None, bad.clone()).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(res.json::<Value>().await.unwrap()["error"], error, "{bad}");
        }
        let confidential: Value = app
            .post_json("/oauth/register", None, json!({"redirect_uris": ["https://app.example/cb"], "client_name": "Web App"}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(confidential["token_endpoint_auth_method"], "client_secret_basic", "RFC 7591 default");
        assert!(confidential["client_secret"].as_str().unwrap().len() > 30);

        let redirect = "http://127.0.0.1:9/callback";
        let client_id = register(&app, "http://127.0.0.1/callback").await;
        let user = app.create_user(&admin, "hal", "user").await;
        set_access(&app, &admin, user, alpha_id, true).await;
        let to_alpha = Authz { client_id: &client_id, redirect, resource: Some(format!("{public}/mcp/alpha")), scope: None };

        // The consent page's view of the request.
        let res = authorize(&app, &to_alpha, None).await;
        let request = query_of(&location(&res))["request"].clone();
        let shown: Value = app.get(&format!("/oauth/api/request?request={request}")).await.json().await.unwrap();
        assert_eq!(shown["client_name"], "Test Client");
        assert_eq!(shown["redirect_host"], "127.0.0.1");
        assert_eq!(shown["resource"], format!("{public}/mcp/alpha"));
        assert_eq!(shown["scopes"], json!(["mcp"]));
        assert_eq!(shown["signed_in_as"], Value::Null);
        assert_eq!(app.get("/oauth/api/request?request=forged").await.status(), StatusCode::NOT_FOUND);
        // The consent page cannot be framed.
        let page = app.get(&format!("/consent?request={request}")).await;
        assert_eq!(page.headers()["x-frame-options"], "DENY");
        assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
        // Cross-origin decisions are refused; wrong passwords too.
        let (status, _, _) = decide(&app, &request, true, Some(("hal", USER_PASSWORD)), "https://evil.example").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body, _) = decide(&app, &request, true, Some(("hal", "wrong password 123")), &public).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        // Denial goes back to the client.
        let (status, body, _) = decide(&app, &request, false, Some(("hal", USER_PASSWORD)), &public).await;
        assert_eq!(status, StatusCode::OK);
        let back = query_of(body["redirect_to"].as_str().unwrap());
        assert_eq!(back["error"], "access_denied");
        assert_eq!(back["state"], "xyz-state");
        assert_eq!(back["iss"], public);

        // Approve, exchange, use.
        let code = code_for(&app, &to_alpha, "hal", USER_PASSWORD).await;
        let (status, tokens) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["scope"], "mcp");
        let access = tokens["access_token"].as_str().unwrap().to_string();
        assert_eq!(mcp_status(&app, "/mcp/alpha", &access).await, StatusCode::OK);
        // Bound to its resource: not another server, not the aggregated endpoint, not the API.
        assert_eq!(mcp_status(&app, "/mcp/beta", &access).await, StatusCode::UNAUTHORIZED);
        assert_eq!(mcp_status(&app, "/mcp", &access).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.get_as("/auth/me", &access).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get_as("/admin/api/users", &access).await.status(), StatusCode::UNAUTHORIZED);

        // A token for /mcp works there, and per server for servers the user may use.
        let to_all = Authz { resource: Some(format!("{public}/mcp")), ..to_alpha.clone() };
        let code = code_for(&app, &to_all, "hal", USER_PASSWORD).await;
        let (_, all) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        let all_access = all["access_token"].as_str().unwrap();
        assert_eq!(mcp_status(&app, "/mcp", all_access).await, StatusCode::OK);
        assert_eq!(mcp_status(&app, "/mcp/alpha", all_access).await, StatusCode::OK);
        assert_eq!(mcp_status(&app, "/mcp/beta", all_access).await, StatusCode::FORBIDDEN, "not granted");
        // An OAuth token never opens self-service: no API key can be minted from it.
        let res = app.post_json("/auth/api-keys", Some(all_access), json!({"name": "escape"})).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get_as("/auth/me", all_access).await.status(), StatusCode::UNAUTHORIZED);
        // A user without access to a server cannot approve a token for it.
        let to_beta = Authz { resource: Some(format!("{public}/mcp/beta")), ..to_alpha.clone() };
        let res = authorize(&app, &to_beta, None).await;
        let request = query_of(&location(&res))["request"].clone();
        let (status, _, _) = decide(&app, &request, true, Some(("hal", USER_PASSWORD)), &public).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Consents given are in the audit log (and the consent page's sign-ins), never a refused one.
        let audit: Value = app
            .get_as("/admin/api/audit-log?kind=authorization&per_page=200", &admin)
            .await
            .json()
            .await
            .unwrap();
        let given = audit["items"].as_array().unwrap();
        assert_eq!(given.len(), 2, "{audit}");
        assert!(given.iter().all(|a| a["actor_username"] == "hal" && a["after"]["client_id"] == client_id.as_str()));
        assert!(given.iter().any(|a| a["after"]["resource"] == format!("{public}/mcp/alpha")));
        assert!(!given.iter().any(|a| a["after"]["resource"] == format!("{public}/mcp/beta")));
        let audit: Value = app
            .get_as("/admin/api/audit-log?kind=sign_in&per_page=200", &admin)
            .await
            .json()
            .await
            .unwrap();
        assert!(
            audit["items"].as_array().unwrap().iter().any(|a| a["actor_username"] == "hal" && a["after"]["audience"] == "consent"),
            "{audit}"
        );
    }
}

db_test! {
    /// PKCE, code reuse, redirect URIs, refresh reuse, revocation, scopes, remembered consent,
    /// client revocation, and metadata documents (served and private).
    async fn negative_cases(env: TestEnv) {
        let app = env
            .with_admin()
            .with_public_port()
            .with_var("OAUTH_CIMD_ALLOW_HTTP", "true")
            .spawn()
            .await;
        let admin = app.admin_token().await;
        let public = app.state.config.public_url.clone();
        let alpha = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
        add_server(&app, &admin, json!({"name": "alpha", "url": alpha.url()})).await;
        let redirect = "http://127.0.0.1:7/callback";
        let client_id = register(&app, "http://127.0.0.1/callback").await;
        let a = Authz { client_id: &client_id, redirect, resource: Some(format!("{public}/mcp/alpha")), scope: None };

        // Authorize-time errors about the client or redirect URI are shown, never redirected.
        for bad in [
            Authz { redirect: "http://127.0.0.1:7/other", ..a.clone() },
            Authz { redirect: "https://evil.example/callback", ..a.clone() },
            Authz { client_id: "amc_unknown", ..a.clone() },
        ] {
            let res = authorize(&app, &bad, None).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST);
            assert!(res.headers().get("location").is_none());
            assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        }
        // Other errors: the gateway's own page while the client is not trusted (neither
        // registered by an admin nor approved by the signed-in user, or it would be an open
        // redirector for anyone who registers one) ...
        let plain = format!("/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={redirect}&state=s&code_challenge={}&code_challenge_method=plain", challenge(VERIFIER));
        let implicit = format!("/oauth/authorize?response_type=token&client_id={client_id}&redirect_uri={redirect}&state=s");
        let get = |path: String, cookie: Option<String>| {
            let app = &app;
            async move {
                let mut req = no_redirects().get(app.url(&path));
                if let Some(c) = cookie {
                    req = req.header("cookie", c);
                }
                req.send().await.unwrap()
            }
        };
        for res in [
            get(plain.clone(), None).await,
            get(implicit.clone(), None).await,
            authorize(&app, &Authz { resource: Some("https://elsewhere.example/mcp".into()), ..a.clone() }, None).await,
            authorize(&app, &Authz { scope: Some("admin"), ..a.clone() }, None).await,
        ] {
            assert_eq!(res.status(), StatusCode::BAD_REQUEST);
            assert!(res.headers().get("location").is_none(), "not redirected for an untrusted client");
        }
        // ... and back to the redirect URI once the signed-in user approved this client.
        let res = authorize(&app, &a, None).await;
        let request = query_of(&location(&res))["request"].clone();
        let (_, _, cookie) = decide(&app, &request, true, Some(("admin", ADMIN_PASSWORD)), &public).await;
        let cookie = cookie.expect("signed in on the consent page");
        let res = get(plain, Some(cookie.clone())).await;
        assert_eq!(query_of(&location(&res))["error"], "invalid_request", "plain PKCE is refused");
        let res = get(implicit, Some(cookie.clone())).await;
        assert_eq!(query_of(&location(&res))["error"], "unsupported_response_type");
        let res = authorize(&app, &Authz { resource: Some("https://elsewhere.example/mcp".into()), ..a.clone() }, Some(&cookie)).await;
        assert_eq!(query_of(&location(&res))["error"], "invalid_target");
        let res = authorize(&app, &Authz { scope: Some("admin"), ..a.clone() }, Some(&cookie)).await;
        assert_eq!(query_of(&location(&res))["error"], "invalid_scope");

        // Wrong PKCE verifier: refused, and the code is burnt.
        let code = code_for(&app, &a, "admin", ADMIN_PASSWORD).await;
        let (status, body) = exchange(&app, &client_id, &code, redirect, "a-different-verifier-that-is-also-long-enough-000").await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
        let (status, _) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // Mismatched redirect URI at the token endpoint.
        let code = code_for(&app, &a, "admin", ADMIN_PASSWORD).await;
        let (_, body) = exchange(&app, &client_id, &code, "http://127.0.0.1:8/callback", VERIFIER).await;
        assert_eq!(body["error"], "invalid_grant");
        // Reused code: refused, and the tokens issued with it are revoked.
        let code = code_for(&app, &a, "admin", ADMIN_PASSWORD).await;
        let (status, first) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        assert_eq!(status, StatusCode::OK);
        let access = first["access_token"].as_str().unwrap().to_string();
        assert_eq!(mcp_status(&app, "/mcp/alpha", &access).await, StatusCode::OK);
        let (status, body) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
        assert_eq!(mcp_status(&app, "/mcp/alpha", &access).await, StatusCode::UNAUTHORIZED);
        app.wait_for_event("token_reuse").await;
        // Another client cannot use the code, nor authenticate as a public client with a secret.
        let other = register(&app, "http://127.0.0.1/callback").await;
        let code = code_for(&app, &a, "admin", ADMIN_PASSWORD).await;
        let (_, body) = exchange(&app, &other, &code, redirect, VERIFIER).await;
        assert_eq!(body["error"], "invalid_grant");
        let (status, body) = token_request(&app, &[("grant_type", "authorization_code"), ("client_id", &client_id), ("client_secret", "guess"), ("code", "x")]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
        let (_, body) = token_request(&app, &[("grant_type", "password"), ("client_id", &client_id)]).await;
        assert_eq!(body["error"], "unsupported_grant_type");

        // Refresh rotates; presenting a spent refresh token revokes the session.
        let code = code_for(&app, &a, "admin", ADMIN_PASSWORD).await;
        let (_, t1) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        let r1 = t1["refresh_token"].as_str().unwrap().to_string();
        let (status, t2) = token_request(&app, &[("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", &r1)]).await;
        assert_eq!(status, StatusCode::OK, "{t2}");
        let a2 = t2["access_token"].as_str().unwrap().to_string();
        assert_ne!(t2["refresh_token"], t1["refresh_token"]);
        assert_eq!(mcp_status(&app, "/mcp/alpha", &a2).await, StatusCode::OK);
        let (_, body) = token_request(&app, &[("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", &r1)]).await;
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(mcp_status(&app, "/mcp/alpha", &a2).await, StatusCode::UNAUTHORIZED, "reuse revoked the session");
        // A refresh cannot move to another resource or widen the scope.
        let code = code_for(&app, &a, "admin", ADMIN_PASSWORD).await;
        let (_, t) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        let r = t["refresh_token"].as_str().unwrap().to_string();
        let (_, body) = token_request(&app, &[("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", &r), ("resource", &format!("{public}/mcp"))]).await;
        assert_eq!(body["error"], "invalid_target");
        // Revocation (RFC 7009): the refresh token's session ends; unknown tokens are fine.
        let access = t["access_token"].as_str().unwrap().to_string();
        assert_eq!(mcp_status(&app, "/mcp/alpha", &access).await, StatusCode::OK);
        let res = form_post(&app, "/oauth/revoke", &[("token", r.as_str()), ("client_id", &client_id)]).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(mcp_status(&app, "/mcp/alpha", &access).await, StatusCode::UNAUTHORIZED);
        let res = form_post(&app, "/oauth/revoke", &[("token", "nonsense"), ("client_id", &client_id)]).await;
        assert_eq!(res.status(), StatusCode::OK);
        // Access-token revocation.
        let code = code_for(&app, &a, "admin", ADMIN_PASSWORD).await;
        let (_, t) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        let access = t["access_token"].as_str().unwrap().to_string();
        form_post(&app, "/oauth/revoke", &[("token", access.as_str()), ("client_id", &client_id)]).await;
        assert_eq!(mcp_status(&app, "/mcp/alpha", &access).await, StatusCode::UNAUTHORIZED);

        // mcp:read may list but not call: 403 insufficient_scope (step-up).
        let read = Authz { scope: Some("mcp:read"), ..a.clone() };
        let res = authorize(&app, &read, None).await;
        let request = query_of(&location(&res))["request"].clone();
        let (_, body, cookie) = decide(&app, &request, true, Some(("admin", ADMIN_PASSWORD)), &public).await;
        let cookie = cookie.expect("the consent page signs the user in");
        let code = query_of(body["redirect_to"].as_str().unwrap())["code"].clone();
        let (_, t) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        assert_eq!(t["scope"], "mcp:read");
        let read_token = t["access_token"].as_str().unwrap().to_string();
        let (status, headers, _) = rpc_at(&app, "/mcp/alpha", Some(&read_token), None, &[], json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})).await;
        assert_eq!(status, StatusCode::OK);
        let session = headers["mcp-session-id"].to_str().unwrap().to_string();
        let v = [("mcp-protocol-version", "2025-06-18")];
        let (status, _, listed) = rpc_at(&app, "/mcp/alpha", Some(&read_token), Some(&session), &v, json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        assert!(listed["result"]["tools"].is_array());
        let (status, headers, _) = rpc_at(&app, "/mcp/alpha", Some(&read_token), Some(&session), &v, json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer error=\"insufficient_scope\", scope=\"mcp\""));
        // No spelling of a call gets past the scope: escaped, null id, no id, duplicate method.
        read_scope_cannot_call(&app, "/mcp/alpha", &read_token, &session, "echo").await;

        // Remembered consent: the signed-in browser goes straight back with a code.
        let res = authorize(&app, &read, Some(&cookie)).await;
        let back = query_of(&location(&res));
        assert!(back.contains_key("code") && back["state"] == "xyz-state", "{back:?}");
        // Another resource asks again (wider scopes: `consent_and_registration_…` below).
        let elsewhere = Authz { resource: Some(format!("{public}/mcp")), ..read.clone() };
        let res = authorize(&app, &elsewhere, Some(&cookie)).await;
        assert!(location(&res).starts_with(&format!("{public}/consent?")), "consent is per resource");
        // On /mcp too, no spelling of a call gets past mcp:read.
        let res = authorize(&app, &elsewhere, None).await;
        let request = query_of(&location(&res))["request"].clone();
        let (_, body, _) = decide(&app, &request, true, Some(("admin", ADMIN_PASSWORD)), &public).await;
        let code = query_of(body["redirect_to"].as_str().unwrap())["code"].clone();
        let (_, t) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        let agg_read = t["access_token"].as_str().unwrap().to_string();
        let (status, headers, _) = rpc_at(&app, "/mcp", Some(&agg_read), None, &[], json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})).await;
        assert_eq!(status, StatusCode::OK);
        let agg_session = headers["mcp-session-id"].to_str().unwrap().to_string();
        read_scope_cannot_call(&app, "/mcp", &agg_read, &agg_session, "alpha__echo").await;

        // Metadata documents: a private address is refused without a fetch; a served one works.
        for url in ["http://10.1.2.3/client.json", "http://127.0.0.1:1/client.json", "http://169.254.169.254/latest/meta-data"] {
            let res = authorize(&app, &Authz { client_id: url, ..a.clone() }, None).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{url}");
            assert!(res.text().await.unwrap().contains("private or reserved address"), "{url}");
        }
        let res = authorize(&app, &Authz { client_id: "https://10.0.0.1/c.json", ..a.clone() }, None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);

        // Revoking a client ends its tokens and its refreshes.
        let code = code_for(&app, &a, "admin", ADMIN_PASSWORD).await;
        let (_, t) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        let access = t["access_token"].as_str().unwrap().to_string();
        let clients: Value = app.get_as("/admin/api/oauth/clients", &admin).await.json().await.unwrap();
        let key = clients.as_array().unwrap().iter().find(|c| c["client_id"] == client_id.as_str()).unwrap()["id"].as_i64().unwrap();
        let res = app.send(Method::DELETE, &format!("/admin/api/oauth/clients/{key}"), Some(&admin), None).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(mcp_status(&app, "/mcp/alpha", &access).await, StatusCode::UNAUTHORIZED);
        let (status, _) = token_request(&app, &[("grant_type", "refresh_token"), ("client_id", &client_id), ("refresh_token", t["refresh_token"].as_str().unwrap())]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let res = authorize(&app, &a, None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "a revoked client cannot start a sign-in");

        // A password change ends the consent page's sign-in.
        let fresh = register(&app, "http://127.0.0.1/callback").await;
        let res = authorize(&app, &Authz { client_id: &fresh, ..a.clone() }, None).await;
        let request = query_of(&location(&res))["request"].clone();
        let signed_in = |cookie: String| {
            let (app, request) = (&app, request.clone());
            async move {
                let shown: Value = app
                    .client
                    .get(app.url(&format!("/oauth/api/request?request={request}")))
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                shown["signed_in_as"].clone()
            }
        };
        assert_eq!(signed_in(cookie.clone()).await, "admin");
        // Signing out of the admin UI in a browser ends that browser's consent sign-in too
        // (on every replica: the cookie is revoked in the database, not only cleared).
        let res = authorize(&app, &Authz { client_id: &fresh, ..a.clone() }, None).await;
        let other = query_of(&location(&res))["request"].clone();
        let (_, _, second) = decide(&app, &other, true, Some(("admin", ADMIN_PASSWORD)), &public).await;
        let second = second.expect("signed in on the consent page");
        assert_eq!(signed_in(second.clone()).await, "admin");
        let res = app.client.post(app.url("/admin/api/session/logout")).header("cookie", second.clone()).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert!(
            res.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("amg_consent=;")),
            "the sign-out clears the consent cookie"
        );
        assert_eq!(signed_in(second).await, Value::Null, "signed out with the admin UI");
        assert_eq!(signed_in(cookie.clone()).await, "admin", "another browser's sign-in stays");
        let me: Value = app.get_as("/admin/api/me", &admin).await.json().await.unwrap();
        let res = app
            .post_json(&format!("/admin/api/users/{}/password", me["id"]), Some(&admin), json!({"password": "a brand new long passphrase"}))
            .await;
        let status = res.status();
        assert!(status.is_success(), "{status} {me} {}", res.text().await.unwrap_or_default());
        assert_eq!(signed_in(cookie).await, Value::Null, "signed out by the password change");
    }
}

/// A client identified by its metadata document URL (served on loopback, allowed here).
#[tokio::test]
async fn metadata_document_clients() {
    let env = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_public_port()
        .with_var("OAUTH_CIMD_ALLOW_HTTP", "true")
        .with_var("OAUTH_CIMD_ALLOW_PRIVATE", "true");
    let app = env.spawn().await;
    let public = app.state.config.public_url.clone();
    let doc_port = crate::peers::free_port();
    let doc_url = format!("http://127.0.0.1:{doc_port}/oauth/client.json");
    let doc = json!({"client_id": doc_url, "client_name": "Documented App", "redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"});
    let wrong = json!({"client_id": "http://127.0.0.1/someone-else.json", "client_name": "Impostor", "redirect_uris": ["http://127.0.0.1/callback"]});
    let router = axum::Router::new()
        .route(
            "/oauth/client.json",
            axum::routing::get(move || async move { axum::Json(doc) }),
        )
        .route(
            "/oauth/wrong.json",
            axum::routing::get(move || async move { axum::Json(wrong) }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", doc_port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let redirect = "http://127.0.0.1:5/callback";
    let a = Authz {
        client_id: &doc_url,
        redirect,
        resource: Some(format!("{public}/mcp")),
        scope: None,
    };
    let code = code_for(&app, &a, "admin", ADMIN_PASSWORD).await;
    let (status, t) = exchange(&app, &doc_url, &code, redirect, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let res = authorize(&app, &a, None).await;
    let request = query_of(&location(&res))["request"].clone();
    let shown: Value = app
        .get(&format!("/oauth/api/request?request={request}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["client_name"], "Documented App");
    assert_eq!(shown["client_kind"], "cimd");
    // A document that names another client id is refused.
    let wrong_url = format!("http://127.0.0.1:{doc_port}/oauth/wrong.json");
    let res = authorize(
        &app,
        &Authz {
            client_id: &wrong_url,
            ..a.clone()
        },
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Unregistered redirect for the documented client.
    let res = authorize(
        &app,
        &Authz {
            redirect: "https://evil.example/cb",
            ..a.clone()
        },
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

db_test! {
    /// Issue #22: remembered consent cannot widen itself across resources; error redirects do
    /// not make the gateway an open redirector; registrations are bounded and their names
    /// cleaned; a consent request is decided once; a server's credential does not follow it to
    /// another origin; `/mcp` answers names of servers the caller may not use like unknown ones.
    async fn consent_and_registration_cannot_be_widened_or_abused(env: TestEnv) {
        let app = env
            .with_admin()
            .with_public_port()
            .with_var("OAUTH_REGISTER_PER_MINUTE", "1000")
            .with_var("OAUTH_MAX_CLIENTS_PER_ADDRESS", "6")
            .spawn()
            .await;
        let admin = app.admin_token().await;
        let public = app.state.config.public_url.clone();
        let alpha = PeerServer::start(Sdk::Py2, "alpha", &[]).await;
        let alpha_id = add_server(&app, &admin, json!({"name": "peer", "url": alpha.url()})).await;
        add_server(&app, &admin, json!({"name": "peer2", "url": alpha.url()})).await;
        let redirect = "http://127.0.0.1:7/callback";
        let client_id = register(&app, redirect).await;
        let on = |server: &str, scope: &'static str| Authz {
            client_id: &client_id,
            redirect,
            resource: Some(format!("{public}/mcp/{server}")),
            scope: Some(scope),
        };
        let to_consent = |res: &reqwest::Response| {
            res.status() == StatusCode::SEE_OTHER && location(res).starts_with(&format!("{public}/consent?"))
        };

        // The widening sequence: mcp:read on peer, then mcp on peer2 ...
        let res = authorize(&app, &on("peer", "mcp:read"), None).await;
        let request = query_of(&location(&res))["request"].clone();
        let (status, _, cookie) = decide(&app, &request, true, Some(("admin", ADMIN_PASSWORD)), &public).await;
        assert_eq!(status, StatusCode::OK);
        let cookie = cookie.unwrap();
        let res = authorize(&app, &on("peer2", "mcp"), Some(&cookie)).await;
        assert!(to_consent(&res), "a new resource asks");
        let request = query_of(&location(&res))["request"].clone();
        let res = app
            .client
            .post(app.url("/oauth/api/decision"))
            .header("origin", &public)
            .header("cookie", &cookie)
            .json(&json!({"request": request, "approve": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "approved with the consent sign-in");
        // ... then mcp on peer asks again: peer was approved for mcp:read only.
        let res = authorize(&app, &on("peer", "mcp"), Some(&cookie)).await;
        assert!(to_consent(&res), "a wider scope on peer asks again, whatever peer2 got");
        // What was approved per resource stays silent.
        for (server, scope) in [("peer", "mcp:read"), ("peer2", "mcp"), ("peer2", "mcp:read")] {
            let res = authorize(&app, &on(server, scope), Some(&cookie)).await;
            assert!(query_of(&location(&res)).contains_key("code"), "{server} {scope} is remembered");
        }
        let me: Value = app.get_as("/admin/api/me", &admin).await.json().await.unwrap();
        let grants: Value = app.get_as(&format!("/admin/api/users/{}/oauth-grants", me["id"]), &admin).await.json().await.unwrap();
        let grant = grants.as_array().unwrap().iter().find(|g| g["client_id"] == client_id.as_str()).unwrap();
        let mut shown: Vec<(String, String)> = grant["resources"].as_array().unwrap().iter()
            .map(|r| (r["resource"].as_str().unwrap().to_string(), r["scope"].as_str().unwrap().to_string()))
            .collect();
        shown.sort();
        assert_eq!(shown, [(format!("{public}/mcp/peer"), "mcp:read".into()), (format!("{public}/mcp/peer2"), "mcp".into())]);

        // A consent request is decided once.
        let res = authorize(&app, &on("peer", "mcp"), None).await;
        let request = query_of(&location(&res))["request"].clone();
        let (first, _, _) = decide(&app, &request, true, Some(("admin", ADMIN_PASSWORD)), &public).await;
        let (second, body, _) = decide(&app, &request, true, Some(("admin", ADMIN_PASSWORD)), &public).await;
        assert_eq!(first, StatusCode::OK);
        assert_eq!((second, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("consent_request_invalid")), "{body}");
        // A denial decides it too.
        let res = authorize(&app, &on("peer", "mcp"), None).await;
        let request = query_of(&location(&res))["request"].clone();
        let (denied, _, _) = decide(&app, &request, false, None, &public).await;
        let (after, _, _) = decide(&app, &request, true, Some(("admin", ADMIN_PASSWORD)), &public).await;
        assert_eq!((denied, after), (StatusCode::OK, StatusCode::CONFLICT), "deny, then approve");

        // Consent is bound to the redirect URI the user saw: a client that registered two gets
        // nothing silent, and no error redirect, at the one the user never approved.
        let second_uri = "http://127.0.0.1:7/other";
        let res = app.post_json("/oauth/register", None, json!({"client_name": "Two Doors", "redirect_uris": [redirect, second_uri], "token_endpoint_auth_method": "none"})).await;
        let two: Value = res.json().await.unwrap();
        let two_id = two["client_id"].as_str().unwrap().to_string();
        let via = |uri: &'static str, scope: &'static str| Authz { client_id: &two_id, redirect: uri, resource: Some(format!("{public}/mcp/peer")), scope: Some(scope) };
        let res = authorize(&app, &via(redirect, "mcp"), None).await;
        let request = query_of(&location(&res))["request"].clone();
        assert_eq!(decide(&app, &request, true, Some(("admin", ADMIN_PASSWORD)), &public).await.0, StatusCode::OK);
        let res = authorize(&app, &via(redirect, "mcp"), Some(&cookie)).await;
        assert!(query_of(&location(&res)).contains_key("code"), "the approved redirect URI is remembered");
        let res = authorize(&app, &via(second_uri, "mcp"), Some(&cookie)).await;
        assert!(to_consent(&res), "the other redirect URI asks");
        let res = authorize(&app, &via(second_uri, "admin"), Some(&cookie)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.headers().get("location").is_none(), "no error redirect to a URI the user never approved");
        let res = authorize(&app, &via(redirect, "admin"), Some(&cookie)).await;
        assert_eq!(query_of(&location(&res))["error"], "invalid_scope", "errors go back to the approved one");

        // A server's name is its endpoint's URL: when a server gives it up, the consents given
        // for it go, so a server that takes the name later starts without them.
        let peer2_id = {
            let servers: Value = app.get_as("/admin/api/mcp-servers", &admin).await.json().await.unwrap();
            servers.as_array().unwrap().iter().find(|x| x["name"] == "peer2").unwrap()["id"].as_i64().unwrap()
        };
        // A token issued for the name before: it works until the name is given up.
        let code = code_for(&app, &on("peer2", "mcp"), "admin", ADMIN_PASSWORD).await;
        let (_, issued) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
        let old_token = issued["access_token"].as_str().unwrap().to_string();
        assert_eq!(mcp_status(&app, "/mcp/peer2", &old_token).await, StatusCode::OK);
        for name in ["peer3", "peer2"] {
            let res = app.send(Method::PATCH, &format!("/admin/api/mcp-servers/{peer2_id}"), Some(&admin), Some(json!({"name": name}))).await;
            assert_eq!(res.status(), StatusCode::OK);
        }
        let res = authorize(&app, &on("peer2", "mcp"), Some(&cookie)).await;
        assert!(to_consent(&res), "consent given to the name's earlier holder is gone");
        assert_eq!(mcp_status(&app, "/mcp/peer2", &old_token).await, StatusCode::UNAUTHORIZED, "and so are its sessions");

        // An open redirect needs an untrusted client: a registration for a phishing page gets
        // the gateway's error page for every authorize error, signed in or not.
        let phish = "https://evil.example/phish";
        let res = app.post_json("/oauth/register", None, json!({"client_name": "Evil", "redirect_uris": [phish], "token_endpoint_auth_method": "none"})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let evil: Value = res.json().await.unwrap();
        let evil_id = evil["client_id"].as_str().unwrap();
        let base = Authz { client_id: evil_id, redirect: phish, resource: None, scope: None };
        for cookie in [None, Some(cookie.as_str())] {
            for bad in [
                format!("/oauth/authorize?response_type=token&client_id={evil_id}&redirect_uri={phish}"),
                format!("/oauth/authorize?response_type=code&client_id={evil_id}&redirect_uri={phish}"),
            ] {
                let mut req = no_redirects().get(app.url(&bad));
                if let Some(c) = cookie {
                    req = req.header("cookie", c);
                }
                let res = req.send().await.unwrap();
                assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
                assert!(res.headers().get("location").is_none(), "{bad}: not redirected");
            }
            for bad in [
                Authz { scope: Some("admin"), ..base.clone() },
                Authz { resource: Some("https://elsewhere.example/mcp".into()), ..base.clone() },
            ] {
                let res = authorize(&app, &bad, cookie).await;
                assert_eq!(res.status(), StatusCode::BAD_REQUEST);
                assert!(res.headers().get("location").is_none(), "not redirected to the phishing page");
            }
        }

        // Registrations are bounded, and their names cleaned of invisible and bidi characters.
        let too_many: Vec<String> = (0..11).map(|i| format!("http://127.0.0.1/cb{i}")).collect();
        let long = format!("http://127.0.0.1/{}", "a".repeat(2001));
        let huge = json!({"client_name": "x".repeat(20_000), "redirect_uris": [redirect]});
        for (what, body) in [
            ("11 redirect URIs", json!({"redirect_uris": too_many})),
            ("a 2 KB redirect URI", json!({"redirect_uris": [long]})),
            ("a 20 KB body", huge),
            ("a 104-character scope", json!({"redirect_uris": [redirect], "scope": "mcp ".repeat(26)})),
        ] {
            let res = app.post_json("/oauth/register", None, body).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{what}");
        }
        let res = app.post_json("/oauth/register", None, json!({"client_name": "Good\u{202E}lper\u{200B} App\u{0007}", "redirect_uris": [redirect], "token_endpoint_auth_method": "none"})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let cleaned: Value = res.json().await.unwrap();
        assert_eq!(cleaned["client_name"], "Goodlper App");
        // Stored unused registrations per address are capped (6 here: Evil and the cleaned
        // name so far; the approved client does not count).
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let res = app.post_json("/oauth/register", None, json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none"})).await;
            statuses.push(res.status());
        }
        assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CREATED, StatusCode::CREATED, StatusCode::CREATED, StatusCode::TOO_MANY_REQUESTS]);
        // Registrations that never completed an authorization are removed after a while;
        // those that did stay.
        let removed = authmcp_gateway::db::oauth::prune_unused_clients(&app.state.db.pool, authmcp_gateway::db::now() + 10)
            .await
            .unwrap();
        assert_eq!(removed, 6, "Evil, the cleaned name and four plain registrations");
        let clients: Value = app.get_as("/admin/api/oauth/clients", &admin).await.json().await.unwrap();
        let ids: Vec<&str> = clients.as_array().unwrap().iter().filter_map(|c| c["client_id"].as_str()).collect();
        assert!(ids.contains(&client_id.as_str()), "the approved client stays");
        assert!(!ids.contains(&evil_id), "the unused one is gone");

        // A credential does not follow its server to another origin.
        let patch = |body: Value| {
            let app = &app;
            let admin = &admin;
            async move {
                let res = app.send(Method::PATCH, &format!("/admin/api/mcp-servers/{alpha_id}"), Some(admin), Some(body)).await;
                assert_eq!(res.status(), StatusCode::OK);
                res.json::<Value>().await.unwrap()
            }
        };
        let with = patch(json!({"credential": {"type": "bearer", "token": "backend-secret-1234"}})).await;
        assert!(with["credential"].is_object(), "{with}");
        let same_origin = alpha.url().replace("/mcp", "/mcp/");
        assert!(patch(json!({"url": same_origin})).await["credential"].is_object(), "same origin keeps it");
        let moved = patch(json!({"url": "http://127.0.0.2:9/mcp"})).await;
        assert!(moved["credential"].is_null(), "another origin clears it: {moved}");
        let given = patch(json!({"url": alpha.url(), "credential": {"type": "bearer", "token": "backend-secret-5678"}})).await;
        assert!(given["credential"].is_object(), "unless the same request supplies one");

        // On /mcp, a server the caller may not use answers like an unknown name.
        let user = app.create_user(&admin, "nosy", "user").await;
        set_access(&app, &admin, user, alpha_id, true).await;
        let token = app.mcp_token("nosy", USER_PASSWORD).await;
        let (status, headers, _) = rpc_at(&app, "/mcp", Some(&token), None, &[], json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})).await;
        assert_eq!(status, StatusCode::OK);
        let session = headers["mcp-session-id"].to_str().unwrap().to_string();
        let v = [("mcp-protocol-version", "2025-11-25")];
        let ask = |method: &'static str, params: Value| {
            let (app, token, session) = (&app, &token, &session);
            async move {
                let (status, _, body) = rpc_at(app, "/mcp", Some(token), Some(session), &v, json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})).await;
                (status, body.to_string().replace("peer2", "NAME").replace("nosuch", "NAME"))
            }
        };
        for (method, hidden, unknown, code) in [
            ("tools/call", json!({"name": "peer2__echo", "arguments": {}}), json!({"name": "nosuch__echo", "arguments": {}}), -32602),
            ("prompts/get", json!({"name": "peer2__greet"}), json!({"name": "nosuch__greet"}), -32602),
            ("resources/read", json!({"uri": "mcpgw://peer2/x"}), json!({"uri": "mcpgw://nosuch/x"}), -32002),
        ] {
            let answer = ask(method, unknown).await;
            let error: Value = serde_json::from_str(&answer.1).unwrap();
            assert_eq!(error["error"]["code"], code, "{method}: the unknown-name answer: {answer:?}");
            assert_eq!(ask(method, hidden).await, answer, "{method}");
        }
    }
}

/// The portal lists the applications a user approved and revokes them: the client's tokens
/// stop at once and the consent is forgotten; nobody revokes or sees anybody else's, and the client's
/// own token never opens the portal.
#[tokio::test]
async fn users_revoke_the_applications_they_approved_in_the_portal() {
    let (app, admin) = TestApp::sqlite_with_admin().await;
    app.create_user(&admin, "quinn", "user").await;
    app.create_user(&admin, "rita", "user").await;
    let redirect = "http://127.0.0.1:9/callback";
    let client_id = register(&app, redirect).await;
    let authz = Authz {
        client_id: &client_id,
        redirect,
        resource: Some(format!("{}/mcp", app.state.config.public_url)),
        scope: Some("mcp"),
    };
    let code = code_for(&app, &authz, "quinn", USER_PASSWORD).await;
    let (status, tokens) = exchange(&app, &client_id, &code, redirect, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(mcp_status(&app, "/mcp", &access).await, StatusCode::OK);
    let me = app
        .send(Method::GET, "/portal/api/me", Some(&access), None)
        .await;
    assert_eq!(
        me.status(),
        StatusCode::UNAUTHORIZED,
        "a client's token never opens the portal"
    );

    let (quinn, _) = crate::portal::portal_sign_in(&app, "quinn", USER_PASSWORD).await;
    let (rita, _) = crate::portal::portal_sign_in(&app, "rita", USER_PASSWORD).await;
    let mine: Value = app
        .get_as("/portal/api/applications", &quinn)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["client_id"], client_id.as_str());
    assert_eq!(mine[0]["client_name"], "Test Client");
    let client = mine[0]["client"].as_i64().unwrap();
    let theirs: Value = app
        .get_as("/portal/api/applications", &rita)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));
    let path = format!("/portal/api/applications/{client}");
    let res = app.send(Method::DELETE, &path, Some(&rita), None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "not rita's");
    assert_eq!(
        mcp_status(&app, "/mcp", &access).await,
        StatusCode::OK,
        "rita changed nothing"
    );
    let res = app.send(Method::DELETE, &path, Some(&quinn), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        mcp_status(&app, "/mcp", &access).await,
        StatusCode::UNAUTHORIZED,
        "its sessions end at once"
    );
    let mine: Value = app
        .get_as("/portal/api/applications", &quinn)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine, json!([]));
    let res = app.send(Method::DELETE, &path, Some(&quinn), None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
