//! The dashboard: the gateway's health and readiness, the last 24 hours of MCP traffic (cards,
//! requests and latency charts in inline SVG, top tools), server health, recent security events
//! and the live activity feed.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::live::{LiveFilter, LiveMessage};
use shared::servers::ActivityRecord;

use crate::api;
use crate::components::widgets::{Badge, ErrorAlert, when};
use crate::pages::logs::LiveSocket;
use crate::resource::Load;

#[component]
pub fn Dashboard() -> impl IntoView {
    let health = Load::new(api::health);
    let ready = Load::new(api::ready);
    let servers = Load::new(api::list_servers);
    let events = Load::new(|| api::security_events(""));
    let activity = Load::new(api::activity);
    let stats = Load::new(|| api::stats("24h"));
    let live = RwSignal::new(Vec::<ActivityRecord>::new());
    let socket = StoredValue::new_local(None::<LiveSocket>);
    Effect::new(move || {
        spawn_local(async move {
            let filter = LiveFilter {
                kinds: Some("activity".into()),
                ..Default::default()
            };
            let on_message = move |m: LiveMessage| {
                if let LiveMessage::Activity { record } = m {
                    live.update(|rows| {
                        rows.insert(0, record);
                        rows.truncate(8);
                    });
                }
            };
            if let Ok(s) = LiveSocket::open(&filter, on_message, |_| {}).await {
                socket.update_value(|slot| *slot = Some(s));
            }
        });
    });
    on_cleanup(move || socket.update_value(|s| *s = None));
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
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || stats.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(s) => {
                    let requests: Vec<f64> = s.series.iter().map(|p| p.requests as f64).collect();
                    let errors: Vec<f64> = s.series.iter().map(|p| p.errors as f64).collect();
                    let p95: Vec<f64> = s.series.iter().map(|p| p.p95_ms as f64).collect();
                    let bucket = s.bucket_seconds / 60;
                    view! {
                        <div class="cards" id="stats-24h">
                            <div class="card"><div class="label">"Requests (24 h)"</div><div class="value" id="stat-24h-requests">{s.requests}</div></div>
                            <div class="card"><div class="label">"Success rate"</div><div class="value">{format!("{:.1} %", s.success_rate * 100.0)}</div></div>
                            <div class="card"><div class="label">"p95 latency"</div><div class="value">{format!("{} ms", s.p95_ms)}</div></div>
                            <div class="card"><div class="label">"Active users"</div><div class="value" id="stat-24h-users">{s.users.len()}</div></div>
                        </div>
                        <div class="charts">
                            <section class="panel chart" id="chart-requests">
                                <h2>{format!("Requests per {bucket} min (errors in red)")}</h2>
                                <Chart values=requests.clone() overlay=Some(errors) />
                                <div class="axis"><span>"24 h ago"</span><span>{format!("max {}", requests.iter().cloned().fold(0.0, f64::max))}</span><span>"now"</span></div>
                            </section>
                            <section class="panel chart" id="chart-latency">
                                <h2>"p95 latency (ms)"</h2>
                                <Chart values=p95.clone() overlay=None />
                                <div class="axis"><span>"24 h ago"</span><span>{format!("max {} ms", p95.iter().cloned().fold(0.0, f64::max))}</span><span>"now"</span></div>
                            </section>
                        </div>
                        <section class="panel">
                            <h2>"Top tools (24 h)"</h2>
                            {if s.top_tools.is_empty() {
                                view! { <p class="empty">"No tool calls yet."</p> }.into_any()
                            } else {
                                view! { <ol id="top-tools">{s.top_tools.into_iter().map(|t| view! {
                                    <li><code>{t.name}</code>{format!(" · {} calls · {} errors · p95 {} ms", t.requests, t.errors, t.p95_ms)}</li>
                                }).collect_view()}</ol> }.into_any()
                            }}
                        </section>
                    }.into_any()
                }
            })}
        </Transition>
        <section class="panel">
            <h2>"MCP servers"</h2>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || servers.get().map(|res| match res {
                    Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No servers registered."</p> }.into_any(),
                    Ok(list) => view! {
                        <ul class="plain" id="server-health">{list.into_iter().map(|s| view! {
                            <li><Badge text=s.health.status.clone() />" "<strong>{s.name}</strong>
                                {s.health.latency_ms.map(|ms| format!(" · {ms} ms")).unwrap_or_default()}
                                {s.health.tool_count.map(|n| format!(" · {n} tools")).unwrap_or_default()}</li>
                        }).collect_view()}</ul>
                    }.into_any(),
                })}
            </Transition>
        </section>
        <section class="panel">
            <h2>"Live activity"</h2>
            {move || if live.with(Vec::is_empty) {
                view! { <p class="empty" id="live-empty">"Waiting for MCP requests…"</p> }.into_any()
            } else {
                view! { <ul class="plain" id="live-activity">{live.get().into_iter().map(|r| view! {
                    <li><Badge text=r.status.clone() />" "{r.username.clone().unwrap_or_default()}" → "<strong>{r.server.clone()}</strong>" "<code>{r.method.clone()}</code>" "{r.tool.clone().unwrap_or_default()}<span class="muted">{format!(" {} ms", r.latency_ms)}</span></li>
                }).collect_view()}</ul> }.into_any()
            }}
        </section>
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

/// A line chart of `values` (oldest first) in inline SVG, scaled to its maximum, with an
/// optional second series on the same scale.
#[component]
fn Chart(values: Vec<f64>, overlay: Option<Vec<f64>>) -> impl IntoView {
    let max = values
        .iter()
        .chain(overlay.iter().flatten())
        .cloned()
        .fold(1.0, f64::max);
    let n = values.len().max(2) as f64 - 1.0;
    let points = |series: &[f64]| {
        series
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.2},{:.2}", i as f64 * 100.0 / n, 40.0 - v / max * 38.0))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let line = points(&values);
    let area = format!("0,40 {line} 100,40");
    let overlay = overlay.map(|o| points(&o));
    view! {
        <svg viewBox="0 0 100 40" preserveAspectRatio="none" role="img" aria-label="chart">
            <polygon class="area" points=area />
            <polyline class="line" points=line />
            {overlay.map(|o| view! { <polyline class="errors" points=o /> })}
        </svg>
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
