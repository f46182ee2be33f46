//! The operator's endpoints under `/admin`, authenticated by the operator token.

pub mod devices;
pub mod merchants;
pub mod payees;
pub mod webhooks;
