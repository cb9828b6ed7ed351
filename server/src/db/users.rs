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

pub async fn find_by_id(db: impl AnyExecutor<'_>, id: i64) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, username, email, password_hash, role, enabled, created_at, updated_at,
                last_login_at
         from users where id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Filters of the admin user list; `None` matches everything.
#[derive(Debug, Default)]
pub struct UserFilter {
    pub role: Option<String>,
    pub enabled: Option<i64>,
    /// Case-insensitive substring of the username or email.
    pub text: Option<String>,
    /// Only members of these teams (`"1,5"`, see `team_filter!`).
    pub teams: Option<String>,
}

impl UserFilter {
    fn like_pattern(&self) -> Option<String> {
        self.text.as_ref().map(|t| {
            let escaped = t
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        })
    }
}

pub async fn list(
    db: impl AnyExecutor<'_>,
    filter: &UserFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select id, username, email, password_hash, role, enabled, created_at, updated_at,
                last_login_at
         from users
         where ($1 is null or role = $1)
           and ($2 is null or enabled = $2)
           and ($3 is null or lower(username) like $3 escape '\\'
                or lower(coalesce(email, '')) like $3 escape '\\')
           and ",
        crate::team_member!("6", "users.id"),
        " order by username limit $4 offset $5"
    ))
    .bind(filter.role.as_deref())
    .bind(filter.enabled)
    .bind(filter.like_pattern())
    .bind(limit)
    .bind(offset)
    .bind(filter.teams.as_deref())
    .fetch_all(db)
    .await
}

pub async fn count_matching(
    db: impl AnyExecutor<'_>,
    filter: &UserFilter,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(concat!(
        "select count(*) from users
         where ($1 is null or role = $1)
           and ($2 is null or enabled = $2)
           and ($3 is null or lower(username) like $3 escape '\\'
                or lower(coalesce(email, '')) like $3 escape '\\')
           and ",
        crate::team_member!("4", "users.id")
    ))
    .bind(filter.role.as_deref())
    .bind(filter.enabled)
    .bind(filter.like_pattern())
    .bind(filter.teams.as_deref())
    .fetch_one(db)
    .await
}

pub async fn update(
    db: impl AnyExecutor<'_>,
    id: i64,
    email: Option<&str>,
    role: &str,
    enabled: i64,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update users set email = $1, role = $2, enabled = $3, updated_at = $4 where id = $5",
    )
    .bind(email)
    .bind(role)
    .bind(enabled)
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

/// `set_password` only over the hash `expected` of an enabled user (a change decided on one
/// reading of the account: a reset or a disable in between wins). The rows changed.
pub async fn set_password_if(
    db: impl AnyExecutor<'_>,
    id: i64,
    password_hash: &str,
    expected: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update users set password_hash = $1, updated_at = $2
         where id = $3 and password_hash = $4 and enabled = 1",
    )
    .bind(password_hash)
    .bind(now)
    .bind(id)
    .bind(expected)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

pub async fn set_password(
    db: impl AnyExecutor<'_>,
    id: i64,
    password_hash: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query("update users set password_hash = $1, updated_at = $2 where id = $3")
        .bind(password_hash)
        .bind(now)
        .bind(id)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}

pub async fn touch_login(db: impl AnyExecutor<'_>, id: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("update users set last_login_at = $1 where id = $2")
        .bind(now)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete(db: impl AnyExecutor<'_>, id: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query("delete from users where id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}

/// Enabled admins other than `id`.
pub async fn count_other_enabled_admins(
    db: impl AnyExecutor<'_>,
    id: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from users where role = 'admin' and enabled = 1 and id <> $1",
    )
    .bind(id)
    .fetch_one(db)
    .await
}

/// On Postgres, locks the enabled admins' rows until the transaction ends, so two concurrent
/// demotions cannot both see "another admin remains". SQLite serialises writers already (the
/// caller's transaction writes first), so there is nothing to do there.
pub async fn lock_admins(
    conn: &mut sqlx::AnyConnection,
    backend: crate::db::Backend,
) -> Result<(), sqlx::Error> {
    if backend == crate::db::Backend::Postgres {
        sqlx::query("select id from users where role = 'admin' and enabled = 1 for update")
            .fetch_all(conn)
            .await?;
    }
    Ok(())
}
