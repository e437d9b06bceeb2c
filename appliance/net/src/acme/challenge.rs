//! The files through which the supervisor hands HTTP-01 and TLS-ALPN-01 answers to the
//! vault service, which owns the listening sockets and answers the CA.
//!
//! | directory | file | content |
//! |---|---|---|
//! | HTTP-01 | `<token>` | the key authorization, served as `/.well-known/acme-challenge/<token>` |
//! | TLS-ALPN-01 | `<name>.pem` | the challenge certificate and its key, served to `acme-tls/1` handshakes for `<name>` |
//!
//! Both directories are the supervisor's, group of the service user, mode 0750; files
//! 0640. The readers ([`http01_answer`], [`tls_alpn01_key`]) validate what the network
//! sent before it becomes part of a path, and read a file only when asked, so nothing
//! has to be signalled and no answer outlives its file.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256,
};
use rustls::crypto::ring;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{AcmeError, AcmeName};
use crate::tls::KeyOwner;
use crate::tls::files;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN_PROTOCOL: &[u8] = b"acme-tls/1";

/// Challenge files are read by the service's group, never by others.
const FILE_MODE: u32 = 0o640;
const DIR_MODE: u32 = 0o750;

/// The longest token accepted. RFC 8555 §8.3 asks for at least 128 bits of entropy
/// (22 base64url characters); CAs send 43. Anything much longer is not a token.
const MAX_TOKEN_LEN: usize = 128;

/// Whether `token` may be an ACME challenge token: 1 to 128 base64url characters
/// (RFC 8555 §8.1; no padding, no dots or slashes, so it is safe as a file name).
pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where the challenge answers live, and who may read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeDirs {
    /// HTTP-01 key authorizations, one file per token.
    pub http: PathBuf,
    /// TLS-ALPN-01 certificates, one file per name.
    pub tls_alpn: PathBuf,
    /// Owner and group of the directories and files (the group is the service's); `None`
    /// leaves them to the creating user.
    pub owner: Option<KeyOwner>,
}

impl ChallengeDirs {
    /// Creates both directories if missing and fixes their mode and owner.
    pub fn create(&self) -> Result<(), AcmeError> {
        for dir in [&self.http, &self.tls_alpn] {
            let err = |e: std::io::Error| AcmeError::Files {
                path: dir.clone(),
                reason: e.to_string(),
            };
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(err)?;
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(DIR_MODE))
                .map_err(err)?;
            if let Some(owner) = self.owner {
                files::give_to(dir, owner)?;
            }
        }
        Ok(())
    }

    /// Publishes the HTTP-01 answer for `token`.
    pub fn put_http01(&self, token: &str, key_authorization: &str) -> Result<(), AcmeError> {
        let path = self.http01_path(token)?;
        files::write_atomic(&path, key_authorization.as_bytes(), FILE_MODE, self.owner)?;
        Ok(())
    }

    /// Removes the HTTP-01 answer for `token` (best effort: a leftover answers nothing
    /// useful, since the token is spent).
    pub fn remove_http01(&self, token: &str) {
        if let Ok(path) = self.http01_path(token) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn http01_path(&self, token: &str) -> Result<PathBuf, AcmeError> {
        if !is_valid_token(token) {
            return Err(AcmeError::Protocol(
                "the CA sent a challenge token that is not base64url text".into(),
            ));
        }
        Ok(self.http.join(token))
    }

    /// Publishes a TLS-ALPN-01 certificate for `name` carrying the SHA-256 `digest` of
    /// the key authorization (RFC 8737 §3).
    pub fn put_tls_alpn01(&self, name: &AcmeName, digest: &[u8]) -> Result<(), AcmeError> {
        let pem = tls_alpn01_certificate(name, digest)?;
        files::write_atomic(
            &self.tls_alpn01_path(name),
            pem.as_bytes(),
            FILE_MODE,
            self.owner,
        )?;
        Ok(())
    }

    /// Removes the TLS-ALPN-01 certificate for `name`.
    pub fn remove_tls_alpn01(&self, name: &AcmeName) {
        let _ = std::fs::remove_file(self.tls_alpn01_path(name));
    }

    fn tls_alpn01_path(&self, name: &AcmeName) -> PathBuf {
        self.tls_alpn.join(format!("{name}.pem"))
    }
}

