//! Encrypted off-box backups with [restic](https://restic.net).
//!
//! This module drives the `restic` binary (Debian's `restic` package) with
//! [`std::process::Command`]; every call blocks until restic exits, so async callers run
//! it on a blocking thread. What is backed up is decided by the caller: [`Restic::backup`]
//! takes a source folder and the paths under it, and nothing else is read.
//!
//! **Encryption.** restic encrypts and authenticates everything it writes to the
//! repository (file contents, file names, folder trees, snapshot metadata) with AES-256 in
//! CTR mode and a Poly1305-AES MAC. The master keys are random; they are stored in the
//! repository encrypted under a key derived from the repository password with scrypt. That
//! password is the [`BackupKey`]: whoever holds the repository without the key learns
//! nothing but sizes and times, and whoever loses the key loses the backups. The key
//! reaches restic through a pipe on its standard input (`RESTIC_PASSWORD_FILE=/dev/stdin`):
//! never on the command line, never in the environment and never in a file on disk.
//!
//! **Where backups go** ([`Repository`]): a local folder (a USB disk, a mounted share),
//! an SFTP server, or a server speaking restic's REST backend protocol (`rest-server`,
//! `rclone serve restic`, several hosting offers). That protocol is plain HTTP(S) over the
//! repository's layout: `POST /?create=true` creates a repository, `HEAD`/`GET` of
//! `/config` and of `/<type>/<name>` read files, `POST /<type>/<name>` uploads one,
//! `DELETE` removes one, and `GET /<type>/` lists a folder (types: `data`, `keys`,
//! `locks`, `snapshots`, `index`). The server only ever sees encrypted files; with the
//! "append-only" mode it refuses deletions, so an intruder on the appliance cannot wipe its
//! backups. The repository address (which may hold a user name and password for the
//! server) is also handed to restic through its environment rather than its command
//! line, and is shown everywhere else with the password masked.
//!
//! **Host name.** restic records the machine's host name in each snapshot and uses it to
//! find the previous snapshot to compare against, to resolve `latest` and to group
//! snapshots when it applies a retention policy. Every snapshot is taken with
//! `--host contextvault` so that a replacement box, whatever its own host name, finds the
//! old box's snapshots as its own: `latest` restores them and the retention policy keeps
//! treating them as one history.
//!
//! **Paths.** restic runs with the source folder as its working directory and is given
//! relative paths, so the files inside a snapshot sit at `/<path>` whatever the source
//! folder was called on the box that made it, and a restore puts them straight under the
//! target folder. (restic 0.14 still records the absolute source paths in the snapshot's
//! `paths` list, which only affects which earlier snapshot it compares against.)

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use rand::RngCore as _;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Where Debian's `restic` package installs the binary.
pub const DEFAULT_BINARY: &str = "/usr/bin/restic";

/// The host name every snapshot is recorded under (see the module documentation).
pub const HOST: &str = "contextvault";

/// How much of restic's standard error is kept to explain a failure.
const STDERR_TAIL_BYTES: usize = 2048;

/// How many of restic's "error" messages a backup keeps (the count is always exact).
const MAX_KEPT_ERRORS: usize = 50;

