//! Load generator of `bench/kv-vs-etcd`: drives the x0tta6bl4 key-value API and etcd's v3 JSON
//! gateway with the same client shape (one HTTP/1.1 connection per client, 256-byte values),
//! starts the 3-voter loopback mesh, finds leaders, and measures write unavailability when the
//! leader is killed.
//!
//! Subcommands print one JSON object per line:
//! - `start-mesh --binary B --dir D`: a 3-node mesh (every node a voter), left running;
//! - `put|get --target ours|etcd --endpoints URL[,URL..] --n N --clients C`: throughput and
//!   latency (gets are linearizable and read one key);
//! - `leader --target ... --endpoints ...`: the index of the leader's endpoint;
//! - `failover --target ... --endpoints ... --pids P1,P2,P3`: an open-loop writer puts every
//!   5 ms round-robin over the endpoints (2 s timeout each); after 2 s the leader's process is
//!   killed with SIGKILL; the gap is from the last put acknowledged before the kill to the first
//!   acknowledged put issued after it (the method of the etcd reference measurements);
//! - `report --results FILE`: the comparison table from the collected lines.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Ours,
    Etcd,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Ours => "ours",
            Target::Etcd => "etcd",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    StartMesh {
        #[arg(long)]
        binary: std::path::PathBuf,
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    Put {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long)]
        endpoints: String,
        #[arg(long, default_value_t = 10_000)]
        n: u64,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value = "")]
        label: String,
    },
    Get {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long)]
        endpoints: String,
        #[arg(long, default_value_t = 10_000)]
        n: u64,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value = "")]
        label: String,
    },
    Leader {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long)]
        endpoints: String,
    },
    Failover {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long)]
        endpoints: String,
        #[arg(long)]
        pids: String,
        #[arg(long, default_value_t = 2)]
        pre_s: u64,
        #[arg(long, default_value_t = 6)]
        post_s: u64,
        #[arg(long, default_value = "")]
        label: String,
    },
    Report {
        #[arg(long)]
        results: std::path::PathBuf,
    },
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// One operation against one endpoint; `Ok` only on a 2xx answer with the expected body.
fn put(
    agent: &ureq::Agent,
    target: Target,
    endpoint: &str,
    key: &str,
    value: &[u8],
) -> Result<(), String> {
    let response = match target {
        Target::Ours => agent
            .put(&format!("{endpoint}/api/v1/kv/{key}"))
            .send(value),
        Target::Etcd => agent.post(&format!("{endpoint}/v3/kv/put")).send_json(
            serde_json::json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) }),
        ),
    };
    let mut response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if status == 200 {
        Ok(())
    } else {
        Err(format!(
            "{status}: {}",
            body.chars().take(120).collect::<String>()
        ))
    }
}

fn get(agent: &ureq::Agent, target: Target, endpoint: &str, key: &str) -> Result<usize, String> {
    match target {
        Target::Ours => {
            let mut response = agent
                .get(&format!("{endpoint}/api/v1/kv/{key}"))
                .call()
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response.body_mut().read_to_vec().unwrap_or_default();
            if status == 200 {
                Ok(body.len())
            } else {
                Err(format!("{status}"))
            }
        }
        Target::Etcd => {
            let mut response = agent
                .post(&format!("{endpoint}/v3/kv/range"))
                .send_json(serde_json::json!({ "key": BASE64.encode(key) }))
                .map_err(|e| e.to_string())?;
            let body: serde_json::Value =
                response.body_mut().read_json().map_err(|e| e.to_string())?;
            let value = body["kvs"][0]["value"]
                .as_str()
                .ok_or_else(|| format!("no value in {body}"))?;
            Ok(BASE64.decode(value).map_err(|e| e.to_string())?.len())
        }
    }
}

fn report_line(
    label: &str,
    target: Target,
    op: &str,
    clients: usize,
    mut latencies_us: Vec<u64>,
    wall: Duration,
    errors: u64,
) {
    latencies_us.sort_unstable();
    let n = latencies_us.len();
    let pct = |p: f64| -> f64 {
        if n == 0 {
            return f64::NAN;
        }
        let index = ((p / 100.0) * n as f64).ceil() as usize;
        latencies_us[index.clamp(1, n) - 1] as f64 / 1000.0
    };
    let line = serde_json::json!({
        "label": label, "target": target.name(), "op": op, "clients": clients, "ok": n,
        "errors": errors, "wall_s": wall.as_secs_f64(),
        "ops_per_s": n as f64 / wall.as_secs_f64(),
        "p50_ms": pct(50.0), "p99_ms": pct(99.0), "max_ms": pct(100.0),
    });
    println!("{line}");
}

