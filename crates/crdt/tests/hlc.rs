//! Property tests of the hybrid logical clock: issued timestamps strictly increase whatever the
//! wall clock does, every accepted remote timestamp is exceeded by the next local one, and a
//! remote timestamp beyond the drift bound is refused, counted and changes nothing.

use crdt::{Hlc, HlcClock};
use proptest::prelude::*;
use wire::NodeId;

const DRIFT_MS: u64 = 5_000;

#[derive(Debug, Clone)]
enum Step {
    /// A local event at this wall-clock time.
    Now(u64),
    /// A remote timestamp `ahead` ms past (or before) the local wall clock `wall`.
    Observe { wall: u64, ahead: i64, logical: u32 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..100_000).prop_map(Step::Now),
        (0u64..100_000, -20_000i64..20_000, any::<u32>()).prop_map(|(wall, ahead, logical)| {
            Step::Observe {
                wall,
                ahead,
                logical,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn timestamps_increase_and_skewed_remotes_are_refused(steps in prop::collection::vec(step(), 1..60)) {
        let me = NodeId::from_index(1);
        let mut clock = HlcClock::new(me, DRIFT_MS);
        let mut last_issued: Option<Hlc> = None;
        let mut last_accepted: Option<Hlc> = None;
        let mut refused = 0;
        for step in steps {
            match step {
                Step::Now(wall) => {
                    let issued = clock.now(wall);
                    prop_assert!(last_issued.is_none_or(|previous| issued > previous));
                    prop_assert!(last_accepted.is_none_or(|remote| (issued.physical_ms, issued.logical) > (remote.physical_ms, remote.logical)));
                    prop_assert!(issued.physical_ms >= wall);
                    prop_assert_eq!(issued.node, me);
                    last_issued = Some(issued);
                }
                Step::Observe { wall, ahead, logical } => {
                    let remote = Hlc {
                        physical_ms: wall.saturating_add_signed(ahead),
                        logical,
                        node: NodeId::from_index(2),
                    };
                    let before = clock.last();
                    let result = clock.observe(remote, wall);
                    if remote.physical_ms > wall + DRIFT_MS {
                        prop_assert!(result.is_err());
                        prop_assert_eq!(clock.last(), before);
                        refused += 1;
                    } else {
                        prop_assert!(result.is_ok());
                        prop_assert!(clock.last() >= before);
                        last_accepted = Some(remote);
                    }
                }
            }
        }
        prop_assert_eq!(clock.rejected(), refused);
    }
}
