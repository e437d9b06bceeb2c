//! Stage two: the raw document checked into a [`Config`], with the defaults applied.
//!
//! Every field is checked even after one fails, so that a person fixing a file sees all
//! of its problems at once. Each check goes through [`Checker::take`], which records the
//! problem whenever it yields no value; a `Config` is built only when every value is
//! present and nothing was recorded.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ConfigError, Origin, Problem, ProblemKind};
use crate::names::{self, Hostname, SystemUserName};
use cv_net::wg::{Endpoint, InterfaceName, InvalidValue, WgNetwork, WgSettings};

use crate::raw::{
    Document, RawAcme, RawAppliance, RawBackup, RawConfig, RawInsights, RawLog, RawNetwork,
    RawPostgres, RawService, RawSessions, RawStorage, RawTls, RawUpdate, RawWireguard, RawWorkers,
};
use crate::{
    Acme, AcmeChallenge, AcmeDns, Backup, Config, DEFAULT_ALLOWED_SOURCES, Insights, IpNet, Log,
    LogFormat, Mode, Network, Postgres, RebootWindow, SECONDS_PER_DAY, Service, Sessions, Storage,
    StorageBackend, Tls, Update, Wireguard, Workers,
};

// The appliance defaults, as documented in contextvault.example.toml.
const DEFAULT_BIND: &str = "0.0.0.0";
const DEFAULT_HTTPS_PORT: i64 = 443;
const DEFAULT_HTTP_PORT: i64 = 80;
/// On: finding the box by name is what a phone on the LAN needs first.
const DEFAULT_MDNS: bool = true;
const DEFAULT_PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
const DEFAULT_PG_USER: &str = "contextvault-pg";
const DEFAULT_SERVICE_USER: &str = "contextvault";
/// Twelve hours: a working day on one login.
const DEFAULT_IDLE_MINUTES: i64 = 720;
const DEFAULT_ABSOLUTE_DAYS: i64 = 30;
/// An unlocked vault left alone for half an hour locks: long enough for a working
/// session with pauses, short enough that a phone left on a table does not keep the
/// keys in memory all evening.
const DEFAULT_VAULT_LOCK_MINUTES: i64 = 30;
const DEFAULT_WORKER_USER: &str = "contextvault-worker";
/// One worker: the embedding model answers a query in milliseconds; more workers help
/// only bulk indexing, at 100–200 MiB of memory each.
const DEFAULT_WORKERS: i64 = 1;
/// The model needs about 150 MiB; the rest is room for large batches.
const DEFAULT_WORKER_MEMORY_MIB: i64 = 1024;
const DEFAULT_WORKER_CPU_PERCENT: i64 = 100;
const DEFAULT_WORKER_MAX_REQUESTS: i64 = 1000;
const DEFAULT_WORKER_MAX_AGE_MINUTES: i64 = 60;
const DEFAULT_WORKER_IDLE_MINUTES: i64 = 5;
const DEFAULT_WORKER_TIMEOUT_SECONDS: i64 = 60;
/// Hourly: themes change over days, and each computation clusters up to 2,000 items.
const DEFAULT_INSIGHTS_MINUTES: i64 = 60;
/// Two weeks of captures: long enough for a theme to recur, short enough to be "recent".
const DEFAULT_RECENT_DAYS: i64 = 14;
const DEFAULT_DUE_SOON_DAYS: i64 = 7;
/// Let's Encrypt's production directory: the CA most people mean. Its staging directory
/// (`https://acme-staging-v02.api.letsencrypt.org/directory`) is for trying things out.
pub(crate) const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
const DEFAULT_ACME_CHALLENGE: &str = "http-01";
const DEFAULT_TSIG_ALGORITHM: &str = "hmac-sha256";
/// The DNS port, when `acme.dns_server` gives only an address.
const DNS_PORT: u16 = 53;
/// The WireGuard interface's name: `cv` for Context Vault, so it is not mistaken for a
/// `wg-quick` interface (`wg0`).
const DEFAULT_WG_INTERFACE: &str = "cvwg0";
/// A /24 in 10.0.0.0/8 away from the ranges home routers and VPN products hand out
/// (192.168.0-1.x, 10.0.0-1.x, 10.8.0.x for OpenVPN, 172.16-17.x for containers), so
/// a device on a typical LAN or hotspot can route both.
const DEFAULT_WG_NETWORK: &str = "10.213.0.0/24";
/// WireGuard's customary port (the one in wg(8)'s and wg-quick(8)'s examples).
const DEFAULT_WG_PORT: i64 = 51820;
const DEFAULT_UPDATE_CHECK_HOURS: i64 = 24;
/// Boot, PostgreSQL, the vault service and a worker loading its model: minutes on a slow
/// box (an emulated CPU takes about two).
const DEFAULT_GATE_MINUTES: i64 = 10;
const DEFAULT_LOG_FORMAT: &str = "json";
const DEFAULT_LOG_LEVEL: &str = "info";

