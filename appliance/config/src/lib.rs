//! Context Vault configuration.
//!
//! Two stages (like ripgrep's low-level and high-level arguments):
//!
//! 1. `raw`: the versioned TOML file exactly as written. Every table rejects unknown
//!    keys, so a misspelt setting is an error rather than a silently ignored line.
//! 2. `validate`: the raw document checked field by field into a [`Config`] whose
//!    types cannot hold a bad value ([`Hostname`], [`SystemUserName`], `IpAddr`, …).
//!    Every problem is reported at once, each with its dotted key and line.
//!
//! The appliance reads `/etc/contextvault/config.toml` ([`DEFAULT_CONFIG_PATH`]);
//! `contextvault dev` needs no file and uses [`Config::dev`]. [`EXAMPLE_CONFIG`] lists
//! every option with its explanation, and a test keeps it complete.
//!
//! What the file cannot tell (is `initdb` really in `postgres.bin_dir`?) is checked
//! separately by [`Config::check_environment`], so that loading stays a pure function
//! of the text and tests need no particular machine.

mod environment;
mod error;
mod names;
mod raw;
mod validate;

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use ipnet::IpNet;

pub use environment::{EnvironmentProblem, storage_wanted};
pub use error::{ConfigError, Origin, Problem, ProblemKind};
pub use names::{Hostname, InvalidName, SystemUserName, acme_name};

/// Where the appliance's systemd unit points `contextvault run --config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/contextvault/config.toml";

/// An appliance config with every option and its explanation; also what
/// `contextvault config example` can print.
pub const EXAMPLE_CONFIG: &str = include_str!("../contextvault.example.toml");

/// How the process was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `contextvault run` from the systemd unit, with a config file.
    Appliance,
    /// `contextvault dev` on any Linux box, from built-in defaults.
    Dev,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Appliance => "appliance",
            Mode::Dev => "dev",
        })
    }
}

/// The validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    /// Absolute; everything the box keeps lives under it.
    pub data_dir: PathBuf,
    /// `None`: use the machine's hostname ([`Hostname::from_machine`]) at run time.
    pub hostname: Option<Hostname>,
    pub network: Network,
    pub tls: Tls,
    pub postgres: Postgres,
    pub service: Service,
    pub sessions: Sessions,
    pub log: Log,
    pub workers: Workers,
    pub insights: Insights,
    pub acme: Acme,
    pub wireguard: Wireguard,
    pub update: Update,
    pub storage: Storage,
    pub backup: Backup,
}

/// Where the web service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Not empty, no duplicates.
    pub bind: Vec<IpAddr>,
    pub https_port: u16,
    /// Plain HTTP only redirects to HTTPS. Never equal to `https_port`.
    pub http_port: u16,
    /// The source networks whose requests are answered (host bits cleared, no
    /// duplicates); loopback and the WireGuard network are always answered as well.
    pub allowed_sources: Vec<IpNet>,
    /// Announce the box on the LAN with multicast DNS: `<hostname>.local` and an
    /// `_https._tcp` service, so phones find it without typing an address.
    pub mdns: bool,
}

/// `network.allowed_sources` by default: the private LAN ranges (RFC 1918, RFC 4193
/// unique local IPv6) and link-local addresses, where a home network lives.
pub const DEFAULT_ALLOWED_SOURCES: [&str; 6] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

/// The LAN certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Extra subject alternative names besides `<hostname>.local`: lowercase DNS names
    /// or IP addresses in canonical form, without duplicates.
    pub extra_names: Vec<String>,
}

/// The PostgreSQL installation the supervisor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postgres {
    /// Absolute; holds `initdb`, `postgres` and `pg_ctl`.
    pub bin_dir: PathBuf,
    /// Never `root`, never the same as [`Service::system_user`].
    pub system_user: SystemUserName,
}

/// The unprivileged web service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Never `root`.
    pub system_user: SystemUserName,
}

/// How long a login lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sessions {
    /// 1 minute to 30 days; never longer than `absolute_timeout`.
    pub idle_timeout: Duration,
    /// 1 to 365 days.
    pub absolute_timeout: Duration,
    /// An unlocked vault with no request for this long locks (its keys leave memory),
    /// even while the login lasts. 1 minute to 30 days.
    pub vault_lock: Duration,
}

