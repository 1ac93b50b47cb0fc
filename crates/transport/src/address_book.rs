//! `AddressBook`: the bounded map from a neighbour's node id to the address it was last heard
//! from.

use std::collections::HashMap;
use std::net::SocketAddr;

use wire::NodeId;

/// Most entries the address book holds. The router keeps at most `max_neighbours` (<= 1024)
/// neighbours, so 4096 leaves room for neighbours that come and go, while a flood of packets
/// with made-up node ids cannot make the book grow without limit.
pub const MAX_ADDRESS_BOOK_ENTRIES: usize = 4096;

/// Where each neighbour was last heard from. When full, the entry used least recently is
/// replaced; "recently" is a use counter, not a clock, so the transport stays clock-free.
#[derive(Debug, Clone)]
pub struct AddressBook {
    entries: HashMap<NodeId, Entry>,
    capacity: usize,
    uses: u64,
    evictions: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    address: SocketAddr,
    last_use: u64,
}

impl AddressBook {
    /// An empty book holding at most `capacity` entries (at least one).
    pub fn with_capacity(capacity: usize) -> AddressBook {
        AddressBook {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            uses: 0,
            evictions: 0,
        }
    }

    /// Records that `id` was heard from `address`, replacing what was known.
    pub fn learn(&mut self, id: NodeId, address: SocketAddr) {
        self.uses += 1;
        let last_use = self.uses;
        if let Some(entry) = self.entries.get_mut(&id) {
            *entry = Entry { address, last_use };
            return;
        }
        if self.entries.len() >= self.capacity {
            self.evict_least_recently_used();
        }
        self.entries.insert(id, Entry { address, last_use });
        debug_assert!(self.entries.len() <= self.capacity);
    }

    /// The address `id` was last heard from, if known.
    pub fn address_of(&self, id: &NodeId) -> Option<SocketAddr> {
        self.entries.get(id).map(|entry| entry.address)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no address is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries were replaced because the book was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    fn evict_least_recently_used(&mut self) {
        // A linear scan is fine: eviction only happens when the book is full, which needs more
        // distinct senders than any real neighbourhood has.
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_use)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.entries.remove(&id);
            self.evictions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn learning_again_replaces_the_address() {
        let mut book = AddressBook::with_capacity(4);
        let id = NodeId::from_index(1);
        assert_eq!(book.address_of(&id), None);
        book.learn(id, addr(1000));
        book.learn(id, addr(2000));
        assert_eq!(book.address_of(&id), Some(addr(2000)));
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn full_book_evicts_the_least_recently_learned() {
        let mut book = AddressBook::with_capacity(2);
        book.learn(NodeId::from_index(1), addr(1));
        book.learn(NodeId::from_index(2), addr(2));
        // Node 1 is heard again, so node 2 is now the least recently used.
        book.learn(NodeId::from_index(1), addr(11));
        book.learn(NodeId::from_index(3), addr(3));
        assert_eq!(book.len(), 2);
        assert_eq!(book.evictions(), 1);
        assert_eq!(book.address_of(&NodeId::from_index(1)), Some(addr(11)));
        assert_eq!(book.address_of(&NodeId::from_index(2)), None);
        assert_eq!(book.address_of(&NodeId::from_index(3)), Some(addr(3)));
    }

    #[test]
    fn capacity_is_never_exceeded() {
        let mut book = AddressBook::with_capacity(8);
        for index in 0..100 {
            book.learn(NodeId::from_index(index), addr(index as u16));
            assert!(book.len() <= 8);
        }
        assert_eq!(book.evictions(), 92);
    }
}
