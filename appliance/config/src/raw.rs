//! Stage one: the config file as written, before validation.
//!
//! Every table rejects unknown keys (a typo must not silently fall back to a default),
//! and every value that needs a range check is read in a wide type (`i64`, `String`) so
//! that stage two ([`crate::validate`]) can say what is wrong in words rather than leave
//! it to serde ("expected u16"). Absent keys are `None`; defaults are applied in stage
//! two, in one place.
//!
//! [`Document`] keeps the parsed TOML with its byte spans, to turn positions into line
//! numbers and key paths for error messages.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::error::{ConfigError, Origin, Problem, ProblemKind};

/// The config format this build reads.
pub(crate) const SUPPORTED_VERSION: i64 = 1;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Checked before the rest is read (see [`read_version`]): a file of another version
    /// may have other keys.
    #[serde(default)]
    #[allow(dead_code)]
    pub version: Option<i64>,
    #[serde(default)]
    pub appliance: RawAppliance,
    #[serde(default)]
    pub network: RawNetwork,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub postgres: RawPostgres,
    #[serde(default)]
    pub service: RawService,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub workers: RawWorkers,
    #[serde(default)]
    pub insights: RawInsights,
    #[serde(default)]
    pub acme: RawAcme,
    #[serde(default)]
    pub wireguard: RawWireguard,
    #[serde(default)]
    pub update: RawUpdate,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub backup: RawBackup,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAppliance {
    /// Required; stage two reports it missing (with the line of `[appliance]`).
    pub data_dir: Option<PathBuf>,
    pub hostname: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub bind: Option<Vec<String>>,
    pub https_port: Option<i64>,
    pub http_port: Option<i64>,
    pub allowed_sources: Option<Vec<String>>,
    pub mdns: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub extra_names: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPostgres {
    pub bin_dir: Option<PathBuf>,
    pub system_user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub system_user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSessions {
    pub idle_timeout_minutes: Option<i64>,
    pub absolute_timeout_days: Option<i64>,
    pub vault_lock_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkers {
    pub count: Option<i64>,
    pub system_user: Option<String>,
    pub models_dir: Option<PathBuf>,
    pub memory_mib: Option<i64>,
    pub cpu_percent: Option<i64>,
    pub max_requests: Option<i64>,
    pub max_age_minutes: Option<i64>,
    pub idle_minutes: Option<i64>,
    pub request_timeout_seconds: Option<i64>,
    pub require_jail: Option<bool>,
    pub gpu: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInsights {
    pub interval_minutes: Option<i64>,
    pub recent_days: Option<i64>,
    pub due_soon_days: Option<i64>,
}

/// `[acme]`. Optional text settings read "" as "not set", so that the example file can
/// show every key with its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcme {
    pub enabled: Option<bool>,
    pub directory_url: Option<String>,
    pub contact_email: Option<String>,
    pub names: Option<Vec<String>>,
    pub challenge: Option<String>,
    pub ca_bundle: Option<String>,
    pub dns_server: Option<String>,
    pub dns_zone: Option<String>,
    pub tsig_key_name: Option<String>,
    pub tsig_algorithm: Option<String>,
    pub tsig_secret_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWireguard {
    pub enabled: Option<bool>,
    pub interface: Option<String>,
    pub network: Option<String>,
    pub listen_port: Option<i64>,
    pub endpoint: Option<String>,
    pub dns: Option<Vec<String>>,
    pub client_allowed_ips: Option<Vec<String>>,
}

/// `[update]`. Text settings read "" as "not set", like `[acme]`'s.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpdate {
    pub repository: Option<String>,
    pub hint_secret_file: Option<String>,
    pub check_interval_hours: Option<i64>,
    pub reboot_window: Option<String>,
    pub gate_timeout_minutes: Option<i64>,
}

/// `[storage]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStorage {
    pub backend: Option<String>,
    pub keep_hourly: Option<i64>,
    pub keep_daily: Option<i64>,
    pub keep_weekly: Option<i64>,
    pub keep_monthly: Option<i64>,
    pub keep_other_days: Option<i64>,
}

/// `[backup]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackup {
    pub repository: Option<String>,
    pub interval_hours: Option<i64>,
    pub keep_daily: Option<i64>,
    pub keep_weekly: Option<i64>,
    pub keep_monthly: Option<i64>,
}

/// The top-level keys of [`RawConfig`] that are tables: all but `version`. A test checks
/// this list against the struct.
pub(crate) const TABLES: [&str; 14] = [
    "appliance",
    "network",
    "tls",
    "postgres",
    "service",
    "sessions",
    "log",
    "workers",
    "insights",
    "acme",
    "wireguard",
    "update",
    "storage",
    "backup",
];

/// Only `version`, read without `deny_unknown_fields`.
#[derive(Deserialize)]
struct VersionProbe {
    version: Option<i64>,
}

/// A parsed TOML document with the positions of its keys and values.
pub(crate) struct Document<'a> {
    text: &'a str,
    root: DeTable<'a>,
    pub origin: Origin,
}

