//! Accounts: setup, login, tokens and audiences, refresh rotation, revocation on the next
//! request, lockout, API keys, user administration and audit.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, USER_PASSWORD, db_test};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let header = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    let claims = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&header).unwrap(),
        serde_json::from_slice(&claims).unwrap(),
    )
}

db_test! {
    async fn first_run_setup_creates_exactly_one_admin(env: TestEnv) {
        let app = env.spawn().await;
        let status: Value = app.get("/setup/status").await.json().await.unwrap();
        assert_eq!(status["setup_required"], true);

        let weak = app
            .post_json("/setup/create-admin", None, json!({"username": "root", "password": "short"}))
            .await;
        assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
        let body: Value = weak.json().await.unwrap();
        assert_eq!(body["error"]["details"]["field"], "password");
        let status: Value = app.get("/setup/status").await.json().await.unwrap();
        assert_eq!(status["setup_required"], true, "a rejected attempt changes nothing");

        let res = app
            .post_json(
                "/setup/create-admin",
                None,
                json!({"username": "Root", "password": ADMIN_PASSWORD, "email": "root@example.com"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let user: Value = res.json().await.unwrap();
        assert_eq!(user["username"], "root", "usernames are stored lowercase");
        assert_eq!(user["role"], "admin");
        assert!(user.get("password_hash").is_none());

        let status: Value = app.get("/setup/status").await.json().await.unwrap();
        assert_eq!(status["setup_required"], false);
        let again = app
            .post_json("/setup/create-admin", None, json!({"username": "other", "password": ADMIN_PASSWORD}))
            .await;
        assert_eq!(again.status(), StatusCode::CONFLICT);
        let body: Value = again.json().await.unwrap();
        assert_eq!(body["error"]["code"], "setup_complete");
        assert_eq!(authmcp_gateway::db::users::count(&app.state.db.pool).await.unwrap(), 1);
        app.admin_login("root", ADMIN_PASSWORD).await;
    }
}

db_test! {
    async fn concurrent_setup_calls_create_at_most_one_admin(env: TestEnv) {
        let app = env.spawn().await;
        let calls = (0..8).map(|i| {
            app.post_json(
                "/setup/create-admin",
                None,
                json!({"username": format!("admin{i}"), "password": ADMIN_PASSWORD}),
            )
        });
        let results = futures::future::join_all(calls).await;
        let created = results.iter().filter(|r| r.status() == StatusCode::CREATED).count();
        let conflicts = results.iter().filter(|r| r.status() == StatusCode::CONFLICT).count();
        assert_eq!(created, 1, "exactly one call wins");
        assert_eq!(conflicts, 7);
        assert_eq!(authmcp_gateway::db::users::count(&app.state.db.pool).await.unwrap(), 1);
    }
}

db_test! {
    async fn login_issues_well_formed_audience_bound_tokens(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let tokens = app.login("admin", ADMIN_PASSWORD).await;
        assert_eq!(tokens["token_type"], "bearer");
        assert_eq!(tokens["expires_in"], 900);
        assert!(tokens["refresh_token"].as_str().unwrap().starts_with("amr_"));
        let access = tokens["access_token"].as_str().unwrap();
        let (header, claims) = jwt_parts(access);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], app.state.keys.current_kid());
        let base = &app.state.config.public_url;
        assert_eq!(claims["iss"], base.as_str());
        assert_eq!(claims["aud"], format!("{base}/mcp"));
        for claim in ["sub", "exp", "iat", "jti", "sid"] {
            assert!(!claims[claim].is_null(), "{claim} present");
        }
        assert!(claims.get("role").is_none(), "roles are read from the store, not the token");

        let me: Value = app.get_as("/auth/me", access).await.json().await.unwrap();
        assert_eq!(me["username"], "admin");
        assert_eq!(me["role"], "admin");
        assert_eq!(me["auth_method"], "jwt");

        // An MCP token is not an admin token, and the other way round.
        assert_eq!(app.get_as("/admin/api/me", access).await.status(), StatusCode::UNAUTHORIZED);
        let admin = app.admin_token().await;
        let (_, admin_claims) = jwt_parts(&admin);
        assert_eq!(admin_claims["aud"], format!("{base}/admin/api"));
        assert_eq!(app.get_as("/admin/api/me", &admin).await.status(), StatusCode::OK);
        assert_eq!(app.get_as("/auth/me", &admin).await.status(), StatusCode::UNAUTHORIZED);
    }
}

db_test! {
    async fn failed_logins_reveal_nothing(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        app.create_user(&admin, "bob", "user").await;
        let attempt = |path: &'static str, username: &'static str, password: &'static str| {
            app.post_json(path, None, json!({"username": username, "password": password}))
        };
        let unknown = attempt("/auth/login", "nobody-here", "whatever password").await;
        let wrong = attempt("/auth/login", "bob", "whatever password").await;
        // The admin login answers a non-admin with the right password like a wrong password.
        let non_admin = attempt("/admin/api/login", "bob", USER_PASSWORD).await;
        let admin_wrong = attempt("/admin/api/login", "admin", "whatever password").await;
        let mut answers = Vec::new();
        for res in [unknown, wrong, non_admin, admin_wrong] {
            let status = res.status();
            let www = res.headers().get("www-authenticate").cloned();
            let body: Value = res.json().await.unwrap();
            answers.push((status, www, body));
        }
        assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
        assert_eq!(answers[0].2["error"]["code"], "invalid_credentials");
        for other in &answers[1..] {
            assert_eq!(other, &answers[0], "identical status, headers and body");
        }
        let event = app.wait_for_event("auth_failed").await;
        assert!(event.details.unwrap_or_default().contains("failures"));
    }
}

