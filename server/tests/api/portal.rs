//! The user portal (`/portal/api`): every user signs in with a portal-audience session and
//! sees and manages only their own servers, keys, applications, password and activity.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, USER_PASSWORD, db_test};
use crate::mcp::{add_server, set_access};

/// Signs in to the portal in body mode; returns (access token, refresh token).
pub async fn portal_sign_in(app: &TestApp, username: &str, password: &str) -> (String, String) {
    let res = app
        .post_json(
            "/portal/api/login",
            None,
            json!({"username": username, "password": password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "portal sign-in of {username}");
    let body: Value = res.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["refresh_token"].as_str().unwrap().to_string(),
    )
}

async fn status(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> StatusCode {
    app.send(method, path, Some(token), body).await.status()
}

/// An MCP `initialize` on the aggregated endpoint with `token`; its HTTP status.
async fn mcp_initialize(app: &TestApp, token: &str) -> StatusCode {
    app.client
        .post(app.url("/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "portal-test", "version": "1"}}}))
        .send()
        .await
        .unwrap()
        .status()
}

db_test! {
    /// Portal sessions are their own audience: any enabled user signs in, the token opens the
    /// portal and nothing else, and no other credential opens the portal. The cookie mode keeps
    /// the refresh token out of the body, rotates it, and sign-out ends it.
    async fn portal_sessions_are_their_own_audience(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let pat = app.create_user(&admin, "pat", "user").await;
        let (portal, _) = portal_sign_in(&app, "pat", USER_PASSWORD).await;
        let me: Value = app.get_as("/portal/api/me", &portal).await.json().await.unwrap();
        assert_eq!(me["id"], pat);
        assert_eq!(me["role"], "user");

        // The portal token opens nothing else.
        assert_eq!(mcp_initialize(&app, &portal).await, StatusCode::UNAUTHORIZED, "not /mcp");
        for path in ["/auth/me", "/admin/api/me", "/auth/api-keys"] {
            assert_eq!(status(&app, Method::GET, path, &portal, None).await, StatusCode::UNAUTHORIZED, "{path}");
        }
        // No other credential opens the portal: MCP and admin tokens, API keys, garbage.
        let mcp = app.mcp_token("pat", USER_PASSWORD).await;
        let key: Value = app
            .post_json("/auth/api-keys", Some(&mcp), json!({"name": "cli"}))
            .await
            .json()
            .await
            .unwrap();
        let key = key["secret"].as_str().unwrap().to_string();
        let log: Value = app.get_as("/admin/api/audit-log?kind=change", &admin).await.json().await.unwrap();
        assert!(
            log["items"].as_array().unwrap().iter().any(|e| e["action"] == "api_key.create" && e["actor_username"] == "pat"),
            "self-service keys are audited too: {log}"
        );
        for token in [mcp.as_str(), admin.as_str(), key.as_str(), "garbage", ""] {
            assert_eq!(
                status(&app, Method::GET, "/portal/api/me", token, None).await,
                StatusCode::UNAUTHORIZED,
                "{token:.12}"
            );
        }
        assert_eq!(app.get("/portal/api/servers").await.status(), StatusCode::UNAUTHORIZED);
        // The admin audience stays admin-only.
        let res = app
            .post_json("/admin/api/login", None, json!({"username": "pat", "password": USER_PASSWORD}))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        // Wrong passwords get the usual answer.
        let res = app
            .post_json("/portal/api/login", None, json!({"username": "pat", "password": "wrong wrong wrong"}))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res = app
            .client
            .post(app.url("/portal/api/login"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"username": "pat", "username": "admin", "password": "{ADMIN_PASSWORD}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "a duplicate key is refused, not read either way");

        // Cookie mode: the refresh token only in an HttpOnly cookie on the session path.
        let res = app
            .post_json("/portal/api/login", None, json!({"username": "pat", "password": USER_PASSWORD, "session": "cookie"}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.starts_with("amg_portal_refresh="), "{cookie}");
        assert!(cookie.contains("HttpOnly") && cookie.contains("Path=/portal/api/session") && cookie.contains("SameSite=Strict"), "{cookie}");
        let body: Value = res.json().await.unwrap();
        assert!(body.get("refresh_token").is_none_or(Value::is_null), "{body}");
        let pair = cookie.split(';').next().unwrap().to_string();
        let refresh = |cookie: String| {
            let app = &app;
            async move {
                app.client
                    .post(app.url("/portal/api/session/refresh"))
                    .header("cookie", cookie)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap()
            }
        };
        let res = refresh(pair.clone()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let next = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        assert_ne!(next, pair, "rotated");
        let body: Value = res.json().await.unwrap();
        let access = body["access_token"].as_str().unwrap().to_string();
        assert_eq!(status(&app, Method::GET, "/portal/api/me", &access, None).await, StatusCode::OK);
        // The admin refresh endpoint does not take a portal cookie (other name, other audience).
        let res = app
            .client
            .post(app.url("/admin/api/session/refresh"))
            .header("cookie", next.replace("amg_portal_refresh", "amg_admin_refresh"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

        // Sign-out ends the session (bearer and cookie), clears the cookie, and is audited.
        let res = app
            .client
            .post(app.url("/portal/api/session/logout"))
            .bearer_auth(&access)
            .header("cookie", &next)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert!(res.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
        assert_eq!(status(&app, Method::GET, "/portal/api/me", &access, None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(refresh(next).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(status(&app, Method::GET, "/portal/api/me", &portal, None).await, StatusCode::OK, "other portal sessions go on");
        let log: Value = app.get_as("/admin/api/audit-log?kind=sign_out", &admin).await.json().await.unwrap();
        assert!(
            log["items"].as_array().unwrap().iter().any(|e| e["after"]["audience"] == "portal"),
            "{log}"
        );

        // The connections page's API takes the portal token (and no other bearer).
        let res = app.send(Method::GET, "/oauth/backend/connections", Some(&portal), None).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap()["username"], "pat");
        for token in [mcp.as_str(), admin.as_str(), key.as_str()] {
            let res = app.send(Method::GET, "/oauth/backend/connections", Some(token), None).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{token:.12}");
        }
        let res = app.send(Method::POST, "/oauth/backend/connections/nothing-here", Some(&portal), None).await;
        assert!(matches!(res.status(), StatusCode::NOT_FOUND | StatusCode::FORBIDDEN), "{}", res.status());

        // A disabled user's portal session ends at once.
        let res = app
            .send(Method::PATCH, &format!("/admin/api/users/{pat}"), Some(&admin), Some(json!({"enabled": false})))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(status(&app, Method::GET, "/portal/api/me", &portal, None).await, StatusCode::UNAUTHORIZED);
    }
}

db_test! {
    /// What a user sees and changes in the portal is their own: the servers granted to them
    /// (with their URLs), their API keys (scoped, expiring, revocable; never anybody else's),
    /// their password (other sessions end) and their own activity.
    async fn users_manage_their_own_access_in_the_portal(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let pat = app.create_user(&admin, "pat", "user").await;
        app.create_user(&admin, "lee", "user").await;
        let alpha = add_server(&app, &admin, json!({"name": "alpha", "url": "http://127.0.0.1:9/mcp"})).await;
        let beta = add_server(&app, &admin, json!({"name": "Beta Tools", "url": "http://127.0.0.1:9/mcp"})).await;
        add_server(&app, &admin, json!({"name": "gamma", "url": "http://127.0.0.1:9/mcp"})).await;
        set_access(&app, &admin, pat, alpha, true).await;
        set_access(&app, &admin, pat, beta, true).await;
        let (portal, _) = portal_sign_in(&app, "pat", USER_PASSWORD).await;
        let (lee, _) = portal_sign_in(&app, "lee", USER_PASSWORD).await;

        let mine: Value = app.get_as("/portal/api/servers", &portal).await.json().await.unwrap();
        let public = &app.state.config.public_url;
        assert_eq!(mine["aggregate_url"], format!("{public}/mcp"));
        let names: Vec<&str> = mine["servers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["alpha", "beta-tools"], "granted servers only: {mine}");
        assert_eq!(mine["servers"][1]["display_name"], "Beta Tools");
        assert_eq!(mine["servers"][0]["url"], format!("{public}/mcp/alpha"));
        let theirs: Value = app.get_as("/portal/api/servers", &lee).await.json().await.unwrap();
        assert_eq!(theirs["servers"], json!([]));
        // A disabled server leaves the list at once.
        let res = app
            .send(Method::PATCH, &format!("/admin/api/mcp-servers/{beta}"), Some(&admin), Some(json!({"enabled": false})))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let mine: Value = app.get_as("/portal/api/servers", &portal).await.json().await.unwrap();
        assert_eq!(mine["servers"].as_array().unwrap().len(), 1, "{mine}");

        // API keys: created scoped and expiring, audited, listed, revoked; hostile bodies refused.
        for bad in [
            json!({"name": ""}),
            json!({"name": "k", "expires_in_days": 0}),
            json!({"name": "k", "expires_in_days": 3651}),
            json!({"name": "k", "expires_in_days": -1}),
            json!({"name": "k", "servers": "alpha"}),
            json!({"name": "k", "servers": ["Not A Name"]}),
            json!({"name": ["k"]}),
        ] {
            let res = app.send(Method::POST, "/portal/api/api-keys", Some(&portal), Some(bad.clone())).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        let res = app
            .client
            .post(app.url("/portal/api/api-keys"))
            .bearer_auth(&portal)
            .header("content-type", "application/json")
            .body(r#"{"name": "a", "servers": ["alpha"], "servers": null}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "a duplicate key is refused");
        let res = app
            .send(Method::POST, "/portal/api/api-keys", Some(&portal), Some(json!({"name": "laptop", "servers": ["alpha"], "expires_in_days": 30})))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let created: Value = res.json().await.unwrap();
        let secret = created["secret"].as_str().unwrap().to_string();
        let key_id = created["key"]["id"].as_i64().unwrap();
        assert!(secret.starts_with("amg_"));
        assert_eq!(created["key"]["servers"], json!(["alpha"]));
        assert!(created["key"]["expires_at"].as_i64().unwrap() > authmcp_gateway::db::now() + 29 * 86_400);
        let me: Value = app.get_as("/auth/me", &secret).await.json().await.unwrap();
        assert_eq!(me["api_key_id"], key_id, "the key works for MCP");
        let keys: Value = app.get_as("/portal/api/api-keys", &portal).await.json().await.unwrap();
        assert_eq!(keys.as_array().unwrap().len(), 1);
        assert!(!keys.to_string().contains(&secret), "the secret is never shown again");
        assert_eq!(app.get_as("/portal/api/api-keys", &lee).await.json::<Value>().await.unwrap(), json!([]));
        assert_eq!(status(&app, Method::DELETE, &format!("/portal/api/api-keys/{key_id}"), &lee, None).await, StatusCode::NOT_FOUND, "not lee's");
        assert_eq!(status(&app, Method::DELETE, "/portal/api/api-keys/x1", &portal, None).await, StatusCode::BAD_REQUEST);
        assert_eq!(status(&app, Method::GET, "/auth/me", &secret, None).await, StatusCode::OK, "lee's attempt changed nothing");
        assert_eq!(status(&app, Method::DELETE, &format!("/portal/api/api-keys/{key_id}"), &portal, None).await, StatusCode::NO_CONTENT);
        assert_eq!(status(&app, Method::GET, "/auth/me", &secret, None).await, StatusCode::UNAUTHORIZED, "revoked at once");
        assert_eq!(status(&app, Method::DELETE, &format!("/portal/api/api-keys/{key_id}"), &portal, None).await, StatusCode::NOT_FOUND);
        let log: Value = app.get_as("/admin/api/audit-log?kind=change", &admin).await.json().await.unwrap();
        let actions: Vec<&str> = log["items"].as_array().unwrap().iter()
            .filter(|e| e["actor_username"] == "pat")
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert!(actions.contains(&"api_key.create") && actions.contains(&"api_key.revoke"), "{log}");

        // My activity: my own MCP requests only.
        let mcp = app.mcp_token("pat", USER_PASSWORD).await;
        assert_eq!(mcp_initialize(&app, &mcp).await, StatusCode::OK);
        let admin_mcp = app.mcp_token("admin", ADMIN_PASSWORD).await;
        assert_eq!(mcp_initialize(&app, &admin_mcp).await, StatusCode::OK);
        let mut activity = Value::Null;
        for _ in 0..100 {
            activity = app.get_as("/portal/api/activity", &portal).await.json().await.unwrap();
            if activity["total"].as_i64() > Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let items = activity["items"].as_array().unwrap();
        assert!(!items.is_empty(), "{activity}");
        assert!(items.iter().all(|r| r["username"] == "pat"), "{activity}");
        let lees: Value = app.get_as("/portal/api/activity", &lee).await.json().await.unwrap();
        assert_eq!(lees["total"], 0, "{lees}");
        assert_eq!(status(&app, Method::GET, "/portal/api/activity?per_page=201", &portal, None).await, StatusCode::BAD_REQUEST);
        assert_eq!(status(&app, Method::GET, "/portal/api/activity?page=0", &portal, None).await, StatusCode::BAD_REQUEST);

        // My password: the current one is required; other sessions end, this one goes on.
        let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});
        assert_eq!(
            status(&app, Method::POST, "/portal/api/password", &portal, Some(change("not my password", "a brand new passphrase 1"))).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&app, Method::POST, "/portal/api/password", &portal, Some(change(USER_PASSWORD, "short"))).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(&app, Method::GET, "/auth/me", &mcp, None).await, StatusCode::OK, "failed changes end nothing");
        assert_eq!(
            status(&app, Method::POST, "/portal/api/password", &portal, Some(change(USER_PASSWORD, "a brand new passphrase 1"))).await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(status(&app, Method::GET, "/auth/me", &mcp, None).await, StatusCode::UNAUTHORIZED, "other sessions end");
        assert_eq!(status(&app, Method::GET, "/portal/api/me", &portal, None).await, StatusCode::OK, "this one goes on");
        portal_sign_in(&app, "pat", "a brand new passphrase 1").await;
        let res = app
            .post_json("/portal/api/login", None, json!({"username": "pat", "password": USER_PASSWORD}))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the old password is gone");
    }
}
