//! The change feed's one statement (Postgres only: SQLite has no other process to tell).

/// `NOTIFY channel, payload` (sent outside any transaction, so after the change committed).
pub async fn notify(
    db: impl sqlx::AnyExecutor<'_>,
    channel: &str,
    payload: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(db)
        .await?;
    Ok(())
}
