//! The jail's sequencing and reporting, against [`RecordingOps`]: no kernel involved.

use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::plan::{self, Stage1, Verdict};
use crate::spawn::plan_for_tests;
use crate::*;

const WORKER: u32 = 990;

fn spec() -> JailSpec {
    let mut spec = JailSpec::new("test", WORKER, WORKER);
    spec.memory_bytes = 64 << 20;
    spec.binds = vec![Bind {
        source: "/srv/models".into(),
        target: "/models".into(),
    }];
    spec
}

/// Runs the three phases as the real jail would, and folds them into a report.
fn build(ops: &RecordingOps, spec: &JailSpec) -> (JailReport, Verdict, Stage1) {
    let mut ops = ops.clone();
    let (version, mut outcomes, _) = plan::cgroup(&mut ops, spec, "workers/test-1");
    let first = plan::stage1(&mut ops);
    outcomes.extend(first.outcomes.clone());
    let plan = plan_for_tests(spec, Path::new("/usr/bin/worker"));
    let (more, verdict) = plan::stage2(&mut ops, &plan, &first);
    outcomes.extend(more);
    (
        JailReport::from_outcomes(first.mode, version, &outcomes),
        verdict,
        first,
    )
}

fn position(calls: &[Call], call: &Call) -> usize {
    calls
        .iter()
        .position(|c| c == call)
        .unwrap_or_else(|| panic!("{call:?} was not made: {calls:#?}"))
}

/// Why `p` is unavailable; panics if it is applied.
fn reason(report: &JailReport, p: Protection) -> String {
    text_of(report, p, false)
}

/// How `p` is applied; panics if it is unavailable.
fn detail(report: &JailReport, p: Protection) -> String {
    text_of(report, p, true)
}

fn text_of(report: &JailReport, p: Protection, applied: bool) -> String {
    let status = report.status(p);
    assert_eq!(status.is_applied(), applied, "{p}: {status:?}");
    match status {
        Status::Applied { detail: text } | Status::Unavailable { reason: text } => text.clone(),
    }
}

#[test]
fn as_root_every_protection_is_applied_in_order() {
    let ops = RecordingOps::root();
    let (report, verdict, first) = build(&ops, &spec());
    assert_eq!(verdict, Verdict::Exec);
    assert_eq!(first.mode, JailMode::Root);
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.cgroup, Some(CgroupVersion::V2));

    let calls = ops.calls();
    let at = |c: Call| position(&calls, &c);
    // The cgroup is made first, by the spawner.
    assert_eq!(calls[0], Call::CgroupCreate("workers/test-1".into()));
    assert!(
        at(Call::CgroupSetMemory("workers/test-1".into(), 64 << 20))
            < at(Call::Unshare(Namespace::Pid))
    );
    // As root the keeper makes no user namespace of its own: the first unshare is pid's.
    let first_unshare = calls.iter().position(|c| matches!(c, Call::Unshare(_)));
    assert_eq!(first_unshare, Some(at(Call::Unshare(Namespace::Pid))));
    // Namespaces, then the file system, then identity, then privileges.
    assert!(at(Call::Unshare(Namespace::Mount)) < at(Call::MakeMountsPrivate));
    assert!(
        at(Call::MakeMountsPrivate) < at(Call::PivotRoot("/tmp".into(), "/tmp/.oldroot".into()))
    );
    assert!(at(Call::MountProc("/proc".into())) < at(Call::UnmountDetached("/.oldroot".into())));
    assert!(at(Call::UnmountDetached("/.oldroot".into())) < at(Call::RemountReadonly("/".into())));
    assert!(at(Call::RemountReadonly("/".into())) < at(Call::DropBoundingSet));
    assert!(at(Call::DropBoundingSet) < at(Call::SetUidGid(WORKER, WORKER)));
    assert!(at(Call::SetUidGid(WORKER, WORKER)) < at(Call::SetDumpable(true)));
    assert!(at(Call::SetDumpable(true)) < at(Call::Unshare(Namespace::User)));
    let map = IdMap {
        inside: WORKER,
        outside: WORKER,
    };
    let maps = at(Call::WriteIdMaps { uid: map, gid: map });
    assert!(at(Call::Unshare(Namespace::User)) < maps);
    assert!(maps < at(Call::DisableCoreDumps));
    assert!(at(Call::SetNoNewPrivs) < at(Call::DropAllCapabilities));
    assert_eq!(calls.last(), Some(&Call::SetParentDeathSignal));
    // The user namespace is the last namespace: it owns none of the others.
    let last_other = calls
        .iter()
        .rposition(|c| matches!(c, Call::Unshare(ns) if *ns != Namespace::User))
        .expect("namespaces");
    assert!(last_other < at(Call::Unshare(Namespace::User)));
}

