//! The HTTPS certificates, replaceable while serving.
//!
//! The supervisor renews `server.crt`/`server.key` (the local CA's, for LAN names and
//! addresses) and `acme/cert.pem`/`acme/key.pem` (a public CA's, for the names in
//! `[acme]`), replacing each file atomically, and then sends this process `SIGHUP`.
//! [`CertResolver`] keeps the certificates in use behind a lock; a reload swaps them for
//! new handshakes only, so open connections are not disturbed, and a broken new file
//! leaves the old one in use.
//!
//! Which certificate a handshake gets:
//!
//! 1. a ClientHello offering ALPN `acme-tls/1` is a CA's TLS-ALPN-01 check (RFC 8737):
//!    it gets the challenge certificate the supervisor published for its SNI name, read
//!    from disk on demand, or no certificate at all (the handshake fails), never a real
//!    one;
//! 2. an SNI name the ACME certificate covers gets the ACME certificate;
//! 3. everything else (`<host>.local`, addresses, no SNI) gets the local CA's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use cv_net::acme::{ACME_TLS_ALPN_PROTOCOL, AcmePaths, tls_alpn01_key};
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

/// Serves whatever certificates were loaded last; see the module documentation.
#[derive(Debug)]
pub struct CertResolver {
    paths: PkiPaths,
    acme: AcmePaths,
    /// Where TLS-ALPN-01 challenge certificates are published; `None`: not answered.
    tls_alpn_dir: Option<PathBuf>,
    current: RwLock<Arc<Loaded>>,
    /// The ACME certificate and the names it covers, when one is installed.
    current_acme: RwLock<Option<Arc<Loaded>>>,
}

impl CertResolver {
    /// Loads `server.crt` and `server.key` from `paths`, and the ACME certificate from
    /// its `acme/` directory when there is a usable one.
    pub fn load(paths: PkiPaths, tls_alpn_dir: Option<PathBuf>) -> Result<CertResolver, CertError> {
        let loaded = load_files(&paths.server_cert(), &paths.server_key())?;
        let acme = AcmePaths::new(paths.dir());
        let resolver = CertResolver {
            paths,
            acme,
            tls_alpn_dir,
            current: RwLock::new(Arc::new(loaded)),
            current_acme: RwLock::new(None),
        };
        if let Err(e) = resolver.reload_acme() {
            tracing::warn!(error = %e, "the ACME certificate cannot be served; using the local CA's");
        }
        Ok(resolver)
    }

    /// Re-reads the files; on error the previous certificates stay in use.
    pub fn reload(&self) -> Result<(), CertError> {
        let acme = self.reload_acme();
        let loaded = Arc::new(load_files(
            &self.paths.server_cert(),
            &self.paths.server_key(),
        )?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        acme
    }

    /// Loads the ACME certificate: none installed drops it; a broken one keeps the
    /// previous one (and says why).
    fn reload_acme(&self) -> Result<(), CertError> {
        if !self.acme.cert().exists() {
            *self
                .current_acme
                .write()
                .unwrap_or_else(PoisonError::into_inner) = None;
            return Ok(());
        }
        let loaded = Arc::new(load_files(&self.acme.cert(), &self.acme.key())?);
        *self
            .current_acme
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(loaded);
        Ok(())
    }

    /// The local CA's certificate now presented to clients, summarised (None if it
    /// could not be parsed for display, which does not stop it from being served).
    pub fn info(&self) -> Option<CertInfo> {
        self.current().info.clone()
    }

    /// The ACME certificate now presented for its names, summarised.
    pub fn acme_info(&self) -> Option<CertInfo> {
        self.current_acme().and_then(|l| l.info.clone())
    }

    fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn current_acme(&self) -> Option<Arc<Loaded>> {
        self.current_acme
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers_acme = client_hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN_PROTOCOL));
        if offers_acme {
            let dir = self.tls_alpn_dir.as_deref()?;
            return tls_alpn01_key(dir, client_hello.server_name()?);
        }
        if let (Some(sni), Some(acme)) = (client_hello.server_name(), self.current_acme())
            && acme
                .info
                .as_ref()
                .is_some_and(|info| info.names.iter().any(|n| n.eq_ignore_ascii_case(sni)))
        {
            return Some(acme.key.clone());
        }
        Some(self.current().key.clone())
    }
}

fn load_files(cert_path: &Path, key_path: &Path) -> Result<Loaded, CertError> {
    let (cert_path, key_path) = (cert_path.to_owned(), key_path.to_owned());
    let show = |p: &Path| p.display().to_string();

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
/// ALPN: actix-web puts `h2` and `http/1.1` (in that order, RFC 7301 §3.2: the server
/// picks its first protocol the client offers) in front of whatever the config lists,
/// so the config lists only `acme-tls/1`, last: a browser never offers it, and a CA's
/// TLS-ALPN-01 check offers nothing else, so rustls negotiates it exactly for the
/// check (RFC 8737 §3; without it in the list rustls would refuse the handshake). Such
/// a connection only ever sees the challenge certificate; the CA closes it after the
/// handshake.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig, CertError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ACME_TLS_ALPN_PROTOCOL.to_vec()];
    Ok(config)
}
