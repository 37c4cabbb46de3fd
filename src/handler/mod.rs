//! The Azure Functions custom-handler protocol and the functions served over it.
//!
//! - [`protocol`]: the host's invocation envelope and the handler's response, parsed leniently.
//! - [`server`]: the axum server ([`server::run`]), readiness, envelope-level errors.
//! - [`functions`]: RotateSecrets (timer), SelfTest, Operate, Rotate and StatusPage (HTTP).
//! - [`auth`]: the app roles App Service authentication sends (optional, after function keys).
//! - [`runs`]: the in-memory registry of spawned runs (what a dropped request leaves behind).
//! - [`specs`]: `function-specs/` and host.json checks the JSON schemas miss (NCRONTAB, binding
//!   types, routes); used by `package` and the spec tests.
//! - [`service`]: the trait the engine implements.

pub mod auth;
pub mod functions;
pub mod protocol;
pub mod runs;
pub mod server;
pub mod service;
pub mod specs;

pub use server::{HandlerOptions, StartupError, run};
