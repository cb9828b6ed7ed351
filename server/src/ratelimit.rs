//! Rate limits on MCP traffic — per user, per user × server and per user × tool — and per client
//! IP on the unauthenticated OAuth endpoints.
//!
//! MCP limits are GCRA (a token bucket without timers: one "theoretical arrival time" per key)
//! with a burst of ten seconds' worth. Defaults come from the configuration and can be changed
//! live through the admin API, with overrides for one user (their overall budget), one server
//! (each user's budget on it) or one tool (each user's budget for it). Keys come from the
//! authenticated identity, never from the MCP session, so re-initialising does not reset a
//! limit. On Postgres the request budgets are shared by every replica (`SharedBudgets`);
//! the byte budget and the concurrency cap stay per replica (docs/CONFIG.md). Over a limit a request gets HTTP 429 with
//! `Retry-After` and a JSON-RPC error whose `data.retryAfterSeconds` a model can act on, and a
//! `rate_limited` security event (repeats are folded into one event with a count).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::config::RateLimitConfig;

/// The limits in force: defaults (0 = off) and overrides, all in requests per minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitTable {
    pub user_per_minute: u32,
    pub user_server_per_minute: u32,
    pub user_tool_per_minute: u32,
    #[serde(skip)]
    pub users: HashMap<i64, u32>,
    #[serde(skip)]
    pub servers: HashMap<i64, u32>,
    #[serde(skip)]
    pub tools: HashMap<(i64, String), u32>,
}

impl LimitTable {
    pub fn from_config(config: &RateLimitConfig) -> LimitTable {
        LimitTable {
            user_per_minute: config.user_per_minute,
            user_server_per_minute: config.user_server_per_minute,
            user_tool_per_minute: config.user_tool_per_minute,
            ..LimitTable::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    User(i64),
    Server(i64, i64),
    /// (user, server, hash of the tool name)
    Tool(i64, i64, u64),
    /// A user's request-body bytes.
    Bytes(i64),
}

pub struct McpLimits {
    table: RwLock<Arc<LimitTable>>,
    /// Theoretical arrival time per key, in nanoseconds since `origin` (updated by CAS under
    /// the shard's read lock, so concurrent requests of one user do not serialise).
    tat: DashMap<Key, AtomicU64>,
    origin: Instant,
    /// Request-body bytes per user per minute (0 = off).
    bytes_per_minute: u64,
    /// On Postgres: the budgets are shared by every replica (`SharedBudgets`).
    shared: Option<SharedBudgets>,
}

/// Replicas' shares of the request budgets, leased from one GCRA state per key in Postgres
/// (`rate_budgets`, on the database's clock): a replica leases up to half a second's worth of
/// a key's budget at once (one request's worth for small budgets), spends it locally without a
/// round trip, and lets an unspent lease lapse after `LEASE_HOLDS`. What all replicas admit
/// together never exceeds what one GCRA over the shared state would admit; the price is a
/// database round trip per lease (per request for budgets under 120 a minute) and, under
/// contention, up to a lease per replica left unspent. A refusal is remembered until the
/// budget would take the request (at most a second), so a client over its budget costs no
/// round trips. Without the database (an error), a replica falls back to its own budget
/// until it answers again.
struct SharedBudgets {
    pool: sqlx::AnyPool,
    leases: DashMap<Key, Lease>,
}

struct Lease {
    remaining: u64,
    until: Instant,
    per_minute: u64,
    /// The shared budget refused: requests are refused here until `until` without asking.
    refused: bool,
}

/// An unspent lease lapses after this long (so a replica never spends budget leased long ago).
const LEASE_HOLDS: Duration = Duration::from_secs(1);

/// A refused request: which limit, and how long until it would pass.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub scope: &'static str,
    pub retry_after: Duration,
}

fn tool_hash(tool: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tool.hash(&mut h);
    h.finish()
}

impl McpLimits {
    pub fn new(config: &RateLimitConfig, bytes_per_minute: u64) -> McpLimits {
        McpLimits {
            table: RwLock::new(Arc::new(LimitTable::from_config(config))),
            tat: DashMap::new(),
            origin: Instant::now(),
            bytes_per_minute,
            shared: None,
        }
    }

