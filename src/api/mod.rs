//! The native HTTP API, one file per resource: a handler parses, authenticates (through an
//! extractor), calls one core function and shapes the answer. Routes are declared in
//! [`crate::routes`]; what handlers share lives in [`crate::http`].

pub mod admin;
pub mod devices;
pub mod extract;
pub mod ops;
pub mod orders;
pub mod qr;
