//! Rate limits on MCP traffic, per user and per user × server (GCRA, through `governor`).
//!
//! Keys come from the authenticated identity, never from the MCP session, so re-initialising
//! does not reset a limit. Limits hold per replica; with several replicas each allows the
//! configured rate (see docs/CONFIG.md). Over the limit a request gets HTTP 429 with
//! `Retry-After` and a JSON-RPC error whose `data.retryAfterSeconds` a model can act on, and a
//! `rate_limited` security event is recorded at most once a minute per user and scope.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::cache::TtlMap;
use crate::config::RateLimitConfig;

/// How often the same user's limit hits become a new security event.
const REPORT_EVERY: Duration = Duration::from_secs(60);

pub struct McpLimits {
    per_user: Option<DefaultKeyedRateLimiter<i64>>,
    per_user_server: Option<DefaultKeyedRateLimiter<(i64, i64)>>,
    clock: DefaultClock,
    reported: TtlMap<(i64, &'static str), ()>,
}

/// A refused request: which limit, and how long until it would pass.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub scope: &'static str,
    pub retry_after: Duration,
    /// True the first time in `REPORT_EVERY` for this user and scope.
    pub report: bool,
}

fn quota(per_minute: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_minute)?;
    // A burst of ten seconds' worth of requests.
    let burst = NonZeroU32::new((per_minute / 6).max(1)).unwrap_or(NonZeroU32::MIN);
    Some(Quota::per_minute(rate).allow_burst(burst))
}

impl McpLimits {
    pub fn new(config: &RateLimitConfig) -> McpLimits {
        McpLimits {
            per_user: quota(config.user_per_minute).map(RateLimiter::dashmap),
            per_user_server: quota(config.user_server_per_minute).map(RateLimiter::dashmap),
            clock: DefaultClock::default(),
            reported: TtlMap::new(),
        }
    }

    /// Takes one request from the user's and the user × server budget.
    pub fn check(&self, user: i64, server: i64) -> Result<(), Limited> {
        if let Some(limiter) = &self.per_user
            && let Err(not_until) = limiter.check_key(&user)
        {
            return Err(self.limited(user, "user", not_until.wait_time_from(self.clock.now())));
        }
        if let Some(limiter) = &self.per_user_server
            && let Err(not_until) = limiter.check_key(&(user, server))
        {
            return Err(self.limited(
                user,
                "user_server",
                not_until.wait_time_from(self.clock.now()),
            ));
        }
        Ok(())
    }

    /// Takes one request from the user's budget only (aggregated requests that reach no single
    /// server: lists, `initialize`, `ping`).
    pub fn check_user(&self, user: i64) -> Result<(), Limited> {
        if let Some(limiter) = &self.per_user
            && let Err(not_until) = limiter.check_key(&user)
        {
            return Err(self.limited(user, "user", not_until.wait_time_from(self.clock.now())));
        }
        Ok(())
    }

    /// Takes one request from the user × server budget only (the user's was taken already).
    pub fn check_server(&self, user: i64, server: i64) -> Result<(), Limited> {
        if let Some(limiter) = &self.per_user_server
            && let Err(not_until) = limiter.check_key(&(user, server))
        {
            return Err(self.limited(
                user,
                "user_server",
                not_until.wait_time_from(self.clock.now()),
            ));
        }
        Ok(())
    }

    fn limited(&self, user: i64, scope: &'static str, retry_after: Duration) -> Limited {
        let report = self.reported.get(&(user, scope), REPORT_EVERY).is_none();
        if report {
            self.reported.put((user, scope), ());
        }
        Limited {
            scope,
            retry_after,
            report,
        }
    }

    /// Drops state of keys that are back to a full budget (called periodically).
    pub fn shrink(&self) {
        if let Some(l) = &self.per_user {
            l.retain_recent();
        }
        if let Some(l) = &self.per_user_server {
            l.retain_recent();
        }
    }
}

/// Requests per client IP on the unauthenticated OAuth endpoints (registration, token,
/// revocation): GCRA allowing the whole minute's budget as a burst (clients register and
/// exchange in bursts; the limit is against floods).
pub struct IpLimiter {
    limiter: DefaultKeyedRateLimiter<std::net::IpAddr>,
    clock: DefaultClock,
}

impl IpLimiter {
    pub fn new(per_minute: u32) -> IpLimiter {
        let rate = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(rate).allow_burst(rate);
        IpLimiter {
            limiter: RateLimiter::dashmap(quota),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(retry_after)` when the IP is over its budget.
    pub fn check(&self, ip: std::net::IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    pub fn shrink(&self) {
        self.limiter.retain_recent();
    }
}
