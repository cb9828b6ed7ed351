//! Tool changes (`/admin/tool-changes`): tool definitions a backend changed or added since they
//! were approved, side by side with the approved version, to approve or reject (tool pinning);
//! `?server=ID` shows every pinned tool of one server.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use serde_json::Value;
use shared::servers::{PinDecision, ToolPin};

use crate::api;
use crate::components::widgets::{Badge, ErrorAlert, when};
use crate::resource::Load;

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Lines of `text`, each marked when it is not among `other`'s lines.
fn marked(text: &str, other: &str) -> Vec<(String, bool)> {
    let mut theirs: Vec<&str> = other.lines().collect();
    theirs.sort_unstable();
    text.lines()
        .map(|l| (l.to_string(), theirs.binary_search(&l).is_err()))
        .collect()
}

fn side(text: &str, other: &str, class: &'static str) -> AnyView {
    let lines = marked(text, other);
    view! {
        <pre class=format!("pin-side {class}")>{lines.into_iter().map(|(line, changed)| view! {
            <span class:changed=changed>{line}"\n"</span>
        }).collect_view()}</pre>
    }
    .into_any()
}

#[component]
pub fn ToolChanges() -> impl IntoView {
    let query = use_query_map();
    let server = move || query.with(|q| q.get("server").and_then(|s| s.parse::<i64>().ok()));
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let pins = Load::new(move || {
        reload.track();
        let server = server();
        async move {
            match server {
                Some(id) => api::tool_pins(Some(id), "").await,
                None => {
                    let mut list = api::tool_pins(None, "pending").await?;
                    list.extend(api::tool_pins(None, "rejected").await?);
                    Ok(list)
                }
            }
        }
    });
    let card = move |p: ToolPin| {
        let (name, fingerprint) = (p.name.clone(), p.fingerprint.clone());
        let decide = move |approve: bool| {
            let decision = PinDecision {
                name: name.clone(),
                fingerprint: fingerprint.clone(),
                decision: if approve { "approve" } else { "reject" }.into(),
            };
            let server_id = p.server_id;
            move |_| {
                let decision = decision.clone();
                spawn_local(async move {
                    match api::decide_tool_pin(server_id, &decision).await {
                        Ok(_) => error.set(None),
                        Err(e) => error.set(Some(e.message)),
                    }
                    reload.update(|n| *n += 1);
                });
            }
        };
        let before = p.approved.as_ref().map(pretty).unwrap_or_default();
        let after = pretty(&p.current);
        let open = p.status != "approved";
        let (before_side, after_side) = (
            side(&before, &after, "before"),
            side(&after, &before, "after"),
        );
        let approved_title = if p.approved.is_some() {
            "Approved"
        } else {
            "Approved (none: a new tool)"
        };
        let pending = p.status == "pending";
        view! {
            <article class="panel pin" id=format!("pin-{}-{}", p.server, p.name)>
                <header class="server-head">
                    <h2>{format!("{} · {}", p.server, p.name)}</h2>
                    <Badge text=p.status.clone() />
                    <span class="muted">{format!("changed {}", when(p.changed_at))}</span>
                    {p.decided_by.clone().map(|b| view! { <span class="muted">{format!(" · last decided by {b}")}</span> })}
                </header>
                {open.then(move || view! {
                    <div class="pin-diff">
                        <div><h3>{approved_title}</h3>{before_side}</div>
                        <div><h3>"Sent by the backend now"</h3>{after_side}</div>
                    </div>
                    <div class="actions">
                        <button type="button" class="approve-pin" on:click=decide(true)>"Approve this version"</button>
                        {pending.then(|| view! {
                            <button type="button" class="danger-outline reject-pin" on:click=decide(false)>"Reject"</button>
                        })}
                    </div>
                })}
                {(!open).then(|| view! { <pre class="pin-side">{after.clone()}</pre> })}
            </article>
        }
    };
    view! {
        <h1>"Tool changes"</h1>
        <p class="muted">"A backend that changes what a tool says it does, or adds a tool, is held here. Under quarantine the tool is hidden from clients and its calls are refused until you approve the exact version shown."</p>
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || pins.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(list) if list.is_empty() => view! { <p class="empty" id="pins-empty">"No changed or new tools wait for review."</p> }.into_any(),
                Ok(list) => list.into_iter().map(card).collect_view().into_any(),
            })}
        </Transition>
    }
}