#[test]
fn without_root_the_user_namespace_comes_first_and_maps_only_the_caller() {
    let ops = RecordingOps::as_user(1000, 1000);
    let (report, verdict, first) = build(&ops, &spec());
    assert_eq!(verdict, Verdict::Exec);
    assert_eq!(first.mode, JailMode::Unprivileged);
    let calls = ops.calls();
    let unshares: Vec<_> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Unshare(ns) => Some(*ns),
            _ => None,
        })
        .collect();
    assert_eq!(
        unshares,
        [
            Namespace::User,
            Namespace::Pid,
            Namespace::Mount,
            Namespace::Net,
            Namespace::Ipc,
            Namespace::Uts,
            Namespace::User
        ]
    );
    let outer = IdMap {
        inside: 0,
        outside: 1000,
    };
    assert_eq!(
        calls[position(&calls, &Call::Unshare(Namespace::User)) + 1],
        Call::WriteIdMaps {
            uid: outer,
            gid: outer
        }
    );
    // The worker's own namespace maps its uid to the outer namespace's root, which is the
    // caller on the host.
    let inner = IdMap {
        inside: WORKER,
        outside: 0,
    };
    position(
        &calls,
        &Call::WriteIdMaps {
            uid: inner,
            gid: inner,
        },
    );
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::SetUidGid(..) | Call::DropBoundingSet))
    );
    match report.status(Protection::UnprivilegedUid) {
        Status::Applied { detail } => assert!(detail.contains("uid 1000"), "{detail}"),
        s => panic!("{s:?}"),
    }
}

#[test]
fn a_failing_cgroup_step_names_the_memory_limit_and_why() {
    let ops = RecordingOps::root();
    ops.fail("cgroup_set_memory", Errno::EACCES);
    let (report, verdict, _) = build(&ops, &spec());
    assert_eq!(
        verdict,
        Verdict::Exec,
        "missing protections are reported, not fatal"
    );
    let missing: Vec<_> = report.missing().map(|(p, _)| p).collect();
    assert_eq!(missing, [Protection::MemoryLimit]);
    let why = reason(&report, Protection::MemoryLimit);
    assert!(
        why.contains("cgroup_set_memory") && why.contains("ermission denied"),
        "{why}"
    );
    assert!(
        report.to_string().contains("memory limit: MISSING ("),
        "{report}"
    );
    // The other limits were still set.
    assert!(report.status(Protection::PidsLimit).is_applied());
    assert!(report.status(Protection::CpuLimit).is_applied());
}

#[test]
fn no_cgroups_at_all_names_all_three_limits() {
    let ops = RecordingOps::root();
    ops.set_cgroup_version(None);
    let (report, _, _) = build(&ops, &spec());
    assert_eq!(report.cgroup, None);
    for p in [
        Protection::MemoryLimit,
        Protection::PidsLimit,
        Protection::CpuLimit,
    ] {
        assert!(reason(&report, p).contains("no cgroups"), "{report}");
    }
    assert!(!ops.names().contains(&"cgroup_create"));
}

#[test]
fn a_cgroup_that_cannot_be_created_is_not_configured() {
    let ops = RecordingOps::root();
    ops.fail("cgroup_create", Errno::EROFS);
    let (report, _, _) = build(&ops, &spec());
    for p in [
        Protection::MemoryLimit,
        Protection::PidsLimit,
        Protection::CpuLimit,
    ] {
        assert!(reason(&report, p).contains("cgroup_create"), "{report}");
    }
    assert!(!ops.names().iter().any(|n| n.starts_with("cgroup_set")));
}

