//! The route table and the layout every admin page shares.

use leptos::prelude::*;
use leptos_router::components::{Redirect, Route, Router, Routes};
use leptos_router::path;

use crate::components::layout::Layout;
use crate::pages::{dashboard::Dashboard, login::Login, not_found::NotFound};

#[component]
pub fn App() -> impl IntoView {
    view! {
        <Router>
            <Layout>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=|| view! { <Redirect path="/admin" /> } />
                    <Route path=path!("/admin") view=Dashboard />
                    <Route path=path!("/login") view=Login />
                </Routes>
            </Layout>
        </Router>
    }
}