    /// Shares the per-user, per-server and per-tool budgets with every replica on this
    /// Postgres database. (The byte budget and the concurrency cap protect one replica's
    /// memory and stay per replica.)
    pub fn share(mut self, pool: sqlx::AnyPool) -> McpLimits {
        self.shared = Some(SharedBudgets {
            pool,
            leases: DashMap::new(),
        });
        self
    }

    pub fn table(&self) -> Arc<LimitTable> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts new limits in force at once (budgets already spent stay spent).
    pub fn set(&self, table: LimitTable) {
        match self.table.write() {
            Ok(mut t) => *t = Arc::new(table),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(table),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// One request from `key`'s budget of `per_minute` (GCRA, burst of ten seconds' worth),
    /// shared by every replica on Postgres.
    async fn take(&self, key: Key, per_minute: u32, scope: &'static str) -> Result<(), Limited> {
        let per_minute = u64::from(per_minute);
        let Some(shared) = &self.shared else {
            return self.take_n(key, per_minute, 1, scope);
        };
        if per_minute == 0 {
            return Ok(());
        }
        if let Some(mut lease) = shared.leases.get_mut(&key)
            && lease.per_minute == per_minute
        {
            let now = Instant::now();
            if lease.until > now {
                if lease.refused {
                    // Refused by the shared budget a moment ago: no round trip until it refills.
                    return Err(Limited {
                        scope,
                        retry_after: lease.until - now,
                    });
                }
                if lease.remaining > 0 {
                    lease.remaining -= 1;
                    return Ok(());
                }
            }
        }
        let interval = i64::try_from((60_000_000 / per_minute).max(1)).unwrap_or(i64::MAX);
        let tolerance =
            interval.saturating_mul(i64::try_from((per_minute / 6).max(1)).unwrap_or(1));
        let name = match key {
            Key::User(u) => format!("u:{u}"),
            Key::Server(u, s) => format!("s:{u}:{s}"),
            Key::Tool(u, s, t) => format!("t:{u}:{s}:{t:x}"),
            Key::Bytes(u) => format!("b:{u}"),
        };
        let mut size = (per_minute / 120).clamp(1, 1000);
        loop {
            let step = interval.saturating_mul(i64::try_from(size).unwrap_or(1));
            match crate::db::replicas::lease_budget(&shared.pool, &name, step, tolerance).await {
                Ok(Ok(())) => {
                    shared.leases.insert(
                        key,
                        Lease {
                            remaining: size - 1,
                            until: Instant::now() + LEASE_HOLDS,
                            per_minute,
                            refused: false,
                        },
                    );
                    return Ok(());
                }
                Ok(Err(_)) if size > 1 => size = 1,
                Ok(Err(wait)) => {
                    let retry_after = Duration::from_micros(u64::try_from(wait).unwrap_or(0))
                        .clamp(Duration::from_millis(1), LEASE_HOLDS);
                    shared.leases.insert(
                        key,
                        Lease {
                            remaining: 0,
                            until: Instant::now() + retry_after,
                            per_minute,
                            refused: true,
                        },
                    );
                    return Err(Limited { scope, retry_after });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "shared rate limits unreachable; this replica limits alone");
                    return self.take_n(key, per_minute, 1, scope);
                }
            }
        }
    }

    /// `cost` units from `key`'s budget of `per_minute` units (GCRA, burst of ten seconds'
    /// worth, so a cost larger than that never passes).
    fn take_n(
        &self,
        key: Key,
        per_minute: u64,
        cost: u64,
        scope: &'static str,
    ) -> Result<(), Limited> {
        if per_minute == 0 {
            return Ok(());
        }
        // Nanoseconds per unit, scaled by 1024 so byte budgets keep their precision.
        let interval = (60_000_000_000u64 << 10) / per_minute;
        let step = interval.saturating_mul(cost) >> 10;
        let tolerance = interval.saturating_mul((per_minute / 6).max(1)) >> 10;
        let now = self.now();
        let attempt = |tat: &AtomicU64| -> Result<(), Limited> {
            let mut current = tat.load(Ordering::Acquire);
            loop {
                let next = current.max(now) + step;
                if next - now > tolerance {
                    return Err(Limited {
                        scope,
                        retry_after: Duration::from_nanos(next - now - tolerance),
                    });
                }
                match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return Ok(()),
                    Err(seen) => current = seen,
                }
            }
        };
        if let Some(tat) = self.tat.get(&key) {
            return attempt(&tat);
        }
        let tat = self.tat.entry(key).or_insert_with(|| AtomicU64::new(now));
        attempt(&tat)
    }

