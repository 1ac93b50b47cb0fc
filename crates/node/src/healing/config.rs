//! The healing loop's part of `node.yaml`: `mapk` (loop settings, thresholds, playbook
//! directories, incident database), `services` (supervised processes) and `checks` (health
//! checks), validated into a [`HealingConfig`]; and loading user playbooks with errors that
//! name the file, the line and the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use heal::config::{DetectorConfig, ExecutionConfig, NeighbourhoodConfig};
use heal::{CheckDecl, CheckSpec, HealConfig, PlaybookError, PlaybookSet, Thresholds};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::supervisor::{RestartPolicy, ServiceDecl};

/// Longest user playbook directory listing read; more files than this are a mistake.
pub const MAX_PLAYBOOK_FILES: usize = heal::playbook::MAX_PLAYBOOKS;
/// Longest hop count a neighbour report travels; a node failure is judged by the failed
/// node's neighbours, which in a ring of 6 are 4 hops apart once it is gone.
pub const MAX_REPORT_HOPS: u8 = 8;

/// `node_config.mapk` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapkSection {
    /// Run the healing loop at all. Default: true.
    pub enabled: bool,
    /// Node metrics (CPU, memory, disk) and counters period. Default: `1s`.
    #[serde(with = "duration_text")]
    pub cycle_interval: Duration,
    /// Mesh metrics period (neighbours, links, routes) and neighbour reports. Default:
    /// `200ms`, so that a dead neighbour is an incident within a second.
    #[serde(with = "duration_text")]
    pub mesh_interval: Duration,
    /// Static thresholds (see `heal::Thresholds`).
    pub thresholds: Thresholds,
    /// Adaptive detectors and hysteresis.
    pub detector: DetectorConfig,
    /// Neighbourhood detector.
    pub neighbourhood: NeighbourhoodConfig,
    /// Circuit breaker, blast radius, approvals, verification.
    pub execution: ExecutionConfig,
    /// Seed of plan choice. Default: 0.
    pub seed: u64,
    /// Directories of user playbooks (`*.yaml`); a user playbook with a default's id replaces
    /// it. Relative to the directory of node.yaml. Default: none.
    pub playbook_dirs: Vec<String>,
    /// Incident database, relative to `identity.data_dir`. Default: `incidents.db`.
    pub incidents_db: String,
    /// Incidents kept in the database. Default: 1000 (as the seeds say).
    pub retention: usize,
    /// Largest database file, bytes; none by default (retention bounds it).
    pub max_db_bytes: Option<u64>,
    /// How long a vanished neighbour still counts as a lost link before it is forgotten.
    /// Default: `30s`.
    #[serde(with = "duration_text")]
    pub peer_purge_after: Duration,
    /// Hops a neighbour report travels (1 = direct neighbours only). Default: 4.
    pub report_hops: u8,
    /// Directory whose subdirectories `clear_cache` may empty, relative to
    /// `identity.data_dir`. Default: `cache`.
    pub cache_root: String,
}

impl Default for MapkSection {
    fn default() -> Self {
        let heal = HealConfig::default();
        MapkSection {
            enabled: true,
            cycle_interval: heal.cycle_interval,
            mesh_interval: Duration::from_millis(200),
            thresholds: heal.thresholds,
            detector: heal.detector,
            neighbourhood: heal.neighbourhood,
            execution: heal.execution,
            seed: heal.seed,
            playbook_dirs: Vec::new(),
            incidents_db: "incidents.db".to_string(),
            retention: knowledge::db::DEFAULT_RETENTION,
            max_db_bytes: None,
            peer_purge_after: Duration::from_secs(30),
            report_hops: 4,
            cache_root: "cache".to_string(),
        }
    }
}

/// Serde adapter for heal's duration syntax (`"200ms"`, `"1s"`).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        heal::time::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// A check as written, with where it starts in node.yaml.
pub type CheckEntry = Spanned<CheckDecl>;

