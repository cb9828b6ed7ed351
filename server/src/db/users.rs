//! The `users` table.

use sqlx::{AnyExecutor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub role: String,
    /// 0 or 1 (booleans are integers in both schemas, see migrations/README.md).
    pub enabled: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub now: i64,
}

/// Inserts a user and returns its id. A duplicate username is the
/// `users_username_key` unique violation.
pub async fn insert(db: impl AnyExecutor<'_>, user: &NewUser<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "insert into users (username, email, password_hash, role, enabled, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $6)
         returning id",
    )
    .bind(user.username)
    .bind(user.email)
    .bind(user.password_hash)
    .bind(user.role)
    .bind(1_i64)
    .bind(user.now)
    .fetch_one(db)
    .await
}

pub async fn count(db: impl AnyExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from users")
        .fetch_one(db)
        .await
}

pub async fn find_by_username(
    db: impl AnyExecutor<'_>,
    username: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, username, email, password_hash, role, enabled, created_at, updated_at,
                last_login_at
         from users where username = $1",
    )
        .bind(username)
        .fetch_optional(db)
        .await
}
