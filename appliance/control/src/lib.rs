//! The control protocol between the supervisor (root) and the vault service (unprivileged).
//!
//! The vault service parses HTTP from the network, so it never runs as root; whatever it
//! needs from the privileged side it asks for over a unix socket, one JSON document per
//! line, one request per connection. The supervisor re-validates every request: this
//! crate only defines the shapes, never trust.
//!
//! The socket lives in the appliance's run directory, owned by root and the service's
//! group, mode 0660, so only the supervisor, the service and root can speak it.

mod backups;
mod snapshots;
mod wireguard;
mod workers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

pub use crate::backups::{
    BACKUP_INIT_TIMEOUT, BACKUP_RESTORE_TIMEOUT, BACKUP_RUN_TIMEOUT, BackupEntry, BackupKeyText,
    BackupResult, BackupStatus,
};
pub use crate::snapshots::{
    RESTORE_TIMEOUT, SNAPSHOT_TIMEOUT, SnapshotOverview, SnapshotSummary, StorageStatus,
};
pub use crate::wireguard::{
    WG_TIMEOUT, WgClientConfig, WgOverview, WgPeer, WgPeerAdded, WgPeerStatus, WgState,
};
pub use crate::workers::{
    JailProtection, SPAWN_TIMEOUT, WorkerEnded, WorkerJail, WorkerStarted, receive_with_fd,
    send_with_fd,
};

/// The largest message either side accepts, so a confused peer cannot make the other
/// buffer without bound. 256 KiB: the WireGuard peer list of a full /24 (253 peers with
/// 32-character names, handshakes and counters) is about 80 KiB of JSON, more than the
/// 64 KiB this once was; a test keeps the worst case under the limit.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// How long a client waits for the supervisor before it reports it unreachable.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the vault service may ask of the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The state of every supervised component, for the dashboard and `/healthz`.
    /// (A struct variant so that unknown fields are rejected like everywhere else.)
    Status {},
    /// The service is listening and serving: the supervisor marks it up.
    ServiceReady {
        /// The pid of the service process, checked against the child it started.
        pid: u32,
    },
    /// Start one AI worker in its jail. The answer is [`Response::WorkerStarted`], with
    /// the service's end of the worker's socket attached (`SCM_RIGHTS`).
    SpawnWorker {},
    /// End a worker this service was given: wait at most `grace_ms` for it to exit (its
    /// socket closed, it should), then kill it. The answer says how it ended.
    StopWorker { id: u64, grace_ms: u64 },
    /// Check the ACME certificate now and renew it even if it is not due (the
    /// dashboard's "Renew now"). Answered [`Response::Ok`] once the attempt is queued;
    /// its outcome shows in [`ApplianceStatus::acme`].
    AcmeRenew {},
    /// Add a WireGuard peer called `name`. The answer is [`Response::WgPeerAdded`], with
    /// the client configuration (secret) given out this once.
    WgAddPeer { name: String },
    /// The VPN's state, settings and peers: [`Response::WgPeers`].
    WgListPeers {},
    /// Remove the peer called `name` (without regard to case) from the interface and the
    /// registry: [`Response::WgPeerRevoked`].
    WgRevokePeer { name: String },
    /// Set the endpoint (`host:port`) written into new client configurations, unless the
    /// config file sets one: [`Response::WgPeers`], the overview with it.
    WgSetEndpoint { endpoint: String },
    /// An update hint as it arrived (`POST /api/v1/update/hint`): the Standard Webhooks
    /// headers and the body, for the supervisor to verify. It only ever makes the
    /// supervisor check for an update now. Answered [`Response::Hint`].
    UpdateHint {
        id: String,
        timestamp: String,
        signature: String,
        body: String,
    },
    /// The dashboard's "Check now": [`Response::Ok`] once the check is queued.
    UpdateCheck {},
    /// The dashboard's "Restart now" for an installed update waiting for its window.
    UpdateRestart {},
    /// The owner's explicit retry of a version that failed its health check and was
    /// rolled back (it is never installed again otherwise).
    UpdateRetry { version: String },
    /// The daily window ("HH:MM-HH:MM") in which an installed update may restart the
    /// box; "" restarts as soon as it is installed. Overrides `update.reboot_window`.
    UpdateSetWindow { window: String },
    /// Take a snapshot of the data directory now, `reason` saying why (may be empty):
    /// [`Response::Snapshot`].
    SnapshotCreate { reason: String },
    /// The snapshots there are: [`Response::Snapshots`].
    SnapshotList {},
    /// Restore the snapshot `id`: the supervisor takes a snapshot of the present first,
    /// stops the vault service and PostgreSQL, copies the snapshot's data back and
    /// starts them again. [`Response::Ok`] once the vault serves again.
    SnapshotRestore { id: String },
    /// Make the backup key (unless there is one) and the repository `[backup]` names:
    /// [`Response::BackupKey`], the key given out this once.
    BackupInit {},
    /// Make a backup now: [`Response::BackupDone`] when it is done.
    BackupRun {},
    /// The backups in the repository: [`Response::Backups`].
    BackupList {},
    /// The backups in the repository `repository` opened with `key`, on a box with no
    /// owner yet (before a restore): [`Response::Backups`].
    BackupCheck {
        repository: String,
        key: BackupKeyText,
    },
    /// Restore a backup onto this box, which must have no owner yet (a new box's setup
    /// page, or `contextvault admin backup restore`): [`Response::Ok`] once the vault
    /// serves the restored data. `snapshot` is restic's id, or "latest".
    BackupRestore {
        repository: String,
        key: BackupKeyText,
        snapshot: String,
    },
}

