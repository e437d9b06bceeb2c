//! Values checked once, where they enter (STYLE habit 1): a [`PeerName`], an
//! [`InterfaceName`] or an [`Endpoint`] that exists is well-formed everywhere else.
//! Each refusal says exactly what is wrong ([`InvalidValue`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dnsname::{MAX_NAME_LEN, check_label};

/// Why a piece of text is not an acceptable value. `reason` reads on after the value
/// ("is empty", "contains ' ' …"), so a config error can say "`wireguard.endpoint` is
/// "x": <reason>".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct InvalidValue {
    /// What was being parsed: "peer name", "endpoint", …
    pub what: &'static str,
    /// The text as given (printed with escapes, so it cannot drive a terminal).
    pub value: String,
    /// What is wrong and, where it helps, what to write instead.
    pub reason: String,
}

/// How much of a refused value an error repeats: enough to recognise it, while a
/// megabyte pasted into a form does not come back in the error (or reach a log).
const SHOWN_CHARS: usize = 64;

impl InvalidValue {
    pub(crate) fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let value = match value.char_indices().nth(SHOWN_CHARS) {
            Some((cut, _)) => format!("{}…", &value[..cut]),
            None => value.to_owned(),
        };
        InvalidValue {
            what,
            value,
            reason: reason.into(),
        }
    }
}

/// The longest peer name. Long enough for "olivia-work-laptop.2024", short enough for a
/// table column and for the WireGuard apps' tunnel names.
pub const MAX_PEER_NAME: usize = 32;

/// The name a person gives a device of theirs ("olivia-phone"): 1 to [`MAX_PEER_NAME`]
/// ASCII letters, digits, `-`, `_` and `.`, starting with a letter or a digit.
///
/// Names are compared without regard to case ([`PeerName::same_as`]): "Phone" and
/// "phone" are the same peer. The case as written is kept for display.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerName(String);

impl PeerName {
    pub fn parse(text: &str) -> Result<PeerName, InvalidValue> {
        let bad = |reason: String| InvalidValue::new("peer name", text, reason);
        if text.is_empty() {
            return Err(bad(format!(
                "is empty; give 1 to {MAX_PEER_NAME} characters, such as \"olivia-phone\""
            )));
        }
        if let Some((i, c)) = text
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(bad(format!(
                "contains {c:?} (character {}); use only ASCII letters, digits, `-`, `_` and `.`",
                i + 1
            )));
        }
        if text.len() > MAX_PEER_NAME {
            return Err(bad(format!(
                "is {} characters long; at most {MAX_PEER_NAME} are allowed",
                text.len()
            )));
        }
        if let Some(first) = text.chars().next().filter(|c| !c.is_ascii_alphanumeric()) {
            return Err(bad(format!(
                "starts with {first:?}; a name must start with a letter or a digit"
            )));
        }
        Ok(PeerName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether two names are the same peer (ASCII case-insensitive).
    pub fn same_as(&self, other: &PeerName) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PeerName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeerName::parse(s)
    }
}

impl Serialize for PeerName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PeerName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PeerName::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The longest Linux interface name: `IFNAMSIZ` (16) less the terminating NUL
/// (`include/uapi/linux/if.h`).
pub const MAX_INTERFACE_NAME: usize = 15;

/// The name of the appliance's WireGuard interface (`cvwg0`): 1 to 15 bytes of ASCII
/// letters, digits, `-`, `_` and `.`, starting with a letter.
///
/// Linux itself accepts more (anything but `/`, `:`, whitespace, `.` and `..`;
/// `dev_valid_name` in `net/core/dev.c`), but a name that starts with `-` would read as
/// an option to `ip`, and other characters only make trouble in scripts and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InterfaceName(String);

