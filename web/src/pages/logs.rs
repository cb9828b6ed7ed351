//! Security events and MCP activity tables (refreshed on demand; the live feed comes with the
//! WebSocket stream).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::components::widgets::{Badge, ErrorAlert, when};

#[component]
pub fn SecurityEvents() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let kind = RwSignal::new(String::new());
    let severity = RwSignal::new(String::new());
    let export = RwSignal::new(None::<Result<String, String>>);
    let filter = move || api::query(&[("type", kind.get()), ("severity", severity.get())]);
    let events = LocalResource::new(move || {
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
                    {["auth_failed", "token_invalid", "token_reuse", "account_locked", "access_denied", "rate_limited", "origin_rejected"]
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

#[component]
pub fn Activity() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let records = LocalResource::new(move || {
        reload.track();
        async move { api::activity().await }
    });
    view! {
        <h1>"MCP activity"</h1>
        <div class="toolbar"><button type="button" id="activity-refresh" on:click=move |_| reload.update(|n| *n += 1)>"Refresh"</button></div>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || records.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(page) if page.items.is_empty() => view! { <p class="empty">"No MCP requests yet."</p> }.into_any(),
                Ok(page) => view! {
                    <table id="activity-table">
                        <thead><tr><th>"Time (UTC)"</th><th>"User"</th><th>"Server"</th><th>"Method"</th><th>"Tool"</th><th>"Outcome"</th><th>"Latency"</th><th>"Bytes in / out"</th></tr></thead>
                        <tbody>{page.items.into_iter().map(|r| view! {
                            <tr>
                                <td>{when(r.at)}</td>
                                <td>{r.username.unwrap_or_default()}</td>
                                <td>{r.server}</td>
                                <td><code>{r.method}</code></td>
                                <td>{r.tool.unwrap_or_default()}</td>
                                <td><Badge text=r.status /></td>
                                <td>{format!("{} ms", r.latency_ms)}</td>
                                <td>{format!("{} / {}", r.bytes_in, r.bytes_out)}</td>
                            </tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}
