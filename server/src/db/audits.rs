//! Security scans (`audit_scans`): a row per scan, its progress and its report.

use sqlx::{AnyExecutor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct ScanRow {
    pub id: i64,
    pub target: String,
    pub server_id: Option<i64>,
    pub server_name: Option<String>,
    pub status: String,
    pub requested_by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub progress: i64,
    pub total: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
    pub info: i64,
    pub error: Option<String>,
    pub report: Option<String>,
}

/// Scans kept (older ones are deleted when a new one starts).
pub const KEEP: i64 = 200;

macro_rules! columns {
    () => {
        "select id, target, server_id, server_name, status, requested_by, started_at,
                finished_at, progress, total, high, medium, low, info, error"
    };
}

#[allow(clippy::too_many_arguments)]
pub async fn insert(
    db: impl AnyExecutor<'_>,
    target: &str,
    server_id: Option<i64>,
    server_name: Option<&str>,
    requested_by: &str,
    total: i64,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "insert into audit_scans (target, server_id, server_name, status, requested_by,
                                  started_at, total)
         values ($1, $2, $3, 'running', $4, $5, $6) returning id",
    )
    .bind(target)
    .bind(server_id)
    .bind(server_name)
    .bind(requested_by)
    .bind(now)
    .bind(total)
    .fetch_one(db)
    .await
}

/// Deletes all but the newest `KEEP` scans, and marks scans whose replica stopped while they
/// ran (running for longer than any scan may) as failed.
pub async fn prune(db: impl AnyExecutor<'_> + Copy, stale_before: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update audit_scans set status = 'failed', error = 'interrupted', finished_at = started_at
         where status = 'running' and started_at < $1",
    )
    .bind(stale_before)
    .execute(db)
    .await?;
    sqlx::query(
        "delete from audit_scans where id not in
            (select id from audit_scans order by id desc limit $1)",
    )
    .bind(KEEP)
    .execute(db)
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub async fn progress(
    db: impl AnyExecutor<'_>,
    id: i64,
    progress: i64,
    counts: [i64; 4],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update audit_scans set progress = $2, high = $3, medium = $4, low = $5, info = $6
         where id = $1 and status = 'running'",
    )
    .bind(id)
    .bind(progress)
    .bind(counts[0])
    .bind(counts[1])
    .bind(counts[2])
    .bind(counts[3])
    .execute(db)
    .await?;
    Ok(())
}

/// Ends a running scan (`done`, `failed` or `cancelled`); `false` when it was not running
/// (already cancelled).
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    db: impl AnyExecutor<'_>,
    id: i64,
    status: &str,
    progress: i64,
    counts: [i64; 4],
    error: Option<&str>,
    report: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "update audit_scans
         set status = $2, progress = $3, high = $4, medium = $5, low = $6, info = $7,
             error = $8, report = $9, finished_at = $10
         where id = $1 and status = 'running'",
    )
    .bind(id)
    .bind(status)
    .bind(progress)
    .bind(counts[0])
    .bind(counts[1])
    .bind(counts[2])
    .bind(counts[3])
    .bind(error)
    .bind(report)
    .bind(now)
    .execute(db)
    .await?;
    Ok(res.rows_affected() == 1)
}

pub async fn list(db: impl AnyExecutor<'_>, limit: i64) -> Result<Vec<ScanRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        columns!(),
        ", null as report from audit_scans order by id desc limit $1"
    ))
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn find(db: impl AnyExecutor<'_>, id: i64) -> Result<Option<ScanRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        columns!(),
        ", report from audit_scans where id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn status(db: impl AnyExecutor<'_>, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("select status from audit_scans where id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}
