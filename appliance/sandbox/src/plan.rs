//! The order of the jail's steps, and what a failing step means for the others.
//!
//! Pure sequencing over [`JailOps`]: no process is started here, so every function is
//! unit-tested with [`crate::RecordingOps`]. The three phases run in three processes (see
//! the crate docs): [`cgroup`] in the spawner, [`stage1`] in the keeper, [`stage2`] in the
//! process that becomes the worker.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ops::{IdMap, JailOps, Namespace, PathKind};
use crate::report::{JailMode, Outcome, Protection};
use crate::spec::{Bind, Enforcement, JailSpec, SYSTEM_PATHS};

/// Where the new root's tmpfs is mounted before `pivot_root` makes it `/`. Any existing
/// directory would do: the mount is only visible in the jail's own mount namespace, and
/// after the pivot the host's `/tmp` is reachable again under [`OLD_ROOT`], so a bind
/// source under `/tmp` still works.
pub(crate) const STAGING: &str = "/tmp";
/// Where the host's root stays, inside the new root, until it is detached.
pub(crate) const OLD_ROOT: &str = "/.oldroot";
/// The jail root's own tmpfs holds only mount points and symlinks.
pub(crate) const ROOT_TMPFS_BYTES: u64 = 1 << 20;
/// `/dev` holds device nodes (empty files to bind onto), a few directories and symlinks.
pub(crate) const DEV_TMPFS_BYTES: u64 = 64 << 10;
/// The device nodes a program may expect, in every jail; no other device is reachable
/// unless the spec names it.
pub(crate) const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// Everything the keeper and the worker-to-be need: sent by the spawner over the jail's
/// control socket, never on the command line (the environment may hold secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub spec: JailSpec,
    /// The worker program, an absolute path with no symlink in it.
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `spec.binds` with resolved sources, plus the program itself when no bind or system
    /// path already covers it.
    pub binds: Vec<Bind>,
}

/// What the keeper found, passed on to the second stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage1 {
    pub mode: JailMode,
    /// The keeper's uid and gid on the host (before any user namespace).
    pub host_uid: u32,
    pub host_gid: u32,
    /// Whether the next child starts a new pid namespace.
    pub pid_namespace: bool,
    pub outcomes: Vec<Outcome>,
}

/// The spawner's half: detect the hierarchy, create the worker's cgroup, set its limits.
/// Returns the outcomes and whether the cgroup exists (to be joined, then removed).
pub(crate) fn cgroup(
    ops: &mut dyn JailOps,
    spec: &JailSpec,
    path: &str,
) -> (Option<crate::CgroupVersion>, Vec<Outcome>, bool) {
    let limits = [
        Protection::MemoryLimit,
        Protection::PidsLimit,
        Protection::CpuLimit,
    ];
    let all_missing = |why: &str| {
        limits
            .iter()
            .map(|&p| Outcome::unavailable(p, why))
            .collect::<Vec<_>>()
    };
    let version = match ops.cgroup_version() {
        Ok(v) => v,
        Err(e) => return (None, all_missing(&format!("no cgroups: {e}")), false),
    };
    if let Err(e) = ops.cgroup_create(path) {
        return (Some(version), all_missing(&e.to_string()), false);
    }
    let mut outcomes = Vec::new();
    let mut verdict = |p: Protection, r: io::Result<()>, detail: String| {
        outcomes.push(match r {
            Ok(()) => Outcome::applied(p, format!("{detail} ({version}, cgroup {path})")),
            Err(e) => Outcome::unavailable(p, e.to_string()),
        });
    };
    let r = ops.cgroup_set_memory(path, spec.memory_bytes);
    verdict(
        Protection::MemoryLimit,
        r,
        format!("{} MiB, swap included", spec.memory_bytes >> 20),
    );
    let r = ops.cgroup_set_pids(path, spec.pids_max);
    verdict(
        Protection::PidsLimit,
        r,
        format!("{} processes and threads", spec.pids_max),
    );
    let r = ops.cgroup_set_cpu(path, spec.cpu_quota_us(), crate::spec::CPU_PERIOD_US);
    verdict(
        Protection::CpuLimit,
        r,
        format!("{}/1000 of a core", spec.cpu_millicores),
    );
    (Some(version), outcomes, true)
}

