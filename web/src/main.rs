//! The admin SPA entry point: installs the panic hook and mounts the app.

mod api;
mod app;
mod components;
mod pages;
mod resource;
mod session;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
