//! LAN discovery: the box announces itself with multicast DNS (RFC 6762) and DNS-based
//! service discovery (RFC 6763), so a phone on the LAN reaches it as `<hostname>.local`
//! and finds it in a list of HTTPS services without anyone typing an address.
//!
//! What is announced ([`Advertisement`]):
//!
//! - `<hostname>.local.` with an A or AAAA record for each LAN address the HTTPS socket
//!   listens on ([`select_addresses`]): up, multicast-capable interfaces only, never the
//!   loopback, never an interface named in the exclusion list (the WireGuard interface:
//!   a VPN address is useless to a phone on the LAN), never link-local addresses
//!   (`169.254/16`, `fe80::/10`: the certificate does not cover them);
//! - one `_https._tcp.local.` service instance, "Context Vault on `<hostname>`", on the
//!   HTTPS port, with the TXT record `path=/` (the web app's start page, RFC 6763 §6).
//!
//! The [`Responder`] is built on the `mdns-sd` crate, which runs its own thread, answers
//! queries, probes its names before claiming them (RFC 6762 §8.1) and renames itself on a
//! conflict (`nas-2.local`, reported by [`Responder::notices`]). The set of addresses is
//! re-read by [`Responder::refresh`] (the supervisor calls it every [`RECHECK_INTERVAL`]);
//! when it changes the records are announced again, with the cache-flush bit, so peers
//! drop the old addresses (RFC 6762 §10.2). [`Responder::stop`] says goodbye: the records
//! again with TTL 0 (RFC 6762 §10.1), so phones forget the box at once rather than after
//! the records' TTL.
//!
//! ## Errors
//!
//! One [`MdnsError`] enum for the module. None of them is fatal to the appliance: the
//! supervisor shows them on the dashboard and tries again.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use mdns_sd::{DaemonEvent, DaemonStatus, IfKind, Receiver, ServiceDaemon, ServiceInfo};

use crate::tls::is_reachable_lan_address;

/// The DNS-SD service type of the web app (RFC 6763 §7; `https` is the IANA service name
/// for port 443, <https://www.iana.org/assignments/service-names-port-numbers>).
pub const SERVICE_TYPE: &str = "_https._tcp.local.";

/// The mDNS port (RFC 6762 §3).
pub const MDNS_PORT: u16 = 5353;

/// How often the supervisor re-reads the box's addresses: a DHCP lease that changes is
/// announced within half a minute, and reading the interface list costs one netlink
/// dump. `mdns-sd` notices new interfaces by itself every 5 seconds (its
/// `IP_CHECK_INTERVAL_IN_SECS_DEFAULT`), so an interface it has not joined yet is rare.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(30);

/// A DNS label is at most 63 octets (RFC 1035 §2.3.4); DNS-SD instance names are one
/// label (RFC 6763 §4.1.1).
const MAX_LABEL: usize = 63;

/// The IPv4 and IPv6 mDNS groups (RFC 6762 §3).
const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);

/// How long [`Responder::stop`] waits for the responder's thread to send its goodbyes and
/// exit. It sends them at once; a second is generous.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// An error of LAN discovery.
#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    /// The responder's thread could not be started.
    #[error("the mDNS responder could not start: {0}")]
    Daemon(String),
    /// The service records could not be built or registered.
    #[error("cannot announce {name:?}: {reason}")]
    Service { name: String, reason: String },
    /// UDP port 5353 cannot be used: another program holds it without sharing it.
    #[error(
        "cannot listen for mDNS on UDP {addr}: {source} (another mDNS responder that does \
         not share the port? set `network.mdns = false` to leave LAN discovery to it)"
    )]
    Socket { addr: String, source: io::Error },
    /// No interface could join the mDNS multicast group.
    #[error("no LAN interface accepts mDNS multicast ({group}): {detail}")]
    NoMulticast { group: IpAddr, detail: String },
    /// The responder's thread did not confirm its shutdown in time.
    #[error("the mDNS responder did not stop within {0:?}; its goodbyes may not have been sent")]
    Stop(Duration),
}

