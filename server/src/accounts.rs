//! Account operations shared by the HTTP handlers, the CLI and start-up bootstrap: creating
//! users (and the first admin), changing them under the last-admin rule, API keys, and the
//! admin audit trail. Every change that affects access invalidates the identity cache at once.

use serde_json::{Value, json};
use shared::auth::{ApiKey, CreateApiKey, CreatedApiKey, Role};
use shared::users::{UpdateUser, User};

use crate::auth::identity::Principal;
use crate::auth::tokens::{API_KEY_PREFIX, hash_token, random_token};
use crate::db::{self, Db, events::AuditRow, users::UserRow};
use crate::error::ApiError;
use crate::password;
use crate::state::AppState;

/// Usernames are case-insensitive: stored and looked up in lowercase.
pub fn normalize_username(username: &str) -> String {
    username.trim().to_lowercase()
}

fn validate_email(email: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(email) = email.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if !valid {
        return Err(ApiError::validation("email", "not a valid email address"));
    }
    Ok(Some(email.to_string()))
}

pub fn to_user(row: &UserRow) -> User {
    User {
        id: row.id,
        username: row.username.clone(),
        email: row.email.clone(),
        role: Role::parse(&row.role).unwrap_or(Role::User),
        enabled: row.enabled != 0,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_login_at: row.last_login_at,
    }
}

/// A user, checked and hashed, ready to insert.
pub struct CheckedUser {
    username: String,
    email: Option<String>,
    password_hash: String,
    role: Role,
}

/// Checks the username, email and password rules and hashes the password (off the runtime).
/// Done before any transaction opens, so a slow hash never holds a database lock.
pub async fn check_new_user(
    username: &str,
    password: &str,
    email: Option<&str>,
    role: Role,
    min_password_length: usize,
) -> Result<CheckedUser, ApiError> {
    let username = normalize_username(username);
    password::validate_username(&username).map_err(|m| ApiError::validation("username", m))?;
    let email = validate_email(email)?;
    password::validate_password(password, &username, min_password_length)
        .map_err(|m| ApiError::validation("password", m))?;
    Ok(CheckedUser {
        password_hash: password::hash(password.to_string()).await?,
        username,
        email,
        role,
    })
}

/// Inserts the user, as a member of the default team while it is the only team (a single-team
/// install needs no step more). Once there are several, a global admin puts new users in
/// teams: none is chosen for them.
async fn insert_user(conn: &mut sqlx::AnyConnection, user: &CheckedUser) -> Result<i64, ApiError> {
    let id = db::users::insert(
        &mut *conn,
        &db::users::NewUser {
            username: &user.username,
            email: user.email.as_deref(),
            password_hash: &user.password_hash,
            role: user.role.as_str(),
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
    })?;
    if db::teams::count(&mut *conn).await? == 1 {
        db::teams::set_member(
            &mut *conn,
            crate::teams::DEFAULT_TEAM,
            id,
            "member",
            db::now(),
        )
        .await?;
    }
    Ok(id)
}

/// Creates an enabled user.
pub async fn create_user(
    db: &Db,
    username: &str,
    password: &str,
    email: Option<&str>,
    role: Role,
    min_password_length: usize,
) -> Result<UserRow, ApiError> {
    let user = check_new_user(username, password, email, role, min_password_length).await?;
    let mut tx = db.begin().await?;
    let id = insert_user(&mut tx, &user).await?;
    tx.commit().await?;
    found(db::users::find_by_id(&db.pool, id).await?)
}

/// Creates the first admin, only while setup is unclaimed and no user exists. Claiming the
/// single `setup_lock` row in the same transaction makes concurrent calls create at most one.
/// The one-time token that creating the first admin needs when the gateway can be reached from
/// elsewhere (it listens on a non-loopback address, or `TRUSTED_PROXIES` says a reverse proxy
/// forwards to it) and `ADMIN_PASSWORD` is not set: whoever reaches the port first must not be
/// able to claim it. Printed in the log at start-up, kept here only as a hash. It is derived
/// from the encryption key, so every replica sharing the key prints and accepts the same one
/// (a setup request may reach any of them).
pub struct SetupToken {
    hash: String,
}

