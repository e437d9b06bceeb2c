//! What the box's own screen shows: `console.json` and `issue`, written by the
//! supervisor, and the rendering `contextvault console` prints from them.
//!
//! An appliance has a screen (tty1) and often a serial console (ttyS0), where two
//! systemd units run `contextvault console --tty`: a status screen that needs no login,
//! as Home Assistant OS shows its address. The supervisor's `console` task publishes
//! what it shows in [`FILE_NAME`] (mode 0600, root) in `$RUNTIME_DIRECTORY` when systemd
//! sets it (`RuntimeDirectory=contextvault`: `/run/contextvault`), else in the data
//! directory's `run/` ([`directory`]). Every [`CHECK_EVERY`] it gathers
//!
//! - the dashboard's addresses: `https://<hostname>.local[:port]/` and
//!   `https://<each LAN IPv4>[:port]/` (the port only when it is not 443);
//! - the one-time setup code while nobody owns the box (issued by the `postgres` task;
//!   dropped as soon as an owner exists, checked in the database);
//! - the top-level status and each component's state, from the service's own
//!   `/healthz` over loopback (so the console says exactly what `/healthz` says, the
//!   database check and the local AI included), or, while the service does not answer,
//!   `unavailable` with the supervisor's own view of its components;
//!
//! and rewrites the file (temporary file, then rename) only when that changed. Beside
//! it, [`ISSUE_NAME`] (0644) holds the same text in agetty's issue format, which the
//! image links from `/etc/issue.d/`, so the login prompt shows it too. Neither holds a
//! secret but the setup code, and that only while the box is unclaimed: the person at
//! the screen is who may claim it. Nothing here is logged.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cv_control::ApplianceStatus;
use serde::{Deserialize, Serialize};

use crate::{Context, Stop, TaskResult};

/// Where `contextvault console` looks by default (systemd's runtime directory).
pub const DEFAULT_FILE: &str = "/run/contextvault/console.json";
/// The status file, in [`directory`].
pub const FILE_NAME: &str = "console.json";
/// The same in agetty's issue format, beside it.
pub const ISSUE_NAME: &str = "issue";
/// How often the supervisor looks for changes ("every few seconds": a person at the
/// screen waits no longer than this to see a component come up).
pub const CHECK_EVERY: Duration = Duration::from_secs(3);
/// How long the service's `/healthz` may take (its own database check allows 2 s).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// The one-time setup code; its `Debug` prints nothing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SetupCode(pub String);

impl std::fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetupCode(…)")
    }
}

/// One component as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleComponent {
    pub name: String,
    pub state: String,
}

/// The content of `console.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleStatus {
    /// Where a browser on the LAN reaches the dashboard.
    pub dashboard: Vec<String>,
    /// Only while nobody owns the box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_code: Option<SetupCode>,
    /// `/healthz`'s top-level status: `ok` or `unavailable`.
    pub status: String,
    /// Each component and its state, in `/healthz`'s order, the local AI (`ai`) last.
    pub components: Vec<ConsoleComponent>,
}

impl ConsoleStatus {
    /// The block the console prints, one `\n`-terminated line each.
    pub fn render(&self) -> String {
        let mut out = String::from("Context Vault\n");
        for url in &self.dashboard {
            out.push_str(&format!("Dashboard: {url}\n"));
        }
        if let Some(code) = &self.setup_code {
            out.push_str(&format!("Setup code: {}\n", code.0));
        }
        out.push_str(&format!("Status: {}\n", self.status));
        for c in &self.components {
            out.push_str(&format!("  {}: {}\n", c.name, c.state));
        }
        out
    }

    /// The same for agetty's issue file, where a backslash starts an escape (`\n` is the
    /// host name, `\l` the tty): each is doubled so the text shows as it is. A blank line
    /// sets it apart from the login prompt.
    pub fn issue(&self) -> String {
        format!("{}\n", self.render().replace('\\', "\\\\"))
    }
}

/// `https://<hostname>.local[:port]/`, then `https://<ip>[:port]/` for each LAN IPv4
/// address (the port is left out when it is 443).
pub fn dashboard_urls(hostname: &str, https_port: u16, lan: &[IpAddr]) -> Vec<String> {
    let port = match https_port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let mut urls = vec![format!("https://{hostname}.local{port}/")];
    urls.extend(
        lan.iter()
            .filter(|ip| ip.is_ipv4())
            .map(|ip| format!("https://{ip}{port}/")),
    );
    urls
}