/// What the box announces: its name, its HTTPS port and which addresses qualify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// The box's name, a DNS label already checked (`cv_config::Hostname`): it answers
    /// as `<hostname>.local`, in lower case.
    pub hostname: String,
    /// The port of the web app.
    pub https_port: u16,
    /// The addresses the HTTPS socket is bound to (`network.bind`): only LAN addresses
    /// they cover are announced. `0.0.0.0` covers every IPv4 address; `::` every address
    /// (Linux's sockets bound to `::` accept IPv4 too unless `net.ipv6.bindv6only` is set).
    pub bind: Vec<IpAddr>,
    /// Interfaces never announced on, whatever their addresses: the WireGuard
    /// interface (its peers reach the box through the VPN, not by mDNS).
    pub exclude_interfaces: Vec<String>,
}

impl Advertisement {
    /// The host name of the address records: `nas.local.`.
    pub fn host_name(&self) -> String {
        format!("{}.local.", self.hostname.to_ascii_lowercase())
    }

    /// The service instance's name, as people see it in a list of services: "Context
    /// Vault on nas". Cut to the 63 octets of a DNS label for the longest host names.
    pub fn instance_name(&self) -> String {
        let mut name = format!("Context Vault on {}", self.hostname.to_ascii_lowercase());
        // A host name is ASCII, so every byte is a char boundary.
        name.truncate(MAX_LABEL);
        name
    }

    /// The instance's full DNS name: `Context Vault on nas._https._tcp.local.`.
    pub fn instance_fullname(&self) -> String {
        format!("{}.{SERVICE_TYPE}", self.instance_name())
    }

    /// Whether `network.bind` could ever cover a LAN address. When it lists only loopback
    /// addresses the box cannot be reached from the LAN, and announcing it would send
    /// phones to a dead end.
    pub fn reachable_from_lan(&self) -> bool {
        self.bind.iter().any(|ip| !ip.is_loopback())
    }

    /// The records for `addresses`: the `_https._tcp` instance on the HTTPS port with
    /// `path=/`, its host `<hostname>.local.` with these addresses.
    pub fn service_info(&self, addresses: &[IpAddr]) -> Result<ServiceInfo, MdnsError> {
        let name = self.instance_name();
        ServiceInfo::new(
            SERVICE_TYPE,
            &name,
            &self.host_name(),
            addresses,
            self.https_port,
            &[("path", "/")][..],
        )
        .map_err(|e| MdnsError::Service {
            name,
            reason: e.to_string(),
        })
    }
}

/// One address of one network interface, as [`interface_addresses`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// The interface's name (`eth0`, `wg0`).
    pub interface: String,
    pub address: IpAddr,
    /// `IFF_UP`.
    pub up: bool,
    /// `IFF_LOOPBACK`.
    pub loopback: bool,
    /// `IFF_MULTICAST`: mDNS needs it (the loopback and WireGuard interfaces lack it).
    pub multicast: bool,
}

/// Every IP address of every interface of this network namespace. A failure to list them
/// is logged and gives an empty list: nothing to announce until the next check.
pub fn interface_addresses() -> Vec<InterfaceAddress> {
    use nix::net::if_::InterfaceFlags;

    let ifaddrs = match nix::ifaddrs::getifaddrs() {
        Ok(ifaddrs) => ifaddrs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces");
            return Vec::new();
        }
    };
    ifaddrs
        .filter_map(|ifa| {
            let addr = ifa.address?;
            let address = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(addr.as_sockaddr_in6()?.ip())
            };
            Some(InterfaceAddress {
                interface: ifa.interface_name,
                address,
                up: ifa.flags.contains(InterfaceFlags::IFF_UP),
                loopback: ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK),
                multicast: ifa.flags.contains(InterfaceFlags::IFF_MULTICAST),
            })
        })
        .collect()
}

/// The addresses to announce, sorted and without duplicates: those of up,
/// multicast-capable, non-loopback interfaces not named in `exclude`, that are neither
/// loopback, link-local nor unspecified, and that `bind` covers (the address itself, or
/// the unspecified address of its family, or `::`).
pub fn select_addresses(
    interfaces: &[InterfaceAddress],
    bind: &[IpAddr],
    exclude: &[String],
) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = interfaces
        .iter()
        .filter(|i| i.up && i.multicast && !i.loopback)
        .filter(|i| !exclude.contains(&i.interface))
        .map(|i| i.address)
        .filter(|ip| is_reachable_lan_address(*ip))
        .filter(|ip| bind_covers(bind, *ip))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn bind_covers(bind: &[IpAddr], ip: IpAddr) -> bool {
    bind.iter().any(|b| {
        *b == ip
            || *b == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            || (b.is_unspecified() && b.is_ipv4() == ip.is_ipv4())
    })
}

