//! Names validated once, when the config is read (STYLE habit 1): a [`Hostname`] or a
//! [`SystemUserName`] that exists is known to be well-formed everywhere else.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use cv_net::dnsname::{MAX_NAME_LEN, check_label};

/// Why a string is not an acceptable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what}: {reason}")]
pub struct InvalidName {
    /// What was being parsed: "hostname", "system user name", "DNS name".
    pub what: &'static str,
    pub value: String,
    pub reason: String,
}

impl InvalidName {
    fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            what,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The longest user name that shadow-utils' `useradd` accepts by default (LOGIN_NAME_MAX
/// is larger, but 32 is what `utmp` and most tools keep).
const MAX_USER_NAME: usize = 32;

/// The name of this box on the LAN: one DNS label, lowercase. The LAN certificate is
/// issued for `<hostname>.local` (mDNS).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hostname(String);

impl Hostname {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The machine's own hostname (its first label, lowercased), when that is a valid
    /// [`Hostname`]. This is what an appliance uses when `appliance.hostname` is not set.
    pub fn from_machine() -> Option<Hostname> {
        let name = nix::unistd::gethostname().ok()?;
        let name = name.to_str()?;
        let first_label = name.split('.').next().unwrap_or(name);
        first_label.parse().ok()
    }
}

impl FromStr for Hostname {
    type Err = InvalidName;

    /// Accepts upper case and stores the name lowercased: DNS names compare without case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.to_ascii_lowercase();
        if lower.contains('.') {
            return Err(InvalidName::new(
                "hostname",
                text,
                "contains a dot; give a single label such as \"contextvault\" \
                 (the box is reached as <hostname>.local)",
            ));
        }
        check_label(&lower).map_err(|reason| InvalidName::new("hostname", text, reason))?;
        Ok(Hostname(lower))
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Unix user name as `useradd` accepts it by default: 1 to 32 characters,
/// `[a-z_][a-z0-9_-]*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SystemUserName(String);

impl SystemUserName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SystemUserName {
    type Err = InvalidName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| InvalidName::new("system user name", text, reason);
        let mut chars = text.chars();
        let Some(first) = chars.next() else {
            return Err(invalid("is empty".to_owned()));
        };
        if text.len() > MAX_USER_NAME {
            return Err(invalid(format!(
                "is {} characters long; at most {MAX_USER_NAME} are allowed",
                text.len()
            )));
        }
        if !(first.is_ascii_lowercase() || first == '_') {
            return Err(invalid(format!(
                "starts with {first:?}; it must start with a letter a-z or `_`"
            )));
        }
        if let Some(c) = chars
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
        {
            return Err(invalid(format!(
                "contains {c:?}; only letters a-z, digits, `_` and `-` are allowed"
            )));
        }
        Ok(SystemUserName(text.to_owned()))
    }
}

impl fmt::Display for SystemUserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks an entry of `tls.extra_names`: an IP address (returned in canonical form) or a
/// DNS name of one or more labels (returned lowercased). Wildcards are refused: the LAN
/// certificate names this box, not a domain.
pub(crate) fn certificate_name(text: &str) -> Result<String, InvalidName> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let invalid = |reason: String| InvalidName::new("DNS name or IP address", text, reason);
    let lower = text.to_ascii_lowercase();
    if lower.is_empty() {
        return Err(invalid("is empty".to_owned()));
    }
    if lower.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "is {} characters long; a DNS name has at most {MAX_NAME_LEN}",
            lower.len()
        )));
    }
    if lower.starts_with("*.") {
        return Err(invalid(
            "is a wildcard; list each name the box answers to".to_owned(),
        ));
    }
    if lower.ends_with('.') {
        return Err(invalid("ends with a dot; leave the dot out".to_owned()));
    }
    for label in lower.split('.') {
        check_label(label).map_err(|reason| invalid(format!("label {label:?} {reason}")))?;
    }
    Ok(lower)
}

