//! The dashboard. For now: the gateway's health and readiness.

use leptos::prelude::*;

use crate::api;

#[component]
pub fn Dashboard() -> impl IntoView {
    let health = LocalResource::new(api::health);
    let ready = LocalResource::new(api::ready);
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
