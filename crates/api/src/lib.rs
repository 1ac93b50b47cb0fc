//! Local HTTP API of an x0tta6bl4 node: health, status, peers and routes as JSON.
//!
//! # Layout
//! - [`server`]: `run(listener, handle, shutdown)`, the routes and their handlers.
//! - [`error`]: `ApiError` and the one function mapping errors to HTTP status codes.
//! - [`listener`]: `LimitedListener`, which caps concurrent connections.
//!
//! The API reads the node only through a `node::NodeHandle`; it holds no routing state. It has
//! no authentication yet, which is why `node.yaml` keeps it on loopback by default.
//!
//! | route | body |
//! |---|---|
//! | `GET /health` | `{"status": "ok", "node_id": ...}`, 503 if the node loop is gone |
//! | `GET /api/v1/status` | `node::StatusView` |
//! | `GET /api/v1/peers` | list of `node::PeerView` |
//! | `GET /api/v1/routes` | list of `node::RouteView` |
//! | `GET /api/v1/identity` | `node::IdentityView` |
//! | `POST /api/v1/datagrams/{node}/{port}` | raw payload (<= 1200 bytes) to another node; `node::SendOutcome` |
//! | `GET /api/v1/datagrams[/{port}]` | datagrams received (and taken), `node::DatagramView` list |

pub mod error;
pub mod listener;
pub mod server;

pub use error::ApiError;
pub use server::{REQUEST_TIMEOUT, app, run};