fn endpoints(text: &str) -> Vec<String> {
    text.split(',')
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

fn run_load(
    target: Target,
    endpoints: &[String],
    n: u64,
    clients: usize,
    op: impl Fn(&ureq::Agent, &str, u64) -> Result<(), String> + Send + Sync + 'static,
) -> (Vec<u64>, Duration, u64) {
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut threads = Vec::new();
    for client in 0..clients {
        let endpoint = endpoints[client % endpoints.len()].clone();
        let (op, next, errors) = (op.clone(), next.clone(), errors.clone());
        threads.push(std::thread::spawn(move || {
            let agent = agent(Duration::from_secs(10));
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                match op(&agent, &endpoint, i) {
                    Ok(()) => latencies.push(t.elapsed().as_micros() as u64),
                    Err(error) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("{} error: {error}", target.name());
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(n as usize);
    for thread in threads {
        all.extend(thread.join().unwrap_or_default());
    }
    (all, started.elapsed(), errors.load(Ordering::Relaxed))
}

fn leader_index(target: Target, endpoints: &[String]) -> Result<usize, String> {
    let agent = agent(Duration::from_secs(3));
    match target {
        Target::Ours => {
            for endpoint in endpoints {
                let raft: serde_json::Value = agent
                    .get(&format!("{endpoint}/api/v1/raft"))
                    .call()
                    .map_err(|e| e.to_string())?
                    .body_mut()
                    .read_json()
                    .map_err(|e| e.to_string())?;
                let Some(leader) = raft["leader"].as_str() else {
                    continue;
                };
                for (index, other) in endpoints.iter().enumerate() {
                    let status: serde_json::Value = agent
                        .get(&format!("{other}/api/v1/status"))
                        .call()
                        .map_err(|e| e.to_string())?
                        .body_mut()
                        .read_json()
                        .map_err(|e| e.to_string())?;
                    if status["node_id"].as_str() == Some(leader) {
                        return Ok(index);
                    }
                }
            }
            Err("no leader known".to_string())
        }
        Target::Etcd => {
            for (index, endpoint) in endpoints.iter().enumerate() {
                let status: serde_json::Value = agent
                    .post(&format!("{endpoint}/v3/maintenance/status"))
                    .send_json(serde_json::json!({}))
                    .map_err(|e| e.to_string())?
                    .body_mut()
                    .read_json()
                    .map_err(|e| e.to_string())?;
                if status["leader"].is_string() && status["leader"] == status["header"]["member_id"]
                {
                    return Ok(index);
                }
            }
            Err("no leader known".to_string())
        }
    }
}

fn wait_leader(target: Target, endpoints: &[String], timeout: Duration) -> Result<usize, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match leader_index(target, endpoints) {
            Ok(index) => return Ok(index),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

struct Attempt {
    issued: Instant,
    done: Instant,
    ok: bool,
}

fn failover(
    target: Target,
    endpoints: &[String],
    pids: &[i32],
    pre: Duration,
    post: Duration,
) -> Result<serde_json::Value, String> {
    let leader = wait_leader(target, endpoints, Duration::from_secs(20))?;
    let pid = *pids.get(leader).ok_or("fewer pids than endpoints")?;
    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let agents: Vec<ureq::Agent> = endpoints
        .iter()
        .map(|_| agent(Duration::from_secs(2)))
        .collect();
    let value = vec![b'w'; 256];
    let started = Instant::now();
    let end = started + pre + post;
    let kill_at = started + pre;
    let mut killed_at = None;
    let mut threads = Vec::new();
    let mut seq = 0u64;
    let interval = Duration::from_millis(5);
    let mut next = started;
    while Instant::now() < end {
        if killed_at.is_none() && Instant::now() >= kill_at {
            // SAFETY: kill(2) only sends a signal to the given process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed_at = Some(Instant::now());
        }
        let index = (seq as usize) % endpoints.len();
        let (agent, endpoint) = (agents[index].clone(), endpoints[index].clone());
        let (attempts, value) = (attempts.clone(), value.clone());
        let key = format!("failover/{seq:08}");
        threads.push(std::thread::spawn(move || {
            let issued = Instant::now();
            let ok = put(&agent, target, &endpoint, &key, &value).is_ok();
            let done = Instant::now();
            if let Ok(mut attempts) = attempts.lock() {
                attempts.push(Attempt { issued, done, ok });
            }
        }));
        seq += 1;
        next += interval;
        if let Some(pause) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(pause);
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
    let killed_at = killed_at.ok_or("the run ended before the kill")?;
    let attempts = attempts.lock().map_err(|_| "poisoned")?;
    let before = attempts
        .iter()
        .filter(|a| a.ok && a.done <= killed_at)
        .map(|a| a.done)
        .max()
        .ok_or("no put succeeded before the kill")?;
    let after = attempts
        .iter()
        .filter(|a| a.ok && a.issued >= killed_at)
        .map(|a| a.done)
        .min()
        .ok_or("no put succeeded after the kill")?;
    let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    Ok(serde_json::json!({
        "target": target.name(), "op": "failover", "killed_endpoint": leader, "pid": pid,
        "attempts": attempts.len(), "ok": attempts.iter().filter(|a| a.ok).count(),
        "gap_ms": ms(after - before), "kill_to_first_ok_ms": ms(after - killed_at),
    }))
}

fn start_mesh(
    binary: &std::path::Path,
    dir: &std::path::Path,
) -> Result<serde_json::Value, String> {
    use cli::localnet::{LocalNet, LocalNetOptions};
    let options = LocalNetOptions {
        detached: true,
        root: Some(dir.to_path_buf()),
        ..LocalNetOptions::default()
    };
    let edges = [(0, 1), (1, 2), (2, 0)];
    let mut net = LocalNet::create(binary, 3, &edges, &options).map_err(|e| e.to_string())?;
    net.enable_kv(&[0, 1, 2], "").map_err(|e| e.to_string())?;
    net.start_all().map_err(|e| e.to_string())?;
    net.wait_healthy(Duration::from_secs(30), &|| false)
        .map_err(|e| e.to_string())?;
    net.wait_converged(Duration::from_secs(30), &|| false)
        .map_err(|e| e.to_string())?;
    let apis: Vec<String> = net.nodes().iter().map(|n| n.api_url()).collect();
    wait_leader(Target::Ours, &apis, Duration::from_secs(30))?;
    let pids: Vec<u32> = net.nodes().iter().filter_map(|n| n.pid()).collect();
    let configs: Vec<String> = net
        .nodes()
        .iter()
        .map(|n| n.config_path.display().to_string())
        .collect();
    net.detach();
    Ok(serde_json::json!({ "apis": apis, "pids": pids, "configs": configs }))
}

/// Median of a target's values of `field` among lines with this label.
fn pick(lines: &[serde_json::Value], label: &str, target: &str, field: &str) -> Option<f64> {
    let mut values: Vec<f64> = lines
        .iter()
        .filter(|l| l["label"] == label && l["target"] == target)
        .filter_map(|l| l[field].as_f64())
        .collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

fn report(path: &std::path::Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let lines: Vec<serde_json::Value> = std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let rows: [(&str, &str, &str, bool); 8] = [
        ("seq_put", "ops_per_s", "sequential puts/s (1 client)", true),
        ("seq_put", "p50_ms", "sequential put p50 ms", false),
        ("seq_put", "p99_ms", "sequential put p99 ms", false),
        ("put64", "ops_per_s", "puts/s, 64 clients", true),
        ("put64", "p99_ms", "put p99 ms, 64 clients", false),
        (
            "get64",
            "ops_per_s",
            "linearizable gets/s, 64 clients",
            true,
        ),
        ("get64", "p99_ms", "get p99 ms, 64 clients", false),
        (
            "failover",
            "gap_ms",
            "writes resume after leader SIGKILL, ms (median)",
            false,
        ),
    ];
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "| metric | x0tta6bl4 | etcd | ours/etcd | better is |\n|---|---:|---:|---:|---|"
    );
    for (label, field, name, higher_better) in rows {
        let ours = pick(&lines, label, "ours", field);
        let etcd = pick(&lines, label, "etcd", field);
        let ratio = match (ours, etcd) {
            (Some(o), Some(e)) if e > 0.0 => format!("{:.2}", o / e),
            _ => "-".to_string(),
        };
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {ratio} | {} |",
            show(ours),
            show(etcd),
            if higher_better { "higher" } else { "lower" }
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result: Result<(), String> = match args.command {
        Command::StartMesh { binary, dir } => start_mesh(&binary, &dir).map(|v| println!("{v}")),
        Command::Put {
            target,
            endpoints: list,
            n,
            clients,
            size,
            label,
        } => {
            let eps = endpoints(&list);
            let value = Arc::new(vec![b'x'; size]);
            let (lat, wall, errors) = run_load(target, &eps, n, clients, move |agent, ep, i| {
                put(
                    agent,
                    target,
                    ep,
                    &format!("bench/{:08}", i % 100_000),
                    &value,
                )
            });
            report_line(&label, target, "put", clients, lat, wall, errors);
            Ok(())
        }
        Command::Get {
            target,
            endpoints: list,
            n,
            clients,
            label,
        } => {
            let eps = endpoints(&list);
            let seed = put(
                &agent(Duration::from_secs(10)),
                target,
                &eps[0],
                "bench/get",
                &[b'x'; 256],
            );
            match seed {
                Err(error) => Err(format!("seed put failed: {error}")),
                Ok(()) => {
                    let (lat, wall, errors) =
                        run_load(target, &eps, n, clients, move |agent, ep, _| {
                            match get(agent, target, ep, "bench/get")? {
                                256 => Ok(()),
                                other => Err(format!("read {other} bytes, not 256")),
                            }
                        });
                    report_line(&label, target, "get", clients, lat, wall, errors);
                    Ok(())
                }
            }
        }
        Command::Leader {
            target,
            endpoints: list,
        } => {
            wait_leader(target, &endpoints(&list), Duration::from_secs(20)).map(|i| println!("{i}"))
        }
        Command::Failover {
            target,
            endpoints: list,
            pids,
            pre_s,
            post_s,
            label,
        } => {
            let pids: Vec<i32> = pids
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            failover(
                target,
                &endpoints(&list),
                &pids,
                Duration::from_secs(pre_s),
                Duration::from_secs(post_s),
            )
            .map(|mut v| {
                v["label"] = serde_json::Value::from(if label.is_empty() {
                    "failover".to_string()
                } else {
                    label
                });
                println!("{v}");
            })
        }
        Command::Report { results } => report(&results),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kv_bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
