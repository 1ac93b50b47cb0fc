//! `IncidentDb` on real files: migrations from empty and from the previous version, the
//! incident lifecycle, runs, retention, plan statistics and queries.

use heal::incident::PlanChoice;
use heal::{Event, IncidentId, IncidentType, Knowledge, PlanOutcome, PlanStats, Severity};
use knowledge::schema::{self, VERSION};
use knowledge::{DbConfig, IncidentDb, IncidentFilter, KnowledgeError, RecordState};
use rusqlite::Connection;

use crate::{incident, resolved};

fn config(retention: usize) -> DbConfig {
    DbConfig {
        retention,
        max_size_bytes: None,
    }
}

fn names(conn: &Connection, kind: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = ?1 ORDER BY name")
        .expect("prepare");
    stmt.query_map([kind], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn an_empty_file_is_migrated_to_the_current_version_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    let db = IncidentDb::open(&path, DbConfig::default(), 1_000).expect("open");
    assert_eq!(db.count().expect("count"), 0);
    drop(db);
    let conn = Connection::open(&path).expect("reopen");
    assert_eq!(schema::version(&conn, &path).expect("version"), VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let tables = names(&conn, "table");
    for table in ["incidents", "plan_stats", "runs"] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }
    assert!(names(&conn, "index").contains(&"incidents_by_kind".to_string()));
}

#[test]
fn a_file_at_the_previous_version_is_migrated_and_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    {
        let mut conn = Connection::open(&path).expect("create");
        schema::migrate_to(&mut conn, &path, VERSION - 1).expect("old schema");
        assert_eq!(schema::version(&conn, &path).expect("version"), VERSION - 1);
        assert!(!names(&conn, "index").contains(&"incidents_by_kind".to_string()));
        conn.execute_batch(
            "INSERT INTO runs (id, started_wall_ms) VALUES (1, 10);
             INSERT INTO incidents (run_id, incident_id, node, kind, severity, state, closed,
                 confidence, root_cause, first_symptom_us, detected_us, resolved_us, mttd_us,
                 mttr_us, opened_wall_ms, updated_wall_ms, closed_wall_ms, incident_json)
             VALUES (1, 1, 'n', 'DISK_PRESSURE', 'MEDIUM', 'resolved', 1, 0.5, '\"routes\"',
                 0, 2000000, 5000000, 2000000, 5000000, 10, 20, 20, '{}');",
        )
        .expect("old row");
    }
    let db = IncidentDb::open(&path, DbConfig::default(), 30).expect("migrate");
    let rows = db.recent(&IncidentFilter::default()).expect("recent");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].kind, IncidentType::DiskPressure);
    assert_eq!(rows[0].mttr_us, Some(5_000_000));
    drop(db);
    let conn = Connection::open(&path).expect("reopen");
    assert_eq!(schema::version(&conn, &path).expect("version"), VERSION);
    assert!(names(&conn, "index").contains(&"incidents_by_kind".to_string()));
}

#[test]
fn a_file_from_a_newer_build_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    {
        let conn = Connection::open(&path).expect("create");
        conn.pragma_update(None, "user_version", VERSION + 1)
            .expect("future version");
    }
    let err = IncidentDb::open(&path, DbConfig::default(), 0).expect_err("newer schema");
    assert!(matches!(err, KnowledgeError::NewerSchema { found, .. } if found == VERSION + 1));
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn an_incident_is_stored_through_its_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    let mut db = IncidentDb::open(&path, DbConfig::default(), 1_000).expect("open");
    let open = incident(1, IncidentType::ServiceDown, 10_000, 10_600);
    let metrics = serde_json::json!({"cpu_percent": 12.5, "memory_percent": 40.0});
    db.record_event(&Event::IncidentOpened(open.clone()), Some(&metrics), 1_100)
        .expect("opened");
    db.record_event(
        &Event::IncidentUpdated {
            id: IncidentId(1),
            severity: Severity::Critical,
            confidence: 0.9,
        },
        None,
        1_200,
    )
    .expect("updated");
    let mid = db.find(IncidentId(1)).expect("find").expect("stored");
    assert_eq!(mid.severity, "CRITICAL");
    assert_eq!(mid.incident["severity"], "CRITICAL");
    assert_eq!(mid.state, RecordState::Open);
    assert_eq!(mid.metrics.as_ref(), Some(&metrics));
    db.record_event(
        &Event::PlanChosen {
            incident: IncidentId(1),
            choice: PlanChoice {
                plan: "restart".to_string(),
                reason: "only candidate".to_string(),
            },
        },
        None,
        1_300,
    )
    .expect("plan chosen");
    db.record_event(
        &Event::PlanFinished {
            incident: IncidentId(1),
            kind: IncidentType::ServiceDown,
            plan: "restart".to_string(),
            outcome: PlanOutcome::Succeeded,
        },
        None,
        1_400,
    )
    .expect("plan finished");
    let closed = resolved(open, 11_500);
    db.record_event(&Event::IncidentClosed(closed), None, 1_500)
        .expect("closed");

    let record = db.find(IncidentId(1)).expect("find").expect("stored");
    assert_eq!(db.get(record.record_id).expect("get"), Some(record.clone()));
    assert_eq!(record.kind, IncidentType::ServiceDown);
    assert_eq!(record.state, RecordState::Resolved);
    assert_eq!(record.plan.as_deref(), Some("restart"));
    assert_eq!(record.success, Some(true));
    assert_eq!(record.mttd_us, 600_000);
    assert_eq!(record.mttr_us, Some(1_500_000));
    assert_eq!(record.opened_wall_ms, 1_100);
    assert_eq!(record.closed_wall_ms, Some(1_500));
    assert_eq!(record.duration_ms, Some(400));
    assert_eq!(
        record.metrics.as_ref(),
        Some(&metrics),
        "kept from the open event"
    );
    assert_eq!(record.root_cause["service"]["check"], "web");
    assert_eq!(record.incident["steps"][0]["outcome"], "succeeded");
    assert_eq!(
        record.incident["steps"][0]["action"]["action"],
        "restart_service"
    );
    assert_eq!(db.count().expect("count"), 1, "upserts do not duplicate");
}

