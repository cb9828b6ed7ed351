//! The OAuth consent page (`/consent?request=…`): names the application, where it will send the
//! browser, the scopes and the MCP endpoint; the user signs in (unless already signed in on
//! this browser) and approves or denies. The gateway then says where to send the browser.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use shared::oauth::ConsentDecision;

use crate::api;
use crate::components::widgets::ErrorAlert;
use crate::resource::Load;

fn scope_text(scope: &str) -> &'static str {
    match scope {
        "mcp" => {
            "Use the MCP servers you have access to: list and call their tools, prompts and resources"
        }
        "mcp:read" => "See which tools, prompts and resources your MCP servers offer (no calls)",
        _ => "An unknown permission",
    }
}

#[component]
pub fn Consent() -> impl IntoView {
    let query = use_query_map();
    let request = move || query.with(|q| q.get("request").unwrap_or_default());
    let details = Load::new(move || {
        let r = request();
        async move { api::consent_request(&r).await }
    });
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let use_other = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let decide = move |approve: bool, signed_in: bool| {
        let with_password = approve && (!signed_in || use_other.get_untracked());
        let decision = ConsentDecision {
            request: request(),
            approve,
            username: with_password.then(|| username.get_untracked()),
            password: with_password.then(|| password.get_untracked()),
        };
        busy.set(true);
        spawn_local(async move {
            match api::consent_decision(&decision).await {
                Ok(result) => {
                    if let Some(window) = web_sys::window() {
                        let _ = window.location().set_href(&result.redirect_to);
                    }
                }
                Err(e) => {
                    error.set(Some(e.message));
                    busy.set(false);
                }
            }
        });
    };
    view! {
        <h1>"Allow access?"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || details.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(d) => {
                    let signed_in = d.signed_in_as.clone();
                    let has_session = signed_in.is_some();
                    let on_submit = move |ev: leptos::ev::SubmitEvent| {
                        ev.prevent_default();
                        decide(true, has_session);
                    };
                    view! {
                        <section class="panel" id="consent">
                            <p><strong id="consent-client">{d.client_name.clone()}</strong>
                               " ("<span id="consent-client-host">{d.redirect_host.clone()}</span>")"
                               " wants to use your AuthMCP Gateway account."</p>
                            <dl class="facts">
                                <dt>"Application"</dt><dd><code id="consent-client-id">{d.client_id.clone()}</code>
                                    {match d.client_kind.as_str() {
                                        "cimd" => " (identified by its published metadata)",
                                        "dynamic" => " (registered itself; its name is not verified)",
                                        _ => "",
                                    }}</dd>
                                <dt>"Returns you to"</dt><dd><strong id="consent-redirect-host">{d.redirect_host.clone()}</strong>" "<code class="muted">{d.redirect_uri.clone()}</code></dd>
                                <dt>"MCP endpoint"</dt><dd><code id="consent-resource">{d.resource.clone()}</code></dd>
                                <dt>"Permissions"</dt><dd><ul class="plain" id="consent-scopes">
                                    {d.scopes.iter().map(|s| view! { <li><code>{s.clone()}</code>" · "{scope_text(s)}</li> }).collect_view()}
                                </ul></dd>
                            </dl>
                            <p class="muted">"Only continue if you started this sign-in from that application. You can withdraw access later."</p>
                            <form class="stack" id="consent-form" on:submit=on_submit>
                                {match signed_in {
                                    Some(name) => view! {
                                        <p id="consent-signed-in">"Signed in as "<strong>{name}</strong>". "
                                            <button type="button" class="link" on:click=move |_| use_other.set(true)>"Use another account"</button>
                                        </p>
                                    }.into_any(),
                                    None => ().into_any(),
                                }}
                                <Show when=move || !has_session || use_other.get()>
                                    <label>"Username"<input id="consent-username" autocomplete="username" required bind:value=username /></label>
                                    <label>"Password"<input id="consent-password" type="password" autocomplete="current-password" required bind:value=password /></label>
                                </Show>
                                {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
                                <div class="actions">
                                    <button type="submit" id="consent-approve" disabled=move || busy.get()>"Allow"</button>
                                    <button type="button" id="consent-deny" class="danger-outline" disabled=move || busy.get()
                                        on:click=move |_| decide(false, has_session && !use_other.get_untracked())>"Deny"</button>
                                </div>
                            </form>
                        </section>
                    }.into_any()
                }
            })}
        </Transition>
    }
}
