//! Network namespaces for tests that need separate hosts: an appliance, a phone, a
//! stranger, joined by veth pairs. Root only; everything is removed on drop (processes
//! left in a namespace are killed first), so a failed test leaves nothing behind.

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether a root network test can run here: root, and each of `programs` (e.g. `ip`,
/// `wireguard-go`, `wg`) on the `PATH`; the reason when not.
pub fn can_run(programs: &[&str]) -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("network namespaces and interfaces need root".into());
    }
    let on_path = |program: &str| {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())
        })
    };
    match programs.iter().find(|p| !on_path(p)) {
        Some(missing) => Err(format!(
            "`{missing}` is not installed (scripts/install-deps --test)"
        )),
        None => Ok(()),
    }
}

/// Whether root network test `test` runs: when [`can_run`] says it cannot, the test is
/// skipped with the reason printed, unless `CV_REQUIRE_ROOT_NET=1` (which
/// `scripts/test` sets as root) makes that a failure.
pub fn root_net_or_skip(test: &str, programs: &[&str]) -> bool {
    match can_run(programs) {
        Ok(()) => true,
        Err(reason) if std::env::var("CV_REQUIRE_ROOT_NET").as_deref() == Ok("1") => {
            panic!("CV_REQUIRE_ROOT_NET=1, but {test} cannot run: {reason}")
        }
        Err(reason) => {
            println!("{test}: skipped: {reason}");
            false
        }
    }
}

/// A short name unique to this process and call: interface names are limited to 15
/// bytes, and tests run in parallel (also across test binaries: the pid is in it).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}{n:x}", std::process::id() % 0x10000);
    assert!(name.len() <= 15, "{name} is too long for an interface name");
    name
}

/// Runs a command and panics with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace (`ip netns add`), with its loopback up.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS…`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec NAME PROGRAM ARGS…`, panicking on failure.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A `Command` running `program` in this namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Joins this namespace and `other` with a veth pair: `addr` (CIDR) here,
    /// `other_addr` there, both up.
    pub fn link(&self, addr: &str, other: &Netns, other_addr: &str) {
        let here = unique("cvh");
        let there = unique("cvt");
        run(
            "ip",
            &[
                "link",
                "add",
                &here,
                "netns",
                &self.name,
                "type",
                "veth",
                "peer",
                "name",
                &there,
                "netns",
                &other.name,
            ],
        );
        self.ip(&["addr", "add", addr, "dev", &here]);
        self.ip(&["link", "set", &here, "up"]);
        other.ip(&["addr", "add", other_addr, "dev", &there]);
        other.ip(&["link", "set", &there, "up"]);
    }

    /// Runs `make()`'s future on a thread that has entered this namespace, with its own
    /// single-threaded runtime: every socket it opens (a reqwest client's too) belongs
    /// to the namespace. Awaiting it does not block the caller's runtime.
    pub async fn run_in<F, Fut, T>(&self, make: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        Netns::run_in_named(&self.name, make).await
    }

    /// [`Netns::run_in`] by the namespace's name.
    pub async fn run_in_named<F, Fut, T>(name: &str, make: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let path = format!("/var/run/netns/{name}");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = tx.send(runtime.block_on(make()));
        });
        rx.await.expect("the namespace thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside (wireguard-go, a forgotten server) would keep it alive.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