/// The forms a backup location may take, for error messages.
const ACCEPTED_FORMS: &str = "use an absolute path (/mnt/usb/backups), \
     rest:https://host:8000/path/ or sftp:user@host:/path";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("restic was not found at {path}: install the restic package (apt install restic)")]
    ResticMissing { path: PathBuf },
    #[error(
        "{input:?} is not a backup location this appliance can use: {reason}; {ACCEPTED_FORMS}"
    )]
    InvalidRepository { input: String, reason: &'static str },
    #[error("the backup repository at {repository} cannot be reached: {detail}")]
    Unreachable { repository: String, detail: String },
    #[error("there is no backup repository at {repository} yet: set up backups first")]
    NotInitialised { repository: String },
    #[error("the backup key does not open the repository at {repository}")]
    WrongKey { repository: String },
    #[error(
        "the backup repository at {repository} is locked by another backup or clean-up \
         (still running, or interrupted); try again later: {detail}"
    )]
    Locked { repository: String, detail: String },
    #[error("cannot restore into {path}: it must be an empty folder or not exist yet")]
    TargetNotEmpty { path: PathBuf },
    #[error("invalid backup request: {0}")]
    InvalidRequest(String),
    #[error("the backup key file {path} cannot be used: {reason}")]
    InvalidKey { path: PathBuf, reason: &'static str },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("restic {action} failed ({status}): {stderr}")]
    ResticFailed {
        action: &'static str,
        status: String,
        stderr: String,
    },
    #[error("restic {action} gave output that could not be read: {detail}")]
    Output {
        action: &'static str,
        detail: String,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError + use<> {
    let path = path.to_owned();
    move |source| BackupError::Io { what, path, source }
}

/// Where backups are written, in restic's own spelling.
#[derive(Clone, PartialEq, Eq)]
pub enum Repository {
    /// A folder on a disk the appliance mounts (e.g. a USB disk).
    Local(PathBuf),
    /// A server speaking restic's REST backend protocol: `http(s)://[user:pass@]host:port/path/`.
    Rest(String),
    /// An SFTP server: `user@host:/path` (through the system's `ssh` and its configuration).
    Sftp(String),
}

impl Repository {
    /// Parses `/abs/path` (or `local:/abs/path`), `rest:http(s)://…` and
    /// `sftp:user@host:/path` (or `sftp://user@host[:port]//path`).
    pub fn parse(s: &str) -> Result<Repository, BackupError> {
        let s = s.trim();
        let invalid = |reason| BackupError::InvalidRepository {
            input: mask_credentials(s),
            reason,
        };
        if s.chars().any(char::is_control) {
            return Err(invalid("it contains control characters"));
        }
        if let Some(path) = s.strip_prefix("local:").or(s.starts_with('/').then_some(s)) {
            let path = Path::new(path);
            if !path.is_absolute() {
                return Err(invalid("a local folder must be given as an absolute path"));
            }
            if path.components().any(|c| c == Component::ParentDir) {
                return Err(invalid("a local folder may not contain \"..\""));
            }
            return Ok(Repository::Local(path.to_owned()));
        }
        if let Some(url) = s.strip_prefix("rest:") {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .ok_or_else(|| invalid("a REST server address starts with http:// or https://"))?;
            let authority = rest.split('/').next().unwrap_or_default();
            let host = authority.rsplit('@').next().unwrap_or_default();
            if host.is_empty() || host.starts_with(':') {
                return Err(invalid("the REST server address has no host name"));
            }
            if url.chars().any(char::is_whitespace) {
                return Err(invalid("the REST server address contains spaces"));
            }
            let mut url = url.to_owned();
            if !url.ends_with('/') {
                url.push('/');
            }
            return Ok(Repository::Rest(url));
        }
        if let Some(target) = s.strip_prefix("sftp:") {
            if target.chars().any(char::is_whitespace) {
                return Err(invalid("the SFTP address contains spaces"));
            }
            let (host, path) = match target.strip_prefix("//") {
                Some(url) => match url.split_once('/') {
                    Some((authority, path)) => (authority, path),
                    None => (url, ""),
                },
                None => target.split_once(':').unwrap_or((target, "")),
            };
            let host_name = host.rsplit('@').next().unwrap_or_default();
            if host_name.is_empty() || host_name.starts_with('-') {
                return Err(invalid("the SFTP address has no host name"));
            }
            if path.is_empty() {
                return Err(invalid("the SFTP address has no path (user@host:/path)"));
            }
            return Ok(Repository::Sftp(target.to_owned()));
        }
        Err(invalid("unsupported kind of location"))
    }

    /// The value restic takes for `-r` / `RESTIC_REPOSITORY`, credentials included: never
    /// show it to anyone (use `Display`, which masks them).
    pub fn as_restic_arg(&self) -> String {
        match self {
            Repository::Local(path) => path.to_string_lossy().into_owned(),
            Repository::Rest(url) => format!("rest:{url}"),
            Repository::Sftp(target) => format!("sftp:{target}"),
        }
    }

    /// Replaces the repository address, as restic may print it, with its masked form.
    fn redact(&self, text: &str) -> String {
        let full = self.as_restic_arg();
        let masked = self.to_string();
        let mut text = text.replace(&full, &masked);
        if let Repository::Rest(url) = self {
            // restic also prints the bare URL of a failing request.
            text = text.replace(
                url.trim_end_matches('/'),
                &mask_credentials(url.trim_end_matches('/')),
            );
            if let Some(password) = url_password(url) {
                text = text.replace(password, "***");
            }
        }
        text
    }
}

/// The password part of the userinfo of `scheme://user:password@host/…`, if any.
fn url_password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `scheme://user:password@host/…` with the password replaced by `***`.
fn mask_credentials(s: &str) -> String {
    let Some(scheme_end) = s.find("://").map(|i| i + 3) else {
        return s.to_owned();
    };
    let rest = &s[scheme_end..];
    let authority_len = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return s.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let hidden = if userinfo.contains(':') { ":***" } else { "" };
    format!(
        "{}{user}{hidden}@{host}{}",
        &s[..scheme_end],
        &rest[authority_len..]
    )
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repository::Local(path) => write!(f, "{}", path.display()),
            Repository::Rest(url) => write!(f, "rest:{}", mask_credentials(url)),
            Repository::Sftp(target) => write!(f, "sftp:{target}"),
        }
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repository::Local(path) => f.debug_tuple("Local").field(path).finish(),
            Repository::Rest(url) => f.debug_tuple("Rest").field(&mask_credentials(url)).finish(),
            Repository::Sftp(target) => f.debug_tuple("Sftp").field(target).finish(),
        }
    }
}

