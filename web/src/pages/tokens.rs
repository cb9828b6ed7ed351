//! Token health (`/admin/tokens`): every OAuth credential the gateway holds toward backends (a
//! server's own, each user's connected account) with when it expires, when it was last
//! renewed, how often and the last error; "refresh now", "reconnect" and "disconnect".

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use shared::servers::TokenHealth;

use crate::api;
use crate::components::widgets::{Badge, ErrorAlert, open_authorization, when};
use crate::resource::Load;

fn kind_text(kind: &str) -> &'static str {
    match kind {
        "oauth_client_credentials" => "client credentials",
        "oauth_admin" => "connected by an admin",
        "oauth_user" => "user's own account",
        _ => "OAuth",
    }
}

fn expires_text(seconds: Option<i64>) -> String {
    match seconds {
        None => "unknown".into(),
        Some(s) if s <= 0 => "expired (renewed on the next call)".into(),
        Some(s) if s < 120 => format!("in {s} s"),
        Some(s) if s < 7200 => format!("in {} min", s / 60),
        Some(s) => format!("in {} h", s / 3600),
    }
}

async fn reconnect(server: i64, error: RwSignal<Option<String>>) {
    open_authorization(api::connect_backend_account(server).await, error);
}

#[component]
pub fn Tokens() -> impl IntoView {
    let query = use_query_map();
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let tokens = Load::new(move || {
        reload.track();
        async move { api::backend_tokens().await }
    });
    let row = move |t: TokenHealth| {
        let (server, user) = (t.server_id, t.user_id.unwrap_or(0));
        let id = format!(
            "token-{}-{}",
            t.server,
            t.username.clone().unwrap_or_default()
        );
        let can_connect = t.kind == "oauth_admin";
        let on_refresh = move |_| {
            spawn_local(async move {
                match api::refresh_backend_token(server, user).await {
                    Ok(h) => error.set(h.last_error.filter(|_| h.status != "ok")),
                    Err(e) => error.set(Some(e.message)),
                }
                reload.update(|n| *n += 1);
            });
        };
        let on_disconnect = move |_| {
            spawn_local(async move {
                if let Err(e) = api::disconnect_backend_token(server, user).await {
                    error.set(Some(e.message));
                }
                reload.update(|n| *n += 1);
            });
        };
        let on_connect = move |_| spawn_local(reconnect(server, error));
        let connected = t.status != "not_connected";
        view! {
            <tr id=id>
                <td><strong>{t.server.clone()}</strong></td>
                <td>{kind_text(&t.kind)}</td>
                <td>{t.username.clone().unwrap_or_else(|| "(the server's own)".into())}</td>
                <td class="token-status"><Badge text=t.status.clone() /></td>
                <td>{expires_text(t.expires_in)}</td>
                <td>{t.last_refresh_at.map(when).unwrap_or_else(|| "never".into())}</td>
                <td>{t.refresh_count}</td>
                <td class="muted">{t.last_error.clone().unwrap_or_default()}</td>
                <td class="actions">
                    {(connected || t.kind == "oauth_client_credentials").then(|| view! {
                        <button type="button" class="refresh-now" on:click=on_refresh>"Refresh now"</button>
                    })}
                    {can_connect.then(|| view! {
                        <button type="button" class="reconnect" on:click=on_connect>{if connected { "Reconnect" } else { "Connect" }}</button>
                    })}
                    {connected.then(|| view! {
                        <button type="button" class="danger-outline disconnect" on:click=on_disconnect>"Disconnect"</button>
                    })}
                </td>
            </tr>
        }
    };
    view! {
        <h1>"Backend tokens"</h1>
        <p class="muted">"OAuth credentials the gateway holds toward MCP servers: renewed before they expire and when a server refuses them. Tokens are sealed at rest and never shown."</p>
        {move || query.with(|q| q.get("connected")).map(|s| view! { <p class="ok" id="token-connected">"Connected "{s}"."</p> })}
        {move || query.with(|q| q.get("error")).map(|m| view! { <ErrorAlert message=m /> })}
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || tokens.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(list) if list.is_empty() => view! { <p class="empty" id="tokens-empty">"No server uses an OAuth credential. Choose an OAuth kind in a server's backend credential."</p> }.into_any(),
                Ok(list) => view! {
                    <table id="tokens-table">
                        <thead><tr><th>"Server"</th><th>"Kind"</th><th>"Account of"</th><th>"Status"</th><th>"Expires"</th><th>"Last renewed"</th><th>"Renewals"</th><th>"Last error"</th><th></th></tr></thead>
                        <tbody>{list.into_iter().map(row).collect_view()}</tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}
