//! secret-rotator: renews Entra ID application client secrets before they expire and carries each
//! new value to every place that uses it.
//!
//! Where things live:
//! - [`policy`]: the enrolment file (which credentials, which consumers), parsed and validated once.
//! - [`planner`]: the rotation decision, a pure function of (policy, observed state, now).
//! - [`engine`]: observes Azure, asks the planner, performs one step at a time; the blob lease.
//! - [`azure`]: one client per Azure service (Graph, Entra token probe, Key Vault, App Service,
//!   API connections, Automation, Blob storage), each with its own error enum.
//! - [`handler`]: the Azure Functions custom-handler protocol and the HTTP functions.
//! - `dev` (feature `dev-mode`): `secret-rotator dev`, and `dev::host`, the one stand-in for the
//!   Functions host that dev mode and the tests invoke the handler through.
//! - [`cli`]: the operator's commands (plan, rotate, report, diagnose) behind `main.rs`.
//! - [`package`]: the deployable zip (`secret-rotator package`).
//! - [`settings`]: typed settings, read once through an injectable lookup.
//! - [`transport`], [`cloud`], [`secret`]: the shared HTTP client, cloud endpoints, the redacting
//!   secret type.

pub mod azure;
pub use rotator_core::{cloud, planner, policy, secret};
pub mod cli;
pub mod compose;
#[cfg(feature = "dev-mode")]
pub mod dev;
pub mod engine;
pub mod handler;
pub mod notify;
pub mod package;
pub mod settings;
pub mod statuspage;
pub mod transport;
