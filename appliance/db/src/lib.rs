//! The appliance's database: schema, migrations, connection pool and models.
//!
//! Error policy: every function returns [`DbError`], which keeps diesel's error and says
//! what was being done. The web layer maps `DbError::Unavailable` to a 503 "starting or
//! recovering" page and anything else to a 500 that is logged with its context.

pub mod audit;
pub mod embeddings;
pub mod feedback;
pub mod getting_started;
pub mod invitations;
pub mod items;
pub mod models;
pub mod schema;
pub mod settings;
pub mod tokens;

use std::time::Duration;

use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use models::{Role, SessionRecord, User, UserId, UserName};

/// The database role the vault service connects as; it owns the schema.
pub const SERVICE_ROLE: &str = "contextvault";
/// The database holding everything the vault keeps.
pub const DATABASE: &str = "contextvault";

/// Every migration, compiled into the binary: an appliance has no source tree.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// PostgreSQL cannot be reached (starting, restarting, migrating): retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("{context}: {source}")]
    Query {
        context: &'static str,
        source: diesel::result::Error,
    },
    #[error("migrations failed: {0}")]
    Migration(String),
}

/// For transactions: an error of BEGIN/COMMIT itself.
impl From<diesel::result::Error> for DbError {
    fn from(source: diesel::result::Error) -> Self {
        DbError::Query {
            context: "in a transaction",
            source,
        }
    }
}

impl DbError {
    pub fn query(context: &'static str) -> impl FnOnce(diesel::result::Error) -> DbError {
        move |source| DbError::Query { context, source }
    }
}

/// A pool of connections for `connection_string` (see `cv_storage::postgres`).
///
/// Sizing: the vault service is the only client. Sixteen connections keep two cores busy
/// with headroom for slow queries, well under PostgreSQL's default `max_connections`
/// of 100, which leaves room for the supervisor, the admin CLI and maintenance.
pub fn pool(connection_string: &str, max_size: usize) -> Result<DbPool, DbError> {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(connection_string);
    Pool::builder(manager)
        .max_size(max_size)
        // A request waits at most this long for a free connection before it gets a 503,
        // rather than hanging while PostgreSQL restarts.
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(3)))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Unavailable(e.to_string()))
}

/// Takes a connection from the pool; failure means the database is unavailable.
pub async fn connect(pool: &DbPool) -> Result<DbConn, DbError> {
    pool.get()
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))
}

/// One connection outside any pool (supervisor, CLI).
pub async fn connect_once(connection_string: &str) -> Result<AsyncPgConnection, DbError> {
    AsyncPgConnection::establish(connection_string)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))
}

/// Creates the service role and its database if missing. `superuser_connection` must
/// connect as the cluster's superuser to the `postgres` database.
pub async fn provision(superuser_connection: &str) -> Result<(), DbError> {
    let mut conn = connect_once(superuser_connection).await?;
    // CREATE DATABASE cannot run inside a transaction block or a DO block, so the
    // existence checks are separate queries.
    let role_exists = exists(
        &mut conn,
        "SELECT 1 FROM pg_roles WHERE rolname = $1",
        SERVICE_ROLE,
    )
    .await?;
    if !role_exists {
        conn.batch_execute(&format!("CREATE ROLE \"{SERVICE_ROLE}\" LOGIN"))
            .await
            .map_err(DbError::query("creating the service role"))?;
    }
    let db_exists = exists(
        &mut conn,
        "SELECT 1 FROM pg_database WHERE datname = $1",
        DATABASE,
    )
    .await?;
    if !db_exists {
        conn.batch_execute(&format!(
            "CREATE DATABASE \"{DATABASE}\" OWNER \"{SERVICE_ROLE}\" ENCODING 'UTF8' TEMPLATE template0"
        ))
        .await
        .map_err(DbError::query("creating the database"))?;
    }
    Ok(())
}

/// Creates an extra database owned by the service role (tests: one database each).
pub async fn create_database(superuser_connection: &str, name: &str) -> Result<(), DbError> {
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(DbError::Migration(format!(
            "invalid database name {name:?}"
        )));
    }
    let mut conn = connect_once(superuser_connection).await?;
    conn.batch_execute(&format!(
        "CREATE DATABASE \"{name}\" OWNER \"{SERVICE_ROLE}\" ENCODING 'UTF8' TEMPLATE template0"
    ))
    .await
    .map_err(DbError::query("creating a database"))
}

async fn exists(conn: &mut AsyncPgConnection, query: &str, name: &str) -> Result<bool, DbError> {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl as _;
    #[derive(diesel::QueryableByName)]
    struct One {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        #[diesel(column_name = "?column?")]
        _one: i32,
    }
    let rows: Vec<One> = diesel::sql_query(query)
        .bind::<Text, _>(name)
        .load(conn)
        .await
        .map_err(DbError::query("checking the catalog"))?;
    Ok(!rows.is_empty())
}

/// Applies every pending migration; returns the versions applied.
pub async fn run_migrations(connection_string: &str) -> Result<Vec<String>, DbError> {
    with_migration_harness(connection_string, |conn| {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|v| v.iter().map(ToString::to_string).collect())
    })
    .await
}

/// The migrations not applied yet, and whether any was ever applied (a database with
/// none applied is a new one: nothing in it to protect before migrating).
pub async fn pending_migrations(connection_string: &str) -> Result<(Vec<String>, bool), DbError> {
    with_migration_harness(connection_string, |conn| {
        let applied_any = !conn.applied_migrations()?.is_empty();
        let pending = conn
            .pending_migrations(MIGRATIONS)?
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        Ok((pending, applied_any))
    })
    .await
}

/// Reverts every applied migration (tests: up/down/up).
pub async fn revert_all_migrations(connection_string: &str) -> Result<Vec<String>, DbError> {
    with_migration_harness(connection_string, |conn| {
        conn.revert_all_migrations(MIGRATIONS)
            .map(|v| v.iter().map(ToString::to_string).collect())
    })
    .await
}

type Harness = AsyncConnectionWrapper<AsyncPgConnection>;

async fn with_migration_harness<F, T>(connection_string: &str, f: F) -> Result<T, DbError>
where
    F: FnOnce(&mut Harness) -> diesel::migration::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let connection_string = connection_string.to_owned();
    // The wrapper drives the async connection from a blocking thread; running it on an
    // async worker would block the runtime.
    tokio::task::spawn_blocking(move || {
        let mut conn = <Harness as diesel::Connection>::establish(&connection_string)
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        f(&mut conn).map_err(|e| DbError::Migration(e.to_string()))
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))?
}
