//! Names a certificate may carry: validation of host and DNS names, and the X.509 name
//! constraints (RFC 5280 §4.2.1.10) that keep the local CA to LAN names.
//!
//! The constraint matching here mirrors what clients (webpki, iOS, Android) do, so that
//! `ensure_local_pki` can refuse up front to issue a certificate that every client would
//! reject anyway.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, GeneralSubtree};

use super::TlsError;
use crate::dnsname::{MAX_NAME_LEN, check_label};

/// DNS suffixes that only ever name things on a home network, permitted to every local CA:
/// `local` (mDNS, RFC 6762), `localhost` (RFC 6761 §6.3), `home.arpa` (RFC 8375),
/// `lan` (a common router default, not delegated in the root zone) and `internal`
/// (reserved for private use by ICANN, resolution of 2024-07-29).
pub(super) const LOCAL_DNS_SUBTREES: &[&str] =
    &["local", "localhost", "home.arpa", "lan", "internal"];

/// Address ranges that are never routed on the public internet, permitted to every local
/// CA: RFC 1918 private IPv4, loopback (RFC 1122 §3.2.1.3), shared address space used by
/// carrier NAT and VPN overlays (RFC 6598), unique local IPv6 (RFC 4193), link-local IPv6
/// (RFC 4291 §2.5.6) and the IPv6 loopback (RFC 4291 §2.5.3).
pub(super) const LOCAL_IP_SUBTREES: &[(IpAddr, u8)] = &[
    (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
    (IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)), 12),
    (IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)), 16),
    (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    (IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)), 10),
    (IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)), 7),
    (IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
    (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
];

/// One subject alternative name: a DNS name (lower case, validated) or an IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum SanName {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for SanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SanName::Dns(name) => f.write_str(name),
            SanName::Ip(ip) => ip.fmt(f),
        }
    }
}

/// Checks that `name` is a single DNS label (what a box calls itself on the LAN, as in
/// `<hostname>.local`) and returns it in lower case, since DNS names compare without case.
pub(super) fn validate_hostname(name: &str) -> Result<String, TlsError> {
    let invalid = |reason: String| TlsError::InvalidHostname {
        name: name.to_owned(),
        reason,
    };
    if name.contains('.') {
        return Err(invalid(
            "must be a single DNS label (no dots); add longer names as extra names".to_owned(),
        ));
    }
    check_label(name).map_err(invalid)?;
    Ok(name.to_ascii_lowercase())
}

/// Parses an extra name: an IP address, or a DNS name made of valid labels (returned in
/// lower case). Wildcards are refused: the box serves a fixed set of names.
pub(super) fn parse_name(name: &str) -> Result<SanName, TlsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanName::Ip(ip));
    }
    let invalid = |reason: String| TlsError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(format!("longer than {MAX_NAME_LEN} characters")));
    }
    for label in name.split('.') {
        check_label(label).map_err(|reason| invalid(format!("label {label:?}: {reason}")))?;
    }
    Ok(SanName::Dns(name.to_ascii_lowercase()))
}

/// Whether `ip` lies in one of [`LOCAL_IP_SUBTREES`].
pub(super) fn is_local_ip(ip: IpAddr) -> bool {
    LOCAL_IP_SUBTREES
        .iter()
        .any(|(base, prefix)| ip_in_prefix(ip, *base, *prefix))
}

fn ip_in_prefix(ip: IpAddr, base: IpAddr, prefix: u8) -> bool {
    match (ip, base) {
        (IpAddr::V4(ip), IpAddr::V4(base)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(base) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(base)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(base) & mask
        }
        _ => false,
    }
}