impl SetupToken {
    /// A fresh token when one is needed (no user yet, reachable from elsewhere, no
    /// `ADMIN_PASSWORD`), logged for the operator.
    pub async fn issue(
        db: &Db,
        config: &crate::config::Config,
        encryption_key: &[u8; 32],
    ) -> anyhow::Result<Option<SetupToken>> {
        let reachable = !config.host.is_loopback() || !config.trusted_proxies.is_empty();
        if config.admin_password.is_some() || !reachable {
            return Ok(None);
        }
        let claimed = db::setup::is_claimed(&db.pool).await?;
        if claimed || db::users::count(&db.pool).await? > 0 {
            return Ok(None);
        }
        let token = {
            use base64::Engine;
            let mut out = [0u8; 24];
            hkdf::Hkdf::<sha2::Sha256>::new(Some(b"authmcp-gateway"), encryption_key)
                .expand(b"first-run setup token", &mut out)
                .map_err(|_| anyhow::anyhow!("deriving the setup token"))?;
            format!(
                "setup_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
            )
        };
        tracing::warn!(
            "first-run setup: no admin exists and the gateway can be reached from elsewhere ({}); \
             creating the first admin (setup page or POST /setup/create-admin) needs this one-time \
             setup token: {token}",
            if config.host.is_loopback() {
                "behind TRUSTED_PROXIES"
            } else {
                "non-loopback bind"
            }
        );
        Ok(Some(SetupToken {
            hash: hash_token(&token),
        }))
    }

    /// `Forbidden` unless `presented` is the token.
    pub fn check(&self, presented: Option<&str>) -> Result<(), ApiError> {
        let ok = presented.is_some_and(|p| {
            crate::keys::constant_time_eq(hash_token(p.trim()).as_bytes(), self.hash.as_bytes())
        });
        if ok {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "the one-time setup token from the gateway's log is required (setup_token)",
            ))
        }
    }
}

pub async fn create_first_admin(
    db: &Db,
    username: &str,
    password: &str,
    email: Option<&str>,
    min_password_length: usize,
) -> Result<UserRow, ApiError> {
    let setup_done = || ApiError::conflict("setup_complete", "setup is already complete");
    if db::setup::is_claimed(&db.pool).await? || db::users::count(&db.pool).await? > 0 {
        return Err(setup_done());
    }
    let user = check_new_user(username, password, email, Role::Admin, min_password_length).await?;
    let mut tx = db.begin().await?;
    if let Err(e) = db::setup::claim(&mut *tx, db::now()).await {
        return Err(match e {
            sqlx::Error::Database(ref d) if d.is_unique_violation() => setup_done(),
            other => other.into(),
        });
    }
    if db::users::count(&mut *tx).await? > 0 {
        return Err(setup_done());
    }
    let id = insert_user(&mut tx, &user).await?;
    tx.commit().await?;
    found(db::users::find_by_id(&db.pool, id).await?)
}

fn found<T>(row: Option<T>) -> Result<T, ApiError> {
    row.ok_or(ApiError::NotFound("no such user"))
}

/// Who made an admin change, for the audit log.
pub struct Actor<'a> {
    pub principal: &'a Principal,
    pub ip: String,
}

impl<'a> Actor<'a> {
    /// The caller of a request.
    pub fn of(principal: &'a Principal, meta: &crate::auth::identity::RequestMeta) -> Actor<'a> {
        Actor {
            principal,
            ip: meta.ip.0.to_string(),
        }
    }
}

pub(crate) async fn audit(
    db: impl sqlx::AnyExecutor<'_>,
    actor: &Actor<'_>,
    action: &str,
    target_type: &str,
    target_id: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), ApiError> {
    audit_in(
        db,
        actor,
        None,
        action,
        target_type,
        target_id,
        before,
        after,
    )
    .await
}

/// An audit entry about something of team `team` (its team admins see it).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn audit_in(
    db: impl sqlx::AnyExecutor<'_>,
    actor: &Actor<'_>,
    team: Option<i64>,
    action: &str,
    target_type: &str,
    target_id: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), ApiError> {
    db::events::insert_audit(
        db,
        &AuditRow {
            id: 0,
            actor_user_id: Some(actor.principal.user_id),
            actor_username: actor.principal.username.clone(),
            action: action.into(),
            target_type: target_type.into(),
            target_id,
            before_state: before.map(|v| v.to_string()),
            after_state: after.map(|v| v.to_string()),
            ip: Some(actor.ip.clone()),
            created_at: db::now(),
            team_id: team,
        },
    )
    .await?;
    Ok(())
}

