//! The CRDT replica end to end with real daemons on loopback: node records, a CA-signed link
//! policy and its change, and a revocation reach every node of a ring; a forged revocation
//! carried by a compromised node (planted in its stored replica) is dropped and counted by its
//! neighbours, removed again, and revokes nobody.

use std::time::{Duration, Instant};

use cli::localnet::{LocalNet, LocalNetOptions, TRUST_DOMAIN};
use node::CrdtView;
use wire::NodeId;

use crate::support::{binary, eventually, run, stderr, write};

const TIMEOUT: Duration = Duration::from_secs(30);

fn crdt(net: &LocalNet, position: usize) -> Option<CrdtView> {
    net.node(position).client.crdt().ok()
}

fn digest(view: &CrdtView, collection: &str) -> Option<(String, usize)> {
    view.collections
        .iter()
        .find(|c| c.name == collection)
        .map(|c| (c.digest.clone(), c.entries))
}

/// The (digest, entries) of `collection` if every node in `positions` holds the same one.
fn agreed(net: &LocalNet, positions: &[usize], collection: &str) -> Option<(String, usize)> {
    let views: Vec<CrdtView> = positions
        .iter()
        .map(|&p| crdt(net, p))
        .collect::<Option<_>>()?;
    let first = digest(&views[0], collection)?;
    views
        .iter()
        .all(|view| digest(view, collection).as_ref() == Some(&first))
        .then_some(first)
}

fn counter(net: &LocalNet, position: usize, name: &str) -> u64 {
    net.node(position)
        .client
        .status()
        .ok()
        .and_then(|status| status.links.get(name).copied())
        .unwrap_or(0)
}

fn ring(count: usize) -> Vec<(usize, usize)> {
    (0..count).map(|i| (i, (i + 1) % count)).collect()
}

fn started_with_policy(count: usize) -> LocalNet {
    let options = LocalNetOptions {
        extra_yaml: "  security:\n    policy_file: policy.yaml\n".to_string(),
        ..LocalNetOptions::default()
    };
    let mut net = LocalNet::create(&binary(), count, &ring(count), &options).unwrap();
    for node in net.nodes() {
        write(&node.dir, "policy.yaml", "default: allow\n");
    }
    net.start_all().unwrap();
    net.wait_healthy(TIMEOUT, &|| false).unwrap();
    net.wait_converged(TIMEOUT, &|| false).unwrap();
    net
}

