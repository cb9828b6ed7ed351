//! The page frame: navigation on the left (on top on narrow screens), content on the right.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use crate::api;
use crate::session::use_session;

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let sign_out = move |_| {
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            let _ = api::logout().await;
            session.me.set(None);
            navigate("/login", Default::default());
        });
    };
    view! {
        <div class="shell">
            <nav class="nav" aria-label="Main">
                <A href="/admin" attr:class="brand">"AuthMCP Gateway"</A>
                <A href="/admin" exact=true>"Dashboard"</A>
                <A href="/admin/mcp-servers">"MCP servers"</A>
                <A href="/admin/users">"Users"</A>
                <A href="/admin/oauth-clients">"OAuth clients"</A>
                <A href="/admin/tokens">"Backend tokens"</A>
                <A href="/admin/mcp-activity">"Activity"</A>
                <A href="/admin/security-logs">"Security events"</A>
                <A href="/admin/audit-log">"Audit log"</A>
                <A href="/admin/tool-changes">"Tool changes"</A>
                <A href="/admin/audit">"Security audit"</A>
                <A href="/admin/console">"Test console"</A>
                <A href="/admin/settings">"Settings"</A>
                <A href="/admin/api-keys">"My API keys"</A>
                <a href="/swagger-ui/" rel="external">"API docs"</a>
                <div class="nav-user">
                    {move || match session.me.get() {
                        Some(me) => view! {
                            <span class="who" id="signed-in-as">{me.username}</span>
                            <button type="button" class="link" id="sign-out" on:click=sign_out.clone()>"Sign out"</button>
                        }.into_any(),
                        None => view! { <A href="/login">"Sign in"</A> }.into_any(),
                    }}
                </div>
            </nav>
            <main>{children()}</main>
        </div>
    }
}
