//! Storage owned by the appliance. For now: the PostgreSQL cluster the supervisor runs.
pub mod layout;
pub mod postgres;
pub mod users;

pub use layout::DataLayout;
pub use postgres::{Cluster, ClusterSpec, PostgresError, RunningPostgres};
pub use users::{OsUser, ensure_system_user};