db_test! {
    async fn refresh_tokens_rotate_and_reuse_revokes_the_session(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let first = app.login("admin", ADMIN_PASSWORD).await;
        let r1 = first["refresh_token"].as_str().unwrap().to_string();
        let res = app.post_json("/auth/refresh", None, json!({"refresh_token": r1})).await;
        assert_eq!(res.status(), StatusCode::OK);
        let second: Value = res.json().await.unwrap();
        let r2 = second["refresh_token"].as_str().unwrap().to_string();
        assert_ne!(r1, r2, "rotated");
        let access2 = second["access_token"].as_str().unwrap().to_string();
        assert_eq!(app.get_as("/auth/me", &access2).await.status(), StatusCode::OK);
        assert_eq!(
            jwt_parts(&access2).1["sid"],
            jwt_parts(first["access_token"].as_str().unwrap()).1["sid"],
            "same session"
        );

        // Replaying the spent token revokes the whole family.
        let replay = app.post_json("/auth/refresh", None, json!({"refresh_token": r1})).await;
        assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
        let next = app.post_json("/auth/refresh", None, json!({"refresh_token": r2})).await;
        assert_eq!(next.status(), StatusCode::UNAUTHORIZED, "the newest token died too");
        assert_eq!(app.get_as("/auth/me", &access2).await.status(), StatusCode::UNAUTHORIZED);
        let event = app.wait_for_event("token_reuse").await;
        assert_eq!(event.severity, "high");

        // The refresh token is stored only as a hash.
        let stored: Vec<String> = sqlx::query_scalar("select token_hash from refresh_tokens")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
        assert!(!stored.is_empty());
        assert!(stored.iter().all(|h| h.len() == 64 && !h.contains("amr_")));
        // A refresh token of one audience does not work on the other's endpoint.
        let admin_session = app
            .post_json("/admin/api/login", None, json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .await
            .json::<Value>()
            .await
            .unwrap();
        let res = app
            .post_json("/auth/refresh", None, json!({"refresh_token": admin_session["refresh_token"]}))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}

db_test! {
    async fn logout_revokes_the_access_token_and_its_refresh_family(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let tokens = app.login("admin", ADMIN_PASSWORD).await;
        let access = tokens["access_token"].as_str().unwrap();
        let other = app.login("admin", ADMIN_PASSWORD).await;
        let res = app.send(Method::POST, "/auth/logout", Some(access), None).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(app.get_as("/auth/me", access).await.status(), StatusCode::UNAUTHORIZED);
        let refresh = app
            .post_json("/auth/refresh", None, json!({"refresh_token": tokens["refresh_token"]}))
            .await;
        assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
        // Other sessions of the same user are untouched.
        let other_access = other["access_token"].as_str().unwrap();
        assert_eq!(app.get_as("/auth/me", other_access).await.status(), StatusCode::OK);
    }
}

db_test! {
    async fn disable_delete_and_demote_take_effect_on_the_next_request(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let bob = app.create_user(&admin, "bob", "user").await;
        let bob_token = app.mcp_token("bob", USER_PASSWORD).await;
        assert_eq!(app.get_as("/auth/me", &bob_token).await.status(), StatusCode::OK);

        let patch = |id: i64, body: Value| {
            let (app, admin) = (&app, &admin);
            async move {
                app.send(Method::PATCH, &format!("/admin/api/users/{id}"), Some(admin), Some(body))
                    .await
            }
        };
        assert_eq!(patch(bob, json!({"enabled": false})).await.status(), StatusCode::OK);
        assert_eq!(app.get_as("/auth/me", &bob_token).await.status(), StatusCode::UNAUTHORIZED);
        let res = app
            .post_json("/auth/login", None, json!({"username": "bob", "password": USER_PASSWORD}))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "a disabled user cannot sign in");

        assert_eq!(patch(bob, json!({"enabled": true})).await.status(), StatusCode::OK);
        let bob_token = app.mcp_token("bob", USER_PASSWORD).await;
        let api_key: Value = app
            .post_json("/auth/api-keys", Some(&bob_token), json!({"name": "laptop"}))
            .await
            .json()
            .await
            .unwrap();
        let secret = api_key["secret"].as_str().unwrap().to_string();
        assert_eq!(app.get_as("/auth/me", &secret).await.status(), StatusCode::OK);
        let res = app.send(Method::DELETE, &format!("/admin/api/users/{bob}"), Some(&admin), None).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(app.get_as("/auth/me", &bob_token).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get_as("/auth/me", &secret).await.status(), StatusCode::UNAUTHORIZED);

        let carol = app.create_user(&admin, "carol", "admin").await;
        let carol_token = app.admin_login("carol", USER_PASSWORD).await;
        assert_eq!(app.get_as("/admin/api/users", &carol_token).await.status(), StatusCode::OK);
        assert_eq!(patch(carol, json!({"role": "user"})).await.status(), StatusCode::OK);
        assert_eq!(
            app.get_as("/admin/api/users", &carol_token).await.status(),
            StatusCode::UNAUTHORIZED,
            "a demoted admin loses the admin API at once"
        );
    }
}

db_test! {
    async fn the_last_enabled_admin_cannot_be_removed(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let me: Value = app.get_as("/admin/api/me", &admin).await.json().await.unwrap();
        let id = me["id"].as_i64().unwrap();
        let path = format!("/admin/api/users/{id}");
        for body in [json!({"role": "user"}), json!({"enabled": false})] {
            let res = app.send(Method::PATCH, &path, Some(&admin), Some(body)).await;
            assert_eq!(res.status(), StatusCode::CONFLICT);
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "last_admin");
        }
        let res = app.send(Method::DELETE, &path, Some(&admin), None).await;
        assert_eq!(res.status(), StatusCode::CONFLICT);
        // With a second enabled admin, the first may step down.
        app.create_user(&admin, "second", "admin").await;
        let res = app.send(Method::PATCH, &path, Some(&admin), Some(json!({"role": "user"}))).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

db_test! {
    async fn repeated_failures_lock_real_and_unknown_usernames_alike(env: TestEnv) {
        let app = env
            .with_admin()
            .with_var("LOGIN_MAX_FAILURES", "3")
            .with_var("LOGIN_LOCKOUT_SECS", "120")
            .spawn()
            .await;
        let mut answers = Vec::new();
        for username in ["admin", "ghost-user"] {
            for _ in 0..3 {
                let res = app
                    .post_json("/auth/login", None, json!({"username": username, "password": "wrong password!"}))
                    .await;
                assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            }
            // Locked: even the right password is refused, and the answer says nothing else.
            let res = app
                .post_json("/auth/login", None, json!({"username": username, "password": ADMIN_PASSWORD}))
                .await;
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
            let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=120).contains(&retry), "{retry}");
            let body: Value = res.json().await.unwrap();
            answers.push(body["error"]["code"].clone());
        }
        assert_eq!(answers, vec![json!("login_locked"), json!("login_locked")]);
        app.wait_for_event("account_locked").await;
    }
}

