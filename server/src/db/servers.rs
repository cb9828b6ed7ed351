//! The `mcp_servers`, `mcp_permissions` and `mcp_activity` tables.

use sqlx::{AnyExecutor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct ServerRow {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub description: Option<String>,
    pub enabled: i64,
    pub transport: String,
    pub timeout_ms: i64,
    pub credential_type: Option<String>,
    pub credential_header: Option<String>,
    pub credential: Option<Vec<u8>>,
    pub credential_hint: Option<String>,
    /// The aggregated endpoint's name prefix; `None` = the server's name.
    pub tool_prefix: Option<String>,
    /// Suspicious-payload detection: `off`, `log` or `block`.
    pub detection: String,
    /// Tool-definition pinning: `off`, `warn` or `quarantine`.
    pub tool_pinning: String,
    /// What the UI shows; `None`: the name.
    pub display_name: Option<String>,
    /// The team that owns the server.
    pub team_id: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

pub async fn list(db: impl AnyExecutor<'_>) -> Result<Vec<ServerRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, name, url, description, enabled, transport, timeout_ms, credential_type,
                credential_header, credential, credential_hint, tool_prefix, detection, tool_pinning,
                display_name, team_id, created_at, updated_at
         from mcp_servers order by name",
    )
    .fetch_all(db)
    .await
}

pub async fn find(db: impl AnyExecutor<'_>, id: i64) -> Result<Option<ServerRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, name, url, description, enabled, transport, timeout_ms, credential_type,
                credential_header, credential, credential_hint, tool_prefix, detection, tool_pinning,
                display_name, team_id, created_at, updated_at
         from mcp_servers where id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Inserts the row (without credential) and returns its id.
pub async fn insert(db: impl AnyExecutor<'_>, row: &ServerRow) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "insert into mcp_servers (name, url, description, enabled, transport, timeout_ms,
                                  created_at, updated_at, tool_prefix, detection, tool_pinning,
                                  display_name, team_id)
         values ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11, $12)
         returning id",
    )
    .bind(&row.name)
    .bind(&row.url)
    .bind(&row.description)
    .bind(row.enabled)
    .bind(&row.transport)
    .bind(row.timeout_ms)
    .bind(row.created_at)
    .bind(&row.tool_prefix)
    .bind(&row.detection)
    .bind(&row.tool_pinning)
    .bind(&row.display_name)
    .bind(row.team_id)
    .fetch_one(db)
    .await
}

pub async fn update(db: impl AnyExecutor<'_>, row: &ServerRow) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "update mcp_servers
         set name = $1, url = $2, description = $3, enabled = $4, transport = $5,
             timeout_ms = $6, updated_at = $7, tool_prefix = $9, detection = $10,
             tool_pinning = $11, display_name = $12, team_id = $13
         where id = $8",
    )
    .bind(&row.name)
    .bind(&row.url)
    .bind(&row.description)
    .bind(row.enabled)
    .bind(&row.transport)
    .bind(row.timeout_ms)
    .bind(row.updated_at)
    .bind(row.id)
    .bind(&row.tool_prefix)
    .bind(&row.detection)
    .bind(&row.tool_pinning)
    .bind(&row.display_name)
    .bind(row.team_id)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

pub async fn set_credential(
    db: impl AnyExecutor<'_>,
    id: i64,
    kind: Option<&str>,
    header: Option<&str>,
    sealed: Option<&[u8]>,
    hint: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update mcp_servers
         set credential_type = $1, credential_header = $2, credential = $3, credential_hint = $4
         where id = $5",
    )
    .bind(kind)
    .bind(header)
    .bind(sealed)
    .bind(hint)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Replaces a sealed OAuth configuration (what discovery and registration found) if the