/// The restic repository password. Whoever has it (and the repository) can read every
/// backup; without it nobody can, the owner included.
pub struct BackupKey(Zeroizing<String>);

impl BackupKey {
    /// A fresh key: 32 random bytes as 64 lowercase hex digits.
    pub fn generate() -> BackupKey {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(bytes.as_mut());
        let mut hex = Zeroizing::new(String::with_capacity(64));
        for byte in bytes.iter() {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        BackupKey(hex)
    }

    /// A key the owner already has (e.g. typed in to restore onto a new box). restic
    /// ignores white space around a password, so a key may not begin or end with any.
    pub fn from_secret(secret: String) -> Result<BackupKey, BackupError> {
        let secret = Zeroizing::new(secret);
        match check_secret(&secret) {
            Ok(()) => Ok(BackupKey(secret)),
            Err(reason) => Err(BackupError::InvalidRequest(format!(
                "the backup key {reason}"
            ))),
        }
    }

    /// Reads a key written by [`BackupKey::store`] (or by hand: one trailing newline is
    /// ignored).
    pub fn load(path: &Path) -> Result<BackupKey, BackupError> {
        let mut file = fs::File::open(path).map_err(io_error("read the backup key file", path))?;
        let mode = file
            .metadata()
            .map_err(io_error("read the backup key file", path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "the backup key file is readable by other users"
            );
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => BackupError::InvalidKey {
                path: path.to_owned(),
                reason: "it is not UTF-8 text",
            },
            _ => io_error("read the backup key file", path)(e),
        })?;
        let line = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        check_secret(line).map_err(|reason| BackupError::InvalidKey {
            path: path.to_owned(),
            reason,
        })?;
        Ok(BackupKey(Zeroizing::new(line.to_owned())))
    }

    /// Writes the key to `path` (mode 0600, followed by a newline), atomically: a
    /// temporary file beside it is written, flushed and renamed over it.
    pub fn store(&self, path: &Path) -> Result<(), BackupError> {
        let write = "write the backup key file";
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = path.file_name().ok_or_else(|| BackupError::InvalidKey {
            path: path.to_owned(),
            reason: "the path names no file",
        })?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{:016x}.tmp", rand::rng().next_u64()));
        let tmp = dir.join(tmp_name);
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(self.0.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io_error(write, path))
    }

