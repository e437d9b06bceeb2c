//! `manifest.json`: what the archive is, and the checksum of every item file.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The name of the manifest inside the archive.
pub const MANIFEST_PATH: &str = "manifest.json";
/// The folder that holds the item files.
pub(crate) const ITEMS_DIR: &str = "items/";

/// What an archive says about itself, once it has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub exported_at: OffsetDateTime,
    /// The version of the Context Vault that wrote the archive.
    pub appliance_version: String,
    /// The name of the account it was exported from.
    pub account: String,
    pub item_count: usize,
}

/// `manifest.json` as written. Field order is the order in the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WireManifest {
    pub format: String,
    pub format_version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
    pub appliance_version: String,
    pub account: String,
    pub item_count: usize,
    pub files: Vec<ManifestFile>,
}

/// One item file as the manifest lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestFile {
    pub path: String,
    /// SHA-256 of the file's bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// The file's length in bytes (uncompressed).
    pub bytes: u64,
}

/// The two fields read before anything else, ignoring the rest: a newer format may have
/// fields this version does not know, and the right message then is "made by a newer
/// Context Vault", not "unknown field".
#[derive(Deserialize)]
pub(crate) struct FormatProbe {
    pub format: String,
    pub format_version: u32,
}

/// The only name an item file may have: `items/<uuid>.json`, the uuid in its canonical
/// form (lowercase, hyphenated), so that one item has exactly one possible name.
pub(crate) fn item_path(id: Uuid) -> String {
    format!("{ITEMS_DIR}{}.json", id.hyphenated())
}

/// The item id a path names, if it is exactly [`item_path`] of that id.
pub(crate) fn parse_item_path(path: &str) -> Option<Uuid> {
    let id = Uuid::try_parse(path.strip_prefix(ITEMS_DIR)?.strip_suffix(".json")?).ok()?;
    (item_path(id) == path).then_some(id)
}

/// Why a name that is not [`item_path`] is refused, in words.
pub(crate) fn bad_path_reason(path: &str) -> &'static str {
    if path.starts_with('/') || path.as_bytes().get(1) == Some(&b':') {
        "an absolute path"
    } else if path.contains('\\') {
        "a backslash in the name"
    } else if path.split('/').any(|part| part == "..") {
        "a path that leaves the archive folder"
    } else {
        "an export holds only manifest.json and items/<uuid>.json"
    }
}

/// `bytes` as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}
