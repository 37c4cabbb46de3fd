//! Typed settings, read once at start through an injectable lookup.
