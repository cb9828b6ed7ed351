//! The aggregated session id: the client's user, protocol version, capabilities and
//! clientInfo sealed with the gateway's key, so any replica can continue a session.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::state::AppState;

pub(super) const SESSION_CONTEXT: &str = "mcp:aggregated-session";

/// Sealed session contents larger than this keep only the names of the client's capabilities.
pub(super) const MAX_SESSION_JSON: usize = 4096;

/// What the sealed `Mcp-Session-Id` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SessionToken {
    /// User id: a session presented by anyone else is unknown.
    pub(super) u: i64,
    /// Random session key.
    pub(super) k: String,
    /// Negotiated protocol version.
    pub(super) v: String,
    /// The client's capabilities and clientInfo (to open backend sessions on any replica).
    pub(super) c: Value,
    pub(super) i: Value,
    /// Expires at (Unix seconds): after `SESSION_LIFETIME` the client initialises again, and
    /// a session ended by `DELETE` is remembered only that long. Ids minted before this field
    /// existed read as expired.
    #[serde(default)]
    pub(super) e: i64,
}

/// How long an aggregated session id is accepted.
pub(super) const SESSION_LIFETIME: i64 = 24 * 3600;

/// One request's client session: a handshake-era session, or a 2026-07-28 client's
/// per-user context.
pub(super) struct Sess {
    pub(super) key: Arc<str>,
    pub(super) capabilities: Value,
    pub(super) client: Value,
    pub(super) modern: bool,
}

pub(super) fn seal_session(state: &AppState, token: &SessionToken) -> anyhow::Result<String> {
    let mut json = serde_json::to_vec(token)?;
    if json.len() > MAX_SESSION_JSON {
        let names: serde_json::Map<String, Value> = token
            .c
            .as_object()
            .map(|c| c.keys().map(|k| (k.clone(), json!({}))).collect())
            .unwrap_or_default();
        let slim = SessionToken {
            c: Value::Object(names),
            i: json!({ "name": token.i["name"].as_str().unwrap_or("client").chars().take(100).collect::<String>() }),
            ..token.clone()
        };
        json = serde_json::to_vec(&slim)?;
    }
    let sealed = state.secret_box.seal(&json, SESSION_CONTEXT)?;
    Ok(format!("s1.{}", URL_SAFE_NO_PAD.encode(sealed)))
}

fn open_session(state: &AppState, id: &str) -> Option<SessionToken> {
    let sealed = URL_SAFE_NO_PAD.decode(id.strip_prefix("s1.")?).ok()?;
    let json = state.secret_box.open(&sealed, SESSION_CONTEXT).ok()?;
    serde_json::from_slice(&json).ok()
}

/// The user's session named by `id`, unless it expired or was ended by `DELETE` (on any
/// replica: ended ids are in the database and reach every replica through the change feed).
pub(super) async fn live_session(state: &AppState, id: &str, user_id: i64) -> Option<SessionToken> {
    let token = open_session(state, id).filter(|t| t.u == user_id && t.e > crate::db::now())?;
    let ended = match state.mcp.aggregate.is_ended(&token.k) {
        Some(known) => known,
        // More ended sessions than the replica keeps in memory: ask the database.
        None => crate::db::replicas::is_ended_aggregated(&state.db.pool, &token.k)
            .await
            .unwrap_or(true),
    };
    (!ended).then_some(token)
}

/// Ends a session on every replica.
/// `Err` when the end could not be stored (other replicas would keep serving the session: the
/// client is told to retry rather than that it ended).
pub(super) async fn end_session(state: &AppState, token: &SessionToken) -> anyhow::Result<()> {
    state.mcp.aggregate.mark_ended(&token.k, token.e);
    crate::db::replicas::end_aggregated(&state.db.pool, &token.k, token.u, token.e).await?;
    state
        .changes
        .send(crate::feed::Change::Ended(token.k.clone(), token.e));
    Ok(())
}
