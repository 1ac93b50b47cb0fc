//! Every kind of bad peer certificate is refused with its own error and counted; bad join
//! tokens are refused by the CA.

use std::time::Duration;

use identity::ca::CertificateAuthority;
use identity::svid::{self, NodeCertificateRequest};
use identity::verify::{PeerCertError, TrustBundle, VerifierState};
use identity::{KeySet, Policy, TrustDomain};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::UnixTime;

const NOW: i64 = 1_800_000_000;

struct TestCa {
    trust_domain: TrustDomain,
    keys: KeySet,
    certificate: Vec<u8>,
}

impl TestCa {
    fn new(domain: &str) -> TestCa {
        let trust_domain = TrustDomain::new(domain).expect("domain");
        let keys = KeySet::generate().expect("keys");
        let certificate = svid::ca_certificate(
            &trust_domain,
            &keys.ed25519_pkcs8_der().expect("der"),
            &keys.public().ml_dsa_digest(),
            NOW - 3600,
            [7; 16],
        )
        .expect("CA certificate");
        TestCa {
            trust_domain,
            keys,
            certificate,
        }
    }

    fn bundle(&self) -> TrustBundle {
        TrustBundle::new(
            self.trust_domain.clone(),
            self.certificate.clone(),
            self.keys.public().ml_dsa.clone(),
        )
        .expect("bundle")
    }

    fn issue(&self, node: &KeySet, now: i64, ttl: i64) -> Vec<u8> {
        svid::node_certificate(
            &NodeCertificateRequest {
                trust_domain: &self.trust_domain,
                ed25519: node.public().ed25519,
                ml_dsa_digest: node.public().ml_dsa_digest(),
                now,
                ttl_seconds: ttl,
                serial: [9; 16],
            },
            &self.certificate,
            &self.keys.ed25519_pkcs8_der().expect("der"),
        )
        .expect("node certificate")
    }

    /// A certificate with an arbitrary URI SAN, signed by this CA: what a buggy or malicious
    /// CA-side tool could produce.
    fn issue_with_uri(&self, node: &KeySet, uri: &str) -> Vec<u8> {
        let ca_key = KeyPair::try_from(self.keys.ed25519_pkcs8_der().expect("der").as_slice())
            .expect("CA key");
        let issuer =
            Issuer::from_ca_cert_der(&self.certificate.as_slice().into(), ca_key).expect("issuer");
        let node_key =
            KeyPair::try_from(node.ed25519_pkcs8_der().expect("der").as_slice()).expect("key");
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CustomDnType(vec![2, 5, 4, 5]),
            DnValue::PrintableString(
                format!(
                    "ml-dsa-65-sha256:{}",
                    hex::encode(node.public().ml_dsa_digest())
                )
                .try_into()
                .expect("printable"),
            ),
        );
        params.distinguished_name = name;
        params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("ia5"))];
        params.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 60).expect("time");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + 3600).expect("time");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params
            .signed_by(&node_key, &issuer)
            .expect("sign")
            .der()
            .to_vec()
    }
}

fn fresh_ca(dir: &std::path::Path) -> CertificateAuthority {
    CertificateAuthority::init(dir, TrustDomain::new("example.org").expect("domain"), NOW)
        .expect("CA")
}

fn at(unix: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(unix as u64))
}

fn check(state: &VerifierState, certificate: &[u8], now: i64) -> Result<(), PeerCertError> {
    state
        .check(
            certificate,
            &[],
            at(now),
            webpki::KeyUsage::client_auth(),
            None,
        )
        .map(|_| ())
}

