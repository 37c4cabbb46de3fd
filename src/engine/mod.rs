//! The rotation engine: observe, plan, execute one step, repeat. The engine layer: it imports
//! the core (`rotator-core`) and the adapters (`crate::azure`), never the app layer above it.
//!
//! Where things live:
//! - [`context`]: the [`Engine`] every use case shares (policy, ports, options) and its options.
//! - [`usecase`]: one module per use case — a rotation, a pass, the unenrolled scan, status,
//!   plan, the self-test.
//! - [`observe`] / [`executor`]: one credential's observation and one step against Azure.
//! - [`inventory`]: the tenant scan's rows and pages (credentials nobody rotates).
//! - [`records`]: the typed records kept in the rotator's storage and their blob paths.
//! - [`service`]: the `RotatorService` trait the handler calls, and its implementation.
//! - [`ports`] / [`azure_ports`]: the engine's view of Azure and its implementation on the
//!   clients.
//! - [`report`]: what every use case answers; [`lifetime`]: the tenant's learnt
//!   password-lifetime cap; [`parallelism`]: how many credentials a pass runs at once.
//!
//! - [`certificate`]: the same loop for certificate credentials (its own ports, observer,
//!   executor and run).
//!
//! [`tags`] and [`kvref`] are the core crate's, re-exported here at their old paths.

pub mod azure_ports;
pub mod certificate;
pub mod context;
pub mod executor;
pub mod inventory;
pub use rotator_core::{kvref, tags};
pub mod lifetime;
pub mod observe;
pub mod parallelism;
pub mod ports;
pub mod records;
pub mod report;
pub mod service;
pub mod usecase;

pub use context::{Engine, EngineOptions};
