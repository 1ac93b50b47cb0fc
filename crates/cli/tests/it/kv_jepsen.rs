//! Jepsen-style runs of the key-value store over real daemons: two fixed seeds, each with six
//! concurrent HTTP clients against three voters while the nemesis kills, restarts and (as root,
//! with namespaces) partitions nodes. The history must be linearizable and no acknowledged
//! write may be lost. Longer campaigns: `cargo run --release -p cli --example kv_jepsen`.

use std::time::Duration;

use cli::kv_jepsen::{JepsenOptions, run_seed};

use crate::support::binary;

#[test]
fn fixed_seeds_stay_linearizable_and_lose_no_acknowledged_write() {
    for seed in [1, 2] {
        let options = JepsenOptions {
            seed,
            duration: Duration::from_secs(8),
            ..JepsenOptions::default()
        };
        let report =
            run_seed(&binary(), &options).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        eprintln!("{}", report.summary());
        for fault in &report.faults {
            eprintln!("  {fault}");
        }
        if let Some(reason) = &report.partitions_skipped {
            eprintln!("partitions skipped: {reason}");
        }
        for line in &report.evidence {
            eprintln!("  {line}");
        }
        assert!(report.linearizable, "seed {seed}: {}", report.verdict);
        assert!(
            report.lost.is_empty(),
            "seed {seed}: lost {:?}",
            report.lost
        );
        assert!(
            report.acknowledged_writes > 0 && report.reads > 0,
            "seed {seed}: the clients got answers: {}",
            report.summary()
        );
        assert!(!report.faults.is_empty(), "seed {seed}: the nemesis acted");
    }
}
