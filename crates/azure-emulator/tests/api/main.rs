//! The emulator's own test binary: one module per surface, `support` for the harness they
//! share. (`sdk_managed_identity` stays a binary of its own: it sets process environment.)

mod support;

mod arm;
mod binary;
mod cert_variants;
mod certificates;
mod control;
mod entra_graph;
mod fidelity;
mod keycredentials;
mod keyvault;
mod perf;
mod robustness;
