//! The rotation engine: observe, plan, execute one step, repeat.

pub mod report;
pub mod service;
