//! The rotation planner: a pure function of (policy, observed state, now).

pub mod model;
pub use model::*;
mod tmp_stub; pub use tmp_stub::*;
