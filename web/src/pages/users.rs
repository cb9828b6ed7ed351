//! Users: list and search, create, change role and enabled, and the user page with per-server
//! access, per-tool rules, API keys, password reset and deletion.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};
use shared::auth::{CreateApiKey, Role};
use shared::servers::{McpServer, ToolRule, ToolRuleEffect, ToolRules};
use shared::users::{CreateUser, UpdateUser, User};

use crate::api;
use crate::components::widgets::{ConfirmDelete, CopyButton, ErrorAlert, when};
use crate::resource::Load;

#[component]
pub fn Users() -> impl IntoView {
    let query = RwSignal::new(String::new());
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let users = Load::new(move || {
        let q = query.get();
        reload.track();
        async move { api::list_users(&q).await }
    });
    let refresh = Callback::new(move |()| reload.update(|n| *n += 1));
    let global = is_global();
    view! {
        <h1>{if global { "Users" } else { "Members of my teams" }}</h1>
        {global.then(|| view! { <CreateUserForm on_created=refresh /> })}
        <div class="toolbar">
            <label class="inline">"Search"
                <input type="search" id="user-search" placeholder="username or email" bind:value=query />
            </label>
        </div>
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || users.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(page) if page.items.is_empty() => view! { <p class="empty">"No users match."</p> }.into_any(),
                Ok(page) => view! {
                    <table id="users-table">
                        <thead><tr><th>"Username"</th><th>"Email"</th><th>"Role"</th><th>"Enabled"</th><th>"Last sign-in"</th></tr></thead>
                        <tbody>
                            {page.items.into_iter().map(|u| view! { <UserRow user=u error=error on_change=refresh /> }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn UserRow(user: User, error: RwSignal<Option<String>>, on_change: Callback<()>) -> impl IntoView {
    let id = user.id;
    let update = move |change: UpdateUser| {
        spawn_local(async move {
            match api::update_user(id, &change).await {
                Ok(_) => error.set(None),
                Err(e) => error.set(Some(e.message)),
            }
            on_change.run(());
        });
    };
    let on_role = move |ev: leptos::ev::Event| {
        let role = Role::parse(&event_target_value(&ev));
        update(UpdateUser {
            role,
            ..Default::default()
        });
    };
    let on_enabled = move |ev: leptos::ev::Event| {
        update(UpdateUser {
            enabled: Some(event_target_checked(&ev)),
            ..Default::default()
        });
    };
    let is_admin = user.role == Role::Admin;
    let link_id = format!("user-link-{}", user.username);
    let username = user.username.clone();
    view! {
        <tr>
            <td><A href=format!("/admin/users/{id}") attr:id=link_id>{username}</A></td>
            <td>{user.email.clone().unwrap_or_default()}</td>
            <td>
                <select aria-label="Role" id=format!("role-{}", user.username) disabled=!is_global() on:change=on_role>
                    <option value="user" selected=!is_admin>"user"</option>
                    <option value="admin" selected=is_admin>"admin"</option>
                </select>
            </td>
            <td><input type="checkbox" aria-label="Enabled" id=format!("enabled-{}", user.username)
                disabled=!is_global() prop:checked=user.enabled on:change=on_enabled /></td>
            <td>{user.last_login_at.map(when).unwrap_or_else(|| "never".into())}</td>
        </tr>
    }
}

#[component]
fn CreateUserForm(on_created: Callback<()>) -> impl IntoView {
    let username = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let role = RwSignal::new("user".to_string());
    let message = RwSignal::new(None::<Result<String, String>>);
    let create = Action::new_local(move |user: &CreateUser| {
        let user = user.clone();
        async move { api::create_user(&user).await }
    });
    Effect::new(move |_| match create.value().get() {
        Some(Ok(user)) => {
            message.set(Some(Ok(format!("Created {}", user.username))));
            username.set(String::new());
            password.set(String::new());
            email.set(String::new());
            on_created.run(());
        }
        Some(Err(e)) => message.set(Some(Err(e.message))),
        None => {}
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let email = email.get_untracked();
        create.dispatch(CreateUser {
            username: username.get_untracked(),
            password: password.get_untracked(),
            email: (!email.trim().is_empty()).then_some(email),
            role: Role::parse(&role.get_untracked()).unwrap_or(Role::User),
        });
    };
    view! {
        <details class="panel">
            <summary id="new-user-toggle">"New user"</summary>
            <form class="grid-form" id="new-user-form" on:submit=on_submit>
                <label>"Username"<input id="new-user-username" required bind:value=username /></label>
                <label>"Email (optional)"<input id="new-user-email" type="email" bind:value=email /></label>
                <label>"Password"<input id="new-user-password" type="password" autocomplete="new-password" required bind:value=password /></label>
                <label>"Role"
                    <select id="new-user-role" on:change=move |ev| role.set(event_target_value(&ev))>
                        <option value="user">"user"</option>
                        <option value="admin">"admin"</option>
                    </select>
                </label>
                <button type="submit" id="new-user-submit" disabled=move || create.pending().get()>"Create user"</button>
            </form>
            {move || message.get().map(|m| match m {
                Ok(text) => view! { <p class="ok" id="new-user-result">{text}</p> }.into_any(),
                Err(text) => view! { <ErrorAlert message=text /> }.into_any(),
            })}
        </details>
    }
}

/// `/admin/users/:id`.
#[component]
pub fn UserDetail() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id").and_then(|v| v.parse::<i64>().ok()).unwrap_or(0));
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let user = Load::new(move || {
        let id = id();
        async move { api::get_user(id).await }
    });
    let perms = Load::new(move || {
        let id = id();
        reload.track();
        async move { api::permissions(id).await }
    });
    let navigate = use_navigate();
    let on_delete = Callback::new(move |()| {
        let navigate = navigate.clone();
        let id = id();
        spawn_local(async move {
            match api::delete_user(id).await {
                Ok(()) => navigate("/admin/users", Default::default()),
                Err(e) => error.set(Some(e.message)),
            }
        });
    });
    view! {
        <p><A href="/admin/users">"← Users"</A></p>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || user.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(u) => view! {
                    <h1 id="user-title">{u.username.clone()}</h1>
                    <p class="muted">{format!("{} · {} · created {}", u.role.as_str(), if u.enabled { "enabled" } else { "disabled" }, when(u.created_at))}</p>
                }.into_any(),
            })}
        </Transition>
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <section class="panel">
            <h2>"MCP server access"</h2>
            <p class="muted">"Users can use no server until granted here; admins can use every server."</p>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || perms.get().map(|res| match res {
                    Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No MCP servers are registered yet."</p> }.into_any(),
                    Ok(list) => view! {
                        <ul class="plain" id="access-list">
                            {list.into_iter().map(|p| {
                                let server_id = p.server_id;
                                let on_change = move |ev: leptos::ev::Event| {
                                    let allowed = event_target_checked(&ev);
                                    let user = id();
                                    spawn_local(async move {
                                        if let Err(e) = api::set_permission(user, server_id, allowed).await {
                                            error.set(Some(e.message));
                                        }
                                        reload.update(|n| *n += 1);
                                    });
                                };
                                view! {
                                    <li><label class="inline">
                                        <input type="checkbox" id=format!("access-{}", p.name) prop:checked=p.can_access on:change=on_change />
                                        {p.name.clone()}
                                    </label></li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any(),
                })}
            </Transition>
        </section>
        <ToolRulesEditor user=Signal::derive(id) />
        // Account-wide actions are for global admins; a team admin manages access only.
        {is_global().then(|| view! {
            <crate::pages::oauth::UserGrants user=Signal::derive(id) />
            <ApiKeys user=Signal::derive(id) />
            <ResetPasswordForm user=Signal::derive(id) />
            <section class="panel">
                <h2>"Delete user"</h2>
                <p class="muted">"Deletes the user with their sessions and API keys."</p>
                <ConfirmDelete on_confirm=on_delete id="delete-user".to_string() />
            </section>
        })}
    }
}

/// Whether the signed-in admin is a global admin (not a team admin).
fn is_global() -> bool {
    crate::session::use_session()
        .me
        .get_untracked()
        .is_none_or(|me| me.role == Role::Admin)
}

/// A user's per-tool rules: edited as a list and saved whole.
#[component]
fn ToolRulesEditor(user: Signal<i64>) -> impl IntoView {
    let rules = RwSignal::new(Vec::<ToolRule>::new());
    let servers = RwSignal::new(Vec::<McpServer>::new());
    let loaded = RwSignal::new(false);
    let message = RwSignal::new(None::<Result<String, String>>);
    let server = RwSignal::new(String::new());
    let pattern = RwSignal::new(String::new());
    let effect = RwSignal::new("deny".to_string());
    Effect::new(move || {
        let id = user.get();
        spawn_local(async move {
            match (api::tool_rules(id).await, api::list_servers().await) {
                (Ok(r), Ok(s)) => {
                    if let Some(first) = s.first() {
                        server.set(first.id.to_string());
                    }
                    rules.set(r.rules);
                    servers.set(s);
                    loaded.set(true);
                }
                (Err(e), _) | (_, Err(e)) => message.set(Some(Err(e.message))),
            }
        });
    });
    let save = move |next: Vec<ToolRule>| {
        let id = user.get_untracked();
        spawn_local(async move {
            match api::set_tool_rules(id, &ToolRules { rules: next }).await {
                Ok(saved) => {
                    rules.set(saved.rules);
                    message.set(Some(Ok(
                        "Saved; applies from the user's next request.".into()
                    )));
                }
                Err(e) => message.set(Some(Err(e.message))),
            }
        });
    };
    let on_add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(server_id) = server.get_untracked().parse::<i64>() else {
            return;
        };
        let mut next = rules.get_untracked();
        next.push(ToolRule {
            server_id,
            server: String::new(),
            pattern: pattern.get_untracked().trim().to_string(),
            effect: if effect.get_untracked() == "allow" {
                ToolRuleEffect::Allow
            } else {
                ToolRuleEffect::Deny
            },
        });
        pattern.set(String::new());
        save(next);
    };
    view! {
        <section class="panel">
            <h2>"Tool rules"</h2>
            <p class="muted">"Per server: a matching deny wins; if any allow exists, a tool must match one. Patterns are the backend's tool names or globs (* and ?)."</p>
            {move || (loaded.get() && rules.with(Vec::is_empty)).then(|| view! { <p class="empty" id="tool-rules-empty">"No rules: every tool of the servers this user may use."</p> })}
            <ul class="plain" id="tool-rules">
                {move || rules.get().into_iter().enumerate().map(|(i, r)| {
                    let remove = move |_| {
                        let mut next = rules.get_untracked();
                        next.remove(i);
                        save(next);
                    };
                    view! {
                        <li>
                            <span class=if r.effect == ToolRuleEffect::Deny { "badge high" } else { "badge ok" }>{format!("{:?}", r.effect).to_lowercase()}</span>
                            " " {r.server.clone()} " · " <code>{r.pattern.clone()}</code> " "
                            <button type="button" class="danger-outline" on:click=remove>"Remove"</button>
                        </li>
                    }
                }).collect_view()}
            </ul>
            <form class="inline-form" id="tool-rule-form" on:submit=on_add>
                <select aria-label="Server" id="tool-rule-server" bind:value=server>
                    {move || servers.get().into_iter().map(|s| view! { <option value=s.id.to_string()>{s.name.clone()}</option> }).collect_view()}
                </select>
                <input type="text" aria-label="Tool pattern" id="tool-rule-pattern" placeholder="delete_*" required bind:value=pattern />
                <select aria-label="Effect" id="tool-rule-effect" bind:value=effect>
                    <option value="deny">"deny"</option>
                    <option value="allow">"allow"</option>
                </select>
                <button type="submit">"Add rule"</button>
            </form>
            {move || message.get().map(|m| match m {
                Ok(text) => view! { <p class="ok">{text}</p> }.into_any(),
                Err(text) => view! { <ErrorAlert message=text /> }.into_any(),
            })}
        </section>
    }
}

#[component]
fn ResetPasswordForm(user: Signal<i64>) -> impl IntoView {
    let password = RwSignal::new(String::new());
    let message = RwSignal::new(None::<Result<String, String>>);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (id, pw) = (user.get_untracked(), password.get_untracked());
        spawn_local(async move {
            message.set(Some(match api::reset_password(id, &pw).await {
                Ok(()) => Ok("Password changed; the user's sessions were ended.".into()),
                Err(e) => Err(e.message),
            }));
            password.set(String::new());
        });
    };
    view! {
        <section class="panel">
            <h2>"Reset password"</h2>
            <form class="inline-form" on:submit=on_submit>
                <input type="password" aria-label="New password" autocomplete="new-password" required bind:value=password />
                <button type="submit">"Set password"</button>
            </form>
            {move || message.get().map(|m| match m {
                Ok(text) => view! { <p class="ok">{text}</p> }.into_any(),
                Err(text) => view! { <ErrorAlert message=text /> }.into_any(),
            })}
        </section>
    }
}

/// A user's API keys: list, create (secret shown once), revoke.
#[component]
pub fn ApiKeys(user: Signal<i64>) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let name = RwSignal::new(String::new());
    let created = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let keys = Load::new(move || {
        let id = user.get();
        reload.track();
        async move { api::api_keys(id).await }
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = CreateApiKey {
            name: name.get_untracked(),
            expires_in_days: None,
            servers: None,
        };
        let id = user.get_untracked();
        spawn_local(async move {
            match api::create_api_key(id, &req).await {
                Ok(key) => {
                    created.set(Some(key.secret));
                    error.set(None);
                    name.set(String::new());
                }
                Err(e) => error.set(Some(e.message)),
            }
            reload.update(|n| *n += 1);
        });
    };
    view! {
        <section class="panel">
            <h2>"API keys"</h2>
            <form class="inline-form" on:submit=on_submit>
                <input aria-label="Key name" id="api-key-name" placeholder="name, e.g. ci-agent" required bind:value=name />
                <button type="submit" id="api-key-create">"Create key"</button>
            </form>
            {move || created.get().map(|secret| view! {
                <div class="secret" id="api-key-secret-box">
                    <p>"Copy this key now; it is not shown again."</p>
                    <code id="api-key-secret">{secret.clone()}</code>
                    <CopyButton text=secret />
                </div>
            })}
            {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || keys.get().map(|res| match res {
                    Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No API keys."</p> }.into_any(),
                    Ok(list) => view! {
                        <table>
                            <thead><tr><th>"Name"</th><th>"Key"</th><th>"Created"</th><th>"Last used"</th><th></th></tr></thead>
                            <tbody>{list.into_iter().map(|k| {
                                let key_id = k.id;
                                let revoke = move |_| {
                                    let id = user.get_untracked();
                                    spawn_local(async move {
                                        if let Err(e) = api::revoke_api_key(id, key_id).await {
                                            error.set(Some(e.message));
                                        }
                                        reload.update(|n| *n += 1);
                                    });
                                };
                                view! {
                                    <tr>
                                        <td>{k.name.clone()}</td>
                                        <td><code>{format!("{}…", k.prefix)}</code></td>
                                        <td>{when(k.created_at)}</td>
                                        <td>{k.last_used_at.map(when).unwrap_or_else(|| "never".into())}</td>
                                        <td>{if k.revoked {
                                            view! { <span class="muted">"revoked"</span> }.into_any()
                                        } else {
                                            view! { <button type="button" class="danger-outline" on:click=revoke>"Revoke"</button> }.into_any()
                                        }}</td>
                                    </tr>
                                }
                            }).collect_view()}</tbody>
                        </table>
                    }.into_any(),
                })}
            </Transition>
        </section>
    }
}

/// `/admin/api-keys`: the signed-in admin's own API keys.
#[component]
pub fn OwnApiKeys() -> impl IntoView {
    let session = crate::session::use_session();
    let me = Signal::derive(move || session.me.get().map(|m| m.id).unwrap_or(0));
    view! {
        <h1>"My API keys"</h1>
        <p class="muted">"API keys authenticate MCP clients and scripts on /mcp (never the admin API). Send them as Authorization: Bearer amg_…"</p>
        <ApiKeys user=me />
    }
}
