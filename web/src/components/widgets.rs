//! Small shared pieces: error alert, empty state, status badge, copy button, two-step delete,
//! sending the browser to a backend's authorization server.

use leptos::prelude::*;

/// An error message from the API, as an alert.
#[component]
pub fn ErrorAlert(message: String) -> impl IntoView {
    view! { <div class="alert" role="alert">{message}</div> }
}

/// A coloured badge for a status word (`online`, `offline`, `high`, …).
#[component]
pub fn Badge(text: String) -> impl IntoView {
    let class = format!(
        "badge badge-{}",
        text.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    );
    view! { <span class=class>{text}</span> }
}

/// Copies `text` to the clipboard.
#[component]
pub fn CopyButton(text: String, #[prop(optional)] id: Option<&'static str>) -> impl IntoView {
    let copied = RwSignal::new(false);
    let on_click = move |_| {
        let clipboard = window().navigator().clipboard();
        let _ = clipboard.write_text(&text);
        copied.set(true);
    };
    view! {
        <button type="button" class="secondary" id=id on:click=on_click>
            {move || if copied.get() { "Copied" } else { "Copy" }}
        </button>
    }
}

/// A delete button that asks for a second click before it acts.
#[component]
pub fn ConfirmDelete(
    #[prop(into)] on_confirm: Callback<()>,
    #[prop(optional)] id: Option<String>,
) -> impl IntoView {
    let armed = RwSignal::new(false);
    view! {
        {move || if armed.get() {
            view! {
                <span class="confirm">
                    <button type="button" class="danger" id=id.clone().map(|i| format!("{i}-confirm"))
                        on:click=move |_| { armed.set(false); on_confirm.run(()); }>"Really delete"</button>
                    <button type="button" class="secondary" on:click=move |_| armed.set(false)>"Cancel"</button>
                </span>
            }.into_any()
        } else {
            view! {
                <button type="button" class="danger-outline" id=id.clone() on:click=move |_| armed.set(true)>"Delete"</button>
            }.into_any()
        }}
    }
}

/// Seconds since the epoch, as a short UTC date and time.
pub fn when(secs: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(secs as f64 * 1000.0));
    let iso: String = date.to_iso_string().into();
    iso.get(..16).unwrap_or(&iso).replace('T', " ")
}

/// Sends this browser to a backend's authorization server to connect an account (the flow
/// comes back to the page that started it), or shows why not. Only a web address is followed:
/// the server relays what another party published.
pub fn open_authorization(
    started: Result<shared::servers::ConnectStart, crate::api::ApiError>,
    error: RwSignal<Option<String>>,
) {
    match started {
        Ok(start)
            if start.authorization_url.starts_with("https://")
                || start.authorization_url.starts_with("http://") =>
        {
            if let Some(window) = web_sys::window() {
                let _ = window.location().set_href(&start.authorization_url);
            }
        }
        Ok(_) => error.set(Some(
            "the authorization server's address is not a web address".into(),
        )),
        Err(e) => error.set(Some(e.message)),
    }
}
