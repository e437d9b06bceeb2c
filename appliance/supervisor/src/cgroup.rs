//! Worker cgroups inside the systemd unit's delegated subtree (cgroup v2).
//!
//! On an appliance the supervisor runs as root in `contextvault.service`, which has
//! `Delegate=yes`: systemd hands the unit's cgroup (`/system.slice/contextvault.service`)
//! to the supervisor and promises not to touch what is below it. cgroup v2 allows no
//! processes in a cgroup whose children have controllers enabled (the "no internal
//! processes" rule), so at start, before it starts any child, the supervisor:
//!
//! 1. moves itself into a leaf `<own>/supervisor` (writing its pid to `cgroup.procs`
//!    moves every thread); PostgreSQL and the vault service, started later, inherit it;
//! 2. enables `+cpu +memory +pids` in `<own>/cgroup.subtree_control`;
//! 3. creates `<own>/workers` and enables the same there;
//! 4. gives the sandbox `cgroup_parent = <own>/workers` (relative to the hierarchy root,
//!    as `cv_sandbox::JailSpec` requires), so each worker's cgroup is
//!    `<own>/workers/worker-<pid>-<n>`. The sandbox enables controllers only where they
//!    are missing (`cv_sandbox::cgroup2`), so the root and `system.slice` are only read.
//!
//! Elsewhere — cgroup v1 (or hybrid), not root, or already in the root cgroup (no
//! systemd unit) — nothing changes and workers go under
//! [`DEFAULT_WORKER_PARENT`], as before.
//!
//! A failure (the unit without `Delegate=yes`, or with `ProtectControlGroups=`, which
//! makes the tree read-only) is an error naming the file; the supervisor logs it and
//! keeps [`DEFAULT_WORKER_PARENT`], so the vault still serves and the workers' jails
//! report their cgroup limits missing.
//!
//! The decision ([`plan`]) is a pure function of `/proc/self/cgroup`'s text and two
//! flags; the side effects ([`delegate`]) take the hierarchy's mount point as a
//! parameter, so both are unit-tested without a kernel.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::SupervisorError;

/// The workers' parent cgroup when there is no delegated subtree (relative to the root of
/// each hierarchy); what `cv_sandbox::JailSpec::new` uses.
pub const DEFAULT_WORKER_PARENT: &str = "contextvault-workers";

/// The controllers the worker cgroups need (their limits: memory, pids, CPU).
pub const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// The supervisor's own cgroup on the unified hierarchy, which systemd delegated to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// Relative to the hierarchy's root, e.g. `system.slice/contextvault.service`.
    pub own: PathBuf,
}

impl Delegation {
    /// The leaf the supervisor (and the children it starts, but the workers) live in.
    pub fn supervisor_leaf(&self) -> PathBuf {
        self.own.join("supervisor")
    }

    /// The parent of every worker's cgroup.
    pub fn workers(&self) -> PathBuf {
        self.own.join("workers")
    }
}

/// Whether the supervisor should build its workers' cgroups inside its own cgroup:
/// only on the unified hierarchy (`unified_v2`), as root, and when `/proc/self/cgroup`
/// (its text, `proc_self_cgroup`) puts it somewhere other than the root cgroup (line
/// `0::/system.slice/contextvault.service`). `None`: keep [`DEFAULT_WORKER_PARENT`].
pub fn plan(proc_self_cgroup: &str, unified_v2: bool, root: bool) -> Option<Delegation> {
    if !unified_v2 || !root {
        return None;
    }
    // On the unified hierarchy the only line is `0::<path>` (hierarchy 0, no controller
    // list); on a hybrid one the v1 lines come first.
    let path = proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?
        .trim();
    let own = path.strip_prefix('/')?;
    if own.is_empty()
        || own
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return None;
    }
    Some(Delegation {
        own: PathBuf::from(own),
    })
}

/// Moves process `pid` (the supervisor) into `<own>/supervisor` and enables the
/// controllers for `<own>`'s children and for `<own>/workers`'s (which it creates), under
/// `hierarchy` (the unified hierarchy's mount point, `/sys/fs/cgroup`). Returns the
/// workers' parent, relative to the hierarchy's root. The error names the file that
/// failed.
pub fn delegate(hierarchy: &Path, d: &Delegation, pid: u32) -> Result<PathBuf, SupervisorError> {
    let own = hierarchy.join(&d.own);
    let leaf = hierarchy.join(d.supervisor_leaf());
    let workers = hierarchy.join(d.workers());
    let fail = |path: PathBuf| move |source: io::Error| SupervisorError::Cgroup { path, source };

    create_dir(&leaf).map_err(fail(leaf.clone()))?;
    let procs = leaf.join("cgroup.procs");
    fs::write(&procs, pid.to_string()).map_err(fail(procs))?;
    // Only now, with no process left in <own>, may its children have controllers.
    cv_sandbox::cgroup2::enable_controllers(&own, &CONTROLLERS)
        .map_err(fail(own.join("cgroup.subtree_control")))?;
    create_dir(&workers).map_err(fail(workers.clone()))?;
    cv_sandbox::cgroup2::enable_controllers(&workers, &CONTROLLERS)
        .map_err(fail(workers.join("cgroup.subtree_control")))?;
    Ok(d.workers())
}

