//! `node.yaml`: the file format, its defaults, and parsing into a validated [`NodeConfig`].
//!
//! The file follows the seeds' "Minimal configuration" shape: one top-level `node_config`
//! mapping with a section per concern. Every section and field may be left out and then takes
//! the default documented on it (`docs/node.yaml` shows them all). Unknown fields are errors,
//! and every error names the field's path, e.g. `node_config.network.listen`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use routing::RouterConfig;
use serde::Deserialize;

use crate::healing::config::{CheckEntry, HealingConfig, MapkSection};
use crate::supervisor::ServiceDecl;

/// Most interfaces multicast discovery can be configured on (the transport's own limit).
pub const MAX_INTERFACES: usize = transport::MAX_INTERFACES;

/// Default UDP port of multicast discovery adverts.
pub const DEFAULT_DISCOVERY_PORT: u16 = 7402;

/// Longest interface name Linux accepts (IFNAMSIZ is 16 including the terminating NUL).
const MAX_INTERFACE_NAME_BYTES: usize = 15;

/// Longest SVID lifetime a CA node may be configured to issue: 30 days. Short-lived SVIDs
/// are the point; this only stops a typo from issuing certificates for years.
pub const MAX_SVID_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// Largest `node.yaml` read. A configuration file is a few kilobytes; refusing anything
/// larger keeps a wrong path (a log file, a disk image) from being read into memory.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A configuration the node cannot run with. Every variant names the file, and the field
/// where one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{path}: file is larger than {MAX_CONFIG_BYTES} bytes; is this really node.yaml?")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not YAML of the expected shape: a syntax error, an unknown field, or a value
    /// of the wrong type. `field` is the path where it happened (empty for syntax errors before
    /// any field).
    #[error("{path}: {}{message}", field_prefix(field))]
    Parse {
        /// The file.
        path: PathBuf,
        /// The path of the field at fault, e.g. `node_config.network.bogus`.
        field: String,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// A field has a value of the right type that the node cannot use.
    #[error("{path}: {}{field}: {reason}", line.map_or_else(String::new, |l| format!("line {l}: ")))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The path of the field, e.g. `node_config.network.listen`.
        field: String,
        /// The line of the entry at fault, when known (health checks).
        line: Option<u64>,
        /// What is wrong with the value.
        reason: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() || field == "." {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// The whole file: everything lives under `node_config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// Required; `node_config: {}` (or an empty `node_config:`) means all defaults.
    node_config: Option<NodeConfigFile>,
}

/// `node_config`: one section per concern. Sections for later features (storage, dao) are
/// not accepted yet, so a file using them fails loudly instead of being silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NodeConfigFile {
    identity: IdentitySection,
    network: NetworkSection,
    routing: RoutingSection,
    security: SecuritySection,
    api: ApiSection,
    /// Absent: this node runs no key-value store (and refuses its link streams).
    kv: Option<KvSection>,
    /// The self-healing loop (see `healing::config::MapkSection`).
    mapk: MapkSection,
    /// Supervised local processes.
    services: Vec<ServiceDecl>,
    /// Health checks (Consul-like: http, tcp, args, process).
    checks: Vec<CheckEntry>,
}

/// `node_config.kv`: the replicated key-value store (Raft over mesh links). Present means
/// enabled; every node of one store lists the same voters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct KvSection {
    /// The voting members: 3 or 5 node ids (hex, as `ctl identity` prints them). Required.
    /// Other nodes with a `kv` section forward their requests to the leader.
    voters: Vec<String>,
    /// Leader heartbeat period. Default: 100.
    heartbeat_ms: u64,
    /// Election timeout range: a follower campaigns after its leader lease (the upper bound)
    /// plus a random timeout from this range, 1.00 to 1.05 s after the last heartbeat with the
    /// defaults, like etcd's default 1000 ms election timeout. Defaults: 475 and 525.
    election_timeout_min_ms: u64,
    election_timeout_max_ms: u64,
    /// Upper bound on one request, forwarding and retries during an election included.
    /// Default: 5000.
    request_timeout_ms: u64,
    /// Largest key in bytes (at most 1024). Default: 1024.
    max_key_bytes: usize,
    /// Largest value in bytes (at most 65536). Default: 65536.
    max_value_bytes: usize,
}

