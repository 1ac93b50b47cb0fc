//! `x0tta6bl4 ctl`: asks a running node for its status, peers, routes, identity or replicated
//! state, sends or receives datagrams, and uses its key-value store (`ctl kv ...`,
//! `ctl raft ...`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use node::NodeConfig;

use crate::CliError;
use crate::client::{ApiClient, CTL_TIMEOUT, DEFAULT_API_URL};
use crate::render;

/// Configuration file `ctl` reads the API address from when neither `--api` nor `--config`
/// is given and it exists in the current directory.
const LOCAL_CONFIG: &str = "node.yaml";

/// Arguments of `ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// What to show.
    #[command(subcommand)]
    pub query: CtlQuery,
    /// Base URL of the node's API [default: api.listen of --config, else of ./node.yaml if
    /// present, else http://127.0.0.1:7401].
    #[arg(long, global = true, value_name = "URL", conflicts_with = "config")]
    pub api: Option<String>,
    /// Read the API address from this node.yaml.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What `ctl` can show or do.
#[derive(Debug, Clone, Subcommand)]
pub enum CtlQuery {
    /// Node id, uptime, neighbour and route counts, and all counters.
    Status,
    /// Neighbours and their link quality.
    Peers,
    /// The routing table: next hop, cost, alternates per destination.
    Routes,
    /// This node's SPIFFE ID, SVID expiry and key fingerprints.
    Identity,
    /// Send a datagram through the mesh to another node (works without a TUN interface).
    Send {
        /// The destination node id.
        node: wire::NodeId,
        /// The payload (UTF-8 text, at most 1200 bytes).
        text: String,
        /// Destination port.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Take and print the datagrams this node received.
    Recv {
        /// Only this port.
        #[arg(long)]
        port: Option<u16>,
    },
    /// The mesh-wide replicated state (directory, revocations, policies).
    Crdt {
        /// What to show.
        #[command(subcommand)]
        query: CrdtQuery,
    },
    /// The replicated key-value store (any node with a `kv` section forwards to the leader).
    Kv {
        /// The operation.
        #[command(subcommand)]
        op: KvOp,
    },
    /// The Raft group of the key-value store.
    Raft {
        /// The operation.
        #[command(subcommand)]
        op: RaftOp,
    },
    /// Incidents of the self-healing loop, newest first.
    Incidents {
        /// Keep printing healing events as they happen (WebSocket /api/v1/events).
        #[arg(long)]
        follow: bool,
        /// Only this type (SERVICE_DOWN, NODE_FAILURE, ...).
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Only this state (open, executing, resolved, ...).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The open and recently closed incidents of every node of the mesh (from the
        /// replicated incident summaries) instead of this node's database.
        #[arg(long, conflicts_with = "follow")]
        mesh: bool,
    },
    /// One incident in full: evidence, root cause, plans with their reasons, every step.
    Incident {
        /// Its record id (the first column of `ctl incidents`).
        id: i64,
    },
    /// The self-healing loop's configuration.
    Heal {
        /// The operation.
        #[command(subcommand)]
        op: HealOp,
    },
}

/// What `ctl heal` can do.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum HealOp {
    /// Read node.yaml and the playbook directories again and replace the checks and
    /// playbooks; an invalid set is refused with its file, line and reason, and the node
    /// keeps the previous one (the same as sending the node SIGHUP).
    Reload,
}

/// What `ctl crdt` can show.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CrdtQuery {
    /// Collections with their digests, and which neighbours are in sync.
    Status,
}

/// Key-value operations.
#[derive(Debug, Clone, Subcommand)]
pub enum KvOp {
    /// Write a value (`-` reads it from stdin).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Delete the key after this many milliseconds (a new lease).
        #[arg(long, conflicts_with = "lease")]
        ttl_ms: Option<u64>,
        /// Attach the key to this existing lease.
        #[arg(long)]
        lease: Option<u64>,
    },
    /// Read a value (linearizable unless --stale).
    Get {
        /// The key.
        key: String,
        /// Read this node's replica without asking the leader.
        #[arg(long)]
        stale: bool,
    },
    /// Delete a key.
    Del {
        /// The key.
        key: String,
    },
    /// Write NEW only if the key holds --expected (or, with --absent, does not exist).
    Cas {
        /// The key.
        key: String,
        /// The new value.
        new: String,
        /// The value the key must hold.
        #[arg(long, required_unless_present = "absent")]
        expected: Option<String>,
        /// The key must not exist.
        #[arg(long, conflicts_with = "expected")]
        absent: bool,
    },
    /// List keys under a prefix.
    Ls {
        /// The prefix (empty: every key).
        #[arg(default_value = "")]
        prefix: String,
        /// Most keys shown.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Read this node's replica without asking the leader.
        #[arg(long)]
        stale: bool,
    },
    /// Print changes under a prefix as they happen (until interrupted).
    Watch {
        /// The prefix (empty: every key).
        #[arg(default_value = "")]
        prefix: String,
    },
}

