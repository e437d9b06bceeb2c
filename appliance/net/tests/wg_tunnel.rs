//! The VPN on the real kernel: two network namespaces joined by a veth pair, the
//! appliance's interface brought up in one by `cv_net::wg` (in a thread that has entered
//! that namespace), a client made from the generated configuration in the other with
//! `wireguard-go` and `wg setconf`, and TCP through the tunnel — only with the peer's
//! preshared key, and until the peer is revoked. A peer registered before preshared keys
//! existed still gets through without one.
//!
//! These need root, `ip`, `wireguard-go` and `wg`. A test whose precondition is missing
//! says so on stderr and returns, unless `CV_REQUIRE_ROOT_NET=1` (set by
//! `scripts/test`) makes that a failure. Every test uses its own namespaces and
//! interface names (the UAPI socket directory is shared by all namespaces), and a guard
//! removes them, and any `wireguard-go` left, even when the test fails.
//!
//! Helpers unwrap freely: a failed step should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cv_net::wg::iface::{socket_path, wireguard_go_processes};
use cv_net::wg::{
    Backend, ClientConfig, Endpoint, InterfaceName, PeerName, PrivateKey, PublicKey, Tools,
    WgError, WgNetwork, WgServer, WgSettings,
};
use nix::sched::CloneFlags;

