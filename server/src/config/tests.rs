use std::collections::BTreeMap;
use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_sources(&env(pairs), None)
}

fn err(pairs: &[(&str, &str)]) -> String {
    load(pairs).err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn defaults_match_the_documented_ones() {
    let c = load(&[]).unwrap();
    assert_eq!(c.port, 8000);
    assert_eq!(c.host.to_string(), "0.0.0.0");
    assert_eq!(c.public_url, "http://localhost:8000");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.key_dir, PathBuf::from("./keys"), "apart from the data");
    assert_eq!(c.web_dir, None, "the UI built into the binary");
    assert_eq!(
        c.database,
        DatabaseConfig::Sqlite {
            path: PathBuf::from("./data/authmcp.db")
        }
    );
    assert_eq!(c.password_min_length, 12);
    assert_eq!(c.log_format, LogFormat::Human);
    assert!(c.allowed_origins.is_empty());
    assert_eq!(c.auth.access_token_ttl.as_secs(), 900);
    assert_eq!(c.auth.refresh_token_ttl.as_secs(), 30 * 86_400);
    assert!(!c.auth.allow_registration, "registration is off by default");
    assert_eq!(c.auth.login_max_failures, 5);
}

#[test]
fn errors_name_the_variable_and_the_file_key() {
    for (pairs, var) in [
        (vec![("GATEWAY_PORT", "abc")], "GATEWAY_PORT"),
        (vec![("GATEWAY_PORT", "0")], "GATEWAY_PORT"),
        (vec![("GATEWAY_HOST", "localhost:1")], "GATEWAY_HOST"),
        (vec![("PUBLIC_URL", "ftp://x")], "PUBLIC_URL"),
        (vec![("PUBLIC_URL", "https://x/?a=1")], "PUBLIC_URL"),
        (vec![("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
        (vec![("DATABASE_URL", "sqlite::memory:")], "DATABASE_URL"),
        (vec![("JWT_SECRET", "short")], "JWT_SECRET"),
        (vec![("ENCRYPTION_KEY", "AAAA")], "ENCRYPTION_KEY"),
        (vec![("ADMIN_USERNAME", "root")], "ADMIN_PASSWORD"),
        (
            vec![("ALLOWED_ORIGINS", "https://a.example/path")],
            "ALLOWED_ORIGINS",
        ),
        (vec![("TRUSTED_PROXIES", "10.0.0.0/33")], "TRUSTED_PROXIES"),
        (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
        (vec![("LOG_LEVEL", "info,=[")], "LOG_LEVEL"),
        (vec![("REQUEST_TIMEOUT_SECS", "0")], "REQUEST_TIMEOUT_SECS"),
        (vec![("ALLOW_REGISTRATION", "maybe")], "ALLOW_REGISTRATION"),
        (
            vec![("ACCESS_TOKEN_TTL_SECS", "5")],
            "ACCESS_TOKEN_TTL_SECS",
        ),
        (
            vec![
                ("LOGIN_LOCKOUT_SECS", "600"),
                ("LOGIN_LOCKOUT_MAX_SECS", "60"),
            ],
            "LOGIN_LOCKOUT_MAX_SECS",
        ),
    ] {
        let message = err(&pairs);
        assert!(
            message.contains(var) && message.contains(&var.to_ascii_lowercase()),
            "{pairs:?}: {message}"
        );
    }
}

#[test]
fn parses_lists_urls_and_keys() {
    let c = load(&[
        ("GATEWAY_PORT", "9001"),
        ("PUBLIC_URL", "https://mcp.example.com/"),
        (
            "ALLOWED_ORIGINS",
            "https://a.example, http://localhost:3000",
        ),
        ("TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
        ("DATABASE_URL", "postgres://u:pw@127.0.0.1:5432/db"),
        (
            "ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
        ("LOG_FORMAT", "JSON"),
    ])
    .unwrap();
    assert_eq!(c.public_url, "https://mcp.example.com");
    assert_eq!(
        c.allowed_origins,
        vec!["https://a.example", "http://localhost:3000"]
    );
    assert!(c.trusted_proxies[0].contains("10.1.2.3".parse().unwrap()));
    assert!(!c.trusted_proxies[0].contains("11.1.2.3".parse().unwrap()));
    assert!(c.trusted_proxies[1].contains("::1".parse().unwrap()));
    assert!(
        c.trusted_proxies[0].contains("::ffff:10.9.9.9".parse().unwrap()),
        "IPv4-mapped IPv6 peers match IPv4 networks"
    );
    assert_eq!(c.encryption_key.unwrap().expose()[31], 31);
    assert_eq!(c.log_format, LogFormat::Json);
    let debug = format!("{:?}", c.database);
    assert!(!debug.contains("pw"), "password redacted: {debug}");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let c = load(&[
        ("JWT_SECRET", "a-very-long-jwt-secret-value-0123456789"),
        ("ADMIN_USERNAME", "root"),
        ("ADMIN_PASSWORD", "hunter2hunter2hunter2"),
    ])
    .unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("a-very-long-jwt-secret"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn file_values_apply_and_env_wins() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "gateway_port = 9100\nlog_format = \"json\"\nallowed_origins = [\"https://a.example\", \"https://b.example\"]"
    )
    .unwrap();
    let c = Config::from_sources(&env(&[("GATEWAY_PORT", "9200")]), Some(file.path())).unwrap();
    assert_eq!(c.port, 9200, "env wins over the file");
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.allowed_origins.len(), 2);
}

#[test]
fn unknown_file_keys_are_rejected() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "gateway_prot = 9100").unwrap();
    let message = Config::from_sources(&env(&[]), Some(file.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("gateway_prot"), "{message}");
}

#[test]
fn secrets_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt");
    std::fs::write(&secret, "a-jwt-secret-read-from-a-file-0123456789\n").unwrap();
    let password = dir.path().join("admin");
    std::fs::write(&password, "a pass phrase from a file\r\n").unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    let c = load(&[
        ("JWT_SECRET_FILE", &path(&secret)),
        ("ADMIN_USERNAME", "admin"),
        ("ADMIN_PASSWORD_FILE", &path(&password)),
    ])
    .unwrap();
    assert_eq!(
        c.jwt_secret.as_ref().map(|s| s.expose().as_str()),
        Some("a-jwt-secret-read-from-a-file-0123456789"),
        "one trailing newline dropped"
    );
    assert_eq!(
        c.admin_password.as_ref().map(|s| s.expose().as_str()),
        Some("a pass phrase from a file")
    );
    let both = err(&[
        ("JWT_SECRET", "a-jwt-secret-from-the-environment-0123456"),
        ("JWT_SECRET_FILE", &path(&secret)),
    ]);
    assert!(
        both.contains("JWT_SECRET_FILE") && both.contains("not both"),
        "{both}"
    );
    let missing = err(&[("ENCRYPTION_KEY_FILE", "/nonexistent/key")]);
    assert!(
        missing.contains("ENCRYPTION_KEY_FILE") && missing.contains("/nonexistent/key"),
        "{missing}"
    );
    // An empty file is a failed mount: refused, not read as "unset".
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "  \n").unwrap();
    let e = err(&[("OAUTH_DCR_TOKEN_FILE", &path(&empty))]);
    assert!(
        e.contains("OAUTH_DCR_TOKEN_FILE") && e.contains("empty"),
        "{e}"
    );
    // A file's content is validated like the variable's.
    let short = dir.path().join("short");
    std::fs::write(&short, "too-short").unwrap();
    assert!(err(&[("JWT_SECRET_FILE", &path(&short))]).contains("JWT_SECRET"));
}

#[test]
fn require_auth_cannot_turn_authentication_off() {
    for off in ["false", "0", "no", "off"] {
        let e = err(&[("REQUIRE_AUTH", off)]);
        assert!(
            e.contains("REQUIRE_AUTH") && e.contains("always on"),
            "{off}: {e}"
        );
    }
    assert!(load(&[("REQUIRE_AUTH", "true")]).is_ok());
}

#[test]
fn database_passwords_are_redacted_wherever_they_are() {
    assert_eq!(
        redact_url_password("postgres://u:pw@h/db"),
        "postgres://u:***@h/db"
    );
    let q = redact_url_password("postgres://u@h/db?sslmode=require&password=pw2");
    assert!(!q.contains("pw2") && q.contains("sslmode=require"), "{q}");
}
