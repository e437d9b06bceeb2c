//! The HTTP layer against hostile or clumsy clients: a stranger guessing passphrases,
//! clients that send a request slowly, wrong methods, missing credentials, odd TLS
//! handshakes, and API input at the edges of what the OpenAPI document allows.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use crate::api::{api_request, json_body};
use crate::support::*;

/// An HTTPS client trusting the appliance's CA whose connections come from `source`
/// (a loopback address: 127.0.0.0/8 is all the box's own).
fn client_from(app: &cv_testkit::TestAppliance, source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem()).unwrap())
        .local_address(IpAddr::from(source))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn api_login_with(
    app: &cv_testkit::TestAppliance,
    client: &reqwest::Client,
    pass: &str,
) -> (u16, Value) {
    let resp = client
        .post(app.url("/api/v1/login"))
        .json(&serde_json::json!({"user": OWNER, "passphrase": pass}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn a_stranger_failing_logins_does_not_lock_the_owner_out() {
    let app = appliance_with_owner().await;
    let stranger = client_from(&app, [127, 0, 0, 2]);
    for i in 0..5 {
        let (status, json) = api_login_with(&app, &stranger, "a wrong guess").await;
        assert_eq!(
            (status, json["error"].as_str()),
            (401, Some("login_failed")),
            "guess {i}"
        );
    }
    // The stranger is stopped, even with the right passphrase…
    let (status, json) = api_login_with(&app, &stranger, OWNER_PASS).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (429, Some("throttled")),
        "{json}"
    );
    // …and the owner, on another device, is not.
    let phone = client_from(&app, [127, 0, 0, 1]);
    let (status, json) = api_login_with(&app, &phone, OWNER_PASS).await;
    assert_eq!(status, 200, "{json}");
    // The login page too, from a third device.
    let laptop = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem()).unwrap())
        .local_address(IpAddr::from([127, 0, 0, 3]))
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = login(&app, &laptop, OWNER, OWNER_PASS).await;
    assert_eq!(resp.status(), 303);
}

/// A TLS connection to the appliance (HTTP/1.1: no ALPN offered), reads timing out
/// after `read_timeout`.
fn tls_connect(
    ca_pem: &[u8],
    port: u16,
    read_timeout: Duration,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(read_timeout)).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Sends `head`, then one byte of `trickle` per second (when given), until the server
/// answers or `limit` passes; the answer and when it came.
async fn send_slowly(
    app: &cv_testkit::TestAppliance,
    head: String,
    trickle: bool,
    limit: Duration,
) -> (String, Duration) {
    let (ca_pem, port) = (app.ca_pem(), app.https_port);
    tokio::task::spawn_blocking(move || send_slowly_blocking(&ca_pem, port, &head, trickle, limit))
        .await
        .unwrap()
}

