//! Networking for the Context Vault appliance.
//!
//! - [`tls`]: the local certificate authority created on first start and the server
//!   certificate for the box's LAN names, plus the rustls server configuration built
//!   from them.
//! - [`mdns`]: LAN discovery: `<hostname>.local` and an `_https._tcp` service announced
//!   with multicast DNS.
//! - [`acme`]: certificates from a public CA over ACME (HTTP-01, TLS-ALPN-01, DNS-01
//!   by RFC 2136), and when to renew them.
//! - [`wg`]: the WireGuard VPN: settings, keys, the peer registry, client
//!   configurations and their QR codes, and the interface itself.
//! - [`dnsname`]: the limits and the label rule every DNS name above follows.

pub mod acme;
pub mod dnsname;
pub mod loopback;
pub mod mdns;
pub mod tls;
pub mod wg;
