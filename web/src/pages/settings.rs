//! Settings: MCP rate limits (defaults and overrides per user, server and tool, applied live)
//! and the configuration in force (read-only: set through the environment or the config file).

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::servers::{RateLimitOverride, RateLimits};

use crate::api;
use crate::components::widgets::ErrorAlert;
use crate::resource::Load;

#[component]
pub fn Settings() -> impl IntoView {
    let limits = RwSignal::new(None::<RateLimits>);
    let message = RwSignal::new(None::<Result<String, String>>);
    let config = Load::new(|| async { api::gateway_settings().await });
    let servers = Load::new(|| async { api::list_servers().await });
    Effect::new(move || {
        spawn_local(async move {
            match api::rate_limits().await {
                Ok(l) => limits.set(Some(l)),
                Err(e) => message.set(Some(Err(e.message))),
            }
        });
    });
    let save = move |next: RateLimits| {
        spawn_local(async move {
            match api::set_rate_limits(&next).await {
                Ok(saved) => {
                    limits.set(Some(saved));
                    message.set(Some(Ok("Saved; in force now.".into())));
                }
                Err(e) => message.set(Some(Err(e.message))),
            }
        });
    };
    let user = RwSignal::new("0".to_string());
    let user_server = RwSignal::new("0".to_string());
    let user_tool = RwSignal::new("0".to_string());
    Effect::new(move || {
        if let Some(l) = limits.get() {
            user.set(l.user_per_minute.to_string());
            user_server.set(l.user_server_per_minute.to_string());
            user_tool.set(l.user_tool_per_minute.to_string());
        }
    });
    let on_defaults = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(mut next) = limits.get_untracked() else {
            return;
        };
        let parse = |s: RwSignal<String>| s.get_untracked().trim().parse::<u32>();
        match (parse(user), parse(user_server), parse(user_tool)) {
            (Ok(a), Ok(b), Ok(c)) => {
                next.user_per_minute = a;
                next.user_server_per_minute = b;
                next.user_tool_per_minute = c;
                save(next);
            }
            _ => message.set(Some(Err(
                "limits are whole numbers of requests per minute (0 = off)".into(),
            ))),
        }
    };
    let o_kind = RwSignal::new("tool".to_string());
    let o_server = RwSignal::new(String::new());
    let o_tool = RwSignal::new(String::new());
    let o_user = RwSignal::new(String::new());
    let o_rate = RwSignal::new("60".to_string());
    let on_override = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(mut next) = limits.get_untracked() else {
            return;
        };
        let Ok(per_minute) = o_rate.get_untracked().trim().parse::<u32>() else {
            message.set(Some(Err("the limit is a whole number per minute".into())));
            return;
        };
        let kind = o_kind.get_untracked();
        let id = |s: RwSignal<String>| s.get_untracked().trim().parse::<i64>().ok();
        next.overrides.push(RateLimitOverride {
            user_id: (kind == "user").then(|| id(o_user)).flatten(),
            server_id: (kind != "user").then(|| id(o_server)).flatten(),
            tool: (kind == "tool").then(|| o_tool.get_untracked().trim().to_string()),
            kind,
            per_minute,
            label: None,
        });
        save(next);
    };
    view! {
        <h1>"Settings"</h1>
        {move || message.get().map(|m| match m {
            Ok(t) => view! { <p class="ok" id="settings-message">{t}</p> }.into_any(),
            Err(t) => view! { <ErrorAlert message=t /> }.into_any(),
        })}
        <section class="panel">
            <h2>"MCP rate limits"</h2>
            <p class="muted">"Requests per minute (0 = off), with a burst of ten seconds' worth; per replica."</p>
            <form class="grid-form" id="limits-form" on:submit=on_defaults>
                <label>"Per user"<input id="limit-user" type="number" min="0" bind:value=user /></label>
                <label>"Per user and server"<input id="limit-user-server" type="number" min="0" bind:value=user_server /></label>
                <label>"Per user and tool"<input id="limit-user-tool" type="number" min="0" bind:value=user_tool /></label>
                <button type="submit" id="limits-save">"Save"</button>
            </form>
            <h3>"Overrides"</h3>
            <ul class="plain" id="limit-overrides">
                {move || limits.get().map(|l| l.overrides.into_iter().enumerate().map(|(i, o)| {
                    let remove = move |_| {
                        if let Some(mut next) = limits.get_untracked() {
                            next.overrides.remove(i);
                            save(next);
                        }
                    };
                    let what = match o.kind.as_str() {
                        "user" => format!("user {}", o.label.clone().unwrap_or_default()),
                        "server" => format!("each user on {}", o.label.clone().unwrap_or_default()),
                        _ => format!("each user for {} / {}", o.label.clone().unwrap_or_default(), o.tool.clone().unwrap_or_default()),
                    };
                    view! { <li>{format!("{what}: {} per minute ", o.per_minute)}<button type="button" class="danger-outline" on:click=remove>"Remove"</button></li> }
                }).collect_view())}
            </ul>
            <form class="inline-form" id="override-form" on:submit=on_override>
                <select aria-label="Kind" id="override-kind" on:change=move |ev| o_kind.set(event_target_value(&ev))>
                    <option value="tool">"tool"</option>
                    <option value="server">"server"</option>
                    <option value="user">"user (id)"</option>
                </select>
                <Show when=move || o_kind.get() != "user" fallback=move || view! {
                    <input aria-label="User id" id="override-user" type="number" placeholder="user id" bind:value=o_user />
                }>
                    <select aria-label="Server" id="override-server" on:change=move |ev| o_server.set(event_target_value(&ev))>
                        <option value="">"server"</option>
                        {move || servers.get().and_then(Result::ok).unwrap_or_default().into_iter()
                            .map(|s| view! { <option value=s.id.to_string()>{s.name.clone()}</option> }).collect_view()}
                    </select>
                </Show>
                <Show when=move || o_kind.get() == "tool">
                    <input aria-label="Tool" id="override-tool" placeholder="tool name" bind:value=o_tool />
                </Show>
                <input aria-label="Per minute" id="override-rate" type="number" min="0" bind:value=o_rate />
                <button type="submit" id="override-add">"Add override"</button>
            </form>
        </section>
        <LiveSettings />
        <section class="panel">
            <h2>"Configuration"</h2>
            <p class="muted">"Set through environment variables or the configuration file (docs/CONFIG.md); restart to change."</p>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || config.get().map(|res| match res {
                    Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                    Ok(c) => view! {
                        <dl class="facts" id="settings-config">
                            <dt>"Public URL"</dt><dd><code>{c.public_url}</code></dd>
                            <dt>"OAuth client metadata documents"</dt><dd>{if c.oauth_cimd { "on" } else { "off" }}</dd>
                            <dt>"MCP session idle / default timeout"</dt><dd>{format!("{} s / {} s", c.mcp_session_idle_secs, c.mcp_default_timeout_secs)}</dd>
                            <dt>"Prometheus /metrics"</dt><dd>{if c.metrics_enabled { "on" } else { "off" }}</dd>
                            <dt>"Suspicious-payload detection"</dt><dd>"per server, on the MCP servers page"</dd>
                        </dl>
                    }.into_any(),
                })}
            </Transition>
        </section>
    }
}

