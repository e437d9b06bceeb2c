//! The ACME files in the TLS directory (`<tls>/acme/`):
//!
//! | file | mode | content |
//! |---|---|---|
//! | `account.json` | 0600 root | the ACME account: its key and URL, and the directory it belongs to |
//! | `cert.pem` | 0644 | the issued chain, leaf first |
//! | `key.pem` | 0600 the service user | the certificate's private key |
//!
//! A chain is checked before it is written (it parses, its leaf matches the key and
//! covers the names), and each file is replaced atomically, key first, as for
//! `server.key`: a crash in between leaves a key that does not match `cert.pem`, which
//! [`load_installed`] reports as unusable, so the service keeps what it serves and the
//! supervisor orders again. A half-written file never replaces a working one.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{AcmeError, AcmeName};
use crate::tls::files::{self, CERT_MODE, KEY_MODE};
use crate::tls::{CertInfo, KeyOwner, cert_info_from_pem};

/// Where the ACME files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmePaths {
    dir: PathBuf,
}

impl AcmePaths {
    /// The `acme/` directory inside the TLS directory `tls_dir`.
    pub fn new(tls_dir: &Path) -> AcmePaths {
        AcmePaths {
            dir: tls_dir.join("acme"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The account key and URL (secret; root only).
    pub fn account(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// The issued chain.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The certificate's key, readable by the service user only.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

/// A certificate chain and its key, checked to belong together.
pub struct IssuedCert {
    chain_pem: String,
    key_pem: Zeroizing<String>,
    /// The leaf, summarised.
    pub info: CertInfo,
    /// The leaf's serial number in hex.
    pub serial: String,
    /// The leaf in DER (for ARI queries).
    pub leaf_der: Vec<u8>,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial", &self.serial)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Checks a chain (PEM, leaf first) and its key (PEM): the chain parses, the key is
    /// the leaf's, and the leaf is valid at `now`.
    pub fn from_pem(
        chain_pem: String,
        key_pem: Zeroizing<String>,
        now: OffsetDateTime,
    ) -> Result<IssuedCert, String> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the chain is not PEM: {e}"))?;
        let leaf = chain.first().ok_or("the chain holds no certificate")?;
        let (_, x509) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| format!("the certificate does not parse: {e}"))?;
        // The parse error is left out on purpose: it could quote key bytes.
        let key =
            KeyPair::from_pem(&key_pem).map_err(|_| "the key is not a private key".to_owned())?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err("the key does not belong to the certificate".into());
        }
        let not_before = x509.validity().not_before.to_datetime();
        let not_after = x509.validity().not_after.to_datetime();
        if not_after <= now {
            return Err(format!("the certificate expired on {not_after}"));
        }
        if not_before > now + time::Duration::hours(1) {
            return Err(format!("the certificate is valid only from {not_before}"));
        }
        let info = cert_info_from_pem(chain_pem.as_bytes()).map_err(|e| e.to_string())?;
        Ok(IssuedCert {
            serial: serial_hex(&x509),
            leaf_der: leaf.to_vec(),
            chain_pem,
            key_pem,
            info,
        })
    }

    /// The chain, PEM.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// Whether the certificate names every one of `names`.
    pub fn covers(&self, names: &[AcmeName]) -> bool {
        names
            .iter()
            .all(|n| self.info.names.iter().any(|have| have == n.as_str()))
    }
}

/// What `<tls>/acme/` holds now.
#[derive(Debug)]
pub enum Installed {
    /// No certificate yet.
    Missing,
    /// Files that cannot be served, and why.
    Unusable(String),
    /// A certificate and its key that belong together and are valid now.
    Valid(IssuedCert),
}

/// Reads and checks the installed certificate.
pub fn load_installed(paths: &AcmePaths, now: OffsetDateTime) -> Installed {
    let cert = match files::read_optional(&paths.cert()) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Installed::Missing,
        Err(e) => return Installed::Unusable(e.to_string()),
    };
    let key = match files::read_optional(&paths.key()) {
        Ok(Some(bytes)) => Zeroizing::new(bytes),
        Ok(None) => return Installed::Unusable(format!("{} is missing", paths.key().display())),
        Err(e) => return Installed::Unusable(e.to_string()),
    };
    let (Ok(cert), Ok(key)) = (String::from_utf8(cert), std::str::from_utf8(&key)) else {
        return Installed::Unusable("the files are not PEM text".into());
    };
    match IssuedCert::from_pem(cert, Zeroizing::new(key.to_owned()), now) {
        Ok(issued) => Installed::Valid(issued),
        Err(reason) => Installed::Unusable(format!("{}: {reason}", paths.cert().display())),
    }
}

/// Writes `issued` into place: key first (mode 0600, given to `key_owner`), then the
/// chain, each atomically.
pub fn install(
    paths: &AcmePaths,
    issued: &IssuedCert,
    key_owner: Option<KeyOwner>,
) -> Result<(), AcmeError> {
    files::create_dir(paths.dir())?;
    files::write_atomic(&paths.key(), issued.key_pem.as_bytes(), KEY_MODE, key_owner)?;
    files::write_atomic(&paths.cert(), issued.chain_pem.as_bytes(), CERT_MODE, None)?;
    Ok(())
}

/// The serial number as upper-case hex without separators or leading zero bytes.
fn serial_hex(cert: &x509_parser::certificate::X509Certificate<'_>) -> String {
    serial_hex_of(cert.tbs_certificate.raw_serial())
}

/// [`serial_hex`] of a DER certificate (for clients comparing what they were served).
pub fn cert_serial_hex(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(serial_hex(&cert))
}

fn serial_hex_of(raw: &[u8]) -> String {
    use std::fmt::Write as _;
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    let mut out = String::new();
    for b in &raw[start..] {
        let _ = write!(out, "{b:02X}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_drop_leading_zeros() {
        assert_eq!(serial_hex_of(&[0, 0x0a, 0xff]), "0AFF");
        assert_eq!(serial_hex_of(&[0]), "00");
        assert_eq!(serial_hex_of(&[]), "");
    }
}
