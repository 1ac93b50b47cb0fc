//! Property tests of the CRDT laws: merge is commutative, associative and idempotent for every
//! type, and any delivery order of the deltas, with duplicates, converges to the same state.

use crdt::{HlcClock, LwwMap, LwwRegister, OrSet, PnCounter};
use proptest::prelude::*;
use wire::NodeId;

const NODES: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    MapInsert(u8, u8),
    MapRemove(u8),
    SetAdd(u8),
    SetRemove(u8),
    Count(i8),
    Register(u8),
    /// Merge everything node `.0` has produced so far (creates causal order between writes).
    Sync(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, any::<u8>()).prop_map(|(k, v)| Op::MapInsert(k, v)),
        (0u8..4).prop_map(Op::MapRemove),
        (0u8..4).prop_map(Op::SetAdd),
        (0u8..4).prop_map(Op::SetRemove),
        any::<i8>().prop_map(Op::Count),
        any::<u8>().prop_map(Op::Register),
        (0..NODES).prop_map(Op::Sync),
    ]
}

/// One replica of each type, merged together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct State {
    map: LwwMap,
    set: OrSet,
    counter: PnCounter,
    register: LwwRegister,
}

impl State {
    fn merge(&mut self, other: &State) {
        self.map.merge(&other.map).expect("within bounds");
        self.set.merge(&other.set).expect("within bounds");
        self.counter.merge(&other.counter).expect("within bounds");
        self.register.merge(&other.register).expect("within bounds");
    }

    fn joined(&self, other: &State) -> State {
        let mut out = self.clone();
        out.merge(other);
        out
    }
}

/// Runs `ops` (node, op, wall clock offset) and returns every node's final state and every
/// delta produced, in order.
fn run(ops: &[(usize, Op, u16)]) -> (Vec<State>, Vec<State>) {
    let mut clocks: Vec<HlcClock> = (0..NODES)
        .map(|i| HlcClock::new(NodeId::from_index(i as u64 + 1), u64::MAX))
        .collect();
    let mut states = vec![State::default(); NODES];
    let mut deltas: Vec<State> = Vec::new();
    let mut produced: Vec<Vec<usize>> = vec![Vec::new(); NODES];
    for (step, (node, op, skew)) in ops.iter().enumerate() {
        // Clocks of different nodes disagree by up to 65 s and may go backwards.
        let now = 1_000_000 + step as u64 * 10 + u64::from(*skew);
        let clock = &mut clocks[*node];
        let state = &mut states[*node];
        let mut delta = State::default();
        match op {
            Op::MapInsert(k, v) => {
                delta.map = state.map.insert(clock, now, &[*k], &[*v]).expect("fits")
            }
            Op::MapRemove(k) => delta.map = state.map.remove(clock, now, &[*k]).expect("fits"),
            Op::SetAdd(e) => delta.set = state.set.add(clock, now, &[*e]).expect("fits"),
            Op::SetRemove(e) => delta.set = state.set.remove(&[*e]).expect("fits"),
            Op::Count(by) if *by >= 0 => {
                delta.counter = state
                    .counter
                    .increment(clock, now, by.unsigned_abs().into())
                    .expect("fits");
            }
            Op::Count(by) => {
                delta.counter = state
                    .counter
                    .decrement(clock, now, by.unsigned_abs().into())
                    .expect("fits");
            }
            Op::Register(v) => {
                delta.register = state.register.set(clock, now, &[*v]).expect("fits")
            }
            Op::Sync(from) => {
                for index in produced[*from].clone() {
                    let delta = deltas[index].clone();
                    states[*node].merge(&delta);
                    for entry in delta.map.store().entries().map(|(_, e)| e.hlc) {
                        clocks[*node]
                            .observe(entry, u64::MAX / 2)
                            .expect("no drift bound");
                    }
                }
                continue;
            }
        }
        produced[*node].push(deltas.len());
        deltas.push(delta);
    }
    (states, deltas)
}

