//! Errors of this crate.
//!
//! Error policy: everything that can go wrong while loading a config is one
//! [`ConfigError`]. It is meant to be printed to the person who edits the file, so every
//! variant names where the settings came from ([`Origin`]) and, for a bad setting, the
//! dotted key (`network.https_port`) and the line when the TOML parser gave a position.
//! Problems with the machine rather than the file (a missing `initdb`) are not errors of
//! loading: [`crate::Config::check_environment`] lists them as
//! [`crate::EnvironmentProblem`]s.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where a set of settings came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A TOML config file.
    File(PathBuf),
    /// The built-in defaults of `contextvault dev` and its command-line overrides.
    Dev,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Dev => f.write_str("dev settings"),
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The text is not TOML.
    #[error("{}: TOML syntax error: {message}{}", At(origin, *line), Snippet(source_line))]
    Syntax {
        origin: Origin,
        /// 1-based line of the error, when the parser gave a position.
        line: Option<usize>,
        message: String,
        /// The text of that line, to show under the message.
        source_line: Option<String>,
    },
    /// `version` names a format this build does not read.
    #[error(
        "{}: unsupported config version {found}; this contextvault reads version {supported}",
        At(origin, *line)
    )]
    UnsupportedVersion {
        origin: Origin,
        line: Option<usize>,
        found: i64,
        supported: i64,
    },
    /// One or more settings are unknown, missing, of the wrong type or invalid. Never empty.
    #[error("{}", InvalidDisplay(origin, problems))]
    Invalid {
        origin: Origin,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems with individual settings (empty for the other kinds of error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// One bad setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `network.https_port`, `network.bind[1]`.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub kind: ProblemKind,
}

/// What is wrong with a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The key is not part of the schema (often a typo).
    UnknownKey {
        /// The keys that the enclosing table does accept.
        expected: Vec<String>,
        /// The accepted key closest to the unknown one, if any is close.
        suggestion: Option<String>,
    },
    /// A required key is absent.
    Missing,
    /// The value has the wrong TOML type (a string where a number belongs).
    WrongType { message: String },
    /// The value has the right type but is not acceptable.
    Invalid { reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        self.fmt_kind(f)
    }
}

impl Problem {
    fn fmt_kind(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.kind {
            ProblemKind::UnknownKey {
                expected,
                suggestion,
            } => {
                write!(f, "unknown key `{key}`; ")?;
                if expected.is_empty() {
                    f.write_str("this table takes no keys")?;
                } else {
                    write!(f, "expected one of: {}", expected.join(", "))?;
                }
                if let Some(suggestion) = suggestion {
                    write!(f, " (did you mean `{suggestion}`?)")?;
                }
                Ok(())
            }
            ProblemKind::Missing => write!(f, "missing required key `{key}`"),
            ProblemKind::WrongType { message } => {
                write!(f, "`{key}` has the wrong type: {message}")
            }
            ProblemKind::Invalid { reason } => write!(f, "`{key}` {reason}"),
        }
    }
}

/// `path line 7` or just `path`, the prefix of every message about a file.
struct At<'a>(&'a Origin, Option<usize>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(line) => write!(f, "{} line {line}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

struct Snippet<'a>(&'a Option<String>);

impl fmt::Display for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(text) if !text.trim().is_empty() => {
                // The line is shown as written, but a control character in it must not
                // reach the terminal.
                f.write_str("\n    ")?;
                for c in text.trim_end().chars() {
                    if c.is_control() && c != '\t' {
                        write!(f, "{}", c.escape_default())?;
                    } else {
                        write!(f, "{c}")?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// One problem on one line (`file line 7: unknown key ...`), several as an indented list.
struct InvalidDisplay<'a>(&'a Origin, &'a [Problem]);

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let InvalidDisplay(origin, problems) = *self;
        match problems {
            [one] => {
                write!(f, "{}: ", At(origin, one.line))?;
                one.fmt_kind(f)
            }
            many => {
                write!(f, "{origin}: {} problems:", many.len())?;
                for problem in many {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(key: &str, line: Option<usize>, kind: ProblemKind) -> Problem {
        Problem {
            key: key.to_owned(),
            line,
            kind,
        }
    }

    #[test]
    fn one_problem_reads_as_one_line() {
        let error = ConfigError::Invalid {
            origin: Origin::File("/etc/contextvault/config.toml".into()),
            problems: vec![problem(
                "network.htps_port",
                Some(7),
                ProblemKind::UnknownKey {
                    expected: vec!["bind".into(), "https_port".into(), "http_port".into()],
                    suggestion: Some("https_port".into()),
                },
            )],
        };
        assert_eq!(
            error.to_string(),
            "/etc/contextvault/config.toml line 7: unknown key `network.htps_port`; \
             expected one of: bind, https_port, http_port (did you mean `https_port`?)"
        );
    }

    #[test]
    fn several_problems_read_as_a_list() {
        let error = ConfigError::Invalid {
            origin: Origin::Dev,
            problems: vec![
                problem("version", None, ProblemKind::Missing),
                problem(
                    "network.http_port",
                    Some(3),
                    ProblemKind::Invalid {
                        reason: "is 0".into(),
                    },
                ),
            ],
        };
        assert_eq!(
            error.to_string(),
            "dev settings: 2 problems:\n  missing required key `version`\n  line 3: `network.http_port` is 0"
        );
    }

    #[test]
    fn syntax_error_shows_the_line() {
        let error = ConfigError::Syntax {
            origin: Origin::File("c.toml".into()),
            line: Some(2),
            message: "duplicate key".into(),
            source_line: Some("https_port = 4\n".into()),
        };
        assert_eq!(
            error.to_string(),
            "c.toml line 2: TOML syntax error: duplicate key\n    https_port = 4"
        );
    }

    #[test]
    fn a_syntax_error_line_cannot_send_control_characters_to_the_terminal() {
        let error = ConfigError::Syntax {
            origin: Origin::Dev,
            line: Some(1),
            message: "invalid".into(),
            source_line: Some("a = \u{1b}[2J\tb".into()),
        };
        assert_eq!(
            error.to_string(),
            "dev settings line 1: TOML syntax error: invalid\n    a = \\u{1b}[2J\tb"
        );
    }
}
