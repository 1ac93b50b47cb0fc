//! `LocalNet`: a mesh of real `x0tta6bl4 run` processes on 127.0.0.1, each in its own
//! directory with its own `node.yaml` and a `nodes.json` naming only its neighbours, so the
//! topology is enforced by the peer lists. Used by the demo and the integration tests.
//!
//! Every child is stopped when the `LocalNet` is dropped (SIGTERM, then SIGKILL after a grace
//! period), and, unless the mesh is meant to outlive this process, children also get
//! `PR_SET_PDEATHSIG = SIGKILL`, so they die even if this process is killed outright.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use node::{NodeConfig, RouteView};
use wire::NodeId;

use crate::client::{ApiClient, ClientError};

/// Most nodes in one local mesh. Each is a full daemon process with its own sockets; on a
/// 2-core machine a few dozen already share the CPU with the measurements.
pub const MAX_LOCAL_NODES: usize = 64;

/// Grace period for children to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Timeout of one API request while polling a local node: on loopback an answer takes
/// milliseconds, so a second means the node is stuck.
pub const POLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Trust domain of a local mesh. Node 1 is its CA node; the others join with one-time tokens
/// when they are first started, exactly as an operator would.
pub const TRUST_DOMAIN: &str = "mesh.local";

/// How long a joining node waits for the CA node to come up and answer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Lines of a node's log quoted when it dies unexpectedly.
const LOG_TAIL_LINES: usize = 5;

/// Why the local mesh could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum LocalNetError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Initialising a node (config, key) failed.
    #[error("node {index}: {source}")]
    Init {
        /// The node's number (1-based).
        index: usize,
        /// Why.
        source: node::NodeError,
    },
    /// A node process exited when it should be running.
    #[error("node {index} exited ({status}); last log lines: {log_tail}")]
    NodeExited {
        /// The node's number (1-based).
        index: usize,
        /// How it exited.
        status: ExitStatus,
        /// The end of its log, joined into one line.
        log_tail: String,
    },
    /// Something did not happen before its deadline.
    #[error("timed out after {seconds:.1} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it waited.
        seconds: f64,
    },
    /// A node API could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The node count is out of range.
    #[error("a local mesh has 2 to {MAX_LOCAL_NODES} nodes, not {0}")]
    NodeCount(usize),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalNetError {
    let what = what.into();
    move |source| LocalNetError::Io { what, source }
}

/// Settings of a local mesh.
#[derive(Debug, Clone, Default)]
pub struct LocalNetOptions {
    /// Extra YAML lines under `node_config.routing` (indented by four spaces), e.g.
    /// `"    probe_interval_ms: 50\n"`. Empty: the routing defaults.
    pub routing_yaml: String,
    /// Extra sections under `node_config` (indented by two spaces), e.g.
    /// `"  security:\n    svid_ttl_seconds: 10\n"`. Empty: none.
    pub extra_yaml: String,
    /// Extra sections for single nodes, by 0-based position (e.g. `services:` on one node);
    /// positions past the end get none.
    pub node_yaml: Vec<String>,
    /// Children survive this process (for `demo --keep`): no parent-death signal, and the
    /// directories are not deleted.
    pub detached: bool,
    /// Put the mesh's directories here instead of a fresh temporary directory.
    pub root: Option<PathBuf>,
}

/// One node of the mesh.
#[derive(Debug)]
pub struct LocalNode {
    /// Its number, 1-based, as shown to people.
    pub index: usize,
    /// Its identifier.
    pub id: NodeId,
    /// Its directory (config, data, log).
    pub dir: PathBuf,
    /// Its `node.yaml`.
    pub config_path: PathBuf,
    /// Its UDP address.
    pub udp: SocketAddr,
    /// Its API address.
    pub api: SocketAddr,
    /// A client for its API.
    pub client: ApiClient,
    child: Option<Child>,
}

impl LocalNode {
    /// The API's base URL.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The process id, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether a process was started and not killed or stopped since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }
}

