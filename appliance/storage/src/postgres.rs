//! The PostgreSQL cluster the appliance owns.
//!
//! The supervisor runs its own cluster rather than relying on a system one, so the
//! appliance decides where the data lives (a snapshot-able dataset), which version runs
//! and when it stops. PostgreSQL listens on a unix socket only (`listen_addresses = ''`):
//! nothing on the network can reach it. Clients authenticate by `peer` (the kernel vouches
//! for the connecting uid), mapped through `pg_ident.conf`, so there is no database
//! password to keep anywhere.
//!
//! `initdb` and `postgres` refuse to run as root; when the supervisor is root they run as
//! the dedicated system user in [`ClusterSpec::owner`].

use std::collections::VecDeque;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, chown};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::users::OsUser;

/// The superuser role `initdb` creates. Only the supervisor and the admin CLI (root or
/// the cluster owner) may connect as it.
pub const SUPERUSER: &str = "postgres";

/// The port number only names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
pub const PORT: u16 = 5432;

/// The name of the `pg_ident.conf` map every local connection goes through.
const IDENT_MAP: &str = "contextvault";

/// Unix socket paths are limited to 108 bytes including the terminating NUL
/// (`sun_path` in unix(7)); PostgreSQL rejects longer ones at start.
const MAX_SOCKET_PATH: usize = 107;

/// How many of PostgreSQL's last stderr lines are kept to explain a failure.
const STDERR_TAIL_LINES: usize = 30;

/// Everything needed to create, start and reach one cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Where `initdb`, `postgres` live (e.g. `/usr/lib/postgresql/15/bin`).
    pub bin_dir: PathBuf,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// Where the server creates its socket; see [`socket_dir_for`].
    pub socket_dir: PathBuf,
    /// The system user that owns the data and runs the server.
    pub owner: OsUser,
    /// A group whose members may reach the socket (the vault service's group).
    pub socket_group: Option<Gid>,
    /// Which system users may log in as which database roles, besides the owner and root
    /// logging in as [`SUPERUSER`].
    pub ident: Vec<IdentEntry>,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
}

/// One `pg_ident.conf` line: system user `os_user` may connect as database role `role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentEntry {
    pub os_user: String,
    pub role: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("PostgreSQL binary {path} is missing or not executable (set postgres.bin_dir)")]
    MissingBinary { path: PathBuf },
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("initdb failed for {data_dir} ({status}): {output}")]
    Initdb {
        data_dir: PathBuf,
        status: ExitStatus,
        output: String,
    },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("PostgreSQL exited during start-up ({status}): {log}")]
    ExitedDuringStart { status: ExitStatus, log: String },
    #[error("PostgreSQL was not ready after {waited:?}: {log}")]
    NotReady { waited: Duration, log: String },
    #[error("socket path {path} is longer than the {MAX_SOCKET_PATH} bytes unix sockets allow")]
    SocketPathTooLong { path: PathBuf },
    #[error(
        "socket directory {path} is owned by uid {found}, not by the cluster owner: refusing to use it"
    )]
    SocketDirHijacked { path: PathBuf, found: u32 },
    #[error("waiting for PostgreSQL failed: {0}")]
    Wait(std::io::Error),
}

/// Chooses where the server's socket goes: `<run_dir>/postgres` when the resulting socket
/// path fits in `sun_path`, otherwise a short directory under /tmp named by a hash of
/// `run_dir` (stable, so the admin CLI finds the same one).
pub fn socket_dir_for(run_dir: &Path) -> PathBuf {
    let preferred = run_dir.join("postgres");
    let socket_len = preferred.as_os_str().len() + "/.s.PGSQL.5432".len();
    if socket_len <= MAX_SOCKET_PATH {
        return preferred;
    }
    let hash = blake3::hash(run_dir.as_os_str().as_encoded_bytes());
    PathBuf::from(format!("/tmp/cv-pg-{}", &hash.to_hex()[..16]))
}

