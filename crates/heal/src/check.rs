//! Health-check declarations (Consul-like: `http`, `tcp` or `args`, with interval, timeout and
//! thresholds) and the state machine that turns the node's check results into passing/critical.
//!
//! The node runs the checks; this module only says what a valid declaration is and when a
//! streak of results changes the status.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, MAX_RUN_SAMPLES};
use crate::time::{Timestamp, duration_text};

/// Longest check or service name; names appear in incidents and metrics labels.
pub const MAX_CHECK_NAME: usize = 64;

/// One check as written in `node.yaml` (`checks:` list). Exactly one of `http`, `tcp`, `args`,
/// `process`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDecl {
    /// Unique name of the check.
    pub name: String,
    /// The supervised service the check watches (what `restart_service` restarts); defaults to
    /// the check's name.
    #[serde(default)]
    pub service: Option<String>,
    /// URL fetched with GET; a 2xx answer passes.
    #[serde(default)]
    pub http: Option<String>,
    /// `host:port` connected to; an accepted connection passes.
    #[serde(default)]
    pub tcp: Option<String>,
    /// Program and arguments run without a shell; exit status 0 passes.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// A supervised service whose process must be running; answered by the node's
    /// supervisor, not by running anything.
    #[serde(default)]
    pub process: Option<String>,
    /// Time between runs.
    #[serde(with = "duration_text", default = "default_interval")]
    pub interval: Duration,
    /// Time after which a run counts as failed.
    #[serde(with = "duration_text", default = "default_timeout")]
    pub timeout: Duration,
    /// Consecutive failures that make the check critical (Consul's
    /// `failures_before_critical`).
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Consecutive passes that make a critical check passing again.
    #[serde(default = "default_success_threshold")]
    pub success_threshold: u32,
    /// Whether the service needs the mesh (e.g. it talks to other nodes); only then can a mesh
    /// fault be named as the root cause of this check failing.
    #[serde(default)]
    pub depends_on_mesh: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_failure_threshold() -> u32 {
    2
}

fn default_success_threshold() -> u32 {
    1
}

/// What a check does, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// GET this URL.
    Http(String),
    /// Connect to this `host:port`.
    Tcp(String),
    /// Run this program with these arguments.
    Exec(Vec<String>),
    /// Whether this supervised service's process runs.
    Process(String),
}

/// A validated check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    /// Unique name of the check.
    pub name: String,
    /// The service it watches.
    pub service: String,
    /// What it runs.
    pub kind: CheckKind,
    /// Time between runs.
    pub interval: Duration,
    /// Time after which a run counts as failed.
    pub timeout: Duration,
    /// Consecutive failures that make it critical.
    pub failure_threshold: u32,
    /// Consecutive passes that make it passing.
    pub success_threshold: u32,
    /// Whether a mesh fault can explain it failing.
    pub depends_on_mesh: bool,
}

impl CheckDecl {
    /// Validates the declaration; `index` is its position in the `checks` list, used in the
    /// field path of errors.
    pub fn validate(&self, index: usize) -> Result<CheckSpec, ConfigError> {
        let field = |name: &str| format!("checks[{index}].{name}");
        valid_name(&self.name).map_err(|r| ConfigError::new(field("name"), r))?;
        let service = self
            .service
            .clone()
            .or_else(|| self.process.clone())
            .unwrap_or_else(|| self.name.clone());
        valid_name(&service).map_err(|r| ConfigError::new(field("service"), r))?;
        let kind = match (&self.http, &self.tcp, &self.args, &self.process) {
            (None, None, None, Some(service)) => {
                valid_name(service).map_err(|r| ConfigError::new(field("process"), r))?;
                CheckKind::Process(service.clone())
            }
            (Some(url), None, None, None) => {
                if url.starts_with("https://") {
                    // The node's checker speaks plain HTTP only; accepting https:// would make
                    // a check that can never pass.
                    return Err(ConfigError::new(
                        field("http"),
                        "https:// is not supported; check the plain-HTTP port, use `tcp: host:port`, or `args: [curl, -fsS, <url>]`",
                    ));
                }
                if !url.starts_with("http://") {
                    return Err(ConfigError::new(field("http"), "must start with http://"));
                }
                CheckKind::Http(url.clone())
            }
            (None, Some(addr), None, None) => {
                let port = addr.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
                if !matches!(port, Some(Ok(p)) if p != 0) {
                    return Err(ConfigError::new(
                        field("tcp"),
                        "must be host:port with a port from 1 to 65535",
                    ));
                }
                CheckKind::Tcp(addr.clone())
            }
            (None, None, Some(args), None) => {
                if args.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(ConfigError::new(field("args"), "must name a program first"));
                }
                CheckKind::Exec(args.clone())
            }
            _ => {
                return Err(ConfigError::new(
                    field("http"),
                    "exactly one of `http`, `tcp`, `args` or `process` must be given",
                ));
            }
        };
        if self.timeout > self.interval {
            return Err(ConfigError::new(
                field("timeout"),
                "must not be longer than `interval`",
            ));
        }
        for (name, value) in [
            ("failure_threshold", self.failure_threshold),
            ("success_threshold", self.success_threshold),
        ] {
            if value == 0 || value > MAX_RUN_SAMPLES {
                return Err(ConfigError::new(
                    field(name),
                    format!("must be from 1 to {MAX_RUN_SAMPLES}"),
                ));
            }
        }
        Ok(CheckSpec {
            name: self.name.clone(),
            service,
            kind,
            interval: self.interval,
            timeout: self.timeout,
            failure_threshold: self.failure_threshold,
            success_threshold: self.success_threshold,
            depends_on_mesh: self.depends_on_mesh,
        })
    }
}

