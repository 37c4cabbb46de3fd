//! Azure service clients: one module per service, each with its own error enum.

pub mod permissions;
