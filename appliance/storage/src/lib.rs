//! Storage owned by the appliance: the PostgreSQL cluster the supervisor runs, the
//! snapshots of the data directory it lives in, and encrypted off-box backups with restic.
pub mod backup;
pub mod layout;
pub mod postgres;
pub mod snapshot;
pub mod users;

pub use backup::{
    BackupError, BackupKey, BackupSnapshot, BackupSummary, Progress, Repository, Restic,
};
pub use layout::DataLayout;
pub use postgres::{Cluster, ClusterSpec, PostgresError, RunningPostgres};
pub use users::{OsUser, ensure_system_user};
