//! Types that cross the HTTP and WebSocket boundary between the gateway and its clients
//! (the admin SPA, integrators' scripts, tests); nothing else lives here.
//!
//! Every type derives `Serialize`/`Deserialize`; the `openapi` feature adds `utoipa::ToSchema`
//! so the server can document them without the wasm build paying for utoipa.

pub mod audit;
pub mod auth;
pub mod console;
pub mod error;
pub mod events;
pub mod health;
pub mod live;
pub mod oauth;
pub mod portal;
pub mod routes;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod servers;
pub mod stats;
pub mod teams;
pub mod text;
pub mod users;