/// The jailed AI workers (`contextvault worker`), started by the supervisor for the
/// vault service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workers {
    /// How many run at once, 0 to 16; 0 turns local AI off.
    pub count: u32,
    /// The unprivileged user they run as (never root, never a user of another service).
    pub system_user: SystemUserName,
    /// The model files (`scripts/fetch-model`), bound read-only into each jail.
    pub models_dir: PathBuf,
    /// Memory limit of one worker (its cgroup), in bytes.
    pub memory_bytes: u64,
    /// CPU of one worker, in thousandths of a core.
    pub cpu_millicores: u64,
    /// A worker is replaced after answering this many requests…
    pub max_requests: u64,
    /// …after living this long…
    pub max_age: Duration,
    /// …and after this long without a request, so texts do not linger in its memory.
    pub max_idle: Duration,
    /// A request a worker has not answered in this time counts as a hang: the worker
    /// is killed and replaced.
    pub request_timeout: Duration,
    /// Refuse to start a worker whose jail lacks any protection (the appliance), rather
    /// than start it and report what is missing (dev).
    pub require_jail: bool,
    /// Give each worker the NVIDIA GPU's device nodes (`/dev/nvidia*`) when the binary is
    /// built with CUDA support (`--features cuda`) and the machine has them; the worker
    /// then runs on the GPU when `scripts/fetch-model --gpu` installed the CUDA runtime.
    /// Ignored by a build without CUDA support.
    pub gpu: bool,
}

/// Self-update (`[update]`): where signed updates come from, what may ask the box to
/// look for one now, and when it may restart into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The update repository's base URL (`http://` or `https://`, ending in `/`): TUF
    /// metadata under `metadata/`, bundles under `targets/`. `None`: no updates.
    pub repository: Option<String>,
    /// Absolute; a file holding the hint secret (`whsec_…`), mode 0600 (checked when it
    /// is read). `None`: every hint is refused.
    pub hint_secret_file: Option<PathBuf>,
    /// How often the box checks without a hint.
    pub check_interval: Duration,
    /// When an installed update may restart the box: `None` as soon as it is installed.
    pub reboot_window: Option<RebootWindow>,
    /// How long a new version has to show that the whole stack works before it is
    /// rolled back.
    pub gate_timeout: Duration,
}

/// Snapshots of the data directory (`[storage]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    pub backend: StorageBackend,
    /// How many hourly, daily, weekly and monthly snapshots are kept (0: none taken).
    pub keep_hourly: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    /// How many days manual snapshots and those taken before an update, a migration or a
    /// restore are kept.
    pub keep_other_days: u32,
}

/// Encrypted off-box backups (`[backup]`), made with restic from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// restic's spelling of the repository: an absolute path (a USB disk), `rest:http://…`
    /// or `sftp:user@host:/path`. `None`: no backups.
    pub repository: Option<String>,
    /// How often a backup is made.
    pub interval: Duration,
    /// How many daily, weekly and monthly backups the repository keeps.
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

/// `[storage] backend`: where snapshots come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageBackend {
    /// Whatever the data directory is on: a ZFS dataset, a btrfs subvolume, or neither.
    Auto,
    Zfs,
    Btrfs,
    /// No snapshots.
    Plain,
}

impl StorageBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageBackend::Auto => "auto",
            StorageBackend::Zfs => "zfs",
            StorageBackend::Btrfs => "btrfs",
            StorageBackend::Plain => "plain",
        }
    }
}

/// A daily window, in the box's time zone: `start` to `end` minutes after midnight
/// (`end` < `start`: the window spans midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebootWindow {
    pub start: u16,
    pub end: u16,
}

impl RebootWindow {
    /// Reads "HH:MM-HH:MM".
    pub fn parse(text: &str) -> Option<RebootWindow> {
        let (start, end) = text.split_once('-')?;
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (start, end) = (minutes(start)?, minutes(end)?);
        (start != end).then_some(RebootWindow { start, end })
    }

    /// Whether `minute` (after midnight) lies in the window.
    pub fn contains(self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl fmt::Display for RebootWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// The insights job: themes among recent captures and tasks due soon, on the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insights {
    /// How often they are computed again for each unlocked vault (5 minutes to a day).
    pub interval: Duration,
    /// Captures of the last this many days are grouped into themes (1 to 365).
    pub recent_days: u32,
    /// Open tasks due within this many days (or overdue) are listed (1 to 60).
    pub due_soon_days: u32,
}

/// The WireGuard VPN (`[wireguard]`), run by the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wireguard {
    /// Off: no interface, and peers cannot be managed.
    pub enabled: bool,
    /// Interface, network, port, endpoint and what clients are told.
    pub settings: cv_net::wg::WgSettings,
}

