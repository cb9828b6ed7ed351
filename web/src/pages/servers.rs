//! MCP servers: list with health, add (credentials are write-only), enable/disable, test the
//! connection and see its tools, delete, and copy-paste client configuration.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::servers::{
    ConnectionTest, CreateServer, CredentialInput, McpServer, OAuthCodeInput, Transport,
    UpdateServer,
};

use crate::api;
use crate::components::snippets::ClientSnippets;
use crate::components::widgets::{Badge, ConfirmDelete, ErrorAlert};
use crate::resource::Load;

#[component]
pub fn Servers() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let servers = Load::new(move || {
        reload.track();
        async move { api::list_servers().await }
    });
    let refresh = Callback::new(move |()| reload.update(|n| *n += 1));
    // Clients use the gateway's PUBLIC_URL, which may differ from the address this browser
    // uses (a tunnel, a reverse proxy); the browser's own origin only until it is known.
    let settings = Load::new(|| async { api::gateway_settings().await });
    let aggregated = Signal::derive(move || {
        let base = settings
            .get()
            .and_then(|r| r.ok())
            .map(|s| s.public_url)
            .unwrap_or_else(|| {
                web_sys::window()
                    .and_then(|w| w.location().origin().ok())
                    .unwrap_or_default()
            });
        format!("{base}/mcp")
    });
    view! {
        <h1>"MCP servers"</h1>
        <section class="panel" id="aggregated-endpoint">
            <h2>"All servers at one URL"</h2>
            <p><code id="aggregated-url">{aggregated}</code>" serves every server a user may use, with tools named "<code>"{prefix}__{tool}"</code>"."</p>
            {move || view! { <ClientSnippets name="gateway".to_string() url=aggregated.get() /> }}
        </section>
        <AddServerForm on_added=refresh />
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || servers.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(list) if list.is_empty() => view! {
                    <p class="empty" id="servers-empty">"No MCP servers yet. Add one above."</p>
                }.into_any(),
                Ok(list) => view! {
                    <div class="server-list" id="servers-list">
                        {list.into_iter().map(|s| view! { <ServerCard server=s error=error on_change=refresh /> }).collect_view()}
                    </div>
                }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn ServerCard(
    server: McpServer,
    error: RwSignal<Option<String>>,
    on_change: Callback<()>,
) -> impl IntoView {
    let id = server.id;
    let name = server.name.clone();
    let test = RwSignal::new(None::<Result<ConnectionTest, String>>);
    let testing = RwSignal::new(false);
    let run_test = move |_| {
        testing.set(true);
        spawn_local(async move {
            test.set(Some(api::test_server(id).await.map_err(|e| e.message)));
            testing.set(false);
        });
    };
    let toggle = move |ev: leptos::ev::Event| {
        let enabled = event_target_checked(&ev);
        spawn_local(async move {
            let change = UpdateServer {
                enabled: Some(enabled),
                ..Default::default()
            };
            if let Err(e) = api::update_server(id, &change).await {
                error.set(Some(e.message));
            }
            on_change.run(());
        });
    };
    let set_detection = move |ev: leptos::ev::Event| {
        let mode = event_target_value(&ev);
        spawn_local(async move {
            let change = UpdateServer {
                detection: Some(mode),
                ..Default::default()
            };
            if let Err(e) = api::update_server(id, &change).await {
                error.set(Some(e.message));
            }
            on_change.run(());
        });
    };
    let set_pinning = move |ev: leptos::ev::Event| {
        let mode = event_target_value(&ev);
        spawn_local(async move {
            let change = UpdateServer {
                tool_pinning: Some(mode),
                ..Default::default()
            };
            if let Err(e) = api::update_server(id, &change).await {
                error.set(Some(e.message));
            }
            on_change.run(());
        });
    };
    let on_delete = Callback::new(move |()| {
        spawn_local(async move {
            if let Err(e) = api::delete_server(id).await {
                error.set(Some(e.message));
            }
            on_change.run(());
        });
    });
    let health = server.health.clone();
    let editable = server.clone();
    let credential = server
        .credential
        .as_ref()
        .map(|c| format!("{} {}", c.kind, c.hint))
        .unwrap_or_else(|| "none".into());
    let endpoint = server.endpoint.clone();
    view! {
        <article class="panel server" id=format!("server-{name}")>
            <header class="server-head">
                <h2>{server.display_name.clone()}</h2>
                {(server.display_name != name).then(|| view! { <code class="muted">{name.clone()}</code> })}
                <Badge text=health.status.clone() />
                <label class="inline"><input type="checkbox" aria-label="Enabled" id=format!("server-enabled-{name}")
                    prop:checked=server.enabled on:change=toggle />"enabled"</label>
            </header>
            <dl class="facts">
                <dt>"Endpoint"</dt><dd><code>{server.endpoint.clone()}</code></dd>
                <dt>"Backend"</dt><dd><code>{server.url.clone()}</code>{format!(" · {:?} · {} s timeout", server.transport, server.timeout_seconds)}</dd>
                <dt>"Credential"</dt><dd>{credential}</dd>
                <dt>"On /mcp"</dt><dd><code>{format!("{}__<tool>", server.tool_prefix)}</code></dd>
                <dt>"Suspicious payloads"</dt><dd>
                    <select id=format!("server-detection-{name}") aria-label="Suspicious payload detection" on:change=set_detection>
                        {["log", "block", "off"].into_iter().map(|m| view! { <option value=m selected=server.detection == m>{m}</option> }).collect_view()}
                    </select>
                </dd>
                <dt>"Tool pinning"</dt><dd>
                    <select id=format!("server-pinning-{name}") aria-label="Tool pinning" on:change=set_pinning>
                        {["quarantine", "warn", "off"].into_iter().map(|m| view! { <option value=m selected=server.tool_pinning == m>{m}</option> }).collect_view()}
                    </select>
                    " "<a href=format!("/admin/tool-changes?server={}", server.id)>"tool definitions"</a>
                </dd>
                <dt>"Health"</dt><dd>{format!(
                    "{}{}{}",
                    health.latency_ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "not checked yet".into()),
                    health.tool_count.map(|n| format!(" · {n} tools")).unwrap_or_default(),
                    health.last_error.map(|e| format!(" · {e}")).unwrap_or_default(),
                )}</dd>
            </dl>
            {server.description.clone().map(|d| view! { <p>{d}</p> })}
            <div class="actions">
                <button type="button" id=format!("test-{name}") on:click=run_test disabled=move || testing.get()>
                    {move || if testing.get() { "Testing…" } else { "Test connection" }}
                </button>
                <ConfirmDelete on_confirm=on_delete id=format!("delete-{name}") />
            </div>
            {move || test.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e /> }.into_any(),
                Ok(t) if !t.ok => view! {
                    <div class="alert" role="alert" id=format!("test-result-{}", server.name)>{t.error.unwrap_or_default()}</div>
                }.into_any(),
                Ok(t) => view! {
                    <div class="test-ok" id=format!("test-result-{}", server.name)>
                        <p class="ok">{format!(
                            "Connected in {} ms · {} · protocol {} · {} tools",
                            t.latency_ms,
                            t.transport.unwrap_or_default(),
                            t.protocol_version.unwrap_or_default(),
                            t.tool_count.unwrap_or(0),
                        )}</p>
                        <ul class="tools">
                            {t.tools.into_iter().map(|tool| view! {
                                <li>
                                    <details>
                                        <summary><code>{tool.name}</code>" "{tool.description.unwrap_or_default()}</summary>
                                        <pre>{tool.input_schema.map(|s| serde_json::to_string_pretty(&s).unwrap_or_default()).unwrap_or_default()}</pre>
                                    </details>
                                </li>
                            }).collect_view()}
                        </ul>
                    </div>
                }.into_any(),
            })}
            <EditServer server=editable error=error on_change=on_change />
            <ServerLimits id=id name=name.clone() />
            <ClientSnippets name=name.clone() url=endpoint />
        </article>
    }
}

