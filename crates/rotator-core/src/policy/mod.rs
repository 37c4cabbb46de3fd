//! The enrolment policy file: model, parsing and validation.
//!
//! - [`model`]: the validated types the rest of the program uses ([`Policy`], [`CredentialPolicy`],
//!   [`Consumer`]...).
//! - [`certificate`]: certificate credentials (`"type": "certificate"` entries) and the
//!   conversion of a client secret to a certificate ([`CertificateCredentialPolicy`]).
//! - [`minimums`]: the least grace and the least interval between forced rotations.
//! - `parse` (private): JSON text -> model. The file is read into a `serde_json::Value` and walked
//!   by hand rather than derived, so that *every* problem in the file is reported at once, each
//!   naming the file, the credential entry and the field ([`PolicyErrors`]); a derived
//!   deserializer would stop at the first one.
//!
//! Entry points: [`parse`] for text already in memory, [`load`] for a file on disk. Nothing is
//! rotated while the policy has any error, so callers treat `Err` as fatal for the whole run.

pub mod certificate;
pub mod minimums;
pub mod model;
mod parse;

pub use certificate::*;
pub use model::*;
pub use parse::{DEFAULT_CONNECTION_PARAMETER, load, parse};

use std::fmt;

/// One problem in the policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file (or source name given to [`parse`]).
    pub source: String,
    /// The credential entry, e.g. `credentials[2] (provision-assist)`; `None` for file-level
    /// problems (syntax, top-level fields, `defaults`).
    pub entry: Option<String>,
    /// Dotted path of the field inside the entry (or the file), e.g. `keyVault.secret`,
    /// `consumers[1].site`; empty when the problem is the entry or file as a whole.
    pub field: String,
    /// What is wrong, naming the offending value and what was expected.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(entry) = &self.entry {
            write!(f, ": {entry}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PolicyError {}

/// Every problem found in a policy file, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors {
    pub errors: Vec<PolicyError>,
}

impl PolicyErrors {
    /// True when some error's rendered line contains `needle` (used by tests and callers that
    /// want to look for one problem without matching on the whole text).
    pub fn mentions(&self, needle: &str) -> bool {
        self.errors.iter().any(|e| e.to_string().contains(needle))
    }
}

impl fmt::Display for PolicyErrors {
    /// One line per error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

#[cfg(test)]
mod certificate_tests;
#[cfg(test)]
mod tests;
