//! Key material survives restarts; the JWKS publishes the verification key.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestEnv, db_test};

db_test! {
    async fn a_token_signed_before_a_restart_verifies_after_it(env: TestEnv) {
        let app = env.spawn().await;
        let issuer = app.state.config.public_url.clone();
        let claims = json!({
            "iss": issuer, "aud": "authmcp:test", "sub": "42",
            "exp": authmcp_gateway::db::now() + 600,
        });
        let token = app.state.keys.sign(&claims).unwrap();
        let jwks_before: Value = app.get("/.well-known/jwks.json").await.json().await.unwrap();
        app.stop().await;

        let app = env.spawn().await;
        let back: Value = app
            .state
            .keys
            .verify(&token, &issuer, &["authmcp:test"])
            .await
            .expect("token from before the restart verifies");
        assert_eq!(back["sub"], "42");
        let res = app.get("/.well-known/jwks.json").await;
        assert_eq!(res.status(), StatusCode::OK);
        let jwks: Value = res.json().await.unwrap();
        assert_eq!(jwks, jwks_before, "same keys after restart");
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], app.state.keys.current_kid());
        assert!(key.get("d").is_none(), "no private part is published");
    }
}

db_test! {
    async fn the_signing_key_is_stored_encrypted_and_the_key_file_is_private(env: TestEnv) {
        let app = env.spawn().await;
        let rows = authmcp_gateway::db::keys::list_usable(&app.state.db.pool, 0).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].private_key[0], 1, "sealed format version");
        assert_eq!(rows[0].private_key.len(), 1 + 12 + 32 + 16, "nonce + seed + tag");
        let key_file = env.data_dir.path().join("keys/encryption.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let kid = app.state.keys.current_kid().to_string();
        app.stop().await;

        // A key an earlier version generated into DATA_DIR is still the key (it is never
        // replaced by a new one, which would lose every sealed secret), until it is moved.
        let legacy = env.data_dir.path().join("encryption.key");
        std::fs::rename(&key_file, &legacy).unwrap();
        let app = env.spawn().await;
        assert_eq!(app.state.keys.current_kid(), kid, "the stored signing key opened");
        assert!(!key_file.exists(), "no new key was made");
        app.stop().await;
        std::fs::rename(&legacy, &key_file).unwrap();

        // A key lost from KEY_DIR is not replaced by a new one: start-up says so and writes
        // nothing (the database holds a value sealed with its key).
        let saved = std::fs::read(&key_file).unwrap();
        std::fs::remove_file(&key_file).unwrap();
        let err = format!("{:#}", env.try_spawn().await.err().expect("start-up fails"));
        assert!(err.contains("holds no encryption key"), "{err}");
        assert!(!key_file.exists(), "no new key was written");
        // Another key (here with JWT_SECRET, so no signing key needs opening) is refused too,
        // before anything is sealed with it.
        let other = env
            .clone_with_var("ENCRYPTION_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .with_var("JWT_SECRET", "0123456789abcdef0123456789abcdef-test");
        let err = format!("{:#}", other.try_spawn().await.err().expect("start-up fails"));
        assert!(err.contains("not the one this database was sealed with"), "{err}");
        std::fs::write(&key_file, saved).unwrap();
        env.spawn().await.stop().await;
    }
}

db_test! {
    async fn jwt_secret_derives_a_stable_key(env: TestEnv) {
        let env = env.with_var("JWT_SECRET", "0123456789abcdef0123456789abcdef-test");
        let a = env.spawn().await;
        let kid = a.state.keys.current_kid().to_string();
        a.stop().await;
        let b = env.spawn().await;
        assert_eq!(b.state.keys.current_kid(), kid);
        let other = TestEnv::new(env.backend)
            .await
            .with_var("JWT_SECRET", "another-secret-that-is-long-enough-000");
        let c = other.spawn().await;
        assert_ne!(c.state.keys.current_kid(), kid);
    }
}