/// The keeper's half. Without root, a user namespace first, mapping the caller to root
/// inside (it gives the capabilities every later step needs); then the pid namespace,
/// which takes effect for the keeper's next child.
pub(crate) fn stage1(ops: &mut dyn JailOps) -> Stage1 {
    let host_uid = ops.effective_uid();
    let host_gid = ops.effective_gid();
    let mode = if host_uid == 0 {
        JailMode::Root
    } else {
        JailMode::Unprivileged
    };
    let mut outcomes = Vec::new();
    if mode == JailMode::Unprivileged {
        let outer = ops.unshare(Namespace::User).and_then(|()| {
            ops.write_id_maps(
                IdMap {
                    inside: 0,
                    outside: host_uid,
                },
                IdMap {
                    inside: 0,
                    outside: host_gid,
                },
            )
        });
        if let Err(e) = outer {
            outcomes.push(Outcome::unavailable(
                Protection::UserNamespace,
                format!("without root the jail needs a user namespace to build in: {e}"),
            ));
        }
    }
    let pid_namespace = match ops.unshare(Namespace::Pid) {
        Ok(()) => {
            outcomes.push(Outcome::applied(
                Protection::PidNamespace,
                "the worker is process 1 of a pid namespace of its own",
            ));
            true
        }
        Err(e) => {
            outcomes.push(Outcome::unavailable(
                Protection::PidNamespace,
                e.to_string(),
            ));
            false
        }
    };
    Stage1 {
        mode,
        host_uid,
        host_gid,
        pid_namespace,
        outcomes,
    }
}

/// What the second stage decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Exec the worker.
    Exec,
    /// Do not: the reason.
    Refuse(String),
}

