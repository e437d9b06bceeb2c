//! Creating cgroups on the unified (v2) hierarchy without touching what is not ours.
//!
//! cgroups-rs 0.3.4's `Cgroup::create` on v2 writes `+memory`, `+pids`, `+cpu` into the
//! `cgroup.subtree_control` of *every* ancestor, from the hierarchy root down, and
//! ignores every error of those writes (`enable_controllers` in its `cgroup.rs`). Under
//! systemd with `Delegate=yes` the ancestors of the supervisor's unit — the root and
//! `system.slice` — belong to systemd, which has already enabled the delegated
//! controllers there, so those writes happen to be no-ops; but they are writes into
//! systemd's files, and a write that fails for a real reason (the supervisor's own cgroup
//! still holding a process, say: the "no internal processes" rule) is silently dropped,
//! to surface later as a missing `memory.max`. Here a `cgroup.subtree_control` is read
//! first and written only when it lacks one of the controllers — so the root and
//! `system.slice` are only read, and in the supervisor's delegated subtree only its own
//! files are written — and a failed write is an error naming the file.

use std::fs;
use std::io;
use std::path::Path;

/// Where the unified hierarchy is mounted.
pub const UNIFIED_ROOT: &str = "/sys/fs/cgroup";

/// Enables `controllers` for the children of the cgroup at `dir` (a directory of the
/// hierarchy), writing `dir/cgroup.subtree_control` only if one is missing there, all
/// missing ones in one write (`+cpu +memory`). Errors name the file.
pub fn enable_controllers(dir: &Path, controllers: &[&str]) -> io::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file)
        .map_err(|e| io::Error::new(e.kind(), format!("read {}: {e}", file.display())))?;
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let line = missing.join(" ");
    fs::write(&file, &line).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("write `{line}` to {}: {e}", file.display()),
        )
    })
}

/// Creates the cgroup `path` (relative to `root`, the hierarchy's mount point), and the
/// cgroups above it that do not exist yet, with `controllers` enabled from `root` down to
/// its parent (a cgroup's own `subtree_control` is for its children: the new cgroup's is
/// left alone). Ancestors that already enable them are only read.
pub fn create(root: &Path, path: &str, controllers: &[&str]) -> io::Result<()> {
    let mut dir = root.to_path_buf();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        enable_controllers(&dir, controllers)?;
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("create {}: {e}", dir.display()),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 3] = ["memory", "pids", "cpu"];

    fn subtree(dir: &Path) -> String {
        fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap()
    }

    /// The layout under systemd with `Delegate=yes`: the root and system.slice enable
    /// everything already; the unit's cgroup enables them for its children.
    fn systemd_tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let unit = root.path().join("system.slice/contextvault.service");
        fs::create_dir_all(unit.join("workers")).unwrap();
        let write = |dir: &Path, text: &str| {
            fs::write(dir.join("cgroup.subtree_control"), text).unwrap();
        };
        write(root.path(), "cpuset cpu io memory hugetlb pids rdma misc\n");
        write(&root.path().join("system.slice"), "cpu io memory pids\n");
        write(&unit, "cpu memory pids\n");
        // `pids` is not enabled for the workers yet.
        write(&unit.join("workers"), "cpu memory\n");
        root
    }

    #[test]
    fn only_files_that_lack_a_controller_are_written() {
        let root = systemd_tree();
        let r = root.path();
        create(
            r,
            "system.slice/contextvault.service/workers/worker-7-0",
            &ALL,
        )
        .unwrap();
        // systemd's files are as they were (a write would have replaced their text).
        assert_eq!(subtree(r), "cpuset cpu io memory hugetlb pids rdma misc\n");
        assert_eq!(subtree(&r.join("system.slice")), "cpu io memory pids\n");
        let unit = r.join("system.slice/contextvault.service");
        assert_eq!(subtree(&unit), "cpu memory pids\n");
        // Only the missing one, in one write.
        assert_eq!(subtree(&unit.join("workers")), "+pids");
        assert!(unit.join("workers/worker-7-0").is_dir());
        // The new cgroup's own subtree_control is not touched.
        assert!(
            !unit
                .join("workers/worker-7-0/cgroup.subtree_control")
                .exists()
        );
    }

    #[test]
    fn a_cgroup_that_enables_nothing_gets_every_controller() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        create(root.path(), "contextvault-workers", &ALL).unwrap();
        assert_eq!(subtree(root.path()), "+memory +pids +cpu");
        assert!(root.path().join("contextvault-workers").is_dir());
    }

    #[test]
    fn errors_name_the_file() {
        let root = tempfile::tempdir().unwrap();
        // No cgroup.subtree_control: not a cgroup directory.
        let e = create(root.path(), "a/b", &ALL).unwrap_err();
        let file = root.path().join("cgroup.subtree_control");
        assert!(
            e.to_string().contains(&format!("read {}", file.display())),
            "{e}"
        );
        // A file where a directory should be created.
        fs::write(&file, "memory pids cpu").unwrap();
        fs::write(root.path().join("a"), "").unwrap();
        let e = create(root.path(), "a/b", &ALL).unwrap_err();
        assert!(e.to_string().contains("/a/cgroup.subtree_control"), "{e}");
    }
}
