//! A test CA and a test DNS server for ACME: Debian's `pebble` and `named` (bind9), each
//! on random ports in a directory of its own, stopped when dropped.
//!
//! [`TestDns`] serves an authoritative zone (`<zone>`) in which every name resolves to
//! 127.0.0.1, and accepts RFC 2136 updates signed with a TSIG key made for it. pebble
//! asks it for the names it validates (and for DNS-01 TXT records), so no
//! `pebble-challtestsrv` is needed: the test DNS is a real primary server, the kind the
//! appliance updates in a home. [`TestPebble`] validates HTTP-01 and TLS-ALPN-01 on the
//! ports it is given (the appliance's, in tests), listens with a certificate from a CA
//! made here ([`TestPebble::listener_ca_pem`], the `ca_bundle` to trust), and issues
//! from a root it makes at every start ([`TestPebble::root_pem`]).
//!
//! Without the programs, [`tool_available`] says so: tests skip with a printed reason,
//! unless `CV_REQUIRE_ROOT_NET=1` asks for them, in which case they fail.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{free_port, shared_tempdir};

/// Whether `program` can be run. When it cannot: prints why and returns false, or
/// panics when `CV_REQUIRE_ROOT_NET` is set (the test script sets it).
pub fn tool_available(program: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|dir| dir.join(program).is_file())
    });
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CV_REQUIRE_ROOT_NET").is_none(),
        "{program} is required (CV_REQUIRE_ROOT_NET is set); install it with scripts/install-deps --test"
    );
    println!("skipped: {program} is not installed (scripts/install-deps --test installs it)");
    false
}

/// Whether pebble and named (and dig) are all there; see [`tool_available`].
pub fn acme_tools_available() -> bool {
    ["pebble", "named", "dig"].iter().all(|t| tool_available(t))
}

fn program_path(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(program);
        if path.is_file() {
            return path;
        }
    }
    PathBuf::from(program)
}

fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let started = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port} within 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let started = Instant::now();
        while c.try_wait().ok().flatten().is_none() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// `named` serving one zone on a random port, updatable with a TSIG key.
#[derive(Debug)]
pub struct TestDns {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// TCP and UDP port on 127.0.0.1.
    pub port: u16,
    /// The zone, without a trailing dot, e.g. `cv-test.example`.
    pub zone: String,
    /// The TSIG key's name.
    pub key_name: String,
    /// The TSIG key's secret, base64.
    pub key_secret: String,
}

impl TestDns {
    /// Starts `named` for `zone` (every name in it resolves to 127.0.0.1).
    pub fn start(zone: &str) -> TestDns {
        let dir = shared_tempdir();
        let port = free_port();
        let mut secret = [0u8; 32];
        rand_bytes(&mut secret);
        let key_secret = base64::engine::general_purpose::STANDARD.encode(secret);
        let key_name = "cv-test-key".to_owned();
        let d = dir.path().display();
        let config = format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
             listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  \
             recursion no;\n  dnssec-validation no;\n  notify no;\n  \
             session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n}};\n\
             controls {{ }};\n\
             key \"{key_name}\" {{ algorithm hmac-sha256; secret \"{key_secret}\"; }};\n\
             zone \"{zone}\" {{ type primary; file \"{d}/zone.db\"; \
             allow-update {{ key \"{key_name}\"; }}; }};\n"
        );
        let zone_file = format!(
            "$ORIGIN {zone}.\n$TTL 60\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 60\n\
             @ IN NS ns\nns IN A 127.0.0.1\n@ IN A 127.0.0.1\n* IN A 127.0.0.1\n"
        );
        std::fs::write(dir.path().join("named.conf"), config).unwrap();
        std::fs::write(dir.path().join("zone.db"), zone_file).unwrap();
        let log = dir.path().join("named.log");
        let mut cmd = Command::new(program_path("named"));
        cmd.arg("-g")
            .arg("-c")
            .arg(dir.path().join("named.conf"))
            .arg("-p")
            .arg(port.to_string());
        // named refuses to keep running as root without -u; Debian's package makes
        // the `bind` user, which then needs to write the zone's journal here.
        if nix::unistd::Uid::effective().is_root()
            && let Ok(Some(user)) = nix::unistd::User::from_name("bind")
        {
            chown_tree(dir.path(), user.uid.as_raw(), user.gid.as_raw());
            cmd.arg("-u").arg("bind");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut dns = TestDns {
            child: Some(child),
            dir,
            port,
            zone: zone.to_owned(),
            key_name,
            key_secret,
        };
        let child = dns.child.as_mut().unwrap();
        wait_for_port(port, "named", child, &log);
        // Listening comes before the zone is loaded; wait for its SOA.
        let started = Instant::now();
        while dns.dig(zone, "SOA").is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "named did not load {zone}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        dns
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A fresh name in the zone, unique to this process and call.
    pub fn name(&self, label: &str) -> String {
        format!("{label}.{}", self.zone)
    }

    /// Writes the TSIG secret to `path`, mode 0600, as the appliance expects it.
    pub fn write_secret_file(&self, path: &Path) {
        std::fs::write(path, format!("{}\n", self.key_secret)).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// `dig +short` of `name`/`rtype` against this server.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args(["+short", "+time=2", "+tries=1", "@127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args([name, rtype])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(str::to_owned)
            .collect()
    }

    /// named's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    let own = |p: &Path| {
        nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .unwrap();
    };
    own(dir);
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        own(&entry.path());
    }
}