    /// The user's own budget (aggregated requests that reach no single server take only this).
    pub async fn check_user(&self, user: i64) -> Result<(), Limited> {
        let table = self.table();
        let limit = table
            .users
            .get(&user)
            .copied()
            .unwrap_or(table.user_per_minute);
        self.take(Key::User(user), limit, "user").await
    }

    /// The user × server budget (the user's was taken already).
    pub async fn check_server(&self, user: i64, server: i64) -> Result<(), Limited> {
        let table = self.table();
        let limit = table
            .servers
            .get(&server)
            .copied()
            .unwrap_or(table.user_server_per_minute);
        self.take(Key::Server(user, server), limit, "user_server")
            .await
    }

    /// The user × tool budget of a `tools/call`.
    pub async fn check_tool(&self, user: i64, server: i64, tool: &str) -> Result<(), Limited> {
        let table = self.table();
        let limit = if table.tools.is_empty() {
            table.user_tool_per_minute
        } else {
            table
                .tools
                .get(&(server, tool.to_string()))
                .copied()
                .unwrap_or(table.user_tool_per_minute)
        };
        self.take(Key::Tool(user, server, tool_hash(tool)), limit, "user_tool")
            .await
    }

    /// Takes a request body's bytes from the user's byte budget
    /// (`MCP_RATE_LIMIT_USER_BYTES_PER_MINUTE`), before the body is parsed.
    pub fn check_bytes(&self, user: i64, bytes: usize) -> Result<(), Limited> {
        let cost = u64::try_from(bytes).unwrap_or(u64::MAX).max(1);
        self.take_n(Key::Bytes(user), self.bytes_per_minute, cost, "user_bytes")
    }

    /// Drops keys that are back to a full budget (called periodically).
    pub fn shrink(&self) {
        let now = self.now();
        self.tat.retain(|_, tat| tat.load(Ordering::Relaxed) > now);
        if let Some(shared) = &self.shared {
            let now = Instant::now();
            shared.leases.retain(|_, lease| lease.until > now);
            let pool = shared.pool.clone();
            tokio::spawn(async move {
                let _ = crate::db::replicas::prune_budgets(&pool).await;
            });
        }
    }
}

/// MCP requests in progress per user: what one identity can hold at once (request bodies being
/// read and worked on) is bounded by this times `MCP_MAX_REQUEST_BYTES`.
pub struct Concurrency {
    max: u32,
    users: std::sync::Mutex<HashMap<i64, u32>>,
}

/// A request's place in its user's concurrency budget, given back on drop.
pub struct Slot<'a> {
    limits: &'a Concurrency,
    user: i64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut users) = self.limits.users.lock()
            && let Some(n) = users.get_mut(&self.user)
        {
            *n -= 1;
            if *n == 0 {
                users.remove(&self.user);
            }
        }
    }
}

