//! AuthMCP Gateway: the secure front door for Model Context Protocol servers.
//!
//! Modules in reading order: configuration and telemetry, the database, keys and passwords,
//! the HTTP surface (app, error, OpenAPI, feature modules), the SPA. See docs/ARCHITECTURE.md.

pub mod cache;
pub mod config;
pub mod cookies;
pub mod feed;
pub mod fetch;
pub mod telemetry;

pub mod db;
pub mod detect;
pub mod keys;
pub mod password;
pub mod ratelimit;
pub mod runtime;

pub mod error;
pub mod events;
pub mod filelog;
pub mod files;

pub mod accounts;
pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backend_auth;
pub mod conn;
pub mod connections;
pub mod health;
pub mod live;
pub mod mcp;
pub mod metrics;
pub mod oauth;
pub mod openapi;
pub mod portal;
pub mod servers;
pub mod setup;
pub mod spa;
pub mod state;
pub mod teams;