#[test]
fn every_bad_certificate_is_refused_with_its_own_error_and_counted() {
    let ca = TestCa::new("example.org");
    let state = VerifierState::new(ca.bundle(), Policy::default());
    let node = KeySet::generate().expect("keys");
    let good = ca.issue(&node, NOW, 3600);
    check(&state, &good, NOW).expect("a fresh certificate of our CA is accepted");

    assert_eq!(
        check(&state, &good, NOW + 3601),
        Err(PeerCertError::Expired)
    );
    assert_eq!(
        check(&state, &good, NOW - 3600),
        Err(PeerCertError::NotYetValid)
    );

    let other_domain = TestCa::new("other.org");
    assert!(matches!(
        check(&state, &other_domain.issue(&node, NOW, 3600), NOW),
        Err(PeerCertError::WrongTrustDomain { .. })
    ));

    let rogue = TestCa::new("example.org");
    assert_eq!(
        check(&state, &rogue.issue(&node, NOW, 3600), NOW),
        Err(PeerCertError::UnknownCa)
    );

    let malformed = ca.issue_with_uri(&node, "spiffe://example.org/workload/web");
    assert!(matches!(
        check(&state, &malformed, NOW),
        Err(PeerCertError::MalformedSpiffeId(_))
    ));

    let someone_else = KeySet::generate().expect("keys");
    let mismatched = ca.issue_with_uri(
        &node,
        &format!("spiffe://example.org/node/{}", someone_else.node_id()),
    );
    assert!(matches!(
        check(&state, &mismatched, NOW),
        Err(PeerCertError::NodeIdMismatch(_))
    ));

    assert!(matches!(
        check(&state, b"not a certificate", NOW),
        Err(PeerCertError::Malformed(_))
    ));

    state.revocations.insert(node.node_id()).expect("room");
    assert_eq!(
        check(&state, &good, NOW),
        Err(PeerCertError::Revoked(node.node_id()))
    );

    let other = KeySet::generate().expect("keys");
    *state.policy.write().expect("lock") = Policy::from_yaml(&format!(
        "rules:\n  - deny: \"spiffe://example.org/node/{}\"\n",
        other.node_id()
    ))
    .expect("policy");
    assert!(matches!(
        check(&state, &ca.issue(&other, NOW, 3600), NOW),
        Err(PeerCertError::PolicyDenied(_))
    ));

    let third = KeySet::generate().expect("keys");
    assert!(matches!(
        state.check(
            &ca.issue(&third, NOW, 3600),
            &[],
            at(NOW),
            webpki::KeyUsage::client_auth(),
            Some(other.node_id())
        ),
        Err(PeerCertError::UnexpectedNode { .. })
    ));

    for kind in [
        "expired",
        "not_yet_valid",
        "wrong_trust_domain",
        "unknown_ca",
        "malformed_spiffe_id",
        "node_id_mismatch",
        "malformed",
        "revoked",
        "policy_denied",
        "unexpected_node",
    ] {
        assert_eq!(state.refusals.get(kind), 1, "{kind} counted once");
    }
}

