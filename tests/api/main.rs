//! Integration tests: every test talks HTTP to real service instances on a fresh, migrated
//! Postgres database of its own.
#![allow(clippy::unwrap_used)]

mod allocation;
mod allocation_sql;
mod bad_input;
mod compat;
mod edge;
mod expiry;
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
mod webhooks;
