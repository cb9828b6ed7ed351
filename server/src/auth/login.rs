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
//!
//! Both budgets are reserved before the argon2 work, not counted after it: an attempt takes a
//! place in its IP's window and in its username's remaining attempts up front, and gives it
//! back only if it succeeds. So a burst of concurrent guesses verifies at most as many
//! passwords as the budgets allow, however many arrive at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use shared::auth::{LoginRequest, TokenResponse};

use crate::auth::identity::RequestMeta;
use crate::auth::tokens::{self, Audience};
use crate::db;
use crate::error::ApiError;
use crate::events::{EventType, Severity};
use crate::password;
use crate::state::AppState;

/// Most IPs tracked; beyond it, the oldest windows are dropped first.
const MAX_TRACKED_IPS: usize = 100_000;

/// Failed logins per client IP in fixed windows, and attempts in progress per username.
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    ips: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Attempts being verified, per lowercased username (entries leave at zero, so the map
    /// holds at most the logins in progress).
    pending: Mutex<HashMap<String, u32>>,
}

/// An attempt's place in its address's failure budget: given back on drop (the password was
/// right, or none was tried), kept once `keep` counts it as a failure.
struct IpPlace<'a> {
    throttle: &'a LoginThrottle,
    ip: IpAddr,
    keep: bool,
}

impl IpPlace<'_> {
    fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for IpPlace<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.throttle.refund(self.ip);
        }
    }
}

/// An attempt's place in its username's budget while its password is verified.
struct Pending<'a> {
    throttle: &'a LoginThrottle,
    username_key: String,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.throttle.pending.lock()
            && let Some(n) = pending.get_mut(&self.username_key)
        {
            *n -= 1;
            if *n == 0 {
                pending.remove(&self.username_key);
            }
        }
    }
}

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            ips: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a place in the IP's failure budget for the current window, given back when the
    /// returned place is dropped unless `IpPlace::keep` made it a failure;
    /// `Err(retry_after)` when the budget is used up.
    fn reserve(&self, ip: IpAddr) -> Result<IpPlace<'_>, Duration> {
        let Ok(mut ips) = self.ips.lock() else {
            return Err(self.window);
        };
        if let Some((count, started)) = ips.get(&ip) {
            let elapsed = started.elapsed();
            if elapsed < self.window && *count >= self.max_failures {
                return Err(self.window - elapsed);
            }
        }
        Self::count(&mut ips, ip, self.window);
        Ok(IpPlace {
            throttle: self,
            ip,
            keep: false,
        })
    }

    /// Gives back a reserved place.
    fn refund(&self, ip: IpAddr) {
        if let Ok(mut ips) = self.ips.lock()
            && let Some((count, _)) = ips.get_mut(&ip)
        {
            *count = count.saturating_sub(1);
        }
    }

    /// Takes one of the username's remaining attempts (`budget`, from its stored failures)
    /// while its password is verified; `None` when attempts in progress already use them all.
    fn begin(&self, username_key: &str, budget: u32) -> Option<Pending<'_>> {
        let mut pending = self.pending.lock().ok()?;
        let n = pending.entry(username_key.to_string()).or_insert(0);
        if *n >= budget {
            if *n == 0 {
                pending.remove(username_key);
            }
            return None;
        }
        *n += 1;
        Some(Pending {
            throttle: self,
            username_key: username_key.to_string(),
        })
    }

    fn count(ips: &mut HashMap<IpAddr, (u32, Instant)>, ip: IpAddr, window: Duration) {
        if ips.len() >= MAX_TRACKED_IPS {
            ips.retain(|_, (_, started)| started.elapsed() < window);
            if ips.len() >= MAX_TRACKED_IPS {
                ips.clear();
            }
        }
        let entry = ips.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= window {
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
    let tokens = tokens::start_session(state, user.id, audience).await?;
    crate::accounts::record_auth(
        &state.db.pool,
        user.id,
        &user.username,
        &meta.ip.0.to_string(),
        "auth.sign_in",
        json!({ "audience": audience.as_str() }),
    )
    .await?;
    Ok(tokens)
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
    let throttle = &state.login_throttle;
    let mut place = match throttle.reserve(ip) {
        Ok(place) => place,
        Err(retry) => return Err(address_exhausted(state, meta, retry)),
    };
    // Usernames are at most 64 characters: a longer one matches nobody, and is not stored
    // whole as a lockout key. Nor is a control character, which no username has (and a NUL
    // Postgres text cannot hold).
    let username_key: String = req
        .username
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    let now = db::now();
    let stored = db::login_failures::get(&state.db.pool, &username_key).await?;
    if let Some(until) = stored
        .as_ref()
        .and_then(|row| row.locked_until)
        .filter(|until| *until > now)
    {
        // No password was tried: the address gets its place back (on drop).
        return Err(locked(until - now));
    }
    // The attempts left before the lockout (one at a time once a lockout has passed).
    let max = i64::from(state.config.auth.login_max_failures);
    let failures = stored.map_or(0, |row| row.failures);
    let budget = u32::try_from(max - failures).unwrap_or(1).max(1);
    let Some(_pending) = throttle.begin(&username_key, budget) else {
        return Err(ApiError::TooManyRequests {
            code: "login_busy",
            message: "sign-in attempts for this account are being checked; try again in a moment"
                .into(),
            retry_after: 1,
        });
    };
    // Read again inside the reservation: an attempt that finished meanwhile may have locked
    // the name (it records its failure before it gives its place back).
    if let Some(until) = db::login_failures::get(&state.db.pool, &username_key)
        .await?
        .and_then(|row| row.locked_until)
        .filter(|until| *until > now)
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
    let accepted = match user {
        Some(u) if password_ok && audience.admits_user(&state.db.pool, &u).await? => Some(u),
        _ => None,
    };
    let Some(user) = accepted else {
        place.keep();
        return Err(failed(state, meta, &username_key, now).await?);
    };
    db::login_failures::clear(&state.db.pool, &username_key).await?;
    Ok(user)
}

/// The address has used its failure budget: a (folded) `rate_limited` event and 429.
fn address_exhausted(state: &AppState, meta: &RequestMeta, retry: Duration) -> ApiError {
    state.events.record(
        EventType::RateLimited,
        Severity::Medium,
        &meta.ctx(),
        None,
        None,
        json!({ "reason": "too many failed logins from this address" }),
    );
    ApiError::TooManyRequests {
        code: "too_many_attempts",
        message: "too many failed sign-in attempts from this address; try again later".into(),
        retry_after: retry.as_secs().max(1),
    }
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

/// Changes a signed-in user's own password: the current one is checked like a sign-in (wrong
/// ones count towards the lockout), the new one is written only over the one just verified,
/// and every other session of the user ends (this one goes on).
pub async fn change_password(
    state: &AppState,
    meta: &RequestMeta,
    principal: &crate::auth::identity::Principal,
    req: &shared::users::ChangePassword,
) -> Result<(), ApiError> {
    let crate::auth::identity::AuthMethod::Jwt { session_id } = &principal.method else {
        return Err(ApiError::Unauthorized);
    };
    let creds = LoginRequest {
        username: principal.username.clone(),
        password: req.current_password.clone(),
        session: Default::default(),
    };
    let verified = verify_credentials(state, meta, &creds, Audience::Mcp).await?;
    let actor = crate::accounts::Actor::of(principal, meta);
    crate::accounts::change_own_password(state, &actor, &verified, session_id, &req.new_password)
        .await
}
