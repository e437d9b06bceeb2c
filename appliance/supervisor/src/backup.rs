//! Encrypted off-box backups (task `backup`, control requests `backup_*`), made with
//! restic ([`cv_storage::backup`]) from a snapshot, so what is backed up is one consistent
//! instant of the data directory.
//!
//! What a backup holds ([`snapshot::BACKED_UP`]): PostgreSQL's data directory — the
//! vault's items, versions, tags and embeddings there are ciphertext already, each under
//! its own data key wrapped by keys only the owners' passphrases open, with their
//! metadata — plus the box's identity (its TLS CA and certificate, the WireGuard server
//! key and peer registry) so that phones and VPN peers keep working after a restore onto a
//! new box, and the config as it was. restic encrypts all of it again (AES-256-CTR with
//! Poly1305-AES) under the **backup key**: 32 random bytes made by `backup init`, shown to
//! the owner once, and kept on the box (`backup/key`, 0600 root) so that scheduled backups
//! need nobody. It is not derived from a recovery key: a box holds no recovery key, and
//! the backup must outlive a passphrase change.
//!
//! Restoring onto a new box (its setup page, or `contextvault admin backup restore`) is
//! allowed only while it has no owner: restic restores into `run/backup-restore/`, then
//! the vault service and PostgreSQL stop, the parts are swapped in as a snapshot restore
//! does (with the same power-cut journal), their owners set to this box's system users,
//! and both start again; the owners then log in with their passphrases.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cv_control::{BackupEntry, BackupKeyText, BackupResult, BackupStatus, ComponentState};
use cv_db::audit::Event;
use cv_storage::backup::{BackupKey, Repository, Restic};
use cv_storage::snapshot::{self, BackendKind, Kind, SnapshotId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Component, Context, Stop, TaskResult};

/// How often the schedule is looked at.
const TICK: Duration = Duration::from_secs(300);
/// The newest snapshot is used for a backup when it is at most this old; else one is
/// taken for it.
const FRESH_SNAPSHOT: Duration = Duration::from_secs(65 * 60);
const RESTIC: &str = "restic";

/// One backup (or restore) at a time.
#[derive(Debug, Default)]
pub struct Backups {
    op: tokio::sync::Mutex<()>,
}

/// What is kept between starts (`backup/state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    last_attempt_at: Option<String>,
    last_success_at: Option<String>,
    last_snapshot: Option<String>,
    last_added_bytes: Option<u64>,
    last_seconds: Option<f64>,
    problem: Option<String>,
}

fn dir(ctx: &Context) -> PathBuf {
    ctx.layout.root().join("backup")
}

fn key_path(ctx: &Context) -> PathBuf {
    dir(ctx).join("key")
}

fn state_path(ctx: &Context) -> PathBuf {
    dir(ctx).join("state.json")
}

fn load_state(ctx: &Context) -> State {
    std::fs::read(state_path(ctx))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_state(ctx: &Context, state: &State) {
    let path = state_path(ctx);
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec_pretty(state)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "the backup state could not be saved");
    }
}

fn make_dir(ctx: &Context) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = dir(ctx);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

fn repository(ctx: &Context) -> Result<Repository, String> {
    let text = ctx.config.backup.repository.as_deref().ok_or_else(|| {
        "no backup repository is set: set [backup] repository in the config".to_owned()
    })?;
    Repository::parse(text).map_err(|e| e.to_string())
}

fn restic(ctx: &Context, repository: Repository, key: BackupKey) -> Restic {
    Restic::new(RESTIC, repository, key, dir(ctx).join("cache"))
}

fn configured(ctx: &Context) -> Result<Restic, String> {
    let repository = repository(ctx)?;
    let key = BackupKey::load(&key_path(ctx)).map_err(|_| {
        "backups are not set up yet: run `contextvault admin backup init` (it shows the backup key once)"
            .to_owned()
    })?;
    Ok(restic(ctx, repository, key))
}

