//! Repository-wide checks of the design rules, run by `cargo test` (see `tests/tidy.rs`).
//!
//! The checks live in a test crate of their own, as rust-analyzer's `tidy.rs` does, so that a
//! rule broken anywhere in the tree fails the ordinary test suite.
