//! Snapshots: the `snapshots` task takes the scheduled ones and prunes by retention;
//! the control socket asks for one now, for the list, or for a restore; the `update`
//! task and the `postgres` task (before migrations) take theirs through [`take`].
//!
//! One operation runs at a time (`Storage::op`). Every snapshot is preceded by a
//! PostgreSQL `CHECKPOINT` when PostgreSQL is up, so the WAL a restore replays is short;
//! the snapshot itself is atomic (see [`cv_storage::snapshot`]) and needs no pause: the
//! vault keeps taking captures throughout.
//!
//! A restore first takes a snapshot of the present (so it can be undone), then stops the
//! vault service and PostgreSQL, copies the snapshot's data back, starts both again, ends
//! every session and records the restore in the owners' audit logs. A power cut half-way is finished at the
//! next start, before PostgreSQL starts ([`finish_interrupted_restore`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cv_control::{ComponentState, SnapshotOverview, SnapshotSummary, StorageStatus};
use cv_db::audit::Event;
use cv_storage::snapshot::{
    self, BackendKind, Kind, Retention, SnapshotBackend, SnapshotError, SnapshotId,
};
use jiff::Timestamp;

use crate::{Component, Context, Stop, TaskResult};

/// How often the schedule is looked at, and the first time after the start.
const TICK: Duration = Duration::from_secs(60);
const FIRST_TICK: Duration = Duration::from_secs(10);
/// How long a checkpoint may take before the snapshot is taken without it.
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the vault may take to serve again after a restore.
const RESTART_TIMEOUT: Duration = Duration::from_secs(300);

/// The backend, the retention, and the one-at-a-time lock.
#[derive(Debug)]
pub struct Storage {
    backend: Box<dyn SnapshotBackend>,
    retention: Retention,
    op: tokio::sync::Mutex<()>,
}

impl Storage {
    pub fn new(backend: Box<dyn SnapshotBackend>, config: &cv_config::Storage) -> Storage {
        Storage {
            backend,
            retention: Retention {
                hourly: config.keep_hourly,
                daily: config.keep_daily,
                weekly: config.keep_weekly,
                monthly: config.keep_monthly,
                other_days: config.keep_other_days,
            },
            op: tokio::sync::Mutex::new(()),
        }
    }

    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    pub fn backend(&self) -> &dyn SnapshotBackend {
        self.backend.as_ref()
    }

    fn unavailable(&self) -> Option<String> {
        self.backend.unavailable()
    }
}

/// The status published before the first snapshot.
pub fn initial_status(storage: &Storage) -> StorageStatus {
    StorageStatus {
        backend: storage.kind().to_string(),
        unavailable: storage.unavailable(),
        newest: None,
        count: 0,
        problem: None,
        busy: None,
    }
}

fn summary(s: &snapshot::Snapshot) -> SnapshotSummary {
    SnapshotSummary {
        id: s.id.to_string(),
        taken_at: s.id.at().to_string(),
        kinds: s.id.kinds().iter().map(|k| k.as_str().to_owned()).collect(),
        reason: s.reason.clone(),
        size_bytes: s.size_bytes,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SnapshotError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the storage command did not finish: {e}")),
    }
}

/// The snapshots there are.
pub async fn list(ctx: &Arc<Context>) -> Result<SnapshotOverview, String> {
    let storage = &ctx.storage;
    let ctx2 = Arc::clone(ctx);
    let snapshots = blocking(move || ctx2.storage.backend.list()).await?;
    Ok(SnapshotOverview {
        backend: storage.kind().to_string(),
        unavailable: storage.unavailable(),
        snapshots: snapshots.iter().map(summary).collect(),
    })
}

/// Takes a snapshot now (a checkpoint first when PostgreSQL is up).
pub async fn take(
    ctx: &Arc<Context>,
    kinds: &[Kind],
    reason: &str,
) -> Result<SnapshotSummary, String> {
    let _op = ctx.storage.op.lock().await;
    take_locked(ctx, kinds, reason).await
}

