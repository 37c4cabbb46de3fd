//! The enrolment policy file: model, parsing and validation.

pub mod model;
pub use model::*;
