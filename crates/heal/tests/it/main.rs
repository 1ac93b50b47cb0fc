//! Integration tests of the `heal` crate through its public API: one binary, one module per
//! concern.

mod harness;
mod healer;
mod playbooks;
mod properties;
