//! The local certificate authority and the LAN server certificate.
//!
//! On first start the appliance creates a small certificate authority in its data
//! directory and issues itself a server certificate for the names it answers to on the
//! LAN. A phone installs the CA once (downloaded from [`ca_certificate_der`]) and from
//! then on gets real, verified TLS to the box, with no warning to click through.
//!
//! ## Files ([`PkiPaths`])
//!
//! | file | mode | who reads it |
//! |---|---|---|
//! | `ca.crt` | 0644 | everyone; phones download it |
//! | `ca.key` | 0600 | the supervisor (root in the appliance) only |
//! | `server.crt` | 0644 | the web service |
//! | `server.key` | 0600 | the web service ([`KeyOwner`]) |
//!
//! Every file is replaced atomically (temporary file, fsync, rename), so a power cut
//! leaves the old file or the new one.
//!
//! ## Trust model
//!
//! The CA carries X.509 name constraints (RFC 5280 §4.2.1.10): it can only vouch for the
//! box's host name, LAN-only DNS suffixes and private address ranges. A phone that trusts
//! it therefore does not hand over its trust in `bank.example`, even if `ca.key` leaks.
//! The constraints are fixed when the CA is created; a name outside them later is an
//! error ([`TlsError::NameOutsideCa`]) instead of a certificate every client rejects.
//!
//! The CA is never replaced behind the person's back: phones trust the old one, and a
//! new CA would break every one of them silently. When the CA is unusable the error says
//! to remove the directory, which creates a new CA on the next start.
//!
//! ## Errors
//!
//! One [`TlsError`] enum for the module; variants carry the path they failed on, and the
//! ones a person must act on say what to do.

pub(crate) mod files;
mod names;

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use self::files::{CERT_MODE, KEY_MODE};
use self::names::{Constraints, LOCAL_DNS_SUBTREES, LOCAL_IP_SUBTREES, SanName};

/// How long the CA is valid. Ten years (3653 days counts the leap days): installing a CA
/// on every phone is a chore to do once per device, not once a year.
const CA_VALIDITY: Duration = Duration::days(3653);

/// How long a server certificate is valid. Apple platforms reject TLS server certificates
/// valid for more than 398 days, even from a CA the user installed
/// (<https://support.apple.com/en-us/102028>); 397 leaves a day of margin for the
/// backdating below.
const SERVER_VALIDITY: Duration = Duration::days(397);

/// Renew the server certificate once it has fewer than this many days left, the renewal
/// window certbot uses by default (`renew_before_expiry = 30 days`,
/// <https://eff-certbot.readthedocs.io/en/stable/using.html#configuration-file>): time
/// for several restarts to retry before anything expires.
const RENEW_BEFORE: Duration = Duration::days(30);

/// `notBefore` is set this far before `now`, so a phone whose clock is a little behind
/// the box's does not see a certificate from the future.
const BACKDATE: Duration = Duration::hours(1);

/// Serial numbers: 16 random bytes, above the 64 bits of CSPRNG output the CA/Browser
/// Forum Baseline Requirements §7.1 ask for and under RFC 5280's 20-byte limit
/// (§4.1.2.2). Random serials mean a reissued certificate never repeats a serial, which
/// Firefox rejects (`SEC_ERROR_REUSED_ISSUER_AND_SERIAL`).
const SERIAL_LEN: usize = 16;

/// Where the PKI files live: one directory holding `ca.crt`, `ca.key`, `server.crt` and
/// `server.key`, all PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    dir: PathBuf,
}