/// The second stage's half, in the process that becomes the worker (process 1 of the new
/// pid namespace): the other namespaces, the file system, hostname and loopback, then
/// identity and privileges, last of all just before exec.
pub(crate) fn stage2(
    ops: &mut dyn JailOps,
    plan: &Plan,
    first: &Stage1,
) -> (Vec<Outcome>, Verdict) {
    let spec = &plan.spec;
    let mut out = Vec::new();
    // Dies with the keeper, so killing the keeper (the process the supervisor holds)
    // kills the jail. Set again after the uid change, which clears it.
    let _ = ops.set_parent_death_signal();

    let mut unshare =
        |ops: &mut dyn JailOps, ns: Namespace, p: Protection, detail: &str| match ops.unshare(ns) {
            Ok(()) => {
                out.push(Outcome::applied(p, detail));
                true
            }
            Err(e) => {
                out.push(Outcome::unavailable(p, e.to_string()));
                false
            }
        };
    let mount_ns = unshare(
        ops,
        Namespace::Mount,
        Protection::MountNamespace,
        "mounts private to the jail",
    );
    let net_ns = unshare(
        ops,
        Namespace::Net,
        Protection::NetworkNamespace,
        "a network namespace of its own: no route off the box",
    );
    unshare(
        ops,
        Namespace::Ipc,
        Protection::IpcNamespace,
        "System V IPC and message queues of its own",
    );
    let uts_ns = unshare(
        ops,
        Namespace::Uts,
        Protection::UtsNamespace,
        &format!("hostname {}", spec.hostname),
    );

    if mount_ns {
        out.extend(build_root(ops, plan, first.pid_namespace));
    } else {
        for p in [
            Protection::ReadOnlyRoot,
            Protection::DeviceNodes,
            Protection::ReadOnlyBinds,
            Protection::ScratchTmpfs,
            Protection::PrivateProc,
        ] {
            out.push(Outcome::unavailable(
                p,
                "no mount namespace: the worker sees the host's file system",
            ));
        }
    }

    if uts_ns && let Err(e) = ops.set_hostname(&spec.hostname) {
        out.push(Outcome::unavailable(
            Protection::UtsNamespace,
            e.to_string(),
        ));
    }
    out.push(if !net_ns {
        Outcome::unavailable(
            Protection::Loopback,
            "no network namespace: the worker shares the host's network",
        )
    } else {
        match ops.loopback_up() {
            Ok(()) => Outcome::applied(Protection::Loopback, "lo is up and the only interface"),
            Err(e) => Outcome::unavailable(Protection::Loopback, e.to_string()),
        }
    });

    // Identity. As root: the bounding set goes while CAP_SETPCAP is still there, then the
    // host uid and gid change (which clears every capability in the host's namespace).
    // Either way a user namespace of the worker's own follows, created after every other
    // namespace so that it owns none of them: the capabilities it grants are over nothing.
    let outside = match first.mode {
        JailMode::Root => {
            if let Err(e) = ops.drop_bounding_set() {
                out.push(Outcome::unavailable(
                    Protection::CapabilitiesDropped,
                    e.to_string(),
                ));
            }
            if let Err(e) = ops.set_uid_gid(spec.uid, spec.gid) {
                out.push(Outcome::unavailable(
                    Protection::UnprivilegedUid,
                    e.to_string(),
                ));
                // The one protection never traded for availability: the worker parses
                // untrusted files and does not do it as root.
                return (
                    out,
                    Verdict::Refuse(format!("the worker would run as root: {e}")),
                );
            }
            out.push(Outcome::applied(
                Protection::UnprivilegedUid,
                format!("uid {} gid {} on the host", spec.uid, spec.gid),
            ));
            // Changing uid made the process non-dumpable, its /proc/self files root's; it
            // must write its own id maps below.
            if let Err(e) = ops.set_dumpable(true) {
                out.push(Outcome::unavailable(
                    Protection::UserNamespace,
                    e.to_string(),
                ));
            }
            (spec.uid, spec.gid)
        }
        JailMode::Unprivileged => {
            out.push(Outcome::applied(
                Protection::UnprivilegedUid,
                format!(
                    "uid {} on the host: the user who started it (dev mode without root)",
                    first.host_uid
                ),
            ));
            // Root of the outer user namespace, which is that user on the host.
            (0, 0)
        }
    };
    let inner = ops.unshare(Namespace::User).and_then(|()| {
        ops.write_id_maps(
            IdMap {
                inside: spec.uid,
                outside: outside.0,
            },
            IdMap {
                inside: spec.gid,
                outside: outside.1,
            },
        )
    });
    out.push(match inner {
        Ok(()) => Outcome::applied(
            Protection::UserNamespace,
            format!(
                "uid {} is the only id mapped; the namespace owns none of the jail's others",
                spec.uid
            ),
        ),
        Err(e) => Outcome::unavailable(Protection::UserNamespace, e.to_string()),
    });

    let mut last = |p: Protection, r: io::Result<()>, detail: &str| {
        out.push(match r {
            Ok(()) => Outcome::applied(p, detail),
            Err(e) => Outcome::unavailable(p, e.to_string()),
        });
    };
    let r = ops.disable_core_dumps();
    last(Protection::NoCoreDumps, r, "RLIMIT_CORE 0");
    let r = ops.set_no_new_privs();
    last(Protection::NoNewPrivs, r, "set");
    let r = ops.drop_all_capabilities();
    last(
        Protection::CapabilitiesDropped,
        r,
        "bounding, ambient, inheritable, permitted and effective sets empty",
    );
    let _ = ops.set_parent_death_signal();

    let verdict = match spec.enforcement {
        Enforcement::ReportMissing => Verdict::Exec,
        Enforcement::RequireAll => {
            let missing: Vec<String> = first
                .outcomes
                .iter()
                .chain(&out)
                .filter_map(|o| match &o.status {
                    crate::Status::Unavailable { reason } => {
                        Some(format!("{}: {reason}", o.protection))
                    }
                    crate::Status::Applied { .. } => None,
                })
                .collect();
            if missing.is_empty() {
                Verdict::Exec
            } else {
                Verdict::Refuse(format!(
                    "every protection is required, and these are missing: {}",
                    missing.join("; ")
                ))
            }
        }
    };
    (out, verdict)
}

/// One mount (or group of mounts) of the new root, placed by the depth of its target so
/// that a mount never hides another made before it (a bind under `/tmp` goes after the
/// scratch tmpfs on `/tmp`).
#[derive(Debug)]
enum Step {
    /// A host system path (bound, or recreated as a symlink).
    System(PathBuf, PathKind),
    Proc,
    Scratch,
    /// A requested bind.
    Bind(Bind, PathKind),
}

impl Step {
    fn target(&self) -> &Path {
        match self {
            Step::System(p, _) => p,
            Step::Proc => Path::new("/proc"),
            Step::Scratch => Path::new("/tmp"),
            Step::Bind(b, _) => &b.target,
        }
    }

    fn protection(&self) -> Protection {
        match self {
            Step::System(..) => Protection::ReadOnlyRoot,
            Step::Proc => Protection::PrivateProc,
            Step::Scratch => Protection::ScratchTmpfs,
            Step::Bind(..) => Protection::ReadOnlyBinds,
        }
    }
}

