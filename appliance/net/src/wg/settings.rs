//! The WireGuard settings (`[wireguard]` in the config, validated by `cv-config` into a
//! [`WgSettings`]) and the tunnel network's address plan.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

use super::names::{Endpoint, InterfaceName, InvalidValue};

/// The largest tunnel network: a /24, 253 peers. A household needs a few dozen devices
/// at most, and the bound keeps a full peer list within one control-socket message.
pub const MIN_PREFIX: u8 = 24;
/// The smallest: a /30 holds the network address, the server, one peer and the broadcast
/// address.
pub const MAX_PREFIX: u8 = 30;

/// How often clients send a keepalive, in seconds. "A sensible interval that works with a
/// wide variety of firewalls is 25 seconds" (wg(8), PersistentKeepalive): phones sit
/// behind NATs that forget idle UDP mappings, and without it the appliance could not
/// answer a client that has been quiet for a minute.
pub const PERSISTENT_KEEPALIVE_SECS: u16 = 25;

/// The tunnel's IPv4 network, e.g. `10.213.0.0/24`: the server is its first host address
/// (`10.213.0.1`), peers get the following ones, the broadcast address stays unused.
///
/// Only private ranges are accepted (RFC 1918, and 100.64.0.0/10 of RFC 6598): clients
/// route the network into the tunnel, and a public range would hide real hosts from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WgNetwork(Ipv4Net);

impl WgNetwork {
    pub fn parse(text: &str) -> Result<WgNetwork, InvalidValue> {
        let bad = |reason: String| InvalidValue::new("WireGuard network", text, reason);
        let net: IpNet = text.parse().map_err(|_| {
            bad(
                "is not a network in CIDR form; write address/prefix, e.g. \"10.213.0.0/24\""
                    .into(),
            )
        })?;
        let IpNet::V4(net) = net else {
            return Err(bad(
                "is an IPv6 network; the tunnel network must be IPv4, e.g. \"10.213.0.0/24\""
                    .into(),
            ));
        };
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&net.prefix_len()) {
            return Err(bad(format!(
                "is a /{} network; use a prefix from /{MIN_PREFIX} (253 peers) to \
                 /{MAX_PREFIX} (1 peer)",
                net.prefix_len()
            )));
        }
        if net.addr() != net.network() {
            return Err(bad(format!(
                "has host bits set; write the network address, {} (the server takes the \
                 first address, {})",
                net.trunc(),
                first_host(net.trunc())
            )));
        }
        let ip = net.network();
        let shared =
            Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).map_err(|e| bad(e.to_string()))?;
        if !(ip.is_private() || shared.contains(&ip)) {
            return Err(bad(
                "is not a private range; use one inside 10.0.0.0/8, 172.16.0.0/12, \
                 192.168.0.0/16 or 100.64.0.0/10"
                    .into(),
            ));
        }
        Ok(WgNetwork(net))
    }

    pub fn net(&self) -> Ipv4Net {
        self.0
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// The appliance's own tunnel address: the first host address.
    pub fn server_address(&self) -> Ipv4Addr {
        first_host(self.0)
    }

    /// The addresses peers may have, lowest first: every host address but the server's
    /// (the network and broadcast addresses are not host addresses).
    pub fn peer_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let server = self.server_address();
        self.0.hosts().filter(move |ip| *ip != server)
    }

    /// Whether `ip` is one of [`WgNetwork::peer_addresses`].
    pub fn is_peer_address(&self, ip: Ipv4Addr) -> bool {
        self.0.contains(&ip)
            && ip != self.0.network()
            && ip != self.0.broadcast()
            && ip != self.server_address()
    }

    /// How many peers fit.
    pub fn capacity(&self) -> usize {
        self.peer_addresses().count()
    }
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(1))
}

impl fmt::Display for WgNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for WgNetwork {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WgNetwork::parse(s)
    }
}