/// 30 days: idling longer than the longest sensible absolute timeout is meaningless.
const MAX_IDLE_MINUTES: i64 = 30 * 24 * 60;
/// A year: a login that lives longer is a login that never ends.
const MAX_ABSOLUTE_DAYS: i64 = 365;

pub(crate) fn validate(
    raw: RawConfig,
    mode: Mode,
    origin: &Origin,
    document: Option<&Document<'_>>,
) -> Result<Config, ConfigError> {
    let mut c = Checker {
        document,
        problems: Vec::new(),
    };
    let appliance = appliance(&mut c, raw.appliance);
    let network = network(&mut c, raw.network);
    let tls = tls(&mut c, raw.tls);
    let postgres = postgres(&mut c, raw.postgres);
    let service = service(&mut c, raw.service);
    if let (Some(postgres), Some(service)) = (&postgres, &service)
        && postgres.system_user == service.system_user
    {
        c.invalid(
            "service.system_user",
            format!(
                "is the same user as `postgres.system_user` ({}); the web service must \
                 not be able to read the database files directly",
                service.system_user
            ),
        );
    }
    let sessions = sessions(&mut c, raw.sessions);
    let log = log(&mut c, raw.log);
    let workers = workers(
        &mut c,
        raw.workers,
        mode,
        appliance.as_ref().map(|(data_dir, _)| data_dir.as_path()),
    );
    if let (Some(workers), Some(postgres), Some(service)) = (&workers, &postgres, &service)
        && (workers.system_user == postgres.system_user
            || workers.system_user == service.system_user)
    {
        c.invalid(
            "workers.system_user",
            format!(
                "is {}, a user another part of the appliance runs as; the jailed workers \
                 need a user of their own",
                workers.system_user
            ),
        );
    }
    let insights = insights(&mut c, raw.insights);
    let acme = acme(&mut c, raw.acme);
    let wireguard = wireguard(&mut c, raw.wireguard);
    let update = update(&mut c, raw.update);
    let storage = storage(&mut c, raw.storage);
    let backup = backup(&mut c, raw.backup);
    match (
        appliance, network, tls, postgres, service, sessions, log, workers, insights, acme,
        wireguard, update, storage, backup,
    ) {
        (
            Some((data_dir, hostname)),
            Some(network),
            Some(tls),
            Some(postgres),
            Some(service),
            Some(sessions),
            Some(log),
            Some(workers),
            Some(insights),
            Some(acme),
            Some(wireguard),
            Some(update),
            Some(storage),
            Some(backup),
        ) if c.problems.is_empty() => Ok(Config {
            mode,
            data_dir,
            hostname,
            network,
            tls,
            postgres,
            service,
            sessions,
            log,
            workers,
            insights,
            acme,
            wireguard,
            update,
            storage,
            backup,
        }),
        _ => {
            // In file order; a problem without a line (a missing table) first.
            c.problems.sort_by_key(|problem| problem.line);
            Err(ConfigError::Invalid {
                origin: origin.clone(),
                problems: c.problems,
            })
        }
    }
}

struct Checker<'d> {
    document: Option<&'d Document<'d>>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn push(&mut self, key: &str, kind: ProblemKind) {
        self.problems.push(Problem {
            key: key.to_owned(),
            line: self.document.and_then(|d| d.line_of_key(key)),
            kind,
        });
    }

    fn invalid(&mut self, key: &str, reason: String) {
        self.push(key, ProblemKind::Invalid { reason });
    }

    /// The value, or `None` with the reason recorded against `key`.
    fn take<T>(&mut self, key: &str, checked: Result<T, String>) -> Option<T> {
        checked.map_err(|reason| self.invalid(key, reason)).ok()
    }

    /// Whether the file sets `table.key` (always false for dev settings).
    fn in_file(&self, table: &str, key: &str) -> bool {
        self.document.is_some_and(|d| d.contains_key(table, key))
    }
}

fn appliance(c: &mut Checker<'_>, raw: RawAppliance) -> Option<(PathBuf, Option<Hostname>)> {
    let data_dir = match raw.data_dir {
        Some(path) => c.take("appliance.data_dir", data_dir(path)),
        None => {
            c.push("appliance.data_dir", ProblemKind::Missing);
            None
        }
    };
    let hostname = match raw.hostname {
        Some(text) => c
            .take(
                "appliance.hostname",
                text.parse::<Hostname>().map_err(|e| e.to_string()),
            )
            .map(Some),
        None => Some(None),
    };
    Some((data_dir?, hostname?))
}

fn data_dir(path: PathBuf) -> Result<PathBuf, String> {
    absolute("the data directory", &path)?;
    if path.parent().is_none() {
        return Err("is `/`; give a directory of its own, such as /var/lib/contextvault".into());
    }
    Ok(path)
}

fn absolute(what: &str, path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("is empty".into());
    }
    if !path.is_absolute() {
        return Err(format!(
            "is {:?}, a relative path; {what} must be an absolute path (starting with `/`) \
             because the supervisor does not run in a fixed working directory",
            path.display().to_string()
        ));
    }
    Ok(())
}

