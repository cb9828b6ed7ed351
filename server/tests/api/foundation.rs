//! Health, readiness, error envelope, request ids, CORS, storage set-up, graceful shutdown,
//! bootstrap admin.

use std::time::Duration;

use authmcp_gateway::db;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, TestEnv, db_test};

db_test! {
    async fn health_and_ready(env: TestEnv) {
        let app = env.spawn().await;
        let res = app.get("/health").await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

        let res = app.get("/ready").await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "ready");
        let expected = match env.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        assert_eq!(body["database"], expected);
        assert_eq!(body["migrations"], app.state.db.expected_migrations());
        assert!(app.state.db.expected_migrations() >= 1);
    }
}

db_test! {
    async fn ready_fails_with_json_503_when_the_database_is_gone(env: TestEnv) {
        let app = env.spawn().await;
        app.state.db.pool.close().await;
        let res = app.get("/ready").await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
        // Liveness does not depend on the database.
        assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    }
}

db_test! {
    async fn unknown_api_paths_and_wrong_methods_get_the_json_envelope(env: TestEnv) {
        let app = env.spawn().await;
        for path in ["/admin/api/nope", "/mcp/nope/x", "/.well-known/nope", "/auth/nope"] {
            let res = app.get(path).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                res.headers()["content-type"], "application/json",
                "{path} must not fall through to the SPA"
            );
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "not_found", "{path}");
            assert!(body["error"]["message"].is_string());
        }
        let res = app.client.post(app.url("/health")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
}

db_test! {
    async fn request_ids_are_set_and_propagated(env: TestEnv) {
        let app = env.spawn().await;
        let res = app.get("/health").await;
        let generated = res.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(generated.len(), 36, "a UUID: {generated}");
        let res = app
            .client
            .get(app.url("/health"))
            .header("x-request-id", "abc-123")
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], "abc-123");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        // Anything but a plain id is replaced: no client writes what it likes into the logs.
        for bad in ["status=200 route=/admin", &"a".repeat(65), "id\tid", "ünïcode"] {
            let res = app
                .client
                .get(app.url("/health"))
                .header("x-request-id", reqwest::header::HeaderValue::from_bytes(bad.as_bytes()).unwrap())
                .send()
                .await
                .unwrap();
            let id = res.headers()["x-request-id"].to_str().unwrap();
            assert!(id != bad && id.len() == 36, "{bad:?} became {id}");
        }
    }
}

db_test! {
    async fn cors_allows_only_the_configured_origins(env: TestEnv) {
        let app = env.with_var("ALLOWED_ORIGINS", "https://console.example").spawn().await;
        let preflight = |origin: &'static str| {
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/health"))
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization")
                .send()
        };
        let res = preflight("https://console.example").await.unwrap();
        assert_eq!(res.headers()["access-control-allow-origin"], "https://console.example");
        let res = preflight("https://evil.example").await.unwrap();
        assert!(res.headers().get("access-control-allow-origin").is_none());
        // Plain requests: with the allowed origin the CORS answer, with another none, and
        // without an Origin (the fast path) the same Vary, once, so caches keep them apart.
        let vary = "origin, access-control-request-method, access-control-request-headers";
        for (origin, allowed) in [
            (Some("https://console.example"), true),
            (Some("https://evil.example"), false),
            (Some(""), false),
            (None, false),
        ] {
            let mut req = app.client.get(app.url("/health"));
            if let Some(origin) = origin {
                req = req.header("origin", origin);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200, "{origin:?}");
            let headers = res.headers();
            assert_eq!(
                headers.get("access-control-allow-origin").is_some(),
                allowed,
                "{origin:?}: {headers:?}"
            );
            assert_eq!(
                headers.get("access-control-expose-headers").is_some(),
                origin.is_some(),
                "{origin:?}: {headers:?}"
            );
            let varies: Vec<_> = headers.get_all("vary").iter().collect();
            assert_eq!(varies, [vary], "{origin:?}");
        }
        // A preflight without an Origin is still answered by the CORS layer (no handler runs).
        let res = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/admin/api/users"))
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("access-control-allow-origin").is_none());
        assert!(res.headers().get("access-control-allow-methods").is_some());
    }
}

