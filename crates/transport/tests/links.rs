//! QUIC links on loopback: mutual authentication, the negotiated key-exchange group, datagrams
//! and streams, and refusal of non-members.

use std::sync::Arc;
use std::time::Duration;

use identity::ca::CertificateAuthority;
use identity::tls::{CertStore, KxPolicy};
use identity::verify::VerifierState;
use identity::{KeySet, Policy, TrustDomain};
use tokio::sync::mpsc;
use transport::{LinkEndpoint, LinkEvent, LinkSettings};

struct Member {
    keys: KeySet,
    endpoint: LinkEndpoint,
    events: mpsc::Receiver<LinkEvent>,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

fn member(ca: &CertificateAuthority, kx: KxPolicy) -> Member {
    let keys = KeySet::generate().expect("keys");
    let svid = ca.issue_own(&keys, now_unix(), 3600).expect("svid");
    let bundle = ca.bundle().expect("bundle");
    let certificate = CertStore::new(&keys, &svid, &bundle.ca_certificate).expect("store");
    let state = VerifierState::new(bundle, Policy::default());
    let (endpoint, events) = LinkEndpoint::bind(
        LinkSettings {
            listen: "127.0.0.1:0".parse().expect("address"),
            kx,
            accepts_joins: false,
        },
        state,
        certificate,
    )
    .expect("bind");
    Member {
        keys,
        endpoint,
        events,
    }
}

/// How long a test waits for a link that should form (handshakes on loopback take about a
/// millisecond; the margin is for loaded CI machines).
const LINK_WAIT: Duration = Duration::from_secs(5);

/// How long a test waits to be sure a refused link does not form. A refusal happens within
/// the handshake, so this only needs to outlast one handshake.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

async fn next_up(
    events: &mut mpsc::Receiver<LinkEvent>,
) -> Option<(transport::LinkInfo, quinn::Connection)> {
    wait_up(events, LINK_WAIT).await
}

async fn no_link(events: &mut mpsc::Receiver<LinkEvent>) -> bool {
    wait_up(events, REFUSAL_WAIT).await.is_none()
}

async fn wait_up(
    events: &mut mpsc::Receiver<LinkEvent>,
    wait: Duration,
) -> Option<(transport::LinkInfo, quinn::Connection)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(LinkEvent::Up { link, connection })) => return Some((link, connection)),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

fn fresh_ca(dir: &std::path::Path, name: &str) -> CertificateAuthority {
    CertificateAuthority::init(
        &dir.join(name),
        TrustDomain::new("example.org").expect("domain"),
        now_unix(),
    )
    .expect("CA")
}

#[tokio::test]
async fn members_link_with_hybrid_key_exchange_and_exchange_datagrams_and_streams() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = fresh_ca(dir.path(), "ca");
    let mut a = member(&ca, KxPolicy::default());
    let mut b = member(&ca, KxPolicy { pq_only: true });
    let b_address = b.endpoint.local_addr().expect("address");
    a.endpoint.dial(b_address, Some(b.keys.node_id()));
    let (a_link, a_connection) = next_up(&mut a.events).await.expect("a sees the link");
    let (b_link, _b_connection) = next_up(&mut b.events).await.expect("b sees the link");
    assert_eq!(a_link.node_id(), b.keys.node_id());
    assert_eq!(b_link.node_id(), a.keys.node_id());
    assert!(a_link.outbound && !b_link.outbound);
    assert_eq!(a_link.kx_group, "X25519MLKEM768");
    assert_eq!(b_link.kx_group, "X25519MLKEM768");

    assert!(
        a.endpoint.send_datagram(&a_connection, &[7u8; 1400]),
        "a full routing packet fits"
    );
    a.endpoint.send_stream(&a_connection, vec![9u8; 100_000]);
    let (mut got_datagram, mut got_stream) = (false, false);
    while !(got_datagram && got_stream) {
        match tokio::time::timeout(Duration::from_secs(5), b.events.recv()).await {
            Ok(Some(LinkEvent::Datagram { from, bytes, .. })) => {
                assert_eq!(from, a.keys.node_id());
                assert_eq!(bytes.len(), 1400);
                got_datagram = true;
            }
            Ok(Some(LinkEvent::Stream { from, bytes })) => {
                assert_eq!(from, a.keys.node_id());
                assert_eq!(bytes, vec![9u8; 100_000]);
                got_stream = true;
            }
            Ok(Some(_)) => {}
            other => panic!("expected a datagram and a stream, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_node_of_another_ca_is_refused_and_no_link_forms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = fresh_ca(dir.path(), "ca");
    let rogue_ca = fresh_ca(dir.path(), "rogue");
    let mut honest = member(&ca, KxPolicy::default());
    let mut rogue = member(&rogue_ca, KxPolicy::default());
    rogue
        .endpoint
        .dial(honest.endpoint.local_addr().expect("address"), None);
    assert!(
        no_link(&mut honest.events).await,
        "no link with a non-member"
    );
    assert!(no_link(&mut rogue.events).await);
    let refused = honest.endpoint.verifier().refusals.get("unknown_ca")
        + rogue.endpoint.verifier().refusals.get("unknown_ca");
    assert!(refused >= 1, "the refusal is counted as unknown_ca");

    // Revoked: the honest node refuses a member it has revoked.
    let mut member_b = member(&ca, KxPolicy::default());
    honest
        .endpoint
        .verifier()
        .revocations
        .insert(member_b.keys.node_id())
        .expect("room");
    member_b
        .endpoint
        .dial(honest.endpoint.local_addr().expect("address"), None);
    assert!(
        no_link(&mut honest.events).await,
        "revoked member cannot link"
    );
    assert_eq!(honest.endpoint.verifier().refusals.get("revoked"), 1);
    drop(member_b.events.try_recv());
}

#[tokio::test]
async fn a_pq_only_node_refuses_classical_key_exchange_and_the_recorded_group_is_real() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = fresh_ca(dir.path(), "ca");
    let mut strict = member(&ca, KxPolicy { pq_only: true });
    let mut lenient = member(&ca, KxPolicy::default());
    let client_keys = KeySet::generate().expect("keys");
    let svid = ca.issue_own(&client_keys, now_unix(), 3600).expect("svid");
    let bundle = ca.bundle().expect("bundle");
    let store = CertStore::new(&client_keys, &svid, &bundle.ca_certificate).expect("store");
    let state = VerifierState::new(bundle, Policy::default());

    // A client offering classical X25519 only.
    let classical_client = || {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(identity::LinkVerifier::new(
                state.clone(),
                None,
                false,
            )))
            .with_client_cert_resolver(store.clone());
        config.alpn_protocols = vec![identity::tls::ALPN_LINK.to_vec()];
        quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(config).expect("quic"),
        ))
    };
    let endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("client");

    let strict_address = strict.endpoint.local_addr().expect("address");
    let refused = endpoint
        .connect_with(classical_client(), strict_address, "node")
        .expect("connect")
        .await;
    assert!(refused.is_err(), "pq_only must refuse X25519");
    assert!(no_link(&mut strict.events).await);

    let lenient_address = lenient.endpoint.local_addr().expect("address");
    let accepted = endpoint
        .connect_with(classical_client(), lenient_address, "node")
        .expect("connect")
        .await
        .expect("a lenient node accepts X25519");
    let (link, _) = next_up(&mut lenient.events).await.expect("link up");
    assert_eq!(
        link.kx_group, "X25519",
        "the recorder reports the group actually used"
    );
    accepted.close(0u32.into(), b"done");
}
