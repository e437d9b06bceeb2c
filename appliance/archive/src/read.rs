//! Reading an export that may be damaged or hostile.
//!
//! Nothing is returned until the whole archive has been checked: the entries and their
//! names, the manifest, then every item file (length, checksum, JSON, id, contents),
//! counting the bytes really decompressed against [`Limits`] as it goes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{Read, Seek};

use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;
use zip::ZipArchive;

use crate::error::{ArchiveError, json_error, shown, shown_bytes};
use crate::item::{ExportItem, validate};
use crate::manifest::{
    FormatProbe, ITEMS_DIR, MANIFEST_PATH, Manifest, WireManifest, bad_path_reason, hex,
    parse_item_path,
};
use crate::{FORMAT, FORMAT_VERSION};

/// How much an import is willing to unpack. Sizes are of decompressed data, counted as it
/// is decompressed: what a zip declares about itself is never trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries in the zip, the manifest included.
    pub max_entries: usize,
    /// The largest item file.
    pub max_entry_bytes: u64,
    /// All files together, the manifest included.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    /// 200 000 entries, 16 MiB per item file, 2 GiB in all: a vault far larger than a
    /// person types (16 KiB per version at most), still small enough to unpack on a NAS.
    fn default() -> Self {
        Self {
            max_entries: 200_000,
            max_entry_bytes: 16 * 1024 * 1024,
            max_total_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// Room for the manifest's fixed fields.
const MANIFEST_BASE_BYTES: u64 = 64 * 1024;
/// Room for one listed file in the manifest. A pretty-printed listing takes about 180
/// bytes (path 47, checksum 64, length up to 20, keys and indentation).
const MANIFEST_BYTES_PER_FILE: u64 = 256;

impl Limits {
    /// The manifest grows with the number of items, not with their size, so it has its own
    /// bound, derived from `max_entries` (about 51 MB for 200 000 entries); it still counts
    /// toward `max_total_bytes`.
    pub fn max_manifest_bytes(&self) -> u64 {
        let entries = u64::try_from(self.max_entries).unwrap_or(u64::MAX);
        MANIFEST_BASE_BYTES.saturating_add(entries.saturating_mul(MANIFEST_BYTES_PER_FILE))
    }
}

/// Reads and checks a whole export; returns its manifest and items in the archive's order.
///
/// Holds every item in memory at once; [`ArchiveReader`] hands them out one at a time.
pub fn read_archive<R: Read + Seek>(
    r: R,
    limits: &Limits,
) -> Result<(Manifest, Vec<ExportItem>), ArchiveError> {
    let mut items = Vec::new();
    let reader = ArchiveReader::open_keeping(r, limits, |item| items.push(item))?;
    Ok((reader.manifest, items))
}

/// An export that has passed every check, read again one item at a time.
///
/// [`open`](Self::open) reads and checks the whole archive — every item included — and
/// keeps only the manifest and the list of files; [`items`](Self::items) then reads each
/// item again, and checks it again as it goes (its length and checksum against the
/// manifest, its contents), so memory holds one item at a time. An error from `items` can
/// only mean the underlying file changed after `open`: abandon the import (roll back what
/// was already stored).
pub struct ArchiveReader<R> {
    zip: ZipArchive<R>,
    manifest: Manifest,
    files: Vec<Listed>,
    limits: Limits,
}

impl<R> fmt::Debug for ArchiveReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("manifest", &self.manifest)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// One item file: where it is in the zip, and what the manifest says of it.
#[derive(Debug)]
struct Listed {
    index: usize,
    path: String,
    id: Uuid,
    sha256: String,
    bytes: u64,
}

/// Bytes decompressed so far in one pass, against `max_total_bytes`.
#[derive(Debug, Default)]
struct Budget {
    used: u64,
}

impl<R: Read + Seek> ArchiveReader<R> {
    /// Checks the whole archive (see the type's documentation).
    pub fn open(r: R, limits: &Limits) -> Result<Self, ArchiveError> {
        Self::open_keeping(r, limits, drop)
    }

    /// The manifest, as checked.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The items in the archive's order, read and checked again one at a time. After the
    /// first error the iterator ends.
    pub fn items(&mut self) -> Items<'_, R> {
        Items {
            reader: self,
            next: 0,
            budget: Budget::default(),
        }
    }

    /// [`open`](Self::open), handing each checked item to `keep` (but only returning it as
    /// valid once every item has passed).
    fn open_keeping(
        r: R,
        limits: &Limits,
        mut keep: impl FnMut(ExportItem),
    ) -> Result<Self, ArchiveError> {
        let mut zip = ZipArchive::new(r).map_err(|e| ArchiveError::NotZip {
            reason: e.to_string(),
        })?;
        // Checked before the names: the zip reader keeps one entry per name.
        if zip.has_duplicate_names() {
            return Err(ArchiveError::DuplicateEntry);
        }
        if zip.len() > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let entries = classify_entries(&zip)?;
        let manifest_index = entries.manifest.ok_or(ArchiveError::MissingManifest)?;

        let mut budget = Budget::default();
        let json = read_entry(
            &mut zip,
            manifest_index,
            MANIFEST_PATH,
            limits.max_manifest_bytes(),
            limits,
            &mut budget,
        )?;
        let wire = parse_manifest(&json)?;
        let files = check_listing(&wire, &entries.items, limits)?;

        let mut ids = HashSet::with_capacity(files.len());
        for file in &files {
            let item = load_item(&mut zip, file, limits, &mut budget)?;
            // Unreachable while names are unique and each must match its id; kept so the
            // promise does not rest on that reasoning alone.
            if !ids.insert(item.id) {
                return Err(ArchiveError::DuplicateItem { id: item.id });
            }
            keep(item);
        }

        Ok(Self {
            zip,
            manifest: Manifest {
                exported_at: wire.exported_at,
                appliance_version: wire.appliance_version,
                account: wire.account,
                item_count: wire.item_count,
            },
            files,
            limits: *limits,
        })
    }
}

/// The items of an [`ArchiveReader`], one at a time.
pub struct Items<'a, R> {
    reader: &'a mut ArchiveReader<R>,
    next: usize,
    budget: Budget,
}

