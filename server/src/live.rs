//! The admin live feed: activity records and security events as they happen, over a WebSocket
//! (`GET /admin/api/live?ticket=…`).
//!
//! Browsers cannot set headers on a WebSocket, and a long-lived token must never sit in a URL,
//! so the feed is opened with a **ticket**: `POST /admin/api/live/ticket` (admin bearer auth)
//! returns an opaque value, sealed with the gateway's key, naming the admin, valid 30 seconds
//! and accepted once (by any replica: its nonce is recorded in the database). The admin's
//! role is checked again when the socket opens. On Postgres the feed carries the traffic of
//! every replica (`feed.rs`).
//!
//! Producers publish into one `broadcast` channel and never wait. A subscriber that falls
//! behind (its socket does not drain within `SEND_TIMEOUT`, or it misses messages because the
//! channel moved on) is closed with a reason; the gateway is never slowed by it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use shared::events::SecurityEvent;
use shared::live::{LiveFilter, LiveMessage, LiveTicket};
use shared::servers::ActivityRecord;
use tokio::sync::broadcast;

use crate::auth::identity::{AdminScope, ScopedAdmin};
use crate::db::{self, events::SecurityEventRow, servers::ActivityRow};
use crate::error::{ApiError, AppJson, AppQuery};
use crate::keys::random_bytes;
use crate::state::AppState;

const TICKET_TTL: i64 = 30;
const TICKET_CONTEXT: &str = "live:ticket";
/// A subscriber whose socket does not take a message within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Close code for subscribers that cannot keep up (private use range).
const CLOSE_TOO_SLOW: u16 = 4008;
const CLOSE_UNAUTHORIZED: u16 = 4001;
/// The admin lost admin rights, was disabled or deleted, or signed out.
const CLOSE_REVOKED: u16 = 4003;

pub fn activity(r: &ActivityRow) -> ActivityRecord {
    ActivityRecord {
        id: r.id,
        at: r.at,
        user_id: r.user_id,
        username: r.username.clone(),
        server: r.server.clone(),
        method: r.method.clone(),
        tool: r.tool.clone(),
        status: r.status.clone(),
        http_status: u16::try_from(r.http_status).unwrap_or(0),
        latency_ms: u64::try_from(r.latency_ms).unwrap_or(0),
        bytes_in: u64::try_from(r.bytes_in).unwrap_or(0),
        bytes_out: u64::try_from(r.bytes_out).unwrap_or(0),
        client_name: r.client_name.clone(),
        rpc_error_code: r.rpc_error_code,
        suspicious: r.suspicious != 0,
    }
}

pub fn event(r: &SecurityEventRow) -> SecurityEvent {
    SecurityEvent {
        details: r
            .details
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok()),
        id: r.id,
        event_type: r.event_type.clone(),
        severity: r.severity.clone(),
        user_id: r.user_id,
        username: r.username.clone(),
        ip: r.ip.clone(),
        user_agent: r.user_agent.clone(),
        endpoint: r.endpoint.clone(),
        server: r.server.clone(),
        tool: r.tool.clone(),
        created_at: r.created_at,
    }
}

/// Where activity and events are published for live subscribers.
#[derive(Clone)]
pub struct LiveHub {
    tx: broadcast::Sender<Arc<LiveMessage>>,
    /// Other replicas' subscribers are reached through the change feed.
    feed: crate::feed::Changes,
}

impl LiveHub {
    /// A hub buffering `capacity` messages (`LIVE_FEED_BUFFER`).
    pub fn new(capacity: usize, feed: crate::feed::Changes) -> LiveHub {
        LiveHub {
            tx: broadcast::channel(capacity.max(1)).0,
            feed,
        }
    }

    /// Publishes without waiting, here and (while they have subscribers) to other replicas;
    /// without subscribers anywhere this is two counter checks.
    pub fn publish(&self, message: impl FnOnce() -> LiveMessage) {
        let here = self.tx.receiver_count() > 0;
        let elsewhere = self.feed.watched_elsewhere();
        if !here && !elsewhere {
            return;
        }
        let message = Arc::new(message());
        if elsewhere {
            self.feed.share_live(|| message.clone());
        }
        if here {
            let _ = self.tx.send(message);
        }
    }