/// How an error span is matched against the document.
#[derive(Clone, Copy)]
enum Match {
    /// The span is a key's (serde's unknown-field errors point at the key).
    Key,
    /// The span lies inside a value (type errors point at the value or an element).
    InsideValue,
}

impl<'a> Document<'a> {
    /// Parses `text`; a syntax error becomes [`ConfigError::Syntax`].
    pub fn parse(text: &'a str, origin: Origin) -> Result<Self, ConfigError> {
        match DeTable::parse(text) {
            Ok(root) => Ok(Document {
                text,
                root: root.into_inner(),
                origin,
            }),
            Err(error) => {
                let line = error.span().map(|span| line_of(text, span.start));
                Err(ConfigError::Syntax {
                    origin,
                    line,
                    message: error.message().to_owned(),
                    source_line: line
                        .and_then(|line| text.lines().nth(line - 1))
                        .map(str::to_owned),
                })
            }
        }
    }

    /// Reads `version` and refuses any but [`SUPPORTED_VERSION`].
    pub fn check_version(&self) -> Result<(), ConfigError> {
        let probe: VersionProbe = toml::from_str(self.text).map_err(|e| self.serde_error(&e))?;
        match probe.version {
            Some(SUPPORTED_VERSION) => Ok(()),
            Some(found) => Err(ConfigError::UnsupportedVersion {
                origin: self.origin.clone(),
                line: self.line_of_key("version"),
                found,
                supported: SUPPORTED_VERSION,
            }),
            None => Err(ConfigError::Invalid {
                origin: self.origin.clone(),
                problems: vec![Problem {
                    key: "version".to_owned(),
                    line: None,
                    kind: ProblemKind::Missing,
                }],
            }),
        }
    }

    /// Stage one proper.
    pub fn read(&self) -> Result<RawConfig, ConfigError> {
        self.check_tables()?;
        toml::from_str(self.text).map_err(|e| self.serde_error(&e))
    }

    /// Refuses `[[network]]` (an array of tables) where `[network]` belongs. serde would
    /// otherwise read the array as a tuple of the struct's fields and complain about the
    /// first field's type, which misleads.
    fn check_tables(&self) -> Result<(), ConfigError> {
        let arrays = self.root.iter().find(|(key, value)| {
            TABLES.contains(&key.get_ref().as_ref()) && value.get_ref().is_array()
        });
        match arrays {
            None => Ok(()),
            Some((key, _)) => Err(ConfigError::Invalid {
                origin: self.origin.clone(),
                problems: vec![Problem {
                    key: quote_segment(key.get_ref()),
                    line: Some(line_of(self.text, key.span().start)),
                    kind: ProblemKind::WrongType {
                        message: format!(
                            "found an array, expected a table; write `[{0}]`, not `[[{0}]]`",
                            key.get_ref()
                        ),
                    },
                }],
            }),
        }
    }

