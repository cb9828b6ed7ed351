//! The `signing_keys` table: JWT signing keys, private halves encrypted at rest.

use sqlx::{AnyExecutor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub algorithm: String,
    /// Ciphertext (see `keys::SecretBox`).
    pub private_key: Vec<u8>,
    pub public_key: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// Keys that still verify tokens: active ones and ones retired after `retired_after`.
pub async fn list_usable(
    db: impl AnyExecutor<'_>,
    retired_after: i64,
) -> Result<Vec<SigningKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "select kid, algorithm, private_key, public_key, created_at, retired_at
         from signing_keys
         where retired_at is null or retired_at > $1
         order by created_at desc, kid desc",
    )
    .bind(retired_after)
    .fetch_all(db)
    .await
}

pub async fn insert(db: impl AnyExecutor<'_>, row: &SigningKeyRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into signing_keys (kid, algorithm, private_key, public_key, created_at, retired_at)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&row.kid)
    .bind(&row.algorithm)
    .bind(&row.private_key)
    .bind(&row.public_key)
    .bind(row.created_at)
    .bind(row.retired_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Retires every active key except `keep`; retired keys still verify until their tokens expire.
pub async fn retire_all_except(
    db: impl AnyExecutor<'_>,
    keep: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update signing_keys set retired_at = $1 where retired_at is null and kid <> $2",
    )
    .bind(now)
    .bind(keep)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}