/// The healing loop's validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HealingConfig {
    /// Whether the loop runs.
    pub enabled: bool,
    /// The pure loop's settings.
    pub heal: HealConfig,
    /// Mesh metrics period.
    pub mesh_interval: Duration,
    /// User playbook directories, resolved.
    pub playbook_dirs: Vec<PathBuf>,
    /// Incident database file, resolved.
    pub incidents_db: PathBuf,
    /// Database settings.
    pub db: knowledge::DbConfig,
    /// See [`MapkSection::peer_purge_after`].
    pub peer_purge_after: Duration,
    /// See [`MapkSection::report_hops`].
    pub report_hops: u8,
    /// Cache root, resolved.
    pub cache_root: PathBuf,
    /// Supervised services.
    pub services: Vec<ServiceDecl>,
    /// Health checks: the declared ones, plus a process check for every service that only
    /// the healing loop restarts and that no check watches.
    pub checks: Vec<CheckSpec>,
}

impl Default for HealingConfig {
    fn default() -> Self {
        HealingConfig {
            enabled: true,
            heal: HealConfig::default(),
            mesh_interval: Duration::from_millis(200),
            playbook_dirs: Vec::new(),
            incidents_db: PathBuf::from("incidents.db"),
            db: knowledge::DbConfig::default(),
            peer_purge_after: Duration::from_secs(30),
            report_hops: 4,
            cache_root: PathBuf::from("cache"),
            services: Vec::new(),
            checks: Vec::new(),
        }
    }
}

/// A refused setting: dotted field path under `node_config`, the line when known, the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// e.g. `node_config.checks[1].http`.
    pub field: String,
    /// Line in node.yaml.
    pub line: Option<u64>,
    /// Why.
    pub reason: String,
}

fn field_error(
    field: impl Into<String>,
    line: Option<u64>,
    reason: impl Into<String>,
) -> FieldError {
    FieldError {
        field: field.into(),
        line,
        reason: reason.into(),
    }
}

impl HealingConfig {
    /// Validates the three sections; `base` is node.yaml's directory, `data_dir` the resolved
    /// data directory.
    pub fn validate(
        mapk: MapkSection,
        services: Vec<ServiceDecl>,
        checks: Vec<CheckEntry>,
        base: &Path,
        data_dir: &Path,
    ) -> Result<HealingConfig, FieldError> {
        let heal = HealConfig {
            cycle_interval: mapk.cycle_interval,
            thresholds: mapk.thresholds,
            detector: mapk.detector,
            neighbourhood: mapk.neighbourhood,
            execution: mapk.execution,
            seed: mapk.seed,
        };
        heal.validate()
            .map_err(|e| field_error(format!("node_config.{}", e.field), None, e.reason))?;
        if mapk.mesh_interval > mapk.cycle_interval {
            return Err(field_error(
                "node_config.mapk.mesh_interval",
                None,
                "must not be longer than `cycle_interval`",
            ));
        }
        if mapk.report_hops == 0 || mapk.report_hops > MAX_REPORT_HOPS {
            return Err(field_error(
                "node_config.mapk.report_hops",
                None,
                format!("must be from 1 to {MAX_REPORT_HOPS}"),
            ));
        }
        let db = knowledge::DbConfig {
            retention: mapk.retention,
            max_size_bytes: mapk.max_db_bytes,
        };
        db.validate().map_err(|e| match e {
            knowledge::KnowledgeError::Config { field, reason } => {
                let name = if field == "max_size_bytes" {
                    "max_db_bytes"
                } else {
                    field
                };
                field_error(format!("node_config.mapk.{name}"), None, reason)
            }
            other => field_error("node_config.mapk", None, other.to_string()),
        })?;
        for (field, text) in [
            ("incidents_db", &mapk.incidents_db),
            ("cache_root", &mapk.cache_root),
        ] {
            if text.trim().is_empty() {
                return Err(field_error(
                    format!("node_config.mapk.{field}"),
                    None,
                    "must not be empty",
                ));
            }
        }
        crate::supervisor::validate_services(&services)
            .map_err(|e| field_error(format!("node_config.{}", e.field), None, e.reason))?;
        let lines: Vec<u64> = checks.iter().map(|c| c.referenced.line()).collect();
        let decls: Vec<CheckDecl> = checks.into_iter().map(|c| c.value).collect();
        let mut specs = heal::validate_checks(&decls).map_err(|e| {
            let line = check_index(&e.field).and_then(|i| lines.get(i).copied());
            field_error(format!("node_config.{}", e.field), line, e.reason)
        })?;
        for (index, spec) in specs.iter().enumerate() {
            if let heal::CheckKind::Process(name) = &spec.kind
                && !services.iter().any(|s| s.name == *name)
            {
                return Err(field_error(
                    format!("node_config.checks[{index}].process"),
                    lines.get(index).copied(),
                    "names no supervised service",
                ));
            }
        }
        for service in &services {
            let watched = specs.iter().any(|c| c.service == service.name);
            if service.restart.policy == RestartPolicy::Healer && !watched {
                if specs.len() >= heal::healer::MAX_CHECKS {
                    return Err(field_error(
                        "node_config.checks",
                        None,
                        format!("more than {} checks", heal::healer::MAX_CHECKS),
                    ));
                }
                specs.push(process_check(&service.name, mapk.mesh_interval));
            }
        }
        Ok(HealingConfig {
            enabled: mapk.enabled,
            heal,
            mesh_interval: mapk.mesh_interval,
            playbook_dirs: mapk.playbook_dirs.iter().map(|d| base.join(d)).collect(),
            incidents_db: data_dir.join(&mapk.incidents_db),
            db,
            peer_purge_after: mapk.peer_purge_after,
            report_hops: mapk.report_hops,
            cache_root: data_dir.join(&mapk.cache_root),
            services,
            checks: specs,
        })
    }

