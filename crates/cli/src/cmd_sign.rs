//! `x0tta6bl4 sign` / `verify`: hybrid (Ed25519 + ML-DSA-65) signatures of files such as
//! configurations and playbooks, with the node's keys.
//!
//! A signature file is JSON: the signer's node id, both public keys and the hybrid signature,
//! all hex. `verify` checks that the keys derive the node id and that both halves verify.

use std::path::{Path, PathBuf};

use clap::Args;
use node::NodeConfig;
use wire::NodeId;

use crate::CliError;

/// Largest file signed or verified: configurations and playbooks are kilobytes.
const MAX_SIGNED_FILE_BYTES: u64 = 64 << 20;

/// Arguments of `sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The signing node's configuration file.
    #[arg(long, value_name = "PATH", default_value = "node.yaml")]
    pub config: PathBuf,
    /// The file to sign.
    #[arg(long, value_name = "PATH")]
    pub file: PathBuf,
    /// Where to write the signature [default: <file>.sig].
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The signed file.
    #[arg(long, value_name = "PATH")]
    pub file: PathBuf,
    /// The signature file [default: <file>.sig].
    #[arg(long, value_name = "PATH")]
    pub sig: Option<PathBuf>,
    /// Require this signer (node id, 32 hex digits).
    #[arg(long, value_name = "NODE_ID")]
    pub signer: Option<NodeId>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    signer: NodeId,
    ed25519: String,
    ml_dsa: String,
    signature: String,
}

fn read_limited(path: &Path) -> Result<Vec<u8>, CliError> {
    let fail = |reason: String| CliError::Usage(format!("{}: {reason}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|error| fail(error.to_string()))?
        .len();
    if size > MAX_SIGNED_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_SIGNED_FILE_BYTES} bytes")));
    }
    std::fs::read(path).map_err(|error| fail(error.to_string()))
}

fn default_sig(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Signs the file; prints the signature file's path.
pub fn sign(args: &SignArgs) -> Result<(), CliError> {
    let config = NodeConfig::load(&args.config)?;
    let keys = node::identity::NodeIdentity::load(&config.key_path)
        .map_err(node::NodeError::from)?
        .into_keys();
    let content = read_limited(&args.file)?;
    let signature = keys
        .sign(&content)
        .map_err(|error| CliError::Usage(error.to_string()))?;
    let file = SignatureFile {
        signer: keys.node_id(),
        ed25519: hex::encode(keys.public().ed25519),
        ml_dsa: hex::encode(&keys.public().ml_dsa),
        signature: hex::encode(signature),
    };
    let out = args.out.clone().unwrap_or_else(|| default_sig(&args.file));
    let text =
        serde_json::to_string_pretty(&file).map_err(|error| CliError::Usage(error.to_string()))?;
    std::fs::write(&out, text + "\n")
        .map_err(|error| CliError::Usage(format!("{}: {error}", out.display())))?;
    println!("{}", out.display());
    Ok(())
}

/// Verifies the file; exits non-zero with the reason when it does not verify.
pub fn verify(args: &VerifyArgs) -> Result<(), CliError> {
    let sig_path = args.sig.clone().unwrap_or_else(|| default_sig(&args.file));
    let bad = |reason: String| CliError::Verify(format!("{}: {reason}", sig_path.display()));
    let sig_bytes = read_limited(&sig_path)?;
    let file: SignatureFile = serde_json::from_slice(&sig_bytes)
        .map_err(|error| bad(format!("not a signature file: {error}")))?;
    let decode =
        |text: &str| hex::decode(text).map_err(|_| bad("hex field is not hex".to_string()));
    let ed25519: [u8; 32] = decode(&file.ed25519)?
        .try_into()
        .map_err(|_| bad("Ed25519 key must be 32 bytes".to_string()))?;
    let keys = identity::PublicKeys {
        ed25519,
        ml_dsa: decode(&file.ml_dsa)?,
    };
    if keys.node_id() != file.signer {
        return Err(bad(
            "the keys do not derive the signer's node id".to_string()
        ));
    }
    if let Some(required) = args.signer
        && required != file.signer
    {
        return Err(bad(format!("signed by {}, not by {required}", file.signer)));
    }
    let content = read_limited(&args.file)?;
    keys.verify(&content, &decode(&file.signature)?)
        .map_err(|error| bad(error.to_string()))?;
    println!(
        "good hybrid signature (Ed25519 + ML-DSA-65) by {}",
        file.signer
    );
    Ok(())
}
