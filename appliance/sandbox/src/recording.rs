//! A fake [`JailOps`] that records every call in order and fails the ones it is told to.
//!
//! For unit tests of the jail's sequencing, here and in the supervisor: nothing it does
//! touches the machine. Clones share one log, so a test can keep a handle on the calls
//! made through a clone it handed over.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;

use crate::ops::{CgroupVersion, IdMap, JailOps, Namespace, PathKind};

/// One recorded call, with its arguments. Queries (`effective_uid`, `inspect`,
/// `cgroup_version`, `cgroup_oom_kills`) are not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    CgroupCreate(String),
    CgroupSetMemory(String, u64),
    CgroupSetPids(String, u64),
    CgroupSetCpu(String, u64, u64),
    CgroupAddPid(String, u32),
    CgroupKillAll(String),
    CgroupRemove(String),
    Unshare(Namespace),
    WriteIdMaps { uid: IdMap, gid: IdMap },
    MakeMountsPrivate,
    MountTmpfs(PathBuf, u64, u32),
    CreateDir(PathBuf),
    CreateFile(PathBuf),
    CreateSymlink { target: PathBuf, link: PathBuf },
    RemoveDir(PathBuf),
    PivotRoot(PathBuf, PathBuf),
    BindMountReadonly(PathBuf, PathBuf),
    BindDevice(PathBuf, PathBuf),
    MountProc(PathBuf),
    RemountReadonly(PathBuf),
    UnmountDetached(PathBuf),
    SetHostname(String),
    LoopbackUp,
    DropBoundingSet,
    SetUidGid(u32, u32),
    SetDumpable(bool),
    DisableCoreDumps,
    SetNoNewPrivs,
    DropAllCapabilities,
    SetParentDeathSignal,
}

impl Call {
    /// The [`JailOps`] method's name, as [`RecordingOps::fail`] takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Call::CgroupCreate(..) => "cgroup_create",
            Call::CgroupSetMemory(..) => "cgroup_set_memory",
            Call::CgroupSetPids(..) => "cgroup_set_pids",
            Call::CgroupSetCpu(..) => "cgroup_set_cpu",
            Call::CgroupAddPid(..) => "cgroup_add_pid",
            Call::CgroupKillAll(..) => "cgroup_kill_all",
            Call::CgroupRemove(..) => "cgroup_remove",
            Call::Unshare(..) => "unshare",
            Call::WriteIdMaps { .. } => "write_id_maps",
            Call::MakeMountsPrivate => "make_mounts_private",
            Call::MountTmpfs(..) => "mount_tmpfs",
            Call::CreateDir(..) => "create_dir",
            Call::CreateFile(..) => "create_file",
            Call::CreateSymlink { .. } => "create_symlink",
            Call::RemoveDir(..) => "remove_dir",
            Call::PivotRoot(..) => "pivot_root",
            Call::BindMountReadonly(..) => "bind_mount_readonly",
            Call::BindDevice(..) => "bind_device",
            Call::MountProc(..) => "mount_proc",
            Call::RemountReadonly(..) => "remount_readonly",
            Call::UnmountDetached(..) => "unmount_detached",
            Call::SetHostname(..) => "set_hostname",
            Call::LoopbackUp => "loopback_up",
            Call::DropBoundingSet => "drop_bounding_set",
            Call::SetUidGid(..) => "set_uid_gid",
            Call::SetDumpable(..) => "set_dumpable",
            Call::DisableCoreDumps => "disable_core_dumps",
            Call::SetNoNewPrivs => "set_no_new_privs",
            Call::DropAllCapabilities => "drop_all_capabilities",
            Call::SetParentDeathSignal => "set_parent_death_signal",
        }
    }
}

type Matcher = Box<dyn Fn(&Call) -> bool + Send>;

struct Inner {
    calls: Vec<Call>,
    failures: Vec<(Matcher, Errno)>,
    uid: u32,
    gid: u32,
    cgroup: Option<CgroupVersion>,
    kinds: HashMap<PathBuf, PathKind>,
    oom_kills: u64,
}

