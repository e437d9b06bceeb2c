//! LAN discovery end to end: the appliance in one network namespace, a "phone" with
//! `mdns-sd`'s browser in another, joined by a veth pair (the loopback interface carries
//! no multicast). The appliance, started as on a box (`contextvault run`, mDNS on by
//! default), must show up as an `_https._tcp` service with its HTTPS port, its host name
//! must resolve to its LAN address, `/healthz` must report the responder up, and when the
//! appliance stops it must say goodbye so the phone drops the service at once.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cv_net::mdns::SERVICE_TYPE;
use cv_testkit::netns::{self, Netns};
use cv_testkit::{Launch, TestAppliance};
use mdns_sd::{HostnameResolutionEvent, ResolvedService, ServiceDaemon, ServiceEvent};

use crate::support::exe;

const BOX: Ipv4Addr = Ipv4Addr::new(198, 18, 31, 1);
const PHONE: &str = "198.18.31.2/24";
/// The responder probes its names for 750 ms before announcing them (RFC 6762 §8.1); the
/// rest is margin for a busy machine.
const WAIT: Duration = Duration::from_secs(20);

/// What the phone saw of the appliance's service.
struct Seen {
    service: ResolvedService,
    host_addresses: HashSet<IpAddr>,
}

/// Browses for `_https._tcp` until the service on `port` at [`BOX`] is resolved, then
/// resolves its host name. Runs on a thread inside the phone's namespace (the daemon's
/// own thread inherits it), and keeps the daemon for the goodbye.
fn discover(daemon: &ServiceDaemon, port: u16) -> Result<Seen, String> {
    let services = daemon.browse(SERVICE_TYPE).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + WAIT;
    let service = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match services.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(s))
                if s.get_port() == port && s.get_addresses_v4().contains(&BOX) =>
            {
                break *s;
            }
            Ok(_) => {}
            Err(e) => return Err(format!("no service on port {port} at {BOX}: {e}")),
        }
    };
    let host = service.get_hostname().to_owned();
    let names = daemon
        .resolve_hostname(&host, Some(WAIT.as_millis() as u64))
        .map_err(|e| e.to_string())?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match names.recv_timeout(left) {
            Ok(HostnameResolutionEvent::AddressesFound(_, found)) if !found.is_empty() => {
                let host_addresses = found.iter().map(|a| a.to_ip_addr()).collect();
                return Ok(Seen {
                    service,
                    host_addresses,
                });
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{host} did not resolve: {e}")),
        }
    }
}

#[tokio::test]
async fn the_appliance_is_found_on_the_lan_and_says_goodbye() {
    if !netns::root_net_or_skip(
        "the_appliance_is_found_on_the_lan_and_says_goodbye",
        &["ip"],
    ) {
        return;
    }
    let box_ns = Netns::new("cvmb");
    let phone = Netns::new("cvmp");
    box_ns.link(&format!("{BOX}/24"), &phone, PHONE);
    let mut app = TestAppliance::launch_in(
        &exe(),
        Launch::Appliance {
            env: vec![],
            extra: String::new(),
        },
        Some(&box_ns),
    )
    .await;
    let https_port = app.https_port;

    // The browser starts after the appliance is up: it must ask, and be answered.
    let daemon = Arc::new(
        phone
            .run_in(|| async { ServiceDaemon::new() })
            .await
            .expect("browser daemon"),
    );
    let browser = Arc::clone(&daemon);
    let seen = phone
        .run_in(move || async move { discover(&browser, https_port) })
        .await
        .unwrap_or_else(|e| panic!("{e}\nappliance log:\n{}", app.log().join("\n")));
    let service = &seen.service;
    assert!(
        service.get_fullname().starts_with("Context Vault on "),
        "{}",
        service.get_fullname()
    );
    assert!(
        service.get_hostname().ends_with(".local."),
        "{}",
        service.get_hostname()
    );
    assert_eq!(service.get_property_val_str("path"), Some("/"));
    assert_eq!(
        seen.host_addresses,
        HashSet::from([IpAddr::V4(BOX)]),
        "{} resolves to the LAN address only",
        service.get_hostname()
    );

    // The dashboard's health says the responder is up.
    let health: serde_json::Value = box_ns
        .run_in(move || async move {
            reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap()
                .get(format!("https://127.0.0.1:{https_port}/healthz"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
        .await;
    assert_eq!(health["components"]["mdns"]["state"], "up", "{health}");

    // Stopping the appliance says goodbye: the phone drops the service at once, long
    // before its record would have expired (its TTL is minutes).
    let fullname = service.get_fullname().to_owned();
    let services = daemon.browse(SERVICE_TYPE).expect("browse again");
    let status = app.stop(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let stopped = Instant::now();
    let removed = loop {
        match services.recv_timeout(WAIT.saturating_sub(stopped.elapsed())) {
            Ok(ServiceEvent::ServiceRemoved(_, name)) if name == fullname => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    assert!(removed, "no goodbye for {fullname} within {WAIT:?}");
    let _ = daemon.shutdown();
}
