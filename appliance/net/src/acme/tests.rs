//! Against real servers: Debian's pebble as the CA and named (bind9) as the DNS, both
//! started per test by cv-testkit, with minimal HTTP-01 and TLS-ALPN-01 responders
//! here that answer from the same files the vault service reads.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use cv_testkit::acme::{TestDns, TestPebble, acme_tools_available};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;

use super::*;

const ZONE: &str = "cv-test.example";

/// The CA, the DNS, a place for the files, and responders on pebble's ports.
struct Rig {
    dns: TestDns,
    pebble: TestPebble,
    dir: tempfile::TempDir,
    dirs: ChallengeDirs,
}

impl Rig {
    fn start() -> Option<Rig> {
        if !acme_tools_available() {
            return None;
        }
        let dns = TestDns::start(ZONE);
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let tls = TcpListener::bind("127.0.0.1:0").unwrap();
        let pebble = TestPebble::start(
            dns.addr(),
            http.local_addr().unwrap().port(),
            tls.local_addr().unwrap().port(),
        );
        let dir = tempfile::tempdir().unwrap();
        let dirs = ChallengeDirs {
            http: dir.path().join("acme-http"),
            tls_alpn: dir.path().join("acme-tls-alpn"),
            owner: None,
        };
        dirs.create().unwrap();
        serve_http01(http, dirs.http.clone());
        serve_tls_alpn01(tls, dirs.tls_alpn.clone());
        Some(Rig {
            dns,
            pebble,
            dir,
            dirs,
        })
    }

    fn settings(&self) -> AccountSettings {
        AccountSettings {
            directory_url: self.pebble.directory_url(),
            contact_email: Some("owner@cv-test.example".into()),
            ca_bundle: Some(self.pebble.listener_ca_path()),
        }
    }

    fn paths(&self) -> AcmePaths {
        AcmePaths::new(&self.dir.path().join("tls"))
    }

    fn rfc2136(&self, secret: &str) -> Rfc2136 {
        let key = TsigKey::new(
            &self.dns.key_name,
            TsigAlgorithm::HmacSha256,
            TsigSecret::from_base64(secret).unwrap(),
        )
        .unwrap();
        let mut dns = Rfc2136::new(self.dns.addr(), AcmeName::parse(ZONE).unwrap(), key);
        dns.propagation_timeout = Duration::from_secs(10);
        dns
    }

    async fn obtain(&self, names: &[&str], solver: &Solver) -> Result<IssuedCert, AcmeError> {
        let names: Vec<AcmeName> = names.iter().map(|n| AcmeName::parse(n).unwrap()).collect();
        obtain_certificate(
            &self.settings(),
            &self.paths(),
            &names,
            solver,
            OffsetDateTime::now_utc(),
        )
        .await
    }

    /// Checks `issued` against pebble's root for `name`, as a TLS client would.
    async fn assert_chain_verifies(&self, issued: &IssuedCert, name: &str) {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.pebble.root_pem().await) {
            roots.add(cert.unwrap()).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let chain: Vec<CertificateDer<'_>> =
            CertificateDer::pem_slice_iter(issued.chain_pem().as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .unwrap();
    }
}

/// Answers `GET /.well-known/acme-challenge/<token>` from `dir`, 404 otherwise.
fn serve_http01(listener: TcpListener, dir: PathBuf) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                reader.read_line(&mut line).unwrap_or(0);
                let answer = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.strip_prefix("/.well-known/acme-challenge/"))
                    .and_then(|token| http01_answer(&dir, token));
                let response = match answer {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .into()
                    }
                };
                let _ = (&stream).write_all(response.as_bytes());
            });
        }
    });
}

#[derive(Debug)]
struct AlpnResolver(PathBuf);

impl ResolvesServerCert for AlpnResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        tls_alpn01_key(&self.0, hello.server_name()?)
    }
}

/// Completes `acme-tls/1` handshakes with the published challenge certificates.
fn serve_tls_alpn01(listener: TcpListener, dir: PathBuf) {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(AlpnResolver(dir)));
    config.alpn_protocols = vec![ACME_TLS_ALPN_PROTOCOL.to_vec()];
    let config = Arc::new(config);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(mut conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                while conn.is_handshaking() {
                    if conn.complete_io(&mut stream).is_err() {
                        return;
                    }
                }
                conn.send_close_notify();
                let _ = conn.complete_io(&mut stream);
            });
        }
    });
}

