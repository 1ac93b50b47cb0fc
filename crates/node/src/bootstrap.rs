//! `nodes.json`: the static peer list, parsed and validated into `transport::StaticPeer`s.
//!
//! The file is a JSON list of objects: `[{"address": "127.0.0.1:7402"}, {"address":
//! "[2001:db8::7]:7400", "node_id": "<32 hex digits>"}]`. `address` is required; `node_id` is
//! optional and, when given, lets the node reach that peer before hearing from it. Errors name
//! the entry and field, e.g. `nodes.json: [2].address: ...`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use transport::StaticPeer;
use wire::NodeId;

/// Most static peers a node accepts. Every peer gets a hello each hello interval; a list
/// longer than this is a misconfiguration, or a job for multicast discovery.
pub const MAX_BOOTSTRAP_PEERS: usize = 256;

/// Largest `nodes.json` read (256 entries take about 20 KB).
pub const MAX_BOOTSTRAP_BYTES: u64 = 1024 * 1024;

/// File name of the copy `init --bootstrap` keeps in the data directory.
pub const BOOTSTRAP_COPY_NAME: &str = "nodes.json";

/// A peer list the node cannot use; every variant names the file, and the entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_BOOTSTRAP_BYTES`].
    #[error("{path}: file is larger than {MAX_BOOTSTRAP_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a JSON list of peer objects; `field` is where it went wrong.
    #[error("{path}: {field}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where, e.g. `[1].adress` or `.` for the whole document.
        field: String,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// An entry has a value the node cannot use.
    #[error("{path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where, e.g. `[2].address`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerEntry {
    address: String,
    #[serde(default)]
    node_id: Option<String>,
}

/// Reads and validates `path`.
pub fn load(path: &Path) -> Result<Vec<StaticPeer>, BootstrapError> {
    let read_error = |source| BootstrapError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_BOOTSTRAP_BYTES {
        return Err(BootstrapError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse(&text, path)
}

/// Parses and validates `text`, naming `path` in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<StaticPeer>, BootstrapError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let entries: Vec<PeerEntry> =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            BootstrapError::Parse {
                path: path.to_path_buf(),
                field: error.path().to_string(),
                message: error.inner().to_string(),
            }
        })?;
    let invalid = |field: String, reason: String| BootstrapError::Invalid {
        path: path.to_path_buf(),
        field,
        reason,
    };
    if entries.len() > MAX_BOOTSTRAP_PEERS {
        return Err(invalid(
            ".".to_string(),
            format!(
                "{} peers listed, at most {MAX_BOOTSTRAP_PEERS} are supported",
                entries.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut peers = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let address = parse_address(&entry.address)
            .map_err(|reason| invalid(format!("[{index}].address"), reason))?;
        if !seen.insert(address) {
            return Err(invalid(
                format!("[{index}].address"),
                format!("{address} is listed twice"),
            ));
        }
        let node_id = match &entry.node_id {
            Some(text) => Some(text.parse::<NodeId>().map_err(|error| {
                invalid(format!("[{index}].node_id"), format!("{text:?}: {error}"))
            })?),
            None => None,
        };
        peers.push(StaticPeer { address, node_id });
    }
    Ok(peers)
}

fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let address: SocketAddr = text.trim().parse().map_err(|_| {
        format!("{text:?} is not an IP address with a port, such as 127.0.0.1:7400 or [::1]:7400")
    })?;
    if address.ip().is_unspecified() || address.ip().is_multicast() {
        return Err(format!("{address} is not a peer's unicast address"));
    }
    if address.port() == 0 {
        return Err(format!(
            "{address} has port 0; a peer listens on a fixed port"
        ));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<StaticPeer>, BootstrapError> {
        parse(text, Path::new("nodes.json"))
    }

    #[test]
    fn valid_list_with_and_without_node_ids() {
        let id = NodeId::from_index(7);
        let text = format!(
            r#"[{{"address": "127.0.0.1:7402"}}, {{"address": "[::1]:7400", "node_id": "{id}"}}]"#
        );
        let peers = parse_text(&text).unwrap();
        assert_eq!(
            peers,
            vec![
                StaticPeer {
                    address: "127.0.0.1:7402".parse().unwrap(),
                    node_id: None
                },
                StaticPeer {
                    address: "[::1]:7400".parse().unwrap(),
                    node_id: Some(id)
                },
            ]
        );
        assert_eq!(parse_text("[]").unwrap(), Vec::new());
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let cases = [
            (
                "{}",
                "nodes.json: .: invalid type: map, expected a sequence",
            ),
            (
                "[{\"adress\": \"127.0.0.1:1\"}]",
                "nodes.json: [0].adress: unknown field `adress`",
            ),
            (
                "[{\"node_id\": null}]",
                "nodes.json: [0]: missing field `address`",
            ),
            (
                "[{\"address\": \"127.0.0.1:1\"}, {\"address\": \"localhost:1\"}]",
                "nodes.json: [1].address: \"localhost:1\" is not an IP address",
            ),
            (
                "[{\"address\": \"0.0.0.0:7400\"}]",
                "nodes.json: [0].address: 0.0.0.0:7400 is not a peer's unicast address",
            ),
            (
                "[{\"address\": \"127.0.0.1:0\"}]",
                "nodes.json: [0].address: 127.0.0.1:0 has port 0",
            ),
            (
                "[{\"address\": \"127.0.0.1:1\"}, {\"address\": \"127.0.0.1:1\"}]",
                "nodes.json: [1].address: 127.0.0.1:1 is listed twice",
            ),
            (
                "[{\"address\": \"127.0.0.1:1\", \"node_id\": \"xyz\"}]",
                "nodes.json: [0].node_id: \"xyz\": node id must be 32 hex digits",
            ),
            (
                "[{\"address\": 7400}]",
                "nodes.json: [0].address: invalid type: integer `7400`, expected a string",
            ),
            ("[", "nodes.json: .: EOF while parsing a list"),
        ];
        for (text, expected) in cases {
            let message = parse_text(text).expect_err(text).to_string();
            assert!(
                message.contains(expected),
                "for {text:?}\n  got: {message}\n want: {expected}"
            );
        }
    }

    #[test]
    fn list_length_is_bounded() {
        let entries: Vec<String> = (1..=MAX_BOOTSTRAP_PEERS + 1)
            .map(|port| format!("{{\"address\": \"127.0.0.1:{port}\"}}"))
            .collect();
        let text = format!("[{}]", entries.join(","));
        let message = parse_text(&text).unwrap_err().to_string();
        assert!(
            message.contains("257 peers listed, at most 256"),
            "{message}"
        );
    }
}
