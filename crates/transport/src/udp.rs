//! `Transport`: the node's single UDP socket, its multicast memberships and discovery targets.

use std::ffi::CString;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use wire::NodeId;

use crate::{AddressBook, MAX_ADDRESS_BOOK_ENTRIES, TransportError};

/// The IPv6 link-local multicast group discovery hellos are sent to: `ff02::6b6c` ("kl" in
/// ASCII, for the mesh's name). Link-local scope (`ff02`) keeps hellos on the link they were
/// sent on; routers never forward them.
pub const DISCOVERY_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x6b6c);

/// Most interfaces multicast discovery runs on. Every hello is sent once per interface, so the
/// cost of a hello round grows with this; 16 is more than any mesh node has radios or ports.
pub const MAX_INTERFACES: usize = 16;

/// Receive buffer size: one byte more than the largest valid packet, so that an oversized
/// datagram arrives (truncated) longer than `wire::MAX_PACKET_BYTES` and the router can count
/// it as oversized instead of mistaking it for a valid, shorter packet.
pub const RECV_BUFFER_BYTES: usize = wire::MAX_PACKET_BYTES + 1;

/// Hop limit of multicast hellos: they are for direct neighbours on the link only.
const MULTICAST_HOPS: u32 = 1;

/// A peer from `nodes.json`, reached by unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticPeer {
    /// Where to send hellos.
    pub address: SocketAddr,
    /// The peer's node id if the operator pinned it; it seeds the address book so that the
    /// first packets to that neighbour need not wait for it to be heard.
    pub node_id: Option<NodeId>,
}

/// What the transport binds to and whom it announces itself to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Local address, e.g. `[::]:7400` or `127.0.0.1:7400`.
    pub listen: SocketAddr,
    /// Interfaces to run multicast discovery on (empty: static peers only).
    pub interfaces: Vec<String>,
    /// Peers reached by unicast hellos.
    pub static_peers: Vec<StaticPeer>,
}

/// An interface discovery runs on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Interface {
    /// Its name, e.g. `eth0`.
    pub name: String,
    /// Its kernel index, used as the scope id of the multicast destination.
    pub index: u32,
}

/// Transport counters, all monotonically increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransportStats {
    /// Datagrams received.
    pub datagrams_rx: u64,
    /// Datagrams sent (one per destination address).
    pub datagrams_tx: u64,
    /// Sends the operating system refused (unreachable network, full buffer, ...).
    pub send_errors: u64,
    /// Receive calls that failed.
    pub recv_errors: u64,
    /// Packets for a neighbour whose address is not known, dropped.
    pub unknown_neighbour_address: u64,
    /// Address-book entries replaced because the book was full.
    pub address_book_evictions: u64,
}

/// The node's UDP socket. Create it inside a tokio runtime.
#[derive(Debug)]
pub struct Transport {
    socket: UdpSocket,
    local_addr: SocketAddr,
    interfaces: Vec<Interface>,
    static_peers: Vec<SocketAddr>,
    book: AddressBook,
    stats: TransportStats,
}

impl Transport {
    /// Binds the socket, joins the discovery group on every interface and seeds the address
    /// book with the static peers whose node id is known.
    pub fn bind(config: &TransportConfig) -> Result<Transport, TransportError> {
        if config.interfaces.len() > MAX_INTERFACES {
            return Err(TransportError::TooManyInterfaces {
                count: config.interfaces.len(),
                max: MAX_INTERFACES,
            });
        }
        if !config.interfaces.is_empty() && config.listen.is_ipv4() {
            return Err(TransportError::MulticastNeedsIpv6 {
                address: config.listen,
            });
        }
        let mut interfaces = Vec::with_capacity(config.interfaces.len());
        for name in &config.interfaces {
            interfaces.push(Interface {
                name: name.clone(),
                index: interface_index(name)?,
            });
        }
        let socket = open_socket(config.listen, &interfaces)?;
        let local_addr = socket.local_addr().map_err(|source| TransportError::Bind {
            address: config.listen,
            source,
        })?;
        let mut book = AddressBook::with_capacity(MAX_ADDRESS_BOOK_ENTRIES);
        let mut static_peers = Vec::with_capacity(config.static_peers.len());
        for peer in &config.static_peers {
            if local_addr.is_ipv4() && peer.address.is_ipv6() {
                return Err(TransportError::PeerFamily {
                    peer: peer.address,
                    listen: config.listen,
                });
            }
            static_peers.push(peer.address);
            if let Some(id) = peer.node_id {
                book.learn(id, peer.address);
            }
        }
        Ok(Transport {
            socket,
            local_addr,
            interfaces,
            static_peers,
            book,
            stats: TransportStats::default(),
        })
    }