#[test]
fn records_a_policy_change_and_a_revocation_reach_every_node_of_a_ring() {
    let net = started_with_policy(5);
    let all: Vec<usize> = (0..5).collect();
    let (_, records) = eventually("every node to hold every record", TIMEOUT, || {
        agreed(&net, &all, "directory").filter(|(_, entries)| *entries == 5)
    });
    assert_eq!(records, 5);
    let (first_policy, _) = eventually("every node to hold the CA's policy", TIMEOUT, || {
        agreed(&net, &all, "policies").filter(|(_, entries)| *entries == 1)
    });
    // The CA node (the first) signs a changed policy file; it must reach every node.
    let changed = format!(
        "default: allow\nrules:\n  - deny: \"spiffe://{TRUST_DOMAIN}/node/ffffffffffffffff*\"\n"
    );
    let changed_at = Instant::now();
    write(&net.node(0).dir, "policy.yaml", &changed);
    eventually("every node to apply the changed policy", TIMEOUT, || {
        let (policy, _) = agreed(&net, &all, "policies")?;
        (policy != first_policy && all.iter().all(|&p| counter(&net, p, "policy_updates") >= 2))
            .then_some(())
    });
    eprintln!(
        "policy change applied on 5 nodes after {:?}",
        changed_at.elapsed()
    );
    // Every neighbour reports being in sync once the rounds settle.
    eventually("every neighbour in sync", TIMEOUT, || {
        all.iter()
            .all(|&p| crdt(&net, p).is_some_and(|view| view.peers.iter().all(|peer| peer.in_sync)))
            .then_some(())
    });
    // `ctl crdt status` shows the same: three collections, both ring neighbours in sync.
    let api = net.node(1).api_url();
    let output = run(&["ctl", "crdt", "status", "--api", &api]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "directory",
        "revocations",
        "policies",
        "peers in sync: 2 of 2",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let output = run(&["ctl", "crdt", "status", "--json", "--api", &api]);
    let view: CrdtView = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(view.node_id, net.node(1).id);
    assert_eq!(
        digest(&view, "policies").map(|(d, _)| d),
        agreed(&net, &all, "policies").map(|(d, _)| d)
    );
    // A revocation issued at the CA crosses the ring through the replica.
    let victim = net.node(2).id;
    let config = net.node(0).config_path.display().to_string();
    let revoked_at = Instant::now();
    let output = run(&["ca", "revoke", "--config", &config, &victim.to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let others = [0, 1, 3, 4];
    eventually("every other node to hold the revocation", TIMEOUT, || {
        agreed(&net, &others, "revocations")
            .filter(|(_, entries)| *entries == 1)
            .filter(|_| {
                others.iter().all(|&p| {
                    net.node(p)
                        .client
                        .identity()
                        .is_ok_and(|identity| identity.revoked_nodes == 1)
                })
            })
    });
    eprintln!(
        "revocation held by the 4 other nodes after {:?}",
        revoked_at.elapsed()
    );
    for &p in &others {
        assert_eq!(counter(&net, p, "crdt_refused_revocations"), 0);
        assert_eq!(counter(&net, p, "crdt_refused_records"), 0);
    }
}

/// A revocation in the right format with a signature the CA never made.
fn forged_revocation(victim: NodeId) -> Vec<u8> {
    let mut bytes = vec![identity::record::RECORD_VERSION];
    bytes.extend_from_slice(&victim.0);
    bytes.extend_from_slice(&1_700_000_000i64.to_be_bytes());
    bytes.resize(identity::record::REVOCATION_BYTES, 0x5a);
    bytes
}

#[test]
fn a_forged_revocation_from_a_compromised_node_is_dropped_counted_and_revokes_nobody() {
    let mut net = started_with_policy(4);
    let all: Vec<usize> = (0..4).collect();
    eventually("every node to hold every record", TIMEOUT, || {
        agreed(&net, &all, "directory").filter(|(_, entries)| *entries == 4)
    });
    // Node 4 is compromised: its stored replica gains a revocation of node 2 that no CA
    // signed, written under its own name as any member may carry a revocation.
    let liar = 3;
    net.kill(liar).unwrap();
    let path = net.node(liar).dir.join("data").join("crdt.snapshot");
    let bytes = std::fs::read(&path).unwrap();
    let config = node::replication::replica_config(net.node(liar).id);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut replica = crdt::Replica::restore(config, &bytes, now_ms).unwrap();
    let victim = net.node(1).id;
    replica
        .map_insert("revocations", &victim.0, &forged_revocation(victim), now_ms)
        .unwrap();
    std::fs::write(&path, replica.snapshot()).unwrap();
    net.start(liar).unwrap();
    net.wait_healthy(TIMEOUT, &|| false).unwrap();
    // Whichever neighbour hears the forgery first refuses it; the others may learn only that
    // the event exists (its dot), from that neighbour, and so never see the forged value.
    eventually(
        "a neighbour of the liar to refuse the forgery",
        TIMEOUT,
        || {
            [0, 2]
                .iter()
                .any(|&p| {
                    counter(&net, p, "crdt_refused_revocations") >= 1
                        && counter(&net, p, "crdt_dropped_invalid_entries") >= 1
                })
                .then_some(())
        },
    );
    // The forgery is removed again (its dot counts as seen), so all replicas agree on an
    // empty revocation set, and node 2 stays a member everywhere.
    eventually("the revocation sets to agree and be empty", TIMEOUT, || {
        agreed(&net, &all, "revocations").filter(|(_, entries)| *entries == 0)
    });
    for &p in &all {
        let identity = net.node(p).client.identity().unwrap();
        assert_eq!(identity.revoked_nodes, 0, "node {} revoked someone", p + 1);
    }
    for p in [0, 1, 2] {
        assert_eq!(counter(&net, p, "crdt_refused_records"), 0);
    }
    let peers = net.node(0).client.peers().unwrap();
    assert!(
        peers.iter().any(|peer| peer.id == victim && peer.alive),
        "the falsely accused node keeps its link"
    );
}