/// A mesh of node processes on loopback.
#[derive(Debug)]
pub struct LocalNet {
    binary: PathBuf,
    root: PathBuf,
    temp: Option<tempfile::TempDir>,
    nodes: Vec<LocalNode>,
    detached: bool,
}

impl LocalNet {
    /// Writes the configuration of `count` nodes linked by `edges` (pairs of 0-based node
    /// indices), initialises each (data dir, key) and returns the mesh, not yet started.
    /// `binary` is the `x0tta6bl4` executable the nodes run.
    pub fn create(
        binary: &Path,
        count: usize,
        edges: &[(usize, usize)],
        options: &LocalNetOptions,
    ) -> Result<LocalNet, LocalNetError> {
        if !(2..=MAX_LOCAL_NODES).contains(&count) {
            return Err(LocalNetError::NodeCount(count));
        }
        let (temp, root) = match &options.root {
            Some(root) => {
                std::fs::create_dir_all(root)
                    .map_err(io_error(format!("creating {}", root.display())))?;
                (None, root.clone())
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("x0tta6bl4-mesh-")
                    .tempdir()
                    .map_err(io_error("creating a temporary directory"))?;
                let root = temp.path().to_path_buf();
                (Some(temp), root)
            }
        };
        let addresses = free_addresses(count)?;
        let mut nodes = Vec::with_capacity(count);
        for (position, (udp, api)) in addresses.iter().enumerate() {
            nodes.push(write_node(
                &root,
                position + 1,
                *udp,
                *api,
                &options.routing_yaml,
                &format!(
                    "{}{}",
                    options.extra_yaml,
                    options.node_yaml.get(position).map_or("", String::as_str)
                ),
            )?);
        }
        for (position, node) in nodes.iter().enumerate() {
            let neighbours: Vec<&LocalNode> = neighbours_of(position, edges)
                .into_iter()
                .map(|other| &nodes[other])
                .collect();
            write_peers(node, &neighbours)?;
        }
        Ok(LocalNet {
            binary: binary.to_path_buf(),
            root,
            temp,
            nodes,
            detached: options.detached,
        })
    }

    /// Gives every node a `kv` section naming the nodes at `voters` (0-based positions) as
    /// the store's voters; `extra` adds lines under `kv` (indented by four spaces). Call before
    /// the nodes first start.
    pub fn enable_kv(&self, voters: &[usize], extra: &str) -> Result<(), LocalNetError> {
        let ids: Vec<String> = voters
            .iter()
            .filter_map(|position| self.nodes.get(*position))
            .map(|node| format!("'{}'", node.id))
            .collect();
        let section = format!("  kv:\n    voters: [{}]\n{extra}", ids.join(", "));
        for node in &self.nodes {
            let mut yaml = std::fs::read_to_string(&node.config_path)
                .map_err(io_error(format!("reading {}", node.config_path.display())))?;
            yaml.push_str(&section);
            std::fs::write(&node.config_path, yaml)
                .map_err(io_error(format!("writing {}", node.config_path.display())))?;
        }
        Ok(())
    }

    /// The nodes, in order.
    pub fn nodes(&self) -> &[LocalNode] {
        &self.nodes
    }

    /// Node `position` (0-based).
    pub fn node(&self, position: usize) -> &LocalNode {
        &self.nodes[position]
    }

