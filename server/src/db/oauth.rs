//! The `oauth_clients`, `oauth_codes` and `oauth_grants` tables.

use sqlx::{AnyExecutor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct ClientRow {
    pub id: i64,
    pub client_id: String,
    /// `dynamic`, `admin` or `cimd`.
    pub kind: String,
    pub name: String,
    /// JSON array.
    pub redirect_uris: String,
    pub token_endpoint_auth_method: String,
    pub secret_hash: Option<String>,
    pub application_type: String,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub scope: Option<String>,
    pub registered_ip: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
}

impl ClientRow {
    pub fn redirect_uris(&self) -> Vec<String> {
        serde_json::from_str(&self.redirect_uris).unwrap_or_default()
    }
}

const CLIENT_COLUMNS: &str = "id, client_id, kind, name, redirect_uris, token_endpoint_auth_method,
     secret_hash, application_type, client_uri, logo_uri, scope, registered_ip, created_at,
     updated_at, revoked_at";

pub async fn insert_client(db: impl AnyExecutor<'_>, c: &ClientRow) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "insert into oauth_clients (client_id, kind, name, redirect_uris,
             token_endpoint_auth_method, secret_hash, application_type, client_uri, logo_uri,
             scope, registered_ip, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
         returning id",
    )
    .bind(&c.client_id)
    .bind(&c.kind)
    .bind(&c.name)
    .bind(&c.redirect_uris)
    .bind(&c.token_endpoint_auth_method)
    .bind(&c.secret_hash)
    .bind(&c.application_type)
    .bind(&c.client_uri)
    .bind(&c.logo_uri)
    .bind(&c.scope)
    .bind(&c.registered_ip)
    .bind(c.created_at)
    .fetch_one(db)
    .await
}

/// Refreshes what a metadata document said about a CIMD client (not revoked ones).
pub async fn update_cimd_client(
    db: impl AnyExecutor<'_>,
    c: &ClientRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update oauth_clients
         set name = $1, redirect_uris = $2, client_uri = $3, logo_uri = $4, updated_at = $5
         where id = $6",
    )
    .bind(&c.name)
    .bind(&c.redirect_uris)
    .bind(&c.client_uri)
    .bind(&c.logo_uri)
    .bind(c.updated_at)
    .bind(c.id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn find_client(
    db: impl AnyExecutor<'_>,
    client_id: &str,
) -> Result<Option<ClientRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {CLIENT_COLUMNS} from oauth_clients where client_id = $1"
    )))
    .bind(client_id)
    .fetch_optional(db)
    .await
}

pub async fn find_client_by_key(
    db: impl AnyExecutor<'_>,
    id: i64,
) -> Result<Option<ClientRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {CLIENT_COLUMNS} from oauth_clients where id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn list_clients(db: impl AnyExecutor<'_>) -> Result<Vec<ClientRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {CLIENT_COLUMNS} from oauth_clients order by created_at desc, id desc"
    )))
    .fetch_all(db)
    .await
}

pub async fn revoke_client(
    db: impl AnyExecutor<'_>,
    id: i64,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update oauth_clients set revoked_at = $1 where id = $2 and revoked_at is null",
    )
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

#[derive(Debug, Clone, FromRow)]
pub struct CodeRow {
    pub code_hash: String,
    pub client_key: i64,
    pub user_id: i64,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub session_id: Option<String>,
}

