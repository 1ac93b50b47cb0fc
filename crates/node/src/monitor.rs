//! The Monitor part of the healing loop: node metrics from `sysinfo` (CPU, memory, the data
//! directory's disk) and runs of the health checks declared in `node.yaml` (HTTP GET, TCP
//! connect, program exit status), each turned into a `heal::Observation`.
//!
//! The runtime decides when: it calls [`NodeSampler::sample`] once per monitor period and
//! runs the checks [`CheckSchedule::due`] names, each with [`run_check`]. Every run ends
//! within its check's timeout, and a run that cannot even start is a failed run, never a
//! skipped one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use heal::{CheckKind, CheckSpec, Observation};
use serde::Serialize;
use sysinfo::{Disks, System};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::supervisor::GroupChild;

/// Why node metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The data directory cannot be resolved (it must exist to find its filesystem).
    #[error("cannot resolve data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// `sysinfo` cannot read this platform's figures.
    #[error("cannot read {what} from the system: {reason}")]
    System {
        /// Which figures.
        what: &'static str,
        /// `sysinfo`'s reason.
        reason: String,
    },
    /// No mounted filesystem contains the data directory, or it reports no size.
    #[error("no filesystem with a size contains {dir}")]
    NoDisk {
        /// The directory.
        dir: PathBuf,
    },
}

/// One sample of this node's resources, percentages from 0 to 100.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSample {
    /// CPU use since the previous sample, all cores.
    pub cpu_percent: f64,
    /// Memory not available to new processes.
    pub memory_percent: f64,
    /// Space of the data directory's filesystem that unprivileged writers cannot use.
    pub disk_percent: f64,
    /// Where that filesystem is mounted.
    pub disk_mount: PathBuf,
}

impl NodeSample {
    /// The observation `heal` takes.
    pub fn observation(&self) -> Observation {
        Observation::Node {
            cpu_percent: self.cpu_percent,
            memory_percent: self.memory_percent,
            disk_percent: self.disk_percent,
        }
    }

    /// The metrics snapshot stored with an incident when it opens.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "cpu_percent": self.cpu_percent,
            "memory_percent": self.memory_percent,
            "disk_percent": self.disk_percent,
            "disk_mount": self.disk_mount.display().to_string(),
        })
    }
}

/// Reads CPU, memory and disk use. Keeps `sysinfo`'s state between samples because CPU use
/// is a difference between two readings. Sampling reads `/proc` and calls `statvfs`, which
/// can block on a sick filesystem: the runtime should call it in `spawn_blocking`.
#[derive(Debug)]
pub struct NodeSampler {
    system: System,
    disks: Disks,
    data_dir: PathBuf,
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        (part / whole * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    }
}

impl NodeSampler {
    /// A sampler for the filesystem holding `data_dir` (which must exist). Takes the first
    /// CPU reading, so the first sample covers the time since this call.
    pub fn new(data_dir: &Path) -> Result<NodeSampler, MonitorError> {
        let data_dir = data_dir
            .canonicalize()
            .map_err(|source| MonitorError::DataDir {
                dir: data_dir.to_path_buf(),
                source,
            })?;
        let mut system = System::new().map_err(|e| MonitorError::System {
            what: "CPU and memory",
            reason: e.to_string(),
        })?;
        system.refresh_cpu_usage();
        let disks = Disks::new_with_refreshed_list().map_err(|e| MonitorError::System {
            what: "disks",
            reason: e.to_string(),
        })?;
        Ok(NodeSampler {
            system,
            disks,
            data_dir,
        })
    }

    /// One sample.
    pub fn sample(&mut self) -> Result<NodeSample, MonitorError> {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        let cpu_percent = f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0);
        let total = self.system.total_memory() as f64;
        let available = self.system.available_memory() as f64;
        let memory_percent = percent(total - available, total);
        // The filesystem holding the directory is the mounted one with the longest mount
        // point that prefixes it.
        let disk = self
            .disks
            .iter()
            .filter(|d| self.data_dir.starts_with(d.mount_point()) && d.total_space() > 0)
            .max_by_key(|d| d.mount_point().as_os_str().len())
            .ok_or_else(|| MonitorError::NoDisk {
                dir: self.data_dir.clone(),
            })?;
        let total_space = disk.total_space() as f64;
        let disk_percent = percent(total_space - disk.available_space() as f64, total_space);
        Ok(NodeSample {
            cpu_percent,
            memory_percent,
            disk_percent,
            disk_mount: disk.mount_point().to_path_buf(),
        })
    }
}

