//! solopay: a headless payment gateway for personal WeChat Pay and Alipay collection codes.
//!
//! Data flows one way: [`api`] and [`compat`] (HTTP, sharing [`http`]; every route in
//! [`routes`]) → [`core`] (rules) → [`db`] (storage).

pub mod alerts;
pub mod api;
pub mod app;
pub mod compat;
pub mod config;
pub mod console;
pub mod core;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod money;
#[doc(hidden)]
pub mod private_cluster;
pub mod retention;
pub mod routes;
pub mod sweeper;
pub mod telemetry;
pub mod views;
pub mod watch;
pub mod webhooks;
