//! The `update` task: the appliance updates itself, and never bricks itself doing so.
//!
//! - **When.** Every `update.check_interval` (a day by default), or at once when a signed
//!   hint arrives (`POST /api/v1/update/hint`, verified here with [`cv_update::hint`]: the
//!   hint carries no instructions) or the owner presses "Check now".
//! - **What.** TUF metadata (through `tough`, [`cv_update::repo`]) checked against the
//!   root baked into the image names the current RAUC bundle for this board. Only a
//!   version newer than the running one, and not one that failed its health check here
//!   before (unless the owner asks to retry it), is taken. The bundle is downloaded
//!   resumably, its length and SHA-256 checked while it streams
//!   ([`cv_update::download`]), and its RAUC signature and board checked with `rauc info`
//!   against the keyring baked into the image.
//! - **Install.** A snapshot of the data directory first (a PostgreSQL checkpoint, then
//!   one atomic btrfs or ZFS snapshot, kept as `…-update`: [`crate::storage`]); then `rauc install` writes the inactive root slot and makes it the
//!   boot loader's first choice; then a trial record on the data partition says which
//!   slot is on trial, and the box restarts (at once, or in the owner's window).
//! - **Confirm or roll back.** The new slot's supervisor finds the trial record and runs
//!   the health gate ([`gate`]): PostgreSQL migrated, the vault service answering over
//!   HTTPS with a valid certificate, a jailed worker returning an embedding, and the VPN
//!   up where it is enabled, all within `update.gate_timeout`. It then marks the slot good
//!   (`rauc status mark-good`). Otherwise it writes why to the data partition, marks the
//!   slot bad and restarts: GRUB boots the old slot, whose supervisor reports "update to
//!   X failed: why — rolled back" on the dashboard and in the owners' audit logs, and
//!   never installs X again by itself. A slot that cannot even start its supervisor is
//!   left by the boot loader's counter (three tries) or the `contextvault-update-deadline`
//!   timer, with the same report.
//!
//! Database migrations stay backward compatible (they only add), so the old version runs
//! on a database the new one migrated; the snapshot is the safety net beyond that.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cv_config::{Mode, RebootWindow};
use cv_control::UpdateStatus;
use cv_db::audit::Event;
use cv_update::hint::{Hint, HintGate, HintSecret, Refusal};
use cv_update::repo::{Offer, RepoSettings};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::process::Command;

use crate::{Component, Context, Stop, TaskResult};

/// Baked into the image: the trusted TUF root, RAUC's configuration and keyring, and
/// the image's release file.
const TUF_ROOT: &str = "/usr/lib/contextvault/update/root.json";
const RAUC_SYSTEM_CONF: &str = "/etc/rauc/system.conf";
const RAUC_KEYRING: &str = "/etc/rauc/keyring.pem";
const OS_RELEASE: &str = "/etc/os-release";

/// The first check after the supervisor starts, unless a hint comes first: late enough
/// not to compete with a boot.
const FIRST_CHECK: Duration = Duration::from_secs(10 * 60);
/// How long a worker may take to load its model and answer during the gate.
const GATE_WORKER_TIMEOUT: Duration = Duration::from_secs(180);

/// What the control socket and the task share.
#[derive(Debug, Default)]
pub struct Updates {
    /// Wakes the task for a check now (hint, "Check now", a retry).
    pub check_now: tokio::sync::Notify,
    /// Wakes the task to restart into an installed update now.
    pub restart_now: tokio::sync::Notify,
    /// Wakes a task waiting for its window to look at a changed window.
    restart_now_if_open: tokio::sync::Notify,
    /// The hint verifier, once the task has opened it (`None` before, or when off).
    hints: Mutex<Option<HintGate>>,
    /// Versions the owner asked to retry although they failed before.
    retry: Mutex<Vec<String>>,
    /// Whether updates are on, for the control socket's answers.
    enabled: std::sync::atomic::AtomicBool,
    /// The restart window the owner chose on the dashboard (`Some(None)`: restart at
    /// once), kept in `<data>/update/window`; `None`: the config's.
    window: Mutex<Option<Option<RebootWindow>>>,
}

