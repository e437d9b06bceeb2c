//! The export format: a person's whole vault as a zip of plain JSON documents.
//!
//! An export is the way out (and back in): decrypted, so that it stays readable without
//! Context Vault, and checksummed, so that an import restores it exactly or not at all.
//! This crate only converts between Rust values and zip bytes; it knows nothing of the
//! database or of encryption. It writes with [`ArchiveWriter`] and reads with
//! [`read_archive`] or [`ArchiveReader`], treating every archive it reads as hostile.
//! The format is also described for people in `docs/export-format.md`.
//!
//! # Layout
//!
//! ```text
//! manifest.json          what the archive is, and every item file with its checksum
//! items/<uuid>.json      one per item, named by its id (lowercase, hyphenated)
//! ```
//!
//! The writer puts the items first and the manifest last (it is only known at the end);
//! readers find entries through the zip's central directory, so the order does not
//! matter. A directory entry `items/` is allowed; nothing else is. Files are deflated,
//! UTF-8 JSON, pretty-printed.
//!
//! `manifest.json`:
//!
//! ```json
//! {"format": "contextvault-export", "format_version": 1,
//!  "exported_at": "2026-03-01T09:30:00.123456Z", "appliance_version": "0.1.0",
//!  "account": "olivia", "item_count": 2,
//!  "files": [{"path": "items/<uuid>.json", "sha256": "<64 lowercase hex>", "bytes": 1234}]}
//! ```
//!
//! `items/<uuid>.json`:
//!
//! ```json
//! {"id": "<uuid>", "created_at": "RFC 3339", "updated_at": "RFC 3339",
//!  "pinned": false, "archived": false,
//!  "versions": [{"version": 1, "created_at": "RFC 3339", "text": "…", "tags": ["…"],
//!                "task": null}]}
//! ```
//!
//! `task` is `null` or `{"status": "open|doing|done", "priority": "low|normal|high",
//! "due": "YYYY-MM-DD" | null}`. Timestamps are RFC 3339 with as many fractional digits
//! as needed (trailing zeros dropped, up to nanoseconds), and keep their UTC offset, so
//! they round-trip exactly; PostgreSQL's microseconds always fit.
//!
//! # Versions
//!
//! [`FORMAT_VERSION`] changes when a reader of the previous version could misread an
//! archive. A reader refuses a newer version with a message that says so, before it
//! looks at any other field, and refuses unknown fields everywhere else: a field it does
//! not know is data it would silently drop.
//!
//! # What a reader checks
//!
//! Before anything is returned as valid: the zip is a zip; it has exactly the files the
//! manifest lists, each once, each named exactly `items/<uuid>.json` (no `..`, absolute
//! paths, backslashes, links, other directories, encryption); the manifest's format,
//! version and `item_count`; each file's length and SHA-256; its JSON, strictly; that
//! its id is the one in its name; and its contents ([`MAX_TEXT_BYTES`], [`MAX_TAGS`],
//! [`MAX_TAG_CHARS`], versions numbered 1, 2, 3… in order, `updated_at` not before
//! `created_at`, the task words). Decompressed bytes are counted as they are produced,
//! against [`Limits`]. Each refusal is its own [`ArchiveError`] variant, naming the file.
//!
//! Error policy: [`ArchiveError`] says what is wrong and in which file, in words for the
//! person importing; it never quotes their text or tags.

mod error;
mod item;
mod manifest;
mod read;
mod write;

pub use error::{ArchiveError, ItemProblem};
pub use item::{
    ExportItem, ExportTask, ExportVersion, MAX_TAG_CHARS, MAX_TAGS, MAX_TEXT_BYTES,
    TASK_PRIORITIES, TASK_STATUSES,
};
pub use manifest::{MANIFEST_PATH, Manifest};
pub use read::{ArchiveReader, Items, Limits, read_archive};
pub use write::ArchiveWriter;

/// The `format` of every export, in its manifest.
pub const FORMAT: &str = "contextvault-export";
/// The newest format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[cfg(test)]
mod tests;
