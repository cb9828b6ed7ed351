//! Password hashing (argon2id) and the username/password rules.
//!
//! Parameters: argon2id, m = 19 MiB (19456 KiB), t = 2, p = 1 — the OWASP recommendation.
//! Hashes are PHC strings, so stronger parameters can be introduced later and old hashes still
//! verify. Hashing takes tens of milliseconds of CPU, so it runs on the blocking thread pool,
//! never on the async runtime.

use anyhow::anyhow;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

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
fn hash_slots() -> &'static Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores.max(2)))
    })
}

/// Runs `work` on the blocking pool once one of `slots` is free. The slot moves into the
/// blocking task and is given back when `work` ends, not when the caller stops waiting: a
/// request that times out or whose client hangs up cannot leave its computation running
/// outside the bound (a login flood cut off at the request timeout would otherwise start a
/// new argon2 for every request while the abandoned ones still run).
async fn bounded<T: Send + 'static>(
    slots: &Arc<Semaphore>,
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let slot = slots.clone().acquire_owned().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await?)
}

/// Hashes on the blocking pool.
pub async fn hash(password: String) -> anyhow::Result<String> {
    bounded(hash_slots(), move || {
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
    bounded(hash_slots(), move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
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

    /// A caller that stops waiting (request timeout, client gone) does not give its slot back
    /// while its computation still runs: the next caller waits for the computation to end.
    #[tokio::test]
    async fn an_abandoned_computation_keeps_its_slot_until_it_ends() {
        let slots = Arc::new(Semaphore::new(1));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn({
            let slots = slots.clone();
            async move {
                bounded(&slots, move || {
                    let _ = started_tx.send(());
                    let _ = wait.recv();
                })
                .await
            }
        });
        started.await.unwrap();
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(
            slots.available_permits(),
            0,
            "the running computation holds it"
        );
        let second = tokio::spawn({
            let slots = slots.clone();
            async move { bounded(&slots, || 2).await.unwrap() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "waits for the abandoned computation");
        release.send(()).unwrap();
        assert_eq!(second.await.unwrap(), 2);
        assert_eq!(slots.available_permits(), 1);
    }
}
