//! The `security_events` and `audit_log` tables.

use sqlx::{AnyExecutor, FromRow};

#[derive(Debug, Clone, Default, FromRow)]
pub struct SecurityEventRow {
    pub id: i64,
    pub event_type: String,
    pub severity: String,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub endpoint: Option<String>,
    pub server: Option<String>,
    pub tool: Option<String>,
    pub details: Option<String>,
    pub created_at: i64,
}

pub async fn insert_security_event(
    db: impl AnyExecutor<'_>,
    e: &SecurityEventRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into security_events
           (event_type, severity, user_id, username, ip, user_agent, endpoint, server, tool,
            details, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&e.event_type)
    .bind(&e.severity)
    .bind(e.user_id)
    .bind(&e.username)
    .bind(&e.ip)
    .bind(&e.user_agent)
    .bind(&e.endpoint)
    .bind(&e.server)
    .bind(&e.tool)
    .bind(&e.details)
    .bind(e.created_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Filters of the security-event list and export; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub severity: Option<String>,
    pub user_id: Option<i64>,
    pub server: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    /// Only ids below this (keyset pagination for the export).
    pub before_id: Option<i64>,
    /// Only events about servers of these teams (`"1,5"`, see `team_filter!`); events about
    /// no server are then left out.
    pub teams: Option<String>,
}

const EVENT_WHERE: &str = concat!(
    "($1 is null or event_type = $1)
           and ($2 is null or severity = $2)
           and ($3 is null or user_id = $3)
           and ($4 is null or server = $4)
           and ($5 is null or created_at >= $5)
           and ($6 is null or created_at < $6)
           and ($7 is null or id < $7)
           and ",
    crate::team_servers!("8")
);

pub async fn list_security_events(
    db: impl AnyExecutor<'_>,
    filter: &EventFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<SecurityEventRow>, sqlx::Error> {
    let sql = format!(
        "select id, event_type, severity, user_id, username, ip, user_agent, endpoint, server,
                tool, details, created_at
         from security_events
         where {EVENT_WHERE}
         order by id desc
         limit $9 offset $10"
    );
    // The statement text is a constant; every value is bound.
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(filter.event_type.as_deref())
        .bind(filter.severity.as_deref())
        .bind(filter.user_id)
        .bind(filter.server.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before_id)
        .bind(filter.teams.as_deref())
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await
}

pub async fn count_security_events(
    db: impl AnyExecutor<'_>,
    filter: &EventFilter,
) -> Result<i64, sqlx::Error> {
    let sql = format!("select count(*) from security_events where {EVENT_WHERE}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(filter.event_type.as_deref())
        .bind(filter.severity.as_deref())
        .bind(filter.user_id)
        .bind(filter.server.as_deref())
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before_id)
        .bind(filter.teams.as_deref())
        .fetch_one(db)
        .await
}

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub actor_user_id: Option<i64>,
    pub actor_username: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
    pub ip: Option<String>,
    pub created_at: i64,
    /// The team the entry concerns, if any.
    pub team_id: Option<i64>,
}

pub async fn insert_audit(db: impl AnyExecutor<'_>, a: &AuditRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log
           (actor_user_id, actor_username, action, target_type, target_id, before_state,
            after_state, ip, created_at, team_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(a.actor_user_id)
    .bind(&a.actor_username)
    .bind(&a.action)
    .bind(&a.target_type)
    .bind(&a.target_id)
    .bind(&a.before_state)
    .bind(&a.after_state)
    .bind(&a.ip)
    .bind(a.created_at)
    .bind(a.team_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Which audit entries (`kind`): `""` all, `sign_in`, `sign_out`, `authorization` (OAuth
/// consents given), `change` (everything else: what admins and users changed).
macro_rules! audit_kind {
    () => {
        "($1 = ''
          or ($1 = 'sign_in' and action = 'auth.sign_in')
          or ($1 = 'sign_out' and action = 'auth.sign_out')
          or ($1 = 'authorization' and action = 'oauth.authorize')
          or ($1 = 'change' and action not in ('auth.sign_in', 'auth.sign_out', 'oauth.authorize')))"
    };
}

pub const AUDIT_KINDS: [&str; 4] = ["sign_in", "sign_out", "authorization", "change"];

/// Audit entries of `kind`, newest first; of the teams in `teams` only when given (then entries
/// about no team are left out).
pub async fn list_audit(
    db: impl AnyExecutor<'_>,
    kind: &str,
    teams: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select id, actor_user_id, actor_username, action, target_type, target_id, before_state,
                after_state, ip, created_at, team_id
         from audit_log where ",
        audit_kind!(),
        " and ",
        crate::team_filter!("4", "team_id"),
        " order by id desc limit $2 offset $3"
    ))
    .bind(kind)
    .bind(limit)
    .bind(offset)
    .bind(teams)
    .fetch_all(db)
    .await
}

pub async fn count_audit(
    db: impl AnyExecutor<'_>,
    kind: &str,
    teams: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(concat!(
        "select count(*) from audit_log where ",
        audit_kind!(),
        " and ",
        crate::team_filter!("2", "team_id")
    ))
    .bind(kind)
    .bind(teams)
    .fetch_one(db)
    .await
}

/// Audit rows after `after_id`, oldest first (the JSONL tailer).
pub async fn audit_after(
    db: impl AnyExecutor<'_>,
    after_id: i64,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, actor_user_id, actor_username, action, target_type, target_id, before_state,
                after_state, ip, created_at, team_id
         from audit_log where id > $1 order by id limit $2",
    )
    .bind(after_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn max_audit_id(db: impl AnyExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select coalesce(max(id), 0) from audit_log")
        .fetch_one(db)
        .await
}

/// Deletes security events older than `before` (retention).
/// Sign-ins, sign-outs and OAuth consents older than `before` (admin changes stay: they are
/// the record of who changed what).
pub async fn prune_auth_audit(db: impl AnyExecutor<'_>, before: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "delete from audit_log
         where created_at < $1 and action in ('auth.sign_in', 'auth.sign_out', 'oauth.authorize')",
    )
    .bind(before)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

pub async fn prune_security_events(
    db: impl AnyExecutor<'_>,
    before: i64,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query("delete from security_events where created_at < $1")
        .bind(before)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}
