//! `/admin/api/teams`: teams and their members. Global admins create, rename and delete teams
//! and decide who is in them; team admins see their own teams and members.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use shared::error::ApiErrorBody;
use shared::teams::{SetTeamMember, Team, TeamMember, TeamName};

use crate::accounts;
use crate::admin::actor;
use crate::auth::identity::{AdminUser, RequestMeta, ScopedAdmin};
use crate::db::{self, teams::TeamRow};
use crate::error::{ApiError, AppJson, AppPath};
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;
use crate::teams;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list_teams, create_team))
        .routes(routes!(get_team, rename_team, delete_team))
        .routes(routes!(list_members))
        .routes(routes!(set_member, remove_member))
}

fn to_api(row: TeamRow) -> Team {
    Team {
        id: row.id,
        name: row.name,
        members: row.members,
        servers: row.servers,
        created_at: row.created_at,
    }
}

fn valid_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    accounts::validate_display_name(name).map_err(|m| ApiError::validation("name", m))?;
    Ok(name.to_string())
}

fn name_taken(e: sqlx::Error) -> ApiError {
    if db::is_unique_violation(&e, "teams_name_key", "teams.name") {
        ApiError::conflict("team_name_taken", "a team with this name already exists")
    } else {
        ApiError::Db(e)
    }
}

/// The teams the caller may see (a global admin: all).
#[utoipa::path(get, path = "/admin/api/teams", tag = "teams", operation_id = "list_teams",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Teams by name", body = Vec<Team>),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn list_teams(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
) -> Result<AppJson<Vec<Team>>, ApiError> {
    let filter = admin.admin_scope().filter();
    let rows = db::teams::list(&state.db.pool, filter.as_deref()).await?;
    Ok(AppJson(rows.into_iter().map(to_api).collect()))
}

/// Creates a team (global admins).
#[utoipa::path(post, path = "/admin/api/teams", tag = "teams", operation_id = "create_team",
    security(("bearer" = [])),
    request_body = TeamName,
    responses(
        (status = 201, description = "Created", body = Team),
        (status = 400, description = "`validation_failed`: the name", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 403, description = "Not a global admin", body = ApiErrorBody),
        (status = 409, description = "`team_name_taken`", body = ApiErrorBody),
    ))]
async fn create_team(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppJson(req): AppJson<TeamName>,
) -> Result<(StatusCode, AppJson<Team>), ApiError> {
    let name = valid_name(&req.name)?;
    let mut tx = state.db.begin().await?;
    let id = db::teams::insert(&mut *tx, &name, db::now())
        .await
        .map_err(name_taken)?;
    accounts::audit_in(
        &mut *tx,
        &actor(&admin, &meta),
        Some(id),
        "team.create",
        "team",
        Some(id.to_string()),
        None,
        Some(json!({ "name": name })),
    )
    .await?;
    let row = db::teams::find(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("no such team"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, AppJson(to_api(row))))
}

#[utoipa::path(get, path = "/admin/api/teams/{id}", tag = "teams", operation_id = "get_team",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Team id")),
    responses(
        (status = 200, description = "The team", body = Team),
        (status = 400, description = "`validation_failed`: malformed id", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such team (or not one of the caller's)", body = ApiErrorBody),
    ))]
async fn get_team(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<Team>, ApiError> {
    teams::team(&state, &admin.admin_scope(), id).await?;
    let row = db::teams::find(&state.db.pool, id)
        .await?
        .ok_or(ApiError::NotFound("no such team"))?;
    Ok(AppJson(to_api(row)))
}

/// Renames a team (global admins).
#[utoipa::path(patch, path = "/admin/api/teams/{id}", tag = "teams", operation_id = "rename_team",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Team id")),
    request_body = TeamName,
    responses(
        (status = 200, description = "Renamed", body = Team),
        (status = 400, description = "`validation_failed`: the name or the id", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 403, description = "Not a global admin", body = ApiErrorBody),
        (status = 404, description = "No such team", body = ApiErrorBody),
        (status = 409, description = "`team_name_taken`", body = ApiErrorBody),
    ))]
async fn rename_team(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<TeamName>,
) -> Result<AppJson<Team>, ApiError> {
    let name = valid_name(&req.name)?;
    let mut tx = state.db.begin().await?;
    let before = db::teams::find(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("no such team"))?;
    db::teams::rename(&mut *tx, id, &name)
        .await
        .map_err(name_taken)?;
    accounts::audit_in(
        &mut *tx,
        &actor(&admin, &meta),
        Some(id),
        "team.rename",
        "team",
        Some(id.to_string()),
        Some(json!({ "name": before.name })),
        Some(json!({ "name": name })),
    )
    .await?;
    let row = db::teams::find(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("no such team"))?;
    tx.commit().await?;
    Ok(AppJson(to_api(row)))
}

/// Deletes a team that owns no server (global admins; the default team stays). Its members
/// lose their membership, and with it access to nothing (it had no servers).
#[utoipa::path(delete, path = "/admin/api/teams/{id}", tag = "teams", operation_id = "delete_team",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Team id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`validation_failed`: malformed id", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 403, description = "Not a global admin", body = ApiErrorBody),
        (status = 404, description = "No such team", body = ApiErrorBody),
        (status = 409, description = "`team_not_empty` (it owns servers) or `default_team`", body = ApiErrorBody),
    ))]
