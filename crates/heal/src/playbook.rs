//! Recovery playbooks: the seeds' `recovery_plan` YAML shape parsed from strings into typed
//! steps and actions, with errors that name the field; the shipped defaults; user overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use wire::NodeId;

use crate::config::ThresholdName;
use crate::incident::IncidentType;
use crate::time::parse_duration;

/// Most steps in one playbook; a longer runbook is several incidents' worth of work and would
/// hold the executor (and the blast-radius budget) for too long.
pub const MAX_STEPS: usize = 16;
/// Most playbooks loaded at once (defaults plus user files); bounds the planner's candidate
/// scan and the knowledge table.
pub const MAX_PLAYBOOKS: usize = 256;
/// Largest playbook text accepted; a runbook of 16 steps fits in a few kilobytes.
pub const MAX_PLAYBOOK_BYTES: usize = 64 * 1024;
/// Longest step timeout: an action that has not answered in 10 minutes is not coming back.
pub const MAX_STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// Step timeout when the playbook gives none.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Placeholder for the incident's service (from the failing check's `service`).
pub const SERVICE_PLACEHOLDER: &str = "$service";
/// Placeholder for the suspected peer (the failed node, or the far end of a degraded link).
pub const PEER_PLACEHOLDER: &str = "$peer";

/// Why a playbook text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{}: {field}: {reason}", line.map_or_else(String::new, |l| l.to_string()))]
pub struct PlaybookError {
    /// Where the text came from (a file name, or `default:<name>`).
    pub source_name: String,
    /// Line of the text the error is about: the syntax error's, or the offending step's
    /// `action` line (none for whole-file errors).
    pub line: Option<u64>,
    /// Dotted path of the offending field, e.g. `recovery_plan.steps[1].timeout`.
    pub field: String,
    /// Why, with the line and column for syntax errors.
    pub reason: String,
}

/// A playbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Playbook {
    /// Unique id; a user playbook with a default's id replaces it.
    pub id: String,
    /// The incident type it treats.
    pub incident_type: IncidentType,
    /// What it does, for operators.
    pub description: String,
    /// Whether it must wait for an approval when the incident is CRITICAL.
    pub needs_approval: bool,
    /// How long after the last step the symptoms may take to clear (overrides the config).
    pub verify_timeout: Option<Duration>,
    /// Steps in order.
    pub steps: Vec<Step>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// What to do.
    pub action: Action,
    /// How long the executor may take to report.
    pub timeout: Duration,
    /// If set, wait this long after the action for the symptoms to clear; if they do, the plan
    /// has succeeded and later steps are skipped (an escalation ladder).
    pub verify: Option<Duration>,
    /// What undoes this step if the plan fails later.
    pub rollback: Option<Action>,
    /// When the step runs at all.
    pub condition: Condition,
}

/// When a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Always.
    Always,
    /// Only if this node has no neighbour (the seeds' `if_isolated`).
    IfIsolated,
    /// Only if this node has at least one neighbour.
    IfNotIsolated,
    /// Only if the incident's symptoms are still active when the step is reached.
    IfSymptomPersists,
}

/// A peer an action targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRef {
    /// The incident's suspect (`$peer`); resolved when the plan starts.
    Suspect,
    /// A fixed node.
    Id(NodeId),
}

/// An action the node executes. Emitted actions have every placeholder resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Restart a supervised service.
    RestartService {
        /// Service name (`$service` for the incident's).
        service: String,
    },
    /// Run a program without a shell.
    RunCommand {
        /// Program.
        command: String,
        /// Arguments.
        args: Vec<String>,
    },
    /// Stop routing through a peer, or lift that (`release`).
    IsolatePeer {
        /// The peer.
        peer: PeerRef,
        /// Lift a previous isolation instead (the rollback of an isolation).
        release: bool,
    },
    /// Add a routing penalty to a peer's links; penalty 0 lifts it.
    DeprefPeer {
        /// The peer.
        peer: PeerRef,
        /// Added link cost, in the routing metric's units.
        penalty: u32,
    },
    /// Change a static threshold.
    AdjustThreshold {
        /// Which.
        threshold: ThresholdName,
        /// New value.
        value: f64,
    },
    /// Send an incident message to the neighbours.
    NotifyNeighbours {
        /// Text carried with the incident summary.
        message: String,
    },
    /// Empty a named cache directory under the node's cache root (names, not paths, so a
    /// playbook cannot point the node at arbitrary directories).
    ClearCache {
        /// Cache name (`$service` for the incident's service).
        cache: String,
    },
}