/// A successful sign-in, sign-out or OAuth authorisation (`action`: `auth.sign_in`,
/// `auth.sign_out`, `oauth.authorize`), recorded as the user's own act; failures are security
/// events instead.
pub async fn record_auth(
    db: impl sqlx::AnyExecutor<'_>,
    user_id: i64,
    username: &str,
    ip: &str,
    action: &str,
    details: Value,
) -> Result<(), ApiError> {
    db::events::insert_audit(
        db,
        &AuditRow {
            id: 0,
            actor_user_id: Some(user_id),
            actor_username: username.to_string(),
            action: action.into(),
            target_type: "user".into(),
            target_id: Some(user_id.to_string()),
            before_state: None,
            after_state: Some(details.to_string()),
            ip: Some(ip.to_string()),
            created_at: db::now(),
            team_id: None,
        },
    )
    .await?;
    Ok(())
}

fn snapshot(user: &User) -> Value {
    json!({
        "username": user.username, "email": user.email,
        "role": user.role, "enabled": user.enabled,
    })
}

fn is_active_admin(row: &UserRow) -> bool {
    row.role == Role::Admin.as_str() && row.enabled != 0
}

fn last_admin() -> ApiError {
    ApiError::conflict(
        "last_admin",
        "this is the last enabled admin; enable or promote another admin first",
    )
}

