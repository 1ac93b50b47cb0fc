//! Session tests: real `Sessions` tables of two or three nodes with real node keys, wired
//! together in memory, plus property tests of arbitrary bytes.

mod support;

mod bad_input;
mod handshake;
mod props;
mod transport;