/// One server's rate-limit overrides (each user's budget on it, and per tool), which its team's
/// admins manage; one line per tool, `tool=per_minute`.
#[component]
fn ServerLimits(id: i64, name: String) -> impl IntoView {
    let per_minute = RwSignal::new(String::new());
    let tools = RwSignal::new(String::new());
    let message = RwSignal::new(None::<Result<String, String>>);
    let loaded = Load::new(move || async move { api::server_rate_limits(id).await });
    Effect::new(move |_| {
        if let Some(Ok(limits)) = loaded.get() {
            per_minute.set(limits.per_minute.map(|p| p.to_string()).unwrap_or_default());
            tools.set(
                limits
                    .tools
                    .iter()
                    .map(|t| format!("{}={}", t.tool, t.per_minute))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let mut parsed = Vec::new();
        for line in tools
            .get_untracked()
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            match line
                .rsplit_once('=')
                .map(|(t, n)| (t.trim(), n.trim().parse::<u32>()))
            {
                Some((tool, Ok(n))) if !tool.is_empty() => {
                    parsed.push(shared::servers::ToolRateLimit {
                        tool: tool.to_string(),
                        per_minute: n,
                    })
                }
                _ => {
                    message.set(Some(Err(format!("not tool=number: {line}"))));
                    return;
                }
            }
        }
        let overall = per_minute.get_untracked();
        let limits = shared::servers::ServerRateLimits {
            per_minute: if overall.trim().is_empty() {
                None
            } else {
                match overall.trim().parse() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        message.set(Some(Err("the budget is a whole number".into())));
                        return;
                    }
                }
            },
            tools: parsed,
        };
        spawn_local(async move {
            message.set(Some(
                api::set_server_rate_limits(id, &limits)
                    .await
                    .map(|_| "Saved".to_string())
                    .map_err(|e| e.message),
            ));
        });
    };
    view! {
        <details>
            <summary id=format!("limits-toggle-{name}")>"Rate limits"</summary>
            <form class="grid-form" on:submit=on_submit>
                <label>"Each user's requests per minute on this server (empty: the default; 0: off)"
                    <input id=format!("limits-server-{name}") type="number" min="0" bind:value=per_minute />
                </label>
                <label>"Per tool, one per line: tool=requests per minute"
                    <textarea id=format!("limits-tools-{name}") rows="3" bind:value=tools></textarea>
                </label>
                <button type="submit" id=format!("limits-save-{name}")>"Save limits"</button>
                {move || message.get().map(|m| match m {
                    Ok(text) => view! { <p class="ok">{text}</p> }.into_any(),
                    Err(text) => view! { <ErrorAlert message=text /> }.into_any(),
                })}
            </form>
        </details>
    }
}

