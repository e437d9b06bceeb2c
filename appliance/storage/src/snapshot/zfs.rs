//! ZFS: the data directory is a dataset's mount point; a snapshot is one recursive
//! snapshot of that dataset and its children (`zfs snapshot -r`, atomic across all of
//! them), its reason a user property. Works with OpenZFS and with zfs-fuse.
//!
//! A snapshot's files are read through `<data>/.zfs/snapshot/<id>` where the file system
//! offers it (OpenZFS), else through a temporary clone mounted under the run directory
//! (zfs-fuse has no `.zfs`), destroyed when the view is dropped.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::mounts::Mount;
use super::{BackendKind, Snapshot, SnapshotBackend, SnapshotError, SnapshotId, View, run};

/// The user property that holds a snapshot's reason.
pub const REASON_PROPERTY: &str = "contextvault:reason";

#[derive(Debug, Clone)]
pub struct Zfs {
    data_dir: PathBuf,
    dataset: String,
}

fn zfs<S: AsRef<OsStr>>(args: &[S]) -> Result<String, SnapshotError> {
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    run("zfs", "zfsutils-linux (or zfs-fuse)", &args)
}

impl Zfs {
    /// `data_dir` must be the mount point of the dataset `mount` names.
    pub(super) fn at(data_dir: &Path, mount: &Mount) -> Result<Zfs, String> {
        if mount.mount_point != data_dir {
            return Err(format!(
                "{} is inside the ZFS dataset {} (mounted at {}), not a dataset of its own: \
                 create one for it (`zfs create -o mountpoint={} {}/contextvault`)",
                data_dir.display(),
                mount.source,
                mount.mount_point.display(),
                data_dir.display(),
                mount.source
            ));
        }
        let zfs = Zfs {
            data_dir: data_dir.to_owned(),
            dataset: mount.source.clone(),
        };
        zfs.list()
            .map_err(|e| format!("the ZFS dataset {} cannot be read: {e}", zfs.dataset))?;
        Ok(zfs)
    }

    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    fn name(&self, id: &SnapshotId) -> String {
        format!("{}@{}", self.dataset, id)
    }

    fn exists(&self, id: &SnapshotId) -> Result<bool, SnapshotError> {
        Ok(self.list()?.iter().any(|s| &s.id == id))
    }

    /// A clone of the snapshot (and of its children's snapshots), mounted read-only.
    fn clone_view(&self, id: &SnapshotId) -> Result<View, SnapshotError> {
        let pool = self.dataset.split('/').next().unwrap_or(&self.dataset);
        let clone = format!("{pool}/contextvault-view-{id}");
        let mount = self
            .data_dir
            .join("run")
            .join(format!("snapshot-view-{id}"));
        // A view left by a crash.
        let _ = destroy_clone(&clone);
        let children = zfs(&["list", "-H", "-o", "name", "-r", &self.dataset])?;
        let mut made = Vec::new();
        for dataset in children.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let rel = dataset
                .strip_prefix(&self.dataset)
                .unwrap_or_default()
                .to_owned();
            let target = format!("{clone}{rel}");
            let mut args: Vec<String> = vec!["clone".into(), "-o".into(), "readonly=on".into()];
            if rel.is_empty() {
                args.extend(["-o".into(), format!("mountpoint={}", mount.display())]);
            }
            args.extend([format!("{dataset}@{id}"), target.clone()]);
            if let Err(e) = zfs(&args) {
                let _ = destroy_clone(&clone);
                return Err(e);
            }
            made.push(target);
        }
        Ok(View::with_release(
            mount,
            Box::new(move || {
                if let Err(e) = destroy_clone(&clone) {
                    tracing::warn!(clone = %clone, error = %e, "a snapshot's view could not be destroyed");
                }
            }),
        ))
    }
}

/// zfs-fuse reports a just-unmounted dataset busy for a moment.
fn destroy_clone(clone: &str) -> Result<(), SnapshotError> {
    let mut last = None;
    for _ in 0..20 {
        match zfs(&["destroy", "-r", clone]) {
            Ok(_) => return Ok(()),
            Err(SnapshotError::Command { message, .. }) if message.contains("does not exist") => {
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(last.unwrap_or_else(|| SnapshotError::NotFound(clone.to_owned())))
}

impl SnapshotBackend for Zfs {
    fn kind(&self) -> BackendKind {
        BackendKind::Zfs
    }

    fn create(&self, id: &SnapshotId, reason: &str) -> Result<(), SnapshotError> {
        let property = format!("{REASON_PROPERTY}={}", one_line(reason));
        zfs(&[
            "snapshot",
            "-r",
            "-o",
            property.as_str(),
            self.name(id).as_str(),
        ])?;
        Ok(())
    }

    fn list(&self) -> Result<Vec<Snapshot>, SnapshotError> {
        let out = zfs(&[
            "get",
            "-H",
            "-p",
            "-o",
            "name,property,value",
            "-r",
            &format!("used,{REASON_PROPERTY}"),
            &self.dataset,
        ])?;
        let mut found: BTreeMap<SnapshotId, Snapshot> = BTreeMap::new();
        for line in out.lines() {
            let mut parts = line.splitn(3, '\t');
            let (Some(name), Some(property), Some(value)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            // This dataset's snapshots or its children's (`<dataset>/x@id`).
            let Some((dataset, snap)) = name.split_once('@') else {
                continue;
            };
            let ours = dataset == self.dataset
                || dataset
                    .strip_prefix(&self.dataset)
                    .is_some_and(|rest| rest.starts_with('/'));
            let Some(id) = ours.then(|| SnapshotId::parse(snap).ok()).flatten() else {
                continue;
            };
            let top = dataset == self.dataset;
            let entry = found.entry(id.clone()).or_insert(Snapshot {
                id,
                reason: String::new(),
                size_bytes: Some(0),
            });
            match property {
                "used" => {
                    let used = value.trim().parse::<u64>().unwrap_or(0);
                    entry.size_bytes = entry.size_bytes.map(|s| s + used);
                }
                p if p == REASON_PROPERTY && top && value != "-" => {
                    entry.reason = value.to_owned();
                }
                _ => {}
            }
        }
        Ok(found.into_values().collect())
    }

    fn destroy(&self, id: &SnapshotId) -> Result<(), SnapshotError> {
        if !self.exists(id)? {
            return Err(SnapshotError::NotFound(id.to_string()));
        }
        zfs(&["destroy", "-r", self.name(id).as_str()])?;
        Ok(())
    }

    fn open(&self, id: &SnapshotId) -> Result<View, SnapshotError> {
        if !self.exists(id)? {
            return Err(SnapshotError::NotFound(id.to_string()));
        }
        let snapdir = self.data_dir.join(".zfs/snapshot").join(id.as_str());
        if snapdir.is_dir() {
            return Ok(View::at(snapdir));
        }
        self.clone_view(id)
    }
}

/// A property value is one line; a reason is shown, never parsed.
fn one_line(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}
