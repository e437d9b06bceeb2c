//! The "phone" end of a WireGuard tunnel, as the official apps would bring it up from
//! the `.conf` the appliance hands out: `wireguard-go` in a network namespace, the
//! configuration loaded with `wg setconf` (which takes only WireGuard's own keys, so
//! `Address` and `DNS` are applied with `ip` instead, as `wg-quick` does), and a route
//! for each `AllowedIPs` network.

use std::process::Command;

use crate::netns::{Netns, run};

/// A client configuration split the way `wg-quick` splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConf {
    /// What `wg setconf` accepts: the file without `Address`, `DNS` and the like.
    pub wg_only: String,
    pub addresses: Vec<String>,
    pub allowed_ips: Vec<String>,
}

impl ClientConf {
    pub fn parse(conf: &str) -> ClientConf {
        let mut wg_only = String::new();
        let mut addresses = Vec::new();
        let mut allowed_ips = Vec::new();
        for line in conf.lines() {
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (line.trim(), ""),
            };
            let list = || value.split(',').map(|v| v.trim().to_owned());
            match key.to_ascii_lowercase().as_str() {
                "address" => addresses.extend(list()),
                "dns" | "mtu" | "table" | "preup" | "postup" | "predown" | "postdown"
                | "saveconfig" => {}
                other => {
                    if other == "allowedips" {
                        allowed_ips.extend(list());
                    }
                    wg_only.push_str(line);
                    wg_only.push('\n');
                }
            }
        }
        ClientConf {
            wg_only,
            addresses,
            allowed_ips,
        }
    }
}

/// A tunnel up in a namespace; taken down on drop.
#[derive(Debug)]
pub struct PhoneTunnel {
    netns: String,
    pub interface: String,
}

impl PhoneTunnel {
    /// Brings up `interface` in `ns` from the client configuration `conf`.
    pub fn up(ns: &Netns, interface: &str, conf: &str) -> PhoneTunnel {
        let parsed = ClientConf::parse(conf);
        // wireguard-go daemonizes once the interface exists.
        ns.exec("wireguard-go", &[interface]);
        let tunnel = PhoneTunnel {
            netns: ns.name.clone(),
            interface: interface.to_owned(),
        };
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &parsed.wg_only).unwrap();
        ns.exec(
            "wg",
            &["setconf", interface, &file.path().to_string_lossy()],
        );
        for address in &parsed.addresses {
            ns.ip(&["address", "add", address, "dev", interface]);
        }
        ns.ip(&["link", "set", interface, "up"]);
        for net in &parsed.allowed_ips {
            ns.ip(&["route", "replace", net, "dev", interface]);
        }
        tunnel
    }

    /// `wg show INTERFACE preshared-keys` in the namespace: a line `PEER\tKEY` per peer,
    /// `(none)` for a peer without one.
    pub fn preshared_keys(&self) -> String {
        self.show("preshared-keys")
    }

    /// `wg show INTERFACE latest-handshakes` in the namespace.
    pub fn handshakes(&self) -> String {
        self.show("latest-handshakes")
    }

    /// `wg show INTERFACE WHAT` in the namespace.
    fn show(&self, what: &str) -> String {
        let args = [
            "netns",
            "exec",
            &self.netns,
            "wg",
            "show",
            &self.interface,
            what,
        ];
        run("ip", &args)
    }
}

impl Drop for PhoneTunnel {
    fn drop(&mut self) {
        // Deleting the interface ends its wireguard-go.
        let _ = Command::new("ip")
            .args(["-n", &self.netns, "link", "del", &self.interface])
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_conf_is_split_like_wg_quick_does() {
        let conf = "[Interface]\nPrivateKey = cHJpdg==\nAddress = 10.213.0.2/32\nDNS = 10.213.0.1\n\n[Peer]\nPublicKey = cHVi\nPresharedKey = cHNr\nEndpoint = 198.18.0.1:51820\nAllowedIPs = 10.213.0.0/24, fd00::/64\nPersistentKeepalive = 25\n";
        let parsed = ClientConf::parse(conf);
        assert_eq!(parsed.addresses, ["10.213.0.2/32"]);
        assert_eq!(parsed.allowed_ips, ["10.213.0.0/24", "fd00::/64"]);
        assert!(!parsed.wg_only.contains("Address"));
        assert!(!parsed.wg_only.contains("DNS"));
        assert!(parsed.wg_only.contains("PrivateKey = cHJpdg=="));
        assert!(parsed.wg_only.contains("Endpoint = 198.18.0.1:51820"));
        // The preshared key is WireGuard's own: `wg setconf` applies it.
        assert!(
            parsed
                .wg_only
                .contains("\nPublicKey = cHVi\nPresharedKey = cHNr\n")
        );
    }
}
