//! The admin sign-in form (users sign in to the portal at `/account/login`). Failures show the server's message, which never says whether a
//! username exists.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use crate::api;
use crate::session::use_session;

#[component]
pub fn Login() -> impl IntoView {
    let session = use_session();
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let login = Action::new_local(move |(u, p): &(String, String)| {
        let (u, p) = (u.clone(), p.clone());
        async move { api::admin_login(&u, &p).await }
    });
    let navigate = use_navigate();
    Effect::new(move |_| match login.value().get() {
        Some(Ok(me)) => {
            error.set(None);
            session.me.set(Some(me));
            navigate("/admin", Default::default());
        }
        Some(Err(e)) => error.set(Some(e.message)),
        None => {}
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        login.dispatch((username.get_untracked(), password.get_untracked()));
    };
    view! {
        <h1>"Sign in"</h1>
        <form class="stack" id="login-form" on:submit=on_submit>
            <label>"Username"
                <input id="login-username" name="username" autocomplete="username" required
                    bind:value=username />
            </label>
            <label>"Password"
                <input id="login-password" name="password" type="password" autocomplete="current-password" required
                    bind:value=password />
            </label>
            {move || error.get().map(|e| view! { <div class="alert" role="alert" id="login-error">{e}</div> })}
            <button type="submit" id="login-submit" disabled=move || login.pending().get()>"Sign in"</button>
        </form>
        <p class="muted">"Not an administrator? " <A href="/account/login">"Sign in to your account"</A> " for your servers, API keys and password."</p>
    }
}
