//! The `vault-service` task: start `contextvault serve` as the unprivileged service user
//! with the listening sockets and a handoff document, restart it with backoff when it
//! dies, stop it first at shutdown.

use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use cv_control::{ComponentState, ServiceHandoff};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::backoff::Backoff;
use crate::board::Component;
use crate::{Context, Stop, TaskResult};

/// How long the service may take to finish requests in flight after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// The first descriptor number handed to the service (0-2 are stdio).
const FIRST_FD: i32 = 3;

pub async fn supervise(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        match spawn(&ctx).await {
            Ok(mut child) => {
                let pid = child.id();
                ctx.board
                    .set(Component::Vault, ComponentState::Starting, pid, None);
                tracing::info!(pid, user = %ctx.users.service.name, "vault service started");
                let mut reload = ctx.reload.subscribe();
                loop {
                    tokio::select! {
                        status = child.wait() => {
                            let why = match status {
                                Ok(s) => format!("the vault service exited ({s})"),
                                Err(e) => format!("waiting for the vault service failed: {e}"),
                            };
                            tracing::error!(reason = %why, "vault service died");
                            ctx.board.set(Component::Vault, ComponentState::Restarting, None, Some(why));
                            break;
                        }
                        _ = reload.recv() => {
                            if let Some(pid) = pid {
                                // The service reloads its certificate on SIGHUP.
                                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGHUP);
                            }
                        }
                        _ = stop.requested() => return stop_child(&ctx, &mut child).await,
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the vault service could not be started");
                ctx.board
                    .set(Component::Vault, ComponentState::Failed, None, Some(e));
            }
        }
        let delay = backoff.after_run(started.elapsed());
        tracing::info!(?delay, "restarting the vault service after a delay");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.requested() => {
                ctx.board.set(Component::Vault, ComponentState::Stopped, None, None);
                return Ok(());
            }
        }
    }
}

async fn spawn(ctx: &Context) -> Result<Child, String> {
    let mut mappings = Vec::new();
    let mut next = FIRST_FD;
    let mut take = |listeners: &[std::net::TcpListener]| -> Result<Vec<i32>, String> {
        let mut fds = Vec::new();
        for l in listeners {
            let owned = l
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("cannot duplicate a listening socket: {e}"))?;
            mappings.push(FdMapping {
                parent_fd: owned,
                child_fd: next,
            });
            fds.push(next);
            next += 1;
        }
        Ok(fds)
    };
    let https_fds = take(&ctx.https_listeners)?;
    let http_fds = take(&ctx.http_listeners)?;
    let spec = crate::postgres::cluster_spec(ctx);
    let handoff = ServiceHandoff {
        mode: ctx.mode_str().to_owned(),
        version: crate::VERSION.to_owned(),
        database: spec.connection_string(cv_db::SERVICE_ROLE, cv_db::DATABASE),
        control_socket: ctx.layout.control_socket(),
        tls_dir: ctx.layout.tls_dir(),
        https_fds,
        http_fds,
        https_port: ctx.config.network.https_port,
        allowed_sources: allowed_sources(&ctx.config),
        session_idle_timeout_secs: ctx.config.sessions.idle_timeout.as_secs(),
        session_absolute_timeout_secs: ctx.config.sessions.absolute_timeout.as_secs(),
        vault_lock_secs: ctx.config.sessions.vault_lock.as_secs(),
        workers: cv_control::WorkerSettings {
            count: ctx.config.workers.count,
            max_requests: ctx.config.workers.max_requests,
            max_age_secs: ctx.config.workers.max_age.as_secs(),
            max_idle_secs: ctx.config.workers.max_idle.as_secs(),
            request_timeout_secs: ctx.config.workers.request_timeout.as_secs(),
        },
        insights: cv_control::InsightSettings {
            interval_secs: ctx.config.insights.interval.as_secs(),
            recent_days: ctx.config.insights.recent_days,
            due_soon_days: ctx.config.insights.due_soon_days,
        },
        log_format: ctx.config.log.format.to_string(),
        log_level: ctx.config.log.level.clone(),
        acme_http_dir: Some(ctx.layout.acme_http_dir()),
        acme_tls_alpn_dir: Some(ctx.layout.acme_tls_alpn_dir()),
    };
    let json = serde_json::to_vec(&handoff).map_err(|e| e.to_string())?;

    let mut cmd = Command::new(&ctx.exe);
    cmd.arg("serve")
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        // Its own process group: Ctrl-C in a terminal reaches the supervisor alone,
        // which stops the service in order.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(false);
    if let Ok(v) = std::env::var("RUST_BACKTRACE") {
        cmd.env("RUST_BACKTRACE", v);
    }
    let service = &ctx.users.service;
    if !service.is_current() {
        // std clears supplementary groups when it switches uid as root.
        cmd.uid(service.uid.as_raw()).gid(service.gid.as_raw());
    }
    cmd.fd_mappings(mappings)
        .map_err(|e| format!("cannot hand over the sockets: {e}"))?;
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {} serve: {e}", ctx.exe.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&json)
            .await
            .map_err(|e| format!("cannot hand over the service settings: {e}"))?;
        // Dropping stdin closes it: the service reads to end of file.
    }
    Ok(child)
}

async fn stop_child(ctx: &Context, child: &mut Child) -> TaskResult {
    ctx.board
        .set(Component::Vault, ComponentState::Stopped, child.id(), None);
    let outcome = match child.id() {
        None => Ok(()),
        Some(pid) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(Ok(status)) if status.success() => Ok(()),
                Ok(Ok(status)) => Err(format!("the vault service stopped with {status}")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => {
                    let _ = child.kill().await;
                    Err(format!(
                        "the vault service did not stop within {STOP_GRACE:?} and was killed"
                    ))
                }
            }
        }
    };
    tracing::info!("vault service stopped");
    ctx.board
        .set(Component::Vault, ComponentState::Stopped, None, None);
    outcome
}

/// `network.allowed_sources`, plus the WireGuard network while the VPN is enabled: its
/// peers are authenticated by their keys, so they are answered wherever they roam.
fn allowed_sources(config: &cv_config::Config) -> Vec<ipnet::IpNet> {
    let mut sources = config.network.allowed_sources.clone();
    if config.wireguard.enabled {
        let vpn = ipnet::IpNet::V4(config.wireguard.settings.network.net());
        if !sources.contains(&vpn) {
            sources.push(vpn);
        }
    }
    sources
}