/// The addresses not in the VPN's network: the box's tunnel address is reachable only
/// through the tunnel, not what the person at the screen should type into a phone.
pub fn outside(addresses: Vec<IpAddr>, vpn: ipnet::Ipv4Net) -> Vec<IpAddr> {
    addresses
        .into_iter()
        .filter(|ip| !matches!(ip, IpAddr::V4(v4) if vpn.contains(v4)))
        .collect()
}

/// Where the files go: `$RUNTIME_DIRECTORY` when systemd sets it, else the data
/// directory's `run/` (`run_dir`). A unit with several runtime directories gets them
/// joined with `:` (`/run/wireguard:/run/contextvault`): the one named `contextvault`
/// is taken, else the first.
pub fn directory(runtime_directory: Option<&OsStr>, run_dir: &Path) -> PathBuf {
    let entries: Vec<&str> = runtime_directory
        .and_then(|v| v.to_str())
        .map(|v| v.split(':').filter(|e| !e.is_empty()).collect())
        .unwrap_or_default();
    entries
        .iter()
        .find(|e| Path::new(e).file_name() == Some(OsStr::new("contextvault")))
        .or(entries.first())
        .map_or_else(|| run_dir.to_owned(), PathBuf::from)
}

/// `/healthz` as far as the console needs it.
#[derive(Debug, Deserialize)]
struct HealthDoc {
    status: String,
    components: BTreeMap<String, StateOnly>,
    #[serde(default)]
    ai: Option<StateOnly>,
}

#[derive(Debug, Deserialize)]
struct StateOnly {
    state: String,
}

/// The status and components from a `/healthz` document, `None` if it is not one.
pub fn from_health(body: &[u8]) -> Option<(String, Vec<ConsoleComponent>)> {
    let doc: HealthDoc = serde_json::from_slice(body).ok()?;
    let mut components: Vec<ConsoleComponent> = doc
        .components
        .into_iter()
        .map(|(name, c)| ConsoleComponent {
            name,
            state: c.state,
        })
        .collect();
    if let Some(ai) = doc.ai {
        components.push(ConsoleComponent {
            name: "ai".to_owned(),
            state: ai.state,
        });
    }
    Some((doc.status, components))
}

/// While the service does not answer: `unavailable` (what `/healthz` would say with no
/// service), with the supervisor's own components.
pub fn from_board(status: &ApplianceStatus) -> (String, Vec<ConsoleComponent>) {
    let components = status
        .components
        .iter()
        .map(|c| ConsoleComponent {
            name: c.name.clone(),
            state: c.state.as_str().to_owned(),
        })
        .collect();
    ("unavailable".to_owned(), components)
}

/// Replaces `path` with `contents`, created with `mode` (umask aside), through a
/// temporary file in the same directory and a rename: a reader sees the old file or the
/// new one, never half of one.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let _ = fs::remove_file(&temp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", path.display())))
}

/// Writes `console.json` (0600) and `issue` (0644) into `dir`.
pub fn write(dir: &Path, status: &ConsoleStatus) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(status).map_err(io::Error::other)?;
    write_atomic(&dir.join(FILE_NAME), &json, 0o600)?;
    write_atomic(&dir.join(ISSUE_NAME), status.issue().as_bytes(), 0o644)
}

/// The setup code the console shows, shared by the `postgres` task (which issues it)
/// and the `console` task (which publishes it and drops it once the box is claimed).
#[derive(Debug, Default)]
pub struct Published {
    setup_code: Mutex<Option<SetupCode>>,
    changed: tokio::sync::Notify,
}

impl Published {
    pub fn set_setup_code(&self, code: String) {
        *self.setup_code.lock().unwrap_or_else(|e| e.into_inner()) = Some(SetupCode(code));
        self.changed.notify_one();
    }

