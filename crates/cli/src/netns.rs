//! `NetnsMesh`: real daemons in Linux network namespaces joined by veth pairs, for tests and
//! benchmarks that need real interfaces (TUN, multicast, link cuts). Any edge list; `line`,
//! `ring` and `grid` build the common ones.
//!
//! Every namespace name starts with a prefix unique to this process and mesh, so parallel
//! tests never collide; everything is deleted on drop, including after a panic. Only addresses
//! inside the namespaces are used. Node 1 is the CA node; the others are enrolled with join
//! tokens redeemed from inside node 1's namespace (enrolment needs no routed network between
//! namespaces), then find their neighbours by multicast on their veth interfaces and link
//! over link-local addresses.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wire::NodeId;

/// Most nodes in one namespace mesh; each is a daemon with its own namespace.
pub const MAX_NETNS_NODES: usize = 32;

/// Trust domain of namespace meshes.
pub const NETNS_TRUST_DOMAIN: &str = "netns.local";

/// Port of the links and of the API inside every namespace (each has its own port space).
const LINK_PORT: u16 = 7400;
/// Port of the API inside every namespace (on its own 127.0.0.1).
pub const API_PORT: u16 = 7401;

static MESH_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why the namespace mesh could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command failed.
    #[error("{command}: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr or the operating system's reason.
        reason: String,
    },
    /// The machine cannot run namespace meshes.
    #[error("network namespaces unavailable: {0}")]
    Unavailable(&'static str),
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

/// Why this machine cannot run namespace meshes, if it cannot.
pub fn unavailable() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root");
    }
    let works = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !works("ip", "-V") {
        return Some("iproute2's `ip` is not installed");
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing");
    }
    None
}

