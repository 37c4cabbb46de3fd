//! Azure service clients: one module per service, all returning the one [`Error`] (`error`).
//!
//! - [`credential`]: the rotator's own credential (managed identity, service principal, or the
//!   developer's tools), built with the shared transport.
//! - [`graph`]: application passwords (read, add, remove, list) with a shared write limiter.
//! - [`entra`]: the token probe that verifies a client secret and reports the AADSTS code.
//! - [`keyvault`]: secret versions through the official `azure_security_keyvault_secrets` crate.
//! - [`certificates`]: Key Vault certificates (new version, operation, get, policy) and `sign`
//!   with a certificate's key; [`keycredentials`]: Graph `keyCredentials` (addKey, removeKey,
//!   the merge-preserving PATCH); [`assertion`]: JWTs signed in Key Vault (client assertion,
//!   addKey proof) and the client-assertion token probe.
//! - [`web`], [`connections`], [`automation`]: the ARM consumers (app settings and Key Vault
//!   references, API connections, Automation variables).
//! - [`storage`]: the rotator's own blob container (leases, audit records, run outcomes).
//! - [`error`]: the one [`Error`] every client returns (a closed [`ErrorKind`], the
//!   [`Service`] and operation, Azure's status, code and clipped message); a failed request is
//!   classified there, once.
//! - [`common`]: options, retry policy and the request loop they all share; `arm` the ARM bits,
//!   [`pacer`] the client-side pacer spending ARM's documented token buckets.
//! - [`permissions`]: every permission the code above needs.

pub mod assertion;
pub mod automation;
pub mod certificates;
pub mod common;
pub mod connections;
pub mod credential;
pub mod entra;
pub mod error;
pub mod graph;
pub mod keycredentials;
pub mod keyvault;
pub mod pacer;
pub mod permissions;
pub mod storage;
pub mod web;

mod arm;

pub use common::{RetryPolicy, ServiceOptions};
pub use error::{Error, ErrorKind, Service};
#[cfg(test)]
mod fuzz;
