//! Loading a config end to end: defaults, every kind of error, dev mode, the example.

use std::collections::BTreeSet;

use super::*;
use cv_net::wg::{InterfaceName, WgNetwork, WgSettings};

/// The smallest valid file; its three lines come first in the cases below, so a key
/// appended after it is on line 4 or later.
const BASE: &str = "version = 1\n[appliance]\ndata_dir = \"/srv/cv\"\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new("/etc/contextvault/config.toml"))
}

fn error(text: &str) -> ConfigError {
    parse(text).expect_err("the config should be refused")
}

/// The single problem of a refused config, with the whole message for context.
fn problem(text: &str) -> (Problem, String) {
    let error = error(text);
    let message = error.to_string();
    match error.problems() {
        [one] => (one.clone(), message),
        other => panic!("expected one problem, got {other:?}: {message}"),
    }
}

/// Asserts a single invalid value at `key` on `line`, its message containing `why`.
fn assert_invalid(text: &str, key: &str, line: usize, why: &str) {
    let (problem, message) = problem(text);
    assert_eq!(problem.key, key, "{message}");
    assert_eq!(problem.line, Some(line), "{message}");
    assert!(
        matches!(problem.kind, ProblemKind::Invalid { .. }),
        "{message}"
    );
    let prefix = format!("/etc/contextvault/config.toml line {line}: `{key}` ");
    assert!(message.starts_with(&prefix), "{message}");
    assert!(message.contains(why), "{why:?} not in {message}");
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let config = parse(BASE).expect("valid");
    assert_eq!(
        config,
        Config {
            mode: Mode::Appliance,
            data_dir: "/srv/cv".into(),
            hostname: None,
            network: Network {
                bind: vec![IpAddr::from([0, 0, 0, 0])],
                https_port: 443,
                http_port: 80,
                allowed_sources: DEFAULT_ALLOWED_SOURCES
                    .iter()
                    .map(|n| n.parse().expect("net"))
                    .collect(),
                mdns: true,
            },
            tls: Tls {
                extra_names: vec![]
            },
            postgres: Postgres {
                bin_dir: "/usr/lib/postgresql/15/bin".into(),
                system_user: "contextvault-pg".parse().expect("name"),
            },
            service: Service {
                system_user: "contextvault".parse().expect("name"),
            },
            sessions: Sessions {
                idle_timeout: Duration::from_secs(720 * 60),
                absolute_timeout: Duration::from_secs(30 * 24 * 60 * 60),
                vault_lock: Duration::from_secs(30 * 60),
            },
            log: Log {
                format: LogFormat::Json,
                level: "info".into(),
            },
            workers: Workers {
                count: 1,
                system_user: "contextvault-worker".parse().expect("name"),
                models_dir: "/srv/cv/models".into(),
                memory_bytes: 1 << 30,
                cpu_millicores: 1000,
                max_requests: 1000,
                max_age: Duration::from_secs(3600),
                max_idle: Duration::from_secs(300),
                request_timeout: Duration::from_secs(60),
                require_jail: true,
                gpu: true,
            },
            insights: Insights {
                interval: Duration::from_secs(3600),
                recent_days: 14,
                due_soon_days: 7,
            },
            acme: Acme {
                enabled: false,
                directory_url: "https://acme-v02.api.letsencrypt.org/directory".into(),
                contact_email: None,
                names: vec![],
                challenge: AcmeChallenge::Http01,
                ca_bundle: None,
                dns: None,
            },
            wireguard: Wireguard {
                enabled: true,
                settings: WgSettings::new(
                    InterfaceName::parse("cvwg0").expect("name"),
                    WgNetwork::parse("10.213.0.0/24").expect("network"),
                    51820,
                ),
            },
            update: Update {
                repository: None,
                hint_secret_file: None,
                check_interval: Duration::from_secs(24 * 3600),
                reboot_window: None,
                gate_timeout: Duration::from_secs(10 * 60),
            },
            storage: Storage {
                backend: StorageBackend::Auto,
                keep_hourly: 36,
                keep_daily: 30,
                keep_weekly: 4,
                keep_monthly: 3,
                keep_other_days: 30,
            },
            backup: Backup {
                repository: None,
                interval: Duration::from_secs(24 * 3600),
                keep_daily: 7,
                keep_weekly: 4,
                keep_monthly: 12,
            },
        }
    );
    // No endpoint, no DNS; clients route the tunnel network.
    let wg = &parse(BASE).expect("valid").wireguard.settings;
    assert_eq!(wg.endpoint, None);
    assert!(wg.dns.is_empty());
    assert_eq!(
        wg.client_allowed_ips,
        [cv_net::wg::allowed_ips("10.213.0.0/24").expect("net")]
    );
}

