//! `init`: creates the data directory and node key, and records the bootstrap peer list.

use std::path::{Path, PathBuf};

use wire::NodeId;

use crate::bootstrap::{self, BOOTSTRAP_COPY_NAME};
use crate::identity::{NodeIdentity, create_private_dir};
use crate::{NodeConfig, NodeError};

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// The node's identifier.
    pub node_id: NodeId,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The key file.
    pub key_path: PathBuf,
    /// False if a key already existed and was kept.
    pub created_key: bool,
    /// Where the bootstrap list was copied to, and how many peers it has.
    pub bootstrap: Option<(PathBuf, usize)>,
}

/// Creates `config`'s data directory (mode 0700) and node key (mode 0600) unless they exist,
/// and copies a validated `bootstrap` peer list into the data directory for `run` to use.
/// Running it again keeps the existing key, so the node keeps its identity.
pub fn init(config: &NodeConfig, bootstrap: Option<&Path>) -> Result<InitReport, NodeError> {
    if let (Some(given), Some(configured)) = (bootstrap, &config.bootstrap) {
        return Err(NodeError::BootstrapConflict {
            given: given.to_path_buf(),
            configured: configured.clone(),
            config: config.source.clone(),
        });
    }
    // Validate the peer list before creating anything, so a bad list leaves no half-made node.
    let peers = bootstrap.map(bootstrap::load).transpose()?;
    create_private_dir(&config.data_dir)?;
    if let Some(key_dir) = config.key_path.parent() {
        create_private_dir(key_dir)?;
    }
    let (identity, created_key) = if config.key_path.exists() {
        (NodeIdentity::load(&config.key_path)?, false)
    } else {
        (NodeIdentity::generate(&config.key_path)?, true)
    };
    let copied = match (bootstrap, peers) {
        (Some(from), Some(peers)) => {
            let to = config.data_dir.join(BOOTSTRAP_COPY_NAME);
            std::fs::copy(from, &to).map_err(|source| NodeError::CopyBootstrap {
                from: from.to_path_buf(),
                to: to.clone(),
                source,
            })?;
            Some((to, peers.len()))
        }
        _ => None,
    };
    Ok(InitReport {
        node_id: identity.node_id(),
        data_dir: config.data_dir.clone(),
        key_path: config.key_path.clone(),
        created_key,
        bootstrap: copied,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config_in(dir: &Path, extra: &str) -> NodeConfig {
        let path = dir.join("node.yaml");
        std::fs::write(&path, format!("node_config:\n{extra}")).unwrap();
        NodeConfig::load(&path).unwrap()
    }

    #[test]
    fn init_creates_key_once_and_copies_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path(), "");
        let peers = dir.path().join("peers.json");
        std::fs::write(&peers, r#"[{"address": "127.0.0.1:7402"}]"#).unwrap();

        let first = init(&config, Some(&peers)).unwrap();
        assert!(first.created_key);
        assert_eq!(
            first.bootstrap,
            Some((dir.path().join("data/nodes.json"), 1))
        );
        assert_eq!(
            config.bootstrap_path(),
            Some(dir.path().join("data/nodes.json"))
        );

        let second = init(&config, None).unwrap();
        assert!(!second.created_key);
        assert_eq!(
            second.node_id, first.node_id,
            "re-running init keeps the identity"
        );
    }

    #[test]
    fn bad_bootstrap_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path(), "");
        let peers = dir.path().join("peers.json");
        std::fs::write(&peers, r#"[{"address": "nowhere"}]"#).unwrap();
        let error = init(&config, Some(&peers)).unwrap_err().to_string();
        assert!(error.contains("[0].address"), "{error}");
        assert!(!config.data_dir.exists());
    }

    #[test]
    fn bootstrap_flag_conflicts_with_configured_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path(), "  network: { bootstrap: nodes.json }\n");
        let error = init(&config, Some(Path::new("other.json"))).unwrap_err();
        assert!(
            matches!(error, NodeError::BootstrapConflict { .. }),
            "{error}"
        );
        assert!(!config.data_dir.exists());
    }
}
