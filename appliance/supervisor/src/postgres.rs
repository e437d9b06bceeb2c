//! The `postgres` task: create the cluster, start it, provision and migrate the database,
//! issue the setup code, then watch it and restart it with backoff when it dies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cv_control::ComponentState;
use cv_storage::postgres::{self, Cluster, ClusterSpec, IdentEntry, RunningPostgres};

use cv_db::audit::Event;
use cv_storage::snapshot::{BackendKind, Kind, SnapshotId};

use crate::backoff::Backoff;
use crate::board::Component;
use crate::{Context, Stop, TaskResult};

/// How long a start may take before it counts as failed. Crash recovery after a power
/// cut replays WAL and can take a while on a slow disk.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long "fast" shutdown may take before it escalates.
const STOP_GRACE: Duration = Duration::from_secs(30);

pub fn cluster_spec(ctx: &Context) -> ClusterSpec {
    let service = &ctx.users.service;
    let mut ident = vec![IdentEntry {
        os_user: service.name.clone(),
        role: cv_db::SERVICE_ROLE.to_owned(),
    }];
    // The supervisor (root, or the invoking user in dev) runs migrations and the admin
    // CLI as the service role, so the schema is owned by the role that uses it.
    if let Ok(me) = cv_storage::OsUser::current()
        && me.name != service.name
    {
        ident.push(IdentEntry {
            os_user: me.name,
            role: cv_db::SERVICE_ROLE.to_owned(),
        });
    }
    ClusterSpec {
        bin_dir: ctx.config.postgres.bin_dir.clone(),
        data_dir: ctx.layout.postgres_data(),
        socket_dir: ctx.layout.postgres_socket_dir(),
        owner: ctx.users.postgres.clone(),
        socket_group: (!ctx.users.service.is_current()).then_some(ctx.users.service.gid),
        ident,
        settings: vec![
            // The vault service pools 16 connections; the rest is for the supervisor,
            // the admin CLI and maintenance. Fewer slots than the default 100 keep
            // PostgreSQL's shared memory small on a mini-PC.
            ("max_connections".into(), "40".into()),
            // LLVM JIT needs writable-then-executable memory, which the systemd unit
            // forbids (MemoryDenyWriteExecute); the vault's queries are too small to
            // gain from it anyway.
            ("jit".into(), "off".into()),
        ],
    }
}

pub async fn supervise(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    let spec = cluster_spec(&ctx);
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        // A start is not abandoned half-way even when a stop arrives: dropping it could
        // leave a postmaster behind. It is bounded by READY_TIMEOUT.
        let running = start(&ctx, &spec).await;
        if stop.is_requested() {
            let outcome = match running {
                Ok((mut pg, _)) => stop_postgres(&ctx, &mut pg).await,
                Err(_) => Ok(()),
            };
            ctx.board
                .set(Component::Postgres, ComponentState::Stopped, None, None);
            return outcome;
        }
        match running {
            Ok((mut pg, problem)) => {
                // A failed migration rolled back: PostgreSQL runs on the data as it was,
                // and the board says what went wrong until the next start.
                let state = match problem {
                    None => ComponentState::Up,
                    Some(_) => ComponentState::Failed,
                };
                ctx.board
                    .set(Component::Postgres, state, Some(pg.pid()), problem);
                if let Some(outcome) = watch(&ctx, &mut pg, &mut stop).await {
                    return outcome;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "PostgreSQL could not be started");
                ctx.board
                    .set(Component::Postgres, ComponentState::Failed, None, Some(e));
            }
        }
        let delay = backoff.after_run(started.elapsed());
        if ctx.board.state(Component::Postgres) != ComponentState::Failed {
            ctx.board
                .set(Component::Postgres, ComponentState::Restarting, None, None);
        }
        tracing::info!(?delay, "restarting PostgreSQL after a delay");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.requested() => {
                ctx.board.set(Component::Postgres, ComponentState::Stopped, None, None);
                return Ok(());
            }
        }
    }
}

