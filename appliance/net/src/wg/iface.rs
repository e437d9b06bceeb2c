//! The WireGuard interface itself: brought up from the settings, the server key and the
//! registry; peers added and removed while it runs; their statistics read; taken down.
//!
//! ## Backends
//!
//! The kernel's WireGuard is tried first (`wireguard-control`'s kernel backend creates the
//! link over netlink). Where the kernel has no WireGuard (the create fails, e.g. with
//! "Operation not supported"), `wireguard-go` runs it in user space. The appliance starts
//! `wireguard-go -f NAME` itself, as its own child, rather than letting
//! `wireguard-control`'s `apply()` start it: that one daemonizes, so its pid is unknown
//! and nothing could make sure it is gone at shutdown. Once its UAPI socket
//! (`/var/run/wireguard/NAME.sock`) answers, `wireguard-control` configures it through
//! that socket. (Listing userspace devices through `wireguard-control` finds nothing on
//! Linux, so this module looks for the socket itself.)
//!
//! ## Addresses and the link
//!
//! The server address is assigned and the link set up with the `ip` command (iproute2)
//! rather than a netlink crate: it is part of every Debian system the appliance runs on,
//! it is called twice per start, its error messages are already readable, and it avoids
//! a second set of netlink crates to keep in step with `wireguard-control`'s.
//!
//! All of it works in the network namespace of the calling thread (netlink sockets,
//! `ip`, and `wireguard-go` started from it belong to that namespace), which is how the
//! tests run a server and a client on one machine. The UAPI socket directory is shared
//! by every namespace, so interface names must be unique on the machine.
//!
//! ## Somebody else's interface
//!
//! An interface of the configured name that already exists is taken over only when it
//! holds this appliance's server key (a supervisor that died left it behind): it is
//! removed and made afresh. Any other is refused ([`WgError::InterfaceInUse`]), so two
//! appliances in development on one machine never fight over one interface.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wireguard_control::{Backend as ControlBackend, Device, DeviceUpdate, PeerConfigBuilder};

use super::WgError;
use super::keys::{PrivateKey, PublicKey};
use super::names::InterfaceName;
use super::settings::WgSettings;
use super::state::PeerEntry;

/// Where `wireguard-go` puts its UAPI sockets (`socketDirectory` in its
/// `ipc/uapi_linux.go`); `/run/wireguard` on systems where `/var/run` links to `/run`.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// Directories searched for `ip` and `wireguard-go` besides `PATH` (a supervisor started
/// by systemd or `sudo` may have a short one).
const PROGRAM_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// How long `wireguard-go` may take to open its UAPI socket (it takes ~10 ms).
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `wireguard-go` may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How many lines of `wireguard-go`'s output are kept for error messages.
const KEPT_LINES: usize = 10;

/// Which WireGuard implementation runs the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The Linux kernel's.
    Kernel,
    /// `wireguard-go`, a child of this process.
    Userspace,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Userspace => "wireguard-go",
        }
    }

    fn control(self) -> ControlBackend {
        match self {
            Backend::Kernel => ControlBackend::Kernel,
            Backend::Userspace => ControlBackend::Userspace,
        }
    }
}

/// The programs the interface needs, found once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// `ip` (iproute2): always needed.
    pub ip: Option<PathBuf>,
    /// `wireguard-go`: needed where the kernel has no WireGuard.
    pub wireguard_go: Option<PathBuf>,
}

impl Tools {
    /// Looks for the programs in `PATH` and the usual system directories.
    pub fn find() -> Tools {
        Tools {
            ip: find_program("ip"),
            wireguard_go: find_program("wireguard-go"),
        }
    }
}

/// The first executable file called `name` in `PATH` or [`PROGRAM_DIRS`].
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(PROGRAM_DIRS.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The UAPI socket of a userspace interface.
pub fn socket_path(name: &InterfaceName) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{name}.sock"))
}

