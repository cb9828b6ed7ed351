//! What replicas share beyond accounts and servers: `/mcp/{server}` client sessions, ended
//! aggregated sessions, single-use nonces and (Postgres only) the shared rate-limit budgets.

use sqlx::{AnyExecutor, FromRow};

/// A `/mcp/{server}` client session (`mcp_client_sessions`).
#[derive(Debug, Clone, FromRow)]
pub struct ClientSessionRow {
    /// SHA-256 of the client's session id, hex.
    pub id_hash: String,
    pub user_id: i64,
    pub server_id: i64,
    pub client_version: String,
    pub capabilities: Option<String>,
    pub client_info: Option<String>,
    /// `http`, `modern` or `legacy`.
    pub upstream: String,
    /// The backend's session id, sealed (base64).
    pub backend_session: Option<String>,
    pub backend_version: Option<String>,
    pub created_at: i64,
    pub last_seen: i64,
}

/// Stores a new session and evicts the user's oldest beyond `keep`.
pub async fn insert_client_session(
    db: &sqlx::AnyPool,
    row: &ClientSessionRow,
    keep: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into mcp_client_sessions (id_hash, user_id, server_id, client_version,
             capabilities, client_info, upstream, backend_session, backend_version, created_at,
             last_seen)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&row.id_hash)
    .bind(row.user_id)
    .bind(row.server_id)
    .bind(&row.client_version)
    .bind(&row.capabilities)
    .bind(&row.client_info)
    .bind(&row.upstream)
    .bind(&row.backend_session)
    .bind(&row.backend_version)
    .bind(row.created_at)
    .bind(row.last_seen)
    .execute(db)
    .await?;
    sqlx::query(
        "delete from mcp_client_sessions where id_hash in (
             select id_hash from mcp_client_sessions where user_id = $1
             order by created_at desc, id_hash limit 1000000 offset $2)",
    )
    .bind(row.user_id)
    .bind(keep)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn client_session(
    db: impl AnyExecutor<'_>,
    id_hash: &str,
) -> Result<Option<ClientSessionRow>, sqlx::Error> {
    sqlx::query_as(
        "select id_hash, user_id, server_id, client_version, capabilities, client_info, upstream,
                backend_session, backend_version, created_at, last_seen
         from mcp_client_sessions where id_hash = $1",
    )
    .bind(id_hash)
    .fetch_optional(db)
    .await
}

/// Records the backend session a re-initialisation opened.
pub async fn set_backend_session(
    db: impl AnyExecutor<'_>,
    id_hash: &str,
    backend_session: Option<&str>,
    backend_version: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update mcp_client_sessions set backend_session = $2, backend_version = $3
         where id_hash = $1",
    )
    .bind(id_hash)
    .bind(backend_session)
    .bind(backend_version)
    .execute(db)
    .await?;
    Ok(())
}

/// Refreshes `last_seen`; how many rows it touched (0: the session is gone).
pub async fn touch_client_session(
    db: impl AnyExecutor<'_>,
    id_hash: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("update mcp_client_sessions set last_seen = $2 where id_hash = $1")
        .bind(id_hash)
        .bind(now)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

pub async fn delete_client_session(
    db: impl AnyExecutor<'_>,
    id_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("delete from mcp_client_sessions where id_hash = $1")
        .bind(id_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// Sessions idle since before `before`, and ended-session and nonce records past their time.
pub async fn prune(db: &sqlx::AnyPool, before: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("delete from mcp_client_sessions where last_seen < $1")
        .bind(before)
        .execute(db)
        .await?;
    sqlx::query("delete from mcp_ended_sessions where expires_at < $1")
        .bind(now)
        .execute(db)
        .await?;
    sqlx::query("delete from used_nonces where expires_at < $1")
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn end_aggregated(
    db: impl AnyExecutor<'_>,
    key: &str,
    user_id: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into mcp_ended_sessions (session_key, user_id, expires_at) values ($1, $2, $3)
         on conflict (session_key) do nothing",
    )
    .bind(key)
    .bind(user_id)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Ended aggregated sessions not yet expired (loaded at start).
pub async fn ended_aggregated(
    db: impl AnyExecutor<'_>,
    now: i64,
    limit: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "select session_key, expires_at from mcp_ended_sessions where expires_at >= $1
         order by expires_at desc limit $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn is_ended_aggregated(db: impl AnyExecutor<'_>, key: &str) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> =
        sqlx::query_as("select 1 from mcp_ended_sessions where session_key = $1")
            .bind(key)
            .fetch_optional(db)
            .await?;
    Ok(row.is_some())
}

/// Records a single-use value; `false` if it was used already.
pub async fn use_nonce(
    db: impl AnyExecutor<'_>,
    nonce: &str,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "insert into used_nonces (nonce, expires_at) values ($1, $2)
         on conflict (nonce) do nothing",
    )
    .bind(nonce)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether a single-use value was used (or revoked).
pub async fn nonce_used(db: impl AnyExecutor<'_>, nonce: &str) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as("select 1 from used_nonces where nonce = $1")
        .bind(nonce)
        .fetch_optional(db)
        .await?;
    Ok(row.is_some())
}

/// Leases `step` microseconds' worth of a shared GCRA budget (Postgres only): advances the
/// key's theoretical arrival time by `step` if that stays within `tolerance` of the database
/// clock. `Ok(Ok(()))`: granted; `Ok(Err(wait))`: refused, `wait` microseconds until `step`
/// would fit.
pub async fn lease_budget(
    db: impl AnyExecutor<'_> + Copy,
    key: &str,
    step: i64,
    tolerance: i64,
) -> Result<Result<(), i64>, sqlx::Error> {
    let granted: Option<(i64,)> = sqlx::query_as(
        "with now as (select (extract(epoch from clock_timestamp()) * 1000000)::bigint as t)
         insert into rate_budgets as b (key, tat)
         select $1, now.t + $2 from now where $2 <= $3
         on conflict (key) do update set tat = greatest(b.tat, (select t from now)) + $2
           where greatest(b.tat, (select t from now)) + $2 - (select t from now) <= $3
         returning 1::bigint",
    )
    .bind(key)
    .bind(step)
    .bind(tolerance)
    .fetch_optional(db)
    .await?;
    if granted.is_some() {
        return Ok(Ok(()));
    }
    let wait: Option<(i64,)> = sqlx::query_as(
        "select greatest(tat + $2 - $3 - (extract(epoch from clock_timestamp()) * 1000000)::bigint, 0)
         from rate_budgets where key = $1",
    )
    .bind(key)
    .bind(step)
    .bind(tolerance)
    .fetch_optional(db)
    .await?;
    Ok(Err(wait.map_or(0, |w| w.0)))
}

/// Budgets back to full (their arrival time passed) go (Postgres only).
pub async fn prune_budgets(db: impl AnyExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "delete from rate_budgets
         where tat < (extract(epoch from clock_timestamp()) * 1000000)::bigint",
    )
    .execute(db)
    .await?;
    Ok(())
}