/// A self-signed certificate for `name` with the critical acmeIdentifier extension
/// holding `digest` (RFC 8737 §3), then its key, both PEM.
fn tls_alpn01_certificate(
    name: &AcmeName,
    digest: &[u8],
) -> Result<zeroize::Zeroizing<String>, AcmeError> {
    let gen_err = |e: rcgen::Error| {
        AcmeError::Protocol(format!("cannot make the TLS-ALPN-01 certificate: {e}"))
    };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(gen_err)?;
    params.distinguished_name = DistinguishedName::new();
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(gen_err)?;
    let mut pem = zeroize::Zeroizing::new(cert.pem());
    pem.push_str(&key.serialize_pem());
    Ok(pem)
}

/// The HTTP-01 answer for `token` from `dir`, if one is published. `token` comes from
/// the network: anything but a well-formed token gets `None` without touching the disk.
pub fn http01_answer(dir: &Path, token: &str) -> Option<String> {
    if !is_valid_token(token) {
        return None;
    }
    let text = std::fs::read_to_string(dir.join(token)).ok()?;
    // The answer is "<token>.<account key thumbprint>" (RFC 8555 §8.3); a file that
    // holds anything else is not ours to serve.
    let thumbprint = text.strip_prefix(token)?.strip_prefix('.')?;
    is_valid_token(thumbprint).then_some(text)
}

/// The TLS-ALPN-01 certificate for the SNI name `server_name` from `dir`, if one is
/// published. The name comes from the network and is validated first.
pub fn tls_alpn01_key(dir: &Path, server_name: &str) -> Option<Arc<CertifiedKey>> {
    let name = AcmeName::parse(server_name).ok()?;
    let pem = zeroize::Zeroizing::new(std::fs::read(dir.join(format!("{name}.pem"))).ok()?);
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    if chain.len() != 1 {
        return None;
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).ok()?;
    let signing_key = ring::sign::any_supported_type(&key).ok()?;
    Some(Arc::new(CertifiedKey::new(chain, signing_key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &Path) -> ChallengeDirs {
        let dirs = ChallengeDirs {
            http: root.join("http"),
            tls_alpn: root.join("alpn"),
            owner: None,
        };
        dirs.create().unwrap();
        dirs
    }

    #[test]
    fn tokens_are_base64url_only() {
        assert!(is_valid_token(
            "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
        ));
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a.b",
            "a=",
            "a b",
            "é",
            &"a".repeat(129),
        ] {
            assert!(!is_valid_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn http01_answers_only_published_well_formed_tokens() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        dirs.put_http01("tok-1", "tok-1.thumb_print").unwrap();
        assert_eq!(
            http01_answer(&dirs.http, "tok-1").as_deref(),
            Some("tok-1.thumb_print")
        );
        assert_eq!(http01_answer(&dirs.http, "tok-2"), None);
        assert_eq!(http01_answer(&dirs.http, "../http/tok-1"), None);
        // A stray file that is not a key authorization is not served.
        std::fs::write(dirs.http.join("stray"), "secret").unwrap();
        assert_eq!(http01_answer(&dirs.http, "stray"), None);
        assert!(dirs.put_http01("../evil", "x").is_err());
        dirs.remove_http01("tok-1");
        assert_eq!(http01_answer(&dirs.http, "tok-1"), None);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dirs.http).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o750);
    }

    #[test]
    fn tls_alpn01_certificates_carry_the_critical_acme_identifier() {
        let root = tempfile::tempdir().unwrap();
        let dirs = dirs(root.path());
        let name = AcmeName::parse("vault.example.org").unwrap();
        let digest = [7u8; 32];
        dirs.put_tls_alpn01(&name, &digest).unwrap();
        let key = tls_alpn01_key(&dirs.tls_alpn, "VAULT.example.org").expect("published");
        let (_, cert) = x509_parser::parse_x509_certificate(&key.cert[0]).unwrap();
        // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31 (RFC 8737 §6.1).
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        assert_eq!(&ext.value[2..], &digest); // OCTET STRING, 32 bytes
        assert!(tls_alpn01_key(&dirs.tls_alpn, "other.example.org").is_none());
        assert!(tls_alpn01_key(&dirs.tls_alpn, "../alpn/vault.example.org").is_none());
        dirs.remove_tls_alpn01(&name);
        assert!(tls_alpn01_key(&dirs.tls_alpn, "vault.example.org").is_none());
    }
}
