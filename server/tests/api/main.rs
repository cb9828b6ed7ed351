//! The gateway's one integration-test binary: an in-process gateway per test on
//! `127.0.0.1:0`, a fresh database per test, every database test run against SQLite and
//! Postgres (see `helpers::db_test!`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod accounts;
mod aggregate;
mod audit;
mod backend_oauth;
mod cli;
mod conformance;
mod foundation;
mod gate;
mod hostile;
mod keys;
mod mcp;
mod oauth;
mod observe;
mod openapi;
mod peers;
mod pins;
mod portal;
mod replicas;
mod spa;
mod teams;
