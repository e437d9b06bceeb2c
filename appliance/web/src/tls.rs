//! The HTTPS certificate, replaceable while serving.
//!
//! The supervisor renews `server.crt`/`server.key` (local CA now, ACME later), replacing
//! each file atomically, and then sends this process `SIGHUP`. [`CertResolver`] keeps
//! the certificate in use behind a lock; a reload swaps it for new handshakes only, so
//! open connections are not disturbed, and a broken new file leaves the old one in use.

use std::sync::{Arc, PoisonError, RwLock};

use cv_net::tls::{CertInfo, PkiPaths};
use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate could not be loaded. Carries the file it failed on.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate in use and its summary for the dashboard.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    info: Option<CertInfo>,
}

/// Serves whatever certificate was loaded last; see the module documentation.
#[derive(Debug)]
pub struct CertResolver {
    paths: PkiPaths,
    current: RwLock<Arc<Loaded>>,
}

impl CertResolver {
    /// Loads `server.crt` and `server.key` from `paths`.
    pub fn load(paths: PkiPaths) -> Result<CertResolver, CertError> {
        let loaded = load_files(&paths)?;
        Ok(CertResolver {
            paths,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// Re-reads the files; on error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), CertError> {
        let loaded = Arc::new(load_files(&self.paths)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        Ok(())
    }

    /// The certificate now presented to clients, summarised (None if it could not be
    /// parsed for display, which does not stop it from being served).
    pub fn info(&self) -> Option<CertInfo> {
        self.current().info.clone()
    }

    fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }
}

fn load_files(paths: &PkiPaths) -> Result<Loaded, CertError> {
    let cert_path = paths.server_cert();
    let key_path = paths.server_key();
    let show = |p: &std::path::Path| p.display().to_string();

    let cert_pem = std::fs::read(&cert_path).map_err(|source| CertError::Read {
        path: show(&cert_path),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Invalid {
            path: show(&cert_path),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::Invalid {
            path: show(&cert_path),
            reason: "no certificate in the file".into(),
        });
    }
    let key_pem = std::fs::read(&key_path).map_err(|source| CertError::Read {
        path: show(&key_path),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertError::Invalid {
        path: show(&key_path),
        reason: format!("no private key: {e}"),
    })?;
    let signing_key = ring::sign::any_supported_type(&key).map_err(|e| CertError::Invalid {
        path: show(&key_path),
        reason: format!("unsupported private key: {e}"),
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    // A key that does not belong to the certificate would fail every handshake;
    // refuse it here, so a reload keeps the working pair instead.
    match certified.keys_match() {
        // Unknown: the key type cannot report its public half; the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(CertError::Invalid {
                path: show(&key_path),
                reason: format!("the key does not match {}: {e}", show(&cert_path)),
            });
        }
    }
    let info = cv_net::tls::cert_info_from_pem(&cert_pem).ok();
    Ok(Loaded {
        key: Arc::new(certified),
        info,
    })
}

/// TLS 1.3 and 1.2 with the ring provider, no client certificates, the certificate from
/// `resolver`.
///
/// ALPN: actix-web puts `h2` and `http/1.1` (in that order, RFC 7301 §3.2: the client
/// takes the first it supports) in front of whatever the config lists, so the config
/// lists none, to avoid announcing each twice.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig, CertError> {
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(config)
}