impl Updates {
    /// Verifies a hint; the HTTP status and the sentence to answer with. An accepted
    /// hint wakes the task. Every answer is audited by the caller's task.
    pub fn hint(&self, hint: &Hint<'_>) -> (u16, String) {
        let result = {
            let mut gate = self
                .hints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match gate.as_mut() {
                Some(gate) => gate.check(hint, OffsetDateTime::now_utc()),
                None => Err(Refusal::NoKey),
            }
        };
        match result {
            Ok(()) => {
                self.check_now.notify_one();
                (202, "accepted: the box checks for an update now".to_owned())
            }
            Err(refusal) => (refusal.http_status(), refusal.message()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The owner's explicit retry of a version that failed before.
    pub fn retry(&self, version: &str) {
        self.retry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(version.to_owned());
        self.check_now.notify_one();
    }

    /// The window an installed update waits for: the owner's, else the config's.
    fn window(&self, configured: Option<RebootWindow>) -> Option<RebootWindow> {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or(configured)
    }

    /// Sets the owner's window ("" for "at once"), kept across restarts in `dir/window`;
    /// why not, for the dashboard.
    pub fn set_window(&self, dir: &Path, text: &str) -> Result<Option<RebootWindow>, String> {
        let text = text.trim();
        let window = if text.is_empty() {
            None
        } else {
            Some(RebootWindow::parse(text).ok_or_else(|| {
                format!(
                    "{text:?} is not a window: give it as HH:MM-HH:MM (24-hour clock, e.g. \
                     03:00-05:00), or leave it empty to restart as soon as an update is installed"
                )
            })?)
        };
        let stored = window.map_or_else(|| "now".to_owned(), |w| w.to_string());
        write_durably(&dir.join("window"), &format!("{stored}\n"))
            .map_err(|e| format!("the window cannot be saved: {e}"))?;
        *self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(window);
        self.restart_now_if_open.notify_one();
        Ok(window)
    }

    fn retry_allowed(&self, version: &str) -> bool {
        self.retry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|v| v == version)
    }
}

/// The running system, as the image describes it.
#[derive(Debug, Clone)]
struct System {
    version: semver::Version,
    /// `A` or `B` (the boot loader's `rauc.slot=`).
    slot: String,
    compatible: String,
}

impl System {
    fn other_slot(&self) -> &'static str {
        if self.slot == "A" { "B" } else { "A" }
    }
}

/// Reads what the image says about itself; why updates are off otherwise.
fn system() -> Result<System, String> {
    let release = std::fs::read_to_string(OS_RELEASE)
        .map_err(|e| format!("{OS_RELEASE} cannot be read: {e}"))?;
    let version = release_field(&release, "IMAGE_VERSION")
        .ok_or_else(|| format!("{OS_RELEASE} names no IMAGE_VERSION: not an appliance image"))?;
    let version = semver::Version::parse(&version)
        .map_err(|e| format!("the image version {version:?} is not a semantic version: {e}"))?;
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("/proc/cmdline cannot be read: {e}"))?;
    let slot = cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("rauc.slot="))
        .ok_or("the boot loader named no root slot (rauc.slot=)")?
        .to_owned();
    let conf = std::fs::read_to_string(RAUC_SYSTEM_CONF)
        .map_err(|e| format!("{RAUC_SYSTEM_CONF} cannot be read: {e}"))?;
    let compatible = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("compatible="))
        .ok_or_else(|| format!("{RAUC_SYSTEM_CONF} names no compatible"))?
        .trim()
        .to_owned();
    if !Path::new(TUF_ROOT).is_file() {
        return Err(format!("the image has no trusted update root ({TUF_ROOT})"));
    }
    Ok(System {
        version,
        slot,
        compatible,
    })
}

/// A `KEY=value` line of an os-release file, unquoted.
fn release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix('=')?;
        Some(value.trim().trim_matches(['"', '\'']).to_owned())
    })
}

/// What the updater keeps on the data partition (`<data>/update/state.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// Versions that failed their health check, with why.
    failed: Vec<Failed>,
    /// The latest outcome, shown until the next one.
    message: Option<String>,
    #[serde(default)]
    problem: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Failed {
    version: String,
    reason: String,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

/// The trial record: which slot holds a version not yet confirmed. Plain `KEY=value`
/// lines, so that `contextvault-update-deadline` (a shell script) can read it too.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Trial {
    slot: String,
    version: String,
    from_slot: String,
    from_version: String,
}

impl Trial {
    fn render(&self) -> String {
        format!(
            "TRIAL_SLOT={}\nTRIAL_VERSION={}\nFROM_SLOT={}\nFROM_VERSION={}\n",
            self.slot, self.version, self.from_slot, self.from_version
        )
    }

    fn parse(text: &str) -> Option<Trial> {
        let field = |key: &str| release_field(text, key).filter(|v| !v.is_empty());
        Some(Trial {
            slot: field("TRIAL_SLOT")?,
            version: field("TRIAL_VERSION")?,
            from_slot: field("FROM_SLOT")?,
            from_version: field("FROM_VERSION")?,
        })
    }
}

/// The files of `<data>/update/`.
#[derive(Debug, Clone)]
struct Files {
    dir: PathBuf,
}

impl Files {
    fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    fn trial(&self) -> PathBuf {
        self.dir.join("trial.env")
    }
    /// Written before `rauc install`: an install cut short leaves this, not a trial.
    fn trial_pending(&self) -> PathBuf {
        self.dir.join("trial.pending")
    }
    fn trial_failed(&self) -> PathBuf {
        self.dir.join("trial-failed")
    }
    fn seen_hints(&self) -> PathBuf {
        self.dir.join("seen-hints.json")
    }
    fn tuf(&self) -> PathBuf {
        self.dir.join("tuf")
    }
    fn downloads(&self) -> PathBuf {
        self.dir.join("downloads")
    }