    /// The address the socket is bound to (with the real port if the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The interfaces discovery runs on.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// The static peers' addresses.
    pub fn static_peers(&self) -> &[SocketAddr] {
        &self.static_peers
    }

    /// Counters.
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            address_book_evictions: self.book.evictions(),
            ..self.stats.clone()
        }
    }

    /// Number of neighbours whose address is known.
    pub fn known_addresses(&self) -> usize {
        self.book.len()
    }

    /// Waits for the next datagram. Returns its length and the sender's address, with
    /// IPv4-mapped IPv6 addresses turned back into IPv4. Cancel-safe.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (len, from) = self.socket.recv_from(buf).await?;
        Ok((len, canonical(from)))
    }

    /// Counts a received datagram; the caller reports each result of [`Transport::recv`].
    pub fn note_received(&mut self, result: &io::Result<(usize, SocketAddr)>) {
        match result {
            Ok(_) => self.stats.datagrams_rx += 1,
            Err(_) => self.stats.recv_errors += 1,
        }
    }

    /// Records that `id` sent a valid packet from `address`.
    pub fn learn(&mut self, id: NodeId, address: SocketAddr) {
        self.book.learn(id, address);
    }

    /// The address `id` was last heard from.
    pub fn address_of(&self, id: &NodeId) -> Option<SocketAddr> {
        self.book.address_of(id)
    }

    /// Sends `payload` to the neighbour `id` at its last known address. Returns false (and
    /// counts why) if the address is unknown or the send failed.
    pub async fn send_to_neighbour(&mut self, id: &NodeId, payload: &[u8]) -> bool {
        match self.book.address_of(id) {
            Some(address) => self.send_to(address, payload).await,
            None => {
                self.stats.unknown_neighbour_address += 1;
                false
            }
        }
    }

    /// Sends `payload` to the discovery group on every interface and to every static peer.
    /// Returns how many of those sends succeeded.
    pub async fn send_discovery(&mut self, payload: &[u8]) -> usize {
        let port = self.local_addr.port();
        let mut targets: Vec<SocketAddr> = self
            .interfaces
            .iter()
            .map(|interface| {
                SocketAddr::V6(SocketAddrV6::new(DISCOVERY_GROUP, port, 0, interface.index))
            })
            .collect();
        targets.extend(self.static_peers.iter().copied());
        let mut delivered = 0;
        for target in targets {
            if self.send_to(target, payload).await {
                delivered += 1;
            }
        }
        delivered
    }

    async fn send_to(&mut self, address: SocketAddr, payload: &[u8]) -> bool {
        let target = match (self.local_addr, address) {
            (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            _ => address,
        };
        match self.socket.send_to(payload, target).await {
            Ok(_) => {
                self.stats.datagrams_tx += 1;
                true
            }
            Err(error) => {
                self.stats.send_errors += 1;
                // Expected when a neighbour's network went away; counted, and logged only at
                // debug level so a dead peer cannot flood the log.
                tracing::debug!(%target, %error, "send failed");
                false
            }
        }
    }
}

fn interface_index(name: &str) -> Result<u32, TransportError> {
    let unknown = || TransportError::UnknownInterface {
        name: name.to_string(),
    };
    let c_name = CString::new(name).map_err(|_| unknown())?;
    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call;
    // if_nametoindex only reads it and returns 0 for an unknown name.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        Err(unknown())
    } else {
        Ok(index)
    }
}

fn open_socket(listen: SocketAddr, interfaces: &[Interface]) -> Result<UdpSocket, TransportError> {
    let bind_error = |source| TransportError::Bind {
        address: listen,
        source,
    };
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(bind_error)?;
    if let SocketAddr::V6(v6) = listen
        && v6.ip().is_unspecified()
    {
        // Dual stack, so that a node on [::] can also talk to IPv4 static peers.
        socket.set_only_v6(false).map_err(bind_error)?;
    }
    socket.set_nonblocking(true).map_err(bind_error)?;
    socket.bind(&listen.into()).map_err(bind_error)?;
    if listen.is_ipv6() && !interfaces.is_empty() {
        socket
            .set_multicast_hops_v6(MULTICAST_HOPS)
            .map_err(bind_error)?;
        // Loop stays on so that several daemons on one host (or in namespaces sharing a
        // bridge) hear each other; the router drops and counts its own hellos.
        socket.set_multicast_loop_v6(true).map_err(bind_error)?;
    }
    for interface in interfaces {
        socket
            .join_multicast_v6(&DISCOVERY_GROUP, interface.index)
            .map_err(|source| TransportError::JoinGroup {
                name: interface.name.clone(),
                source,
            })?;
    }
    UdpSocket::from_std(socket.into()).map_err(bind_error)
}

