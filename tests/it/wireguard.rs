//! The VPN through the real appliance: `contextvault dev` as root brings up its WireGuard
//! interface (wireguard-go here), and `contextvault admin wg …` adds, lists and revokes
//! peers through the supervisor's control socket; bad input gets a clear error and
//! changes nothing. `wg show` (wireguard-tools) looks at the interface from outside.
//!
//! Bringing an interface up needs root and wireguard-go: without them these tests say
//! why and return, unless `CV_REQUIRE_ROOT_NET=1` makes that a failure. Each test has
//! its own interface name and port (the UAPI socket directory is shared machine-wide).

use std::net::UdpSocket;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cv_net::wg::PrivateKey;
use cv_net::wg::iface::{socket_path, wireguard_go_processes};
use cv_testkit::{Launch, TestAppliance, eventually};

use crate::support::{OWNER, OWNER_PASS, create_member, exe, owner_client, post_form, text_of};

fn root_net_or_skip(test: &str) -> bool {
    cv_testkit::netns::root_net_or_skip(test, &["wireguard-go", "wg", "ip"])
}

/// An interface name of this test run alone.
fn interface_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "cvit{}{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A UDP port nobody uses right now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        stderr(&out),
        stdout(&out)
    );
    stdout(&out)
}

/// Asserts that the command failed and that its error mentions `why`.
fn refused(out: Output, why: &str) {
    assert!(
        !out.status.success(),
        "should have failed: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(err.contains(why), "{why:?} not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Each peer's public key and preshared key (`(none)` when it has none), as `wg show`
/// lists them for the interface.
fn wg_show_preshared_keys(interface: &str) -> Vec<(String, String)> {
    let out = Command::new("wg")
        .args(["show", interface, "preshared-keys"])
        .output()
        .unwrap();
    assert!(out.status.success(), "wg show: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            let (peer, key) = l.split_once('\t').unwrap();
            (peer.to_owned(), key.to_owned())
        })
        .collect()
}

/// The public keys `wg show` lists for the interface.
fn wg_show_peers(interface: &str) -> Vec<String> {
    let out = Command::new("wg")
        .args(["show", interface, "peers"])
        .output()
        .unwrap();
    assert!(out.status.success(), "wg show: {}", stderr(&out));
    stdout(&out).lines().map(str::to_owned).collect()
}

fn field<'t>(conf: &'t str, key: &str) -> &'t str {
    conf.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
        .unwrap_or_else(|| panic!("no {key} in:\n{conf}"))
}