db_test! {
    async fn spoofed_forwarded_for_does_not_reset_the_ip_budget(env: TestEnv) {
        let app = env
            .with_var("LOGIN_IP_MAX_FAILURES", "3")
            .with_var("LOGIN_MAX_FAILURES", "50")
            .spawn()
            .await;
        let attempt = |i: u32| {
            app.client
                .post(app.url("/auth/login"))
                .header("x-forwarded-for", format!("198.51.100.{i}"))
                .json(&json!({"username": format!("user{i}"), "password": "wrong password!"}))
                .send()
        };
        for i in 0..3 {
            assert_eq!(attempt(i).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        }
        let res = attempt(99).await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "a new X-Forwarded-For changes nothing");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_many_attempts");
        assert!(res_has_retry(&body));
    }
}

fn res_has_retry(body: &Value) -> bool {
    body["error"]["details"]["retry_after_seconds"]
        .as_u64()
        .is_some_and(|s| s >= 1)
}

db_test! {
    async fn forwarded_for_counts_per_client_behind_a_trusted_proxy(env: TestEnv) {
        let app = env
            .with_var("LOGIN_IP_MAX_FAILURES", "2")
            .with_var("LOGIN_MAX_FAILURES", "50")
            .with_var("TRUSTED_PROXIES", "127.0.0.1")
            .spawn()
            .await;
        let attempt = |ip: &'static str, i: u32| {
            app.client
                .post(app.url("/auth/login"))
                .header("x-forwarded-for", ip)
                .json(&json!({"username": format!("user{i}"), "password": "wrong password!"}))
                .send()
        };
        for i in 0..2 {
            assert_eq!(attempt("198.51.100.1", i).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(attempt("198.51.100.1", 9).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            attempt("198.51.100.2", 10).await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "another client behind the proxy has its own budget"
        );
    }
}

db_test! {
    async fn api_keys_authenticate_mcp_side_only(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let token = app.mcp_token("admin", ADMIN_PASSWORD).await;
        let res = app
            .post_json(
                "/auth/api-keys",
                Some(&token),
                json!({"name": "ci", "expires_in_days": 30, "servers": ["github", "rag"]}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let created: Value = res.json().await.unwrap();
        let secret = created["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("amg_") && secret.len() > 40);
        assert_eq!(created["key"]["servers"], json!(["github", "rag"]));
        assert!(secret.starts_with(created["key"]["prefix"].as_str().unwrap()));

        let me: Value = app.get_as("/auth/me", &secret).await.json().await.unwrap();
        assert_eq!(me["auth_method"], "api_key");
        assert_eq!(me["username"], "admin");
        // Even an admin's key never opens the admin API, nor key management.
        assert_eq!(app.get_as("/admin/api/users", &secret).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get_as("/admin/api/me", &secret).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get_as("/auth/api-keys", &secret).await.status(), StatusCode::UNAUTHORIZED);

        let list: Value = app.get_as("/auth/api-keys", &token).await.json().await.unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert!(!list.to_string().contains(&secret), "the secret is never listed");
        let stored: String = sqlx::query_scalar("select key_hash from api_keys")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_ne!(stored, secret);

        let bad = app
            .post_json("/auth/api-keys", Some(&token), json!({"name": "x", "servers": ["Bad Name"]}))
            .await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

        let id = created["key"]["id"].as_i64().unwrap();
        let res = app.send(Method::DELETE, &format!("/auth/api-keys/{id}"), Some(&token), None).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(app.get_as("/auth/me", &secret).await.status(), StatusCode::UNAUTHORIZED);
        let list: Value = app.get_as("/auth/api-keys", &token).await.json().await.unwrap();
        assert_eq!(list[0]["revoked"], true);
    }
}

db_test! {
    async fn forged_and_misdirected_jwts_are_rejected(env: TestEnv) {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let app = env.with_admin().spawn().await;
        let tokens = app.login("admin", ADMIN_PASSWORD).await;
        let good = tokens["access_token"].as_str().unwrap().to_string();
        let (header, claims) = jwt_parts(&good);
        let kid = header["kid"].as_str().unwrap().to_string();
        let signature = good.rsplit('.').next().unwrap();

        let mut tampered_claims = claims.clone();
        tampered_claims["sub"] = json!("999");
        let tampered = format!("{}.{}.{}", b64(&header), b64(&tampered_claims), signature);

        let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})), b64(&claims));

        let mut other_seed = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
        ];
        other_seed.extend_from_slice(&[9u8; 32]);
        let mut eddsa = Header::new(Algorithm::EdDSA);
        eddsa.kid = Some(kid.clone());
        let other_key =
            jsonwebtoken::encode(&eddsa, &claims, &EncodingKey::from_ed_der(&other_seed)).unwrap();

        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(kid.clone());
        let hmac = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(kid.as_bytes())).unwrap();

        let mut expired_claims = claims.clone();
        expired_claims["exp"] = json!(authmcp_gateway::db::now() - 3600);
        let expired = app.state.keys.sign(&expired_claims).unwrap();

        let mut wrong_aud = claims.clone();
        wrong_aud["aud"] = json!("https://elsewhere.example/mcp");
        let wrong_audience = app.state.keys.sign(&wrong_aud).unwrap();

        let mut wrong_iss = claims.clone();
        wrong_iss["iss"] = json!("https://elsewhere.example");
        let wrong_issuer = app.state.keys.sign(&wrong_iss).unwrap();

        for (name, token) in [
            ("tampered", tampered),
            ("alg none", none),
            ("another key", other_key),
            ("HS256", hmac),
            ("expired", expired),
            ("wrong audience", wrong_audience),
            ("wrong issuer", wrong_issuer),
            ("garbage", "not.a.jwt".to_string()),
        ] {
            let res = app.get_as("/auth/me", &token).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{name}");
            assert_eq!(res.headers()["www-authenticate"], "Bearer", "{name}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized", "{name}");
        }
        assert_eq!(app.get_as("/auth/me", &good).await.status(), StatusCode::OK);
        app.wait_for_event("token_invalid").await;
    }
}

