//! secret-rotator: renews Entra ID application client secrets before they expire and carries each
//! new value to every place that uses it.
//!
//! Where things live, by layer (each imports only its own and lower ones; `tests/e2e/layers.rs`
//! checks it):
//! - core, the `rotator-core` crate (no I/O crate), re-exported here: [`policy`] (the enrolment
//!   file, consumer identities), [`planner`] (the rotation decision, a pure function of policy,
//!   observed state and now), [`domain`] (the rest of the data the engine's ports speak: caller
//!   identity, listed applications and certificates), [`cloud`], [`secret`] (the redacting
//!   secret type), and
//!   `engine::tags` / `engine::kvref` (Key Vault tags and references).
//! - adapters: [`azure`] (one client per Azure service: Graph, Entra token probe, Key Vault, App
//!   Service, API connections, Automation, Blob storage) and [`transport`] (the shared HTTP
//!   client).
//! - engine: [`engine`] (observes Azure, asks the planner, performs one step at a time; the blob
//!   lease; the inventory scan; the `RotatorService` trait the handler calls) and [`notify`]
//!   (the webhook implementation of the engine's `Notifier` port).
//! - app: [`compose`] (the composition root every engine is built by), [`handler`] (the Azure
//!   Functions custom-handler protocol and the HTTP functions), [`cli`] (the operator's commands
//!   behind `main.rs`), `dev` (feature `dev-mode`: `secret-rotator dev`, and `dev::host`, the one
//!   stand-in for the Functions host), [`package`] (the deployable zip), [`settings`] (typed
//!   settings, read once through an injectable lookup), [`statuspage`].

pub mod azure;
pub use rotator_core::{cloud, domain, planner, policy, secret};
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