#[tokio::test]
async fn wireguard_peers_are_added_listed_and_revoked_from_the_command_line() {
    if !root_net_or_skip("wireguard_peers_are_added_listed_and_revoked_from_the_command_line") {
        return;
    }
    let interface = interface_name();
    let port = free_udp_port();
    // Dev mode as root runs the interface, on the port and name given on its command
    // line. It has no endpoint (that takes a config file), so adding a peer is refused,
    // saying why.
    let mut dev = TestAppliance::launch(
        &exe(),
        Launch::DevWith(vec![
            "--wireguard-port".into(),
            port.to_string(),
            "--wireguard-interface".into(),
            interface.clone(),
        ]),
    )
    .await;
    let list = eventually(Duration::from_secs(20), "WireGuard up in dev mode", || {
        let out = dev.admin(&["wg", "list"]);
        async move { stdout(&out).contains("state:       up").then_some(out) }
    })
    .await;
    let list = stdout(&list);
    assert!(
        list.contains(&format!("interface:   {interface}")),
        "{list}"
    );
    assert!(list.contains(&format!("listen port: {port}")), "{list}");
    assert!(list.contains("(not set: peers cannot be added)"), "{list}");
    refused(
        dev.admin(&["wg", "add-peer", "phone"]),
        "wireguard.endpoint",
    );
    let (_, health) = dev.health().await;
    assert_eq!(health["components"]["wireguard"]["state"], "up", "{health}");
    assert!(dev.stop(Duration::from_secs(60)).success());
    assert!(!socket_path(&interface.parse().unwrap()).exists());
    assert!(wireguard_go_processes(&interface.parse().unwrap()).is_empty());
    drop(dev);

    // The appliance, with a [wireguard] table: an endpoint and a /29 (5 peers).
    let interface = interface_name();
    let port = free_udp_port();
    let launch = Launch::Appliance {
        env: vec![],
        extra: format!(
            "[wireguard]\ninterface = \"{interface}\"\nlisten_port = {port}\n\
             network = \"10.213.0.0/29\"\nendpoint = \"vault.example.net:{port}\"\n\
             dns = [\"10.213.0.1\"]\n"
        ),
    };
    let mut app = TestAppliance::launch(&exe(), launch).await;
    let list = eventually(Duration::from_secs(20), "WireGuard up", || {
        let out = app.admin(&["wg", "list"]);
        async move {
            stdout(&out)
                .contains("state:       up")
                .then_some(stdout(&out))
        }
    })
    .await;
    let server_key = list
        .lines()
        .find_map(|l| l.strip_prefix("public key:  "))
        .unwrap()
        .to_owned();
    assert!(list.contains("peers:       0"), "{list}");

    // add-peer prints the configuration, and only that, on stdout.
    let conf = ok(app.admin(&["wg", "add-peer", "olivia-phone"]), "add-peer");
    assert!(conf.starts_with("[Interface]\nPrivateKey = "), "{conf}");
    assert_eq!(field(&conf, "Address"), "10.213.0.2/32");
    assert_eq!(field(&conf, "DNS"), "10.213.0.1");
    assert_eq!(field(&conf, "PublicKey"), server_key);
    let psk = field(&conf, "PresharedKey").to_owned();
    assert!(
        conf.contains(&format!("PublicKey = {server_key}\nPresharedKey = {psk}\n")),
        "{conf}"
    );
    assert_eq!(
        field(&conf, "Endpoint"),
        format!("vault.example.net:{port}")
    );
    assert_eq!(field(&conf, "AllowedIPs"), "10.213.0.0/29");
    assert_eq!(field(&conf, "PersistentKeepalive"), "25");
    let peer_key = PrivateKey::from_base64(field(&conf, "PrivateKey"))
        .unwrap()
        .public_key()
        .to_base64();
    // On the interface at once, with its preshared key.
    assert_eq!(wg_show_peers(&interface), std::slice::from_ref(&peer_key));
    assert_eq!(
        wg_show_preshared_keys(&interface),
        [(peer_key.clone(), psk.clone())]
    );
    // The private key is in no file of the appliance; the preshared key only in the
    // registry, which only root may read; neither is in any log line.
    let private = field(&conf, "PrivateKey").to_owned();
    for file in ["peers.json", "server.key"] {
        let text = std::fs::read_to_string(app.data_dir.join("wireguard").join(file)).unwrap();
        assert!(!text.contains(&private), "{file}");
        assert_eq!(text.contains(&psk), file == "peers.json", "{file}");
    }
    use std::os::unix::fs::MetadataExt as _;
    let registry = std::fs::metadata(app.data_dir.join("wireguard/peers.json")).unwrap();
    assert_eq!(registry.mode() & 0o777, 0o600);
    assert!(
        app.log()
            .iter()
            .all(|l| !l.contains(&private) && !l.contains(&psk))
    );

    let list = ok(app.admin(&["wg", "list"]), "list");
    let row = list
        .lines()
        .find(|l| l.starts_with("olivia-phone "))
        .unwrap_or_else(|| panic!("no peer row in:\n{list}"));
    assert!(row.contains("10.213.0.2") && row.contains("never"), "{row}");

    // Bad input: a clear error, and nothing changes.
    refused(
        app.admin(&["wg", "add-peer", "olivia phone"]),
        "invalid peer name",
    );
    refused(app.admin(&["wg", "add-peer", "x/y"]), "contains '/'");
    refused(
        app.admin(&["wg", "add-peer", &"a".repeat(33)]),
        "at most 32",
    );
    refused(
        app.admin(&["wg", "add-peer", "OLIVIA-PHONE"]),
        "a peer named \"olivia-phone\" already exists",
    );
    refused(
        app.admin(&["wg", "revoke", "nobody"]),
        "no peer named \"nobody\"",
    );
    assert_eq!(wg_show_peers(&interface), std::slice::from_ref(&peer_key));
    // The /29 has 5 peer addresses; the sixth peer finds none.
    for i in 3..=6 {
        let conf = ok(
            app.admin(&["wg", "add-peer", &format!("device-{i}")]),
            "add",
        );
        assert_eq!(field(&conf, "Address"), format!("10.213.0.{i}/32"));
    }
    refused(
        app.admin(&["wg", "add-peer", "one-too-many"]),
        "no address is left in 10.213.0.0/29",
    );
    assert_eq!(wg_show_peers(&interface).len(), 5);

    // Revoked: off the interface at once, out of the list; its address is free again.
    let out = ok(app.admin(&["wg", "revoke", "Olivia-Phone"]), "revoke");
    assert!(out.contains("revoked `olivia-phone` (10.213.0.2)"), "{out}");
    assert!(!wg_show_peers(&interface).contains(&peer_key));
    let list = ok(app.admin(&["wg", "list"]), "list");
    assert!(!list.contains("olivia-phone"), "{list}");
    assert!(list.contains("peers:       4"), "{list}");
    let conf = ok(app.admin(&["wg", "add-peer", "tablet"]), "add after revoke");
    assert_eq!(field(&conf, "Address"), "10.213.0.2/32");
    let tablet_psk = field(&conf, "PresharedKey").to_owned();
    assert_ne!(tablet_psk, psk, "a new preshared key for every peer");
    let before_restart = wg_show_preshared_keys(&interface);
    assert_eq!(before_restart.len(), 5);
    assert!(before_restart.iter().any(|(_, k)| *k == tablet_psk));
    assert!(before_restart.iter().all(|(_, k)| k != "(none)"));

    // The peers outlive a restart; the interface is down while the appliance is.
    assert!(app.stop(Duration::from_secs(60)).success());
    assert!(!socket_path(&interface.parse().unwrap()).exists());
    assert!(wireguard_go_processes(&interface.parse().unwrap()).is_empty());
    app.restart().await;
    eventually(Duration::from_secs(20), "WireGuard up again", || {
        let out = app.admin(&["wg", "list"]);
        async move { stdout(&out).contains("peers:       5").then_some(()) }
    })
    .await;
    assert_eq!(wg_show_peers(&interface).len(), 5);
    // Each with the preshared key the registry kept.
    let mut after_restart = wg_show_preshared_keys(&interface);
    let mut before_restart = before_restart;
    after_restart.sort();
    before_restart.sort();
    assert_eq!(after_restart, before_restart);
}