    /// Whether anyone, here or on another replica, would receive a message now.
    pub fn wanted(&self) -> bool {
        self.tx.receiver_count() > 0 || self.feed.watched_elsewhere()
    }

    /// Hands messages another replica published to this replica's subscribers.
    pub fn deliver(&self, messages: Vec<LiveMessage>) {
        for message in messages {
            if self.tx.receiver_count() == 0 {
                return;
            }
            let _ = self.tx.send(Arc::new(message));
        }
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[derive(Serialize, Deserialize)]
struct Ticket {
    u: i64,
    /// The admin's session: the feed ends when it is signed out or revoked.
    #[serde(default)]
    s: Option<String>,
    e: i64,
    n: [u8; 16],
}

/// A single-use ticket to open the live feed (30 seconds).
#[utoipa::path(post, path = "/admin/api/live/ticket", tag = "admin", operation_id = "live_ticket",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The ticket for `GET /admin/api/live?ticket=…`", body = LiveTicket),
        (status = 401, description = "Not signed in as an admin", body = shared::error::ApiErrorBody),
    ))]
pub async fn ticket(
    State(state): State<AppState>,
    ScopedAdmin(admin): ScopedAdmin,
) -> Result<AppJson<LiveTicket>, ApiError> {
    let session = match &admin.method {
        crate::auth::identity::AuthMethod::Jwt { session_id } => Some(session_id.clone()),
        crate::auth::identity::AuthMethod::ApiKey { .. } => None,
    };
    let ticket = Ticket {
        u: admin.user_id,
        s: session,
        e: db::now() + TICKET_TTL,
        n: random_bytes()?,
    };
    let json = serde_json::to_vec(&ticket).map_err(|e| ApiError::Internal(e.into()))?;
    let sealed = state.secret_box.seal(&json, TICKET_CONTEXT)?;
    Ok(AppJson(LiveTicket {
        ticket: URL_SAFE_NO_PAD.encode(sealed),
        expires_in: TICKET_TTL as u64,
    }))
}

#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    ticket: String,
    #[serde(flatten)]
    filter: LiveFilter,
}

/// The admin of a ticket (their session and what they may see), if it is valid, unused, and
/// they are still an enabled admin or team admin.
async fn redeem(state: &AppState, raw: &str) -> Option<(i64, Option<String>, AdminScope)> {
    let sealed = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let json = state.secret_box.open(&sealed, TICKET_CONTEXT).ok()?;
    let ticket: Ticket = serde_json::from_slice(&json).ok()?;
    let now = db::now();
    if ticket.e <= now {
        return None;
    }
    // Single use on every replica: the nonce is recorded in the database (a failure to
    // record it refuses the ticket).
    let nonce = format!("live:{}", crate::auth::identity::hex(&ticket.n));
    if !db::replicas::use_nonce(&state.db.pool, &nonce, ticket.e)
        .await
        .unwrap_or(false)
    {
        return None;
    }
    let scope =
        crate::auth::identity::current_admin_scope(state, ticket.u, ticket.s.as_deref()).await?;
    Some((ticket.u, ticket.s, scope))
}

/// Whether a message about `server` (a name; `None`: about no server) is for an admin of
/// `scope`: a team admin sees only what concerns their teams' servers.
fn in_scope(state: &AppState, scope: &AdminScope, server: Option<&str>) -> bool {
    match scope {
        AdminScope::All => true,
        AdminScope::Teams(_) => server
            .and_then(|name| state.mcp.registry.get(name))
            .is_some_and(|b| scope.has_team(b.row.team_id)),
    }
}

