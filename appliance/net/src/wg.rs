//! The appliance's WireGuard VPN: how a person reaches the vault from anywhere.
//!
//! The supervisor (root) owns one WireGuard interface (`cvwg0` by default) on a private
//! IPv4 network (`10.213.0.0/24`), the appliance being its first address. Peers are
//! added by name: the appliance generates the peer's key pair and a preshared key, gives
//! it the next free address and hands back a client configuration (text, or a QR code
//! the WireGuard apps scan) exactly once; the peer's private key is kept nowhere, its
//! preshared key only in the registry (the interface needs it).
//!
//! - [`names`]: [`PeerName`], [`InterfaceName`], [`Endpoint`] — validated once;
//! - [`settings`]: [`WgSettings`] (what `[wireguard]` in the config becomes) and the
//!   tunnel network's address plan, [`WgNetwork`];
//! - [`keys`]: [`PrivateKey`] and [`PresharedKey`] (never printed, wiped on drop) and
//!   [`PublicKey`];
//! - [`state`]: the state directory — `server.key` and the registry `peers.json`, both
//!   0600, written atomically, refused (never replaced) when damaged;
//! - [`client`]: the client configuration ([`ClientConfig`], secret) and [`qr_svg`];
//! - [`iface`]: the interface — the kernel's WireGuard when it has it, `wireguard-go`
//!   otherwise — its peers and their traffic;
//! - [`server`]: [`WgServer`], all of the above kept in step.
//!
//! ## Errors
//!
//! One [`WgError`] enum for the module. Variants carry the path, name or port they are
//! about; the ones a person must act on say what to do. None ever contains a private or
//! preshared key or a client configuration.

pub mod client;
pub mod iface;
pub mod keys;
pub mod names;
pub mod server;
pub mod settings;
pub mod state;

use std::io;
use std::path::PathBuf;

pub use client::{ClientConfig, qr_svg};
pub use iface::{Backend, Interface, PeerStats, Tools};
pub use keys::{PresharedKey, PrivateKey, PublicKey};
pub use names::{Endpoint, Host, InterfaceName, InvalidValue, PeerName};
pub use server::{PeerStatus, WgServer};
pub use settings::{PERSISTENT_KEEPALIVE_SECS, WgNetwork, WgSettings, allowed_ips};
pub use state::{PeerEntry, Registry, StateDir};

/// Everything that can go wrong with the VPN.
#[derive(Debug, thiserror::Error)]
pub enum WgError {
    /// A name, endpoint, network or key that is not acceptable.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error(
        "a peer named {:?} already exists (names are compared without regard to case); \
         choose another name or revoke it first",
        existing.as_str()
    )]
    DuplicatePeer { name: PeerName, existing: PeerName },
    #[error("there is no peer named {name:?}")]
    NoSuchPeer { name: String },
    #[error(
        "no address is left in {network}: all {capacity} peer addresses are taken; revoke \
         a peer, or choose a larger `wireguard.network`"
    )]
    Exhausted { network: WgNetwork, capacity: usize },
    #[error(
        "peers cannot be added until the VPN's endpoint is set (on the dashboard's VPN \
         page, or `wireguard.endpoint` in the config): clients need the host name or \
         address, and the port, where they reach this appliance"
    )]
    NoEndpoint,
    #[error(
        "the endpoint is set in the config file (`wireguard.endpoint` = {configured:?}), \
         which takes precedence; change it there"
    )]
    EndpointInConfig { configured: String },
    #[error(
        "{} does not hold a valid endpoint: {reason}. It is ignored: set the endpoint \
         again on the VPN page",
        path.display()
    )]
    CorruptEndpoint { path: PathBuf, reason: String },
    #[error(
        "{} is not a valid peer registry: {reason}. It was left as it is: repair it, or \
         move it away to start with no peers (every client must then be added again)",
        path.display()
    )]
    CorruptRegistry { path: PathBuf, reason: String },
    #[error(
        "{} is not a valid WireGuard private key: {reason}. It was left as it is: restore \
         it from a backup, or move it away to create a new key (every client must then be \
         added again)",
        path.display()
    )]
    CorruptKey { path: PathBuf, reason: String },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("managing a WireGuard interface needs root; this process runs as uid {uid}")]
    NotRoot { uid: u32 },
    #[error(
        "WireGuard is not available: the kernel has no WireGuard support ({kernel}) and \
         wireguard-go is not installed (Debian: apt install wireguard-go)"
    )]
    Unavailable { kernel: String },
    #[error("the `ip` command is not installed (Debian: apt install iproute2)")]
    NoIpCommand,
    #[error("cannot use interface {name}: {why}; choose another `wireguard.interface`")]
    InterfaceInUse { name: InterfaceName, why: String },
    #[error("WireGuard interface {name} stopped: {why}")]
    InterfaceGone { name: InterfaceName, why: String },
    #[error("UDP port {port} is already in use; choose another `wireguard.listen_port`")]
    PortInUse { port: u16 },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("wireguard-go for {interface} {status}{output}")]
    WireguardGo {
        interface: InterfaceName,
        status: String,
        /// Its last lines of output, prefixed with ": ", or empty.
        output: String,
    },
    #[error("{action} WireGuard interface {interface} failed: {source}")]
    Control {
        action: &'static str,
        interface: InterfaceName,
        source: io::Error,
    },
    #[error("cannot make a QR code: {0}")]
    Qr(String),
}