    fn setup_code(&self) -> Option<SetupCode> {
        self.setup_code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn forget_setup_code(&self) {
        *self.setup_code.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The `console` task: publish, then look again every [`CHECK_EVERY`] (or when a setup
/// code is issued) and publish what changed; remove both files at shutdown, when they
/// stop being true.
pub async fn publish(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    let dir = directory(
        std::env::var_os("RUNTIME_DIRECTORY").as_deref(),
        &ctx.layout.run_dir(),
    );
    let mut last: Option<ConsoleStatus> = None;
    let mut last_error: Option<String> = None;
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = stop.requested() => break,
            _ = ticker.tick() => {}
            _ = ctx.console.changed.notified() => {}
        }
        let now = gather(&ctx).await;
        if last.as_ref() == Some(&now) {
            continue;
        }
        match write(&dir, &now) {
            Ok(()) => {
                last = Some(now);
                last_error = None;
            }
            Err(e) => {
                // Once per distinct error, not every few seconds.
                let e = e.to_string();
                if last_error.as_deref() != Some(&e) {
                    tracing::warn!(error = %e, "cannot publish the console status");
                    last_error = Some(e);
                }
            }
        }
    }
    for name in [FILE_NAME, ISSUE_NAME] {
        let _ = fs::remove_file(dir.join(name));
    }
    Ok(())
}

/// Everything the console shows, as of now.
async fn gather(ctx: &Context) -> ConsoleStatus {
    if ctx.console.setup_code().is_some() && owner_exists(ctx).await {
        ctx.console.forget_setup_code();
    }
    let lan = outside(
        cv_net::tls::lan_addresses(),
        ctx.config.wireguard.settings.network.net(),
    );
    let hostname = crate::prepare::hostname(&ctx.config);
    let (status, components) = match service_health(ctx).await {
        Some(health) => health,
        None => from_board(&ctx.board.snapshot()),
    };
    ConsoleStatus {
        dashboard: dashboard_urls(&hostname, ctx.config.network.https_port, &lan),
        setup_code: ctx.console.setup_code(),
        status,
        components,
    }
}

/// Whether the box has been claimed (an error counts as "not yet": the code stays).
async fn owner_exists(ctx: &Context) -> bool {
    let url =
        crate::postgres::cluster_spec(ctx).connection_string(cv_db::SERVICE_ROLE, cv_db::DATABASE);
    let Ok(mut conn) = cv_db::connect_once(&url).await else {
        return false;
    };
    cv_db::models::owner_exists(&mut conn)
        .await
        .unwrap_or(false)
}

/// The service's `/healthz`, over loopback to the first HTTPS socket it serves.
async fn service_health(ctx: &Context) -> Option<(String, Vec<ConsoleComponent>)> {
    let addr = ctx.https_listeners.first()?.local_addr().ok()?;
    let addr = SocketAddr::new(loopback_for(addr.ip()), addr.port());
    let ca = fs::read(ctx.layout.tls_dir().join("ca.crt")).ok()?;
    let (_code, body) = cv_net::loopback::get(&ca, addr, "/healthz", HEALTH_TIMEOUT)
        .await
        .ok()?;
    // 503 carries the document too: it names what is failing.
    from_health(&body)
}

/// The address to reach a socket bound to `ip` from the box itself.
pub(crate) fn loopback_for(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// What the console has to show at one look at the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    /// No file yet: the supervisor has not published (or is restarting).
    Starting,
    /// A file that cannot be read or is not a console status; why.
    Unreadable(String),
    Status(ConsoleStatus),
}

impl Screen {
    /// Reads `path`.
    pub fn read(path: &Path) -> Screen {
        match fs::read(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Screen::Starting,
            Err(e) => Screen::Unreadable(format!("cannot read {}: {e}", path.display())),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(status) => Screen::Status(status),
                Err(e) => {
                    Screen::Unreadable(format!("{} is not a console status: {e}", path.display()))
                }
            },
        }
    }

    fn text(&self) -> String {
        match self {
            Screen::Starting => "Context Vault is starting…\n".to_owned(),
            Screen::Unreadable(why) => format!("Context Vault: {why}; waiting\n"),
            Screen::Status(status) => status.render(),
        }
    }

    /// Whether the person at the screen would see anything new: a file that stays
    /// unreadable is said once, whatever the error of each look.
    fn same_as(&self, other: &Screen) -> bool {
        match (self, other) {
            (Screen::Unreadable(_), Screen::Unreadable(_)) => true,
            (a, b) => a == b,
        }
    }
}

/// The console's memory of what it last printed.
#[derive(Debug, Default)]
pub struct Changes {
    last: Option<Screen>,
}

impl Changes {
    /// The text to print for `screen`, or `None` if it shows nothing new.
    pub fn next(&mut self, screen: Screen) -> Option<String> {
        if self.last.as_ref().is_some_and(|last| last.same_as(&screen)) {
            return None;
        }
        let text = screen.text();
        self.last = Some(screen);
        Some(text)
    }
}

/// Whether `contextvault console` clears the screen before each block: only with
/// `--tty`, on a terminal whose `TERM` is set and not `dumb`, and never on a serial
/// console (`/dev/ttyS*`, and the other serial drivers' names), whose scrollback is a
/// log (the VM tests read it) and where an escape sequence is noise.
pub fn should_clear(
    tty: bool,
    is_terminal: bool,
    term: Option<&str>,
    tty_path: Option<&Path>,
) -> bool {
    const SERIAL: [&str; 4] = ["/dev/ttyS", "/dev/ttyAMA", "/dev/ttyUSB", "/dev/hvc"];
    let serial = tty_path
        .and_then(Path::to_str)
        .is_some_and(|p| SERIAL.iter().any(|s| p.starts_with(s)));
    tty && is_terminal && term.is_some_and(|t| !t.is_empty() && t != "dumb") && !serial
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(code: Option<&str>) -> ConsoleStatus {
        ConsoleStatus {
            dashboard: dashboard_urls(
                "contextvault",
                443,
                &["10.0.2.15".parse().unwrap(), "fe80::1".parse().unwrap()],
            ),
            setup_code: code.map(|c| SetupCode(c.to_owned())),
            status: "ok".into(),
            components: vec![
                ConsoleComponent {
                    name: "database".into(),
                    state: "up".into(),
                },
                ConsoleComponent {
                    name: "ai".into(),
                    state: "starting".into(),
                },
            ],
        }
    }

    #[test]
    fn the_block_has_the_lines_the_vm_tests_grep() {
        assert_eq!(
            sample(Some("ABCD-EFGH-JKLM")).render(),
            "Context Vault\n\
             Dashboard: https://contextvault.local/\n\
             Dashboard: https://10.0.2.15/\n\
             Setup code: ABCD-EFGH-JKLM\n\
             Status: ok\n\
             \x20 database: up\n\
             \x20 ai: starting\n"
        );
        // Claimed: no setup code line.
        assert!(!sample(None).render().contains("Setup code"));
    }

    #[test]
    fn the_vpn_address_is_not_a_dashboard_address() {
        let ips =
            |list: &[&str]| -> Vec<IpAddr> { list.iter().map(|a| a.parse().unwrap()).collect() };
        assert_eq!(
            outside(
                ips(&["192.168.1.5", "10.213.0.1", "fd00::1"]),
                "10.213.0.0/24".parse().unwrap()
            ),
            ips(&["192.168.1.5", "fd00::1"])
        );
    }

    #[test]
    fn addresses_name_the_port_unless_it_is_443() {
        let lan = ["192.168.1.5".parse().unwrap()];
        assert_eq!(
            dashboard_urls("box", 8443, &lan),
            ["https://box.local:8443/", "https://192.168.1.5:8443/"]
        );
        assert_eq!(dashboard_urls("box", 443, &[]), ["https://box.local/"]);
    }

    #[test]
    fn the_json_shape_and_its_round_trip() {
        let with = sample(Some("ABCD-EFGH-JKLM"));
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "dashboard": ["https://contextvault.local/", "https://10.0.2.15/"],
                "setup_code": "ABCD-EFGH-JKLM",
                "status": "ok",
                "components": [
                    {"name": "database", "state": "up"},
                    {"name": "ai", "state": "starting"}
                ]
            })
        );
        let back: ConsoleStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, with);
        // Claimed: the key is gone, not null.
        let json = serde_json::to_value(sample(None)).unwrap();
        assert!(json.get("setup_code").is_none());
        // Debug output never shows the code.
        assert!(!format!("{with:?}").contains("ABCD"));
    }

    #[test]
    fn issue_escapes_backslashes_for_agetty() {
        let mut s = sample(None);
        s.components[0].name = r"a\nb".into();
        let issue = s.issue();
        assert!(issue.contains(r"  a\\nb: up"), "{issue}");
        assert!(issue.ends_with("\n\n"));
    }

    #[test]
    fn health_documents_become_components_with_the_ai_last() {
        let body = br#"{"status":"unavailable","version":"0.1.0",
            "components":{"vault":{"state":"up","restarts":0},"database":{"state":"down","error":"timeout"}},
            "failing":["database"],"ai":{"state":"failing","workers":1,"ready":0,"restarts":2,"jail_missing":[]}}"#;
        let (status, components) = from_health(body).unwrap();
        assert_eq!(status, "unavailable");
        let names: Vec<_> = components
            .iter()
            .map(|c| format!("{}={}", c.name, c.state))
            .collect();
        assert_eq!(names, ["database=down", "vault=up", "ai=failing"]);
        assert!(from_health(b"<html>").is_none());
    }

    #[test]
    fn the_runtime_directory_wins_when_systemd_sets_it() {
        let run = Path::new("/var/lib/contextvault/run");
        assert_eq!(
            directory(Some(OsStr::new("/run/contextvault")), run),
            Path::new("/run/contextvault")
        );
        assert_eq!(
            directory(Some(OsStr::new("/run/contextvault:/run/other")), run),
            Path::new("/run/contextvault")
        );
        // The unit also has RuntimeDirectory=wireguard: ours is the one named for us.
        assert_eq!(
            directory(Some(OsStr::new("/run/wireguard:/run/contextvault")), run),
            Path::new("/run/contextvault")
        );
        assert_eq!(
            directory(Some(OsStr::new("/run/elsewhere")), run),
            Path::new("/run/elsewhere")
        );
        assert_eq!(directory(Some(OsStr::new("")), run), run);
        assert_eq!(directory(None, run), run);
    }

    #[test]
    fn files_are_written_whole_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let status = sample(Some("ABCD-EFGH-JKLM"));
        write(dir.path(), &status).unwrap();
        let mode = |name: &str| {
            fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(FILE_NAME), 0o600);
        assert_eq!(mode(ISSUE_NAME), 0o644);
        assert_eq!(
            Screen::read(&dir.path().join(FILE_NAME)),
            Screen::Status(status.clone())
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(ISSUE_NAME)).unwrap(),
            status.issue()
        );
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        let missing = tempfile::tempdir().unwrap().path().join("gone");
        let e = write(&missing, &status).unwrap_err();
        assert!(e.to_string().contains("gone/console.json"), "{e}");
    }

    #[test]
    fn the_console_prints_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        let mut changes = Changes::default();
        // Before the file exists: said once.
        assert_eq!(
            changes.next(Screen::read(&file)).as_deref(),
            Some("Context Vault is starting…\n")
        );
        assert_eq!(changes.next(Screen::read(&file)), None);
        // Garbled: said once, whatever the error.
        fs::write(&file, "{").unwrap();
        let said = changes.next(Screen::read(&file)).unwrap();
        assert!(said.contains("is not a console status"), "{said}");
        fs::write(&file, "[]").unwrap();
        assert_eq!(changes.next(Screen::read(&file)), None);
        // A status: printed; the same again: nothing.
        write(dir.path(), &sample(Some("ABCD-EFGH-JKLM"))).unwrap();
        let block = changes.next(Screen::read(&file)).unwrap();
        assert!(block.contains("Setup code: ABCD-EFGH-JKLM"));
        assert_eq!(changes.next(Screen::read(&file)), None);
        // Claimed: printed again, without the code.
        write(dir.path(), &sample(None)).unwrap();
        let block = changes.next(Screen::read(&file)).unwrap();
        assert!(!block.contains("Setup code"));
        // Gone (the supervisor restarts): starting again.
        fs::remove_file(&file).unwrap();
        assert_eq!(
            changes.next(Screen::read(&file)).as_deref(),
            Some("Context Vault is starting…\n")
        );
    }

    #[test]
    fn the_screen_is_cleared_only_on_a_real_terminal_that_is_not_serial() {
        let tty1 = Some(Path::new("/dev/tty1"));
        assert!(should_clear(true, true, Some("linux"), tty1));
        // Without --tty, not a terminal, TERM dumb or unset: no escape sequences.
        assert!(!should_clear(false, true, Some("linux"), tty1));
        assert!(!should_clear(true, false, Some("linux"), tty1));
        assert!(!should_clear(true, true, Some("dumb"), tty1));
        assert!(!should_clear(true, true, None, tty1));
        // A serial console never: systemd sets TERM=vt220 there.
        for serial in ["/dev/ttyS0", "/dev/ttyAMA0", "/dev/hvc0"] {
            assert!(
                !should_clear(true, true, Some("vt220"), Some(Path::new(serial))),
                "{serial}"
            );
        }
    }
}
