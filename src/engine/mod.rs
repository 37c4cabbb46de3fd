//! The rotation engine: observe, plan, execute one step, repeat.

pub mod report;
pub mod azure_ports;
pub mod executor;
pub mod kvref;
pub mod observe;
pub mod ports;
pub mod runner;
pub mod tags;
pub mod service;
