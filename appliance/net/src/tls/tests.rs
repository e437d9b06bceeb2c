//! Tests of the local PKI, each in its own temporary directory, at fixed times.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{ServerName, UnixTime};
use time::macros::datetime;

use super::*;

const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

fn request(addresses: &[&str]) -> CertRequest {
    CertRequest {
        hostname: "nas".to_owned(),
        extra_names: Vec::new(),
        addresses: addresses
            .iter()
            .map(|a| a.parse().expect("test address"))
            .collect(),
    }
}

fn setup() -> (tempfile::TempDir, PkiPaths) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = PkiPaths::new(tmp.path().join("tls"));
    (tmp, paths)
}

fn ensure(paths: &PkiPaths, req: &CertRequest, now: OffsetDateTime) -> PkiReport {
    ensure_local_pki(paths, req, None, now).expect("ensure_local_pki")
}

fn is_reissue(report: &PkiReport) -> bool {
    report
        .actions
        .iter()
        .any(|a| matches!(a, PkiAction::IssuedServerCert { .. }))
}

fn reissue_reason(report: &PkiReport) -> String {
    report
        .actions
        .iter()
        .find_map(|a| match a {
            PkiAction::IssuedServerCert { reason } => Some(reason.clone()),
            _ => None,
        })
        .expect("a server certificate was issued")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn verifier(paths: &PkiPaths) -> Arc<WebPkiServerVerifier> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            ca_certificate_der(paths).expect("ca der"),
        ))
        .expect("add root");
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), ring_provider())
        .build()
        .expect("verifier")
}

fn verify(
    verifier: &WebPkiServerVerifier,
    cert: &CertificateDer<'_>,
    name: &str,
    now: OffsetDateTime,
) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    let secs = u64::try_from(now.unix_timestamp()).expect("after 1970");
    verifier
        .verify_server_cert(
            cert,
            &[],
            &name,
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs)),
        )
        .map(|_| ())
}

fn server_der(paths: &PkiPaths) -> CertificateDer<'static> {
    first_cert_der(&fs::read(paths.server_cert()).expect("server.crt")).expect("pem")
}

/// Signs a certificate for `names` with the CA on disk, bypassing every check of this
/// module: what someone holding a leaked `ca.key` could do.
fn mint_with_ca(paths: &PkiPaths, names: &[&str]) -> CertificateDer<'static> {
    let ca_der = ca_certificate_der(paths).expect("ca der");
    let ca_key =
        KeyPair::from_pem(&fs::read_to_string(paths.ca_key()).expect("ca.key")).expect("ca key");
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca_der), ca_key).expect("issuer");
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params.not_before = T0 - Duration::days(1);
    params.not_after = T0 + Duration::days(90);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    params.signed_by(&key, &issuer).expect("sign").der().clone()
}

#[test]
fn creates_ca_and_server_cert_from_scratch() {
    let (_tmp, paths) = setup();
    let report = ensure(&paths, &request(&["192.168.1.20"]), T0);

    assert_eq!(report.actions.first(), Some(&PkiAction::CreatedCa));
    assert!(is_reissue(&report), "{:?}", report.actions);
    for path in [
        paths.ca_cert(),
        paths.ca_key(),
        paths.server_cert(),
        paths.server_key(),
    ] {
        assert!(path.is_file(), "{} missing", path.display());
    }
    assert_eq!(
        report.ca.subject,
        "CN=Context Vault local CA (nas), O=Context Vault"
    );
    assert_eq!(report.server.issuer, report.ca.subject);
    assert_eq!(report.server.subject, "CN=nas");
    assert_eq!(report.ca.not_after - T0, CA_VALIDITY);
    // No temporary files left behind.
    assert!(files::temp_files(&paths.ca_key()).is_empty());
    assert!(files::temp_files(&paths.server_key()).is_empty());
}

