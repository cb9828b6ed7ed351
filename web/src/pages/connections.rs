//! The connections page for every user (`/connect`, `/connect/{server}`): sign in (the same
//! sign-in as the OAuth consent page), then connect, reconnect or disconnect your own account at
//! each server that acts with each user's account. An MCP client that calls such a server
//! before you connected gets this page's address in its error.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_params_map, use_query_map};
use shared::auth::LoginRequest;

use crate::api;
use crate::components::widgets::{Badge, ErrorAlert, open_authorization, when};
use crate::resource::Load;

async fn connect(server: String, error: RwSignal<Option<String>>) {
    open_authorization(api::connect_my_account(&server).await, error);
}

#[component]
pub fn Connections() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let wanted = move || params.with(|p| p.get("server"));
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let mine = Load::new(move || {
        reload.track();
        async move { api::my_connections().await }
    });
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let on_sign_in = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = LoginRequest {
            username: username.get_untracked(),
            password: password.get_untracked(),
            session: Default::default(),
        };
        spawn_local(async move {
            match api::connections_sign_in(&req).await {
                Ok(_) => {
                    error.set(None);
                    password.set(String::new());
                    reload.update(|n| *n += 1);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let on_sign_out = move |_| {
        spawn_local(async move {
            let _ = api::connections_sign_out().await;
            reload.update(|n| *n += 1);
        });
    };
    view! {
        <h1>"My connected accounts"</h1>
        <p class="muted">"Some MCP servers act with your own account at the service behind them. Connect it once here; the gateway keeps it fresh and never shows it to anyone."</p>
        {move || query.with(|q| q.get("connected")).map(|s| view! { <p class="ok" id="connect-done">"Connected "{s}"."</p> })}
        {move || query.with(|q| q.get("error")).map(|m| view! { <ErrorAlert message=m /> })}
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || mine.get().map(|res| match res {
                Err(e) if e.status == 401 => view! {
                    <section class="panel">
                        <form class="stack" id="connect-sign-in" on:submit=on_sign_in>
                            <label>"Username"<input id="connect-username" autocomplete="username" required bind:value=username /></label>
                            <label>"Password"<input id="connect-password" type="password" autocomplete="current-password" required bind:value=password /></label>
                            <button type="submit" id="connect-sign-in-submit">"Sign in"</button>
                        </form>
                    </section>
                }.into_any(),
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(mine) => view! {
                    <p>"Signed in as "<strong id="connect-signed-in">{mine.username.clone()}</strong>". "
                        <button type="button" class="link" id="connect-sign-out" on:click=on_sign_out>"Sign out"</button></p>
                    {if mine.connections.is_empty() {
                        view! { <p class="empty" id="connections-empty">"None of your MCP servers needs your own account."</p> }.into_any()
                    } else {
                        view! {
                            <table id="connections-table">
                                <thead><tr><th>"Server"</th><th>"Status"</th><th>"Connected"</th><th>"Last error"</th><th></th></tr></thead>
                                <tbody>{mine.connections.into_iter().map(|c| {
                                    let server = c.server.clone();
                                    let (s1, s2) = (server.clone(), server.clone());
                                    let connected = c.status != "not_connected";
                                    let highlight = wanted().as_deref() == Some(server.as_str());
                                    let on_connect = move |_| spawn_local(connect(s1.clone(), error));
                                    let on_disconnect = move |_| {
                                        let server = s2.clone();
                                        spawn_local(async move {
                                            if let Err(e) = api::disconnect_my_account(&server).await {
                                                error.set(Some(e.message));
                                            }
                                            reload.update(|n| *n += 1);
                                        });
                                    };
                                    view! {
                                        <tr id=format!("connection-{server}") class:highlight=highlight>
                                            <td><strong>{server.clone()}</strong>" "<span class="muted">{c.description.clone().unwrap_or_default()}</span></td>
                                            <td><Badge text=c.status.clone() /></td>
                                            <td>{c.connected_at.map(when).unwrap_or_default()}</td>
                                            <td class="muted">{c.last_error.clone().unwrap_or_default()}</td>
                                            <td class="actions">
                                                <button type="button" class="connect" on:click=on_connect>{if connected { "Reconnect" } else { "Connect" }}</button>
                                                {connected.then(|| view! { <button type="button" class="danger-outline disconnect" on:click=on_disconnect>"Disconnect"</button> })}
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}</tbody>
                            </table>
                        }.into_any()
                    }}
                }.into_any(),
            })}
        </Transition>
    }
}
