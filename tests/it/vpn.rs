//! The VPN end to end: the appliance, a "phone" and a stranger each in their own
//! network namespace, joined to the appliance by veth pairs. The appliance runs its
//! WireGuard interface with wireguard-go; a peer is added through the dashboard; the
//! phone brings the tunnel up from the `.conf` the page shows (wireguard-go +
//! `wg setconf`) and fetches `/healthz` over HTTPS through it, trusting only the
//! appliance's CA, with the peer's preshared key in force on both ends; after revocation
//! the same fetch fails. The phone's and the stranger's
//! own addresses are in no allowed network, so they are refused outside the tunnel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cv_testkit::netns::{self, Netns};
use cv_testkit::wg::PhoneTunnel;
use cv_testkit::{Launch, TestAppliance};

use crate::support::{OWNER, OWNER_PASS, create_member, csrf_for, csrf_in, exe, owner_client};

const BOX_PHONE_SIDE: &str = "198.18.21.1";
const PHONE: &str = "198.18.21.2";
const BOX_STRANGER_SIDE: &str = "198.18.22.1";
const TUNNEL_NETWORK: &str = "10.213.5.0/24";
const TUNNEL_SERVER: &str = "10.213.5.1";

/// Undoes askama's HTML escaping of text.
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// What `re` captures (group 1) in `page`, unescaped.
fn captured(page: &str, re: &str) -> String {
    let re = regex::Regex::new(re).unwrap();
    let caps = re
        .captures(page)
        .unwrap_or_else(|| panic!("{re} not in page:\n{page}"));
    unescape(&caps[1])
}

