//! `/admin/teams` (global admins): teams, who is in them and who administers them. A team
//! admin sees the admin pages of their teams only.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::components::widgets::{ConfirmDelete, ErrorAlert};
use crate::resource::Load;

#[component]
pub fn Teams() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let name = RwSignal::new(String::new());
    let teams = Load::new(move || {
        reload.track();
        async move { api::teams().await }
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let new = name.get_untracked();
        spawn_local(async move {
            match api::create_team(&new).await {
                Ok(_) => {
                    name.set(String::new());
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
            reload.update(|n| *n += 1);
        });
    };
    view! {
        <h1>"Teams"</h1>
        <p class="muted">"A team owns MCP servers. Its members can use the servers they are granted; its team admins manage its servers, its members' access and see its activity and events, and nothing of other teams."</p>
        <form class="inline-form" id="new-team-form" on:submit=on_submit>
            <input aria-label="Team name" id="new-team-name" placeholder="team name" required maxlength="100" bind:value=name />
            <button type="submit" id="new-team-submit">"Create team"</button>
        </form>
        {move || error.get().map(|m| view! { <ErrorAlert message=m /> })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || teams.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(list) => list.into_iter().map(|t| {
                    let id = t.id;
                    let remove = move |()| {
                        spawn_local(async move {
                            if let Err(e) = api::delete_team(id).await {
                                error.set(Some(e.message));
                            }
                            reload.update(|n| *n += 1);
                        });
                    };
                    view! {
                        <section class="panel" id=format!("team-{id}")>
                            <h2>{t.name.clone()}</h2>
                            <p class="muted">{format!("{} members, {} servers", t.members, t.servers)}</p>
                            <Members team=id error />
                            {(id != 1).then(|| view! { <ConfirmDelete on_confirm=Callback::new(remove) id=format!("delete-team-{id}") /> })}
                        </section>
                    }
                }).collect_view().into_any(),
            })}
        </Transition>
    }
}

#[component]
fn Members(team: i64, error: RwSignal<Option<String>>) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let members = Load::new(move || {
        reload.track();
        async move { api::team_members(team).await }
    });
    let users = Load::new(|| async { api::list_users("").await });
    let user = RwSignal::new(String::new());
    let role = RwSignal::new("member".to_string());
    let on_add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(user_id) = user.get_untracked().parse::<i64>() else {
            return;
        };
        let role = role.get_untracked();
        spawn_local(async move {
            if let Err(e) = api::set_team_member(team, user_id, &role).await {
                error.set(Some(e.message));
            }
            reload.update(|n| *n += 1);
        });
    };
    view! {
        <Transition fallback=|| ()>
            {move || members.get().map(|res| match res {
                Err(e) => view! { <ErrorAlert message=e.message /> }.into_any(),
                Ok(list) => view! {
                    <table id=format!("team-members-{team}")>
                        <thead><tr><th>"User"</th><th>"Role"</th><th></th></tr></thead>
                        <tbody>{list.into_iter().map(|m| {
                            let user_id = m.user_id;
                            let remove = move |_| {
                                spawn_local(async move {
                                    if let Err(e) = api::remove_team_member(team, user_id).await {
                                        error.set(Some(e.message));
                                    }
                                    reload.update(|n| *n += 1);
                                });
                            };
                            view! {
                                <tr>
                                    <td>{m.username.clone()}</td>
                                    <td>{m.role.clone()}</td>
                                    <td><button type="button" class="danger-outline" on:click=remove>"Remove"</button></td>
                                </tr>
                            }
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
        <form class="inline-form" on:submit=on_add>
            <select aria-label="User" id=format!("team-add-user-{team}") on:change=move |ev| user.set(event_target_value(&ev))>
                <option value="">"add a user…"</option>
                {move || users.get().and_then(|r| r.ok()).map(|page| page.items.into_iter().map(|u| view! {
                    <option value=u.id.to_string()>{u.username}</option>
                }).collect_view())}
            </select>
            <select aria-label="Role" id=format!("team-add-role-{team}") on:change=move |ev| role.set(event_target_value(&ev))>
                <option value="member">"member"</option>
                <option value="team_admin">"team admin"</option>
            </select>
            <button type="submit" id=format!("team-add-{team}")>"Add or change"</button>
        </form>
    }
}