impl Default for KvSection {
    fn default() -> Self {
        KvSection {
            voters: Vec::new(),
            heartbeat_ms: 100,
            election_timeout_min_ms: 475,
            election_timeout_max_ms: 525,
            request_timeout_ms: 5000,
            max_key_bytes: kv::limits::MAX_KEY_BYTES,
            max_value_bytes: kv::limits::MAX_VALUE_BYTES,
        }
    }
}

/// `node_config.kv`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvSettings {
    /// The voters a new store is initialized with.
    pub voters: Vec<wire::NodeId>,
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// Election timeout range.
    pub election_timeout: (Duration, Duration),
    /// Upper bound on one request.
    pub request_timeout: Duration,
    /// Largest key.
    pub max_key_bytes: usize,
    /// Largest value.
    pub max_value_bytes: usize,
}

/// `node_config.security`: link security.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SecuritySection {
    /// Allow only the X25519MLKEM768 key exchange on links (no classical fallback).
    /// Default: false (X25519MLKEM768 preferred, X25519 accepted).
    pq_only: bool,
    /// YAML link policy (allow/deny rules on SPIFFE IDs). Relative paths are relative to the
    /// directory holding `node.yaml`. Default: none (every member of the trust domain may link).
    policy_file: Option<String>,
    /// Lifetime of the SVIDs this node issues when it is the CA node, in seconds. Default: 3600.
    svid_ttl_seconds: i64,
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            pq_only: false,
            policy_file: None,
            svid_ttl_seconds: identity::ca::DEFAULT_SVID_TTL_SECONDS,
        }
    }
}

/// `node_config.identity`: where the node keeps its key and state.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct IdentitySection {
    /// Directory for the node key and persistent state, created by `init` with mode 0700.
    /// Relative paths are relative to the directory holding `node.yaml`. Default: `data`.
    data_dir: String,
    /// The Ed25519 node key (PKCS#8 PEM, mode 0600). Relative paths are relative to
    /// `data_dir`. Default: `node.key`.
    key_file: String,
}

impl Default for IdentitySection {
    fn default() -> Self {
        IdentitySection {
            data_dir: "data".to_string(),
            key_file: "node.key".to_string(),
        }
    }
}

/// `node_config.network`: the UDP socket and how neighbours are found.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NetworkSection {
    /// UDP address to listen on. `[::]:7400` accepts IPv6 and IPv4. Default: `[::]:7400`.
    listen: String,
    /// Interfaces to discover neighbours on by IPv6 link-local multicast (needs an IPv6
    /// `listen` address with a fixed port shared by the nodes on the link). Default: `[]`.
    interfaces: Vec<String>,
    /// `nodes.json` with static peers. Relative paths are relative to the directory holding
    /// `node.yaml`. Default: none, which means `<data_dir>/nodes.json` if `init --bootstrap`
    /// put one there.
    bootstrap: Option<String>,
    /// UDP port of multicast discovery adverts (shared by the nodes on a link). Default: 7402.
    discovery_port: u16,
    /// The overlay TUN interface: `auto` (create it when running as root, otherwise run
    /// without it and say so once), `on` (fail if it cannot be created) or `off`. Default: auto.
    tun: String,
    /// Name of the TUN interface. Default: `x6tun0`.
    tun_name: String,
    /// MTU of the TUN interface (1280 to 65535). Default: 64000 (see `dataplane`).
    tun_mtu: u16,
    /// Whether links carry data on the link channel (a plain UDP socket, packets sealed with
    /// keys from the link's TLS session, large packets in fragments). `false` keeps everything
    /// in QUIC datagrams, for networks that pass QUIC but not the channel's port; the overlay
    /// path MTU then falls to what one QUIC datagram carries (Packet Too Big says so).
    /// Default: true.
    link_channel: bool,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: "[::]:7400".to_string(),
            interfaces: Vec::new(),
            bootstrap: None,
            discovery_port: DEFAULT_DISCOVERY_PORT,
            tun: "auto".to_string(),
            tun_name: "x6tun0".to_string(),
            tun_mtu: crate::dataplane::DEFAULT_OVERLAY_MTU,
            link_channel: true,
        }
    }
}