    /// The key itself, to show once to the owner (who must keep it somewhere safe).
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

fn check_secret(secret: &str) -> Result<(), &'static str> {
    if secret.is_empty() {
        return Err("is empty");
    }
    if secret.trim() != secret {
        return Err("begins or ends with white space");
    }
    if secret.chars().any(char::is_control) {
        return Err("contains line breaks or control characters");
    }
    Ok(())
}

impl fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupKey(..)")
    }
}

/// One progress report of a running backup (restic's "status" message).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// From 0 to 1.
    pub percent_done: f64,
    pub total_files: u64,
    pub files_done: u64,
    pub total_bytes: u64,
    pub bytes_done: u64,
    pub seconds_elapsed: u64,
}

/// What a finished backup did (restic's "summary" message).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BackupSummary {
    /// The new snapshot (restic 0.14 reports its short id).
    pub snapshot_id: String,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    /// Bytes of new data stored in the repository (after deduplication).
    pub data_added: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    /// Seconds.
    pub total_duration: f64,
    /// Files restic reported it could not read, as "path: what went wrong" (the first
    /// few; see `error_count`).
    #[serde(skip)]
    pub errors: Vec<String>,
    #[serde(skip)]
    pub error_count: usize,
}

/// One snapshot in the repository.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSnapshot {
    pub id: String,
    pub short_id: String,
    pub time: jiff::Timestamp,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub hostname: String,
}

#[derive(Deserialize)]
struct RawSnapshot {
    id: String,
    #[serde(default)]
    short_id: String,
    time: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    hostname: String,
}

#[derive(Deserialize)]
struct BackupMessage {
    message_type: String,
}

#[derive(Deserialize)]
struct ErrorMessage {
    #[serde(default)]
    error: serde_json::Value,
    #[serde(default)]
    during: String,
    #[serde(default)]
    item: String,
}

impl ErrorMessage {
    fn describe(&self) -> String {
        let what = match &self.error {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => match o.get("message") {
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => format!("error during {}", self.during),
            },
            _ => format!("error during {}", self.during),
        };
        if self.item.is_empty() {
            what
        } else {
            format!("{}: {what}", self.item)
        }
    }
}

/// A restic repository and the key that opens it.
#[derive(Debug)]
pub struct Restic {
    binary: PathBuf,
    repository: Repository,
    key: BackupKey,
    cache_dir: PathBuf,
}