#[test]
fn without_a_mount_namespace_nothing_is_mounted() {
    let ops = RecordingOps::root();
    ops.fail_when(|c| *c == Call::Unshare(Namespace::Mount), Errno::EPERM);
    let (report, verdict, _) = build(&ops, &spec());
    assert_eq!(verdict, Verdict::Exec);
    let names = ops.names();
    for forbidden in [
        "make_mounts_private",
        "mount_tmpfs",
        "pivot_root",
        "bind_mount_readonly",
        "mount_proc",
        "remount_readonly",
        "create_dir",
    ] {
        assert!(
            !names.contains(&forbidden),
            "{forbidden} without a mount namespace"
        );
    }
    assert!(reason(&report, Protection::MountNamespace).contains("Operation not permitted"));
    for p in [
        Protection::ReadOnlyRoot,
        Protection::DeviceNodes,
        Protection::ReadOnlyBinds,
        Protection::ScratchTmpfs,
        Protection::PrivateProc,
    ] {
        assert!(
            reason(&report, p).contains("no mount namespace"),
            "{report}"
        );
    }
}

#[test]
fn without_uts_or_network_namespaces_the_host_is_left_alone() {
    let ops = RecordingOps::root();
    ops.fail_when(
        |c| matches!(c, Call::Unshare(Namespace::Uts | Namespace::Net)),
        Errno::EINVAL,
    );
    let (report, _, _) = build(&ops, &spec());
    let names = ops.names();
    assert!(!names.contains(&"set_hostname"), "would rename the host");
    assert!(!names.contains(&"loopback_up"));
    assert!(reason(&report, Protection::Loopback).contains("shares the host's network"));
    assert!(!report.status(Protection::NetworkNamespace).is_applied());
    assert!(!report.status(Protection::UtsNamespace).is_applied());
}

#[test]
fn without_a_pid_namespace_no_proc_is_mounted() {
    let ops = RecordingOps::root();
    ops.fail_when(|c| *c == Call::Unshare(Namespace::Pid), Errno::EPERM);
    let (report, _, first) = build(&ops, &spec());
    assert!(!first.pid_namespace);
    assert!(
        !ops.names().contains(&"mount_proc"),
        "it would list the host's processes"
    );
    assert!(reason(&report, Protection::PrivateProc).contains("no pid namespace"));
    assert!(!report.status(Protection::PidNamespace).is_applied());
}

#[test]
fn mounts_go_parents_first_and_symlinks_stay_symlinks() {
    let ops = RecordingOps::root();
    ops.set_path_kind("/.oldroot/bin", PathKind::Symlink("usr/bin".into()))
        .set_path_kind("/.oldroot/lib64", PathKind::Missing)
        .set_path_kind("/.oldroot/etc/ld.so.cache", PathKind::File)
        .set_path_kind("/.oldroot/tmp/build/worker", PathKind::File);
    let mut spec = spec();
    spec.binds.push(Bind::same("/tmp/build/worker"));
    let (report, _, _) = build(&ops, &spec);
    assert!(report.is_complete(), "{report}");
    let calls = ops.calls();
    let at = |c: Call| position(&calls, &c);
    assert!(calls.contains(&Call::CreateSymlink {
        target: "usr/bin".into(),
        link: "/bin".into()
    }));
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::BindMountReadonly(_, t) if t == Path::new("/lib64")))
    );
    assert!(calls.contains(&Call::CreateFile("/etc/ld.so.cache".into())));
    // The scratch tmpfs on /tmp comes before the bind below it, which it would hide.
    let scratch = at(Call::MountTmpfs("/tmp".into(), 64 << 20, 0o1777));
    let bind = at(Call::BindMountReadonly(
        "/.oldroot/tmp/build/worker".into(),
        "/tmp/build/worker".into(),
    ));
    assert!(scratch < bind);
    // Device nodes are bound from the host, and /dev made read-only afterwards.
    let null = at(Call::BindDevice(
        "/.oldroot/dev/null".into(),
        "/dev/null".into(),
    ));
    assert!(null < at(Call::RemountReadonly("/dev".into())));
    let models = at(Call::BindMountReadonly(
        "/.oldroot/srv/models".into(),
        "/models".into(),
    ));
    assert!(models < at(Call::UnmountDetached("/.oldroot".into())));
}

