//! The privileged operations the jail is made of, behind one trait.
//!
//! Every namespace, mount, cgroup, capability and prctl call the jail makes goes through
//! [`JailOps`], so that the order of the steps and the handling of a step that fails (the
//! protection is reported missing, and the steps that depend on it are skipped) can be
//! tested without a kernel: [`crate::RecordingOps`] records the calls and fails the ones a
//! test names; [`crate::LinuxOps`] makes them. The methods are deliberately small — one
//! system call, or one file in `/proc` or the cgroup tree — so that the sequencing in
//! `plan.rs` holds every decision.
//!
//! Errors are plain `std::io::Error`s carrying the path or value they failed on: the
//! message ends up, word for word, in the [`crate::JailReport`] an admin reads.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A namespace the jail unshares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    User,
    Pid,
    Net,
    Mount,
    Ipc,
    Uts,
}

impl Namespace {
    pub fn name(self) -> &'static str {
        match self {
            Namespace::User => "user",
            Namespace::Pid => "pid",
            Namespace::Net => "network",
            Namespace::Mount => "mount",
            Namespace::Ipc => "ipc",
            Namespace::Uts => "uts",
        }
    }
}

/// Which cgroup hierarchy the machine runs, detected once when a jail is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    /// One hierarchy per controller (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/pids`, …).
    V1,
    /// The unified hierarchy (`/sys/fs/cgroup` is a `cgroup2` mount).
    V2,
}

impl std::fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        })
    }
}

/// What a path on the host is, so the jail can recreate it: a symlink is copied as a
/// symlink (`/lib -> usr/lib` on a merged-/usr system), a directory or a file is
/// bind-mounted onto a mount point of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    Directory,
    File,
    Symlink(PathBuf),
}

/// One line of `/proc/self/uid_map` or `gid_map`: `inside` in the new user namespace is
/// `outside` in the namespace that created it. The jail always maps exactly one id, which
/// the kernel allows a process to do for its own id without privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
}

/// Every privileged operation the jail performs. See the module docs.
pub trait JailOps {
    /// The effective uid of the calling process (0: the jail is built as root).
    fn effective_uid(&mut self) -> u32;
    /// The effective gid of the calling process.
    fn effective_gid(&mut self) -> u32;

    // --- cgroups (made by the spawning process, around the jail) ---

    /// Which hierarchy this machine runs.
    fn cgroup_version(&mut self) -> io::Result<CgroupVersion>;
    /// Creates the cgroup `path` (relative to the root of each hierarchy) with the memory,
    /// pids and cpu controllers.
    fn cgroup_create(&mut self, path: &str) -> io::Result<()>;
    /// Sets the memory limit (and the same limit on memory + swap, so swap is no way
    /// around it, where the kernel accounts swap).
    fn cgroup_set_memory(&mut self, path: &str, bytes: u64) -> io::Result<()>;
    /// Sets the most processes and threads the cgroup may hold at once.
    fn cgroup_set_pids(&mut self, path: &str, max: u64) -> io::Result<()>;
    /// Sets the CFS bandwidth: `quota_us` of CPU time every `period_us`.
    fn cgroup_set_cpu(&mut self, path: &str, quota_us: u64, period_us: u64) -> io::Result<()>;
    /// Moves process `pid` (all its threads) into the cgroup.
    fn cgroup_add_pid(&mut self, path: &str, pid: u32) -> io::Result<()>;
    /// How many processes the OOM killer killed in the cgroup.
    fn cgroup_oom_kills(&mut self, path: &str) -> io::Result<u64>;
    /// SIGKILLs every process still in the cgroup.
    fn cgroup_kill_all(&mut self, path: &str) -> io::Result<()>;
    /// Removes the (empty) cgroup.
    fn cgroup_remove(&mut self, path: &str) -> io::Result<()>;

    // --- namespaces ---