impl Action {
    /// The YAML name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            Action::RestartService { .. } => "restart_service",
            Action::RunCommand { .. } => "run_command",
            Action::IsolatePeer { .. } => "isolate_peer",
            Action::DeprefPeer { .. } => "depref_peer",
            Action::AdjustThreshold { .. } => "adjust_threshold",
            Action::NotifyNeighbours { .. } => "notify_neighbours",
            Action::ClearCache { .. } => "clear_cache",
        }
    }

    /// The peer this action affects, once resolved.
    pub fn target_peer(&self) -> Option<NodeId> {
        match self {
            Action::IsolatePeer {
                peer: PeerRef::Id(p),
                ..
            }
            | Action::DeprefPeer {
                peer: PeerRef::Id(p),
                ..
            } => Some(*p),
            _ => None,
        }
    }

    /// Replaces placeholders with the incident's subject; `Err` names the missing one.
    pub fn resolve(
        &self,
        service: Option<&str>,
        peer: Option<NodeId>,
    ) -> Result<Action, &'static str> {
        let service_of = |text: &String| -> Result<String, &'static str> {
            if text.contains(SERVICE_PLACEHOLDER) {
                let name = service.ok_or(SERVICE_PLACEHOLDER)?;
                Ok(text.replace(SERVICE_PLACEHOLDER, name))
            } else {
                Ok(text.clone())
            }
        };
        let peer_of = |r: &PeerRef| match r {
            PeerRef::Suspect => peer.map(PeerRef::Id).ok_or(PEER_PLACEHOLDER),
            PeerRef::Id(id) => Ok(PeerRef::Id(*id)),
        };
        Ok(match self {
            Action::RestartService { service } => Action::RestartService {
                service: service_of(service)?,
            },
            Action::ClearCache { cache } => Action::ClearCache {
                cache: service_of(cache)?,
            },
            Action::IsolatePeer { peer, release } => Action::IsolatePeer {
                peer: peer_of(peer)?,
                release: *release,
            },
            Action::DeprefPeer { peer, penalty } => Action::DeprefPeer {
                peer: peer_of(peer)?,
                penalty: *penalty,
            },
            other => other.clone(),
        })
    }
}