/// Creates a user on an admin's behalf.
pub async fn admin_create_user(
    state: &AppState,
    actor: &Actor<'_>,
    username: &str,
    password: &str,
    email: Option<&str>,
    role: Role,
) -> Result<User, ApiError> {
    let checked = check_new_user(
        username,
        password,
        email,
        role,
        state.config.password_min_length,
    )
    .await?;
    let mut tx = state.db.begin().await?;
    let id = insert_user(&mut tx, &checked).await?;
    let user = to_user(&found(db::users::find_by_id(&mut *tx, id).await?)?);
    audit(
        &mut *tx,
        actor,
        "user.create",
        "user",
        Some(id.to_string()),
        None,
        Some(snapshot(&user)),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Applies an admin's change to a user. Disabling or demoting ends the user's sessions; the
/// last enabled admin can be neither.
pub async fn admin_update_user(
    state: &AppState,
    actor: &Actor<'_>,
    id: i64,
    change: &UpdateUser,
) -> Result<User, ApiError> {
    let email = match &change.email {
        Some(email) => Some(validate_email(email.as_deref())?),
        None => None,
    };
    let mut tx = state.db.begin().await?;
    db::users::lock_admins(&mut tx, state.db.backend).await?;
    let before_row = found(db::users::find_by_id(&mut *tx, id).await?)?;
    let before = to_user(&before_row);
    let role = change.role.unwrap_or(before.role);
    let enabled = change.enabled.unwrap_or(before.enabled);
    let email = email.unwrap_or_else(|| before.email.clone());
    let loses_admin = is_active_admin(&before_row) && (role != Role::Admin || !enabled);
    if loses_admin && db::users::count_other_enabled_admins(&mut *tx, id).await? == 0 {
        return Err(last_admin());
    }
    let now = db::now();
    db::users::update(
        &mut *tx,
        id,
        email.as_deref(),
        role.as_str(),
        i64::from(enabled),
        now,
    )
    .await?;
    let lost_access =
        (before.enabled && !enabled) || (before.role == Role::Admin && role != Role::Admin);
    if lost_access {
        db::sessions::revoke_all_for_user(&mut *tx, id, now, "user_changed_by_admin").await?;
    }
    let after = to_user(&found(db::users::find_by_id(&mut *tx, id).await?)?);
    audit(
        &mut *tx,
        actor,
        "user.update",
        "user",
        Some(id.to_string()),
        Some(snapshot(&before)),
        Some(snapshot(&after)),
    )
    .await?;
    tx.commit().await?;
    state.auth_cache.invalidate_user(id);
    if lost_access {
        state.mcp.forget_user(id);
    } else {
        state.mcp.registry.invalidate_grants(id);
    }
    Ok(after)
}

/// Who sets a password: an admin, the user themself (keeping the session that asks), or the
/// command line.
enum PasswordBy<'a> {
    Admin(&'a Actor<'a>),
    /// The owner, asking from session `keep`, having proved they know the password `verified`
    /// hashes to.
    Owner {
        actor: &'a Actor<'a>,
        keep: &'a str,
        verified: &'a str,
    },
    Cli,
}

/// Validates and sets a user's new password in one transaction with the sessions it ends and
/// its audit record; the one place a password changes after an account exists.
async fn set_password(
    state: &AppState,
    user: &db::users::UserRow,
    new_password: &str,
    by: PasswordBy<'_>,
) -> Result<(), ApiError> {
    let field = if matches!(by, PasswordBy::Owner { .. }) {
        "new_password"
    } else {
        "password"
    };
    password::validate_password(
        new_password,
        &user.username,
        state.config.password_min_length,
    )
    .map_err(|m| ApiError::validation(field, m))?;
    let hash = password::hash(new_password.to_string()).await?;
    let now = db::now();
    let mut tx = state.db.begin().await?;
    let changed = match &by {
        // Over the password just verified, by an enabled user, from a live session: a reset
        // or a disable that got in between wins.
        PasswordBy::Owner { keep, verified, .. } => {
            let live = db::sessions::find(&mut *tx, keep)
                .await?
                .is_some_and(|s| s.revoked_at.is_none() && s.expires_at > now);
            live && db::users::set_password_if(&mut *tx, user.id, &hash, verified, now).await? == 1
        }
        _ => db::users::set_password(&mut *tx, user.id, &hash, now).await? == 1,
    };
    if !changed {
        return Err(match by {
            PasswordBy::Owner { .. } => ApiError::Unauthorized,
            _ => ApiError::NotFound("no such user"),
        });
    }
    let target = Some(user.id.to_string());
    match by {
        PasswordBy::Admin(actor) => {
            db::sessions::revoke_all_for_user(&mut *tx, user.id, now, "password_reset").await?;
            db::login_failures::clear(&mut *tx, &user.username).await?;
            audit(
                &mut *tx,
                actor,
                "user.reset_password",
                "user",
                target,
                None,
                None,
            )
            .await?;
        }
        PasswordBy::Owner { actor, keep, .. } => {
            db::sessions::revoke_others_for_user(&mut *tx, user.id, keep, now, "password_changed")
                .await?;
            audit(
                &mut *tx,
                actor,
                "user.change_password",
                "user",
                target,
                None,
                None,
            )
            .await?;
        }
        PasswordBy::Cli => {
            db::sessions::revoke_all_for_user(&mut *tx, user.id, now, "password_reset").await?;
            db::login_failures::clear(&mut *tx, &user.username).await?;
            db::events::insert_audit(
                &mut *tx,
                &AuditRow {
                    id: 0,
                    actor_user_id: None,
                    actor_username: "cli".into(),
                    action: "user.reset_password".into(),
                    target_type: "user".into(),
                    target_id: target,
                    before_state: None,
                    after_state: None,
                    ip: None,
                    created_at: now,
                    team_id: None,
                },
            )
            .await?;
        }
    }
    tx.commit().await?;
    state.auth_cache.invalidate_user(user.id);
    Ok(())
}

/// Sets a new password and ends the user's sessions.
pub async fn admin_reset_password(
    state: &AppState,
    actor: &Actor<'_>,
    id: i64,
    new_password: &str,
) -> Result<(), ApiError> {
    let user = found(db::users::find_by_id(&state.db.pool, id).await?)?;
    set_password(state, &user, new_password, PasswordBy::Admin(actor)).await?;
    state.mcp.forget_user(id);
    Ok(())
}

/// A user changes their own password; `verified` is their account as read when the current
/// password was checked. Every other session of theirs ends; `keep` (the session asking) goes
/// on. Refused (401) when the password, the account or the session changed meanwhile.
pub async fn change_own_password(
    state: &AppState,
    actor: &Actor<'_>,
    verified: &db::users::UserRow,
    keep: &str,
    new_password: &str,
) -> Result<(), ApiError> {
    if verified.id != actor.principal.user_id {
        return Err(ApiError::Unauthorized);
    }
    let by = PasswordBy::Owner {
        actor,
        keep,
        verified: &verified.password_hash,
    };
    set_password(state, verified, new_password, by).await
}

/// `authmcp-gateway reset-password`: sets a user's password from the command line and ends
/// their sessions (recorded with the actor `cli`).
pub async fn cli_reset_password(
    state: &AppState,
    username: &str,
    new_password: &str,
) -> Result<User, ApiError> {
    let key = normalize_username(username);
    let user = found(db::users::find_by_username(&state.db.pool, &key).await?)?;
    set_password(state, &user, new_password, PasswordBy::Cli).await?;
    Ok(to_user(&user))
}

/// Deletes a user (their sessions and API keys go with them); never the last enabled admin.
pub async fn admin_delete_user(
    state: &AppState,
    actor: &Actor<'_>,
    id: i64,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await?;
    db::users::lock_admins(&mut tx, state.db.backend).await?;
    let row = found(db::users::find_by_id(&mut *tx, id).await?)?;
    if is_active_admin(&row) && db::users::count_other_enabled_admins(&mut *tx, id).await? == 0 {
        return Err(last_admin());
    }
    db::users::delete(&mut *tx, id).await?;
    // Their connected backend accounts go with them.
    db::backend_tokens::delete_user(&mut *tx, id).await?;
    audit(
        &mut *tx,
        actor,
        "user.delete",
        "user",
        Some(id.to_string()),
        Some(snapshot(&to_user(&row))),
        None,
    )
    .await?;
    tx.commit().await?;
    state.auth_cache.invalidate_user(id);
    state.mcp.forget_user(id);
    Ok(())
}

fn to_api_key(row: &db::api_keys::ApiKeyRow) -> ApiKey {
    ApiKey {
        id: row.id,
        user_id: row.user_id,
        name: row.name.clone(),
        prefix: row.prefix.clone(),
        servers: row
            .servers
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok()),
        created_at: row.created_at,
        expires_at: row.expires_at,
        last_used_at: row.last_used_at,
        revoked: row.revoked_at.is_some(),
    }
}

