//! Updates for the Context Vault appliance.
//!
//! The appliance updates itself with RAUC bundles; TUF metadata, read with tough, says
//! which bundle is current.
//!
//! - [`repo`]: the TUF check: refresh the metadata and list the bundles for this board.
//! - [`download`]: fetch a bundle, resuming a partial download, checking its length and
//!   SHA-256 while it streams.
//! - [`hint`]: signed webhooks (Standard Webhooks) that only say "check now".
//! - [`publish`]: the owner's side: keys, root metadata, adding a bundle, rotating the
//!   root key (the `contextvault-publish` binary).

pub mod download;
pub mod hint;
pub mod publish;
pub mod repo;