impl ClusterSpec {
    /// The socket file clients connect to.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{PORT}"))
    }

    /// A libpq-style connection string for `role` on `database` over the socket.
    pub fn connection_string(&self, role: &str, database: &str) -> String {
        connection_string(&self.socket_dir, role, database)
    }

    fn binary(&self, name: &str) -> Result<PathBuf, PostgresError> {
        let path = self.bin_dir.join(name);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(path),
            _ => Err(PostgresError::MissingBinary { path }),
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        // The owner may not be able to enter the supervisor's working directory.
        cmd.current_dir("/");
        cmd.env_clear();
        cmd.env("PATH", "/usr/bin:/bin");
        cmd.env("LC_ALL", "C.UTF-8");
        if !self.owner.is_current() {
            // std drops supplementary groups when it changes uid as root.
            cmd.uid(self.owner.uid.as_raw())
                .gid(self.owner.gid.as_raw());
        }
        cmd
    }

    fn chown_to_owner(&self, path: &Path, group: Option<Gid>) -> Result<(), PostgresError> {
        if self.owner.is_current() && group.is_none() {
            return Ok(());
        }
        chown(
            path,
            Some(self.owner.uid),
            Some(group.unwrap_or(self.owner.gid)),
        )
        .map_err(|e| PostgresError::Prepare {
            path: path.to_owned(),
            source: e.into(),
        })
    }
}

/// A libpq-style connection string for `role` on `database` over the socket in `socket_dir`.
pub fn connection_string(socket_dir: &Path, role: &str, database: &str) -> String {
    format!(
        "host={} port={PORT} user={role} dbname={database} application_name=contextvault",
        socket_dir.display()
    )
}

/// Creating and starting the cluster.
#[derive(Debug)]
pub struct Cluster;

impl Cluster {
    /// Runs `initdb` unless the data directory already holds a cluster. Returns whether it
    /// created one.
    pub async fn init_if_needed(spec: &ClusterSpec) -> Result<bool, PostgresError> {
        if spec.data_dir.join("PG_VERSION").is_file() {
            return Ok(false);
        }
        let initdb = spec.binary("initdb")?;
        spec.binary("postgres")?;
        let prepare = |source| PostgresError::Prepare {
            path: spec.data_dir.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&spec.data_dir)
            .map_err(prepare)?;
        fs::set_permissions(&spec.data_dir, fs::Permissions::from_mode(0o700)).map_err(prepare)?;
        spec.chown_to_owner(&spec.data_dir, None)?;
        tracing::info!(data_dir = %spec.data_dir.display(), owner = %spec.owner.name, "creating PostgreSQL cluster");
        let output = spec
            .command(&initdb)
            .arg("--pgdata")
            .arg(&spec.data_dir)
            .args([
                &format!("--username={SUPERUSER}"),
                "--auth-local=peer",
                "--auth-host=reject",
                "--encoding=UTF8",
                "--no-locale",
                // Page checksums catch silent corruption on cheap disks.
                "--data-checksums",
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| PostgresError::Spawn {
                program: initdb.clone(),
                source,
            })?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(PostgresError::Initdb {
                data_dir: spec.data_dir.clone(),
                status: output.status,
                output: tail(&text, 20),
            });
        }
        Ok(true)
    }

    /// Starts the server and waits until it accepts connections.
    pub async fn start(
        spec: &ClusterSpec,
        ready_timeout: Duration,
    ) -> Result<RunningPostgres, PostgresError> {
        let postgres = spec.binary("postgres")?;
        prepare_socket_dir(spec)?;
        stop_orphan(spec).await;
        write_access_files(spec)?;

        let mut cmd = spec.command(&postgres);
        cmd.arg("-D").arg(&spec.data_dir);
        let mut settings: Vec<(String, String)> = vec![
            ("listen_addresses".into(), String::new()),
            (
                "unix_socket_directories".into(),
                spec.socket_dir.display().to_string(),
            ),
            // The socket directory (mode 0750) decides who may connect, so the socket
            // itself can be open to anyone who can reach it.
            ("unix_socket_permissions".into(), "0777".into()),
            ("port".into(), PORT.to_string()),
            ("logging_collector".into(), "off".into()),
            ("log_destination".into(), "stderr".into()),
        ];
        settings.extend(spec.settings.iter().cloned());
        for (name, value) in &settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        // Its own process group: a Ctrl-C in the terminal reaches the supervisor only,
        // which then shuts PostgreSQL down in order.
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|source| PostgresError::Spawn {
            program: postgres.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_stderr(stderr, Arc::clone(&log)));
        }
        let mut running = RunningPostgres { child, pid, log };
        running.wait_ready(spec, ready_timeout).await?;
        tracing::info!(pid, socket = %spec.socket_path().display(), "PostgreSQL is ready");
        Ok(running)
    }
}