/// The status as the dashboard shows it, from the saved state.
pub fn status(ctx: &Context) -> BackupStatus {
    let state = load_state(ctx);
    let next_at = (ctx.config.backup.repository.is_some() && key_path(ctx).exists()).then(|| {
        next_due(ctx, &state)
            .map(|t| t.to_string())
            .unwrap_or_else(|| jiff::Timestamp::now().to_string())
    });
    BackupStatus {
        repository: ctx
            .config
            .backup
            .repository
            .as_deref()
            .map(|r| Repository::parse(r).map_or_else(|_| r.to_owned(), |r| r.to_string())),
        initialised: key_path(ctx).exists(),
        last_success_at: state.last_success_at,
        last_snapshot: state.last_snapshot,
        last_added_bytes: state.last_added_bytes,
        last_seconds: state.last_seconds,
        problem: state.problem,
        next_at,
        ..BackupStatus::default()
    }
}

fn next_due(ctx: &Context, state: &State) -> Option<jiff::Timestamp> {
    let last: jiff::Timestamp = state.last_attempt_at.as_deref()?.parse().ok()?;
    let interval = jiff::SignedDuration::try_from(ctx.config.backup.interval).ok()?;
    last.checked_add(interval).ok()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the backup did not finish: {e}"))?
}

/// `backup init`: the key (made now, shown this once) and the repository.
pub async fn init(ctx: &Arc<Context>) -> Result<BackupKeyText, String> {
    let _op = ctx.backups.op.lock().await;
    let repository = repository(ctx)?;
    if key_path(ctx).exists() {
        return Err(
            "backups are set up already; the backup key was shown when they were set up".into(),
        );
    }
    make_dir(ctx)?;
    let key = BackupKey::generate();
    let shown = BackupKeyText::new(Zeroizing::new(key.reveal().to_owned()));
    let ctx2 = Arc::clone(ctx);
    let shown_repo = repository.to_string();
    blocking(move || {
        let path = key_path(&ctx2);
        key.store(&path).map_err(|e| e.to_string())?;
        let stored = BackupKey::load(&path).map_err(|e| e.to_string())?;
        let made = restic(&ctx2, repository, stored).init();
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(e.to_string());
        }
        Ok(())
    })
    .await?;
    tracing::info!(repository = %shown_repo, "backups set up");
    ctx.board.set_backup(status(ctx));
    Ok(shown)
}

/// Makes a backup now.
pub async fn run_now(ctx: &Arc<Context>) -> Result<BackupResult, String> {
    let _op = ctx.backups.op.lock().await;
    let restic = configured(ctx)?;
    let mut state = load_state(ctx);
    state.last_attempt_at = Some(jiff::Timestamp::now().to_string());
    save_state(ctx, &state);
    ctx.board.patch_backup(|b| {
        b.running = true;
        b.percent = Some(0.0);
    });
    let outcome = back_up(ctx, restic).await;
    let mut state = load_state(ctx);
    match &outcome {
        Ok(result) => {
            tracing::info!(
                snapshot = %result.snapshot,
                files = result.files,
                bytes = result.bytes,
                added = result.added_bytes,
                seconds = result.seconds,
                "backup made"
            );
            state.last_success_at = Some(jiff::Timestamp::now().to_string());
            state.last_snapshot = Some(result.snapshot.clone());
            state.last_added_bytes = Some(result.added_bytes);
            state.last_seconds = Some(result.seconds);
            state.problem = None;
        }
        Err(e) => {
            tracing::error!(error = %e, "the backup failed");
            state.problem = Some(format!("the last backup failed: {e}"));
        }
    }
    save_state(ctx, &state);
    ctx.board.set_backup(status(ctx));
    outcome
}

async fn back_up(ctx: &Arc<Context>, restic: Restic) -> Result<BackupResult, String> {
    if ctx.storage.kind() == BackendKind::Plain {
        return Err(
            "a backup is made from a snapshot, and this data directory cannot take snapshots (see the dashboard)"
                .into(),
        );
    }
    let id = fresh_snapshot(ctx).await?;
    let ctx2 = Arc::clone(ctx);
    let keep = (
        ctx.config.backup.keep_daily,
        ctx.config.backup.keep_weekly,
        ctx.config.backup.keep_monthly,
    );
    blocking(move || {
        let view = ctx2
            .storage
            .backend()
            .open(&id)
            .map_err(|e| e.to_string())?;
        let parts: Vec<&str> = snapshot::BACKED_UP
            .into_iter()
            .filter(|p| view.path().join(p).exists())
            .collect();
        let tags = ["contextvault", crate::VERSION, id.as_str()];
        let board = &ctx2.board;
        let mut progress = |p: cv_storage::backup::Progress| {
            board.patch_backup(|b| {
                b.percent = Some(p.percent_done);
                b.bytes_done = Some(p.bytes_done);
                b.total_bytes = Some(p.total_bytes);
            });
        };
        let started = Instant::now();
        let summary = restic
            .backup(view.path(), &parts, &tags, &mut progress)
            .map_err(|e| e.to_string())?;
        drop(view);
        if let Err(e) = restic.forget_prune(keep.0, keep.1, keep.2) {
            tracing::warn!(error = %e, "old backups could not be pruned");
        }
        Ok(BackupResult {
            snapshot: summary.snapshot_id,
            files: summary.total_files_processed,
            bytes: summary.total_bytes_processed,
            added_bytes: summary.data_added,
            seconds: started.elapsed().as_secs_f64(),
        })
    })
    .await
}