fn network(c: &mut Checker<'_>, raw: RawNetwork) -> Option<Network> {
    let bind = match raw.bind {
        None => DEFAULT_BIND.parse().ok().map(|ip: IpAddr| vec![ip]),
        Some(list) if list.is_empty() => c.take(
            "network.bind",
            Err("is empty; list at least one address, e.g. [\"0.0.0.0\"]".into()),
        ),
        Some(list) => bind(c, &list),
    };
    let https = c.take(
        "network.https_port",
        port(raw.https_port.unwrap_or(DEFAULT_HTTPS_PORT)),
    );
    let http = c.take(
        "network.http_port",
        port(raw.http_port.unwrap_or(DEFAULT_HTTP_PORT)),
    );
    if let (Some(https), Some(http)) = (https, http)
        && https == http
    {
        // Report it where the person wrote it.
        let (key, other) =
            if c.in_file("network", "http_port") || !c.in_file("network", "https_port") {
                ("network.http_port", "network.https_port")
            } else {
                ("network.https_port", "network.http_port")
            };
        c.invalid(
            key,
            format!(
                "is {http}, the same port as `{other}`; HTTPS and the plain-HTTP \
                 redirect need different ports"
            ),
        );
        return None;
    }
    let allowed_sources = match raw.allowed_sources {
        None => Some(
            DEFAULT_ALLOWED_SOURCES
                .iter()
                .filter_map(|net| net.parse().ok())
                .collect(),
        ),
        Some(list) => allowed_sources(c, &list),
    };
    Some(Network {
        bind: bind?,
        https_port: https?,
        http_port: http?,
        allowed_sources: allowed_sources?,
        mdns: raw.mdns.unwrap_or(DEFAULT_MDNS),
    })
}

/// Networks in CIDR form, or single addresses (a host); host bits are cleared. An empty
/// list is allowed: the box then answers only loopback and its WireGuard peers.
fn allowed_sources(c: &mut Checker<'_>, list: &[String]) -> Option<Vec<IpNet>> {
    let mut networks: Vec<IpNet> = Vec::new();
    let mut ok = true;
    for (i, text) in list.iter().enumerate() {
        let key = format!("network.allowed_sources[{i}]");
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
        let Ok(net) = parsed.map(|net| net.trunc()) else {
            c.invalid(
                &key,
                format!(
                    "is {text:?}, not a network; give one in CIDR form such as \
                     \"192.168.1.0/24\" or \"fd00::/8\", or a single address"
                ),
            );
            ok = false;
            continue;
        };
        if networks.contains(&net) {
            c.invalid(&key, format!("lists {net} twice"));
            ok = false;
            continue;
        }
        networks.push(net);
    }
    ok.then_some(networks)
}

fn bind(c: &mut Checker<'_>, list: &[String]) -> Option<Vec<IpAddr>> {
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut ok = true;
    for (i, text) in list.iter().enumerate() {
        let key = format!("network.bind[{i}]");
        let Ok(ip) = text.parse::<IpAddr>() else {
            c.invalid(
                &key,
                format!(
                    "is {text:?}, not an IP address; give an IPv4 or IPv6 literal such as \
                     \"0.0.0.0\", \"::\" or \"192.168.1.20\" (no host names, ports or brackets)"
                ),
            );
            ok = false;
            continue;
        };
        let conflict = addresses.iter().find(|earlier| {
            **earlier == ip
                || (earlier.is_ipv4() == ip.is_ipv4()
                    && (earlier.is_unspecified() || ip.is_unspecified()))
        });
        if let Some(earlier) = conflict {
            let reason = if *earlier == ip {
                format!("lists {ip} twice")
            } else {
                let any = if earlier.is_unspecified() {
                    earlier
                } else {
                    &ip
                };
                format!(
                    "lists {ip} and {earlier}, but {any} already means every address of its \
                     family; binding both would fail"
                )
            };
            c.invalid(&key, reason);
            ok = false;
            continue;
        }
        addresses.push(ip);
    }
    ok.then_some(addresses)
}

fn port(value: i64) -> Result<u16, String> {
    match u16::try_from(value) {
        Ok(0) => Err("is 0, which is not a port one can listen on; use 1-65535".into()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("is {value}, not a port number; use 1-65535")),
    }
}

fn tls(c: &mut Checker<'_>, raw: RawTls) -> Option<Tls> {
    let mut extra_names: Vec<String> = Vec::new();
    let mut ok = true;
    for (i, text) in raw.extra_names.unwrap_or_default().iter().enumerate() {
        let key = format!("tls.extra_names[{i}]");
        match names::certificate_name(text) {
            // A name listed twice is harmless; the certificate lists it once.
            Ok(name) if extra_names.contains(&name) => {}
            Ok(name) => extra_names.push(name),
            Err(e) => {
                c.invalid(&key, e.to_string());
                ok = false;
            }
        }
    }
    ok.then_some(Tls { extra_names })
}

