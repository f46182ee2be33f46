//! Integration tests: every test talks HTTP to real service instances on a fresh, migrated
//! Postgres database of its own.
// Tests: a panic is how a failure is reported, and figures are rounded only for printing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::as_conversions,
    clippy::too_many_lines
)]

mod alerts;
mod allocation;
mod allocation_sql;
mod bad_input;
mod browser;
mod compat;
mod console;
mod edge;
mod expiry;
mod failover;
mod flow;
mod helpers;
mod isolation;
mod notify;
mod openapi;
mod operator;
mod ops;
mod reading;
mod receiver;
mod recovery;
mod reliability;
mod retention;
mod shops;
mod sql_sources;
mod summary;
mod wakeups;
mod webhooks;