    /// Turns a serde error into a [`Problem`] with the full dotted key and the line.
    fn serde_error(&self, error: &toml::de::Error) -> ConfigError {
        let message = error.message();
        let span = error.span();
        let line = span.as_ref().map(|span| line_of(self.text, span.start));
        // Required keys are `Option`s in the raw structs and reported missing in stage
        // two, so serde's own "missing field" never happens here.
        let problem = if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            let key = span
                .as_ref()
                .and_then(|span| find_path(&self.root, span, Match::Key))
                .unwrap_or_else(|| quote_segment(field));
            let expected = expected_fields(message);
            let suggestion = closest(field, &expected);
            Problem {
                key,
                line,
                kind: ProblemKind::UnknownKey {
                    expected,
                    suggestion,
                },
            }
        } else {
            let key = span
                .as_ref()
                .and_then(|span| find_path(&self.root, span, Match::InsideValue))
                .unwrap_or_default();
            Problem {
                key,
                line,
                kind: ProblemKind::WrongType {
                    message: humanize_type_error(message),
                },
            }
        };
        ConfigError::Invalid {
            origin: self.origin.clone(),
            problems: vec![problem],
        }
    }

    /// The line of a dotted key (`network.bind[1]`), or of its nearest ancestor that the
    /// file contains (a missing key is reported at its table's header).
    pub fn line_of_key(&self, key: &str) -> Option<usize> {
        let mut segments = Vec::new();
        for part in key.split('.') {
            match part.split_once('[') {
                Some((name, index)) => {
                    segments.push(Segment::Key(name));
                    segments.extend(index.trim_end_matches(']').parse().ok().map(Segment::Index));
                }
                None => segments.push(Segment::Key(part)),
            }
        }
        let mut best = None;
        let mut table = &self.root;
        let mut value: Option<&DeValue<'_>> = None;
        for segment in segments {
            let found = match (segment, value) {
                (Segment::Key(name), None) => table
                    .iter()
                    .find(|(k, _)| k.get_ref() == name)
                    .map(|(k, v)| (k.span().start, v)),
                (Segment::Key(name), Some(DeValue::Table(t))) => t
                    .iter()
                    .find(|(k, _)| k.get_ref() == name)
                    .map(|(k, v)| (k.span().start, v)),
                (Segment::Index(i), Some(DeValue::Array(a))) => {
                    a.get(i).map(|v| (v.span().start, v))
                }
                _ => None,
            };
            let Some((start, found)) = found else { break };
            best = Some(line_of(self.text, start));
            if let DeValue::Table(t) = found.get_ref() {
                table = t;
            }
            value = Some(found.get_ref());
        }
        best
    }

    /// Whether the file sets this (top-level-table.key) key.
    pub fn contains_key(&self, table: &str, key: &str) -> bool {
        self.root
            .iter()
            .find(|(k, _)| k.get_ref() == table)
            .and_then(|(_, v)| v.get_ref().as_table())
            .is_some_and(|t| t.iter().any(|(k, _)| k.get_ref() == key))
    }
}

#[derive(Clone, Copy)]
enum Segment<'s> {
    Key(&'s str),
    Index(usize),
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The dotted path of the entry that `span` points at; the deepest match wins.
fn find_path(table: &DeTable<'_>, span: &Range<usize>, how: Match) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let name = quote_segment(key.get_ref());
        if matches!(how, Match::Key) && key.span() == *span {
            return Some(name);
        }
        find_in_value(value.get_ref(), value.span(), span, how).map(|rest| name + &rest)
    })
}