impl Concurrency {
    pub fn new(max: u32) -> Concurrency {
        Concurrency {
            max,
            users: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A place for one more request of `user`, or `Limited` (scope `concurrency`) when the
    /// user already has `max` in progress. The map holds only users with requests in progress.
    pub fn enter(&self, user: i64) -> Result<Option<Slot<'_>>, Limited> {
        if self.max == 0 {
            return Ok(None);
        }
        let refused = Limited {
            scope: "concurrency",
            retry_after: Duration::from_secs(1),
        };
        let mut users = self.users.lock().map_err(|_| refused)?;
        let n = users.entry(user).or_insert(0);
        if *n >= self.max {
            return Err(refused);
        }
        *n += 1;
        Ok(Some(Slot { limits: self, user }))
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

    /// Takes one request of the client address's budget; over it, records the (folded)
    /// `rate_limited` event once, here, for every surface, and says when to retry. Each surface
    /// turns `IpLimited` into its own 429 (`ApiError` by `From`, OAuth's `slow_down`, an error
    /// page).
    pub fn admit(
        &self,
        state: &crate::state::AppState,
        meta: &crate::auth::identity::RequestMeta,
        endpoint: &str,
    ) -> Result<(), IpLimited> {
        self.check(meta.ip.0).map_err(|retry| {
            state.events.record(
                crate::events::EventType::RateLimited,
                crate::events::Severity::Medium,
                &meta.ctx(),
                None,
                None,
                serde_json::json!({ "endpoint": endpoint, "scope": "ip" }),
            );
            IpLimited {
                retry_after_secs: retry.as_secs().max(1),
            }
        })
    }
}

/// A client address over its budget (the event is recorded already).
#[derive(Debug, Clone, Copy)]
pub struct IpLimited {
    pub retry_after_secs: u64,
}

impl From<IpLimited> for crate::error::ApiError {
    /// 429 `too_many_requests` with `Retry-After`.
    fn from(limited: IpLimited) -> Self {
        crate::error::ApiError::TooManyRequests {
            code: "too_many_requests",
            message: "too many requests from this address; try again later".into(),
            retry_after: limited.retry_after_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gcra_bursts_then_refuses_then_recovers() {
        let limits = McpLimits::new(
            &RateLimitConfig {
                user_per_minute: 60,
                user_server_per_minute: 0,
                user_tool_per_minute: 0,
            },
            0,
        );
        // 60/min: a burst of 10, then one a second.
        for i in 0..10 {
            assert!(limits.check_user(1).await.is_ok(), "request {i}");
        }
        let refused = limits.check_user(1).await.unwrap_err();
        assert_eq!(refused.scope, "user");
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert!(
            limits.check_user(2).await.is_ok(),
            "other users are separate"
        );
        // Overrides win, and can turn a limit off.
        let mut table = LimitTable::from_config(&RateLimitConfig {
            user_per_minute: 60,
            user_server_per_minute: 6,
            user_tool_per_minute: 0,
        });
        table.users.insert(1, 0);
        table.tools.insert((5, "slow".into()), 6);
        limits.set(table);
        assert!(
            limits.check_user(1).await.is_ok(),
            "user 1 is unlimited now"
        );
        assert!(limits.check_server(1, 5).await.is_ok());
        assert_eq!(
            limits.check_server(1, 5).await.unwrap_err().scope,
            "user_server"
        );
        assert!(limits.check_tool(1, 5, "slow").await.is_ok());
        assert_eq!(
            limits.check_tool(1, 5, "slow").await.unwrap_err().scope,
            "user_tool"
        );
        assert!(
            limits.check_tool(1, 5, "fast").await.is_ok(),
            "other tools use the default (off)"
        );
    }

    #[test]
    fn byte_budgets_allow_ten_seconds_then_refuse() {
        let config = RateLimitConfig {
            user_per_minute: 0,
            user_server_per_minute: 0,
            user_tool_per_minute: 0,
        };
        // 60 MiB a minute: a burst of 10 MiB.
        let limits = McpLimits::new(&config, 60 << 20);
        for i in 0..10 {
            assert!(limits.check_bytes(1, 1 << 20).is_ok(), "MiB {i}");
        }
        let refused = limits.check_bytes(1, 1 << 20).unwrap_err();
        assert_eq!(refused.scope, "user_bytes");
        assert!(
            refused.retry_after <= Duration::from_millis(1001),
            "{refused:?}"
        );
        assert!(
            limits.check_bytes(2, 4 << 20).is_ok(),
            "other users are separate"
        );
        assert!(
            limits.check_bytes(3, 11 << 20).is_err(),
            "more than the burst never passes"
        );
        let unlimited = McpLimits::new(&config, 0);
        assert!(
            unlimited.check_bytes(1, usize::MAX).is_ok(),
            "0 turns it off"
        );
    }

    #[test]
    fn concurrency_places_are_given_back() {
        let c = Concurrency::new(2);
        let a = c.enter(1).unwrap();
        let _b = c.enter(1).unwrap();
        assert_eq!(c.enter(1).err().map(|l| l.scope), Some("concurrency"));
        assert!(c.enter(2).is_ok(), "other users are separate");
        drop(a);
        assert!(c.enter(1).is_ok());
        drop(_b);
        assert!(
            c.users.lock().unwrap().is_empty(),
            "no entry once nothing is in progress"
        );
        assert!(
            Concurrency::new(0).enter(1).unwrap().is_none(),
            "0 turns it off"
        );
    }
}