#[test]
fn every_setting_is_read() {
    let config = parse(
        r#"
version = 1
[appliance]
data_dir = "/tank/vault"
hostname = "Home-Vault"
[network]
bind = ["192.168.1.20", "::1"]
https_port = 8443
http_port = 8080
allowed_sources = ["192.168.1.7/24", "fd12:3456::/32", "198.51.100.9"]
mdns = false
[tls]
extra_names = ["Vault.Home.Arpa", "192.168.1.20", "vault.home.arpa"]
[postgres]
bin_dir = "/opt/pg/bin"
system_user = "pg"
[service]
system_user = "_vault"
[sessions]
idle_timeout_minutes = 15
absolute_timeout_days = 1
[log]
format = "text"
level = "info,cv_web=debug"
[workers]
count = 0
system_user = "ai"
models_dir = "/opt/models"
memory_mib = 512
cpu_percent = 250
max_requests = 10
max_age_minutes = 2
idle_minutes = 3
request_timeout_seconds = 4
require_jail = false
gpu = false
[insights]
interval_minutes = 30
recent_days = 7
due_soon_days = 3
"#,
    )
    .expect("valid");
    assert_eq!(
        config.workers,
        Workers {
            count: 0,
            system_user: "ai".parse().expect("name"),
            models_dir: "/opt/models".into(),
            memory_bytes: 512 << 20,
            cpu_millicores: 2500,
            max_requests: 10,
            max_age: Duration::from_secs(120),
            max_idle: Duration::from_secs(180),
            request_timeout: Duration::from_secs(4),
            require_jail: false,
            gpu: false,
        }
    );
    assert_eq!(
        config.insights,
        Insights {
            interval: Duration::from_secs(1800),
            recent_days: 7,
            due_soon_days: 3,
        }
    );
    assert_eq!(config.data_dir, Path::new("/tank/vault"));
    assert_eq!(
        config.hostname.as_ref().map(Hostname::as_str),
        Some("home-vault")
    );
    assert_eq!(
        config.network.bind,
        [IpAddr::from([192, 168, 1, 20]), "::1".parse().expect("ip")]
    );
    assert_eq!(
        (config.network.https_port, config.network.http_port),
        (8443, 8080)
    );
    // Host bits cleared; a bare address is a one-address network.
    assert_eq!(
        config
            .network
            .allowed_sources
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["192.168.1.0/24", "fd12:3456::/32", "198.51.100.9/32"]
    );
    assert!(!config.network.mdns);
    // Lowercased, and the duplicate dropped.
    assert_eq!(config.tls.extra_names, ["vault.home.arpa", "192.168.1.20"]);
    assert_eq!(config.postgres.bin_dir, Path::new("/opt/pg/bin"));
    assert_eq!(config.postgres.system_user.as_str(), "pg");
    assert_eq!(config.service.system_user.as_str(), "_vault");
    assert_eq!(config.sessions.idle_timeout, Duration::from_secs(15 * 60));
    assert_eq!(
        config.sessions.absolute_timeout,
        Duration::from_secs(86_400)
    );
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info,cv_web=debug");
}

#[test]
fn worker_settings_out_of_range_or_shared_users_are_refused() {
    assert_invalid(
        &with("[workers]\ncount = 17\n"),
        "workers.count",
        5,
        "from 0 to 16",
    );
    assert_invalid(
        &with("[workers]\nmemory_mib = 64\n"),
        "workers.memory_mib",
        5,
        "from 128",
    );
    assert_invalid(
        &with("[workers]\nmodels_dir = \"models\"\n"),
        "workers.models_dir",
        5,
        "relative path",
    );
    assert_invalid(
        &with("[workers]\nsystem_user = \"contextvault\"\n"),
        "workers.system_user",
        5,
        "a user of their own",
    );
    assert_invalid(
        &with("[insights]\ninterval_minutes = 1\n"),
        "insights.interval_minutes",
        5,
        "from 5 to 1440",
    );
    assert_invalid(
        &with("[workers]\nsystem_user = \"root\"\n"),
        "workers.system_user",
        5,
        "is root",
    );
}

#[test]
fn wireguard_settings_are_read() {
    let config = parse(&with(
        r#"[wireguard]
enabled = false
interface = "wg-home"
network = "192.168.77.0/28"
listen_port = 41820
endpoint = "[2001:DB8::1]:41820"
dns = ["192.168.77.1", "2001:db8::53", "192.168.77.1"]
client_allowed_ips = ["192.168.77.0/28", "192.168.1.0/24"]
"#,
    ))
    .expect("valid");
    let wg = &config.wireguard;
    assert!(!wg.enabled);
    assert_eq!(wg.settings.interface.as_str(), "wg-home");
    assert_eq!(wg.settings.network.to_string(), "192.168.77.0/28");
    assert_eq!(wg.settings.listen_port, 41820);
    assert_eq!(
        wg.settings
            .endpoint
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("[2001:db8::1]:41820")
    );
    // The duplicate is dropped.
    assert_eq!(
        wg.settings.dns,
        [
            IpAddr::from([192, 168, 77, 1]),
            "2001:db8::53".parse::<IpAddr>().expect("ip")
        ]
    );
    let nets: Vec<String> = wg
        .settings
        .client_allowed_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["192.168.77.0/28", "192.168.1.0/24"]);
    let summary = config.summary();
    assert!(summary.contains("[2001:db8::1]:41820"), "{summary}");
    assert!(
        parse(BASE)
            .expect("valid")
            .summary()
            .lines()
            .any(|l| l.starts_with("wireguard.endpoint") && l.ends_with("(not set)"))
    );
}