/// What a finished restic run left behind.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Restic {
    /// `binary` is usually [`DEFAULT_BINARY`]; `cache_dir` is restic's local cache of
    /// repository metadata (created 0700 when missing; safe to delete).
    pub fn new(
        binary: impl Into<PathBuf>,
        repository: Repository,
        key: BackupKey,
        cache_dir: impl Into<PathBuf>,
    ) -> Restic {
        Restic {
            binary: binary.into(),
            repository,
            key,
            cache_dir: cache_dir.into(),
        }
    }

    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The repository's key (secret).
    pub fn key(&self) -> &BackupKey {
        &self.key
    }

    /// Creates the repository, or checks that the key opens the one already there.
    pub fn init(&self) -> Result<(), BackupError> {
        let done = self.run(&["init".into()])?;
        if done.status.success() {
            tracing::info!(repository = %self.repository, "backup repository created");
            return Ok(());
        }
        if !done.stderr.contains("config file already exists") {
            return Err(self.failure("init", &done));
        }
        let check = self.run(&["cat".into(), "config".into()])?;
        if check.status.success() {
            tracing::debug!(repository = %self.repository, "backup repository already set up");
            Ok(())
        } else {
            Err(self.failure("init", &check))
        }
    }

    /// Backs up `paths` (relative to `source`), tagged with `tags`. `progress` is called
    /// with each of restic's progress reports (about once a second).
    pub fn backup(
        &self,
        source: &Path,
        paths: &[&str],
        tags: &[&str],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<BackupSummary, BackupError> {
        const ACTION: &str = "backup";
        if !source.is_dir() {
            return Err(BackupError::InvalidRequest(format!(
                "the folder to back up, {}, does not exist",
                source.display()
            )));
        }
        if paths.is_empty() {
            return Err(BackupError::InvalidRequest("nothing to back up".into()));
        }
        let mut args: Vec<OsString> = vec![
            "backup".into(),
            "--json".into(),
            "--host".into(),
            HOST.into(),
        ];
        for tag in tags {
            if tag.is_empty() || tag.contains(',') || tag.chars().any(char::is_control) {
                return Err(BackupError::InvalidRequest(format!(
                    "invalid tag {tag:?} (tags are non-empty and have no commas)"
                )));
            }
            args.push(format!("--tag={tag}").into());
        }
        args.push("--".into());
        for path in paths {
            let relative = Path::new(path);
            if path.is_empty()
                || relative.is_absolute()
                || relative
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(BackupError::InvalidRequest(format!(
                    "{path:?} is not a path inside the folder to back up"
                )));
            }
            if fs::symlink_metadata(source.join(relative)).is_err() {
                return Err(BackupError::InvalidRequest(format!(
                    "{} does not exist",
                    source.join(relative).display()
                )));
            }
            args.push(path.into());
        }

        let mut child = self.spawn(&args, Some(source))?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut tail = Tail::default();
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    tail.push(&buf[..n]);
                }
                tail.text()
            })
        });
        let mut summary = None;
        let mut errors = Vec::new();
        let mut error_count = 0;
        let mut unreadable = None;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let line = match line {
                    Ok(line) => line,
                    Err(e) => {
                        unreadable = Some(e.to_string());
                        break;
                    }
                };
                let Ok(message) = serde_json::from_str::<BackupMessage>(&line) else {
                    continue;
                };
                match message.message_type.as_str() {
                    "status" => {
                        if let Ok(status) = serde_json::from_str::<Progress>(&line) {
                            progress(status);
                        }
                    }
                    "summary" => match serde_json::from_str::<BackupSummary>(&line) {
                        Ok(s) => summary = Some(s),
                        Err(e) => unreadable = Some(format!("summary: {e}")),
                    },
                    "error" => {
                        error_count += 1;
                        if errors.len() < MAX_KEPT_ERRORS
                            && let Ok(error) = serde_json::from_str::<ErrorMessage>(&line)
                        {
                            errors.push(error.describe());
                        }
                    }
                    _ => {}
                }
            }
        }
        let status = child
            .wait()
            .map_err(io_error("wait for restic", &self.binary))?;
        let stderr = stderr
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default();
        let done = Finished {
            status,
            stdout: Vec::new(),
            stderr,
        };
        if error_count > 0 {
            tracing::warn!(
                repository = %self.repository,
                count = error_count,
                "restic could not back up some files"
            );
        }
        if !status.success() {
            let mut error = self.failure(ACTION, &done);
            if let BackupError::ResticFailed { stderr, .. } = &mut error
                && !errors.is_empty()
            {
                let listed = errors
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ");
                *stderr = format!("{stderr} (unreadable: {listed})");
            }
            return Err(error);
        }
        if let Some(detail) = unreadable {
            return Err(BackupError::Output {
                action: ACTION,
                detail,
            });
        }
        let mut summary = summary.ok_or(BackupError::Output {
            action: ACTION,
            detail: "it finished without a summary".into(),
        })?;
        summary.errors = errors;
        summary.error_count = error_count;
        tracing::info!(
            repository = %self.repository,
            snapshot = %summary.snapshot_id,
            files = summary.total_files_processed,
            bytes = summary.total_bytes_processed,
            added = summary.data_added,
            "backup finished"
        );
        Ok(summary)
    }

    /// Every snapshot in the repository, oldest first.
    pub fn snapshots(&self) -> Result<Vec<BackupSnapshot>, BackupError> {
        const ACTION: &str = "snapshots";
        let out = self.run_ok(ACTION, &["snapshots".into(), "--json".into()])?;
        let raw: Option<Vec<RawSnapshot>> =
            serde_json::from_slice(&out).map_err(|e| BackupError::Output {
                action: ACTION,
                detail: e.to_string(),
            })?;
        let mut snapshots = raw
            .unwrap_or_default()
            .into_iter()
            .map(|raw| {
                let time =
                    raw.time
                        .parse::<jiff::Timestamp>()
                        .map_err(|e| BackupError::Output {
                            action: ACTION,
                            detail: format!("snapshot time {:?}: {e}", raw.time),
                        })?;
                let short_id = if raw.short_id.is_empty() {
                    raw.id.chars().take(8).collect()
                } else {
                    raw.short_id
                };
                Ok(BackupSnapshot {
                    id: raw.id,
                    short_id,
                    time,
                    paths: raw.paths,
                    tags: raw.tags.unwrap_or_default(),
                    hostname: raw.hostname,
                })
            })
            .collect::<Result<Vec<_>, BackupError>>()?;
        snapshots.sort_by_key(|s| s.time);
        Ok(snapshots)
    }

    /// Restores `snapshot` (an id, a unique prefix of one, or `latest`: the newest
    /// snapshot taken under [`HOST`]) into `target`, which must be empty or not exist.
    pub fn restore(&self, snapshot: &str, target: &Path) -> Result<(), BackupError> {
        let is_id =
            (4..=64).contains(&snapshot.len()) && snapshot.bytes().all(|b| b.is_ascii_hexdigit());
        if snapshot != "latest" && !is_id {
            return Err(BackupError::InvalidRequest(format!(
                "{snapshot:?} is not a snapshot id"
            )));
        }
        match fs::symlink_metadata(target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("look at", target)(e)),
            Ok(meta) if !meta.is_dir() => {
                return Err(BackupError::TargetNotEmpty {
                    path: target.to_owned(),
                });
            }
            Ok(_) => {
                let mut entries = fs::read_dir(target).map_err(io_error("list", target))?;
                if entries.next().is_some() {
                    return Err(BackupError::TargetNotEmpty {
                        path: target.to_owned(),
                    });
                }
            }
        }
        let mut args: Vec<OsString> = vec!["restore".into(), snapshot.into()];
        if snapshot == "latest" {
            args.extend(["--host".into(), HOST.into()]);
        }
        args.extend(["--target".into(), target.into()]);
        self.run_ok("restore", &args)?;
        tracing::info!(repository = %self.repository, snapshot, target = %target.display(), "restore finished");
        Ok(())
    }

    /// Applies the retention policy to the snapshots taken under [`HOST`], per set of
    /// tags (keep the newest snapshot of each of the last `keep_daily` days, `keep_weekly`
    /// weeks and `keep_monthly` months), and deletes the data no snapshot uses any more.
    pub fn forget_prune(
        &self,
        keep_daily: u32,
        keep_weekly: u32,
        keep_monthly: u32,
    ) -> Result<(), BackupError> {
        if keep_daily == 0 && keep_weekly == 0 && keep_monthly == 0 {
            return Err(BackupError::InvalidRequest(
                "a retention policy keeps at least one daily, weekly or monthly snapshot".into(),
            ));
        }
        let args: Vec<OsString> = vec![
            "forget".into(),
            "--prune".into(),
            "--host".into(),
            HOST.into(),
            "--group-by".into(),
            "host,tags".into(),
            format!("--keep-daily={keep_daily}").into(),
            format!("--keep-weekly={keep_weekly}").into(),
            format!("--keep-monthly={keep_monthly}").into(),
        ];
        self.run_ok("forget", &args)?;
        tracing::info!(repository = %self.repository, "old backups forgotten and pruned");
        Ok(())
    }

    /// Starts restic with `args` after the global options, the repository and the key
    /// handed over through its environment and standard input.
    fn spawn(&self, args: &[OsString], cwd: Option<&Path>) -> Result<Child, BackupError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.cache_dir)
            .map_err(io_error("create restic's cache folder", &self.cache_dir))?;
        let mut cmd = Command::new(&self.binary);
        for (name, _) in std::env::vars_os() {
            if name.as_encoded_bytes().starts_with(b"RESTIC_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("RESTIC_REPOSITORY", self.repository.as_restic_arg())
            .env("RESTIC_PASSWORD_FILE", "/dev/stdin")
            .env("RESTIC_PROGRESS_FPS", "1")
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                BackupError::ResticMissing {
                    path: self.binary.clone(),
                }
            }
            _ => io_error("start", &self.binary)(e),
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // restic reads the whole "file" and trims the white space around it. A restic
            // that exits before reading closes the pipe: its exit status tells why.
            if let Err(e) = stdin.write_all(self.key.0.as_bytes())
                && e.kind() != io::ErrorKind::BrokenPipe
            {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io_error("hand the backup key to", &self.binary)(e));
            }
        }
        Ok(child)
    }

    fn run(&self, args: &[OsString]) -> Result<Finished, BackupError> {
        let child = self.spawn(args, None)?;
        let output = child
            .wait_with_output()
            .map_err(io_error("wait for restic", &self.binary))?;
        let mut tail = Tail::default();
        tail.push(&output.stderr);
        Ok(Finished {
            status: output.status,
            stdout: output.stdout,
            stderr: tail.text(),
        })
    }

    fn run_ok(&self, action: &'static str, args: &[OsString]) -> Result<Vec<u8>, BackupError> {
        let done = self.run(args)?;
        if done.status.success() {
            Ok(done.stdout)
        } else {
            Err(self.failure(action, &done))
        }
    }

    /// Turns a failed run into the error a person can act on.
    fn failure(&self, action: &'static str, done: &Finished) -> BackupError {
        let stderr = self.repository.redact(&done.stderr);
        let repository = self.repository.to_string();
        let lower = stderr.to_lowercase();
        let last_line = || {
            stderr
                .lines()
                .rev()
                .find(|l| l.starts_with("Fatal:"))
                .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
                .unwrap_or_default()
                .trim_start_matches("Fatal:")
                .trim()
                .to_owned()
        };
        const UNREACHABLE: &[&str] = &[
            "connection refused",
            "no such host",
            "dial tcp",
            "i/o timeout",
            "network is unreachable",
            "no route to host",
            "connection reset",
            "unable to start the sftp session",
            "ssh: ",
            "tls: ",
            "x509: ",
            "client.head",
            "server response unexpected",
            "unexpected http response",
        ];
        if lower.contains("wrong password or no key found") {
            BackupError::WrongKey { repository }
        } else if lower.contains("unable to create lock") || lower.contains("already locked") {
            BackupError::Locked {
                repository,
                detail: last_line(),
            }
        } else if UNREACHABLE.iter().any(|marker| lower.contains(marker)) {
            BackupError::Unreachable {
                repository,
                detail: last_line(),
            }
        } else if lower.contains("unable to open config file")
            && (lower.contains("no such file or directory") || lower.contains("does not exist"))
        {
            BackupError::NotInitialised { repository }
        } else {
            BackupError::ResticFailed {
                action,
                status: done.status.to_string(),
                stderr,
            }
        }
    }
}

/// The end of a stream, at most [`STDERR_TAIL_BYTES`], cut at a line start.
#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend(data);
        let excess = self.bytes.len().saturating_sub(STDERR_TAIL_BYTES);
        if excess > 0 {
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }

    fn text(self) -> String {
        let truncated = self.truncated;
        let bytes: Vec<u8> = self.bytes.into();
        let text = String::from_utf8_lossy(&bytes);
        let text = if truncated {
            text.split_once('\n').map_or(&*text, |(_, rest)| rest)
        } else {
            &text
        };
        text.trim().to_owned()
    }
}