/// The supervisor's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(ApplianceStatus),
    Ok,
    WorkerStarted(WorkerStarted),
    WorkerEnded(WorkerEnded),
    WgPeerAdded(WgPeerAdded),
    WgPeers(WgOverview),
    WgPeerRevoked(WgPeer),
    /// What became of an update hint: the HTTP status to answer with (202 accepted;
    /// 401, 403, 409, 429 refused) and a sentence saying why.
    Hint {
        status: u16,
        message: String,
    },
    Snapshot(SnapshotSummary),
    Snapshots(SnapshotOverview),
    BackupKey {
        key: BackupKeyText,
    },
    BackupDone(BackupResult),
    Backups {
        backups: Vec<BackupEntry>,
    },
    /// The request was refused; the message says why (shown to admins, never secret).
    Error {
        message: String,
    },
}

/// The life of one supervised component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Being started for the first time.
    Starting,
    /// Up, but applying database migrations: pages answer 503 meanwhile.
    Migrating,
    /// Running and answering.
    Up,
    /// Died; waiting out the backoff before the next start.
    Restarting,
    /// Being stopped, or stopped on purpose.
    Stopped,
    /// Could not be started; `last_error` says why.
    Failed,
    /// Not running, on purpose or because this machine cannot run it (WireGuard
    /// disabled in the config, or dev mode without root); `last_error` says why. An
    /// optional component that is off does not make the appliance unhealthy.
    Off,
}

impl ComponentState {
    /// Whether the component is serving.
    pub fn is_up(self) -> bool {
        self == ComponentState::Up
    }

    /// A word for people (dashboard, `/healthz`).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentState::Starting => "starting",
            ComponentState::Migrating => "migrating",
            ComponentState::Up => "up",
            ComponentState::Restarting => "restarting",
            ComponentState::Stopped => "stopped",
            ComponentState::Failed => "failed",
            ComponentState::Off => "off",
        }
    }
}

/// One supervised component as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentStatus {
    /// Stable name: `postgres`, `vault`.
    pub name: String,
    pub state: ComponentState,
    /// When the component entered its current state.
    #[serde(with = "time::serde::rfc3339")]
    pub since: time::OffsetDateTime,
    /// How many times it was restarted after dying since the supervisor started.
    pub restarts: u32,
    /// The pid of its main process while it runs.
    pub pid: Option<u32>,
    /// Why it last failed or died, for people; never contains secrets.
    pub last_error: Option<String>,
    /// A convenience (LAN discovery) rather than part of the service: shown like the
    /// others, but one that is not up does not make the appliance unhealthy.
    #[serde(default)]
    pub optional: bool,
}

