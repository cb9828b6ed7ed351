//! The first-run wizard: creates the first admin, then signs in as them.

use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_navigate;
use shared::auth::SetupAccount;

use crate::api;
use crate::session::use_session;

#[component]
pub fn Setup() -> impl IntoView {
    let session = use_session();
    let username = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let setup_token = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let create = Action::new_local(move |account: &SetupAccount| {
        let account = account.clone();
        async move {
            api::setup_create_admin(&account).await?;
            api::admin_login(&account.username, &account.password).await
        }
    });
    let navigate = use_navigate();
    Effect::new(move |_| match create.value().get() {
        Some(Ok(me)) => {
            session.me.set(Some(me));
            session.setup_required.set(false);
            navigate("/admin", Default::default());
        }
        Some(Err(e)) => error.set(Some(e.message)),
        None => {}
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if password.get_untracked() != confirm.get_untracked() {
            error.set(Some("the two passwords differ".into()));
            return;
        }
        let email = email.get_untracked();
        let token = setup_token.get_untracked();
        create.dispatch(SetupAccount {
            username: username.get_untracked(),
            password: password.get_untracked(),
            email: (!email.trim().is_empty()).then_some(email),
            setup_token: (!token.trim().is_empty()).then(|| token.trim().to_string()),
        });
    };
    move || {
        if session.ready.get() && !session.setup_required.get() {
            // Setup is done: the dashboard (or, signed out, the sign-in page via its guard).
            return view! { <Redirect path="/admin" /> }.into_any();
        }
        view! {
            <h1>"Welcome to AuthMCP Gateway"</h1>
            <p>"Create the first administrator account. This page works only once."</p>
            <form class="stack" id="setup-form" on:submit=on_submit>
                {move || session.setup_token_required.get().then(|| view! {
                    <label>"Setup token (printed in the gateway's log at start-up)"
                        <input id="setup-token" autocomplete="off" required spellcheck="false"
                            bind:value=setup_token />
                    </label>
                })}
                <label>"Username"
                    <input id="setup-username" autocomplete="username" required minlength="3" maxlength="64"
                        bind:value=username />
                </label>
                <label>"Email (optional)"
                    <input id="setup-email" type="email" autocomplete="email" bind:value=email />
                </label>
                <label>"Password (at least 12 characters)"
                    <input id="setup-password" type="password" autocomplete="new-password" required
                        bind:value=password />
                </label>
                <label>"Repeat the password"
                    <input id="setup-confirm" type="password" autocomplete="new-password" required
                        bind:value=confirm />
                </label>
                {move || error.get().map(|e| view! { <div class="alert" role="alert" id="setup-error">{e}</div> })}
                <button type="submit" id="setup-submit" disabled=move || create.pending().get()>"Create admin"</button>
            </form>
        }
        .into_any()
    }
}
