//! What can be wrong with an archive, in words a person can act on.
//!
//! Every refusal on read is its own [`ArchiveError`] variant, and names the file inside
//! the archive where there is one. Messages never quote a person's text or tags; where
//! they quote something taken from the archive (a path, a word it should not hold) it is
//! escaped and shortened first ([`shown`]), since a hostile archive chooses those bytes.

use crate::{FORMAT, FORMAT_VERSION, MAX_TAG_CHARS, MAX_TAGS, MAX_TEXT_BYTES};

/// Why an archive could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    // ---- the container ----
    #[error("this file is not a Context Vault export: it is not a zip archive ({reason})")]
    NotZip { reason: String },
    #[error("the archive has no manifest.json, so it is not a Context Vault export")]
    MissingManifest,
    #[error(
        "manifest.json says this is a \"{found}\" archive, not a Context Vault export \
         (\"{FORMAT}\")"
    )]
    UnknownFormat { found: String },
    #[error(
        "this export was made by a newer Context Vault (format version {found}; this one reads \
         up to version {FORMAT_VERSION}): update the appliance, then import it again"
    )]
    NewerFormatVersion { found: u32 },
    #[error("manifest.json: format version {found} does not exist (versions start at 1)")]
    InvalidFormatVersion { found: u32 },
    #[error("{path}: not valid JSON of the expected shape ({reason})")]
    Malformed { path: String, reason: String },
    #[error("{path}: {reason} (this Context Vault does not know that field)")]
    UnknownField { path: String, reason: String },
    #[error("{path}: could not be decompressed ({reason}); the archive is damaged")]
    Corrupt { path: String, reason: String },

    // ---- which entries there are ----
    #[error("{path}: listed in the manifest but missing from the archive")]
    MissingEntry { path: String },
    #[error("{path}: in the archive but not listed in the manifest (added after export?)")]
    UnlistedEntry { path: String },
    #[error("the archive holds two entries with the same name")]
    DuplicateEntry,
    #[error("{path}: listed twice in the manifest")]
    DuplicateListing { path: String },
    #[error("{path}: not allowed in an export ({reason})")]
    BadPath { path: String, reason: &'static str },
    #[error("{path}: holds item {found}, but its name says another item")]
    IdMismatch { path: String, found: uuid::Uuid },

    // ---- integrity ----
    #[error("{path}: its checksum does not match the manifest (the file was changed or damaged)")]
    ChecksumMismatch { path: String },
    #[error(
        "{path}: holds {actual} bytes but the manifest says {listed} (the file was changed or \
         damaged)"
    )]
    SizeMismatch {
        path: String,
        listed: u64,
        actual: u64,
    },
    #[error("manifest.json: says {listed} items but lists {actual} files")]
    ItemCountMismatch { listed: usize, actual: usize },

    // ---- limits (zip-bomb defence) ----
    #[error("the archive has more than {limit} entries, more than an import accepts")]
    TooManyEntries { limit: usize },
    #[error("{path}: larger than {limit} bytes once decompressed, more than an import accepts")]
    EntryTooLarge { path: String, limit: u64 },
    #[error(
        "the archive holds more than {limit} bytes once decompressed, more than an import accepts"
    )]
    TotalTooLarge { limit: u64 },

    // ---- the items themselves ----
    #[error("{path}: {problem}")]
    InvalidItem { path: String, problem: ItemProblem },
    #[error("item {id} appears twice")]
    DuplicateItem { id: uuid::Uuid },

    // ---- writing ----
    #[error("item {id} cannot be written to an export: {reason}")]
    Unwritable { id: uuid::Uuid, reason: String },
    #[error("could not write the archive: {0}")]
    Write(#[source] std::io::Error),
}

/// What is wrong inside one item document.
///
/// Versions are numbered from 1, as in the file. Nothing here carries the text or a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemProblem {
    #[error("the item has no versions")]
    NoVersions,
    #[error(
        "versions must be numbered 1, 2, 3… in order: expected version {expected}, found {found}"
    )]
    VersionNumbering { expected: i64, found: i32 },
    #[error("the item was updated before it was created")]
    UpdatedBeforeCreated,
    #[error("version {version}: the text is empty")]
    EmptyText { version: i32 },
    #[error("version {version}: the text is longer than {MAX_TEXT_BYTES} bytes")]
    TextTooLong { version: i32 },
    #[error("version {version}: more than {MAX_TAGS} tags")]
    TooManyTags { version: i32 },
    #[error(
        "version {version}: tag {position} is not 1 to {MAX_TAG_CHARS} characters without \
         control characters"
    )]
    BadTag { version: i32, position: usize },
    #[error("version {version}: task status {found} is not one of open, doing, done")]
    BadTaskStatus { version: i32, found: String },
    #[error("version {version}: task priority {found} is not one of low, normal, high")]
    BadTaskPriority { version: i32, found: String },
}

/// A string from the archive made safe to show: escaped (no control characters, no
/// terminal escapes) and shortened, so a hostile name cannot flood or garble a log.
pub(crate) fn shown(raw: &str) -> String {
    shortened(raw, 100)
}

/// [`shown`], for a name that may not even be UTF-8.
pub(crate) fn shown_bytes(raw: &[u8]) -> String {
    shown(&String::from_utf8_lossy(raw))
}

fn shortened(raw: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (n, c) in raw.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

/// Sorts a `serde_json` failure into "unknown field" or "malformed", with the file named.
///
/// serde words a value of the wrong type as `invalid type: string "…", expected …`,
/// quoting the value — which may be a person's text or tag. Those messages keep only
/// what was expected and where.
pub(crate) fn json_error(path: &str, error: &serde_json::Error) -> ArchiveError {
    let message = error.to_string();
    // serde's derive words every rejected field the same way (`de::Error::unknown_field`):
    // "unknown field `x`, expected one of …". A field name is not a person's data.
    if message.starts_with("unknown field") {
        return ArchiveError::UnknownField {
            path: path.to_owned(),
            reason: shortened(&message, 300),
        };
    }
    let reason = ["invalid type", "invalid value", "invalid length"]
        .into_iter()
        .find(|kind| message.starts_with(kind))
        .map_or_else(
            || shortened(&message, 300),
            |kind| match message.rsplit_once(", expected ") {
                Some((_, expected)) => shortened(&format!("{kind}, expected {expected}"), 300),
                None => format!("{kind} at line {} column {}", error.line(), error.column()),
            },
        );
    ArchiveError::Malformed {
        path: path.to_owned(),
        reason,
    }
}
