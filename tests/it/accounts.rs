//! Setup, login, sessions, household members, over real HTTPS.

use crate::support::*;

#[tokio::test]
async fn setup_needs_the_printed_code_then_creates_the_owner() {
    let app = appliance().await;
    let client = app.client();

    let resp = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/setup");

    let csrf = csrf_for(&app, &client, "/setup").await;
    let form = |code: &str, pass2: &str| {
        vec![
            ("setup_code".to_owned(), code.to_owned()),
            ("name".to_owned(), "Olivia".to_owned()),
            ("passphrase".to_owned(), OWNER_PASS.to_owned()),
            ("passphrase_confirm".to_owned(), pass2.to_owned()),
            ("csrf".to_owned(), csrf.clone()),
        ]
    };

    let wrong = client
        .post(app.url("/setup"))
        .form(&form("AAAA-BBBB-CCCC", OWNER_PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    assert!(wrong.text().await.unwrap().contains("setup code"));

    let code = app.setup_code();
    // The box's own screen shows the code and where to go (console.json in run/, since
    // no systemd runtime directory is set).
    let console_file = app.layout().run_dir().join("console.json");
    let console = console_status(&console_file, |c| {
        c["setup_code"] == code.as_str() && c["status"] == "ok"
    })
    .await;
    let dashboard = console["dashboard"].as_array().unwrap();
    assert!(
        dashboard[0]
            .as_str()
            .unwrap()
            .ends_with(&format!(".local:{}/", app.https_port)),
        "{console}"
    );
    assert!(
        dashboard.iter().skip(1).all(|u| {
            let u = u.as_str().unwrap();
            u.starts_with("https://") && u.ends_with(&format!(":{}/", app.https_port))
        }),
        "{console}"
    );
    // The components are /healthz's (the database check is the service's own).
    assert!(
        console["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "database" && c["state"] == "up"),
        "{console}"
    );
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&console_file), 0o600);
    let issue_file = console_file.with_file_name("issue");
    assert_eq!(mode(&issue_file), 0o644);
    let issue = std::fs::read_to_string(&issue_file).unwrap();
    assert!(issue.contains(&format!("Setup code: {code}\n")), "{issue}");

    let mismatch = client
        .post(app.url("/setup"))
        .form(&form(&code, "something else entirely"))
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), 400);
    // The form comes back with the code and the name as typed, never the passphrases.
    let again = mismatch.text().await.unwrap();
    assert!(again.contains("do not match"), "{again}");
    assert!(
        again.contains(&format!(r#"name="setup_code" type="text" value="{code}""#)),
        "the setup code is gone: {again}"
    );
    assert!(again.contains(r#"value="Olivia""#), "{again}");
    assert!(!again.contains(OWNER_PASS), "a passphrase is echoed back");

    // Typed sloppily: lower case, spaces instead of dashes.
    let sloppy = code.to_lowercase().replace('-', " ");
    let ok = client
        .post(app.url("/setup"))
        .form(&form(&sloppy, OWNER_PASS))
        .send()
        .await
        .unwrap();
    // The answer shows the new vault's recovery key, once, and leads to the dashboard.
    assert_eq!(ok.status(), 200);
    let page = ok.text().await.unwrap();
    let key = recovery_key_in(&page);
    assert!(page.contains(r#"href="/dashboard""#));
    let bundle = stored_bundle(&app).await;
    let recovery = cv_crypto::vault::RecoveryKey::parse(&key).unwrap();
    assert!(
        bundle.unlock_with_recovery(&recovery).is_ok(),
        "the key shown is the one that opens the stored vault"
    );

    let dash = client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(dash.status(), 200);
    let html = dash.text().await.unwrap();
    assert!(
        html.contains("olivia"),
        "the dashboard (now the home page) names the signed-in user"
    );
    assert!(
        html.contains("unlocked"),
        "setup leaves the new vault unlocked"
    );
    // The appliance's components are on the owner's System page.
    let system = text_of(&app, &client, "/system").await;
    assert!(system.contains("postgres") || system.contains("PostgreSQL"));

    // Claimed: the code leaves the screen (and the login prompt's issue file).
    console_status(&console_file, |c| c.get("setup_code").is_none()).await;
    assert!(
        !std::fs::read_to_string(&issue_file)
            .unwrap()
            .contains("Setup code"),
    );

    // Setup is closed now, even with the right code.
    let again = app.client();
    let resp = again.get(app.url("/setup")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let csrf = csrf_for(&app, &again, "/login").await;
    let resp = again
        .post(app.url("/setup"))
        .form(&[
            ("setup_code", code.as_str()),
            ("name", "mallory"),
            ("passphrase", "mallory's passphrase"),
            ("passphrase_confirm", "mallory's passphrase"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert_ne!(resp.status(), 200);
}

#[tokio::test]
async fn login_logout_and_the_session_cookie() {
    let app = appliance_with_owner().await;
    let client = app.client();
    let resp = login(&app, &client, OWNER, OWNER_PASS).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/home");
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-cv_session="))
        .expect("a session cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "cookie lacks {attr}: {cookie}");
    }

    let dash = client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(dash.status(), 200);
    let csrf = csrf_in(&dash.text().await.unwrap());
    let out = client
        .post(app.url("/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let after = client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(after.status(), 303);
    assert!(location(&after).starts_with("/login"));
}

#[tokio::test]
async fn plain_http_only_redirects_and_pages_carry_security_headers() {
    let app = appliance_with_owner().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = plain
        .get(format!("http://localhost:{}/dashboard?x=1", app.http_port))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(
        location(&resp),
        format!("https://localhost:{}/dashboard?x=1", app.https_port)
    );

    let resp = app.client().get(app.url("/login")).send().await.unwrap();
    let h = resp.headers();
    let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(h.get("strict-transport-security").is_some());
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
    let html = resp.text().await.unwrap();
    assert!(!html.contains("<script"), "pages work without JavaScript");
    // Everything the page loads comes from the appliance: no absolute URL in any
    // src or href (stylesheet, icon, links to other sites' assets).
    for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(
            !html.contains(attr),
            "external reference {attr:?} in the page"
        );
    }
}

#[tokio::test]
async fn healthz_and_the_ca_download() {
    let app = appliance().await;
    let (status, body) = app.health().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["components"]["postgres"]["state"], "up", "{body}");
    assert_eq!(body["components"]["vault"]["state"], "up", "{body}");

    let client = app.client();
    let der = client.get(app.url("/ca.crt")).send().await.unwrap();
    assert_eq!(der.status(), 200);
    assert_eq!(der.headers()["content-type"], "application/x-x509-ca-cert");
    let der = der.bytes().await.unwrap();
    let pem = client
        .get(app.url("/ca.pem"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&pem[..], &app.ca_pem()[..]);
    let info = cv_net::tls::cert_info_from_pem(&pem).unwrap();
    assert!(
        info.subject.contains("Context Vault local CA"),
        "{}",
        info.subject
    );
    assert!(
        der.len() > 200 && der[0] == 0x30,
        "DER starts with a SEQUENCE"
    );

    let trust = text_of(&app, &client, "/trust").await;
    assert!(
        trust.contains(&info.sha256_fingerprint),
        "the trust page shows the CA fingerprint"
    );
    assert!(trust.contains("iOS") && trust.contains("Android"));
    // Addresses to type, complete: with the port, and IPv6 in brackets.
    let port = app.https_port;
    for address in [
        format!("https://localhost:{port}/"),
        format!("https://[::1]:{port}/"),
    ] {
        assert!(trust.contains(&address), "{address} not in {trust}");
    }

    // The System page shows the same CA fingerprint under the same words, to compare.
    let label = "CA fingerprint (SHA-256)";
    assert!(trust.contains(label), "{trust}");
    create_member(&app, OWNER, OWNER_PASS);
    let owner = owner_client(&app).await;
    let dashboard = text_of(&app, &owner, "/system").await;
    let shown = format!(
        r#"<dt>{label}</dt><dd class="fingerprint">{}</dd>"#,
        info.sha256_fingerprint
    );
    assert!(dashboard.contains(&shown), "{shown} not in {dashboard}");
}

#[tokio::test]
async fn the_admin_cli_explains_its_errors() {
    let app = appliance_with_owner().await;
    let out = app.create_user(OWNER, "another passphrase", false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let out = app.create_user("bad name!", "another passphrase", false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid user name"));

    let out = app.create_user("shorty", "short", false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"));

    let out = app.create_user("admin2", "admin passphrase 2", true);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin"));

    let elsewhere = cv_testkit::shared_tempdir();
    let pass = elsewhere.path().join("p");
    std::fs::write(&pass, "a good passphrase\n").unwrap();
    let out = std::process::Command::new(exe())
        .args(["admin", "--data-dir"])
        .arg(elsewhere.path())
        .args(["create-user", "nobody", "--passphrase-file"])
        .arg(&pass)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is contextvault running"));
}