/// `GET https://localhost:PORT/healthz` sent to `addr` (the certificate names
/// `localhost`), trusting only the appliance's CA: the status, or the error.
async fn healthz_via(addr: &str, https_port: u16, ca: &[u8]) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
        .resolve("localhost", format!("{addr}:{https_port}").parse().unwrap())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client
        .get(format!("https://localhost:{https_port}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn a_phone_reaches_the_dashboard_through_the_vpn_until_revoked() {
    if !netns::root_net_or_skip(
        "a_phone_reaches_the_dashboard_through_the_vpn_until_revoked",
        &["ip", "wireguard-go", "wg"],
    ) {
        return;
    }
    let box_ns = Netns::new("cvvb");
    let phone = Netns::new("cvvp");
    let stranger = Netns::new("cvvs");
    box_ns.link(
        &format!("{BOX_PHONE_SIDE}/24"),
        &phone,
        &format!("{PHONE}/24"),
    );
    box_ns.link(
        &format!("{BOX_STRANGER_SIDE}/24"),
        &stranger,
        "198.18.22.2/24",
    );
    let wg_port = cv_testkit::free_port();
    let box_if = netns::unique("cvwv");
    let extra = format!(
        "[wireguard]\ninterface = \"{box_if}\"\nnetwork = \"{TUNNEL_NETWORK}\"\nlisten_port = {wg_port}\nendpoint = \"{BOX_PHONE_SIDE}:{wg_port}\"\n"
    );
    let app = Arc::new(
        TestAppliance::launch_in(
            &exe(),
            Launch::Appliance { env: vec![], extra },
            Some(&box_ns),
        )
        .await,
    );
    create_member(&app, OWNER, OWNER_PASS);
    let (https_port, ca) = (app.https_port, app.ca_pem());

    // The owner adds a peer on the dashboard (from the box itself: loopback).
    let a = Arc::clone(&app);
    let (status, page) = box_ns
        .run_in(move || async move {
            let client = owner_client(&a).await;
            let csrf = csrf_for(&a, &client, "/wireguard").await;
            let resp = client
                .post(a.url("/wireguard/peers"))
                .form(&[("name", "alice-phone"), ("csrf", &csrf)])
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
        .await;
    assert_eq!(status, 200, "{page}");
    let conf = captured(
        &page,
        r#"(?s)<pre class="code" id="client-config">(.*?)</pre>"#,
    );
    assert!(
        conf.contains("[Interface]") && conf.contains("PrivateKey = "),
        "{conf}"
    );
    assert!(
        conf.contains(&format!("Endpoint = {BOX_PHONE_SIDE}:{wg_port}")),
        "{conf}"
    );
    // The download is the same text, and the QR code is drawn inline.
    let download = captured(
        &page,
        r#"href="data:text/plain;charset=utf-8;base64,([^"]+)""#,
    );
    use base64::Engine as _;
    let downloaded = base64::engine::general_purpose::STANDARD
        .decode(download)
        .unwrap();
    assert_eq!(String::from_utf8(downloaded).unwrap(), conf);
    assert!(page.contains("<svg"), "no QR code on the page");

    // The phone brings the tunnel up and reaches /healthz through it.
    let tunnel = PhoneTunnel::up(&phone, &netns::unique("cvwp"), &conf);
    let ca2 = ca.clone();
    let through = phone
        .run_in(move || async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let result = healthz_via(TUNNEL_SERVER, https_port, &ca2).await;
                if result == Ok(200) || Instant::now() > deadline {
                    return result;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    assert_eq!(through, Ok(200), "through the tunnel");

    // Both ends hold the peer's preshared key from the `.conf`: the box for the phone's
    // public key, the phone for the box's.
    let field = |key: &str| {
        conf.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
            .unwrap_or_else(|| panic!("no {key} in:\n{conf}"))
            .to_owned()
    };
    let psk = field("PresharedKey");
    let phone_public = cv_net::wg::PrivateKey::from_base64(&field("PrivateKey"))
        .unwrap()
        .public_key()
        .to_base64();
    let on_box = box_ns.exec("wg", &["show", &box_if, "preshared-keys"]);
    assert_eq!(on_box, format!("{phone_public}\t{psk}\n"));
    let on_phone = tunnel.preshared_keys();
    assert_eq!(on_phone, format!("{}\t{psk}\n", field("PublicKey")));
    assert_ne!(psk, "(none)");
    cv_net::wg::PresharedKey::from_base64(&psk).expect("a preshared key");

    // Outside the tunnel the phone's own address is in no allowed network.
    let ca2 = ca.clone();
    let direct = phone
        .run_in(move || async move { healthz_via(BOX_PHONE_SIDE, https_port, &ca2).await })
        .await;
    assert_eq!(direct, Ok(403), "the phone outside the tunnel");
    // Nor is a stranger's, and a stranger cannot use the tunnel without a key.
    let ca2 = ca.clone();
    let from_stranger = stranger
        .run_in(move || async move { healthz_via(BOX_STRANGER_SIDE, https_port, &ca2).await })
        .await;
    assert_eq!(from_stranger, Ok(403), "a stranger");

    // The dashboard lists the peer with its handshake and traffic.
    let a = Arc::clone(&app);
    let (listing, revoked) = box_ns
        .run_in(move || async move {
            let client = owner_client(&a).await;
            let listing = client
                .get(a.url("/wireguard"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let csrf = csrf_in(&listing);
            let resp = client
                .post(a.url("/wireguard/peers/revoke"))
                .form(&[("name", "alice-phone"), ("csrf", &csrf)])
                .send()
                .await
                .unwrap();
            (
                listing,
                (resp.status().as_u16(), resp.text().await.unwrap()),
            )
        })
        .await;
    let row = captured(
        &listing,
        r#"(?s)(<td title="[^"]*">alice-phone</td>.*?</tr>)"#,
    );
    assert!(row.contains("10.213.5.2"), "{row}");
    assert!(!row.contains("never"), "a handshake happened: {row}");
    assert_eq!(revoked.0, 200, "{}", revoked.1);
    assert!(revoked.1.contains("Revoked alice-phone"), "{}", revoked.1);

    // After revocation the same fetch fails.
    let ca2 = ca.clone();
    let after = phone
        .run_in(move || async move { healthz_via(TUNNEL_SERVER, https_port, &ca2).await })
        .await;
    assert!(
        after.is_err(),
        "still reachable after revocation: {after:?}"
    );
    drop(tunnel);
}
