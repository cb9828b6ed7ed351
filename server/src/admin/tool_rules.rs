//! `/admin/api/users/{id}/tool-rules` and `/admin/api/api-keys/{id}/tool-rules`: per-tool
//! allow/deny rules, applied on the next request (`/mcp` and `/mcp/{server}`).

use axum::extract::State;
use serde_json::json;
use shared::error::ApiErrorBody;
use shared::servers::{ToolRule, ToolRuleEffect, ToolRules};

use crate::accounts::{self, Actor};
use crate::admin::actor;
use crate::auth::identity::{AdminScope, RequestMeta, ScopedAdmin};
use crate::db::{self, tool_rules::Subject};
use crate::error::{ApiError, AppJson, AppPath};
use crate::mcp::naming;
use crate::openapi::router::ApiRouter;
use crate::routes;
use crate::state::AppState;
use crate::teams;

/// Rules one user or key may have.
const MAX_RULES: usize = 500;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(get_user_rules, set_user_rules))
        .routes(routes!(get_key_rules, set_key_rules))
}

/// The subject if `scope` may see it (404 otherwise, as for one that does not exist): a user
/// who is a member of one of the caller's teams, or such a user's API key.
async fn in_scope(state: &AppState, scope: &AdminScope, subject: Subject) -> Result<(), ApiError> {
    if scope.is_global() {
        return Ok(());
    }
    match subject {
        Subject::User(id) => teams::member(state, scope, id).await,
        Subject::ApiKey(id) => {
            let key = db::api_keys::find(&state.db.pool, id)
                .await?
                .ok_or(ApiError::NotFound("no such API key"))?;
            teams::member(state, scope, key.user_id)
                .await
                .map_err(|_| ApiError::NotFound("no such API key"))
        }
    }
}

/// The subject's rules on the servers `scope` may see.
async fn rules_of(
    state: &AppState,
    scope: &AdminScope,
    subject: Subject,
) -> Result<ToolRules, ApiError> {
    in_scope(state, scope, subject).await?;
    let visible = teams::server_ids(state, scope).await?;
    let rows = db::tool_rules::list(&state.db.pool, subject).await?;
    Ok(ToolRules {
        rules: rows
            .into_iter()
            .filter(|r| visible.as_ref().is_none_or(|v| v.contains(&r.server_id)))
            .map(|r| ToolRule {
                server_id: r.server_id,
                server: r.server,
                pattern: r.pattern,
                effect: if r.effect == "allow" {
                    ToolRuleEffect::Allow
                } else {
                    ToolRuleEffect::Deny
                },
            })
            .collect(),
    })
}

/// Replaces the subject's rules on the servers `scope` may see; its rules on other teams'
/// servers stay as they are.
async fn replace(
    state: &AppState,
    actor: &Actor<'_>,
    scope: &AdminScope,
    subject: Subject,
    req: &ToolRules,
) -> Result<ToolRules, ApiError> {
    in_scope(state, scope, subject).await?;
    let visible = teams::server_ids(state, scope).await?;
    let seen = |server: i64| visible.as_ref().is_none_or(|v| v.contains(&server));
    if req.rules.len() > MAX_RULES {
        return Err(ApiError::validation(
            "rules",
            format!("at most {MAX_RULES} rules"),
        ));
    }
    for rule in &req.rules {
        naming::validate_pattern(&rule.pattern).map_err(|m| ApiError::validation("pattern", m))?;
    }
    let mut tx = state.db.begin().await?;
    let (kind, id) = match subject {
        Subject::User(id) => {
            db::users::find_by_id(&mut *tx, id)
                .await?
                .ok_or(ApiError::NotFound("no such user"))?;
            ("user", id)
        }
        Subject::ApiKey(id) => {
            db::api_keys::find(&mut *tx, id)
                .await?
                .ok_or(ApiError::NotFound("no such API key"))?;
            ("api_key", id)
        }
    };
    let all_before = db::tool_rules::list(&mut *tx, subject).await?;
    db::tool_rules::clear(&mut *tx, subject).await?;
    let now = db::now();
    let (before, kept): (Vec<_>, Vec<_>) = all_before.into_iter().partition(|r| seen(r.server_id));
    for rule in &kept {
        db::tool_rules::insert(
            &mut *tx,
            subject,
            rule.server_id,
            &rule.pattern,
            &rule.effect,
            now,
        )
        .await?;
    }
    for rule in &req.rules {
        // Another team's server is answered as one that does not exist. A 400 naming the
        // field, as documented: the 404s of this operation are about its path (the user or the
        // key), which exists. The transaction is dropped, so nothing of the change is kept.
        if !seen(rule.server_id) || db::servers::find(&mut *tx, rule.server_id).await?.is_none() {
            return Err(ApiError::validation("server_id", "no such server"));
        }
        db::tool_rules::insert(
            &mut *tx,
            subject,
            rule.server_id,
            &rule.pattern,
            rule.effect.as_str(),
            now,
        )
        .await?;
    }
    let summary = |rows: Vec<(i64, String, String)>| {
        rows.into_iter()
            .map(|(s, p, e)| json!({ "server_id": s, "pattern": p, "effect": e }))
            .collect::<Vec<_>>()
    };
    accounts::audit_in(
        &mut *tx,
        actor,
        teams::only_team(scope),
        "tool_rules.set",
        kind,
        Some(id.to_string()),
        Some(json!(summary(
            before
                .into_iter()
                .map(|r| (r.server_id, r.pattern, r.effect))
                .collect()
        ))),
        Some(json!(summary(
            req.rules
                .iter()
                .map(|r| (
                    r.server_id,
                    r.pattern.clone(),
                    r.effect.as_str().to_string()
                ))
                .collect()
        ))),
    )
    .await?;
    tx.commit().await?;
    state.mcp.registry.invalidate_tool_rules(subject);
    rules_of(state, scope, subject).await
}