#[test]
fn bad_wireguard_settings_say_what_is_wrong() {
    let wg = |line: &str| with(&format!("[wireguard]\n{line}\n"));
    assert_invalid(
        &wg(r#"endpoint = "vault.example.net""#),
        "wireguard.endpoint",
        5,
        "is \"vault.example.net\", which has no port; write host:port",
    );
    assert_invalid(
        &wg(r#"endpoint = "vault.example.net:0""#),
        "wireguard.endpoint",
        5,
        "which has port 0",
    );
    assert_invalid(
        &wg(r#"endpoint = "2001:db8::1:51820""#),
        "wireguard.endpoint",
        5,
        "without brackets",
    );
    assert_invalid(
        &wg(r#"interface = "wireguard-appliance""#),
        "wireguard.interface",
        5,
        "is 19 bytes long",
    );
    assert_invalid(
        &wg(r#"interface = "wg 0""#),
        "wireguard.interface",
        5,
        "contains ' '",
    );
    assert_invalid(
        &wg(r#"network = "10.213.0.1/24""#),
        "wireguard.network",
        5,
        "write the network address, 10.213.0.0/24",
    );
    assert_invalid(
        &wg(r#"network = "8.8.8.0/24""#),
        "wireguard.network",
        5,
        "not a private range",
    );
    assert_invalid(
        &wg(r#"network = "10.0.0.0/8""#),
        "wireguard.network",
        5,
        "/8 network",
    );
    assert_invalid(&wg("listen_port = 0"), "wireguard.listen_port", 5, "is 0");
    assert_invalid(
        &wg(r#"dns = ["1.1.1.1", "dns.example"]"#),
        "wireguard.dns[1]",
        5,
        "not an IP address",
    );
    assert_invalid(
        &wg("client_allowed_ips = []"),
        "wireguard.client_allowed_ips",
        5,
        "is empty",
    );
    assert_invalid(
        &wg(r#"client_allowed_ips = ["10.213.0.0/24", "10.1.2.3/8"]"#),
        "wireguard.client_allowed_ips[1]",
        5,
        "10.0.0.0/8",
    );
    let (p, message) = problem(&wg(r#"endpont = "x:1""#));
    assert_eq!(p.key, "wireguard.endpont", "{message}");
    assert!(message.contains("(did you mean `endpoint`?)"), "{message}");
    let (p, message) = problem(&wg(r#"enabled = "yes""#));
    assert_eq!(p.key, "wireguard.enabled", "{message}");
    assert!(matches!(p.kind, ProblemKind::WrongType { .. }), "{message}");
}

#[test]
fn dev_mode_runs_wireguard_unless_told_not_to() {
    let config = Config::dev(DevOverrides::default(), Path::new("/p")).expect("dev");
    assert!(config.wireguard.enabled);
    assert_eq!(config.wireguard.settings.listen_port, 51820);
    assert_eq!(config.wireguard.settings.interface.as_str(), "cvwg0");
    let off = DevOverrides {
        no_wireguard: true,
        wireguard_port: Some(0),
        ..DevOverrides::default()
    };
    let error = Config::dev(off, Path::new("/p")).expect_err("port 0");
    assert_eq!(error.problems()[0].key, "wireguard.listen_port");
    let bad_name = DevOverrides {
        wireguard_interface: Some("no spaces".into()),
        ..DevOverrides::default()
    };
    let error = Config::dev(bad_name, Path::new("/p")).expect_err("bad name");
    assert_eq!(
        error.to_string(),
        "dev settings: `wireguard.interface` is \"no spaces\", which contains ' '; use only \
         ASCII letters, digits, `-`, `_` and `.`"
    );
}

#[test]
fn dev_mode_reports_missing_jail_protections_instead_of_refusing() {
    let config = Config::dev(DevOverrides::default(), Path::new("/home/me/cv")).expect("dev");
    assert!(!config.workers.require_jail);
    assert_eq!(
        config.workers.models_dir,
        Path::new("/home/me/cv/var/models")
    );
}

// ---- errors of reading and syntax ----

#[test]
fn an_unreadable_file_names_the_path_and_the_os_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("config.toml");
    let error = Config::from_file(&path).expect_err("missing file");
    assert!(matches!(&error, ConfigError::Read { path: p, .. } if *p == path));
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");
}

#[test]
fn from_file_reads_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("config.toml");
    std::fs::write(&path, with("[network]\nhttps_port = 0\n")).expect("write");
    let message = Config::from_file(&path).expect_err("port 0").to_string();
    assert!(
        message.starts_with(&format!("{} line 5: `network.https_port`", path.display())),
        "{message}"
    );
    std::fs::write(&path, BASE).expect("write");
    assert_eq!(
        Config::from_file(&path).expect("valid"),
        parse(BASE).expect("valid")
    );
}

#[test]
fn a_syntax_error_names_the_line() {
    let error = error(&with("[network]\nhttps_port = 443\nhttps_port = 444\n"));
    assert!(
        matches!(&error, ConfigError::Syntax { line: Some(6), .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "/etc/contextvault/config.toml line 6: TOML syntax error: duplicate key\n    \
         https_port = 444"
    );
    let error = error_line(&with("[network\n"));
    assert_eq!(error, Some(4));
}

fn error_line(text: &str) -> Option<usize> {
    match error(text) {
        ConfigError::Syntax { line, .. } => line,
        other => panic!("expected a syntax error, got {other}"),
    }
}

// ---- schema errors ----

#[test]
fn an_unknown_key_is_named_in_full_with_the_keys_expected() {
    let text = "version = 1\n\n[appliance]\ndata_dir = \"/srv/cv\"\n\n[network]\nhtps_port = 443\n";
    let (problem, message) = problem(text);
    assert_eq!(problem.key, "network.htps_port");
    assert_eq!(problem.line, Some(7));
    assert_eq!(
        message,
        "/etc/contextvault/config.toml line 7: unknown key `network.htps_port`; expected one \
         of: bind, https_port, http_port, allowed_sources, mdns (did you mean `https_port`?)"
    );
}

#[test]
fn unknown_keys_are_found_in_every_toml_spelling() {
    // Top level, dotted keys, inline tables: the path is the same.
    let (p, message) = problem(&with("[netwrok]\nbind = []\n"));
    assert_eq!((p.key.as_str(), p.line), ("netwrok", Some(4)), "{message}");
    assert!(message.contains("(did you mean `network`?)"), "{message}");
    assert!(message.contains("expected one of: version, appliance, network, tls"));

    let (p, message) = problem("version = 1\nnetwork.htps_port = 1\n[appliance]\n");
    assert_eq!(
        (p.key.as_str(), p.line),
        ("network.htps_port", Some(2)),
        "{message}"
    );
    let (p, message) = problem("version = 1\ntls = { extra_names = [], names = [] }\n");
    assert_eq!(
        (p.key.as_str(), p.line),
        ("tls.names", Some(2)),
        "{message}"
    );
    assert!(
        message.ends_with("expected one of: extra_names"),
        "{message}"
    );

    let (p, message) = problem(&with("[log]\n\"log level\" = \"x\"\n"));
    assert_eq!(p.key, "log.\"log level\"", "{message}");
}

#[test]
fn a_wrong_type_names_the_key_the_line_and_both_types() {
    let (p, message) = problem(&with("[network]\nhttps_port = \"443\"\n"));
    assert_eq!((p.key.as_str(), p.line), ("network.https_port", Some(5)));
    assert_eq!(
        message,
        "/etc/contextvault/config.toml line 5: `network.https_port` has the wrong type: found \
         string \"443\", expected an integer"
    );

    let (p, message) = problem(&with("[network]\nbind = [\n  \"0.0.0.0\",\n  3,\n]\n"));
    assert_eq!(
        (p.key.as_str(), p.line),
        ("network.bind[1]", Some(7)),
        "{message}"
    );
    assert!(
        message.ends_with("found integer `3`, expected a string"),
        "{message}"
    );

    let (p, message) = problem(&with("[network]\nbind = \"0.0.0.0\"\n"));
    assert_eq!(p.key, "network.bind", "{message}");
    assert!(message.ends_with("expected an array"), "{message}");

    let (p, message) = problem("version = 1\nnetwork = 3\n[appliance]\n");
    assert_eq!((p.key.as_str(), p.line), ("network", Some(2)), "{message}");
    assert!(
        message.ends_with("found integer `3`, expected a table"),
        "{message}"
    );

    let (p, message) = problem("version = 1\n[appliance]\ndata_dir = 3\n");
    assert_eq!((p.key.as_str(), p.line), ("appliance.data_dir", Some(3)));
    assert!(message.contains("expected a string"), "{message}");
}

#[test]
fn mdns_is_a_boolean() {
    let (p, message) = problem(&with("[network]\nmdns = \"yes\"\n"));
    assert_eq!(
        (p.key.as_str(), p.line),
        ("network.mdns", Some(5)),
        "{message}"
    );
    assert!(matches!(p.kind, ProblemKind::WrongType { .. }), "{message}");
    assert!(message.contains("found string \"yes\""), "{message}");
    assert!(
        !parse(&with("[network]\nmdns = false\n"))
            .expect("valid")
            .network
            .mdns
    );
}

#[test]
fn version_is_required() {
    let (p, message) = problem("[appliance]\ndata_dir = \"/srv/cv\"\n");
    assert_eq!(
        (p.key.as_str(), p.line, p.kind),
        ("version", None, ProblemKind::Missing)
    );
    assert_eq!(
        message,
        "/etc/contextvault/config.toml: missing required key `version`"
    );
    let (p, message) = problem("version = \"1\"\n[appliance]\ndata_dir = \"/srv/cv\"\n");
    assert_eq!((p.key.as_str(), p.line), ("version", Some(1)), "{message}");
    assert!(matches!(p.kind, ProblemKind::WrongType { .. }));
}

#[test]
fn another_version_is_refused_before_its_keys_are_read() {
    // A version-2 file may have keys this build does not know; the version is the news.
    let error = error("# comment\nversion = 2\n[appliance]\nstorage = \"zfs\"\n");
    assert!(
        matches!(
            error,
            ConfigError::UnsupportedVersion {
                found: 2,
                line: Some(2),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "/etc/contextvault/config.toml line 2: unsupported config version 2; this \
         contextvault reads version 1"
    );
}

#[test]
fn data_dir_is_required() {
    let (p, message) = problem("version = 1\n\n[appliance]\nhostname = \"vault\"\n");
    assert_eq!(p.kind, ProblemKind::Missing);
    // Reported at the table where it belongs.
    assert_eq!((p.key.as_str(), p.line), ("appliance.data_dir", Some(3)));
    assert_eq!(
        message,
        "/etc/contextvault/config.toml line 3: missing required key `appliance.data_dir`"
    );
    let (p, _) = problem("version = 1\n");
    assert_eq!((p.key.as_str(), p.line), ("appliance.data_dir", None));
}

// ---- invalid values ----

#[test]
fn ports_must_be_usable() {
    assert_invalid(
        &with("[network]\nhttps_port = 0\n"),
        "network.https_port",
        5,
        "is 0",
    );
    assert_invalid(
        &with("[network]\nhttp_port = 65536\n"),
        "network.http_port",
        5,
        "is 65536, not a port",
    );
    assert_invalid(
        &with("[network]\nhttp_port = -80\n"),
        "network.http_port",
        5,
        "use 1-65535",
    );
    assert!(parse(&with("[network]\nhttps_port = 65535\nhttp_port = 1\n")).is_ok());
}

#[test]
fn https_and_http_need_different_ports() {
    let both = with("[network]\nhttps_port = 8000\nhttp_port = 8000\n");
    assert_invalid(
        &both,
        "network.http_port",
        6,
        "the same port as `network.https_port`",
    );
    // Only https_port was written: that is the line to fix.
    let https_only = with("[network]\nhttps_port = 80\n");
    assert_invalid(
        &https_only,
        "network.https_port",
        5,
        "is 80, the same port as `network.http_port`",
    );
}

#[test]
fn paths_must_be_absolute() {
    assert_invalid(
        "version = 1\n[appliance]\ndata_dir = \"var/cv\"\n",
        "appliance.data_dir",
        3,
        "is \"var/cv\", a relative path",
    );
    assert_invalid(
        "version = 1\n[appliance]\ndata_dir = \"/\"\n",
        "appliance.data_dir",
        3,
        "is `/`",
    );
    assert_invalid(
        "version = 1\n[appliance]\ndata_dir = \"\"\n",
        "appliance.data_dir",
        3,
        "is empty",
    );
    assert_invalid(
        &with("[postgres]\nbin_dir = \"pg/bin\"\n"),
        "postgres.bin_dir",
        5,
        "must be an absolute path",
    );
}

#[test]
fn names_are_checked() {
    assert_invalid(
        &with("hostname = \"vault.local\"\n"),
        "appliance.hostname",
        4,
        "contains a dot",
    );
    assert_invalid(
        &with("[postgres]\nsystem_user = \"Postgres\"\n"),
        "postgres.system_user",
        5,
        "starts with 'P'",
    );
    assert_invalid(
        &with("[service]\nsystem_user = \"root\"\n"),
        "service.system_user",
        5,
        "is root",
    );
    assert_invalid(
        &with("[postgres]\nsystem_user = \"vault\"\n[service]\nsystem_user = \"vault\"\n"),
        "service.system_user",
        7,
        "the same user as `postgres.system_user`",
    );
    assert_invalid(
        &with("[tls]\nextra_names = [\"ok.example\", \"*.example\"]\n"),
        "tls.extra_names[1]",
        5,
        "wildcard",
    );
}

#[test]
fn bind_addresses_are_checked() {
    assert_invalid(
        &with("[network]\nbind = []\n"),
        "network.bind",
        5,
        "is empty",
    );
    assert_invalid(
        &with("[network]\nbind = [\"0.0.0.0\", \"nas.local\"]\n"),
        "network.bind[1]",
        5,
        "is \"nas.local\", not an IP address",
    );
    assert_invalid(
        &with("[network]\nbind = [\"[::1]\"]\n"),
        "network.bind[0]",
        5,
        "not an IP address",
    );
    assert_invalid(
        &with("[network]\nbind = [\"::1\", \"::1\"]\n"),
        "network.bind[1]",
        5,
        "lists ::1 twice",
    );
    assert_invalid(
        &with("[network]\nbind = [\"192.168.1.2\", \"0.0.0.0\"]\n"),
        "network.bind[1]",
        5,
        "0.0.0.0 already means every address",
    );
    // Different families do not conflict.
    assert!(parse(&with("[network]\nbind = [\"0.0.0.0\", \"::\"]\n")).is_ok());
}

#[test]
fn allowed_sources_are_checked() {
    assert_invalid(
        &with("[network]\nallowed_sources = [\"10.0.0.0/8\", \"lan\"]\n"),
        "network.allowed_sources[1]",
        5,
        "is \"lan\", not a network",
    );
    assert_invalid(
        &with("[network]\nallowed_sources = [\"10.0.0.0/33\"]\n"),
        "network.allowed_sources[0]",
        5,
        "not a network",
    );
    assert_invalid(
        &with("[network]\nallowed_sources = [\"10.1.2.3/8\", \"10.0.0.0/8\"]\n"),
        "network.allowed_sources[1]",
        5,
        "lists 10.0.0.0/8 twice",
    );
    // Empty: only loopback and the VPN are answered.
    let vpn_only = parse(&with("[network]\nallowed_sources = []\n")).expect("valid");
    assert!(vpn_only.network.allowed_sources.is_empty());
}

#[test]
fn session_timeouts_are_bounded() {
    let idle = |minutes: i64| with(&format!("[sessions]\nidle_timeout_minutes = {minutes}\n"));
    let days = |days: i64| with(&format!("[sessions]\nabsolute_timeout_days = {days}\n"));
    assert_invalid(
        &idle(0),
        "sessions.idle_timeout_minutes",
        5,
        "from 1 to 43200",
    );
    assert_invalid(
        &idle(43_201),
        "sessions.idle_timeout_minutes",
        5,
        "is 43201",
    );
    assert_invalid(
        &days(0),
        "sessions.absolute_timeout_days",
        5,
        "from 1 to 365",
    );
    assert_invalid(&days(366), "sessions.absolute_timeout_days", 5, "is 366");
    let lock = |minutes: i64| with(&format!("[sessions]\nvault_lock_minutes = {minutes}\n"));
    assert_invalid(&lock(0), "sessions.vault_lock_minutes", 5, "is 0");
    assert!(parse(&idle(1)).is_ok());
    assert!(parse(&idle(43_200)).is_ok());
    assert!(parse(&days(365)).is_ok());
    assert_invalid(
        &with("[sessions]\nidle_timeout_minutes = 2880\nabsolute_timeout_days = 1\n"),
        "sessions.idle_timeout_minutes",
        5,
        "longer than `sessions.absolute_timeout_days` (1 days)",
    );
}

#[test]
fn log_settings_are_checked() {
    assert_invalid(
        &with("[log]\nformat = \"xml\"\n"),
        "log.format",
        5,
        "\"json\" or \"text\"",
    );
    assert_invalid(
        &with("[log]\nformat = \"JSON\"\n"),
        "log.format",
        5,
        "is \"JSON\"",
    );
    assert_invalid(&with("[log]\nlevel = \"\"\n"), "log.level", 5, "is empty");
    assert_invalid(
        &with("[log]\nlevel = \"info,cv_web=loud\"\n"),
        "log.level",
        5,
        "not a valid filter",
    );
    assert!(parse(&with("[log]\nlevel = \"warn,cv_web=trace\"\n")).is_ok());
}

#[test]
fn every_invalid_value_is_reported_at_once_in_file_order() {
    let text = "version = 1\n[log]\nformat = \"xml\"\n[appliance]\ndata_dir = \"rel\"\n\
                hostname = \"-x\"\n[network]\nhttps_port = 0\n";
    let error = error(text);
    let found: Vec<(&str, Option<usize>)> = error
        .problems()
        .iter()
        .map(|p| (p.key.as_str(), p.line))
        .collect();
    assert_eq!(
        found,
        [
            ("log.format", Some(3)),
            ("appliance.data_dir", Some(5)),
            ("appliance.hostname", Some(6)),
            ("network.https_port", Some(8)),
        ]
    );
    let message = error.to_string();
    assert!(
        message.starts_with("/etc/contextvault/config.toml: 4 problems:\n  line 3: `log.format`"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 5, "{message}");
}

#[test]
fn an_array_of_tables_is_not_a_table() {
    let (p, message) = problem(&with("\n[[network]]\nbind = []\n"));
    assert_eq!((p.key.as_str(), p.line), ("network", Some(5)), "{message}");
    assert!(matches!(p.kind, ProblemKind::WrongType { .. }));
    assert!(
        message.ends_with("write `[network]`, not `[[network]]`"),
        "{message}"
    );
}

#[test]
fn the_list_of_tables_matches_the_schema() {
    let example: toml::Table = EXAMPLE_CONFIG.parse().expect("example parses");
    let (root, fields) = schema_tables(&example).remove(0);
    assert_eq!(root, "");
    let mut expected = vec!["version"];
    expected.extend(raw::TABLES);
    assert_eq!(fields, expected);
}

// ---- dev mode ----

#[test]
fn dev_defaults() {
    let config = Config::dev(DevOverrides::default(), Path::new("/home/me/vault")).expect("valid");
    assert_eq!(config.mode, Mode::Dev);
    assert_eq!(config.data_dir, Path::new("/home/me/vault/var"));
    assert_eq!(config.network.bind, [IpAddr::from([0, 0, 0, 0])]);
    assert_eq!(
        (config.network.https_port, config.network.http_port),
        (8443, 8080)
    );
    assert_eq!(config.log.format, LogFormat::Text);
    // Everything else is as in an appliance.
    let appliance = parse(BASE).expect("valid");
    assert_eq!(config.network.mdns, appliance.network.mdns);
    assert_eq!(config.hostname, None);
    assert_eq!(config.tls, appliance.tls);
    assert_eq!(config.postgres, appliance.postgres);
    assert_eq!(config.service, appliance.service);
    assert_eq!(config.sessions, appliance.sessions);
    assert_eq!(config.log.level, appliance.log.level);
}

#[test]
fn dev_overrides() {
    let cwd = Path::new("/home/me/vault");
    let config = Config::dev(
        DevOverrides {
            data_dir: Some("data/one".into()),
            https_port: Some(9443),
            http_port: Some(9080),
            wireguard_port: Some(51999),
            wireguard_interface: Some("cvdev1".into()),
            no_wireguard: true,
        },
        cwd,
    )
    .expect("valid");
    assert_eq!(config.data_dir, Path::new("/home/me/vault/data/one"));
    assert_eq!(
        (config.network.https_port, config.network.http_port),
        (9443, 9080)
    );
    assert_eq!(config.wireguard.settings.listen_port, 51999);
    assert_eq!(config.wireguard.settings.interface.as_str(), "cvdev1");
    assert!(!config.wireguard.enabled);

    let absolute = DevOverrides {
        data_dir: Some("/srv/dev".into()),
        ..DevOverrides::default()
    };
    let config = Config::dev(absolute, cwd).expect("valid");
    assert_eq!(config.data_dir, Path::new("/srv/dev"));

    // A relative working directory is made absolute.
    let config = Config::dev(DevOverrides::default(), Path::new("proj")).expect("valid");
    assert!(
        config.data_dir.is_absolute(),
        "{}",
        config.data_dir.display()
    );
    assert!(config.data_dir.ends_with("proj/var"));
}

#[test]
fn dev_overrides_are_validated() {
    let clash = DevOverrides {
        https_port: Some(8080),
        ..DevOverrides::default()
    };
    let error = Config::dev(clash, Path::new("/p")).expect_err("same ports");
    assert_eq!(
        error.to_string(),
        "dev settings: `network.http_port` is 8080, the same port as `network.https_port`; \
         HTTPS and the plain-HTTP redirect need different ports"
    );
    let zero = DevOverrides {
        http_port: Some(0),
        ..DevOverrides::default()
    };
    let error = Config::dev(zero, Path::new("/p")).expect_err("port 0");
    assert_eq!(error.problems()[0].key, "network.http_port");
}

// ---- summary ----

#[test]
fn summary_lists_every_setting_by_its_key() {
    let config = parse(EXAMPLE_CONFIG).expect("example is valid");
    let summary = config.summary();
    for line in [
        "mode                            appliance",
        "appliance.data_dir              /var/lib/contextvault",
        "appliance.hostname              contextvault",
        "network.bind                    0.0.0.0",
        "network.https_port              443",
        "network.mdns                    true",
        "tls.extra_names                 (none)",
        "postgres.system_user            contextvault-pg",
        "sessions.idle_timeout_minutes   720",
        "sessions.absolute_timeout_days  30",
        "log.level                       info",
    ] {
        // Keys and values line up in two columns, whatever the longest key.
        let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            summary.lines().any(|l| words(l) == words(line)),
            "{line:?} not in\n{summary}"
        );
    }
    // One line per key of the schema, with `mode` in place of `version`.
    assert_eq!(summary.lines().count(), schema_keys().len(), "{summary}");
}

// ---- the example file ----

#[test]
fn the_example_is_a_valid_config_of_the_defaults() {
    let example = parse(EXAMPLE_CONFIG).expect("the example must parse");
    // The example writes the settings that have no default (and a hostname).
    let defaults = parse(
        "version = 1\n[appliance]\ndata_dir = \"/var/lib/contextvault\"\nhostname = \"contextvault\"\n\
         [wireguard]\nendpoint = \"vault.example.net:51820\"\n",
    )
    .expect("valid");
    assert_eq!(example, defaults);
}

#[test]
fn the_example_documents_every_key() {
    assert_eq!(undocumented_keys(EXAMPLE_CONFIG), Vec::<String>::new());
    // The check itself notices a missing key and a missing table.
    let without_http_port = EXAMPLE_CONFIG.replace("http_port = 80", "");
    assert_eq!(undocumented_keys(&without_http_port), ["network.http_port"]);
    let without_tls = EXAMPLE_CONFIG
        .replace("[tls]", "")
        .replace("extra_names = []", "");
    assert_eq!(undocumented_keys(&without_tls), ["tls"]);
}

#[test]
fn every_example_setting_has_a_comment_above_it() {
    let lines: Vec<&str> = EXAMPLE_CONFIG.lines().collect();
    let mut settings = 0;
    for (i, line) in lines.iter().enumerate() {
        let is_setting = !line.trim().is_empty() && !line.starts_with(['#', '[']);
        if is_setting {
            settings += 1;
            let above = i.checked_sub(1).map(|j| lines[j]).unwrap_or("");
            assert!(above.starts_with('#'), "no comment above {line:?}");
        }
    }
    assert_eq!(settings, schema_keys().len());
}

/// The keys of the schema, as serde's own unknown-field errors list them (so that
/// `Option` fields, which serialization would skip, count too). See [`schema_tables`].
fn schema_keys() -> BTreeSet<String> {
    let example: toml::Table = EXAMPLE_CONFIG.parse().expect("example parses");
    let mut keys = BTreeSet::new();
    for (table, fields) in schema_tables(&example) {
        for field in fields {
            if !example.get(&field).is_some_and(toml::Value::is_table) || !table.is_empty() {
                keys.insert(join_key(&table, &field));
            }
        }
    }
    keys
}

/// The keys that the schema has but `example` lacks, as dotted paths.
fn undocumented_keys(example: &str) -> Vec<String> {
    let document: toml::Table = example.parse().expect("example parses");
    let mut missing = Vec::new();
    for (table, fields) in schema_tables(&document) {
        let present = lookup(&document, &table).expect("table was found in the document");
        for field in fields {
            if !present.contains_key(&field) {
                missing.push(join_key(&table, &field));
            }
        }
    }
    missing
}

/// For the root and every table of `document`: its path and the fields the schema
/// accepts there, learnt by adding a key that cannot exist and reading the refusal.
fn schema_tables(document: &toml::Table) -> Vec<(String, Vec<String>)> {
    let mut paths = vec![String::new()];
    collect_tables(document, "", &mut paths);
    paths
        .into_iter()
        .map(|path| {
            let mut probe = document.clone();
            let table = lookup_mut(&mut probe, &path).expect("table exists");
            table.insert("zz_probe".into(), toml::Value::Integer(0));
            let text = toml::to_string(&probe).expect("serializes");
            let error = parse(&text).expect_err("zz_probe is not a key");
            let fields = match error.problems() {
                [
                    Problem {
                        key,
                        kind: ProblemKind::UnknownKey { expected, .. },
                        ..
                    },
                ] if *key == join_key(&path, "zz_probe") => expected.clone(),
                _ => panic!("expected an unknown-key error for {path:?}, got: {error}"),
            };
            assert!(!fields.is_empty(), "no fields learnt for {path:?}: {error}");
            (path, fields)
        })
        .collect()
}

fn collect_tables(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        if let toml::Value::Table(inner) = value {
            let path = join_key(prefix, key);
            out.push(path.clone());
            collect_tables(inner, &path, out);
        }
    }
}

fn lookup<'t>(table: &'t toml::Table, path: &str) -> Option<&'t toml::Table> {
    if path.is_empty() {
        return Some(table);
    }
    path.split('.')
        .try_fold(table, |t, key| t.get(key)?.as_table())
}

fn lookup_mut<'t>(table: &'t mut toml::Table, path: &str) -> Option<&'t mut toml::Table> {
    if path.is_empty() {
        return Some(table);
    }
    path.split('.')
        .try_fold(table, |t, key| t.get_mut(key)?.as_table_mut())
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

// ---- [acme] ----

#[test]
fn acme_http01_with_names_and_a_private_ca() {
    let config = parse(&with(
        "[acme]\nenabled = true\ndirectory_url = \"https://127.0.0.1:14000/dir\"\n\
         contact_email = \"Me@Example.org\"\nnames = [\"Vault.example.org\", \"vault.example.org\", \"b.example.org\"]\n\
         challenge = \"tls-alpn-01\"\nca_bundle = \"/etc/contextvault/ca.pem\"\n",
    ))
    .expect("valid");
    assert_eq!(
        config.acme,
        Acme {
            enabled: true,
            directory_url: "https://127.0.0.1:14000/dir".into(),
            contact_email: Some("Me@example.org".into()),
            names: vec!["vault.example.org".into(), "b.example.org".into()],
            challenge: AcmeChallenge::TlsAlpn01,
            ca_bundle: Some("/etc/contextvault/ca.pem".into()),
            dns: None,
        }
    );
}

#[test]
fn acme_dns01_needs_its_server_zone_and_key() {
    let config = parse(&with(
        "[acme]\nenabled = true\nnames = [\"vault.home.example.org\"]\nchallenge = \"dns-01\"\n\
         dns_server = \"192.0.2.53\"\ndns_zone = \"home.example.org\"\ntsig_key_name = \"acme-key.\"\n\
         tsig_secret_file = \"/etc/contextvault/tsig.secret\"\n",
    ))
    .expect("valid");
    assert_eq!(
        config.acme.dns,
        Some(AcmeDns {
            server: "192.0.2.53:53".parse().expect("addr"),
            zone: "home.example.org".into(),
            tsig_key_name: "acme-key".into(),
            tsig_algorithm: "hmac-sha256".into(),
            tsig_secret_file: "/etc/contextvault/tsig.secret".into(),
        })
    );
    let summary = config.summary();
    assert!(
        summary.contains("/etc/contextvault/tsig.secret"),
        "{summary}"
    );

    let missing = error(&with(
        "[acme]\nenabled = true\nnames = [\"vault.example.org\"]\nchallenge = \"dns-01\"\n",
    ));
    let keys: Vec<&str> = missing.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "acme.dns_server",
            "acme.dns_zone",
            "acme.tsig_key_name",
            "acme.tsig_secret_file"
        ],
        "{missing}"
    );
    assert_invalid(
        &with(
            "[acme]\nnames = [\"vault.example.com\"]\nchallenge = \"dns-01\"\n\
             dns_server = \"192.0.2.53:5353\"\ndns_zone = \"example.org\"\ntsig_key_name = \"k\"\n\
             tsig_secret_file = \"/s\"\n",
        ),
        "acme.names[0]",
        5,
        "outside `acme.dns_zone`",
    );
    assert_invalid(
        &with("[acme]\ndns_server = \"ns.example.org\"\n"),
        "acme.dns_server",
        5,
        "is set, but is used only with",
    );
    assert_invalid(
        &with("[acme]\nchallenge = \"dns-01\"\ndns_server = \"ns.example.org\"\n"),
        "acme.dns_server",
        6,
        "no host names",
    );
    assert_invalid(
        &with("[acme]\nchallenge = \"dns-01\"\ntsig_algorithm = \"hmac-md5\"\n"),
        "acme.tsig_algorithm",
        6,
        "must be \"hmac-sha256\"",
    );
}

#[test]
fn acme_hostile_input_is_refused_with_its_key() {
    for (setting, key, why) in [
        ("names = [\"*.example.org\"]", "acme.names[0]", "wildcard"),
        ("names = [\"192.0.2.1\"]", "acme.names[0]", "IP address"),
        ("names = [\"a..example.org\"]", "acme.names[0]", "is empty"),
        (
            "names = [\"_x.example.org\"]",
            "acme.names[0]",
            "contains '_'",
        ),
        (
            "names = [\"vault.example.org;rm\"]",
            "acme.names[0]",
            "contains ';'",
        ),
        (
            "names = [\"vault.éxample.org\"]",
            "acme.names[0]",
            "non-ASCII",
        ),
        ("names = [\"localhost\"]", "acme.names[0]", "single label"),
        ("names = [\"nas.local\"]", "acme.names[0]", "under `local`"),
        (
            "names = [\"vault.example.org.\"]",
            "acme.names[0]",
            "ends with a dot",
        ),
        (
            "directory_url = \"http://ca.example.org/dir\"",
            "acme.directory_url",
            "https://",
        ),
        (
            "directory_url = \"https://\"",
            "acme.directory_url",
            "names no host",
        ),
        (
            "directory_url = \"https://ca.example.org/d ir\"",
            "acme.directory_url",
            "spaces",
        ),
        ("contact_email = \"nobody\"", "acme.contact_email", "no `@`"),
        (
            "contact_email = \"a b@example.org\"",
            "acme.contact_email",
            "before `@`",
        ),
        (
            "contact_email = \"me@localhost\"",
            "acme.contact_email",
            "single label",
        ),
        ("challenge = \"http-02\"", "acme.challenge", "must be"),
        ("ca_bundle = \"ca.pem\"", "acme.ca_bundle", "relative path"),
    ] {
        assert_invalid(&with(&format!("[acme]\n{setting}\n")), key, 5, why);
    }
    // Enabled without names.
    assert_invalid(
        &with("[acme]\nenabled = true\n"),
        "acme.names",
        4,
        "is empty",
    );
}

#[test]
fn the_update_settings_are_read_and_checked() {
    let config = parse(&with(
        "[update]\nrepository = \"https://updates.example.org/cv\"\n\
         hint_secret_file = \"/var/lib/contextvault/hint.secret\"\n\
         check_interval_hours = 6\nreboot_window = \"23:30-02:00\"\ngate_timeout_minutes = 3\n",
    ))
    .expect("valid");
    let u = &config.update;
    // A base URL ends in "/", so that metadata/ and targets/ go below it.
    assert_eq!(
        u.repository.as_deref(),
        Some("https://updates.example.org/cv/")
    );
    assert_eq!(
        u.hint_secret_file.as_deref(),
        Some(Path::new("/var/lib/contextvault/hint.secret"))
    );
    assert_eq!(u.check_interval, Duration::from_secs(6 * 3600));
    assert_eq!(u.gate_timeout, Duration::from_secs(180));
    let window = u.reboot_window.expect("a window");
    assert_eq!(window.to_string(), "23:30-02:00");
    // Across midnight.
    assert!(window.contains(23 * 60 + 45) && window.contains(60) && !window.contains(12 * 60));
    let summary = config.summary();
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("update.reboot_window ") && l.ends_with(" 23:30-02:00")),
        "{summary}"
    );

    for (line, why) in [
        (
            "repository = \"ftp://x.example.org/\"",
            "http:// or https://",
        ),
        (
            "repository = \"https://user@x.example.org/\"",
            "names no host",
        ),
        ("repository = \"https://x.example.org/?a=1\"", "no query"),
        ("hint_secret_file = \"hint.secret\"", "absolute"),
        ("check_interval_hours = 0", "from 1 to 168"),
        ("reboot_window = \"3-5\"", "HH:MM-HH:MM"),
        ("reboot_window = \"25:00-02:00\"", "HH:MM-HH:MM"),
        ("reboot_window = \"03:00-03:00\"", "HH:MM-HH:MM"),
        ("gate_timeout_minutes = 16", "from 1 to 15"),
    ] {
        let err = parse(&with(&format!("[update]\n{line}\n"))).expect_err(line);
        assert!(err.to_string().contains(why), "{line}: {err}");
    }
    // "" means "not set", as everywhere.
    let config =
        parse(&with("[update]\nrepository = \"\"\nreboot_window = \"\"\n")).expect("valid");
    assert_eq!(config.update.repository, None);
    assert_eq!(config.update.reboot_window, None);
}

#[test]
fn storage_settings_are_checked() {
    let config = parse(
        "version = 1\n[appliance]\ndata_dir = \"/var/lib/cv\"\n[storage]\nbackend = \"btrfs\"\nkeep_hourly = 0\nkeep_other_days = 7\n",
    )
    .unwrap();
    assert_eq!(config.storage.backend, StorageBackend::Btrfs);
    assert_eq!(config.storage.keep_hourly, 0);
    assert_eq!(config.storage.keep_other_days, 7);
    let err = parse(
        "version = 1\n[appliance]\ndata_dir = \"/var/lib/cv\"\n[storage]\nbackend = \"ext4\"\nkeep_daily = -1\nkeep_other_days = 0\n",
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "storage.backend",
        "\"ext4\"",
        "storage.keep_daily",
        "storage.keep_other_days",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}

#[test]
fn backup_settings_are_checked() {
    let config = parse(
        "version = 1\n[appliance]\ndata_dir = \"/var/lib/cv\"\n[backup]\nrepository = \"rest:http://127.0.0.1:8000/box/\"\ninterval_hours = 6\n",
    )
    .unwrap();
    assert_eq!(
        config.backup.repository.as_deref(),
        Some("rest:http://127.0.0.1:8000/box/")
    );
    assert_eq!(config.backup.interval, Duration::from_secs(6 * 3600));
    let err = parse(
        "version = 1\n[appliance]\ndata_dir = \"/var/lib/cv\"\n[backup]\nrepository = \"s3:somewhere\"\ninterval_hours = 0\n",
    )
    .unwrap_err()
    .to_string();
    for needle in ["backup.repository", "backup.interval_hours"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}
