//! The `login_failures` table: consecutive failed logins per lowercased username.

use sqlx::{AnyExecutor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct LoginFailureRow {
    pub username_key: String,
    pub failures: i64,
    pub locked_until: Option<i64>,
    pub updated_at: i64,
}

pub async fn get(
    db: impl AnyExecutor<'_>,
    username_key: &str,
) -> Result<Option<LoginFailureRow>, sqlx::Error> {
    sqlx::query_as(
        "select username_key, failures, locked_until, updated_at
         from login_failures where username_key = $1",
    )
    .bind(username_key)
    .fetch_optional(db)
    .await
}

/// Adds one failure and returns the new count.
pub async fn increment(
    db: impl AnyExecutor<'_>,
    username_key: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "insert into login_failures (username_key, failures, updated_at) values ($1, 1, $2)
         on conflict (username_key)
         do update set failures = login_failures.failures + 1, updated_at = $2
         returning failures",
    )
    .bind(username_key)
    .bind(now)
    .fetch_one(db)
    .await
}

pub async fn lock(
    db: impl AnyExecutor<'_>,
    username_key: &str,
    until: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("update login_failures set locked_until = $1 where username_key = $2")
        .bind(until)
        .bind(username_key)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn clear(db: impl AnyExecutor<'_>, username_key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("delete from login_failures where username_key = $1")
        .bind(username_key)
        .execute(db)
        .await?;
    Ok(())
}

/// Forgets failures that are old and not locking anything.
pub async fn prune(db: impl AnyExecutor<'_>, before: i64, now: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "delete from login_failures
         where updated_at < $1 and (locked_until is null or locked_until < $2)",
    )
    .bind(before)
    .bind(now)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}