/// A started server.
#[derive(Debug)]
pub struct RunningPostgres {
    child: Child,
    pid: u32,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl RunningPostgres {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last lines PostgreSQL wrote, to explain why it died.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Waits for the server to exit (for supervision).
    pub async fn wait(&mut self) -> Result<ExitStatus, PostgresError> {
        self.child.wait().await.map_err(PostgresError::Wait)
    }

    /// Asks the server to re-read its configuration files.
    pub fn reload(&self) {
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGHUP);
    }

    /// Stops the server: "fast" shutdown first (SIGINT: roll back open transactions,
    /// checkpoint, exit), then "immediate" (SIGQUIT) if that takes longer than `grace`,
    /// then SIGKILL. See https://www.postgresql.org/docs/15/server-shutdown.html
    pub async fn stop(&mut self, grace: Duration) -> Result<ExitStatus, PostgresError> {
        if let Some(status) = self.child.try_wait().map_err(PostgresError::Wait)? {
            return Ok(status);
        }
        let pid = Pid::from_raw(self.pid as i32);
        for (signal, wait) in [
            (Signal::SIGINT, grace),
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            let _ = kill(pid, signal);
            if let Ok(status) = tokio::time::timeout(wait, self.child.wait()).await {
                let status = status.map_err(PostgresError::Wait)?;
                if signal != Signal::SIGINT {
                    tracing::warn!(?signal, "PostgreSQL needed {signal} to stop");
                }
                return Ok(status);
            }
        }
        self.child.wait().await.map_err(PostgresError::Wait)
    }

    async fn wait_ready(
        &mut self,
        spec: &ClusterSpec,
        timeout: Duration,
    ) -> Result<(), PostgresError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(PostgresError::Wait)? {
                // Let the stderr forwarder drain what the server said before it died.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(PostgresError::ExitedDuringStart {
                    status,
                    log: self.log_tail(),
                });
            }
            // A postmaster that was killed leaves its pid file (saying "ready") and its
            // socket behind: only a pid file naming our child counts.
            if postmaster_status(&spec.data_dir, self.pid).as_deref() == Some("ready")
                && spec.socket_path().exists()
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(PostgresError::NotReady {
                    waited: timeout,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The server's own status word from `postmaster.pid` (line 8 since PostgreSQL 10:
/// `starting`, `ready`, `stopping`, `standby`), if the file belongs to postmaster `pid`;
/// what `pg_ctl -w` polls too.
fn postmaster_status(data_dir: &Path, pid: u32) -> Option<String> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim().parse::<u32>().ok()? != pid {
        return None;
    }
    lines.nth(6).map(|s| s.trim().to_owned())
}

/// A server left running by a supervisor that died (SIGKILL, power cut of the
/// supervisor alone) still holds the data directory. Ask it to stop before starting anew,
/// rather than failing on "lock file already exists" forever.
async fn stop_orphan(spec: &ClusterSpec) {
    let Ok(text) = fs::read_to_string(spec.data_dir.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return;
    };
    let is_postgres = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("postgres") && c.contains(&*spec.data_dir.to_string_lossy())
        })
        .unwrap_or(false);
    if !is_postgres {
        return;
    }
    tracing::warn!(
        pid,
        "an earlier PostgreSQL still runs on this data directory; stopping it"
    );
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGINT);
    for _ in 0..600 {
        if kill(pid, None).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = kill(pid, Signal::SIGQUIT);
}