/// The newest snapshot if it is fresh, else a new one.
async fn fresh_snapshot(ctx: &Arc<Context>) -> Result<SnapshotId, String> {
    let overview = crate::storage::list(ctx).await?;
    let now = jiff::Timestamp::now();
    let fresh = overview
        .snapshots
        .last()
        .and_then(|s| SnapshotId::parse(&s.id).ok())
        .filter(|id| {
            now.duration_since(id.at())
                <= jiff::SignedDuration::try_from(FRESH_SNAPSHOT).unwrap_or_default()
        });
    if let Some(id) = fresh {
        return Ok(id);
    }
    let taken = crate::storage::take(ctx, &[Kind::Manual], "for a backup").await?;
    SnapshotId::parse(&taken.id).map_err(|e| e.to_string())
}

/// The backups in the repository.
pub async fn list(ctx: &Arc<Context>) -> Result<Vec<BackupEntry>, String> {
    entries(configured(ctx)?).await
}

/// The backups in another repository, before a restore onto this box (no owner yet).
pub async fn check(
    ctx: &Arc<Context>,
    repository: &str,
    key: BackupKeyText,
) -> Result<Vec<BackupEntry>, String> {
    entries(foreign(ctx, repository, key).await?).await
}

/// restic for another box's repository, on this box while it has no owner (before a
/// restore onto it).
async fn foreign(ctx: &Context, repository: &str, key: BackupKeyText) -> Result<Restic, String> {
    let repository = Repository::parse(repository).map_err(|e| e.to_string())?;
    let key = BackupKey::from_secret(key.text().trim().to_owned()).map_err(|e| e.to_string())?;
    if has_owner(ctx).await? {
        return Err(
            "this box has an owner already: a backup is restored only onto a new box".into(),
        );
    }
    make_dir(ctx)?;
    Ok(restic(ctx, repository, key))
}

async fn entries(restic: Restic) -> Result<Vec<BackupEntry>, String> {
    blocking(move || {
        let snapshots = restic.snapshots().map_err(|e| e.to_string())?;
        Ok(snapshots
            .into_iter()
            .map(|s| BackupEntry {
                id: s.id,
                short_id: s.short_id,
                time: s.time.to_string(),
                tags: s.tags,
            })
            .collect())
    })
    .await
}

/// The `backup` task: a backup every `backup.interval_hours`, while set up.
pub async fn run(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    ctx.board.set_backup(status(&ctx));
    loop {
        tokio::select! {
            _ = stop.requested() => return Ok(()),
            _ = tokio::time::sleep(TICK) => {}
        }
        if ctx.config.backup.repository.is_none()
            || !key_path(&ctx).exists()
            || ctx.board.state(Component::Postgres) != ComponentState::Up
        {
            continue;
        }
        let state = load_state(&ctx);
        let due = next_due(&ctx, &state).is_none_or(|t| t <= jiff::Timestamp::now());
        if due {
            // The outcome is in the status and the log.
            let _ = run_now(&ctx).await;
        }
    }
}

/// Restores a backup onto this box, which must have no owner.
pub async fn restore(
    ctx: &Arc<Context>,
    repository: &str,
    key: BackupKeyText,
    which: &str,
) -> Result<(), String> {
    let _op = ctx.backups.op.lock().await;
    ctx.board.patch_backup(|b| {
        b.restoring = true;
        b.restore_problem = None;
    });
    let restored = restore_locked(ctx, repository, key, which).await;
    ctx.board.set_backup(status(ctx));
    if let Err(e) = &restored {
        tracing::error!(error = %e, "the restore of a backup failed");
        ctx.board
            .patch_backup(|b| b.restore_problem = Some(format!("the restore failed: {e}")));
    }
    restored
}