    /// The directory holding every node's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The position of the node with identifier `id`.
    pub fn position_of(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|node| node.id == *id)
    }

    /// A label for `id`: "node N" for members, the short id otherwise.
    pub fn label(&self, id: &NodeId) -> String {
        match self.position_of(id) {
            Some(position) => format!("node {}", position + 1),
            None => id.short(),
        }
    }

    fn join(&mut self, position: usize) -> Result<(), LocalNetError> {
        let index = self.nodes[position].index;
        let init_error = |source: node::NodeError| LocalNetError::Init { index, source };
        if !self.nodes[0].is_running() {
            self.start(0)?;
        }
        let deadline = Instant::now() + JOIN_TIMEOUT;
        let ca_config = NodeConfig::load(&self.nodes[0].config_path)
            .map_err(|error| init_error(error.into()))?;
        let config = NodeConfig::load(&self.nodes[position].config_path)
            .map_err(|error| init_error(error.into()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_error("starting a runtime to join"))?;
        loop {
            let token = node::membership::ca_token(
                &ca_config,
                600,
                Some(self.nodes[0].udp),
                crate::unix_now(),
            )
            .map_err(|error| init_error(error.into()))?;
            match runtime.block_on(node::membership::join(&config, &token, crate::unix_now())) {
                Ok(_) => return Ok(()),
                // The CA node may still be starting: try again with a fresh token.
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, index, "join attempt failed; retrying");
                    self.check_running()?;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => return Err(init_error(error.into())),
            }
        }
    }

    /// Starts every node that is not running.
    pub fn start_all(&mut self) -> Result<(), LocalNetError> {
        for position in 0..self.nodes.len() {
            if !self.nodes[position].is_running() {
                self.start(position)?;
            }
        }
        Ok(())
    }

    /// Starts node `position` (0-based) as a `run` child process, logging to its `node.log`.
    /// A node that is not yet a member first joins the trust domain: node 1 (the CA node) is
    /// started if needed and mints a one-time token, which the node redeems over its link.
    pub fn start(&mut self, position: usize) -> Result<(), LocalNetError> {
        if position != 0
            && !self.nodes[position]
                .dir
                .join("data")
                .join(node::membership::SVID_NAME)
                .exists()
        {
            self.join(position)?;
        }
        let detached = self.detached;
        let node = &mut self.nodes[position];
        let log_path = node.log_path();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(format!("opening {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_error("duplicating the log handle"))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("run")
            .arg("--config")
            .arg(&node.config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        if !detached {
            die_with_parent(&mut command);
        }
        let child = command
            .spawn()
            .map_err(io_error(format!("starting {}", self.binary.display())))?;
        node.child = Some(child);
        Ok(())
    }

    /// Kills node `position` with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self, position: usize) -> Result<(), LocalNetError> {
        let node = &mut self.nodes[position];
        if let Some(mut child) = node.child.take() {
            child
                .kill()
                .map_err(io_error(format!("killing node {}", node.index)))?;
            child
                .wait()
                .map_err(io_error(format!("reaping node {}", node.index)))?;
        }
        Ok(())
    }

    /// Fails if a node that should be running has exited, quoting its log.
    pub fn check_running(&mut self) -> Result<(), LocalNetError> {
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child
                && let Ok(Some(status)) = child.try_wait()
            {
                node.child = None;
                return Err(LocalNetError::NodeExited {
                    index: node.index,
                    status,
                    log_tail: log_tail(&node.log_path()),
                });
            }
        }
        Ok(())
    }

    /// Waits until every running node's API answers `/health`.
    pub fn wait_healthy(
        &mut self,
        timeout: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<(), LocalNetError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if self
                .nodes
                .iter()
                .filter(|node| node.is_running())
                .all(|node| node.client.healthy())
            {
                return Ok(());
            }
            poll_pause(deadline, timeout, "every node's API to answer", interrupted)?;
        }
    }

    /// Every running node's routing table (`None` for stopped nodes), one request per node.
    pub fn tables(&self) -> Result<Vec<Option<Vec<RouteView>>>, LocalNetError> {
        self.nodes
            .iter()
            .map(|node| {
                if node.is_running() {
                    node.client.routes().map(Some).map_err(LocalNetError::from)
                } else {
                    Ok(None)
                }
            })
            .collect()
    }

    /// Whether every running node forwards to every other running node along a working path:
    /// checked by walking next hops through the tables, not by trusting that an entry exists.
    pub fn fully_converged(&self) -> Result<bool, LocalNetError> {
        let tables = self.tables()?;
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|position| tables[*position].is_some())
            .collect();
        Ok(running.iter().all(|&from| {
            running
                .iter()
                .all(|&to| self.walk_in(&tables, from, to).is_some())
        }))
    }

    /// Waits until [`LocalNet::fully_converged`]; returns when that was first seen.
    pub fn wait_converged(
        &mut self,
        timeout: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Instant, LocalNetError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if self.fully_converged()? {
                return Ok(Instant::now());
            }
            poll_pause(
                deadline,
                timeout,
                "every node to forward to every other node",
                interrupted,
            )?;
        }
    }

    /// Follows next hops from `from` towards `to` through the running nodes' routing tables.
    /// Returns the positions visited (including both ends), or `None` if a hop is missing,
    /// leads to a stopped node, or loops.
    pub fn walk(&self, from: usize, to: usize) -> Result<Option<Vec<usize>>, LocalNetError> {
        Ok(self.walk_in(&self.tables()?, from, to))
    }

    /// [`LocalNet::walk`] over tables already fetched.
    fn walk_in(
        &self,
        tables: &[Option<Vec<RouteView>>],
        from: usize,
        to: usize,
    ) -> Option<Vec<usize>> {
        let destination = self.nodes[to].id;
        let mut path = vec![from];
        let mut current = from;
        while current != to {
            let routes = tables[current].as_ref()?;
            let route = routes
                .iter()
                .find(|route| route.destination == destination)?;
            let next = self.position_of(&route.next_hop)?;
            // A repeated node is a loop; the path can never be longer than the mesh.
            if path.contains(&next) || tables[next].is_none() || path.len() > self.nodes.len() {
                return None;
            }
            path.push(next);
            current = next;
        }
        Some(path)
    }

    /// Stops every child: SIGTERM, then SIGKILL for those still running after a grace period.
    pub fn stop_all(&mut self) {
        for node in &self.nodes {
            if let Some(child) = &node.child
                && let Ok(pid) = i32::try_from(child.id())
            {
                // SAFETY: kill(2) with a pid of our own unreaped child only sends a signal.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for node in &mut self.nodes {
            let Some(mut child) = node.child.take() else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }

    /// Leaves the children running and the directories in place after this value is gone;
    /// returns the root directory.
    pub fn detach(mut self) -> PathBuf {
        for node in &mut self.nodes {
            // Dropping a Child neither kills nor waits for it.
            node.child = None;
        }
        if let Some(temp) = self.temp.take() {
            let _ = temp.keep();
        }
        self.root.clone()
    }

    /// Keeps the directories (logs) after the mesh is dropped; returns where they are.
    pub fn keep_files(&mut self) -> PathBuf {
        if let Some(temp) = self.temp.take() {
            let _ = temp.keep();
        }
        self.root.clone()
    }
}

impl Drop for LocalNet {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Sleeps one polling interval, failing once `deadline` has passed or on interruption.
pub fn poll_pause(
    deadline: Instant,
    timeout: Duration,
    what: &str,
    interrupted: &dyn Fn() -> bool,
) -> Result<(), LocalNetError> {
    if Instant::now() >= deadline {
        return Err(LocalNetError::Timeout {
            what: what.to_string(),
            seconds: timeout.as_secs_f64(),
        });
    }
    if interrupted() {
        return Err(LocalNetError::Timeout {
            what: format!("{what} (interrupted)"),
            seconds: 0.0,
        });
    }
    std::thread::sleep(Duration::from_millis(20));
    Ok(())
}

fn neighbours_of(position: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut neighbours: Vec<usize> = edges
        .iter()
        .filter_map(|&(a, b)| {
            if a == position {
                Some(b)
            } else if b == position {
                Some(a)
            } else {
                None
            }
        })
        .collect();
    neighbours.sort_unstable();
    neighbours.dedup();
    neighbours
}

/// Lowest port the mesh uses: below it live well-known services and their usual neighbours.
const PORT_FLOOR: u16 = 20_000;

/// Most candidate ports tried before falling back to kernel-chosen ones.
const MAX_PORT_ATTEMPTS: usize = 2_000;

/// Finds `count` pairs of free loopback ports (UDP for the mesh, TCP for the API).
///
/// The nodes bind these ports some milliseconds after they are chosen. Ports the kernel hands
/// out for "any port" binds could be taken by another program in that window, so candidates
/// come from below the kernel's ephemeral range, where such binds never land. Every candidate
/// is proven free by binding it, and all sockets are held until every port is chosen, so the
/// pairs are distinct.
fn free_addresses(count: usize) -> Result<Vec<(SocketAddr, SocketAddr)>, LocalNetError> {
    let mut held: Vec<(UdpSocket, TcpListener)> = Vec::with_capacity(count);
    let ephemeral_low = ephemeral_port_floor();
    if ephemeral_low > PORT_FLOOR {
        let span = u64::from(ephemeral_low - PORT_FLOOR);
        let mut state = port_seed();
        for _ in 0..MAX_PORT_ATTEMPTS {
            if held.len() == count {
                break;
            }
            state = splitmix(state);
            // The offset is below `span`, which fits in u16, so the sum stays below the floor
            // of the ephemeral range.
            let port = PORT_FLOOR + u16::try_from(state % span).unwrap_or(0);
            if let (Ok(udp), Ok(tcp)) = (
                UdpSocket::bind(("127.0.0.1", port)),
                TcpListener::bind(("127.0.0.1", port)),
            ) {
                held.push((udp, tcp));
            }
        }
    }
    while held.len() < count {
        let udp = UdpSocket::bind("127.0.0.1:0").map_err(io_error("finding a free UDP port"))?;
        let tcp = TcpListener::bind("127.0.0.1:0").map_err(io_error("finding a free TCP port"))?;
        held.push((udp, tcp));
    }
    held.iter()
        .map(|(udp, tcp)| {
            let udp = udp.local_addr().map_err(io_error("reading a port"))?;
            let tcp = tcp.local_addr().map_err(io_error("reading a port"))?;
            Ok((udp, tcp))
        })
        .collect()
}

/// The lowest port of the kernel's ephemeral range (`ip_local_port_range`), or Linux's
/// default if it cannot be read.
fn ephemeral_port_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .next()
                .and_then(|low| low.parse().ok())
        })
        .unwrap_or(32_768)
}

