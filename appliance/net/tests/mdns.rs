//! The mDNS responder against a real mDNS browser, with real multicast: two network
//! namespaces joined by a veth pair (the loopback interface has no MULTICAST flag, so it
//! cannot carry mDNS). The responder runs in one, `mdns-sd`'s browser in the other, each
//! created by a thread that has entered its namespace (`setns`), so their sockets live
//! there.
//!
//! Needs root (network namespaces). Without it the test says why and passes, unless
//! `CV_REQUIRE_ROOT_NET=1` (as `scripts/test` sets), where it fails.

use std::collections::HashSet;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cv_net::mdns::{Advertisement, Responder, SERVICE_TYPE};
use mdns_sd::{HostnameResolutionEvent, Receiver, ServiceDaemon, ServiceEvent};
use nix::sched::CloneFlags;

/// How long a name or a service may take to show up: the responder probes its names for
/// 750 ms before announcing them (RFC 6762 §8.1); the rest is margin for a busy machine.
const WAIT: Duration = Duration::from_secs(15);

/// Two network namespaces joined by a veth pair, `10.77.0.1/24` on the responder's side
/// and `10.77.0.2/24` on the browser's; deleted on drop, whatever happened.
struct NetnsPair {
    responder: String,
    browser: String,
    responder_veth: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl NetnsPair {
    /// Names unique to this process and call, so tests (and test runs) can overlap.
    fn new() -> Result<NetnsPair, String> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let pair = NetnsPair {
            responder: format!("cv-mdns-{pid}-{n}-r"),
            browser: format!("cv-mdns-{pid}-{n}-b"),
            // Interface names have at most 15 bytes (IFNAMSIZ - 1).
            responder_veth: format!("m{pid:x}x{n}r"),
        };
        let browser_veth = format!("m{pid:x}x{n}b");
        // From here on, Drop cleans up even if a step fails.
        ip(&["netns", "add", &pair.responder])?;
        ip(&["netns", "add", &pair.browser])?;
        ip(&[
            "link",
            "add",
            &pair.responder_veth,
            "netns",
            &pair.responder,
            "type",
            "veth",
            "peer",
            "name",
            &browser_veth,
            "netns",
            &pair.browser,
        ])?;
        ip(&[
            "-n",
            &pair.responder,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            &pair.responder_veth,
        ])?;
        ip(&[
            "-n",
            &pair.browser,
            "addr",
            "add",
            "10.77.0.2/24",
            "dev",
            &browser_veth,
        ])?;
        ip(&[
            "-n",
            &pair.responder,
            "link",
            "set",
            &pair.responder_veth,
            "up",
        ])?;
        ip(&["-n", &pair.browser, "link", "set", &browser_veth, "up"])?;
        Ok(pair)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        for ns in [&self.responder, &self.browser] {
            if let Err(e) = ip(&["netns", "delete", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `f` on a new thread inside network namespace `ns`; threads it starts (such as
/// `mdns-sd`'s) are in that namespace too.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("the thread in the namespace panicked")
}

/// `None` to go on; `Some(reason)` to skip (or fail when root networking is required).
fn cannot_run() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(format!(
            "network namespaces need root, and this runs as uid {}",
            nix::unistd::geteuid()
        ));
    }
    if let Err(e) = ip(&["netns", "list"]) {
        return Some(format!("iproute2 is not usable: {e}"));
    }
    None
}

fn required() -> bool {
    std::env::var_os("CV_REQUIRE_ROOT_NET").is_some_and(|v| v == "1")
}

/// Waits for the first event `pick` maps to a value.
fn wait_for<E: std::fmt::Debug, T>(
    events: &Receiver<E>,
    what: &str,
    mut pick: impl FnMut(&E) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) => {
                if let Some(found) = pick(&event) {
                    return found;
                }
                seen.push(format!("{event:?}"));
            }
            Err(e) => panic!("no {what} within {WAIT:?} ({e}); events seen: {seen:#?}"),
        }
    }
}