/// "" when `value` itself matches, ".key…" or "[i]…" when something inside it does.
fn find_in_value(
    value: &DeValue<'_>,
    value_span: Range<usize>,
    span: &Range<usize>,
    how: Match,
) -> Option<String> {
    match value {
        DeValue::Table(table) => {
            if let Some(inner) = find_path(table, span, how) {
                return Some(format!(".{inner}"));
            }
        }
        DeValue::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                if let Some(inner) = find_in_value(element.get_ref(), element.span(), span, how) {
                    return Some(format!("[{i}]{inner}"));
                }
            }
        }
        _ => {}
    }
    let hit = match how {
        Match::Key => false,
        Match::InsideValue => value_span.start <= span.start && span.end <= value_span.end,
    };
    hit.then(String::new)
}

/// A key as it would be written in TOML: bare when it can be, quoted otherwise.
fn quote_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// The field list of serde's unknown-field message: "unknown field `x`, expected one of
/// `a`, `b`" / "expected `a` or `b`" / "there are no fields".
fn expected_fields(message: &str) -> Vec<String> {
    let Some((_, list)) = message.split_once(", expected ") else {
        return Vec::new();
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
fn closest(word: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.clone())
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// serde speaks Rust ("expected i64", "a sequence"); the reader wrote TOML.
fn humanize_type_error(message: &str) -> String {
    let mut message = message.strip_prefix("invalid type: ").unwrap_or(message);
    let mut expected_table = false;
    if let Some((found, expected)) = message.split_once(", expected ")
        && expected.starts_with("struct ")
    {
        expected_table = true;
        message = found;
    }
    let mut text = String::from("found ");
    text.push_str(message);
    if expected_table {
        text.push_str(", expected a table");
    }
    for (rust, toml) in [
        ("expected i64", "expected an integer"),
        ("expected a sequence", "expected an array"),
        ("expected path string", "expected a string (a path)"),
        ("found sequence", "found an array"),
        ("found map", "found a table"),
    ] {
        text = text.replace(rust, toml);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        let text = "a = 1\nb = 2\n\nc = 3";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 6), 2);
        assert_eq!(line_of(text, text.len() - 1), 4);
        assert_eq!(line_of(text, 10_000), 4);
    }

    #[test]
    fn expected_fields_reads_every_serde_form() {
        assert_eq!(
            expected_fields("unknown field `x`, expected one of `a`, `b`, `c`"),
            ["a", "b", "c"]
        );
        assert_eq!(
            expected_fields("unknown field `x`, expected `a` or `b`"),
            ["a", "b"]
        );
        assert_eq!(expected_fields("unknown field `x`, expected `a`"), ["a"]);
        assert!(expected_fields("unknown field `x`, there are no fields").is_empty());
    }

    #[test]
    fn typos_get_a_suggestion_and_strangers_do_not() {
        let fields = ["bind".to_owned(), "https_port".into(), "http_port".into()];
        assert_eq!(closest("htps_port", &fields).as_deref(), Some("https_port"));
        assert_eq!(closest("http-port", &fields).as_deref(), Some("http_port"));
        assert_eq!(closest("listen", &fields), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn key_lines_fall_back_to_the_nearest_ancestor() {
        let text = "version = 1\n\n[network]\nbind = [\n  \"::\",\n  \"x\",\n]\n";
        let doc = Document::parse(text, Origin::Dev).expect("parses");
        assert_eq!(doc.line_of_key("version"), Some(1));
        assert_eq!(doc.line_of_key("network"), Some(3));
        assert_eq!(doc.line_of_key("network.bind"), Some(4));
        assert_eq!(doc.line_of_key("network.bind[1]"), Some(6));
        assert_eq!(doc.line_of_key("network.https_port"), Some(3));
        assert_eq!(doc.line_of_key("tls.extra_names"), None);
        assert!(doc.contains_key("network", "bind"));
        assert!(!doc.contains_key("network", "http_port"));
    }

    #[test]
    fn odd_keys_are_quoted() {
        assert_eq!(quote_segment("https_port"), "https_port");
        assert_eq!(quote_segment("a b"), "\"a b\"");
        assert_eq!(quote_segment(""), "\"\"");
    }
}