impl PkiPaths {
    /// The PKI files in `dir` (created by [`ensure_local_pki`] if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory holding the files; removing it makes the next start create a new CA.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate (`ca.crt`), the file phones install.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The CA private key (`ca.key`), mode 0600, readable by the supervisor only.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The server certificate (`server.crt`) the web service presents.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The server private key (`server.key`), mode 0600, owned by the web service.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

/// The names the server certificate must cover.
///
/// The certificate always also covers `<hostname>.local`, `localhost`, `127.0.0.1` and
/// `::1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    /// The box's host name: a single DNS label such as `nas`.
    pub hostname: String,
    /// More names, each a DNS name or an IP address. Those given when the CA is created
    /// also become part of its name constraints; later ones must fit the CA's constraints.
    pub extra_names: Vec<String>,
    /// The box's addresses, usually [`lan_addresses`].
    pub addresses: Vec<IpAddr>,
}

/// Who must be able to read `server.key`: the unprivileged web service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOwner {
    /// The owner's user id.
    pub uid: u32,
    /// The owner's group id.
    pub gid: u32,
}

/// One thing [`ensure_local_pki`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PkiAction {
    /// A new CA was created (first start, or the directory was removed): phones must
    /// install `ca.crt`.
    CreatedCa,
    /// A new server certificate was issued by the CA.
    IssuedServerCert {
        /// Why, in words (missing, expiring, names changed, ...), for logs and the
        /// dashboard.
        reason: String,
    },
    /// Everything was in place and nothing was written.
    Unchanged,
}

/// What [`ensure_local_pki`] did and what is in place now, for logs and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiReport {
    /// What happened, in order; `[Unchanged]` when nothing was written.
    pub actions: Vec<PkiAction>,
    /// The CA certificate now in place.
    pub ca: CertInfo,
    /// The server certificate now in place.
    pub server: CertInfo,
}

/// A certificate summarised for people: what the dashboard shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject, e.g. `CN=nas`.
    pub subject: String,
    /// The issuer, e.g. `CN=Context Vault local CA (nas), O=Context Vault`.
    pub issuer: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Subject alternative names: DNS names and IP addresses as text.
    pub names: Vec<String>,
    /// SHA-256 of the DER certificate as upper-case hex pairs joined by `:`, the form
    /// phones show when asking whether to trust a certificate.
    pub sha256_fingerprint: String,
}

/// Errors of the TLS module. Variants carry the path they failed on.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The PKI directory could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A key file could not be given to its owner.
    #[error("cannot give {path} to uid {uid} gid {gid}: {source}")]
    Chown {
        /// The file.
        path: PathBuf,
        /// The requested owner.
        uid: u32,
        /// The requested group.
        gid: u32,
        /// The cause.
        source: nix::errno::Errno,
    },
    /// The host name is not a single DNS label.
    #[error("invalid hostname {name:?}: {reason}")]
    InvalidHostname {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An extra name is neither an IP address nor a valid DNS name.
    #[error("invalid certificate name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA exists but cannot be used; it is not replaced automatically because phones
    /// trust it.
    #[error(
        "the local CA is unusable: {path}: {reason}. It is not replaced automatically because \
         phones that installed it would stop trusting the box. To start over, remove the \
         directory {dir} (a new CA is created on the next start) and install the new ca.crt \
         on every phone"
    )]
    CaUnusable {
        /// The CA file at fault.
        path: PathBuf,
        /// The PKI directory to remove to start over.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The request names something the CA's name constraints do not permit.
    #[error(
        "the local CA {path} cannot vouch for {names}: its name constraints permit only \
         {permitted}. Clients would reject such a certificate, so none was issued. To include \
         these names the CA must be recreated: remove the directory {dir}, restart with the \
         names as extra names, and install the new ca.crt on every phone"
    )]
    NameOutsideCa {
        /// The CA certificate.
        path: PathBuf,
        /// The PKI directory to remove to start over.
        dir: PathBuf,
        /// The names outside the constraints, comma separated.
        names: String,
        /// The constraints, for the person to compare.
        permitted: String,
    },
    /// A certificate or key file does not hold what it should.
    #[error("{path} is not usable: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Certificate bytes given in memory could not be parsed.
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// What is wrong.
        reason: String,
    },
    /// Key or certificate generation failed.
    #[error("cannot generate the {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// The cause.
        source: rcgen::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// rustls refused the certificate and key.
    #[error("cannot build the TLS server configuration from {path}: {source}")]
    ServerConfig {
        /// The PKI directory.
        path: PathBuf,
        /// The cause.
        source: rustls::Error,
    },
}

