//! Teams: a team admin sees and changes only their team's objects, on every admin operation
//! the OpenAPI document lists, in the live feed and in the exports; MCP access follows team
//! membership.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, USER_PASSWORD, db_test};
use crate::mcp::{add_server, rpc_at, set_access};
use crate::observe::{next_json, ws_connect};

/// What only team B has: a team admin of A must never see these strings.
const MARKERS: [&str; 4] = ["bravo-team", "bravo-srv", "bravo-user", "bravo-key"];

/// A nonexistent id of every kind.
const NONE: i64 = 999_999;

/// Ids of one side's objects.
#[derive(Debug, Clone, Copy)]
struct Ids {
    team: i64,
    server: i64,
    user: i64,
    key: i64,
}

/// `path` with its parameters filled from `ids` (named by the segment before them or their
/// own name); ids of kinds only global admins touch (OAuth clients, scans) are `other`.
fn fill(path: &str, ids: &Ids, other: i64) -> String {
    let mut out = Vec::new();
    let mut previous = "";
    for segment in path.split('/') {
        let value = match segment {
            "{server_id}" => Some(ids.server),
            "{user_id}" => Some(ids.user),
            "{key_id}" => Some(ids.key),
            "{client}" => Some(other),
            "{id}" => Some(match previous {
                "mcp-servers" | "servers" => ids.server,
                "users" => ids.user,
                "api-keys" => ids.key,
                "teams" => ids.team,
                _ => other,
            }),
            s if s.starts_with('{') => panic!("no value for {s} in {path}"),
            _ => None,
        };
        match value {
            Some(v) => out.push(v.to_string()),
            None => {
                out.push(segment.to_string());
                previous = segment;
            }
        }
    }
    out.join("/")
}

/// The body an operation is tried with, aimed at `ids` (B's objects, or nonexistent ones):
/// valid apart from whose objects it names, so the answer is about scope, not shape.
fn body_for(operation: &str, ids: &Ids, server_name: &str) -> Option<Value> {
    let rule = json!({"rules": [{"server_id": ids.server, "pattern": "*", "effect": "deny"}]});
    Some(match operation {
        "create_mcp_server" => {
            json!({"name": "sneaky", "url": "http://127.0.0.1:9/mcp", "team_id": ids.team})
        }
        "update_mcp_server" => json!({"description": "changed by a team admin of A"}),
        "decide_tool_pin" => json!({"name": "echo", "fingerprint": "0", "decision": "approve"}),
        "set_mcp_permission" => json!({"server_id": ids.server, "can_access": true}),
        "set_user_tool_rules" | "set_api_key_tool_rules" => rule,
        "console_tools" => json!({"server": server_name}),
        "console_call" => json!({"server": server_name, "tool": "echo", "arguments": {}}),
        "set_server_rate_limits" => {
            json!({"per_minute": 5, "tools": [{"tool": "echo", "per_minute": 1}]})
        }
        // Global admins only: answered 403 before the body is read.
        _ => json!({}),
    })
}

async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let res = app.send(method.clone(), path, Some(token), body).await;
    let status = res.status();
    (status, res.text().await.unwrap_or_default())
}

fn assert_clean(what: &str, text: &str) {
    for marker in MARKERS {
        assert!(
            !text.contains(marker),
            "{what} shows team B's {marker}: {text}"
        );
    }
}

