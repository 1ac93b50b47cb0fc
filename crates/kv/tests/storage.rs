//! Storage tests: openraft's own storage suite against the redb store, plus corruption detection.

use std::io::Write;

use kv::TypeConfig;
use kv::store::{LogStore, OpenError, StateMachine, Store};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tokio::sync::broadcast;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<kv::NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("fresh store opens");
        let (events, _) = broadcast::channel(16);
        Ok((
            dir,
            LogStore::new(store.clone()),
            StateMachine::new(store, events),
        ))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    if let Err(e) = Suite::test_all(RedbBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}

#[test]
fn corrupted_files_are_refused_at_open() {
    for file in ["log.redb", "state.redb"] {
        corrupted_file_is_refused(file);
    }
}

fn corrupted_file_is_refused(name: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(Store::open(dir.path()).expect("fresh store opens"));
    let path = dir.path().join(name);
    let len = std::fs::metadata(&path).expect("file exists").len();
    assert!(len > 4096, "store file unexpectedly small: {len}");
    // Overwrite the header region, where redb keeps its magic number and root pointers.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open for write");
    file.write_all(&[0xAB; 512]).expect("overwrite");
    drop(file);
    match Store::open(dir.path()) {
        Err(OpenError::Corrupted { path: bad, reason }) => {
            assert!(bad.ends_with(name), "{bad}");
            assert!(!reason.is_empty());
        }
        other => panic!("corrupted file must be refused, got {other:?}"),
    }
}

#[test]
fn garbage_file_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft.redb");
    std::fs::write(&path, vec![0x5A; 64 * 1024]).expect("write garbage");
    assert!(matches!(
        Store::open(&path),
        Err(OpenError::Corrupted { .. })
    ));
}