/// Waits until PostgreSQL dies (returns `None`: restart it) or a stop is requested
/// (returns the task's outcome).
async fn watch(ctx: &Context, pg: &mut RunningPostgres, stop: &mut Stop) -> Option<TaskResult> {
    let mut reload = ctx.reload.subscribe();
    loop {
        tokio::select! {
            status = pg.wait() => {
                let why = match status {
                    Ok(status) => format!("PostgreSQL exited ({status})"),
                    Err(e) => e.to_string(),
                };
                tracing::error!(reason = %why, log = %pg.log_tail(), "PostgreSQL died");
                ctx.board.set(Component::Postgres, ComponentState::Restarting, None, Some(why));
                return None;
            }
            _ = reload.recv() => pg.reload(),
            _ = stop.requested() => return Some(stop_postgres(ctx, pg).await),
        }
    }
}

async fn stop_postgres(ctx: &Context, pg: &mut RunningPostgres) -> TaskResult {
    ctx.board.set(
        Component::Postgres,
        ComponentState::Stopped,
        Some(pg.pid()),
        None,
    );
    let outcome = match pg.stop(STOP_GRACE).await {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("PostgreSQL stopped with {status}")),
        Err(e) => Err(e.to_string()),
    };
    tracing::info!("PostgreSQL stopped");
    ctx.board
        .set(Component::Postgres, ComponentState::Stopped, None, None);
    outcome
}