async fn delete_team(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    let team = db::teams::find(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("no such team"))?;
    if id == teams::DEFAULT_TEAM {
        return Err(ApiError::conflict(
            "default_team",
            "the default team cannot be deleted",
        ));
    }
    let members = db::teams::members(&mut *tx, id).await?;
    if db::teams::delete_empty(&mut *tx, id).await? == 0 {
        return Err(ApiError::conflict(
            "team_not_empty",
            "the team owns servers: delete them or move them to another team first",
        ));
    }
    accounts::audit_in(
        &mut *tx,
        &actor(&admin, &meta),
        None,
        "team.delete",
        "team",
        Some(id.to_string()),
        Some(json!({ "name": team.name, "members": members.len() })),
        None,
    )
    .await?;
    tx.commit().await?;
    for m in members {
        member_changed(&state, m.user_id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A membership changed: the user's admin scope and MCP access are re-read at once, and the
/// MCP sessions and backend links held for them here end (they open again where still
/// allowed).
fn member_changed(state: &AppState, user_id: i64) {
    state.auth_cache.invalidate_user(user_id);
    state.mcp.forget_user(user_id);
}

/// A team's members and their roles.
#[utoipa::path(get, path = "/admin/api/teams/{id}/members", tag = "teams", operation_id = "list_team_members",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Team id")),
    responses(
        (status = 200, description = "Members by username", body = Vec<TeamMember>),
        (status = 400, description = "`validation_failed`: malformed id", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 404, description = "No such team (or not one of the caller's)", body = ApiErrorBody),
    ))]
async fn list_members(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<Vec<TeamMember>>, ApiError> {
    teams::team(&state, &admin.admin_scope(), id).await?;
    let rows = db::teams::members(&state.db.pool, id).await?;
    Ok(AppJson(
        rows.into_iter()
            .map(|m| TeamMember {
                user_id: m.user_id,
                username: m.username,
                role: m.role,
                added_at: m.added_at,
            })
            .collect(),
    ))
}

/// Adds a user to a team or changes their role there (global admins). Takes effect at once:
/// a new team admin can open the team's admin pages, a member can use the team's servers they
/// are granted.
#[utoipa::path(put, path = "/admin/api/teams/{id}/members/{user_id}", tag = "teams", operation_id = "set_team_member",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Team id"), ("user_id" = i64, Path, description = "User id")),
    request_body = SetTeamMember,
    responses(
        (status = 200, description = "The team's members now", body = Vec<TeamMember>),
        (status = 400, description = "`validation_failed`: unknown role or malformed id", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 403, description = "Not a global admin", body = ApiErrorBody),
        (status = 404, description = "No such team or user", body = ApiErrorBody),
    ))]
async fn set_member(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath((id, user_id)): AppPath<(i64, i64)>,
    AppJson(req): AppJson<SetTeamMember>,
) -> Result<AppJson<Vec<TeamMember>>, ApiError> {
    if !teams::ROLES.contains(&req.role.as_str()) {
        return Err(ApiError::validation(
            "role",
            "role is \"member\" or \"team_admin\"",
        ));
    }
    let mut tx = state.db.begin().await?;
    db::teams::find(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("no such team"))?;
    db::users::find_by_id(&mut *tx, user_id)
        .await?
        .ok_or(ApiError::NotFound("no such user"))?;
    db::teams::set_member(&mut *tx, id, user_id, &req.role, db::now()).await?;
    accounts::audit_in(
        &mut *tx,
        &actor(&admin, &meta),
        Some(id),
        "team.member_set",
        "user",
        Some(user_id.to_string()),
        None,
        Some(json!({ "team_id": id, "role": req.role })),
    )
    .await?;
    tx.commit().await?;
    member_changed(&state, user_id);
    list_members(State(state), ScopedAdmin(admin.0), AppPath(id)).await
}

/// Removes a user from a team (global admins): at once they can use none of its servers and,
/// as its team admin, see none of its pages.
#[utoipa::path(delete, path = "/admin/api/teams/{id}/members/{user_id}", tag = "teams", operation_id = "remove_team_member",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Team id"), ("user_id" = i64, Path, description = "User id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`validation_failed`: malformed id", body = ApiErrorBody),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
        (status = 403, description = "Not a global admin", body = ApiErrorBody),
        (status = 404, description = "No such membership", body = ApiErrorBody),
    ))]
async fn remove_member(
    State(state): State<AppState>,
    admin: AdminUser,
    meta: RequestMeta,
    AppPath((id, user_id)): AppPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin().await?;
    if db::teams::remove_member(&mut *tx, id, user_id).await? == 0 {
        return Err(ApiError::NotFound("no such membership"));
    }
    accounts::audit_in(
        &mut *tx,
        &actor(&admin, &meta),
        Some(id),
        "team.member_remove",
        "user",
        Some(user_id.to_string()),
        Some(json!({ "team_id": id })),
        None,
    )
    .await?;
    tx.commit().await?;
    member_changed(&state, user_id);
    Ok(StatusCode::NO_CONTENT)
}
