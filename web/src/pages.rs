//! One module per route.

pub mod consent;
pub mod dashboard;
pub mod login;
pub mod logs;
pub mod not_found;
pub mod oauth;
pub mod servers;
pub mod setup;
pub mod users;