fn system_user(
    c: &mut Checker<'_>,
    key: &str,
    raw: Option<String>,
    default: &str,
) -> Option<SystemUserName> {
    let text = raw.unwrap_or_else(|| default.to_owned());
    let name = c.take(
        key,
        text.parse::<SystemUserName>().map_err(|e| e.to_string()),
    )?;
    if name.as_str() == "root" {
        c.invalid(
            key,
            "is root; Context Vault runs its services as unprivileged users of their own".into(),
        );
        return None;
    }
    Some(name)
}

fn postgres(c: &mut Checker<'_>, raw: RawPostgres) -> Option<Postgres> {
    let bin_dir = raw
        .bin_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN_DIR));
    let bin_dir = c.take(
        "postgres.bin_dir",
        absolute("the PostgreSQL program directory", &bin_dir).map(|()| bin_dir),
    );
    let system_user = system_user(c, "postgres.system_user", raw.system_user, DEFAULT_PG_USER);
    Some(Postgres {
        bin_dir: bin_dir?,
        system_user: system_user?,
    })
}

fn service(c: &mut Checker<'_>, raw: RawService) -> Option<Service> {
    let system_user = system_user(
        c,
        "service.system_user",
        raw.system_user,
        DEFAULT_SERVICE_USER,
    );
    Some(Service {
        system_user: system_user?,
    })
}

fn sessions(c: &mut Checker<'_>, raw: RawSessions) -> Option<Sessions> {
    let idle = raw.idle_timeout_minutes.unwrap_or(DEFAULT_IDLE_MINUTES);
    let idle = c.take(
        "sessions.idle_timeout_minutes",
        in_range(idle, 1, MAX_IDLE_MINUTES, "minutes (30 days)"),
    );
    let absolute = raw.absolute_timeout_days.unwrap_or(DEFAULT_ABSOLUTE_DAYS);
    let absolute = c.take(
        "sessions.absolute_timeout_days",
        in_range(absolute, 1, MAX_ABSOLUTE_DAYS, "days"),
    );
    let vault_lock = raw.vault_lock_minutes.unwrap_or(DEFAULT_VAULT_LOCK_MINUTES);
    let vault_lock = c.take(
        "sessions.vault_lock_minutes",
        in_range(vault_lock, 1, MAX_IDLE_MINUTES, "minutes (30 days)"),
    );
    let idle_timeout = Duration::from_secs(idle? * 60);
    let absolute_timeout = Duration::from_secs(absolute? * SECONDS_PER_DAY);
    let vault_lock = Duration::from_secs(vault_lock? * 60);
    if idle_timeout > absolute_timeout {
        c.invalid(
            "sessions.idle_timeout_minutes",
            format!(
                "is {} minutes, longer than `sessions.absolute_timeout_days` ({} days), \
                 which would always end the login first",
                idle_timeout.as_secs() / 60,
                absolute_timeout.as_secs() / SECONDS_PER_DAY
            ),
        );
        return None;
    }
    Some(Sessions {
        idle_timeout,
        absolute_timeout,
        vault_lock,
    })
}

fn workers(
    c: &mut Checker<'_>,
    raw: RawWorkers,
    mode: Mode,
    data_dir: Option<&Path>,
) -> Option<Workers> {
    let mut number = |key: &str, value: Option<i64>, default: i64, min: i64, max: i64, unit| {
        c.take(key, in_range(value.unwrap_or(default), min, max, unit))
    };
    let count = number(
        "workers.count",
        raw.count,
        DEFAULT_WORKERS,
        0,
        16,
        "workers",
    );
    let memory_mib = number(
        "workers.memory_mib",
        raw.memory_mib,
        DEFAULT_WORKER_MEMORY_MIB,
        128,
        65_536,
        "MiB",
    );
    let cpu_percent = number(
        "workers.cpu_percent",
        raw.cpu_percent,
        DEFAULT_WORKER_CPU_PERCENT,
        10,
        6_400,
        "percent of one core",
    );
    let max_requests = number(
        "workers.max_requests",
        raw.max_requests,
        DEFAULT_WORKER_MAX_REQUESTS,
        1,
        1_000_000,
        "requests",
    );
    let max_age = number(
        "workers.max_age_minutes",
        raw.max_age_minutes,
        DEFAULT_WORKER_MAX_AGE_MINUTES,
        1,
        7 * 24 * 60,
        "minutes (a week)",
    );
    let idle = number(
        "workers.idle_minutes",
        raw.idle_minutes,
        DEFAULT_WORKER_IDLE_MINUTES,
        1,
        24 * 60,
        "minutes (a day)",
    );
    let timeout = number(
        "workers.request_timeout_seconds",
        raw.request_timeout_seconds,
        DEFAULT_WORKER_TIMEOUT_SECONDS,
        1,
        3_600,
        "seconds",
    );
    let system_user = system_user(
        c,
        "workers.system_user",
        raw.system_user,
        DEFAULT_WORKER_USER,
    );
    let models_dir = match (raw.models_dir, data_dir) {
        (Some(dir), _) => c.take(
            "workers.models_dir",
            absolute("the models directory", &dir).map(|()| dir),
        ),
        (None, Some(data_dir)) => Some(data_dir.join("models")),
        // The data directory is missing or invalid, which is reported already.
        (None, None) => None,
    };
    Some(Workers {
        count: u32::try_from(count?).ok()?,
        system_user: system_user?,
        models_dir: models_dir?,
        memory_bytes: memory_mib? << 20,
        cpu_millicores: cpu_percent? * 10,
        max_requests: max_requests?,
        max_age: Duration::from_secs(max_age? * 60),
        max_idle: Duration::from_secs(idle? * 60),
        request_timeout: Duration::from_secs(timeout?),
        require_jail: raw.require_jail.unwrap_or(mode == Mode::Appliance),
        gpu: raw.gpu.unwrap_or(true),
    })
}