#[tokio::test]
async fn obtains_a_certificate_by_http01() {
    let Some(rig) = Rig::start() else { return };
    let name = rig.dns.name("web");
    let issued = rig
        .obtain(&[&name], &Solver::Http01(rig.dirs.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}\npebble:\n{}", rig.pebble.log()));
    rig.assert_chain_verifies(&issued, &name).await;
    assert_eq!(issued.info.names, std::slice::from_ref(&name));
    // The answer is gone once the order is done.
    assert_eq!(std::fs::read_dir(&rig.dirs.http).unwrap().count(), 0);

    install(&rig.paths(), &issued, None).unwrap();
    let Installed::Valid(loaded) = load_installed(&rig.paths(), OffsetDateTime::now_utc()) else {
        panic!("the installed certificate does not load");
    };
    assert_eq!(loaded.serial, issued.serial);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(rig.paths().key()), 0o600);
    assert_eq!(mode(rig.paths().account()), 0o600);
    assert_eq!(mode(rig.paths().cert()), 0o644);
    // The account key is in the file and nowhere in what Debug prints.
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
}

#[tokio::test]
async fn obtains_a_certificate_by_tls_alpn01() {
    let Some(rig) = Rig::start() else { return };
    let names = [rig.dns.name("alpn"), rig.dns.name("alpn2")];
    let issued = rig
        .obtain(
            &[&names[0], &names[1]],
            &Solver::TlsAlpn01(rig.dirs.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\npebble:\n{}", rig.pebble.log()));
    rig.assert_chain_verifies(&issued, &names[1]).await;
    assert_eq!(std::fs::read_dir(&rig.dirs.tls_alpn).unwrap().count(), 0);
}

#[tokio::test]
async fn obtains_a_certificate_by_dns01_through_rfc2136() {
    let Some(rig) = Rig::start() else { return };
    let name = rig.dns.name("dns");
    let solver = Solver::Dns01(rig.rfc2136(&rig.dns.key_secret));
    let issued = rig.obtain(&[&name], &solver).await.unwrap_or_else(|e| {
        panic!(
            "{e}\npebble:\n{}\nnamed:\n{}",
            rig.pebble.log(),
            rig.dns.log()
        )
    });
    rig.assert_chain_verifies(&issued, &name).await;
    // The TXT record was removed afterwards.
    assert_eq!(
        rig.dns.dig(&format!("_acme-challenge.{name}"), "TXT"),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_wrong_tsig_secret_is_refused_clearly() {
    let Some(rig) = Rig::start() else { return };
    let name = AcmeName::parse(&rig.dns.name("x")).unwrap();
    let dns = rig.rfc2136("d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==");
    let err = dns.add_txt(&name, "value").await.unwrap_err().to_string();
    assert!(err.contains("no valid signature"), "{err}");
    assert!(!err.contains("d3Jvbmct"), "{err}");
    assert_eq!(
        rig.dns.dig(&format!("_acme-challenge.{name}"), "TXT"),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn with_the_ca_stopped_renewal_fails_and_leaves_the_files() {
    let Some(mut rig) = Rig::start() else { return };
    let name = rig.dns.name("keep");
    let solver = Solver::Http01(rig.dirs.clone());
    let issued = rig.obtain(&[&name], &solver).await.unwrap();
    install(&rig.paths(), &issued, None).unwrap();
    let before = (
        std::fs::read(rig.paths().cert()).unwrap(),
        std::fs::read(rig.paths().key()).unwrap(),
    );
    rig.pebble.stop();
    let err = rig.obtain(&[&name], &solver).await.unwrap_err();
    assert!(matches!(err, AcmeError::Ca { .. }), "{err}");
    let after = (
        std::fs::read(rig.paths().cert()).unwrap(),
        std::fs::read(rig.paths().key()).unwrap(),
    );
    assert_eq!(before, after);
    assert!(matches!(
        load_installed(&rig.paths(), OffsetDateTime::now_utc()),
        Installed::Valid(c) if c.serial == issued.serial
    ));
}

#[test]
fn a_broken_or_mismatched_pair_is_reported_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let paths = AcmePaths::new(dir.path());
    assert!(matches!(
        load_installed(&paths, OffsetDateTime::now_utc()),
        Installed::Missing
    ));
    std::fs::create_dir_all(paths.dir()).unwrap();
    std::fs::write(paths.cert(), "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    std::fs::write(paths.key(), "nope").unwrap();
    assert!(matches!(
        load_installed(&paths, OffsetDateTime::now_utc()),
        Installed::Unusable(_)
    ));
    // A certificate with another certificate's key.
    let a = rcgen::generate_simple_self_signed(vec!["a.example.org".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b.example.org".into()]).unwrap();
    std::fs::write(paths.cert(), a.cert.pem()).unwrap();
    std::fs::write(paths.key(), b.signing_key.serialize_pem()).unwrap();
    let Installed::Unusable(reason) = load_installed(&paths, OffsetDateTime::now_utc()) else {
        panic!("a mismatched pair loaded");
    };
    assert!(reason.contains("does not belong"), "{reason}");
    std::fs::write(paths.key(), a.signing_key.serialize_pem()).unwrap();
    assert!(matches!(
        load_installed(&paths, OffsetDateTime::now_utc()),
        Installed::Valid(_)
    ));
}