fn rand_bytes(out: &mut [u8]) {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(out)
        .unwrap();
}

/// `pebble` on random ports.
#[derive(Debug)]
pub struct TestPebble {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The ACME listener.
    pub acme_port: u16,
    /// The management listener (`/roots/0`).
    pub management_port: u16,
    /// Where pebble connects for HTTP-01.
    pub http_port: u16,
    /// Where pebble connects for TLS-ALPN-01.
    pub tls_port: u16,
    /// The DNS server pebble resolves names with.
    pub dns: SocketAddr,
}

impl TestPebble {
    /// Starts pebble validating on `http_port` and `tls_port` and resolving with `dns`.
    pub fn start(dns: SocketAddr, http_port: u16, tls_port: u16) -> TestPebble {
        let dir = shared_tempdir();
        // The CA of pebble's own HTTPS listener, made here (pebble's test CA ships
        // its key, so it is not used).
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cv-testkit pebble listener CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca_issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble");
        let cert = params.signed_by(&key, &ca_issuer).unwrap();
        std::fs::write(dir.path().join("listener-ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();

        let mut pebble = TestPebble {
            child: None,
            dir,
            acme_port: free_port(),
            management_port: free_port(),
            http_port,
            tls_port,
            dns,
        };
        pebble.spawn();
        pebble
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{}", self.acme_port),
                "managementListenAddress": format!("127.0.0.1:{}", self.management_port),
                "certificate": d.join("cert.pem"),
                "privateKey": d.join("key.pem"),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        std::fs::write(d.join("pebble.json"), config.to_string()).unwrap();
        let log = d.join("pebble.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program_path("pebble"))
            .arg("-config")
            .arg(d.join("pebble.json"))
            .arg("-dnsserver")
            .arg(self.dns.to_string())
            // No sleeping between validation attempts, and no nonce rejected on purpose
            // (pebble rejects 5% by default to exercise clients' retries).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let child = self.child.as_mut().unwrap();
        wait_for_port(self.acme_port, "pebble", child, &log);
        wait_for_port(self.management_port, "pebble (management)", child, &log);
    }

    /// The ACME directory URL.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The CA that signed pebble's HTTPS listener certificate (the appliance's
    /// `acme.ca_bundle`).
    pub fn listener_ca_path(&self) -> PathBuf {
        self.dir.path().join("listener-ca.pem")
    }

    /// The same, PEM.
    pub fn listener_ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.listener_ca_path()).unwrap()
    }

    /// The root pebble issues from, PEM (a new one at every start).
    pub async fn root_pem(&self) -> Vec<u8> {
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.listener_ca_pem()).unwrap())
            .build()
            .unwrap();
        let resp = client
            .get(format!(
                "https://127.0.0.1:{}/roots/0",
                self.management_port
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap().to_vec()
    }

    /// Stops pebble (the CA is then unreachable).
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// pebble's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for TestPebble {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}
