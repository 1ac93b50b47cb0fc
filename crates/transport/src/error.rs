//! `TransportError`: why the transport could not be set up.

use std::io;
use std::net::SocketAddr;

/// A failure while binding the socket or joining the discovery group. Send and receive errors
/// at run time are not fatal: they are counted in `TransportStats` and the node carries on.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket could not be created, configured or bound to the listen address.
    #[error("cannot bind UDP socket to {address}: {source}")]
    Bind {
        /// The configured listen address.
        address: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A configured interface does not exist on this machine.
    #[error("interface {name:?} does not exist")]
    UnknownInterface {
        /// The configured interface name.
        name: String,
    },
    /// Joining the discovery multicast group on an interface failed.
    #[error("cannot join multicast group on interface {name:?}: {source}")]
    JoinGroup {
        /// The interface name.
        name: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Multicast discovery is IPv6 link-local, so it needs an IPv6 socket.
    #[error(
        "multicast discovery on interfaces needs an IPv6 listen address such as [::]:7400, not {address}"
    )]
    MulticastNeedsIpv6 {
        /// The configured (IPv4) listen address.
        address: SocketAddr,
    },
    /// A static peer has an address family the socket cannot reach.
    #[error("static peer {peer} is IPv6 but the socket listens on IPv4 address {listen}")]
    PeerFamily {
        /// The static peer's address.
        peer: SocketAddr,
        /// The socket's listen address.
        listen: SocketAddr,
    },
    /// More interfaces than [`crate::MAX_INTERFACES`] were configured.
    #[error("{count} interfaces configured, at most {max} are supported")]
    TooManyInterfaces {
        /// How many were configured.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A QUIC link could not be set up or used.
    #[error("link: {0}")]
    Link(String),
}