impl<R> fmt::Debug for Items<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Items")
            .field("next", &self.next)
            .field("of", &self.reader.files.len())
            .finish()
    }
}

impl<R: Read + Seek> Iterator for Items<'_, R> {
    type Item = Result<ExportItem, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = &mut *self.reader;
        let file = reader.files.get(self.next)?;
        let result = load_item(&mut reader.zip, file, &reader.limits, &mut self.budget);
        self.next = if result.is_ok() {
            self.next + 1
        } else {
            usize::MAX
        };
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.reader.files.len().saturating_sub(self.next);
        (0, Some(left))
    }
}

/// The entries of a zip, sorted.
#[derive(Debug)]
struct Entries {
    /// The index of `manifest.json`.
    manifest: Option<usize>,
    /// The item files: path and index, in the zip's order.
    items: Vec<(String, usize)>,
}

/// Sorts every entry of the zip into the manifest and the item files. Anything else —
/// another name, a directory other than `items/`, a link, an encrypted entry — is refused.
fn classify_entries<R: Read + Seek>(zip: &ZipArchive<R>) -> Result<Entries, ArchiveError> {
    /// The file-type bits of a unix mode, and the value for a plain file.
    const S_IFMT: u32 = 0o170_000;
    const S_IFREG: u32 = 0o100_000;
    let mut manifest = None;
    let mut items = Vec::with_capacity(zip.len());
    for index in 0..zip.len() {
        let entry = zip.by_index_data(index).map_err(|e| ArchiveError::NotZip {
            reason: e.to_string(),
        })?;
        let raw = entry.name_raw();
        let bad = |reason| ArchiveError::BadPath {
            path: shown_bytes(raw),
            reason,
        };
        let Ok(name) = std::str::from_utf8(raw) else {
            return Err(bad("a name that is not UTF-8"));
        };
        if entry.is_symlink() {
            return Err(bad("a symbolic link"));
        }
        if entry.encrypted() {
            return Err(bad("an encrypted entry"));
        }
        if entry.is_dir() {
            if name == ITEMS_DIR {
                continue;
            }
            return Err(bad("a directory other than items/"));
        }
        if entry
            .unix_mode()
            .is_some_and(|mode| !matches!(mode & S_IFMT, 0 | S_IFREG))
        {
            return Err(bad("not a plain file"));
        }
        if name == MANIFEST_PATH {
            manifest = Some(index);
        } else if parse_item_path(name).is_some() {
            items.push((name.to_owned(), index));
        } else {
            return Err(bad(bad_path_reason(name)));
        }
    }
    Ok(Entries { manifest, items })
}

/// Reads the format first (so a newer archive is reported as newer, whatever fields it
/// has), then the whole manifest, strictly.
fn parse_manifest(json: &[u8]) -> Result<WireManifest, ArchiveError> {
    let probe: FormatProbe =
        serde_json::from_slice(json).map_err(|e| json_error(MANIFEST_PATH, &e))?;
    if probe.format != FORMAT {
        return Err(ArchiveError::UnknownFormat {
            found: shown(&probe.format),
        });
    }
    if probe.format_version == 0 {
        return Err(ArchiveError::InvalidFormatVersion {
            found: probe.format_version,
        });
    }
    if probe.format_version > FORMAT_VERSION {
        return Err(ArchiveError::NewerFormatVersion {
            found: probe.format_version,
        });
    }
    serde_json::from_slice(json).map_err(|e| json_error(MANIFEST_PATH, &e))
}

