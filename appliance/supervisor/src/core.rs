//! The core of the vault: PostgreSQL and the vault service, started together and stopped
//! together, service first (so requests in flight finish while the database is still
//! there). At shutdown, and around a restore, which needs both stopped while it copies
//! the snapshot's data back.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Context, Stop, TaskName, TaskResult};

#[derive(Debug, Default)]
pub struct Core {
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: Option<Running>,
    /// Set at shutdown: nothing starts them again.
    finished: bool,
}

#[derive(Debug)]
struct Running {
    stop_service: watch::Sender<bool>,
    stop_postgres: watch::Sender<bool>,
    service: JoinHandle<TaskResult>,
    postgres: JoinHandle<TaskResult>,
}

/// Starts PostgreSQL and the vault service (the service waits for the database by
/// itself), unless they run already or the supervisor is shutting down.
pub async fn start(ctx: &Arc<Context>) {
    let mut state = ctx.core.state.lock().await;
    if state.running.is_some() || state.finished {
        return;
    }
    let (stop_service, service_rx) = watch::channel(false);
    let (stop_postgres, postgres_rx) = watch::channel(false);
    state.running = Some(Running {
        stop_service,
        stop_postgres,
        postgres: tokio::spawn(crate::postgres::supervise(
            Arc::clone(ctx),
            Stop(postgres_rx),
        )),
        service: tokio::spawn(crate::service::supervise(Arc::clone(ctx), Stop(service_rx))),
    });
}

/// Stops the vault service, then PostgreSQL; returns what did not end cleanly.
pub async fn stop(ctx: &Arc<Context>) -> Vec<String> {
    let running = ctx.core.state.lock().await.running.take();
    stop_running(running).await
}

/// [`stop`], for good.
pub async fn finish(ctx: &Arc<Context>) -> Vec<String> {
    let running = {
        let mut state = ctx.core.state.lock().await;
        state.finished = true;
        state.running.take()
    };
    stop_running(running).await
}

async fn stop_running(running: Option<Running>) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(r) = running {
        let _ = r.stop_service.send(true);
        crate::join(TaskName::VaultService, r.service, &mut failures).await;
        let _ = r.stop_postgres.send(true);
        crate::join(TaskName::Postgres, r.postgres, &mut failures).await;
    }
    failures
}