/// Certificates from a public CA over ACME, for the names the box is reached by from
/// the internet (the LAN names keep the local CA's certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// Off by default: ACME needs a public name pointing at the box (or a DNS server
    /// that takes updates).
    pub enabled: bool,
    /// An `https://` URL.
    pub directory_url: String,
    /// A plain address (no `mailto:`), for the CA's expiry notices.
    pub contact_email: Option<String>,
    /// Public DNS names (checked like [`acme_name`]), lower case, no duplicates; at least
    /// one when enabled.
    pub names: Vec<String>,
    pub challenge: AcmeChallenge,
    /// Absolute; PEM roots to trust for the directory's HTTPS instead of the system's.
    pub ca_bundle: Option<PathBuf>,
    /// The DNS server to update: present exactly when `challenge` is DNS-01.
    pub dns: Option<AcmeDns>,
}

/// How the CA checks that the box holds a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// `http-01`: a file over plain HTTP (`network.http_port`, 80 from the internet).
    Http01,
    /// `tls-alpn-01`: a special certificate over TLS (`network.https_port`, 443).
    TlsAlpn01,
    /// `dns-01`: a TXT record added by RFC 2136 update; no open port needed.
    Dns01,
}

impl AcmeChallenge {
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
            AcmeChallenge::Dns01 => "dns-01",
        }
    }
}

impl fmt::Display for AcmeChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authoritative DNS server that DNS-01 updates (RFC 2136, signed with TSIG).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeDns {
    pub server: SocketAddr,
    /// Every name of `Acme::names` lies in it.
    pub zone: String,
    pub tsig_key_name: String,
    /// `hmac-sha256`, `hmac-sha384` or `hmac-sha512`.
    pub tsig_algorithm: String,
    /// Absolute; a file holding the base64 secret, mode 0600 (checked when it is used).
    pub tsig_secret_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for journald and log shippers.
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive, already checked to parse.
    pub level: String,
}

/// What `contextvault dev` may change on its command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevOverrides {
    /// Relative paths are taken from the working directory. Default: `./var`.
    pub data_dir: Option<PathBuf>,
    /// Default: 8443.
    pub https_port: Option<u16>,
    /// Default: 8080.
    pub http_port: Option<u16>,
    /// The WireGuard listen port. Default: 51820, as on an appliance.
    pub wireguard_port: Option<u16>,
    /// The WireGuard interface's name. Default: `cvwg0`, as on an appliance.
    pub wireguard_interface: Option<String>,
    /// Turns the WireGuard interface off (it runs by default when dev mode is root).
    pub no_wireguard: bool,
}

