//! `Store` falls back to memory on a corrupt file, a read-only directory or file, a newer
//! schema and a full database, names the file in its report, and keeps working.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use heal::{Event, IncidentId, IncidentType};
use knowledge::schema::VERSION;
use knowledge::{DbConfig, IncidentFilter, Store};

use crate::{incident, resolved};

/// Stores one incident through the store and reads it back by heal id.
fn store_and_read(store: &mut Store, id: u64) {
    let open = incident(id, IncidentType::ServiceDown, 0, 1_000);
    store
        .record_event(&Event::IncidentOpened(open.clone()), None, 10)
        .expect("opened");
    store
        .record_event(&Event::IncidentClosed(resolved(open, 2_000)), None, 20)
        .expect("closed");
    let record = store
        .find(IncidentId(id), 30)
        .expect("find")
        .expect("kept in memory");
    assert_eq!(record.mttr_us, Some(2_000_000));
    assert!(
        store
            .recent(&IncidentFilter::default(), 30)
            .expect("recent")
            .iter()
            .any(|r| r.incident_id == id)
    );
}

fn assert_degraded_naming(store: &Store, path: &Path, reason: &str) {
    let degraded = store.degraded().expect("degraded");
    assert!(
        degraded.contains(&path.display().to_string()),
        "does not name the file: {degraded}"
    );
    assert!(
        degraded.contains(reason),
        "does not say `{reason}`: {degraded}"
    );
}

#[test]
fn a_working_file_is_not_degraded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    let mut store = Store::open(&path, DbConfig::default(), 0).expect("open");
    assert_eq!(store.degraded(), None);
    store_and_read(&mut store, 1);
    assert_eq!(store.degraded(), None);
    drop(store);
    let mut again = Store::open(&path, DbConfig::default(), 0).expect("reopen");
    assert_eq!(again.count(0).expect("count"), 1, "written to the file");
}

#[test]
fn a_corrupt_file_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    let garbage = b"this is not an SQLite database, it only sits where one should be".repeat(64);
    fs::write(&path, &garbage).expect("write garbage");
    let mut store = Store::open(&path, DbConfig::default(), 0).expect("falls back");
    assert_degraded_naming(&store, &path, "not a database");
    store_and_read(&mut store, 1);
    assert_eq!(fs::read(&path).expect("read back"), garbage);
}

#[test]
fn a_file_from_a_newer_build_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.pragma_update(None, "user_version", VERSION + 1)
            .expect("future version");
    }
    let mut store = Store::open(&path, DbConfig::default(), 0).expect("falls back");
    assert_degraded_naming(&store, &path, "newer");
    store_and_read(&mut store, 1);
}

/// Makes `path` unwritable even for root (the test machine runs tests as root, for whom
/// permission bits do not count), and undoes it on drop so the temporary directory can go.
struct ReadOnly {
    paths: Vec<PathBuf>,
}

impl ReadOnly {
    fn make(paths: &[&Path]) -> ReadOnly {
        let guard = ReadOnly {
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        };
        for path in paths {
            let mut perms = fs::metadata(path).expect("metadata").permissions();
            perms.set_readonly(true);
            fs::set_permissions(path, perms).expect("chmod");
            if writable(path) {
                let status = Command::new("chattr").arg("+i").arg(path).status();
                assert!(
                    matches!(status, Ok(s) if s.success()),
                    "cannot make {} read-only: {status:?}",
                    path.display()
                );
            }
            assert!(!writable(path), "{} is still writable", path.display());
        }
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = Command::new("chattr").arg("-i").arg(path).status();
            if let Ok(meta) = fs::metadata(path) {
                let mut perms = meta.permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                perms.set_readonly(false);
                let _ = fs::set_permissions(path, perms);
            }
        }
    }
}

/// Whether something can be written at `path` (a new file in a directory, or the file).
fn writable(path: &Path) -> bool {
    if path.is_dir() {
        let probe = path.join("probe");
        let ok = fs::write(&probe, b"x").is_ok();
        let _ = fs::remove_file(&probe);
        ok
    } else {
        fs::OpenOptions::new().append(true).open(path).is_ok()
    }
}

#[test]
fn a_read_only_directory_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    fs::create_dir(&data).expect("data dir");
    let _guard = ReadOnly::make(&[&data]);
    let path = data.join("incidents.db");
    let mut store = Store::open(&path, DbConfig::default(), 0).expect("falls back");
    assert_degraded_naming(&store, &path, "unable to open");
    store_and_read(&mut store, 1);
    assert!(!path.exists());
}

#[test]
fn a_read_only_file_is_reported_at_the_first_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    fs::create_dir(&data).expect("data dir");
    let path = data.join("incidents.db");
    {
        let mut store = Store::open(&path, DbConfig::default(), 0).expect("create");
        store_and_read(&mut store, 1);
    }
    // Fold the write-ahead log into the file so that the file alone holds the data.
    let conn = rusqlite::Connection::open(&path).expect("reopen");
    conn.pragma_update(None, "journal_mode", "DELETE")
        .expect("leave WAL");
    drop(conn);
    let _guard = ReadOnly::make(&[&path, &data]);
    let mut store = Store::open(&path, DbConfig::default(), 0).expect("falls back");
    store_and_read(&mut store, 2);
    assert_degraded_naming(&store, &path, "");
    let degraded = store.degraded().unwrap_or_default().to_lowercase();
    assert!(
        degraded.contains("readonly")
            || degraded.contains("read-only")
            || degraded.contains("unable to open"),
        "{degraded}"
    );
}

#[test]
fn a_full_database_moves_to_memory_and_keeps_the_incident() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    let config = DbConfig {
        retention: 10_000,
        max_size_bytes: Some(knowledge::db::MIN_SIZE_BYTES),
    };
    let mut store = Store::open(&path, config, 0).expect("open");
    assert_eq!(store.degraded(), None);
    // Each incident carries about 4 KB of notes; 64 KB fill up within a few dozen.
    let mut id = 0;
    while store.degraded().is_none() && id < 1_000 {
        id += 1;
        let mut big = incident(id, IncidentType::DiskPressure, 0, 1_000);
        big.notes = (0..16).map(|n| format!("{n:0>256}")).collect();
        store
            .record_event(&Event::IncidentOpened(big), None, id as i64)
            .expect("stored somewhere");
    }
    assert_degraded_naming(&store, &path, "full");
    assert!(
        store.find(IncidentId(id), 0).expect("find").is_some(),
        "the failed write was retried in memory"
    );
    store_and_read(&mut store, id + 1);
}