/// A parameter value as written in YAML.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for Param {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamVisitor;
        impl<'de> Visitor<'de> for ParamVisitor {
            type Value = Param;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Param, E> {
                Ok(Param::Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Param, E> {
                Ok(Param::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Param, E> {
                Ok(Param::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Param, E> {
                i64::try_from(v)
                    .map(Param::Int)
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Param, E> {
                Ok(Param::Float(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Param, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    if items.len() >= MAX_ARGS {
                        return Err(de::Error::custom(format!("more than {MAX_ARGS} items")));
                    }
                    items.push(item);
                }
                Ok(Param::List(items))
            }
        }
        deserializer.deserialize_any(ParamVisitor)
    }
}

/// Most arguments of a `run_command`, as a guard against runaway lists.
const MAX_ARGS: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaybookFile {
    recovery_plan: RawPlan,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    id: String,
    incident_type: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    needs_approval: bool,
    #[serde(default)]
    verify_timeout: Option<String>,
    steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    action: Spanned<String>,
    #[serde(default)]
    params: BTreeMap<String, Param>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    verify: Option<String>,
    #[serde(default)]
    rollback: Option<RawAction>,
    #[serde(default)]
    condition: Option<String>,
}

/// A rollback: either just an action name (the seeds' `rollback: restart_service`) or a
/// mapping with `action` and `params`.
#[derive(Debug)]
struct RawAction {
    action: String,
    params: BTreeMap<String, Param>,
}

impl<'de> Deserialize<'de> for RawAction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            action: String,
            #[serde(default)]
            params: BTreeMap<String, Param>,
        }
        struct RawActionVisitor;
        impl<'de> Visitor<'de> for RawActionVisitor {
            type Value = RawAction;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an action name or a mapping with `action` and `params`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAction, E> {
                Ok(RawAction {
                    action: v.to_string(),
                    params: BTreeMap::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAction, A::Error> {
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawAction {
                    action: full.action,
                    params: full.params,
                })
            }
        }
        deserializer.deserialize_any(RawActionVisitor)
    }
}

/// Parses one playbook file's text. `source_name` only labels errors.
pub fn parse_playbook(text: &str, source_name: &str) -> Result<Playbook, PlaybookError> {
    let err = |field: &str, reason: String, line: Option<u64>| PlaybookError {
        source_name: source_name.to_string(),
        line,
        field: field.to_string(),
        reason,
    };
    if text.len() > MAX_PLAYBOOK_BYTES {
        return Err(err(
            "recovery_plan",
            format!("text longer than {MAX_PLAYBOOK_BYTES} bytes"),
            None,
        ));
    }
    if text.trim().is_empty() {
        return Err(err(
            "recovery_plan",
            "missing (the text must contain a `recovery_plan:` mapping)".into(),
            None,
        ));
    }
    // serde_path_to_error records where deserialization stopped; the path leaves the YAML
    // deserializer's closure through this variable.
    let mut field_path = String::new();
    let parsed: Result<PlaybookFile, serde_saphyr::Error> =
        serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize::<_, PlaybookFile>(de).map_err(|error| {
                field_path = error.path().to_string();
                error.into_inner()
            })
        });
    let file = parsed.map_err(|error| {
        let message = error.without_snippet().to_string();
        let field = if field_path.is_empty() || field_path == "." {
            "recovery_plan".to_string()
        } else {
            field_path.clone()
        };
        err(
            &field,
            message
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            error.location().map(|l| l.line()),
        )
    })?;
    validate_plan(file.recovery_plan).map_err(|(field, reason, line)| err(&field, reason, line))
}

type FieldResult<T> = Result<T, (String, String)>;

fn validate_plan(raw: RawPlan) -> Result<Playbook, (String, String, Option<u64>)> {
    let at = |f: &str| format!("recovery_plan.{f}");
    if raw.id.is_empty()
        || raw.id.len() > 64
        || !raw
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err((
            at("id"),
            "must be 1 to 64 letters, digits, `-`, `_` or `.`".into(),
            None,
        ));
    }
    let incident_type = IncidentType::parse(&raw.incident_type.value).ok_or_else(|| {
        let names: Vec<&str> = IncidentType::ALL.iter().map(|t| t.as_str()).collect();
        (
            at("incident_type"),
            format!(
                "`{}` is not one of {}",
                raw.incident_type.value,
                names.join(", ")
            ),
            Some(raw.incident_type.referenced.line()),
        )
    })?;
    if raw.steps.is_empty() || raw.steps.len() > MAX_STEPS {
        return Err((
            at("steps"),
            format!("must have 1 to {MAX_STEPS} steps"),
            None,
        ));
    }
    let verify_timeout = raw
        .verify_timeout
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|r| (at("verify_timeout"), r, None))?;
    let steps = raw
        .steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let line = s.action.referenced.line();
            validate_step(s, &at(&format!("steps[{i}]"))).map_err(|(f, r)| (f, r, Some(line)))
        })
        .collect::<Result<Vec<Step>, _>>()?;
    Ok(Playbook {
        id: raw.id,
        incident_type,
        description: raw.description,
        needs_approval: raw.needs_approval,
        verify_timeout,
        steps,
    })
}

fn validate_step(raw: RawStep, at: &str) -> FieldResult<Step> {
    let field = |f: &str| format!("{at}.{f}");
    let action = build_action(&raw.action.value, raw.params, at)?;
    let timeout = match raw.timeout.as_deref() {
        None => DEFAULT_STEP_TIMEOUT,
        Some(text) => {
            let t = parse_duration(text).map_err(|r| (field("timeout"), r))?;
            if t > MAX_STEP_TIMEOUT {
                return Err((field("timeout"), "must be at most 10m".into()));
            }
            t
        }
    };
    let verify = raw
        .verify
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|r| (field("verify"), r))?;
    let rollback = raw
        .rollback
        .map(|r| build_action(&r.action, r.params, &field("rollback")))
        .transpose()?;
    let condition = match raw.condition.as_deref() {
        None | Some("always") => Condition::Always,
        Some("if_isolated") => Condition::IfIsolated,
        Some("if_not_isolated") => Condition::IfNotIsolated,
        Some("if_symptom_persists") => Condition::IfSymptomPersists,
        Some(other) => {
            return Err((
                field("condition"),
                format!(
                    "`{other}` is not one of always, if_isolated, if_not_isolated, if_symptom_persists"
                ),
            ));
        }
    };
    Ok(Step {
        action,
        timeout,
        verify,
        rollback,
        condition,
    })
}

