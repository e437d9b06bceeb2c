//! A stand-in worker for the jail's tests: each subcommand tries something a jailed
//! worker must not (or must) be able to do and prints the results as one JSON line.
//!
//! `jail-probe enter` is also the launcher: it calls `cv_sandbox::enter_jail_and_exec`, as
//! `contextvault jail-enter` will. `jail-probe spawn …` plays the spawner, so a test can
//! build a jail as an ordinary user (dev mode).

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    // `enter` must come before anything that could start a thread.
    if arg(0) == "enter" {
        return cv_sandbox::enter_jail_and_exec();
    }
    let result = match arg(0) {
        "identity" => identity(arg(1) == "hold"),
        "net" => net(arg(1)),
        "fs" => fs_probe(arg(1)),
        "device" => device(arg(1)),
        "procs" => procs(arg(1)),
        "oom" => oom(arg(1)),
        "forkbomb" => forkbomb(arg(1)),
        "sleep" => {
            std::thread::sleep(Duration::from_secs(60));
            json!({})
        }
        "spawn" => return spawn_as_me(&args[1..]),
        other => json!({ "error": format!("unknown probe {other:?}") }),
    };
    println!("{result}");
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}

fn outcome<T>(r: std::io::Result<T>) -> Value {
    match r {
        Ok(_) => json!({ "ok": true }),
        Err(e) => json!({ "ok": false, "error": e.to_string(), "errno": e.raw_os_error() }),
    }
}

/// Who the probe is, what it holds, what it can see of the network.
fn identity(hold: bool) -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let fields: BTreeMap<String, String> = status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.starts_with("Cap") || ["Uid", "Gid", "NoNewPrivs", "Groups"].contains(k))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect();
    let interfaces: Vec<Value> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            let mut seen = BTreeMap::new();
            for a in addrs {
                seen.insert(
                    a.interface_name.clone(),
                    a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP),
                );
            }
            seen.into_iter()
                .map(|(name, up)| json!({ "name": name, "up": up }))
                .collect()
        })
        .unwrap_or_default();
    let core = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE)
        .map(|(soft, hard)| json!([soft, hard]))
        .unwrap_or(Value::Null);
    let value = json!({
        "pid": std::process::id(),
        "uid": nix::unistd::getuid().as_raw(),
        "euid": nix::unistd::geteuid().as_raw(),
        "gid": nix::unistd::getgid().as_raw(),
        "hostname": nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()),
        "status": fields,
        "interfaces": interfaces,
        "core_limit": core,
        "root_entries": list("/"),
    });
    if hold {
        // The test inspects this process from the host while it waits, then kills it.
        println!("{value}");
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(60));
    }
    value
}

fn list(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Connects to the host's listener (which must fail) and to one of its own on its
/// loopback (which must work).
fn net(port: &str) -> Value {
    let host = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("address"),
        Duration::from_secs(2),
    );
    let own = TcpListener::bind("127.0.0.1:0").and_then(|l| {
        let addr = l.local_addr()?;
        let mut c = TcpStream::connect(addr)?;
        let (mut s, _) = l.accept()?;
        c.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        Ok(buf)
    });
    json!({
        "host_listener": outcome(host),
        "own_loopback": outcome(own),
    })
}

fn write(path: &str) -> std::io::Result<()> {
    std::fs::write(path, b"probe")
}

/// Writes a shell script to /tmp and runs it (which a noexec /tmp refuses).
fn exec_from_tmp() -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write("/tmp/probe.sh", "#!/bin/sh\nexit 0\n")?;
    std::fs::set_permissions("/tmp/probe.sh", std::fs::Permissions::from_mode(0o755))?;
    Command::new("/tmp/probe.sh").status().map(drop)
}

/// Where it can write and what it can see.
fn fs_probe(ro_dir: &str) -> Value {
    json!({
        "write_root": outcome(write("/probe")),
        "write_usr": outcome(write("/usr/probe")),
        "write_dev": outcome(write("/dev/probe")),
        "write_tmp": outcome(write("/tmp/probe")),
        "read_tmp": outcome(std::fs::read("/tmp/probe")),
        "write_bind": outcome(write(&format!("{ro_dir}/probe"))),
        "read_bind": outcome(std::fs::read(format!("{ro_dir}/model.onnx"))),
        "write_dev_null": outcome(write("/dev/null")),
        "exec_from_tmp": outcome(exec_from_tmp()),
        "fill_tmp": outcome(std::fs::write("/tmp/fill", vec![1u8; 16 << 20])),
        "etc_passwd": outcome(std::fs::read("/etc/passwd")),
        "old_root": Path::new("/.oldroot").exists(),
        "root_entries": list("/"),
        "dev_entries": list("/dev"),
    })
}