/// One peer's traffic, as the interface counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerStats {
    /// The last completed handshake; `None` if there never was one.
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// A running WireGuard interface. Taken down by [`Interface::down`], or when dropped.
#[derive(Debug)]
pub struct Interface {
    name: InterfaceName,
    control_name: wireguard_control::InterfaceName,
    backend: Backend,
    ip: PathBuf,
    /// `wireguard-go`, when it runs the interface.
    child: Option<Child>,
    /// Its last lines of output.
    output: Arc<Mutex<VecDeque<String>>>,
    is_down: bool,
}

impl Interface {
    /// Brings the interface up: the server key, the listen port and every peer of
    /// `peers` (each allowed its own address only, with its preshared key if it has
    /// one), then the server address
    /// ([`super::WgNetwork::server_address`] with the network's prefix) and the link up.
    /// Anything half done is undone when it fails.
    pub fn up(
        settings: &WgSettings,
        key: &PrivateKey,
        peers: &[PeerEntry],
        tools: &Tools,
    ) -> Result<Interface, WgError> {
        let uid = nix::unistd::Uid::effective();
        if !uid.is_root() {
            return Err(WgError::NotRoot { uid: uid.as_raw() });
        }
        let ip = tools.ip.clone().ok_or(WgError::NoIpCommand)?;
        let name = settings.interface.clone();
        let control_name = control_name(&name)?;
        clear_leftover(&name, &control_name, key, &ip)?;
        check_port(settings.listen_port)?;

        let mut update = DeviceUpdate::new()
            .set_private_key(key.to_control())
            .set_listen_port(settings.listen_port)
            .replace_peers();
        for peer in peers {
            update = update.add_peer(peer_config(peer));
        }

        let mut interface = Interface {
            name: name.clone(),
            control_name,
            backend: Backend::Kernel,
            ip,
            child: None,
            output: Arc::default(),
            is_down: false,
        };
        match update.clone().apply(&control_name, ControlBackend::Kernel) {
            Ok(()) => {}
            Err(kernel) => {
                // Nothing of ours is left if the kernel created the link and then failed.
                if link_exists(&name) {
                    let _ = wireguard_control::backends::kernel::delete_interface(&control_name);
                }
                let Some(wireguard_go) = tools.wireguard_go.as_deref() else {
                    interface.is_down = true;
                    return Err(WgError::Unavailable {
                        kernel: kernel.to_string(),
                    });
                };
                tracing::debug!(
                    interface = %name,
                    kernel = %kernel,
                    "no kernel WireGuard; starting wireguard-go"
                );
                interface.backend = Backend::Userspace;
                interface.start_wireguard_go(wireguard_go)?;
                update
                    .apply(&control_name, ControlBackend::Userspace)
                    .map_err(|source| interface.control_error("configuring", source))?;
            }
        }
        let address = format!(
            "{}/{}",
            settings.network.server_address(),
            settings.network.prefix_len()
        );
        interface.run_ip(&["-4", "address", "add", &address, "dev", name.as_str()])?;
        interface.run_ip(&["link", "set", "dev", name.as_str(), "up"])?;
        tracing::info!(
            interface = %name,
            backend = interface.backend.as_str(),
            address = %address,
            listen_port = settings.listen_port,
            peers = peers.len(),
            "WireGuard interface up"
        );
        Ok(interface)
    }

