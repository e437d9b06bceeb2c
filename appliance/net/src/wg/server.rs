//! The appliance's VPN as one object: settings, state directory, registry and (while it
//! runs) the interface, kept in step.
//!
//! Every operation checks its input before it changes anything, and a failure part-way
//! is undone: a bad name, a duplicate, a full network or a missing endpoint leave the
//! registry and the interface exactly as they were.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use time::OffsetDateTime;

use super::WgError;
use super::client::ClientConfig;
use super::iface::{Interface, PeerStats, Tools};
use super::keys::{PresharedKey, PrivateKey, PublicKey};
use super::names::{Endpoint, PeerName};
use super::settings::WgSettings;
use super::state::{PeerEntry, Registry, StateDir};

/// A peer and, while the interface runs, its traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub peer: PeerEntry,
    /// `None` while the interface is down.
    pub stats: Option<PeerStats>,
}

/// The WireGuard server: see the module docs.
#[derive(Debug)]
pub struct WgServer {
    settings: WgSettings,
    /// The endpoint set on the VPN page (`StateDir::load_endpoint`); the config's
    /// `settings.endpoint`, when set, takes precedence (see [`WgServer::endpoint`]).
    stored_endpoint: Option<Endpoint>,
    state: StateDir,
    key: PrivateKey,
    public_key: PublicKey,
    registry: Registry,
    interface: Option<Interface>,
}