#[test]
fn extra_devices_are_bound_before_dev_goes_read_only_and_missing_ones_are_named() {
    let ops = RecordingOps::root();
    ops.set_path_kind("/.oldroot/dev/nvidia0", PathKind::File)
        .set_path_kind("/.oldroot/dev/nvidiactl", PathKind::File)
        .set_path_kind("/.oldroot/dev/nvidia-uvm", PathKind::Missing);
    let mut spec = spec();
    spec.enforcement = Enforcement::RequireAll;
    spec.devices = vec![
        "/dev/nvidiactl".into(),
        "/dev/nvidia0".into(),
        "/dev/nvidia-uvm".into(),
        // Already there: not bound twice.
        "/dev/null".into(),
    ];
    let (report, verdict, _) = build(&ops, &spec);
    // A device that is not there leaves the worker on the CPU, not without a jail.
    assert_eq!(verdict, Verdict::Exec);
    assert!(report.is_complete(), "{report}");
    let calls = ops.calls();
    let at = |c: Call| position(&calls, &c);
    let read_only = at(Call::RemountReadonly("/dev".into()));
    for node in ["/dev/nvidiactl", "/dev/nvidia0"] {
        let bind = at(Call::BindDevice(
            format!("/.oldroot{node}").into(),
            node.into(),
        ));
        assert!(at(Call::CreateFile(node.into())) < bind);
        assert!(bind < read_only, "{node} after /dev went read-only");
    }
    assert!(!calls.contains(&Call::CreateFile("/dev/nvidia-uvm".into())));
    let null = Call::BindDevice("/.oldroot/dev/null".into(), "/dev/null".into());
    assert_eq!(calls.iter().filter(|c| **c == null).count(), 1);
    assert_eq!(
        detail(&report, Protection::DeviceNodes),
        "/dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom; \
         asked for: /dev/nvidiactl, /dev/nvidia0; \
         left out: /dev/nvidia-uvm (not on this machine)"
    );
}

#[test]
fn a_device_that_cannot_be_bound_is_left_out_and_named() {
    let ops = RecordingOps::root();
    ops.set_path_kind("/.oldroot/dev/nvidia0", PathKind::File)
        .set_path_kind("/.oldroot/dev/dri", PathKind::Directory);
    ops.fail_when(
        |c| matches!(c, Call::BindDevice(_, t) if t == Path::new("/dev/nvidia0")),
        Errno::EACCES,
    );
    let mut spec = spec();
    spec.devices = vec!["/dev/nvidia0".into(), "/dev/dri".into()];
    let (report, _, _) = build(&ops, &spec);
    let detail = detail(&report, Protection::DeviceNodes);
    assert!(
        detail.contains("left out: /dev/nvidia0 (") && detail.contains("/dev/dri (a directory)"),
        "{detail}"
    );
    assert!(!detail.contains("asked for"), "{detail}");
}

#[test]
fn without_dev_the_device_protection_says_why() {
    let ops = RecordingOps::root();
    ops.fail_when(
        |c| matches!(c, Call::MountTmpfs(t, ..) if t == Path::new("/dev")),
        Errno::ENOMEM,
    );
    let (report, _, _) = build(&ops, &spec());
    assert!(reason(&report, Protection::DeviceNodes).contains("no /dev of the jail's own"));
    assert!(!ops.names().contains(&"bind_device"));
}