/// server's credential is still `before` of `kind`; the row counts as changed (`updated_at`),
/// so sessions and caches made under the earlier configuration are dropped.
pub async fn set_oauth_config(
    db: impl AnyExecutor<'_>,
    id: i64,
    kind: &str,
    before: &[u8],
    sealed: &[u8],
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update mcp_servers set credential = $1, updated_at = $5
         where id = $2 and credential_type = $3 and credential = $4",
    )
    .bind(sealed)
    .bind(id)
    .bind(kind)
    .bind(before)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete(db: impl AnyExecutor<'_>, id: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query("delete from mcp_servers where id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}

/// Server ids granted to the user (whether or not they are a member of the server's team).
pub async fn grants_of(db: impl AnyExecutor<'_>, user_id: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("select server_id from mcp_permissions where user_id = $1")
        .bind(user_id)
        .fetch_all(db)
        .await
}

/// Server ids the user may use: granted, and of a team the user is a member of (leaving a
/// team ends access to its servers whatever was granted).
pub async fn granted_servers(
    db: impl AnyExecutor<'_>,
    user_id: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "select p.server_id from mcp_permissions p
         join mcp_servers s on s.id = p.server_id
         join team_members m on m.team_id = s.team_id and m.user_id = p.user_id
         where p.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

pub async fn grant(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    server_id: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into mcp_permissions (user_id, server_id, granted_at) values ($1, $2, $3)
         on conflict (user_id, server_id) do nothing",
    )
    .bind(user_id)
    .bind(server_id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn revoke(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    server_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("delete from mcp_permissions where user_id = $1 and server_id = $2")
        .bind(user_id)
        .bind(server_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Serialised as is into the `activity-*.jsonl` log (`suspicious` as 0/1).
#[derive(Debug, Clone, Default, FromRow, serde::Serialize)]
pub struct ActivityRow {
    pub id: i64,
    pub at: i64,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub server: String,
    pub method: String,
    pub tool: Option<String>,
    pub status: String,
    pub http_status: i64,
    pub latency_ms: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub client_name: Option<String>,
    pub rpc_error_code: Option<i64>,
    /// 0/1: a suspicious-payload rule matched.
    pub suspicious: i64,
}

const ACTIVITY_COLUMNS: usize = 14;

/// Inserts activity records with multi-row statements: one statement (and one round trip to
/// the SQLite worker thread) per up to 128 rows instead of one per row, which cost a thread
/// wake-up per proxied request. Chunks are powers of two, so only eight distinct statements
/// ever reach the prepared-statement cache. SQLite gets anonymous `?` placeholders: binding
/// named ones (`$N`) looks each name up in a linear list, quadratic in the row count.
pub async fn insert_activity(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: crate::db::Backend,
    rows: &[ActivityRow],
) -> Result<(), sqlx::Error> {
    let mut rest = rows;
    while !rest.is_empty() {
        let n = if rest.len() >= 128 {
            128
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut sql = String::with_capacity(200 + n * 70);
        sql.push_str(
            "insert into mcp_activity (at, user_id, username, server, method, tool, status,
                                       http_status, latency_ms, bytes_in, bytes_out,
                                       client_name, rpc_error_code, suspicious) values ",
        );
        for i in 0..n {
            sql.push_str(if i == 0 { "(" } else { ",(" });
            for c in 0..ACTIVITY_COLUMNS {
                if c > 0 {
                    sql.push(',');
                }
                match backend {
                    crate::db::Backend::Sqlite => sql.push('?'),
                    crate::db::Backend::Postgres => {
                        sql.push('$');
                        sql.push_str(&(i * ACTIVITY_COLUMNS + c + 1).to_string());
                    }
                }
            }
            sql.push(')');
        }
        // Only placeholders are generated; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in chunk {
            q = q
                .bind(a.at)
                .bind(a.user_id)
                .bind(&a.username)
                .bind(&a.server)
                .bind(&a.method)
                .bind(&a.tool)
                .bind(&a.status)
                .bind(a.http_status)
                .bind(a.latency_ms)
                .bind(a.bytes_in)
                .bind(a.bytes_out)
                .bind(&a.client_name)
                .bind(a.rpc_error_code)
                .bind(a.suspicious);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Which activity to list; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter<'a> {
    pub server: Option<&'a str>,
    pub user_id: Option<i64>,
    /// Only servers (names) of these teams (`"1,5"`, see `team_filter!`).
    pub teams: Option<String>,
}

const ACTIVITY_WHERE: &str = concat!(
    "($1 is null or server = $1) and ($2 is null or user_id = $2) and ",
    crate::team_servers!("3")
);

/// Activity newest first.
pub async fn list_activity(
    db: impl AnyExecutor<'_>,
    filter: &ActivityFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<Vec<ActivityRow>, sqlx::Error> {
    let sql = format!(
        "select id, at, user_id, username, server, method, tool, status, http_status,
                latency_ms, bytes_in, bytes_out, client_name, rpc_error_code, suspicious
         from mcp_activity where {ACTIVITY_WHERE}
         order by id desc limit $4 offset $5"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(filter.server)
        .bind(filter.user_id)
        .bind(filter.teams.as_deref())
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await
}

pub async fn count_activity(
    db: impl AnyExecutor<'_>,
    filter: &ActivityFilter<'_>,
) -> Result<i64, sqlx::Error> {
    let sql = format!("select count(*) from mcp_activity where {ACTIVITY_WHERE}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(filter.server)
        .bind(filter.user_id)
        .bind(filter.teams.as_deref())
        .fetch_one(db)
        .await
}

/// Deletes activity older than `before` (retention).
pub async fn prune_activity(db: impl AnyExecutor<'_>, before: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query("delete from mcp_activity where at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}

#[derive(Debug, Clone, FromRow)]
pub struct StatRow {
    pub at: i64,
    pub username: Option<String>,
    pub server: String,
    pub tool: Option<String>,
    pub status: String,
    pub latency_ms: i64,
}

/// Activity since `since`, newest first, at most `limit` rows (for the stats).
pub async fn activity_since(
    db: impl AnyExecutor<'_>,
    since: i64,
    teams: Option<&str>,
    limit: i64,
) -> Result<Vec<StatRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select at, username, server, tool, status, latency_ms from mcp_activity
         where at >= $1 and ",
        crate::team_servers!("3"),
        " order by at desc limit $2"
    ))
    .bind(since)
    .bind(limit)
    .bind(teams)
    .fetch_all(db)
    .await
}