#[test]
fn tokens_are_single_use_expire_and_belong_to_one_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = fresh_ca(&dir.path().join("ca"));
    let address = "127.0.0.1:7400".parse().expect("address");
    let token = ca.create_token(600, NOW, address).expect("token");
    assert_eq!(token.bundle_hash, ca.bundle().expect("bundle").hash());
    let node = KeySet::generate().expect("keys");
    let (ed, digest) = (node.public().ed25519, node.public().ml_dsa_digest());

    let mut wrong_secret = token.secret;
    wrong_secret[0] ^= 1;
    assert!(matches!(
        ca.redeem(&token.id, &wrong_secret, ed, digest, NOW, 3600),
        Err(identity::CaError::BadSecret)
    ));
    let certificate = ca
        .redeem(&token.id, &token.secret, ed, digest, NOW + 1, 3600)
        .expect("first use");
    let state = VerifierState::new(ca.bundle().expect("bundle"), Policy::default());
    check(&state, &certificate, NOW + 2).expect("issued certificate verifies");
    assert!(matches!(
        ca.redeem(&token.id, &token.secret, ed, digest, NOW + 2, 3600),
        Err(identity::CaError::TokenUsed)
    ));

    let short = ca.create_token(10, NOW, address).expect("token");
    assert!(matches!(
        ca.redeem(&short.id, &short.secret, ed, digest, NOW + 10, 3600),
        Err(identity::CaError::TokenExpired)
    ));

    let other = fresh_ca(&dir.path().join("other-ca"));
    let foreign = other.create_token(600, NOW, address).expect("token");
    assert_ne!(foreign.bundle_hash, token.bundle_hash);
    assert!(matches!(
        ca.redeem(&foreign.id, &foreign.secret, ed, digest, NOW, 3600),
        Err(identity::CaError::UnknownToken)
    ));

    // A reloaded CA still knows the used token (state is on disk).
    let reloaded = CertificateAuthority::load(&dir.path().join("ca")).expect("reload");
    assert!(matches!(
        reloaded.redeem(&token.id, &token.secret, ed, digest, NOW + 3, 3600),
        Err(identity::CaError::TokenUsed)
    ));
    assert_eq!(reloaded.issued_count().expect("log"), 1);
    assert!(matches!(
        CertificateAuthority::init(
            &dir.path().join("ca"),
            TrustDomain::new("x").expect("d"),
            NOW
        ),
        Err(identity::CaError::Exists(_))
    ));
}

#[test]
fn revocations_verify_against_the_ca_and_forgeries_do_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = fresh_ca(&dir.path().join("ca"));
    let state = VerifierState::new(ca.bundle().expect("bundle"), Policy::default());
    let node = KeySet::generate().expect("keys");
    let signed = ca.revoke(node.node_id(), NOW).expect("revoke");
    let revocation = identity::Revocation::verify(&signed, &state).expect("verifies");
    assert_eq!(revocation.node_id, node.node_id());
    assert_eq!(ca.revoke(node.node_id(), NOW + 5).expect("again"), signed);
    let mut forged = signed.clone();
    forged[5] ^= 1;
    assert!(identity::Revocation::verify(&forged, &state).is_err());
    let (ed, digest) = (node.public().ed25519, node.public().ml_dsa_digest());
    let token = ca
        .create_token(600, NOW, "127.0.0.1:1".parse().expect("address"))
        .expect("token");
    assert!(matches!(
        ca.redeem(&token.id, &token.secret, ed, digest, NOW, 3600),
        Err(identity::CaError::Revoked(_))
    ));
}

#[test]
fn node_records_verify_and_tampering_or_replay_is_detected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = fresh_ca(&dir.path().join("ca"));
    let state = VerifierState::new(ca.bundle().expect("bundle"), Policy::default());
    let node = KeySet::generate().expect("keys");
    let svid = ca.issue_own(&node, NOW, 3600).expect("svid");
    let record = identity::NodeRecord {
        node_id: node.node_id(),
        version: 1,
        not_before: NOW,
        not_after: NOW + 3600,
        keys: node.public().clone(),
        endpoints: vec!["[fe80::1]:7400".parse().expect("address")],
        svid,
    };
    let signed = record.sign(&node).expect("sign");
    assert_eq!(
        identity::NodeRecord::verify(&signed, &state, NOW + 1).expect("verifies"),
        record
    );
    let mut tampered = signed.clone();
    let endpoint_port =
        signed.len() - identity::keys::HYBRID_SIGNATURE_BYTES - record.svid.len() - 3;
    tampered[endpoint_port] ^= 1;
    assert!(matches!(
        identity::NodeRecord::verify(&tampered, &state, NOW + 1),
        Err(identity::RecordError::Forged(_))
    ));
    assert_eq!(
        identity::NodeRecord::verify(&signed, &state, NOW + 4000),
        Err(identity::RecordError::Svid(PeerCertError::Expired))
    );
    for cut in [0, 1, 100, signed.len() - 1] {
        assert!(identity::NodeRecord::verify(&signed[..cut], &state, NOW + 1).is_err());
    }
}
