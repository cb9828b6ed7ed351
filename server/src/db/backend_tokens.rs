//! Tokens the gateway holds toward backends (`backend_tokens`) and authorization flows toward
//! backends' authorization servers in progress (`backend_oauth_pending`).

use sqlx::{AnyExecutor, FromRow};

/// One held credential: the server's own (`user_id` 0) or a user's connected account.
#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    pub server_id: i64,
    pub user_id: i64,
    pub access_token: Option<Vec<u8>>,
    pub refresh_token: Option<Vec<u8>>,
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
    pub version: i64,
    pub lease_until: i64,
    pub status: String,
    pub last_refresh_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub refresh_count: i64,
    pub connected_at: i64,
}

macro_rules! columns {
    () => {
        "server_id, user_id, access_token, refresh_token, expires_at, scope, version, lease_until,
         status, last_refresh_at, last_error, last_error_at, refresh_count, connected_at"
    };
}

pub async fn get(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    user_id: i64,
) -> Result<Option<TokenRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        columns!(),
        " from backend_tokens where server_id = $1 and user_id = $2"
    ))
    .bind(server_id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// One user's connected accounts.
pub async fn list_user(
    db: impl AnyExecutor<'_>,
    user_id: i64,
) -> Result<Vec<TokenRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        columns!(),
        " from backend_tokens where user_id = $1 order by server_id"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// A held credential with the name of the user whose account it is.
#[derive(Debug, Clone, FromRow)]
pub struct NamedTokenRow {
    #[sqlx(flatten)]
    pub row: TokenRow,
    pub username: Option<String>,
}

/// Every held credential (at most 10,000), with user names.
pub async fn list_all(db: impl AnyExecutor<'_>) -> Result<Vec<NamedTokenRow>, sqlx::Error> {
    sqlx::query_as(
        "select t.server_id, t.user_id, t.access_token, t.refresh_token, t.expires_at, t.scope,
             t.version, t.lease_until, t.status, t.last_refresh_at, t.last_error, t.last_error_at,
             t.refresh_count, t.connected_at, u.username
         from backend_tokens t left join users u on u.id = t.user_id
         order by t.server_id, t.user_id limit 10000",
    )
    .fetch_all(db)
    .await
}

/// Creates an empty row (a client-credentials server's, before its first token) if missing.
pub async fn ensure(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    user_id: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into backend_tokens (server_id, user_id, connected_at) values ($1, $2, $3)
         on conflict (server_id, user_id) do nothing",
    )
    .bind(server_id)
    .bind(user_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Takes the right to renew the row at `version` for `lease_ms`, if nobody holds it (a lapsed
/// lease counts as free). On the database's clock, so replicas' clocks do not matter.
pub async fn claim(
    db: impl AnyExecutor<'_>,
    backend: crate::db::Backend,
    server_id: i64,
    user_id: i64,
    version: i64,
    lease_ms: i64,
) -> Result<bool, sqlx::Error> {
    let sql = match backend {
        crate::db::Backend::Postgres => concat!(
            "update backend_tokens set lease_until = ",
            "(extract(epoch from clock_timestamp()) * 1000)::bigint + $4 ",
            "where server_id = $1 and user_id = $2 and version = $3 ",
            "and lease_until < (extract(epoch from clock_timestamp()) * 1000)::bigint"
        ),
        crate::db::Backend::Sqlite => concat!(
            "update backend_tokens set lease_until = ",
            "cast((julianday('now') - 2440587.5) * 86400000 as integer) + $4 ",
            "where server_id = $1 and user_id = $2 and version = $3 ",
            "and lease_until < cast((julianday('now') - 2440587.5) * 86400000 as integer)"
        ),
    };
    let done = sqlx::query(sql)
        .bind(server_id)
        .bind(user_id)
        .bind(version)
        .bind(lease_ms)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// New tokens from the token endpoint.
#[derive(Debug, Clone)]
pub struct NewTokens {
    pub access_token: Vec<u8>,
    /// `None` keeps the stored refresh token (the server did not rotate it).
    pub refresh_token: Option<Vec<u8>>,
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
}

/// Writes refreshed tokens over the version that was read; false when another writer was first.
pub async fn store_refreshed(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    user_id: i64,
    version: i64,
    tokens: &NewTokens,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update backend_tokens set access_token = $4, refresh_token = coalesce($5, refresh_token),
             expires_at = $6, scope = coalesce($7, scope), version = version + 1, lease_until = 0,
             status = 'ok', last_refresh_at = $8, refresh_count = refresh_count + 1
         where server_id = $1 and user_id = $2 and version = $3",
    )
    .bind(server_id)
    .bind(user_id)
    .bind(version)
    .bind(&tokens.access_token)
    .bind(&tokens.refresh_token)
    .bind(tokens.expires_at)
    .bind(&tokens.scope)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores the tokens of a completed connection (replacing any earlier one).
pub async fn store_connected(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    user_id: i64,
    tokens: &NewTokens,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into backend_tokens (server_id, user_id, access_token, refresh_token, expires_at,
             scope, version, lease_until, status, last_refresh_at, connected_at)
         values ($1, $2, $3, $4, $5, $6, 1, 0, 'ok', $7, $7)
         on conflict (server_id, user_id) do update set
             access_token = excluded.access_token, refresh_token = excluded.refresh_token,
             expires_at = excluded.expires_at, scope = excluded.scope,
             version = backend_tokens.version + 1, lease_until = 0, status = 'ok',
             last_refresh_at = excluded.last_refresh_at, last_error = null, last_error_at = null,
             refresh_count = 0, connected_at = excluded.connected_at",
    )
    .bind(server_id)
    .bind(user_id)
    .bind(&tokens.access_token)
    .bind(&tokens.refresh_token)
    .bind(tokens.expires_at)
    .bind(&tokens.scope)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Records a failed renewal of the row at `version` and gives up the lease; `dead` marks the
/// row as needing a reconnect (the refresh token or the client was refused). A row written
/// meanwhile (reconnected) is left alone.
pub async fn record_failure(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    user_id: i64,
    version: i64,
    error: &str,
    dead: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update backend_tokens set last_error = $3, last_error_at = $4, lease_until = 0,
             status = case when $5 = 1 then 'failed' else status end,
             version = version + $5
         where server_id = $1 and user_id = $2 and version = $6",
    )
    .bind(server_id)
    .bind(user_id)
    .bind(error)
    .bind(now)
    .bind(i64::from(dead))
    .bind(version)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    user_id: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("delete from backend_tokens where server_id = $1 and user_id = $2")
        .bind(server_id)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every row of a server (its kind of credential changed: earlier tokens are void).
pub async fn delete_server(db: impl AnyExecutor<'_>, server_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("delete from backend_tokens where server_id = $1")
        .bind(server_id)
        .execute(db)
        .await?;
    Ok(())
}

/// A user's connected accounts (the user is deleted).
pub async fn delete_user(db: impl AnyExecutor<'_>, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("delete from backend_tokens where user_id = $1 and user_id <> 0")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// An authorization flow in progress (`backend_oauth_pending`).
#[derive(Debug, Clone, FromRow)]
pub struct PendingRow {
    pub state_hash: String,
    pub server_id: i64,
    pub user_id: i64,
    pub started_by: i64,
    pub browser_hash: String,
    pub verifier: Vec<u8>,
    pub redirect_uri: String,
    /// The authorization server the flow went to.
    pub issuer: String,
    pub return_to: String,
    pub expires_at: i64,
}

pub async fn insert_pending(db: impl AnyExecutor<'_>, row: &PendingRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into backend_oauth_pending (state_hash, server_id, user_id, started_by,
             browser_hash, verifier, redirect_uri, issuer, return_to, expires_at)
         values ($1, $2, $3, $9, $4, $5, $6, $10, $7, $8)",
    )
    .bind(&row.state_hash)
    .bind(row.server_id)
    .bind(row.user_id)
    .bind(&row.browser_hash)
    .bind(&row.verifier)
    .bind(&row.redirect_uri)
    .bind(&row.return_to)
    .bind(row.expires_at)
    .bind(row.started_by)
    .bind(&row.issuer)
    .execute(db)
    .await?;
    Ok(())
}

/// Removes and returns a pending flow (each state is used once).
pub async fn take_pending(
    db: impl AnyExecutor<'_>,
    state_hash: &str,
) -> Result<Option<PendingRow>, sqlx::Error> {
    sqlx::query_as(
        "delete from backend_oauth_pending where state_hash = $1
         returning state_hash, server_id, user_id, started_by, browser_hash, verifier, redirect_uri,
             issuer, return_to, expires_at",
    )
    .bind(state_hash)
    .fetch_optional(db)
    .await
}

/// Flows someone started and has in progress (bounded per person).
pub async fn count_pending(
    db: impl AnyExecutor<'_>,
    started_by: i64,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from backend_oauth_pending where started_by = $1 and expires_at > $2",
    )
    .bind(started_by)
    .bind(now)
    .fetch_one(db)
    .await
}

pub async fn prune_pending(db: impl AnyExecutor<'_>, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("delete from backend_oauth_pending where expires_at <= $1")
        .bind(now)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
