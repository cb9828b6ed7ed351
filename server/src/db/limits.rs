//! The `settings` and `rate_limit_overrides` tables.

use sqlx::{AnyExecutor, FromRow};

pub async fn get_setting(
    db: impl AnyExecutor<'_>,
    key: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("select value from settings where key = $1")
        .bind(key)
        .fetch_optional(db)
        .await
}

pub async fn set_setting(
    db: impl AnyExecutor<'_>,
    key: &str,
    value: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into settings (key, value, updated_at) values ($1, $2, $3)
         on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(key)
    .bind(value)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Stores a setting unless it exists (the first writer wins).
pub async fn insert_setting(
    db: impl AnyExecutor<'_>,
    key: &str,
    value: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into settings (key, value, updated_at) values ($1, $2, $3)
         on conflict (key) do nothing",
    )
    .bind(key)
    .bind(value)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct OverrideRow {
    pub kind: String,
    pub user_id: Option<i64>,
    pub server_id: Option<i64>,
    pub tool: Option<String>,
    pub per_minute: i64,
    /// The user's or server's name.
    pub label: Option<String>,
}

pub async fn list_overrides(db: impl AnyExecutor<'_>) -> Result<Vec<OverrideRow>, sqlx::Error> {
    sqlx::query_as(
        "select o.kind, o.user_id, o.server_id, o.tool, o.per_minute,
                coalesce(u.username, s.name) as label
         from rate_limit_overrides o
         left join users u on u.id = o.user_id
         left join mcp_servers s on s.id = o.server_id
         order by o.kind, o.id",
    )
    .fetch_all(db)
    .await
}

pub async fn clear_overrides(db: impl AnyExecutor<'_>) -> Result<(), sqlx::Error> {
    sqlx::query("delete from rate_limit_overrides")
        .execute(db)
        .await?;
    Ok(())
}

pub async fn insert_override(
    db: impl AnyExecutor<'_>,
    o: &OverrideRow,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into rate_limit_overrides (kind, user_id, server_id, tool, per_minute, created_at)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&o.kind)
    .bind(o.user_id)
    .bind(o.server_id)
    .bind(&o.tool)
    .bind(o.per_minute)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Removes one server's overrides (its own and its tools').
pub async fn clear_server_overrides(
    db: impl AnyExecutor<'_>,
    server_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("delete from rate_limit_overrides where server_id = $1")
        .bind(server_id)
        .execute(db)
        .await?;
    Ok(())
}

/// One server's own and its tools' overrides.
pub async fn server_overrides(
    db: impl AnyExecutor<'_>,
    server_id: i64,
) -> Result<Vec<OverrideRow>, sqlx::Error> {
    sqlx::query_as(
        "select o.kind, o.user_id, o.server_id, o.tool, o.per_minute, s.name as label
         from rate_limit_overrides o join mcp_servers s on s.id = o.server_id
         where o.server_id = $1 order by o.kind, o.id",
    )
    .bind(server_id)
    .fetch_all(db)
    .await
}

pub async fn count_overrides(db: impl AnyExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from rate_limit_overrides")
        .fetch_one(db)
        .await
}
