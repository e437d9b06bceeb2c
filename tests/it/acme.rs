//! ACME end to end: the real appliance (`contextvault run` with `[acme]`) against
//! Debian's pebble as the CA and named as the DNS, one of each per test. For each
//! challenge type the supervisor obtains a certificate, and a TLS client that trusts
//! only pebble's root sees its serial for the ACME name, served by the same service
//! process (no restart); LAN names keep the local CA's certificate. With pebble
//! stopped, a renewal fails, the old certificate stays, and `/healthz` says so.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use cv_testkit::acme::{TestDns, TestPebble, acme_tools_available};
use cv_testkit::{Launch, TestAppliance, eventually, free_port, shared_tempdir};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::support::exe;

const ZONE: &str = "cv-test.example";

struct Rig {
    app: TestAppliance,
    pebble: TestPebble,
    _dns: TestDns,
    _secrets: tempfile::TempDir,
    name: String,
}

async fn start(challenge: &str, label: &str) -> Option<Rig> {
    if !acme_tools_available() {
        return None;
    }
    let dns = TestDns::start(ZONE);
    let (https_port, http_port) = (free_port(), free_port());
    // pebble checks HTTP-01 and TLS-ALPN-01 on the appliance's own ports.
    let pebble = TestPebble::start(dns.addr(), http_port, https_port);
    let name = dns.name(label);
    let secrets = shared_tempdir();
    let mut extra = format!(
        "[acme]\nenabled = true\ndirectory_url = \"{}\"\ncontact_email = \"owner@{ZONE}\"\n\
         names = [\"{name}\"]\nchallenge = \"{challenge}\"\nca_bundle = \"{}\"\n",
        pebble.directory_url(),
        pebble.listener_ca_path().display()
    );
    if challenge == "dns-01" {
        let secret = secrets.path().join("tsig.secret");
        dns.write_secret_file(&secret);
        extra.push_str(&format!(
            "dns_server = \"{}\"\ndns_zone = \"{ZONE}\"\ntsig_key_name = \"{}\"\n\
             tsig_secret_file = \"{}\"\n",
            dns.addr(),
            dns.key_name,
            secret.display()
        ));
    }
    let launch = Launch::Appliance { env: vec![], extra };
    let app = TestAppliance::launch_on_ports(&exe(), launch, https_port, http_port).await;
    Some(Rig {
        app,
        pebble,
        _dns: dns,
        _secrets: secrets,
        name,
    })
}

/// The serial of the certificate the appliance serves for SNI `name`, verified against
/// `roots` (PEM) as any TLS client would.
fn served_serial(port: u16, name: &str, roots: &[u8]) -> Result<String, String> {
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots) {
        store
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(store)
    .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), server_name).map_err(|e| e.to_string())?;
    let mut sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?;
    let serial = cv_net::acme::cert_serial_hex(leaf).ok_or("unparsable certificate")?;
    // Be polite: an HTTP request and the answer's first bytes.
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let _ = tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = tls.read(&mut [0u8; 16]);
    Ok(serial)
}

async fn served(port: u16, name: &str, roots: &[u8]) -> Result<String, String> {
    let (name, roots) = (name.to_owned(), roots.to_vec());
    tokio::task::spawn_blocking(move || served_serial(port, &name, &roots))
        .await
        .unwrap()
}

impl Rig {
    async fn acme_health(&self) -> serde_json::Value {
        self.app.health().await.1["acme"].clone()
    }

    /// Waits for the first certificate, and for the service to serve it for the name
    /// (verified against pebble's root), without a restart of the service.
    async fn obtains_and_serves(&self) -> (String, Vec<u8>) {
        let service_pid = self.app.service_pid().expect("the service runs");
        let serial = eventually(Duration::from_secs(120), "an ACME certificate", || async {
            let acme = self.acme_health().await;
            assert_ne!(
                acme["state"],
                "failing",
                "{acme}\npebble:\n{}",
                self.pebble.log()
            );
            (acme["state"] == "valid").then(|| acme["serial"].as_str().unwrap().to_owned())
        })
        .await;
        let root = self.pebble.root_pem().await;
        let port = self.app.https_port;
        eventually(
            Duration::from_secs(30),
            "the ACME certificate served",
            || async {
                served(port, &self.name, &root)
                    .await
                    .ok()
                    .filter(|s| *s == serial)
            },
        )
        .await;
        assert_eq!(
            self.app.service_pid(),
            Some(service_pid),
            "the service restarted"
        );
        // LAN names keep the local CA's certificate.
        let (code, _) = self.app.health().await;
        assert_eq!(code, 200);
        assert!(served(port, "localhost", &root).await.is_err());
        (serial, root)
    }
}

#[tokio::test]
async fn acme_http01_obtains_and_a_stopped_ca_keeps_the_old_certificate() {
    let Some(mut rig) = start("http-01", "web").await else {
        return;
    };
    let (serial, root) = rig.obtains_and_serves().await;
    let service_pid = rig.app.service_pid();

    rig.pebble.stop();
    cv_control::ControlClient::new(rig.app.layout().control_socket())
        .acme_renew()
        .await
        .unwrap();
    let acme = eventually(Duration::from_secs(60), "the renewal to fail", || async {
        let acme = rig.acme_health().await;
        (acme["state"] == "failing").then_some(acme)
    })
    .await;
    assert_eq!(acme["error"], "ca_unreachable", "{acme}");
    assert_eq!(acme["serial"], serial.as_str(), "{acme}");
    assert!(acme["next_attempt"].is_string(), "{acme}");
    // The old certificate is still served, by the same service.
    assert_eq!(
        served(rig.app.https_port, &rig.name, &root).await,
        Ok(serial)
    );
    assert_eq!(rig.app.service_pid(), service_pid);
    let log = rig.app.log().join("\n");
    assert!(
        log.contains("ACME failed; the current certificate stays in use"),
        "{log}"
    );
}

#[tokio::test]
async fn acme_tls_alpn01_obtains_and_serves_without_a_restart() {
    let Some(rig) = start("tls-alpn-01", "alpn").await else {
        return;
    };
    rig.obtains_and_serves().await;
}

#[tokio::test]
async fn acme_dns01_obtains_through_rfc2136_updates() {
    let Some(rig) = start("dns-01", "dns").await else {
        return;
    };
    rig.obtains_and_serves().await;
}
