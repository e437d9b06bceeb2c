//! AI workers: the supervisor starts each `contextvault worker` in its jail when the
//! vault service asks, hands the service the other end of the worker's socket, and stops
//! it when asked (or when the appliance stops).
//!
//! The service decides when a worker is needed, recycled or given up on (its pool); the
//! supervisor re-validates each request: workers must be on (`workers.count` > 0), the
//! number alive is bounded, only workers it started can be stopped, and the jail is built
//! from the config, never from anything in the request. A worker's process belongs to the
//! supervisor (the jail's keeper is its child), so a finished one is reaped here, and its
//! end — exit status, OOM kills in its cgroup — is kept for the service to ask about.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cv_control::{JailProtection, WorkerEnded, WorkerJail, WorkerStarted};
use cv_sandbox::{
    Bind, Enforcement, JailReport, JailSpec, JailedWorker, Launcher, LinuxOps, WorkerCommand,
};

use crate::{Context, Stop, TaskResult};

/// Where the model directory appears inside a jail.
const MODELS_IN_JAIL: &str = "/models";
/// The descriptor number of the worker's socket inside the jail.
const WORKER_FD: i32 = 3;
/// How many ended workers are remembered for [`Workers::stop`] to report on.
const REMEMBERED: usize = 64;
/// How often finished workers are reaped.
const REAP_EVERY: Duration = Duration::from_secs(2);

/// The workers the supervisor started, alive and recently ended.
#[derive(Debug, Default)]
pub struct Workers {
    next_id: AtomicU64,
    /// Jails being built: counted with the live ones against the limit.
    starting: AtomicUsize,
    live: Mutex<HashMap<u64, JailedWorker>>,
    ended: Mutex<VecDeque<WorkerEnded>>,
}

impl Workers {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, JailedWorker>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, ended: WorkerEnded) {
        let mut list = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        if list.len() == REMEMBERED {
            list.pop_front();
        }
        list.push_back(ended);
    }

    fn recall(&self, id: u64) -> Option<WorkerEnded> {
        let list = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        list.iter().find(|e| e.id == id).cloned()
    }

    /// Claims a place for one more worker if fewer than `limit` are alive or starting;
    /// the place is given back when the returned guard is dropped.
    fn claim(&self, limit: usize) -> Option<Starting<'_>> {
        let live = self.live();
        let starting = self.starting.load(Ordering::SeqCst);
        if live.len() + starting >= limit {
            return None;
        }
        self.starting.fetch_add(1, Ordering::SeqCst);
        Some(Starting(self))
    }
}

/// A place claimed for a worker whose jail is being built.
struct Starting<'a>(&'a Workers);

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.0.starting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The jail of every worker, from the config.
pub fn spec(ctx: &Context) -> JailSpec {
    let w = &ctx.config.workers;
    let mut spec = JailSpec::new(
        "worker",
        ctx.users.worker.uid.as_raw(),
        ctx.users.worker.gid.as_raw(),
    );
    spec.cgroup_parent = ctx.worker_cgroup_parent.clone();
    spec.memory_bytes = w.memory_bytes;
    spec.cpu_millicores = w.cpu_millicores;
    spec.binds = vec![Bind {
        source: w.models_dir.clone(),
        target: MODELS_IN_JAIL.into(),
    }];
    if w.gpu && cv_inference::CUDA_SUPPORT {
        spec.devices = nvidia_devices(Path::new("/dev"));
    }
    spec.enforcement = if w.require_jail {
        Enforcement::RequireAll
    } else {
        Enforcement::ReportMissing
    };
    spec
}

/// The device nodes CUDA opens: the control node, one per GPU, and unified memory's.
/// The jail binds each at the same path. (A MIG slice's `/dev/nvidia-caps` nodes are not
/// passed: the workers see whole GPUs.)
fn nvidia_devices(dev: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return Vec::new();
    };
    let mut nodes: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_cuda_node))
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect();
    nodes.sort();
    nodes
}

