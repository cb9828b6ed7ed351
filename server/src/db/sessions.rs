//! The `sessions` and `refresh_tokens` tables: login sessions and their rotating refresh tokens.

use sqlx::{AnyExecutor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub id: String,
    pub user_id: i64,
    /// `mcp` or `admin`.
    pub audience: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// The OAuth client that started it (`oauth_clients.id`), if any.
    pub client_key: Option<i64>,
    /// The resource its access tokens are bound to (their `aud`); `None` = `<PUBLIC_URL>/mcp`
    /// or the admin API, by audience.
    pub resource: Option<String>,
    /// Granted OAuth scopes (space-separated); `None` for password sessions (everything).
    pub scope: Option<String>,
}

#[derive(Debug, Clone, FromRow)]
pub struct RefreshTokenRow {
    pub token_hash: String,
    pub session_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub async fn insert(db: impl AnyExecutor<'_>, row: &SessionRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into sessions (id, user_id, audience, created_at, expires_at, client_key,
                               resource, scope)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&row.id)
    .bind(row.user_id)
    .bind(&row.audience)
    .bind(row.created_at)
    .bind(row.expires_at)
    .bind(row.client_key)
    .bind(&row.resource)
    .bind(&row.scope)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn find(db: impl AnyExecutor<'_>, id: &str) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, user_id, audience, created_at, expires_at, revoked_at, client_key, resource,
                scope
         from sessions where id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn extend(
    db: impl AnyExecutor<'_>,
    id: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("update sessions set expires_at = $1 where id = $2")
        .bind(expires_at)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn revoke(
    db: impl AnyExecutor<'_>,
    id: &str,
    now: i64,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update sessions set revoked_at = $1, revoked_reason = $2
         where id = $3 and revoked_at is null",
    )
    .bind(now)
    .bind(reason)
    .bind(id)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

/// Revokes every live session of a user (password reset, disable, demotion).
pub async fn revoke_all_for_user(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    now: i64,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update sessions set revoked_at = $1, revoked_reason = $2
         where user_id = $3 and revoked_at is null",
    )
    .bind(now)
    .bind(reason)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

/// Revokes every live session of a user but one (a password changed by its owner).
pub async fn revoke_others_for_user(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    keep: &str,
    now: i64,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update sessions set revoked_at = $1, revoked_reason = $2
         where user_id = $3 and revoked_at is null and id <> $4",
    )
    .bind(now)
    .bind(reason)
    .bind(user_id)
    .bind(keep)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

pub async fn insert_refresh(
    db: impl AnyExecutor<'_>,
    row: &RefreshTokenRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into refresh_tokens (token_hash, session_id, created_at, expires_at)
         values ($1, $2, $3, $4)",
    )
    .bind(&row.token_hash)
    .bind(&row.session_id)
    .bind(row.created_at)
    .bind(row.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn find_refresh(
    db: impl AnyExecutor<'_>,
    token_hash: &str,
) -> Result<Option<RefreshTokenRow>, sqlx::Error> {
    sqlx::query_as(
        "select token_hash, session_id, created_at, expires_at, used_at
         from refresh_tokens where token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await
}

/// Marks a refresh token used; 0 rows means somebody used it first (reuse).
pub async fn mark_refresh_used(
    db: impl AnyExecutor<'_>,
    token_hash: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update refresh_tokens set used_at = $1 where token_hash = $2 and used_at is null",
    )
    .bind(now)
    .bind(token_hash)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

/// Deletes sessions (and, by cascade, their refresh tokens) that expired before `before`.
pub async fn prune(db: impl AnyExecutor<'_>, before: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query("delete from sessions where expires_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}

/// Live sessions of an OAuth client (for one user, or all users).
/// Live sessions whose tokens are bound to `resource` (OAuth sessions for one MCP endpoint).
pub async fn of_resource(
    db: impl AnyExecutor<'_>,
    resource: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("select id from sessions where resource = $1 and revoked_at is null")
        .bind(resource)
        .fetch_all(db)
        .await
}

pub async fn of_client(
    db: impl AnyExecutor<'_>,
    client_key: i64,
    user_id: Option<i64>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select id from sessions
         where client_key = $1 and ($2 is null or user_id = $2) and revoked_at is null",
    )
    .bind(client_key)
    .bind(user_id)
    .fetch_all(db)
    .await
}
