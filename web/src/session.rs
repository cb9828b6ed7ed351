//! Who is signed in, shared through context: the admin (admin pages) and the portal's user
//! (the `/account` pages), each with its guard. Each realm's session is resumed from its cookie
//! when a page of that realm first needs it (one refresh, not one per realm on every load).

use leptos::prelude::*;
use leptos_router::components::Redirect;
use shared::auth::Me;

use crate::api::{self, Realm};

/// Where a realm's resume stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    NotStarted,
    Running,
    Done,
}

#[derive(Clone, Copy)]
pub struct Session {
    /// The signed-in admin, if any.
    pub me: RwSignal<Option<Me>>,
    /// The user signed in to the portal, if any.
    pub account: RwSignal<Option<Me>>,
    /// False until the start-up check (setup status) has finished.
    pub ready: RwSignal<bool>,
    /// True while the gateway still needs its first admin.
    pub setup_required: RwSignal<bool>,
    /// True when creating it needs the setup token from the gateway's log.
    pub setup_token_required: RwSignal<bool>,
    admin_resume: RwSignal<Resume>,
    portal_resume: RwSignal<Resume>,
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
            admin_resume: RwSignal::new(Resume::NotStarted),
            portal_resume: RwSignal::new(Resume::NotStarted),
        };
        provide_context(session);
        leptos::task::spawn_local(async move {
            if let Ok(status) = api::setup_status().await
                && status.setup_required
            {
                session.setup_required.set(true);
                session.setup_token_required.set(status.token_required);
            }
            session.ready.set(true);
        });
        session
    }

    fn signed_in(self, realm: Realm) -> RwSignal<Option<Me>> {
        match realm {
            Realm::Admin => self.me,
            Realm::Portal => self.account,
        }
    }

    fn resume_state(self, realm: Realm) -> RwSignal<Resume> {
        match realm {
            Realm::Admin => self.admin_resume,
            Realm::Portal => self.portal_resume,
        }
    }

    /// Resumes the realm's session from its cookie, once.
    fn resume(self, realm: Realm) {
        let state = self.resume_state(realm);
        if state.get_untracked() != Resume::NotStarted {
            return;
        }
        state.set(Resume::Running);
        leptos::task::spawn_local(async move {
            let me = api::resume(realm).await;
            if self.signed_in(realm).get_untracked().is_none() {
                self.signed_in(realm).set(me);
            }
            state.set(Resume::Done);
        });
    }
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}

/// Shows `children` to a signed-in admin; otherwise sends the visitor to the setup wizard
/// (first run) or the sign-in page.
#[component]
pub fn RequireAdmin(children: ChildrenFn) -> impl IntoView {
    guard(children, Realm::Admin, "/login")
}

/// Shows `children` to a user signed in to the portal; otherwise sends the visitor to the
/// portal's sign-in page.
#[component]
pub fn RequireAccount(children: ChildrenFn) -> impl IntoView {
    guard(children, Realm::Portal, "/account/login")
}

fn guard(children: ChildrenFn, realm: Realm, sign_in: &'static str) -> impl IntoView {
    let session = use_session();
    let loading = || view! { <p class="loading" id="session-loading">"Loading…"</p> }.into_any();
    move || {
        if !session.ready.get() {
            loading()
        } else if session.setup_required.get() {
            view! { <Redirect path="/setup" /> }.into_any()
        } else if session.signed_in(realm).get().is_some() {
            children().into_any()
        } else if session.resume_state(realm).get() != Resume::Done {
            session.resume(realm);
            loading()
        } else {
            view! { <Redirect path=sign_in /> }.into_any()
        }
    }
}
