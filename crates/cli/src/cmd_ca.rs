//! `x0tta6bl4 ca`: the trust domain's CA on the CA node: create it, mint join tokens, revoke
//! nodes.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use node::NodeConfig;
use wire::NodeId;

use crate::CliError;

/// Arguments of `ca`.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: CaAction,
    /// The CA node's configuration file.
    #[arg(long, global = true, value_name = "PATH", default_value = "node.yaml")]
    pub config: PathBuf,
}

/// CA actions.
#[derive(Debug, Subcommand)]
pub enum CaAction {
    /// Create the CA of a new trust domain on this node (creating the node keys if needed)
    /// and give this node its SVID.
    Init {
        /// Trust domain name, e.g. example.org.
        #[arg(long)]
        trust_domain: String,
    },
    /// Print a one-time join token for `x0tta6bl4 init --join-token`.
    Token {
        /// How long the token stays valid: seconds, or with a unit (90s, 10m, 2h).
        #[arg(long, default_value = "10m", value_parser = parse_duration_seconds)]
        ttl: i64,
        /// Address joining nodes reach this node's links at [default: network.listen, with a
        /// wildcard IP replaced by loopback].
        #[arg(long, value_name = "ADDR:PORT")]
        address: Option<SocketAddr>,
    },
    /// Revoke a node: its links are closed everywhere within seconds and it cannot re-link.
    Revoke {
        /// The node id (32 hex digits).
        node_id: NodeId,
    },
}

/// Runs `ca`.
pub fn run(args: &CaArgs) -> Result<(), CliError> {
    let config = NodeConfig::load(&args.config)?;
    let now = crate::unix_now();
    match &args.action {
        CaAction::Init { trust_domain } => {
            let report = node::init(&config, None)?;
            let ca = node::membership::ca_init(&config, trust_domain, config.svid_ttl_seconds, now)
                .map_err(node::NodeError::from)?;
            eprintln!("CA         {}", ca.ca_dir.display());
            eprintln!("CA hash    {}", ca.bundle_hash);
            eprintln!("this node  {}", ca.spiffe_id);
            println!("{}", report.node_id);
        }
        CaAction::Token { ttl, address } => {
            let token = node::membership::ca_token(&config, *ttl, *address, now)
                .map_err(node::NodeError::from)?;
            eprintln!(
                "valid for {ttl} s, once; give it to the joining node's `x0tta6bl4 init --join-token`"
            );
            println!("{token}");
        }
        CaAction::Revoke { node_id } => {
            node::membership::ca_revoke(&config, *node_id, now).map_err(node::NodeError::from)?;
            eprintln!("revoked {node_id}; the running CA node spreads the revocation to the mesh");
        }
    }
    Ok(())
}

/// Parses `600`, `90s`, `10m`, `2h` into seconds.
pub fn parse_duration_seconds(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((index, _)) => text.split_at(index),
        None => (text, "s"),
    };
    let value: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 600, 90s, 10m or 2h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{text:?}: unit must be s, m or h")),
    };
    value
        .checked_mul(scale)
        .filter(|seconds| *seconds > 0)
        .ok_or_else(|| format!("{text:?} must be a positive duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bad_ones_are_refused() {
        assert_eq!(parse_duration_seconds("600"), Ok(600));
        assert_eq!(parse_duration_seconds("10m"), Ok(600));
        assert_eq!(parse_duration_seconds("2h"), Ok(7200));
        for bad in ["", "m", "10d", "-5", "0s", "99999999999999999999h"] {
            assert!(parse_duration_seconds(bad).is_err(), "{bad}");
        }
    }
}
