//! The enrolment policy file: model, parsing and validation.