    /// The shipped playbooks plus every `*.yaml` in the playbook directories, in name order.
    /// The first bad file stops the load: the error names the file, the line and the reason.
    pub fn load_playbooks(&self) -> Result<PlaybookSet, PlaybookError> {
        let mut set = PlaybookSet::defaults()?;
        for dir in &self.playbook_dirs {
            let fail = |reason: String| PlaybookError {
                source_name: dir.display().to_string(),
                line: None,
                field: "playbook_dirs".to_string(),
                reason,
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| fail(format!("cannot read the directory: {e}")))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .take(MAX_PLAYBOOK_FILES + 1)
                .collect();
            if files.len() > MAX_PLAYBOOK_FILES {
                return Err(fail(format!(
                    "more than {MAX_PLAYBOOK_FILES} playbook files"
                )));
            }
            files.sort();
            for file in files {
                let name = file.display().to_string();
                let meta = std::fs::metadata(&file).map_err(|e| PlaybookError {
                    source_name: name.clone(),
                    line: None,
                    field: String::new(),
                    reason: e.to_string(),
                })?;
                if meta.len() > heal::playbook::MAX_PLAYBOOK_BYTES as u64 {
                    return Err(PlaybookError {
                        source_name: name,
                        line: None,
                        field: String::new(),
                        reason: format!("larger than {} bytes", heal::playbook::MAX_PLAYBOOK_BYTES),
                    });
                }
                let text = std::fs::read_to_string(&file).map_err(|e| PlaybookError {
                    source_name: name.clone(),
                    line: None,
                    field: String::new(),
                    reason: e.to_string(),
                })?;
                set.add_text(&text, &name)?;
            }
        }
        Ok(set)
    }
}

/// The implicit check of a service that only the healing loop restarts: its process runs.
/// Checked every mesh period and critical at the first failure, since a process that exited
/// is not a flaky measurement.
pub fn process_check(service: &str, interval: Duration) -> CheckSpec {
    CheckSpec {
        name: service.to_string(),
        service: service.to_string(),
        kind: heal::CheckKind::Process(service.to_string()),
        interval,
        timeout: interval,
        failure_threshold: 1,
        success_threshold: 1,
        depends_on_mesh: false,
    }
}

/// The index in a `checks[3].field` path.
fn check_index(field: &str) -> Option<usize> {
    field
        .strip_prefix("checks[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(index, _)| index.parse().ok())
}
