//! The SPA is served with history fallback; API paths never fall through to it.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, TestEnv};

fn web_dir(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.data_dir.path().join("dist");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!DOCTYPE html><title>spa-index</title>",
    )
    .unwrap();
    std::fs::write(dir.join("app-1234.js"), "console.log('app');".repeat(100)).unwrap();
    std::fs::write(dir.join("web-49ec168690a455e2_bg.wasm"), b"\0asm").unwrap();
    dir
}

#[tokio::test]
async fn deep_links_get_index_html_and_assets_are_served() {
    let mut env = TestEnv::new(Backend::Sqlite).await;
    env.web_dir = Some(web_dir(&env));
    let app = env.spawn().await;
    for path in ["/", "/admin", "/admin/users", "/login", "/setup"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()["cache-control"], "no-cache", "{path}");
        assert_eq!(res.headers()["x-frame-options"], "DENY", "{path}");
        assert!(res.text().await.unwrap().contains("spa-index"), "{path}");
    }
    let res = app.get("/app-1234.js").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(
        res.headers()["cache-control"],
        "public, max-age=3600",
        "a name without a content hash may change"
    );
    assert!(res.text().await.unwrap().starts_with("console.log"));
    let res = app.get("/web-49ec168690a455e2_bg.wasm").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["cache-control"],
        "public, max-age=31536000, immutable",
        "a content-hashed asset never changes"
    );

    let res = app
        .client
        .get(app.url("/app-1234.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-encoding"],
        "gzip",
        "assets are compressed"
    );

    let missing = app.get("/missing-asset.js").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.headers()["cache-control"],
        "no-store",
        "a missing asset is not cached"
    );

    let res = app.get("/admin/api/unknown").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let res = app
        .client
        .post(app.url("/admin/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_missing_ui_build_is_explained_not_fatal() {
    let app = TestEnv::new(Backend::Sqlite).await.spawn().await;
    let res = app.get("/admin").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.text().await.unwrap().contains("cargo xtask build-web"));
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}
