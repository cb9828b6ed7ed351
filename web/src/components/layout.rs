//! The page frame: navigation on the left (on top on narrow screens), content on the right.

use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    view! {
        <div class="shell">
            <nav class="nav" aria-label="Main">
                <A href="/admin" attr:class="brand">"AuthMCP Gateway"</A>
                <A href="/admin">"Dashboard"</A>
                <A href="/login">"Sign in"</A>
                <a href="/swagger-ui/" rel="external">"API docs"</a>
            </nav>
            <main>{children()}</main>
        </div>
    }
}