impl WgServer {
    /// Opens the state in `dir` (created on first use, with a new server key) and checks
    /// the registry against the settings. The interface is not touched.
    pub fn open(settings: WgSettings, dir: impl Into<PathBuf>) -> Result<WgServer, WgError> {
        let state = StateDir::open(dir)?;
        let key = state.server_key()?;
        let registry = state.load_registry(&settings.network)?;
        // A damaged endpoint file must not keep the VPN down: the existing peers carry
        // their endpoint in their own configuration. It is reported and set again.
        let stored_endpoint = state.load_endpoint().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring the stored WireGuard endpoint");
            None
        });
        Ok(WgServer {
            public_key: key.public_key(),
            settings,
            stored_endpoint,
            state,
            key,
            registry,
            interface: None,
        })
    }

    pub fn settings(&self) -> &WgSettings {
        &self.settings
    }

    /// Where clients reach the appliance, written into every new client configuration:
    /// the config file's `wireguard.endpoint` if it sets one (an administrator's file is
    /// the authority on an appliance managed that way), else the one set on the VPN page.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.settings
            .endpoint
            .as_ref()
            .or(self.stored_endpoint.as_ref())
    }

    /// Whether the endpoint comes from the config file (and cannot be set here).
    pub fn endpoint_from_config(&self) -> bool {
        self.settings.endpoint.is_some()
    }

    /// Sets the endpoint from the VPN page: checked like the config's
    /// `wireguard.endpoint` (`host:port`, the host a DNS name or an IP address), stored
    /// in the state directory, used for the peers added from now on. Refused while the
    /// config file sets one.
    pub fn set_endpoint(&mut self, text: &str) -> Result<Endpoint, WgError> {
        if let Some(configured) = &self.settings.endpoint {
            return Err(WgError::EndpointInConfig {
                configured: configured.to_string(),
            });
        }
        let endpoint = Endpoint::parse(text.trim())?;
        self.state.save_endpoint(&endpoint)?;
        tracing::info!(%endpoint, "WireGuard endpoint set");
        self.stored_endpoint = Some(endpoint.clone());
        Ok(endpoint)
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.state
    }

    /// The server's public key, which every client configuration names.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    pub fn peers(&self) -> &[PeerEntry] {
        self.registry.peers()
    }

    pub fn interface(&self) -> Option<&Interface> {
        self.interface.as_ref()
    }

    pub fn is_up(&self) -> bool {
        self.interface.is_some()
    }

    /// Brings the interface up with every registered peer (nothing happens if it is up).
    pub fn bring_up(&mut self, tools: &Tools) -> Result<(), WgError> {
        if self.interface.is_none() {
            self.interface = Some(Interface::up(
                &self.settings,
                &self.key,
                self.registry.peers(),
                tools,
            )?);
        }
        Ok(())
    }

    /// Takes the interface down (nothing happens if it is down).
    pub fn take_down(&mut self) -> Result<(), WgError> {
        match self.interface.take() {
            Some(interface) => interface.down(),
            None => Ok(()),
        }
    }

    /// Whether the interface still runs. When it does not, it is cleaned up (what is left
    /// of it removed) and the error says what happened; [`WgServer::bring_up`] may be
    /// tried again.
    pub fn check(&mut self) -> Result<(), WgError> {
        let Some(interface) = &mut self.interface else {
            return Ok(());
        };
        match interface.check() {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(interface) = self.interface.take() {
                    let _ = interface.down();
                }
                Err(e)
            }
        }
    }

    /// Adds a peer called `name`: generates its key pair and a preshared key, gives it
    /// the lowest free address, lets it in (when the interface runs) and returns its
    /// configuration. The peer's private key is in that configuration only; nothing
    /// keeps it. The preshared key is in the configuration and in the registry, because
    /// the interface needs it again whenever it is brought up.
    pub fn add_peer(
        &mut self,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<(PeerEntry, ClientConfig), WgError> {
        let name = PeerName::parse(name)?;
        let endpoint = self.endpoint().cloned().ok_or(WgError::NoEndpoint)?;
        if let Some(existing) = self.registry.find(&name) {
            return Err(WgError::DuplicatePeer {
                name,
                existing: existing.name.clone(),
            });
        }
        let address = self.registry.next_free_address(&self.settings.network)?;
        let private_key = PrivateKey::generate();
        let entry = PeerEntry {
            name: name.clone(),
            public_key: private_key.public_key(),
            preshared_key: Some(PresharedKey::generate()),
            address,
            created_at: now.replace_nanosecond(0).unwrap_or(now),
        };
        let registry = self.registry.with(entry.clone());
        self.state.save_registry(&registry)?;
        if let Some(interface) = &mut self.interface
            && let Err(e) = interface.add_peer(&entry)
        {
            self.restore_registry();
            return Err(e);
        }
        self.registry = registry;
        tracing::info!(peer = %name, address = %address, "WireGuard peer added");
        let config = ClientConfig::render(
            &name,
            &private_key,
            entry.preshared_key.as_ref(),
            address,
            &self.settings,
            &self.public_key,
            &endpoint,
        );
        Ok((entry, config))
    }

    /// Removes the peer called `name` (without regard to case): from the interface at
    /// once, and from the registry.
    pub fn revoke_peer(&mut self, name: &str) -> Result<PeerEntry, WgError> {
        let name = PeerName::parse(name)?;
        let entry = self
            .registry
            .find(&name)
            .cloned()
            .ok_or_else(|| WgError::NoSuchPeer {
                name: name.to_string(),
            })?;
        if let Some(interface) = &mut self.interface {
            interface.remove_peer(&entry.public_key)?;
        }
        let registry = self.registry.without(&name);
        if let Err(e) = self.state.save_registry(&registry) {
            // The registry still lists it: let it in again rather than leave the two
            // disagreeing.
            if let Some(interface) = &mut self.interface {
                let _ = interface.add_peer(&entry);
            }
            return Err(e);
        }
        self.registry = registry;
        tracing::info!(peer = %entry.name, address = %entry.address, "WireGuard peer revoked");
        Ok(entry)
    }

    /// Every peer with its traffic (while the interface runs).
    pub fn status(&mut self) -> Result<Vec<PeerStatus>, WgError> {
        let stats = match &mut self.interface {
            Some(interface) => Some(interface.stats()?),
            None => None,
        };
        Ok(self
            .registry
            .peers()
            .iter()
            .map(|peer| PeerStatus {
                peer: peer.clone(),
                stats: stats
                    .as_ref()
                    .map(|s| s.get(&peer.public_key).copied().unwrap_or_default()),
            })
            .collect())
    }

    /// The address the next peer would get, if any is free.
    pub fn next_address(&self) -> Option<Ipv4Addr> {
        self.registry.next_free_address(&self.settings.network).ok()
    }

    /// Writes the in-memory registry back after a failed change (best effort: the change
    /// was not applied, so the file on disk is the one out of step).
    fn restore_registry(&self) {
        if let Err(e) = self.state.save_registry(&self.registry) {
            tracing::error!(
                error = %e,
                "could not restore the WireGuard peer registry after a failed change"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wg::names::InterfaceName;
    use crate::wg::settings::WgNetwork;

    fn settings(network: &str) -> WgSettings {
        let mut s = WgSettings::new(
            InterfaceName::parse("cvwg0").unwrap(),
            WgNetwork::parse(network).unwrap(),
            51820,
        );
        s.endpoint = Some(Endpoint::parse("vault.example.net:51820").unwrap());
        s
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn file(server: &WgServer) -> Option<String> {
        std::fs::read_to_string(server.state_dir().registry_path()).ok()
    }

    #[test]
    fn peers_are_added_listed_and_revoked_through_the_registry() {
        let tmp = tempfile::tempdir().unwrap();
        let mut server = WgServer::open(settings("10.213.0.0/24"), tmp.path()).unwrap();
        let (phone, config) = server.add_peer("Phone", now()).unwrap();
        assert_eq!(phone.address, Ipv4Addr::new(10, 213, 0, 2));
        assert_eq!(phone.created_at, now());
        assert!(config.text().contains("Address = 10.213.0.2/32"));
        assert!(
            config
                .text()
                .contains(&format!("PublicKey = {}", server.public_key()))
        );
        let (laptop, _) = server.add_peer("laptop", now()).unwrap();
        assert_eq!(laptop.address, Ipv4Addr::new(10, 213, 0, 3));
        // The private key in the configuration is the peer's, and is stored nowhere.
        let private = config
            .text()
            .lines()
            .find_map(|l| l.strip_prefix("PrivateKey = "))
            .unwrap();
        assert_eq!(
            PrivateKey::from_base64(private).unwrap().public_key(),
            phone.public_key
        );
        for entry in std::fs::read_dir(tmp.path()).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!text.contains(private), "a peer's private key was stored");
        }
        // The preshared key follows the server's public key in the configuration, is the
        // one the registry keeps, and differs between peers.
        let lines: Vec<&str> = config.text().lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("PublicKey = "))
            .unwrap();
        let psk = lines[at + 1]
            .strip_prefix("PresharedKey = ")
            .unwrap_or_else(|| panic!("no PresharedKey after PublicKey:\n{}", config.text()));
        assert_eq!(
            phone.preshared_key,
            Some(PresharedKey::from_base64(psk).unwrap())
        );
        assert!(laptop.preshared_key.is_some());
        assert_ne!(laptop.preshared_key, phone.preshared_key);
        let registry = file(&server).unwrap();
        assert!(registry.contains(psk), "{registry}");
        assert!(
            !format!("{server:?}").contains(psk),
            "Debug shows a preshared key"
        );
        // The state survives a restart.
        drop(server);
        let mut server = WgServer::open(settings("10.213.0.0/24"), tmp.path()).unwrap();
        assert_eq!(server.peers(), [phone.clone(), laptop.clone()]);
        let status = server.status().unwrap();
        assert!(status.iter().all(|s| s.stats.is_none()), "down: no stats");
        // Revoking is case-insensitive; the freed address is given out again.
        assert_eq!(server.revoke_peer("PHONE").unwrap(), phone);
        assert_eq!(server.peers(), [laptop]);
        assert_eq!(server.next_address(), Some(Ipv4Addr::new(10, 213, 0, 2)));
    }

    #[test]
    fn bad_input_leaves_everything_as_it_was() {
        let tmp = tempfile::tempdir().unwrap();
        let mut server = WgServer::open(settings("10.213.0.0/30"), tmp.path()).unwrap();
        server.add_peer("only", now()).unwrap();
        let before = (server.peers().to_vec(), file(&server));
        let unchanged = |server: &WgServer| {
            assert_eq!((server.peers().to_vec(), file(server)), before);
        };

        let e = server.add_peer("bad name", now()).unwrap_err();
        assert!(matches!(e, WgError::Invalid(_)), "{e}");
        assert!(
            e.to_string().contains("invalid peer name \"bad name\""),
            "{e}"
        );
        unchanged(&server);

        let e = server.add_peer("ONLY", now()).unwrap_err();
        assert!(matches!(e, WgError::DuplicatePeer { .. }), "{e}");
        assert!(e.to_string().contains("\"only\" already exists"), "{e}");
        unchanged(&server);

        let e = server.add_peer("second", now()).unwrap_err();
        assert!(matches!(e, WgError::Exhausted { .. }), "{e}");
        assert!(e.to_string().contains("10.213.0.0/30"), "{e}");
        unchanged(&server);

        let e = server.revoke_peer("nobody").unwrap_err();
        assert!(matches!(e, WgError::NoSuchPeer { .. }), "{e}");
        let e = server.revoke_peer("").unwrap_err();
        assert!(matches!(e, WgError::Invalid(_)), "{e}");
        unchanged(&server);

        let mut no_endpoint = settings("10.213.0.0/30");
        no_endpoint.endpoint = None;
        let mut server = WgServer::open(no_endpoint, tmp.path()).unwrap();
        let e = server.add_peer("other", now()).unwrap_err();
        assert!(matches!(e, WgError::NoEndpoint), "{e}");
        assert!(e.to_string().contains("wireguard.endpoint"), "{e}");
        unchanged(&server);
    }

    #[test]
    fn an_endpoint_set_here_is_checked_stored_and_yields_to_the_configs() {
        let tmp = tempfile::tempdir().unwrap();
        let mut no_endpoint = settings("10.213.0.0/24");
        no_endpoint.endpoint = None;
        let mut server = WgServer::open(no_endpoint.clone(), tmp.path()).unwrap();
        assert_eq!(server.endpoint(), None);
        for bad in [
            "",
            "vault.example.net",
            "vault.example.net:0",
            "2001:db8::1:51820",
        ] {
            let e = server.set_endpoint(bad).unwrap_err();
            assert!(matches!(e, WgError::Invalid(_)), "{bad:?}: {e}");
            assert!(e.to_string().starts_with("invalid endpoint "), "{e}");
        }
        assert!(!server.state_dir().endpoint_path().exists());

        let set = server.set_endpoint(" home.example.org:41820 ").unwrap();
        assert_eq!(set.to_string(), "home.example.org:41820");
        let (_, config) = server.add_peer("phone", now()).unwrap();
        assert!(
            config.text().contains("Endpoint = home.example.org:41820"),
            "the new peer's configuration names it"
        );
        // Kept across a restart.
        drop(server);
        let mut server = WgServer::open(no_endpoint, tmp.path()).unwrap();
        assert_eq!(server.endpoint(), Some(&set));
        assert!(!server.endpoint_from_config());
        server.set_endpoint("[2001:db8::1]:51820").unwrap();
        assert_eq!(
            std::fs::read_to_string(server.state_dir().endpoint_path()).unwrap(),
            "[2001:db8::1]:51820\n"
        );

        // The config's endpoint wins, and cannot be changed here.
        let server_with_config = WgServer::open(settings("10.213.0.0/24"), tmp.path());
        let mut server = server_with_config.unwrap();
        assert!(server.endpoint_from_config());
        assert_eq!(
            server.endpoint().map(ToString::to_string).as_deref(),
            Some("vault.example.net:51820")
        );
        let e = server.set_endpoint("other.example.org:1").unwrap_err();
        assert!(matches!(e, WgError::EndpointInConfig { .. }), "{e}");

        // A damaged file is ignored (and reported), not fatal.
        std::fs::write(server.state_dir().endpoint_path(), "not an endpoint\n").unwrap();
        let mut no_endpoint = settings("10.213.0.0/24");
        no_endpoint.endpoint = None;
        let server = WgServer::open(no_endpoint, tmp.path()).unwrap();
        assert_eq!(server.endpoint(), None);
    }

    #[test]
    fn a_registry_that_does_not_fit_the_network_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut server = WgServer::open(settings("10.213.0.0/24"), tmp.path()).unwrap();
        server.add_peer("phone", now()).unwrap();
        drop(server);
        let e = WgServer::open(settings("10.99.0.0/24"), tmp.path()).unwrap_err();
        assert!(matches!(e, WgError::CorruptRegistry { .. }), "{e}");
        assert!(e.to_string().contains("wireguard.network"), "{e}");
    }

    #[test]
    fn bringing_up_needs_root() {
        if nix::unistd::Uid::effective().is_root() {
            return; // The root test (tests/wg_tunnel.rs) brings interfaces up for real.
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut server = WgServer::open(settings("10.213.0.0/24"), tmp.path()).unwrap();
        let e = server.bring_up(&Tools::find()).unwrap_err();
        assert!(matches!(e, WgError::NotRoot { .. }), "{e}");
        assert!(!server.is_up());
    }
}