    fn load(&self) -> Saved {
        std::fs::read(self.state())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn save(&self, saved: &Saved) {
        let write = || -> std::io::Result<()> {
            let tmp = self.dir.join("state.json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(saved)?)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, self.state())
        };
        if let Err(e) = write() {
            tracing::error!(error = %e, "the update state could not be saved");
        }
    }
}

/// Writes `text` to `path` durably (temporary file, fsync, rename).
fn write_durably(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The task's view of itself, published to the board on every change.
struct Reporter {
    ctx: Arc<Context>,
    status: UpdateStatus,
}

impl Reporter {
    fn publish(&self) {
        self.ctx.board.set_update(self.status.clone());
    }

    fn phase(&mut self, phase: &str, target: Option<&str>) {
        self.status.phase = phase.to_owned();
        self.status.target = target.map(str::to_owned);
        self.status.downloaded_bytes = None;
        self.status.total_bytes = None;
        self.status.install_percent = None;
        self.publish();
    }

    /// Records an outcome: on the dashboard, in the state file, in the journal, and
    /// (with `event`) in the owners' audit logs.
    async fn outcome(
        &mut self,
        files: &Files,
        saved: &mut Saved,
        event: Option<Event>,
        problem: bool,
        message: String,
    ) {
        if problem {
            tracing::warn!(%message, "update");
        } else {
            tracing::info!(%message, "update");
        }
        self.status.message = Some(message.clone());
        self.status.problem = problem;
        saved.message = Some(message.clone());
        saved.problem = problem;
        files.save(saved);
        self.publish();
        if let Some(event) = event {
            audit(&self.ctx, event, &message).await;
        }
    }
}

/// Records `detail` in the owners' audit logs (nothing when the database is down or the
/// box is not claimed yet: the journal and the dashboard have it).
pub(crate) async fn audit(ctx: &Context, event: Event, detail: &str) {
    let url =
        crate::postgres::cluster_spec(ctx).connection_string(cv_db::SERVICE_ROLE, cv_db::DATABASE);
    let recorded = async {
        let mut conn = cv_db::connect_once(&url).await.map_err(|e| e.to_string())?;
        cv_db::audit::record_for_owners(&mut conn, event, detail)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(10), recorded).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "an update event could not be audited"),
        Err(_) => tracing::warn!("an update event could not be audited in time"),
    }
}

pub async fn run(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    let settings = &ctx.config.update;
    let files = Files {
        dir: ctx.layout.root().join("update"),
    };
    let mut reporter = Reporter {
        ctx: Arc::clone(&ctx),
        status: UpdateStatus {
            reboot_window: settings.reboot_window.map(|w| w.to_string()),
            ..UpdateStatus::idle(crate::VERSION)
        },
    };
    let system = if ctx.config.mode == Mode::Appliance {
        system()
    } else {
        Err("dev mode: the system is not an appliance image".to_owned())
    };
    let system = match system {
        Ok(system) => system,
        Err(reason) => {
            reporter.status.off_reason = Some(reason);
            reporter.publish();
            stop.requested().await;
            return Ok(());
        }
    };
    reporter.status.version = system.version.to_string();
    reporter.status.slot = Some(system.slot.clone());
    reporter.status.compatible = Some(system.compatible.clone());
    if let Err(e) = std::fs::create_dir_all(files.downloads())
        .and_then(|()| std::fs::create_dir_all(files.tuf()))
    {
        reporter.status.off_reason = Some(format!("{} cannot be made: {e}", files.dir.display()));
        reporter.publish();
        stop.requested().await;
        return Ok(());
    }
    if let Ok(text) = std::fs::read_to_string(files.dir.join("window")) {
        let text = text.trim();
        let choice = if text == "now" {
            Some(None)
        } else {
            RebootWindow::parse(text).map(Some)
        };
        if let Some(choice) = choice {
            *ctx.updates
                .window
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(choice);
        }
    }
    reporter.status.reboot_window = ctx
        .updates
        .window(settings.reboot_window)
        .map(|w| w.to_string());
    let mut saved = files.load();
    reporter.status.failed_versions = saved.failed.iter().map(|f| f.version.clone()).collect();
    reporter.status.message = saved.message.clone();
    reporter.status.problem = saved.problem;
    reporter.publish();

    // A version on trial is confirmed (or refused) before anything else happens.
    if !settle_trial(&ctx, &system, &files, &mut saved, &mut reporter, &mut stop).await {
        // Restarting into the old slot: nothing more to do in this one.
        stop.requested().await;
        return Ok(());
    }

    let Some(repository) = settings.repository.clone() else {
        reporter.status.off_reason =
            Some("no update repository is configured (update.repository)".into());
        reporter.publish();
        stop.requested().await;
        return Ok(());
    };
    let secret = match &settings.hint_secret_file {
        None => None,
        Some(path) => match read_secret(path) {
            Ok(secret) => Some(secret),
            Err(e) => {
                tracing::error!(error = %e, "update hints are refused");
                None
            }
        },
    };
    match HintGate::open(secret, files.seen_hints()) {
        Ok(gate) => {
            *ctx.updates
                .hints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(gate);
        }
        Err(e) => tracing::error!(error = %e, "update hints are refused"),
    }
    ctx.updates
        .enabled
        .store(true, std::sync::atomic::Ordering::Relaxed);
    reporter.status.enabled = true;
    reporter.publish();

    let repo = match repo_settings(&repository, &files, &system) {
        Ok(repo) => repo,
        Err(e) => {
            reporter.status.enabled = false;
            reporter.status.off_reason = Some(e);
            reporter.publish();
            stop.requested().await;
            return Ok(());
        }
    };
    let client = match http_client() {
        Ok(client) => client,
        Err(e) => {
            reporter.status.enabled = false;
            reporter.status.off_reason = Some(e);
            reporter.publish();
            stop.requested().await;
            return Ok(());
        }
    };

    let mut next = Instant::now() + FIRST_CHECK;
    loop {
        reporter.status.next_check =
            Some(OffsetDateTime::now_utc() + next.saturating_duration_since(Instant::now()));
        reporter.publish();
        tokio::select! {
            () = stop.requested() => return Ok(()),
            () = ctx.updates.check_now.notified() => {}
            () = tokio::time::sleep_until(next.into()) => {}
        }
        next = Instant::now() + settings.check_interval;
        reporter.status.last_check = Some(OffsetDateTime::now_utc());
        let installed = check_and_install(
            &ctx,
            &system,
            &repo,
            &client,
            &files,
            &mut saved,
            &mut reporter,
        )
        .await;
        reporter.phase("idle", None);
        if let Some(version) = installed {
            restart_when_allowed(&ctx, &version, &mut reporter, &mut stop).await;
            return Ok(());
        }
    }
}

fn read_secret(path: &Path) -> Result<HintSecret, String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("the hint secret file {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "the hint secret file {} is readable by others (mode {:o}); make it 0600",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("the hint secret file {}: {e}", path.display()))?,
    );
    HintSecret::parse(text.trim())
        .map_err(|e| format!("the hint secret file {}: {e}", path.display()))
}

