//! Snapshots of the data directory: what the supervisor reports and how it is asked.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ControlClient, ControlError, Request, Response};

/// How long a snapshot may take to be answered (a checkpoint first, then the snapshot).
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a restore may take: the service and PostgreSQL stopped, the data copied back,
/// both started again (crash recovery included).
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(900);

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// `20261207T150000Z-hourly.daily`.
    pub id: String,
    /// When it was taken (RFC 3339, UTC).
    pub taken_at: String,
    /// Why: `hourly`, `daily`, `weekly`, `monthly`, `manual`, `update`, `migration`,
    /// `restore`.
    pub kinds: Vec<String>,
    /// In words.
    pub reason: String,
    /// The space only it holds, where the backend says so without a scan (ZFS).
    pub size_bytes: Option<u64>,
}

/// The snapshots and the backend behind them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOverview {
    /// `zfs`, `btrfs` or `plain`.
    pub backend: String,
    /// Why there are no snapshots (`plain`), for people.
    pub unavailable: Option<String>,
    /// Oldest first.
    pub snapshots: Vec<SnapshotSummary>,
}

/// Snapshots on the dashboard and in `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStatus {
    /// `zfs`, `btrfs` or `plain`.
    pub backend: String,
    /// Why there are no snapshots (`plain`).
    pub unavailable: Option<String>,
    /// The newest snapshot and how many there are.
    pub newest: Option<String>,
    pub count: usize,
    /// The last scheduled or requested snapshot's failure, until one succeeds.
    pub problem: Option<String>,
    /// What is running now: `snapshot`, `restore`, or `None`.
    pub busy: Option<String>,
}

impl ControlClient {
    /// Takes a snapshot now; the answer is the snapshot.
    pub async fn snapshot_create(&self, reason: &str) -> Result<SnapshotSummary, ControlError> {
        let request = Request::SnapshotCreate {
            reason: reason.to_owned(),
        };
        match self.call_within(&request, SNAPSHOT_TIMEOUT).await? {
            Response::Snapshot(s) => Ok(s),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a snapshot request with something else".into(),
            )),
        }
    }

    pub async fn snapshot_list(&self) -> Result<SnapshotOverview, ControlError> {
        match self
            .call_within(&Request::SnapshotList {}, SNAPSHOT_TIMEOUT)
            .await?
        {
            Response::Snapshots(o) => Ok(o),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a snapshot request with something else".into(),
            )),
        }
    }

    /// Restores a snapshot; answered once the vault serves again from it.
    pub async fn snapshot_restore(&self, id: &str) -> Result<(), ControlError> {
        let request = Request::SnapshotRestore { id: id.to_owned() };
        match self.call_within(&request, RESTORE_TIMEOUT).await? {
            Response::Ok => Ok(()),
            Response::Error { message } => Err(ControlError::Refused(message)),
            _ => Err(ControlError::Refused(
                "answered a restore request with something else".into(),
            )),
        }
    }
}