async fn make_team(app: &TestApp, admin: &str, name: &str) -> i64 {
    let res = app
        .post_json("/admin/api/teams", Some(admin), json!({"name": name}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn set_member(app: &TestApp, admin: &str, team: i64, user: i64, role: &str) {
    let res = app
        .send(
            Method::PUT,
            &format!("/admin/api/teams/{team}/members/{user}"),
            Some(admin),
            Some(json!({"role": role})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{role} of {team}");
}

async fn remove_member(app: &TestApp, admin: &str, team: i64, user: i64) {
    let res = app
        .send(
            Method::DELETE,
            &format!("/admin/api/teams/{team}/members/{user}"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

/// An MCP `initialize` on `path` with `token`; its HTTP status.
async fn mcp_status(app: &TestApp, path: &str, token: &str) -> StatusCode {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    rpc_at(app, path, Some(token), None, &[], body).await.0
}

async fn wait_for_activity(app: &TestApp, server: &str) {
    for _ in 0..100 {
        let filter = authmcp_gateway::db::servers::ActivityFilter {
            server: Some(server),
            ..Default::default()
        };
        if authmcp_gateway::db::servers::count_activity(&app.state.db.pool, &filter)
            .await
            .unwrap()
            > 0
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no activity on {server}");
}

db_test! {
    /// Every admin operation in the OpenAPI document, tried by a team admin of team A on team
    /// B's objects, is answered exactly as for objects that do not exist (404, or 403 for what
    /// only global admins may do, whatever the object), changes nothing, and no answer, list,
    /// export or live-feed message shows anything of B. The team admin does manage A.
    async fn a_team_admin_sees_and_changes_only_their_team(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let team_a = make_team(&app, &admin, "alpha-team").await;
        let team_b = make_team(&app, &admin, "bravo-team").await;
        let ta = app.create_user(&admin, "alpha-admin", "user").await;
        let au = app.create_user(&admin, "alpha-user", "user").await;
        let bu = app.create_user(&admin, "bravo-user", "user").await;
        set_member(&app, &admin, team_a, ta, "team_admin").await;
        set_member(&app, &admin, team_a, au, "member").await;
        set_member(&app, &admin, team_b, bu, "member").await;
        // With several teams, new users join none until a global admin says which.
        let default: Value = app.get_as("/admin/api/teams/1/members", &admin).await.json().await.unwrap();
        assert!(default.as_array().unwrap().iter().all(|m| m["user_id"] != ta && m["user_id"] != bu), "{default}");
        let alpha = add_server(&app, &admin, json!({"name": "alpha-srv", "url": "http://127.0.0.1:9/mcp", "team_id": team_a})).await;
        let bravo = add_server(&app, &admin, json!({"name": "bravo-srv", "url": "http://127.0.0.1:9/mcp", "team_id": team_b})).await;
        set_access(&app, &admin, au, alpha, true).await;
        set_access(&app, &admin, bu, bravo, true).await;
        // A rule of A's member on B's server (set by a global admin) stays invisible to A.
        let res = app
            .send(Method::PUT, &format!("/admin/api/users/{au}/tool-rules"), Some(&admin),
                Some(json!({"rules": [{"server_id": bravo, "pattern": "secret*", "effect": "deny"}, {"server_id": alpha, "pattern": "x*", "effect": "deny"}]})))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let key: Value = app
            .post_json(&format!("/admin/api/users/{bu}/api-keys"), Some(&admin), json!({"name": "bravo-key"}))
            .await
            .json()
            .await
            .unwrap();
        let bravo_key = key["key"]["id"].as_i64().unwrap();
        let bravo_secret = key["secret"].as_str().unwrap().to_string();
        let au_key: Value = app
            .post_json(&format!("/admin/api/users/{au}/api-keys"), Some(&admin), json!({"name": "alpha-key"}))
            .await
            .json()
            .await
            .unwrap();
        let alpha_key = au_key["key"]["id"].as_i64().unwrap();

        // Traffic and events on both teams' servers: B's user on B's server (activity), A's
        // user refused on B's server, and somebody of neither team refused on A's (security
        // events; who tried A's server is A's business).
        let bu_token = app.mcp_token("bravo-user", USER_PASSWORD).await;
        let au_token = app.mcp_token("alpha-user", USER_PASSWORD).await;
        app.create_user(&admin, "stranger", "user").await;
        let stranger = app.mcp_token("stranger", USER_PASSWORD).await;
        mcp_status(&app, "/mcp/bravo-srv", &bu_token).await;
        assert_eq!(mcp_status(&app, "/mcp/bravo-srv", &au_token).await, StatusCode::FORBIDDEN);
        assert_eq!(mcp_status(&app, "/mcp/alpha-srv", &stranger).await, StatusCode::FORBIDDEN);
        wait_for_activity(&app, "bravo-srv").await;
        app.wait_for_event("access_denied").await;

        // The team admin signs in to the admin API (a team admin of nothing could not).
        let outsider = app.create_user(&admin, "nobody-admin", "user").await;
        let res = app.post_json("/admin/api/login", None, json!({"username": "nobody-admin", "password": USER_PASSWORD})).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{outsider} administers nothing");
        let token = app.admin_login("alpha-admin", USER_PASSWORD).await;
        let me: Value = app.get_as("/admin/api/me", &token).await.json().await.unwrap();
        assert_eq!(me["admin_of"], json!([team_a]));

        let b = Ids { team: team_b, server: bravo, user: bu, key: bravo_key };
        let a = Ids { team: team_a, server: alpha, user: au, key: alpha_key };
        let missing = Ids { team: NONE, server: NONE, user: NONE, key: NONE };
        let spec: Value = app.get("/api-docs/openapi.json").await.json().await.unwrap();
        let mut tried = BTreeMap::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            if !path.starts_with("/admin/api/") {
                continue;
            }
            for (method, op) in item.as_object().unwrap() {
                let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
                let operation = op["operationId"].as_str().unwrap_or(path).to_string();
                // Sessions and the live feed are tried on their own below.
                if matches!(operation.as_str(), "admin_login" | "admin_refresh" | "admin_logout" | "live_feed" | "live_ticket") {
                    continue;
                }
                let has_body = op.get("requestBody").is_some();
                let body = |ids: &Ids, name: &str| if has_body { body_for(&operation, ids, name) } else { None };
                let on_b = fill(path, &b, 1);
                let on_none = fill(path, &missing, NONE);
                let (status_b, text_b) = send(&app, &method, &on_b, &token, body(&b, "bravo-srv")).await;
                let (status_none, text_none) = send(&app, &method, &on_none, &token, body(&missing, "no-such-srv")).await;
                assert_clean(&format!("{method} {on_b}"), &text_b);
                let code = |t: &str| serde_json::from_str::<Value>(t).ok().map(|v| v["error"]["code"].clone());
                if method == Method::GET && !path.contains('{') {
                    // A list: whatever it shows, nothing of B.
                    assert!(status_b == StatusCode::OK || status_b == StatusCode::FORBIDDEN, "{method} {path}: {status_b} {text_b}");
                } else {
                    assert_eq!(
                        (status_b, code(&text_b)),
                        (status_none, code(&text_none)),
                        "{method} {path}: B's objects are answered like missing ones ({text_b} / {text_none})"
                    );
                    assert!(
                        matches!(status_b, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST),
                        "{method} {path} on B's objects: {status_b} {text_b}"
                    );
                }
                // The same operation on A's own objects shows nothing of B either.
                if method == Method::GET {
                    let on_a = fill(path, &a, 1);
                    let (_, text_a) = send(&app, &method, &on_a, &token, None).await;
                    assert_clean(&format!("GET {on_a}"), &text_a);
                }
                tried.insert(format!("{method} {path}"), status_b.as_u16());
            }
        }
        assert!(tried.len() >= 60, "every admin operation was tried: {tried:?}");
        // What only global admins may do is 403 for a team admin, whatever the object.
        for op in ["POST /admin/api/users", "PATCH /admin/api/users/{id}", "PUT /admin/api/settings", "POST /admin/api/audits", "POST /admin/api/teams", "GET /admin/api/oauth/clients", "POST /admin/api/signing-keys/rotate"] {
            assert_eq!(tried.get(op), Some(&403), "{op}");
        }
        for op in ["GET /admin/api/mcp-servers/{id}", "PATCH /admin/api/mcp-servers/{id}", "DELETE /admin/api/mcp-servers/{id}", "GET /admin/api/users/{id}", "GET /admin/api/users/{id}/mcp-permissions", "GET /admin/api/teams/{id}", "POST /admin/api/mcp-servers", "POST /admin/api/console/tools"] {
            assert_eq!(tried.get(op), Some(&404), "{op}");
        }

        // Crossed objects: A's member with B's server (a 400 for the body's server, as for one
        // that does not exist) and B's user with A's server (a 404 for the path's user).
        let cross = [
            (Method::PATCH, format!("/admin/api/users/{au}/mcp-permissions"), json!({"server_id": bravo, "can_access": true}), StatusCode::BAD_REQUEST),
            (Method::PATCH, format!("/admin/api/users/{bu}/mcp-permissions"), json!({"server_id": alpha, "can_access": true}), StatusCode::NOT_FOUND),
            (Method::PUT, format!("/admin/api/users/{au}/tool-rules"), json!({"rules": [{"server_id": bravo, "pattern": "*", "effect": "allow"}]}), StatusCode::BAD_REQUEST),
            (Method::PUT, format!("/admin/api/users/{au}/tool-rules"), json!({"rules": [{"server_id": NONE, "pattern": "*", "effect": "allow"}]}), StatusCode::BAD_REQUEST),
            (Method::PATCH, format!("/admin/api/mcp-servers/{alpha}"), json!({"team_id": team_b}), StatusCode::NOT_FOUND),
        ];
        for (method, path, body, expected) in cross {
            let (status, text) = send(&app, &method, &path, &token, Some(body.clone())).await;
            assert_eq!(status, expected, "{method} {path} {body}: {text}");
            assert_clean(&path, &text);
        }

        // Nothing of B changed, and B's key still works.
        let server: Value = app.get_as(&format!("/admin/api/mcp-servers/{bravo}"), &admin).await.json().await.unwrap();
        assert_eq!(server["description"], Value::Null);
        assert_eq!(server["team_id"], team_b);
        let user: Value = app.get_as(&format!("/admin/api/users/{bu}"), &admin).await.json().await.unwrap();
        assert_eq!(user["enabled"], true);
        assert_eq!(app.get_as("/auth/me", &bravo_secret).await.status(), StatusCode::OK);
        let perms: Value = app.get_as(&format!("/admin/api/users/{au}/mcp-permissions"), &admin).await.json().await.unwrap();
        assert!(perms.as_array().unwrap().iter().all(|p| p["server_id"] != bravo || p["can_access"] == false), "{perms}");
        let rules: Value = app.get_as(&format!("/admin/api/users/{au}/tool-rules"), &admin).await.json().await.unwrap();
        assert_eq!(rules["rules"].as_array().unwrap().len(), 2, "B's rule on A's member is kept: {rules}");

        // The team admin does manage A: its servers, members' grants and rules, its events.
        let servers = send(&app, &Method::GET, "/admin/api/mcp-servers", &token, None).await.1;
        assert!(servers.contains("alpha-srv"), "{servers}");
        let res = app.send(Method::PATCH, &format!("/admin/api/mcp-servers/{alpha}"), Some(&token), Some(json!({"description": "ours"}))).await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = app.post_json("/admin/api/mcp-servers", Some(&token), json!({"name": "alpha-two", "url": "http://127.0.0.1:9/mcp"})).await;
        assert_eq!(res.status(), StatusCode::CREATED, "in the team admin's only team by default");
        assert_eq!(res.json::<Value>().await.unwrap()["team_id"], team_a);
        // Rate-limit overrides of A's server: set by its team admin, applied gateway-wide.
        let limits = format!("/admin/api/mcp-servers/{alpha}/rate-limits");
        for bad in [
            json!({"tools": [{"tool": "", "per_minute": 1}]}),
            json!({"tools": [{"tool": "echo", "per_minute": 1}, {"tool": "echo", "per_minute": 2}]}),
            json!({"per_minute": -1}),
            json!({"per_minute": 1, "extra": true}),
            json!({"tools": "echo"}),
        ] {
            let res = app.send(Method::PUT, &limits, Some(&token), Some(bad.clone())).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        let res = app.send(Method::PUT, &limits, Some(&token), Some(json!({"per_minute": 7, "tools": [{"tool": "echo", "per_minute": 2}]}))).await;
        assert_eq!(res.status(), StatusCode::OK);
        let all: Value = app.get_as("/admin/api/rate-limits", &admin).await.json().await.unwrap();
        let overrides = all["overrides"].as_array().unwrap();
        assert!(overrides.iter().any(|o| o["kind"] == "server" && o["server_id"] == alpha && o["per_minute"] == 7), "{all}");
        assert!(overrides.iter().any(|o| o["kind"] == "tool" && o["tool"] == "echo" && o["per_minute"] == 2), "{all}");
        // Nobody aims the gateway at the host's metadata service (a global admin neither:
        // names are checked again when connecting).
        let res = app.post_json("/admin/api/mcp-servers", Some(&admin), json!({"name": "meta", "url": "http://169.254.169.254/latest"})).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "forbidden_address");
        // A team admin cannot aim the gateway at the host's metadata service.
        for url in ["http://169.254.169.254/latest", "http://[fd00:ec2::254]/mcp", "http://[::ffff:169.254.169.254]/x"] {
            let res = app.post_json("/admin/api/mcp-servers", Some(&token), json!({"name": "meta", "url": url})).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{url}");
            let res = app.send(Method::PATCH, &format!("/admin/api/mcp-servers/{alpha}"), Some(&token), Some(json!({"url": url}))).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{url}");
        }
        let res = app.send(Method::PATCH, &format!("/admin/api/users/{au}/mcp-permissions"), Some(&token), Some(json!({"server_id": alpha, "can_access": false}))).await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = app.send(Method::PUT, &format!("/admin/api/users/{au}/tool-rules"), Some(&token), Some(json!({"rules": [{"server_id": alpha, "pattern": "y*", "effect": "deny"}]}))).await;
        assert_eq!(res.status(), StatusCode::OK);
        let rules: Value = app.get_as(&format!("/admin/api/users/{au}/tool-rules"), &admin).await.json().await.unwrap();
        let patterns: Vec<&str> = rules["rules"].as_array().unwrap().iter().map(|r| r["pattern"].as_str().unwrap()).collect();
        assert_eq!(patterns.len(), 2, "A's rule replaced, B's kept: {rules}");
        assert!(patterns.contains(&"secret*") && patterns.contains(&"y*"), "{rules}");
        let users = send(&app, &Method::GET, "/admin/api/users", &token, None).await.1;
        assert!(users.contains("alpha-user") && !users.contains("nobody-admin"), "{users}");
        let events = send(&app, &Method::GET, "/admin/api/security-events", &token, None).await.1;
        assert!(events.contains("alpha-srv"), "A's events are shown: {events}");
        let export = send(&app, &Method::GET, "/admin/api/security-events/export", &token, None).await.1;
        assert!(export.contains("alpha-srv"), "{export}");
        assert_clean("the export", &export);
        let log = send(&app, &Method::GET, "/admin/api/audit-log", &token, None).await.1;
        assert!(log.contains("alpha-two"), "A's changes are in its audit log: {log}");
        let teams = send(&app, &Method::GET, "/admin/api/teams", &token, None).await.1;
        assert!(teams.contains("alpha-team") && !teams.contains("Default"), "{teams}");

        // The live feed: B's traffic never reaches A's team admin; A's does.
        let mut ws = ws_connect(&app, &token, "").await;
        next_json(&mut ws).await.unwrap();
        mcp_status(&app, "/mcp/bravo-srv", &bu_token).await;
        mcp_status(&app, "/mcp/bravo-srv", &au_token).await;
        set_access(&app, &admin, au, alpha, true).await;
        mcp_status(&app, "/mcp/alpha-srv", &au_token).await;
        let mut saw_alpha = false;
        while let Some(message) = next_json(&mut ws).await {
            assert_clean("the live feed", &message.to_string());
            if message.to_string().contains("alpha-srv") {
                saw_alpha = true;
                break;
            }
        }
        assert!(saw_alpha, "A's traffic reaches its team admin");

        // Demoted to member: the admin API and the feed close at once.
        set_member(&app, &admin, team_a, ta, "member").await;
        assert_eq!(app.get_as("/admin/api/me", &token).await.status(), StatusCode::FORBIDDEN);
        assert!(next_json(&mut ws).await.is_none(), "the feed ends");
    }
}

db_test! {
    /// `/mcp` serves the servers of all of a user's teams (granted ones), and leaving a team
    /// ends access to its servers at once, whatever was granted; server names stay unique
    /// across teams and a name never passes to another team.
    async fn access_follows_team_membership(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let team_a = make_team(&app, &admin, "alpha-team").await;
        let team_b = make_team(&app, &admin, "bravo-team").await;
        let user = app.create_user(&admin, "both", "user").await;
        set_member(&app, &admin, team_a, user, "member").await;
        set_member(&app, &admin, team_b, user, "member").await;
        let alpha = add_server(&app, &admin, json!({"name": "alpha-srv", "url": "http://127.0.0.1:9/mcp", "team_id": team_a})).await;
        let bravo = add_server(&app, &admin, json!({"name": "bravo-srv", "url": "http://127.0.0.1:9/mcp", "team_id": team_b})).await;
        set_access(&app, &admin, user, alpha, true).await;
        set_access(&app, &admin, user, bravo, true).await;
        let (portal, _) = crate::portal::portal_sign_in(&app, "both", USER_PASSWORD).await;
        let names = |v: Value| -> Vec<String> {
            v["servers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
        };
        let mine: Value = app.get_as("/portal/api/servers", &portal).await.json().await.unwrap();
        assert_eq!(names(mine), ["alpha-srv", "bravo-srv"], "the union of both teams'");
        let mcp = app.mcp_token("both", USER_PASSWORD).await;
        assert_ne!(mcp_status(&app, "/mcp/bravo-srv", &mcp).await, StatusCode::FORBIDDEN);

        remove_member(&app, &admin, team_b, user).await;
        let mine: Value = app.get_as("/portal/api/servers", &portal).await.json().await.unwrap();
        assert_eq!(names(mine), ["alpha-srv"]);
        assert_eq!(mcp_status(&app, "/mcp/bravo-srv", &mcp).await, StatusCode::FORBIDDEN, "no longer a member");
        set_member(&app, &admin, team_b, user, "member").await;
        assert_ne!(mcp_status(&app, "/mcp/bravo-srv", &mcp).await, StatusCode::FORBIDDEN, "the grant was kept");

        // Names are unique per gateway; a deleted server's name stays with its team.
        let res = app.post_json("/admin/api/mcp-servers", Some(&admin), json!({"name": "bravo-srv", "url": "http://127.0.0.1:9/mcp", "team_id": team_a})).await;
        assert_eq!(res.status(), StatusCode::CONFLICT);
        let res = app.send(Method::DELETE, &format!("/admin/api/mcp-servers/{bravo}"), Some(&admin), None).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let res = app.post_json("/admin/api/mcp-servers", Some(&admin), json!({"name": "bravo-srv", "url": "http://127.0.0.1:9/mcp", "team_id": team_a})).await;
        assert_eq!(res.status(), StatusCode::CONFLICT, "its history stays with B");
        let res = app.post_json("/admin/api/mcp-servers", Some(&admin), json!({"name": "bravo-srv", "url": "http://127.0.0.1:9/mcp", "team_id": team_b})).await;
        assert_eq!(res.status(), StatusCode::CREATED, "B may take it again");

        // Teams with servers cannot be deleted; the default team never.
        let res = app.send(Method::DELETE, &format!("/admin/api/teams/{team_a}"), Some(&admin), None).await;
        assert_eq!(res.status(), StatusCode::CONFLICT);
        let res = app.send(Method::DELETE, "/admin/api/teams/1", Some(&admin), None).await;
        assert_eq!(res.status(), StatusCode::CONFLICT);
        for bad in [json!({"name": ""}), json!({"name": "x".repeat(101)}), json!({"name": ["x"]}), json!({"name": "ok", "extra": 1})] {
            let res = app.post_json("/admin/api/teams", Some(&admin), bad.clone()).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        let res = app.post_json("/admin/api/teams", Some(&admin), json!({"name": "alpha-team"})).await;
        assert_eq!(res.status(), StatusCode::CONFLICT);
        let res = app
            .send(Method::PUT, &format!("/admin/api/teams/{team_a}/members/{user}"), Some(&admin), Some(json!({"role": "owner"})))
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        // With several teams a new user joins none (in a single-team install they join the
        // default team: the portal tests use granted servers that way).
        let solo = app.create_user(&admin, "solo", "user").await;
        let members: Value = app.get_as("/admin/api/teams/1/members", &admin).await.json().await.unwrap();
        assert!(members.as_array().unwrap().iter().all(|m| m["user_id"] != solo), "{members}");
        let default = add_server(&app, &admin, json!({"name": "default-srv", "url": "http://127.0.0.1:9/mcp"})).await;
        set_access(&app, &admin, solo, default, true).await;
        let solo_token = app.mcp_token("solo", USER_PASSWORD).await;
        assert_eq!(mcp_status(&app, "/mcp/default-srv", &solo_token).await, StatusCode::FORBIDDEN, "granted, but in no team");
        set_member(&app, &admin, 1, solo, "member").await;
        assert_ne!(mcp_status(&app, "/mcp/default-srv", &solo_token).await, StatusCode::FORBIDDEN);
        // A deleted team's names stay taken (its history is global admins' only).
        let team_c = make_team(&app, &admin, "charlie-team").await;
        let c_srv = add_server(&app, &admin, json!({"name": "charlie-srv", "url": "http://127.0.0.1:9/mcp", "team_id": team_c})).await;
        let res = app.send(Method::DELETE, &format!("/admin/api/mcp-servers/{c_srv}"), Some(&admin), None).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let res = app.send(Method::DELETE, &format!("/admin/api/teams/{team_c}"), Some(&admin), None).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let res = app.post_json("/admin/api/mcp-servers", Some(&admin), json!({"name": "charlie-srv", "url": "http://127.0.0.1:9/mcp", "team_id": team_a})).await;
        assert_eq!(res.status(), StatusCode::CONFLICT, "a deleted team's name is not passed on");
    }
}