db_test! {
    async fn registration_is_off_by_default(env: TestEnv) {
        let body = json!({"username": "newbie", "password": USER_PASSWORD});
        let app = env.spawn().await;
        let res = app.post_json("/auth/register", None, body.clone()).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        app.stop().await;

        let app = env.with_var("ALLOW_REGISTRATION", "true").spawn().await;
        let res = app.post_json("/auth/register", None, body.clone()).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let user: Value = res.json().await.unwrap();
        assert_eq!(user["role"], "user");
        let dup = app.post_json("/auth/register", None, body).await;
        assert_eq!(dup.status(), StatusCode::CONFLICT);
        let me: Value = app
            .get_as("/auth/me", app.login("newbie", USER_PASSWORD).await["access_token"].as_str().unwrap())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(me["role"], "user");
    }
}

db_test! {
    async fn admins_manage_users_and_every_change_is_audited(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        let bob = app.create_user(&admin, "bob", "user").await;
        app.create_user(&admin, "alice", "admin").await;
        let dup = app
            .post_json("/admin/api/users", Some(&admin), json!({"username": "BOB", "password": USER_PASSWORD}))
            .await;
        assert_eq!(dup.status(), StatusCode::CONFLICT);
        let body: Value = dup.json().await.unwrap();
        assert_eq!(body["error"]["code"], "username_taken");

        let page: Value = app.get_as("/admin/api/users?role=admin&per_page=1", &admin).await.json().await.unwrap();
        assert_eq!(page["total"], 2);
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        assert_eq!(page["items"][0]["username"], "admin");
        let page: Value = app.get_as("/admin/api/users?q=BO", &admin).await.json().await.unwrap();
        assert_eq!(page["total"], 1);
        assert_eq!(page["items"][0]["username"], "bob");
        // Paging out of range is refused, not silently changed, on every paged list.
        for list in ["/admin/api/users", "/admin/api/audit-log", "/admin/api/security-events", "/admin/api/mcp-activity"] {
            for query in ["per_page=201", "per_page=0", "page=0", "per_page=-1", "page=x"] {
                let res = app.get_as(&format!("{list}?{query}"), &admin).await;
                assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{list}?{query}");
            }
            let res = app.get_as(&format!("{list}?per_page=200&page=3"), &admin).await;
            assert_eq!(res.status(), StatusCode::OK, "{list}");
            let page: Value = res.json().await.unwrap();
            assert_eq!((page["per_page"].as_u64(), page["page"].as_u64()), (Some(200), Some(3)), "{list}");
        }
        let bad = app.get_as("/admin/api/users?enabled=maybe", &admin).await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let body: Value = bad.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_query");

        let res = app
            .send(Method::PATCH, &format!("/admin/api/users/{bob}"), Some(&admin), Some(json!({"email": "bob@example.com"})))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let bob_json: Value = res.json().await.unwrap();
        assert_eq!(bob_json["email"], "bob@example.com");
        assert_eq!(bob_json["role"], "user", "absent fields stay");

        let bob_session = app.login("bob", USER_PASSWORD).await;
        let res = app
            .post_json(&format!("/admin/api/users/{bob}/password"), Some(&admin), json!({"password": "a brand new passphrase"}))
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            app.get_as("/auth/me", bob_session["access_token"].as_str().unwrap()).await.status(),
            StatusCode::UNAUTHORIZED,
            "a password reset ends existing sessions"
        );
        app.login("bob", "a brand new passphrase").await;

        let key: Value = app
            .post_json(&format!("/admin/api/users/{bob}/api-keys"), Some(&admin), json!({"name": "bot"}))
            .await
            .json()
            .await
            .unwrap();
        let keys: Value = app.get_as(&format!("/admin/api/users/{bob}/api-keys"), &admin).await.json().await.unwrap();
        assert_eq!(keys[0]["id"], key["key"]["id"]);

        let missing = app.get_as("/admin/api/users/99999", &admin).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let bad_id = app.get_as("/admin/api/users/abc", &admin).await;
        assert_eq!(bad_id.status(), StatusCode::BAD_REQUEST);

        let audit: Value = app.get_as("/admin/api/audit-log", &admin).await.json().await.unwrap();
        let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        for action in ["user.create", "user.update", "user.reset_password", "api_key.create"] {
            assert!(actions.contains(&action), "{action} audited: {actions:?}");
        }
        let update = audit["items"].as_array().unwrap().iter().find(|e| e["action"] == "user.update").unwrap();
        assert_eq!(update["actor_username"], "admin");
        assert_eq!(update["before"]["email"], Value::Null);
        assert_eq!(update["after"]["email"], "bob@example.com");
        let text = audit.to_string();
        assert!(!text.contains("argon2") && !text.contains("passphrase"), "no secrets in the audit log");
    }
}

