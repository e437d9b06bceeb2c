//! Encrypted off-box backups: what the supervisor reports and how it is asked.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::{ControlClient, ControlError, Request, Response};

/// How long `backup init` may take (the repository is created, or its key checked).
pub const BACKUP_INIT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one backup may take before the asker stops waiting (it goes on).
pub const BACKUP_RUN_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// How long a restore from a backup may take.
pub const BACKUP_RESTORE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The backup key (restic's repository password): shown once to the owner, needed to
/// restore onto a new box. `Debug` does not show it; it is wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupKeyText(Zeroizing<String>);

impl BackupKeyText {
    pub fn new(text: Zeroizing<String>) -> BackupKeyText {
        BackupKeyText(text)
    }

    pub fn text(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BackupKeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupKeyText(secret)")
    }
}

impl Serialize for BackupKeyText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BackupKeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| BackupKeyText(Zeroizing::new(s)))
    }
}

/// Backups on the dashboard and in `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// Where backups go (credentials hidden); `None`: no backups (`[backup] repository`).
    pub repository: Option<String>,
    /// Whether the backup key exists (`contextvault admin backup init`).
    pub initialised: bool,
    /// A backup is running: how far (0 to 1) and how many bytes of how many.
    pub running: bool,
    pub percent: Option<f64>,
    pub bytes_done: Option<u64>,
    pub total_bytes: Option<u64>,
    /// The last backup that worked: when (RFC 3339), restic's snapshot id, what it added.
    pub last_success_at: Option<String>,
    pub last_snapshot: Option<String>,
    pub last_added_bytes: Option<u64>,
    pub last_seconds: Option<f64>,
    /// The last backup failed, and why, until one works (a visible warning).
    pub problem: Option<String>,
    /// When the next scheduled one is due (RFC 3339).
    pub next_at: Option<String>,
    /// A backup is being restored onto this box; the last restore's failure, if it failed.
    #[serde(default)]
    pub restoring: bool,
    #[serde(default)]
    pub restore_problem: Option<String>,
}

/// One backup that worked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupResult {
    pub snapshot: String,
    pub files: u64,
    pub bytes: u64,
    pub added_bytes: u64,
    pub seconds: f64,
}

/// One backup in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupEntry {
    pub id: String,
    pub short_id: String,
    /// RFC 3339.
    pub time: String,
    pub tags: Vec<String>,
}

fn refused(what: &str) -> ControlError {
    ControlError::Refused(format!("answered a backup {what} with something else"))
}

impl ControlClient {
    /// Makes the backup key and the repository; the key is given out this once.
    pub async fn backup_init(&self) -> Result<BackupKeyText, ControlError> {
        match self
            .call_within(&Request::BackupInit {}, BACKUP_INIT_TIMEOUT)
            .await?
        {
            Response::BackupKey { key } => Ok(key),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(refused("request")),
        }
    }

    /// Makes a backup now; answered when it is done.
    pub async fn backup_run(&self) -> Result<BackupResult, ControlError> {
        match self
            .call_within(&Request::BackupRun {}, BACKUP_RUN_TIMEOUT)
            .await?
        {
            Response::BackupDone(result) => Ok(result),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(refused("request")),
        }
    }

    pub async fn backup_list(&self) -> Result<Vec<BackupEntry>, ControlError> {
        match self
            .call_within(&Request::BackupList {}, BACKUP_INIT_TIMEOUT)
            .await?
        {
            Response::Backups { backups } => Ok(backups),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(refused("request")),
        }
    }

    /// The backups in another repository, opened with `key` (a new box's setup page, before
    /// it restores one): checks the repository and the key.
    pub async fn backup_check(
        &self,
        repository: &str,
        key: BackupKeyText,
    ) -> Result<Vec<BackupEntry>, ControlError> {
        let request = Request::BackupCheck {
            repository: repository.to_owned(),
            key,
        };
        match self.call_within(&request, BACKUP_INIT_TIMEOUT).await? {
            Response::Backups { backups } => Ok(backups),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(refused("request")),
        }
    }

    /// Restores a backup onto this box, which must have no owner yet.
    pub async fn backup_restore(
        &self,
        repository: &str,
        key: BackupKeyText,
        snapshot: &str,
    ) -> Result<(), ControlError> {
        let request = Request::BackupRestore {
            repository: repository.to_owned(),
            key,
            snapshot: snapshot.to_owned(),
        };
        match self.call_within(&request, BACKUP_RESTORE_TIMEOUT).await? {
            Response::Ok => Ok(()),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(refused("restore")),
        }
    }
}
