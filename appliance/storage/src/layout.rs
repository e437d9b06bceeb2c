//! Where things live under the data directory. One place names every path, so the
//! supervisor, the service handoff and the admin CLI can never disagree.
//!
//! ```text
//! <data>/                 root, 0711: others may pass through, not list
//!   postgres/             PGDATA, the PostgreSQL user's, 0700
//!   run/                  root, 0711
//!     supervisor.sock     control socket, root:<service group> 0660
//!     supervisor.pid      present while a supervisor runs; left behind = unclean stop
//!     postgres/           PostgreSQL's socket, <pg user>:<service group> 0750
//!     acme-http/          HTTP-01 answers, root:<service group> 0750, files 0640
//!     acme-tls-alpn/      TLS-ALPN-01 certificates, root:<service group> 0750, files 0640
//!   tls/                  root, 0711: ca.key 0600 root; server.key 0600 service user
//!     acme/               account.json 0600 root; cert.pem; key.pem 0600 service user
//!   wireguard/            root, 0700: server.key, peers.json (0600; `cv_net::wg::state`)
//! ```

use std::path::{Path, PathBuf};

use crate::postgres::socket_dir_for;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLayout {
    root: PathBuf,
}

impl DataLayout {
    pub fn new(root: impl Into<PathBuf>) -> DataLayout {
        DataLayout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn postgres_data(&self) -> PathBuf {
        self.root.join("postgres")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.run_dir().join("supervisor.sock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.run_dir().join("supervisor.pid")
    }

    /// PostgreSQL's socket directory; falls back to a short path when the data directory
    /// is too deep for a unix socket path.
    pub fn postgres_socket_dir(&self) -> PathBuf {
        socket_dir_for(&self.run_dir())
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// Where the supervisor publishes ACME HTTP-01 answers for the service to serve.
    pub fn acme_http_dir(&self) -> PathBuf {
        self.run_dir().join("acme-http")
    }

    /// Where the supervisor publishes ACME TLS-ALPN-01 certificates for the service.
    pub fn acme_tls_alpn_dir(&self) -> PathBuf {
        self.run_dir().join("acme-tls-alpn")
    }

    /// The WireGuard server key and peer registry (the supervisor's alone).
    pub fn wireguard_dir(&self) -> PathBuf {
        self.root.join("wireguard")
    }
}