/// On SQLite the connections a burst opened are closed again while the gateway idles: its
/// periodic tasks (the audit tail every 2 s, the reloads every 5 s) read through a connection
/// of their own (`Db::background`) and do not keep the main pool's connections warm (sqlx
/// hands out idle connections first in, first out, so any of them on the main pool would).
#[tokio::test]
async fn sqlite_connections_of_a_burst_close_while_the_gateway_idles() {
    let (app, admin) = crate::helpers::TestApp::sqlite_with_admin().await;
    let pool = &app.state.db.pool;
    let held = futures::future::try_join_all((0..4).map(|_| pool.acquire()))
        .await
        .unwrap();
    drop(held);
    assert!(pool.size() >= 4, "the burst opened four connections");
    // Closed 5–10 s after the burst; the pollers tick several times meanwhile.
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    while pool.size() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        pool.size(),
        0,
        "an idle gateway keeps no connection of the main pool open"
    );
    // The next request opens one again.
    let res = app.get_as("/admin/api/users", &admin).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(pool.size() >= 1);
}

#[tokio::test]
async fn sqlite_file_is_created_with_wal_and_foreign_keys() {
    let env = TestEnv::new(Backend::Sqlite).await;
    let nested = env.data_dir.path().join("nested/dir/gateway.db");
    let env = env.with_var("DATABASE_URL", &format!("sqlite://{}", nested.display()));
    let app = env.spawn().await;
    assert!(
        nested.is_file(),
        "the SQLite file and its directories are created"
    );
    let mode: String = sqlx::query_scalar("pragma journal_mode")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("pragma foreign_keys")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let timeout: i64 = sqlx::query_scalar("pragma busy_timeout")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(timeout, 5000);
}

db_test! {
    async fn graceful_shutdown_drains_in_flight_requests(env: TestEnv) {
        use axum::routing::get;
        let state = authmcp_gateway::state::AppState::init(env.config()).await.unwrap();
        let config = state.config.clone();
        let router = authmcp_gateway::app::router(state).merge(
            axum::Router::new().route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    "finished"
                }),
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(authmcp_gateway::app::serve(
            listener,
            authmcp_gateway::app::with_middleware(router, &config),
            authmcp_gateway::conn::Connections::new(&config.connections, vec![]),
            Duration::from_secs(10),
            async move {
                let _ = rx.await;
            },
        ));
        let in_flight = tokio::spawn(async move {
            reqwest::get(format!("http://{addr}/slow")).await.unwrap().text().await.unwrap()
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        tx.send(()).unwrap();
        assert_eq!(in_flight.await.unwrap(), "finished", "the in-flight request completes");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops after draining")
            .unwrap()
            .unwrap();
        assert!(
            reqwest::get(format!("http://{addr}/health")).await.is_err(),
            "no new connections after shutdown"
        );
    }
}

db_test! {
    async fn admin_env_vars_create_the_first_admin_once(env: TestEnv) {
        let env = env
            .with_var("ADMIN_USERNAME", "root-admin")
            .with_var("ADMIN_PASSWORD", "a long unusual phrase");
        let app = env.spawn().await;
        let user = db::users::find_by_username(&app.state.db.pool, "root-admin")
            .await
            .unwrap()
            .expect("admin created");
        assert_eq!(user.role, "admin");
        assert_eq!(user.enabled, 1);
        assert!(user.password_hash.starts_with("$argon2id$"), "stored hashed");
        app.stop().await;

        // A later start with other values creates nobody: the database already has a user.
        let env = env
            .with_var("ADMIN_USERNAME", "second-admin")
            .with_var("ADMIN_PASSWORD", "another long phrase");
        let app = env.spawn().await;
        assert_eq!(db::users::count(&app.state.db.pool).await.unwrap(), 1);
    }
}

db_test! {
    async fn a_weak_admin_password_stops_start_up_with_a_clear_error(env: TestEnv) {
        let env = env
            .with_var("ADMIN_USERNAME", "root-admin")
            .with_var("ADMIN_PASSWORD", "short");
        let err = env.try_spawn().await.err().expect("start-up fails").to_string();
        assert!(err.contains("ADMIN_PASSWORD"), "{err}");
    }
}

/// Whatever the umask: `DATA_DIR` (tightened when it exists open), the database directory and
/// file, the encryption key and the JSONL logs are readable by the gateway's user only.
#[tokio::test]
async fn data_dir_database_keys_and_logs_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin();
    let root = env.data_dir.path().to_path_buf();
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db_dir = root.join("db/nested");
    let app = env
        .with_var("DATA_DIR", data.to_str().unwrap())
        .with_var(
            "DATABASE_URL",
            &format!("sqlite://{}", db_dir.join("gateway.db").display()),
        )
        .spawn()
        .await;
    // A failed login writes a security event to the JSONL log.
    let res = app
        .post_json(
            "/admin/api/login",
            None,
            serde_json::json!({"username": "admin", "password": "wrong password 123456"}),
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
    let logs = data.join("logs");
    let mut log_file = None;
    for _ in 0..100 {
        log_file = std::fs::read_dir(&logs)
            .ok()
            .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path())));
        if log_file.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "DATA_DIR");
    assert_eq!(mode(&root.join("db")), 0o700, "the database directory");
    assert_eq!(mode(&db_dir), 0o700, "the database directory");
    assert_eq!(mode(&db_dir.join("gateway.db")), 0o600, "the database");
    assert_eq!(mode(&root.join("keys")), 0o700, "KEY_DIR");
    assert_eq!(mode(&root.join("keys/encryption.key")), 0o600, "the key");
    assert!(
        !data.join("encryption.key").exists(),
        "the key is not beside the data"
    );
    assert_eq!(mode(&logs), 0o700, "the log directory");
    assert_eq!(
        mode(&log_file.expect("a JSONL log was written")),
        0o600,
        "a log"
    );
}