/// Makes sure a CA and a current server certificate for `req` exist under `paths`.
///
/// - No CA yet (neither `ca.crt` nor `ca.key`): creates one ([`PkiAction::CreatedCa`]).
/// - A CA that is half there, unparsable, mismatched with its key or expired: fails with
///   [`TlsError::CaUnusable`]; it is never replaced silently.
/// - The server certificate is (re)issued from the CA, which stays untouched, when it or
///   its key is missing or unreadable, when it lacks a requested name, when it expires
///   within 30 days of `now`, or when the current CA did not issue it.
/// - Otherwise nothing is written ([`PkiAction::Unchanged`]); key file modes and the
///   owner of `server.key` are still repaired.
///
/// `server.key` is given to `server_key_owner` when one is given (needs root, unless the
/// owner is the calling user). `now` is the time to issue and judge expiry at.
pub fn ensure_local_pki(
    paths: &PkiPaths,
    req: &CertRequest,
    server_key_owner: Option<KeyOwner>,
    now: OffsetDateTime,
) -> Result<PkiReport, TlsError> {
    let hostname = names::validate_hostname(&req.hostname)?;
    let extras = req
        .extra_names
        .iter()
        .map(|n| names::parse_name(n))
        .collect::<Result<Vec<_>, _>>()?;
    let wanted = wanted_names(&hostname, &req.addresses, &extras);

    files::create_dir(paths.dir())?;
    let mut actions = Vec::new();

    let ca = match load_ca(paths, now)? {
        Some(ca) => ca,
        None => {
            let ca = create_ca(paths, &hostname, &extras, &req.addresses, now)?;
            actions.push(PkiAction::CreatedCa);
            ca
        }
    };

    match server_cert_problem(paths, &ca, &wanted, now) {
        Some(reason) => {
            issue_server_cert(paths, &ca, &hostname, &wanted, server_key_owner, now)?;
            tracing::info!(
                path = %paths.server_cert().display(),
                %reason,
                "issued a new server certificate from the local CA"
            );
            actions.push(PkiAction::IssuedServerCert { reason });
        }
        None => files::repair_key_file(&paths.server_key(), server_key_owner)?,
    }
    if actions.is_empty() {
        actions.push(PkiAction::Unchanged);
    }

    let server_pem = files::read(&paths.server_cert())?;
    let server = cert_info_from_pem(&server_pem).map_err(|e| TlsError::BadFile {
        path: paths.server_cert(),
        reason: e.to_string(),
    })?;
    Ok(PkiReport {
        actions,
        ca: cert_info_from_der(&ca.der)?,
        server,
    })
}

