//! Security events (filtered, exported) and MCP activity (statistics, then the live feed over
//! the WebSocket).

use leptos::prelude::*;
use leptos::task::spawn_local;

use shared::live::{LiveFilter, LiveMessage};
use shared::servers::ActivityRecord;

use crate::api;
use crate::components::widgets::{Badge, ErrorAlert, when};
use crate::resource::Load;

#[component]
pub fn SecurityEvents() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let kind = RwSignal::new(String::new());
    let severity = RwSignal::new(String::new());
    let export = RwSignal::new(None::<Result<String, String>>);
    let filter = move || api::query(&[("type", kind.get()), ("severity", severity.get())]);
    let events = Load::new(move || {
        reload.track();
        let filter = filter();
        async move { api::security_events(&filter).await }
    });
    let on_export = move |_| {
        let filter = filter();
        spawn_local(async move {
            export.set(Some(
                api::export_security_events(&filter)
                    .await
                    .map(|text| {
                        format!(
                            "data:application/x-ndjson;charset=utf-8,{}",
                            js_sys::encode_uri_component(&text)
                        )
                    })
                    .map_err(|e| e.message),
            ));
        });
    };
    view! {
        <h1>"Security events"</h1>
        <div class="toolbar">
            <label class="inline">"Type"
                <select id="events-type" on:change=move |ev| kind.set(event_target_value(&ev))>
                    <option value="">"all"</option>
                    {["auth_failed", "token_invalid", "token_reuse", "account_locked", "access_denied", "rate_limited", "origin_rejected", "suspicious_payload", "session_hijack_attempt", "backend_credential_error", "malformed_request", "tool_definition_changed"]
                        .into_iter().map(|t| view! { <option value=t>{t}</option> }).collect_view()}
                </select>
            </label>
            <label class="inline">"Severity"
                <select id="events-severity" on:change=move |ev| severity.set(event_target_value(&ev))>
                    <option value="">"all"</option>
                    {["info", "low", "medium", "high", "critical"].into_iter().map(|s| view! { <option value=s>{s}</option> }).collect_view()}
                </select>
            </label>
            <button type="button" id="events-refresh" on:click=move |_| reload.update(|n| *n += 1)>"Refresh"</button>
            <button type="button" class="secondary" id="events-export" on:click=on_export>"Export JSONL"</button>
            {move || export.get().map(|res| match res {
                Ok(href) => view! { <a id="events-download" href=href download="security-events.jsonl">"Save security-events.jsonl"</a> }.into_any(),
                Err(e) => view! { <ErrorAlert message=e /> }.into_any(),
            })}
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || events.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(page) if page.items.is_empty() => view! { <p class="empty" id="events-empty">"No security events match."</p> }.into_any(),
                Ok(page) => view! {
                    <p class="muted">{format!("{} events", page.total)}</p>
                    <table id="events-table">
                        <thead><tr><th>"Time (UTC)"</th><th>"Type"</th><th>"Severity"</th><th>"User"</th><th>"IP"</th><th>"Endpoint"</th><th>"Details"</th></tr></thead>
                        <tbody>{page.items.into_iter().map(|e| view! {
                            <tr>
                                <td>{when(e.created_at)}</td>
                                <td><code>{e.event_type}</code></td>
                                <td><Badge text=e.severity /></td>
                                <td>{e.username.or(e.user_id.map(|id| format!("#{id}"))).unwrap_or_default()}</td>
                                <td>{e.ip.unwrap_or_default()}</td>
                                <td>{e.endpoint.unwrap_or_default()}</td>
                                <td><code class="small">{e.details.map(|d| d.to_string()).unwrap_or_default()}</code></td>
                            </tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}

/// The audit log (`/admin/audit-log`): changes, sign-ins, sign-outs and OAuth consents,
/// filtered by kind.
#[component]
pub fn AuditLog() -> impl IntoView {
    let kind = RwSignal::new(String::new());
    let entries = Load::new(move || {
        let kind = kind.get();
        async move { api::audit_log(&kind).await }
    });
    view! {
        <h1>"Audit log"</h1>
        <div class="toolbar">
            <label class="inline">"Kind"
                <select id="audit-kind" on:change=move |ev| kind.set(event_target_value(&ev))>
                    <option value="">"all"</option>
                    <option value="change">"changes"</option>
                    <option value="sign_in">"sign-ins"</option>
                    <option value="sign_out">"sign-outs"</option>
                    <option value="authorization">"OAuth authorisations"</option>
                </select>
            </label>
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || entries.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(page) if page.items.is_empty() => view! { <p class="empty" id="audit-empty">"Nothing recorded of this kind."</p> }.into_any(),
                Ok(page) => view! {
                    <p class="muted">{format!("{} entries", page.total)}</p>
                    <table id="audit-table">
                        <thead><tr><th>"Time (UTC)"</th><th>"Who"</th><th>"What"</th><th>"Object"</th><th>"IP"</th><th>"Details"</th></tr></thead>
                        <tbody>{page.items.into_iter().map(|a| view! {
                            <tr>
                                <td>{when(a.created_at)}</td>
                                <td>{a.actor_username}</td>
                                <td><code>{a.action}</code></td>
                                <td>{format!("{} {}", a.target_type, a.target_id.unwrap_or_default())}</td>
                                <td>{a.ip.unwrap_or_default()}</td>
                                <td><code class="small">{a.after.or(a.before).map(|d| d.to_string()).unwrap_or_default()}</code></td>
                            </tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}

/// Statistics cards for a window.
#[component]
pub fn StatsCards(window: Signal<String>) -> impl IntoView {
    let stats = Load::new(move || {
        let w = window.get();
        async move { api::stats(&w).await }
    });
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || stats.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(s) => view! {
                    <div class="cards" id="stats-cards">
                        <div class="card"><span class="big" id="stat-requests">{s.requests}</span>" requests"</div>
                        <div class="card"><span class="big">{format!("{:.1} %", s.success_rate * 100.0)}</span>" success"</div>
                        <div class="card"><span class="big">{format!("{} ms", s.p95_ms)}</span>" p95 latency"</div>
                        <div class="card"><span class="big">{format!("{} / {} ms", s.p50_ms, s.p99_ms)}</span>" p50 / p99"</div>
                    </div>
                }.into_any(),
            })}
        </Transition>
    }
}

/// The live activity feed: the latest records, then new ones as they happen over the
/// WebSocket (server-side filters), with pause and a detail view.
#[component]
pub fn Activity() -> impl IntoView {
    let server = RwSignal::new(String::new());
    let user = RwSignal::new(String::new());
    let method = RwSignal::new(String::new());
    let errors_only = RwSignal::new(false);
    let paused = RwSignal::new(false);
    let window = RwSignal::new("1h".to_string());
    let rows = RwSignal::new(Vec::<ActivityRecord>::new());
    let status = RwSignal::new("connecting".to_string());
    let error = RwSignal::new(None::<String>);
    let selected = RwSignal::new(None::<ActivityRecord>);
    let socket = StoredValue::new_local(None::<LiveSocket>);
    // (Re)connect whenever a filter changes.
    Effect::new(move || {
        let filter = LiveFilter {
            server: Some(server.get()).filter(|s| !s.is_empty()),
            user: Some(user.get()).filter(|s| !s.is_empty()),
            method: Some(method.get()).filter(|s| !s.is_empty()),
            errors_only: errors_only.get(),
            kinds: Some("activity".into()),
        };
        socket.update_value(|s| *s = None);
        status.set("connecting".into());
        spawn_local(async move {
            match api::activity().await {
                Ok(page) => rows.set(
                    page.items
                        .into_iter()
                        .filter(|r| filter.wants_activity(r))
                        .collect(),
                ),
                Err(e) => error.set(Some(e.message)),
            }
            let on_message = move |m: LiveMessage| match m {
                LiveMessage::Activity { record } => {
                    if !paused.get_untracked() {
                        rows.update(|rows| {
                            rows.insert(0, record);
                            rows.truncate(MAX_ROWS);
                        });
                    }
                }
                LiveMessage::Subscribed { .. } => status.set("live".into()),
                LiveMessage::SecurityEvent { .. } | LiveMessage::AuditProgress { .. } => {}
            };
            let on_close = move |reason: String| status.set(format!("disconnected: {reason}"));
            match LiveSocket::open(&filter, on_message, on_close).await {
                Ok(s) => socket.update_value(|slot| *slot = Some(s)),
                Err(e) => status.set(format!("not connected: {}", e.message)),
            }
        });
    });
    on_cleanup(move || socket.update_value(|s| *s = None));
    view! {
        <h1>"MCP activity"</h1>
        <div class="toolbar">
            <label class="inline">"Window"
                <select id="stats-window" on:change=move |ev| window.set(event_target_value(&ev))>
                    {["5m", "15m", "1h", "6h", "24h", "7d", "30d"].into_iter().map(|w| view! { <option value=w selected=w == "1h">{w}</option> }).collect_view()}
                </select>
            </label>
        </div>
        <StatsCards window=window.into() />
        <div class="toolbar">
            <label class="inline">"Server"<input id="activity-server" placeholder="any" bind:value=server /></label>
            <label class="inline">"User"<input id="activity-user" placeholder="any" bind:value=user /></label>
            <label class="inline">"Method"<input id="activity-method" placeholder="any" bind:value=method /></label>
            <label class="inline"><input type="checkbox" id="activity-errors" bind:checked=errors_only />"errors only"</label>
            <button type="button" id="activity-pause" on:click=move |_| paused.update(|p| *p = !*p)>
                {move || if paused.get() { "Resume" } else { "Pause" }}
            </button>
            <span class="muted" id="activity-status">{move || status.get()}</span>
        </div>
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        {move || if rows.with(Vec::is_empty) {
            view! { <p class="empty" id="activity-empty">"No MCP requests yet (new ones appear here as they happen)."</p> }.into_any()
        } else {
            view! {
                <table id="activity-table">
                    <thead><tr><th>"Time (UTC)"</th><th>"User"</th><th>"Client"</th><th>"Server"</th><th>"Method"</th><th>"Tool"</th><th>"Outcome"</th><th>"Latency"</th><th>"Bytes in / out"</th></tr></thead>
                    <tbody>{rows.get().into_iter().map(|r| {
                        let detail = r.clone();
                        let by_key = r.clone();
                        view! {
                            <tr class="clickable" tabindex="0" aria-label="Show the request's details"
                                on:click=move |_| selected.set(Some(detail.clone()))
                                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                                    if ev.key() == "Enter" || ev.key() == " " {
                                        ev.prevent_default();
                                        selected.set(Some(by_key.clone()));
                                    }
                                }>
                                <td>{when(r.at)}</td>
                                <td>{r.username.clone().unwrap_or_default()}</td>
                                <td>{r.client_name.clone().unwrap_or_default()}</td>
                                <td>{r.server.clone()}</td>
                                <td><code>{r.method.clone()}</code></td>
                                <td>{r.tool.clone().unwrap_or_default()}{r.suspicious.then_some(" ⚠")}</td>
                                <td><Badge text=r.status.clone() /></td>
                                <td>{format!("{} ms", r.latency_ms)}</td>
                                <td>{format!("{} / {}", r.bytes_in, r.bytes_out)}</td>
                            </tr>
                        }
                    }).collect_view()}</tbody>
                </table>
            }.into_any()
        }}
        {move || selected.get().map(|r| view! {
            <aside class="drawer panel" id="activity-detail" role="dialog" aria-label="Request detail">
                <button type="button" class="secondary" id="activity-detail-close" on:click=move |_| selected.set(None)>"Close"</button>
                <pre>{serde_json::to_string_pretty(&r).unwrap_or_default()}</pre>
            </aside>
        })}
    }
}

const MAX_ROWS: usize = 200;

/// A browser WebSocket to the live feed, closed when dropped.
pub struct LiveSocket {
    ws: web_sys::WebSocket,
    _on_message: wasm_bindgen::closure::Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_close: wasm_bindgen::closure::Closure<dyn FnMut(web_sys::CloseEvent)>,
}

impl Drop for LiveSocket {
    fn drop(&mut self) {
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

impl LiveSocket {
    /// Gets a ticket and opens the feed with `filter`.
    pub async fn open(
        filter: &LiveFilter,
        mut on_message: impl FnMut(LiveMessage) + 'static,
        mut on_close: impl FnMut(String) + 'static,
    ) -> Result<LiveSocket, api::ApiError> {
        use wasm_bindgen::JsCast;
        let ticket = api::live_ticket().await?;
        let location = web_sys::window().map(|w| w.location());
        let host = location
            .as_ref()
            .and_then(|l| l.host().ok())
            .unwrap_or_default();
        let scheme = if location.and_then(|l| l.protocol().ok()).as_deref() == Some("https:") {
            "wss"
        } else {
            "ws"
        };
        let mut query = vec![("ticket", ticket.ticket)];
        for (k, v) in [
            ("server", &filter.server),
            ("user", &filter.user),
            ("method", &filter.method),
            ("kinds", &filter.kinds),
        ] {
            if let Some(v) = v {
                query.push((k, v.clone()));
            }
        }
        if filter.errors_only {
            query.push(("errors_only", "true".into()));
        }
        let url = format!("{scheme}://{host}/admin/api/live?{}", api::query(&query));
        let ws = web_sys::WebSocket::new(&url).map_err(|_| api::ApiError {
            status: 0,
            code: "websocket".into(),
            message: "the browser could not open the live feed".into(),
        })?;
        let on_message = wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
            move |e: web_sys::MessageEvent| {
                if let Some(text) = e.data().as_string()
                    && let Ok(m) = serde_json::from_str::<LiveMessage>(&text)
                {
                    on_message(m);
                }
            },
        );
        let on_close = wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::CloseEvent)>::new(
            move |e: web_sys::CloseEvent| {
                let reason = e.reason();
                on_close(if reason.is_empty() {
                    format!("code {}", e.code())
                } else {
                    reason
                });
            },
        );
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(LiveSocket {
            ws,
            _on_message: on_message,
            _on_close: on_close,
        })
    }
}
