//! The spawner's side: create the cgroup, start the keeper, hand it the plan, read the
//! report, and keep a handle on the jail until it is gone.

use std::io::{self, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};

use crate::ops::{CgroupVersion, JailOps};
use crate::plan::{self, Plan};
use crate::protocol::{FromJail, ToJail, receive, send};
use crate::report::{JailMode, JailReport, Outcome, Protection, Status};
use crate::spec::{Bind, Enforcement, JailSpec, SYSTEM_PATHS};
use crate::{SandboxError, linux};

/// How to start a process that calls [`crate::enter_jail_and_exec`]: the appliance's own
/// binary and the arguments that select that mode (`contextvault jail-enter`).
#[derive(Debug, Clone)]
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// The program to run in the jail.
#[derive(Debug)]
pub struct WorkerCommand {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    fds: Vec<FdMapping>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
}

impl WorkerCommand {
    /// `program` must be an absolute path. The worker starts with an empty environment,
    /// `/dev/null` on stdin and the spawner's stdout and stderr.
    pub fn new(program: impl Into<PathBuf>) -> WorkerCommand {
        WorkerCommand {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            fds: Vec::new(),
            stdout: None,
            stderr: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> WorkerCommand {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> WorkerCommand {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> WorkerCommand {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Hands `fd` (a socket to the vault service, say) to the worker as descriptor
    /// `child_fd` (3 or more).
    pub fn keep_fd(mut self, fd: OwnedFd, child_fd: i32) -> WorkerCommand {
        self.fds.push(FdMapping {
            parent_fd: fd,
            child_fd,
        });
        self
    }

    pub fn stdout(mut self, stdout: Stdio) -> WorkerCommand {
        self.stdout = Some(stdout);
        self
    }

    pub fn stderr(mut self, stderr: Stdio) -> WorkerCommand {
        self.stderr = Some(stderr);
        self
    }
}

/// Makes each worker cgroup's name unique within this process.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

/// Resolves the program and the bind sources (a symlink would resolve against the jail's
/// root, not the host's) and adds the program itself to the binds unless a bind or a
/// system path already makes it visible.
fn make_plan(spec: &JailSpec, command: &WorkerCommand) -> Result<Plan, SandboxError> {
    if !command.program.is_absolute() {
        return Err(SandboxError::InvalidSpec(format!(
            "the worker program {} is not an absolute path",
            command.program.display()
        )));
    }
    if let Some(m) = command.fds.iter().find(|m| m.child_fd < 3) {
        return Err(SandboxError::InvalidSpec(format!(
            "descriptor {} is stdin, stdout or stderr; hand sockets over as 3 or above",
            m.child_fd
        )));
    }
    let program = std::fs::canonicalize(&command.program).map_err(io_err(format!(
        "worker program {}",
        command.program.display()
    )))?;
    let mut binds = Vec::new();
    for b in &spec.binds {
        let source = std::fs::canonicalize(&b.source)
            .map_err(io_err(format!("bind source {}", b.source.display())))?;
        binds.push(Bind {
            source,
            target: b.target.clone(),
        });
    }
    let covered = binds.iter().any(|b| program.starts_with(&b.target))
        || SYSTEM_PATHS.iter().any(|p| program.starts_with(p));
    if !covered {
        binds.push(Bind::same(&program));
    }
    Ok(Plan {
        spec: spec.clone(),
        program,
        args: command.args.clone(),
        env: command.env.clone(),
        binds,
    })
}

/// Starts `command` in a jail built as `spec` says, through `launcher` (a process that
/// calls [`crate::enter_jail_and_exec`]). `ops` makes the cgroup around it.
///
/// Returns once the worker's exec succeeded, with the report of every protection. With
/// [`Enforcement::RequireAll`] a missing protection is an error and the worker never ran.
pub fn spawn<O>(
    ops: &O,
    launcher: &Launcher,
    spec: &JailSpec,
    mut command: WorkerCommand,
) -> Result<JailedWorker, SandboxError>
where
    O: JailOps + Clone + Send + 'static,
{
    spec.validate()?;
    let plan = make_plan(spec, &command)?;
    let mut jail = JailedWorker {
        child: None,
        report: JailReport::from_outcomes(JailMode::Root, None, &[]),
        cgroup: None,
        ops: Box::new(ops.clone()),
        done: false,
        final_oom_kills: None,
    };
    let guessed_mode = if jail.ops.effective_uid() == 0 {
        JailMode::Root
    } else {
        JailMode::Unprivileged
    };
    let path = format!(
        "{}/{}-{}-{}",
        spec.cgroup_parent.display(),
        spec.name,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (version, mut outcomes, created) = plan::cgroup(jail.ops.as_mut(), spec, &path);
    if created {
        jail.cgroup = Some(path);
    }
    let refuse_now = |outcomes: &[Outcome], version: Option<CgroupVersion>| {
        let report = JailReport::from_outcomes(guessed_mode, version, outcomes);
        let reason = outcomes
            .iter()
            .filter_map(|o| match &o.status {
                Status::Unavailable { reason } => Some(format!("{}: {reason}", o.protection)),
                Status::Applied { .. } => None,
            })
            .collect::<Vec<_>>()
            .join("; ");
        SandboxError::Refused {
            reason: format!("every protection is required, and these are missing: {reason}"),
            report: Box::new(report),
        }
    };
    let strict = spec.enforcement == Enforcement::RequireAll;
    if strict && outcomes.iter().any(|o| !o.status.is_applied()) {
        return Err(refuse_now(&outcomes, version));
    }

    let (ours, theirs) = UnixStream::pair().map_err(io_err("create the jail's control socket"))?;
    let mut cmd = Command::new(&launcher.program);
    cmd.args(&launcher.args)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(command.stdout.take().unwrap_or_else(Stdio::inherit))
        .stderr(command.stderr.take().unwrap_or_else(Stdio::inherit));
    cmd.fd_mappings(std::mem::take(&mut command.fds))
        .map_err(|e| SandboxError::InvalidSpec(e.to_string()))?;
    let child = cmd
        .spawn()
        .map_err(io_err(format!("start {}", launcher.program.display())))?;
    // The keeper now holds its own copies of the socket and the kept descriptors.
    drop(cmd);
    let keeper = child.id();
    jail.child = Some(child);

    // The keeper waits for the plan before doing anything, so it and every process it
    // starts are in the cgroup before the jail is built.
    if let Some(cg) = jail.cgroup.clone()
        && let Err(e) = jail.ops.cgroup_add_pid(&cg, keeper)
    {
        for p in [
            Protection::MemoryLimit,
            Protection::PidsLimit,
            Protection::CpuLimit,
        ] {
            outcomes.push(Outcome::unavailable(
                p,
                format!("the jail could not join its cgroup: {e}"),
            ));
        }
        if strict {
            return Err(refuse_now(&outcomes, version));
        }
    }

    ours.set_read_timeout(Some(spec.start_timeout))
        .map_err(io_err("set the control socket's timeout"))?;
    send(&ours, &ToJail::Start { plan }).map_err(io_err("hand the plan to the jail"))?;
    let mut mode = guessed_mode;
    let mut end: Result<(), String> = Err("the jail ended before starting the worker".to_owned());
    let mut refused = false;
    let mut reader = BufReader::new(&ours);
    loop {
        match receive::<FromJail>(&mut reader) {
            Ok(None) => break,
            Ok(Some(message)) => match message {
                FromJail::Mode { mode: m } => mode = m,
                FromJail::Outcomes { outcomes: o } => outcomes.extend(o),
                FromJail::Warning { message } => tracing::warn!(%message, "worker jail"),
                FromJail::Refused { reason } => {
                    refused = true;
                    end = Err(reason);
                }
                FromJail::Failed { error } => end = Err(error),
                FromJail::Exec { .. } => end = Ok(()),
                FromJail::ExecFailed { error } => end = Err(error),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                end = Err(format!(
                    "the jail did not start the worker within {:?}",
                    spec.start_timeout
                ));
                break;
            }
            Err(e) => {
                end = Err(format!("reading the jail's report: {e}"));
                break;
            }
        }
    }
    jail.report = JailReport::from_outcomes(mode, version, &outcomes);
    match end {
        Ok(()) => Ok(jail),
        Err(reason) if refused => Err(SandboxError::Refused {
            reason,
            report: Box::new(jail.report.clone()),
        }),
        Err(reason) => Err(SandboxError::Start {
            reason,
            report: Box::new(jail.report.clone()),
        }),
    }
    // On an error `jail` is dropped here: the keeper is killed and the cgroup removed.
}

/// A running jail. The process it holds is the keeper, the worker's parent outside the
/// pid namespace: signals sent to it (SIGTERM, SIGHUP, …) are forwarded to the worker,
/// its exit status is the worker's, and when it dies the whole jail dies (the worker has
/// SIGKILL as its parent-death signal, and the kernel ends a pid namespace with its first
/// process). Dropping the handle kills the jail and removes its cgroup.
///
/// Being process 1 of its pid namespace, the worker receives only the signals it has a
/// handler for (SIGKILL from outside aside): to stop gracefully on SIGTERM it must handle
/// SIGTERM.
pub struct JailedWorker {
    child: Option<Child>,
    report: JailReport,
    cgroup: Option<String>,
    ops: Box<dyn JailOps + Send>,
    done: bool,
    /// The OOM kill count read just before the cgroup was removed.
    final_oom_kills: Option<u64>,
}

impl std::fmt::Debug for JailedWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JailedWorker")
            .field("keeper", &self.child.as_ref().map(Child::id))
            .field("cgroup", &self.cgroup)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl JailedWorker {
    /// The keeper's pid (the process to signal).
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The worker's pid as the host sees it (the keeper's only child), while it runs.
    pub fn worker_pid(&self) -> Option<u32> {
        linux::children_of(self.id()).into_iter().next()
    }

    /// What the jail applied, and what it could not.
    pub fn report(&self) -> &JailReport {
        &self.report
    }

    /// The worker's cgroup (relative to each hierarchy's root), if it has one.
    pub fn cgroup(&self) -> Option<&str> {
        self.cgroup.as_deref()
    }

    /// How many times the OOM killer struck in the jail's cgroup (still known after the
    /// jail ended and its cgroup was removed). `None` without a cgroup.
    pub fn oom_kills(&mut self) -> Option<u64> {
        if self.done {
            return self.final_oom_kills;
        }
        let cg = self.cgroup.clone()?;
        self.ops.cgroup_oom_kills(&cg).ok()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.as_mut()?.stderr.take()
    }

    /// Waits for the worker to end, then removes the cgroup.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| io::Error::other("the jail was never started"))?;
        let status = child.wait()?;
        self.finish();
        Ok(status)
    }

    /// Like [`Self::wait`], without blocking.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| io::Error::other("the jail was never started"))?;
        let status = child.try_wait()?;
        if status.is_some() {
            self.finish();
        }
        Ok(status)
    }

    /// Waits at most `limit` for the worker to end.
    pub fn wait_timeout(&mut self, limit: Duration) -> io::Result<Option<ExitStatus>> {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if std::time::Instant::now() >= until {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the keeper, and with it the jail.
    pub fn kill(&mut self) -> io::Result<()> {
        match self.child.as_mut() {
            Some(child) => child.kill(),
            None => Ok(()),
        }
    }

    /// Removes the cgroup once the keeper is gone, killing what is left in it first (the
    /// pid namespace's processes die with the worker, but not in the same instant).
    fn finish(&mut self) {
        if self.done {
            return;
        }
        if let Some(cg) = self.cgroup.clone() {
            self.final_oom_kills = self.ops.cgroup_oom_kills(&cg).ok();
            if let Err(e) = self.ops.cgroup_kill_all(&cg) {
                tracing::warn!(cgroup = %cg, error = %e, "processes left in a worker cgroup");
            }
            if let Err(e) = self.ops.cgroup_remove(&cg) {
                tracing::warn!(cgroup = %cg, error = %e, "cannot remove a worker cgroup");
            }
        }
        self.done = true;
    }
}

impl Drop for JailedWorker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut()
            && !self.done
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.finish();
    }
}

#[cfg(test)]
pub(crate) fn plan_for_tests(spec: &JailSpec, program: &std::path::Path) -> Plan {
    Plan {
        spec: spec.clone(),
        program: program.to_owned(),
        args: Vec::new(),
        env: Vec::new(),
        binds: spec.binds.clone(),
    }
}