/// A seed that differs between processes and runs, so parallel meshes try different ports.
fn port_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// One step of SplitMix64.
fn splitmix(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn write_node(
    root: &Path,
    index: usize,
    udp: SocketAddr,
    api: SocketAddr,
    routing_yaml: &str,
    extra_yaml: &str,
) -> Result<LocalNode, LocalNetError> {
    let dir = root.join(format!("node{index}"));
    std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
    let config_path = dir.join("node.yaml");
    let routing = if routing_yaml.is_empty() {
        String::new()
    } else {
        format!("  routing:\n{routing_yaml}")
    };
    let yaml = format!(
        "# Node {index} of a local x0tta6bl4 mesh.\nnode_config:\n  identity:\n    data_dir: data\n  network:\n    listen: \"{udp}\"\n    interfaces: []\n    bootstrap: nodes.json\n    tun: 'off'\n{routing}{extra_yaml}  api:\n    listen: \"{api}\"\n"
    );
    std::fs::write(&config_path, yaml)
        .map_err(io_error(format!("writing {}", config_path.display())))?;
    // An empty peer list until every node has an id; `write_peers` fills it in.
    std::fs::write(dir.join("nodes.json"), "[]\n").map_err(io_error("writing nodes.json"))?;
    let config = NodeConfig::load(&config_path).map_err(|error| LocalNetError::Init {
        index,
        source: error.into(),
    })?;
    let report =
        node::init(&config, None).map_err(|source| LocalNetError::Init { index, source })?;
    if index == 1 {
        node::membership::ca_init(
            &config,
            TRUST_DOMAIN,
            config.svid_ttl_seconds,
            crate::unix_now(),
        )
        .map_err(|source| LocalNetError::Init {
            index,
            source: source.into(),
        })?;
    }
    let client = ApiClient::new(&format!("http://{api}"), POLL_REQUEST_TIMEOUT)?;
    Ok(LocalNode {
        index,
        id: report.node_id,
        dir,
        config_path,
        udp,
        api,
        client,
        child: None,
    })
}

fn write_peers(node: &LocalNode, neighbours: &[&LocalNode]) -> Result<(), LocalNetError> {
    let peers: Vec<serde_json::Value> = neighbours
        .iter()
        .map(|peer| serde_json::json!({ "address": peer.udp.to_string(), "node_id": peer.id.to_string() }))
        .collect();
    let text = serde_json::to_string_pretty(&peers)
        .map_err(|error| io_error("encoding nodes.json")(error.into()))?;
    std::fs::write(node.dir.join("nodes.json"), text + "\n").map_err(io_error("writing nodes.json"))
}

/// Makes the child receive SIGKILL when the thread that spawned it exits, so that no node
/// outlives a demo or test that was killed without a chance to clean up.
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl and
    // getppid, both async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect; then there is no one to
            // clean up after us, so do not start at all.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other(
                    "parent exited before the node started",
                ));
            }
            Ok(())
        });
    }
}