fn send_slowly_blocking(
    ca_pem: &[u8],
    port: u16,
    head: &str,
    trickle: bool,
    limit: Duration,
) -> (String, Duration) {
    let mut tls = tls_connect(ca_pem, port, Duration::from_secs(1));
    let started = Instant::now();
    tls.write_all(head.as_bytes()).unwrap();
    tls.flush().unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // A server that cut us off may already refuse the write: that is fine.
                if trickle {
                    let _ = tls.write_all(b" ");
                    let _ = tls.flush();
                }
            }
            Err(_) => break,
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_request_bodies_and_headers_are_cut_off_with_408() {
    let app = appliance_with_owner().await;
    let port = app.https_port;
    // Headers at once, then a body promised at 1,000 bytes that comes a byte a second.
    let head = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    let (answer, took) = send_slowly(&app, head, true, Duration::from_secs(40)).await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {took:?}: {answer:?}"
    );
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        answer.to_lowercase().contains("connection: close"),
        "{answer}"
    );
    // The 5 s grace and a few bytes' worth more (see cv_web::app::BODY_GRACE).
    assert!(
        took < Duration::from_secs(15),
        "cut off only after {took:?}"
    );

    // The same for the login page's form.
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\nname="
    );
    let (answer, took) = send_slowly(&app, head, true, Duration::from_secs(40)).await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {took:?}: {answer:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "cut off only after {took:?}"
    );

    // Headers that never end: actix-web's own timeout (cv_web::HEADER_TIMEOUT).
    let head = format!("POST /login HTTP/1.1\r\nHost: localhost:{port}\r\n");
    let (answer, took) = send_slowly(&app, head, false, Duration::from_secs(40)).await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {took:?}: {answer:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "cut off only after {took:?}"
    );

    // A body that arrives at once is not affected.
    let (status, _) = api_request(
        &app,
        reqwest::Method::POST,
        "/api/v1/login",
        None,
        json_body(&serde_json::json!({"user": OWNER, "passphrase": OWNER_PASS}).to_string()),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn wrong_methods_name_the_allowed_ones_and_401s_carry_a_challenge() {
    let app = appliance().await;
    let client = app.client();
    for (method, path, allow) in [
        ("TRACE", "/api/v1/capture", "POST"),
        (
            "DELETE",
            "/api/v1/items/00000000-0000-0000-0000-000000000000",
            "GET, HEAD",
        ),
        ("PUT", "/dashboard", "GET, HEAD"),
        ("DELETE", "/login", "GET, HEAD, POST"),
        ("GET", "/vault/lock", "POST"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert_eq!(
            resp.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {path}"
        );
    }
    let resp = client
        .delete(app.url("/api/v1/vault"))
        .send()
        .await
        .unwrap();
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["error"], "method_not_allowed");

    let challenge = |resp: &reqwest::Response| {
        resp.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    // No credentials: the scheme and realm only (RFC 6750 §3.1).
    let resp = client.get(app.url("/api/v1/vault")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(challenge(&resp), r#"Bearer realm="Context Vault API""#);
    // A refused token.
    for token in ["cvt_not-a-real-token", "cvs_not-a-real-session"] {
        let resp = client
            .get(app.url("/api/v1/vault"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{token}");
        assert_eq!(
            challenge(&resp),
            r#"Bearer realm="Context Vault API", error="invalid_token""#,
            "{token}"
        );
    }
    // A wrong passphrase at the API's login.
    let resp = client
        .post(app.url("/api/v1/login"))
        .json(&serde_json::json!({"user": "nobody", "passphrase": "wrong passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        challenge(&resp).starts_with("Bearer "),
        "{}",
        challenge(&resp)
    );
    // The pages' 401s name the login form (no browser dialog: an unknown scheme).
    let csrf = csrf_for(&app, &client, "/login").await;
    let resp = client
        .post(app.url("/login"))
        .form(&[("name", "nobody"), ("passphrase", "wrong"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        challenge(&resp).starts_with(r#"Cookie realm="Context Vault", form-action="/login""#),
        "{}",
        challenge(&resp)
    );
}

/// A TLS 1.2 ClientHello whose SNI `host_name` is `name` (rustls's client never sends
/// an address or an invalid name there, other clients do).
fn client_hello_with_sni(name: &[u8]) -> Vec<u8> {
    let u16be = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
    let mut names = vec![0u8]; // host_name
    names.extend(u16be(name.len()));
    names.extend(name);
    let mut sni = u16be(names.len()).to_vec();
    sni.extend(names);
    let mut exts = vec![0, 0]; // server_name
    exts.extend(u16be(sni.len()));
    exts.extend(sni);
    exts.extend([0, 10, 0, 4, 0, 2, 0, 23]); // supported_groups: secp256r1
    exts.extend([0, 13, 0, 4, 0, 2, 4, 3]); // signature_algorithms: ecdsa_secp256r1_sha256
    exts.extend([0, 11, 0, 2, 1, 0]); // ec_point_formats: uncompressed
    let mut body = vec![3, 3];
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    body.extend([0, 2, 0xc0, 0x2b]); // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    body.extend([1, 0]); // null compression
    body.extend(u16be(exts.len()));
    body.extend(exts);
    let mut handshake = vec![1]; // client_hello
    handshake.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![22, 3, 1];
    record.extend(u16be(handshake.len()));
    record.extend(handshake);
    record
}

#[tokio::test]
async fn handshakes_with_odd_sni_do_not_fill_the_log() {
    let app = appliance().await;
    let port = app.https_port;
    tokio::task::spawn_blocking(move || {
        for i in 0..30 {
            let name: &[u8] = if i % 2 == 0 {
                b"127.0.0.1"
            } else {
                b"not_a_name!"
            };
            let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            sock.write_all(&client_hello_with_sni(name)).unwrap();
            let mut first = [0u8; 1];
            // A ServerHello (22) for the address, an alert (21) for the invalid name:
            // either way rustls has read and judged the SNI.
            sock.read_exact(&mut first).unwrap();
            assert!(first[0] == 22 || first[0] == 21, "{first:?}");
        }
    })
    .await
    .unwrap();
    // The service still answers, and logged nothing about any of it.
    assert_eq!(status_of(&app, &app.client(), "/healthz").await, 200);
    let noisy: Vec<String> = app
        .log()
        .into_iter()
        .filter(|l| l.contains("SNI") || l.contains("alert"))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
}

#[tokio::test]
async fn api_limits_are_the_ones_the_openapi_document_states() {
    let app = appliance_with_owner().await;
    let session = crate::api::api_login(&app, OWNER, OWNER_PASS).await;
    let capture = |body: Value| {
        let session = session.clone();
        let app = &app;
        async move {
            api_request(
                app,
                reqwest::Method::POST,
                "/api/v1/capture",
                Some(&session),
                json_body(&body.to_string()),
            )
            .await
        }
    };
    // 4,096 characters of 4 bytes each: exactly the vault's 16 KiB, accepted.
    let (status, json) = capture(serde_json::json!({"text": "𝄞".repeat(4096)})).await;
    assert_eq!(status, 201, "{json}");
    // One character more, even in ASCII: its own error, not "body too large".
    let (status, json) = capture(serde_json::json!({"text": "x".repeat(4097)})).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (422, Some("text_too_long")),
        "{json}"
    );
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("4096 characters")
    );
    // A body over 64 KiB is still that.
    let (status, json) = capture(serde_json::json!({"text": "x".repeat(70_000)})).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (413, Some("body_too_large")),
        "{json}"
    );
    // White space only, and tags the document refuses.
    for body in [
        serde_json::json!({"text": " \u{3000}\n"}),
        serde_json::json!({"text": "x", "tags": ["\tgarden"]}),
        serde_json::json!({"text": "x", "tags": [" ".repeat(3) + &"t".repeat(64)]}),
    ] {
        let (status, json) = capture(body.clone()).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("bad_request")),
            "{body}"
        );
    }

    crate::api::wait_for_index(&app, &session).await;
    let search = |query: &'static str| crate::api::get_json(&app, &session, query);
    for bad in [
        "/api/v1/search?to=",
        "/api/v1/search?from=2026-1-1",
        "/api/v1/search?kind=",
        "/api/v1/search?archived=1",
        "/api/v1/search?limit=%2B5",
    ] {
        let (status, json) = search(bad).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {json}"
        );
    }
    // `from` after `to` is an empty range, not an error.
    let (status, json) = search("/api/v1/search?from=2026-02-01&to=2026-01-01").await;
    assert_eq!(
        (status, &json["total"]),
        (200, &serde_json::json!(0)),
        "{json}"
    );
    // The search text's limit is in characters too.
    let long = format!("/api/v1/search?q={}", "%C3%A9".repeat(1000));
    let (status, json) = crate::api::get_json(&app, &session, &long).await;
    assert_eq!(status, 200, "1,000 two-byte characters: {json}");

    // A capture token may not lock the vault: 403, as documented.
    let token = create_token(&app, OWNER, "capture", "shortcut");
    let (status, json) = api_request(
        &app,
        reqwest::Method::POST,
        "/api/v1/lock",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (403, Some("forbidden")),
        "{json}"
    );
}