/// `GET /admin/api/live?ticket=…[&server=…&user=…&method=…&errors_only=true&kinds=…]`: the live
/// feed (WebSocket; JSON text messages, see `shared::live::LiveMessage`).
pub async fn socket(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<LiveQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return crate::error::ApiError::Validation {
                code: "websocket_required",
                message: rejection.body_text(),
                field: None,
            }
            .into_response();
        }
    };
    // Subscribed before the admin is checked: a change made meanwhile re-checks them too.
    let changes = state.auth_cache.subscribe();
    let admin = redeem(&state, &query.ticket).await;
    let filter = query.filter;
    upgrade
        .on_upgrade(move |socket| async move {
            match admin {
                Some(admin) => serve(state, socket, filter, admin, changes).await,
                None => {
                    let mut socket = socket;
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: CLOSE_UNAUTHORIZED,
                            reason: "invalid, expired or used ticket".into(),
                        })))
                        .await;
                }
            }
        })
        .into_response()
}

async fn serve(
    state: AppState,
    mut socket: WebSocket,
    filter: LiveFilter,
    (admin, session, mut scope): (i64, Option<String>, AdminScope),
    // Every change of identity state re-checks the admin: demoted, disabled, deleted or signed
    // out, the feed ends at once.
    mut changes: tokio::sync::watch::Receiver<u64>,
) {
    let mut rx = state.live.tx.subscribe();
    state.live.feed.watching_started();
    let hello = LiveMessage::Subscribed {
        filter: filter.clone(),
    };
    if send(&mut socket, &hello).await.is_err() {
        return;
    }
    let close = |reason: String| {
        Message::Close(Some(CloseFrame {
            code: CLOSE_TOO_SLOW,
            reason: reason.into(),
        }))
    };
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Ok(message) => {
                    let wanted = match &*message {
                        LiveMessage::Activity { record } => filter.wants_activity(record)
                            && in_scope(&state, &scope, Some(&record.server)),
                        LiveMessage::SecurityEvent { event } => filter.wants_event(event)
                            && in_scope(&state, &scope, event.server.as_deref()),
                        LiveMessage::AuditProgress { .. } => filter.wants_audit() && scope.is_global(),
                        LiveMessage::Subscribed { .. } => false,
                    };
                    if !wanted {
                        continue;
                    }
                    match tokio::time::timeout(SEND_TIMEOUT, send(&mut socket, &message)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(())) => return,
                        Err(_) => {
                            tracing::info!("live feed subscriber dropped: its socket does not drain");
                            let _ = tokio::time::timeout(Duration::from_millis(200), socket.send(close("too slow: the socket did not drain".into()))).await;
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "live feed subscriber dropped: it fell behind");
                    let _ = tokio::time::timeout(Duration::from_millis(200), socket.send(close(format!("too slow: {missed} messages missed")))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = changes.changed() => {
                let now = if changed.is_ok() {
                    crate::auth::identity::current_admin_scope(&state, admin, session.as_deref()).await
                } else {
                    None
                };
                if let Some(now) = now {
                    // A team admin's teams may have changed: the feed follows at once.
                    scope = now;
                } else {
                    tracing::info!(admin, "live feed closed: the admin's access changed");
                    let revoked = Message::Close(Some(CloseFrame {
                        code: CLOSE_REVOKED,
                        reason: "access revoked".into(),
                    }));
                    let _ = tokio::time::timeout(Duration::from_millis(200), socket.send(revoked)).await;
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // The feed is one-way; pings are answered by axum, a close or error ends it.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn send(socket: &mut WebSocket, message: &LiveMessage) -> Result<(), ()> {
    let text = serde_json::to_string(message).map_err(|_| ())?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| ())
}

/// Documents the WebSocket route in the OpenAPI description.
#[utoipa::path(get, path = "/admin/api/live", tag = "admin", operation_id = "live_feed",
    params(("ticket" = String, Query, description = "From `POST /admin/api/live/ticket`"), LiveFilter),
    responses(
        (status = 101, description = "WebSocket: JSON text messages (`LiveMessage`); closed with 4008 when too slow, 4001 for a bad ticket, 4003 when the admin is demoted, disabled, deleted or signed out", body = LiveMessage),
        (status = 400, description = "`websocket_required`: not a WebSocket upgrade; `invalid_query`: a malformed filter", body = shared::error::ApiErrorBody),
    ))]
#[allow(dead_code)]
pub(crate) fn doc_socket() {}
