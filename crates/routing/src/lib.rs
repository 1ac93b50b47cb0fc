//! Sans-IO mesh routing core of x0tta6bl4: neighbour sensing, link quality, OGM route
//! propagation, loop-free alternates and fast reroute.
//!
//! # Layout
//! - [`time`]: `Timestamp`, the caller-supplied monotonic clock (microseconds).
//! - [`config`]: `RouterConfig`, every tunable with its default and the reason for it.
//! - [`link`]: per-neighbour probe state: liveness (BFD-style), loss window, RTT, TQ.
//! - [`metric`]: B.A.T.M.A.N. TQ in the log domain (additive costs) and the hop penalty.
//! - [`table`]: per-destination candidates, Babel feasibility distance, selection.
//! - [`router`]: `Router`, the state machine that ties the parts together.
//! - [`rng`]: a tiny seeded generator for jitter (randomness is an argument, never global).
//! - [`auth`]: originator signatures on OGMs through caller-supplied signer and verifier
//!   traits, the verified-signature cache and the hold queue for not-yet-known originators.
//!
//! The crate does no I/O, spawns nothing and reads no clock: time and the random seed are
//! arguments, and packets come in and go out as byte buffers. The same code runs in the
//! daemon (`node`) and in the deterministic simulator (`sim`).

pub mod auth;
pub mod config;
pub mod link;
pub mod metric;
pub mod rng;
pub mod router;
pub mod table;
pub mod time;

pub use auth::{OgmAuth, OgmSigner, OgmVerifier, Verdict};
pub use config::{ConfigError, RouterConfig};
pub use link::NeighbourInfo;
pub use router::{
    Destination, DropReason, Event, ISOLATED, InvariantViolation, MemoryUse, RouteInfo, Router,
    Stats, Transmit,
};
pub use time::Timestamp;