impl InterfaceName {
    pub fn parse(text: &str) -> Result<InterfaceName, InvalidValue> {
        let bad = |reason: String| InvalidValue::new("interface name", text, reason);
        if text.is_empty() {
            return Err(bad("is empty; use a name such as \"cvwg0\"".into()));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(bad(format!(
                "contains {c:?}; use only ASCII letters, digits, `-`, `_` and `.`"
            )));
        }
        if text.len() > MAX_INTERFACE_NAME {
            return Err(bad(format!(
                "is {} bytes long; Linux interface names have at most {MAX_INTERFACE_NAME}",
                text.len()
            )));
        }
        if !text.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(bad("must start with a letter".into()));
        }
        Ok(InterfaceName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InterfaceName {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InterfaceName::parse(s)
    }
}

/// The host part of an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lowercase.
    Name(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// Where clients reach the appliance from outside: `host:port`, the host a DNS name, an
/// IPv4 address or an IPv6 address in brackets (`[2001:db8::1]:51820`, as WireGuard
/// writes it), the port 1 to 65535. It goes into every client configuration as
/// `Endpoint =`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    host: Host,
    port: u16,
}

impl Endpoint {
    pub fn new(host: Host, port: u16) -> Endpoint {
        Endpoint { host, port }
    }

    pub fn parse(text: &str) -> Result<Endpoint, InvalidValue> {
        let bad = |reason: String| InvalidValue::new("endpoint", text, reason);
        if text.is_empty() {
            return Err(bad(
                "is empty; write host:port, e.g. \"vault.example.net:51820\"".into(),
            ));
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(format!(
                "contains {c:?}; write host:port with no spaces"
            )));
        }
        if text.contains('/') {
            return Err(bad(
                "contains '/'; write only host:port, without a scheme or a path".into(),
            ));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return Err(bad("opens `[` but never closes it with `]`".into()));
            };
            let ip: Ipv6Addr = inside.parse().map_err(|_| {
                bad(format!(
                    "has {inside:?} in brackets, which is not an IPv6 address"
                ))
            })?;
            let Some(port) = after.strip_prefix(':') else {
                return Err(bad(
                    "has no port after the brackets; write e.g. \"[2001:db8::1]:51820\"".into(),
                ));
            };
            (Host::Ipv6(ip), port)
        } else {
            let Some((host, port)) = text.rsplit_once(':') else {
                return Err(bad(
                    "has no port; write host:port, e.g. \"vault.example.net:51820\"".into(),
                ));
            };
            if host.contains(':') {
                return Err(bad(
                    "looks like an IPv6 address without brackets; write it as \
                     \"[2001:db8::1]:51820\""
                        .into(),
                ));
            }
            (host_of(host).map_err(bad)?, port)
        };
        let port = port_of(port).map_err(bad)?;
        Ok(Endpoint { host, port })
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl FromStr for Endpoint {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::parse(s)
    }
}

fn port_of(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("has no port after `:`".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("has port {text:?}, which is not a number"));
    }
    match text.parse::<u16>() {
        Ok(0) => Err("has port 0; use a port from 1 to 65535".into()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("has port {text}; use a port from 1 to 65535")),
    }
}

/// An IPv4 address or a DNS name (lowercased).
fn host_of(text: &str) -> Result<Host, String> {
    if text.is_empty() {
        return Err("has no host before the port".into());
    }
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(Host::Ipv4(ip));
    }
    let name = text.to_ascii_lowercase();
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "has a host name of {} characters; DNS names have at most {MAX_NAME_LEN}",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!(
                "has host {text:?}, which has an empty label (two dots in a row, or a dot \
                 at the start or end)"
            ));
        }
        check_label(label)
            .map_err(|reason| format!("has host {text:?}, whose label {label:?} {reason}"))?;
    }
    // RFC 3696 section 2: a top-level domain is never all digits, so "10.0.0.300" is a
    // mistyped address, not a name.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "has host {text:?}, which is neither an IPv4 address nor a host name"
        ));
    }
    Ok(Host::Name(name))
}

impl Host {
    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Name(_) => None,
            Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason<T: fmt::Debug>(result: Result<T, InvalidValue>) -> String {
        result.expect_err("should be refused").reason
    }

    #[test]
    fn peer_names() {
        for ok in [
            "a",
            "olivia-phone",
            "Laptop_2",
            "x.y",
            "9lives",
            &"a".repeat(32),
        ] {
            assert_eq!(PeerName::parse(ok).expect(ok).as_str(), ok);
        }
        assert!(reason(PeerName::parse("")).starts_with("is empty"));
        assert!(reason(PeerName::parse(&"a".repeat(33))).contains("33 characters"));
        // A huge value is not repeated whole.
        let e = PeerName::parse(&"a".repeat(100_000)).expect_err("long");
        assert!(e.reason.contains("100000 characters"), "{e}");
        assert!(e.to_string().len() < 200, "{e}");
        assert!(reason(PeerName::parse("my phone")).contains("contains ' ' (character 3)"));
        assert!(reason(PeerName::parse("télé")).contains("'é'"));
        assert!(reason(PeerName::parse("a/b")).contains("'/'"));
        assert!(reason(PeerName::parse("-x")).contains("starts with '-'"));
        assert!(reason(PeerName::parse(".x")).contains("starts with '.'"));
        // Control characters are shown escaped, never raw.
        let e = PeerName::parse("a\u{1b}[2J").expect_err("escape");
        assert!(e.to_string().contains("\\u{1b}"), "{e}");
        assert!(!e.to_string().contains('\u{1b}'));
    }