/// Turns an IPv4-mapped IPv6 address (how a dual-stack socket reports IPv4 senders) back into
/// the IPv4 address operators configured.
fn canonical(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => address,
        },
        SocketAddr::V4(_) => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_config(static_peers: Vec<StaticPeer>) -> TransportConfig {
        TransportConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            interfaces: Vec::new(),
            static_peers,
        }
    }

    #[tokio::test]
    async fn discovery_reaches_static_peers_and_replies_reach_learned_addresses() {
        let mut b = Transport::bind(&loopback_config(Vec::new())).unwrap();
        let peer = StaticPeer {
            address: b.local_addr(),
            node_id: None,
        };
        let mut a = Transport::bind(&loopback_config(vec![peer])).unwrap();

        assert_eq!(a.send_discovery(b"hello").await, 1);
        let mut buf = [0u8; RECV_BUFFER_BYTES];
        let received = b.recv(&mut buf).await;
        b.note_received(&received);
        let (len, from) = received.unwrap();
        assert_eq!(&buf[..len], b"hello");
        assert_eq!(from, a.local_addr());

        let a_id = NodeId::from_index(1);
        assert!(
            !b.send_to_neighbour(&a_id, b"reply").await,
            "address not learned yet"
        );
        assert_eq!(b.stats().unknown_neighbour_address, 1);
        b.learn(a_id, from);
        assert!(b.send_to_neighbour(&a_id, b"reply").await);
        let (len, _) = a.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"reply");
        assert_eq!(b.stats().datagrams_rx, 1);
        assert_eq!(b.stats().datagrams_tx, 1);
    }

    #[tokio::test]
    async fn dual_stack_socket_talks_to_ipv4_peers_and_reports_ipv4_senders() {
        let v4 = Transport::bind(&loopback_config(Vec::new())).unwrap();
        let peer = StaticPeer {
            address: v4.local_addr(),
            node_id: Some(NodeId::from_index(9)),
        };
        let config = TransportConfig {
            listen: "[::]:0".parse().unwrap(),
            interfaces: Vec::new(),
            static_peers: vec![peer],
        };
        let mut dual = Transport::bind(&config).unwrap();
        assert_eq!(
            dual.address_of(&NodeId::from_index(9)),
            Some(v4.local_addr()),
            "pinned id seeds the book"
        );

        assert!(dual.send_to_neighbour(&NodeId::from_index(9), b"x").await);
        let mut buf = [0u8; RECV_BUFFER_BYTES];
        let (_, from) = v4.recv(&mut buf).await.unwrap();
        assert!(
            from.ip().is_loopback() && from.is_ipv4(),
            "v4 peer sees a v4 sender: {from}"
        );

        let v4_sender = Transport::bind(&loopback_config(vec![StaticPeer {
            address: SocketAddr::from(([127, 0, 0, 1], dual.local_addr().port())),
            node_id: None,
        }]))
        .unwrap();
        let mut v4_sender = v4_sender;
        assert_eq!(v4_sender.send_discovery(b"y").await, 1);
        let (_, from) = dual.recv(&mut buf).await.unwrap();
        assert_eq!(
            from,
            v4_sender.local_addr(),
            "mapped address is reported as IPv4"
        );
    }

    #[test]
    fn unknown_interface_and_family_mismatches_are_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let config = TransportConfig {
            listen: "[::1]:0".parse().unwrap(),
            interfaces: vec!["no-such-if0".to_string()],
            static_peers: Vec::new(),
        };
        assert!(
            matches!(Transport::bind(&config), Err(TransportError::UnknownInterface { name }) if name == "no-such-if0")
        );

        let config = TransportConfig {
            interfaces: vec!["lo".to_string()],
            ..loopback_config(Vec::new())
        };
        assert!(matches!(
            Transport::bind(&config),
            Err(TransportError::MulticastNeedsIpv6 { .. })
        ));

        let v6_peer = StaticPeer {
            address: "[::1]:7400".parse().unwrap(),
            node_id: None,
        };
        assert!(matches!(
            Transport::bind(&loopback_config(vec![v6_peer])),
            Err(TransportError::PeerFamily { .. })
        ));
    }

    #[test]
    fn canonical_unmaps_ipv4_only() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.1:9".parse().unwrap());
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