async fn take_locked(
    ctx: &Arc<Context>,
    kinds: &[Kind],
    reason: &str,
) -> Result<SnapshotSummary, String> {
    if let Some(why) = ctx.storage.unavailable() {
        return Err(format!("snapshots are not available: {why}"));
    }
    set_busy(ctx, Some("snapshot"));
    let started = Instant::now();
    let pg = ctx.board.state(Component::Postgres);
    if matches!(pg, ComponentState::Up | ComponentState::Migrating)
        && let Err(e) = checkpoint(ctx).await
    {
        // The snapshot is consistent without it, only slower to recover.
        tracing::warn!(error = %e, "no checkpoint before the snapshot");
    }
    let ctx2 = Arc::clone(ctx);
    let kinds = kinds.to_vec();
    let reason = reason.to_owned();
    let taken = blocking(move || {
        let backend = ctx2.storage.backend.as_ref();
        let existing = backend.list()?;
        let mut at = Timestamp::now();
        let mut id = SnapshotId::new(at, &kinds);
        // Two in the same second: the later one takes the next free second.
        while existing.iter().any(|s| s.id.as_str() == id.as_str()) {
            at = at
                .checked_add(jiff::SignedDuration::from_secs(1))
                .map_err(|e| SnapshotError::BadId(e.to_string()))?;
            id = SnapshotId::new(at, &kinds);
        }
        backend.create(&id, &reason)?;
        Ok(snapshot::Snapshot {
            id,
            reason,
            size_bytes: None,
        })
    })
    .await;
    set_busy(ctx, None);
    match taken {
        Ok(snap) => {
            tracing::info!(
                id = %snap.id,
                took_ms = started.elapsed().as_millis() as u64,
                "snapshot taken"
            );
            refresh(ctx, None).await;
            Ok(summary(&snap))
        }
        Err(e) => {
            tracing::error!(error = %e, "a snapshot failed");
            refresh(ctx, Some(format!("the last snapshot failed: {e}"))).await;
            Err(e)
        }
    }
}