/// Server names as used in `/mcp/{name}`: 1–64 of `a–z 0–9 - _`, starting with a letter or digit.
pub fn validate_server_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid server name (a-z, 0-9, '-', '_'; at most 64)"
        ))
    }
}

/// The URL segment for a display name: lowercase ASCII letters and digits, every other run of
/// characters one `-` (`GitHub MCP` → `github-mcp`), at most 64; `None` when nothing is left.
pub fn server_name_from(display: &str) -> Option<String> {
    let mut out = String::new();
    for c in display.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c == '_' {
            out.push('_');
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    // A segment starts with a letter or digit (`_` may lead the display name).
    let out: String = out
        .trim_start_matches(['_', '-'])
        .trim_end_matches('-')
        .chars()
        .take(64)
        .collect();
    let out = out.trim_end_matches('-').to_string();
    validate_server_name(&out).ok().map(|()| out)
}

/// A display name: 1–100 characters, no control or invisible characters, no surrounding
/// spaces.
pub fn validate_display_name(display: &str) -> Result<(), String> {
    let ok = (1..=100).contains(&display.chars().count())
        && display.trim() == display
        && !display
            .chars()
            .any(|c| c.is_control() || crate::mcp::message::invisible(c));
    if ok {
        Ok(())
    } else {
        Err("a display name is 1 to 100 characters, without control or invisible characters or surrounding spaces".into())
    }
}

/// Creates an API key for `user_id`; the secret is returned here and never again.
pub async fn create_api_key(
    state: &AppState,
    user_id: i64,
    req: &CreateApiKey,
    actor: &Actor<'_>,
) -> Result<CreatedApiKey, ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::validation(
            "name",
            "name must be 1 to 100 characters",
        ));
    }
    if req.expires_in_days == Some(0) || req.expires_in_days.is_some_and(|d| d > 3650) {
        return Err(ApiError::validation(
            "expires_in_days",
            "expires_in_days must be 1 to 3650",
        ));
    }
    let servers = match &req.servers {
        None => None,
        Some(list) => {
            for name in list {
                validate_server_name(name).map_err(|m| ApiError::validation("servers", m))?;
            }
            let mut list = list.clone();
            list.sort();
            list.dedup();
            Some(serde_json::to_string(&list).map_err(anyhow::Error::from)?)
        }
    };
    found(db::users::find_by_id(&state.db.pool, user_id).await?)?;
    let secret = random_token(API_KEY_PREFIX)?;
    let prefix: String = secret.chars().take(API_KEY_PREFIX.len() + 6).collect();
    let now = db::now();
    let mut tx = state.db.begin().await?;
    let id = db::api_keys::insert(
        &mut *tx,
        &db::api_keys::NewApiKey {
            user_id,
            name,
            prefix: &prefix,
            key_hash: &hash_token(&secret),
            servers: servers.as_deref(),
            created_at: now,
            expires_at: req.expires_in_days.map(|d| now + i64::from(d) * 86_400),
        },
    )
    .await?;
    let row = db::api_keys::find(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("no such API key"))?;
    let key = to_api_key(&row);
    audit(
        &mut *tx,
        actor,
        "api_key.create",
        "api_key",
        Some(id.to_string()),
        None,
        Some(json!({ "user_id": user_id, "name": key.name, "servers": key.servers })),
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedApiKey { key, secret })
}

