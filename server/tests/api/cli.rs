//! The `authmcp-gateway` binary's subcommands.

use std::io::Write;
use std::process::{Command, Stdio};

use authmcp_gateway::db;

use crate::helpers::{TestEnv, db_test};

fn gateway(env: &TestEnv) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authmcp-gateway"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.env_vars());
    cmd
}

#[tokio::test]
async fn check_config_names_the_bad_variable_and_redacts_secrets() {
    let env = TestEnv::new(crate::helpers::Backend::Sqlite).await;
    let out = gateway(&env)
        .args(["check-config"])
        .env("GATEWAY_PORT", "99999")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GATEWAY_PORT") && stderr.contains("99999"),
        "{stderr}"
    );

    let out = gateway(&env)
        .args(["check-config"])
        .env("JWT_SECRET", "super-secret-value-that-is-long-enough")
        .env("DATABASE_URL", "postgres://u:db-password@127.0.0.1/x")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(!stdout.contains("super-secret-value"), "{stdout}");
    assert!(!stdout.contains("db-password"), "{stdout}");
}

db_test! {
    async fn migrate_and_create_admin(env: TestEnv) {
        let out = gateway(&env).arg("migrate").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));

        let create = |password: &'static str| {
            let mut child = gateway(&env)
                .args(["create-admin", "--username", "ops-admin", "--email", "ops@example.com"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
            child.wait_with_output().unwrap()
        };
        let weak = create("short\n");
        assert!(!weak.status.success());
        assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 12"));

        let ok = create("a long unusual phrase\n");
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

        let again = create("a long unusual phrase\n");
        assert!(!again.status.success(), "a duplicate username is refused");

        let app = env.spawn().await;
        let user = db::users::find_by_username(&app.state.db.pool, "ops-admin")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.role, "admin");
        assert_eq!(user.email.as_deref(), Some("ops@example.com"));
        assert!(
            authmcp_gateway::password::verify("a long unusual phrase".into(), user.password_hash)
                .await
                .unwrap()
        );
    }
}

/// `reset-password` (password from stdin): the new password works, the old one and every
/// session of the user stop working, a weak password or an unknown user is refused, and the
/// audit log names the CLI.
#[tokio::test]
async fn reset_password_from_the_command_line() {
    let env = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin();
    let app = env.spawn().await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "dana", "user").await;
    let before = app.mcp_token("dana", crate::helpers::USER_PASSWORD).await;
    assert_eq!(app.get_as("/auth/me", &before).await.status(), 200);
    let reset = |username: &str, password: &str| {
        let mut child = gateway(&env)
            .args(["reset-password", "--username", username])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let weak = reset("dana", "short");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 12"));
    let unknown = reset("nobody", "a brand new passphrase");
    assert!(!unknown.status.success());
    let ok = reset("Dana", "a brand new passphrase");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The running gateway (SQLite: the same process's cache) refuses the old session at once.
    app.state.auth_cache.invalidate_user(
        db::users::find_by_username(&app.state.db.pool, "dana")
            .await
            .unwrap()
            .unwrap()
            .id,
    );
    assert_eq!(app.get_as("/auth/me", &before).await.status(), 401);
    let res = app
        .post_json(
            "/auth/login",
            None,
            serde_json::json!({"username": "dana", "password": crate::helpers::USER_PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 401, "the old password is gone");
    app.mcp_token("dana", "a brand new passphrase").await;
    let audit: serde_json::Value = app
        .get_as("/admin/api/audit-log?kind=change", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "user.reset_password" && a["actor_username"] == "cli"),
        "{audit}"
    );
}

/// `healthcheck` (the container's health probe): 0 while the gateway answers `/ready` with
/// 200; 1 when nothing listens or something else answers.
#[tokio::test]
async fn healthcheck_exits_zero_only_when_the_gateway_is_ready() {
    let env = TestEnv::new(crate::helpers::Backend::Sqlite).await;
    let process = crate::helpers::GatewayProcess::on(&env, false).await;
    let port = process.url.rsplit(':').next().unwrap().to_string();
    let probe_on = |host: &'static str, port: String| {
        let mut cmd = gateway(&env);
        cmd.args(["healthcheck", "--timeout", "2"])
            .env("GATEWAY_HOST", host)
            .env("GATEWAY_PORT", port);
        async move {
            tokio::task::spawn_blocking(move || cmd.output().unwrap())
                .await
                .unwrap()
        }
    };
    let probe = |port: String| probe_on("0.0.0.0", port);
    let ready = probe(port.clone()).await;
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    // Listening on every IPv6 address: ::1 first, then IPv4 loopback (where this one is).
    let dual = probe_on("::", port.clone()).await;
    assert_eq!(dual.status.code(), Some(0), "{dual:?}");
    // A configuration it cannot read is "not ready" (1), not Docker's reserved 2.
    let bad = probe("99999".into()).await;
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    drop(process);
    let gone = probe(port).await;
    assert_eq!(gone.status.code(), Some(1), "nothing listens: {gone:?}");
    // Something that is not a ready gateway.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 256];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let not_ready = probe(other.to_string()).await;
    assert_eq!(not_ready.status.code(), Some(1), "{not_ready:?}");
    assert!(String::from_utf8_lossy(&not_ready.stderr).contains("503"));
    // Something that accepts and never answers: given up on within the time limit.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let started = std::time::Instant::now();
    let hung = probe(silent_port.to_string()).await;
    assert_eq!(hung.status.code(), Some(1), "{hung:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "bounded by --timeout"
    );
    held.abort();
}

/// `ACCESS_LOG`: one INFO line per API request with the route's template, status, duration and
/// request id, never the query or a token; MCP traffic only with `all`.
#[tokio::test]
async fn the_access_log_names_routes_never_values() {
    let env = TestEnv::new(crate::helpers::Backend::Sqlite)
        .await
        .with_admin()
        .with_var("LOG_FORMAT", "json")
        .with_var("LOG_LEVEL", "info");
    let mut process = crate::helpers::GatewayProcess::on(&env, true).await;
    let stdout = process.child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().unwrap().push(line);
            }
        });
    }
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{}/admin/api/login", process.url))
        .json(&serde_json::json!({"username": "admin", "password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap();
    let res = http
        .get(format!(
            "{}/admin/api/users/4242?secret=in-the-query",
            process.url
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(res.status(), 404);
    let res = http
        .post(format!("{}/mcp", process.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A last API request: once its line is in, every earlier line is too.
    let last = http
        .get(format!("{}/admin/api/me", process.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let last_id = last.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut access = Vec::new();
    for _ in 0..100 {
        access = lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["target"] == "access")
            .collect();
        if access.iter().any(|l| l["request_id"] == last_id.as_str()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let line = access
        .iter()
        .find(|l| l["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("an access line for the request: {access:?}"));
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["route"], "/admin/api/users/{id}");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 404);
    assert!(line["duration_ms"].is_number());
    let all = lines.lock().unwrap().join("\n");
    assert!(!all.contains("in-the-query"), "never the query");
    assert!(!all.contains(token), "no token");
    assert!(
        access.iter().all(|l| l["route"] != "/mcp"),
        "MCP traffic is not in the default access log"
    );
}
