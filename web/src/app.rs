//! The route table and the layout every page shares.

use leptos::prelude::*;
use leptos_router::components::{Redirect, Route, Router, Routes};
use leptos_router::path;

use crate::components::layout::Layout;
use crate::pages::account::{
    AccountLogin, MyActivity, MyApiKeys, MyApplications, MyPassword, MyServers,
};
use crate::pages::audit::{Audit, AuditReportPage};
use crate::pages::connections::Connections;
use crate::pages::consent::Consent;
use crate::pages::console::Console;
use crate::pages::logs::{Activity, AuditLog, SecurityEvents};
use crate::pages::oauth::OAuthClients;
use crate::pages::pins::ToolChanges;
use crate::pages::servers::Servers;
use crate::pages::settings::Settings;
use crate::pages::teams::Teams;
use crate::pages::tokens::Tokens;
use crate::pages::users::{OwnApiKeys, UserDetail, Users};
use crate::pages::{dashboard::Dashboard, login::Login, not_found::NotFound, setup::Setup};
use crate::session::{RequireAccount, RequireAdmin, Session};

#[component]
pub fn App() -> impl IntoView {
    Session::provide();
    view! {
        <Router>
            <Layout>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=|| view! { <Redirect path="/admin" /> } />
                    <Route path=path!("/admin") view=|| view! { <RequireAdmin><Dashboard /></RequireAdmin> } />
                    <Route path=path!("/admin/mcp-servers") view=|| view! { <RequireAdmin><Servers /></RequireAdmin> } />
                    <Route path=path!("/admin/users") view=|| view! { <RequireAdmin><Users /></RequireAdmin> } />
                    <Route path=path!("/admin/users/:id") view=|| view! { <RequireAdmin><UserDetail /></RequireAdmin> } />
                    <Route path=path!("/admin/api-keys") view=|| view! { <RequireAdmin><OwnApiKeys /></RequireAdmin> } />
                    <Route path=path!("/admin/security-logs") view=|| view! { <RequireAdmin><SecurityEvents /></RequireAdmin> } />
                    <Route path=path!("/admin/mcp-activity") view=|| view! { <RequireAdmin><Activity /></RequireAdmin> } />
                    <Route path=path!("/admin/oauth-clients") view=|| view! { <RequireAdmin><OAuthClients /></RequireAdmin> } />
                    <Route path=path!("/admin/console") view=|| view! { <RequireAdmin><Console /></RequireAdmin> } />
                    <Route path=path!("/admin/settings") view=|| view! { <RequireAdmin><Settings /></RequireAdmin> } />
                    <Route path=path!("/admin/tokens") view=|| view! { <RequireAdmin><Tokens /></RequireAdmin> } />
                    <Route path=path!("/admin/teams") view=|| view! { <RequireAdmin><Teams /></RequireAdmin> } />
                    <Route path=path!("/admin/audit-log") view=|| view! { <RequireAdmin><AuditLog /></RequireAdmin> } />
                    <Route path=path!("/admin/tool-changes") view=|| view! { <RequireAdmin><ToolChanges /></RequireAdmin> } />
                    <Route path=path!("/admin/audit") view=|| view! { <RequireAdmin><Audit /></RequireAdmin> } />
                    <Route path=path!("/admin/audit/:id") view=|| view! { <RequireAdmin><AuditReportPage /></RequireAdmin> } />
                    <Route path=path!("/account") view=|| view! { <RequireAccount><MyServers /></RequireAccount> } />
                    <Route path=path!("/account/api-keys") view=|| view! { <RequireAccount><MyApiKeys /></RequireAccount> } />
                    <Route path=path!("/account/applications") view=|| view! { <RequireAccount><MyApplications /></RequireAccount> } />
                    <Route path=path!("/account/password") view=|| view! { <RequireAccount><MyPassword /></RequireAccount> } />
                    <Route path=path!("/account/activity") view=|| view! { <RequireAccount><MyActivity /></RequireAccount> } />
                    <Route path=path!("/account/login") view=AccountLogin />
                    <Route path=path!("/consent") view=Consent />
                    <Route path=path!("/connect") view=Connections />
                    <Route path=path!("/connect/:server") view=Connections />
                    <Route path=path!("/login") view=Login />
                    <Route path=path!("/setup") view=Setup />
                </Routes>
            </Layout>
        </Router>
    }
}