#[test]
fn incidents_left_open_by_a_run_are_interrupted_and_runs_do_not_collide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    let mut first = IncidentDb::open(&path, DbConfig::default(), 1_000).expect("open");
    first
        .upsert_incident(
            &incident(1, IncidentType::CpuOverload, 0, 1_000),
            None,
            1_000,
        )
        .expect("open incident");
    let first_run = first.run_id();
    drop(first);

    let mut second = IncidentDb::open(&path, DbConfig::default(), 5_000).expect("reopen");
    assert_ne!(second.run_id(), first_run);
    let old = second
        .recent(&IncidentFilter::default())
        .expect("recent")
        .pop()
        .expect("kept");
    assert_eq!(old.state, RecordState::Interrupted);
    assert_eq!(old.closed_wall_ms, Some(5_000));
    assert_eq!(
        second.find(IncidentId(1)).expect("find"),
        None,
        "ids are per run"
    );
    second
        .upsert_incident(
            &incident(1, IncidentType::MemoryPressure, 0, 500),
            None,
            6_000,
        )
        .expect("same heal id, new run");
    assert_eq!(second.count().expect("count"), 2);
}

#[test]
fn retention_deletes_the_oldest_closed_incidents_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    let mut db = IncidentDb::open(&path, config(5), 0).expect("open");
    // Two open incidents first: older than every closed one, yet never deleted.
    for id in 1..=2 {
        db.upsert_incident(&incident(id, IncidentType::LinkDegraded, 0, 10), None, 0)
            .expect("open");
    }
    for id in 3..=10 {
        let closed = resolved(incident(id, IncidentType::ServiceDown, 0, 10), 20);
        db.upsert_incident(&closed, None, id as i64)
            .expect("closed");
    }
    assert_eq!(db.count().expect("count"), 5);
    let mut kept: Vec<u64> = db
        .recent(&IncidentFilter::default())
        .expect("recent")
        .iter()
        .map(|r| r.incident_id)
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, vec![1, 2, 8, 9, 10]);
}

#[test]
fn plan_statistics_follow_heals_rule_and_load_into_knowledge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.db");
    let mut db = IncidentDb::open(&path, DbConfig::default(), 0).expect("open");
    let mut expected = Knowledge::default();
    let outcomes = [
        PlanOutcome::Succeeded,
        PlanOutcome::StepFailed,
        PlanOutcome::Succeeded,
        PlanOutcome::VerificationFailed,
        PlanOutcome::Rejected,
        PlanOutcome::Expired,
        PlanOutcome::Blocked,
    ];
    for (i, outcome) in outcomes.into_iter().enumerate() {
        db.record_event(
            &Event::PlanFinished {
                incident: IncidentId(i as u64),
                kind: IncidentType::ServiceDown,
                plan: "restart".to_string(),
                outcome: outcome.clone(),
            },
            None,
            i as i64,
        )
        .expect("finished");
        if matches!(
            outcome,
            PlanOutcome::Succeeded | PlanOutcome::StepFailed | PlanOutcome::VerificationFailed
        ) {
            expected.record(
                IncidentType::ServiceDown,
                "restart",
                outcome == PlanOutcome::Succeeded,
            );
        }
    }
    db.record_plan_result(IncidentType::NodeFailure, "isolate", false, 9)
        .expect("direct");
    expected.record(IncidentType::NodeFailure, "isolate", false);
    drop(db);

    let db = IncidentDb::open(&path, DbConfig::default(), 10).expect("reopen");
    let mut loaded = Knowledge::default();
    assert_eq!(db.load_knowledge(&mut loaded).expect("load"), 2);
    assert_eq!(loaded, expected);
    assert_eq!(
        loaded.get(IncidentType::ServiceDown, "restart"),
        PlanStats {
            successes: 2,
            failures: 2
        }
    );
}

