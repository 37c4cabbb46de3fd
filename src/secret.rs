//! [`SecretValue`]: the only type that may hold a client secret's text.
//!
//! Why a type of its own: a secret must never reach a log line, an HTTP response, an error or a
//! panic message. `Debug` and `Display` print `[REDACTED]`, `Serialize` is deliberately not
//! implemented, and the text is reachable only through [`SecretValue::expose`], which is easy to
//! grep for in review.

use std::fmt;

/// A secret's text. Redacted in `Debug`/`Display`; compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret's text. Call only where the value goes on the wire to Azure.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first three characters: what Graph reports as a password's `hint`.
    pub fn hint(&self) -> String {
        self.0.chars().take(3).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<'de> serde::Deserialize<'de> for SecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretValue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_text() {
        let s = SecretValue::new("Abc8Q~very-secret-value");
        assert!(!format!("{s:?}").contains("very-secret"));
        assert!(!format!("{s}").contains("very-secret"));
        assert!(!format!("{:?}", Some(&s)).contains("Abc"));
        assert_eq!(s.hint(), "Abc");
    }
}
