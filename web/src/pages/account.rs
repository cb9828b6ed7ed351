//! The user portal (`/account…`): every user's own pages, signed in with a portal session.
//! My servers (their URLs and client configurations, and my connected accounts where a server
//! acts with each user's own account), my API keys, the applications I approved, my password
//! and my recent activity. What the portal cannot do (anything of anybody else) is not shown.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;
use shared::auth::CreateApiKey;
use shared::users::ChangePassword;

use crate::api::{self, Realm};
use crate::components::sign_in::SignInForm;
use crate::components::snippets::ClientSnippets;
use crate::components::widgets::{Badge, CopyButton, ErrorAlert, open_authorization, when};
use crate::resource::Load;

/// The portal's sign-in page (every user; admins sign in to the admin pages at `/login`).
#[component]
pub fn AccountLogin() -> impl IntoView {
    view! {
        <h1>"Sign in to your account"</h1>
        <SignInForm realm=Realm::Portal />
        <p class="muted">"Administrators manage the gateway at " <A href="/login">"the admin sign-in"</A> "."</p>
    }
}

/// `/account`: the servers I may use, with what to give my MCP clients.
#[component]
pub fn MyServers() -> impl IntoView {
    let query = use_query_map();
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let servers = Load::new(move || {
        reload.track();
        async move { api::my_servers().await }
    });
    let connections = Load::new(move || {
        reload.track();
        async move { api::portal_connections().await }
    });
    let status_of = move |name: &str| {
        connections
            .get()
            .and_then(|r| r.ok())
            .and_then(|c| c.connections.into_iter().find(|c| c.server == name))
    };
    view! {
        <h1>"My MCP servers"</h1>
        <p class="muted">"Point your MCP client at one server's URL, or at the aggregated endpoint for all of them at once (tools are then named server__tool). Clients sign in with your account in the browser (OAuth), or use an API key from "<A href="/account/api-keys">"My API keys"</A>"."</p>
        {move || query.with(|q| q.get("connected")).map(|s| view! { <p class="ok" id="connect-done">"Connected "{s}"."</p> })}
        {move || query.with(|q| q.get("error")).map(|m| view! { <ErrorAlert message=m /> })}
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || servers.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(mine) if mine.servers.is_empty() => view! {
                    <p class="empty" id="no-servers">"No MCP server has been shared with you yet. Ask an administrator for access."</p>
                }.into_any(),
                Ok(mine) => {
                    let aggregate = mine.aggregate_url.clone();
                    view! {
                        <section class="panel" id="aggregate">
                            <h2>"All my servers"</h2>
                            <p><code id="aggregate-url">{aggregate.clone()}</code> " " <CopyButton text=aggregate.clone() /></p>
                            <ClientSnippets name="gateway".to_string() url=aggregate />
                        </section>
                        {mine.servers.into_iter().map(|s| {
                            let name = s.name.clone();
                            let connection = if s.per_user_account {
                                let server = name.clone();
                                let connect = move |_| {
                                    let server = server.clone();
                                    spawn_local(async move {
                                        open_authorization(api::portal_connect(&server).await, error);
                                    });
                                };
                                let server = name.clone();
                                let disconnect = move |_| {
                                    let server = server.clone();
                                    spawn_local(async move {
                                        if let Err(e) = api::portal_disconnect(&server).await {
                                            error.set(Some(e.message));
                                        }
                                        reload.update(|n| *n += 1);
                                    });
                                };
                                let name = name.clone();
                                Some(view! {
                                    <p class="connection">"Your account there: "
                                        {move || {
                                            let c = status_of(&name);
                                            let status = c.as_ref().map(|c| c.status.clone()).unwrap_or_else(|| "not_connected".into());
                                            let connected = c.as_ref().and_then(|c| c.connected_at).is_some();
                                            view! {
                                                <Badge text=status />
                                                {c.and_then(|c| c.last_error).map(|e| view! { <span class="muted">" "{e}</span> })}
                                                " "
                                                <button type="button" on:click=connect.clone()>{if connected { "Reconnect" } else { "Connect" }}</button>
                                                {connected.then(|| view! { " " <button type="button" class="danger-outline" on:click=disconnect.clone()>"Disconnect"</button> })}
                                            }
                                        }}
                                    </p>
                                })
                            } else {
                                None
                            };
                            view! {
                                <section class="panel server" id=format!("server-{}", s.name)>
                                    <h2>{s.display_name.clone()}</h2>
                                    {s.description.clone().map(|d| view! { <p class="muted">{d}</p> })}
                                    <p><code id=format!("url-{}", s.name)>{s.url.clone()}</code> " " <CopyButton text=s.url.clone() /></p>
                                    {connection}
                                    <ClientSnippets name=s.name.clone() url=s.url.clone() />
                                </section>
                            }
                        }).collect_view()}
                    }.into_any()
                }
            })}
        </Transition>
    }
}

