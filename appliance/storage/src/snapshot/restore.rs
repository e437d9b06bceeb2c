//! Restoring a snapshot: its restorable parts are copied back over the live ones while
//! PostgreSQL and the vault service are stopped (the caller's duty).
//!
//! Each part is copied next to the live one (`<part>.restoring`, a reflink copy where the
//! file system can, so btrfs shares the blocks), then swapped in by two renames. A journal
//! file (`<data>/.restore`) names the snapshot for the whole time: after a power cut the
//! supervisor finds it at its next start and does the restore again from the beginning
//! ([`finish_interrupted_restore`]) before PostgreSQL starts, so a restore is never left
//! half done. Every step can be repeated: a half-made copy is removed and made again, a
//! half-done swap is undone first.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{SnapshotBackend, SnapshotError, SnapshotId, run};

/// What a restore brings back: PostgreSQL's data directory (its WAL inside), the TLS
/// files and the WireGuard registry. Not the config (the running supervisor's settings
/// stay the box's own; the snapshot's `config.toml` can be read from it), not the update
/// state and not the run directory.
pub const RESTORED: [&str; 3] = ["postgres", "tls", "wireguard"];

/// What a backup holds: the restored parts and, on the image, the config as it was (for
/// reference on a new box; it is not put back).
pub const BACKED_UP: [&str; 4] = ["postgres", "tls", "wireguard", "config.toml"];

/// The journal of a restore in progress.
pub const JOURNAL: &str = ".restore";

/// Restores `id` into `data_dir`. PostgreSQL and the vault service must be stopped.
pub fn restore(
    data_dir: &Path,
    backend: &dyn SnapshotBackend,
    id: &SnapshotId,
) -> Result<(), SnapshotError> {
    let view = backend.open(id)?;
    copy_back(data_dir, view.path(), id.as_str())
}

/// Restores the parts found in `source` (a directory on the same file system, e.g. a
/// backup restored there) into `data_dir`; after a power cut it is done again from
/// `source`, which must stay until this returns. PostgreSQL and the vault service must
/// be stopped.
pub fn restore_from_dir(data_dir: &Path, source: &Path) -> Result<(), SnapshotError> {
    let label = format!("{DIR_PREFIX}{}", source.display());
    copy_back(data_dir, source, &label)
}

/// How the journal names a directory rather than a snapshot.
const DIR_PREFIX: &str = "dir:";

fn copy_back(data_dir: &Path, source: &Path, label: &str) -> Result<(), SnapshotError> {
    let journal = data_dir.join(JOURNAL);
    write_synced(&journal, label.as_bytes())?;
    for part in RESTORED {
        restore_part(data_dir, source, part)?;
    }
    sync_dir(data_dir)?;
    std::fs::remove_file(&journal).map_err(SnapshotError::io(&journal))?;
    sync_dir(data_dir)?;
    Ok(())
}

/// Completes a restore a power cut interrupted, if there was one; returns what it
/// restored from (a snapshot's id, or `dir:<path>`).
pub fn finish_interrupted_restore(
    data_dir: &Path,
    backend: &dyn SnapshotBackend,
) -> Result<Option<String>, SnapshotError> {
    let journal = data_dir.join(JOURNAL);
    let text = match std::fs::read_to_string(&journal) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SnapshotError::io(&journal)(e)),
    };
    let label = text.trim().to_owned();
    match label.strip_prefix(DIR_PREFIX) {
        Some(dir) => copy_back(data_dir, Path::new(dir), &label)?,
        None => restore(data_dir, backend, &SnapshotId::parse(&label)?)?,
    }
    Ok(Some(label))
}

fn restore_part(data_dir: &Path, view: &Path, part: &str) -> Result<(), SnapshotError> {
    let live = data_dir.join(part);
    let fresh = sibling(&live, "restoring");
    let replaced = sibling(&live, "replaced");
    // Undo what an interrupted run left: a half-made copy, a half-done swap.
    remove_all(&fresh)?;
    if replaced.exists() {
        if live.exists() {
            remove_all(&replaced)?;
        } else {
            std::fs::rename(&replaced, &live).map_err(SnapshotError::io(&replaced))?;
        }
    }
    let source = view.join(part);
    if source.exists() {
        run(
            "cp",
            "coreutils",
            &[
                OsStr::new("-a"),
                OsStr::new("--reflink=auto"),
                source.as_os_str(),
                fresh.as_os_str(),
            ],
        )?;
        // PostgreSQL was running when the snapshot was taken; it is not now.
        if part == "postgres" {
            let pid = fresh.join("postmaster.pid");
            match std::fs::remove_file(&pid) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SnapshotError::io(&pid)(e)),
            }
        }
    }
    if live.exists() {
        std::fs::rename(&live, &replaced).map_err(SnapshotError::io(&live))?;
    }
    if source.exists() {
        std::fs::rename(&fresh, &live).map_err(SnapshotError::io(&fresh))?;
    }
    remove_all(&replaced)
}

fn sibling(path: &Path, what: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{what}"));
    path.with_file_name(name)
}

fn remove_all(path: &Path) -> Result<(), SnapshotError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path).map_err(SnapshotError::io(path)),
        Ok(_) => std::fs::remove_file(path).map_err(SnapshotError::io(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::io(path)(e)),
    }
}

fn write_synced(path: &Path, contents: &[u8]) -> Result<(), SnapshotError> {
    let mut file = std::fs::File::create(path).map_err(SnapshotError::io(path))?;
    file.write_all(contents).map_err(SnapshotError::io(path))?;
    file.sync_all().map_err(SnapshotError::io(path))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SnapshotError::io(dir))
}