/// Longest status line read from an HTTP check's answer; a server that sends more without a
/// line break is not speaking HTTP/1.x.
pub const MAX_STATUS_LINE: usize = 1024;

/// One run of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRun {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What happened (status code, exit status, error), for logs and the API.
    pub detail: String,
}

impl CheckRun {
    /// The observation `heal` takes.
    pub fn observation(&self) -> Observation {
        Observation::Check {
            name: self.name.clone(),
            passed: self.passed,
        }
    }
}

/// Runs one check, bounded by its timeout.
pub async fn run_check(spec: &CheckSpec) -> CheckRun {
    let outcome = match tokio::time::timeout(spec.timeout, probe(&spec.kind)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("timed out after {} ms", spec.timeout.as_millis())),
    };
    match outcome {
        Ok(detail) => CheckRun {
            name: spec.name.clone(),
            passed: true,
            detail,
        },
        Err(detail) => CheckRun {
            name: spec.name.clone(),
            passed: false,
            detail,
        },
    }
}

/// `Ok(detail)` when the check passes.
async fn probe(kind: &CheckKind) -> Result<String, String> {
    match kind {
        CheckKind::Http(url) => {
            let status = http_get_status(url).await?;
            if (200..300).contains(&status) {
                Ok(format!("HTTP {status}"))
            } else {
                Err(format!("HTTP {status}"))
            }
        }
        CheckKind::Tcp(addr) => TcpStream::connect(addr.as_str())
            .await
            .map(|_| format!("connected to {addr}"))
            .map_err(|e| format!("connect to {addr}: {e}")),
        CheckKind::Exec(args) => exec_check(args).await,
        // The healing loop answers these from the supervisor's status without running anything.
        CheckKind::Process(service) => Err(format!(
            "process check of `{service}` is answered by the supervisor"
        )),
    }
}

