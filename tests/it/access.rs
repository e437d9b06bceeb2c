//! The access policy against real network paths: the appliance in its own network
//! namespace, a LAN neighbour (a private address) and a stranger (a public-looking
//! address) in theirs, each joined to it by a veth pair.

use std::time::Duration;

use cv_testkit::netns::{self, Netns};
use cv_testkit::{Launch, TestAppliance};

/// An HTTPS client for a namespace thread: the appliance's CA is not checked against an
/// address it was not issued for, since the test is about who is answered, not TLS.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn only_allowed_networks_are_answered() {
    if !netns::root_net_or_skip("only_allowed_networks_are_answered", &["ip"]) {
        return;
    }
    let box_ns = Netns::new("cvbox");
    let neighbour = Netns::new("cvlan");
    let stranger = Netns::new("cvout");
    box_ns.link("192.168.77.1/24", &neighbour, "192.168.77.2/24");
    // 198.18.0.0/15 is for benchmarks (RFC 2544): not private, so not allowed by default.
    box_ns.link("198.18.7.1/24", &stranger, "198.18.7.2/24");

    let app = TestAppliance::launch_in(
        std::path::Path::new(env!("CARGO_BIN_EXE_contextvault")),
        Launch::Appliance {
            env: vec![],
            extra: String::new(),
        },
        Some(&box_ns),
    )
    .await;
    let (https, http) = (app.https_port, app.http_port);

    let lan = neighbour
        .run_in(move || async move {
            let page = client()
                .get(format!("https://192.168.77.1:{https}/healthz"))
                .send()
                .await
                .unwrap();
            page.status().as_u16()
        })
        .await;
    assert_eq!(lan, 200, "a LAN neighbour is answered");

    let (healthz, page, redirect, acme) = stranger
        .run_in(move || async move {
            let c = client();
            let healthz = c
                .get(format!("https://198.18.7.1:{https}/healthz"))
                .send()
                .await
                .unwrap();
            let healthz = (
                healthz.status().as_u16(),
                healthz.json::<serde_json::Value>().await.unwrap(),
            );
            let page = c
                .get(format!("https://198.18.7.1:{https}/login"))
                .send()
                .await
                .unwrap();
            let page = (page.status().as_u16(), page.text().await.unwrap());
            let redirect = c
                .get(format!("http://198.18.7.1:{http}/login"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            let acme = c
                .get(format!(
                    "http://198.18.7.1:{http}/.well-known/acme-challenge/unknown-token"
                ))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            (healthz, page, redirect, acme)
        })
        .await;
    assert_eq!(healthz.0, 403, "{:?}", healthz.1);
    assert_eq!(healthz.1["error"], "source_refused");
    assert_eq!(page.0, 403);
    assert!(page.1.contains("Not reachable from here"), "{}", page.1);
    assert!(page.1.contains("198.18.7.2"), "{}", page.1);
    assert_eq!(redirect, 403, "plain HTTP refuses strangers too");
    // The ACME HTTP-01 path is reached from anywhere (no challenge pending: 404).
    assert_eq!(acme, 404);
}
