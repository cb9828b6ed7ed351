//! Security audit (`/admin/audit`, `/admin/audit/:id`): start a scan of a registered server or
//! a URL, follow running scans on the live feed, read a report's findings by severity (what
//! each means and how to fix it) and export it as JSON.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};
use shared::audit::{AuditFinding, AuditRequest, AuditScan};
use shared::live::{LiveFilter, LiveMessage};

use crate::api;
use crate::components::widgets::{Badge, ErrorAlert, when};
use crate::pages::logs::LiveSocket;
use crate::resource::Load;

fn counts(scan: &AuditScan) -> String {
    let s = scan.summary;
    format!(
        "{} high · {} medium · {} low · {} info",
        s.high, s.medium, s.low, s.info
    )
}

#[component]
pub fn Audit() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let servers = Load::new(api::list_servers);
    let scans = Load::new(move || {
        reload.track();
        api::audits()
    });
    let target = RwSignal::new(String::new());
    let url = RwSignal::new(String::new());
    let token = RwSignal::new(String::new());
    let allow_private = RwSignal::new(false);
    let progress =
        RwSignal::new(std::collections::HashMap::<i64, (u32, u32, Option<String>)>::new());
    // Running scans move on the live feed; a finished one reloads the list.
    let socket = StoredValue::new_local(None::<LiveSocket>);
    spawn_local(async move {
        let filter = LiveFilter {
            kinds: Some("audit".into()),
            ..Default::default()
        };
        let on_message = move |m: LiveMessage| {
            if let LiveMessage::AuditProgress { scan } = m {
                if scan.status == "running" {
                    progress.update(|p| {
                        p.insert(scan.id, (scan.progress, scan.total, scan.check));
                    });
                } else {
                    reload.update(|n| *n += 1);
                }
            }
        };
        if let Ok(s) = LiveSocket::open(&filter, on_message, |_| {}).await {
            socket.update_value(|slot| *slot = Some(s));
        }
    });
    on_cleanup(move || socket.update_value(|s| *s = None));
    let navigate = use_navigate();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let chosen = target.get_untracked();
        let req = AuditRequest {
            url: (chosen.is_empty()).then(|| url.get_untracked()),
            server_id: chosen.parse().ok(),
            bearer_token: Some(token.get_untracked()).filter(|t| !t.is_empty()),
            allow_private: allow_private.get_untracked().then_some(true),
        };
        let navigate = navigate.clone();
        spawn_local(async move {
            match api::start_audit(&req).await {
                Ok(scan) => {
                    error.set(None);
                    token.set(String::new());
                    navigate(&format!("/admin/audit/{}", scan.id), Default::default());
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let row = move |s: AuditScan| {
        let id = s.id;
        let running = s.status == "running";
        let on_cancel = move |_| {
            spawn_local(async move {
                if let Err(e) = api::cancel_audit(id).await {
                    error.set(Some(e.message));
                }
                reload.update(|n| *n += 1);
            });
        };
        view! {
            <tr id=format!("scan-{id}")>
                <td><a href=format!("/admin/audit/{id}")>{s.server.clone().unwrap_or_else(|| s.target.clone())}</a></td>
                <td><Badge text=s.status.clone() /></td>
                <td>{move || {
                    let p = progress.with(|p| p.get(&id).cloned());
                    match p {
                        Some((done, total, check)) if running => format!("{done}/{total} {}", check.unwrap_or_default()),
                        _ => format!("{}/{}", s.progress, s.total),
                    }
                }}</td>
                <td class="scan-counts">{counts(&s)}</td>
                <td>{when(s.started_at)}</td>
                <td>{s.requested_by.clone()}</td>
                <td>{running.then(|| view! { <button type="button" class="danger-outline cancel-scan" on:click=on_cancel>"Cancel"</button> })}</td>
            </tr>
        }
    };
    view! {
        <h1>"Security audit"</h1>
        <p class="muted">"Scans an MCP endpoint the way an attacker would: authentication, metadata, Origin and session checks, malformed input, tool poisoning and shadowing. Requests go only to the server scanned (no redirects elsewhere); loopback and private addresses only when allowed."</p>
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <form class="panel grid-form" id="audit-form" on:submit=on_submit>
            <label>"Target"
                <select id="audit-target" on:change=move |ev| target.set(event_target_value(&ev))>
                    <option value="">"A URL…"</option>
                    {move || servers.get().and_then(Result::ok).map(|list| list.into_iter().map(|s| view! {
                        <option value=s.id.to_string()>{format!("{} ({})", s.name, s.url)}</option>
                    }).collect_view())}
                </select>
            </label>
            <label>"URL"<input id="audit-url" type="url" placeholder="https://mcp.example.com/mcp" bind:value=url disabled=move || !target.get().is_empty() /></label>
            <label>"Bearer token (optional, never stored)"<input id="audit-token" type="password" autocomplete="off" bind:value=token /></label>
            <label class="inline"><input id="audit-allow-private" type="checkbox" bind:checked=allow_private />"Allow loopback and private addresses"</label>
            <button type="submit" id="audit-start">"Run scan"</button>
        </form>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || scans.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(list) if list.is_empty() => view! { <p class="empty">"No scans yet."</p> }.into_any(),
                Ok(list) => view! {
                    <table id="scans-table">
                        <thead><tr><th>"Target"</th><th>"Status"</th><th>"Checks"</th><th>"Findings"</th><th>"Started"</th><th>"By"</th><th></th></tr></thead>
                        <tbody>{list.into_iter().map(row).collect_view()}</tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}

fn finding(f: AuditFinding) -> impl IntoView {
    let class = format!("finding sev-{}", f.severity);
    view! {
        <article class=class>
            <header><Badge text=f.severity.clone() />" "<strong class="finding-title">{f.title.clone()}</strong>" "<code class="muted">{f.check.clone()}</code></header>
            <p>{f.detail.clone()}</p>
            <p><strong>"Fix: "</strong>{f.fix.clone()}</p>
            {f.evidence.clone().map(|e| view! { <p class="muted">"Seen: "<code>{e}</code></p> })}
        </article>
    }
}

#[component]
pub fn AuditReportPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|v| v.parse::<i64>().ok()));
    let tick = RwSignal::new(0u32);
    let scan = Load::new(move || {
        tick.track();
        let id = id();
        async move {
            match id {
                Some(id) => api::audit(id).await.map(Some),
                None => Ok(None),
            }
        }
    });
    // While it runs, look again every second.
    Effect::new(move || {
        if let Some(Ok(Some(s))) = scan.get()
            && s.status == "running"
        {
            set_timeout(
                move || tick.update(|n| *n += 1),
                std::time::Duration::from_secs(1),
            );
        }
    });
    view! {
        <p><a href="/admin/audit">"← All scans"</a></p>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || scan.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(None) => view! { <p class="empty">"No such scan."</p> }.into_any(),
                Ok(Some(s)) => {
                    let export = s.report.as_ref().and_then(|r| serde_json::to_string_pretty(r).ok()).map(|json| {
                        let href = format!("data:application/json;charset=utf-8,{}", String::from(js_sys::encode_uri_component(&json)));
                        view! { <a class="button" id="audit-export" download=format!("mcp-audit-{}.json", s.id) href=href>"Export JSON"</a> }
                    });
                    let by = |sev: &'static str| s.report.as_ref().map(|r| r.findings.iter().filter(|f| f.severity == sev).cloned().collect::<Vec<_>>()).unwrap_or_default();
                    let sections = ["high", "medium", "low", "info"].into_iter().map(|sev| {
                        let items = by(sev);
                        (!items.is_empty()).then(|| view! {
                            <section class="findings" id=format!("findings-{sev}")>
                                <h2>{format!("{} ({})", sev, items.len())}</h2>
                                {items.into_iter().map(finding).collect_view()}
                            </section>
                        })
                    }).collect_view();
                    let checks = s.report.as_ref().map(|r| r.checks.clone()).unwrap_or_default();
                    view! {
                        <h1>"Scan of "{s.server.clone().unwrap_or_else(|| s.target.clone())}</h1>
                        <p><Badge text=s.status.clone() />" "<span id="audit-status">{s.status.clone()}</span>" · "<span id="audit-counts">{counts(&s)}</span>" · "{format!("{}/{} checks", s.progress, s.total)}" · "<code>{s.target.clone()}</code></p>
                        {s.error.clone().map(|e| view! { <ErrorAlert message=e /> })}
                        {export}
                        {sections}
                        {(!checks.is_empty()).then(|| view! {
                            <h2>"Checks"</h2>
                            <table id="audit-checks">
                                <thead><tr><th>"Check"</th><th>"Result"</th><th>"Note"</th></tr></thead>
                                <tbody>{checks.into_iter().map(|c| view! {
                                    <tr><td>{c.name}</td><td><Badge text=c.status /></td><td class="muted">{c.note.unwrap_or_default()}</td></tr>
                                }).collect_view()}</tbody>
                            </table>
                        })}
                    }.into_any()
                }
            })}
        </Transition>
    }
}