impl Config {
    /// Reads and validates an appliance config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text, path)
    }

    /// Validates the text of an appliance config file; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let document = raw::Document::parse(text, Origin::File(origin.to_owned()))?;
        document.check_version()?;
        let raw = document.read()?;
        validate::validate(raw, Mode::Appliance, &document.origin, Some(&document))
    }

    /// The settings of `contextvault dev`: data under `cwd/var`, HTTPS on 8443, HTTP on
    /// 8080 on every IPv4 address, text logs; everything else as in an appliance.
    pub fn dev(overrides: DevOverrides, cwd: &Path) -> Result<Config, ConfigError> {
        let data_dir = cwd.join(overrides.data_dir.unwrap_or_else(|| PathBuf::from("var")));
        // `absolute` only fails for an empty path or when a relative `cwd` needs the
        // process's working directory and that is gone; validation then reports the
        // path as relative.
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        let raw = raw::RawConfig {
            appliance: raw::RawAppliance {
                data_dir: Some(data_dir),
                hostname: None,
            },
            network: raw::RawNetwork {
                bind: None,
                https_port: Some(overrides.https_port.unwrap_or(DEV_HTTPS_PORT).into()),
                http_port: Some(overrides.http_port.unwrap_or(DEV_HTTP_PORT).into()),
                allowed_sources: None,
                mdns: None,
            },
            log: raw::RawLog {
                format: Some("text".to_owned()),
                level: None,
            },
            wireguard: raw::RawWireguard {
                enabled: overrides.no_wireguard.then_some(false),
                listen_port: overrides.wireguard_port.map(i64::from),
                interface: overrides.wireguard_interface,
                ..raw::RawWireguard::default()
            },
            ..raw::RawConfig::default()
        };
        validate::validate(raw, Mode::Dev, &Origin::Dev, None)
    }

    /// The problems of this machine with these settings: missing PostgreSQL programs, a
    /// data directory that cannot be created or written, a system user that is root.
    /// Empty when all is well. Each problem names its config key.
    pub fn check_environment(&self) -> Vec<EnvironmentProblem> {
        environment::check(self)
    }

    /// The effective settings, one `key  value` line each, keys as in the config file
    /// (for `contextvault config check`).
    ///
    /// Every line is written out by hand on purpose, never from `Debug` or serde: a
    /// secret added to the config later (an ACME account key, a DNS API token) must be
    /// shown here as `(set)` or `(not set)` and never its value.
    pub fn summary(&self) -> String {
        let hostname = match &self.hostname {
            Some(hostname) => hostname.to_string(),
            None => match Hostname::from_machine() {
                Some(machine) => format!("{machine} (the machine's hostname)"),
                None => "(not set, and the machine's hostname is not a DNS label)".to_owned(),
            },
        };
        let join = |items: Vec<String>| {
            if items.is_empty() {
                "(none)".to_owned()
            } else {
                items.join(", ")
            }
        };
        let dns = self.acme.dns.as_ref();
        let wg = &self.wireguard.settings;
        let rows = [
            ("mode", self.mode.to_string()),
            ("appliance.data_dir", self.data_dir.display().to_string()),
            ("appliance.hostname", hostname),
            (
                "network.bind",
                join(self.network.bind.iter().map(IpAddr::to_string).collect()),
            ),
            ("network.https_port", self.network.https_port.to_string()),
            ("network.http_port", self.network.http_port.to_string()),
            (
                "network.allowed_sources",
                join(
                    self.network
                        .allowed_sources
                        .iter()
                        .map(IpNet::to_string)
                        .collect(),
                ),
            ),
            ("network.mdns", self.network.mdns.to_string()),
            ("tls.extra_names", join(self.tls.extra_names.clone())),
            (
                "postgres.bin_dir",
                self.postgres.bin_dir.display().to_string(),
            ),
            (
                "postgres.system_user",
                self.postgres.system_user.to_string(),
            ),
            ("service.system_user", self.service.system_user.to_string()),
            (
                "sessions.idle_timeout_minutes",
                (self.sessions.idle_timeout.as_secs() / 60).to_string(),
            ),
            (
                "sessions.absolute_timeout_days",
                (self.sessions.absolute_timeout.as_secs() / SECONDS_PER_DAY).to_string(),
            ),
            (
                "sessions.vault_lock_minutes",
                (self.sessions.vault_lock.as_secs() / 60).to_string(),
            ),
            ("log.format", self.log.format.to_string()),
            ("log.level", self.log.level.clone()),
            ("workers.count", self.workers.count.to_string()),
            ("workers.system_user", self.workers.system_user.to_string()),
            (
                "workers.models_dir",
                self.workers.models_dir.display().to_string(),
            ),
            (
                "workers.memory_mib",
                (self.workers.memory_bytes >> 20).to_string(),
            ),
            (
                "workers.cpu_percent",
                (self.workers.cpu_millicores / 10).to_string(),
            ),
            (
                "workers.max_requests",
                self.workers.max_requests.to_string(),
            ),
            (
                "workers.max_age_minutes",
                (self.workers.max_age.as_secs() / 60).to_string(),
            ),
            (
                "workers.idle_minutes",
                (self.workers.max_idle.as_secs() / 60).to_string(),
            ),
            (
                "workers.request_timeout_seconds",
                self.workers.request_timeout.as_secs().to_string(),
            ),
            (
                "workers.require_jail",
                self.workers.require_jail.to_string(),
            ),
            ("workers.gpu", self.workers.gpu.to_string()),
            (
                "insights.interval_minutes",
                (self.insights.interval.as_secs() / 60).to_string(),
            ),
            (
                "insights.recent_days",
                self.insights.recent_days.to_string(),
            ),
            (
                "insights.due_soon_days",
                self.insights.due_soon_days.to_string(),
            ),
            ("acme.enabled", self.acme.enabled.to_string()),
            ("acme.directory_url", self.acme.directory_url.clone()),
            (
                "acme.contact_email",
                self.acme
                    .contact_email
                    .clone()
                    .unwrap_or_else(|| "(none)".to_owned()),
            ),
            ("acme.names", join(self.acme.names.clone())),
            ("acme.challenge", self.acme.challenge.to_string()),
            (
                "acme.ca_bundle",
                self.acme.ca_bundle.as_ref().map_or_else(
                    || "(the system's roots)".to_owned(),
                    |p| p.display().to_string(),
                ),
            ),
            (
                "acme.dns_server",
                dns.map_or_else(|| "(none)".to_owned(), |d| d.server.to_string()),
            ),
            (
                "acme.dns_zone",
                dns.map_or_else(|| "(none)".to_owned(), |d| d.zone.clone()),
            ),
            (
                "acme.tsig_key_name",
                dns.map_or_else(|| "(none)".to_owned(), |d| d.tsig_key_name.clone()),
            ),
            (
                "acme.tsig_algorithm",
                dns.map_or_else(|| "(none)".to_owned(), |d| d.tsig_algorithm.clone()),
            ),
            // The path only; the secret itself is never read here.
            (
                "acme.tsig_secret_file",
                dns.map_or_else(
                    || "(none)".to_owned(),
                    |d| d.tsig_secret_file.display().to_string(),
                ),
            ),
            (
                "update.repository",
                self.update
                    .repository
                    .clone()
                    .unwrap_or_else(|| "(none: no updates)".to_owned()),
            ),
            // The path only; the secret itself is never read here.
            (
                "update.hint_secret_file",
                self.update.hint_secret_file.as_ref().map_or_else(
                    || "(none: hints refused)".to_owned(),
                    |p| p.display().to_string(),
                ),
            ),
            (
                "update.check_interval_hours",
                (self.update.check_interval.as_secs() / 3600).to_string(),
            ),
            (
                "update.reboot_window",
                self.update.reboot_window.map_or_else(
                    || "(none: restart once installed)".to_owned(),
                    |w| w.to_string(),
                ),
            ),
            (
                "update.gate_timeout_minutes",
                (self.update.gate_timeout.as_secs() / 60).to_string(),
            ),
            ("storage.backend", self.storage.backend.as_str().to_owned()),
            ("storage.keep_hourly", self.storage.keep_hourly.to_string()),
            ("storage.keep_daily", self.storage.keep_daily.to_string()),
            ("storage.keep_weekly", self.storage.keep_weekly.to_string()),
            (
                "storage.keep_monthly",
                self.storage.keep_monthly.to_string(),
            ),
            (
                "storage.keep_other_days",
                self.storage.keep_other_days.to_string(),
            ),
            (
                "backup.repository",
                self.backup.repository.as_deref().map_or_else(
                    || "(none: no backups)".to_owned(),
                    |r| {
                        cv_storage::backup::Repository::parse(r)
                            .map_or_else(|_| r.to_owned(), |r| r.to_string())
                    },
                ),
            ),
            (
                "backup.interval_hours",
                (self.backup.interval.as_secs() / 3600).to_string(),
            ),
            ("backup.keep_daily", self.backup.keep_daily.to_string()),
            ("backup.keep_weekly", self.backup.keep_weekly.to_string()),
            ("backup.keep_monthly", self.backup.keep_monthly.to_string()),
            ("wireguard.enabled", self.wireguard.enabled.to_string()),
            ("wireguard.interface", wg.interface.to_string()),
            ("wireguard.network", wg.network.to_string()),
            ("wireguard.listen_port", wg.listen_port.to_string()),
            (
                "wireguard.endpoint",
                wg.endpoint
                    .as_ref()
                    .map_or_else(|| "(not set)".to_owned(), ToString::to_string),
            ),
            (
                "wireguard.dns",
                join(wg.dns.iter().map(IpAddr::to_string).collect()),
            ),
            (
                "wireguard.client_allowed_ips",
                join(
                    wg.client_allowed_ips
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                ),
            ),
        ];
        let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
        let mut text = String::new();
        for (key, value) in rows {
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{key:width$}  {value}");
        }
        text
    }
}

const DEV_HTTPS_PORT: u16 = 8443;
const DEV_HTTP_PORT: u16 = 8080;
const SECONDS_PER_DAY: u64 = 24 * 60 * 60;

#[cfg(test)]
mod tests;