fn is_cuda_node(name: &str) -> bool {
    match name.strip_prefix("nvidia") {
        Some("ctl" | "-uvm" | "-uvm-tools") => true,
        Some(n) => !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Starts one worker in its jail; returns what the service is told and its socket.
/// Blocking (the jail takes a moment): call it off the async workers.
pub fn spawn(ctx: &Context) -> Result<(WorkerStarted, OwnedFd), String> {
    let w = &ctx.config.workers;
    if w.count == 0 {
        return Err("local AI is off (workers.count = 0 in the config)".into());
    }
    // The pool keeps `count` workers and replaces them one at a time; twice that (plus
    // slack for replacements whose predecessor is still being reaped) is the most a
    // well-behaved service ever holds.
    let limit = 2 * w.count as usize + 2;
    let Some(_place) = ctx.workers.claim(limit) else {
        return Err(format!(
            "{limit} workers are already running or starting; stop one before starting another"
        ));
    };
    cv_inference::ModelFiles::in_dir(&w.models_dir).map_err(|e| e.to_string())?;

    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot create a worker socket: {e}"))?;
    // One core's worth of CPU limit is one inference thread: more would only contend.
    let threads = w.cpu_millicores.div_ceil(1000).max(1);
    let mut command = WorkerCommand::new(&ctx.exe)
        .args(["worker", "--fd", &WORKER_FD.to_string()])
        .args([
            "--models",
            MODELS_IN_JAIL,
            "--threads",
            &threads.to_string(),
        ])
        .args(["--log-format", &ctx.config.log.format.to_string()])
        .args(["--log-level", &ctx.config.log.level])
        .keep_fd(OwnedFd::from(theirs), WORKER_FD)
        // ONNX Runtime (1.31) sets up its usage-event client even with telemetry off in
        // the environment's options, and warns twice per worker that the jail gives it
        // no CA bundle and no home to keep a device id in. Nothing is sent either way;
        // this switches the client off before it starts.
        .env("ORT_DISABLE_TELEMETRY", "1");
    // The CUDA libraries beside the CUDA runtime are found through the loader's path,
    // which it reads once, when the worker starts.
    if cv_inference::CUDA_SUPPORT && w.models_dir.join(cv_inference::CUDA_DIR).is_dir() {
        let dir = Path::new(MODELS_IN_JAIL).join(cv_inference::CUDA_DIR);
        command = command.env("LD_LIBRARY_PATH", dir.display().to_string());
    }
    let launcher = Launcher {
        program: ctx.exe.clone(),
        args: vec!["jail-enter".into()],
    };
    let jail = cv_sandbox::spawn(&LinuxOps::new(), &launcher, &spec(ctx), command)
        .map_err(|e| format!("the worker's jail could not be built: {e}"))?;
    let id = ctx.workers.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let started = WorkerStarted {
        id,
        pid: jail.worker_pid(),
        jail: summary(jail.report()),
    };
    let missing: Vec<&str> = started.jail.missing().map(|p| p.label.as_str()).collect();
    if missing.is_empty() {
        tracing::info!(id, pid = started.pid, "AI worker started in its jail");
    } else {
        tracing::warn!(
            id,
            pid = started.pid,
            missing = %missing.join(", "),
            "AI worker started without some protections of its jail"
        );
    }
    ctx.workers.live().insert(id, jail);
    Ok((started, OwnedFd::from(ours)))
}

/// Ends worker `id`: waits at most `grace` for it to exit by itself, then kills it.
/// Blocking.
pub fn stop(ctx: &Context, id: u64, grace: Duration) -> Result<WorkerEnded, String> {
    let Some(mut jail) = ctx.workers.live().remove(&id) else {
        return ctx
            .workers
            .recall(id)
            .ok_or_else(|| format!("no worker {id} was started by this supervisor"));
    };
    let grace = grace.min(Duration::from_secs(30));
    let status = match jail.wait_timeout(grace) {
        Ok(Some(status)) => Ok(status),
        Ok(None) | Err(_) => {
            let _ = jail.kill();
            jail.wait()
        }
    };
    let ended = ended(id, status, &mut jail);
    ctx.workers.remember(ended.clone());
    Ok(ended)
}

fn ended(id: u64, status: std::io::Result<ExitStatus>, jail: &mut JailedWorker) -> WorkerEnded {
    let status = match status {
        Ok(status) => describe(status),
        Err(e) => format!("unknown ({e})"),
    };
    let oom_killed = jail.oom_kills().unwrap_or(0) > 0;
    tracing::info!(id, %status, oom_killed, "AI worker ended");
    WorkerEnded {
        id,
        status,
        oom_killed,
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(name) => format!("killed by signal {signal} ({name})"),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

/// The service's view of a jail report.
fn summary(report: &JailReport) -> WorkerJail {
    WorkerJail {
        mode: match report.mode {
            cv_sandbox::JailMode::Root => "root".into(),
            cv_sandbox::JailMode::Unprivileged => "unprivileged".into(),
        },
        cgroup: report.cgroup.map(|v| v.to_string()),
        protections: report
            .protections
            .iter()
            .map(|p| {
                let (applied, detail) = match &p.status {
                    cv_sandbox::Status::Applied { detail } => (true, detail.clone()),
                    cv_sandbox::Status::Unavailable { reason } => (false, reason.clone()),
                };
                JailProtection {
                    name: serde_json::to_value(p.protection)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    label: p.protection.label().to_owned(),
                    applied,
                    detail,
                }
            })
            .collect(),
    }
}

/// The `workers` task: reaps workers that ended by themselves (a closed socket, a crash,
/// the OOM killer), and at shutdown stops the rest.
pub async fn reap(ctx: std::sync::Arc<Context>, mut shutdown: Stop) -> TaskResult {
    let mut ticker = tokio::time::interval(REAP_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.requested() => break,
        }
        let finished: Vec<(u64, JailedWorker)> = {
            let mut live = ctx.workers.live();
            let done: Vec<u64> = live
                .iter_mut()
                .filter_map(|(id, jail)| matches!(jail.try_wait(), Ok(Some(_))).then_some(*id))
                .collect();
            done.into_iter()
                .filter_map(|id| live.remove(&id).map(|jail| (id, jail)))
                .collect()
        };
        for (id, mut jail) in finished {
            let status = jail.wait();
            ctx.workers.remember(ended(id, status, &mut jail));
        }
    }
    // The service stopped first and closed its sockets, so the workers are exiting.
    let all: Vec<u64> = ctx.workers.live().keys().copied().collect();
    let _ = tokio::task::spawn_blocking(move || {
        for id in all {
            let _ = stop(&ctx, id, Duration::from_millis(500));
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jails_being_built_count_against_the_limit() {
        let workers = Workers::default();
        let first = workers.claim(2).expect("room for one");
        let second = workers.claim(2).expect("room for two");
        assert!(workers.claim(2).is_none(), "a third would pass the limit");
        drop(first);
        let third = workers.claim(2).expect("a place was given back");
        drop((second, third));
        assert_eq!(workers.starting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn only_the_nodes_cuda_opens_are_gpu_devices() {
        for name in [
            "nvidiactl",
            "nvidia0",
            "nvidia12",
            "nvidia-uvm",
            "nvidia-uvm-tools",
        ] {
            assert!(is_cuda_node(name), "{name}");
        }
        for name in [
            "nvidia",
            "nvidia-modeset",
            "nvidia-caps",
            "nvidia0x",
            "null",
            "nvme0",
        ] {
            assert!(!is_cuda_node(name), "{name}");
        }
    }

    #[test]
    fn gpu_devices_are_found_by_name_and_named_under_dev() {
        let dev = tempfile::tempdir().expect("tempdir");
        for name in ["nvidia1", "nvidiactl", "nvidia0", "nvidia-modeset", "zero"] {
            std::fs::write(dev.path().join(name), b"").expect("node");
        }
        assert_eq!(
            nvidia_devices(dev.path()),
            ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl"]
                .map(PathBuf::from)
                .to_vec()
        );
        assert!(nvidia_devices(&dev.path().join("missing")).is_empty());
    }

    #[test]
    fn exit_statuses_read_as_words() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(describe(ExitStatus::from_raw(0)), "exit status 0");
        assert_eq!(describe(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(
            describe(ExitStatus::from_raw(9)),
            "killed by signal 9 (SIGKILL)"
        );
    }
}
