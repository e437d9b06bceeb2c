//! Networking for the Context Vault appliance.
//!
//! - [`tls`]: the local certificate authority created on first start and the server
//!   certificate for the box's LAN names, plus the rustls server configuration built
//!   from them.
//! - [`wg`]: the WireGuard VPN: settings, keys, the peer registry, client
//!   configurations and their QR codes, and the interface itself.

pub mod tls;
pub mod wg;
