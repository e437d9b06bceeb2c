//! Snapshots of the data directory: ZFS, btrfs, or none ("plain").
//!
//! One snapshot captures the whole data directory at one instant — PostgreSQL's data and
//! its WAL, the WireGuard registry, the TLS files and, on the appliance image, the config
//! (`config.toml` lives there) — as one recursive ZFS snapshot or one read-only btrfs
//! snapshot of the data directory's subvolume. Both are atomic, so what a snapshot holds
//! is exactly what a power cut at that instant would have left, and PostgreSQL recovers
//! it the way it recovers from a crash. Its documentation says so (PostgreSQL 15, 26.2
//! "File System Level Backup": a consistent snapshot of the data directory, WAL included,
//! needs no server stop; "you can perform a CHECKPOINT before taking the snapshot to
//! reduce recovery time"). The supervisor does that checkpoint just before each snapshot.
//!
//! A snapshot's id is its UTC time and why it was taken: `20261207T150000Z-hourly.daily`
//! (one snapshot can serve several schedules), `…-manual`, `…-update`, `…-migration`,
//! `…-restore` (taken just before a restore, so a restore can itself be undone). The
//! free-text reason travels with the snapshot: a ZFS user property
//! (`contextvault:reason`) or a file inside the btrfs snapshot (`.snapshot-reason`).
//!
//! Restoring copies the restorable parts ([`RESTORED`]) back from a read-only view of the
//! snapshot while PostgreSQL and the vault service are stopped ([`restore`]).

mod btrfs;
mod id;
mod mounts;
pub mod restore;
pub mod retention;
mod zfs;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use btrfs::Btrfs;
pub use id::{Kind, SnapshotId};
pub use restore::{BACKED_UP, RESTORED, finish_interrupted_restore, restore, restore_from_dir};
pub use retention::Retention;
pub use zfs::Zfs;

/// Which backend the config asks for (`[storage] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wanted {
    /// Whatever the data directory is on.
    #[default]
    Auto,
    Zfs,
    Btrfs,
    Plain,
}

impl Wanted {
    pub fn parse(s: &str) -> Option<Wanted> {
        match s {
            "auto" => Some(Wanted::Auto),
            "zfs" => Some(Wanted::Zfs),
            "btrfs" => Some(Wanted::Btrfs),
            "plain" => Some(Wanted::Plain),
            _ => None,
        }
    }
}

/// The backend in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Zfs,
    Btrfs,
    Plain,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Zfs => "zfs",
            BackendKind::Btrfs => "btrfs",
            BackendKind::Plain => "plain",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The data directory cannot take snapshots (plain backend); says why.
    #[error("snapshots are not available: {0}")]
    Unavailable(String),
    /// The config asks for a backend the data directory is not on.
    #[error("{0}")]
    Mismatch(String),
    #[error("there is no snapshot {0}")]
    NotFound(String),
    #[error("`{0}` is not a snapshot id (they look like 20261207T150000Z-hourly)")]
    BadId(String),
    #[error("{program} cannot be run ({source}); install {package}")]
    Missing {
        program: &'static str,
        package: &'static str,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SnapshotError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
        move |source| SnapshotError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// One snapshot as a backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: SnapshotId,
    /// Why it was taken, in words ("hourly", "before the update to 0.2.0", what the
    /// person typed for a manual one).
    pub reason: String,
    /// What it holds that the live data no longer shares (ZFS's `used`), where the
    /// backend can say without a scan.
    pub size_bytes: Option<u64>,
}

/// A way to take, list, open and destroy snapshots of one data directory.
pub trait SnapshotBackend: std::fmt::Debug + Send + Sync {
    fn kind(&self) -> BackendKind;
    /// Takes an atomic snapshot of the whole data directory.
    fn create(&self, id: &SnapshotId, reason: &str) -> Result<(), SnapshotError>;
    /// Every snapshot this appliance took, oldest first.
    fn list(&self) -> Result<Vec<Snapshot>, SnapshotError>;
    fn destroy(&self, id: &SnapshotId) -> Result<(), SnapshotError>;
    /// A read-only view of the snapshot's files, released when dropped.
    fn open(&self, id: &SnapshotId) -> Result<View, SnapshotError>;
    /// Why there are no snapshots, for a backend that cannot take them.
    fn unavailable(&self) -> Option<String> {
        None
    }
}