db_test! {
    /// Migration 0013 widens the sessions' audience check (on SQLite by rebuilding the table):
    /// sessions and their refresh tokens written before it survive it, with their links.
    async fn the_portal_migration_keeps_sessions_and_refresh_tokens(env: TestEnv) {
        let config = env.config();
        let store = db::Db::connect(&config.database, 2).await.unwrap();
        // Every migration before 0013, from a copy of the folder.
        let folder = match store.backend {
            db::Backend::Sqlite => "sqlite",
            db::Backend::Postgres => "postgres",
        };
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(folder);
        let older = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.as_str() < "0013" {
                std::fs::copy(&path, older.path().join(&name)).unwrap();
            }
        }
        sqlx::migrate::Migrator::new(older.path()).await.unwrap().run(&store.pool).await.unwrap();
        let pool = &store.pool;
        sqlx::query("insert into users (username, password_hash, role, enabled, created_at, updated_at) values ('old', 'x', 'user', 1, 1, 1)")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("insert into sessions (id, user_id, audience, created_at, expires_at) values ('s1', (select id from users where username = 'old'), 'mcp', 1, 4000000000)")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("insert into refresh_tokens (token_hash, session_id, created_at, expires_at) values ('h1', 's1', 1, 4000000000)")
            .execute(pool)
            .await
            .unwrap();
        let portal = "insert into sessions (id, user_id, audience, created_at, expires_at) values ('s2', (select id from users where username = 'old'), 'portal', 1, 4000000000)";
        assert!(sqlx::query(portal).execute(pool).await.is_err(), "no portal sessions before 0013");

        store.migrate().await.unwrap();
        let tokens: i64 = sqlx::query_scalar("select count(*) from refresh_tokens where session_id = 's1'")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(tokens, 1, "the refresh token survived the rebuild");
        sqlx::query(portal).execute(pool).await.unwrap();
        let bad = "insert into sessions (id, user_id, audience, created_at, expires_at) values ('s3', (select id from users where username = 'old'), 'other', 1, 4000000000)";
        assert!(sqlx::query(bad).execute(pool).await.is_err(), "the check still holds");
        // The links hold: deleting the user deletes its sessions and their refresh tokens.
        sqlx::query("delete from users where username = 'old'").execute(pool).await.unwrap();
        let left: i64 = sqlx::query_scalar("select count(*) from refresh_tokens").fetch_one(pool).await.unwrap();
        assert_eq!(left, 0);
    }
}
