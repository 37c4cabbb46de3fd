//! The rotation engine: observe, plan, execute one step, repeat.

pub mod azure_ports;
pub mod executor;
pub mod inventory;
pub use rotator_core::{kvref, tags};
pub mod lifetime;
pub mod observe;
pub mod ports;
pub mod report;
pub mod runner;
pub mod service;
