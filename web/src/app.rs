//! The route table and the layout every page shares.

use leptos::prelude::*;
use leptos_router::components::{Redirect, Route, Router, Routes};
use leptos_router::path;

use crate::components::layout::Layout;
use crate::pages::{dashboard::Dashboard, login::Login, not_found::NotFound, setup::Setup};
use crate::session::{RequireAdmin, Session};

#[component]
pub fn App() -> impl IntoView {
    Session::provide();
    view! {
        <Router>
            <Layout>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=|| view! { <Redirect path="/admin" /> } />
                    <Route path=path!("/admin") view=|| view! { <RequireAdmin><Dashboard /></RequireAdmin> } />
                    <Route path=path!("/login") view=Login />
                    <Route path=path!("/setup") view=Setup />
                </Routes>
            </Layout>
        </Router>
    }
}