fn insights(c: &mut Checker<'_>, raw: RawInsights) -> Option<Insights> {
    let interval = raw.interval_minutes.unwrap_or(DEFAULT_INSIGHTS_MINUTES);
    let interval = c.take(
        "insights.interval_minutes",
        in_range(interval, 5, 24 * 60, "minutes (a day)"),
    );
    let recent = raw.recent_days.unwrap_or(DEFAULT_RECENT_DAYS);
    let recent = c.take("insights.recent_days", in_range(recent, 1, 365, "days"));
    let due = raw.due_soon_days.unwrap_or(DEFAULT_DUE_SOON_DAYS);
    let due = c.take("insights.due_soon_days", in_range(due, 1, 60, "days"));
    Some(Insights {
        interval: Duration::from_secs(interval? * 60),
        recent_days: u32::try_from(recent?).ok()?,
        due_soon_days: u32::try_from(due?).ok()?,
    })
}

/// "is "x", which <reason>": a value refused by one of `cv_net::wg`'s validators.
fn refused(e: InvalidValue) -> String {
    format!("is {:?}, which {}", e.value, e.reason)
}

fn wireguard(c: &mut Checker<'_>, raw: RawWireguard) -> Option<Wireguard> {
    let interface = c.take(
        "wireguard.interface",
        InterfaceName::parse(raw.interface.as_deref().unwrap_or(DEFAULT_WG_INTERFACE))
            .map_err(refused),
    );
    let network = c.take(
        "wireguard.network",
        WgNetwork::parse(raw.network.as_deref().unwrap_or(DEFAULT_WG_NETWORK)).map_err(refused),
    );
    let listen_port = c.take(
        "wireguard.listen_port",
        port(raw.listen_port.unwrap_or(DEFAULT_WG_PORT)),
    );
    let endpoint = match raw.endpoint {
        None => Some(None),
        Some(text) => c
            .take(
                "wireguard.endpoint",
                Endpoint::parse(&text).map_err(refused),
            )
            .map(Some),
    };
    let mut dns: Vec<IpAddr> = Vec::new();
    let mut dns_ok = true;
    for (i, text) in raw.dns.unwrap_or_default().iter().enumerate() {
        match text.parse::<IpAddr>() {
            // Listed twice is harmless; clients are told once.
            Ok(ip) if dns.contains(&ip) => {}
            Ok(ip) => dns.push(ip),
            Err(_) => {
                c.invalid(
                    &format!("wireguard.dns[{i}]"),
                    format!(
                        "is {text:?}, not an IP address; give DNS servers as IPv4 or IPv6 \
                         literals such as \"192.168.1.1\""
                    ),
                );
                dns_ok = false;
            }
        }
    }
    // `None` inside: the default, the tunnel network.
    let client_allowed_ips = match raw.client_allowed_ips {
        None => Some(None),
        Some(list) if list.is_empty() => c.take(
            "wireguard.client_allowed_ips",
            Err("is empty; list at least one network, e.g. the tunnel network".into()),
        ),
        Some(list) => {
            let mut nets = Vec::new();
            let mut ok = true;
            for (i, text) in list.iter().enumerate() {
                match cv_net::wg::allowed_ips(text) {
                    Ok(net) if nets.contains(&net) => {}
                    Ok(net) => nets.push(net),
                    Err(e) => {
                        c.invalid(&format!("wireguard.client_allowed_ips[{i}]"), refused(e));
                        ok = false;
                    }
                }
            }
            ok.then_some(Some(nets))
        }
    };
    let mut settings = WgSettings::new(interface?, network?, listen_port?);
    settings.endpoint = endpoint?;
    settings.dns = dns_ok.then_some(dns)?;
    if let Some(nets) = client_allowed_ips? {
        settings.client_allowed_ips = nets;
    }
    Some(Wireguard {
        enabled: raw.enabled.unwrap_or(true),
        settings,
    })
}

