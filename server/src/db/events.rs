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

pub async fn list_security_events(
    db: impl AnyExecutor<'_>,
    event_type: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<SecurityEventRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, event_type, severity, user_id, username, ip, user_agent, endpoint, server,
                tool, details, created_at
         from security_events
         where ($1 is null or event_type = $1)
         order by id desc
         limit $2 offset $3",
    )
    .bind(event_type)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

pub async fn count_security_events(
    db: impl AnyExecutor<'_>,
    event_type: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from security_events where ($1 is null or event_type = $1)")
        .bind(event_type)
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
}

pub async fn insert_audit(db: impl AnyExecutor<'_>, a: &AuditRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_log
           (actor_user_id, actor_username, action, target_type, target_id, before_state,
            after_state, ip, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
    .execute(db)
    .await?;
    Ok(())
}

pub async fn list_audit(
    db: impl AnyExecutor<'_>,
    limit: i64,
    offset: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "select id, actor_user_id, actor_username, action, target_type, target_id, before_state,
                after_state, ip, created_at
         from audit_log order by id desc limit $1 offset $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

pub async fn count_audit(db: impl AnyExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from audit_log")
        .fetch_one(db)
        .await
}