/// A user's per-tool rules.
#[utoipa::path(get, path = "/admin/api/users/{id}/tool-rules", tag = "users", operation_id = "get_user_tool_rules",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "The rules", body = ToolRules),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn get_user_rules(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<ToolRules>, ApiError> {
    Ok(AppJson(
        rules_of(&state, &admin.admin_scope(), Subject::User(id)).await?,
    ))
}

/// Replaces a user's per-tool rules; effective on their next request.
#[utoipa::path(put, path = "/admin/api/users/{id}/tool-rules", tag = "users", operation_id = "set_user_tool_rules",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    request_body = ToolRules,
    responses(
        (status = 200, description = "The rules now", body = ToolRules),
        (status = 400, description = "Invalid pattern or unknown server", body = ApiErrorBody),
        (status = 404, description = "No such user", body = ApiErrorBody),
    ))]
async fn set_user_rules(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<ToolRules>,
) -> Result<AppJson<ToolRules>, ApiError> {
    Ok(AppJson(
        replace(
            &state,
            &actor(&admin, &meta),
            &admin.0.admin_scope(),
            Subject::User(id),
            &req,
        )
        .await?,
    ))
}

/// An API key's per-tool rules (any user's key).
#[utoipa::path(get, path = "/admin/api/api-keys/{id}/tool-rules", tag = "users", operation_id = "get_api_key_tool_rules",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "API key id")),
    responses(
        (status = 200, description = "The rules", body = ToolRules),
        (status = 401, description = "Not signed in as an admin", body = ApiErrorBody),
    ))]
async fn get_key_rules(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<ToolRules>, ApiError> {
    Ok(AppJson(
        rules_of(&state, &admin.admin_scope(), Subject::ApiKey(id)).await?,
    ))
}

/// Replaces an API key's per-tool rules (they narrow its owner's rules); effective on the
/// key's next request.
#[utoipa::path(put, path = "/admin/api/api-keys/{id}/tool-rules", tag = "users", operation_id = "set_api_key_tool_rules",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "API key id")),
    request_body = ToolRules,
    responses(
        (status = 200, description = "The rules now", body = ToolRules),
        (status = 400, description = "Invalid pattern or unknown server", body = ApiErrorBody),
        (status = 404, description = "No such API key", body = ApiErrorBody),
    ))]
async fn set_key_rules(
    State(state): State<AppState>,
    admin: ScopedAdmin,
    meta: RequestMeta,
    AppPath(id): AppPath<i64>,
    AppJson(req): AppJson<ToolRules>,
) -> Result<AppJson<ToolRules>, ApiError> {
    Ok(AppJson(
        replace(
            &state,
            &actor(&admin, &meta),
            &admin.0.admin_scope(),
            Subject::ApiKey(id),
            &req,
        )
        .await?,
    ))
}