fn ops() -> impl Strategy<Value = Vec<(usize, Op, u16)>> {
    prop::collection::vec((0..NODES, op(), any::<u16>()), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merge_is_commutative_associative_and_idempotent(ops in ops()) {
        let (states, _) = run(&ops);
        let (a, b, c) = (&states[0], &states[1], &states[2]);
        prop_assert_eq!(a.joined(b), b.joined(a));
        prop_assert_eq!(a.joined(b).joined(c), a.joined(&b.joined(c)));
        prop_assert_eq!(a.joined(a), a.clone());
        let ab = a.joined(b);
        prop_assert_eq!(ab.joined(b), ab.clone());
    }

    #[test]
    fn deltas_are_commutative_associative_and_idempotent(ops in ops(), picks in prop::collection::vec(any::<prop::sample::Index>(), 3)) {
        let (_, deltas) = run(&ops);
        prop_assume!(!deltas.is_empty());
        let pick = |i: usize| deltas[picks[i].index(deltas.len())].clone();
        let (x, y, z) = (pick(0), pick(1), pick(2));
        prop_assert_eq!(x.joined(&y), y.joined(&x));
        prop_assert_eq!(x.joined(&y).joined(&z), x.joined(&y.joined(&z)));
        prop_assert_eq!(x.joined(&x), x.clone());
    }

    #[test]
    fn any_delivery_order_with_duplicates_converges(
        ops in ops(),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..120),
    ) {
        let (states, deltas) = run(&ops);
        let mut everything = State::default();
        for state in &states {
            everything.merge(state);
        }
        // Deliver a random sequence with repeats, then every delta once in reverse so nothing
        // is missing; the result must equal the join of the final states.
        let mut replica = State::default();
        if !deltas.is_empty() {
            for index in &order {
                replica.merge(&deltas[index.index(deltas.len())]);
            }
        }
        for delta in deltas.iter().rev() {
            replica.merge(delta);
        }
        prop_assert_eq!(&replica, &everything);
        for store in [everything.map.store(), everything.counter.store(), everything.register.store()] {
            let keys: Vec<&[u8]> = store.entries().map(|(_, entry)| entry.key.as_slice()).collect();
            let distinct: std::collections::BTreeSet<&[u8]> = keys.iter().copied().collect();
            prop_assert_eq!(keys.len(), distinct.len(), "last-writer-wins keeps one entry per key");
        }
        // Every node's own view never exceeds the join.
        for state in &states {
            prop_assert_eq!(everything.joined(state), everything.clone());
        }
    }
}

#[test]
fn a_write_after_a_merge_wins_even_from_a_clock_five_seconds_behind() {
    let mut fast = HlcClock::new(NodeId::from_index(1), 60_000);
    let mut slow = HlcClock::new(NodeId::from_index(2), 60_000);
    let mut a = LwwMap::new();
    let mut b = LwwMap::new();
    let first = a.insert(&mut fast, 100_000, b"k", b"old").expect("fits");
    b.merge(&first).expect("fits");
    // The slow node merged the write but its clock did not see it: the map still makes the
    // later write win.
    let second = b.insert(&mut slow, 95_000, b"k", b"new").expect("fits");
    a.merge(&second).expect("fits");
    assert_eq!(a.get(b"k"), Some(&b"new"[..]));
    assert_eq!(b.get(b"k"), Some(&b"new"[..]));
    assert_eq!(a, b);
}

#[test]
fn add_wins_over_a_concurrent_remove_and_removes_leave_no_entries() {
    let mut c1 = HlcClock::new(NodeId::from_index(1), 60_000);
    let mut c2 = HlcClock::new(NodeId::from_index(2), 60_000);
    let mut a = OrSet::new();
    let mut b = OrSet::new();
    let add = a.add(&mut c1, 1, b"x").expect("fits");
    b.merge(&add).expect("fits");
    let removal = b.remove(b"x").expect("fits");
    let again = a.add(&mut c1, 2, b"x").expect("fits");
    let other = b.add(&mut c2, 3, b"y").expect("fits");
    a.merge(&removal).expect("fits");
    a.merge(&other).expect("fits");
    b.merge(&again).expect("fits");
    assert!(a.contains(b"x") && b.contains(b"x"));
    assert_eq!(a, b);
    let gone = a.remove(b"x").expect("fits");
    b.merge(&gone).expect("fits");
    assert!(!b.contains(b"x"));
    assert_eq!(
        b.store().len(),
        1,
        "only y remains; the removal left nothing behind"
    );
}

#[test]
fn counters_sum_increments_and_decrements_of_every_writer() {
    let mut c1 = HlcClock::new(NodeId::from_index(1), 60_000);
    let mut c2 = HlcClock::new(NodeId::from_index(2), 60_000);
    let mut a = PnCounter::new();
    let mut b = PnCounter::new();
    let d1 = a.increment(&mut c1, 1, 10).expect("fits");
    let d2 = b.decrement(&mut c2, 1, 3).expect("fits");
    let d3 = a.increment(&mut c1, 2, 5).expect("fits");
    b.merge(&d3).expect("fits");
    b.merge(&d1).expect("fits");
    a.merge(&d2).expect("fits");
    assert_eq!(a.value(), 12);
    assert_eq!(b.value(), 12);
}

#[test]
fn oversized_keys_and_values_are_refused_and_change_nothing() {
    let mut clock = HlcClock::new(NodeId::from_index(1), 60_000);
    let mut map = LwwMap::new();
    map.insert(&mut clock, 1, b"k", b"v").expect("fits");
    let before = map.clone();
    let big = vec![0u8; crdt::limits::MAX_VALUE_BYTES + 1];
    let error = map
        .insert(&mut clock, 2, b"k", &big)
        .expect_err("too large");
    assert_eq!(
        error,
        crdt::CrdtError::ValueTooLarge {
            len: crdt::limits::MAX_VALUE_BYTES + 1,
            max: crdt::limits::MAX_VALUE_BYTES
        }
    );
    assert!(
        error
            .to_string()
            .contains("exceeds the limit of 16384 bytes")
    );
    let long_key = vec![0u8; crdt::limits::MAX_KEY_BYTES + 1];
    assert!(matches!(
        map.insert(&mut clock, 3, &long_key, b"v"),
        Err(crdt::CrdtError::KeyTooLarge { .. })
    ));
    assert_eq!(map, before);
}
