//! The Azure Functions custom-handler protocol and the functions served over it.

pub mod service;
