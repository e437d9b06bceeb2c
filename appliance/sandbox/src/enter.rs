//! The jail's two stages, in processes started from the appliance's own binary.
//!
//! [`enter_jail_and_exec`] is what `contextvault jail-enter` (or a test binary) calls. It
//! reads its first message from the control socket on stdin, which says which stage it
//! is:
//!
//! 1. **The keeper** (started by [`crate::spawn`], already in the cgroup): without root a
//!    user namespace first; then `unshare(CLONE_NEWPID)`, which only affects children, so
//!    it starts the second stage as its child — the first process of the new pid
//!    namespace — relays its report, and stays behind as its parent: it forwards
//!    SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2, and exits as the worker did.
//! 2. **The second stage** builds the rest of the jail around itself (see `plan::stage2`)
//!    and execs the worker in its place, so the worker is process 1 of its pid namespace.
//!
//! No `unsafe` anywhere: the namespaces are entered with `unshare(2)` by the process
//! itself rather than between fork and exec (`pre_exec`), and new processes are started
//! with `std::process::Command`.

use std::io::{self, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};

use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::stat::SFlag;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid};

use crate::linux::{LinuxOps, dev_null};
use crate::plan::{self, Plan, Stage1, Verdict};
use crate::protocol::{FromJail, ToJail, receive, receive_raw, send};

/// Signals the keeper passes on to the worker.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Runs the stage of the jail that the control socket on stdin asks for. The second
/// stage does not return when it succeeds: it becomes the worker. The keeper returns the
/// worker's exit code (or dies of the signal that killed the worker).
///
/// The calling binary must call this before it starts any thread: `unshare` of a user
/// namespace needs a single-threaded process.
pub fn enter_jail_and_exec() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jail: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> io::Result<ExitCode> {
    let ctl = take_control_socket()?;
    let mut reader = BufReader::new(&ctl);
    let first = receive::<ToJail>(&mut reader)?
        .ok_or_else(|| io::Error::other("the control socket closed before the plan came"))?;
    drop(reader);
    match first {
        ToJail::Start { plan } => keeper(ctl, plan),
        ToJail::Stage2 { plan, first } => Ok(become_worker(&ctl, &plan, &first)),
    }
}

/// Moves the control socket off stdin to a close-on-exec descriptor (so that the worker
/// does not inherit it), and puts `/dev/null` on stdin instead.
fn take_control_socket() -> io::Result<UnixStream> {
    let stdin = io::stdin();
    let st = nix::sys::stat::fstat(stdin.as_fd()).map_err(io::Error::from)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::other(
            "stdin is not the jail's control socket: this mode is started by the supervisor, not by hand",
        ));
    }
    // try_clone_to_owned duplicates with F_DUPFD_CLOEXEC.
    let ctl: OwnedFd = stdin.as_fd().try_clone_to_owned()?;
    nix::unistd::dup2_stdin(dev_null()?).map_err(io::Error::from)?;
    Ok(UnixStream::from(ctl))
}

fn keeper(ctl: UnixStream, plan: Plan) -> io::Result<ExitCode> {
    let mut ops = LinuxOps::new();
    let first = plan::stage1(&mut ops);
    send(&ctl, &FromJail::Mode { mode: first.mode })?;
    send(
        &ctl,
        &FromJail::Outcomes {
            outcomes: first.outcomes.clone(),
        },
    )?;

    // Blocked, so that sigwait below takes them in turn; the child starts with an empty
    // mask (std resets it).
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(io::Error::from)?;

    let (ours, theirs) = UnixStream::pair()?;
    let spawned = Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let error = format!("cannot start the jail's second stage: {e}");
            send(&ctl, &FromJail::Failed { error })?;
            return Ok(ExitCode::from(1));
        }
    };
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
    send(&ours, &ToJail::Stage2 { plan, first })?;

    // Relay the second stage's report until its exec closes the socket.
    let mut from_stage2 = BufReader::new(&ours);
    let mut to_spawner = &ctl;
    while let Ok(Some(line)) = receive_raw(&mut from_stage2) {
        // The spawner may have given up; the jail goes on regardless.
        let _ = to_spawner.write_all(&line);
    }
    drop(from_stage2);
    drop(ours);
    drop(ctl);

    loop {
        let signal = match mask.wait() {
            Ok(s) => s,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if signal != Signal::SIGCHLD {
            let _ = kill(pid, signal);
            continue;
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitCode::from(code as u8)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(die_like(sig)),
            Ok(_) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Ends the keeper the way the worker ended, so its parent sees the same thing: SIGKILL
/// (the OOM killer's signal) and the terminating signals are raised again; any other
/// signal, whose default would dump the keeper's core, becomes exit code 128 + signal.
fn die_like(sig: Signal) -> ExitCode {
    if matches!(
        sig,
        Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP
    ) {
        let _ = kill(getpid(), sig);
        let _ = SigSet::all().thread_unblock();
    }
    ExitCode::from(128u8.saturating_add(sig as u8))
}

fn become_worker(ctl: &UnixStream, plan: &Plan, first: &Stage1) -> ExitCode {
    // The keeper blocked signals for itself; std's spawn reset the mask, but be sure.
    let _ = SigSet::all().thread_unblock();
    let mut ops = LinuxOps::new();
    let (outcomes, verdict) = plan::stage2(&mut ops, plan, first);
    let _ = send(ctl, &FromJail::Outcomes { outcomes });
    if let Verdict::Refuse(reason) = verdict {
        let _ = send(ctl, &FromJail::Refused { reason });
        return ExitCode::from(1);
    }
    let _ = send(
        ctl,
        &FromJail::Exec {
            program: plan.program.clone(),
        },
    );
    let error = Command::new(&plan.program)
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .exec();
    let _ = send(
        ctl,
        &FromJail::ExecFailed {
            error: format!("exec {}: {error}", plan.program.display()),
        },
    );
    ExitCode::from(127)
}
