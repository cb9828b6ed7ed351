//! One module per route.

pub mod account;
pub mod audit;
pub mod connections;
pub mod consent;
pub mod console;
pub mod dashboard;
pub mod login;
pub mod logs;
pub mod not_found;
pub mod oauth;
pub mod pins;
pub mod servers;
pub mod settings;
pub mod setup;
pub mod teams;
pub mod tokens;
pub mod users;