/// initdb (first start), start, provision, migrate, setup code. The second value is a
/// problem to report while it runs: a migration failed and was rolled back.
async fn start(
    ctx: &Arc<Context>,
    spec: &ClusterSpec,
) -> Result<(RunningPostgres, Option<String>), String> {
    if Cluster::init_if_needed(spec)
        .await
        .map_err(|e| e.to_string())?
    {
        tracing::info!("PostgreSQL cluster created");
    }
    let pg = Cluster::start(spec, READY_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    ctx.board.set(
        Component::Postgres,
        ComponentState::Migrating,
        Some(pg.pid()),
        None,
    );
    match prepare_database(ctx, spec, pg).await {
        Prepared::Ready(pg) => Ok((pg, None)),
        Prepared::RolledBack(pg, problem) => Ok((pg, Some(problem))),
        Prepared::Failed(pg, e) => {
            if let Some(mut pg) = pg {
                let _ = pg.stop(STOP_GRACE).await;
            }
            Err(e)
        }
    }
}

enum Prepared {
    Ready(RunningPostgres),
    /// A migration failed; the data was rolled back to the snapshot taken before it.
    RolledBack(RunningPostgres, String),
    /// With PostgreSQL to stop, if it still runs.
    Failed(Option<RunningPostgres>, String),
}

async fn prepare_database(ctx: &Arc<Context>, spec: &ClusterSpec, pg: RunningPostgres) -> Prepared {
    if let Err(e) = cv_db::provision(&spec.connection_string(postgres::SUPERUSER, "postgres")).await
    {
        return Prepared::Failed(Some(pg), e.to_string());
    }
    let url = spec.connection_string(cv_db::SERVICE_ROLE, cv_db::DATABASE);
    let failed_before = ctx
        .migration_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(problem) = failed_before {
        // The same migrations would fail the same way: not again until the next start.
        return Prepared::RolledBack(pg, problem);
    }
    let before = match snapshot_before_migrations(ctx, &url).await {
        Ok(before) => before,
        Err(e) => return Prepared::Failed(Some(pg), e),
    };
    match cv_db::run_migrations(&url).await {
        Ok(applied) => {
            if !applied.is_empty() {
                tracing::info!(?applied, "database migrations applied");
            }
        }
        Err(e) => {
            return match before {
                Some(before) => roll_back_migrations(ctx, spec, pg, &before, &e.to_string()).await,
                None => Prepared::Failed(Some(pg), e.to_string()),
            };
        }
    }
    match issue_setup_code(ctx, &url).await {
        Ok(()) => Prepared::Ready(pg),
        Err(e) => Prepared::Failed(Some(pg), e),
    }
}

/// A snapshot before migrations are applied to a database that has data (not a new
/// one), where the data directory can take one.
async fn snapshot_before_migrations(
    ctx: &Arc<Context>,
    url: &str,
) -> Result<Option<SnapshotId>, String> {
    if ctx.storage.kind() == BackendKind::Plain {
        return Ok(None);
    }
    let (pending, applied_any) = cv_db::pending_migrations(url)
        .await
        .map_err(|e| e.to_string())?;
    if pending.is_empty() || !applied_any {
        return Ok(None);
    }
    let reason = format!("before the migrations {}", pending.join(", "));
    let taken = crate::storage::take(ctx, &[Kind::Migration], &reason)
        .await
        .map_err(|e| format!("no migration without a snapshot first: {e}"))?;
    tracing::info!(snapshot = %taken.id, ?pending, "snapshot taken before the migrations");
    SnapshotId::parse(&taken.id)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Stops PostgreSQL, restores the snapshot taken before the migrations, starts it again
/// on that data, and reports it (log, board, the owners' audit logs).
async fn roll_back_migrations(
    ctx: &Arc<Context>,
    spec: &ClusterSpec,
    mut pg: RunningPostgres,
    before: &SnapshotId,
    error: &str,
) -> Prepared {
    tracing::error!(error = %error, snapshot = %before, "a migration failed: rolling back to the snapshot taken before it");
    let _ = pg.stop(STOP_GRACE).await;
    drop(pg);
    if let Err(e) = crate::storage::restore_files(ctx, before).await {
        return Prepared::Failed(
            None,
            format!(
                "a migration failed ({error}) and the rollback to snapshot {before} failed too: {e}"
            ),
        );
    }
    let problem = format!(
        "a database migration failed ({error}); the data was rolled back to snapshot {before}, \
         taken just before it, and no migration is tried again until the supervisor restarts"
    );
    *ctx.migration_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(problem.clone());
    let pg = match Cluster::start(spec, READY_TIMEOUT).await {
        Ok(pg) => pg,
        Err(e) => {
            return Prepared::Failed(
                None,
                format!("{problem}; PostgreSQL did not start again: {e}"),
            );
        }
    };
    crate::update::audit(ctx, Event::MigrationRolledBack, &problem).await;
    Prepared::RolledBack(pg, problem)
}

/// While nobody owns the box, print a fresh one-time setup code (once per supervisor
/// start): only someone who can read the console or the log can claim the appliance.
async fn issue_setup_code(ctx: &Context, url: &str) -> Result<(), String> {
    let mut conn = cv_db::connect_once(url).await.map_err(|e| e.to_string())?;
    if cv_db::models::owner_exists(&mut conn)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    if !crate::first_setup_code(ctx) {
        return Ok(());
    }
    let code = cv_crypto::token::human_code(3);
    let digest = cv_crypto::sha256(cv_crypto::token::normalize_human_code(&code).as_bytes());
    cv_db::models::SetupCode::store(&mut conn, &digest)
        .await
        .map_err(|e| e.to_string())?;
    let host = crate::prepare::hostname(&ctx.config);
    let port = match ctx.config.network.https_port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    // The one place a secret is logged, on purpose: the code is how the person at the
    // console proves they own the box, it works once, and it dies with this process.
    tracing::warn!(
        setup_url = %format!("https://{host}.local{port}/setup"),
        setup_code = %code,
        "no owner yet: open the setup page and enter this one-time setup code"
    );
    // And on the box's own screen (console.json), until the box is claimed.
    ctx.console.set_setup_code(code);
    Ok(())
}
