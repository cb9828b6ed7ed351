//! Pinned tool definitions (`tool_pins`): per server × tool, the approved definition and the
//! one the backend sent last. Writes that decide something compare first (`seen_fp`), so two
//! replicas or two admins cannot both win.

use sqlx::{AnyExecutor, FromRow};

/// What the gate needs of a pin (no definitions).
#[derive(Debug, Clone, FromRow)]
pub struct PinState {
    pub server_id: i64,
    pub name: String,
    pub approved_fp: Option<String>,
    pub seen_fp: String,
    pub status: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct PinRow {
    pub server_id: i64,
    pub server_name: String,
    pub name: String,
    pub approved_fp: Option<String>,
    pub approved_def: Option<String>,
    pub seen_fp: String,
    pub seen_def: String,
    pub status: String,
    pub first_seen: i64,
    pub changed_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
}

macro_rules! row {
    () => {
        "select p.server_id, s.name as server_name, p.name, p.approved_fp,
        p.approved_def, p.seen_fp, p.seen_def, p.status, p.first_seen, p.changed_at,
        p.decided_at, p.decided_by
    from tool_pins p join mcp_servers s on s.id = p.server_id"
    };
}

pub async fn states(
    db: impl AnyExecutor<'_>,
    server_id: Option<i64>,
) -> Result<Vec<PinState>, sqlx::Error> {
    sqlx::query_as(
        "select server_id, name, approved_fp, seen_fp, status from tool_pins
         where $1 = 0 or server_id = $1",
    )
    .bind(server_id.unwrap_or(0))
    .fetch_all(db)
    .await
}

/// Pins of one server, or (`server_id` 0) every pin whose status is `status` (any when empty),
/// of servers of `teams` only when given (`team_filter!`).
pub async fn list(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    status: &str,
    teams: Option<&str>,
    limit: i64,
) -> Result<Vec<PinRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        row!(),
        " where ($1 = 0 or p.server_id = $1) and ($2 = '' or p.status = $2) and p.name <> ''
           and ",
        crate::team_filter!("4", "s.team_id"),
        " order by p.changed_at desc, s.name, p.name limit $3"
    ))
    .bind(server_id)
    .bind(status)
    .bind(limit)
    .bind(teams)
    .fetch_all(db)
    .await
}

pub async fn find(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    name: &str,
) -> Result<Option<PinRow>, sqlx::Error> {
    sqlx::query_as(concat!(row!(), " where p.server_id = $1 and p.name = $2"))
        .bind(server_id)
        .bind(name)
        .fetch_optional(db)
        .await
}

/// A tool seen for the first time: approved when it is part of the server's first list
/// (`approved`), pending otherwise. `false` when a row already existed.
pub async fn insert(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    name: &str,
    fp: &str,
    def: &str,
    approved: bool,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "insert into tool_pins (server_id, name, approved_fp, approved_def, seen_fp, seen_def,
                                status, first_seen, changed_at, decided_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
         on conflict (server_id, name) do nothing",
    )
    .bind(server_id)
    .bind(name)
    .bind(approved.then_some(fp))
    .bind(approved.then_some(def))
    .bind(fp)
    .bind(def)
    .bind(if approved { "approved" } else { "pending" })
    .bind(now)
    .bind(approved.then_some("first seen"))
    .execute(db)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// The backend now sends another definition: recorded (over the one read, `before_fp`), the
/// status following from whether it is the approved one. `false` when another writer got
/// there first.
pub async fn record_seen(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    name: &str,
    before_fp: &str,
    fp: &str,
    def: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "update tool_pins
         set seen_fp = $4, seen_def = $5, changed_at = $6,
             status = case when approved_fp = $4 then 'approved' else 'pending' end
         where server_id = $1 and name = $2 and seen_fp = $3",
    )
    .bind(server_id)
    .bind(name)
    .bind(before_fp)
    .bind(fp)
    .bind(def)
    .bind(now)
    .execute(db)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// An admin approves (the seen definition becomes the approved one) or rejects the definition
/// with fingerprint `fp`, only if it is still the one seen. `false` otherwise.
pub async fn decide(
    db: impl AnyExecutor<'_>,
    server_id: i64,
    name: &str,
    fp: &str,
    approve: bool,
    by: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let sql = if approve {
        "update tool_pins
         set approved_fp = seen_fp, approved_def = seen_def, status = 'approved',
             decided_at = $4, decided_by = $5
         where server_id = $1 and name = $2 and seen_fp = $3"
    } else {
        "update tool_pins
         set status = 'rejected', decided_at = $4, decided_by = $5
         where server_id = $1 and name = $2 and seen_fp = $3 and status <> 'approved'"
    };
    let res = sqlx::query(sql)
        .bind(server_id)
        .bind(name)
        .bind(fp)
        .bind(now)
        .bind(by)
        .execute(db)
        .await?;
    Ok(res.rows_affected() == 1)
}