/// Disk usage of the data directory and the filesystem it lives on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Bytes used by everything under the data directory.
    pub data_dir_bytes: u64,
    /// Size of the filesystem holding the data directory.
    pub filesystem_bytes: u64,
    /// Bytes still available to unprivileged users on that filesystem.
    pub available_bytes: u64,
}

/// Everything the supervisor reports at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplianceStatus {
    pub version: String,
    /// "appliance" or "dev".
    pub mode: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: time::OffsetDateTime,
    pub components: Vec<ComponentStatus>,
    /// Measured periodically; `None` until the first measurement.
    pub disk: Option<DiskUsage>,
    /// The ACME certificate; `None` from a supervisor that does not report it. Boxed:
    /// it is large and most answers are about other things.
    #[serde(default)]
    pub acme: Option<Box<AcmeStatus>>,
    /// Self-update; `None` from a supervisor that does not report it.
    #[serde(default)]
    pub update: Option<Box<UpdateStatus>>,
    /// Snapshots; `None` from a supervisor that does not report them.
    #[serde(default)]
    pub storage: Option<StorageStatus>,
    /// Off-box backups; `None` from a supervisor that does not report them.
    #[serde(default)]
    pub backup: Option<Box<BackupStatus>>,
}

/// Self-update, for the dashboard and `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// Whether this box updates itself; when not, `off_reason` says why.
    pub enabled: bool,
    pub off_reason: Option<String>,
    /// The running system's version (the image's), its root slot and board.
    pub version: String,
    pub slot: Option<String>,
    pub compatible: Option<String>,
    /// What the updater is doing: `idle`, `checking`, `downloading`, `verifying`,
    /// `installing`, `ready` (installed, waiting to restart), `restarting`, or
    /// `confirming` (a new version checking the whole stack before it is marked good).
    pub phase: String,
    /// The version being downloaded, installed or confirmed, or ready to restart into.
    pub target: Option<String>,
    /// Download progress in bytes, and install progress in percent, while they run.
    pub downloaded_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    pub install_percent: Option<u8>,
    /// The latest outcome, for people ("Update to 0.2.0 failed: … — rolled back").
    pub message: Option<String>,
    /// Whether `message` reports a problem.
    pub problem: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_check: Option<time::OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_check: Option<time::OffsetDateTime>,
    /// Versions that failed their health check: never installed again by themselves.
    pub failed_versions: Vec<String>,
    /// The daily window an installed update waits for ("03:00-05:00"), if any.
    pub reboot_window: Option<String>,
}

/// The ACME certificate and its renewal, for the dashboard and `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeStatus {
    /// Whether `[acme]` is enabled; when it is not, nothing else is filled in.
    pub enabled: bool,
    /// The configured names.
    pub names: Vec<String>,
    /// `http-01`, `tls-alpn-01` or `dns-01`.
    pub challenge: String,
    /// The CA's directory URL.
    pub directory_url: String,
    /// The certificate in place (none yet: all `None`).
    pub issuer: Option<String>,
    /// Its serial number, upper-case hex.
    pub serial: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<time::OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<time::OffsetDateTime>,
    /// When the last order was attempted, and its error if it failed (for admins; may
    /// name files and the CA, never a secret).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt: Option<time::OffsetDateTime>,
    pub last_error: Option<String>,
    /// A stable word for the last error, safe for public pages (`ca_unreachable`,
    /// `validation_failed`, `dns_update_failed`, `settings`, `certificate`, `files`).
    pub last_error_kind: Option<String>,
    /// When the next check or attempt is due.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt: Option<time::OffsetDateTime>,
}

impl UpdateStatus {
    /// An updater that is idle, off until said otherwise, with nothing to report yet.
    pub fn idle(version: &str) -> UpdateStatus {
        UpdateStatus {
            enabled: false,
            off_reason: None,
            version: version.to_owned(),
            slot: None,
            compatible: None,
            phase: "idle".into(),
            target: None,
            downloaded_bytes: None,
            total_bytes: None,
            install_percent: None,
            message: None,
            problem: false,
            last_check: None,
            next_check: None,
            failed_versions: Vec::new(),
            reboot_window: None,
        }
    }
}

