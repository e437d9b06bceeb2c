//! What the appliance keeps about its VPN, in `<data_dir>/wireguard/` (mode 0700, the
//! supervisor's):
//!
//! | file | mode | contents |
//! |---|---|---|
//! | `server.key` | 0600 | the interface's private key, base64, created on first use |
//! | `peers.json` | 0600 | the peers: name, public and preshared key, address, created_at |
//! | `endpoint` | 0600 | the endpoint set on the dashboard's VPN page (`host:port`), if any |
//!
//! The first two files hold secrets. The registry keeps each peer's preshared key, because the
//! interface needs it again every time it is brought up. An entry without one (written
//! before preshared keys were given out) loads as a peer without a preshared key, which
//! keeps working without one.
//! Peers' private keys are never stored: each is written once into the client
//! configuration returned by `add_peer`. Both files are replaced atomically (temporary
//! file, fsync, rename, fsync of the directory). A file that cannot be read as what it
//! should be is an error naming it; it is never replaced silently, because a new server
//! key or an empty registry would cut off every client without a word.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::WgError;
use super::keys::{PresharedKey, PrivateKey, PublicKey};
use super::names::{Endpoint, PeerName};
use super::settings::WgNetwork;

/// The state directory: only its owner (root on an appliance) may enter.
const DIR_MODE: u32 = 0o700;
/// Both files hold secrets (the server key; the peers' preshared keys): owner only.
const FILE_MODE: u32 = 0o600;
/// The registry format this build writes and reads.
const REGISTRY_VERSION: u32 = 1;

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The WireGuard state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens `dir`, creating it (mode 0700) if it is missing, and taking away access
    /// for group and others if an existing one allows any.
    pub fn open(dir: impl Into<PathBuf>) -> Result<StateDir, WgError> {
        let dir = dir.into();
        let err = |source| WgError::Io {
            action: "create",
            path: dir.clone(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)
            .map_err(err)?;
        let meta = fs::metadata(&dir).map_err(err)?;
        if meta.mode() & 0o077 != 0 {
            tracing::warn!(
                path = %dir.display(),
                mode = format!("{:o}", meta.mode() & 0o7777),
                "the WireGuard state directory was open to others; restricting it to its owner"
            );
            fs::set_permissions(&dir, Permissions::from_mode(DIR_MODE)).map_err(err)?;
        }
        Ok(StateDir { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    pub fn registry_path(&self) -> PathBuf {
        self.dir.join("peers.json")
    }

    pub fn endpoint_path(&self) -> PathBuf {
        self.dir.join("endpoint")
    }

    /// The endpoint set on the VPN page, if one was; checked like the config's
    /// `wireguard.endpoint`.
    pub fn load_endpoint(&self) -> Result<Option<Endpoint>, WgError> {
        let path = self.endpoint_path();
        match fs::read_to_string(&path) {
            Ok(text) => {
                Endpoint::parse(text.trim())
                    .map(Some)
                    .map_err(|e| WgError::CorruptEndpoint {
                        path,
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(WgError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Stores the endpoint set on the VPN page (replacing any earlier one).
    pub fn save_endpoint(&self, endpoint: &Endpoint) -> Result<(), WgError> {
        write_atomic(&self.endpoint_path(), format!("{endpoint}\n").as_bytes())
    }

    /// The server's private key, generated and stored on first use.
    pub fn server_key(&self) -> Result<PrivateKey, WgError> {
        let path = self.server_key_path();
        match fs::read(&path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                restrict(&path)?;
                let text = std::str::from_utf8(&bytes).map_err(|_| WgError::CorruptKey {
                    path: path.clone(),
                    reason: "is not text".into(),
                })?;
                PrivateKey::from_base64(text).map_err(|e| WgError::CorruptKey {
                    path: path.clone(),
                    reason: e.reason,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = PrivateKey::generate();
                let mut text = key.to_base64();
                text.push('\n');
                write_atomic(&path, text.as_bytes())?;
                tracing::info!(
                    path = %path.display(),
                    public_key = %key.public_key(),
                    "created the WireGuard server key"
                );
                Ok(key)
            }
            Err(source) => Err(WgError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// The peer registry, checked against `network`; empty when the file does not exist.
    pub fn load_registry(&self, network: &WgNetwork) -> Result<Registry, WgError> {
        let path = self.registry_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Registry::default()),
            Err(source) => {
                return Err(WgError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        restrict(&path)?;
        let corrupt = |reason: String| WgError::CorruptRegistry {
            path: path.clone(),
            reason,
        };
        let file: RegistryFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.version != REGISTRY_VERSION {
            return Err(corrupt(format!(
                "is version {}; this build reads version {REGISTRY_VERSION}",
                file.version
            )));
        }
        let registry = Registry { peers: file.peers };
        registry.check(network).map_err(corrupt)?;
        Ok(registry)
    }

    /// Replaces the registry file with `registry`.
    pub fn save_registry(&self, registry: &Registry) -> Result<(), WgError> {
        let file = RegistryFile {
            version: REGISTRY_VERSION,
            peers: registry.peers.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| WgError::Io {
            action: "write",
            path: self.registry_path(),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        write_atomic(&self.registry_path(), &bytes)
    }
}

/// `peers.json` as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    version: u32,
    peers: Vec<PeerEntry>,
}

/// One peer the appliance lets in. Its `Debug` shows no secret (a [`PresharedKey`]
/// prints as `PresharedKey(..)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    pub name: PeerName,
    pub public_key: PublicKey,
    /// The key this peer and the interface share (secret); `None` for a peer registered
    /// before preshared keys were given out, whose entry has no such field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preshared_key: Option<PresharedKey>,
    /// Its tunnel address (the only source address the interface accepts from it).
    pub address: Ipv4Addr,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The peers, in the order of their addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    peers: Vec<PeerEntry>,
}

impl Registry {
    pub fn peers(&self) -> &[PeerEntry] {
        &self.peers
    }

    /// The peer called `name`, compared without regard to case.
    pub fn find(&self, name: &PeerName) -> Option<&PeerEntry> {
        self.peers.iter().find(|p| p.name.same_as(name))
    }

    /// The lowest peer address of `network` that no peer has.
    pub fn next_free_address(&self, network: &WgNetwork) -> Result<Ipv4Addr, WgError> {
        network
            .peer_addresses()
            .find(|ip| !self.peers.iter().any(|p| p.address == *ip))
            .ok_or(WgError::Exhausted {
                network: *network,
                capacity: network.capacity(),
            })
    }

    /// A copy with `peer` added (the caller checked name and address).
    pub(crate) fn with(&self, peer: PeerEntry) -> Registry {
        let mut peers = self.peers.clone();
        peers.push(peer);
        peers.sort_by_key(|p| p.address);
        Registry { peers }
    }

    /// A copy without the peer called `name`.
    pub(crate) fn without(&self, name: &PeerName) -> Registry {
        Registry {
            peers: self
                .peers
                .iter()
                .filter(|p| !p.name.same_as(name))
                .cloned()
                .collect(),
        }
    }

    /// What a registry read from disk must satisfy: unique names (without case), keys
    /// and addresses, each address a peer address of `network`.
    fn check(&self, network: &WgNetwork) -> Result<(), String> {
        for (i, peer) in self.peers.iter().enumerate() {
            if !network.is_peer_address(peer.address) {
                return Err(format!(
                    "peer {:?} has address {}, which is not a peer address of the configured \
                     network {network} (was `wireguard.network` changed?)",
                    peer.name.as_str(),
                    peer.address
                ));
            }
            for earlier in &self.peers[..i] {
                if earlier.name.same_as(&peer.name) {
                    return Err(format!(
                        "lists peer {:?} twice (names are compared without case)",
                        peer.name.as_str()
                    ));
                }
                if earlier.address == peer.address {
                    return Err(format!(
                        "gives address {} to both {:?} and {:?}",
                        peer.address,
                        earlier.name.as_str(),
                        peer.name.as_str()
                    ));
                }
                if earlier.public_key == peer.public_key {
                    return Err(format!(
                        "gives the same public key to {:?} and {:?}",
                        earlier.name.as_str(),
                        peer.name.as_str()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An existing secret file readable by group or others is restricted to its owner.
fn restrict(path: &Path) -> Result<(), WgError> {
    let err = |source| WgError::Io {
        action: "check",
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(err)?;
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.mode() & 0o7777),
            "a WireGuard state file was readable by others; restricting it to its owner"
        );
        fs::set_permissions(path, Permissions::from_mode(FILE_MODE)).map_err(err)?;
    }
    Ok(())
}

/// Replaces `path` so that a reader sees the old file or the new one, never half of one,
/// even across a power cut: a temporary file in the same directory created 0600, flushed,
/// renamed over `path`, and the directory flushed so the rename itself survives.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), WgError> {
    let err = |source| WgError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| err(io::Error::other("the path has no parent directory")))?;
    let name = path
        .file_name()
        .ok_or_else(|| err(io::Error::other("the path has no file name")))?
        .to_string_lossy();
    let temp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        // `create_new` refuses to follow a planted symlink or reuse someone else's file.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp)?;
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Do not leave a copy (possibly of a key) behind.
        let _ = fs::remove_file(&temp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> WgNetwork {
        WgNetwork::parse("10.213.0.0/24").unwrap()
    }

    fn peer(name: &str, last_octet: u8) -> PeerEntry {
        PeerEntry {
            name: PeerName::parse(name).unwrap(),
            public_key: PrivateKey::generate().public_key(),
            preshared_key: Some(PresharedKey::generate()),
            address: Ipv4Addr::new(10, 213, 0, last_octet),
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn the_directory_and_server_key_are_private_and_the_key_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wireguard");
        let state = StateDir::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let key = state.server_key().unwrap();
        assert_eq!(mode(&state.server_key_path()), 0o600);
        let text = fs::read_to_string(state.server_key_path()).unwrap();
        assert_eq!(text.trim(), key.to_base64().as_str());
        // Read back, not replaced.
        assert_eq!(StateDir::open(&dir).unwrap().server_key().unwrap(), key);
        // Wider modes are narrowed.
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(state.server_key_path(), Permissions::from_mode(0o644)).unwrap();
        let state = StateDir::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(state.server_key().unwrap(), key);
        assert_eq!(mode(&state.server_key_path()), 0o600);
    }

    #[test]
    fn a_damaged_server_key_is_an_error_not_a_new_key() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        fs::write(state.server_key_path(), "garbage\n").unwrap();
        let e = state.server_key().unwrap_err();
        assert!(matches!(e, WgError::CorruptKey { .. }), "{e}");
        assert!(e.to_string().contains("server.key"), "{e}");
        assert_eq!(
            fs::read_to_string(state.server_key_path()).unwrap(),
            "garbage\n"
        );
    }

    #[test]
    fn the_registry_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        assert_eq!(
            state.load_registry(&network()).unwrap(),
            Registry::default()
        );
        let registry = Registry::default()
            .with(peer("laptop", 3))
            .with(peer("Phone", 2));
        state.save_registry(&registry).unwrap();
        assert_eq!(mode(&state.registry_path()), 0o600);
        let loaded = state.load_registry(&network()).unwrap();
        assert_eq!(loaded, registry);
        // The preshared keys are kept, as base64.
        let text = fs::read_to_string(state.registry_path()).unwrap();
        for peer in registry.peers() {
            let psk = peer.preshared_key.as_ref().unwrap().to_base64();
            assert!(
                text.contains(&format!("\"preshared_key\": \"{}\"", psk.as_str())),
                "{text}"
            );
        }
        // Sorted by address.
        assert_eq!(loaded.peers()[0].name.as_str(), "Phone");
        assert!(loaded.find(&PeerName::parse("PHONE").unwrap()).is_some());
        let without = loaded.without(&PeerName::parse("phone").unwrap());
        assert_eq!(without.peers().len(), 1);
        // No temporary files left behind.
        let names: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["peers.json"]);
    }

    #[test]
    fn a_registry_written_before_preshared_keys_loads_without_them() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let key = PrivateKey::generate().public_key();
        // `peers.json` as the builds before preshared keys wrote it.
        fs::write(
            state.registry_path(),
            format!(
                "{{\n  \"version\": 1,\n  \"peers\": [\n    {{\n      \"name\": \"old-phone\",\n      \
                 \"public_key\": \"{key}\",\n      \"address\": \"10.213.0.2\",\n      \
                 \"created_at\": \"2024-01-01T00:00:00Z\"\n    }}\n  ]\n}}\n"
            ),
        )
        .unwrap();
        let loaded = state.load_registry(&network()).unwrap();
        let [old] = loaded.peers() else {
            panic!("one peer: {loaded:?}");
        };
        assert_eq!(old.name.as_str(), "old-phone");
        assert_eq!(old.public_key, key);
        assert_eq!(old.preshared_key, None);
        // Written back (a new peer added beside it), it still has none: no field, rather
        // than a null or a key it never had.
        let new = peer("new-laptop", 3);
        state.save_registry(&loaded.with(new.clone())).unwrap();
        let text = fs::read_to_string(state.registry_path()).unwrap();
        assert_eq!(text.matches("preshared_key").count(), 1, "{text}");
        let again = state.load_registry(&network()).unwrap();
        assert_eq!(again.peers()[0].preshared_key, None);
        assert_eq!(again.peers()[1].preshared_key, new.preshared_key);
    }

    #[test]
    fn a_peer_entry_shows_no_preshared_key() {
        let p = peer("phone", 2);
        let psk = p.preshared_key.as_ref().unwrap().to_base64();
        let shown = format!("{p:?}");
        assert!(
            shown.contains("preshared_key: Some(PresharedKey(..))"),
            "{shown}"
        );
        assert!(!shown.contains(psk.as_str()), "{shown}");
    }

    #[test]
    fn a_corrupt_registry_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let p = peer("phone", 2);
        let entry = |name: &str, address: &str, key: &str| {
            format!(
                r#"{{"name":"{name}","public_key":"{key}","address":"{address}","created_at":"2024-01-01T00:00:00Z"}}"#
            )
        };
        let key = p.public_key.to_base64();
        let other = PrivateKey::generate().public_key().to_base64();
        let cases = [
            ("{not json".to_owned(), "key must be a string"),
            (String::new(), "EOF"),
            (r#"{"version":2,"peers":[]}"#.to_owned(), "version 2"),
            (
                r#"{"version":1,"peers":[],"x":1}"#.to_owned(),
                "unknown field",
            ),
            (
                format!(
                    r#"{{"version":1,"peers":[{}]}}"#,
                    entry("bad name", "10.213.0.2", &key)
                ),
                "contains ' '",
            ),
            (
                format!(
                    r#"{{"version":1,"peers":[{}]}}"#,
                    entry("a", "10.213.0.2", "AAAA")
                ),
                "3 bytes",
            ),
            (
                format!(
                    r#"{{"version":1,"peers":[{}]}}"#,
                    entry("a", "10.213.0.2", &key)
                        .replace("\"address\"", "\"preshared_key\":\"c2VjcmV0\",\"address\"")
                ),
                "preshared key \"(not shown)\": decodes to 6 bytes",
            ),
            (
                format!(
                    r#"{{"version":1,"peers":[{}]}}"#,
                    entry("a", "10.9.0.2", &key)
                ),
                "not a peer address of the configured network",
            ),
            (
                format!(
                    r#"{{"version":1,"peers":[{}]}}"#,
                    entry("a", "10.213.0.1", &key)
                ),
                "not a peer address",
            ),
            (
                format!(
                    r#"{{"version":1,"peers":[{},{}]}}"#,
                    entry("a", "10.213.0.2", &key),
                    entry("A", "10.213.0.3", &other)
                ),
                "twice",
            ),
            (
                format!(
                    r#"{{"version":1,"peers":[{},{}]}}"#,
                    entry("a", "10.213.0.2", &key),
                    entry("b", "10.213.0.2", &other)
                ),
                "address 10.213.0.2 to both",
            ),
            (
                format!(
                    r#"{{"version":1,"peers":[{},{}]}}"#,
                    entry("a", "10.213.0.2", &key),
                    entry("b", "10.213.0.3", &key)
                ),
                "same public key",
            ),
        ];
        for (text, why) in cases {
            fs::write(state.registry_path(), &text).unwrap();
            let e = state.load_registry(&network()).unwrap_err();
            assert!(matches!(e, WgError::CorruptRegistry { .. }), "{text}: {e}");
            let message = e.to_string();
            assert!(message.contains(why), "{text}: {message}");
            assert!(message.contains("peers.json"), "{message}");
            assert!(!message.contains("c2VjcmV0"), "a key was echoed: {message}");
            assert_eq!(fs::read_to_string(state.registry_path()).unwrap(), text);
        }
    }

    #[test]
    fn addresses_are_allocated_lowest_first_until_exhausted() {
        let small = WgNetwork::parse("10.213.0.0/29").unwrap();
        let mut registry = Registry::default();
        let mut given = Vec::new();
        for i in 0..5 {
            let ip = registry.next_free_address(&small).unwrap();
            given.push(ip.octets()[3]);
            registry = registry.with(PeerEntry {
                address: ip,
                ..peer(&format!("p{i}"), 2)
            });
        }
        assert_eq!(given, [2, 3, 4, 5, 6]);
        let e = registry.next_free_address(&small).unwrap_err();
        assert!(matches!(e, WgError::Exhausted { capacity: 5, .. }), "{e}");
        assert!(e.to_string().contains("10.213.0.0/29"), "{e}");
        // A freed address is given out again, before higher ones.
        let registry = registry.without(&PeerName::parse("p1").unwrap());
        assert_eq!(
            registry.next_free_address(&small).unwrap(),
            Ipv4Addr::new(10, 213, 0, 3)
        );
    }
}