/// The last lines of a log, on one line.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(LOG_TAIL_LINES).collect();
    if lines.is_empty() {
        return format!("(empty log {})", path.display());
    }
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_come_from_edges_in_both_directions() {
        let edges = [(0, 1), (1, 2), (2, 0), (1, 0)];
        assert_eq!(neighbours_of(0, &edges), vec![1, 2]);
        assert_eq!(neighbours_of(1, &edges), vec![0, 2]);
        assert_eq!(neighbours_of(3, &edges), Vec::<usize>::new());
    }

    #[test]
    fn free_addresses_are_distinct_loopback_ports_below_the_ephemeral_range() {
        let addresses = free_addresses(8).unwrap();
        let floor = ephemeral_port_floor();
        assert!(
            addresses.iter().all(|(udp, api)| udp.port() < floor
                && api.port() < floor
                && udp.port() >= PORT_FLOOR),
            "{addresses:?}"
        );
        assert!(
            addresses
                .iter()
                .all(|(udp, api)| udp.ip().is_loopback() && api.ip().is_loopback())
        );
        // UDP and TCP ports live in different spaces, so a UDP and a TCP port may coincide;
        // within each protocol they must not.
        let udp: std::collections::HashSet<u16> =
            addresses.iter().map(|(udp, _)| udp.port()).collect();
        let tcp: std::collections::HashSet<u16> =
            addresses.iter().map(|(_, api)| api.port()).collect();
        assert_eq!((udp.len(), tcp.len()), (8, 8));
    }

    #[test]
    fn created_mesh_has_configs_keys_and_neighbour_lists() {
        let net = LocalNet::create(
            Path::new("/nonexistent"),
            3,
            &[(0, 1), (1, 2)],
            &LocalNetOptions::default(),
        )
        .unwrap();
        let middle = net.node(1);
        let config = NodeConfig::load(&middle.config_path).unwrap();
        assert_eq!(config.listen, middle.udp);
        assert_eq!(config.api_listen, middle.api);
        let peers = node::bootstrap::load(&config.bootstrap_path().unwrap()).unwrap();
        let expected: Vec<_> = [0, 2]
            .iter()
            .map(|&p| (net.node(p).udp, Some(net.node(p).id)))
            .collect();
        assert_eq!(
            peers
                .iter()
                .map(|peer| (peer.address, peer.node_id))
                .collect::<Vec<_>>(),
            expected
        );
        assert_eq!(net.label(&net.node(2).id), "node 3");
        let root = net.root().to_path_buf();
        drop(net);
        assert!(!root.exists(), "temporary directory is removed");
    }
}
