//! Shown for any path the router does not know.

use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <h1 id="not-found">"Page not found"</h1>
        <p>"There is nothing here. "<A href="/admin">"Back to the dashboard"</A></p>
    }
}