db_test! {
    async fn rotated_keys_keep_old_tokens_valid(env: TestEnv) {
        let env = env.with_admin();
        let app = env.spawn().await;
        let old = app.mcp_token("admin", ADMIN_PASSWORD).await;
        let old_kid = app.state.keys.current_kid();
        let admin = app.admin_token().await;
        let res = app.send(Method::POST, "/admin/api/signing-keys/rotate", Some(&admin), None).await;
        assert_eq!(res.status(), StatusCode::OK);
        let new_kid = res.json::<Value>().await.unwrap()["kid"].as_str().unwrap().to_string();
        assert_ne!(new_kid, old_kid);
        assert_eq!(app.state.keys.current_kid(), new_kid);
        assert_eq!(app.get_as("/auth/me", &old).await.status(), StatusCode::OK, "old tokens still verify");
        let fresh = app.mcp_token("admin", ADMIN_PASSWORD).await;
        assert_eq!(jwt_parts(&fresh).0["kid"], new_kid.as_str());
        let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.unwrap();
        let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, vec![new_kid.as_str(), old_kid.as_str()], "current key first");
        app.stop().await;
        // After a restart the retired key still verifies, the new one still signs.
        let app = env.spawn().await;
        assert_eq!(app.state.keys.current_kid(), new_kid);
        assert_eq!(app.get_as("/auth/me", &old).await.status(), StatusCode::OK);
    }
}