/// Whether a device node passed into the jail can be opened for reading and writing
/// (a bind mount made in a user namespace could have lost the right to use it), and what
/// `/dev` holds.
fn device(path: &str) -> Value {
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path);
    json!({
        "open": outcome(open),
        "dev_entries": list("/dev"),
        "write_dev": outcome(write(&format!("{path}.probe"))),
    })
}

/// What it can see of processes: its own /proc, and a signal to the host's test.
fn procs(host_pid: &str) -> Value {
    let pids: Vec<u32> = list("/proc")
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    let signal = host_pid
        .parse::<i32>()
        .map_err(std::io::Error::other)
        .and_then(|p| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None)
                .map_err(std::io::Error::from)
        });
    json!({
        "pid": std::process::id(),
        "proc_pids": pids,
        "signal_host_pid": outcome(signal),
    })
}

/// Allocates and touches `mib` MiB, one MiB at a time.
fn oom(mib: &str) -> Value {
    let mib: usize = mib.parse().unwrap_or(512);
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    for i in 0..mib {
        // Non-zero bytes, so every page is really backed.
        hoard.push(vec![1u8; 1 << 20]);
        if i % 16 == 0 {
            eprintln!("probe: {i} MiB");
        }
    }
    json!({ "survived_mib": hoard.len() })
}

/// Starts up to `n` children and counts how many it got.
fn forkbomb(n: &str) -> Value {
    let n: usize = n.parse().unwrap_or(1000);
    let mut children = Vec::new();
    let mut error = None;
    for _ in 0..n {
        match Command::new("/proc/self/exe")
            .arg("sleep")
            .stdout(Stdio::null())
            .spawn()
        {
            Ok(c) => children.push(c),
            Err(e) => {
                error = Some(json!({ "error": e.to_string(), "errno": e.raw_os_error() }));
                break;
            }
        }
    }
    let spawned = children.len();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    json!({ "spawned": spawned, "error": error })
}

/// Plays the spawner: jails `jail-probe <args…>` as whoever runs this, prints the report
/// and the probe's output.
fn spawn_as_me(args: &[String]) -> ExitCode {
    let (strict, args) = match args.first().map(String::as_str) {
        Some("--require-all") => (true, &args[1..]),
        _ => (false, args),
    };
    let me = std::env::current_exe().expect("own path");
    let launcher = cv_sandbox::Launcher {
        program: me.clone(),
        args: vec!["enter".into()],
    };
    let mut spec = cv_sandbox::JailSpec::new("dev-probe", 1000, 1000);
    spec.memory_bytes = 64 << 20;
    spec.cgroup_parent = "cv-sandbox-tests".into();
    if strict {
        spec.enforcement = cv_sandbox::Enforcement::RequireAll;
    }
    let command = cv_sandbox::WorkerCommand::new(&me)
        .args(args.iter().cloned())
        .stdout(Stdio::piped());
    let (report, output, status) =
        match cv_sandbox::spawn(&cv_sandbox::LinuxOps::new(), &launcher, &spec, command) {
            Ok(mut jail) => {
                let mut out = String::new();
                if let Some(mut stdout) = jail.take_stdout() {
                    let _ = stdout.read_to_string(&mut out);
                }
                let status = jail.wait().map(|s| s.to_string()).unwrap_or_default();
                (jail.report().clone(), out, status)
            }
            Err(e) => {
                let report = match &e {
                    cv_sandbox::SandboxError::Refused { report, .. }
                    | cv_sandbox::SandboxError::Start { report, .. } => json!(report),
                    _ => Value::Null,
                };
                println!(
                    "{}",
                    json!({ "spawn_error": e.to_string(), "report": report })
                );
                return ExitCode::from(1);
            }
        };
    println!(
        "{}",
        json!({
            "report": report,
            "output": serde_json::from_str::<Value>(output.trim()).unwrap_or(Value::String(output)),
            "status": status,
        })
    );
    ExitCode::SUCCESS
}