/// `Some(text)` for a non-empty setting; "" means "not set" (see `RawAcme`).
fn set(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn acme(c: &mut Checker<'_>, raw: RawAcme) -> Option<Acme> {
    let enabled = raw.enabled.unwrap_or(false);
    let directory_url = raw
        .directory_url
        .unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.to_owned());
    let directory_url = c.take(
        "acme.directory_url",
        https_url(&directory_url).map(|()| directory_url),
    );
    let contact_email = match set(raw.contact_email) {
        None => Some(None),
        Some(text) => c.take("acme.contact_email", email(&text).map(Some)),
    };
    let mut names: Vec<String> = Vec::new();
    let mut names_ok = true;
    for (i, text) in raw.names.unwrap_or_default().iter().enumerate() {
        match names::acme_name(text) {
            // Listed twice is harmless: the certificate names it once.
            Ok(name) if names.contains(&name) => {}
            Ok(name) => names.push(name),
            Err(e) => {
                c.invalid(&format!("acme.names[{i}]"), e.to_string());
                names_ok = false;
            }
        }
    }
    if enabled && names_ok && names.is_empty() {
        c.invalid(
            "acme.names",
            "is empty; list the public DNS names the certificate is for, e.g. \
             [\"vault.example.org\"]"
                .into(),
        );
        names_ok = false;
    }
    let challenge = match raw.challenge.as_deref().unwrap_or(DEFAULT_ACME_CHALLENGE) {
        "http-01" => Some(AcmeChallenge::Http01),
        "tls-alpn-01" => Some(AcmeChallenge::TlsAlpn01),
        "dns-01" => Some(AcmeChallenge::Dns01),
        other => c.take(
            "acme.challenge",
            Err(format!(
                "is {other:?}; it must be \"http-01\", \"tls-alpn-01\" or \"dns-01\""
            )),
        ),
    };
    let ca_bundle = match set(raw.ca_bundle) {
        None => Some(None),
        Some(text) => {
            let path = PathBuf::from(text);
            c.take(
                "acme.ca_bundle",
                absolute("the CA bundle", &path).map(|()| Some(path)),
            )
        }
    };
    // The algorithm has a default, so it is checked whatever the challenge.
    let algorithm = raw
        .tsig_algorithm
        .unwrap_or_else(|| DEFAULT_TSIG_ALGORITHM.to_owned());
    let algorithm = c.take(
        "acme.tsig_algorithm",
        match algorithm.to_ascii_lowercase().as_str() {
            lower @ ("hmac-sha256" | "hmac-sha384" | "hmac-sha512") => Ok(lower.to_owned()),
            _ => Err(format!(
                "is {algorithm:?}; it must be \"hmac-sha256\", \"hmac-sha384\" or \"hmac-sha512\""
            )),
        },
    );
    let dns_fields = [
        ("dns_server", set(raw.dns_server)),
        ("dns_zone", set(raw.dns_zone)),
        ("tsig_key_name", set(raw.tsig_key_name)),
        ("tsig_secret_file", set(raw.tsig_secret_file)),
    ];
    let dns = if challenge == Some(AcmeChallenge::Dns01) {
        acme_dns(c, dns_fields, algorithm, enabled, &names)
    } else {
        // Settings that would be silently unused are a mistake worth hearing about.
        let mut ok = true;
        for (key, value) in &dns_fields {
            if value.is_some() {
                c.invalid(
                    &format!("acme.{key}"),
                    "is set, but is used only with `acme.challenge = \"dns-01\"`; remove it \
                     or leave it empty"
                        .into(),
                );
                ok = false;
            }
        }
        ok.then_some(None)
    };
    if !names_ok {
        return None;
    }
    Some(Acme {
        enabled,
        directory_url: directory_url?,
        contact_email: contact_email?,
        names,
        challenge: challenge?,
        ca_bundle: ca_bundle?,
        dns: dns?,
    })
}

/// The DNS-01 settings; `None` (reported) when one is bad, or missing while enabled.
/// Disabled, missing settings are allowed (nothing will use them) and give `Some(None)`.
fn acme_dns(
    c: &mut Checker<'_>,
    fields: [(&str, Option<String>); 4],
    algorithm: Option<String>,
    enabled: bool,
    names: &[String],
) -> Option<Option<AcmeDns>> {
    let [server, zone, key_name, secret_file] = fields.map(|(_, v)| v);
    let algorithm = algorithm?;
    let mut required = |key: &str, value: Option<String>| -> Option<String> {
        if value.is_none() && enabled {
            c.invalid(
                &format!("acme.{key}"),
                "is not set; DNS-01 needs the server, zone, TSIG key name and secret file".into(),
            );
        }
        value
    };
    let server = required("dns_server", server);
    let zone = required("dns_zone", zone);
    let key_name = required("tsig_key_name", key_name);
    let secret_file = required("tsig_secret_file", secret_file);
    let server = match server {
        Some(text) => Some(c.take("acme.dns_server", socket_addr(&text))?),
        None => None,
    };
    let zone = match zone {
        Some(text) => {
            let zone = c.take(
                "acme.dns_zone",
                names::acme_name(&text).map_err(|e| e.to_string()),
            )?;
            for (i, name) in names.iter().enumerate() {
                if !(name == &zone || name.ends_with(&format!(".{zone}"))) {
                    c.invalid(
                        &format!("acme.names[{i}]"),
                        format!(
                            "is {name}, outside `acme.dns_zone` ({zone}); DNS-01 can only \
                             answer for names in the zone it may update"
                        ),
                    );
                }
            }
            Some(zone)
        }
        None => None,
    };
    let key_name = match key_name {
        Some(text) => Some(c.take("acme.tsig_key_name", tsig_key_name(&text))?),
        None => None,
    };
    let secret_file = match secret_file {
        Some(text) => {
            let path = PathBuf::from(text);
            Some(c.take(
                "acme.tsig_secret_file",
                absolute("the TSIG secret file", &path).map(|()| path),
            )?)
        }
        None => None,
    };
    match (server, zone, key_name, secret_file) {
        (Some(server), Some(zone), Some(tsig_key_name), Some(tsig_secret_file)) => {
            Some(Some(AcmeDns {
                server,
                zone,
                tsig_key_name,
                tsig_algorithm: algorithm,
                tsig_secret_file,
            }))
        }
        _ if enabled => None,
        _ => Some(None),
    }
}

