//! Integration tests of the `x0tta6bl4` binary: real daemon processes on loopback, the demo,
//! `ctl`, and how bad input is reported.

mod bad_input;
mod ctl;
mod demo;
mod healing;
mod kv;
mod kv_disk_full;
mod kv_jepsen;
mod mesh;
mod netns;
mod ogm;
mod overlay;
mod replication;
mod security;
mod sim;
mod support;
