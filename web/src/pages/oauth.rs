//! OAuth clients: every application that can sign users in (registered itself, pre-registered
//! here, or known by its metadata document), pre-register one, revoke one; and a user's grants.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::oauth::CreateOAuthClient;

use crate::api;
use crate::components::widgets::{ConfirmDelete, CopyButton, ErrorAlert, when};
use crate::resource::Load;

#[component]
pub fn OAuthClients() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let clients = Load::new(move || {
        reload.track();
        async move { api::oauth_clients().await }
    });
    let name = RwSignal::new(String::new());
    let redirects = RwSignal::new(String::new());
    let confidential = RwSignal::new(false);
    let created = RwSignal::new(None::<(String, Option<String>)>);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = CreateOAuthClient {
            name: name.get_untracked(),
            redirect_uris: redirects
                .get_untracked()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            confidential: confidential.get_untracked(),
        };
        spawn_local(async move {
            match api::create_oauth_client(&req).await {
                Ok(c) => {
                    created.set(Some((c.client.client_id, c.client_secret)));
                    error.set(None);
                    name.set(String::new());
                    redirects.set(String::new());
                    reload.update(|n| *n += 1);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <h1>"OAuth clients"</h1>
        <p class="muted">"Applications (Claude, Cursor, VS Code, the SDKs…) that sign users in through the gateway's OAuth flow. Revoking one ends its sessions at once."</p>
        <details class="panel">
            <summary id="add-oauth-client">"Pre-register a client"</summary>
            <form class="grid-form" id="oauth-client-form" on:submit=on_submit>
                <label>"Name"<input id="oauth-client-name" required maxlength="100" bind:value=name /></label>
                <label>"Redirect URIs (one per line; loopback http may use any port)"
                    <textarea id="oauth-client-redirects" required rows="3" bind:value=redirects></textarea></label>
                <label class="inline"><input type="checkbox" id="oauth-client-confidential" bind:checked=confidential />"Confidential (gets a secret)"</label>
                <button type="submit" id="oauth-client-submit">"Register"</button>
            </form>
            {move || created.get().map(|(id, secret)| view! {
                <div class="ok" id="oauth-client-created">
                    <p>"Client id: "<code>{id.clone()}</code>" "<CopyButton text=id /></p>
                    {secret.map(|s| view! { <p>"Secret (shown once): "<code id="oauth-client-secret">{s.clone()}</code>" "<CopyButton text=s /></p> })}
                </div>
            })}
        </details>
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || clients.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(list) if list.is_empty() => view! { <p class="empty" id="oauth-clients-empty">"No OAuth clients yet. MCP clients register themselves the first time a user connects."</p> }.into_any(),
                Ok(list) => view! {
                    <table id="oauth-clients-table">
                        <thead><tr><th>"Name"</th><th>"Client id"</th><th>"Kind"</th><th>"Redirect URIs"</th><th>"Users"</th><th>"Created"</th><th></th></tr></thead>
                        <tbody>
                            {list.into_iter().map(|c| {
                                let id = c.id;
                                let on_revoke = Callback::new(move |()| {
                                    spawn_local(async move {
                                        if let Err(e) = api::revoke_oauth_client(id).await {
                                            error.set(Some(e.message));
                                        }
                                        reload.update(|n| *n += 1);
                                    });
                                });
                                view! {
                                    <tr>
                                        <td>{c.name.clone()}</td>
                                        <td><code>{c.client_id.clone()}</code></td>
                                        <td>{c.kind.clone()}{format!(" · {}", c.token_endpoint_auth_method)}</td>
                                        <td>{c.redirect_uris.join(" ")}</td>
                                        <td>{c.grants}</td>
                                        <td>{when(c.created_at)}</td>
                                        <td>{if c.revoked_at.is_some() {
                                            view! { <span class="muted">"revoked"</span> }.into_any()
                                        } else {
                                            view! { <ConfirmDelete on_confirm=on_revoke id=format!("revoke-client-{id}") /> }.into_any()
                                        }}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}

/// A user's OAuth grants (on the user page): which applications they allowed, last use, revoke.
#[component]
pub fn UserGrants(user: Signal<i64>) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let grants = Load::new(move || {
        let id = user.get();
        reload.track();
        async move { api::user_grants(id).await }
    });
    view! {
        <section class="panel">
            <h2>"Connected applications"</h2>
            {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || grants.get().map(|res| match res {
                    Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="empty" id="grants-empty">"No application was given access through OAuth."</p> }.into_any(),
                    Ok(list) => view! {
                        <ul class="plain" id="grants-list">
                            {list.into_iter().map(|g| {
                                let client = g.client;
                                let revoke = move |_| {
                                    let id = user.get_untracked();
                                    spawn_local(async move {
                                        if let Err(e) = api::revoke_grant(id, client).await {
                                            error.set(Some(e.message));
                                        }
                                        reload.update(|n| *n += 1);
                                    });
                                };
                                view! {
                                    <li>
                                        <strong>{g.client_name.clone()}</strong>" · "<code>{g.scope.clone()}</code>
                                        {format!(" · since {} · last used {}", when(g.created_at), g.last_used_at.map(when).unwrap_or_else(|| "never".into()))}
                                        <ul class="grant-resources">
                                            {g.resources.iter().map(|r| view! { <li><code>{r.resource.clone()}</code>": "<code>{r.scope.clone()}</code></li> }).collect_view()}
                                        </ul>
                                        " "<button type="button" class="danger-outline" on:click=revoke>"Revoke"</button>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any(),
                })}
            </Transition>
        </section>
    }
}