/// Typed parameters of one action, taken out of the map one by one so that leftovers are
/// unknown parameters.
struct Params {
    map: BTreeMap<String, Param>,
    at: String,
}

impl Params {
    fn field(&self, name: &str) -> String {
        format!("{}.params.{name}", self.at)
    }

    fn text(&mut self, name: &str, default: Option<&str>) -> FieldResult<String> {
        match self.map.remove(name) {
            Some(Param::Text(t)) if !t.trim().is_empty() => Ok(t),
            Some(_) => Err((self.field(name), "must be a non-empty string".into())),
            None => default
                .map(str::to_string)
                .ok_or_else(|| (self.field(name), "missing".into())),
        }
    }

    fn name(&mut self, name: &str, default: Option<&str>) -> FieldResult<String> {
        let text = self.text(name, default)?;
        let plain = text.strip_prefix('$').map_or(text.as_str(), |_| "");
        let ok = text == SERVICE_PLACEHOLDER
            || (!plain.is_empty()
                && plain.len() <= 64
                && plain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
        if ok {
            Ok(text)
        } else {
            Err((
                self.field(name),
                format!(
                    "must be {SERVICE_PLACEHOLDER} or a name of letters, digits, `-`, `_`, `.`"
                ),
            ))
        }
    }

    fn peer(&mut self) -> FieldResult<PeerRef> {
        let text = self.text("peer", Some(PEER_PLACEHOLDER))?;
        if text == PEER_PLACEHOLDER {
            return Ok(PeerRef::Suspect);
        }
        text.parse().map(PeerRef::Id).map_err(|e| {
            (
                self.field("peer"),
                format!("must be {PEER_PLACEHOLDER} or a node id: {e}"),
            )
        })
    }

    fn number(&mut self, name: &str, default: Option<f64>) -> FieldResult<f64> {
        match self.map.remove(name) {
            Some(Param::Int(i)) => Ok(i as f64),
            Some(Param::Float(f)) if f.is_finite() => Ok(f),
            Some(_) => Err((self.field(name), "must be a number".into())),
            None => default.ok_or_else(|| (self.field(name), "missing".into())),
        }
    }

    fn boolean(&mut self, name: &str) -> FieldResult<bool> {
        match self.map.remove(name) {
            Some(Param::Bool(b)) => Ok(b),
            Some(_) => Err((self.field(name), "must be true or false".into())),
            None => Ok(false),
        }
    }

    fn list(&mut self, name: &str) -> FieldResult<Vec<String>> {
        match self.map.remove(name) {
            Some(Param::List(items)) => Ok(items),
            Some(_) => Err((self.field(name), "must be a list of strings".into())),
            None => Ok(Vec::new()),
        }
    }

    fn finish(self) -> FieldResult<()> {
        match self.map.keys().next() {
            Some(extra) => Err((
                self.field(extra),
                "is not a parameter of this action".into(),
            )),
            None => Ok(()),
        }
    }
}

fn build_action(name: &str, params: BTreeMap<String, Param>, at: &str) -> FieldResult<Action> {
    let mut p = Params {
        map: params,
        at: at.to_string(),
    };
    let action = match name {
        "restart_service" => Action::RestartService {
            service: p.name("service", Some(SERVICE_PLACEHOLDER))?,
        },
        "run_command" => Action::RunCommand {
            command: p.text("command", None)?,
            args: p.list("args")?,
        },
        "isolate_peer" => Action::IsolatePeer {
            peer: p.peer()?,
            release: p.boolean("release")?,
        },
        "depref_peer" => {
            let peer = p.peer()?;
            let penalty = p.number("penalty", Some(1024.0))?;
            if !(0.0..=65_535.0).contains(&penalty) || penalty.fract() != 0.0 {
                return Err((
                    p.field("penalty"),
                    "must be a whole number from 0 to 65535".into(),
                ));
            }
            Action::DeprefPeer {
                peer,
                penalty: penalty as u32,
            }
        }
        "adjust_threshold" => {
            let text = p.text("threshold", None)?;
            let threshold = ThresholdName::parse(&text).ok_or_else(|| {
                (
                    p.field("threshold"),
                    format!("`{text}` is not one of cpu, memory, disk, network_loss, rtt_ms"),
                )
            })?;
            let value = p.number("value", None)?;
            let mut probe = crate::config::Thresholds::default();
            probe
                .set(threshold, value)
                .map_err(|e| (p.field("value"), e.reason))?;
            Action::AdjustThreshold { threshold, value }
        }
        "notify_neighbours" => Action::NotifyNeighbours {
            message: p.text("message", Some("incident"))?,
        },
        "clear_cache" => Action::ClearCache {
            cache: p.name("cache", None)?,
        },
        other => {
            return Err((
                format!("{at}.action"),
                format!(
                    "`{other}` is not one of restart_service, run_command, isolate_peer, depref_peer, adjust_threshold, notify_neighbours, clear_cache"
                ),
            ));
        }
    };
    p.finish()?;
    Ok(action)
}

/// The playbooks shipped in `playbooks/`, compiled in so that a node without files still heals.
pub const DEFAULT_PLAYBOOKS: &[(&str, &str)] = &[
    (
        "service-down-restart.yaml",
        include_str!("../../../playbooks/service-down-restart.yaml"),
    ),
    (
        "service-down-clear-cache.yaml",
        include_str!("../../../playbooks/service-down-clear-cache.yaml"),
    ),
    (
        "node-failure-depref.yaml",
        include_str!("../../../playbooks/node-failure-depref.yaml"),
    ),
    (
        "node-failure-isolate.yaml",
        include_str!("../../../playbooks/node-failure-isolate.yaml"),
    ),
    (
        "link-degraded-depref.yaml",
        include_str!("../../../playbooks/link-degraded-depref.yaml"),
    ),
    (
        "network-partition-notify.yaml",
        include_str!("../../../playbooks/network-partition-notify.yaml"),
    ),
    (
        "memory-pressure-clear-cache.yaml",
        include_str!("../../../playbooks/memory-pressure-clear-cache.yaml"),
    ),
    (
        "cpu-overload-shed.yaml",
        include_str!("../../../playbooks/cpu-overload-shed.yaml"),
    ),
    (
        "disk-pressure-clear-cache.yaml",
        include_str!("../../../playbooks/disk-pressure-clear-cache.yaml"),
    ),
];

/// The loaded playbooks, keyed by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlaybookSet {
    playbooks: BTreeMap<String, Playbook>,
}