/// A network given to clients as `AllowedIPs` (what they send into the tunnel), in its
/// canonical form.
pub fn allowed_ips(text: &str) -> Result<IpNet, InvalidValue> {
    let bad = |reason: String| InvalidValue::new("AllowedIPs network", text, reason);
    let net: IpNet = text.parse().map_err(|_| {
        bad("is not a network in CIDR form, e.g. \"10.213.0.0/24\" or \"0.0.0.0/0\"".into())
    })?;
    if net.addr() != net.network() {
        return Err(bad(format!(
            "has host bits set; write the network address, {}",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Everything the appliance needs to run its WireGuard interface and write client
/// configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgSettings {
    /// The interface's name (`cvwg0`).
    pub interface: InterfaceName,
    /// The tunnel network; the server has its first host address.
    pub network: WgNetwork,
    /// The UDP port the interface listens on.
    pub listen_port: u16,
    /// Where clients reach the appliance. Peers cannot be added without it.
    pub endpoint: Option<Endpoint>,
    /// DNS servers written into client configurations (`DNS =`); none keeps the
    /// client's own.
    pub dns: Vec<IpAddr>,
    /// What clients send into the tunnel (`AllowedIPs =`); never empty.
    pub client_allowed_ips: Vec<IpNet>,
    /// `PersistentKeepalive =` of client configurations, in seconds.
    pub persistent_keepalive: u16,
}

impl WgSettings {
    /// Settings with the defaults for everything but the interface, network and port:
    /// no endpoint, no DNS, clients route only the tunnel network.
    pub fn new(interface: InterfaceName, network: WgNetwork, listen_port: u16) -> WgSettings {
        WgSettings {
            interface,
            network,
            listen_port,
            endpoint: None,
            dns: Vec::new(),
            client_allowed_ips: vec![IpNet::V4(network.net())],
            persistent_keepalive: PERSISTENT_KEEPALIVE_SECS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> WgNetwork {
        WgNetwork::parse(text).expect(text)
    }

    #[test]
    fn the_server_takes_the_first_address_and_peers_the_rest() {
        let n = net("10.213.0.0/24");
        assert_eq!(n.server_address(), Ipv4Addr::new(10, 213, 0, 1));
        let peers: Vec<Ipv4Addr> = n.peer_addresses().collect();
        assert_eq!(peers.first(), Some(&Ipv4Addr::new(10, 213, 0, 2)));
        assert_eq!(peers.last(), Some(&Ipv4Addr::new(10, 213, 0, 254)));
        assert_eq!(n.capacity(), 253);
        assert!(n.is_peer_address(Ipv4Addr::new(10, 213, 0, 2)));
        for not in [
            [10, 213, 0, 0],
            [10, 213, 0, 1],
            [10, 213, 0, 255],
            [10, 213, 1, 2],
        ] {
            assert!(!n.is_peer_address(Ipv4Addr::from(not)), "{not:?}");
        }
        let small = net("192.168.77.4/30");
        assert_eq!(small.server_address(), Ipv4Addr::new(192, 168, 77, 5));
        assert_eq!(
            small.peer_addresses().collect::<Vec<_>>(),
            [Ipv4Addr::new(192, 168, 77, 6)]
        );
        assert_eq!(net("100.100.1.0/29").capacity(), 5);
        assert_eq!(net("172.20.0.0/24").capacity(), 253);
    }

    #[test]
    fn bad_networks_say_what_to_write() {
        let reason = |text: &str| WgNetwork::parse(text).expect_err(text).reason;
        assert!(reason("10.213.0.0").contains("CIDR"));
        assert!(reason("10.213.0.0/33").contains("CIDR"));
        assert!(reason("tunnel").contains("CIDR"));
        assert!(reason("fd00::/64").contains("IPv6"));
        assert!(reason("10.213.0.0/16").contains("/16 network"));
        assert!(reason("10.213.0.0/31").contains("/31 network"));
        let r = reason("10.213.0.1/24");
        assert!(
            r.contains("write the network address, 10.213.0.0/24"),
            "{r}"
        );
        assert!(r.contains("10.213.0.1"), "{r}");
        assert!(reason("8.8.8.0/24").contains("not a private range"));
        assert!(reason("100.128.0.0/24").contains("not a private range"));
    }

    #[test]
    fn allowed_ips_are_canonical_networks() {
        assert_eq!(allowed_ips("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(allowed_ips("::/0").unwrap().to_string(), "::/0");
        assert!(
            allowed_ips("10.0.0.1/8")
                .unwrap_err()
                .reason
                .contains("10.0.0.0/8")
        );
        assert!(allowed_ips("10.0.0.1").unwrap_err().reason.contains("CIDR"));
    }

    #[test]
    fn default_settings_route_only_the_tunnel() {
        let s = WgSettings::new(
            InterfaceName::parse("cvwg0").unwrap(),
            net("10.213.0.0/24"),
            51820,
        );
        assert_eq!(
            s.client_allowed_ips,
            [allowed_ips("10.213.0.0/24").unwrap()]
        );
        assert_eq!(s.persistent_keepalive, 25);
        assert!(s.endpoint.is_none() && s.dns.is_empty());
    }
}
