//! The `mcp_tool_rules` table: per-tool allow/deny rules of a user or an API key.

use sqlx::{AnyExecutor, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct ToolRuleRow {
    pub server_id: i64,
    pub server: String,
    pub pattern: String,
    pub effect: String,
}

/// Whose rules: a user's, or one API key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    User(i64),
    ApiKey(i64),
}

impl Subject {
    fn ids(self) -> (Option<i64>, Option<i64>) {
        match self {
            Subject::User(id) => (Some(id), None),
            Subject::ApiKey(id) => (None, Some(id)),
        }
    }
}

pub async fn list(
    db: impl AnyExecutor<'_>,
    subject: Subject,
) -> Result<Vec<ToolRuleRow>, sqlx::Error> {
    let (user, key) = subject.ids();
    sqlx::query_as(
        "select r.server_id, s.name as server, r.pattern, r.effect
         from mcp_tool_rules r join mcp_servers s on s.id = r.server_id
         where (r.user_id = $1 and $1 is not null) or (r.api_key_id = $2 and $2 is not null)
         order by s.name, r.id",
    )
    .bind(user)
    .bind(key)
    .fetch_all(db)
    .await
}

/// Removes every rule of the subject (the caller inserts the new set in the same transaction).
pub async fn clear(db: impl AnyExecutor<'_>, subject: Subject) -> Result<(), sqlx::Error> {
    let (user, key) = subject.ids();
    sqlx::query(
        "delete from mcp_tool_rules
         where (user_id = $1 and $1 is not null) or (api_key_id = $2 and $2 is not null)",
    )
    .bind(user)
    .bind(key)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert(
    db: impl AnyExecutor<'_>,
    subject: Subject,
    server_id: i64,
    pattern: &str,
    effect: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let (user, key) = subject.ids();
    sqlx::query(
        "insert into mcp_tool_rules (user_id, api_key_id, server_id, pattern, effect, created_at)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user)
    .bind(key)
    .bind(server_id)
    .bind(pattern)
    .bind(effect)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}
