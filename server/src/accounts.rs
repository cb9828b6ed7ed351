//! Account operations shared by the CLI, start-up bootstrap and (later) the HTTP handlers.

use crate::db::{self, Db};
use crate::error::ApiError;
use crate::password;

/// Creates an enabled user after checking the username and password rules.
pub async fn create_user(
    db: &Db,
    username: &str,
    password: &str,
    email: Option<&str>,
    role: &str,
    min_password_length: usize,
) -> Result<i64, ApiError> {
    password::validate_username(username).map_err(|m| ApiError::validation("username", m))?;
    password::validate_password(password, username, min_password_length)
        .map_err(|m| ApiError::validation("password", m))?;
    let hash = password::hash(password.to_string()).await?;
    db::users::insert(
        &db.pool,
        &db::users::NewUser {
            username,
            email,
            password_hash: &hash,
            role,
            now: db::now(),
        },
    )
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e, "users_username_key", "users.username") {
            ApiError::conflict("username_taken", "a user with this username already exists")
        } else {
            ApiError::Db(e)
        }
    })
}