/// `node_config.routing`: the routing core's tunables. Defaults are `RouterConfig::default()`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RoutingSection {
    /// Link probe interval. Default: 100.
    probe_interval_ms: u64,
    /// Probe intervals of silence before a neighbour is dead. Default: 3.
    probe_miss_limit: u32,
    /// Originator message interval. Default: 1000.
    ogm_interval_ms: u64,
    /// Discovery hello interval. Default: 1000.
    hello_interval_ms: u64,
    /// Hop penalty on the 0..255 TQ scale. Default: 30.
    hop_penalty: u8,
    /// Probe window for loss and TQ, in probes. Default: 64.
    window: u8,
    /// Fisheye OGM scoping. Default: true.
    fisheye: bool,
    /// Batching delay for triggered updates. Default: 5.
    flush_delay_ms: u64,
    /// Most neighbours kept. Default: 64.
    max_neighbours: usize,
    /// Most destinations kept. Default: 65536.
    max_destinations: usize,
}

impl Default for RoutingSection {
    fn default() -> Self {
        let defaults = RouterConfig::default();
        RoutingSection {
            probe_interval_ms: millis(defaults.probe_interval),
            probe_miss_limit: defaults.probe_miss_limit,
            ogm_interval_ms: millis(defaults.ogm_interval),
            hello_interval_ms: millis(defaults.hello_interval),
            hop_penalty: defaults.hop_penalty,
            window: defaults.window,
            fisheye: defaults.fisheye,
            flush_delay_ms: millis(defaults.flush_delay),
            max_neighbours: defaults.max_neighbours,
            max_destinations: defaults.max_destinations,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `node_config.api`: the local HTTP API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ApiSection {
    /// TCP address of the HTTP API. Default: `127.0.0.1:7401`.
    listen: String,
    /// The API has no authentication yet, so it must listen on a loopback address unless
    /// this is set to true. Default: false.
    allow_non_loopback: bool,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: "127.0.0.1:7401".to_string(),
            allow_non_loopback: false,
        }
    }
}

/// A validated node configuration, with every path resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The file it was read from.
    pub source: PathBuf,
    /// `identity.data_dir`, resolved.
    pub data_dir: PathBuf,
    /// `identity.key_file`, resolved.
    pub key_path: PathBuf,
    /// `network.listen`.
    pub listen: SocketAddr,
    /// `network.interfaces`.
    pub interfaces: Vec<String>,
    /// `network.bootstrap`, resolved; `None` if not configured.
    pub bootstrap: Option<PathBuf>,
    /// `routing`, converted and validated.
    pub router: RouterConfig,
    /// `api.listen`.
    pub api_listen: SocketAddr,
    /// `network.discovery_port`.
    pub discovery_port: u16,
    /// `security.pq_only`.
    pub pq_only: bool,
    /// `security.policy_file`, resolved.
    pub policy_file: Option<PathBuf>,
    /// `security.svid_ttl_seconds`.
    pub svid_ttl_seconds: i64,
    /// `network.tun`.
    pub tun: TunMode,
    /// `network.tun_name`.
    pub tun_name: String,
    /// `network.tun_mtu`.
    pub tun_mtu: u16,
    /// `network.link_channel`.
    pub link_channel: bool,
    /// `kv`; `None` when the node runs no key-value store.
    pub kv: Option<KvSettings>,
    /// `mapk`, `services` and `checks`, validated.
    pub healing: HealingConfig,
}

/// Whether the node creates its overlay TUN interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunMode {
    /// Create it if possible (root, /dev/net/tun), otherwise run without it.
    Auto,
    /// Create it or fail.
    On,
    /// Never create it.
    Off,
}

impl NodeConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        NodeConfig::parse(&text, path)
    }

    /// Parses and validates `text` as if read from `path` (used to resolve relative paths and
    /// to name the file in errors).
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let file = parse_file(text, path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let section = file.node_config.unwrap_or_default();
        Validator { path }.validate(section, &base)
    }

    /// Where `run` looks for static peers: `network.bootstrap`, or the copy `init --bootstrap`
    /// left in the data directory.
    pub fn bootstrap_path(&self) -> Option<PathBuf> {
        match &self.bootstrap {
            Some(path) => Some(path.clone()),
            None => {
                let copy = self.data_dir.join(crate::bootstrap::BOOTSTRAP_COPY_NAME);
                copy.exists().then_some(copy)
            }
        }
    }
}

fn parse_file(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::Parse {
            path: path.to_path_buf(),
            field: "node_config".to_string(),
            message: "missing (the file must contain a `node_config:` mapping)".to_string(),
        });
    }
    // serde_path_to_error records the field path; the path is carried out of the YAML
    // deserializer inside the error message and split off again below.
    let mut field_path = String::new();
    let parsed: Result<ConfigFile, serde_saphyr::Error> =
        serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize::<_, ConfigFile>(de).map_err(|error| {
                // Checks are read with their position (`Spanned`), whose `value` level is not
                // part of the file's shape.
                field_path = error
                    .path()
                    .to_string()
                    .replace("].value.", "].")
                    .trim_end_matches(".value")
                    .to_string();
                error.into_inner()
            })
        });
    parsed.map_err(|error| ConfigError::Parse {
        path: path.to_path_buf(),
        field: field_path,
        message: one_line(&error.without_snippet().to_string()),
    })
}

