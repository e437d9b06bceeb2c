//! File handling for the PKI directory: atomic writes with the final mode from the first
//! byte, ownership for the key the web service reads, and reads that tell "missing" apart
//! from "unreadable".

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::unistd::{Gid, Uid, chown, geteuid};

use super::{KeyOwner, TlsError};

/// Private keys: read and write for their owner only.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Certificates are public: anyone may read them (the web service serves `ca.crt`).
pub(crate) const CERT_MODE: u32 = 0o644;
/// The directory must be searchable by the unprivileged web service so it can open
/// `server.crt` and `server.key`; the key files protect themselves by their modes.
const DIR_MODE: u32 = 0o755;

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates `dir` (and its parents) if it does not exist yet.
pub(crate) fn create_dir(dir: &Path) -> Result<(), TlsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| TlsError::CreateDir {
            path: dir.to_owned(),
            source,
        })
}

/// Reads `path`, returning `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, TlsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TlsError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads `path`, failing when it is missing.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Replaces `path` with `contents` so that a reader sees the old file or the new one,
/// never half of one, even across a power cut: a temporary file in the same directory
/// (so `rename` stays on one filesystem and is atomic), created with `mode` so a key is
/// never readable by others, given to `owner`, flushed to disk, renamed over `path`, and
/// the directory flushed so the rename itself survives.
pub(crate) fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<KeyOwner>,
) -> Result<(), TlsError> {
    let write_err = |source: io::Error| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| write_err(io::Error::other("path has no parent directory")))?;
    let name = path
        .file_name()
        .ok_or_else(|| write_err(io::Error::other("path has no file name")))?
        .to_string_lossy();
    let temp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));

    let result = write_temp(&temp, contents, mode, owner).and_then(|()| {
        fs::rename(&temp, path).map_err(write_err)?;
        // Flush the directory entry; without it a crash may forget the rename.
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err)
    });
    if result.is_err() {
        // Best effort: do not leave temporary copies (possibly of a key) behind.
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_temp(
    temp: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<KeyOwner>,
) -> Result<(), TlsError> {
    let temp_err = |source: io::Error| TlsError::Write {
        path: temp.to_owned(),
        source,
    };
    // `create_new` refuses to follow a planted symlink or reuse someone else's file.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temp)
        .map_err(temp_err)?;
    // The umask may have taken bits away from `mode` (e.g. 0644 → 0600 under umask 077,
    // which would hide server.crt from the web service); set the exact mode. The file
    // started with no more than `mode`, so this never widens access to a key.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(temp_err)?;
    if let Some(owner) = owner {
        give_to(temp, owner)?;
    }
    file.write_all(contents).map_err(temp_err)?;
    file.sync_all().map_err(temp_err)
}

/// Gives `path` to `owner`. Changing owners needs root; a process that is not root may
/// still be asked to give a file to itself (dev mode), which is already the case.
pub(crate) fn give_to(path: &Path, owner: KeyOwner) -> Result<(), TlsError> {
    match chown(
        path,
        Some(Uid::from_raw(owner.uid)),
        Some(Gid::from_raw(owner.gid)),
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) if owner.uid == geteuid().as_raw() => {
            tracing::debug!(
                path = %path.display(),
                uid = owner.uid,
                gid = owner.gid,
                "not root: left the key with its creator, who is the requested owner"
            );
            Ok(())
        }
        Err(source) => Err(TlsError::Chown {
            path: path.to_owned(),
            uid: owner.uid,
            gid: owner.gid,
            source,
        }),
    }
}

/// Repairs an existing key file: removes access for group and others, and gives it to
/// `owner` when one is asked for and it belongs to someone else.
pub(crate) fn repair_key_file(path: &Path, owner: Option<KeyOwner>) -> Result<(), TlsError> {
    let meta = fs::metadata(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.mode() & 0o7777),
            "private key was readable by others; restricting it to its owner"
        );
        fs::set_permissions(path, Permissions::from_mode(KEY_MODE)).map_err(|source| {
            TlsError::Write {
                path: path.to_owned(),
                source,
            }
        })?;
    }
    if let Some(owner) = owner
        && (meta.uid() != owner.uid || meta.gid() != owner.gid)
    {
        give_to(path, owner)?;
    }
    Ok(())
}

/// The temporary files [`write_atomic`] would use for `path`, for tests.
#[cfg(test)]
pub(crate) fn temp_files(path: &Path) -> Vec<std::path::PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}
