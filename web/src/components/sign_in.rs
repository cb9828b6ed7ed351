//! The sign-in form of a realm: the admin pages (`/login`, ids `login-…`) and the user portal
//! (`/account/login`, ids `account-…`). Failures show the server's message, which never says
//! whether a username exists.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use crate::api::{self, Realm};
use crate::session::use_session;

#[component]
pub fn SignInForm(realm: Realm) -> impl IntoView {
    let session = use_session();
    let (prefix, submit, home) = match realm {
        Realm::Admin => ("login", "login-submit", "/admin"),
        Realm::Portal => ("account", "account-login-submit", "/account"),
    };
    let id = move |field: &str| format!("{prefix}-{field}");
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let login = Action::new_local(move |(u, p): &(String, String)| {
        let (u, p) = (u.clone(), p.clone());
        async move {
            match realm {
                Realm::Admin => api::admin_login(&u, &p).await,
                Realm::Portal => api::portal_login(&u, &p).await,
            }
        }
    });
    let navigate = use_navigate();
    Effect::new(move |_| match login.value().get() {
        Some(Ok(me)) => {
            error.set(None);
            match realm {
                Realm::Admin => session.me.set(Some(me)),
                Realm::Portal => session.account.set(Some(me)),
            }
            navigate(home, Default::default());
        }
        Some(Err(e)) => error.set(Some(e.message)),
        None => {}
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        login.dispatch((username.get_untracked(), password.get_untracked()));
    };
    view! {
        <form class="stack" id=id("form") on:submit=on_submit>
            <label>"Username"
                <input id=id("username") name="username" autocomplete="username" required
                    bind:value=username />
            </label>
            <label>"Password"
                <input id=id("password") name="password" type="password" autocomplete="current-password" required
                    bind:value=password />
            </label>
            {move || error.get().map(|e| view! { <div class="alert" role="alert" id=id("error")>{e}</div> })}
            <button type="submit" id=submit disabled=move || login.pending().get()>"Sign in"</button>
        </form>
    }
}