    /// Moves the calling process into a new namespace of this kind (for `Pid`: its next
    /// child is the first process of a new pid namespace).
    fn unshare(&mut self, ns: Namespace) -> io::Result<()>;
    /// Writes `deny` to `/proc/self/setgroups`, then the gid and uid maps of the calling
    /// process's (new) user namespace.
    fn write_id_maps(&mut self, uid: IdMap, gid: IdMap) -> io::Result<()>;

    // --- the file system ---

    /// Makes every mount in the (new) mount namespace private, so nothing the jail mounts
    /// propagates back to the host, and nothing the host mounts later appears in the jail.
    fn make_mounts_private(&mut self) -> io::Result<()>;
    /// Mounts a tmpfs of at most `size_bytes` (nosuid, nodev, noexec) with root mode `mode`.
    fn mount_tmpfs(&mut self, target: &Path, size_bytes: u64, mode: u32) -> io::Result<()>;
    /// What `path` is (not following a final symlink).
    fn inspect(&mut self, path: &Path) -> io::Result<PathKind>;
    /// Creates a directory and its missing parents (mode 0755).
    fn create_dir(&mut self, path: &Path) -> io::Result<()>;
    /// Creates an empty file (and missing parent directories) to bind a file onto.
    fn create_file(&mut self, path: &Path) -> io::Result<()>;
    /// Creates the symlink `link` -> `target`.
    fn create_symlink(&mut self, target: &Path, link: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&mut self, path: &Path) -> io::Result<()>;
    /// Makes `new_root` the root of the mount namespace, the old root reachable at
    /// `put_old` (until it is unmounted), and changes to the new `/`.
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    /// Bind-mounts `source` onto `target` read-only, nosuid and nodev (keeping the flags
    /// the source's mount already had, such as noexec).
    fn bind_mount_readonly(&mut self, source: &Path, target: &Path) -> io::Result<()>;
    /// Bind-mounts the device node `source` onto `target`: read-only, nosuid, noexec (a
    /// read-only mount does not stop writes to `/dev/null`, which is what the jail needs).
    fn bind_device(&mut self, source: &Path, target: &Path) -> io::Result<()>;
    /// Mounts a procfs for the calling process's pid namespace.
    fn mount_proc(&mut self, target: &Path) -> io::Result<()>;
    /// Makes the mount at `target` read-only.
    fn remount_readonly(&mut self, target: &Path) -> io::Result<()>;
    /// Detaches the mount at `target` and everything below it.
    fn unmount_detached(&mut self, target: &Path) -> io::Result<()>;

    // --- uts and network ---

    fn set_hostname(&mut self, name: &str) -> io::Result<()>;
    /// Brings the loopback interface of the (new) network namespace up.
    fn loopback_up(&mut self) -> io::Result<()>;

    // --- identity, capabilities, prctl ---

    /// Drops every capability from the bounding set (needs `CAP_SETPCAP`).
    fn drop_bounding_set(&mut self) -> io::Result<()>;
    /// Clears the supplementary groups and sets real, effective and saved uid and gid.
    fn set_uid_gid(&mut self, uid: u32, gid: u32) -> io::Result<()>;
    /// `PR_SET_DUMPABLE`: a process that just changed uid is not dumpable, which makes its
    /// `/proc/self` files root's; it must be dumpable again to write its own id maps.
    fn set_dumpable(&mut self, dumpable: bool) -> io::Result<()>;
    /// `RLIMIT_CORE` = 0, soft and hard: no core file with the worker's memory in it.
    fn disable_core_dumps(&mut self) -> io::Result<()>;
    /// `PR_SET_NO_NEW_PRIVS`: no exec can grant privileges (setuid bits, file capabilities).
    fn set_no_new_privs(&mut self) -> io::Result<()>;
    /// Clears the bounding, ambient, inheritable, permitted and effective sets.
    fn drop_all_capabilities(&mut self) -> io::Result<()>;
    /// `PR_SET_PDEATHSIG` = SIGKILL: the process dies with its parent.
    fn set_parent_death_signal(&mut self) -> io::Result<()>;
}