/// The veth pair's network: the server's side and the client's.
const SERVER_LAN: &str = "10.250.0.1";
const CLIENT_LAN: &str = "10.250.0.2";
/// A port on the server's tunnel address that the test listens on.
const ECHO_PORT: u16 = 7777;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (of this run or another process) uses: `prefix` + pid + counter.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn lab_or_skip(test: &str) -> bool {
    cv_testkit::netns::root_net_or_skip(test, &["ip", "wireguard-go", "wg"])
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted (with every interface in it) when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = unique("cv-wgtest-");
        run(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        run(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.0];
        all.extend_from_slice(args);
        run(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// A thread inside a network namespace that runs closures sent to it. What it creates
/// (sockets, interfaces, child processes) belongs to that namespace.
struct NsThread {
    jobs: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl NsThread {
    fn enter(ns: &Netns) -> NsThread {
        let path = PathBuf::from("/run/netns").join(&ns.0);
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let file = File::open(&path).unwrap();
            nix::sched::setns(file, CloneFlags::CLONE_NEWNET).unwrap();
            ready_tx.send(()).unwrap();
            for job in rx {
                job();
            }
        });
        ready_rx.recv().unwrap();
        NsThread {
            jobs: Some(tx),
            handle: Some(handle),
        }
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .unwrap()
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .unwrap();
        rx.recv().expect("the job panicked in its namespace")
    }
}

impl Drop for NsThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

thread_local! {
    /// The server, living in (and dropped by) its namespace's thread.
    static SERVER: std::cell::RefCell<Option<WgServer>> = const { std::cell::RefCell::new(None) };
}

fn with_server<T>(f: impl FnOnce(&mut WgServer) -> T) -> T {
    SERVER.with(|s| f(s.borrow_mut().as_mut().expect("the server was opened")))
}

/// Everything one test set up; removed when dropped, whatever happened.
struct Lab {
    server_ns: Netns,
    client_ns: Netns,
    interfaces: Vec<InterfaceName>,
    client_wg: Option<Child>,
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

impl Lab {
    /// Two namespaces joined by a veth pair, `SERVER_LAN` and `CLIENT_LAN`.
    fn new() -> Lab {
        let server_ns = Netns::new();
        let client_ns = Netns::new();
        run(&[
            "ip",
            "-n",
            &server_ns.0,
            "link",
            "add",
            "veth-s",
            "type",
            "veth",
            "peer",
            "name",
            "veth-c",
            "netns",
            &client_ns.0,
        ]);
        for (ns, dev, ip) in [
            (&server_ns, "veth-s", SERVER_LAN),
            (&client_ns, "veth-c", CLIENT_LAN),
        ] {
            run(&[
                "ip",
                "-n",
                &ns.0,
                "address",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
            run(&["ip", "-n", &ns.0, "link", "set", dev, "up"]);
        }
        let dir = tempfile::tempdir().unwrap();
        Lab {
            server_ns,
            client_ns,
            interfaces: Vec::new(),
            client_wg: None,
            dir: dir.path().to_owned(),
            _dir: dir,
        }
    }

    fn interface(&mut self, prefix: &str) -> InterfaceName {
        let name = InterfaceName::parse(&unique(prefix)).unwrap();
        self.interfaces.push(name.clone());
        name
    }

    /// The client side from `conf`, as wg-quick would set it up: wireguard-go, `wg
    /// setconf` with the lines only wg-quick understands (Address, DNS) left out, the
    /// address on the interface and a route for each AllowedIPs network.
    fn start_client(&mut self, name: &InterfaceName, conf: &str) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client_ns.0,
                "wireguard-go",
                "-f",
                name.as_str(),
            ])
            .env("WG_PROCESS_FOREGROUND", "1")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.client_wg = Some(child);
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(socket_path(name)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "client wireguard-go did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let field = |key: &str| -> Vec<String> {
            conf.lines()
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
                .flat_map(|v| v.split(", ").map(str::to_owned).collect::<Vec<_>>())
                .collect()
        };
        let stripped: String = conf
            .lines()
            .filter(|l| !l.starts_with("Address") && !l.starts_with("DNS"))
            .map(|l| format!("{l}\n"))
            .collect();
        let file = self.dir.join(format!("{name}.conf"));
        std::fs::write(&file, stripped).unwrap();
        self.client_ns
            .exec(&["wg", "setconf", name.as_str(), file.to_str().unwrap()]);
        std::fs::remove_file(&file).unwrap();
        for address in field("Address") {
            run(&[
                "ip",
                "-n",
                &self.client_ns.0,
                "address",
                "add",
                &address,
                "dev",
                name.as_str(),
            ]);
        }
        run(&[
            "ip",
            "-n",
            &self.client_ns.0,
            "link",
            "set",
            name.as_str(),
            "up",
        ]);
        for net in field("AllowedIPs") {
            run(&[
                "ip",
                "-n",
                &self.client_ns.0,
                "route",
                "add",
                &net,
                "dev",
                name.as_str(),
            ]);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.client_wg.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting the namespaces deletes their interfaces; a wireguard-go whose
        // interface is gone exits. Any that does not is killed.
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip")
                .args(["netns", "delete", &ns.0])
                .stderr(Stdio::null())
                .status();
        }
        for name in &self.interfaces {
            for pid in wireguard_go_processes(name) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = std::fs::remove_file(socket_path(name));
        }
    }
}

fn settings(interface: &InterfaceName, port: u16) -> WgSettings {
    let mut settings = WgSettings::new(
        interface.clone(),
        WgNetwork::parse("10.213.0.0/24").unwrap(),
        port,
    );
    settings.endpoint = Some(Endpoint::parse(&format!("{SERVER_LAN}:{port}")).unwrap());
    settings
}

/// Connects from the client's namespace to the echo listener through the tunnel, and
/// says whether a round trip worked within `timeout`.
fn round_trip(client: &NsThread, timeout: Duration) -> Result<(), String> {
    client.run(move || {
        let server = SocketAddr::from((Ipv4Addr::new(10, 213, 0, 1), ECHO_PORT));
        let mut stream = TcpStream::connect_timeout(&server, timeout).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream.write_all(b"ping").map_err(|e| e.to_string())?;
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer).map_err(|e| e.to_string())?;
        if &answer == b"ping" {
            Ok(())
        } else {
            Err(format!("echo answered {answer:?}"))
        }
    })
}

/// Echoes every connection's bytes back, until the listener is dropped with the thread's
/// namespace.
fn echo(listener: TcpListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buffer = [0u8; 4];
            if stream.read_exact(&mut buffer).is_ok() {
                let _ = stream.write_all(&buffer);
            }
        }
    });
}