impl ApplianceStatus {
    /// The named component, if the supervisor runs one by that name.
    pub fn component(&self, name: &str) -> Option<&ComponentStatus> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// What the supervisor hands the vault service when it starts it: written as one JSON
/// document to the service's stdin, which is then closed. Nothing in it is secret (the
/// database needs no password: peer authentication), but stdin keeps it out of `ps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceHandoff {
    /// "appliance" or "dev".
    pub mode: String,
    pub version: String,
    /// libpq-style connection string for the service's database role.
    pub database: String,
    /// The supervisor's control socket.
    pub control_socket: PathBuf,
    /// Directory holding `ca.crt`, `server.crt` and `server.key` (see `cv_net::tls`).
    pub tls_dir: PathBuf,
    /// Listening sockets inherited by the service, as file descriptor numbers.
    pub https_fds: Vec<i32>,
    pub http_fds: Vec<i32>,
    /// The HTTPS port people use, for redirects from plain HTTP.
    pub https_port: u16,
    /// Requests from these networks are answered; from anywhere else they are refused
    /// (loopback is always answered). The supervisor adds the WireGuard network.
    pub allowed_sources: Vec<ipnet::IpNet>,
    /// Session lifetimes, in seconds.
    pub session_idle_timeout_secs: u64,
    pub session_absolute_timeout_secs: u64,
    /// An unlocked vault idle this long locks, in seconds.
    pub vault_lock_secs: u64,
    /// The AI workers the service may ask for, and how it treats them.
    pub workers: WorkerSettings,
    /// The dashboard's insights (`[insights]`).
    pub insights: InsightSettings,
    /// "json" or "text".
    pub log_format: String,
    /// A tracing EnvFilter directive.
    pub log_level: String,
    /// Where the supervisor publishes HTTP-01 answers (`cv_net::acme::ChallengeDirs`);
    /// served under `/.well-known/acme-challenge/` on plain HTTP.
    #[serde(default)]
    pub acme_http_dir: Option<PathBuf>,
    /// Where it publishes TLS-ALPN-01 certificates, served to `acme-tls/1` handshakes.
    #[serde(default)]
    pub acme_tls_alpn_dir: Option<PathBuf>,
}

/// The `[workers]` settings the vault service's pool applies (the supervisor applies
/// the jail's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// How many workers run at once; 0: local AI is off.
    pub count: u32,
    pub max_requests: u64,
    pub max_age_secs: u64,
    pub max_idle_secs: u64,
    pub request_timeout_secs: u64,
}

/// The `[insights]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightSettings {
    pub interval_secs: u64,
    pub recent_days: u32,
    pub due_soon_days: u32,
}

/// Why a control exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the supervisor at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the supervisor at {path} did not answer within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("control socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed control message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("control message larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("the peer closed the connection without answering")]
    Closed,
    #[error("the supervisor refused: {0}")]
    Refused(String),
}

/// Reads one newline-terminated JSON message, refusing ones over [`MAX_MESSAGE_BYTES`].
pub async fn read_message<T, R>(reader: &mut BufReader<R>) -> Result<T, ControlError>
where
    T: for<'de> Deserialize<'de>,
    R: tokio::io::AsyncRead + Unpin,
{
    let mut line = Vec::new();
    let mut limited = (&mut *reader).take(MAX_MESSAGE_BYTES as u64 + 1);
    let n = limited.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(ControlError::Closed);
    }
    // Answers may carry a WireGuard client configuration (a private key): the buffer is
    // wiped once parsed.
    let line = zeroize::Zeroizing::new(line);
    if line.len() > MAX_MESSAGE_BYTES {
        return Err(ControlError::TooLarge);
    }
    Ok(serde_json::from_slice(&line)?)
}

/// Writes one message followed by a newline.
pub async fn write_message<T, W>(writer: &mut W, message: &T) -> Result<(), ControlError>
where
    T: Serialize,
    W: tokio::io::AsyncWrite + Unpin,
{
    // Wiped after sending, like the buffer `read_message` fills.
    let mut bytes = zeroize::Zeroizing::new(serde_json::to_vec(message)?);
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    Ok(())
}

