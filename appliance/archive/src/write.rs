//! Writing an export, one item at a time.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Seek, Write};

use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use crate::error::ArchiveError;
use crate::item::{ExportItem, validate};
use crate::manifest::{MANIFEST_PATH, ManifestFile, WireManifest, hex, item_path};
use crate::read::Limits;
use crate::{FORMAT, FORMAT_VERSION};

/// Writes an export: [`add`](Self::add) each item, then [`finish`](Self::finish).
///
/// Each item is serialised straight into the zip (no copy of it is kept), hashed as it
/// goes; only its path, checksum and length stay in memory for the manifest, which is
/// written last. Every item is checked as an import would check it, against the default
/// [`Limits`], so an archive this writes is one an import with default limits accepts:
/// an item that could not be imported is refused here, with the reason, instead.
///
/// After an error the archive is incomplete: drop the writer and its output.
pub struct ArchiveWriter<W: Write + Seek> {
    zip: ZipWriter<W>,
    options: SimpleFileOptions,
    account: String,
    appliance_version: String,
    exported_at: OffsetDateTime,
    limits: Limits,
    files: Vec<ManifestFile>,
    ids: HashSet<Uuid>,
    total_bytes: u64,
}

impl<W: Write + Seek> fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("account", &self.account)
            .field("exported_at", &self.exported_at)
            .field("items", &self.files.len())
            .field("total_bytes", &self.total_bytes)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Seek> ArchiveWriter<W> {
    /// Starts an export of `account`'s vault, made by Context Vault `appliance_version`
    /// at `exported_at` (also the modification time of every file in the zip).
    pub fn new(
        w: W,
        account: impl Into<String>,
        appliance_version: impl Into<String>,
        exported_at: OffsetDateTime,
    ) -> Self {
        let utc = exported_at.to_offset(UtcOffset::UTC);
        // Zip times are MS-DOS times, 1980 to 2107 only; outside that, the zip default.
        let modified = zip::DateTime::from_date_and_time(
            u16::try_from(utc.year()).unwrap_or(0),
            utc.month().into(),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second(),
        )
        .unwrap_or_default();
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(modified)
            // The files are a person's decrypted notes: private to them once unpacked.
            .unix_permissions(0o600);
        Self {
            zip: ZipWriter::new(w),
            options,
            account: account.into(),
            appliance_version: appliance_version.into(),
            exported_at,
            limits: Limits::default(),
            files: Vec::new(),
            ids: HashSet::new(),
            total_bytes: 0,
        }
    }

    /// Checks one item and writes it as `items/<id>.json`.
    pub fn add(&mut self, item: &ExportItem) -> Result<(), ArchiveError> {
        let path = item_path(item.id);
        validate(item).map_err(|problem| ArchiveError::InvalidItem {
            path: path.clone(),
            problem,
        })?;
        if self.ids.contains(&item.id) {
            return Err(ArchiveError::DuplicateItem { id: item.id });
        }
        // One entry per item, plus the manifest.
        if self.files.len() + 2 > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }

        // First, only count: this catches what cannot be serialised (a year past 9999, an
        // offset with seconds) and what is too large, before anything reaches the zip.
        let mut counter = Count(0);
        serde_json::to_writer_pretty(&mut counter, item).map_err(|e| ArchiveError::Unwritable {
            id: item.id,
            reason: e.to_string(),
        })?;
        let bytes = counter.0;
        if bytes > self.limits.max_entry_bytes {
            return Err(ArchiveError::EntryTooLarge {
                path,
                limit: self.limits.max_entry_bytes,
            });
        }
        if self.total_bytes.saturating_add(bytes) > self.limits.max_total_bytes {
            return Err(ArchiveError::TotalTooLarge {
                limit: self.limits.max_total_bytes,
            });
        }

        self.zip
            .start_file(path.as_str(), self.options)
            .map_err(|e| ArchiveError::Write(e.into()))?;
        let mut out = Tally::new(&mut self.zip);
        serde_json::to_writer_pretty(&mut out, item).map_err(|e| ArchiveError::Write(e.into()))?;
        let (written, sha256) = (out.bytes, hex(&out.hasher.finalize()));
        if written != bytes {
            // Serialisation is deterministic; this would be a bug, not bad data.
            return Err(ArchiveError::Write(io::Error::other(
                "an item serialised to two different lengths",
            )));
        }

        self.total_bytes += bytes;
        self.ids.insert(item.id);
        self.files.push(ManifestFile {
            path,
            sha256,
            bytes,
        });
        Ok(())
    }

    /// Writes `manifest.json` and the zip's central directory; returns the output.
    pub fn finish(mut self) -> Result<W, ArchiveError> {
        let manifest = WireManifest {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            exported_at: self.exported_at,
            appliance_version: self.appliance_version,
            account: self.account,
            item_count: self.files.len(),
            files: self.files,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ArchiveError::Write(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        self.zip
            .start_file(MANIFEST_PATH, self.options)
            .map_err(|e| ArchiveError::Write(e.into()))?;
        self.zip.write_all(&json).map_err(ArchiveError::Write)?;
        self.zip.finish().map_err(|e| ArchiveError::Write(e.into()))
    }
}

/// Passes bytes through, counting and hashing them.
struct Tally<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W> Tally<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or(buf);
        self.hasher.update(done);
        self.bytes += done.len() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts bytes and keeps none.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
