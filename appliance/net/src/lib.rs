//! Networking for the Context Vault appliance.
//!
//! - [`tls`]: the local certificate authority created on first start and the server
//!   certificate for the box's LAN names, plus the rustls server configuration built
//!   from them.

pub mod tls;