async fn checkpoint(ctx: &Context) -> Result<(), String> {
    let url = crate::postgres::cluster_spec(ctx)
        .connection_string(cv_storage::postgres::SUPERUSER, cv_db::DATABASE);
    let run = async {
        let mut conn = cv_db::connect_once(&url).await.map_err(|e| e.to_string())?;
        use diesel_async::RunQueryDsl as _;
        diesel::sql_query("CHECKPOINT")
            .execute(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(CHECKPOINT_TIMEOUT, run)
        .await
        .map_err(|_| "the checkpoint took over 2 minutes".to_owned())?
}

fn set_busy(ctx: &Context, busy: Option<&str>) {
    ctx.board
        .patch_storage(|s| s.busy = busy.map(ToOwned::to_owned));
}

/// Re-reads the list for the status; `problem` replaces the last one (`None` clears it).
async fn refresh(ctx: &Arc<Context>, problem: Option<String>) {
    let ctx2 = Arc::clone(ctx);
    let listed = blocking(move || ctx2.storage.backend.list()).await;
    ctx.board.patch_storage(|s| {
        if let Ok(list) = &listed {
            s.count = list.len();
            s.newest = list.last().map(|l| l.id.to_string());
        }
        s.problem = problem;
    });
}

/// The `snapshots` task: the schedule and the retention.
pub async fn run(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    if ctx.storage.kind() == BackendKind::Plain {
        tracing::info!(
            why = ctx.storage.unavailable().unwrap_or_default(),
            "no snapshots"
        );
        stop.requested().await;
        return Ok(());
    }
    refresh(&ctx, None).await;
    let mut wait = FIRST_TICK;
    loop {
        tokio::select! {
            _ = stop.requested() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        wait = TICK;
        // Scheduled snapshots are of a running vault; a box still starting waits.
        if ctx.board.state(Component::Postgres) != ComponentState::Up {
            continue;
        }
        let _op = ctx.storage.op.lock().await;
        if let Err(e) = scheduled(&ctx).await {
            tracing::error!(error = %e, "scheduled snapshots failed");
        }
    }
}

/// One look at the schedule: take what is due, destroy what expired.
async fn scheduled(ctx: &Arc<Context>) -> Result<(), String> {
    let ctx2 = Arc::clone(ctx);
    let ids: Vec<SnapshotId> = blocking(move || ctx2.storage.backend.list())
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let now = Timestamp::now();
    let due = ctx.storage.retention.due(now, &ids);
    let mut ids = ids;
    if !due.is_empty() {
        let names: Vec<&str> = due.iter().map(|k| k.as_str()).collect();
        let taken = take_locked(ctx, &due, &format!("scheduled ({})", names.join(", "))).await?;
        if let Ok(id) = SnapshotId::parse(&taken.id) {
            ids.push(id);
        }
    }
    let expired = ctx.storage.retention.expired(now, &ids);
    for id in expired {
        let ctx2 = Arc::clone(ctx);
        let name = id.to_string();
        match blocking(move || ctx2.storage.backend.destroy(&id)).await {
            Ok(()) => tracing::info!(id = %name, "expired snapshot destroyed"),
            Err(e) => {
                tracing::warn!(id = %name, error = %e, "an expired snapshot could not be destroyed")
            }
        }
    }
    refresh(ctx, None).await;
    Ok(())
}

/// Restores snapshot `id`; returns once the vault serves again.
pub async fn restore(ctx: &Arc<Context>, id: &str) -> Result<(), String> {
    let id = SnapshotId::parse(id).map_err(|e| e.to_string())?;
    let op = ctx.storage.op.lock().await;
    let ctx2 = Arc::clone(ctx);
    let wanted = id.clone();
    let known = blocking(move || ctx2.storage.backend.list()).await?;
    if !known.iter().any(|s| s.id == wanted) {
        return Err(format!("there is no snapshot {id}"));
    }
    let before = take_locked(ctx, &[Kind::Restore], &format!("before restoring {id}")).await?;
    set_busy(ctx, Some("restore"));
    tracing::warn!(%id, undo = %before.id, "restoring a snapshot: stopping the vault service and PostgreSQL");
    let started = Instant::now();
    crate::core::stop(ctx).await;
    let ctx2 = Arc::clone(ctx);
    let target = id.clone();
    let restored = blocking(move || {
        snapshot::restore(ctx2.layout.root(), ctx2.storage.backend.as_ref(), &target)
    })
    .await;
    // Whatever happened, the vault runs again: on the snapshot's data, or (the copy
    // failed before any swap) on what it had.
    crate::core::start(ctx).await;
    set_busy(ctx, None);
    drop(op);
    if let Err(e) = restored {
        tracing::error!(%id, error = %e, "the restore failed");
        refresh(ctx, Some(format!("the restore of {id} failed: {e}"))).await;
        return Err(format!("the restore of {id} failed: {e}"));
    }
    let up = wait_serving(ctx).await;
    end_sessions(ctx).await;
    tracing::info!(%id, took_s = started.elapsed().as_secs(), serving = up, "snapshot restored");
    crate::update::audit(
        ctx,
        Event::SnapshotRestored,
        &format!(
            "restored snapshot {id}; the data as it was before is snapshot {}",
            before.id
        ),
    )
    .await;
    refresh(ctx, None).await;
    if up {
        Ok(())
    } else {
        Err(format!(
            "snapshot {id} was restored, but the vault did not serve again within {} minutes; see the dashboard",
            RESTART_TIMEOUT.as_secs() / 60
        ))
    }
}

/// Ends the sessions the restored database holds: everyone logs in again after a
/// restore, whenever they had logged in.
pub(crate) async fn end_sessions(ctx: &Context) {
    let url =
        crate::postgres::cluster_spec(ctx).connection_string(cv_db::SERVICE_ROLE, cv_db::DATABASE);
    let ended = async {
        let mut conn = cv_db::connect_once(&url).await.map_err(|e| e.to_string())?;
        cv_db::SessionRecord::end_all(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(10), ended).await {
        Ok(Ok(n)) => tracing::info!(sessions = n, "sessions ended after the restore"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the sessions could not be ended after the restore")
        }
        Err(_) => tracing::warn!("the sessions could not be ended after the restore in time"),
    }
}

/// Whether PostgreSQL and the vault service are both up within a few minutes.
pub(crate) async fn wait_serving(ctx: &Context) -> bool {
    let deadline = Instant::now() + RESTART_TIMEOUT;
    while Instant::now() < deadline {
        if ctx.board.state(Component::Postgres) == ComponentState::Up
            && ctx.board.state(Component::Vault) == ComponentState::Up
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Copies snapshot `id`'s data back, PostgreSQL being stopped by the caller (the
/// rollback of a failed migration).
pub async fn restore_files(ctx: &Arc<Context>, id: &SnapshotId) -> Result<(), String> {
    let _op = ctx.storage.op.lock().await;
    let ctx2 = Arc::clone(ctx);
    let id = id.clone();
    blocking(move || snapshot::restore(ctx2.layout.root(), ctx2.storage.backend.as_ref(), &id))
        .await
}

/// At start, before PostgreSQL: finishes a restore a power cut interrupted.
pub fn finish_interrupted_restore(ctx: &Context) {
    match snapshot::finish_interrupted_restore(ctx.layout.root(), ctx.storage.backend.as_ref()) {
        Ok(Some(id)) => tracing::warn!(%id, "an interrupted restore was finished"),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "an interrupted restore could not be finished"),
    }
}