#[test]
fn queries_filter_limit_and_aggregate_per_type() {
    let mut db = IncidentDb::open_in_memory(DbConfig::default(), 0).expect("memory");
    // Service incidents: detected after 1 s and 3 s, repaired after 2 s and 6 s.
    for (id, first, detected, repaired) in [(1, 0, 1_000, 2_000), (2, 10_000, 13_000, 16_000)] {
        let done = resolved(
            incident(id, IncidentType::ServiceDown, first, detected),
            repaired,
        );
        db.upsert_incident(&done, None, id as i64).expect("service");
    }
    db.upsert_incident(&incident(3, IncidentType::DiskPressure, 0, 4_000), None, 3)
        .expect("disk");

    let all = db.recent(&IncidentFilter::default()).expect("all");
    let ids: Vec<u64> = all.iter().map(|r| r.incident_id).collect();
    assert_eq!(ids, vec![3, 2, 1], "newest first");
    let services = IncidentFilter {
        kind: Some(IncidentType::ServiceDown),
        limit: 1,
        ..IncidentFilter::default()
    };
    let ids: Vec<u64> = db
        .recent(&services)
        .expect("by kind")
        .iter()
        .map(|r| r.incident_id)
        .collect();
    assert_eq!(ids, vec![2]);
    let open = IncidentFilter {
        state: Some(RecordState::Open),
        ..IncidentFilter::default()
    };
    let ids: Vec<u64> = db
        .recent(&open)
        .expect("by state")
        .iter()
        .map(|r| r.incident_id)
        .collect();
    assert_eq!(ids, vec![3]);

    let times = db.repair_times().expect("aggregates");
    assert_eq!(times.len(), 2);
    let disk = times
        .iter()
        .find(|t| t.kind == IncidentType::DiskPressure)
        .expect("disk");
    assert_eq!((disk.incidents, disk.resolved), (1, 0));
    assert_eq!(disk.mttd_ms_mean, 4_000.0);
    assert_eq!(disk.mttr_ms_mean, None);
    let service = times
        .iter()
        .find(|t| t.kind == IncidentType::ServiceDown)
        .expect("service");
    assert_eq!((service.incidents, service.resolved), (2, 2));
    assert_eq!(service.mttd_ms_mean, 2_000.0);
    assert_eq!(service.mttd_ms_max, 3_000.0);
    assert_eq!(service.mttr_ms_mean, Some(4_000.0));
    assert_eq!(service.mttr_ms_max, Some(6_000.0));
}

#[test]
fn settings_out_of_range_are_refused_by_field() {
    for (bad, field) in [
        (config(0), "retention"),
        (config(knowledge::db::MAX_RETENTION + 1), "retention"),
        (
            DbConfig {
                retention: 10,
                max_size_bytes: Some(1024),
            },
            "max_size_bytes",
        ),
    ] {
        let err = IncidentDb::open_in_memory(bad, 0).expect_err("refused");
        assert!(
            matches!(&err, KnowledgeError::Config { field: f, .. } if *f == field),
            "{err}"
        );
    }
    assert!(DbConfig::default().validate().is_ok());
    assert_eq!(DbConfig::default().retention, 1_000);
}

#[test]
fn plan_statistics_stay_within_what_heal_can_load() {
    let mut db = IncidentDb::open_in_memory(DbConfig::default(), 0).expect("memory");
    let max = heal::plan::MAX_KNOWLEDGE_ENTRIES;
    for i in 0..=max {
        db.record_plan_result(
            IncidentType::ServiceDown,
            &format!("plan-{i}"),
            true,
            i as i64,
        )
        .expect("recorded");
    }
    let stats = db.plan_stats().expect("stats");
    assert_eq!(stats.len(), max);
    assert!(
        !stats.iter().any(|(_, plan, _)| plan == "plan-0"),
        "the least recently updated pair makes room"
    );
    assert!(
        stats
            .iter()
            .any(|(_, plan, _)| *plan == format!("plan-{max}"))
    );
    let mut knowledge = Knowledge::default();
    assert_eq!(db.load_knowledge(&mut knowledge).expect("load"), max);
}