#[test]
fn a_host_root_left_attached_is_reported() {
    let ops = RecordingOps::root();
    ops.fail("unmount_detached", Errno::EBUSY);
    let (report, _, _) = build(&ops, &spec());
    assert!(reason(&report, Protection::ReadOnlyRoot).contains("still reachable at /.oldroot"));
}

#[test]
fn a_failed_bind_names_its_source() {
    let ops = RecordingOps::root();
    ops.set_path_kind("/.oldroot/srv/models", PathKind::Missing);
    let (report, _, _) = build(&ops, &spec());
    assert!(reason(&report, Protection::ReadOnlyBinds).contains("/srv/models is missing"));
    assert!(report.status(Protection::ReadOnlyRoot).is_applied());
}

#[test]
fn a_root_jail_that_cannot_drop_root_refuses() {
    let ops = RecordingOps::root();
    ops.fail("set_uid_gid", Errno::EPERM);
    let (report, verdict, _) = build(&ops, &spec());
    assert!(matches!(verdict, Verdict::Refuse(ref r) if r.contains("would run as root")));
    assert!(!report.status(Protection::UnprivilegedUid).is_applied());
    assert!(!ops.names().contains(&"set_no_new_privs"));
}

#[test]
fn require_all_refuses_on_any_missing_protection() {
    let ops = RecordingOps::root();
    ops.fail("loopback_up", Errno::ENODEV);
    let mut spec = spec();
    spec.enforcement = Enforcement::RequireAll;
    let (_, verdict, _) = build(&ops, &spec);
    match verdict {
        Verdict::Refuse(reason) => assert!(reason.contains("loopback interface"), "{reason}"),
        Verdict::Exec => panic!("exec with a protection missing"),
    }
    // Without failures it goes ahead.
    let (_, verdict, _) = build(&RecordingOps::root(), &spec);
    assert_eq!(verdict, Verdict::Exec);
}

#[test]
fn a_failing_capability_drop_is_reported() {
    let ops = RecordingOps::root();
    ops.fail("drop_all_capabilities", Errno::EPERM);
    ops.fail("set_no_new_privs", Errno::EINVAL);
    let (report, _, _) = build(&ops, &spec());
    let missing: Vec<_> = report.missing().map(|(p, _)| p).collect();
    assert_eq!(
        missing,
        [Protection::NoNewPrivs, Protection::CapabilitiesDropped]
    );
}

#[test]
fn spawn_with_require_all_refuses_before_starting_anything() {
    let ops = RecordingOps::root();
    ops.fail("cgroup_set_pids", Errno::EACCES);
    let mut spec = spec();
    spec.binds.clear();
    spec.enforcement = Enforcement::RequireAll;
    let launcher = Launcher {
        program: PathBuf::from("/nonexistent/launcher"),
        args: Vec::new(),
    };
    let program = std::env::current_exe().expect("test binary");
    let err = spawn(&ops, &launcher, &spec, WorkerCommand::new(program)).expect_err("refused");
    match err {
        SandboxError::Refused { reason, report } => {
            assert!(reason.contains("pids limit"), "{reason}");
            assert!(!report.status(Protection::PidsLimit).is_applied());
        }
        other => panic!("{other}"),
    }
    // The cgroup it had made is removed again; no process was started to join it.
    let names = ops.names();
    assert!(!names.contains(&"cgroup_add_pid"));
    assert_eq!(names.last(), Some(&"cgroup_remove"));
}

#[test]
fn spawn_refuses_descriptors_that_would_replace_stdio() {
    let ops = RecordingOps::root();
    let launcher = Launcher {
        program: PathBuf::from("/nonexistent/launcher"),
        args: Vec::new(),
    };
    let null: std::os::fd::OwnedFd = std::fs::File::open("/dev/null").expect("null").into();
    let program = std::env::current_exe().expect("test binary");
    let err = spawn(
        &ops,
        &launcher,
        &spec(),
        WorkerCommand::new(program).keep_fd(null, 1),
    )
    .expect_err("refused");
    assert!(
        matches!(err, SandboxError::InvalidSpec(ref m) if m.contains("descriptor 1")),
        "{err}"
    );
    assert!(ops.calls().is_empty());
}