fn addresses_of(event: &HostnameResolutionEvent) -> HashSet<IpAddr> {
    match event {
        HostnameResolutionEvent::AddressesFound(_, found) => {
            found.iter().map(|scoped| scoped.to_ip_addr()).collect()
        }
        _ => HashSet::new(),
    }
}

#[test]
fn a_browser_on_the_lan_finds_the_box_follows_its_addresses_and_sees_it_leave() {
    if let Some(reason) = cannot_run() {
        assert!(!required(), "CV_REQUIRE_ROOT_NET=1, but {reason}");
        eprintln!("skipped: {reason}");
        return;
    }
    let pair = NetnsPair::new().expect("network namespaces");
    let hostname = format!("cv-mdns-{}", std::process::id());
    let advertisement = Advertisement {
        hostname: hostname.parse().expect("hostname"),
        https_port: 8443,
        bind: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
        exclude_interfaces: vec!["wg0".to_owned()],
    };
    let first = IpAddr::from([10, 77, 0, 1]);
    let second = IpAddr::from([10, 77, 0, 3]);

    let ad = advertisement.clone();
    let mut responder =
        in_netns(&pair.responder, move || Responder::start(ad)).expect("the responder starts");
    assert_eq!(responder.announced(), [first]);

    let browser = in_netns(&pair.browser, ServiceDaemon::new).expect("browser daemon");
    let services = browser.browse(SERVICE_TYPE).expect("browse");
    let host = advertisement.host_name();

    // The name resolves to the responder's veth address...
    let names = browser
        .resolve_hostname(&host, Some(WAIT.as_millis() as u64))
        .expect("resolve");
    let found = wait_for(&names, "address for the host name", |event| {
        Some(addresses_of(event)).filter(|a| !a.is_empty())
    });
    assert_eq!(found, HashSet::from([first]), "{host}");

    // ...and the service is listed, with its port, its path and that address.
    let resolved = wait_for(&services, "resolved service", |event| match event {
        ServiceEvent::ServiceResolved(service)
            if service.get_fullname() == advertisement.instance_fullname() =>
        {
            Some(service.clone())
        }
        _ => None,
    });
    assert_eq!(resolved.get_hostname(), host);
    assert_eq!(resolved.get_port(), 8443);
    assert_eq!(resolved.get_property_val_str("path"), Some("/"));
    assert!(
        resolved
            .get_addresses_v4()
            .contains(&Ipv4Addr::new(10, 77, 0, 1))
    );

    // A new address on the LAN interface is announced at the next check.
    ip(&[
        "-n",
        &pair.responder,
        "addr",
        "add",
        "10.77.0.3/24",
        "dev",
        &pair.responder_veth,
    ])
    .expect("second address");
    let (changed, mut responder) = in_netns(&pair.responder, move || {
        let changed = responder.refresh().expect("refresh");
        (changed, responder)
    });
    assert!(changed);
    assert_eq!(responder.announced(), [first, second]);
    let again = in_netns(&pair.responder, move || {
        let changed = responder.refresh().expect("refresh");
        (changed, responder)
    });
    assert!(!again.0, "nothing changed since the last check");
    let mut responder = again.1;
    browser
        .stop_resolve_hostname(&host)
        .expect("stop resolving");
    let names = browser
        .resolve_hostname(&host, Some(WAIT.as_millis() as u64))
        .expect("resolve");
    wait_for(&names, "the new address", |event| {
        addresses_of(event).contains(&second).then_some(())
    });
    assert!(
        responder.notices().is_empty(),
        "no conflicts or errors on a LAN of two"
    );

    // Stopping says goodbye: the browser drops the service at once.
    responder.stop().expect("the responder stops");
    wait_for(&services, "removal of the service", |event| match event {
        ServiceEvent::ServiceRemoved(_, name) if *name == advertisement.instance_fullname() => {
            Some(())
        }
        _ => None,
    });
    let _ = browser.shutdown();
    drop(pair);
}