/// Checks an entry of `acme.names` (or `acme.dns_zone`): a public DNS name of at least
/// two letters-digits-hyphen labels, returned lowercased. No wildcard, no IP address,
/// no trailing dot, no underscore or other character, nothing non-ASCII, and nothing
/// under a LAN-only suffix such as `localhost` or `.local`: the names a public CA can
/// issue for. The rule is `cv_net::acme::AcmeName`'s, which the ACME client uses.
pub fn acme_name(text: &str) -> Result<String, InvalidName> {
    cv_net::acme::AcmeName::parse(text)
        .map(|name| name.as_str().to_owned())
        .map_err(|e| InvalidName::new("public DNS name", text, e.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acme_names_must_be_public_dns_names() {
        assert_eq!(
            acme_name("Vault.Example.ORG"),
            Ok("vault.example.org".into())
        );
        assert_eq!(acme_name("a-1.b.example"), Ok("a-1.b.example".into()));
        let long = vec!["a".repeat(60); 5].join(".");
        for (bad, why) in [
            ("", "is empty"),
            ("*.example.org", "wildcard"),
            ("a.*.example.org", "wildcard"),
            ("192.168.1.20", "IP address"),
            ("fe80::1", "IP address"),
            ("[::1]", "IP address"),
            ("1.2.3.999", "all-digit"),
            ("vault.example.org.", "ends with a dot"),
            ("vault..example.org", "label \"\" is empty"),
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
            (&format!("{}.example", "a".repeat(64)), "at most 63"),
        ] {
            let message = acme_name(bad).expect_err(bad).to_string();
            assert!(message.contains(why), "{bad:?}: {message}");
        }
    }

    fn hostname(text: &str) -> Result<String, String> {
        text.parse::<Hostname>()
            .map(|h| h.as_str().to_owned())
            .map_err(|e| e.to_string())
    }

    fn user(text: &str) -> Result<String, String> {
        text.parse::<SystemUserName>()
            .map(|u| u.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn hostname_accepts_labels_and_lowercases() {
        assert_eq!(hostname("contextvault"), Ok("contextvault".into()));
        assert_eq!(hostname("My-NAS2"), Ok("my-nas2".into()));
        assert_eq!(hostname("0"), Ok("0".into()));
        let longest = "a".repeat(63);
        assert_eq!(hostname(&longest), Ok(longest.clone()));
    }

    #[test]
    fn hostname_rejects_what_is_not_a_dns_label() {
        for (bad, why) in [
            ("", "is empty"),
            ("-nas", "starts or ends with `-`"),
            ("nas-", "starts or ends with `-`"),
            ("my_nas", "contains '_'"),
            ("nas box", "contains ' '"),
            ("nasé", "contains 'é'"),
            ("nas.local", "contains a dot"),
        ] {
            let message = hostname(bad).expect_err(bad);
            assert!(message.contains(why), "{bad:?}: {message}");
            assert!(message.contains("hostname"), "{message}");
        }
        let too_long = hostname(&"a".repeat(64)).expect_err("64 characters");
        assert!(too_long.contains("at most 63"), "{too_long}");
    }

    #[test]
    fn system_user_name_follows_useradd() {
        for good in ["contextvault", "contextvault-pg", "_pg", "a", "u2_x-y"] {
            assert_eq!(user(good), Ok(good.to_owned()));
        }
        assert_eq!(user(&"a".repeat(32)), Ok("a".repeat(32)));
        for (bad, why) in [
            ("", "is empty"),
            ("2vault", "starts with '2'"),
            ("-vault", "starts with '-'"),
            ("Vault", "starts with 'V'"),
            ("vaulT", "contains 'T'"),
            ("vault.pg", "contains '.'"),
            ("vault pg", "contains ' '"),
        ] {
            let message = user(bad).expect_err(bad);
            assert!(message.contains(why), "{bad:?}: {message}");
        }
        let too_long = user(&"a".repeat(33)).expect_err("33 characters");
        assert!(too_long.contains("at most 32"), "{too_long}");
    }

    #[test]
    fn certificate_names_are_ips_or_dns_names() {
        assert_eq!(
            certificate_name("NAS.Example.org"),
            Ok("nas.example.org".into())
        );
        assert_eq!(certificate_name("192.168.1.20"), Ok("192.168.1.20".into()));
        assert_eq!(certificate_name("FE80:0::1"), Ok("fe80::1".into()));
        assert_eq!(certificate_name("vault"), Ok("vault".into()));
        for (bad, why) in [
            ("", "is empty"),
            ("*.example.org", "wildcard"),
            ("nas.example.org.", "ends with a dot"),
            ("nas..org", "label \"\" is empty"),
            ("nas_1.org", "contains '_'"),
            ("-a.org", "starts or ends with `-`"),
        ] {
            let message = certificate_name(bad).expect_err(bad).to_string();
            assert!(message.contains(why), "{bad:?}: {message}");
        }
        let long = vec!["a".repeat(60); 5].join(".");
        let message = certificate_name(&long).expect_err("too long").to_string();
        assert!(message.contains("at most 253"), "{message}");
    }
}
