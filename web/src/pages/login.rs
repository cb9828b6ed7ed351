//! The admin sign-in page (users sign in to the portal at `/account/login`).

use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::Realm;
use crate::components::sign_in::SignInForm;

#[component]
pub fn Login() -> impl IntoView {
    view! {
        <h1>"Sign in"</h1>
        <SignInForm realm=Realm::Admin />
        <p class="muted">"Not an administrator? " <A href="/account/login">"Sign in to your account"</A> " for your servers, API keys and password."</p>
    }
}
