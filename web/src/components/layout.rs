//! The page frame: navigation on the left (on top on narrow screens), content on the right.
//! The portal's pages (`/account…`) get the portal's navigation and session; every other page
//! the admin's.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_location, use_navigate};

use crate::api::{self, Realm};
use crate::session::use_session;

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let session = use_session();
    let location = use_location();
    let in_portal = move || {
        location
            .pathname
            .with(|p| p == "/account" || p.starts_with("/account/"))
    };
    let navigate = use_navigate();
    let sign_out = move |_| {
        let navigate = navigate.clone();
        let portal = in_portal();
        leptos::task::spawn_local(async move {
            if portal {
                let _ = api::logout(Realm::Portal).await;
                session.account.set(None);
                navigate("/account/login", Default::default());
            } else {
                let _ = api::logout(Realm::Admin).await;
                session.me.set(None);
                navigate("/login", Default::default());
            }
        });
    };
    let who = move || {
        if in_portal() {
            session.account.get()
        } else {
            session.me.get()
        }
    };
    view! {
        <div class="shell">
            <nav class="nav" aria-label="Main">
                {move || if in_portal() {
                    view! {
                        <A href="/account" attr:class="brand">"AuthMCP Gateway"</A>
                        <A href="/account" exact=true>"My servers"</A>
                        <A href="/account/api-keys">"My API keys"</A>
                        <A href="/account/applications">"Applications"</A>
                        <A href="/account/activity">"Activity"</A>
                        <A href="/account/password">"Password"</A>
                    }.into_any()
                } else {
                    // A team admin is shown only what a team admin can do.
                    let global = session.me.get().is_none_or(|me| me.role == shared::auth::Role::Admin);
                    view! {
                        <A href="/admin" attr:class="brand">"AuthMCP Gateway"</A>
                        <A href="/admin" exact=true>"Dashboard"</A>
                        <A href="/admin/mcp-servers">"MCP servers"</A>
                        <A href="/admin/users">{if global { "Users" } else { "Members" }}</A>
                        {global.then(|| view! {
                            <A href="/admin/teams">"Teams"</A>
                            <A href="/admin/oauth-clients">"OAuth clients"</A>
                        })}
                        <A href="/admin/tokens">"Backend tokens"</A>
                        <A href="/admin/mcp-activity">"Activity"</A>
                        <A href="/admin/security-logs">"Security events"</A>
                        <A href="/admin/audit-log">"Audit log"</A>
                        <A href="/admin/tool-changes">"Tool changes"</A>
                        {global.then(|| view! { <A href="/admin/audit">"Security audit"</A> })}
                        <A href="/admin/console">"Test console"</A>
                        {global.then(|| view! {
                            <A href="/admin/settings">"Settings"</A>
                            <A href="/admin/api-keys">"My API keys"</A>
                        })}
                        <A href="/account">"My account"</A>
                        <a href="/swagger-ui/" rel="external">"API docs"</a>
                    }.into_any()
                }}
                <div class="nav-user">
                    {move || match who() {
                        Some(me) => view! {
                            <span class="who" id="signed-in-as">{me.username}</span>
                            <button type="button" class="link" id="sign-out" on:click=sign_out.clone()>"Sign out"</button>
                        }.into_any(),
                        None => view! {
                            <A href=move || if in_portal() { "/account/login".to_string() } else { "/login".to_string() }>"Sign in"</A>
                        }.into_any(),
                    }}
                </div>
            </nav>
            <main>{children()}</main>
        </div>
    }
}