/// Checks the manifest's list of files against itself, the limits and the zip's entries.
fn check_listing(
    wire: &WireManifest,
    present: &[(String, usize)],
    limits: &Limits,
) -> Result<Vec<Listed>, ArchiveError> {
    if wire.files.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    if wire.item_count != wire.files.len() {
        return Err(ArchiveError::ItemCountMismatch {
            listed: wire.item_count,
            actual: wire.files.len(),
        });
    }
    let in_zip: HashMap<&str, usize> = present.iter().map(|(p, i)| (p.as_str(), *i)).collect();
    let mut listed = Vec::with_capacity(wire.files.len());
    let mut seen = HashSet::with_capacity(wire.files.len());
    let mut total: u64 = 0;
    for file in &wire.files {
        let path = file.path.as_str();
        let Some(id) = parse_item_path(path) else {
            return Err(ArchiveError::BadPath {
                path: shown(path),
                reason: bad_path_reason(path),
            });
        };
        if !seen.insert(path) {
            return Err(ArchiveError::DuplicateListing {
                path: path.to_owned(),
            });
        }
        if file.sha256.len() != 64
            || !file
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ArchiveError::Malformed {
                path: MANIFEST_PATH.to_owned(),
                reason: format!("the checksum listed for {path} is not 64 lowercase hex digits"),
            });
        }
        // What the manifest claims is not trusted for safety (real bytes are counted on
        // reading), but a claim past the limits is refused before anything is unpacked.
        if file.bytes > limits.max_entry_bytes {
            return Err(ArchiveError::EntryTooLarge {
                path: path.to_owned(),
                limit: limits.max_entry_bytes,
            });
        }
        total = total.saturating_add(file.bytes);
        if total > limits.max_total_bytes {
            return Err(ArchiveError::TotalTooLarge {
                limit: limits.max_total_bytes,
            });
        }
        let Some(&index) = in_zip.get(path) else {
            return Err(ArchiveError::MissingEntry {
                path: path.to_owned(),
            });
        };
        listed.push(Listed {
            index,
            path: path.to_owned(),
            id,
            sha256: file.sha256.clone(),
            bytes: file.bytes,
        });
    }
    if let Some((path, _)) = present.iter().find(|(p, _)| !seen.contains(p.as_str())) {
        return Err(ArchiveError::UnlistedEntry { path: path.clone() });
    }
    Ok(listed)
}

/// Reads one item file and checks everything about it.
fn load_item<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    file: &Listed,
    limits: &Limits,
    budget: &mut Budget,
) -> Result<ExportItem, ArchiveError> {
    let path = file.path.as_str();
    let data = read_entry(
        zip,
        file.index,
        path,
        limits.max_entry_bytes,
        limits,
        budget,
    )?;
    let actual = data.len() as u64;
    if actual != file.bytes {
        return Err(ArchiveError::SizeMismatch {
            path: path.to_owned(),
            listed: file.bytes,
            actual,
        });
    }
    if hex(&Sha256::digest(&data)) != file.sha256 {
        return Err(ArchiveError::ChecksumMismatch {
            path: path.to_owned(),
        });
    }
    let item: ExportItem = serde_json::from_slice(&data).map_err(|e| json_error(path, &e))?;
    if item.id != file.id {
        return Err(ArchiveError::IdMismatch {
            path: path.to_owned(),
            found: item.id,
        });
    }
    validate(&item).map_err(|problem| ArchiveError::InvalidItem {
        path: path.to_owned(),
        problem,
    })?;
    Ok(item)
}

/// Decompresses one entry, stopping one byte past what the limits allow: the count is of
/// bytes really produced, whatever sizes the zip declares.
fn read_entry<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    index: usize,
    path: &str,
    entry_limit: u64,
    limits: &Limits,
    budget: &mut Budget,
) -> Result<Zeroizing<Vec<u8>>, ArchiveError> {
    let corrupt = |e: &dyn fmt::Display| ArchiveError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let total_left = limits.max_total_bytes.saturating_sub(budget.used);
    let limit = entry_limit.min(total_left);
    let mut entry = zip.by_index(index).map_err(|e| corrupt(&e))?;
    // Sized from the declared length so an honest entry is read without reallocating
    // (which would leave copies of the text behind); the limit still bounds it.
    let capacity = usize::try_from(entry.size().min(limit).saturating_add(1)).unwrap_or(0);
    let mut data = Zeroizing::new(Vec::with_capacity(capacity));
    (&mut entry)
        .take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| corrupt(&e))?;
    let read = data.len() as u64;
    if read > limit {
        return Err(if limit == entry_limit {
            ArchiveError::EntryTooLarge {
                path: path.to_owned(),
                limit: entry_limit,
            }
        } else {
            ArchiveError::TotalTooLarge {
                limit: limits.max_total_bytes,
            }
        });
    }
    budget.used += read;
    Ok(data)
}