/// `/.oldroot/<path>`: a host path seen from the new root before the old one goes.
fn host(path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    Path::new(OLD_ROOT).join(relative)
}

/// Builds the new root: a tmpfs made `/` by `pivot_root`, the host's root kept under
/// `/.oldroot` while binds are taken from it, then detached, and `/` made read-only.
fn build_root(ops: &mut dyn JailOps, plan: &Plan, pid_ns: bool) -> Vec<Outcome> {
    let fs_protections = [
        Protection::ReadOnlyRoot,
        Protection::DeviceNodes,
        Protection::ReadOnlyBinds,
        Protection::ScratchTmpfs,
        Protection::PrivateProc,
    ];
    let staging = Path::new(STAGING);
    let put_old = staging.join(OLD_ROOT.trim_start_matches('/'));
    let pivot = ops
        .make_mounts_private()
        .and_then(|()| ops.mount_tmpfs(staging, ROOT_TMPFS_BYTES, 0o755))
        .and_then(|()| ops.create_dir(&put_old))
        .and_then(|()| ops.pivot_root(staging, &put_old));
    if let Err(e) = pivot {
        return fs_protections
            .iter()
            .map(|&p| Outcome::unavailable(p, format!("no new root: {e}")))
            .collect();
    }

    let mut out = Vec::new();
    let mut steps = Vec::new();
    for path in SYSTEM_PATHS {
        let path = PathBuf::from(path);
        match ops.inspect(&host(&path)) {
            Ok(PathKind::Missing) => {}
            Ok(kind) => steps.push(Step::System(path, kind)),
            Err(e) => out.push(Outcome::unavailable(
                Protection::ReadOnlyRoot,
                e.to_string(),
            )),
        }
    }
    if pid_ns {
        steps.push(Step::Proc);
    } else {
        out.push(Outcome::unavailable(
            Protection::PrivateProc,
            "no pid namespace: /proc is not mounted, so no host process is listed, \
             but the worker can still signal host processes of its uid",
        ));
    }
    steps.push(Step::Scratch);
    for bind in &plan.binds {
        match ops.inspect(&host(&bind.source)) {
            Ok(kind @ (PathKind::Directory | PathKind::File)) => {
                steps.push(Step::Bind(bind.clone(), kind));
            }
            Ok(other) => out.push(Outcome::unavailable(
                Protection::ReadOnlyBinds,
                format!(
                    "bind source {} is {}",
                    bind.source.display(),
                    if other == PathKind::Missing {
                        "missing"
                    } else {
                        "a symlink"
                    }
                ),
            )),
            Err(e) => out.push(Outcome::unavailable(
                Protection::ReadOnlyBinds,
                e.to_string(),
            )),
        }
    }
    steps.sort_by_key(|s| s.target().components().count());

    // `/dev` holds no other step's target (a bind onto `/dev/…` is refused by the spec's
    // check, it would be hidden), so it is made first.
    out.extend(make_dev(ops, &plan.spec.devices));
    for step in &steps {
        if let Err(e) = run_step(ops, plan, step) {
            out.push(Outcome::unavailable(step.protection(), e.to_string()));
        }
    }

    // The host's root must go: until it does, all of it is reachable under /.oldroot.
    let old = Path::new(OLD_ROOT);
    let detach = ops
        .unmount_detached(old)
        .and_then(|()| ops.remove_dir(old))
        .map_err(|e| format!("the host's root is still reachable at {OLD_ROOT}: {e}"));
    if let Err(e) = detach {
        out.push(Outcome::unavailable(Protection::ReadOnlyRoot, e));
    }
    if let Err(e) = ops.remount_readonly(Path::new("/")) {
        out.push(Outcome::unavailable(
            Protection::ReadOnlyRoot,
            e.to_string(),
        ));
    }

    let bound: Vec<String> = plan
        .binds
        .iter()
        .map(|b| b.target.display().to_string())
        .collect();
    out.push(Outcome::applied(
        Protection::ReadOnlyRoot,
        "a read-only tmpfs with the system's /usr and libraries bound read-only, \
         the host's root detached",
    ));
    out.push(Outcome::applied(
        Protection::ReadOnlyBinds,
        if bound.is_empty() {
            "none requested".to_owned()
        } else {
            bound.join(", ")
        },
    ));
    out.push(Outcome::applied(
        Protection::ScratchTmpfs,
        format!(
            "/tmp: {} MiB tmpfs, noexec",
            plan.spec.tmpfs_bytes.div_ceil(1 << 20)
        ),
    ));
    if pid_ns {
        out.push(Outcome::applied(
            Protection::PrivateProc,
            "/proc of the jail's pid namespace",
        ));
    }
    out
}

