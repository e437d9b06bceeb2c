//! The supervisor: `contextvault run` (appliance) and `contextvault dev`.
//!
//! It runs as root on an appliance and owns every child's life: PostgreSQL (as its own
//! system user) and the vault service (as an unprivileged user, handed the listening
//! sockets so ports 80/443 work without the HTTP parser ever being root). Each duty is a
//! named task ([`TaskName`]); shutdown goes out in phases (the vault service first, so
//! requests in flight finish while the database is still there, then PostgreSQL, then
//! the rest), and every task's end is joined and logged.
//!
//! Under systemd on cgroup v2 it first moves itself into a leaf of its unit's delegated
//! cgroup (`<own>/supervisor`, which PostgreSQL and the service inherit) and puts the
//! AI workers' cgroups under `<own>/workers` ([`cgroup`]). The `console` task publishes
//! what the box's own screen shows — addresses, the setup code while unclaimed, health —
//! for `contextvault console` ([`console`]).
//!
//! Error policy: set-up problems (users, directories, TLS files, ports) are a
//! [`SupervisorError`] naming the path or port, and stop the start. Problems of a running
//! child are not errors of the supervisor: the child is restarted with backoff and the
//! problem shows on the dashboard and in `/healthz`.

mod acme;
pub mod backoff;
mod backup;
pub mod board;
pub mod cgroup;
pub mod console;
mod control;
mod core;
mod disk;
mod mdns;
mod postgres;
mod prepare;
mod service;
mod storage;
mod update;
mod wireguard;
mod workers;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cv_config::{Config, Mode};
use cv_storage::{DataLayout, OsUser};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use board::{Component, StatusBoard};

/// The appliance version reported everywhere.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Users(std::io::Error),
    #[error(
        "{path} cannot be reached by system user `{user}`: {blocker} is mode {mode:o}; \
         put the data directory somewhere every user may enter (e.g. /var/lib/contextvault)"
    )]
    Unreachable {
        path: PathBuf,
        user: String,
        blocker: PathBuf,
        mode: u32,
    },
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] cv_net::tls::TlsError),
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind {
        addr: String,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("another supervisor (pid {pid}) is running on {data_dir}")]
    AlreadyRunning { pid: i32, data_dir: PathBuf },
    #[error("signal handling failed: {0}")]
    Signals(std::io::Error),
    #[error("cannot set up the workers' cgroups at {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Storage(cv_storage::snapshot::SnapshotError),
    #[error("the supervisor stopped uncleanly: {0}")]
    Unclean(String),
}

/// The supervisor's long-running tasks, named in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskName {
    ControlSocket,
    Postgres,
    VaultService,
    DiskUsage,
    Watchdog,
    Workers,
    Mdns,
    Acme,
    Wireguard,
    Console,
    Update,
    Snapshots,
    Backup,
}

impl std::fmt::Display for TaskName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskName::ControlSocket => "control-socket",
            TaskName::Postgres => "postgres",
            TaskName::VaultService => "vault-service",
            TaskName::DiskUsage => "disk-usage",
            TaskName::Watchdog => "watchdog",
            TaskName::Workers => "workers",
            TaskName::Mdns => "mdns",
            TaskName::Acme => "acme",
            TaskName::Wireguard => "wireguard",
            TaskName::Console => "console",
            TaskName::Update => "update",
            TaskName::Snapshots => "snapshots",
            TaskName::Backup => "backup",
        })
    }
}

/// How a task ended.
pub type TaskResult = Result<(), String>;

/// Who runs what.
#[derive(Debug, Clone)]
pub struct Users {
    /// Runs PostgreSQL.
    pub postgres: OsUser,
    /// Runs the vault service.
    pub service: OsUser,
    /// Runs the jailed AI workers.
    pub worker: OsUser,
}

/// Everything the tasks share.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub layout: DataLayout,
    pub users: Users,
    pub board: StatusBoard,
    /// The binary to start the vault service from (`contextvault serve`).
    pub exe: PathBuf,
    /// Bound listening sockets, kept open across service restarts.
    pub https_listeners: Vec<TcpListener>,
    pub http_listeners: Vec<TcpListener>,
    /// Broadcast on SIGHUP.
    pub reload: broadcast::Sender<()>,
    /// The AI workers started for the vault service.
    pub workers: workers::Workers,
    /// Where the workers' cgroups go (relative to the hierarchy root): inside the
    /// supervisor's own delegated cgroup under systemd on cgroup v2, else
    /// `contextvault-workers` ([`cgroup`]).
    pub worker_cgroup_parent: PathBuf,
    /// The WireGuard VPN.
    pub wireguard: wireguard::Wireguard,
    /// Whether a setup code was already issued by this supervisor.
    setup_code_issued: AtomicBool,
    /// Wakes the `acme` task for a renewal now (control request `acme_renew`).
    pub acme_renew: tokio::sync::Notify,
    /// What the box's own screen shows beyond the board: the setup code.
    pub console: console::Published,
    /// Self-update: what the control socket hands the `update` task.
    pub updates: update::Updates,
    /// Snapshots of the data directory.
    pub storage: storage::Storage,
    /// Off-box backups: one at a time.
    pub backups: backup::Backups,
    /// PostgreSQL and the vault service, stopped and started together.
    core: core::Core,
    /// Set when a migration failed and was rolled back: what went wrong.
    pub migration_failure: std::sync::Mutex<Option<String>>,
}