db_test! {
    async fn admin_cookie_sessions_keep_the_refresh_token_away_from_javascript(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let res = app
            .post_json("/admin/api/login", None, json!({"username": "admin", "password": ADMIN_PASSWORD, "session": "cookie"}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/admin/api/session", "Max-Age="] {
            assert!(cookie.contains(attr), "{attr} in {cookie}");
        }
        let body: Value = res.json().await.unwrap();
        assert!(body.get("refresh_token").is_none(), "no refresh token in the body");
        let pair = cookie.split(';').next().unwrap().to_string();

        let refresh = |pair: String| {
            app.client
                .post(app.url("/admin/api/session/refresh"))
                .header("cookie", pair)
                .json(&json!({}))
                .send()
        };
        let res = refresh(pair.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let next_pair = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        assert_ne!(next_pair, pair, "the cookie rotates");
        let body: Value = res.json().await.unwrap();
        let access = body["access_token"].as_str().unwrap().to_string();
        assert_eq!(app.get_as("/admin/api/me", &access).await.status(), StatusCode::OK);

        let res = app
            .client
            .post(app.url("/admin/api/session/logout"))
            .header("cookie", next_pair.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert!(res.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
        assert_eq!(app.get_as("/admin/api/me", &access).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refresh(next_pair).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}

db_test! {
    async fn oversized_bodies_are_refused_with_the_envelope(env: TestEnv) {
        let app = env.with_var("MAX_BODY_BYTES", "1024").spawn().await;
        let res = app
            .post_json("/auth/login", None, json!({"username": "x", "password": "y".repeat(4000)}))
            .await;
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large");
        let res = app
            .client
            .post(app.url("/auth/login"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_json");
    }
}

db_test! {
    async fn security_events_filter_and_export(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        for _ in 0..2 {
            app.post_json("/auth/login", None, json!({"username": "admin", "password": "wrong password!"})).await;
        }
        let r1 = app.login("admin", ADMIN_PASSWORD).await["refresh_token"].clone();
        app.post_json("/auth/refresh", None, json!({"refresh_token": r1})).await;
        app.post_json("/auth/refresh", None, json!({"refresh_token": r1})).await;
        app.wait_for_event("token_reuse").await;
        let admin = app.admin_token().await;
        for _ in 0..50 {
            let page: Value = app.get_as("/admin/api/security-events?type=auth_failed", &admin).await.json().await.unwrap();
            if page["total"] == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let high: Value = app.get_as("/admin/api/security-events?severity=high", &admin).await.json().await.unwrap();
        assert_eq!(high["total"], 1);
        assert_eq!(high["items"][0]["event_type"], "token_reuse");
        let failed: Value = app.get_as("/admin/api/security-events?type=auth_failed&per_page=1", &admin).await.json().await.unwrap();
        assert_eq!(failed["total"], 2);
        assert_eq!(failed["items"].as_array().unwrap().len(), 1);
        let future: Value = app
            .get_as(&format!("/admin/api/security-events?since={}", authmcp_gateway::db::now() + 3600), &admin)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(future["total"], 0);

        let all: Value = app.get_as("/admin/api/security-events", &admin).await.json().await.unwrap();
        let res = app.get_as("/admin/api/security-events/export", &admin).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "application/x-ndjson");
        let text = res.text().await.unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len() as i64, all["total"].as_i64().unwrap());
        assert_eq!(lines[0]["id"], all["items"][0]["id"], "newest first");
        let exported: Vec<Value> = app
            .get_as("/admin/api/security-events/export?type=auth_failed", &admin)
            .await
            .text()
            .await
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(exported.len(), 2);
        assert!(!text.contains(ADMIN_PASSWORD) && !text.contains("wrong password"), "no secrets");
        assert_eq!(app.get("/admin/api/security-events/export").await.status(), StatusCode::UNAUTHORIZED);
    }
}

db_test! {
    /// `POST /auth/password`: the current password is required (a wrong one counts like a
    /// failed sign-in), the new one follows the rules, other sessions end and this one goes on;
    /// API keys cannot change it. Successful sign-ins and sign-outs are in the audit log,
    /// filterable by kind.
    async fn users_change_their_own_password_and_sign_ins_are_audited(env: TestEnv) {
        let app = env.with_admin().spawn().await;
        let admin = app.admin_token().await;
        app.create_user(&admin, "erin", "user").await;
        let here = app.mcp_token("erin", USER_PASSWORD).await;
        let elsewhere = app.mcp_token("erin", USER_PASSWORD).await;
        let change = |token: String, current: &str, new: &str| {
            let body = json!({"current_password": current, "new_password": new});
            let app = &app;
            async move { app.send(Method::POST, "/auth/password", Some(&token), Some(body)).await }
        };
        let res = change(here.clone(), "not my password at all", "a fresh long passphrase").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "invalid_credentials");
        let res = change(here.clone(), USER_PASSWORD, "short").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let res = change(here.clone(), USER_PASSWORD, "a fresh long passphrase").await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(app.get_as("/auth/me", &here).await.status(), StatusCode::OK, "this session goes on");
        assert_eq!(app.get_as("/auth/me", &elsewhere).await.status(), StatusCode::UNAUTHORIZED, "others end");
        let old = app
            .post_json("/auth/login", None, json!({"username": "erin", "password": USER_PASSWORD}))
            .await;
        assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
        let fresh = app.mcp_token("erin", "a fresh long passphrase").await;
        // An API key is not a sign-in: it cannot change the password.
        let key: Value = app
            .post_json("/auth/api-keys", Some(&fresh), json!({"name": "ci"}))
            .await
            .json()
            .await
            .unwrap();
        let key = key["secret"].as_str().unwrap().to_string();
        let res = change(key, "a fresh long passphrase", "another long passphrase").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res = app.send(Method::POST, "/auth/logout", Some(&fresh), None).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);

        let kinds = |kind: &'static str| {
            let app = &app;
            let admin = admin.clone();
            async move {
                let page: Value = app
                    .get_as(&format!("/admin/api/audit-log?kind={kind}&per_page=200"), &admin)
                    .await
                    .json()
                    .await
                    .unwrap();
                page["items"].as_array().unwrap().clone()
            }
        };
        let sign_ins = kinds("sign_in").await;
        assert!(sign_ins.iter().all(|a| a["action"] == "auth.sign_in"));
        assert!(sign_ins.iter().filter(|a| a["actor_username"] == "erin").count() >= 3, "{sign_ins:?}");
        assert!(sign_ins.iter().any(|a| a["actor_username"] == "admin" && a["after"]["audience"] == "admin"));
        let sign_outs = kinds("sign_out").await;
        assert!(sign_outs.iter().any(|a| a["actor_username"] == "erin"), "{sign_outs:?}");
        let changes = kinds("change").await;
        assert!(changes.iter().any(|a| a["action"] == "user.change_password" && a["actor_username"] == "erin"));
        assert!(changes.iter().all(|a| a["action"] != "auth.sign_in"));
        let res = app.get_as("/admin/api/audit-log?kind=logins", &admin).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
}
