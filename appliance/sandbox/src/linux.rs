//! [`JailOps`] on a real Linux kernel: nix for system calls, cgroups-rs for the cgroup
//! trees, caps for capability sets — all through their safe APIs.
//!
//! Every error says which call failed on what, so the report an admin reads names it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use caps::CapSet;
use cgroups_rs::cpu::CpuController;
use cgroups_rs::memory::MemController;
use cgroups_rs::pid::PidController;
use cgroups_rs::{Cgroup, CgroupPid, Controller, MaxValue, hierarchies};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::signal::{Signal, kill};
use nix::sys::statvfs::FsFlags;
use nix::unistd::{Gid, Pid, Uid};

use crate::ops::{CgroupVersion, IdMap, JailOps, Namespace, PathKind};

/// The controllers a worker cgroup gets (their names in cgroups-rs and in the kernel).
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// The real thing. Holds no state: every call acts on the calling process.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxOps;

impl LinuxOps {
    pub fn new() -> LinuxOps {
        LinuxOps
    }
}

/// Wraps an error with what was being done, keeping its kind (and so its errno text).
fn ctx(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn nix_ctx(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> io::Error {
    move |e| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("{what}: {e}"))
    }
}

fn cgroup_error(what: impl std::fmt::Display, e: cgroups_rs::error::Error) -> io::Error {
    // cgroups-rs keeps the io::Error that caused it as its source; show both.
    let cause = std::error::Error::source(&e)
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    io::Error::other(format!("{what}: {e}{cause}"))
}

fn load_cgroup(path: &str) -> Cgroup {
    Cgroup::load_with_specified_controllers(
        hierarchies::auto(),
        path,
        CONTROLLERS.iter().map(|c| (*c).to_owned()).collect(),
    )
}

fn controller<'a, T>(cg: &'a Cgroup, name: &str, path: &str) -> io::Result<&'a T>
where
    &'a T: From<&'a cgroups_rs::Subsystem>,
    T: Controller + cgroups_rs::ControllIdentifier,
{
    cg.controller_of::<T>().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("cgroup {path}: this kernel has no {name} controller mounted"),
        )
    })
}

/// Reads `key N` from a flat-keyed cgroup file (`memory.events`, `memory.oom_control`).
fn read_key(file: &Path, key: &str) -> io::Result<u64> {
    let text = fs::read_to_string(file).map_err(ctx(format!("read {}", file.display())))?;
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} has no `{key}` line", file.display()),
            )
        })
}

fn clone_flag(ns: Namespace) -> CloneFlags {
    match ns {
        Namespace::User => CloneFlags::CLONE_NEWUSER,
        Namespace::Pid => CloneFlags::CLONE_NEWPID,
        Namespace::Net => CloneFlags::CLONE_NEWNET,
        Namespace::Mount => CloneFlags::CLONE_NEWNS,
        Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
        Namespace::Uts => CloneFlags::CLONE_NEWUTS,
    }
}

fn clear_caps(sets: &[CapSet]) -> io::Result<()> {
    for &set in sets {
        caps::clear(None, set)
            .map_err(|e| io::Error::other(format!("clear the {set:?} capability set: {e}")))?;
    }
    Ok(())
}

/// Mount flags of `target`'s mount that a remount must keep: inside a user namespace the
/// kernel locks the flags a mount came with (nosuid, nodev, noexec, atime) and refuses a
/// remount that would drop one.
fn kept_flags(target: &Path) -> io::Result<MsFlags> {
    let st = nix::sys::statvfs::statvfs(target)
        .map_err(nix_ctx(format!("statvfs {}", target.display())))?;
    let f = st.flags();
    let mut flags = MsFlags::empty();
    for (st_flag, ms_flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(st_flag) {
            flags |= ms_flag;
        }
    }
    Ok(flags)
}

fn bind(source: &Path, target: &Path, extra: MsFlags) -> io::Result<()> {
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(nix_ctx(format!(
        "bind {} on {}",
        source.display(),
        target.display()
    )))?;
    // A bind mount takes its flags only from a second, remounting call.
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | extra
        | kept_flags(target)?;
    nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(nix_ctx(format!("remount {} read-only", target.display())))
}

