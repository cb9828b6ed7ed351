//! The OpenAPI document is complete and matches the router; Swagger UI is served.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, TestEnv};
use crate::peers::{PeerServer, Sdk};

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestEnv::new(Backend::Sqlite).await.spawn().await;
    let res = app.get("/api-docs/openapi.json").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    // Built on the first request and served as those bytes: the same document the code builds.
    let (_, built) = authmcp_gateway::app::api_parts();
    assert_eq!(doc, serde_json::to_value(&built).unwrap());
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let paths = doc["paths"].as_object().expect("paths");
    for required in ["/health", "/ready", "/.well-known/jwks.json"] {
        assert!(paths.contains_key(required), "{required} is documented");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["operationId"].is_string(),
                "{method} {path} has an operationId"
            );
            assert!(op["tags"].is_array(), "{method} {path} has a tag");
            let concrete = path.replace(['{', '}'], "");
            let res = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete))
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            // The router's own answers for an unrouted path or method; a handler's 404 ("no
            // such user") carries another message.
            let unrouted = status == StatusCode::METHOD_NOT_ALLOWED
                || body["error"]["message"] == "no route for this path";
            assert!(
                !unrouted,
                "{method} {path} is documented but not routed: {status} {body}"
            );
        }
    }
}

/// The document is built on its first request: many first requests at once all get it, the
/// same bytes, while it is being built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_all_get_the_same_document() {
    let app = TestEnv::new(Backend::Sqlite).await.spawn().await;
    let bodies = futures::future::join_all((0..16).map(|_| async {
        let res = app.get("/api-docs/openapi.json").await;
        assert_eq!(res.status(), StatusCode::OK);
        res.bytes().await.unwrap()
    }))
    .await;
    assert!(bodies[0].len() > 100_000, "the whole document");
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "one document for all"
    );
    let doc: Value = serde_json::from_slice(&bodies[0]).unwrap();
    let (_, built) = authmcp_gateway::app::api_parts();
    assert_eq!(doc, serde_json::to_value(&built).unwrap());
}

#[tokio::test]
async fn swagger_ui_is_served_offline() {
    let app = TestEnv::new(Backend::Sqlite).await.spawn().await;
    let res = app.get("/swagger-ui/").await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "{html}");
    let res = app.get("/swagger-ui/swagger-initializer.js").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("/api-docs/openapi.json"));
}

/// Every JSON route must be registered with `crate::routes!` (router and OpenAPI in one
/// step). A plain `.route(…)` or `.route_service(…)` in server code bypasses the document, so
/// it is allowed only on a line marked `// not json:` with a reason.
#[test]
fn no_route_bypasses_the_openapi_document() {
    let mut offenders = Vec::new();
    visit(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut |path, text| {
            let routes_macro = path.ends_with("src/openapi/router.rs");
            for (n, line) in text.lines().enumerate() {
                // `crate::routes!`'s own router, which routes what the macro documents.
                if routes_macro
                    && line.trim() == "self.router = self.router.route(path, method_router);"
                {
                    continue;
                }
                let code = line.split("//").next().unwrap_or("");
                if (code.contains(".route(") || code.contains(".route_service("))
                    && !line.contains("// not json:")
                {
                    offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        },
    );
    assert!(
        offenders.is_empty(),
        "routes registered outside crate::routes!:\n{}",
        offenders.join("\n")
    );
}

fn visit(dir: &Path, f: &mut impl FnMut(&Path, &str)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, f);
        } else if path.extension().is_some_and(|e| e == "rs") {
            f(&path, &std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// Schemathesis (every check: status codes, content types, headers and response schemas as
/// documented, schema-valid requests accepted and schema-invalid ones refused, no 5xx, auth not
/// ignored, stateful links) against the live document of a gateway with some data in it. The
/// hooks sign in per API audience; `schemathesis.toml` lists the few per-operation exceptions
/// with their reasons. `cargo xtask test` installs Schemathesis into `.tools/venv-schemathesis`.
#[tokio::test]
async fn schemathesis_finds_no_contract_failures() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let schemathesis = std::env::var_os("SCHEMATHESIS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace.join(".tools/venv-schemathesis/bin/schemathesis"));
    assert!(
        schemathesis.exists(),
        "{} is missing: run `cargo xtask setup --test` (or the suite with `cargo xtask test`)",
        schemathesis.display()
    );
    let app = TestEnv::new(Backend::Sqlite)
        .await
        .with_admin()
        // Schemathesis tries sign-ins with generated passwords from one address; the lockouts
        // they would earn are tested elsewhere (api::accounts).
        .with_var("LOGIN_IP_MAX_FAILURES", "100000")
        .with_var("LOGIN_MAX_FAILURES", "100")
        .spawn()
        .await;
    let admin = app.admin_token().await;
    let me: Value = app
        .get_as("/admin/api/me", &admin)
        .await
        .json()
        .await
        .unwrap();
    let admin_id = me["id"].as_i64().unwrap();
    // Something for the generated cases to find: a user, a server, a client.
    app.create_user(&admin, "bob", "user").await;
    // A real backend (the Python SDK peer), so that the console and the server tests reach one.
    let peer = PeerServer::start(Sdk::Py2, "peer", &[]).await;
    let res = app
        .post_json(
            "/admin/api/mcp-servers",
            Some(&admin),
            serde_json::json!({"name": "github", "url": peer.url(), "tool_pinning": "off"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let server: Value = res.json().await.unwrap();
    let res = app
        .send(
            reqwest::Method::PATCH,
            &format!("/admin/api/users/{admin_id}/mcp-permissions"),
            Some(&admin),
            Some(serde_json::json!({"server_id": server["id"], "can_access": true})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/schemathesis");
    // The JUnit report and the output stay in target/schemathesis/ for a failed run.
    let report = workspace.join("target/schemathesis");
    std::fs::create_dir_all(&report).unwrap();
    let base = app.url("");
    let run = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .arg("run")
        .arg(app.url("/api-docs/openapi.json"))
        .args(["--workers", "1", "--max-examples", "25"])
        // A fixed seed: every run tries the same cases (`SCHEMATHESIS_SEED` explores others).
        .arg("--seed")
        .arg(std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261201".into()))
        .args(["--no-color", "--report", "junit"])
        // Nothing carried over from an earlier run: every run is the same run.
        .args(["--generation-database", "none"])
        .arg("--report-dir")
        .arg(&report)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &dir)
        .env("ST_BASE", base.trim_end_matches('/'))
        .env("ST_USERNAME", "admin")
        .env("ST_PASSWORD", crate::helpers::ADMIN_PASSWORD)
        .env("ST_ADMIN_ID", admin_id.to_string())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(900), run)
        .await
        .expect("schemathesis finished within 15 minutes")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    std::fs::write(report.join("output.txt"), stdout.as_bytes()).unwrap();
    assert!(
        out.status.success(),
        "schemathesis found contract failures (exit {:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}