/// The vault service's side: one request, one answer, one connection.
#[derive(Debug, Clone)]
pub struct ControlClient {
    path: PathBuf,
}

impl ControlClient {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ControlClient { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `request` and waits (at most [`CLIENT_TIMEOUT`]) for the answer.
    pub async fn call(&self, request: &Request) -> Result<Response, ControlError> {
        self.call_within(request, CLIENT_TIMEOUT).await
    }

    /// Asks for the appliance status.
    pub async fn status(&self) -> Result<ApplianceStatus, ControlError> {
        match self.call(&Request::Status {}).await? {
            Response::Status(status) => Ok(status),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a status request with something else".into(),
            )),
        }
    }

    /// Asks for a new AI worker: its description, and the service's end of its socket.
    /// Waits at most [`SPAWN_TIMEOUT`] (a jail takes a moment to build).
    pub async fn spawn_worker(
        &self,
    ) -> Result<(WorkerStarted, std::os::fd::OwnedFd), ControlError> {
        let exchange = async {
            let mut stream = self.connect().await?;
            write_message(&mut stream, &Request::SpawnWorker {}).await?;
            let (response, fd) = receive_with_fd::<Response>(&stream).await?;
            match (response, fd) {
                (Response::WorkerStarted(started), Some(fd)) => Ok((started, fd)),
                (Response::WorkerStarted(_), None) => Err(ControlError::Refused(
                    "the supervisor started a worker but sent no socket".into(),
                )),
                (Response::Error { message }, _) => Err(ControlError::Refused(message)),
                (_, _) => Err(ControlError::Refused(
                    "answered a worker request with something else".into(),
                )),
            }
        };
        self.within(SPAWN_TIMEOUT, exchange).await
    }

    /// Ends worker `id`, and says how it ended.
    pub async fn stop_worker(&self, id: u64, grace: Duration) -> Result<WorkerEnded, ControlError> {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let request = Request::StopWorker { id, grace_ms };
        let exchange = async {
            let (read, mut write) = self.connect().await?.into_split();
            write_message(&mut write, &request).await?;
            read_message::<Response, _>(&mut BufReader::new(read)).await
        };
        match self.within(CLIENT_TIMEOUT + grace, exchange).await? {
            Response::WorkerEnded(ended) => Ok(ended),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a stop request with something else".into(),
            )),
        }
    }

    async fn connect(&self) -> Result<UnixStream, ControlError> {
        UnixStream::connect(&self.path)
            .await
            .map_err(|source| ControlError::Connect {
                path: self.path.clone(),
                source,
            })
    }

    async fn within<T>(
        &self,
        timeout: Duration,
        exchange: impl Future<Output = Result<T, ControlError>>,
    ) -> Result<T, ControlError> {
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(ControlError::Timeout {
                    path: self.path.clone(),
                    timeout,
                })
            })
    }

    /// Asks for an ACME check and renewal now.
    pub async fn acme_renew(&self) -> Result<(), ControlError> {
        match self.call(&Request::AcmeRenew {}).await? {
            Response::Ok => Ok(()),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a renewal request with something else".into(),
            )),
        }
    }

    /// Adds a WireGuard peer; the answer holds its client configuration (secret).
    pub async fn wg_add_peer(&self, name: &str) -> Result<WgPeerAdded, ControlError> {
        let request = Request::WgAddPeer {
            name: name.to_owned(),
        };
        match self.call_within(&request, WG_TIMEOUT).await? {
            Response::WgPeerAdded(added) => Ok(added),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a WireGuard request with something else".into(),
            )),
        }
    }

    /// The VPN's state, settings and peers.
    pub async fn wg_list_peers(&self) -> Result<WgOverview, ControlError> {
        match self
            .call_within(&Request::WgListPeers {}, WG_TIMEOUT)
            .await?
        {
            Response::WgPeers(overview) => Ok(overview),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a WireGuard request with something else".into(),
            )),
        }
    }

    /// Sets the VPN's endpoint; the answer is the overview with it.
    pub async fn wg_set_endpoint(&self, endpoint: &str) -> Result<WgOverview, ControlError> {
        let request = Request::WgSetEndpoint {
            endpoint: endpoint.to_owned(),
        };
        match self.call_within(&request, WG_TIMEOUT).await? {
            Response::WgPeers(overview) => Ok(overview),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a WireGuard request with something else".into(),
            )),
        }
    }

    /// Hands an update hint to the supervisor; the answer is the HTTP status and why.
    pub async fn update_hint(
        &self,
        id: &str,
        timestamp: &str,
        signature: &str,
        body: &str,
    ) -> Result<(u16, String), ControlError> {
        let request = Request::UpdateHint {
            id: id.to_owned(),
            timestamp: timestamp.to_owned(),
            signature: signature.to_owned(),
            body: body.to_owned(),
        };
        match self.call(&request).await? {
            Response::Hint { status, message } => Ok((status, message)),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered an update hint with something else".into(),
            )),
        }
    }

    /// The dashboard's update buttons: check now, restart now, retry a failed version.
    pub async fn update_action(&self, request: &Request) -> Result<(), ControlError> {
        match self.call(request).await? {
            Response::Ok => Ok(()),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered an update request with something else".into(),
            )),
        }
    }

    /// Revokes the WireGuard peer called `name`.
    pub async fn wg_revoke_peer(&self, name: &str) -> Result<WgPeer, ControlError> {
        let request = Request::WgRevokePeer {
            name: name.to_owned(),
        };
        match self.call_within(&request, WG_TIMEOUT).await? {
            Response::WgPeerRevoked(peer) => Ok(peer),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a WireGuard request with something else".into(),
            )),
        }
    }

    /// Sends `request` and waits at most `timeout` for the answer.
    async fn call_within(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, ControlError> {
        let exchange = async {
            let (read, mut write) = self.connect().await?.into_split();
            write_message(&mut write, request).await?;
            read_message::<Response, _>(&mut BufReader::new(read)).await
        };
        self.within(timeout, exchange).await
    }

    /// Tells the supervisor that the service is serving.
    pub async fn service_ready(&self, pid: u32) -> Result<(), ControlError> {
        match self.call(&Request::ServiceReady { pid }).await? {
            Response::Ok => Ok(()),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a readiness report with something else".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        assert_eq!(
            serde_json::to_string(&Request::Status {}).unwrap(),
            r#"{"op":"status"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::ServiceReady { pid: 7 }).unwrap(),
            r#"{"op":"service_ready","pid":7}"#
        );
    }

    #[test]
    fn wireguard_requests_have_a_stable_wire_form() {
        assert_eq!(
            serde_json::to_string(&Request::WgAddPeer {
                name: "phone".into()
            })
            .unwrap(),
            r#"{"op":"wg_add_peer","name":"phone"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::WgListPeers {}).unwrap(),
            r#"{"op":"wg_list_peers"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::WgSetEndpoint {
                endpoint: "home.example.org:51820".into()
            })
            .unwrap(),
            r#"{"op":"wg_set_endpoint","endpoint":"home.example.org:51820"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"wg_revoke_peer"}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"op":"wg_revoke_peer","name":"a","x":1}"#).is_err()
        );
    }

    #[test]
    fn unknown_operations_and_fields_are_rejected() {
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"status","x":1}"#).is_err());
    }

    #[tokio::test]
    async fn oversized_messages_are_refused_not_buffered() {
        let big = vec![b'a'; MAX_MESSAGE_BYTES + 10];
        let mut reader = BufReader::new(&big[..]);
        let err = read_message::<Request, _>(&mut reader).await.unwrap_err();
        assert!(matches!(err, ControlError::TooLarge), "{err}");
    }

    #[tokio::test]
    async fn client_round_trip_over_a_real_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            let req: Request = read_message(&mut reader).await.unwrap();
            assert_eq!(req, Request::ServiceReady { pid: 42 });
            write_message(&mut write, &Response::Ok).await.unwrap();
        });
        ControlClient::new(&path).service_ready(42).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn unreachable_supervisor_names_the_socket() {
        let err = ControlClient::new("/nonexistent/cv.sock")
            .status()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cv.sock"), "{err}");
    }
}
