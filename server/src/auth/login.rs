//! Password login with account lockout and per-IP throttling.
//!
//! The answers never tell an attacker whether a username exists or is an admin:
//! * unknown user, wrong password, disabled account and (on the admin login) a non-admin all
//!   get the same 401 `invalid_credentials`, after the same argon2 work (a dummy hash is
//!   verified when there is no user);
//! * lockout state is kept per lowercased username whether or not the user exists, so a
//!   locked unknown name looks exactly like a locked real one (429 `login_locked`).
//!
//! Failed logins also count per client IP (`ClientIp`: only trusted proxies may name another
//! address); past the budget the IP gets 429 `too_many_attempts` until its window ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use shared::auth::{LoginRequest, Role, TokenResponse};

use crate::auth::identity::RequestMeta;
use crate::auth::tokens::{self, Audience};
use crate::db;
use crate::error::ApiError;
use crate::events::{EventType, Severity};
use crate::password;
use crate::state::AppState;

/// Most IPs tracked; beyond it, the oldest windows are dropped first.
const MAX_TRACKED_IPS: usize = 100_000;

/// Failed logins per client IP in fixed windows.
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    ips: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            ips: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(retry_after)` when the IP has used up its failures for the current window.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let ips = self.ips.lock().ok()?;
        let (count, started) = ips.get(&ip)?;
        let elapsed = started.elapsed();
        (elapsed < self.window && *count >= self.max_failures).then(|| self.window - elapsed)
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let Ok(mut ips) = self.ips.lock() else {
            return;
        };
        if ips.len() >= MAX_TRACKED_IPS {
            let window = self.window;
            ips.retain(|_, (_, started)| started.elapsed() < window);
            if ips.len() >= MAX_TRACKED_IPS {
                ips.clear();
            }
        }
        let entry = ips.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

/// An argon2id hash of a random password, verified when the username is unknown so that both
/// cases take the same time.
async fn dummy_hash() -> Result<&'static str, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let random: [u8; 16] = crate::keys::random_bytes()?;
    let hash = password::hash(crate::auth::identity::hex(&random)).await?;
    Ok(DUMMY.get_or_init(|| hash))
}

pub async fn login(
    state: &AppState,
    meta: &RequestMeta,
    req: &LoginRequest,
    audience: Audience,
) -> Result<TokenResponse, ApiError> {
    let user = verify_credentials(state, meta, req, audience).await?;
    tokens::start_session(state, user.id, audience).await
}

/// Checks a username and password with the lockout and throttling rules; the user on success.
/// (Also the sign-in step of the OAuth consent page.)
pub async fn verify_credentials(
    state: &AppState,
    meta: &RequestMeta,
    req: &LoginRequest,
    audience: Audience,
) -> Result<db::users::UserRow, ApiError> {
    let ip = meta.ip.0;
    if let Some(retry) = state.login_throttle.blocked(ip) {
        state.events.record(
            EventType::RateLimited,
            Severity::Medium,
            &meta.ctx(),
            None,
            None,
            json!({ "reason": "too many failed logins from this address" }),
        );
        return Err(ApiError::TooManyRequests {
            code: "too_many_attempts",
            message: "too many failed sign-in attempts from this address; try again later".into(),
            retry_after: retry.as_secs().max(1),
        });
    }
    let username_key = req.username.trim().to_lowercase();
    let now = db::now();
    if let Some(row) = db::login_failures::get(&state.db.pool, &username_key).await?
        && let Some(until) = row.locked_until.filter(|until| *until > now)
    {
        return Err(locked(until - now));
    }

    let user = if password::validate_username(&username_key).is_ok() {
        db::users::find_by_username(&state.db.pool, &username_key).await?
    } else {
        None
    };
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => dummy_hash().await?.to_string(),
    };
    let password_ok = req.password.len() <= password::MAX_PASSWORD_LENGTH * 4
        && password::verify(req.password.clone(), hash).await?;
    let accepted = user.filter(|u| {
        password_ok
            && u.enabled != 0
            && (audience == Audience::Mcp || u.role == Role::Admin.as_str())
    });
    let Some(user) = accepted else {
        return Err(failed(state, meta, &username_key, now).await?);
    };
    db::login_failures::clear(&state.db.pool, &username_key).await?;
    Ok(user)
}

fn locked(retry_after: i64) -> ApiError {
    ApiError::TooManyRequests {
        code: "login_locked",
        message: "too many failed sign-in attempts; try again later".into(),
        retry_after: u64::try_from(retry_after).unwrap_or(1).max(1),
    }
}

/// Counts the failure for the username and the IP, locks the username when it has used up
/// its attempts, and returns the error to answer with.
async fn failed(
    state: &AppState,
    meta: &RequestMeta,
    username_key: &str,
    now: i64,
) -> Result<ApiError, ApiError> {
    let auth = &state.config.auth;
    state.login_throttle.record_failure(meta.ip.0);
    let failures = db::login_failures::increment(&state.db.pool, username_key, now).await?;
    let username: String = username_key.chars().take(64).collect();
    state.events.record(
        EventType::AuthFailed,
        Severity::Low,
        &meta.ctx(),
        None,
        Some(&username),
        json!({ "failures": failures }),
    );
    let max = i64::from(auth.login_max_failures);
    if failures >= max {
        // 1×, 2×, 4×, … the base lockout, capped.
        let doublings = u32::try_from(failures - max).unwrap_or(u32::MAX).min(20);
        let secs = auth
            .login_lockout
            .as_secs()
            .saturating_mul(1 << doublings)
            .min(auth.login_lockout_max.as_secs());
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        db::login_failures::lock(&state.db.pool, username_key, now + secs).await?;
        state.events.record(
            EventType::AccountLocked,
            Severity::Medium,
            &meta.ctx(),
            None,
            Some(&username),
            json!({ "failures": failures, "locked_for_seconds": secs }),
        );
    }
    Ok(ApiError::InvalidCredentials)
}