/// Raft operations.
#[derive(Debug, Clone, Subcommand)]
pub enum RaftOp {
    /// Leader, term, commit index and voters.
    Status,
    /// Make a node (running with a `kv` section) a voter.
    AddVoter {
        /// Its node id.
        node: wire::NodeId,
    },
    /// Take a voter out of the group.
    RemoveVoter {
        /// Its node id.
        node: wire::NodeId,
    },
}

/// How long `ctl kv` waits: longer than the node's default request timeout (5 s), so the
/// node's own, clearer error arrives first.
const KV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `ctl`: prints the answer on stdout.
pub fn run(args: &CtlArgs) -> Result<(), CliError> {
    let url = api_url(args)?;
    if let CtlQuery::Kv { op } = &args.query {
        return kv(&ApiClient::new(&url, KV_TIMEOUT)?, op, args.json);
    }
    if let CtlQuery::Raft { op } = &args.query {
        let client = ApiClient::new(&url, KV_TIMEOUT)?;
        let view = match op {
            RaftOp::Status => client.raft_status()?,
            RaftOp::AddVoter { node } => client.raft_voter(node, true)?,
            RaftOp::RemoveVoter { node } => client.raft_voter(node, false)?,
        };
        println!(
            "{}",
            if args.json {
                to_json(&view)
            } else {
                render::raft(&view)
            }
        );
        return Ok(());
    }
    let client = ApiClient::new(&url, CTL_TIMEOUT)?;
    let label = render::short_id;
    let text = match (args.query.clone(), args.json) {
        (CtlQuery::Status, false) => render::status(&client.status()?),
        (CtlQuery::Status, true) => to_json(&client.status()?),
        (CtlQuery::Peers, false) => render::peers(&client.peers()?, &label),
        (CtlQuery::Peers, true) => to_json(&client.peers()?),
        (CtlQuery::Routes, false) => render::routes(&client.routes()?, &label),
        (CtlQuery::Routes, true) => to_json(&client.routes()?),
        (CtlQuery::Identity, false) => render::identity(&client.identity()?),
        (CtlQuery::Identity, true) => to_json(&client.identity()?),
        (CtlQuery::Send { node, text, port }, json) => {
            let outcome = client.send_datagram(&node, port, text.as_bytes())?;
            if json {
                to_json(&outcome)
            } else {
                format!("{outcome:?}").to_lowercase()
            }
        }
        (
            CtlQuery::Crdt {
                query: CrdtQuery::Status,
            },
            false,
        ) => render::crdt(&client.crdt()?, &label),
        (
            CtlQuery::Crdt {
                query: CrdtQuery::Status,
            },
            true,
        ) => to_json(&client.crdt()?),
        (
            CtlQuery::Incidents {
                follow,
                kind,
                state,
                limit,
                mesh,
            },
            json,
        ) => {
            let mut query = format!("limit={limit}");
            if mesh {
                query.push_str("&scope=mesh");
            }
            if let Some(kind) = kind {
                query.push_str(&format!("&type={kind}"));
            }
            if let Some(state) = state {
                query.push_str(&format!("&state={state}"));
            }
            let records = client.incidents(&query)?;
            let text = if json {
                to_json(&records)
            } else if mesh {
                render::mesh_incidents(&records, &label)
            } else {
                render::incidents(&records)
            };
            println!("{text}");
            if follow {
                return follow_events(&url, json);
            }
            return Ok(());
        }
        (CtlQuery::Heal { op: HealOp::Reload }, json) => {
            let outcome = client.reload_healing()?;
            if json {
                to_json(&outcome)
            } else {
                render::reload(&outcome)
            }
        }
        (CtlQuery::Incident { id }, true) => to_json(&client.incident(id)?),
        (CtlQuery::Incident { id }, false) => render::incident(&client.incident(id)?),
        (CtlQuery::Recv { port }, true) => to_json(&client.take_datagrams(port)?),
        (CtlQuery::Recv { port }, false) => client
            .take_datagrams(port)?
            .iter()
            .map(|datagram| {
                let payload = hex::decode(&datagram.payload_hex).unwrap_or_default();
                format!(
                    "{} port {}: {}",
                    datagram.from,
                    datagram.port,
                    String::from_utf8_lossy(&payload)
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        (CtlQuery::Kv { .. } | CtlQuery::Raft { .. }, _) => return Ok(()),
    };
    println!("{text}");
    Ok(())
}

fn value_arg(value: &str) -> Result<Vec<u8>, CliError> {
    if value != "-" {
        return Ok(value.as_bytes().to_vec());
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::io::stdin(), kv::limits::MAX_VALUE_BYTES as u64 + 1),
        &mut bytes,
    )
    .map_err(|error| CliError::Usage(format!("cannot read the value from stdin: {error}")))?;
    Ok(bytes)
}

fn kv(client: &ApiClient, op: &KvOp, json: bool) -> Result<(), CliError> {
    let text = match op {
        KvOp::Put {
            key,
            value,
            ttl_ms,
            lease,
        } => {
            let query = match (ttl_ms, lease) {
                (Some(ttl), _) => format!("?ttl_ms={ttl}"),
                (None, Some(lease)) => format!("?lease={lease}"),
                (None, None) => String::new(),
            };
            let view = client.kv_put(key, &value_arg(value)?, &query)?;
            if json {
                to_json(&view)
            } else {
                match view.lease {
                    Some(lease) => format!("OK revision {} lease {lease}", view.revision),
                    None => format!("OK revision {}", view.revision),
                }
            }
        }
        KvOp::Get { key, stale } => match client.kv_get(key, *stale)? {
            Some((value, revision)) if json => to_json(&serde_json::json!({
                "key": key,
                "value": String::from_utf8(value.clone()).ok(),
                "value_hex": hex::encode(&value),
                "revision": revision,
            })),
            Some((value, _)) => String::from_utf8_lossy(&value).into_owned(),
            None => return Err(CliError::Usage(format!("key {key:?} not found"))),
        },
        KvOp::Del { key } => {
            let view = client.kv_delete(key)?;
            if json {
                to_json(&view)
            } else if view.existed {
                format!("deleted {key:?} (revision {})", view.revision)
            } else {
                format!("{key:?} did not exist")
            }
        }
        KvOp::Cas {
            key,
            new,
            expected,
            absent,
        } => {
            let expected = if *absent {
                None
            } else {
                expected.as_deref().map(str::as_bytes)
            };
            let view = client.kv_cas(key, expected, &value_arg(new)?)?;
            if json {
                println!("{}", to_json(&view));
            } else if view.succeeded {
                println!("OK revision {}", view.revision);
            }
            if !view.succeeded {
                return Err(CliError::Usage(
                    view.error.unwrap_or_else(|| "compare failed".to_string()),
                ));
            }
            return Ok(());
        }
        KvOp::Ls {
            prefix,
            limit,
            stale,
        } => {
            let view = client.kv_list(prefix, *limit, *stale)?;
            if json {
                to_json(&view)
            } else {
                render::kv_list(&view)
            }
        }
        KvOp::Watch { prefix } => {
            client.kv_watch(prefix, |line| {
                if json {
                    println!("{}", serde_json::to_string(&line).unwrap_or_default());
                } else {
                    println!("{}", render::watch_line(&line));
                }
                line.kind != "lagged"
            })?;
            return Ok(());
        }
    };
    println!("{text}");
    Ok(())
}

/// Prints each healing event from the node's WebSocket until the node closes it (or the
/// process is interrupted): one JSON object per line with `--json`, else a short line.
fn follow_events(url: &str, json: bool) -> Result<(), CliError> {
    let ws_url = format!("{}/api/v1/events", url.replacen("http://", "ws://", 1));
    let (mut socket, _) = tungstenite::connect(ws_url.as_str())
        .map_err(|error| CliError::Follow(format!("{ws_url}: {error}")))?;
    loop {
        let message = match socket.read() {
            Ok(message) => message,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(());
            }
            Err(error) => return Err(CliError::Follow(format!("{ws_url}: {error}"))),
        };
        let tungstenite::Message::Text(text) = message else {
            continue;
        };
        if json {
            println!("{text}");
        } else {
            println!("{}", render::event_line(text.as_str()));
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising our own view types cannot fail: they hold only strings, numbers and lists.
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}

fn api_url(args: &CtlArgs) -> Result<String, CliError> {
    if let Some(url) = &args.api {
        return Ok(url.clone());
    }
    let config = match &args.config {
        Some(path) => Some(path.clone()),
        None => Path::new(LOCAL_CONFIG)
            .exists()
            .then(|| PathBuf::from(LOCAL_CONFIG)),
    };
    match config {
        Some(path) => Ok(url_for(NodeConfig::load(&path)?.api_listen)),
        None => Ok(DEFAULT_API_URL.to_string()),
    }
}

/// The URL to reach an API listening on `listen`; a wildcard address is reached on loopback.
pub fn url_for(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        assert_eq!(
            url_for("0.0.0.0:7401".parse().unwrap()),
            "http://127.0.0.1:7401"
        );
        assert_eq!(url_for("[::]:7401".parse().unwrap()), "http://[::1]:7401");
        assert_eq!(
            url_for("127.0.0.2:9".parse().unwrap()),
            "http://127.0.0.2:9"
        );
    }
}