/// `/account/api-keys`: my API keys (scoped to some of my servers, expiring), created with the
/// secret shown once, and revoked.
#[component]
pub fn MyApiKeys() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let name = RwSignal::new(String::new());
    let days = RwSignal::new("90".to_string());
    let chosen = RwSignal::new(Vec::<String>::new());
    let created = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let keys = Load::new(move || {
        reload.track();
        async move { api::my_api_keys().await }
    });
    let servers = Load::new(|| async { api::my_servers().await });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let scoped = chosen.get_untracked();
        let req = CreateApiKey {
            name: name.get_untracked(),
            expires_in_days: days.get_untracked().parse().ok(),
            servers: (!scoped.is_empty()).then_some(scoped),
        };
        spawn_local(async move {
            match api::create_my_api_key(&req).await {
                Ok(key) => {
                    created.set(Some(key.secret));
                    error.set(None);
                    name.set(String::new());
                    chosen.set(Vec::new());
                }
                Err(e) => error.set(Some(e.message)),
            }
            reload.update(|n| *n += 1);
        });
    };
    view! {
        <h1>"My API keys"</h1>
        <p class="muted">"An API key lets an MCP client or script use your servers without a browser sign-in: send it as Authorization: Bearer amg_… It never opens these pages. Restrict it to the servers it needs and let it expire."</p>
        <section class="panel">
            <h2>"New key"</h2>
            <form class="stack" id="my-key-form" on:submit=on_submit>
                <label>"Name"
                    <input id="my-key-name" placeholder="e.g. laptop, ci-agent" required bind:value=name />
                </label>
                <fieldset>
                    <legend>"Servers (none ticked: all of mine)"</legend>
                    <Transition fallback=|| ()>
                        {move || servers.get().and_then(|r| r.ok()).map(|mine| mine.servers.into_iter().map(|s| {
                            let value = s.name.clone();
                            let toggle = value.clone();
                            view! {
                                <label class="inline">
                                    <input type="checkbox" id=format!("my-key-server-{}", s.name)
                                        prop:checked=move || chosen.with(|c| c.contains(&value))
                                        on:change=move |ev| {
                                            let on = event_target_checked(&ev);
                                            chosen.update(|c| {
                                                c.retain(|n| *n != toggle);
                                                if on { c.push(toggle.clone()); }
                                            });
                                        } />
                                    {s.display_name.clone()}
                                </label>
                            }
                        }).collect_view())}
                    </Transition>
                </fieldset>
                <label>"Expires"
                    <select id="my-key-expiry" on:change=move |ev| days.set(event_target_value(&ev))>
                        <option value="7">"in 7 days"</option>
                        <option value="30">"in 30 days"</option>
                        <option value="90" selected=true>"in 90 days"</option>
                        <option value="365">"in a year"</option>
                        <option value="never">"never"</option>
                    </select>
                </label>
                <button type="submit" id="my-key-create">"Create key"</button>
            </form>
            {move || created.get().map(|secret| view! {
                <div class="secret" id="my-key-secret-box">
                    <p>"Copy this key now; it is not shown again."</p>
                    <code id="my-key-secret">{secret.clone()}</code>
                    <CopyButton text=secret />
                </div>
            })}
            {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        </section>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || keys.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(list) if list.is_empty() => view! { <p class="empty">"No API keys."</p> }.into_any(),
                Ok(list) => view! {
                    <table id="my-keys">
                        <thead><tr><th>"Name"</th><th>"Key"</th><th>"Servers"</th><th>"Expires"</th><th>"Last used"</th><th></th></tr></thead>
                        <tbody>{list.into_iter().map(|k| {
                            let key_id = k.id;
                            let revoke = move |_| {
                                spawn_local(async move {
                                    if let Err(e) = api::revoke_my_api_key(key_id).await {
                                        error.set(Some(e.message));
                                    }
                                    reload.update(|n| *n += 1);
                                });
                            };
                            view! {
                                <tr>
                                    <td>{k.name.clone()}</td>
                                    <td><code>{format!("{}…", k.prefix)}</code></td>
                                    <td>{k.servers.clone().map(|s| s.join(", ")).unwrap_or_else(|| "all of mine".into())}</td>
                                    <td>{k.expires_at.map(when).unwrap_or_else(|| "never".into())}</td>
                                    <td>{k.last_used_at.map(when).unwrap_or_else(|| "never".into())}</td>
                                    <td>{if k.revoked {
                                        view! { <span class="muted">"revoked"</span> }.into_any()
                                    } else {
                                        view! { <button type="button" class="danger-outline" id=format!("my-key-revoke-{key_id}") on:click=revoke>"Revoke"</button> }.into_any()
                                    }}</td>
                                </tr>
                            }
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}

/// `/account/applications`: the MCP clients I approved through the consent page.
#[component]
pub fn MyApplications() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let apps = Load::new(move || {
        reload.track();
        async move { api::my_applications().await }
    });
    view! {
        <h1>"Connected applications"</h1>
        <p class="muted">"MCP clients you allowed to act for you. Revoking one signs it out at once; it asks again next time."</p>
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || apps.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(list) if list.is_empty() => view! { <p class="empty" id="no-applications">"No applications."</p> }.into_any(),
                Ok(list) => view! {
                    <table id="my-applications">
                        <thead><tr><th>"Application"</th><th>"Allowed"</th><th>"Since"</th><th>"Last used"</th><th></th></tr></thead>
                        <tbody>{list.into_iter().map(|g| {
                            let client = g.client;
                            let revoke = move |_| {
                                spawn_local(async move {
                                    if let Err(e) = api::revoke_my_application(client).await {
                                        error.set(Some(e.message));
                                    }
                                    reload.update(|n| *n += 1);
                                });
                            };
                            let allowed = if g.resources.is_empty() {
                                g.scope.clone()
                            } else {
                                g.resources.iter().map(|r| format!("{} ({})", r.resource, r.scope)).collect::<Vec<_>>().join(", ")
                            };
                            view! {
                                <tr>
                                    <td>{g.client_name.clone()}<br /><span class="muted">{g.client_id.clone()}</span></td>
                                    <td>{allowed}</td>
                                    <td>{when(g.created_at)}</td>
                                    <td>{g.last_used_at.map(when).unwrap_or_else(|| "never".into())}</td>
                                    <td><button type="button" class="danger-outline" on:click=revoke>"Revoke"</button></td>
                                </tr>
                            }
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}

/// `/account/password`: change my password (the current one is required; my other sessions
/// end).
#[component]
pub fn MyPassword() -> impl IntoView {
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let repeat = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let done = RwSignal::new(false);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        done.set(false);
        if new.get_untracked() != repeat.get_untracked() {
            error.set(Some("the new passwords differ".into()));
            return;
        }
        let change = ChangePassword {
            current_password: current.get_untracked(),
            new_password: new.get_untracked(),
        };
        spawn_local(async move {
            match api::change_my_password(&change).await {
                Ok(()) => {
                    error.set(None);
                    done.set(true);
                    current.set(String::new());
                    new.set(String::new());
                    repeat.set(String::new());
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <h1>"Password"</h1>
        <form class="stack" id="password-form" on:submit=on_submit>
            <label>"Current password"
                <input type="password" id="password-current" autocomplete="current-password" required bind:value=current />
            </label>
            <label>"New password"
                <input type="password" id="password-new" autocomplete="new-password" required bind:value=new />
            </label>
            <label>"New password again"
                <input type="password" id="password-repeat" autocomplete="new-password" required bind:value=repeat />
            </label>
            {move || error.get().map(|m| view! { <div class="alert" role="alert" id="password-error">{m}</div> })}
            {move || done.get().then(|| view! { <p class="ok" id="password-changed">"Password changed. Your other sessions have been signed out."</p> })}
            <button type="submit" id="password-submit">"Change password"</button>
        </form>
    }
}

/// `/account/activity`: my recent MCP requests through the gateway.
#[component]
pub fn MyActivity() -> impl IntoView {
    let rows = Load::new(|| async { api::my_activity().await });
    view! {
        <h1>"My activity"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || rows.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(page) if page.items.is_empty() => view! { <p class="empty">"No requests yet."</p> }.into_any(),
                Ok(page) => view! {
                    <table id="my-activity">
                        <thead><tr><th>"When"</th><th>"Server"</th><th>"Method"</th><th>"Tool"</th><th>"Status"</th><th>"ms"</th><th>"Client"</th></tr></thead>
                        <tbody>{page.items.into_iter().map(|r| view! {
                            <tr>
                                <td>{when(r.at)}</td>
                                <td>{r.server.clone()}</td>
                                <td>{r.method.clone()}</td>
                                <td>{r.tool.clone().unwrap_or_default()}</td>
                                <td><Badge text=r.status.clone() /></td>
                                <td>{r.latency_ms}</td>
                                <td>{r.client_name.clone().unwrap_or_default()}</td>
                            </tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}
