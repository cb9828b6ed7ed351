//! Teams: who may see and change what in the admin API. A global admin's scope is everything;
//! a team admin's is the teams they administer: their servers (and everything hanging off
//! them: credentials, health, pins, grants on them, tool rules on them, activity and security
//! events under their names, audit entries about them) and their members. Anything outside the
//! scope is answered exactly as if it did not exist (404), so a team admin cannot even learn
//! whether another team's object exists; what only global admins may do is 403 whatever the
//! object. Membership also decides MCP access: a user may use a server only when granted it
//! and a member of its team (`db::servers::granted_servers`).

use crate::auth::identity::AdminScope;
use crate::db::{self, servers::ServerRow};
use crate::error::ApiError;
use crate::state::AppState;

/// The default team: every install has it; a single-team install uses nothing else.
pub const DEFAULT_TEAM: i64 = 1;

/// Team roles.
pub const ROLES: [&str; 2] = ["member", "team_admin"];

/// The team of a new object when none is named: the default team for a global admin, the
/// caller's team for a team admin of exactly one.
pub fn default_team(scope: &AdminScope) -> Result<i64, ApiError> {
    match scope {
        AdminScope::All => Ok(DEFAULT_TEAM),
        AdminScope::Teams(teams) if teams.len() == 1 => Ok(teams[0]),
        AdminScope::Teams(_) => Err(ApiError::validation(
            "team_id",
            "you administer several teams: say which one",
        )),
    }
}

/// A team the caller may act in (404 otherwise, as for one that does not exist).
pub async fn team(state: &AppState, scope: &AdminScope, id: i64) -> Result<(), ApiError> {
    if scope.has_team(id) && db::teams::find(&state.db.pool, id).await?.is_some() {
        Ok(())
    } else {
        Err(ApiError::NotFound("no such team"))
    }
}

/// A server the caller may see and change (404 otherwise).
pub async fn server(state: &AppState, scope: &AdminScope, id: i64) -> Result<ServerRow, ApiError> {
    match db::servers::find(&state.db.pool, id).await? {
        Some(row) if scope.has_team(row.team_id) => Ok(row),
        _ => Err(ApiError::NotFound("no such server")),
    }
}

/// A user the caller may see: anybody for a global admin, a member of one of their teams for a
/// team admin (404 otherwise).
pub async fn member(state: &AppState, scope: &AdminScope, user_id: i64) -> Result<(), ApiError> {
    let filter = scope.filter();
    if db::teams::is_member_of(&state.db.pool, user_id, filter.as_deref()).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound("no such user"))
    }
}

/// The ids of the servers `scope` may see (`None`: every server).
pub async fn server_ids(
    state: &AppState,
    scope: &AdminScope,
) -> Result<Option<std::collections::HashSet<i64>>, ApiError> {
    if scope.is_global() {
        return Ok(None);
    }
    Ok(Some(
        db::servers::list(&state.db.pool)
            .await?
            .into_iter()
            .filter(|s| scope.has_team(s.team_id))
            .map(|s| s.id)
            .collect(),
    ))
}

/// The team an audit entry of a team admin's change concerns: their team when they administer
/// exactly one (a global admin's changes are seen by global admins).
pub fn only_team(scope: &AdminScope) -> Option<i64> {
    match scope {
        AdminScope::Teams(teams) if teams.len() == 1 => Some(teams[0]),
        _ => None,
    }
}