fn run_step(ops: &mut dyn JailOps, plan: &Plan, step: &Step) -> io::Result<()> {
    match step {
        Step::System(path, PathKind::Symlink(to)) => ops.create_symlink(to, path),
        Step::System(path, PathKind::Directory) => {
            ops.create_dir(path)?;
            ops.bind_mount_readonly(&host(path), path)
        }
        Step::System(path, _) => {
            ops.create_file(path)?;
            ops.bind_mount_readonly(&host(path), path)
        }
        Step::Proc => {
            let proc = Path::new("/proc");
            ops.create_dir(proc)?;
            ops.mount_proc(proc)
        }
        Step::Scratch => {
            let tmp = Path::new("/tmp");
            ops.create_dir(tmp)?;
            ops.mount_tmpfs(tmp, plan.spec.tmpfs_bytes, 0o1777)
        }
        Step::Bind(bind, kind) => {
            if *kind == PathKind::Directory {
                ops.create_dir(&bind.target)?;
            } else {
                ops.create_file(&bind.target)?;
            }
            ops.bind_mount_readonly(&host(&bind.source), &bind.target)
        }
    }
}

/// `/dev`: a tmpfs holding the five device nodes every jail has, the spec's extra ones
/// that exist on the host, and the `/proc/self/fd` symlinks; then read-only. An extra
/// device that cannot be passed is left out and named; the worker still starts (a GPU
/// that is not there means the CPU, not no worker).
fn make_dev(ops: &mut dyn JailOps, extra: &[PathBuf]) -> Vec<Outcome> {
    let dev = Path::new("/dev");
    let tmpfs = ops
        .create_dir(dev)
        .and_then(|()| ops.mount_tmpfs(dev, DEV_TMPFS_BYTES, 0o755));
    if let Err(e) = tmpfs {
        return vec![Outcome::unavailable(
            Protection::DeviceNodes,
            format!("no /dev of the jail's own: {e}"),
        )];
    }
    let mut out = Vec::new();
    let mut passed: Vec<PathBuf> = Vec::new();
    for name in DEVICES {
        let node = dev.join(name);
        let bound = ops
            .create_file(&node)
            .and_then(|()| ops.bind_device(&host(&node), &node));
        match bound {
            Ok(()) => passed.push(node),
            Err(e) => out.push(Outcome::unavailable(Protection::DeviceNodes, e.to_string())),
        }
    }
    let basic = passed.len();
    let mut left_out = Vec::new();
    for node in extra {
        if passed.contains(node) {
            continue;
        }
        let bound = match ops.inspect(&host(node)) {
            Ok(PathKind::File) => ops
                .create_file(node)
                .and_then(|()| ops.bind_device(&host(node), node))
                .map_err(|e| e.to_string()),
            Ok(PathKind::Missing) => Err("not on this machine".to_owned()),
            Ok(PathKind::Directory) => Err("a directory".to_owned()),
            Ok(PathKind::Symlink(_)) => Err("a symlink".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        match bound {
            Ok(()) => passed.push(node.clone()),
            Err(why) => left_out.push(format!("{} ({why})", node.display())),
        }
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        if let Err(e) = ops.create_symlink(Path::new(to), &dev.join(link)) {
            out.push(Outcome::unavailable(Protection::DeviceNodes, e.to_string()));
        }
    }
    if let Err(e) = ops.remount_readonly(dev) {
        out.push(Outcome::unavailable(
            Protection::ReadOnlyRoot,
            format!("/dev stays writable: {e}"),
        ));
    }
    let names = |nodes: &[PathBuf]| {
        nodes
            .iter()
            .map(|n| n.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut detail = names(&passed[..basic]);
    if passed.len() > basic {
        detail.push_str("; asked for: ");
        detail.push_str(&names(&passed[basic..]));
    }
    if !left_out.is_empty() {
        detail.push_str("; left out: ");
        detail.push_str(&left_out.join(", "));
    }
    out.push(Outcome::applied(Protection::DeviceNodes, detail));
    out
}