/// Edits a server; fields left as they are are not sent, and the credential is write-only
/// (empty keeps the current one).
#[component]
fn EditServer(
    server: McpServer,
    error: RwSignal<Option<String>>,
    on_change: Callback<()>,
) -> impl IntoView {
    let id = server.id;
    let name = server.name.clone();
    let url = RwSignal::new(server.url.clone());
    let description = RwSignal::new(server.description.clone().unwrap_or_default());
    let timeout = RwSignal::new(server.timeout_seconds.to_string());
    let prefix = RwSignal::new(server.tool_prefix.clone());
    let kind = RwSignal::new("keep".to_string());
    let secret = RwSignal::new(String::new());
    let extra = RwSignal::new(String::new());
    let token_url = RwSignal::new(String::new());
    let scope = RwSignal::new(String::new());
    let saved = RwSignal::new(false);
    let original = server.clone();
    let original_url = server.url.clone();
    let has_credential = server.credential.is_some();
    let name_for_note = name.clone();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let changed = |now: String, before: &str| (now != before).then_some(now);
        let credential = match kind.get_untracked().as_str() {
            "none" => Some(CredentialInput::None),
            kind => credential_input(
                kind,
                secret.get_untracked(),
                extra.get_untracked(),
                token_url.get_untracked(),
                scope.get_untracked(),
            ),
        };
        let change = UpdateServer {
            url: changed(url.get_untracked(), &original.url),
            description: changed(
                description.get_untracked(),
                original.description.as_deref().unwrap_or_default(),
            ),
            timeout_seconds: timeout
                .get_untracked()
                .parse()
                .ok()
                .filter(|t| *t != original.timeout_seconds),
            tool_prefix: changed(prefix.get_untracked(), &original.tool_prefix),
            credential,
            ..Default::default()
        };
        spawn_local(async move {
            match api::update_server(id, &change).await {
                Ok(_) => {
                    saved.set(true);
                    error.set(None);
                    secret.set(String::new());
                    on_change.run(());
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <details>
            <summary id=format!("edit-{name}")>"Edit"</summary>
            <form class="grid-form" id=format!("edit-form-{name}") on:submit=on_submit>
                <label>"URL"<input type="url" required bind:value=url /></label>
                <label>"Description"<input bind:value=description /></label>
                <label>"Timeout (seconds)"<input type="number" min="1" max="3600" bind:value=timeout /></label>
                <label>"Tool prefix on /mcp"<input maxlength="32" bind:value=prefix /></label>
                <label>"Backend credential"
                    <select on:change=move |ev| kind.set(event_target_value(&ev))>
                        <option value="keep">"keep the current one"</option>
                        <option value="none">"remove it"</option>
                        <option value="bearer">"bearer token"</option>
                        <option value="basic">"basic auth"</option>
                        <option value="header">"custom header"</option>
                        <option value="oauth_client_credentials">"OAuth client credentials"</option>
                        <option value="oauth_admin">"OAuth, one account connected by an admin"</option>
                        <option value="oauth_user">"OAuth, each user connects their own account"</option>
                    </select>
                </label>
                {move || match kind.get().as_str() {
                    "basic" => view! { <label>"Username"<input bind:value=extra /></label> }.into_any(),
                    "header" => view! { <label>"Header name"<input bind:value=extra /></label> }.into_any(),
                    k if k.starts_with("oauth") => view! { <OAuthFields kind=k.to_string() token_url scope client_id=extra /> }.into_any(),
                    _ => ().into_any(),
                }}
                {move || matches!(kind.get().as_str(), "bearer" | "basic" | "header" | "oauth_client_credentials" | "oauth_admin" | "oauth_user").then(|| view! {
                    <label>{secret_label(&kind.get())}<input type="password" autocomplete="off" bind:value=secret /></label>
                })}
                {move || (has_credential && kind.get() == "keep" && origin_of(&url.get()) != origin_of(&original_url)).then(|| view! {
                    <p class="warn" id=format!("credential-cleared-{name_for_note}")>
                        "The URL now points at another host: the stored credential is not sent there and will be removed on save. Enter it again above if this host should get it."
                    </p>
                })}
                <button type="submit">"Save"</button>
                {move || saved.get().then_some(view! { <span class="ok">"Saved"</span> })}
            </form>
        </details>
    }
}

#[component]
fn AddServerForm(on_added: Callback<()>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let url = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let transport = RwSignal::new("auto".to_string());
    let timeout = RwSignal::new("60".to_string());
    let kind = RwSignal::new("none".to_string());
    let secret = RwSignal::new(String::new());
    let extra = RwSignal::new(String::new());
    let token_url = RwSignal::new(String::new());
    let scope = RwSignal::new(String::new());
    let prefix = RwSignal::new(String::new());
    let detection = RwSignal::new("log".to_string());
    let pinning = RwSignal::new("quarantine".to_string());
    let message = RwSignal::new(None::<Result<String, String>>);
    // The owning team: asked only when the caller may add servers to several.
    let team = RwSignal::new(String::new());
    let teams = Load::new(|| async { api::teams().await.unwrap_or_default() });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let credential = credential_input(
            &kind.get_untracked(),
            secret.get_untracked(),
            extra.get_untracked(),
            token_url.get_untracked(),
            scope.get_untracked(),
        );
        let description = description.get_untracked();
        let req = CreateServer {
            name: name.get_untracked(),
            team_id: team.get_untracked().parse().ok(),
            display_name: None,
            url: url.get_untracked(),
            description: (!description.trim().is_empty()).then_some(description),
            enabled: true,
            transport: match transport.get_untracked().as_str() {
                "streamable-http" => Transport::StreamableHttp,
                "sse" => Transport::Sse,
                _ => Transport::Auto,
            },
            timeout_seconds: timeout.get_untracked().parse().ok(),
            backend_token: None,
            credential,
            tool_prefix: Some(prefix.get_untracked()).filter(|p| !p.trim().is_empty()),
            detection: Some(detection.get_untracked()),
            tool_pinning: Some(pinning.get_untracked()),
        };
        spawn_local(async move {
            match api::create_server(&req).await {
                Ok(server) => {
                    message.set(Some(Ok(format!("Added {}", server.name))));
                    name.set(String::new());
                    url.set(String::new());
                    secret.set(String::new());
                    on_added.run(());
                }
                Err(e) => message.set(Some(Err(e.message))),
            }
        });
    };
    view! {
        <details class="panel">
            <summary id="add-server-toggle">"Add a server"</summary>
            <form class="grid-form" id="add-server-form" on:submit=on_submit>
                <label>"Name (e.g. GitHub MCP; its URL segment, github-mcp, is derived)"<input id="server-name" required maxlength="100" bind:value=name /></label>
                <label>"URL"<input id="server-url" type="url" required placeholder="http://127.0.0.1:9000/mcp" bind:value=url /></label>
                {move || teams.get().filter(|t| t.len() > 1).map(|list| view! {
                    <label>"Team"
                        <select id="server-team" required on:change=move |ev| team.set(event_target_value(&ev))>
                            <option value="">"choose a team"</option>
                            {list.into_iter().map(|t| view! { <option value=t.id.to_string()>{t.name}</option> }).collect_view()}
                        </select>
                    </label>
                })}
                <label>"Description"<input id="server-description" bind:value=description /></label>
                <label>"Tool prefix on /mcp (default: the name)"<input id="server-prefix" pattern="[a-z0-9][a-z0-9_-]*" maxlength="32" bind:value=prefix /></label>
                <label>"Suspicious payloads"
                    <select id="server-detection" on:change=move |ev| detection.set(event_target_value(&ev))>
                        <option value="log">"log (flag and record an event)"</option>
                        <option value="block">"block"</option>
                        <option value="off">"off"</option>
                    </select>
                </label>
                <label>"Tool pinning"
                    <select id="server-pinning" on:change=move |ev| pinning.set(event_target_value(&ev))>
                        <option value="quarantine">"quarantine (changed or new tools wait for approval)"</option>
                        <option value="warn">"warn (report changes only)"</option>
                        <option value="off">"off"</option>
                    </select>
                </label>
                <label>"Transport"
                    <select id="server-transport" on:change=move |ev| transport.set(event_target_value(&ev))>
                        <option value="auto">"auto (streamable HTTP, else HTTP+SSE)"</option>
                        <option value="streamable-http">"streamable HTTP"</option>
                        <option value="sse">"HTTP+SSE (legacy)"</option>
                    </select>
                </label>
                <label>"Timeout (seconds)"<input id="server-timeout" type="number" min="1" max="3600" bind:value=timeout /></label>
                <label>"Backend credential"
                    <select id="server-credential" on:change=move |ev| kind.set(event_target_value(&ev))>
                        <option value="none">"none"</option>
                        <option value="bearer">"bearer token"</option>
                        <option value="basic">"basic auth"</option>
                        <option value="header">"custom header"</option>
                        <option value="oauth_client_credentials">"OAuth client credentials"</option>
                        <option value="oauth_admin">"OAuth, one account connected by an admin"</option>
                        <option value="oauth_user">"OAuth, each user connects their own account"</option>
                    </select>
                </label>
                {move || match kind.get().as_str() {
                    "basic" => view! { <label>"Username"<input id="server-credential-extra" bind:value=extra /></label> }.into_any(),
                    "header" => view! { <label>"Header name"<input id="server-credential-extra" placeholder="X-API-Key" bind:value=extra /></label> }.into_any(),
                    k if k.starts_with("oauth") => view! { <OAuthFields kind=k.to_string() token_url scope client_id=extra /> }.into_any(),
                    _ => ().into_any(),
                }}
                {move || (kind.get() != "none").then(|| view! {
                    <label>{secret_label(&kind.get())}
                        <input id="server-credential-secret" type="password" autocomplete="off" bind:value=secret />
                    </label>
                })}
                <button type="submit" id="add-server-submit">"Add server"</button>
            </form>
            {move || message.get().map(|m| match m {
                Ok(text) => view! { <p class="ok" id="add-server-result">{text}</p> }.into_any(),
                Err(text) => view! { <ErrorAlert message=text /> }.into_any(),
            })}
        </details>
    }
}

fn secret_label(kind: &str) -> &'static str {
    match kind {
        "oauth_client_credentials" => "Client secret (write-only: never shown again)",
        "oauth_admin" | "oauth_user" => {
            "Client secret of a pre-registered client (optional, write-only)"
        }
        _ => "Secret (write-only: never shown again)",
    }
}

/// The fields of the OAuth kinds (the client secret is the form's secret field).
#[component]
fn OAuthFields(
    kind: String,
    token_url: RwSignal<String>,
    scope: RwSignal<String>,
    client_id: RwSignal<String>,
) -> impl IntoView {
    let client_credentials = kind == "oauth_client_credentials";
    view! {
        {client_credentials.then(|| view! {
            <label>"Token endpoint"<input id="server-oauth-token-url" type="url" required placeholder="https://auth.example.com/oauth/token" bind:value=token_url /></label>
        })}
        <label>{if client_credentials { "Client id" } else { "Client id of a pre-registered client (optional: the gateway registers itself)" }}
            <input id="server-oauth-client-id" required=client_credentials bind:value=client_id /></label>
        <label>"Scope (optional)"<input id="server-oauth-scope" placeholder="space-separated" bind:value=scope /></label>
        {(!client_credentials).then(|| view! {
            <p class="muted">"After saving, connect the account: the admin on the Tokens page, or each user at /connect. The authorization server must allow the redirect URI "<code>"{PUBLIC_URL}/oauth/backend/callback"</code>"."</p>
        })}
    }
}

/// The credential typed into a server form: `secret` is the token, password, header value or
/// client secret, `extra` the username, header name or client id. `None` for any other kind.
fn credential_input(
    kind: &str,
    secret: String,
    extra: String,
    token_url: String,
    scope: String,
) -> Option<CredentialInput> {
    let optional = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_string());
    match kind {
        "oauth_client_credentials" => Some(CredentialInput::OAuthClientCredentials {
            token_url,
            client_id: extra,
            client_secret: secret,
            scope: optional(scope),
            audience: None,
            resource: None,
            auth_method: None,
        }),
        "oauth_admin" | "oauth_user" => {
            let code = OAuthCodeInput {
                client_id: optional(extra),
                client_secret: optional(secret),
                scope: optional(scope),
            };
            Some(if kind == "oauth_admin" {
                CredentialInput::OAuthAdmin(code)
            } else {
                CredentialInput::OAuthUser(code)
            })
        }
        "bearer" => Some(CredentialInput::Bearer { token: secret }),
        "basic" => Some(CredentialInput::Basic {
            username: extra,
            password: secret,
        }),
        "header" => Some(CredentialInput::Header {
            name: extra,
            value: secret,
        }),
        _ => None,
    }
}

/// Scheme, host and port of a URL, as the server compares them when a URL changes.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host_port.to_ascii_lowercase()
    ))
}
