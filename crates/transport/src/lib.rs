//! UDP transport of x0tta6bl4: one socket, IPv6 link-local multicast discovery, static peers.
//!
//! # Layout
//! - [`udp`]: `Transport`, the socket with its multicast memberships and discovery targets.
//! - [`address_book`]: `AddressBook`, the bounded map from node id to the address it was last
//!   heard from, which turns the router's `Destination::Neighbour(id)` into a socket address.
//! - [`channel`]: the link channel, link datagrams on a plain UDP socket sealed with keys
//!   exported from each link's TLS session, sent and received in GSO/GRO batches.
//! - [`fragment`]: channel packets larger than a datagram, split into fragments sent in one GSO
//!   batch and reassembled (bounded, with a timeout) before they are opened.
//! - [`error`]: `TransportError`, what can go wrong while binding.
//!
//! The transport knows nothing about routing: it moves opaque datagrams. It reads no clock;
//! the address book orders entries by a use counter instead of by time.
//!
//! # Discovery
//! Hellos go to the link-local multicast group [`DISCOVERY_GROUP`] on every configured
//! interface, at the node's own UDP port: nodes that want to find each other by multicast on a
//! link must therefore listen on the same port (the default 7400). Static peers (`nodes.json`)
//! get the same hellos by unicast, which is how links across routed networks, and every link
//! of the loopback demo, are formed.

pub mod address_book;
pub mod channel;
pub mod error;
pub mod fragment;
pub mod links;
pub mod udp;

pub use address_book::{AddressBook, MAX_ADDRESS_BOOK_ENTRIES};
pub use error::TransportError;
pub use links::{IncomingRequest, LinkEndpoint, LinkEvent, LinkInfo, LinkSettings};
pub use udp::{
    DISCOVERY_GROUP, Interface, MAX_INTERFACES, RECV_BUFFER_BYTES, StaticPeer, Transport,
    TransportConfig, TransportStats,
};