impl Context {
    fn mode_str(&self) -> &'static str {
        match self.config.mode {
            Mode::Appliance => "appliance",
            Mode::Dev => "dev",
        }
    }
}

/// A stop switch for one shutdown phase.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves when the phase is told to stop.
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// Runs the appliance until SIGTERM/SIGINT; returns `Ok` after a clean shutdown.
pub async fn run(config: Config, exe: PathBuf) -> Result<(), SupervisorError> {
    // First, before any child exists: on cgroup v2 under systemd the supervisor moves
    // itself into a leaf of its unit's cgroup, which every later child inherits. A
    // failure does not stop the vault: the workers' jails then report their cgroup
    // limits missing (an appliance refuses to start them, and /healthz says so).
    let worker_cgroup_parent = cgroup::worker_parent().unwrap_or_else(|e| {
        tracing::error!(error = %e, "workers' cgroups cannot go in the supervisor's own cgroup");
        PathBuf::from(cgroup::DEFAULT_WORKER_PARENT)
    });
    let layout = DataLayout::new(&config.data_dir);
    let users = prepare::resolve_users(&config)?;
    prepare::directories(&layout, &users)?;
    let _pid_file = prepare::PidFile::claim(&layout)?;
    let hostname = prepare::hostname(&config);
    prepare::tls(&config, &layout, &users, &hostname)?;
    let (https_listeners, http_listeners) = prepare::bind(&config)?;
    let exe = prepare::service_exe(&exe, &layout, &users)?;
    let backend = cv_storage::snapshot::detect(layout.root(), cv_config::storage_wanted(&config))
        .map_err(SupervisorError::Storage)?;
    let storage = storage::Storage::new(backend, &config.storage);
    announce_urls(&config, &hostname);

    let (reload, _) = broadcast::channel(4);
    let ctx = Arc::new(Context {
        board: StatusBoard::new(
            VERSION,
            mode_name(config.mode),
            time::OffsetDateTime::now_utc(),
        ),
        config,
        layout,
        users,
        exe,
        https_listeners,
        http_listeners,
        reload,
        workers: workers::Workers::default(),
        worker_cgroup_parent,
        wireguard: wireguard::Wireguard::default(),
        setup_code_issued: AtomicBool::new(false),
        acme_renew: tokio::sync::Notify::new(),
        console: console::Published::default(),
        updates: update::Updates::default(),
        storage,
        backups: backup::Backups::default(),
        core: core::Core::default(),
        migration_failure: std::sync::Mutex::new(None),
    });
    ctx.board.set_storage(storage::initial_status(&ctx.storage));
    tracing::info!(
        version = VERSION,
        mode = ctx.mode_str(),
        data_dir = %ctx.layout.root().display(),
        snapshots = %ctx.storage.kind(),
        postgres_user = %ctx.users.postgres.name,
        service_user = %ctx.users.service.name,
        "supervisor starting"
    );
    if !ctx.config.network.mdns {
        ctx.board.remove(Component::Mdns);
    }

    // A restore a power cut interrupted is finished before PostgreSQL starts.
    storage::finish_interrupted_restore(&ctx);

    // Shutdown phases: mDNS's goodbye, the service, then PostgreSQL ([`core`]), then the
    // supervisor's own tasks.
    let (stop_mdns_tx, stop_mdns) = watch::channel(false);
    let (stop_rest_tx, stop_rest) = watch::channel(false);

    let control = control::bind(&ctx)?;
    let mut rest: Vec<(TaskName, JoinHandle<TaskResult>)> = vec![
        (
            TaskName::ControlSocket,
            tokio::spawn(control::serve(
                control,
                Arc::clone(&ctx),
                Stop(stop_rest.clone()),
            )),
        ),
        (
            TaskName::DiskUsage,
            tokio::spawn(disk::measure(Arc::clone(&ctx), Stop(stop_rest.clone()))),
        ),
        (
            TaskName::Watchdog,
            tokio::spawn(watchdog(Arc::clone(&ctx), Stop(stop_rest.clone()))),
        ),
        (
            TaskName::Workers,
            tokio::spawn(workers::reap(Arc::clone(&ctx), Stop(stop_rest.clone()))),
        ),
        (
            TaskName::Acme,
            tokio::spawn(acme::run(Arc::clone(&ctx), Stop(stop_rest.clone()))),
        ),
        (
            TaskName::Wireguard,
            tokio::spawn(wireguard::supervise(
                Arc::clone(&ctx),
                Stop(stop_rest.clone()),
            )),
        ),
        (
            TaskName::Update,
            tokio::spawn(update::run(Arc::clone(&ctx), Stop(stop_rest.clone()))),
        ),
        (
            TaskName::Snapshots,
            tokio::spawn(storage::run(Arc::clone(&ctx), Stop(stop_rest.clone()))),
        ),
        (
            TaskName::Backup,
            tokio::spawn(backup::run(Arc::clone(&ctx), Stop(stop_rest.clone()))),
        ),
        (
            TaskName::Console,
            tokio::spawn(console::publish(Arc::clone(&ctx), Stop(stop_rest))),
        ),
    ];
    if ctx.config.network.mdns {
        // Stopped with the vault service, first: the goodbye goes out as shutdown begins,
        // so phones stop being sent to a box that is going away.
        rest.push((
            TaskName::Mdns,
            tokio::spawn(mdns::announce(Arc::clone(&ctx), Stop(stop_mdns))),
        ));
    }
    core::start(&ctx).await;

    wait_for_stop_signal(&ctx).await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");

    let _ = stop_mdns_tx.send(true);
    let mut failures = core::finish(&ctx).await;
    let _ = stop_rest_tx.send(true);
    for (name, handle) in rest.drain(..) {
        join(name, handle, &mut failures).await;
    }
    if failures.is_empty() {
        tracing::info!("supervisor stopped cleanly");
        Ok(())
    } else {
        Err(SupervisorError::Unclean(failures.join("; ")))
    }
}