fn prepare_socket_dir(spec: &ClusterSpec) -> Result<(), PostgresError> {
    let dir = &spec.socket_dir;
    if spec.socket_path().as_os_str().len() > MAX_SOCKET_PATH {
        return Err(PostgresError::SocketPathTooLong {
            path: spec.socket_path(),
        });
    }
    let prepare = |source| PostgresError::Prepare {
        path: dir.clone(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(prepare)?;
    let meta = fs::symlink_metadata(dir).map_err(prepare)?;
    use std::os::unix::fs::MetadataExt as _;
    let current = Uid::current().as_raw();
    if !meta.is_dir() || (meta.uid() != current && meta.uid() != spec.owner.uid.as_raw()) {
        return Err(PostgresError::SocketDirHijacked {
            path: dir.clone(),
            found: meta.uid(),
        });
    }
    // Owner: write (creates the socket). The service's group: search only, which is
    // what connecting needs. Everyone else: nothing.
    let mode = if spec.socket_group.is_some() {
        0o750
    } else {
        0o700
    };
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(prepare)?;
    spec.chown_to_owner(dir, spec.socket_group)
}

/// Writes `pg_hba.conf` and `pg_ident.conf` on every start, so a change of system
/// users in the config takes effect and nobody's hand edits linger.
fn write_access_files(spec: &ClusterSpec) -> Result<(), PostgresError> {
    let hba = format!(
        "# Written by contextvault at every start; edits are overwritten.\n\
         # Unix socket only, peer authentication through the `{IDENT_MAP}` map.\n\
         local all all peer map={IDENT_MAP}\n"
    );
    let mut ident = format!(
        "# Written by contextvault at every start; edits are overwritten.\n\
         # MAPNAME SYSTEM-USERNAME DATABASE-USERNAME\n\
         {IDENT_MAP} {} {SUPERUSER}\n",
        spec.owner.name
    );
    if let Ok(Some(root)) = nix::unistd::User::from_uid(Uid::from_raw(0)) {
        ident.push_str(&format!("{IDENT_MAP} {} {SUPERUSER}\n", root.name));
    }
    for entry in &spec.ident {
        ident.push_str(&format!("{IDENT_MAP} {} {}\n", entry.os_user, entry.role));
    }
    write_owned(spec, &spec.data_dir.join("pg_hba.conf"), &hba)?;
    write_owned(spec, &spec.data_dir.join("pg_ident.conf"), &ident)
}

fn write_owned(spec: &ClusterSpec, path: &Path, text: &str) -> Result<(), PostgresError> {
    let tmp = path.with_extension("conf.tmp");
    let prepare = |source| PostgresError::Prepare {
        path: path.to_owned(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(prepare)?;
    file.write_all(text.as_bytes()).map_err(prepare)?;
    file.sync_all().map_err(prepare)?;
    spec.chown_to_owner(&tmp, None)?;
    fs::rename(&tmp, path).map_err(prepare)
}

async fn forward_stderr(stderr: tokio::process::ChildStderr, log: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if ["PANIC:", "FATAL:", "ERROR:", "WARNING:"]
            .iter()
            .any(|level| line.contains(level))
        {
            tracing::warn!(target: "postgres", "{line}");
        } else {
            tracing::debug!(target: "postgres", "{line}");
        }
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == STDERR_TAIL_LINES {
            log.pop_front();
        }
        log.push_back(line);
    }
}

fn log_tail(log: &Mutex<VecDeque<String>>) -> String {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.iter().cloned().collect::<Vec<_>>().join("\n")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_run_dirs_keep_the_socket_inside() {
        assert_eq!(
            socket_dir_for(Path::new("/var/lib/contextvault/run")),
            PathBuf::from("/var/lib/contextvault/run/postgres")
        );
    }

    #[test]
    fn long_run_dirs_fall_back_to_a_stable_short_directory() {
        let long = PathBuf::from(format!("/{}", "d".repeat(120)));
        let dir = socket_dir_for(&long);
        assert!(dir.to_string_lossy().starts_with("/tmp/cv-pg-"), "{dir:?}");
        assert_eq!(dir, socket_dir_for(&long));
        assert!(dir.join(".s.PGSQL.5432").as_os_str().len() <= MAX_SOCKET_PATH);
    }

    #[test]
    fn postmaster_status_reads_line_eight() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("postmaster.pid"),
            "123\n/data\n1700000000\n5432\n/run\n\n  5432001  0\nready   \n",
        )
        .unwrap();
        assert_eq!(postmaster_status(dir.path(), 123).as_deref(), Some("ready"));
        // A pid file left by another (killed) postmaster says nothing about ours.
        assert_eq!(postmaster_status(dir.path(), 124), None);
    }

    #[test]
    fn missing_binaries_are_named() {
        let spec = ClusterSpec {
            bin_dir: PathBuf::from("/nonexistent/bin"),
            data_dir: PathBuf::from("/nonexistent/data"),
            socket_dir: PathBuf::from("/nonexistent/run"),
            owner: OsUser::current().unwrap(),
            socket_group: None,
            ident: vec![],
            settings: vec![],
        };
        let err = spec.binary("initdb").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bin/initdb"), "{err}");
    }
}
