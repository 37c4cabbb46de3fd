//! The engine's use cases, one module each, all methods of [`crate::engine::Engine`]:
//!
//! - [`rotate`]: one credential's rotation run (lease → observe → plan → one step, repeated →
//!   audit record), the unit of everything that writes.
//! - [`pass`]: the timer's pass: every enrolled credential in parallel (AIMD), then the scan.
//! - [`scan`]: the scans for credentials nobody rotates (the pass's warnings, `Status`'s
//!   inventory).
//! - [`status`]: `Status`: each credential as observed, its last outcome, the inventory;
//!   [`certificate_status`]: the pure status of one certificate credential.
//! - [`plan`]: `Plan`: the dry run.
//! - [`self_test`]: the probe: storage, and each credential's value, consumers and last run.
//!
//! Each use case reads Azure only through the ports ([`crate::engine::ports`]) and its stored
//! records only through [`crate::engine::records`].

pub mod certificate_status;
pub mod pass;
pub mod plan;
pub mod rotate;
pub mod scan;
pub mod self_test;
pub mod status;
