//! btrfs: the data directory is a subvolume; a snapshot is a read-only snapshot of it in
//! `<data>/.snapshots/<id>` (snapshots are not recursive, so older snapshots are not
//! copied into newer ones). The reason is a file inside the snapshot, written just
//! before it is taken.

use std::ffi::OsStr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{BackendKind, Snapshot, SnapshotBackend, SnapshotError, SnapshotId, View, run};

/// The directory under the data directory that holds the snapshots.
pub const SNAPSHOT_DIR: &str = ".snapshots";
/// The file inside each snapshot that says why it was taken.
pub const REASON_FILE: &str = ".snapshot-reason";

/// The inode number of every btrfs subvolume's root directory.
const SUBVOLUME_ROOT_INODE: u64 = 256;

#[derive(Debug, Clone)]
pub struct Btrfs {
    data_dir: PathBuf,
}

impl Btrfs {
    /// `data_dir` must be a btrfs subvolume of its own (the top of a btrfs file system
    /// is one).
    pub fn at(data_dir: &Path) -> Result<Btrfs, String> {
        let meta =
            std::fs::metadata(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        if meta.ino() != SUBVOLUME_ROOT_INODE {
            return Err(format!(
                "{} is on btrfs but is not a subvolume, so it cannot be snapshotted on its own: \
                 make it one (`btrfs subvolume create {}` on an empty path, then move the data in)",
                data_dir.display(),
                data_dir.display()
            ));
        }
        Ok(Btrfs {
            data_dir: data_dir.to_owned(),
        })
    }

    fn dir(&self) -> PathBuf {
        self.data_dir.join(SNAPSHOT_DIR)
    }

    fn path(&self, id: &SnapshotId) -> PathBuf {
        self.dir().join(id.as_str())
    }
}

fn btrfs(args: &[&OsStr]) -> Result<String, SnapshotError> {
    run("btrfs", "btrfs-progs", args)
}

impl SnapshotBackend for Btrfs {
    fn kind(&self) -> BackendKind {
        BackendKind::Btrfs
    }

    fn create(&self, id: &SnapshotId, reason: &str) -> Result<(), SnapshotError> {
        let dir = self.dir();
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(SnapshotError::io(&dir)(e)),
        }
        let label = self.data_dir.join(REASON_FILE);
        let tmp = self.data_dir.join(format!("{REASON_FILE}.tmp"));
        std::fs::write(&tmp, reason).map_err(SnapshotError::io(&tmp))?;
        std::fs::rename(&tmp, &label).map_err(SnapshotError::io(&label))?;
        let target = self.path(id);
        btrfs(&[
            OsStr::new("subvolume"),
            OsStr::new("snapshot"),
            OsStr::new("-r"),
            self.data_dir.as_os_str(),
            target.as_os_str(),
        ])?;
        Ok(())
    }

    fn list(&self) -> Result<Vec<Snapshot>, SnapshotError> {
        let dir = self.dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SnapshotError::io(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(SnapshotError::io(&dir))?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| SnapshotId::parse(n).ok())
            else {
                continue;
            };
            // Only a finished snapshot is a subvolume; anything else is not one of ours.
            if entry.metadata().map(|m| m.ino()).ok() != Some(SUBVOLUME_ROOT_INODE) {
                continue;
            }
            let reason = std::fs::read_to_string(entry.path().join(REASON_FILE))
                .map(|r| r.trim().to_owned())
                .unwrap_or_default();
            out.push(Snapshot {
                id,
                reason,
                size_bytes: None,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn destroy(&self, id: &SnapshotId) -> Result<(), SnapshotError> {
        let path = self.path(id);
        if !path.exists() {
            return Err(SnapshotError::NotFound(id.to_string()));
        }
        btrfs(&[
            OsStr::new("subvolume"),
            OsStr::new("delete"),
            path.as_os_str(),
        ])?;
        Ok(())
    }

    fn open(&self, id: &SnapshotId) -> Result<View, SnapshotError> {
        let path = self.path(id);
        if !path.is_dir() {
            return Err(SnapshotError::NotFound(id.to_string()));
        }
        Ok(View::at(path))
    }
}