pub async fn list_api_keys(state: &AppState, user_id: i64) -> Result<Vec<ApiKey>, ApiError> {
    Ok(db::api_keys::list_for_user(&state.db.pool, user_id)
        .await?
        .iter()
        .map(to_api_key)
        .collect())
}

/// Revokes one of `user_id`'s keys; it stops working on the next request.
pub async fn revoke_api_key(
    state: &AppState,
    user_id: i64,
    key_id: i64,
    actor: &Actor<'_>,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await?;
    if db::api_keys::revoke(&mut *tx, key_id, user_id, db::now()).await? == 0 {
        return Err(ApiError::NotFound("no such API key"));
    }
    audit(
        &mut *tx,
        actor,
        "api_key.revoke",
        "api_key",
        Some(key_id.to_string()),
        None,
        Some(json!({ "user_id": user_id })),
    )
    .await?;
    tx.commit().await?;
    state.auth_cache.invalidate_api_key(key_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_names_give_url_segments() {
        assert_eq!(
            server_name_from("GitHub MCP").as_deref(),
            Some("github-mcp")
        );
        assert_eq!(
            server_name_from("  Jira / Confluence (prod) ").as_deref(),
            Some("jira-confluence-prod")
        );
        assert_eq!(
            server_name_from("my_server 2").as_deref(),
            Some("my_server-2")
        );
        assert_eq!(
            server_name_from("Ünïcode Tools").as_deref(),
            Some("n-code-tools")
        );
        assert_eq!(server_name_from("!!!"), None);
        assert_eq!(
            server_name_from("_private tools").as_deref(),
            Some("private-tools")
        );
        assert_eq!(server_name_from("日本語"), None);
        assert!(validate_display_name("GitHub MCP").is_ok());
        assert!(validate_display_name(" padded").is_err());
        assert!(validate_display_name("zero\u{200b}width").is_err());
        assert!(validate_display_name(&"x".repeat(101)).is_err());
    }

    proptest! {
        // Whatever an admin types, a segment is derived whenever it has a letter or digit, and
        // deriving from a segment gives it back (a name shown as derived is the one used).
        #[test]
        fn display_names_with_a_letter_or_digit_get_a_stable_segment(display in ".{0,120}") {
            let derived = server_name_from(&display);
            prop_assert_eq!(
                derived.is_some(),
                display.chars().any(|c| c.is_ascii_alphanumeric()),
                "{:?} -> {:?}", display, derived
            );
            if let Some(name) = derived {
                prop_assert_eq!(server_name_from(&name), Some(name.clone()), "{}", name);
            }
        }
    }
}
