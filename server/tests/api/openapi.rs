//! The OpenAPI document is complete and matches the router; Swagger UI is served.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, TestEnv};

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestEnv::new(Backend::Sqlite).await.spawn().await;
    let res = app.get("/api-docs/openapi.json").await;
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
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

/// Every JSON route must be registered with `utoipa_axum::routes!` (router and OpenAPI in one
/// step). A plain `.route(…)` or `.route_service(…)` in server code bypasses the document, so
/// it is allowed only on a line marked `// not json:` with a reason.
#[test]
fn no_route_bypasses_the_openapi_document() {
    let mut offenders = Vec::new();
    visit(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut |path, text| {
            for (n, line) in text.lines().enumerate() {
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
        "routes registered outside utoipa_axum::routes!:\n{}",
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