/// Tells the person at the console where to point a browser.
fn announce_urls(config: &Config, hostname: &str) {
    let port = match config.network.https_port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let mut urls = vec![format!("https://{hostname}.local{port}/")];
    urls.extend(
        cv_net::tls::lan_addresses()
            .into_iter()
            .filter(|ip| ip.is_ipv4())
            .map(|ip| format!("https://{ip}{port}/")),
    );
    urls.push(format!("https://localhost{port}/"));
    tracing::info!(dashboard = %urls.join("  "), "the dashboard will answer at");
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Appliance => "appliance",
        Mode::Dev => "dev",
    }
}

async fn join(name: TaskName, handle: JoinHandle<TaskResult>, failures: &mut Vec<String>) {
    match handle.await {
        Ok(Ok(())) => tracing::info!(task = %name, "task ended"),
        Ok(Err(e)) => {
            tracing::error!(task = %name, error = %e, "task ended uncleanly");
            failures.push(format!("{name}: {e}"));
        }
        Err(e) => {
            tracing::error!(task = %name, error = %e, "task panicked");
            failures.push(format!("{name}: panicked"));
        }
    }
}

/// Waits for SIGTERM or SIGINT, passing SIGHUP on as a reload.
async fn wait_for_stop_signal(ctx: &Context) -> Result<(), SupervisorError> {
    let mut term = signal(SignalKind::terminate()).map_err(SupervisorError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SupervisorError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(SupervisorError::Signals)?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); return Ok(()) }
            _ = int.recv() => { tracing::info!("SIGINT received"); return Ok(()) }
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading");
                let hostname = prepare::hostname(&ctx.config);
                if let Err(e) = prepare::tls(&ctx.config, &ctx.layout, &ctx.users, &hostname) {
                    tracing::error!(error = %e, "TLS reload failed; keeping the current certificate");
                }
                let _ = ctx.reload.send(());
            }
        }
    }
}

/// Tells systemd when the whole stack is up, and keeps its watchdog fed while the
/// supervisor's event loop is alive (a hung loop stops the pings and systemd restarts us).
async fn watchdog(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    let interval = sd_notify::watchdog_enabled()
        .map(|d| d / 2)
        .unwrap_or(Duration::from_secs(1));
    let mut ready_sent = false;
    let mut ticker = tokio::time::interval(interval.min(Duration::from_secs(1)));
    let mut last_ping = tokio::time::Instant::now();
    let watchdog = sd_notify::watchdog_enabled().is_some();
    loop {
        tokio::select! {
            _ = stop.requested() => return Ok(()),
            _ = ticker.tick() => {}
        }
        if !ready_sent && ctx.board.all_up() {
            ready_sent = true;
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status("all components up"),
            ]);
            tracing::info!("all components are up");
        }
        if watchdog && last_ping.elapsed() >= interval {
            last_ping = tokio::time::Instant::now();
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }
}

/// Marks the setup code as issued; returns whether this call was the first.
fn first_setup_code(ctx: &Context) -> bool {
    !ctx.setup_code_issued.swap(true, Ordering::SeqCst)
}