/// An `https://` URL with a host, without white space or control characters.
fn https_url(text: &str) -> Result<(), String> {
    let Some(rest) = text.strip_prefix("https://") else {
        return Err(format!(
            "is {text:?}; it must be an https:// URL, e.g. \"{DEFAULT_ACME_DIRECTORY}\""
        ));
    };
    url_host(text, rest)
}

/// The checks every URL of the config gets past its scheme (`rest`): no white space or
/// control characters, and a host without a user.
fn url_host(text: &str, rest: &str) -> Result<(), String> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "is {text:?}; a URL cannot contain spaces or control characters"
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(format!("is {text:?}; it names no host (or names a user)"));
    }
    Ok(())
}

/// `local@domain`, with a public DNS domain and a printable local part.
fn email(text: &str) -> Result<String, String> {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err(format!("is {text:?}, not an e-mail address (no `@`)"));
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
    if !local_ok {
        return Err(format!(
            "is {text:?}; the part before `@` may hold letters, digits and . _ + - only (RFC 5322)"
        ));
    }
    let domain = names::acme_name(domain)
        .map_err(|e| format!("is {text:?}; the part after `@` {}", e.reason))?;
    Ok(format!("{local}@{domain}"))
}

/// `ip:port`, `[v6]:port`, or an address alone (port 53).
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    Err(format!(
        "is {text:?}; give the DNS server's IP address, with a port if not 53, e.g. \
         \"192.0.2.53\" or \"192.0.2.53:5353\" (no host names: the updates must not depend on \
         DNS)"
    ))
}

/// A TSIG key name: dot-separated labels of letters, digits, `-` and `_`.
fn tsig_key_name(text: &str) -> Result<String, String> {
    cv_net::acme::tsig_key_name(text).ok_or_else(|| {
        format!(
            "is {text:?}; a TSIG key name is labels of letters, digits, `-` and `_` separated \
             by dots, as in the DNS server's `key \"…\"` statement"
        )
    })
}

fn update(c: &mut Checker<'_>, raw: RawUpdate) -> Option<Update> {
    let repository = match set(raw.repository) {
        None => Some(None),
        Some(text) => c.take("update.repository", repository_url(&text)).map(Some),
    };
    let hint_secret_file = match set(raw.hint_secret_file) {
        None => Some(None),
        Some(text) => {
            let path = PathBuf::from(text);
            c.take(
                "update.hint_secret_file",
                absolute("the hint secret file", &path).map(|()| Some(path)),
            )
        }
    };
    let hours = raw
        .check_interval_hours
        .unwrap_or(DEFAULT_UPDATE_CHECK_HOURS);
    let hours = c.take(
        "update.check_interval_hours",
        in_range(hours, 1, 7 * 24, "hours (a week)"),
    );
    let reboot_window = match set(raw.reboot_window) {
        None => Some(None),
        Some(text) => c.take(
            "update.reboot_window",
            RebootWindow::parse(&text).map(Some).ok_or_else(|| {
                format!(
                    "is {text:?}; give a daily window as \"HH:MM-HH:MM\" (24-hour clock, \
                         e.g. \"03:00-05:00\"), or \"\" to restart as soon as an update is \
                         installed"
                )
            }),
        ),
    };
    let gate = raw.gate_timeout_minutes.unwrap_or(DEFAULT_GATE_MINUTES);
    let gate = c.take(
        "update.gate_timeout_minutes",
        // Below the 20 minutes after which contextvault-update-deadline.timer gives up
        // on a slot on trial, boot included.
        in_range(gate, 1, 15, "minutes"),
    );
    Some(Update {
        repository: repository?,
        hint_secret_file: hint_secret_file?,
        check_interval: Duration::from_secs(hours? * 3600),
        reboot_window: reboot_window?,
        gate_timeout: Duration::from_secs(gate? * 60),
    })
}

