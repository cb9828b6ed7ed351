//! Users' grants to OAuth clients (remembered consents): listing and revocation, shared by
//! the admin API and the user portal. Revoking forgets the consent (asked again next time) and
//! ends the client's sessions for that user at once.

use serde_json::json;
use shared::oauth::OAuthGrant;

use crate::accounts::{self, Actor};
use crate::auth::tokens;
use crate::db::{self, oauth::GrantRow};
use crate::error::ApiError;
use crate::state::AppState;

/// Grants with their per-resource scopes.
pub async fn to_api(
    state: &AppState,
    rows: Vec<GrantRow>,
    user_id: Option<i64>,
    client_key: Option<i64>,
) -> Result<Vec<OAuthGrant>, ApiError> {
    let scopes = db::oauth::grant_scopes(&state.db.pool, user_id, client_key).await?;
    Ok(rows
        .into_iter()
        .map(|g| OAuthGrant {
            resources: scopes
                .iter()
                .filter(|(u, c, _, _)| *u == g.user_id && *c == g.client_key)
                .map(|(_, _, resource, scope)| shared::oauth::GrantResource {
                    resource: resource.clone(),
                    scope: scope.clone(),
                })
                .collect(),
            user_id: g.user_id,
            client: g.client_key,
            client_id: g.client_id,
            client_name: g.client_name,
            scope: g.scope,
            created_at: g.created_at,
            last_used_at: g.last_used_at,
        })
        .collect())
}

/// Ends every live session of a client (for one user, or all).
pub async fn end_sessions(
    state: &AppState,
    client_key: i64,
    user_id: Option<i64>,
) -> Result<usize, ApiError> {
    let sessions = db::sessions::of_client(&state.db.pool, client_key, user_id).await?;
    for sid in &sessions {
        tokens::revoke_session(state, sid, "oauth_client_revoked").await?;
    }
    Ok(sessions.len())
}

/// The grants of one user.
pub async fn of_user(state: &AppState, user_id: i64) -> Result<Vec<OAuthGrant>, ApiError> {
    let rows = db::oauth::list_grants(&state.db.pool, Some(user_id), None).await?;
    to_api(state, rows, Some(user_id), None).await
}

/// Revokes `user_id`'s grant to `client` (404 when there is none), audited as `actor`.
pub async fn revoke(
    state: &AppState,
    actor: &Actor<'_>,
    user_id: i64,
    client: i64,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await?;
    if db::oauth::delete_grant(&mut *tx, user_id, client).await? == 0 {
        return Err(ApiError::NotFound("no such grant"));
    }
    accounts::audit(
        &mut *tx,
        actor,
        "oauth_grant.revoke",
        "user",
        Some(user_id.to_string()),
        Some(json!({ "client": client })),
        None,
    )
    .await?;
    tx.commit().await?;
    end_sessions(state, client, Some(user_id)).await?;
    Ok(())
}