/// What `wg show INTERFACE preshared-keys` says in `ns`: each peer's public key and its
/// preshared key (`(none)` when it has none).
fn preshared_keys(ns: &Netns, interface: &InterfaceName) -> Vec<(String, String)> {
    ns.exec(&["wg", "show", interface.as_str(), "preshared-keys"])
        .lines()
        .map(|line| {
            let (peer, key) = line.split_once('\t').unwrap();
            (peer.to_owned(), key.to_owned())
        })
        .collect()
}

/// The value of the first `KEY = value` line of `conf`.
fn conf_field<'c>(conf: &'c str, key: &str) -> &'c str {
    conf.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
        .unwrap_or_else(|| panic!("no {key} in the configuration"))
}

#[test]
fn traffic_flows_through_the_tunnel_until_the_peer_is_revoked() {
    if !lab_or_skip("traffic_flows_through_the_tunnel_until_the_peer_is_revoked") {
        return;
    }
    let mut lab = Lab::new();
    let server_if = lab.interface("cvts");
    let client_if = lab.interface("cvtc");
    let port = 51820;
    let state = lab.dir.join("wireguard");
    let server = NsThread::enter(&lab.server_ns);
    let client = NsThread::enter(&lab.client_ns);

    // The server, brought up by cv_net::wg in its namespace, with one peer.
    let settings_ = settings(&server_if, port);
    let (backend, pid) = server.run(move || {
        let mut s = WgServer::open(settings_, state).unwrap();
        s.bring_up(&Tools::find()).unwrap();
        let iface = s.interface().unwrap();
        let result = (iface.backend(), iface.wireguard_go_pid());
        SERVER.with(|cell| *cell.borrow_mut() = Some(s));
        result
    });
    if backend == Backend::Userspace {
        assert!(pid.is_some(), "wireguard-go runs as the server's child");
    }
    let (peer, conf) = server.run(|| {
        let (peer, config) =
            with_server(|s| s.add_peer("olivia-phone", time::OffsetDateTime::now_utc())).unwrap();
        (peer, config.text().to_owned())
    });
    assert_eq!(peer.address, Ipv4Addr::new(10, 213, 0, 2));
    let listener = server.run(|| TcpListener::bind(("10.213.0.1", ECHO_PORT)).unwrap());
    echo(listener);

    // The peer's preshared key is on the server's interface, as the configuration says.
    let psk = conf_field(&conf, "PresharedKey").to_owned();
    assert_eq!(
        preshared_keys(&lab.server_ns, &server_if),
        [(peer.public_key.to_base64(), psk.clone())]
    );
    assert_eq!(
        peer.preshared_key.as_ref().unwrap().to_base64().as_str(),
        psk
    );

    // The client, from the configuration without its preshared key: the server answers
    // its handshakes with the key mixed in, which the client cannot check, so nothing
    // passes.
    let without_psk: String = conf
        .lines()
        .filter(|l| !l.starts_with("PresharedKey"))
        .map(|l| format!("{l}\n"))
        .collect();
    lab.start_client(&client_if, &without_psk);
    let server_key = conf_field(&conf, "PublicKey").to_owned();
    assert_eq!(
        preshared_keys(&lab.client_ns, &client_if),
        [(server_key.clone(), "(none)".to_owned())]
    );
    let err = round_trip(&client, Duration::from_secs(3))
        .expect_err("no traffic without the preshared key");
    println!("without the preshared key the connection failed as it should: {err}");
    let status = server.run(|| with_server(|s| s.status()).unwrap());
    let stats = status[0].stats.expect("stats while up");
    assert!(stats.last_handshake.is_none(), "{stats:?}");

    // With the configuration's preshared key, as `wg setconf` takes it from the whole
    // file: traffic passes, and both ends hold the same key.
    let psk_file = lab.dir.join("psk");
    std::fs::write(&psk_file, format!("{psk}\n")).unwrap();
    lab.client_ns.exec(&[
        "wg",
        "set",
        client_if.as_str(),
        "peer",
        &server_key,
        "preshared-key",
        psk_file.to_str().unwrap(),
    ]);
    std::fs::remove_file(&psk_file).unwrap();
    assert_eq!(
        preshared_keys(&lab.client_ns, &client_if),
        [(server_key.clone(), psk.clone())]
    );
    round_trip(&client, Duration::from_secs(20)).expect("traffic through the tunnel");

    // The server sees the handshake and the bytes.
    let status = server.run(|| with_server(|s| s.status()).unwrap());
    let stats = status[0].stats.expect("stats while up");
    assert!(stats.last_handshake.is_some(), "{stats:?}");
    assert!(stats.rx_bytes > 0 && stats.tx_bytes > 0, "{stats:?}");

    // Revoked: gone from the interface at once, so nothing passes any more.
    let revoked = server.run(|| with_server(|s| s.revoke_peer("OLIVIA-PHONE")).unwrap());
    assert_eq!(revoked.public_key, peer.public_key);
    let err = round_trip(&client, Duration::from_secs(3)).expect_err("no traffic after revoke");
    println!("after the revoke the connection failed as it should: {err}");
    let on_interface = server.run(|| with_server(|s| s.status()).unwrap());
    assert!(on_interface.is_empty());

    // Taken down: the interface, its socket and wireguard-go are gone.
    let name = server_if.clone();
    server.run(move || {
        with_server(|s| s.take_down()).unwrap();
        assert!(nix::net::if_::if_nametoindex(name.as_str()).is_err());
    });
    assert!(!socket_path(&server_if).exists());
    assert!(wireguard_go_processes(&server_if).is_empty());
    drop(server);
    drop(client);
}

