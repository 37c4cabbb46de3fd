//! What the end-to-end tests share: the emulator and Azurite started per test, the demo world
//! (engine, clients, tenant) built through the product's composition root, the host harness,
//! fault kit, invariants checked on the emulator's state, the campaign's shapes and a headless
//! browser.

pub mod azurite;
pub mod bicep;
pub mod browser;
pub mod campaign;
pub mod cert_campaign;
pub mod cert_invariants;
pub mod cert_tenant;
pub mod emulator;
pub mod faultkit;
pub mod host;
pub mod invariants;
pub mod receiver;
pub mod shared;
pub mod world;
