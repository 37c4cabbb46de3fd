//! [`SecretValue`]: the only type that may hold a client secret's text.
//!
//! Why a type of its own: a secret must never reach a log line, an HTTP response, an error or a
//! panic message. `Debug` and `Display` print `[REDACTED]`, `Serialize` is deliberately not
//! implemented, and the text is reachable only through [`SecretValue::expose`], which is easy to
//! grep for in review. Equality takes the same time wherever two values first differ
//! (`subtle::ConstantTimeEq`; only the length can be told apart), and the text is overwritten
//! with zeros when the value is dropped (`zeroize`).

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret's text. Redacted in `Debug`/`Display`; compared in constant time; zeroed on drop.
#[derive(Clone)]
pub struct SecretValue(String);

impl Drop for SecretValue {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SecretValue {}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretValue {}

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

    /// Was: `#[derive(PartialEq)]`, which stops at the first differing byte.
    #[test]
    fn equality_is_by_content_in_constant_time() {
        let a = SecretValue::new("Abc8Q~very-secret-value");
        assert_eq!(a, SecretValue::new("Abc8Q~very-secret-value"));
        assert_ne!(a, SecretValue::new("Abc8Q~very-secret-valuX"));
        assert_ne!(a, SecretValue::new("Abc"));
        assert_ne!(SecretValue::new(""), a);
    }

    #[test]
    fn values_are_zeroed_on_drop() {
        fn zeroed_on_drop<T: ZeroizeOnDrop>() {}
        zeroed_on_drop::<SecretValue>();
    }
}
