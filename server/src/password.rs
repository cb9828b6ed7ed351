//! Password hashing (argon2id) and the username/password rules.
//!
//! Parameters: argon2id, m = 19 MiB (19456 KiB), t = 2, p = 1 — the OWASP recommendation.
//! Hashes are PHC strings, so stronger parameters can be introduced later and old hashes still
//! verify. Hashing takes tens of milliseconds of CPU, so it runs on the blocking thread pool,
//! never on the async runtime.

use anyhow::anyhow;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MAX_PASSWORD_LENGTH: usize = 256;

/// Common passwords refused regardless of length rules (a small built-in list; a password
/// that passes the length rule and appears here is still refused).
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "qwertyuiopas",
    "qwerty123456",
    "qwertyuiop123",
    "111111111111",
    "000000000000",
    "123123123123",
    "abc123abc123",
    "iloveyou1234",
    "letmein12345",
    "welcome12345",
    "administrator",
    "administrator1",
    "changeme1234",
    "changemechangeme",
    "adminadminadmin",
    "admin1234567",
    "admin123456789",
    "trustno1trustno1",
    "superman1234",
    "football1234",
    "baseball1234",
    "monkey123456",
    "dragon123456",
    "sunshine1234",
    "princess1234",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "aaaaaaaaaaaa",
    "correcthorsebatterystaple",
];

fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's documented bounds.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Usernames: 3–64 characters from `A–Z a–z 0–9 . _ -`, starting with a letter or digit.
pub fn validate_username(username: &str) -> Result<(), String> {
    let len = username.chars().count();
    if !(3..=64).contains(&len) {
        return Err("username must be 3 to 64 characters".into());
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("username may contain only letters, digits, '.', '_' and '-'".into());
    }
    if !username.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("username must start with a letter or digit".into());
    }
    Ok(())
}

/// The password policy: minimum length (configurable), at most 256 characters, not the
/// username, not a well-known password.
pub fn validate_password(password: &str, username: &str, min_length: usize) -> Result<(), String> {
    let len = password.chars().count();
    if len < min_length {
        return Err(format!("password must be at least {min_length} characters"));
    }
    if len > MAX_PASSWORD_LENGTH {
        return Err(format!(
            "password must be at most {MAX_PASSWORD_LENGTH} characters"
        ));
    }
    let lower = password.to_lowercase();
    if lower.contains(&username.to_lowercase()) {
        return Err("password must not contain the username".into());
    }
    if COMMON_PASSWORDS.contains(&lower.as_str()) {
        return Err("password is too common".into());
    }
    Ok(())
}

/// At most this many argon2 computations run at once: each takes 19 MiB and tens of
/// milliseconds of a core, so unbounded concurrent logins would be a memory and CPU DoS.
fn hash_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.max(2))
    })
}

/// Hashes on the blocking pool.
pub async fn hash(password: String) -> anyhow::Result<String> {
    let _slot = hash_slots().acquire().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&crate::keys::random_bytes::<16>()?)
            .map_err(|e| anyhow!("encoding salt: {e}"))?;
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow!("hashing password: {e}"))
    })
    .await?
}

/// Verifies on the blocking pool; a malformed stored hash verifies nothing.
pub async fn verify(password: String, hash: String) -> anyhow::Result<bool> {
    let _slot = hash_slots().acquire().await?;
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in [
            "bob",
            "alice.smith",
            "a_b-c",
            "x".repeat(64).as_str(),
            "007",
        ] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "",
            "-bob",
            ".bob",
            "bob smith",
            "bøb",
            &"x".repeat(65),
            "a/b",
        ] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(validate_password("a long unusual phrase", "bob", 12).is_ok());
        assert!(validate_password("short", "bob", 12).is_err());
        assert!(validate_password("xxbobxxbobxxbob", "bob", 12).is_err());
        assert!(validate_password("Password1234", "bob", 12).is_err());
        assert!(validate_password(&"x".repeat(257), "bob", 12).is_err());
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let a = hash("a long unusual phrase".into()).await.unwrap();
        let b = hash("a long unusual phrase".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(
            verify("a long unusual phrase".into(), a.clone())
                .await
                .unwrap()
        );
        assert!(!verify("another phrase".into(), a).await.unwrap());
        assert!(!verify("x".into(), "not a hash".into()).await.unwrap());
    }
}