#[test]
fn an_interface_is_taken_over_only_from_an_earlier_run() {
    if !lab_or_skip("an_interface_is_taken_over_only_from_an_earlier_run") {
        return;
    }
    let mut lab = Lab::new();
    let name = lab.interface("cvto");
    let ns = NsThread::enter(&lab.server_ns);
    let mine = lab.dir.join("mine");
    let theirs = lab.dir.join("theirs");

    // Another WireGuard interface of that name with another key: refused, left alone.
    let (n, t, m) = (name.clone(), theirs.clone(), mine.clone());
    ns.run(move || {
        let mut other = WgServer::open(settings(&n, 40001), t).unwrap();
        other.bring_up(&Tools::find()).unwrap();
        let mut me = WgServer::open(settings(&n, 40002), &m).unwrap();
        let e = me.bring_up(&Tools::find()).unwrap_err();
        assert!(matches!(e, WgError::InterfaceInUse { .. }), "{e}");
        assert!(e.to_string().contains("another key"), "{e}");
        other.check().expect("the other interface still runs");
        other.take_down().unwrap();
    });

    // Left behind by an earlier run (wireguard-go still running with our key, as after
    // a crash): removed and made afresh.
    let key = WgServer::open(settings(&name, 40002), &mine)
        .unwrap()
        .state_dir()
        .server_key_path();
    let mut orphan = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.server_ns.0,
            "wireguard-go",
            "-f",
            name.as_str(),
        ])
        .env("WG_PROCESS_FOREGROUND", "1")
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(socket_path(&name)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    lab.server_ns.exec(&[
        "wg",
        "set",
        name.as_str(),
        "private-key",
        key.to_str().unwrap(),
    ]);
    let (n, m) = (name.clone(), mine.clone());
    ns.run(move || {
        let mut me = WgServer::open(settings(&n, 40002), m).unwrap();
        me.bring_up(&Tools::find())
            .expect("the leftover is replaced");
        me.check().unwrap();
        me.take_down().unwrap();
    });
    let status = orphan.wait().unwrap();
    println!("the orphaned wireguard-go ended: {status}");
    assert!(wireguard_go_processes(&name).is_empty());
}