/// Builds the rustls configuration for the web service from `server.crt` and
/// `server.key`: TLS 1.2 and 1.3 with the ring provider (named explicitly so the choice
/// never depends on which crate features happen to be enabled), ALPN `h2` then
/// `http/1.1`, no client certificates.
pub fn load_server_config(paths: &PkiPaths) -> Result<ServerConfig, TlsError> {
    let cert_path = paths.server_cert();
    let key_path = paths.server_key();
    let cert_pem = files::read(&cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadFile {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::BadFile {
            path: cert_path,
            reason: "no certificate in the file".to_owned(),
        });
    }
    let key_pem = zeroize::Zeroizing::new(files::read(&key_path)?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadFile {
        path: key_path,
        reason: format!("no private key: {e}"),
    })?;

    let config_err = |source| TlsError::ServerConfig {
        path: paths.dir().to_owned(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(config_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(config_err)?;
    // h2 first: clients take the first protocol of ours they support (RFC 7301 §3.2).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The CA certificate in DER, the form phones install (served as
/// `application/x-x509-ca-cert`).
pub fn ca_certificate_der(paths: &PkiPaths) -> Result<Vec<u8>, TlsError> {
    let path = paths.ca_cert();
    let pem = files::read(&path)?;
    first_cert_der(&pem)
        .map(|der| der.to_vec())
        .map_err(|reason| TlsError::BadFile { path, reason })
}

/// Summarises the first certificate in `pem`.
pub fn cert_info_from_pem(pem: &[u8]) -> Result<CertInfo, TlsError> {
    let der = first_cert_der(pem).map_err(|reason| TlsError::InvalidCertificate { reason })?;
    cert_info_from_der(&der)
}

/// The box's addresses on its networks: IPv4 and IPv6 addresses of interfaces that are
/// up, without loopback and link-local addresses (`169.254.0.0/16`, RFC 3927;
/// `fe80::/10`, RFC 4291 §2.5.6), which phones cannot use to reach the box by name.
/// Sorted and without duplicates; empty (with a warning) when the interfaces cannot be
/// listed.
pub fn lan_addresses() -> Vec<IpAddr> {
    use nix::net::if_::InterfaceFlags;

    let ifaddrs = match nix::ifaddrs::getifaddrs() {
        Ok(ifaddrs) => ifaddrs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces");
            return Vec::new();
        }
    };
    let mut out: Vec<IpAddr> = ifaddrs
        .filter(|ifa| {
            ifa.flags.contains(InterfaceFlags::IFF_UP)
                && !ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        })
        .filter_map(|ifa| {
            let addr = ifa.address?;
            if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .filter(|ip| is_reachable_lan_address(*ip))
        .collect();
    out.sort();
    out.dedup();
    out
}

pub(crate) fn is_reachable_lan_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        IpAddr::V6(v6) => {
            // fe80::/10 (`Ipv6Addr::is_unicast_link_local` is the std name for it).
            !(v6.is_loopback() || v6.is_unicast_link_local() || v6.is_unspecified())
        }
    }
}

/// The request a box normally makes: `hostname`, `extra_names`, and the addresses from
/// [`lan_addresses`] that a local CA can vouch for.
///
/// Public addresses (a global IPv6 address, a public IPv4 address on a box without NAT)
/// are left out: they lie outside the private ranges of the CA's name constraints, and
/// they change with the provider's prefix, so including them would make every start fail
/// with [`TlsError::NameOutsideCa`]. Reach the box by name, or add such an address as an
/// extra name before the CA is created.
pub fn default_request(hostname: &str, extra_names: &[String]) -> CertRequest {
    let addresses = lan_addresses()
        .into_iter()
        .filter(|ip| {
            let local = names::is_local_ip(*ip);
            if !local {
                tracing::debug!(%ip, "public address left out of the local certificate");
            }
            local
        })
        .collect();
    CertRequest {
        hostname: hostname.to_owned(),
        extra_names: extra_names.to_vec(),
        addresses,
    }
}

/// The ring provider, named explicitly: the workspace builds rustls without aws-lc.
fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every name the server certificate must carry, in a stable order without duplicates.
fn wanted_names(hostname: &str, addresses: &[IpAddr], extras: &[SanName]) -> Vec<SanName> {
    let mut wanted = vec![
        SanName::Dns(hostname.to_owned()),
        SanName::Dns(format!("{hostname}.local")),
        SanName::Dns("localhost".to_owned()),
    ];
    wanted.extend(addresses.iter().copied().map(SanName::Ip));
    wanted.push(SanName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    wanted.push(SanName::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    wanted.extend(extras.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    wanted.retain(|n| seen.insert(n.clone()));
    wanted
}

/// The CA loaded from disk, ready to sign.
struct LoadedCa {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    constraints: Constraints,
    not_after: OffsetDateTime,
}

/// Loads the CA; `None` when there is none yet (neither file exists).
fn load_ca(paths: &PkiPaths, now: OffsetDateTime) -> Result<Option<LoadedCa>, TlsError> {
    let cert_pem = files::read_optional(&paths.ca_cert())?;
    let key_pem = files::read_optional(&paths.ca_key())?.map(zeroize::Zeroizing::new);
    let unusable = |path: PathBuf, reason: String| TlsError::CaUnusable {
        path,
        dir: paths.dir().to_owned(),
        reason,
    };
    let (cert_pem, key_pem) = match (cert_pem, key_pem) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(unusable(
                paths.ca_key(),
                "missing, but ca.crt exists".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(unusable(
                paths.ca_cert(),
                "missing, but ca.key exists".into(),
            ));
        }
        (Some(cert), Some(key)) => (cert, key),
    };
    let ca = parse_ca(paths, &cert_pem, &key_pem, now)?;
    files::repair_key_file(&paths.ca_key(), None)?;
    Ok(Some(ca))
}

fn parse_ca(
    paths: &PkiPaths,
    cert_pem: &[u8],
    key_pem: &[u8],
    now: OffsetDateTime,
) -> Result<LoadedCa, TlsError> {
    let unusable = |path: PathBuf, reason: String| TlsError::CaUnusable {
        path,
        dir: paths.dir().to_owned(),
        reason,
    };
    let bad_cert = |reason: String| unusable(paths.ca_cert(), reason);
    let bad_key = |reason: String| unusable(paths.ca_key(), reason);

    let der = first_cert_der(cert_pem).map_err(bad_cert)?;
    let (_, x509) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| bad_cert(e.to_string()))?;
    let is_ca = x509
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(bad_cert("not a CA certificate".into()));
    }
    let not_after = x509.validity().not_after.to_datetime();
    if not_after <= now {
        return Err(bad_cert(format!("expired on {}", format_date(not_after))));
    }
    if not_after - now < RENEW_BEFORE {
        tracing::warn!(
            path = %paths.ca_cert().display(),
            not_after = %format_date(not_after),
            "the local CA expires soon; remove the TLS directory to create a new one and \
             install it on every phone"
        );
    }
    let constraints = Constraints::from_cert(&x509).map_err(bad_cert)?;

    let key_str = std::str::from_utf8(key_pem).map_err(|_| bad_key("not PEM text".into()))?;
    // The parse error is left out on purpose: it could quote key bytes.
    let key = KeyPair::from_pem(key_str).map_err(|_| bad_key("not a private key".into()))?;
    if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
        return Err(bad_key("does not belong to ca.crt".into()));
    }
    let issuer =
        Issuer::from_ca_cert_der(&der, key).map_err(|e| bad_cert(format!("cannot sign: {e}")))?;
    Ok(LoadedCa {
        der,
        issuer,
        constraints,
        not_after,
    })
}

/// Creates the CA, writes it, and loads it back through the same path as an existing
/// one so both are checked alike.
fn create_ca(
    paths: &PkiPaths,
    hostname: &str,
    extras: &[SanName],
    addresses: &[IpAddr],
    now: OffsetDateTime,
) -> Result<LoadedCa, TlsError> {
    let gen_err = |source| TlsError::Generate {
        what: "local CA",
        source,
    };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;

    let mut params = CertificateParams::default();
    params.serial_number = Some(random_serial()?);
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("Context Vault local CA ({hostname})"),
    );
    dn.push(DnType::OrganizationName, "Context Vault");
    params.distinguished_name = dn;
    // Path length 0: the CA signs server certificates directly, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.name_constraints = Some(ca_name_constraints(hostname, extras, addresses));

    let cert = params.self_signed(&key).map_err(gen_err)?;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    let cert_pem = cert.pem();

    // Key first: a crash between the two leaves a key without a certificate, which no
    // phone can have installed, and which load_ca reports instead of using.
    files::write_atomic(&paths.ca_key(), key_pem.as_bytes(), KEY_MODE, None)?;
    files::write_atomic(&paths.ca_cert(), cert_pem.as_bytes(), CERT_MODE, None)?;
    let ca = parse_ca(paths, cert_pem.as_bytes(), key_pem.as_bytes(), now)?;
    tracing::info!(
        path = %paths.ca_cert().display(),
        fingerprint = %fingerprint(&ca.der),
        permitted = %ca.constraints.describe(),
        "created the local certificate authority"
    );
    Ok(ca)
}

/// The names the CA may vouch for: the box's host name, LAN-only DNS suffixes, private
/// address ranges, and what the person asked for at creation (extra DNS names, and any
/// extra or listed address outside the private ranges, as that single address).
fn ca_name_constraints(
    hostname: &str,
    extras: &[SanName],
    addresses: &[IpAddr],
) -> NameConstraints {
    let mut dns: Vec<String> = vec![hostname.to_owned()];
    dns.extend(LOCAL_DNS_SUBTREES.iter().map(|s| (*s).to_owned()));
    let mut ips: Vec<(IpAddr, u8)> = LOCAL_IP_SUBTREES.to_vec();
    let extra_ips = extras.iter().filter_map(|n| match n {
        SanName::Ip(ip) => Some(*ip),
        SanName::Dns(_) => None,
    });
    for ip in extra_ips.chain(addresses.iter().copied()) {
        if !names::is_local_ip(ip) {
            ips.push((ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
    }
    for name in extras {
        if let SanName::Dns(d) = name {
            dns.push(d.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    dns.retain(|d| seen.insert(d.clone()));
    let mut seen_ip = std::collections::HashSet::new();
    ips.retain(|ip| seen_ip.insert(*ip));

    let mut permitted_subtrees: Vec<GeneralSubtree> =
        dns.into_iter().map(GeneralSubtree::DnsName).collect();
    permitted_subtrees.extend(
        ips.into_iter().map(|(ip, prefix)| {
            GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(ip, prefix))
        }),
    );
    NameConstraints {
        permitted_subtrees,
        excluded_subtrees: Vec::new(),
    }
}

/// Why the server certificate must be (re)issued, or `None` when it is fine.
fn server_cert_problem(
    paths: &PkiPaths,
    ca: &LoadedCa,
    wanted: &[SanName],
    now: OffsetDateTime,
) -> Option<String> {
    let cert_pem = match files::read_optional(&paths.server_cert()) {
        Ok(Some(pem)) => pem,
        Ok(None) => return Some("server.crt is missing".into()),
        Err(e) => return Some(e.to_string()),
    };
    let der = match first_cert_der(&cert_pem) {
        Ok(der) => der,
        Err(e) => return Some(format!("server.crt is unusable: {e}")),
    };
    let x509 = match x509_parser::parse_x509_certificate(&der) {
        Ok((_, x509)) => x509,
        Err(e) => return Some(format!("server.crt is unusable: {e}")),
    };
    let key_pem = match files::read_optional(&paths.server_key()) {
        Ok(Some(pem)) => zeroize::Zeroizing::new(pem),
        Ok(None) => return Some("server.key is missing".into()),
        Err(e) => return Some(e.to_string()),
    };
    let key = std::str::from_utf8(&key_pem)
        .ok()
        .and_then(|s| KeyPair::from_pem(s).ok());
    let Some(key) = key else {
        return Some("server.key is not a private key".into());
    };
    if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
        return Some("server.key does not belong to server.crt".into());
    }
    if !issued_by(&x509, &ca.der) {
        return Some("server.crt was not issued by the current CA".into());
    }
    let not_before = x509.validity().not_before.to_datetime();
    let not_after = x509.validity().not_after.to_datetime();
    if not_before > now {
        return Some(format!(
            "server.crt is valid only from {} (the clock moved back?)",
            format_date(not_before)
        ));
    }
    if not_after - now < RENEW_BEFORE {
        return Some(format!(
            "server.crt expires on {}, within {} days",
            format_date(not_after),
            RENEW_BEFORE.whole_days()
        ));
    }
    let have = san_names(&x509);
    let missing: Vec<String> = wanted
        .iter()
        .filter(|n| !have.contains(n))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return Some(format!("server.crt does not cover {}", missing.join(", ")));
    }
    None
}

/// Whether `cert` names the CA as its issuer and carries its signature.
fn issued_by(cert: &X509Certificate<'_>, ca_der: &[u8]) -> bool {
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(ca_der) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}

fn issue_server_cert(
    paths: &PkiPaths,
    ca: &LoadedCa,
    hostname: &str,
    wanted: &[SanName],
    owner: Option<KeyOwner>,
    now: OffsetDateTime,
) -> Result<(), TlsError> {
    let outside: Vec<String> = wanted
        .iter()
        .filter(|n| !ca.constraints.permits(n))
        .map(ToString::to_string)
        .collect();
    if !outside.is_empty() {
        return Err(TlsError::NameOutsideCa {
            path: paths.ca_cert(),
            dir: paths.dir().to_owned(),
            names: outside.join(", "),
            permitted: ca.constraints.describe(),
        });
    }

    let gen_err = |source| TlsError::Generate {
        what: "server certificate",
        source,
    };
    // A fresh key for every certificate: a reissue also rotates the key.
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut params = CertificateParams::default();
    params.serial_number = Some(random_serial()?);
    params.not_before = now - BACKDATE;
    // Never outlive the CA: clients reject a chain where any certificate has expired.
    params.not_after = (now + SERVER_VALIDITY).min(ca.not_after);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = wanted
        .iter()
        .map(|n| match n {
            SanName::Dns(d) => d.clone().try_into().map(SanType::DnsName).map_err(gen_err),
            SanName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, _>>()?;
    let cert = params.signed_by(&key, &ca.issuer).map_err(gen_err)?;

    // Key first: a crash in between leaves a key that does not match server.crt, which
    // the next start notices and repairs by issuing again.
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    files::write_atomic(&paths.server_key(), key_pem.as_bytes(), KEY_MODE, owner)?;
    files::write_atomic(&paths.server_cert(), cert.pem().as_bytes(), CERT_MODE, None)
}

fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; SERIAL_LEN];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| TlsError::Random)?;
    // A positive INTEGER without a leading zero byte (RFC 5280 §4.1.2.2).
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn first_cert_der(pem: &[u8]) -> Result<CertificateDer<'static>, String> {
    match CertificateDer::pem_slice_iter(pem).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(e)) => Err(format!("not PEM: {e}")),
        None => Err("no certificate in the PEM data".to_owned()),
    }
}

fn cert_info_from_der(der: &[u8]) -> Result<CertInfo, TlsError> {
    let (_, x509) =
        x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::InvalidCertificate {
            reason: e.to_string(),
        })?;
    Ok(CertInfo {
        subject: x509.subject().to_string(),
        issuer: x509.issuer().to_string(),
        not_before: x509.validity().not_before.to_datetime(),
        not_after: x509.validity().not_after.to_datetime(),
        names: san_names(&x509).iter().map(ToString::to_string).collect(),
        sha256_fingerprint: fingerprint(der),
    })
}

/// The DNS and IP subject alternative names of `cert` (other kinds are ignored).
fn san_names(cert: &X509Certificate<'_>) -> Vec<SanName> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(SanName::Dns(d.to_ascii_lowercase())),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b).ok().map(|a| SanName::Ip(a.into())),
                16 => <[u8; 16]>::try_from(*b).ok().map(|a| SanName::Ip(a.into())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02X}");
    }
    out
}

fn format_date(t: OffsetDateTime) -> String {
    t.date().to_string()
}

/// The certificates in `pem`, as the only roots a client trusts; an unreadable or
/// unusable one is an error, and so is none at all.
pub(crate) fn roots_from_pem(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("not a usable root: {e}"))?;
    }
    if roots.is_empty() {
        return Err("holds no certificate".into());
    }
    Ok(roots)
}

/// A TLS client configuration (ring, safe default protocol versions) that trusts only
/// `roots`.
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests;
