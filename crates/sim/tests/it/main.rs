//! Integration tests of the simulator: fixed-seed scenarios, determinism, properties.
//!
//! One test binary (`it`) for the crate, so the routing core and the simulator are linked
//! once. Meshes and durations are small enough for debug builds.

mod crdt_run;
mod determinism;
mod properties;
mod scenarios;