    pub fn name(&self) -> &InterfaceName {
        &self.name
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pid of `wireguard-go`, when it runs the interface.
    pub fn wireguard_go_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Lets `peer` in, from its address only, with its preshared key if it has one.
    pub fn add_peer(&mut self, peer: &PeerEntry) -> Result<(), WgError> {
        self.check()?;
        DeviceUpdate::new()
            .add_peer(peer_config(peer))
            .apply(&self.control_name, self.backend.control())
            .map_err(|source| self.control_error("adding a peer to", source))
    }

    /// Removes `key`: its packets are dropped from now on.
    pub fn remove_peer(&mut self, key: &PublicKey) -> Result<(), WgError> {
        self.check()?;
        DeviceUpdate::new()
            .remove_peer_by_key(&key.to_control())
            .apply(&self.control_name, self.backend.control())
            .map_err(|source| self.control_error("removing a peer from", source))
    }

    /// Every peer's traffic, by public key.
    pub fn stats(&mut self) -> Result<HashMap<PublicKey, PeerStats>, WgError> {
        self.check()?;
        let device = Device::get(&self.control_name, self.backend.control())
            .map_err(|source| self.control_error("reading", source))?;
        Ok(device
            .peers
            .iter()
            .map(|peer| {
                (
                    PublicKey::from_control(&peer.config.public_key),
                    PeerStats {
                        last_handshake: peer.stats.last_handshake_time,
                        rx_bytes: peer.stats.rx_bytes,
                        tx_bytes: peer.stats.tx_bytes,
                    },
                )
            })
            .collect())
    }

    /// Whether the interface still runs: `wireguard-go` alive and its socket there, or
    /// the kernel's link present.
    pub fn check(&mut self) -> Result<(), WgError> {
        if self.is_down {
            return Err(WgError::InterfaceGone {
                name: self.name.clone(),
                why: "it was taken down".into(),
            });
        }
        if let Some(child) = &mut self.child {
            // wireguard-control's userspace `apply` starts a wireguard-go of its own
            // (daemonized, out of our sight) when the socket is missing; checking first
            // keeps that from happening behind our back.
            match child.try_wait() {
                Ok(Some(status)) => {
                    return Err(WgError::WireguardGo {
                        interface: self.name.clone(),
                        status: format!("exited ({status})"),
                        output: last_lines(&self.output),
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(WgError::WireguardGo {
                        interface: self.name.clone(),
                        status: format!("cannot be waited for ({e})"),
                        output: String::new(),
                    });
                }
            }
            if UnixStream::connect(socket_path(&self.name)).is_err() {
                return Err(WgError::InterfaceGone {
                    name: self.name.clone(),
                    why: format!("{} does not answer", socket_path(&self.name).display()),
                });
            }
        }
        if !link_exists(&self.name) {
            return Err(WgError::InterfaceGone {
                name: self.name.clone(),
                why: "the network interface disappeared".into(),
            });
        }
        Ok(())
    }

    /// Takes the interface down and makes sure no `wireguard-go` is left for it.
    pub fn down(mut self) -> Result<(), WgError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), WgError> {
        if self.is_down {
            return Ok(());
        }
        self.is_down = true;
        let mut first_error = None;
        if let Some(mut child) = self.child.take() {
            // SIGTERM: wireguard-go closes the device, which removes the link and the
            // socket.
            if let Err(status) = stop_child(&mut child) {
                first_error.get_or_insert(WgError::WireguardGo {
                    interface: self.name.clone(),
                    status,
                    output: last_lines(&self.output),
                });
            }
        }
        if link_exists(&self.name)
            && let Err(e) = self.run_ip(&["link", "delete", "dev", self.name.as_str()])
        {
            first_error.get_or_insert(e);
        }
        let socket = socket_path(&self.name);
        if self.backend == Backend::Userspace && socket.exists() {
            let _ = std::fs::remove_file(&socket);
        }
        kill_strays(&self.name);
        tracing::info!(interface = %self.name, "WireGuard interface down");
        first_error.map_or(Ok(()), Err)
    }

    fn start_wireguard_go(&mut self, program: &Path) -> Result<(), WgError> {
        let mut child = Command::new(program)
            .arg("-f")
            .arg(self.name.as_str())
            // Foreground, as a child of ours; the variable also silences the banner
            // telling kernels with WireGuard support to use it.
            .env("WG_PROCESS_FOREGROUND", "1")
            .env("LOG_LEVEL", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| WgError::WireguardGo {
                interface: self.name.clone(),
                status: format!("cannot be started from {} ({e})", program.display()),
                output: String::new(),
            })?;
        if let Some(stderr) = child.stderr.take() {
            let output = Arc::clone(&self.output);
            let name = self.name.to_string();
            // Its messages go to the log (they carry no keys) and the last few into
            // errors.
            let _ = std::thread::Builder::new()
                .name(format!("wireguard-go {name}"))
                .spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        tracing::warn!(interface = %name, "wireguard-go: {line}");
                        let mut kept = output.lock().unwrap_or_else(PoisonError::into_inner);
                        if kept.len() == KEPT_LINES {
                            kept.pop_front();
                        }
                        kept.push_back(line);
                    }
                });
        }
        self.child = Some(child);
        let socket = socket_path(&self.name);
        let started = Instant::now();
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                // Give the reader thread a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(50));
                return Err(WgError::WireguardGo {
                    interface: self.name.clone(),
                    status: format!("exited ({status}) while starting"),
                    output: last_lines(&self.output),
                });
            }
            if UnixStream::connect(&socket).is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(WgError::WireguardGo {
                    interface: self.name.clone(),
                    status: format!("did not open {} within {START_TIMEOUT:?}", socket.display()),
                    output: last_lines(&self.output),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn run_ip(&self, args: &[&str]) -> Result<(), WgError> {
        run(&self.ip, args)
    }

    fn control_error(&self, action: &'static str, source: std::io::Error) -> WgError {
        WgError::Control {
            action,
            interface: self.name.clone(),
            source,
        }
    }
}

impl Drop for Interface {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!(interface = %self.name, error = %e, "taking the WireGuard interface down failed");
        }
    }
}

