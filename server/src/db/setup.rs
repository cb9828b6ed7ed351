//! The `setup_lock` table: claimed once, by whoever creates the first admin.

use sqlx::AnyExecutor;

/// Inserts the single lock row; a unique violation means setup was already claimed.
pub async fn claim(db: impl AnyExecutor<'_>, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("insert into setup_lock (id, created_at) values (1, $1)")
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn is_claimed(db: impl AnyExecutor<'_>) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("select count(*) from setup_lock")
        .fetch_one(db)
        .await?;
    Ok(n > 0)
}
