//! Benchmark: full QUIC mTLS link handshakes on loopback (TLS 1.3, SVIDs both ways with every
//! certificate check, key exchange X25519MLKEM768 and, for comparison, X25519), median per
//! handshake measured from `connect` to the dialler's `Up` event. Run with
//! `cargo bench -p transport --bench handshake`.

use std::time::{Duration, Instant};

use identity::ca::CertificateAuthority;
use identity::tls::{CertStore, KxPolicy};
use identity::verify::VerifierState;
use identity::{KeySet, Policy, TrustDomain};
use transport::{LinkEndpoint, LinkEvent, LinkSettings};

const HANDSHAKES: usize = 300;

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

fn endpoint(
    ca: &CertificateAuthority,
    kx: KxPolicy,
) -> (LinkEndpoint, tokio::sync::mpsc::Receiver<LinkEvent>) {
    let keys = KeySet::generate().expect("keys");
    let svid = ca.issue_own(&keys, now_unix(), 3600).expect("svid");
    let bundle = ca.bundle().expect("bundle");
    let certificate = CertStore::new(&keys, &svid, &bundle.ca_certificate).expect("store");
    LinkEndpoint::bind(
        LinkSettings {
            listen: "127.0.0.1:0".parse().expect("address"),
            kx,
            accepts_joins: false,
        },
        VerifierState::new(bundle, Policy::default()),
        certificate,
    )
    .expect("bind")
}

async fn measure(ca: &CertificateAuthority, kx: KxPolicy, label: &str) {
    let (server, mut server_events) = endpoint(ca, kx);
    let (client, mut client_events) = endpoint(ca, kx);
    let address = server.local_addr().expect("address");
    // Drain the server's events in the background.
    tokio::spawn(async move { while server_events.recv().await.is_some() {} });
    let mut samples = Vec::with_capacity(HANDSHAKES);
    let mut group = String::new();
    for _ in 0..HANDSHAKES {
        let start = Instant::now();
        client.dial(address, None);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), client_events.recv()).await {
                Ok(Some(LinkEvent::Up { link, connection })) => {
                    samples.push(start.elapsed().as_secs_f64() * 1000.0);
                    group = link.kx_group;
                    connection.close(0u32.into(), b"bench");
                    break;
                }
                Ok(Some(_)) => {}
                other => panic!("handshake failed: {other:?}"),
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    let p90 = samples[samples.len() * 9 / 10];
    println!("  {label:<34} median {median:6.3} ms   p90 {p90:6.3} ms   (negotiated {group})");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = CertificateAuthority::init(
        &dir.path().join("ca"),
        TrustDomain::new("bench.local").expect("domain"),
        now_unix(),
    )
    .expect("CA");
    println!("QUIC mTLS link handshake on loopback, {HANDSHAKES} handshakes each:");
    runtime.block_on(async {
        measure(&ca, KxPolicy { pq_only: true }, "X25519MLKEM768 (pq_only)").await;
        measure(
            &ca,
            KxPolicy::default(),
            "default (X25519MLKEM768 preferred)",
        )
        .await;
    });
}
