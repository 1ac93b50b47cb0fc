//! Test support: nodes with real key sets, a directory of their verified identities, and an
//! in-memory network that carries every `poll_transmit` datagram to its destination.

use std::collections::HashMap;
use std::sync::Arc;

use identity::KeySet;
use session::sessions::SessionInfo;
use session::{
    Dropped, Incoming, Outgoing, PeerIdentity, SeededRng, SessionConfig, Sessions, Transmit,
};
use wire::NodeId;

/// One node: its keys and its session table.
pub struct Node {
    pub keys: Arc<KeySet>,
    pub id: NodeId,
    pub sessions: Sessions,
}

impl Node {
    pub fn new(seed: u64, config: SessionConfig) -> Node {
        let keys = Arc::new(KeySet::generate().expect("key generation works"));
        let sessions = Sessions::new(config, Arc::clone(&keys), SeededRng::new(seed))
            .expect("test configs are valid");
        Node {
            id: keys.node_id(),
            keys,
            sessions,
        }
    }

    pub fn identity(&self) -> PeerIdentity {
        PeerIdentity::from(self.keys.public())
    }

    pub fn drain(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.sessions.poll_transmit()).collect()
    }

    /// Encrypts and expects a sealed packet (a session exists).
    pub fn seal(&mut self, peer: NodeId, plaintext: &[u8], now: u64) -> Vec<u8> {
        match self.sessions.encrypt(peer, plaintext, now) {
            Ok(Outgoing::Sealed(bytes)) => bytes,
            other => panic!("expected a sealed packet, got {other:?}"),
        }
    }
}

/// What `handle_incoming` returned.
pub type Accepted = Result<Incoming, Dropped>;

pub type Directory = HashMap<NodeId, PeerIdentity>;

pub fn directory(nodes: &[&Node]) -> Directory {
    nodes.iter().map(|n| (n.id, n.identity())).collect()
}

/// Two nodes and the directory that knows both.
pub struct Pair {
    pub a: Node,
    pub b: Node,
    pub dir: Directory,
}

impl Pair {
    pub fn new(config: SessionConfig) -> Pair {
        let a = Node::new(1, config.clone());
        let b = Node::new(2, config);
        let dir = directory(&[&a, &b]);
        Pair { a, b, dir }
    }

    /// Carries datagrams both ways until neither side has anything to send; returns what
    /// each side accepted (a's, b's).
    pub fn pump(&mut self, now: u64) -> (Vec<Accepted>, Vec<Accepted>) {
        let (mut at_a, mut at_b) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            let from_a = self.a.drain();
            let from_b = self.b.drain();
            if from_a.is_empty() && from_b.is_empty() {
                return (at_a, at_b);
            }
            for t in from_a {
                assert_eq!(t.to, self.b.id);
                at_b.push(
                    self.b
                        .sessions
                        .handle_incoming(&self.dir, self.a.id, &t.bytes, now),
                );
            }
            for t in from_b {
                assert_eq!(t.to, self.a.id);
                at_a.push(
                    self.a
                        .sessions
                        .handle_incoming(&self.dir, self.b.id, &t.bytes, now),
                );
            }
        }
        panic!("the two nodes never went quiet");
    }

    /// Both sides' current sessions, checked to be the same session (each side's index is the
    /// other's remote index).
    pub fn agreed_session(&self) -> (SessionInfo, SessionInfo) {
        let a = self
            .a
            .sessions
            .session(&self.b.id)
            .expect("a has a session");
        let b = self
            .b
            .sessions
            .session(&self.a.id)
            .expect("b has a session");
        assert_eq!(
            (a.local_index, a.remote_index),
            (b.remote_index, b.local_index)
        );
        (a, b)
    }

    /// Establishes a session initiated by `a` and returns b's and a's accepted payloads.
    pub fn establish(&mut self, now: u64) {
        assert_eq!(
            self.a.sessions.encrypt(self.b.id, b"hello", now),
            Ok(Outgoing::Queued)
        );
        let (_, at_b) = self.pump(now);
        assert!(at_b.contains(&Ok(Incoming::Data {
            peer: self.a.id,
            plaintext: b"hello".to_vec()
        })));
        assert!(self.a.sessions.session(&self.b.id).is_some());
        assert!(self.b.sessions.session(&self.a.id).is_some());
    }
}

/// Accepted payloads of one side, in order.
pub fn payloads(results: &[Result<Incoming, Dropped>]) -> Vec<Vec<u8>> {
    results
        .iter()
        .filter_map(|r| match r {
            Ok(Incoming::Data { plaintext, .. }) => Some(plaintext.clone()),
            _ => None,
        })
        .collect()
}

pub const SECOND: u64 = 1_000_000;
/// A wall-clock-like start time (Unix microseconds).
pub const T0: u64 = 1_790_000_000 * SECOND;