/// Token lifetimes, registration and retention: validated by the server, in force at once.
#[component]
fn LiveSettings() -> impl IntoView {
    let access = RwSignal::new(String::new());
    let refresh_days = RwSignal::new(String::new());
    let registration = RwSignal::new(false);
    let dcr = RwSignal::new(true);
    let retention = RwSignal::new(String::new());
    let message = RwSignal::new(None::<Result<String, String>>);
    let fill = move |c: shared::servers::GatewaySettings| {
        access.set(c.access_token_ttl_secs.to_string());
        refresh_days.set((c.refresh_token_ttl_secs / 86_400).to_string());
        registration.set(c.allow_registration);
        dcr.set(c.oauth_dcr);
        retention.set(c.log_retention_days.to_string());
    };
    Effect::new(move || {
        spawn_local(async move {
            match api::gateway_settings().await {
                Ok(c) => fill(c),
                Err(e) => message.set(Some(Err(e.message))),
            }
        });
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let update = shared::servers::SettingsUpdate {
            access_token_ttl_secs: access.get_untracked().trim().parse().ok(),
            refresh_token_ttl_secs: refresh_days
                .get_untracked()
                .trim()
                .parse::<u64>()
                .ok()
                .map(|d| d * 86_400),
            allow_registration: Some(registration.get_untracked()),
            oauth_dcr: Some(dcr.get_untracked()),
            log_retention_days: retention.get_untracked().trim().parse().ok(),
        };
        spawn_local(async move {
            match api::set_gateway_settings(&update).await {
                Ok(c) => {
                    fill(c);
                    message.set(Some(Ok("Saved; in force now.".into())));
                }
                Err(e) => message.set(Some(Err(e.message))),
            }
        });
    };
    view! {
        <section class="panel">
            <h2>"Sessions, registration and retention"</h2>
            <form class="grid-form" id="live-settings-form" on:submit=on_submit>
                <label>"Access token lifetime (seconds, 60–86400)"<input id="setting-access-ttl" type="number" min="60" max="86400" bind:value=access /></label>
                <label>"Refresh token lifetime (days)"<input id="setting-refresh-days" type="number" min="1" max="365" bind:value=refresh_days /></label>
                <label class="inline"><input type="checkbox" id="setting-registration" bind:checked=registration />"Self-registration (/auth/register)"</label>
                <label class="inline"><input type="checkbox" id="setting-dcr" bind:checked=dcr />"OAuth dynamic client registration"</label>
                <label>"Keep logs, activity and events (days)"<input id="setting-retention" type="number" min="1" max="3650" bind:value=retention /></label>
                <button type="submit" id="live-settings-save">"Save"</button>
            </form>
            {move || message.get().map(|m| match m {
                Ok(t) => view! { <p class="ok" id="live-settings-message">{t}</p> }.into_any(),
                Err(t) => view! { <ErrorAlert message=t /> }.into_any(),
            })}
        </section>
    }
}