#[test]
fn a_port_in_use_and_a_missing_wireguard_go_are_clear_errors() {
    if !lab_or_skip("a_port_in_use_and_a_missing_wireguard_go_are_clear_errors") {
        return;
    }
    let mut lab = Lab::new();
    let name = lab.interface("cvtp");
    let ns = NsThread::enter(&lab.server_ns);
    let dir = lab.dir.join("state");
    let (n, d) = (name.clone(), dir.clone());
    ns.run(move || {
        let busy = UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        let mut s = WgServer::open(settings(&n, port), &d).unwrap();
        let e = s.bring_up(&Tools::find()).unwrap_err();
        assert!(matches!(e, WgError::PortInUse { .. }), "{e}");
        assert!(e.to_string().contains(&format!("UDP port {port}")), "{e}");
        assert!(
            nix::net::if_::if_nametoindex(n.as_str()).is_err(),
            "nothing left"
        );
        drop(busy);
        // A process that another test forks at this moment holds a copy of the socket
        // until it execs (close-on-exec closes it only then): wait for the port to be
        // free again, or the check below sees it in use.
        let free_by = Instant::now() + Duration::from_secs(5);
        while UdpSocket::bind(("0.0.0.0", port)).is_err() && Instant::now() < free_by {
            std::thread::sleep(Duration::from_millis(10));
        }

        // Without wireguard-go only the kernel can run it.
        let tools = Tools {
            wireguard_go: None,
            ..Tools::find()
        };
        match s.bring_up(&tools) {
            Ok(()) => {
                assert_eq!(s.interface().unwrap().backend(), Backend::Kernel);
                s.take_down().unwrap();
            }
            Err(e) => {
                println!("without wireguard-go: {e}");
                assert!(matches!(e, WgError::Unavailable { .. }), "{e}");
                assert!(
                    e.to_string().contains("wireguard-go is not installed"),
                    "{e}"
                );
                assert!(
                    nix::net::if_::if_nametoindex(n.as_str()).is_err(),
                    "nothing left"
                );
            }
        }
    });
    // Peer names are checked before anything else happens, here as anywhere.
    assert!(PeerName::parse("has space").is_err());
}

#[test]
fn a_peer_registered_before_preshared_keys_gets_through_without_one() {
    if !lab_or_skip("a_peer_registered_before_preshared_keys_gets_through_without_one") {
        return;
    }
    let mut lab = Lab::new();
    let server_if = lab.interface("cvtl");
    let client_if = lab.interface("cvtk");
    let port = 51820;
    let state = lab.dir.join("wireguard");

    // `peers.json` as the builds before preshared keys wrote it: the peer's entry has no
    // `preshared_key`. Its private key is the one its configuration held back then.
    let phone_key = PrivateKey::generate();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("peers.json"),
        format!(
            r#"{{"version":1,"peers":[{{"name":"old-phone","public_key":"{}","address":"10.213.0.2","created_at":"2024-01-01T00:00:00Z"}}]}}"#,
            phone_key.public_key()
        ),
    )
    .unwrap();

    let server = NsThread::enter(&lab.server_ns);
    let client = NsThread::enter(&lab.client_ns);
    let settings_ = settings(&server_if, port);
    let server_key: PublicKey = server.run(move || {
        let mut s = WgServer::open(settings_, state).unwrap();
        assert_eq!(s.peers().len(), 1);
        assert_eq!(s.peers()[0].preshared_key, None);
        s.bring_up(&Tools::find()).unwrap();
        let key = s.public_key();
        SERVER.with(|cell| *cell.borrow_mut() = Some(s));
        key
    });
    let listener = server.run(|| TcpListener::bind(("10.213.0.1", ECHO_PORT)).unwrap());
    echo(listener);

    // Configured without a preshared key on the interface.
    assert_eq!(
        preshared_keys(&lab.server_ns, &server_if),
        [(phone_key.public_key().to_base64(), "(none)".to_owned())]
    );

    // Its configuration from back then (no PresharedKey line) still works.
    let settings_ = settings(&server_if, port);
    let conf = ClientConfig::render(
        &PeerName::parse("old-phone").unwrap(),
        &phone_key,
        None,
        Ipv4Addr::new(10, 213, 0, 2),
        &settings_,
        &server_key,
        settings_.endpoint.as_ref().unwrap(),
    );
    assert!(!conf.text().contains("PresharedKey"));
    lab.start_client(&client_if, conf.text());
    round_trip(&client, Duration::from_secs(10)).expect("traffic through the tunnel");
    let status = server.run(|| with_server(|s| s.status()).unwrap());
    assert!(status[0].stats.unwrap().last_handshake.is_some());

    server.run(|| with_server(|s| s.take_down()).unwrap());
    drop(server);
    drop(client);
}
