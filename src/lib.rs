//! wecom-provider: the callback gateway, token center and ciphertext-ID service of
//! a WeCom third-party service provider. `main.rs` only parses the command line;
//! everything else, including starting the server for tests, lives here.

pub mod access;
pub mod app;
pub mod backoff;
pub mod config;
pub mod crypto;
pub mod error;
pub mod events;
pub mod feed;
pub mod ids;
pub mod keys;
pub mod licenses;
pub mod lifecycle;
pub mod login;
pub mod model;
pub mod registry;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod tokens;
pub mod web;
pub mod webhooks;
pub mod wecom;
