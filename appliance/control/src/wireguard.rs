//! The WireGuard VPN over the control socket. The supervisor (root) owns the interface;
//! the vault service and the admin CLI ask it to add, list and revoke peers. Names arrive
//! as plain strings: the supervisor validates them again, whatever the asker checked.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// How long a client waits for a WireGuard answer: the supervisor may be bringing the
/// interface up (starting `wireguard-go`) when the request arrives.
pub const WG_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the VPN runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WgState {
    /// Being brought up.
    Starting,
    /// The interface runs.
    Up,
    /// Off on purpose or by circumstance (disabled in the config, dev mode without root,
    /// WireGuard not available on this machine): `reason` says which.
    Off,
    /// It should run and does not: `reason` holds the error.
    Failed,
}

impl WgState {
    pub fn as_str(self) -> &'static str {
        match self {
            WgState::Starting => "starting",
            WgState::Up => "up",
            WgState::Off => "off",
            WgState::Failed => "failed",
        }
    }
}

/// A client configuration (the `wg-quick` file a device imports). It holds the device's
/// private key, which exists nowhere else: `Debug` does not show it, and the text is
/// wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct WgClientConfig(Zeroizing<String>);

impl WgClientConfig {
    pub fn new(text: Zeroizing<String>) -> WgClientConfig {
        WgClientConfig(text)
    }

    /// The configuration text (secret).
    pub fn text(&self) -> &str {
        &self.0
    }

    pub fn into_text(self) -> Zeroizing<String> {
        self.0
    }
}

impl fmt::Debug for WgClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WgClientConfig(secret)")
    }
}

impl Serialize for WgClientConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WgClientConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| WgClientConfig(Zeroizing::new(text)))
    }
}

/// One peer as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WgPeer {
    pub name: String,
    pub address: Ipv4Addr,
    /// Base64, as `wg` shows it.
    pub public_key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The answer to `wg_add_peer`: the new peer and its configuration, given out this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WgPeerAdded {
    pub peer: WgPeer,
    pub client_config: WgClientConfig,
}

/// A peer and its traffic (zero, and no handshake, while the interface is down).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WgPeerStatus {
    #[serde(flatten)]
    pub peer: WgPeer,
    /// The last completed handshake; `None` if there was none (since the interface came
    /// up).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_handshake: Option<OffsetDateTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Everything about the VPN, for the dashboard and `contextvault admin wg list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WgOverview {
    pub state: WgState,
    /// Why it is off or failed; `None` when it is up or starting.
    pub reason: Option<String>,
    pub interface: String,
    /// "kernel" or "wireguard-go", while up.
    pub backend: Option<String>,
    /// The tunnel network in CIDR form.
    pub network: String,
    /// The appliance's own tunnel address.
    pub server_address: Ipv4Addr,
    pub listen_port: u16,
    /// `host:port` written into client configurations; `None`: peers cannot be added.
    pub endpoint: Option<String>,
    /// Whether `endpoint` comes from the config file (which takes precedence over one
    /// set on the VPN page, and cannot be changed there).
    #[serde(default)]
    pub endpoint_from_config: bool,
    /// Base64; `None` while the state directory is not open (off, or failed to open).
    pub server_public_key: Option<String>,
    /// What client configurations get as `DNS` and `AllowedIPs`.
    pub dns: Vec<IpAddr>,
    pub client_allowed_ips: Vec<String>,
    pub peers: Vec<WgPeerStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_MESSAGE_BYTES, Response};

    fn peer(i: u8) -> WgPeer {
        WgPeer {
            // The longest name the appliance accepts (32 characters).
            name: format!("{}{i:03}", "n".repeat(29)),
            address: Ipv4Addr::new(100, 100, 100, i),
            public_key: "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=".into(),
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000)
                .unwrap()
                .replace_nanosecond(123_456_789)
                .unwrap(),
        }
    }

    #[test]
    fn a_full_peer_list_fits_in_one_message() {
        // A /24 holds 253 peers, every one with the longest name and counters.
        let overview = WgOverview {
            state: WgState::Up,
            reason: Some("x".repeat(500)),
            interface: "abcdefghijklmno".into(),
            backend: Some("wireguard-go".into()),
            network: "100.100.100.0/24".into(),
            server_address: Ipv4Addr::new(100, 100, 100, 1),
            listen_port: 65535,
            endpoint: Some(format!("{}:65535", "a".repeat(253))),
            endpoint_from_config: true,
            server_public_key: Some("DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=".into()),
            dns: vec![IpAddr::from([0xffffu16; 8]); 8],
            client_allowed_ips: vec!["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128".into(); 16],
            peers: (2..=254)
                .map(|i| WgPeerStatus {
                    peer: peer(i),
                    last_handshake: Some(peer(i).created_at),
                    rx_bytes: u64::MAX,
                    tx_bytes: u64::MAX,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&Response::WgPeers(overview.clone())).unwrap();
        assert!(
            bytes.len() < MAX_MESSAGE_BYTES,
            "{} bytes, limit {MAX_MESSAGE_BYTES}",
            bytes.len()
        );
        // More than the old 64 KiB limit: why the limit was raised.
        assert!(bytes.len() > 64 * 1024, "{}", bytes.len());
        let back: Response = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, Response::WgPeers(overview));
    }

    #[test]
    fn client_configurations_do_not_print() {
        let added = WgPeerAdded {
            peer: peer(2),
            client_config: WgClientConfig::new(Zeroizing::new(
                "[Interface]\nPrivateKey = SECRETSECRET\n".into(),
            )),
        };
        let shown = format!("{:?}", Response::WgPeerAdded(added.clone()));
        assert!(!shown.contains("SECRETSECRET"), "{shown}");
        assert!(shown.contains("WgClientConfig(secret)"), "{shown}");
        // But they travel.
        let json = serde_json::to_string(&Response::WgPeerAdded(added.clone())).unwrap();
        assert!(json.contains("SECRETSECRET"));
        assert_eq!(
            serde_json::from_str::<Response>(&json).unwrap(),
            Response::WgPeerAdded(added)
        );
    }
}
