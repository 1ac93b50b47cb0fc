//! A full disk under the key-value store, with real daemons: each voter's store directory is
//! a small tmpfs (root only; skipped with a message otherwise), filled on purpose. Writes must
//! fail with a clear, retryable error (no hang, no crash), the nodes keep running, and once
//! space is freed the stopped replicas reopen their stores on their own: writes work again
//! without a restart, and every acknowledged write is still there (then and after a restart).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cli::client::{ApiClient, ClientError};
use cli::localnet::{LocalNet, LocalNetOptions};

use crate::support::{binary, eventually};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Size of each store's filesystem: room for the empty store files and a few hundred writes.
const TMPFS_SIZE: &str = "6m";

/// Puts tried after the disk is full before giving up on seeing one fail.
const MAX_PUTS_WHEN_FULL: usize = 400;

/// Stops the nodes, then unmounts the stores' filesystems, however the test ends.
struct Rig {
    net: LocalNet,
    mounts: Vec<PathBuf>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.net.stop_all();
        for mount in &self.mounts {
            let unmounted = Command::new("umount")
                .arg(mount)
                .status()
                .is_ok_and(|status| status.success());
            if !unmounted {
                // Busy (a process still holds a file): detach now, freed when it lets go.
                let _ = Command::new("umount").arg("-l").arg(mount).status();
            }
        }
    }
}

fn mount_tmpfs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs on {}", dir.display());
}

/// Writes a ballast file until the filesystem is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                assert_eq!(
                    error.raw_os_error(),
                    Some(libc::ENOSPC),
                    "filling stops at ENOSPC: {error}"
                );
                break;
            }
        }
    }
    // Smaller pieces take the last partial blocks too.
    while file.write(&[0u8; 512]).is_ok_and(|written| written > 0) {}
    path
}

fn client(net: &LocalNet, position: usize) -> ApiClient {
    ApiClient::new(&net.node(position).api_url(), Duration::from_secs(15)).unwrap()
}

fn put_until_ok(net: &LocalNet, key: &str, value: &[u8]) {
    eventually(&format!("put {key}"), TIMEOUT, || {
        match client(net, 0).kv_put(key, value, "") {
            Ok(_) => Some(()),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                None
            }
        }
    });
}

#[test]
fn a_full_disk_fails_writes_clearly_heals_without_a_restart_and_loses_nothing() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small filesystem needs root");
        return;
    }
    let edges = [(0, 1), (1, 2), (2, 0)];
    let net = LocalNet::create(&binary(), 3, &edges, &LocalNetOptions::default()).unwrap();
    net.enable_kv(&[0, 1, 2], "").unwrap();
    let mut rig = Rig {
        net,
        mounts: Vec::new(),
    };
    for position in 0..3 {
        let store = rig.net.node(position).dir.join("data").join("kv");
        mount_tmpfs(&store);
        rig.mounts.push(store);
    }
    rig.net.start_all().unwrap();
    rig.net.wait_healthy(TIMEOUT, &|| false).unwrap();

    let value = |index: usize| format!("value {index} ").repeat(200).into_bytes();
    let mut acknowledged: Vec<(String, Vec<u8>)> = Vec::new();
    for index in 0..20 {
        let key = format!("before/{index:03}");
        put_until_ok(&rig.net, &key, &value(index));
        acknowledged.push((key, value(index)));
    }

    let ballast: Vec<PathBuf> = rig.mounts.iter().map(|mount| fill(mount)).collect();

    // Writes go on until the stores run out of their free pages, then fail clearly.
    let mut failure = None;
    for index in 0..MAX_PUTS_WHEN_FULL {
        let key = format!("full/{index:03}");
        match client(&rig.net, index % 3).kv_put(&key, &value(index), "") {
            Ok(_) => acknowledged.push((key, value(index))),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let failure = failure.expect("a write fails once the disks are full");
    eprintln!("write on a full disk: {failure}");
    match &failure {
        ClientError::Status {
            status, message, ..
        } => {
            assert!(
                [503, 504, 507].contains(status),
                "a retryable status, not {status}: {failure}"
            );
            assert!(!message.is_empty(), "the answer says why: {failure}");
        }
        other => panic!("an HTTP error answer, not a hang or a dropped connection: {other}"),
    }
    // Later writes fail the same way, promptly, and the nodes keep running and answering.
    for index in 0..3 {
        let error = client(&rig.net, index)
            .kv_put(&format!("still-full/{index}"), b"x", "")
            .expect_err("no write succeeds while every disk is full");
        assert!(
            matches!(error, ClientError::Status { status, .. } if [503, 504, 507].contains(&status)),
            "{error}"
        );
    }
    rig.net.check_running().unwrap();
    for position in 0..3 {
        assert!(
            rig.net.node(position).client.healthy(),
            "node {} answers",
            position + 1
        );
    }

    // Space freed: the replicas Raft stopped reopen their stores on their own and writes
    // work again without restarting any node.
    for path in &ballast {
        std::fs::remove_file(path).unwrap();
    }
    put_until_ok(&rig.net, "after/space-freed", b"works again");
    acknowledged.push(("after/space-freed".to_string(), b"works again".to_vec()));
    let restarts: Vec<u64> = (0..3)
        .map(|position| {
            client(&rig.net, position)
                .raft_status()
                .unwrap()
                .replica_restarts
        })
        .collect();
    eprintln!("replica restarts per node after the disks filled: {restarts:?}");
    assert!(
        restarts.iter().any(|&count| count > 0),
        "a replica stopped by the full disk was reopened: {restarts:?}"
    );
    // Every replica serves again: each one's own copy (a stale read answered locally) has
    // the write made after the disks were freed.
    for position in 0..3 {
        eventually(
            &format!("node {} replica serving", position + 1),
            TIMEOUT,
            || match client(&rig.net, position).kv_get("after/space-freed", true) {
                Ok(Some((value, _))) if value == b"works again" => Some(()),
                _ => None,
            },
        );
    }
    rig.net.check_running().unwrap();
    assert_all_there(&rig.net, &acknowledged);

    // And everything acknowledged survives a restart of every node.
    for position in 0..3 {
        rig.net.kill(position).unwrap();
    }
    rig.net.start_all().unwrap();
    rig.net.wait_healthy(TIMEOUT, &|| false).unwrap();
    put_until_ok(&rig.net, "after/restart", b"works after a restart");
    assert_all_there(&rig.net, &acknowledged);
    eprintln!(
        "{} acknowledged writes ({} after the disks filled) read back after self-healing and a restart",
        acknowledged.len(),
        acknowledged.len() - 20
    );
}

fn assert_all_there(net: &LocalNet, acknowledged: &[(String, Vec<u8>)]) {
    for (key, expected) in acknowledged {
        let stored = eventually(&format!("read {key}"), TIMEOUT, || {
            client(net, 1).kv_get(key, false).ok()
        });
        let (stored, _) = stored.unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(&stored, expected, "{key}");
    }
}
