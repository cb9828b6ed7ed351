//! Who is signed in, shared through context: the admin (admin pages) and the portal's user
//! (the `/account` pages), each with its guard.

use leptos::prelude::*;
use leptos_router::components::Redirect;
use shared::auth::Me;

use crate::api;

#[derive(Clone, Copy)]
pub struct Session {
    /// The signed-in admin, if any.
    pub me: RwSignal<Option<Me>>,
    /// The user signed in to the portal, if any.
    pub account: RwSignal<Option<Me>>,
    /// False until the start-up check (setup status, session resume) has finished.
    pub ready: RwSignal<bool>,
    /// True while the gateway still needs its first admin.
    pub setup_required: RwSignal<bool>,
    /// True when creating it needs the setup token from the gateway's log.
    pub setup_token_required: RwSignal<bool>,
}

impl Session {
    /// Provides the session to the app and starts the start-up check.
    pub fn provide() -> Session {
        let session = Session {
            me: RwSignal::new(None),
            account: RwSignal::new(None),
            ready: RwSignal::new(false),
            setup_required: RwSignal::new(false),
            setup_token_required: RwSignal::new(false),
        };
        provide_context(session);
        leptos::task::spawn_local(async move {
            match api::setup_status().await {
                Ok(status) if status.setup_required => {
                    session.setup_required.set(true);
                    session.setup_token_required.set(status.token_required);
                }
                _ => {
                    session.me.set(api::resume(api::Realm::Admin).await);
                    session.account.set(api::resume(api::Realm::Portal).await);
                }
            }
            session.ready.set(true);
        });
        session
    }
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}

/// Shows `children` to a signed-in admin; otherwise sends the visitor to the setup wizard
/// (first run) or the sign-in page.
#[component]
pub fn RequireAdmin(children: ChildrenFn) -> impl IntoView {
    guard(children, |s| s.me, "/login")
}

/// Shows `children` to a user signed in to the portal; otherwise sends the visitor to the
/// portal's sign-in page.
#[component]
pub fn RequireAccount(children: ChildrenFn) -> impl IntoView {
    guard(children, |s| s.account, "/account/login")
}

fn guard(
    children: ChildrenFn,
    who: fn(Session) -> RwSignal<Option<Me>>,
    sign_in: &'static str,
) -> impl IntoView {
    let session = use_session();
    move || {
        if !session.ready.get() {
            view! { <p class="loading" id="session-loading">"Loading…"</p> }.into_any()
        } else if session.setup_required.get() {
            view! { <Redirect path="/setup" /> }.into_any()
        } else if who(session).get().is_none() {
            view! { <Redirect path=sign_in /> }.into_any()
        } else {
            children().into_any()
        }
    }
}