#[test]
fn second_call_changes_nothing() {
    let (_tmp, paths) = setup();
    let req = request(&["192.168.1.20"]);
    ensure(&paths, &req, T0);
    let before = fs::read(paths.server_cert()).expect("server.crt");

    let report = ensure(&paths, &req, T0 + Duration::days(1));
    assert_eq!(report.actions, vec![PkiAction::Unchanged]);
    assert_eq!(fs::read(paths.server_cert()).expect("server.crt"), before);
}

#[test]
fn new_address_reissues_with_the_same_ca() {
    let (_tmp, paths) = setup();
    ensure(&paths, &request(&["192.168.1.20"]), T0);
    let ca_cert = fs::read(paths.ca_cert()).expect("ca.crt");
    let ca_key = fs::read(paths.ca_key()).expect("ca.key");

    let report = ensure(&paths, &request(&["192.168.1.20", "10.0.0.7"]), T0);
    assert_eq!(report.actions.len(), 1);
    assert!(reissue_reason(&report).contains("10.0.0.7"));
    assert!(report.server.names.contains(&"10.0.0.7".to_owned()));
    assert_eq!(fs::read(paths.ca_cert()).expect("ca.crt"), ca_cert);
    assert_eq!(fs::read(paths.ca_key()).expect("ca.key"), ca_key);
}

#[test]
fn near_expiry_reissues() {
    let (_tmp, paths) = setup();
    let req = request(&[]);
    let first = ensure(&paths, &req, T0);

    // 366 days later there are still 31 days left: no renewal yet.
    let later = ensure(&paths, &req, T0 + Duration::days(366));
    assert_eq!(later.actions, vec![PkiAction::Unchanged]);

    let renewal = ensure(&paths, &req, T0 + Duration::days(370));
    assert!(reissue_reason(&renewal).contains("expires"));
    assert!(renewal.server.not_after > first.server.not_after);
    assert_eq!(renewal.ca, first.ca);
}

#[test]
fn server_cert_validity_fits_apple_limit() {
    let (_tmp, paths) = setup();
    let report = ensure(&paths, &request(&[]), T0);
    let lifetime = report.server.not_after - report.server.not_before;
    assert!(lifetime <= Duration::days(398), "{lifetime}");
    assert_eq!(report.server.not_after - T0, SERVER_VALIDITY);
}

#[test]
fn key_files_are_private() {
    let (_tmp, paths) = setup();
    let me = KeyOwner {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
    };
    ensure_local_pki(&paths, &request(&[]), Some(me), T0).expect("ensure");
    assert_eq!(mode(&paths.ca_key()), 0o600);
    assert_eq!(mode(&paths.server_key()), 0o600);
    assert_eq!(mode(&paths.ca_cert()), 0o644);
    assert_eq!(mode(&paths.server_cert()), 0o644);
    let meta = fs::metadata(paths.server_key()).expect("metadata");
    assert_eq!((meta.uid(), meta.gid()), (me.uid, me.gid));
}

#[test]
fn loose_key_modes_are_repaired() {
    let (_tmp, paths) = setup();
    let req = request(&[]);
    ensure(&paths, &req, T0);
    fs::set_permissions(paths.ca_key(), fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::set_permissions(paths.server_key(), fs::Permissions::from_mode(0o640)).expect("chmod");

    let report = ensure(&paths, &req, T0);
    assert_eq!(report.actions, vec![PkiAction::Unchanged]);
    assert_eq!(mode(&paths.ca_key()), 0o600);
    assert_eq!(mode(&paths.server_key()), 0o600);
}

#[test]
fn server_key_is_given_to_its_owner_when_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: changing a file's owner needs root");
        return;
    }
    let (_tmp, paths) = setup();
    let owner = KeyOwner {
        uid: 54321,
        gid: 54322,
    };
    ensure_local_pki(&paths, &request(&[]), Some(owner), T0).expect("ensure");
    let meta = fs::metadata(paths.server_key()).expect("metadata");
    assert_eq!((meta.uid(), meta.gid()), (owner.uid, owner.gid));
    // The CA key stays with root.
    assert_eq!(fs::metadata(paths.ca_key()).expect("metadata").uid(), 0);

    // An owner change on a later start is applied without reissuing.
    let other = KeyOwner {
        uid: 54323,
        gid: 54324,
    };
    let report = ensure_local_pki(&paths, &request(&[]), Some(other), T0).expect("ensure");
    assert_eq!(report.actions, vec![PkiAction::Unchanged]);
    let meta = fs::metadata(paths.server_key()).expect("metadata");
    assert_eq!((meta.uid(), meta.gid()), (other.uid, other.gid));
}