fn repo_settings(repository: &str, files: &Files, system: &System) -> Result<RepoSettings, String> {
    let base = url::Url::parse(repository)
        .map_err(|e| format!("update.repository {repository:?}: {e}"))?;
    let join = |path: &str| {
        base.join(path)
            .map_err(|e| format!("update.repository {repository:?}: {e}"))
    };
    Ok(RepoSettings {
        root: PathBuf::from(TUF_ROOT),
        datastore: files.tuf(),
        metadata_url: join("metadata/")?,
        targets_url: join("targets/")?,
        compatible: system.compatible.clone(),
    })
}

fn http_client() -> Result<reqwest::Client, String> {
    // The system's roots, for a repository served over public HTTPS (the metadata is
    // signed either way).
    let mut roots = rustls::RootCertStore::empty();
    if let Ok(pem) = std::fs::read("/etc/ssl/certs/ca-certificates.crt") {
        use rustls::pki_types::pem::PemObject as _;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem).flatten();
        roots.add_parsable_certificates(certs);
    }
    let tls = cv_net::tls::client_config(roots).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(20))
        .read_timeout(Duration::from_secs(60))
        // A connection held across a restart of the other end is of no use.
        .pool_max_idle_per_host(0)
        .user_agent(concat!("contextvault/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("the update client cannot be set up: {e}"))
}

/// Confirms or refuses a version on trial. `false`: this slot is being left (restart).
async fn settle_trial(
    ctx: &Arc<Context>,
    system: &System,
    files: &Files,
    saved: &mut Saved,
    reporter: &mut Reporter,
    stop: &mut Stop,
) -> bool {
    let read = |path: PathBuf| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| Trial::parse(&t))
    };
    let trial = read(files.trial()).or_else(|| {
        // An install cut short before its trial record was made final: the slot it
        // names is on trial only if the boot loader booted it.
        read(files.trial_pending()).filter(|t| t.slot == system.slot)
    });
    let _ = std::fs::remove_file(files.trial_pending());
    // A slot not on trial is the system in service: contextvault-update-confirm.service
    // marks it good at every boot, before the supervisor starts.
    let Some(trial) = trial else {
        return true;
    };
    if trial.slot == system.slot {
        reporter.phase("confirming", Some(&trial.version));
        let started = Instant::now();
        let verdict = tokio::select! {
            verdict = gate(ctx, ctx.config.update.gate_timeout) => verdict,
            () = stop.requested() => return false,
        };
        match verdict {
            Ok(()) => {
                let marked = mark("mark-good").await;
                let _ = std::fs::remove_file(files.trial());
                let _ = std::fs::remove_file(files.trial_failed());
                let failed_to_mark = marked.is_err();
                let message = match marked {
                    Ok(()) => format!(
                        "Updated from {} to {}: every check passed in {} s; this version is \
                         now the one the box starts",
                        trial.from_version,
                        trial.version,
                        started.elapsed().as_secs()
                    ),
                    Err(e) => format!(
                        "Updated from {} to {}: every check passed, but the slot could not be \
                         marked good ({e})",
                        trial.from_version, trial.version
                    ),
                };
                reporter
                    .outcome(
                        files,
                        saved,
                        Some(Event::UpdateConfirmed),
                        failed_to_mark,
                        message,
                    )
                    .await;
                true
            }
            Err(reason) => {
                tracing::error!(version = %trial.version, %reason, "the new version failed its health check; rolling back");
                if let Err(e) = write_durably(&files.trial_failed(), &format!("{reason}\n")) {
                    tracing::error!(error = %e, "the reason for the rollback could not be saved");
                }
                reporter.status.message = Some(format!(
                    "{} failed its health check ({reason}); restarting into {}",
                    trial.version, trial.from_version
                ));
                reporter.status.problem = true;
                reporter.phase("restarting", Some(&trial.from_version));
                if let Err(e) = mark("mark-bad").await {
                    tracing::error!(error = %e, "the slot could not be marked bad; the boot counter will leave it");
                }
                restart().await;
                false
            }
        }
    } else {
        // Back on the old slot: the new one failed its gate, or never got that far.
        let reason = std::fs::read_to_string(files.trial_failed())
            .ok()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| {
                "it did not start (the boot loader went back to the old system)".to_owned()
            });
        saved.failed.retain(|f| f.version != trial.version);
        saved.failed.push(Failed {
            version: trial.version.clone(),
            reason: reason.clone(),
            at: OffsetDateTime::now_utc(),
        });
        reporter.status.failed_versions = saved.failed.iter().map(|f| f.version.clone()).collect();
        let _ = std::fs::remove_file(files.trial());
        let _ = std::fs::remove_file(files.trial_failed());
        let message = format!(
            "Update to {} failed: {reason} — rolled back to {}",
            trial.version, system.version
        );
        // The database is up soon after start; the audit waits for it a little.
        wait_for_database(ctx, Duration::from_secs(120)).await;
        reporter
            .outcome(files, saved, Some(Event::UpdateRolledBack), true, message)
            .await;
        true
    }
}

