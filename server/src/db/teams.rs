//! Teams (`teams`), their members (`team_members`) and which team each server name belongs to
//! (`server_names`, kept after a server is deleted so its history stays with its team).
//!
//! Team filters of list queries take the caller's teams as one bound text value, `"1,5,7"`
//! (`None`: every team), matched with `team_filter!`; lists of team ids are short.

use sqlx::{AnyExecutor, FromRow};

/// True when `$n` (the bound team list, or null) admits the team id in `column`.
#[macro_export]
macro_rules! team_filter {
    ($n:literal, $column:literal) => {
        concat!(
            "($",
            $n,
            " is null or (',' || $",
            $n,
            " || ',') like ('%,' || ",
            $column,
            " || ',%'))"
        )
    };
}

/// True when `$n` (the bound team list, or null) admits the server name in column `server`:
/// names of those teams' servers, present or past (`server_names`).
#[macro_export]
macro_rules! team_servers {
    ($n:literal) => {
        concat!(
            "($",
            $n,
            " is null or server in (select n.name from server_names n where ",
            $crate::team_filter!($n, "n.team_id"),
            "))"
        )
    };
}

/// True when `$n` (the bound team list, or null) admits the user whose id is in `$user`: a
/// member of one of those teams.
#[macro_export]
macro_rules! team_member {
    ($n:literal, $user:literal) => {
        concat!(
            "($",
            $n,
            " is null or exists (select 1 from team_members m where m.user_id = ",
            $user,
            " and ",
            $crate::team_filter!($n, "m.team_id"),
            "))"
        )
    };
}

#[derive(Debug, Clone, FromRow)]
pub struct TeamRow {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub members: i64,
    pub servers: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct MemberRow {
    pub team_id: i64,
    pub user_id: i64,
    pub username: String,
    pub role: String,
    pub added_at: i64,
}

/// A user's place in a team.
#[derive(Debug, Clone, FromRow)]
pub struct Membership {
    pub team_id: i64,
    pub role: String,
}

const TEAM_SELECT: &str = "select t.id, t.name, t.created_at,
        (select count(*) from team_members m where m.team_id = t.id) as members,
        (select count(*) from mcp_servers s where s.team_id = t.id) as servers
     from teams t";

/// The teams in `teams` (`None`: all), by name.
pub async fn list(
    db: impl AnyExecutor<'_>,
    teams: Option<&str>,
) -> Result<Vec<TeamRow>, sqlx::Error> {
    let sql = format!(
        "{TEAM_SELECT} where {} order by t.name",
        team_filter!("1", "t.id")
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(teams)
        .fetch_all(db)
        .await
}

pub async fn find(db: impl AnyExecutor<'_>, id: i64) -> Result<Option<TeamRow>, sqlx::Error> {
    let sql = format!("{TEAM_SELECT} where t.id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn insert(db: impl AnyExecutor<'_>, name: &str, now: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("insert into teams (name, created_at) values ($1, $2) returning id")
        .bind(name)
        .bind(now)
        .fetch_one(db)
        .await
}

pub async fn rename(db: impl AnyExecutor<'_>, id: i64, name: &str) -> Result<u64, sqlx::Error> {
    let res = sqlx::query("update teams set name = $2 where id = $1")
        .bind(id)
        .bind(name)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}

/// Deletes a team that owns no server (0 when it has servers or does not exist).
pub async fn delete_empty(db: impl AnyExecutor<'_>, id: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "delete from teams where id = $1
           and not exists (select 1 from mcp_servers s where s.team_id = $1)",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

pub async fn members(
    db: impl AnyExecutor<'_>,
    team_id: i64,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    sqlx::query_as(
        "select m.team_id, m.user_id, u.username, m.role, m.added_at
         from team_members m join users u on u.id = m.user_id
         where m.team_id = $1 order by u.username",
    )
    .bind(team_id)
    .fetch_all(db)
    .await
}

/// Adds a member or changes their role.
pub async fn set_member(
    db: impl AnyExecutor<'_>,
    team_id: i64,
    user_id: i64,
    role: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into team_members (team_id, user_id, role, added_at) values ($1, $2, $3, $4)
         on conflict (team_id, user_id) do update set role = excluded.role",
    )
    .bind(team_id)
    .bind(user_id)
    .bind(role)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn remove_member(
    db: impl AnyExecutor<'_>,
    team_id: i64,
    user_id: i64,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query("delete from team_members where team_id = $1 and user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}

/// A user's teams and roles.
pub async fn memberships(
    db: impl AnyExecutor<'_>,
    user_id: i64,
) -> Result<Vec<Membership>, sqlx::Error> {
    sqlx::query_as("select team_id, role from team_members where user_id = $1 order by team_id")
        .bind(user_id)
        .fetch_all(db)
        .await
}

/// Whether `user_id` is a member of one of `teams` (`None`: any team, or none at all).
pub async fn is_member_of(
    db: impl AnyExecutor<'_>,
    user_id: i64,
    teams: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(concat!(
        "select count(*) from users u where u.id = $2 and ",
        team_member!("1", "u.id")
    ))
    .bind(teams)
    .bind(user_id)
    .fetch_one(db)
    .await?;
    Ok(n > 0)
}

/// Records that `name` belongs to `team_id`, unless it belongs to another team or to a deleted
/// one (then false): a server name, and the history recorded under it, never passes between
/// teams.
pub async fn claim_name(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    team_id: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "insert into server_names (name, team_id) values ($1, $2) on conflict (name) do nothing",
    )
    .bind(name)
    .bind(team_id)
    .execute(&mut *conn)
    .await?;
    let owner: Option<i64> = sqlx::query_scalar("select team_id from server_names where name = $1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    Ok(owner == Some(team_id))
}

/// How many teams there are.
pub async fn count(db: impl AnyExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from teams")
        .fetch_one(db)
        .await
}

/// Whether the user administers at least one team.
pub async fn is_team_admin(db: impl AnyExecutor<'_>, user_id: i64) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "select count(*) from team_members where user_id = $1 and role = 'team_admin'",
    )
    .bind(user_id)
    .fetch_one(db)
    .await?;
    Ok(n > 0)
}

/// Gives `name` (and the history recorded under it) to `team_id`.
pub async fn move_name(
    db: impl AnyExecutor<'_>,
    name: &str,
    team_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("update server_names set team_id = $2 where name = $1")
        .bind(name)
        .bind(team_id)
        .execute(db)
        .await?;
    Ok(())
}