fn run(command: &mut Command) -> Result<Output, NetnsError> {
    let line = format!("{command:?}");
    let output = command.output().map_err(|error| NetnsError::Command {
        command: line.clone(),
        reason: error.to_string(),
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(NetnsError::Command {
            command: line,
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

fn ip(args: &[&str]) -> Result<Output, NetnsError> {
    run(Command::new("ip").args(args))
}

/// Reads `ping` output: the sequence numbers that got replies, sorted and without duplicates.
pub fn ping_replies(output: &str) -> Vec<u64> {
    let mut sequences: Vec<u64> = output
        .lines()
        .filter(|line| line.contains("bytes from"))
        .filter_map(|line| {
            line.split("icmp_seq=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    sequences.sort_unstable();
    sequences.dedup();
    sequences
}

/// The outage in a `ping -i <interval_ms>` run: the largest gap between consecutive replies,
/// in milliseconds (one interval when nothing was lost); `None` with fewer than two replies.
pub fn ping_outage_ms(replies: &[u64], interval_ms: u64) -> Option<u64> {
    replies
        .windows(2)
        .map(|pair| (pair[1] - pair[0]) * interval_ms)
        .max()
}

/// Edges of a line of `count` nodes.
pub fn line(count: usize) -> Vec<(usize, usize)> {
    (1..count).map(|index| (index - 1, index)).collect()
}

/// Edges of a ring of `count` nodes.
pub fn ring(count: usize) -> Vec<(usize, usize)> {
    let mut edges = line(count);
    if count > 2 {
        edges.push((count - 1, 0));
    }
    edges
}

/// Edges of a `width` × `height` grid.
pub fn grid(width: usize, height: usize) -> Vec<(usize, usize)> {
    let mut edges = Vec::new();
    for row in 0..height {
        for column in 0..width {
            let node = row * width + column;
            if column + 1 < width {
                edges.push((node, node + 1));
            }
            if row + 1 < height {
                edges.push((node, node + width));
            }
        }
    }
    edges
}

/// A node of the mesh.
#[derive(Debug)]
pub struct NetnsNode {
    /// Its namespace.
    pub namespace: String,
    /// Its id.
    pub id: NodeId,
    /// Its directory (config, data, log).
    pub dir: PathBuf,
    /// Its interfaces: (interface name, neighbour position).
    pub interfaces: Vec<(String, usize)>,
    child: Option<Child>,
}

/// The mesh: namespaces, veth links and daemons. Dropping it stops the daemons and deletes
/// the namespaces.
#[derive(Debug)]
pub struct NetnsMesh {
    binary: PathBuf,
    nodes: Vec<NetnsNode>,
    edges: Vec<(usize, usize)>,
    _dir: tempfile::TempDir,
}

impl NetnsMesh {
    /// Builds namespaces for `count` nodes joined by `edges`, configures, enrols and starts a
    /// daemon in each, and waits until every node routes to every other.
    pub fn start(
        binary: &Path,
        count: usize,
        edges: &[(usize, usize)],
        extra_yaml: &str,
    ) -> Result<NetnsMesh, NetnsError> {
        NetnsMesh::start_each(binary, count, edges, &|_| extra_yaml.to_string())
    }

    /// As [`NetnsMesh::start`], with `network:` lines of its own for each node (by position).
    pub fn start_each(
        binary: &Path,
        count: usize,
        edges: &[(usize, usize)],
        extra_yaml_of: &dyn Fn(usize) -> String,
    ) -> Result<NetnsMesh, NetnsError> {
        if let Some(reason) = unavailable() {
            return Err(NetnsError::Unavailable(reason));
        }
        let serial = MESH_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short enough for interface and namespace names; unique per process and mesh.
        let prefix = format!("x6{:x}{serial}", std::process::id() % 0xfffff);
        let dir = tempfile::Builder::new()
            .prefix("x0tta6bl4-netns-")
            .tempdir()
            .map_err(|error| NetnsError::Command {
                command: "mkdtemp".to_string(),
                reason: error.to_string(),
            })?;
        let mut mesh = NetnsMesh {
            binary: binary.to_path_buf(),
            nodes: Vec::new(),
            edges: edges.to_vec(),
            _dir: dir,
        };
        for position in 0..count.min(MAX_NETNS_NODES) {
            let namespace = format!("{prefix}n{position}");
            let _ = Command::new("ip")
                .args(["netns", "del", &namespace])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", &namespace])?;
            let node_dir = mesh._dir.path().join(format!("node{}", position + 1));
            std::fs::create_dir_all(&node_dir).map_err(|error| NetnsError::Command {
                command: format!("mkdir {}", node_dir.display()),
                reason: error.to_string(),
            })?;
            mesh.nodes.push(NetnsNode {
                namespace,
                id: NodeId([0; 16]),
                dir: node_dir,
                interfaces: Vec::new(),
                child: None,
            });
            mesh.exec_ok(position, &["ip", "link", "set", "lo", "up"])?;
            mesh.exec_ok(
                position,
                &["sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0"],
            )?;
            mesh.exec_ok(
                position,
                &["sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0"],
            )?;
        }
        for &(a, b) in edges {
            let (name_a, name_b) = (format!("l{b}"), format!("l{a}"));
            let (ns_a, ns_b) = (
                mesh.nodes[a].namespace.clone(),
                mesh.nodes[b].namespace.clone(),
            );
            ip(&[
                "link",
                "add",
                &format!("{prefix}t"),
                "netns",
                &ns_a,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{prefix}u"),
                "netns",
                &ns_b,
            ])?;
            ip(&[
                "-n",
                &ns_a,
                "link",
                "set",
                &format!("{prefix}t"),
                "name",
                &name_a,
            ])?;
            ip(&[
                "-n",
                &ns_b,
                "link",
                "set",
                &format!("{prefix}u"),
                "name",
                &name_b,
            ])?;
            ip(&["-n", &ns_a, "link", "set", &name_a, "up"])?;
            ip(&["-n", &ns_b, "link", "set", &name_b, "up"])?;
            mesh.nodes[a].interfaces.push((name_a, b));
            mesh.nodes[b].interfaces.push((name_b, a));
        }
        // The CA node first: the others enrol with it.
        for position in 0..mesh.nodes.len() {
            mesh.configure(position, &extra_yaml_of(position))?;
            mesh.launch(position)?;
            if position == 0 {
                mesh.wait_api(0)?;
            }
        }
        mesh.wait_converged(Duration::from_secs(60))?;
        Ok(mesh)
    }

    fn config_path(&self, position: usize) -> PathBuf {
        self.nodes[position].dir.join("node.yaml")
    }

    fn configure(&mut self, position: usize, extra_yaml: &str) -> Result<(), NetnsError> {
        let interfaces: Vec<&str> = self.nodes[position]
            .interfaces
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        let yaml = format!(
            "node_config:\n  network:\n    listen: '[::]:{LINK_PORT}'\n    interfaces: [{}]\n    tun: on\n{extra_yaml}  api:\n    listen: '127.0.0.1:{API_PORT}'\n",
            interfaces.join(", ")
        );
        let path = self.config_path(position);
        std::fs::write(&path, yaml).map_err(|error| NetnsError::Command {
            command: format!("write {}", path.display()),
            reason: error.to_string(),
        })?;
        let config = path.display().to_string();
        let binary = self.binary.display().to_string();
        let output = if position == 0 {
            self.exec_ok(
                0,
                &[
                    &binary,
                    "ca",
                    "init",
                    "--config",
                    &config,
                    "--trust-domain",
                    NETNS_TRUST_DOMAIN,
                ],
            )?
        } else {
            let ca_config = self.config_path(0).display().to_string();
            let token = run(Command::new(&self.binary).args([
                "ca",
                "token",
                "--config",
                &ca_config,
                "--address",
                &format!("[::1]:{LINK_PORT}"),
            ]))?;
            let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
            // Enrolment from inside the CA node's namespace (see the module doc); the node's
            // keys never leave its own directory.
            self.exec_ok(
                0,
                &[&binary, "init", "--config", &config, "--join-token", &token],
            )?
        };
        self.nodes[position].id = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|_| NetnsError::Command {
                command: "init".to_string(),
                reason: "no node id printed".to_string(),
            })?;
        Ok(())
    }

    /// Starts node `position`'s daemon (again).
    pub fn launch(&mut self, position: usize) -> Result<(), NetnsError> {
        let node = &self.nodes[position];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(node.dir.join("node.log"))
            .map_err(|error| NetnsError::Command {
                command: "open node.log".to_string(),
                reason: error.to_string(),
            })?;
        let log_err = log.try_clone().map_err(|error| NetnsError::Command {
            command: "dup node.log".to_string(),
            reason: error.to_string(),
        })?;
        let child = Command::new("ip")
            .args(["netns", "exec", &node.namespace])
            .arg(&self.binary)
            .args(["run", "--config"])
            .arg(self.config_path(position))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|error| NetnsError::Command {
                command: "spawn node".to_string(),
                reason: error.to_string(),
            })?;
        self.nodes[position].child = Some(child);
        Ok(())
    }

    /// Node `position`'s daemon process id, if it runs.
    pub fn pid(&self, position: usize) -> Option<u32> {
        self.nodes[position].child.as_ref().map(Child::id)
    }

    /// SIGKILLs node `position`'s daemon, leaving its links up.
    pub fn kill(&mut self, position: usize) {
        if let Some(mut child) = self.nodes[position].child.take() {
            // `ip netns exec` execs the daemon, so the child is the daemon itself.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets every link of node `position` down (or up).
    pub fn set_links(&self, position: usize, up: bool) -> Result<(), NetnsError> {
        let state = if up { "up" } else { "down" };
        for (name, _) in &self.nodes[position].interfaces {
            ip(&[
                "-n",
                &self.nodes[position].namespace,
                "link",
                "set",
                name,
                state,
            ])?;
        }
        Ok(())
    }

    /// The nodes.
    pub fn nodes(&self) -> &[NetnsNode] {
        &self.nodes
    }

    /// The edges.
    pub fn edges(&self) -> &[(usize, usize)] {
        &self.edges
    }

    /// Runs `work` on a new thread that has entered node `position`'s network namespace, so a
    /// test can open real sockets there.
    pub fn in_namespace<T: Send + 'static>(
        &self,
        position: usize,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T, NetnsError>> {
        let path = PathBuf::from("/var/run/netns").join(&self.nodes[position].namespace);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).map_err(|error| NetnsError::Command {
                command: format!("open {}", path.display()),
                reason: error.to_string(),
            })?;
            // SAFETY: setns on a namespace file descriptor we own; it changes only this thread's
            // network namespace, and the thread is ours alone.
            let entered =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            if entered != 0 {
                return Err(NetnsError::Command {
                    command: "setns".to_string(),
                    reason: std::io::Error::last_os_error().to_string(),
                });
            }
            Ok(work())
        })
    }

    /// Node `position`'s next hop towards node `target`, from its routing table.
    pub fn next_hop(&self, position: usize, target: usize) -> Option<usize> {
        let routes = self.api(position, "routes").ok()?;
        let target_id = self.nodes[target].id.to_string();
        let hop = routes
            .as_array()?
            .iter()
            .find(|route| route["destination"] == target_id.as_str())?["next_hop"]
            .as_str()?
            .to_string();
        self.nodes
            .iter()
            .position(|node| node.id.to_string() == hop)
    }

    /// A command run inside node `position`'s namespace.
    pub fn command(&self, position: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.nodes[position].namespace, program]);
        command
    }

    fn exec_ok(&self, position: usize, args: &[&str]) -> Result<Output, NetnsError> {
        let (program, rest) = args
            .split_first()
            .ok_or(NetnsError::Unavailable("empty command"))?;
        run(self.command(position, program).args(rest))
    }

    /// Asks node `position`'s API for `path` (JSON).
    pub fn api(&self, position: usize, path: &str) -> Result<serde_json::Value, NetnsError> {
        let binary = self.binary.display().to_string();
        let query = path.trim_start_matches('/');
        let output = self.exec_ok(
            position,
            &[
                &binary,
                "ctl",
                query,
                "--json",
                "--api",
                &format!("http://127.0.0.1:{API_PORT}"),
            ],
        )?;
        serde_json::from_slice(&output.stdout).map_err(|error| NetnsError::Command {
            command: format!("ctl {query}"),
            reason: error.to_string(),
        })
    }

    fn wait_api(&self, position: usize) -> Result<(), NetnsError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.api(position, "status").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(NetnsError::Timeout(format!("node {} API", position + 1)))
    }

    /// Waits until every node has a route to every other.
    pub fn wait_converged(&self, timeout: Duration) -> Result<(), NetnsError> {
        let deadline = Instant::now() + timeout;
        let others = self.nodes.len().saturating_sub(1);
        while Instant::now() < deadline {
            let converged = (0..self.nodes.len()).all(|position| {
                self.api(position, "routes")
                    .ok()
                    .and_then(|routes| routes.as_array().map(Vec::len))
                    == Some(others)
            });
            if converged {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(NetnsError::Timeout(
            "every node to route to every other".to_string(),
        ))
    }

    /// The last lines of node `position`'s log.
    pub fn log_tail(&self, position: usize) -> String {
        let text =
            std::fs::read_to_string(self.nodes[position].dir.join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for NetnsMesh {
    fn drop(&mut self) {
        for position in 0..self.nodes.len() {
            self.kill(position);
        }
        for node in &self.nodes {
            let _ = Command::new("ip")
                .args(["netns", "del", &node.namespace])
                .status();
        }
    }
}