/// Splits `http://host[:port][/path]` into a connect address, a Host header and a path.
fn parse_http_url(url: &str) -> Result<(String, String, String), String> {
    if url.starts_with("https://") {
        return Err(format!(
            "{url}: the node's check client speaks plain HTTP only; use a tcp check for TLS ports"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: not an http:// URL"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) {
        return Err(format!("{url}: bad host"));
    }
    // A port follows the last colon unless that colon is inside an IPv6 literal.
    let has_port = authority
        .rfind(':')
        .is_some_and(|i| !authority[i..].contains(']'));
    let address = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((address, authority.to_string(), path))
}

/// Sends `GET` and returns the status code of the answer (the body is not read).
async fn http_get_status(url: &str) -> Result<u16, String> {
    let (address, host, path) = parse_http_url(url)?;
    let mut stream = TcpStream::connect(address.as_str())
        .await
        .map_err(|e| format!("connect to {address}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: x0tta6bl4-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send to {address}: {e}"))?;
    let mut line = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !line.windows(2).any(|w| w == b"\r\n") {
        if line.len() >= MAX_STATUS_LINE {
            return Err(format!("{url}: no status line in {MAX_STATUS_LINE} bytes"));
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read from {address}: {e}"))?;
        if n == 0 {
            return Err(format!("{url}: connection closed before a status line"));
        }
        line.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&line);
    let mut parts = text.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let code = parts.next().and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(code) if version.starts_with("HTTP/1.") && (100..600).contains(&code) => Ok(code),
        _ => Err(format!("{url}: not an HTTP/1.x answer")),
    }
}

/// Runs a program in its own process group; exit status 0 passes. On timeout the whole group
/// is killed (the future is dropped with its `GroupChild`).
async fn exec_check(args: &[String]) -> Result<String, String> {
    let Some((program, rest)) = args.split_first() else {
        return Err("no program".to_string());
    };
    let mut command = Command::new(program);
    command
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = GroupChild::spawn(&mut command).map_err(|e| format!("{program}: {e}"))?;
    let status = child.wait().await.map_err(|e| format!("{program}: {e}"))?;
    if status.success() {
        Ok("exit status 0".to_string())
    } else {
        Err(format!("{program}: {status}"))
    }
}

/// When each check runs next. The runtime asks [`CheckSchedule::due`] on every wake-up and
/// sleeps until [`CheckSchedule::next_due`].
#[derive(Debug, Clone)]
pub struct CheckSchedule {
    /// One entry per check (at most `heal::healer::MAX_CHECKS`, which `heal` enforces when
    /// the healer is built from the same list).
    entries: Vec<(CheckSpec, Instant)>,
}

impl CheckSchedule {
    /// Every check is due at `now`, so a node starts with a fresh view.
    pub fn new(specs: Vec<CheckSpec>, now: Instant) -> CheckSchedule {
        CheckSchedule {
            entries: specs
                .into_iter()
                .take(heal::healer::MAX_CHECKS)
                .map(|s| (s, now))
                .collect(),
        }
    }

    /// Checks due at `now`, each moved to its next slot. A node that fell behind (suspended,
    /// overloaded) runs a check once and resumes one interval later, instead of running the
    /// missed ones in a burst.
    pub fn due(&mut self, now: Instant) -> Vec<CheckSpec> {
        let mut due = Vec::new();
        for (spec, next) in &mut self.entries {
            if *next <= now {
                let following = *next + spec.interval;
                *next = if following <= now {
                    now + spec.interval
                } else {
                    following
                };
                due.push(spec.clone());
            }
        }
        due
    }

    /// The earliest time a check is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.iter().map(|(_, next)| *next).min()
    }

    /// Number of scheduled checks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no check is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use tokio::net::TcpListener;

    fn spec(name: &str, kind: CheckKind, timeout_ms: u64) -> CheckSpec {
        CheckSpec {
            name: name.to_string(),
            service: name.to_string(),
            kind,
            interval: Duration::from_secs(10),
            timeout: Duration::from_millis(timeout_ms),
            failure_threshold: 2,
            success_threshold: 1,
            depends_on_mesh: false,
        }
    }

    /// Percentage of a filesystem unprivileged writers cannot use, from `stat -f`, an
    /// independent reading of the same `statvfs` figures.
    fn stat_disk_percent(dir: &Path) -> f64 {
        let out = std::process::Command::new("stat")
            .args(["-f", "-c", "%b %a"])
            .arg(dir)
            .output()
            .expect("stat runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<f64> = text
            .split_whitespace()
            .map(|f| f.parse().expect("number"))
            .collect();
        (fields[0] - fields[1]) / fields[0] * 100.0
    }

    fn meminfo_percent() -> f64 {
        let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
        let field = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .expect("field")
        };
        let total = field("MemTotal:");
        (total - field("MemAvailable:")) / total * 100.0
    }

    #[test]
    fn node_samples_agree_with_the_kernels_own_figures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sampler = NodeSampler::new(dir.path()).expect("sampler");
        // Keep one core busy between the two CPU readings so the figure cannot be zero.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let sample = sampler.sample().expect("sample");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().expect("spinner");

        assert!(
            sample.cpu_percent > 0.0 && sample.cpu_percent <= 100.0,
            "{sample:?}"
        );
        assert!(
            (sample.memory_percent - meminfo_percent()).abs() < 5.0,
            "{sample:?}"
        );
        assert!(
            (sample.disk_percent - stat_disk_percent(dir.path())).abs() < 1.0,
            "{sample:?}"
        );
        assert!(
            dir.path()
                .canonicalize()
                .expect("dir")
                .starts_with(&sample.disk_mount)
        );
        assert_eq!(
            sample.observation(),
            Observation::Node {
                cpu_percent: sample.cpu_percent,
                memory_percent: sample.memory_percent,
                disk_percent: sample.disk_percent,
            }
        );
        assert_eq!(sample.to_json()["disk_percent"], sample.disk_percent);
    }

    #[test]
    fn a_missing_data_directory_is_named() {
        let err = NodeSampler::new(Path::new("/nonexistent/x0tta6bl4-data")).expect_err("refused");
        assert!(
            err.to_string().contains("/nonexistent/x0tta6bl4-data"),
            "{err}"
        );
    }

    /// Serves one fixed answer per connection and hands each request head to the test.
    async fn http_server(answer: &'static str) -> (String, tokio::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0u8; 2048];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.try_send(String::from_utf8_lossy(&head).into_owned());
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (format!("http://{addr}"), rx)
    }

    #[tokio::test]
    async fn http_checks_pass_on_2xx_only() {
        let (base, mut requests) =
            http_server("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").await;
        let run = run_check(&spec(
            "web",
            CheckKind::Http(format!("{base}/health?deep=1")),
            5_000,
        ))
        .await;
        assert!(run.passed, "{run:?}");
        assert_eq!(run.detail, "HTTP 204");
        assert_eq!(
            run.observation(),
            Observation::Check {
                name: "web".to_string(),
                passed: true
            }
        );
        let head = requests.recv().await.expect("request seen");
        assert!(
            head.starts_with("GET /health?deep=1 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Host: {}", base.trim_start_matches("http://"))),
            "{head}"
        );

        let (sick, _rx) = http_server("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let run = run_check(&spec("sick", CheckKind::Http(format!("{sick}/")), 5_000)).await;
        assert!(!run.passed);
        assert_eq!(run.detail, "HTTP 503");

        let (garbage, _rx) = http_server("SSH-2.0-OpenSSH\r\n").await;
        let run = run_check(&spec("garbage", CheckKind::Http(garbage), 5_000)).await;
        assert!(!run.passed);
        assert!(run.detail.contains("not an HTTP/1.x answer"), "{run:?}");

        let run = run_check(&spec(
            "tls",
            CheckKind::Http("https://127.0.0.1:1/".to_string()),
            5_000,
        ))
        .await;
        assert!(!run.passed);
        assert!(run.detail.contains("plain HTTP only"), "{run:?}");
    }

    #[tokio::test]
    async fn a_silent_server_fails_the_check_at_its_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        // The listener accepts (the kernel completes the handshake) but never answers.
        let run = run_check(&spec("silent", CheckKind::Http(url), 200)).await;
        assert!(!run.passed);
        assert_eq!(run.detail, "timed out after 200 ms");
        drop(listener);
    }

    #[tokio::test]
    async fn tcp_checks_need_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let run = run_check(&spec("port", CheckKind::Tcp(addr.clone()), 5_000)).await;
        assert!(run.passed, "{run:?}");
        drop(listener);
        let run = run_check(&spec("port", CheckKind::Tcp(addr.clone()), 5_000)).await;
        assert!(!run.passed, "{run:?}");
        assert!(run.detail.contains(&addr), "{run:?}");
        let (base, _rx) = http_server("HTTP/1.1 200 OK\r\n\r\n").await;
        let served = base.trim_start_matches("http://").to_string();
        let run = run_check(&spec("port", CheckKind::Tcp(served), 5_000)).await;
        assert!(run.passed, "{run:?}");
    }

    #[tokio::test]
    async fn exec_checks_pass_on_exit_zero_and_are_killed_at_the_timeout() {
        let args = |a: &[&str]| CheckKind::Exec(a.iter().map(|s| s.to_string()).collect());
        assert!(run_check(&spec("ok", args(&["true"]), 5_000)).await.passed);
        let run = run_check(&spec("no", args(&["sh", "-c", "exit 4"]), 5_000)).await;
        assert!(!run.passed);
        assert!(run.detail.contains("exit status: 4"), "{run:?}");
        let run = run_check(&spec(
            "missing",
            args(&["/nonexistent/x0tta6bl4-check"]),
            5_000,
        ))
        .await;
        assert!(!run.passed);
        assert!(run.detail.contains("x0tta6bl4-check"), "{run:?}");

        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        // The shell's child writes its own pid and sleeps: it is the process that must not
        // outlive the timeout.
        let script = format!(
            "sh -c 'echo $$ > {}; exec sleep 1000'; true",
            pid_file.display()
        );
        let run = run_check(&spec("slow", args(&["sh", "-c", &script]), 3_000)).await;
        assert!(!run.passed);
        assert_eq!(run.detail, "timed out after 3000 ms");
        crate::supervisor::tests::until_dead(&pid_file).await;
    }

    #[test]
    fn the_schedule_runs_each_check_once_per_interval_without_bursts() {
        let t0 = Instant::now();
        let mut fast = spec("fast", CheckKind::Tcp("127.0.0.1:1".to_string()), 100);
        fast.interval = Duration::from_secs(1);
        let slow = spec("slow", CheckKind::Tcp("127.0.0.1:2".to_string()), 100);
        let mut schedule = CheckSchedule::new(vec![fast, slow], t0);
        let names = |v: Vec<CheckSpec>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(schedule.due(t0)), vec!["fast", "slow"]);
        assert_eq!(schedule.next_due(), Some(t0 + Duration::from_secs(1)));
        assert!(schedule.due(t0 + Duration::from_millis(999)).is_empty());
        assert_eq!(
            names(schedule.due(t0 + Duration::from_secs(1))),
            vec!["fast"]
        );
        // Thirty seconds late: each check runs once, then one interval later.
        let late = t0 + Duration::from_secs(40);
        assert_eq!(names(schedule.due(late)), vec!["fast", "slow"]);
        assert!(schedule.due(late).is_empty());
        assert_eq!(schedule.next_due(), Some(late + Duration::from_secs(1)));
        assert_eq!(schedule.len(), 2);
    }
}