async fn wait_for_database(ctx: &Context, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !ctx.board.state(Component::Postgres).is_up() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `rauc status mark-good|mark-bad booted`.
async fn mark(how: &str) -> Result<(), String> {
    let out = Command::new("rauc")
        .args(["status", how, "booted"])
        .output()
        .await
        .map_err(|e| format!("rauc cannot be run: {e}"))?;
    if out.status.success() {
        tracing::info!(how, "root slot marked");
        Ok(())
    } else {
        let err = format!(
            "rauc status {how}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        tracing::warn!(error = %err, "the root slot could not be marked");
        Err(err)
    }
}

async fn restart() {
    tracing::warn!("restarting the box");
    match Command::new("systemctl").arg("reboot").status().await {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::error!(%status, "systemctl reboot failed"),
        Err(e) => tracing::error!(error = %e, "systemctl cannot be run"),
    }
}

/// The health gate: every part of the stack answers within `limit`, or why not.
pub(crate) async fn gate(ctx: &Arc<Context>, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut worker_failures = 0;
    loop {
        let failure = match stack_answers(ctx).await {
            Err(e) => e,
            Ok(()) => match worker_embeds(ctx).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    worker_failures += 1;
                    // A worker that cannot load its model will not do better later.
                    if worker_failures >= 2 {
                        return Err(e);
                    }
                    e
                }
            },
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{failure} (after {} minutes)",
                limit.as_secs().div_ceil(60)
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// PostgreSQL migrated, the service answering over HTTPS with a valid certificate, the
/// VPN up where enabled.
async fn stack_answers(ctx: &Context) -> Result<(), String> {
    let board = ctx.board.snapshot();
    let state = |c: Component| {
        board
            .component(c.name())
            .map(|s| (s.state, s.last_error.clone()))
    };
    match state(Component::Postgres) {
        Some((s, _)) if s.is_up() => {}
        Some((s, err)) => {
            return Err(format!(
                "PostgreSQL is {}{}",
                s.as_str(),
                err.map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
        None => return Err("PostgreSQL is not supervised".into()),
    }
    let tls = ctx.layout.tls_dir();
    let ca = std::fs::read(tls.join("ca.crt"))
        .map_err(|e| format!("the local CA certificate cannot be read: {e}"))?;
    let addr = ctx
        .https_listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .ok_or("the vault service has no HTTPS socket")?;
    let addr = std::net::SocketAddr::new(crate::console::loopback_for(addr.ip()), addr.port());
    // Any answer with the health document counts (503 names what is failing; the worker
    // is checked apart): the service parses HTTPS and its TLS certificate verifies.
    let (code, body) = cv_net::loopback::get(&ca, addr, "/healthz", Duration::from_secs(10))
        .await
        .map_err(|e| format!("the vault service does not answer over HTTPS: {e}"))?;
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return Err(format!(
            "the vault service answered /healthz with {code} and no health document"
        ));
    }
    match state(Component::Vault) {
        Some((s, _)) if s.is_up() => {}
        Some((s, err)) => {
            return Err(format!(
                "the vault service is {}{}",
                s.as_str(),
                err.map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
        None => return Err("the vault service is not supervised".into()),
    }
    let pem = std::fs::read(tls.join("server.crt"))
        .map_err(|e| format!("the TLS certificate cannot be read: {e}"))?;
    let cert = cv_net::tls::cert_info_from_pem(&pem)
        .map_err(|e| format!("the TLS certificate is unusable: {e}"))?;
    let now = OffsetDateTime::now_utc();
    if cert.not_after <= now || cert.not_before > now {
        return Err(format!(
            "the TLS certificate is not valid now (valid {} to {})",
            cert.not_before, cert.not_after
        ));
    }
    if ctx.config.wireguard.enabled {
        match state(Component::Wireguard) {
            Some((s, _)) if s.is_up() => {}
            Some((s, err)) => {
                return Err(format!(
                    "the WireGuard interface is {}{}",
                    s.as_str(),
                    err.map(|e| format!(": {e}")).unwrap_or_default()
                ));
            }
            None => return Err("the WireGuard interface is not supervised".into()),
        }
    }
    Ok(())
}

/// A jailed worker, started for the purpose, returns an embedding.
async fn worker_embeds(ctx: &Arc<Context>) -> Result<(), String> {
    use cv_worker::Message;
    let ctx2 = Arc::clone(ctx);
    let (started, fd) = tokio::task::spawn_blocking(move || crate::workers::spawn(&ctx2))
        .await
        .map_err(|e| format!("an AI worker could not be started: {e}"))?
        .map_err(|e| format!("an AI worker could not be started: {e}"))?;
    let id = started.id;
    let exchange = async {
        let stream = std::os::unix::net::UnixStream::from(fd);
        stream
            .set_nonblocking(true)
            .map_err(|e| format!("the worker's socket: {e}"))?;
        let mut stream = tokio::net::UnixStream::from_std(stream)
            .map_err(|e| format!("the worker's socket: {e}"))?;
        match cv_worker::read_message_async(&mut stream).await {
            Ok(Message::Hello { .. }) => {}
            Ok(other) => return Err(format!("the AI worker said {other:?} instead of hello")),
            Err(e) => return Err(format!("the AI worker did not start: {e}")),
        }
        let request = Message::Embed {
            id: 1,
            texts: vec!["Context Vault checks its own health".to_owned()],
        };
        cv_worker::write_message_async(&mut stream, &request)
            .await
            .map_err(|e| format!("the AI worker cannot be asked: {e}"))?;
        match cv_worker::read_message_async(&mut stream).await {
            Ok(Message::Embedded { vectors, .. })
                if vectors.len() == 1
                    && !vectors[0].is_empty()
                    && vectors[0].iter().all(|x| x.is_finite()) =>
            {
                Ok(())
            }
            Ok(Message::Failed { message, .. }) => {
                Err(format!("the AI worker could not embed: {message}"))
            }
            Ok(other) => Err(format!("the AI worker answered {other:?}")),
            Err(e) => Err(format!("the AI worker did not answer: {e}")),
        }
    };
    let result = tokio::time::timeout(GATE_WORKER_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the AI worker returned no embedding within {} s",
                GATE_WORKER_TIMEOUT.as_secs()
            ))
        });
    let ctx2 = Arc::clone(ctx);
    let _ = tokio::task::spawn_blocking(move || {
        crate::workers::stop(&ctx2, id, Duration::from_secs(5))
    })
    .await;
    result
}

/// One check, and the install of what it finds: the version installed, if any.
async fn check_and_install(
    ctx: &Arc<Context>,
    system: &System,
    repo: &RepoSettings,
    client: &reqwest::Client,
    files: &Files,
    saved: &mut Saved,
    reporter: &mut Reporter,
) -> Option<String> {
    reporter.phase("checking", None);
    let check = match cv_update::repo::check(repo, client.clone()).await {
        Ok(check) => check,
        Err(e) => {
            let unreachable = matches!(e, cv_update::repo::RepoError::Unreachable(_));
            let event = (!unreachable).then_some(Event::UpdateRefused);
            reporter
                .outcome(
                    files,
                    saved,
                    event,
                    true,
                    format!("Update check failed: {e}"),
                )
                .await;
            return None;
        }
    };
    let Some(newest) = check.offers.first() else {
        let message = if check.other_boards.is_empty() {
            "The update repository offers nothing".to_owned()
        } else {
            let others: Vec<String> = check
                .other_boards
                .iter()
                .map(|(name, compatible)| format!("{name} ({compatible})"))
                .collect();
            format!(
                "The update repository has nothing for this box ({}); refused: {}",
                system.compatible,
                others.join(", ")
            )
        };
        let event = (!check.other_boards.is_empty()).then_some(Event::UpdateRefused);
        reporter
            .outcome(files, saved, event, event.is_some(), message)
            .await;
        return None;
    };
    if newest.version < system.version {
        let message = format!(
            "The update repository offers {}, older than the running {}: not installed",
            newest.version, system.version
        );
        reporter
            .outcome(files, saved, Some(Event::UpdateRefused), true, message)
            .await;
        return None;
    }
    if newest.version == system.version {
        reporter
            .outcome(
                files,
                saved,
                None,
                false,
                format!("Up to date ({})", system.version),
            )
            .await;
        return None;
    }
    let version = newest.version.to_string();
    if let Some(failed) = saved.failed.iter().find(|f| f.version == version)
        && !ctx.updates.retry_allowed(&version)
    {
        let message = format!(
            "{version} is available but failed its health check here before ({}); it is not \
             installed again unless retried from the dashboard",
            failed.reason
        );
        reporter.outcome(files, saved, None, true, message).await;
        return None;
    }
    match install(ctx, system, newest, client, files, reporter).await {
        Ok(()) => {
            let message = format!(
                "Update {version} installed (from {}); the box restarts into it{}",
                system.version,
                match ctx.updates.window(ctx.config.update.reboot_window) {
                    Some(w) => format!(" in its window ({w}), or now from the dashboard"),
                    None => " now".to_owned(),
                }
            );
            reporter
                .outcome(files, saved, Some(Event::UpdateInstalled), false, message)
                .await;
            Some(version)
        }
        Err(e) => {
            reporter
                .outcome(
                    files,
                    saved,
                    Some(Event::UpdateRefused),
                    true,
                    format!("Update to {version} not installed: {e}"),
                )
                .await;
            None
        }
    }
}

/// Download, verify, snapshot, install, record the trial.
async fn install(
    ctx: &Arc<Context>,
    system: &System,
    offer: &Offer,
    client: &reqwest::Client,
    files: &Files,
    reporter: &mut Reporter,
) -> Result<(), String> {
    let version = offer.version.to_string();
    reporter.phase("downloading", Some(&version));
    reporter.status.total_bytes = Some(offer.length);
    reporter.publish();
    let board = &ctx.board;
    let mut status = reporter.status.clone();
    let bundle = cv_update::download::fetch(client, offer, &files.downloads(), |done, total| {
        status.downloaded_bytes = Some(done);
        status.total_bytes = Some(total);
        board.set_update(status.clone());
    })
    .await
    .map_err(|e| format!("the download failed: {e}"))?;
    // Only one bundle is ever kept.
    remove_other_downloads(&files.downloads(), &bundle);

    reporter.phase("verifying", Some(&version));
    if let Err(e) = verify_bundle(&bundle, system, &version).await {
        let _ = std::fs::remove_file(&bundle);
        return Err(e);
    }

    reporter.phase("installing", Some(&version));
    snapshot(ctx, &version).await?;
    let trial = Trial {
        slot: system.other_slot().to_owned(),
        version: version.clone(),
        from_slot: system.slot.clone(),
        from_version: system.version.to_string(),
    };
    write_durably(&files.trial_pending(), &trial.render())
        .map_err(|e| format!("the trial record cannot be written: {e}"))?;
    let installed = rauc_install(&bundle, reporter).await;
    let _ = std::fs::remove_file(&bundle);
    if let Err(e) = installed {
        let _ = std::fs::remove_file(files.trial_pending());
        return Err(e);
    }
    std::fs::rename(files.trial_pending(), files.trial())
        .map_err(|e| format!("the trial record cannot be made final: {e}"))?;
    reporter.phase("ready", Some(&version));
    Ok(())
}

fn remove_other_downloads(dir: &Path, keep: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path() != keep {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// `rauc info` against the image's keyring: the signature, the board and the version.
async fn verify_bundle(bundle: &Path, system: &System, version: &str) -> Result<(), String> {
    let out = Command::new("rauc")
        .arg("info")
        .arg(format!("--keyring={RAUC_KEYRING}"))
        .arg("--output-format=json")
        .arg(bundle)
        .output()
        .await
        .map_err(|e| format!("rauc cannot be run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the bundle's RAUC signature does not verify: {}",
            last_line(&out.stderr)
        ));
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("rauc info answered something unreadable: {e}"))?;
    let compatible = info["compatible"].as_str().unwrap_or_default();
    if compatible != system.compatible {
        return Err(format!(
            "the bundle is for {compatible:?}, not this box ({})",
            system.compatible
        ));
    }
    let bundle_version = info["version"].as_str().unwrap_or_default();
    if bundle_version != version {
        return Err(format!(
            "the bundle says version {bundle_version:?} but the signed metadata says {version}"
        ));
    }
    Ok(())
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no reason given")
        .trim()
        .to_owned()
}

/// A snapshot of the data directory before the install ([`crate::storage`]: a
/// checkpoint, then one atomic snapshot); where the data directory cannot take snapshots,
/// the update goes on (migrations only add, so the old version runs on the new data).
async fn snapshot(ctx: &Arc<Context>, version: &str) -> Result<(), String> {
    if ctx.storage.kind() == cv_storage::snapshot::BackendKind::Plain {
        tracing::info!("the data directory cannot take snapshots: none before the update");
        return Ok(());
    }
    crate::storage::take(
        ctx,
        &[cv_storage::snapshot::Kind::Update],
        &format!("before the update to {version}"),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("the snapshot before the update failed: {e}"))
}

/// `rauc install`, its progress on the dashboard.
async fn rauc_install(bundle: &Path, reporter: &mut Reporter) -> Result<(), String> {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = Command::new("rauc")
        .arg("install")
        .arg(bundle)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("rauc cannot be run: {e}"))?;
    let stderr = child.stderr.take();
    let errors = tokio::spawn(async move {
        let mut text = Vec::new();
        if let Some(mut stderr) = stderr {
            use tokio::io::AsyncReadExt as _;
            let _ = stderr.read_to_end(&mut text).await;
        }
        text
    });
    if let Some(stdout) = child.stdout.take() {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // "installing: 40% Copying image to rootfs.1" and the like.
            if let Some(percent) = line
                .split_whitespace()
                .find_map(|w| w.strip_suffix('%').and_then(|p| p.parse::<u8>().ok()))
            {
                reporter.status.install_percent = Some(percent.min(100));
                reporter.publish();
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("rauc install: {e}"))?;
    let errors = errors.await.unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(format!("rauc install failed: {}", last_line(&errors)))
    }
}

/// Restarts into `version` now, or when the owner's window opens or they press
/// "Restart now".
async fn restart_when_allowed(
    ctx: &Arc<Context>,
    version: &str,
    reporter: &mut Reporter,
    stop: &mut Stop,
) {
    reporter.phase("ready", Some(version));
    // The window is read again at every turn: the owner may change it meanwhile.
    while let Some(window) = ctx.updates.window(ctx.config.update.reboot_window) {
        // The box's own time zone (the same zone the pages use).
        let now = jiff::Zoned::now();
        let minute =
            u16::try_from(now.hour()).unwrap_or(0) * 60 + u16::try_from(now.minute()).unwrap_or(0);
        if window.contains(minute) {
            break;
        }
        tokio::select! {
            () = stop.requested() => return,
            () = ctx.updates.restart_now.notified() => break,
            () = ctx.updates.restart_now_if_open.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
    reporter.phase("restarting", Some(version));
    audit(
        ctx,
        Event::UpdateInstalled,
        &format!("restarting into {version}"),
    )
    .await;
    restart().await;
    stop.requested().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_records_round_trip_and_refuse_partial_ones() {
        let trial = Trial {
            slot: "B".into(),
            version: "0.2.0".into(),
            from_slot: "A".into(),
            from_version: "0.1.0".into(),
        };
        assert_eq!(Trial::parse(&trial.render()), Some(trial));
        assert_eq!(Trial::parse("TRIAL_SLOT=B\nTRIAL_VERSION=0.2.0\n"), None);
        assert_eq!(
            Trial::parse("TRIAL_SLOT=\nTRIAL_VERSION=1\nFROM_SLOT=A\nFROM_VERSION=0"),
            None
        );
    }

    #[test]
    fn os_release_fields_are_read_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nIMAGE_ID=contextvault\nIMAGE_VERSION=\"0.1.1\"\n";
        assert_eq!(
            release_field(text, "IMAGE_VERSION").as_deref(),
            Some("0.1.1")
        );
        assert_eq!(
            release_field(text, "IMAGE_ID").as_deref(),
            Some("contextvault")
        );
        assert_eq!(release_field(text, "VERSION"), None);
    }

    #[test]
    fn the_owners_window_is_checked_kept_and_overrides_the_configs() {
        let dir = tempfile::tempdir().unwrap();
        let updates = Updates::default();
        let configured = RebootWindow::parse("01:00-02:00");
        assert_eq!(updates.window(configured), configured);
        let set = updates.set_window(dir.path(), " 03:00-05:00 ").unwrap();
        assert_eq!(set, RebootWindow::parse("03:00-05:00"));
        assert_eq!(updates.window(configured), set);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("window")).unwrap(),
            "03:00-05:00\n"
        );
        // Empty: at once, whatever the config says.
        assert_eq!(updates.set_window(dir.path(), "").unwrap(), None);
        assert_eq!(updates.window(configured), None);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("window")).unwrap(),
            "now\n"
        );
        let err = updates.set_window(dir.path(), "3am").unwrap_err();
        assert!(err.contains("HH:MM-HH:MM"), "{err}");
        assert_eq!(
            updates.window(configured),
            None,
            "a refused window changes nothing"
        );
    }

    #[test]
    fn the_other_slot_is_the_one_not_booted() {
        let system = |slot: &str| System {
            version: semver::Version::new(0, 1, 0),
            slot: slot.into(),
            compatible: "contextvault-x86_64".into(),
        };
        assert_eq!(system("A").other_slot(), "B");
        assert_eq!(system("B").other_slot(), "A");
    }
}
