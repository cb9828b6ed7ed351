//! The dashboard: the gateway's health and readiness, MCP servers online, recent activity and
//! security events. (Charts and the live feed come with the metrics and WebSocket APIs.)

use leptos::prelude::*;

use crate::api;
use crate::components::widgets::{Badge, ErrorAlert, when};

#[component]
pub fn Dashboard() -> impl IntoView {
    let health = LocalResource::new(api::health);
    let ready = LocalResource::new(api::ready);
    let servers = LocalResource::new(api::list_servers);
    let events = LocalResource::new(|| api::security_events(""));
    let activity = LocalResource::new(api::activity);
    view! {
        <h1>"Dashboard"</h1>
        <div class="cards">
            <Transition fallback=|| view! { <div class="card loading">"Loading…"</div> }>
                {move || health.get().map(|res| match res {
                    Ok(h) => view! {
                        <div class="card"><div class="label">"Status"</div>
                            <div class="value ok" id="health-status">{h.status}</div></div>
                        <div class="card"><div class="label">"Version"</div>
                            <div class="value" id="health-version">{h.version}</div></div>
                        <div class="card"><div class="label">"Uptime"</div>
                            <div class="value" id="health-uptime">{format_uptime(h.uptime_seconds)}</div></div>
                    }.into_any(),
                    Err(e) => view! {
                        <div class="card"><div class="label">"Status"</div>
                            <div class="value error" id="health-status">{e.message}</div></div>
                    }.into_any(),
                })}
                {move || ready.get().map(|res| match res {
                    Ok(r) => view! {
                        <div class="card"><div class="label">"Database"</div>
                            <div class="value" id="ready-database">{format!("{} · {} migrations", r.database, r.migrations)}</div></div>
                    }.into_any(),
                    Err(e) => view! {
                        <div class="card"><div class="label">"Database"</div>
                            <div class="value error" id="ready-database">{e.message}</div></div>
                    }.into_any(),
                })}
            </Transition>
        </div>
        <div class="cards" id="overview">
            <Transition fallback=|| ()>
                {move || servers.get().map(|res| match res {
                    Ok(list) => {
                        let online = list.iter().filter(|s| s.health.status == "online").count();
                        view! { <div class="card"><div class="label">"MCP servers online"</div>
                            <div class="value" id="servers-online">{format!("{online} / {}", list.len())}</div></div> }.into_any()
                    }
                    Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                })}
                {move || activity.get().map(|res| match res {
                    Ok(page) => {
                        let errors = page.items.iter().filter(|r| r.status != "ok").count();
                        view! {
                            <div class="card"><div class="label">"MCP requests (all time)"</div>
                                <div class="value" id="requests-total">{page.total}</div></div>
                            <div class="card"><div class="label">"Errors in the last 100"</div>
                                <div class="value">{errors}</div></div>
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                })}
            </Transition>
        </div>
        <section class="panel">
            <h2>"Recent security events"</h2>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || events.get().map(|res| match res {
                    Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                    Ok(page) if page.items.is_empty() => view! { <p class="empty">"None."</p> }.into_any(),
                    Ok(page) => view! {
                        <ul class="plain" id="recent-events">
                            {page.items.into_iter().take(5).map(|e| view! {
                                <li><Badge text=e.severity />" "<code>{e.event_type}</code>" "{e.username.unwrap_or_default()}" "<span class="muted">{when(e.created_at)}</span></li>
                            }).collect_view()}
                        </ul>
                    }.into_any(),
                })}
            </Transition>
        </section>
    }
}

fn format_uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}