    #[test]
    fn peer_names_compare_without_case() {
        let a = PeerName::parse("Phone").expect("valid");
        let b = PeerName::parse("phone").expect("valid");
        assert!(a.same_as(&b));
        assert_ne!(a, b, "the case as written is kept");
        assert!(!a.same_as(&PeerName::parse("phone2").expect("valid")));
    }

    #[test]
    fn peer_names_are_validated_when_deserialized() {
        assert!(serde_json::from_str::<PeerName>("\"ok\"").is_ok());
        let e = serde_json::from_str::<PeerName>("\"not ok\"").expect_err("space");
        assert!(e.to_string().contains("contains ' '"), "{e}");
    }

    #[test]
    fn interface_names() {
        for ok in ["cvwg0", "wg-home", "a", "abcdefghijklmno"] {
            assert!(InterfaceName::parse(ok).is_ok(), "{ok}");
        }
        assert!(reason(InterfaceName::parse("")).starts_with("is empty"));
        assert!(reason(InterfaceName::parse("abcdefghijklmnop")).contains("16 bytes"));
        assert!(reason(InterfaceName::parse("wg 0")).contains("' '"));
        assert!(reason(InterfaceName::parse("wg/0")).contains("'/'"));
        assert!(reason(InterfaceName::parse("wg:0")).contains("':'"));
        assert!(reason(InterfaceName::parse("-wg")).contains("start with a letter"));
        assert!(reason(InterfaceName::parse("..")).contains("start with a letter"));
        assert!(reason(InterfaceName::parse("0wg")).contains("start with a letter"));
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("Vault.Example.NET:51820").expect("name");
        assert_eq!(e.host(), &Host::Name("vault.example.net".into()));
        assert_eq!(e.port(), 51820);
        assert_eq!(e.to_string(), "vault.example.net:51820");
        let e = Endpoint::parse("203.0.113.7:1").expect("v4");
        assert_eq!(e.host().ip(), Some(IpAddr::from([203, 0, 113, 7])));
        let e = Endpoint::parse("[2001:db8::1]:65535").expect("v6");
        assert_eq!(e.to_string(), "[2001:db8::1]:65535");
        assert!(Endpoint::parse("vault:51820").is_ok(), "a single label");
    }

    #[test]
    fn malformed_endpoints_say_what_is_wrong() {
        let cases = [
            ("", "is empty"),
            ("vault.example.net", "has no port"),
            ("vault.example.net:", "no port after"),
            ("vault.example.net:0", "port 0"),
            ("vault.example.net:65536", "port 65536"),
            ("vault.example.net:http", "not a number"),
            ("vault.example.net:+80", "not a number"),
            (":51820", "no host"),
            ("2001:db8::1:51820", "without brackets"),
            ("[2001:db8::1:51820", "never closes"),
            ("[2001:db8::1]", "no port after the brackets"),
            ("[10.0.0.1]:51820", "not an IPv6 address"),
            ("vault example:51820", "no spaces"),
            ("vault..example:51820", "empty label"),
            ("-vault.example:51820", "starts or ends with `-`"),
            ("vault_1.example:51820", "contains '_'"),
            (
                "10.0.0.300:51820",
                "neither an IPv4 address nor a host name",
            ),
            ("https://vault.example:51820", "contains '/'"),
        ];
        for (text, why) in cases {
            let e = Endpoint::parse(text).expect_err(text);
            assert!(e.reason.contains(why), "{text:?}: {e}");
            assert!(e.to_string().starts_with("invalid endpoint "), "{e}");
        }
        let long = format!("{}.example:1", "a".repeat(64));
        assert!(
            reason(Endpoint::parse(&long))
                .contains("is 64 characters long; a DNS label has at most 63")
        );
    }
}
