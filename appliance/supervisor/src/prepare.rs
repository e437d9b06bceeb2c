//! One-time work before any child starts: users, directories, the pid file, TLS files
//! and the listening sockets. Each step fails with the path or port it failed on.

use std::fs;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cv_config::Config;
use cv_net::tls::{self, KeyOwner, PkiAction, PkiPaths};
use cv_storage::{DataLayout, OsUser, ensure_system_user};
use nix::unistd::{Gid, Uid, chown};

use crate::{SupervisorError, Users};

/// Root creates (if needed) and uses the configured system users; anyone else runs
/// everything as themselves.
pub fn resolve_users(config: &Config) -> Result<Users, SupervisorError> {
    if Uid::effective().is_root() {
        Ok(Users {
            postgres: ensure_system_user(config.postgres.system_user.as_str())
                .map_err(SupervisorError::Users)?,
            service: ensure_system_user(config.service.system_user.as_str())
                .map_err(SupervisorError::Users)?,
            worker: ensure_system_user(config.workers.system_user.as_str())
                .map_err(SupervisorError::Users)?,
        })
    } else {
        let me = OsUser::current().map_err(SupervisorError::Users)?;
        Ok(Users {
            postgres: me.clone(),
            service: me.clone(),
            worker: me,
        })
    }
}

fn make_dir(path: &Path, mode: u32, owner: Option<(Uid, Gid)>) -> Result<(), SupervisorError> {
    let err = |source| SupervisorError::Prepare {
        path: path.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)?;
    if let Some((uid, gid)) = owner
        && Uid::effective().is_root()
    {
        chown(path, Some(uid), Some(gid)).map_err(|e| err(e.into()))?;
    }
    Ok(())
}

/// Creates the data directory tree with the modes documented in `cv_storage::layout`.
pub fn directories(layout: &DataLayout, users: &Users) -> Result<(), SupervisorError> {
    let root = (Uid::effective(), Gid::effective());
    // 0711: the service and PostgreSQL users may pass through to their own
    // subdirectories but cannot list what else is there.
    make_dir(layout.root(), 0o711, Some(root))?;
    make_dir(&layout.run_dir(), 0o711, Some(root))?;
    make_dir(&layout.tls_dir(), 0o711, Some(root))?;
    for (path, user) in [
        (layout.run_dir(), &users.service),
        (layout.tls_dir(), &users.service),
        (layout.root().to_owned(), &users.postgres),
    ] {
        check_reachable(&path, user)?;
    }
    Ok(())
}

/// Every ancestor of `path` must let `user` pass (search permission), or PostgreSQL and
/// the service fail later with a bare "permission denied". Say so up front instead.
fn check_reachable(path: &Path, user: &OsUser) -> Result<(), SupervisorError> {
    if user.uid.is_root() || user.is_current() {
        return Ok(());
    }
    for dir in path.ancestors() {
        let Ok(meta) = fs::metadata(dir) else {
            continue;
        };
        let mode = meta.mode();
        let ok = if meta.uid() == user.uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return Err(SupervisorError::Unreachable {
                path: path.to_owned(),
                user: user.name.clone(),
                blocker: dir.to_owned(),
                mode: mode & 0o7777,
            });
        }
    }
    Ok(())
}

/// The binary the service user will execute. When the supervisor's own binary sits
/// somewhere that user cannot enter (a build tree under /root, say), a root-owned copy in
/// the run directory is used instead.
pub fn service_exe(
    exe: &Path,
    layout: &DataLayout,
    users: &Users,
) -> Result<PathBuf, SupervisorError> {
    let parent = exe.parent().unwrap_or(Path::new("/"));
    if check_reachable(parent, &users.service).is_ok() {
        return Ok(exe.to_owned());
    }
    let copy = layout.run_dir().join("contextvault");
    let err = |source| SupervisorError::Prepare {
        path: copy.clone(),
        source,
    };
    let tmp = copy.with_extension("tmp");
    fs::copy(exe, &tmp).map_err(err)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(err)?;
    fs::rename(&tmp, &copy).map_err(err)?;
    tracing::info!(
        from = %exe.display(),
        to = %copy.display(),
        "the service user cannot reach this binary; running the vault service from a copy"
    );
    Ok(copy)
}

/// `run/supervisor.pid`: refuses a second supervisor on the same data directory, and,
/// when a previous one left its file behind, reports that it stopped uncleanly.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn claim(layout: &DataLayout) -> Result<PidFile, SupervisorError> {
        let path = layout.pid_file();
        if let Ok(text) = fs::read_to_string(&path)
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
            let is_us = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("contextvault"))
                .unwrap_or(false);
            if alive && is_us && pid != std::process::id() as i32 {
                return Err(SupervisorError::AlreadyRunning {
                    pid,
                    data_dir: layout.root().to_owned(),
                });
            }
            tracing::warn!(
                previous_pid = pid,
                "the previous supervisor did not shut down cleanly (crash, kill -9 or power loss); \
                 PostgreSQL will recover from its write-ahead log"
            );
        }
        let err = |source| SupervisorError::Prepare {
            path: path.clone(),
            source,
        };
        let mut file = fs::File::create(&path).map_err(err)?;
        writeln!(file, "{}", std::process::id()).map_err(err)?;
        Ok(PidFile { path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The name the box answers to: the configured hostname or the machine's.
pub fn hostname(config: &Config) -> String {
    if let Some(name) = &config.hostname {
        return name.as_str().to_owned();
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or("").to_ascii_lowercase())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or_else(|| "contextvault".to_owned())
}

/// Makes sure the local CA and a server certificate covering today's names exist.
pub fn tls(
    config: &Config,
    layout: &DataLayout,
    users: &Users,
    hostname: &str,
) -> Result<(), SupervisorError> {
    let paths = PkiPaths::new(layout.tls_dir());
    let request = tls::default_request(hostname, &config.tls.extra_names);
    let owner = KeyOwner {
        uid: users.service.uid.as_raw(),
        gid: users.service.gid.as_raw(),
    };
    let report = tls::ensure_local_pki(
        &paths,
        &request,
        Some(owner),
        time::OffsetDateTime::now_utc(),
    )?;
    for action in &report.actions {
        match action {
            PkiAction::CreatedCa => tracing::info!(
                fingerprint = %report.ca.sha256_fingerprint,
                "created the local certificate authority; install {} on your devices",
                paths.ca_cert().display()
            ),
            // cv_net logs each issuance with its names and reason.
            PkiAction::IssuedServerCert { .. } | PkiAction::Unchanged => {}
        }
    }
    Ok(())
}

/// Binds the HTTPS and HTTP ports on every configured address, as root where needed, so
/// the unprivileged service inherits them.
pub fn bind(config: &Config) -> Result<(Vec<TcpListener>, Vec<TcpListener>), SupervisorError> {
    let bind_all = |port: u16| -> Result<Vec<TcpListener>, SupervisorError> {
        config
            .network
            .bind
            .iter()
            .map(|ip| {
                let addr = SocketAddr::new(*ip, port);
                TcpListener::bind(addr).map_err(|source| SupervisorError::Bind {
                    addr: addr.to_string(),
                    hint: match source.kind() {
                        std::io::ErrorKind::AddrInUse => {
                            " (is another contextvault or web server running? choose other ports with --https-port/--http-port)"
                        }
                        std::io::ErrorKind::PermissionDenied => {
                            " (ports below 1024 need root: start as root or choose ports above 1024)"
                        }
                        _ => "",
                    },
                    source,
                })
            })
            .collect()
    };
    Ok((
        bind_all(config.network.https_port)?,
        bind_all(config.network.http_port)?,
    ))
}
