//! The `api_keys` table.

use sqlx::{AnyExecutor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    /// JSON array of server names, or null.
    pub servers: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub struct NewApiKey<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub servers: Option<&'a str>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

pub async fn insert(db: impl AnyExecutor<'_>, key: &NewApiKey<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "insert into api_keys (user_id, name, prefix, key_hash, servers, created_at, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning id",
    )
    .bind(key.user_id)
    .bind(key.name)
    .bind(key.prefix)
    .bind(key.key_hash)
    .bind(key.servers)
    .bind(key.created_at)
    .bind(key.expires_at)
    .fetch_one(db)
    .await
}

pub async fn find(db: impl AnyExecutor<'_>, id: i64) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, user_id, name, prefix, key_hash, servers, created_at, expires_at,
                last_used_at, revoked_at
         from api_keys where id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn find_by_hash(
    db: impl AnyExecutor<'_>,
    key_hash: &str,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, user_id, name, prefix, key_hash, servers, created_at, expires_at,
                last_used_at, revoked_at
         from api_keys where key_hash = $1",
    )
    .bind(key_hash)
    .fetch_optional(db)
    .await
}

pub async fn list_for_user(
    db: impl AnyExecutor<'_>,
    user_id: i64,
) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, user_id, name, prefix, key_hash, servers, created_at, expires_at,
                last_used_at, revoked_at
         from api_keys where user_id = $1
         order by created_at desc, id desc",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

pub async fn revoke(
    db: impl AnyExecutor<'_>,
    id: i64,
    user_id: i64,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update api_keys set revoked_at = $1
         where id = $2 and user_id = $3 and revoked_at is null",
    )
    .bind(now)
    .bind(id)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

pub async fn touch(db: impl AnyExecutor<'_>, id: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("update api_keys set last_used_at = $1 where id = $2")
        .bind(now)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}
