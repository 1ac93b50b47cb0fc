//! `x0tta6bl4 ctl`: asks a running node for its status, peers, routes, identity or replicated
//! state, and sends or receives datagrams.

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
}

/// What `ctl crdt` can show.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CrdtQuery {
    /// Collections with their digests, and which neighbours are in sync.
    Status,
}

/// Runs `ctl`: prints the answer on stdout.
pub fn run(args: &CtlArgs) -> Result<(), CliError> {
    let url = api_url(args)?;
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
    };
    println!("{text}");
    Ok(())
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
