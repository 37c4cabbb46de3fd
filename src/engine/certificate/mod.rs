//! Certificate credentials through the engine: the same loop as the secret path (observe →
//! decide → perform `steps[0]` → repeat, under the credential's lease), on the certificate
//! planner of the core ([`crate::planner::certificate`]).
//!
//! Where things live:
//! - [`ports`]: what this path needs from Azure ([`CertificatePorts`]), beside the secret
//!   path's `AzurePorts`; [`azure`] implements it on the same clients and maps their errors
//!   onto [`crate::engine::ports::PortError`] once.
//! - [`tags`]: the rotation state in the certificate version's Key Vault tags (parse, render).
//! - [`observe`]: [`observe_certificate`] builds the planner's `CertObservation`.
//! - [`executor`]: one function per `CertStep`.
//! - [`run`]: the use case — a certificate credential's run, its plan, and what the pass,
//!   `Rotate` and `Plan` call.
//!
//! The private key never passes through here: the rotator reads certificates' public parts
//! and metadata, asks Key Vault to sign, and never reads a certificate's secret (the PFX).

pub mod azure;
pub mod executor;
pub mod observe;
pub mod ports;
pub mod run;
pub mod tags;

pub use observe::{CertObserved, observe_certificate};
pub use ports::CertificatePorts;
