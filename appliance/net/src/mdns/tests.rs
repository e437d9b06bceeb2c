//! Names, records and the choice of addresses. The responder itself, with real multicast
//! between two network namespaces, is tested in `appliance/net/tests/mdns.rs`.

use super::*;

fn advertisement(hostname: &str) -> Advertisement {
    Advertisement {
        hostname: hostname.parse().expect("hostname"),
        https_port: 8443,
        bind: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
        exclude_interfaces: vec!["wg0".to_owned()],
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn iface(name: &str, address: &str) -> InterfaceAddress {
    InterfaceAddress {
        interface: name.to_owned(),
        address: ip(address),
        up: true,
        loopback: false,
        multicast: true,
    }
}

#[test]
fn names_follow_the_hostname() {
    let ad = advertisement("NAS");
    assert_eq!(ad.host_name(), "nas.local.");
    assert_eq!(ad.instance_name(), "Context Vault on nas");
    assert_eq!(
        ad.instance_fullname(),
        "Context Vault on nas._https._tcp.local."
    );
}

#[test]
fn the_instance_name_fits_one_dns_label() {
    let longest = "a".repeat(63);
    let ad = advertisement(&longest);
    assert_eq!(ad.instance_name().len(), 63);
    assert!(ad.instance_name().starts_with("Context Vault on aaa"));
    assert_eq!(ad.host_name(), format!("{longest}.local."));
    // The records build for it all the same.
    ad.service_info(&[ip("192.168.1.20")]).expect("records");
}

#[test]
fn the_records_carry_the_port_the_path_and_the_addresses() {
    let ad = advertisement("nas");
    let info = ad
        .service_info(&[ip("192.168.1.20"), ip("fd00::20")])
        .expect("records");
    assert_eq!(info.get_type(), SERVICE_TYPE);
    assert_eq!(info.get_fullname(), ad.instance_fullname());
    assert_eq!(info.get_hostname(), "nas.local.");
    assert_eq!(info.get_port(), 8443);
    assert_eq!(info.get_property_val_str("path"), Some("/"));
    let mut addresses: Vec<IpAddr> = info.get_addresses().iter().copied().collect();
    addresses.sort();
    assert_eq!(addresses, [ip("192.168.1.20"), ip("fd00::20")]);
}

#[test]
fn only_lan_addresses_of_multicast_interfaces_are_chosen() {
    let interfaces = vec![
        InterfaceAddress {
            loopback: true,
            multicast: false,
            ..iface("lo", "127.0.0.1")
        },
        iface("eth0", "192.168.1.20"),
        iface("eth0", "fe80::1"),
        iface("eth0", "fd00::20"),
        iface("eth1", "169.254.3.4"),
        // The VPN: excluded by name (WireGuard interfaces have no MULTICAST flag
        // either, but the name decides even where one does).
        iface("wg0", "10.8.0.1"),
        InterfaceAddress {
            up: false,
            ..iface("eth2", "192.168.2.1")
        },
        InterfaceAddress {
            multicast: false,
            ..iface("tun0", "10.9.0.1")
        },
        iface("br0", "10.0.0.1"),
        // Twice (two interfaces, or listed twice): announced once.
        iface("br1", "10.0.0.1"),
    ];
    let exclude = ["wg0".to_owned()];
    assert_eq!(
        select_addresses(&interfaces, &[ip("0.0.0.0")], &exclude),
        [ip("10.0.0.1"), ip("192.168.1.20")]
    );
    assert_eq!(
        select_addresses(&interfaces, &[ip("::")], &exclude),
        [ip("10.0.0.1"), ip("192.168.1.20"), ip("fd00::20")]
    );
    assert_eq!(
        select_addresses(&interfaces, &[ip("0.0.0.0"), ip("fd00::20")], &exclude),
        [ip("10.0.0.1"), ip("192.168.1.20"), ip("fd00::20")]
    );
    // Only what the HTTPS socket listens on.
    assert_eq!(
        select_addresses(&interfaces, &[ip("192.168.1.20")], &exclude),
        [ip("192.168.1.20")]
    );
    assert!(select_addresses(&interfaces, &[ip("127.0.0.1")], &exclude).is_empty());
    // Without the exclusion the VPN's address would be chosen.
    assert!(select_addresses(&interfaces, &[ip("0.0.0.0")], &[]).contains(&ip("10.8.0.1")));
}

#[test]
fn a_loopback_only_bind_is_not_reachable_from_the_lan() {
    let mut ad = advertisement("nas");
    assert!(ad.reachable_from_lan());
    ad.bind = vec![ip("127.0.0.1"), ip("::1")];
    assert!(!ad.reachable_from_lan());
    ad.bind.push(ip("192.168.1.20"));
    assert!(ad.reachable_from_lan());
}

#[test]
fn this_machines_interfaces_are_listed() {
    // Every Linux network namespace has a loopback interface.
    let all = interface_addresses();
    assert!(
        all.iter()
            .any(|i| i.loopback && i.address == IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "{all:?}"
    );
    // ...which is never chosen.
    let chosen = select_addresses(&all, &[ip("::")], &[]);
    assert!(chosen.iter().all(|ip| !ip.is_loopback()), "{chosen:?}");
}

#[test]
fn notices_read_for_people() {
    let renamed = Notice::Renamed {
        original: "nas.local.".into(),
        now: "nas-2.local.".into(),
    };
    assert_eq!(
        renamed.to_string(),
        "another device on the LAN already answers as \"nas.local.\"; announced as \
         \"nas-2.local.\" instead (rename one of them)"
    );
}
