//! The jail on the real kernel: the `jail-probe` binary runs inside it and tries what a
//! worker must not be able to do; the test checks from both sides.
//!
//! These need root (the appliance's supervisor is root), user namespaces, and a memory,
//! pids and cpu cgroup controller (v1 or v2). A test whose precondition is missing says
//! so on stderr and returns; the report test then checks that the report names what is
//! missing instead.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cv_sandbox::{
    Bind, Enforcement, JailMode, JailReport, JailSpec, JailedWorker, Launcher, LinuxOps,
    Protection, Status, WorkerCommand,
};
use serde_json::Value;

/// `nobody`: a real unprivileged uid on any Linux host.
const NOBODY: u32 = 65534;
/// Every test jail's cgroup goes below `cv-sandbox-test-<name>`, one parent per test, so
/// that a test removing its parent never races another creating its cgroup.
const CGROUP_PARENT_PREFIX: &str = "cv-sandbox-test-";

fn probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jail-probe"))
}

fn launcher() -> Launcher {
    Launcher {
        program: probe(),
        args: vec!["enter".into()],
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn root_or_skip(test: &str) -> bool {
    if !is_root() {
        eprintln!(
            "{test}: skipped: the jail is built as root on the appliance, and this runs as uid {}",
            nix::unistd::Uid::effective()
        );
        return false;
    }
    true
}

fn spec(name: &str) -> JailSpec {
    let mut spec = JailSpec::new(name, NOBODY, NOBODY);
    spec.memory_bytes = 64 << 20;
    spec.pids_max = 16;
    spec.cpu_millicores = 500;
    spec.tmpfs_bytes = 8 << 20;
    spec.cgroup_parent = format!("{CGROUP_PARENT_PREFIX}{name}").into();
    spec
}

fn start(spec: &JailSpec, args: &[&str]) -> JailedWorker {
    let command = WorkerCommand::new(probe())
        .args(args.iter().copied())
        .stdout(Stdio::piped());
    cv_sandbox::spawn(&LinuxOps::new(), &launcher(), spec, command)
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"))
}

/// The cgroup directories a jail's cgroup may have, on v1 or v2.
fn cgroup_dirs(cg: &str) -> Vec<PathBuf> {
    ["", "memory", "pids", "cpu"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join(cg))
        .collect()
}

/// Waits for the jail to end, checks its cgroup is gone, and removes its parent.
fn finish(jail: &mut JailedWorker, limit: Duration) -> ExitStatus {
    let cg = jail.cgroup().map(str::to_owned);
    let status = jail
        .wait_timeout(limit)
        .expect("wait")
        .unwrap_or_else(|| panic!("the jail did not end within {limit:?}"));
    if let Some(cg) = cg {
        for dir in cgroup_dirs(&cg) {
            assert!(!dir.exists(), "{} was left behind", dir.display());
        }
        let parent = Path::new(&cg)
            .parent()
            .and_then(Path::to_str)
            .expect("parent");
        cv_sandbox::JailOps::cgroup_remove(&mut LinuxOps::new(), parent)
            .expect("remove the test's parent cgroup");
        for dir in cgroup_dirs(parent) {
            assert!(!dir.exists(), "{} was left behind", dir.display());
        }
    }
    status
}

/// Runs the probe to the end; returns the report, its JSON answer and its exit status.
fn run(spec: &JailSpec, args: &[&str]) -> (JailReport, Value, ExitStatus, Option<u64>) {
    let mut jail = start(spec, args);
    let mut out = String::new();
    jail.take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read the probe's output");
    let status = finish(&mut jail, Duration::from_secs(60));
    let answer = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (jail.report().clone(), answer, status, jail.oom_kills())
}

fn failed_with(result: &Value, errno: i32) -> bool {
    result["ok"] == false && result["errno"] == errno
}

#[test]
fn the_report_lists_every_protection_applied_on_this_machine() {
    if !root_or_skip("report") {
        return;
    }
    let (report, answer, status, _) = run(&spec("t-report"), &["identity"]);
    eprintln!("{report}");
    assert!(status.success(), "{status}: {answer}");
    assert_eq!(report.mode, JailMode::Root);
    assert!(report.cgroup.is_some(), "no cgroup hierarchy detected");
    assert_eq!(report.protections.len(), Protection::ALL.len());
    let missing: Vec<_> = report.missing().collect();
    assert!(missing.is_empty(), "missing on this machine: {missing:#?}");
}

#[test]
fn the_worker_is_unprivileged_in_namespaces_of_its_own_and_dies_with_its_keeper() {
    if !root_or_skip("identity") {
        return;
    }
    let mut jail = start(&spec("t-identity"), &["identity", "hold"]);
    let mut first = String::new();
    BufReader::new(jail.take_stdout().expect("stdout"))
        .read_line(&mut first)
        .expect("the probe's first line");
    let inside: Value = serde_json::from_str(&first).expect("json");

    // From the host.
    let worker = jail.worker_pid().expect("the worker's host pid");
    let status = std::fs::read_to_string(format!("/proc/{worker}/status")).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
    assert_eq!(
        uid_line.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4],
        "real, effective, saved and fs uid"
    );
    let me = std::process::id();
    for ns in ["net", "pid", "user", "mnt", "uts", "ipc"] {
        let theirs = cv_sandbox::namespace_of(worker, ns).expect("worker ns");
        let ours = cv_sandbox::namespace_of(me, ns).expect("our ns");
        assert_ne!(theirs, ours, "the worker shares our {ns} namespace");
    }

    // From inside.
    assert_eq!(inside["pid"], 1, "{inside}");
    assert_eq!(inside["uid"], NOBODY);
    assert_eq!(inside["euid"], NOBODY);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(inside["status"][set], "0000000000000000", "{set}: {inside}");
    }
    assert_eq!(inside["status"]["NoNewPrivs"], "1");
    assert_eq!(inside["status"]["Groups"], "");
    assert_eq!(inside["hostname"], "contextvault-worker");
    assert_eq!(
        inside["interfaces"],
        serde_json::json!([{ "name": "lo", "up": true }]),
        "only a loopback interface, up"
    );
    assert_eq!(inside["core_limit"], serde_json::json!([0, 0]));
    // The jail's root holds the system paths this host has, /dev, /proc, /tmp — and
    // nothing else of the host's but the directory the probe binary is bound from (its
    // first path component: /tmp for a target dir there, /work for one in a checkout).
    let probe_top = Path::new(env!("CARGO_BIN_EXE_jail-probe"))
        .components()
        .nth(1)
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    let mut expected: Vec<&str> = ["bin", "lib", "lib64", "sbin", "usr"]
        .into_iter()
        .filter(|p| Path::new("/").join(p).exists())
        .chain(["dev", "proc", "tmp"])
        .collect();
    if !expected.contains(&probe_top) {
        expected.push(probe_top);
    }
    if Path::new("/etc/ld.so.cache").exists() {
        expected.push("etc");
    }
    expected.sort_unstable();
    assert_eq!(
        inside["root_entries"],
        serde_json::json!(expected),
        "{inside}"
    );

    // The keeper is what the supervisor holds: killing it ends the whole jail.
    jail.kill().expect("kill the keeper");
    let status = finish(&mut jail, Duration::from_secs(10));
    assert_eq!(status.signal(), Some(9));
    let gone = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{worker}")).exists() {
        assert!(Instant::now() < gone, "the worker outlived its keeper");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn it_cannot_reach_a_listener_on_the_hosts_loopback() {
    if !root_or_skip("net") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port().to_string();
    let (_, answer, status, _) = run(&spec("t-net"), &["net", &port]);
    assert!(status.success(), "{status}");
    // ECONNREFUSED: its own 127.0.0.1 has nothing on that port.
    assert!(failed_with(&answer["host_listener"], 111), "{answer}");
    assert_eq!(
        answer["own_loopback"]["ok"], true,
        "its loopback works: {answer}"
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host's listener was reached: {other:?}"),
    }
}

#[test]
fn it_cannot_write_outside_its_tmpfs() {
    if !root_or_skip("fs") {
        return;
    }
    let models = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(models.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(models.path().join("model.onnx"), b"weights").expect("model");
    let mut spec = spec("t-fs");
    spec.binds.push(Bind {
        source: models.path().to_owned(),
        target: "/models".into(),
    });
    let (report, answer, status, _) = run(&spec, &["fs", "/models"]);
    assert!(status.success(), "{status}");
    assert!(
        report.status(Protection::ReadOnlyBinds).is_applied(),
        "{report}"
    );
    const EROFS: i32 = 30;
    for place in ["write_root", "write_usr", "write_dev", "write_bind"] {
        assert!(failed_with(&answer[place], EROFS), "{place}: {answer}");
    }
    assert_eq!(answer["write_tmp"]["ok"], true, "{answer}");
    assert_eq!(answer["read_tmp"]["ok"], true, "{answer}");
    assert_eq!(
        answer["read_bind"]["ok"], true,
        "the model is readable: {answer}"
    );
    assert_eq!(answer["write_dev_null"]["ok"], true, "{answer}");
    // EACCES: /tmp is noexec. ENOSPC: and no larger than the spec says (8 MiB).
    assert!(failed_with(&answer["exec_from_tmp"], 13), "{answer}");
    assert!(failed_with(&answer["fill_tmp"], 28), "{answer}");
    // ENOENT: no host file outside the system paths is there at all.
    assert!(failed_with(&answer["etc_passwd"], 2), "{answer}");
    assert_eq!(answer["old_root"], false);
    assert_eq!(
        answer["dev_entries"],
        serde_json::json!([
            "fd", "full", "null", "random", "stderr", "stdin", "stdout", "urandom", "zero"
        ])
    );
    assert!(!models.path().join("probe").exists());
}

/// A character device node the test makes in `/dev` for itself (the null device's
/// numbers, 1:3, mode 0666) and removes when dropped: it stands in for a GPU's nodes,
/// which a test cannot count on, and unlike a host node such as `/dev/net/tun` (0666 on
/// most hosts, 0600 on some) its mode is known.
struct TestDevice(PathBuf);

impl TestDevice {
    fn make(name: &str) -> TestDevice {
        let path = PathBuf::from(format!("/dev/{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
        // mknod applies the umask.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        TestDevice(path)
    }
}

impl Drop for TestDevice {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_device_the_spec_names_is_usable_inside_and_a_missing_one_is_named() {
    if !root_or_skip("device") {
        return;
    }
    let device = TestDevice::make("cv-test-device");
    let path = device.0.to_str().unwrap().to_owned();
    let name = device.0.file_name().unwrap().to_str().unwrap().to_owned();
    let mut spec = spec("t-device");
    spec.enforcement = Enforcement::RequireAll;
    spec.devices = vec![device.0.clone(), "/dev/nvidia-absent".into()];
    let (report, answer, status, _) = run(&spec, &["device", &path]);
    assert!(status.success(), "{status}");
    assert_eq!(answer["open"]["ok"], true, "{answer}");
    assert!(
        answer["dev_entries"]
            .as_array()
            .is_some_and(|e| e.contains(&name.as_str().into())),
        "{answer}"
    );
    // EROFS: /dev is read-only with the extra node in it.
    assert!(failed_with(&answer["write_dev"], 30), "{answer}");
    match report.status(Protection::DeviceNodes) {
        Status::Applied { detail } => assert!(
            detail.contains(&format!("asked for: {path}"))
                && detail.contains("left out: /dev/nvidia-absent (not on this machine)"),
            "{detail}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn it_cannot_see_host_processes() {
    if !root_or_skip("procs") {
        return;
    }
    let me = std::process::id().to_string();
    let (_, answer, status, _) = run(&spec("t-procs"), &["procs", &me]);
    assert!(status.success(), "{status}");
    assert_eq!(answer["pid"], 1);
    assert_eq!(answer["proc_pids"], serde_json::json!([1]), "{answer}");
    // ESRCH: our pid does not exist in its pid namespace.
    assert!(failed_with(&answer["signal_host_pid"], 3), "{answer}");
}

#[test]
fn it_is_oom_killed_at_its_memory_limit() {
    if !root_or_skip("oom") {
        return;
    }
    let spec = spec("t-oom");
    // Four times the limit, touched page by page.
    let (report, answer, status, oom_kills) = run(&spec, &["oom", "256"]);
    assert!(
        report.status(Protection::MemoryLimit).is_applied(),
        "{report}"
    );
    assert_eq!(status.signal(), Some(9), "{status}: {answer}");
    assert!(
        answer.is_null(),
        "it printed a result, so it survived: {answer}"
    );
    assert!(
        oom_kills.is_some_and(|n| n >= 1),
        "the cgroup counted no OOM kill: {oom_kills:?}"
    );
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    if !root_or_skip("pids") {
        return;
    }
    let spec = spec("t-pids");
    let (_, answer, status, _) = run(&spec, &["forkbomb", "200"]);
    assert!(status.success(), "{status}: {answer}");
    let spawned = answer["spawned"].as_u64().expect("spawned");
    // The keeper and the probe count too.
    assert!(spawned <= spec.pids_max - 2, "{answer}");
    assert_eq!(answer["error"]["errno"], 11, "EAGAIN from fork: {answer}");
}

/// Runs `jail-probe spawn <args>` as `nobody`: the spawner itself is unprivileged, as in
/// `contextvault dev` without root.
fn spawn_as_nobody(args: &[&str]) -> Value {
    let output = Command::new(probe())
        .arg("spawn")
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .stderr(Stdio::inherit())
        .output()
        .expect("run the probe as nobody");
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn status_of<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["protections"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["protection"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn without_root_the_worker_runs_and_the_report_names_the_missing_limits() {
    if !root_or_skip("dev mode") {
        // Already unprivileged: nothing to switch to.
        return;
    }
    let answer = spawn_as_nobody(&["identity"]);
    let report = &answer["report"];
    assert_eq!(report["mode"], "unprivileged", "{answer}");
    assert_eq!(
        answer["status"], "exit status: 0",
        "the worker still ran: {answer}"
    );
    assert_eq!(answer["output"]["pid"], 1);
    let parsed: JailReport = serde_json::from_value(report.clone()).expect("report");
    let missing: Vec<_> = parsed.missing().map(|(p, _)| p).collect();
    // A cgroup tree belongs to root unless it was delegated: these three, and only
    // these, are missing — and said to be.
    assert_eq!(
        missing,
        [
            Protection::MemoryLimit,
            Protection::PidsLimit,
            Protection::CpuLimit
        ],
        "{parsed}"
    );
    match parsed.status(Protection::MemoryLimit) {
        Status::Unavailable { reason } => assert!(reason.contains("Permission denied"), "{reason}"),
        s => panic!("{s:?}"),
    }
    assert!(
        status_of(report, "unprivileged_uid")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("uid 65534 on the host")),
        "{report}"
    );
}

#[test]
fn require_all_refuses_to_start_a_worker_with_a_protection_missing() {
    if !root_or_skip("require all") {
        return;
    }
    let answer = spawn_as_nobody(&["--require-all", "identity"]);
    let error = answer["spawn_error"].as_str().unwrap_or_default();
    assert!(error.contains("refused"), "{answer}");
    assert!(error.contains("memory limit"), "{answer}");
    assert!(answer.get("output").is_none(), "the worker ran: {answer}");
}

#[test]
fn a_worker_that_cannot_exec_is_an_error_with_the_report_and_leaves_nothing_behind() {
    if !root_or_skip("exec failure") {
        return;
    }
    // A file that is there but not executable: the jail is built, the exec fails.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let program = dir.path().join("not-a-program");
    std::fs::write(&program, b"data").expect("write");
    let spec = spec("t-noexec");
    let err = cv_sandbox::spawn(
        &LinuxOps::new(),
        &launcher(),
        &spec,
        WorkerCommand::new(&program),
    )
    .expect_err("exec of a non-executable file");
    match &err {
        cv_sandbox::SandboxError::Start { reason, report } => {
            assert!(reason.contains("Permission denied"), "{reason}");
            assert!(report.is_complete(), "the jail itself was built: {report}");
        }
        other => panic!("{other}"),
    }
    // The error dropped the jail: its cgroup is gone; remove the test's parent.
    let parent = format!("{CGROUP_PARENT_PREFIX}t-noexec");
    cv_sandbox::JailOps::cgroup_remove(&mut LinuxOps::new(), &parent).expect("the parent is empty");
    for dir in cgroup_dirs(&parent) {
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
}
