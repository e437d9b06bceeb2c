//! Names an ACME certificate may be ordered for.
//!
//! Stricter than the LAN certificate's names ([`crate::tls`]): a public CA only issues
//! for public DNS names, so anything else is refused up front with the reason, instead
//! of an order the CA rejects (and a rate limit spent on it). The name also ends up in
//! file names (TLS-ALPN-01 challenge certificates) and in DNS updates, so only plain
//! lower-case letters-digits-hyphen labels pass.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::dnsname::{MAX_NAME_LEN, check_label};

/// DNS suffixes that never name a public host, so no public CA issues for them:
/// `localhost` (RFC 6761 §6.3), `local` (mDNS, RFC 6762), `home.arpa` (RFC 8375),
/// `invalid` (RFC 6761 §6.4), `lan` (a common router default) and `internal`
/// (ICANN, 2024-07-29). The box's LAN names belong to the local CA instead.
const NOT_PUBLIC_SUFFIXES: &[&str] = &[
    "localhost",
    "local",
    "home.arpa",
    "invalid",
    "lan",
    "internal",
];

/// A DNS name the appliance may order a certificate for: lower case, at least two
/// labels, each 1-63 letters, digits or `-` (not at either end), at most 253 characters,
/// no wildcard, no IP address, no trailing dot, and not under a LAN-only suffix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcmeName(String);

/// Why a string is not an [`AcmeName`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a DNS name a certificate can be ordered for: {reason}")]
pub struct InvalidAcmeName {
    /// The name as given (displayed quoted, control characters escaped).
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

impl AcmeName {
    /// Checks `text`; upper case is accepted and stored lower case.
    pub fn parse(text: &str) -> Result<AcmeName, InvalidAcmeName> {
        let invalid = |reason: String| InvalidAcmeName {
            name: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(invalid("is empty".into()));
        }
        if !text.is_ascii() {
            return Err(invalid(
                "contains non-ASCII characters; write an internationalised name in its \
                 ASCII form (xn--…)"
                    .into(),
            ));
        }
        if text.parse::<IpAddr>().is_ok() || text.starts_with('[') {
            return Err(invalid(
                "is an IP address; only DNS names can be ordered here".into(),
            ));
        }
        if text.starts_with("*.") || text.contains('*') {
            return Err(invalid(
                "is a wildcard; list each name the box answers to".into(),
            ));
        }
        if text.ends_with('.') {
            return Err(invalid("ends with a dot; leave the dot out".into()));
        }
        if text.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "is {} characters long; a DNS name has at most {MAX_NAME_LEN}",
                text.len()
            )));
        }
        let lower = text.to_ascii_lowercase();
        let labels: Vec<&str> = lower.split('.').collect();
        for label in &labels {
            check_label(label).map_err(|reason| invalid(format!("label {label:?} {reason}")))?;
        }
        if labels.len() < 2 {
            return Err(invalid(
                "is a single label; a public CA issues only for names in a public domain, \
                 such as vault.example.org"
                    .into(),
            ));
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(
                "ends in an all-digit label, which reads as an IP address".into(),
            ));
        }
        if let Some(suffix) = NOT_PUBLIC_SUFFIXES
            .iter()
            .find(|s| lower == **s || lower.ends_with(&format!(".{s}")))
        {
            return Err(invalid(format!(
                "is under `{suffix}`, which names only local hosts; no public CA issues \
                 for it (the local CA's certificate covers LAN names)"
            )));
        }
        Ok(AcmeName(lower))
    }

    /// The name, lower case, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `self` is `zone` or lies below it.
    pub fn is_in_zone(&self, zone: &AcmeName) -> bool {
        self.0 == zone.0 || self.0.ends_with(&format!(".{}", zone.0))
    }
}

impl FromStr for AcmeName {
    type Err = InvalidAcmeName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        AcmeName::parse(text)
    }
}

impl fmt::Display for AcmeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_names_pass_lower_cased() {
        for (given, stored) in [
            ("vault.example.org", "vault.example.org"),
            ("NAS.Example.ORG", "nas.example.org"),
            ("a-b.c1.example", "a-b.c1.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(AcmeName::parse(given).unwrap().as_str(), stored);
        }
        let longest_label = format!("{}.example", "a".repeat(63));
        assert!(AcmeName::parse(&longest_label).is_ok());
    }

    #[test]
    fn hostile_names_are_refused_with_a_reason() {
        let long = vec!["a".repeat(60); 5].join(".");
        for (bad, why) in [
            ("", "is empty"),
            ("*.example.org", "wildcard"),
            ("a.*.example.org", "wildcard"),
            ("192.168.1.20", "IP address"),
            ("::1", "IP address"),
            ("[::1]", "IP address"),
            ("1.2.3.999", "all-digit"),
            ("vault.example.org.", "ends with a dot"),
            ("vault..example.org", "label \"\" is empty"),
            (".example.org", "label \"\" is empty"),
            ("_acme.example.org", "contains '_'"),
            ("vault.example.org/x", "contains '/'"),
            ("vault.example.org x", "contains ' '"),
            ("vault.example.org\n", "contains '\\n'"),
            ("vault.example.org:443", "contains ':'"),
            ("bücher.example", "non-ASCII"),
            ("-vault.example.org", "starts or ends with `-`"),
            ("localhost", "single label"),
            ("vault", "single label"),
            ("vault.localhost", "under `localhost`"),
            ("nas.local", "under `local`"),
            ("nas.home.arpa", "under `home.arpa`"),
            ("nas.lan", "under `lan`"),
            (long.as_str(), "at most 253"),
        ] {
            let err = AcmeName::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let label = format!("{}.example", "a".repeat(64));
        assert!(
            AcmeName::parse(&label)
                .unwrap_err()
                .to_string()
                .contains("at most 63")
        );
    }

    #[test]
    fn zones_contain_their_names_only() {
        let zone = AcmeName::parse("example.org").unwrap();
        assert!(AcmeName::parse("example.org").unwrap().is_in_zone(&zone));
        assert!(
            AcmeName::parse("a.b.example.org")
                .unwrap()
                .is_in_zone(&zone)
        );
        assert!(!AcmeName::parse("badexample.org").unwrap().is_in_zone(&zone));
        assert!(!AcmeName::parse("example.com").unwrap().is_in_zone(&zone));
    }
}
