//! secret-rotator's core: everything that decides, with no I/O crate in reach (no tokio,
//! reqwest, axum or azure_*), so the compiler keeps adapters and the engine out of it.
//!
//! Where things live:
//! - [`policy`]: the enrolment file (which credentials, which consumers), parsed and validated
//!   once; consumer identities ([`policy::ConsumerId`]). Client secrets
//!   ([`policy::CredentialPolicy`]) and certificate credentials
//!   ([`policy::CertificateCredentialPolicy`], with the conversion of a secret to one).
//! - [`planner`]: the rotation decision, a pure function of (policy, observed state, now), and
//!   the domain model it speaks (applications, passwords, Key Vault versions, steps);
//!   [`planner::certificate`] the same for certificate credentials (not yet run by the engine).
//! - [`domain`]: the rest of the data the engine's ports speak (who the rotator signs in as, a
//!   directory listing's applications and certificates, an Automation write's outcome).
//! - [`tags`]: the rotator's bookkeeping in Key Vault tags (how progress survives a crash).
//! - [`kvref`]: App Service Key Vault reference parsing.
//! - [`cloud`]: the national clouds' endpoints; [`secret`]: the redacting secret type.

pub mod cloud;
pub mod domain;
pub mod kvref;
pub mod planner;
pub mod policy;
pub mod secret;
pub mod tags;