fn storage(c: &mut Checker<'_>, raw: RawStorage) -> Option<Storage> {
    let backend = match set(raw.backend).as_deref() {
        None | Some("auto") => Some(StorageBackend::Auto),
        Some("zfs") => Some(StorageBackend::Zfs),
        Some("btrfs") => Some(StorageBackend::Btrfs),
        Some("plain") => Some(StorageBackend::Plain),
        Some(other) => c.take(
            "storage.backend",
            Err(format!(
                "is {other:?}; give \"auto\" (whatever the data directory is on), \"zfs\", \
                 \"btrfs\" or \"plain\" (no snapshots)"
            )),
        ),
    };
    // The defaults: sanoid's `production` template (36 hourly, 30 daily, 3 monthly),
    // with 4 weekly.
    let mut keep = |key: &str, value: Option<i64>, default: i64, max: i64, unit: &str| {
        c.take(key, in_range(value.unwrap_or(default), 0, max, unit))
            .and_then(|n| u32::try_from(n).ok())
    };
    let hourly = keep(
        "storage.keep_hourly",
        raw.keep_hourly,
        36,
        24 * 14,
        "snapshots",
    );
    let daily = keep("storage.keep_daily", raw.keep_daily, 30, 366, "snapshots");
    let weekly = keep("storage.keep_weekly", raw.keep_weekly, 4, 104, "snapshots");
    let monthly = keep(
        "storage.keep_monthly",
        raw.keep_monthly,
        3,
        120,
        "snapshots",
    );
    let other = c.take(
        "storage.keep_other_days",
        in_range(raw.keep_other_days.unwrap_or(30), 1, 366, "days"),
    );
    Some(Storage {
        backend: backend?,
        keep_hourly: hourly?,
        keep_daily: daily?,
        keep_weekly: weekly?,
        keep_monthly: monthly?,
        keep_other_days: u32::try_from(other?).ok()?,
    })
}

fn backup(c: &mut Checker<'_>, raw: RawBackup) -> Option<Backup> {
    let repository = match set(raw.repository) {
        None => Some(None),
        Some(text) => c.take(
            "backup.repository",
            cv_storage::backup::Repository::parse(&text)
                .map(|_| Some(text.clone()))
                .map_err(|e| format!("is not a backup repository: {e}")),
        ),
    };
    let hours = c.take(
        "backup.interval_hours",
        in_range(
            raw.interval_hours.unwrap_or(24),
            1,
            7 * 24,
            "hours (a week)",
        ),
    );
    let mut keep = |key: &str, value: Option<i64>, default: i64, max: i64| {
        c.take(key, in_range(value.unwrap_or(default), 0, max, "backups"))
            .and_then(|n| u32::try_from(n).ok())
    };
    let daily = keep("backup.keep_daily", raw.keep_daily, 7, 366);
    let weekly = keep("backup.keep_weekly", raw.keep_weekly, 4, 104);
    let monthly = keep("backup.keep_monthly", raw.keep_monthly, 12, 120);
    if let (Some(0), Some(0), Some(0)) = (daily, weekly, monthly) {
        c.invalid(
            "backup.keep_daily",
            "and keep_weekly and keep_monthly are all 0: the repository would keep no backup"
                .to_owned(),
        );
        return None;
    }
    Some(Backup {
        repository: repository?,
        interval: Duration::from_secs(hours? * 3600),
        keep_daily: daily?,
        keep_weekly: weekly?,
        keep_monthly: monthly?,
    })
}

/// An update repository's base URL: http or https (the metadata is signed, so the
/// transport need not be trusted), a host, no user or credentials, ending in `/`.
fn repository_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "is {text:?}; it must be an http:// or https:// URL, e.g. \
                 \"https://updates.example.org/contextvault/\""
            )
        })?;
    url_host(text, rest)?;
    if text.contains(['?', '#']) {
        return Err(format!(
            "is {text:?}; a repository URL has no query or fragment"
        ));
    }
    Ok(if text.ends_with('/') {
        text.to_owned()
    } else {
        format!("{text}/")
    })
}

fn in_range(value: i64, min: i64, max: i64, unit: &str) -> Result<u64, String> {
    if (min..=max).contains(&value) {
        u64::try_from(value).map_err(|e| e.to_string())
    } else {
        Err(format!("is {value}; it must be from {min} to {max} {unit}"))
    }
}

fn log(c: &mut Checker<'_>, raw: RawLog) -> Option<Log> {
    let format = match raw.format.as_deref().unwrap_or(DEFAULT_LOG_FORMAT) {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        other => c.take(
            "log.format",
            Err(format!("is {other:?}; it must be \"json\" or \"text\"")),
        ),
    };
    let level = raw.level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    let level = if level.trim().is_empty() {
        c.take(
            "log.level",
            Err("is empty; use a level such as \"info\"".into()),
        )
    } else {
        let parsed = tracing_subscriber::EnvFilter::try_new(&level);
        c.take(
            "log.level",
            parsed.map(|_| level.clone()).map_err(|e| {
                format!(
                    "is {level:?}, not a valid filter ({e}); use a level (\"info\") or \
                     directives such as \"info,cv_web=debug\""
                )
            }),
        )
    };
    Some(Log {
        format: format?,
        level: level?,
    })
}