/// Something the responder noticed on its own, for the log and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Another device on the LAN already uses a name; the responder took another.
    Renamed { original: String, now: String },
    /// The responder's thread hit an error (a packet it could not send, …).
    Error(String),
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Renamed { original, now } => write!(
                f,
                "another device on the LAN already answers as {original:?}; announced as \
                 {now:?} instead (rename one of them)"
            ),
            Notice::Error(e) => write!(f, "mDNS responder error: {e}"),
        }
    }
}

/// The running mDNS responder. Dropping it without [`Responder::stop`] also stops it, but
/// without waiting for the goodbyes to go out.
pub struct Responder {
    daemon: ServiceDaemon,
    advertisement: Advertisement,
    monitor: Receiver<DaemonEvent>,
    /// The addresses registered now; empty when nothing is registered.
    announced: Vec<IpAddr>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("advertisement", &self.advertisement)
            .field("announced", &self.announced)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Checks that this network namespace can do mDNS (UDP port 5353, the multicast group
    /// on the interfaces to announce on), starts the responder's thread and announces the
    /// box on the addresses [`select_addresses`] finds now (none is not an error: they
    /// are announced when [`Responder::refresh`] finds some).
    ///
    /// The responder's sockets live in the network namespace of the calling thread.
    pub fn start(advertisement: Advertisement) -> Result<Responder, MdnsError> {
        let interfaces = interface_addresses();
        let addresses = select_addresses(
            &interfaces,
            &advertisement.bind,
            &advertisement.exclude_interfaces,
        );
        probe_multicast(&interfaces, &addresses)?;
        // Built before the daemon, so a name it refuses is an error here.
        advertisement.service_info(&addresses)?;

        let daemon = ServiceDaemon::new().map_err(|e| MdnsError::Daemon(e.to_string()))?;
        let mut responder = Responder {
            monitor: daemon
                .monitor()
                .map_err(|e| MdnsError::Daemon(e.to_string()))?,
            daemon,
            advertisement,
            announced: Vec::new(),
        };
        // Not on the loopback (a phone is never there) nor on excluded interfaces.
        let mut off = vec![IfKind::LoopbackV4, IfKind::LoopbackV6];
        off.extend(
            responder
                .advertisement
                .exclude_interfaces
                .iter()
                .cloned()
                .map(IfKind::Name),
        );
        responder
            .daemon
            .disable_interface(off)
            .map_err(|e| MdnsError::Daemon(e.to_string()))?;
        responder.announce(addresses)?;
        Ok(responder)
    }

    /// What is announced.
    pub fn advertisement(&self) -> &Advertisement {
        &self.advertisement
    }

    /// The addresses announced now (empty: none qualifies, nothing is announced).
    pub fn announced(&self) -> &[IpAddr] {
        &self.announced
    }

    /// Re-reads the box's addresses and announces them again if they changed. Returns
    /// whether they changed.
    pub fn refresh(&mut self) -> Result<bool, MdnsError> {
        let addresses = select_addresses(
            &interface_addresses(),
            &self.advertisement.bind,
            &self.advertisement.exclude_interfaces,
        );
        if addresses == self.announced {
            return Ok(false);
        }
        self.announce(addresses)?;
        Ok(true)
    }

    /// Announces exactly `addresses` (the service withdrawn when empty).
    pub fn announce(&mut self, addresses: Vec<IpAddr>) -> Result<(), MdnsError> {
        if addresses.is_empty() {
            if !self.announced.is_empty() {
                self.daemon
                    .unregister(&self.advertisement.instance_fullname())
                    .map_err(|e| MdnsError::Daemon(e.to_string()))?;
                self.announced.clear();
            }
            return Ok(());
        }
        // Registering the same instance again replaces its records and announces them
        // with the cache-flush bit, so peers drop addresses that are gone.
        let info = self.advertisement.service_info(&addresses)?;
        self.daemon.register(info).map_err(|e| MdnsError::Service {
            name: self.advertisement.instance_name(),
            reason: e.to_string(),
        })?;
        self.announced = addresses;
        Ok(())
    }

    /// What the responder noticed since the last call: name conflicts and errors.
    pub fn notices(&mut self) -> Vec<Notice> {
        self.monitor
            .try_iter()
            .filter_map(|event| match event {
                DaemonEvent::NameChange(change) => Some(Notice::Renamed {
                    original: change.original,
                    now: change.new_name,
                }),
                DaemonEvent::Error(e) => Some(Notice::Error(e.to_string())),
                _ => None,
            })
            .collect()
    }

    /// Says goodbye (every record again with TTL 0) and stops the responder's thread.
    pub fn stop(self) -> Result<(), MdnsError> {
        let done = self
            .daemon
            .shutdown()
            .map_err(|e| MdnsError::Daemon(e.to_string()))?;
        match done.recv_timeout(STOP_TIMEOUT) {
            Ok(DaemonStatus::Shutdown) => Ok(()),
            // Any other answer, or none: the thread did not confirm.
            _ => Err(MdnsError::Stop(STOP_TIMEOUT)),
        }
    }
}

/// Binds UDP port 5353 the way the responder will (shared with other mDNS programs that
/// share it: `SO_REUSEADDR` and `SO_REUSEPORT`) and joins the mDNS group on the interfaces
/// of `addresses`, so that a namespace where mDNS cannot work is an error now instead
/// of a responder that silently never answers (`mdns-sd` only logs such failures at
/// debug level). The probe's sockets close on return.
fn probe_multicast(interfaces: &[InterfaceAddress], addresses: &[IpAddr]) -> Result<(), MdnsError> {
    let v4: Vec<Ipv4Addr> = addresses
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v6_indexes: Vec<u32> = interfaces
        .iter()
        .filter(|i| i.address.is_ipv6() && addresses.contains(&i.address))
        .filter_map(|i| nix::net::if_::if_nametoindex(i.interface.as_str()).ok())
        .collect();

    let socket = shared_udp(nix::sys::socket::SockaddrIn::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        MDNS_PORT,
    )))
    .map_err(|source| MdnsError::Socket {
        addr: format!("0.0.0.0:{MDNS_PORT}"),
        source,
    })?;
    let mut failures = Vec::new();
    let joined_v4 = v4
        .iter()
        .filter(|ip| match socket.join_multicast_v4(&GROUP_V4, ip) {
            Ok(()) => true,
            Err(e) => {
                failures.push(format!("{ip}: {e}"));
                false
            }
        })
        .count();
    if !v4.is_empty() && joined_v4 == 0 {
        return Err(MdnsError::NoMulticast {
            group: GROUP_V4.into(),
            detail: failures.join("; "),
        });
    }
    if !v6_indexes.is_empty() {
        let socket = shared_udp(nix::sys::socket::SockaddrIn6::from(SocketAddrV6::new(
            Ipv6Addr::UNSPECIFIED,
            MDNS_PORT,
            0,
            0,
        )))
        .map_err(|source| MdnsError::Socket {
            addr: format!("[::]:{MDNS_PORT}"),
            source,
        })?;
        let mut failures = Vec::new();
        let joined = v6_indexes
            .iter()
            .filter(|index| match socket.join_multicast_v6(&GROUP_V6, **index) {
                Ok(()) => true,
                Err(e) => {
                    failures.push(format!("interface {index}: {e}"));
                    false
                }
            })
            .count();
        if joined == 0 {
            return Err(MdnsError::NoMulticast {
                group: GROUP_V6.into(),
                detail: failures.join("; "),
            });
        }
    }
    Ok(())
}

/// A UDP socket bound to `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`, like every mDNS
/// responder's, so that several can share port 5353.
fn shared_udp<A>(addr: A) -> io::Result<UdpSocket>
where
    A: nix::sys::socket::SockaddrLike,
{
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socket, sockopt};

    let family = addr.family().unwrap_or(AddressFamily::Inet);
    let fd: OwnedFd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    nix::sys::socket::bind(fd.as_raw_fd(), &addr)?;
    Ok(UdpSocket::from(fd))
}

#[cfg(test)]
mod tests;