impl PlaybookSet {
    /// An empty set (no automatic repair at all).
    pub fn empty() -> PlaybookSet {
        PlaybookSet::default()
    }

    /// The shipped defaults.
    pub fn defaults() -> Result<PlaybookSet, PlaybookError> {
        let mut set = PlaybookSet::default();
        for (name, text) in DEFAULT_PLAYBOOKS {
            set.insert(parse_playbook(text, &format!("default:{name}"))?, name)?;
        }
        Ok(set)
    }

    /// Adds a parsed playbook; one with an existing id replaces it (how users override a
    /// default).
    pub fn insert(&mut self, playbook: Playbook, source_name: &str) -> Result<(), PlaybookError> {
        if !self.playbooks.contains_key(&playbook.id) && self.playbooks.len() >= MAX_PLAYBOOKS {
            return Err(PlaybookError {
                source_name: source_name.to_string(),
                line: None,
                field: "recovery_plan.id".into(),
                reason: format!("more than {MAX_PLAYBOOKS} playbooks loaded"),
            });
        }
        self.playbooks.insert(playbook.id.clone(), playbook);
        Ok(())
    }

    /// Parses and adds a user playbook.
    pub fn add_text(&mut self, text: &str, source_name: &str) -> Result<(), PlaybookError> {
        let playbook = parse_playbook(text, source_name)?;
        self.insert(playbook, source_name)
    }

    /// Removes a playbook (e.g. a user disabling a default).
    pub fn remove(&mut self, id: &str) -> Option<Playbook> {
        self.playbooks.remove(id)
    }

    /// A playbook by id.
    pub fn get(&self, id: &str) -> Option<&Playbook> {
        self.playbooks.get(id)
    }

    /// Candidates for an incident type, in id order.
    pub fn for_type(&self, kind: IncidentType) -> impl Iterator<Item = &Playbook> {
        self.playbooks
            .values()
            .filter(move |p| p.incident_type == kind)
    }

    /// Number of playbooks.
    pub fn len(&self) -> usize {
        self.playbooks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.playbooks.is_empty()
    }
}
