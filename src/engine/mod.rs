//! The rotation engine: observe, plan, execute one step, repeat. The engine layer: it imports
//! the core (`rotator-core`) and the adapters (`crate::azure`), never the app layer above it.
//!
//! Where things live: [`runner`] (the `Engine`: passes, single rotations, status, plan, the
//! self-test), [`observe`] / [`executor`] (one credential's observation and one step),
//! [`inventory`] (the tenant scan: credentials nobody rotates), [`service`] (the
//! `RotatorService` trait the handler calls), [`ports`] and [`azure_ports`] (the engine's view of
//! Azure and its implementation on the clients), [`report`] (what every use case answers),
//! [`lifetime`] (the tenant's learnt password-lifetime cap). [`tags`] and [`kvref`] are the core
//! crate's, re-exported here at their old paths.

pub mod azure_ports;
pub mod executor;
pub mod inventory;
pub use rotator_core::{kvref, tags};
pub mod lifetime;
pub mod observe;
pub mod parallelism;
pub mod ports;
pub mod report;
pub mod runner;
pub mod service;