#[test]
fn server_config_loads() {
    let (_tmp, paths) = setup();
    ensure(&paths, &request(&["192.168.1.20"]), T0);
    let config = load_server_config(&paths).expect("server config");
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn server_config_reports_missing_files() {
    let (_tmp, paths) = setup();
    let err = load_server_config(&paths).expect_err("no files yet");
    assert!(
        matches!(&err, TlsError::Read { path, .. } if *path == paths.server_cert()),
        "{err}"
    );
}

#[test]
fn cert_info_reports_names_expiry_and_fingerprint() {
    let (_tmp, paths) = setup();
    let mut req = request(&["192.168.1.20", "fd00::20"]);
    req.extra_names = vec!["vault.home.arpa".to_owned(), "10.9.8.7".to_owned()];
    ensure(&paths, &req, T0);

    let pem = fs::read(paths.server_cert()).expect("server.crt");
    let info = cert_info_from_pem(&pem).expect("info");
    assert_eq!(
        info.names,
        [
            "nas",
            "nas.local",
            "localhost",
            "192.168.1.20",
            "fd00::20",
            "127.0.0.1",
            "::1",
            "vault.home.arpa",
            "10.9.8.7",
        ]
    );
    assert_eq!(info.not_before, T0 - BACKDATE);
    assert_eq!(info.not_after, T0 + SERVER_VALIDITY);

    let der = server_der(&paths);
    let expected: Vec<String> = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(info.sha256_fingerprint, expected.join(":"));
    assert_eq!(info.sha256_fingerprint.len(), 32 * 3 - 1);

    assert!(matches!(
        cert_info_from_pem(b"not a certificate"),
        Err(TlsError::InvalidCertificate { .. })
    ));
}

#[test]
fn ca_der_matches_pem() {
    let (_tmp, paths) = setup();
    ensure(&paths, &request(&[]), T0);
    let der = ca_certificate_der(&paths).expect("der");
    let pem = fs::read(paths.ca_cert()).expect("ca.crt");
    assert_eq!(der, first_cert_der(&pem).expect("pem").to_vec());
}

/// The name constraints must be encoded so that a real verifier (webpki, as rustls
/// clients use it) enforces them: the box's certificate verifies, a certificate for a
/// public name signed by the very same CA key does not.
#[test]
fn name_constraints_are_enforced_by_webpki() {
    let (_tmp, paths) = setup();
    ensure(&paths, &request(&["192.168.1.20", "fd00::20"]), T0);
    let verifier = verifier(&paths);
    let server = server_der(&paths);

    for name in [
        "nas.local",
        "nas",
        "localhost",
        "192.168.1.20",
        "fd00::20",
        "127.0.0.1",
    ] {
        verify(&verifier, &server, name, T0).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // An address the certificate does not carry is refused (the control for the above).
    assert!(verify(&verifier, &server, "192.168.1.21", T0).is_err());

    // Control: the same CA can still mint names inside its constraints.
    let inside = mint_with_ca(&paths, &["printer.lan", "192.168.7.7"]);
    verify(&verifier, &inside, "printer.lan", T0).expect("inside the constraints");
    verify(&verifier, &inside, "192.168.7.7", T0).expect("inside the constraints");

    // A leaked CA key cannot mint certificates for public names or addresses.
    let public = mint_with_ca(&paths, &["example.com"]);
    let err = verify(&verifier, &public, "example.com", T0).expect_err("example.com accepted");
    assert!(
        format!("{err:?}").contains("NameConstraint"),
        "rejected for the wrong reason: {err:?}"
    );
    let public_ip = mint_with_ca(&paths, &["8.8.8.8"]);
    verify(&verifier, &public_ip, "8.8.8.8", T0).expect_err("8.8.8.8 accepted");
    // A public name hidden among local ones taints the whole certificate.
    let mixed = mint_with_ca(&paths, &["nas.local", "bank.example"]);
    verify(&verifier, &mixed, "nas.local", T0).expect_err("mixed certificate accepted");
}

#[test]
fn name_outside_the_ca_is_a_clear_error() {
    let (_tmp, paths) = setup();
    ensure(&paths, &request(&[]), T0);
    let mut req = request(&[]);
    req.extra_names = vec!["vault.example.com".to_owned()];

    let err = ensure_local_pki(&paths, &req, None, T0).expect_err("outside the CA");
    assert!(matches!(err, TlsError::NameOutsideCa { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("vault.example.com"), "{message}");
    assert!(message.contains("remove the directory"), "{message}");
}

#[test]
fn extra_names_at_creation_join_the_constraints() {
    let (_tmp, paths) = setup();
    let mut req = request(&[]);
    req.extra_names = vec!["vault.example.com".to_owned(), "203.0.113.5".to_owned()];
    ensure(&paths, &req, T0);

    let verifier = verifier(&paths);
    let server = server_der(&paths);
    verify(&verifier, &server, "vault.example.com", T0).expect("extra DNS name");
    verify(&verifier, &server, "203.0.113.5", T0).expect("extra address");
    // Only that address, not its neighbours.
    let neighbour = mint_with_ca(&paths, &["203.0.113.6"]);
    verify(&verifier, &neighbour, "203.0.113.6", T0).expect_err("neighbour accepted");
}

#[test]
fn corrupted_server_cert_is_reissued() {
    let (_tmp, paths) = setup();
    let req = request(&[]);
    ensure(&paths, &req, T0);
    fs::write(paths.server_cert(), b"garbage").expect("corrupt");

    let report = ensure(&paths, &req, T0);
    assert!(reissue_reason(&report).contains("server.crt"));
    load_server_config(&paths).expect("usable again");
}

#[test]
fn missing_or_foreign_server_key_is_reissued() {
    let (_tmp, paths) = setup();
    let req = request(&[]);
    ensure(&paths, &req, T0);
    fs::remove_file(paths.server_key()).expect("remove");
    let report = ensure(&paths, &req, T0);
    assert!(reissue_reason(&report).contains("server.key is missing"));

    // A key that belongs to another certificate (a crash between the two writes).
    let (_tmp2, other) = setup();
    ensure(&other, &req, T0);
    fs::copy(other.server_key(), paths.server_key()).expect("copy");
    let report = ensure(&paths, &req, T0);
    assert!(reissue_reason(&report).contains("does not belong"));
}

#[test]
fn cert_from_another_ca_is_reissued() {
    let (_tmp, paths) = setup();
    let (_tmp2, other) = setup();
    let req = request(&[]);
    ensure(&paths, &req, T0);
    ensure(&other, &req, T0);
    fs::copy(other.server_cert(), paths.server_cert()).expect("copy");
    fs::copy(other.server_key(), paths.server_key()).expect("copy");

    let report = ensure(&paths, &req, T0);
    assert!(reissue_reason(&report).contains("not issued by the current CA"));
    let verifier = verifier(&paths);
    verify(&verifier, &server_der(&paths), "nas.local", T0).expect("verifies again");
}

#[test]
fn corrupted_ca_key_is_an_error_not_a_new_ca() {
    let (_tmp, paths) = setup();
    let req = request(&[]);
    ensure(&paths, &req, T0);
    let ca_cert = fs::read(paths.ca_cert()).expect("ca.crt");
    fs::write(
        paths.ca_key(),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("corrupt");

    let err = ensure_local_pki(&paths, &req, None, T0).expect_err("corrupt CA key");
    assert!(
        matches!(&err, TlsError::CaUnusable { path, .. } if *path == paths.ca_key()),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("remove the"), "{message}");
    assert!(
        message.contains(&paths.dir().display().to_string()),
        "{message}"
    );
    assert_eq!(fs::read(paths.ca_cert()).expect("ca.crt"), ca_cert);
}

#[test]
fn half_a_ca_is_an_error() {
    let (_tmp, paths) = setup();
    let req = request(&[]);
    ensure(&paths, &req, T0);
    fs::remove_file(paths.ca_cert()).expect("remove");
    let err = ensure_local_pki(&paths, &req, None, T0).expect_err("half a CA");
    assert!(matches!(err, TlsError::CaUnusable { .. }), "{err}");
}

#[test]
fn ca_key_of_another_ca_is_an_error() {
    let (_tmp, paths) = setup();
    let (_tmp2, other) = setup();
    let req = request(&[]);
    ensure(&paths, &req, T0);
    ensure(&other, &req, T0);
    fs::copy(other.ca_key(), paths.ca_key()).expect("copy");
    let err = ensure_local_pki(&paths, &req, None, T0).expect_err("mismatched CA key");
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn expired_ca_is_an_error() {
    let (_tmp, paths) = setup();
    let req = request(&[]);
    ensure(&paths, &req, T0);
    let err = ensure_local_pki(&paths, &req, None, T0 + CA_VALIDITY + Duration::days(1))
        .expect_err("expired CA");
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn server_cert_never_outlives_the_ca() {
    let (_tmp, paths) = setup();
    let req = request(&[]);
    let first = ensure(&paths, &req, T0);
    let late = T0 + CA_VALIDITY - Duration::days(100);
    let report = ensure(&paths, &req, late);
    assert!(is_reissue(&report));
    assert_eq!(report.server.not_after, first.ca.not_after);
}

#[test]
fn invalid_hostnames_are_rejected() {
    let (_tmp, paths) = setup();
    for bad in ["", "nas.lan", "my_nas", "-nas", "nas!"] {
        let mut req = request(&[]);
        req.hostname = bad.to_owned();
        let err = ensure_local_pki(&paths, &req, None, T0).expect_err(bad);
        assert!(
            matches!(err, TlsError::InvalidHostname { .. }),
            "{bad}: {err}"
        );
    }
    assert!(
        !paths.ca_key().exists(),
        "nothing is created for a bad request"
    );

    let mut req = request(&[]);
    req.extra_names = vec!["*.lan".to_owned()];
    let err = ensure_local_pki(&paths, &req, None, T0).expect_err("wildcard");
    assert!(matches!(err, TlsError::InvalidName { .. }), "{err}");
}

#[test]
fn hostname_case_does_not_matter() {
    let (_tmp, paths) = setup();
    let mut req = request(&[]);
    req.hostname = "NAS".to_owned();
    let report = ensure(&paths, &req, T0);
    assert!(report.server.names.contains(&"nas.local".to_owned()));
    req.hostname = "nas".to_owned();
    assert_eq!(ensure(&paths, &req, T0).actions, vec![PkiAction::Unchanged]);
}

#[test]
fn lan_addresses_exclude_loopback_and_link_local() {
    let addrs = lan_addresses();
    let mut sorted = addrs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(addrs, sorted);
    for ip in &addrs {
        assert!(is_reachable_lan_address(*ip), "{ip}");
    }
    for ip in ["127.0.0.1", "::1", "169.254.1.1", "fe80::1", "0.0.0.0"] {
        assert!(!is_reachable_lan_address(ip.parse().expect("ip")), "{ip}");
    }
    assert!(is_reachable_lan_address("192.168.1.2".parse().expect("ip")));

    let req = default_request("nas", &["vault.lan".to_owned()]);
    assert_eq!(req.hostname, "nas");
    assert_eq!(req.extra_names, ["vault.lan"]);
    assert!(req.addresses.iter().all(|ip| addrs.contains(ip)));
}