/// What `re` captures (group 1) in `page`, with askama's escapes of `/`, `=` and `+`
/// undone.
fn captured(page: &str, re: &str) -> String {
    let caps = regex::Regex::new(re)
        .unwrap()
        .captures(page)
        .unwrap_or_else(|| panic!("{re} not in page:\n{page}"));
    caps[1]
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x3d;", "=")
        .replace("&#61;", "=")
        .replace("&#x2b;", "+")
        .replace("&#43;", "+")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn the_owner_sets_the_endpoint_on_the_vpn_page_then_adds_a_device() {
    if !root_net_or_skip("the_owner_sets_the_endpoint_on_the_vpn_page_then_adds_a_device") {
        return;
    }
    let interface = interface_name();
    let port = free_udp_port();
    // Dev mode has no config file, so no endpoint: the page is the only place to set it.
    let app = TestAppliance::launch(
        &exe(),
        Launch::DevWith(vec![
            "--wireguard-port".into(),
            port.to_string(),
            "--wireguard-interface".into(),
            interface.clone(),
        ]),
    )
    .await;
    eventually(Duration::from_secs(20), "WireGuard up in dev mode", || {
        let out = app.admin(&["wg", "list"]);
        async move { stdout(&out).contains("state:       up").then_some(()) }
    })
    .await;
    create_member(&app, OWNER, OWNER_PASS);
    let owner = owner_client(&app).await;
    let page = text_of(&app, &owner, "/wireguard").await;
    assert!(page.contains(r#"action="/wireguard/endpoint""#), "{page}");
    assert!(page.contains("not set"), "{page}");
    // Without it, adding a device is refused, saying where to set it.
    let resp = post_form(&app, &owner, "/wireguard/peers", &[("name", "phone")]).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("VPN page"));

    // Checked like the config's `wireguard.endpoint`: the page says what is wrong.
    let resp = post_form(
        &app,
        &owner,
        "/wireguard/endpoint",
        &[("endpoint", "home.example.org")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let page = resp.text().await.unwrap();
    assert!(page.contains("has no port"), "{page}");
    assert!(
        page.contains(r#"value="home.example.org""#),
        "typed text kept: {page}"
    );

    let endpoint = format!("home.example.org:{port}");
    let resp = post_form(
        &app,
        &owner,
        "/wireguard/endpoint",
        &[("endpoint", &endpoint)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(&format!(r#"<dd id="vpn-endpoint">{endpoint}"#)),
        "{page}"
    );
    // The supervisor keeps it in its state directory; `wg list` shows it too.
    let stored = std::fs::read_to_string(app.data_dir.join("wireguard").join("endpoint")).unwrap();
    assert_eq!(stored, format!("{endpoint}\n"));
    let list = ok(app.admin(&["wg", "list"]), "list");
    assert!(list.contains(&format!("endpoint:    {endpoint}")), "{list}");

    // Now a device is added, with its configuration and QR code naming the endpoint.
    let resp = post_form(&app, &owner, "/wireguard/peers", &[("name", "phone")]).await;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    let conf = captured(
        &page,
        r#"(?s)<pre class="code" id="client-config">(.*?)</pre>"#,
    );
    assert!(conf.contains(&format!("Endpoint = {endpoint}")), "{conf}");
    assert!(page.contains("<svg"), "no QR code: {page}");
    assert_eq!(wg_show_peers(&interface).len(), 1);
}

#[tokio::test]
async fn wireguard_off_says_why() {
    // The testkit turns WireGuard off for every other test: this is what they see.
    let app = TestAppliance::start(&exe()).await;
    let (status, health) = app.health().await;
    assert_eq!(status, 200, "off is not unhealthy: {health}");
    assert_eq!(
        health["components"]["wireguard"]["state"], "off",
        "{health}"
    );
    let list = ok(app.admin(&["wg", "list"]), "list");
    assert!(
        list.contains("state:       off (disabled in the config (wireguard.enabled = false))"),
        "{list}"
    );
    refused(
        app.admin(&["wg", "add-peer", "phone"]),
        "WireGuard is off: disabled in the config",
    );
    refused(app.admin(&["wg", "revoke", "phone"]), "WireGuard is off");
}

#[test]
fn wireguard_settings_that_do_not_parse_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, key, why) in [
        (
            "endpoint = \"vault.example.net\"",
            "wireguard.endpoint",
            "which has no port",
        ),
        (
            "endpoint = \"vault.example.net:99999\"",
            "wireguard.endpoint",
            "which has port 99999",
        ),
        (
            "network = \"10.213.0.7/24\"",
            "wireguard.network",
            "write the network address, 10.213.0.0/24",
        ),
        (
            "interface = \"much-too-long-name\"",
            "wireguard.interface",
            "at most 15",
        ),
    ] {
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "version = 1\n[appliance]\ndata_dir = \"{}\"\n[wireguard]\n{extra}\n",
                dir.path().join("var").display()
            ),
        )
        .unwrap();
        for command in ["check", "run"] {
            let out = match command {
                "check" => Command::new(exe())
                    .args(["config", "check", "--config"])
                    .arg(&path)
                    .output(),
                _ => Command::new(exe())
                    .args(["run", "--config"])
                    .arg(&path)
                    .output(),
            }
            .unwrap();
            refused(out, &format!("line 5: `{key}` is "));
        }
        let out = Command::new(exe())
            .args(["config", "check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        refused(out, why);
        assert!(!dir.path().join("var").exists(), "nothing was started");
    }
}