/// The files of one snapshot, read-only, at [`View::path`].
pub struct View {
    path: PathBuf,
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl View {
    pub(crate) fn at(path: PathBuf) -> View {
        View {
            path,
            release: None,
        }
    }

    pub(crate) fn with_release(path: PathBuf, release: Box<dyn FnOnce() + Send>) -> View {
        View {
            path,
            release: Some(release),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// No snapshots: the data directory is on a file system that cannot take them.
#[derive(Debug, Clone)]
pub struct Plain {
    /// Why, for the dashboard and `config check`.
    pub why: String,
}

impl SnapshotBackend for Plain {
    fn kind(&self) -> BackendKind {
        BackendKind::Plain
    }

    fn create(&self, _: &SnapshotId, _: &str) -> Result<(), SnapshotError> {
        Err(SnapshotError::Unavailable(self.why.clone()))
    }

    fn list(&self) -> Result<Vec<Snapshot>, SnapshotError> {
        Ok(Vec::new())
    }

    fn destroy(&self, id: &SnapshotId) -> Result<(), SnapshotError> {
        Err(SnapshotError::NotFound(id.to_string()))
    }

    fn open(&self, id: &SnapshotId) -> Result<View, SnapshotError> {
        Err(SnapshotError::NotFound(id.to_string()))
    }

    fn unavailable(&self) -> Option<String> {
        Some(self.why.clone())
    }
}

/// Picks the backend for `data_dir` (which must exist): what it is on, checked against
/// what the config asks for. A mismatch is an error that says what to change.
pub fn detect(data_dir: &Path, wanted: Wanted) -> Result<Box<dyn SnapshotBackend>, SnapshotError> {
    let data_dir = data_dir
        .canonicalize()
        .map_err(SnapshotError::io(data_dir))?;
    let mount = mounts::containing(&data_dir).map_err(SnapshotError::io(&data_dir))?;
    let found: Result<Box<dyn SnapshotBackend>, String> = match mount.fstype.as_str() {
        "btrfs" => Btrfs::at(&data_dir).map(|b| Box::new(b) as Box<dyn SnapshotBackend>),
        "zfs" | "fuse.zfs" => {
            Zfs::at(&data_dir, &mount).map(|z| Box::new(z) as Box<dyn SnapshotBackend>)
        }
        other => Err(format!(
            "{} is on {other}, which cannot take snapshots: put it on a btrfs subvolume or a ZFS dataset",
            data_dir.display()
        )),
    };
    match (wanted, found) {
        (Wanted::Auto, Ok(backend)) => Ok(backend),
        (Wanted::Auto, Err(why)) | (Wanted::Plain, Err(why)) => Ok(Box::new(Plain { why })),
        (Wanted::Plain, Ok(backend)) => Ok(Box::new(Plain {
            why: format!(
                "the config says [storage] backend = \"plain\" (the data directory is on {})",
                backend.kind()
            ),
        })),
        (Wanted::Zfs, Ok(b)) if b.kind() == BackendKind::Zfs => Ok(b),
        (Wanted::Btrfs, Ok(b)) if b.kind() == BackendKind::Btrfs => Ok(b),
        (Wanted::Zfs | Wanted::Btrfs, Ok(b)) => Err(SnapshotError::Mismatch(format!(
            "[storage] backend = \"{}\", but {} is on {}: set backend = \"auto\" or \"{}\", or move the data directory",
            wanted_name(wanted),
            data_dir.display(),
            b.kind(),
            b.kind()
        ))),
        (Wanted::Zfs | Wanted::Btrfs, Err(why)) => Err(SnapshotError::Mismatch(format!(
            "[storage] backend = \"{}\", but {why}",
            wanted_name(wanted)
        ))),
    }
}

fn wanted_name(wanted: Wanted) -> &'static str {
    match wanted {
        Wanted::Auto => "auto",
        Wanted::Zfs => "zfs",
        Wanted::Btrfs => "btrfs",
        Wanted::Plain => "plain",
    }
}

/// Runs a storage command; its stderr's last line is the error.
pub(crate) fn run(
    program: &'static str,
    package: &'static str,
    args: &[&std::ffi::OsStr],
) -> Result<String, SnapshotError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| SnapshotError::Missing {
            program,
            package,
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_owned();
    let command = std::iter::once(program.to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    Err(SnapshotError::Command { command, message })
}