fn create_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// The workers' cgroup parent for this process: delegated (and set up) when [`plan`]
/// says so, else [`DEFAULT_WORKER_PARENT`]. Called at start, before any child exists.
pub fn worker_parent() -> Result<PathBuf, SupervisorError> {
    use cv_sandbox::JailOps as _;
    let unified = matches!(
        cv_sandbox::LinuxOps::new().cgroup_version(),
        Ok(cv_sandbox::CgroupVersion::V2)
    );
    let root = nix::unistd::Uid::effective().is_root();
    let text = if unified && root {
        let file = Path::new("/proc/self/cgroup");
        fs::read_to_string(file).map_err(|source| SupervisorError::Cgroup {
            path: file.to_owned(),
            source,
        })?
    } else {
        String::new()
    };
    let Some(delegation) = plan(&text, unified, root) else {
        return Ok(PathBuf::from(DEFAULT_WORKER_PARENT));
    };
    let parent = delegate(
        Path::new(cv_sandbox::cgroup2::UNIFIED_ROOT),
        &delegation,
        std::process::id(),
    )?;
    tracing::info!(
        supervisor = %delegation.supervisor_leaf().display(),
        workers = %parent.display(),
        "running in a delegated cgroup: workers' cgroups go inside it"
    );
    Ok(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "0::/system.slice/contextvault.service\n";

    #[test]
    fn a_root_supervisor_in_a_unit_on_v2_delegates() {
        let d = plan(UNIT, true, true).expect("delegates");
        assert_eq!(d.own, Path::new("system.slice/contextvault.service"));
        assert_eq!(
            d.supervisor_leaf(),
            Path::new("system.slice/contextvault.service/supervisor")
        );
        assert_eq!(
            d.workers(),
            Path::new("system.slice/contextvault.service/workers")
        );
        // A hybrid hierarchy's v1 lines come first; only the `0::` line counts.
        let hybrid =
            "12:pids:/system.slice/x.service\n1:name=systemd:/x\n0::/system.slice/x.service\n";
        assert_eq!(
            plan(hybrid, true, true).map(|d| d.own),
            Some(PathBuf::from("system.slice/x.service"))
        );
    }

    #[test]
    fn elsewhere_nothing_changes() {
        // cgroup v1 (as on the development machines), or not root.
        assert_eq!(plan(UNIT, false, true), None);
        assert_eq!(plan(UNIT, true, false), None);
        // Already at the root (no systemd unit), or no v2 line, or a path to distrust.
        assert_eq!(plan("0::/\n", true, true), None);
        assert_eq!(plan("9:pids:/\n1:name=systemd:/\n", true, true), None);
        assert_eq!(plan("", true, true), None);
        assert_eq!(plan("0::/a/../b\n", true, true), None);
        assert_eq!(plan("0::relative\n", true, true), None);
    }

    /// A fake hierarchy: the unit's cgroup as systemd leaves it (no controllers enabled
    /// for its children yet).
    fn hierarchy() -> (tempfile::TempDir, Delegation) {
        let root = tempfile::tempdir().unwrap();
        let d = plan(UNIT, true, true).unwrap();
        let own = root.path().join(&d.own);
        fs::create_dir_all(own.join("workers")).unwrap();
        fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        // In a real hierarchy the kernel makes this file with the directory.
        fs::write(own.join("workers/cgroup.subtree_control"), "memory\n").unwrap();
        (root, d)
    }

    #[test]
    fn delegating_moves_the_supervisor_to_a_leaf_and_enables_the_controllers() {
        let (root, d) = hierarchy();
        let parent = delegate(root.path(), &d, 4242).unwrap();
        assert_eq!(parent, d.workers());
        let own = root.path().join(&d.own);
        let read = |p: &str| fs::read_to_string(own.join(p)).unwrap();
        assert_eq!(read("supervisor/cgroup.procs"), "4242");
        assert_eq!(read("cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(read("workers/cgroup.subtree_control"), "+cpu +pids");
    }

    #[test]
    fn a_failure_names_the_file() {
        let (root, d) = hierarchy();
        let own = root.path().join(&d.own);
        fs::remove_file(own.join("cgroup.subtree_control")).unwrap();
        let e = delegate(root.path(), &d, 1).unwrap_err().to_string();
        assert!(
            e.contains(&own.join("cgroup.subtree_control").display().to_string()),
            "{e}"
        );
        // The supervisor was moved before the controllers were enabled.
        assert!(own.join("supervisor/cgroup.procs").exists());
    }
}