fn control_name(name: &InterfaceName) -> Result<wireguard_control::InterfaceName, WgError> {
    wireguard_control::InterfaceName::from_str(name.as_str()).map_err(|e| {
        WgError::Invalid(super::InvalidValue::new(
            "interface name",
            name.as_str(),
            e.to_string(),
        ))
    })
}

/// The peer as the interface holds it: its key, its preshared key when it has one (a
/// peer registered before preshared keys has none, and its handshakes use none), and its
/// one address as the only source the interface accepts from it (and the only
/// destination it routes to it).
fn peer_config(peer: &PeerEntry) -> PeerConfigBuilder {
    let builder = PeerConfigBuilder::new(&peer.public_key.to_control());
    let builder = match &peer.preshared_key {
        Some(psk) => builder.set_preshared_key(psk.to_control()),
        None => builder,
    };
    builder
        .replace_allowed_ips()
        .add_allowed_ip(IpAddr::V4(peer.address), 32)
}

/// Whether a network interface called `name` exists in this thread's network namespace
/// (`if_nametoindex` asks through a socket of that namespace; `/sys/class/net` would show
/// the namespace sysfs was mounted in).
fn link_exists(name: &InterfaceName) -> bool {
    nix::net::if_::if_nametoindex(name.as_str()).is_ok()
}

/// Removes an interface of this name that a previous run left (it holds `key`); refuses
/// one that belongs to anyone else.
fn clear_leftover(
    name: &InterfaceName,
    control_name: &wireguard_control::InterfaceName,
    key: &PrivateKey,
    ip: &Path,
) -> Result<(), WgError> {
    let socket = socket_path(name);
    let has_link = link_exists(name);
    let has_socket = socket.exists();
    if !has_link && !has_socket {
        return Ok(());
    }
    let device = has_socket
        .then(|| Device::get(control_name, ControlBackend::Userspace).ok())
        .flatten()
        .or_else(|| {
            has_link
                .then(|| Device::get(control_name, ControlBackend::Kernel).ok())
                .flatten()
        });
    match device {
        Some(device) if device.private_key.as_ref().map(|k| &k.0) == Some(&key.to_control().0) => {
            tracing::warn!(
                interface = %name,
                "removing the WireGuard interface an earlier run left behind"
            );
            if has_link {
                run(ip, &["link", "delete", "dev", name.as_str()])?;
            }
            kill_strays(name);
            let _ = std::fs::remove_file(&socket);
            Ok(())
        }
        Some(_) => Err(WgError::InterfaceInUse {
            name: name.clone(),
            why: "a WireGuard interface of that name already runs with another key".into(),
        }),
        None if has_link => Err(WgError::InterfaceInUse {
            name: name.clone(),
            why: "a network interface of that name exists and is not a WireGuard interface \
                  this appliance can read"
                .into(),
        }),
        None => {
            // A socket file nobody answers on: left by a wireguard-go that was killed.
            let _ = std::fs::remove_file(&socket);
            Ok(())
        }
    }
}

