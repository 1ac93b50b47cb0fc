//! Local HTTP API of an x0tta6bl4 node: health, status, peers, routes and incidents as JSON,
//! and the healing loop's events over a WebSocket.
//!
//! # Layout
//! - [`server`]: `run(listener, handle, shutdown)`, the routes and their handlers.
//! - [`error`]: `ApiError` and the one function mapping errors to HTTP status codes.
//! - [`listener`]: `LimitedListener`, which caps concurrent connections.
//! - [`kv`]: the key-value and Raft routes (values are raw bytes; JSON carries base64).
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
//! | `GET /api/v1/kv/{key}[?stale=true]` | the value (raw bytes; `x-kv-revision` header); 404 if absent |
//! | `PUT /api/v1/kv/{key}[?ttl_ms=N\|?lease=ID]` | body is the value; `kv::PutView` |
//! | `DELETE /api/v1/kv/{key}` | `kv::DeleteView` |
//! | `POST /api/v1/kv/{key}` | compare-and-swap, `kv::CasBody`; `kv::CasView` (409 if the compare failed) |
//! | `GET /api/v1/kv?prefix=P[&after=K&limit=N&stale=true]` | `kv::ListView` |
//! | `GET /api/v1/kv?prefix=P&watch=true` | NDJSON stream of `kv::WatchLine` |
//! | `GET /api/v1/raft` | `node::kvhost::RaftView` |
//! | `POST`/`DELETE /api/v1/raft/voters/{node}` | add or remove a voter; `RaftView` |
//!
//! Key-value errors carry `"retryable": true` when the same request may succeed later
//! (election, leader unreachable, timeout): 503 or 504.
//! | `GET /api/v1/incidents[?type=&state=&limit=]` | stored incidents, newest first, with wall-clock times |
//! | `GET /api/v1/incidents/{id}` | one stored incident (record id) |
//! | `GET /api/v1/notices` | incident notices received from other nodes |
//! | `GET /api/v1/events` | WebSocket: healing events and actions, one JSON text message each |

pub mod error;
pub mod kv;
pub mod listener;
pub mod server;

pub use error::ApiError;
pub use server::{REQUEST_TIMEOUT, app, run};
