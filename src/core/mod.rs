//! The rules of the payment domain, as plain functions. Where a rule needs the database it takes
//! a `&mut PgConnection` and opens (or joins) the transaction it needs. A rule that refuses says
//! why with a [`error::RuleError`]; the HTTP edge decides the answer.

pub mod alerts;
pub mod checkouts;
pub mod compat;
pub mod console;
pub mod devices;
pub mod error;
pub mod merchants;
pub mod notifications;
pub mod operators;
pub mod orders;
pub mod payees;
pub mod platform_keys;
pub mod reading;
pub mod reconciliation;
pub mod rsa_signing;
pub mod secrets;
pub mod signing;
pub mod webhooks;