/// Refuses a UDP port someone already listens on, before it becomes a vague error of the
/// WireGuard implementation. (Checked on both families, one after the other, so the two
/// test sockets never conflict with each other.)
fn check_port(port: u16) -> Result<(), WgError> {
    for ip in [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ] {
        match UdpSocket::bind((ip, port)) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(WgError::PortInUse { port });
            }
            // No IPv6 on this machine, or the like: not this check's business.
            Ok(_) | Err(_) => {}
        }
    }
    Ok(())
}

/// Runs `program args…`; a failure carries its stderr.
fn run(program: &Path, args: &[&str]) -> Result<(), WgError> {
    let command = || format!("{} {}", program.display(), args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| WgError::Command {
            command: command(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(WgError::Command {
            command: command(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; waits for the exit either way. The
/// error says it had to be killed.
fn stop_child(child: &mut Child) -> Result<(), String> {
    if child.try_wait().ok().flatten().is_some() {
        return Ok(());
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let _ = kill(pid, Signal::SIGTERM);
    let started = Instant::now();
    while started.elapsed() < STOP_TIMEOUT {
        if child.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "did not stop within {STOP_TIMEOUT:?} of SIGTERM and was killed"
    ))
}

/// Kills any `wireguard-go` process still serving `name` (one that a previous run
/// daemonized, or that outlived its parent): found by its command line in `/proc`.
fn kill_strays(name: &InterfaceName) {
    for pid in wireguard_go_processes(name) {
        tracing::warn!(interface = %name, pid, "stopping a stray wireguard-go");
        let pid = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
        let _ = kill(pid, Signal::SIGTERM);
        let started = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() && started.elapsed() < STOP_TIMEOUT {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
}

/// The pids of live `wireguard-go` processes whose last argument is `name`.
pub fn wireguard_go_processes(name: &InterfaceName) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            let is_wireguard_go = args
                .first()
                .is_some_and(|a| a.rsplit(|b| *b == b'/').next() == Some(b"wireguard-go"));
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rfind(')').and_then(|i| s[i + 2..].chars().next()))
                == Some('Z');
            is_wireguard_go && !zombie && args.last() == Some(&name.as_str().as_bytes())
        })
        .collect()
}

fn last_lines(output: &Mutex<VecDeque<String>>) -> String {
    let kept = output.lock().unwrap_or_else(PoisonError::into_inner);
    if kept.is_empty() {
        String::new()
    } else {
        format!(": {}", kept.iter().cloned().collect::<Vec<_>>().join(" / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wg::keys::PresharedKey;
    use crate::wg::names::PeerName;
    use wireguard_control::AllowedIp;

    fn entry(preshared_key: Option<PresharedKey>) -> PeerEntry {
        PeerEntry {
            name: PeerName::parse("phone").unwrap(),
            public_key: PrivateKey::generate().public_key(),
            preshared_key,
            address: Ipv4Addr::new(10, 213, 0, 2),
            created_at: time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        }
    }

    #[test]
    fn a_peer_is_configured_with_its_preshared_key() {
        let psk = PresharedKey::generate();
        let peer = entry(Some(psk.clone()));
        let config = peer_config(&peer).into_peer_config();
        assert_eq!(PublicKey::from_control(&config.public_key), peer.public_key);
        let given = config.preshared_key.expect("a preshared key");
        assert_eq!(given.to_base64(), psk.to_base64().as_str());
        assert_eq!(
            config.allowed_ips,
            [AllowedIp {
                address: IpAddr::V4(peer.address),
                cidr: 32
            }]
        );
    }

    #[test]
    fn a_peer_without_a_preshared_key_is_configured_without_one() {
        // As loaded from a registry written before preshared keys: no field at all.
        let peer: PeerEntry = serde_json::from_str(&format!(
            r#"{{"name":"old-phone","public_key":"{}","address":"10.213.0.2","created_at":"2024-01-01T00:00:00Z"}}"#,
            PrivateKey::generate().public_key()
        ))
        .unwrap();
        assert_eq!(peer.preshared_key, None);
        let config = peer_config(&peer).into_peer_config();
        // `None` sends no preshared key at all (not even the all-zero "unset" one).
        assert_eq!(config.preshared_key, None);
        assert_eq!(PublicKey::from_control(&config.public_key), peer.public_key);
    }
}
