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
//!
//! The crate does no I/O, spawns nothing and reads no clock: time and the random seed are
//! arguments, and packets come in and go out as byte buffers. The same code runs in the
//! daemon (`node`) and in the deterministic simulator (`sim`).

pub mod config;
pub mod link;
pub mod metric;
pub mod rng;
pub mod router;
pub mod table;
pub mod time;

pub use config::{ConfigError, RouterConfig};
pub use link::NeighbourInfo;
pub use router::{
    Destination, DropReason, Event, InvariantViolation, RouteInfo, Router, Stats, Transmit,
};
pub use time::Timestamp;