impl JailOps for LinuxOps {
    fn effective_uid(&mut self) -> u32 {
        Uid::effective().as_raw()
    }

    fn effective_gid(&mut self) -> u32 {
        Gid::effective().as_raw()
    }

    fn cgroup_version(&mut self) -> io::Result<CgroupVersion> {
        if hierarchies::is_cgroup2_unified_mode() {
            return Ok(CgroupVersion::V2);
        }
        // Not a cgroup2 mount on /sys/fs/cgroup: v1 if any controller is mounted.
        let mounts =
            fs::read_to_string("/proc/self/mountinfo").map_err(ctx("read /proc/self/mountinfo"))?;
        if mounts.lines().any(|l| l.contains(" - cgroup ")) {
            Ok(CgroupVersion::V1)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup hierarchy is mounted (neither cgroup2 on /sys/fs/cgroup nor a v1 controller)",
            ))
        }
    }

    fn cgroup_create(&mut self, path: &str) -> io::Result<()> {
        let cg = load_cgroup(path);
        if cg.v2() {
            // Not cgroups-rs's create, which writes every ancestor's subtree_control from
            // the hierarchy root down and ignores the errors (see `crate::cgroup2`).
            return crate::cgroup2::create(
                Path::new(crate::cgroup2::UNIFIED_ROOT),
                path,
                &CONTROLLERS,
            )
            .map_err(ctx(format!("create cgroup {path}")));
        }
        cg.create()
            .map_err(|e| cgroup_error(format!("create cgroup {path}"), e))?;
        // On v1, cgroups-rs only logs a directory it could not create; find out here.
        for sub in cg.subsystems() {
            let dir = sub.to_controller().path();
            if !dir.is_dir() {
                fs::create_dir_all(dir).map_err(ctx(format!("create {}", dir.display())))?;
            }
        }
        Ok(())
    }

    fn cgroup_set_memory(&mut self, path: &str, bytes: u64) -> io::Result<()> {
        let cg = load_cgroup(path);
        let mem: &MemController = controller(&cg, "memory", path)?;
        let limit = i64::try_from(bytes).map_err(io::Error::other)?;
        mem.set_limit(limit)
            .map_err(|e| cgroup_error(format!("cgroup {path}: set the memory limit"), e))?;
        // Swap must not be a way around the limit. v1: memory+swap = the same limit (the
        // file exists only where the kernel accounts swap); v2: no swap at all.
        let dir = mem.path();
        if cg.v2() {
            if dir.join("memory.swap.max").exists() {
                mem.set_memswap_limit(0)
                    .map_err(|e| cgroup_error(format!("cgroup {path}: set memory.swap.max"), e))?;
            }
        } else if dir.join("memory.memsw.limit_in_bytes").exists() {
            mem.set_memswap_limit(limit).map_err(|e| {
                cgroup_error(format!("cgroup {path}: set memory.memsw.limit_in_bytes"), e)
            })?;
        }
        Ok(())
    }

    fn cgroup_set_pids(&mut self, path: &str, max: u64) -> io::Result<()> {
        let cg = load_cgroup(path);
        let pids: &PidController = controller(&cg, "pids", path)?;
        let max = i64::try_from(max).map_err(io::Error::other)?;
        pids.set_pid_max(MaxValue::Value(max))
            .map_err(|e| cgroup_error(format!("cgroup {path}: set pids.max"), e))
    }

    fn cgroup_set_cpu(&mut self, path: &str, quota_us: u64, period_us: u64) -> io::Result<()> {
        let cg = load_cgroup(path);
        let cpu: &CpuController = controller(&cg, "cpu", path)?;
        let quota = i64::try_from(quota_us).map_err(io::Error::other)?;
        // Period first: v1 checks the quota against the period in force.
        cpu.set_cfs_quota_and_period(Some(quota), Some(period_us))
            .map_err(|e| cgroup_error(format!("cgroup {path}: set the CPU quota"), e))
    }

    fn cgroup_add_pid(&mut self, path: &str, pid: u32) -> io::Result<()> {
        let cg = load_cgroup(path);
        cg.add_task_by_tgid(CgroupPid::from(u64::from(pid)))
            .map_err(|e| cgroup_error(format!("move process {pid} into cgroup {path}"), e))
    }

    fn cgroup_oom_kills(&mut self, path: &str) -> io::Result<u64> {
        let cg = load_cgroup(path);
        let mem: &MemController = controller(&cg, "memory", path)?;
        if cg.v2() {
            read_key(&mem.path().join("memory.events"), "oom_kill")
        } else {
            read_key(&mem.path().join("memory.oom_control"), "oom_kill")
        }
    }

    fn cgroup_kill_all(&mut self, path: &str) -> io::Result<()> {
        let cg = load_cgroup(path);
        // A process may fork while we read the list: go round until it is empty.
        for _ in 0..100 {
            let procs = cg.procs();
            if procs.is_empty() {
                return Ok(());
            }
            for p in procs {
                if let Ok(raw) = i32::try_from(p.pid) {
                    // ESRCH: it died meanwhile, which is the point.
                    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(io::Error::other(format!(
            "cgroup {path}: processes remain after 100 rounds of SIGKILL"
        )))
    }

    fn cgroup_remove(&mut self, path: &str) -> io::Result<()> {
        // Not cgroups-rs's delete: it also removes every empty child cgroup, and this must
        // remove exactly one. A cgroup whose last process just died may be busy for a
        // moment: retry, as runc does (10 ms doubling, five tries).
        let cg = load_cgroup(path);
        for sub in cg.subsystems() {
            let dir = sub.to_controller().path();
            let mut delay = std::time::Duration::from_millis(10);
            for attempt in 0.. {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) && attempt < 5 => {
                        std::thread::sleep(delay);
                        delay *= 2;
                    }
                    Err(e) => return Err(ctx(format!("remove {}", dir.display()))(e)),
                }
            }
        }
        Ok(())
    }

    fn unshare(&mut self, ns: Namespace) -> io::Result<()> {
        nix::sched::unshare(clone_flag(ns))
            .map_err(nix_ctx(format!("unshare a new {} namespace", ns.name())))
    }

    fn write_id_maps(&mut self, uid: IdMap, gid: IdMap) -> io::Result<()> {
        // Without privilege in the parent namespace the kernel allows a gid map only once
        // setgroups(2) is denied (user_namespaces(7)); the worker needs no groups anyway.
        fs::write("/proc/self/setgroups", "deny").map_err(ctx("write /proc/self/setgroups"))?;
        fs::write(
            "/proc/self/gid_map",
            format!("{} {} 1\n", gid.inside, gid.outside),
        )
        .map_err(ctx(format!(
            "map gid {} to {} in /proc/self/gid_map",
            gid.inside, gid.outside
        )))?;
        fs::write(
            "/proc/self/uid_map",
            format!("{} {} 1\n", uid.inside, uid.outside),
        )
        .map_err(ctx(format!(
            "map uid {} to {} in /proc/self/uid_map",
            uid.inside, uid.outside
        )))
    }

    fn make_mounts_private(&mut self) -> io::Result<()> {
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(nix_ctx("make every mount private"))
    }

    fn mount_tmpfs(&mut self, target: &Path, size_bytes: u64, mode: u32) -> io::Result<()> {
        let data = format!("size={size_bytes},mode={mode:o}");
        nix::mount::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(data.as_str()),
        )
        .map_err(nix_ctx(format!(
            "mount a tmpfs ({data}) on {}",
            target.display()
        )))
    }

    fn inspect(&mut self, path: &Path) -> io::Result<PathKind> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PathKind::Missing),
            Err(e) => Err(ctx(format!("stat {}", path.display()))(e)),
            Ok(m) if m.file_type().is_symlink() => Ok(PathKind::Symlink(
                fs::read_link(path).map_err(ctx(format!("readlink {}", path.display())))?,
            )),
            Ok(m) if m.is_dir() => Ok(PathKind::Directory),
            Ok(_) => Ok(PathKind::File),
        }
    }

    fn create_dir(&mut self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(ctx(format!("create directory {}", path.display())))
    }

    fn create_file(&mut self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            self.create_dir(parent)?;
        }
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(ctx(format!("create mount point {}", path.display())))
    }

    fn create_symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        if let Some(parent) = link.parent() {
            self.create_dir(parent)?;
        }
        std::os::unix::fs::symlink(target, link).map_err(ctx(format!(
            "symlink {} -> {}",
            link.display(),
            target.display()
        )))
    }

    fn remove_dir(&mut self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path).map_err(ctx(format!("remove {}", path.display())))
    }

    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        nix::unistd::pivot_root(new_root, put_old).map_err(nix_ctx(format!(
            "pivot_root to {} (old root at {})",
            new_root.display(),
            put_old.display()
        )))?;
        nix::unistd::chdir("/").map_err(nix_ctx("chdir to the new root"))
    }

    fn bind_mount_readonly(&mut self, source: &Path, target: &Path) -> io::Result<()> {
        bind(source, target, MsFlags::MS_NODEV)
    }

    fn bind_device(&mut self, source: &Path, target: &Path) -> io::Result<()> {
        let meta = fs::metadata(source).map_err(ctx(format!("stat {}", source.display())))?;
        if !meta.file_type().is_char_device() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a character device", source.display()),
            ));
        }
        bind(source, target, MsFlags::MS_NOEXEC)
    }

    fn mount_proc(&mut self, target: &Path) -> io::Result<()> {
        nix::mount::mount(
            Some("proc"),
            target,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(nix_ctx(format!("mount proc on {}", target.display())))
    }

    fn remount_readonly(&mut self, target: &Path) -> io::Result<()> {
        let flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | kept_flags(target)?;
        nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .map_err(nix_ctx(format!("remount {} read-only", target.display())))
    }

    fn unmount_detached(&mut self, target: &Path) -> io::Result<()> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH)
            .map_err(nix_ctx(format!("unmount {}", target.display())))
    }

    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(nix_ctx(format!("set the hostname to {name}")))
    }

    fn loopback_up(&mut self) -> io::Result<()> {
        crate::netlink::set_link_up("lo")
    }

    fn drop_bounding_set(&mut self) -> io::Result<()> {
        clear_caps(&[CapSet::Bounding])
    }

    fn set_uid_gid(&mut self, uid: u32, gid: u32) -> io::Result<()> {
        nix::unistd::setgroups(&[]).map_err(nix_ctx("clear the supplementary groups"))?;
        let gid = Gid::from_raw(gid);
        nix::unistd::setresgid(gid, gid, gid).map_err(nix_ctx(format!("setresgid {gid}")))?;
        let uid = Uid::from_raw(uid);
        nix::unistd::setresuid(uid, uid, uid).map_err(nix_ctx(format!("setresuid {uid}")))
    }

    fn set_dumpable(&mut self, dumpable: bool) -> io::Result<()> {
        nix::sys::prctl::set_dumpable(dumpable).map_err(nix_ctx("prctl(PR_SET_DUMPABLE)"))
    }

    fn disable_core_dumps(&mut self) -> io::Result<()> {
        nix::sys::resource::setrlimit(Resource::RLIMIT_CORE, 0, 0)
            .map_err(nix_ctx("setrlimit(RLIMIT_CORE, 0)"))
    }

    fn set_no_new_privs(&mut self) -> io::Result<()> {
        nix::sys::prctl::set_no_new_privs().map_err(nix_ctx("prctl(PR_SET_NO_NEW_PRIVS)"))
    }

    fn drop_all_capabilities(&mut self) -> io::Result<()> {
        // Bounding first (it needs CAP_SETPCAP, which the later steps take away), effective
        // and permitted last.
        clear_caps(&[
            CapSet::Bounding,
            CapSet::Ambient,
            CapSet::Inheritable,
            CapSet::Effective,
            CapSet::Permitted,
        ])
    }

    fn set_parent_death_signal(&mut self) -> io::Result<()> {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(nix_ctx("prctl(PR_SET_PDEATHSIG)"))
    }
}

/// The host pids whose parent is `parent`, from `/proc/<pid>/stat`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // The command name in field 2 may hold spaces and parentheses: the parent pid
            // is the second field after its last ')'.
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// The namespace inode `/proc/<pid>/ns/<kind>` links to (`net:[4026531840]`).
pub fn namespace_of(pid: u32, kind: &str) -> io::Result<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
}

/// Opens `/dev/null` for reading and writing, close-on-exec.
pub(crate) fn dev_null() -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(ctx("open /dev/null"))
}