/// A CA's name constraints, as read back from its certificate.
///
/// `None` for a name type means that type is unconstrained (RFC 5280 §4.2.1.10: a
/// constraint applies only to names of the types listed in it).
#[derive(Debug, Default)]
pub(super) struct Constraints {
    permitted_dns: Option<Vec<String>>,
    permitted_ip: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    excluded_dns: Vec<String>,
    excluded_ip: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Constraints {
    /// Reads the name constraints extension of `cert` (none: everything is permitted).
    pub(super) fn from_cert(cert: &X509Certificate<'_>) -> Result<Self, String> {
        let ext = cert
            .name_constraints()
            .map_err(|e| format!("unreadable name constraints: {e}"))?;
        let mut out = Constraints::default();
        let Some(ext) = ext else {
            return Ok(out);
        };
        for subtree in ext.value.permitted_subtrees.iter().flatten() {
            match subtree_of(subtree)? {
                Some(Subtree::Dns(d)) => out.permitted_dns.get_or_insert_with(Vec::new).push(d),
                Some(Subtree::Ip(a, m)) => {
                    out.permitted_ip.get_or_insert_with(Vec::new).push((a, m));
                }
                None => {}
            }
        }
        for subtree in ext.value.excluded_subtrees.iter().flatten() {
            match subtree_of(subtree)? {
                Some(Subtree::Dns(d)) => out.excluded_dns.push(d),
                Some(Subtree::Ip(a, m)) => out.excluded_ip.push((a, m)),
                None => {}
            }
        }
        Ok(out)
    }

    /// Whether a certificate for `name` issued by this CA would satisfy its constraints.
    pub(super) fn permits(&self, name: &SanName) -> bool {
        match name {
            SanName::Dns(dns) => {
                !self
                    .excluded_dns
                    .iter()
                    .any(|base| dns_in_subtree(dns, base))
                    && self
                        .permitted_dns
                        .as_ref()
                        .is_none_or(|p| p.iter().any(|base| dns_in_subtree(dns, base)))
            }
            SanName::Ip(ip) => {
                let bytes = match ip {
                    IpAddr::V4(v4) => v4.octets().to_vec(),
                    IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                !self
                    .excluded_ip
                    .iter()
                    .any(|(a, m)| ip_in_subnet(&bytes, a, m))
                    && self
                        .permitted_ip
                        .as_ref()
                        .is_none_or(|p| p.iter().any(|(a, m)| ip_in_subnet(&bytes, a, m)))
            }
        }
    }

    /// The permitted subtrees, for error messages.
    pub(super) fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        match &self.permitted_dns {
            Some(dns) => parts.extend(dns.iter().cloned()),
            None => parts.push("any DNS name".to_owned()),
        }
        match &self.permitted_ip {
            Some(ips) => parts.extend(ips.iter().map(|(a, m)| describe_subnet(a, m))),
            None => parts.push("any IP address".to_owned()),
        }
        parts.join(", ")
    }
}

enum Subtree {
    Dns(String),
    Ip(Vec<u8>, Vec<u8>),
}

fn subtree_of(subtree: &GeneralSubtree<'_>) -> Result<Option<Subtree>, String> {
    Ok(match &subtree.base {
        GeneralName::DNSName(d) => Some(Subtree::Dns(d.to_ascii_lowercase())),
        // An address and a mask of the same length: 4+4 bytes or 16+16 bytes.
        GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
            let (addr, mask) = b.split_at(b.len() / 2);
            Some(Subtree::Ip(addr.to_vec(), mask.to_vec()))
        }
        GeneralName::IPAddress(b) => {
            return Err(format!("IP name constraint of {} bytes", b.len()));
        }
        // Other name types (e-mail, URI, directory names) never appear on our server
        // certificates, so their constraints do not matter here.
        _ => None,
    })
}

/// RFC 5280 §4.2.1.10: a DNS name satisfies a constraint when labels can be added to the
/// left of the constraint to build it; an empty constraint matches every name.
fn dns_in_subtree(name: &str, base: &str) -> bool {
    let base = base.trim_start_matches('.');
    base.is_empty()
        || name == base
        || (name.len() > base.len()
            && name.ends_with(base)
            && name.as_bytes()[name.len() - base.len() - 1] == b'.')
}

fn ip_in_subnet(ip: &[u8], addr: &[u8], mask: &[u8]) -> bool {
    ip.len() == addr.len()
        && ip
            .iter()
            .zip(addr)
            .zip(mask)
            .all(|((i, a), m)| i & m == a & m)
}

fn describe_subnet(addr: &[u8], mask: &[u8]) -> String {
    let prefix: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let ip = match <[u8; 4]>::try_from(addr) {
        Ok(v4) => IpAddr::from(v4),
        Err(_) => match <[u8; 16]>::try_from(addr) {
            Ok(v6) => IpAddr::from(v6),
            Err(_) => return format!("{addr:?}/{prefix}"),
        },
    };
    format!("{ip}/{prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_must_be_one_label() {
        assert_eq!(validate_hostname("NAS-1").ok(), Some("nas-1".to_owned()));
        for bad in [
            "",
            "nas.lan",
            "-nas",
            "nas-",
            "na s",
            "näs",
            &"a".repeat(64),
        ] {
            assert!(validate_hostname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn extra_names_are_dns_or_ip() {
        assert_eq!(
            parse_name("Vault.Home.Arpa").ok(),
            Some(SanName::Dns("vault.home.arpa".to_owned()))
        );
        assert_eq!(
            parse_name("fd00::1").ok(),
            Some(SanName::Ip("fd00::1".parse().expect("ip")))
        );
        for bad in ["", "*.lan", "a..b", "a_b.lan", "trailing.dot."] {
            assert!(parse_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn dns_subtrees_match_whole_labels() {
        assert!(dns_in_subtree("nas.local", "local"));
        assert!(dns_in_subtree("local", "local"));
        assert!(!dns_in_subtree("evillocal", "local"));
        assert!(dns_in_subtree("a.home.arpa", ".home.arpa"));
        assert!(!dns_in_subtree("example.com", "local"));
    }

    #[test]
    fn local_ranges() {
        for ip in [
            "10.1.2.3",
            "172.31.0.1",
            "192.168.1.10",
            "100.100.1.1",
            "fd12::1",
            "::1",
        ] {
            assert!(is_local_ip(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_local_ip(ip.parse().expect("ip")), "{ip}");
        }
    }
}