async fn restore_locked(
    ctx: &Arc<Context>,
    repository: &str,
    key: BackupKeyText,
    which: &str,
) -> Result<(), String> {
    let restic = foreign(ctx, repository, key).await?;
    let target = ctx.layout.run_dir().join("backup-restore");
    let which = which.to_owned();
    let target2 = target.clone();
    let started = Instant::now();
    tracing::warn!(repository = %restic.repository(), snapshot = %which, "restoring a backup onto this box");
    let kept_key = blocking(move || {
        if target2.exists() {
            std::fs::remove_dir_all(&target2).map_err(|e| format!("{}: {e}", target2.display()))?;
        }
        restic
            .restore(&which, &target2)
            .map_err(|e| e.to_string())?;
        if !target2.join("postgres/PG_VERSION").exists() {
            return Err("the backup holds no database: is it a Context Vault backup?".into());
        }
        Ok(restic)
    })
    .await?;
    // From here on the vault is offline until the restored data serves.
    crate::core::stop(ctx).await;
    let ctx2 = Arc::clone(ctx);
    let source = target.clone();
    let swapped = blocking(move || {
        snapshot::restore_from_dir(ctx2.layout.root(), &source).map_err(|e| e.to_string())?;
        own_restored(&ctx2)?;
        let _ = std::fs::remove_dir_all(&source);
        Ok(())
    })
    .await;
    crate::core::start(ctx).await;
    swapped?;
    // Later backups go on with the same key, unless this box has its own.
    if !key_path(ctx).exists()
        && let Err(e) = kept_key_store(ctx, kept_key)
    {
        tracing::warn!(error = %e, "the backup key could not be kept on this box");
    }
    let up = crate::storage::wait_serving(ctx).await;
    tracing::info!(
        took_s = started.elapsed().as_secs(),
        serving = up,
        "backup restored"
    );
    crate::update::audit(
        ctx,
        Event::BackupRestored,
        "restored from a backup onto this box",
    )
    .await;
    ctx.board.set_backup(status(ctx));
    if up {
        Ok(())
    } else {
        Err(
            "the backup was restored, but the vault did not serve again in time; see the dashboard"
                .into(),
        )
    }
}

fn kept_key_store(ctx: &Context, restic: Restic) -> Result<(), String> {
    restic
        .key()
        .store(&key_path(ctx))
        .map_err(|e| e.to_string())
}

/// The restored files belong to this box's system users, whose ids may differ from the
/// old box's.
fn own_restored(ctx: &Context) -> Result<(), String> {
    let chown = |spec: String, path: &Path, recursive: bool| -> Result<(), String> {
        if !path.exists() || !nix::unistd::Uid::effective().is_root() {
            return Ok(());
        }
        let mut cmd = std::process::Command::new("chown");
        if recursive {
            cmd.arg("-R");
        }
        let out = cmd
            .arg(&spec)
            .arg(path)
            .output()
            .map_err(|e| format!("chown cannot be run: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "chown {spec} {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let pg = &ctx.users.postgres;
    let service = &ctx.users.service;
    chown(
        format!("{}:{}", pg.uid, pg.gid),
        &ctx.layout.postgres_data(),
        true,
    )?;
    chown("0:0".into(), &ctx.layout.tls_dir(), true)?;
    chown("0:0".into(), &ctx.layout.wireguard_dir(), true)?;
    for key in ["server.key", "acme/key.pem"] {
        chown(
            format!("{}:{}", service.uid, service.gid),
            &ctx.layout.tls_dir().join(key),
            false,
        )?;
    }
    Ok(())
}

async fn has_owner(ctx: &Context) -> Result<bool, String> {
    let url =
        crate::postgres::cluster_spec(ctx).connection_string(cv_db::SERVICE_ROLE, cv_db::DATABASE);
    let mut conn = cv_db::connect_once(&url)
        .await
        .map_err(|e| format!("the database cannot be reached: {e}"))?;
    cv_db::models::owner_exists(&mut conn)
        .await
        .map_err(|e| e.to_string())
}
