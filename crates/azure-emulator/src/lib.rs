//! azure-emulator: a local, in-memory Azure tenant spoken over the real wire protocols.
//!
//! (Work in progress; see the crate README for what is emulated and what is not.)