pub async fn insert_code(db: impl AnyExecutor<'_>, c: &CodeRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into oauth_codes (code_hash, client_key, user_id, redirect_uri, code_challenge,
                                  resource, scope, created_at, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&c.code_hash)
    .bind(c.client_key)
    .bind(c.user_id)
    .bind(&c.redirect_uri)
    .bind(&c.code_challenge)
    .bind(&c.resource)
    .bind(&c.scope)
    .bind(c.created_at)
    .bind(c.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn find_code(
    db: impl AnyExecutor<'_>,
    code_hash: &str,
) -> Result<Option<CodeRow>, sqlx::Error> {
    sqlx::query_as(
        "select code_hash, client_key, user_id, redirect_uri, code_challenge, resource, scope,
                created_at, expires_at, used_at, session_id
         from oauth_codes where code_hash = $1",
    )
    .bind(code_hash)
    .fetch_optional(db)
    .await
}

/// Spends a code (only once: 0 rows when it was spent already).
pub async fn spend_code(
    db: impl AnyExecutor<'_>,
    code_hash: &str,
    now: i64,
    session_id: &str,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update oauth_codes set used_at = $1, session_id = $2
         where code_hash = $3 and used_at is null",
    )
    .bind(now)
    .bind(session_id)
    .bind(code_hash)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

/// Marks a code spent without a session (a failed exchange burns it).
pub async fn burn_code(
    db: impl AnyExecutor<'_>,
    code_hash: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("update oauth_codes set used_at = $1 where code_hash = $2 and used_at is null")
        .bind(now)
        .bind(code_hash)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn prune_codes(db: impl AnyExecutor<'_>, before: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query("delete from oauth_codes where expires_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}

#[derive(Debug, Clone, FromRow)]
pub struct GrantRow {
    pub user_id: i64,
    pub client_key: i64,
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    /// Space-separated resources consented to.
    pub resources: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

pub async fn find_grant(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    client_key: i64,
) -> Result<Option<GrantRow>, sqlx::Error> {
    sqlx::query_as(
        "select g.user_id, g.client_key, c.client_id, c.name as client_name, g.scope,
                g.resources, g.created_at, g.last_used_at
         from oauth_grants g join oauth_clients c on c.id = g.client_key
         where g.user_id = $1 and g.client_key = $2",
    )
    .bind(user_id)
    .bind(client_key)
    .fetch_optional(db)
    .await
}

/// Grants of a user, or of a client (newest first).
pub async fn list_grants(
    db: impl AnyExecutor<'_>,
    user_id: Option<i64>,
    client_key: Option<i64>,
) -> Result<Vec<GrantRow>, sqlx::Error> {
    sqlx::query_as(
        "select g.user_id, g.client_key, c.client_id, c.name as client_name, g.scope,
                g.resources, g.created_at, g.last_used_at
         from oauth_grants g join oauth_clients c on c.id = g.client_key
         where ($1 is null or g.user_id = $1) and ($2 is null or g.client_key = $2)
         order by g.created_at desc",
    )
    .bind(user_id)
    .bind(client_key)
    .fetch_all(db)
    .await
}

pub async fn upsert_grant(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    client_key: i64,
    scope: &str,
    resources: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into oauth_grants (user_id, client_key, scope, resources, created_at, last_used_at)
         values ($1, $2, $3, $5, $4, $4)
         on conflict (user_id, client_key)
         do update set scope = excluded.scope, resources = excluded.resources",
    )
    .bind(user_id)
    .bind(client_key)
    .bind(scope)
    .bind(now)
    .bind(resources)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn touch_grant(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    client_key: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("update oauth_grants set last_used_at = $1 where user_id = $2 and client_key = $3")
        .bind(now)
        .bind(user_id)
        .bind(client_key)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete_grant(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    client_key: i64,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query("delete from oauth_grants where user_id = $1 and client_key = $2")
        .bind(user_id)
        .bind(client_key)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}

pub async fn delete_client_grants(
    db: impl AnyExecutor<'_>,
    client_key: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("delete from oauth_grants where client_key = $1")
        .bind(client_key)
        .execute(db)
        .await?;
    Ok(())
}

/// What a user approved for a client on one resource: `(redirect URI, scopes)` per redirect
/// URI they saw.
pub async fn grant_scopes_on(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    client_key: i64,
    resource: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "select redirect_uri, scope from oauth_grant_scopes
         where user_id = $1 and client_key = $2 and resource = $3",
    )
    .bind(user_id)
    .bind(client_key)
    .bind(resource)
    .fetch_all(db)
    .await
}

/// The redirect URIs a user approved a client for (any resource).
pub async fn approved_redirects(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    client_key: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "select distinct redirect_uri from oauth_grant_scopes
         where user_id = $1 and client_key = $2",
    )
    .bind(user_id)
    .bind(client_key)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Records the scopes approved for one resource and redirect URI (the grant row must exist).
pub async fn set_grant_scope(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    client_key: i64,
    resource: &str,
    redirect_uri: &str,
    scope: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into oauth_grant_scopes (user_id, client_key, resource, redirect_uri, scope,
                                         approved_at)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (user_id, client_key, resource, redirect_uri)
         do update set scope = excluded.scope, approved_at = excluded.approved_at",
    )
    .bind(user_id)
    .bind(client_key)
    .bind(resource)
    .bind(redirect_uri)
    .bind(scope)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets every consent given for a resource and spends its unexchanged codes (its server
/// was renamed or removed, or a new one takes the name).
pub async fn forget_resource(
    db: &sqlx::AnyPool,
    resource: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("delete from oauth_grant_scopes where resource = $1")
        .bind(resource)
        .execute(db)
        .await?;
    sqlx::query("update oauth_codes set used_at = $2 where resource = $1 and used_at is null")
        .bind(resource)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// Every (user, client) grant's per-resource scopes, for listing (`(user, client, resource,
/// scope)`), of one user or one client.
pub async fn grant_scopes(
    db: impl AnyExecutor<'_>,
    user_id: Option<i64>,
    client_key: Option<i64>,
) -> Result<Vec<(i64, i64, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "select user_id, client_key, resource, scope from oauth_grant_scopes
         where ($1 is null or user_id = $1) and ($2 is null or client_key = $2)
         order by resource, redirect_uri",
    )
    .bind(user_id)
    .bind(client_key)
    .fetch_all(db)
    .await
}

/// Dynamically registered clients from one address that never completed an authorization
/// (those that did are not held against the address).
pub async fn count_dynamic_clients_from(
    db: impl AnyExecutor<'_>,
    ip: &str,
) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as(
        "select count(*) from oauth_clients c
         where c.kind = 'dynamic' and c.registered_ip = $1 and c.revoked_at is null
           and not exists (select 1 from oauth_grants g where g.client_key = c.id)
           and not exists (select 1 from sessions s where s.client_key = c.id)",
    )
    .bind(ip)
    .fetch_one(db)
    .await?;
    Ok(n)
}

/// Removes self-registered clients (dynamic registrations and fetched metadata documents)
/// created before `before` that have no grant and no session; their codes go with them. A
/// metadata-document client is fetched again when next used.
pub async fn prune_unused_clients(
    db: impl AnyExecutor<'_>,
    before: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "delete from oauth_clients
         where kind in ('dynamic', 'cimd') and created_at < $1
           and not exists (select 1 from oauth_grants g where g.client_key = oauth_clients.id)
           and not exists (select 1 from sessions s where s.client_key = oauth_clients.id)",
    )
    .bind(before)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