/// See the module docs.
#[derive(Clone)]
pub struct RecordingOps {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for RecordingOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingOps")
            .field("calls", &self.lock().calls)
            .finish_non_exhaustive()
    }
}

impl RecordingOps {
    /// A fake machine on which the caller is root and cgroup v2 is mounted.
    pub fn root() -> RecordingOps {
        RecordingOps::as_user(0, 0)
    }

    /// A fake machine on which the caller has this uid and gid.
    pub fn as_user(uid: u32, gid: u32) -> RecordingOps {
        RecordingOps {
            inner: Arc::new(Mutex::new(Inner {
                calls: Vec::new(),
                failures: Vec::new(),
                uid,
                gid,
                cgroup: Some(CgroupVersion::V2),
                kinds: HashMap::new(),
                oom_kills: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock has failed already; the log is
        // still worth reading.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every later call of the method `name` fails with `errno`.
    pub fn fail(&self, name: &'static str, errno: Errno) -> &RecordingOps {
        self.fail_when(move |c| c.name() == name, errno)
    }

    /// Every later call matching `when` fails with `errno`.
    pub fn fail_when(
        &self,
        when: impl Fn(&Call) -> bool + Send + 'static,
        errno: Errno,
    ) -> &RecordingOps {
        self.lock().failures.push((Box::new(when), errno));
        self
    }

    /// What `inspect` answers for `path` (by default: a directory).
    pub fn set_path_kind(&self, path: impl Into<PathBuf>, kind: PathKind) -> &RecordingOps {
        self.lock().kinds.insert(path.into(), kind);
        self
    }

    /// The hierarchy `cgroup_version` reports; `None`: no cgroups at all.
    pub fn set_cgroup_version(&self, version: Option<CgroupVersion>) -> &RecordingOps {
        self.lock().cgroup = version;
        self
    }

    pub fn set_oom_kills(&self, n: u64) -> &RecordingOps {
        self.lock().oom_kills = n;
        self
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The names of the calls made so far, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.lock().calls.iter().map(Call::name).collect()
    }

    /// Forgets the calls made so far.
    pub fn clear(&self) {
        self.lock().calls.clear();
    }

    fn record(&self, call: Call) -> io::Result<()> {
        let mut inner = self.lock();
        let failure = inner
            .failures
            .iter()
            .find(|(when, _)| when(&call))
            .map(|(_, errno)| *errno);
        let name = call.name();
        inner.calls.push(call);
        match failure {
            Some(errno) => {
                let e = io::Error::from(errno);
                Err(io::Error::new(e.kind(), format!("{name}: {e}")))
            }
            None => Ok(()),
        }
    }
}

impl JailOps for RecordingOps {
    fn effective_uid(&mut self) -> u32 {
        self.lock().uid
    }
    fn effective_gid(&mut self) -> u32 {
        self.lock().gid
    }
    fn cgroup_version(&mut self) -> io::Result<CgroupVersion> {
        self.lock()
            .cgroup
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup hierarchy"))
    }
    fn cgroup_create(&mut self, path: &str) -> io::Result<()> {
        self.record(Call::CgroupCreate(path.to_owned()))
    }
    fn cgroup_set_memory(&mut self, path: &str, bytes: u64) -> io::Result<()> {
        self.record(Call::CgroupSetMemory(path.to_owned(), bytes))
    }
    fn cgroup_set_pids(&mut self, path: &str, max: u64) -> io::Result<()> {
        self.record(Call::CgroupSetPids(path.to_owned(), max))
    }
    fn cgroup_set_cpu(&mut self, path: &str, quota_us: u64, period_us: u64) -> io::Result<()> {
        self.record(Call::CgroupSetCpu(path.to_owned(), quota_us, period_us))
    }
    fn cgroup_add_pid(&mut self, path: &str, pid: u32) -> io::Result<()> {
        self.record(Call::CgroupAddPid(path.to_owned(), pid))
    }
    fn cgroup_oom_kills(&mut self, _path: &str) -> io::Result<u64> {
        Ok(self.lock().oom_kills)
    }
    fn cgroup_kill_all(&mut self, path: &str) -> io::Result<()> {
        self.record(Call::CgroupKillAll(path.to_owned()))
    }
    fn cgroup_remove(&mut self, path: &str) -> io::Result<()> {
        self.record(Call::CgroupRemove(path.to_owned()))
    }
    fn unshare(&mut self, ns: Namespace) -> io::Result<()> {
        self.record(Call::Unshare(ns))
    }
    fn write_id_maps(&mut self, uid: IdMap, gid: IdMap) -> io::Result<()> {
        self.record(Call::WriteIdMaps { uid, gid })
    }
    fn make_mounts_private(&mut self) -> io::Result<()> {
        self.record(Call::MakeMountsPrivate)
    }
    fn mount_tmpfs(&mut self, target: &Path, size_bytes: u64, mode: u32) -> io::Result<()> {
        self.record(Call::MountTmpfs(target.to_owned(), size_bytes, mode))
    }
    fn inspect(&mut self, path: &Path) -> io::Result<PathKind> {
        Ok(self
            .lock()
            .kinds
            .get(path)
            .cloned()
            .unwrap_or(PathKind::Directory))
    }
    fn create_dir(&mut self, path: &Path) -> io::Result<()> {
        self.record(Call::CreateDir(path.to_owned()))
    }
    fn create_file(&mut self, path: &Path) -> io::Result<()> {
        self.record(Call::CreateFile(path.to_owned()))
    }
    fn create_symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(Call::CreateSymlink {
            target: target.to_owned(),
            link: link.to_owned(),
        })
    }
    fn remove_dir(&mut self, path: &Path) -> io::Result<()> {
        self.record(Call::RemoveDir(path.to_owned()))
    }
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.record(Call::PivotRoot(new_root.to_owned(), put_old.to_owned()))
    }
    fn bind_mount_readonly(&mut self, source: &Path, target: &Path) -> io::Result<()> {
        self.record(Call::BindMountReadonly(
            source.to_owned(),
            target.to_owned(),
        ))
    }
    fn bind_device(&mut self, source: &Path, target: &Path) -> io::Result<()> {
        self.record(Call::BindDevice(source.to_owned(), target.to_owned()))
    }
    fn mount_proc(&mut self, target: &Path) -> io::Result<()> {
        self.record(Call::MountProc(target.to_owned()))
    }
    fn remount_readonly(&mut self, target: &Path) -> io::Result<()> {
        self.record(Call::RemountReadonly(target.to_owned()))
    }
    fn unmount_detached(&mut self, target: &Path) -> io::Result<()> {
        self.record(Call::UnmountDetached(target.to_owned()))
    }
    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        self.record(Call::SetHostname(name.to_owned()))
    }
    fn loopback_up(&mut self) -> io::Result<()> {
        self.record(Call::LoopbackUp)
    }
    fn drop_bounding_set(&mut self) -> io::Result<()> {
        self.record(Call::DropBoundingSet)
    }
    fn set_uid_gid(&mut self, uid: u32, gid: u32) -> io::Result<()> {
        self.record(Call::SetUidGid(uid, gid))
    }
    fn set_dumpable(&mut self, dumpable: bool) -> io::Result<()> {
        self.record(Call::SetDumpable(dumpable))
    }
    fn disable_core_dumps(&mut self) -> io::Result<()> {
        self.record(Call::DisableCoreDumps)
    }
    fn set_no_new_privs(&mut self) -> io::Result<()> {
        self.record(Call::SetNoNewPrivs)
    }
    fn drop_all_capabilities(&mut self) -> io::Result<()> {
        self.record(Call::DropAllCapabilities)
    }
    fn set_parent_death_signal(&mut self) -> io::Result<()> {
        self.record(Call::SetParentDeathSignal)
    }
}