/// Validates a whole `checks` list, also refusing duplicate names.
pub fn validate_checks(decls: &[CheckDecl]) -> Result<Vec<CheckSpec>, ConfigError> {
    let mut specs: Vec<CheckSpec> = Vec::with_capacity(decls.len());
    for (index, decl) in decls.iter().enumerate() {
        let spec = decl.validate(index)?;
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(ConfigError::new(
                format!("checks[{index}].name"),
                "duplicates an earlier check",
            ));
        }
        specs.push(spec);
    }
    Ok(specs)
}

fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CHECK_NAME {
        return Err(format!("must be 1 to {MAX_CHECK_NAME} characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("may contain only letters, digits, `-`, `_` and `.`".to_string());
    }
    Ok(())
}

/// Status of a check as seen by the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// No result yet; counts as neither healthy nor failing.
    Unknown,
    /// The last `success_threshold` results passed (or it never reached critical).
    Passing,
    /// The last `failure_threshold` results failed.
    Critical,
}

/// Result streaks of one check. Thresholds make a single failed run harmless, as in Consul.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckState {
    /// Current status.
    pub status: CheckStatus,
    /// Failures in a row (capped at the threshold's ceiling).
    pub failures: u32,
    /// Passes in a row (capped likewise).
    pub passes: u32,
    /// When the current failure streak started: the first symptom of a SERVICE_DOWN.
    pub failing_since: Option<Timestamp>,
}

impl Default for CheckState {
    fn default() -> Self {
        CheckState {
            status: CheckStatus::Unknown,
            failures: 0,
            passes: 0,
            failing_since: None,
        }
    }
}

impl CheckState {
    /// Feeds one result; returns the new status when it changed.
    pub fn record(
        &mut self,
        spec: &CheckSpec,
        passed: bool,
        now: Timestamp,
    ) -> Option<CheckStatus> {
        let before = self.status;
        if passed {
            self.failures = 0;
            self.passes = (self.passes + 1).min(MAX_RUN_SAMPLES);
            if self.status != CheckStatus::Critical || self.passes >= spec.success_threshold {
                self.status = CheckStatus::Passing;
                self.failing_since = None;
            }
        } else {
            self.passes = 0;
            self.failures = (self.failures + 1).min(MAX_RUN_SAMPLES);
            self.failing_since.get_or_insert(now);
            if self.failures >= spec.failure_threshold {
                self.status = CheckStatus::Critical;
            }
        }
        (self.status != before).then_some(self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(yaml: &str) -> CheckDecl {
        serde_saphyr::from_str(yaml).expect("test declaration parses")
    }

    #[test]
    fn declarations_validate_with_field_names() {
        let ok = decl("name: web\nhttp: http://127.0.0.1:8080/health\ninterval: 2s\ntimeout: 1s\n");
        let spec = ok.validate(0).expect("valid");
        assert_eq!(spec.service, "web");
        assert_eq!(
            spec.kind,
            CheckKind::Http("http://127.0.0.1:8080/health".into())
        );
        let both = decl("name: web\nhttp: http://x/\ntcp: x:1\n");
        assert_eq!(
            both.validate(3).map_err(|e| e.field),
            Err("checks[3].http".into())
        );
        let tls = decl("name: web\nhttp: https://127.0.0.1/health\n");
        assert_eq!(
            tls.validate(2).map_err(|e| e.field),
            Err("checks[2].http".into())
        );
        let port = decl("name: db\ntcp: localhost:0\n");
        assert_eq!(
            port.validate(0).map_err(|e| e.field),
            Err("checks[0].tcp".into())
        );
        let slow = decl("name: job\nargs: [true]\ninterval: 1s\ntimeout: 2s\n");
        assert_eq!(
            slow.validate(1).map_err(|e| e.field),
            Err("checks[1].timeout".into())
        );
        let dup = validate_checks(&[ok.clone(), ok]);
        assert_eq!(dup.map_err(|e| e.field), Err("checks[1].name".into()));
    }

    #[test]
    fn thresholds_turn_streaks_into_status() {
        let spec =
            decl("name: web\ntcp: 127.0.0.1:80\nfailure_threshold: 3\nsuccess_threshold: 2\n")
                .validate(0)
                .expect("valid");
        let mut state = CheckState::default();
        assert_eq!(
            state.record(&spec, true, Timestamp(1)),
            Some(CheckStatus::Passing)
        );
        assert_eq!(state.record(&spec, false, Timestamp(2)), None);
        assert_eq!(state.record(&spec, false, Timestamp(3)), None);
        assert_eq!(
            state.record(&spec, false, Timestamp(4)),
            Some(CheckStatus::Critical)
        );
        assert_eq!(state.failing_since, Some(Timestamp(2)));
        assert_eq!(state.record(&spec, true, Timestamp(5)), None);
        assert_eq!(
            state.record(&spec, true, Timestamp(6)),
            Some(CheckStatus::Passing)
        );
        assert_eq!(state.failing_since, None);
    }
}