/// The parser's messages may carry a source snippet over several lines; errors here are one
/// line (the message keeps "at line L, column C"). Terse integer messages ("invalid u8") are
/// spelled out with the accepted range.
fn one_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default().trim();
    let ranges = [
        ("invalid u8", "expected a whole number from 0 to 255"),
        (
            "invalid u32",
            "expected a whole number from 0 to 4294967295",
        ),
        (
            "invalid u64",
            "expected a whole number from 0 to 18446744073709551615",
        ),
        (
            "invalid usize",
            "expected a whole number from 0 to 18446744073709551615",
        ),
    ];
    for (terse, spelled) in ranges {
        if let Some(rest) = line.strip_prefix(terse) {
            return format!("{spelled}{rest}");
        }
    }
    line.to_string()
}

struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            line: None,
            reason: reason.into(),
        }
    }

    fn validate(&self, file: NodeConfigFile, base: &Path) -> Result<NodeConfig, ConfigError> {
        let data_dir =
            base.join(self.non_empty("node_config.identity.data_dir", &file.identity.data_dir)?);
        let key_path = data_dir
            .join(self.non_empty("node_config.identity.key_file", &file.identity.key_file)?);
        let listen = self.socket_addr("node_config.network.listen", &file.network.listen)?;
        let interfaces = self.interfaces(&file.network.interfaces, listen)?;
        let bootstrap = match &file.network.bootstrap {
            Some(text) => Some(base.join(self.non_empty("node_config.network.bootstrap", text)?)),
            None => None,
        };
        let router = self.router(&file.routing)?;
        let api_listen = self.socket_addr("node_config.api.listen", &file.api.listen)?;
        if !api_listen.ip().is_loopback() && !file.api.allow_non_loopback {
            return Err(self.invalid(
                "node_config.api.listen",
                format!("{api_listen} is not a loopback address; the API has no authentication yet, so set node_config.api.allow_non_loopback: true to expose it anyway"),
            ));
        }
        if !interfaces.is_empty() && file.network.discovery_port == 0 {
            return Err(self.invalid(
                "node_config.network.discovery_port",
                "multicast discovery needs a fixed port shared by the nodes on a link, not 0",
            ));
        }
        let policy_file = match &file.security.policy_file {
            Some(text) => {
                Some(base.join(self.non_empty("node_config.security.policy_file", text)?))
            }
            None => None,
        };
        let ttl = file.security.svid_ttl_seconds;
        if !(identity::ca::MIN_SVID_TTL_SECONDS..=MAX_SVID_TTL_SECONDS).contains(&ttl) {
            return Err(self.invalid(
                "node_config.security.svid_ttl_seconds",
                format!(
                    "{ttl} is out of range; use {} to {MAX_SVID_TTL_SECONDS} seconds",
                    identity::ca::MIN_SVID_TTL_SECONDS
                ),
            ));
        }
        let tun = match file.network.tun.as_str() {
            "auto" => TunMode::Auto,
            "on" => TunMode::On,
            "off" => TunMode::Off,
            other => {
                return Err(self.invalid(
                    "node_config.network.tun",
                    format!("{other:?} is not one of auto, on, off"),
                ));
            }
        };
        let tun_name = &file.network.tun_name;
        if tun_name.is_empty()
            || tun_name.len() > MAX_INTERFACE_NAME_BYTES
            || tun_name.contains(['/', ' ', '\0'])
        {
            return Err(self.invalid(
                "node_config.network.tun_name",
                format!(
                    "{tun_name:?} is not an interface name (1 to 15 characters, no '/' or spaces)"
                ),
            ));
        }
        if file.network.tun_mtu < 1280 {
            return Err(self.invalid(
                "node_config.network.tun_mtu",
                format!(
                    "{} is below IPv6's minimum MTU of 1280",
                    file.network.tun_mtu
                ),
            ));
        }
        let kv = match &file.kv {
            Some(section) => Some(self.kv(section)?),
            None => None,
        };
        let healing =
            HealingConfig::validate(file.mapk, file.services, file.checks, base, &data_dir)
                .map_err(|error| ConfigError::Invalid {
                    path: self.path.to_path_buf(),
                    field: error.field,
                    line: error.line,
                    reason: error.reason,
                })?;
        Ok(NodeConfig {
            healing,
            source: self.path.to_path_buf(),
            data_dir,
            key_path,
            listen,
            interfaces,
            bootstrap,
            router,
            api_listen,
            discovery_port: file.network.discovery_port,
            pq_only: file.security.pq_only,
            policy_file,
            svid_ttl_seconds: ttl,
            tun,
            tun_name: tun_name.clone(),
            tun_mtu: file.network.tun_mtu,
            link_channel: file.network.link_channel,
            kv,
        })
    }

    fn kv(&self, section: &KvSection) -> Result<KvSettings, ConfigError> {
        let field = "node_config.kv.voters";
        if section.voters.len() != 3 && section.voters.len() != 5 {
            return Err(self.invalid(
                field,
                format!(
                    "{} voters listed; a store has 3 or 5 (an odd number, so a majority survives a failure)",
                    section.voters.len()
                ),
            ));
        }
        let mut voters = Vec::with_capacity(section.voters.len());
        let mut raft_ids = std::collections::HashMap::new();
        for (index, text) in section.voters.iter().enumerate() {
            let item = format!("{field}[{index}]");
            let id: wire::NodeId = text.trim().parse().map_err(|error| {
                self.invalid(&item, format!("{text:?} is not a node id (32 hex digits, as `ctl identity` prints): {error}"))
            })?;
            if voters.contains(&id) {
                return Err(self.invalid(&item, format!("{id} is listed twice")));
            }
            if let Some(other) = raft_ids.insert(crate::kvhost::raft_id(&id), id) {
                return Err(self.invalid(
                    &item,
                    format!("{id} and {other} share their first 8 bytes, which name a voter inside the store; they cannot both vote"),
                ));
            }
            voters.push(id);
        }
        let heartbeat = Duration::from_millis(section.heartbeat_ms);
        if !(10..=10_000).contains(&section.heartbeat_ms) {
            return Err(self.invalid(
                "node_config.kv.heartbeat_ms",
                format!("{} is out of range; use 10 to 10000", section.heartbeat_ms),
            ));
        }
        let (min, max) = (
            section.election_timeout_min_ms,
            section.election_timeout_max_ms,
        );
        if min <= section.heartbeat_ms || min > 60_000 {
            return Err(self.invalid(
                "node_config.kv.election_timeout_min_ms",
                format!(
                    "{min} must exceed heartbeat_ms ({}) and be at most 60000",
                    section.heartbeat_ms
                ),
            ));
        }
        if max <= min || max > 120_000 {
            return Err(self.invalid(
                "node_config.kv.election_timeout_max_ms",
                format!("{max} must exceed election_timeout_min_ms ({min}) and be at most 120000"),
            ));
        }
        if !(100..=600_000).contains(&section.request_timeout_ms) {
            return Err(self.invalid(
                "node_config.kv.request_timeout_ms",
                format!(
                    "{} is out of range; use 100 to 600000",
                    section.request_timeout_ms
                ),
            ));
        }
        if !(1..=kv::limits::MAX_KEY_BYTES).contains(&section.max_key_bytes) {
            return Err(self.invalid(
                "node_config.kv.max_key_bytes",
                format!(
                    "{} is out of range; use 1 to {}",
                    section.max_key_bytes,
                    kv::limits::MAX_KEY_BYTES
                ),
            ));
        }
        if section.max_value_bytes > kv::limits::MAX_VALUE_BYTES {
            return Err(self.invalid(
                "node_config.kv.max_value_bytes",
                format!(
                    "{} is out of range; use 0 to {}",
                    section.max_value_bytes,
                    kv::limits::MAX_VALUE_BYTES
                ),
            ));
        }
        Ok(KvSettings {
            voters,
            heartbeat,
            election_timeout: (Duration::from_millis(min), Duration::from_millis(max)),
            request_timeout: Duration::from_millis(section.request_timeout_ms),
            max_key_bytes: section.max_key_bytes,
            max_value_bytes: section.max_value_bytes,
        })
    }

    fn non_empty<'t>(&self, field: &str, text: &'t str) -> Result<&'t str, ConfigError> {
        if text.trim().is_empty() {
            Err(self.invalid(field, "must not be empty"))
        } else {
            Ok(text)
        }
    }

    fn socket_addr(&self, field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        text.trim().parse().map_err(|_| {
            self.invalid(
                field,
                format!(
                    "{text:?} is not an IP address with a port, such as 127.0.0.1:7400 or [::]:7400"
                ),
            )
        })
    }

    fn interfaces(&self, names: &[String], listen: SocketAddr) -> Result<Vec<String>, ConfigError> {
        let field = "node_config.network.interfaces";
        if names.len() > MAX_INTERFACES {
            return Err(self.invalid(
                field,
                format!(
                    "{} interfaces listed, at most {MAX_INTERFACES} are supported",
                    names.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for (index, name) in names.iter().enumerate() {
            let item = format!("{field}[{index}]");
            if name.is_empty()
                || name.len() > MAX_INTERFACE_NAME_BYTES
                || name.contains(['/', ' ', '\0'])
            {
                return Err(self.invalid(
                    &item,
                    format!(
                        "{name:?} is not an interface name (1 to 15 characters, no '/' or spaces)"
                    ),
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err(self.invalid(&item, format!("{name:?} is listed twice")));
            }
        }
        if !names.is_empty() && !listen.is_ipv6() {
            return Err(self.invalid(field, format!("multicast discovery is IPv6 link-local, so node_config.network.listen must be IPv6 (such as [::]:7400), not {listen}")));
        }
        Ok(names.to_vec())
    }

    fn router(&self, section: &RoutingSection) -> Result<RouterConfig, ConfigError> {
        let config = RouterConfig {
            probe_interval: Duration::from_millis(section.probe_interval_ms),
            probe_miss_limit: section.probe_miss_limit,
            ogm_interval: Duration::from_millis(section.ogm_interval_ms),
            hello_interval: Duration::from_millis(section.hello_interval_ms),
            hop_penalty: section.hop_penalty,
            window: section.window,
            fisheye: section.fisheye,
            flush_delay: Duration::from_millis(section.flush_delay_ms),
            max_neighbours: section.max_neighbours,
            max_destinations: section.max_destinations,
        };
        config.validate().map_err(|error| {
            self.invalid(
                &format!("node_config.routing.{}", error.field),
                error.reason,
            )
        })?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(text, Path::new("/etc/x0/node.yaml"))
    }

    #[test]
    fn empty_sections_take_documented_defaults() {
        let config = parse("node_config:\n").unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/etc/x0/data"));
        assert_eq!(config.key_path, PathBuf::from("/etc/x0/data/node.key"));
        assert_eq!(config.listen, "[::]:7400".parse().unwrap());
        assert!(config.interfaces.is_empty());
        assert_eq!(config.bootstrap, None);
        assert_eq!(config.router, RouterConfig::default());
        assert_eq!(config.api_listen, "127.0.0.1:7401".parse().unwrap());
    }

    #[test]
    fn the_documented_example_is_valid_and_matches_the_defaults() {
        let text = include_str!("../../../docs/node.yaml");
        let example = parse(text).unwrap();
        let defaults = parse("node_config: {}\n").unwrap();
        assert_eq!(
            example,
            NodeConfig {
                bootstrap: Some(PathBuf::from("/etc/x0/nodes.json")),
                policy_file: Some(PathBuf::from("/etc/x0/policy.yaml")),
                ..defaults
            }
        );
    }

    #[test]
    fn the_overlay_mtu_spans_ipv6_minimum_to_its_maximum_and_the_channel_can_be_turned_off() {
        let defaults = parse("node_config: {}\n").unwrap();
        assert_eq!(defaults.tun_mtu, 64_000);
        assert!(defaults.link_channel);
        let config =
            parse("node_config:\n  network: { tun_mtu: 65535, link_channel: false }\n").unwrap();
        assert_eq!(config.tun_mtu, 65_535);
        assert!(!config.link_channel);
        assert!(parse("node_config:\n  network: { tun_mtu: 1280 }\n").is_ok());
        let error = parse("node_config:\n  network: { tun_mtu: 1279 }\n").unwrap_err();
        assert!(error.to_string().contains("tun_mtu"), "{error}");
    }

    #[test]
    fn kv_section_is_read_with_defaults_and_absent_means_disabled() {
        assert_eq!(parse("node_config: {}\n").unwrap().kv, None);
        let text = "node_config:
  kv:
    voters: ['01000000000000000000000000000000', '02000000000000000000000000000000', '03000000000000000000000000000000']
    heartbeat_ms: 50
";
        let kv = parse(text).unwrap().kv.expect("kv enabled");
        assert_eq!(kv.voters.len(), 3);
        assert_eq!(kv.heartbeat, Duration::from_millis(50));
        assert_eq!(
            kv.election_timeout,
            (Duration::from_millis(475), Duration::from_millis(525))
        );
        assert_eq!(kv.request_timeout, Duration::from_secs(5));
        assert_eq!(kv.max_value_bytes, kv::limits::MAX_VALUE_BYTES);
    }

    #[test]
    fn every_field_is_read() {
        let text = "node_config:
  identity: { data_dir: /var/lib/x0, key_file: keys/k.pem }
  network: { listen: '127.0.0.1:9000', bootstrap: peers.json }
  routing: { probe_interval_ms: 50, probe_miss_limit: 4, ogm_interval_ms: 2000, hello_interval_ms: 500,
             hop_penalty: 20, window: 32, fisheye: false, flush_delay_ms: 0, max_neighbours: 8, max_destinations: 100 }
  api: { listen: '0.0.0.0:8080', allow_non_loopback: true }
";
        let config = parse(text).unwrap();
        assert_eq!(config.key_path, PathBuf::from("/var/lib/x0/keys/k.pem"));
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.bootstrap, Some(PathBuf::from("/etc/x0/peers.json")));
        let expected = RouterConfig {
            probe_interval: Duration::from_millis(50),
            probe_miss_limit: 4,
            ogm_interval: Duration::from_secs(2),
            hello_interval: Duration::from_millis(500),
            hop_penalty: 20,
            window: 32,
            fisheye: false,
            flush_delay: Duration::ZERO,
            max_neighbours: 8,
            max_destinations: 100,
        };
        assert_eq!(config.router, expected);
        assert_eq!(config.api_listen, "0.0.0.0:8080".parse().unwrap());
    }

    #[test]
    fn services_and_checks_are_read_and_a_healer_restarted_service_gets_a_process_check() {
        let text = "node_config:
  mapk: { mesh_interval: 100ms, retention: 50, execution: { window: 30s } }
  services:
    - { name: web, command: [sleep, '60'] }
    - { name: job, command: [sleep, '60'], restart: { policy: healer } }
  checks:
    - { name: web-http, service: web, http: 'http://127.0.0.1:8080/', failure_threshold: 3 }
";
        let config = parse(text).unwrap();
        let healing = &config.healing;
        assert_eq!(healing.mesh_interval, Duration::from_millis(100));
        assert_eq!(healing.db.retention, 50);
        assert_eq!(healing.heal.execution.window, Duration::from_secs(30));
        assert_eq!(
            healing.incidents_db,
            PathBuf::from("/etc/x0/data/incidents.db")
        );
        assert_eq!(healing.services.len(), 2);
        let names: Vec<&str> = healing.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["web-http", "job"]);
        assert_eq!(
            healing.checks[1].kind,
            heal::CheckKind::Process("job".to_string())
        );
    }

    /// Each bad file and the text its error must contain: the field path, and the reason.
    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("", "node_config: missing"),
            ("nodeconfig: {}\n", "nodeconfig: unknown field `nodeconfig`"),
            (
                "node_config:\n  network:\n    listne: x\n",
                "node_config.network.listne: unknown field `listne`",
            ),
            (
                "node_config:\n  mapk: { thresholds: { gpu: 3 } }\n",
                "node_config.mapk.thresholds.gpu: unknown field `gpu`",
            ),
            (
                "node_config:\n  mapk: { period: 1s }\n",
                "node_config.mapk.period: unknown field `period`",
            ),
            (
                "node_config:\n  mapk: { detector: { alpha: 2 } }\n",
                "node_config.mapk.detector.alpha: must be above 0",
            ),
            (
                "node_config:\n  mapk: { retention: 0 }\n",
                "node_config.mapk.retention: must be from 1",
            ),
            (
                "node_config:\n  checks:\n    - name: web\n      http: https://127.0.0.1/\n",
                "line 3: node_config.checks[0].http: https:// is not supported",
            ),
            (
                "node_config:\n  checks:\n    - name: a\n      tcp: 127.0.0.1:1\n    - name: b\n      tcp: nowhere\n",
                "line 5: node_config.checks[1].tcp: must be host:port",
            ),
            (
                "node_config:\n  checks:\n    - name: a\n      tcp: 127.0.0.1:1\n      intervall: 2s\n",
                "node_config.checks[0].intervall: unknown field `intervall`",
            ),
            (
                "node_config:\n  checks:\n    - name: a\n      process: ghost\n",
                "line 3: node_config.checks[0].process: names no supervised service",
            ),
            (
                "node_config:\n  services:\n    - name: a\n      command: []\n",
                "node_config.services[0].command: must name a program first",
            ),
            (
                "node_config:\n  security: { pq_onyl: true }\n",
                "node_config.security.pq_onyl: unknown field `pq_onyl`",
            ),
            (
                "node_config:\n  security: { svid_ttl_seconds: 1 }\n",
                "node_config.security.svid_ttl_seconds: 1 is out of range",
            ),
            (
                "node_config:\n  network: { tun: maybe }\n",
                "node_config.network.tun: \"maybe\" is not one of auto, on, off",
            ),
            (
                "node_config:\n  network: { listen: 'localhost' }\n",
                "node_config.network.listen: \"localhost\" is not an IP address",
            ),
            (
                "node_config:\n  routing: { hop_penalty: 300 }\n",
                "node_config.routing.hop_penalty: expected a whole number from 0 to 255",
            ),
            (
                "node_config:\n  routing: { probe_interval_ms: fast }\n",
                "node_config.routing.probe_interval_ms: expected a whole number",
            ),
            (
                "node_config:\n  routing: { probe_interval_ms: 1 }\n",
                "node_config.routing.probe_interval_ms: must be between",
            ),
            (
                "node_config:\n  routing: { window: 2 }\n",
                "node_config.routing.window: must be between",
            ),
            (
                "node_config:\n  routing: { fisheye: maybe }\n",
                "node_config.routing.fisheye:",
            ),
            (
                "node_config:\n  api: { listen: '0.0.0.0:7401' }\n",
                "node_config.api.listen: 0.0.0.0:7401 is not a loopback address",
            ),
            (
                "node_config:\n  identity: { data_dir: '' }\n",
                "node_config.identity.data_dir: must not be empty",
            ),
            (
                "node_config:\n  network: { listen: '127.0.0.1:7400', interfaces: [eth0] }\n",
                "node_config.network.interfaces: multicast discovery is IPv6",
            ),
            (
                "node_config:\n  network: { interfaces: [eth0, eth0] }\n",
                "node_config.network.interfaces[1]: \"eth0\" is listed twice",
            ),
            (
                "node_config:\n  network: { interfaces: [averyveryverylongname] }\n",
                "node_config.network.interfaces[0]: \"averyveryverylongname\" is not an interface name",
            ),
            (
                "node_config:\n  network: { interfaces: eth0 }\n",
                "node_config.network.interfaces: expected sequence",
            ),
            (
                "node_config:\n  kv: { voters: [] }\n",
                "node_config.kv.voters: 0 voters listed; a store has 3 or 5",
            ),
            (
                "node_config:\n  kv: { votrs: [] }\n",
                "node_config.kv.votrs: unknown field `votrs`",
            ),
            (
                "node_config:\n  kv: { voters: [a, b, c] }\n",
                "node_config.kv.voters[0]: \"a\" is not a node id",
            ),
            (
                "node_config:\n  kv: { voters: ['01000000000000000000000000000000', '02000000000000000000000000000000', '01000000000000000000000000000000'] }\n",
                "node_config.kv.voters[2]: 01000000000000000000000000000000 is listed twice",
            ),
            (
                "node_config:\n  kv: { voters: ['00000000000000000000000000000001', '00000000000000000000000000000002', '00000000000000000000000000000003'] }\n",
                "node_config.kv.voters[1]: 00000000000000000000000000000002 and 00000000000000000000000000000001 share their first 8 bytes",
            ),
            (
                "node_config:\n  kv: { voters: ['01000000000000000000000000000000', '02000000000000000000000000000000', '03000000000000000000000000000000'], max_value_bytes: 70000 }\n",
                "node_config.kv.max_value_bytes: 70000 is out of range",
            ),
            (
                "node_config:\n  kv: { voters: ['01000000000000000000000000000000', '02000000000000000000000000000000', '03000000000000000000000000000000'], election_timeout_min_ms: 600 }\n",
                "node_config.kv.election_timeout_max_ms: 525 must exceed election_timeout_min_ms (600)",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text).expect_err(text).to_string();
            assert!(message.starts_with("/etc/x0/node.yaml: "), "{message}");
            assert!(
                message.contains(expected),
                "for {text:?}\n  got: {message}\n want: {expected}"
            );
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }
}
