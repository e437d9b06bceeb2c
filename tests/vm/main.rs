//! The appliance image, booted: `image/test` builds the image and runs these tests with
//! `CV_VM_IMAGE` set to it. Each test boots the real image in QEMU (OVMF UEFI firmware,
//! the image's own GRUB and kernel, user-mode networking with HTTPS forwarded to the
//! host's loopback only), reads its serial console, talks HTTPS to it from the host and
//! runs commands inside through the QEMU guest agent.
//!
//! Boots are slow where QEMU emulates the CPU (about a minute each), so one test walks
//! the appliance's whole first week in one disk's life: first boot, setup in a browser,
//! captures, a clean reboot, a power cut, and the checks of what must (not) have changed.
//! Without `CV_VM_IMAGE` the tests say they were skipped, unless `CV_REQUIRE_VM` is set,
//! when they fail.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod machine;
mod update;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cv_testkit::browser::Browser;
use machine::{Vm, repo, tail};
use serde_json::{Value, json};

/// About three times the slowest first boot seen under TCG on the 2-core build machines
/// (QEMU start to healthy: 55 s idle, 90 s with a build beside it; initdb, the CA and the
/// first worker loading the model in an emulated CPU).
const FIRST_BOOT: Duration = Duration::from_secs(5 * 60);
/// A later boot (no initdb): 35–60 s seen.
const BOOT: Duration = Duration::from_secs(3 * 60);
/// A form submission in the browser (Argon2id in an emulated CPU).
const NAVIGATION: Duration = Duration::from_secs(120);

const OWNER: &str = "olivia";
const OWNER_PASS: &str = "correct horse battery staple";

/// The image's partitions 2 and 3 (root slots A and B): 1 MiB + the 128 MiB ESP, then
/// two 1536 MiB slots (image/build).
const MIB: u64 = 1024 * 1024;
const SLOTS: std::ops::Range<u64> = (129 * MIB)..((129 + 2 * 1536) * MIB);

fn image() -> Option<PathBuf> {
    match std::env::var_os("CV_VM_IMAGE") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var_os("CV_REQUIRE_VM").is_some() => {
            panic!("CV_REQUIRE_VM is set but CV_VM_IMAGE is not: run image/test")
        }
        None => {
            println!("skipped: no image (CV_VM_IMAGE); image/test builds one and runs this");
            None
        }
    }
}

fn artifacts() -> PathBuf {
    let dir = repo().join("target/test-artifacts/vm");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        // A new connection per request: across a reboot, QEMU's user network keeps the
        // host side of an old connection open, and a request on it would wait for the
        // whole timeout.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn url(vm: &Vm, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", vm.port)
}

/// Waits for `/healthz` to answer 200 with every component up and the AI workers up;
/// returns the answer.
async fn wait_healthy(vm: &mut Vm, client: &reqwest::Client, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        vm.assert_running();
        let last = match client.get(url(vm, "/healthz")).send().await {
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                if status == 200
                    && let Ok(json) = serde_json::from_str::<Value>(&body)
                    && json["ai"]["state"] == "up"
                {
                    return json;
                }
                format!("{status}: {body}")
            }
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "/healthz was not 200 with the AI up within {timeout:?}: {last}\nconsole:\n{}",
            tail(&vm.serial(), 60)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `systemctl is-system-running` once the boot is over: `running` (no failed unit).
async fn assert_system_running(vm: &mut Vm) {
    let deadline = Instant::now() + BOOT;
    loop {
        let state = vm.sh("systemctl is-system-running").await.stdout;
        match state.trim() {
            "running" => return,
            "initializing" | "starting" if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            other => {
                let failed = vm.sh("systemctl --failed --no-legend; journalctl -b -p err --no-pager | tail -40").await;
                panic!("the system is {other}, not running:\n{}", failed.stdout);
            }
        }
    }
}

fn assert_every_component_up(health: &Value) {
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["failing"], json!([]), "{health}");
    for (name, component) in health["components"].as_object().unwrap() {
        assert_eq!(component["state"], "up", "component {name}: {health}");
    }
    assert_eq!(health["ai"]["state"], "up", "{health}");
    assert_eq!(
        health["ai"]["jail_missing"],
        json!([]),
        "every jail protection in force: {health}"
    );
}

/// POSTs `body` as JSON to `path` (with `token` as the bearer, if any); the answer must
/// have `status`, and its `field` is returned.
async fn post(
    vm: &Vm,
    client: &reqwest::Client,
    path: &str,
    token: Option<&str>,
    body: Value,
    status: u16,
    field: &str,
) -> String {
    let mut request = client.post(url(vm, path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), status, "POST {path}");
    r.json::<Value>().await.unwrap()[field]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn login(vm: &Vm, client: &reqwest::Client) -> String {
    let body = json!({"user": OWNER, "passphrase": OWNER_PASS});
    post(vm, client, "/api/v1/login", None, body, 200, "token").await
}

async fn capture(vm: &Vm, client: &reqwest::Client, token: &str, text: &str) -> String {
    let body = json!({ "text": text });
    post(vm, client, "/api/v1/capture", Some(token), body, 201, "id").await
}

/// Every capture is there, word for word.
async fn assert_captures(vm: &Vm, client: &reqwest::Client, captures: &[(String, String)]) {
    let token = login(vm, client).await;
    for (id, text) in captures {
        let r = client
            .get(url(vm, &format!("/api/v1/items/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "item {id} ({text})");
        let item: Value = r.json().await.unwrap();
        assert_eq!(item["text"], json!(text), "{item}");
    }
}

/// First-run setup with the code from the console, the recovery key, a capture and a
/// search, in headless Chromium against the VM's forwarded port.
async fn setup_in_a_browser(vm: &Vm, ca_pem: &[u8], setup_code: &str) {
    if let Err(why) = Browser::availability() {
        panic!("the browser flow needs Chromium: {why}");
    }
    let browser = Browser::start(ca_pem, 390, 844).await;
    browser.goto(&url(vm, "/")).await;
    browser.wait_for_path("/setup", NAVIGATION).await;
    browser.submit_setup(setup_code, OWNER, OWNER_PASS).await;
    let key = wait_for_css_text(&browser, ".recovery-key").await;
    assert_eq!(key.split('-').count(), 14, "a recovery key: {key}");
    browser
        .screenshot(&artifacts().join("vm-recovery-key.png"))
        .await;
    browser.click("a[href='/dashboard']").await;
    browser.wait_for_path("/dashboard", NAVIGATION).await;

    browser.goto(&url(vm, "/notes")).await;
    browser
        .type_into(
            "textarea[name=text]",
            "The VM kept the boat trailer receipt",
        )
        .await;
    browser.click("form[action='/notes'] [type=submit]").await;
    browser
        .wait_for_text("boat trailer receipt", NAVIGATION)
        .await;

    browser.goto(&url(vm, "/search?q=trailer")).await;
    browser.wait_for_text("1 result", NAVIGATION).await;
    assert_eq!(browser.text(".notes mark").await, "trailer");
    browser.screenshot(&artifacts().join("vm-search.png")).await;
    browser.quit().await;
}

async fn wait_for_css_text(browser: &Browser, css: &str) -> String {
    cv_testkit::eventually(NAVIGATION, css, || async {
        match browser.try_find(css).await {
            Ok(element) => Some(element.text().await),
            Err(_) => None,
        }
    })
    .await
}

/// The byte ranges of the VM's disk file that the VM wrote (qcow2 clusters of the top
/// layer, over the image).
fn written_ranges(disk: &Path) -> Vec<std::ops::Range<u64>> {
    let out = std::process::Command::new("qemu-img")
        .args(["map", "--output=json", "-U"])
        .arg(disk)
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-img map: {out:?}");
    let map: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    map.iter()
        .filter(|e| e["depth"] == 0 && (e["data"] == true || e["zero"] == true))
        .map(|e| {
            let start = e["start"].as_u64().unwrap();
            start..start + e["length"].as_u64().unwrap()
        })
        .collect()
}

/// Boot timing and hardening, for the record (printed, and kept as an artifact).
async fn report(vm: &mut Vm, report: &mut String) {
    let script = "systemd-analyze; echo; systemd-analyze blame --no-pager | head -15; echo; \
        systemctl show contextvault.service -p ExecMainStartTimestampMonotonic \
        -p ActiveEnterTimestampMonotonic; echo; \
        for u in contextvault.service contextvault-console@tty1.service; do \
        echo \"== systemd-analyze security $u\"; systemd-analyze security --no-pager $u | tail -1; done; \
        echo; systemd-cgls --no-pager -u contextvault.service";
    let out = vm.sh(script).await;
    report.push_str(&out.stdout);
    let show = |key: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let (Some(start), Some(ready)) = (
        show("ExecMainStartTimestampMonotonic"),
        show("ActiveEnterTimestampMonotonic"),
    ) {
        let _ = writeln!(
            report,
            "\nsupervisor start to READY=1: {:.1} s",
            ready.saturating_sub(start) as f64 / 1e6
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_boot_setup_reboot_and_power_cut_keep_everything() {
    let Some(image) = image() else {
        return;
    };
    let dir = artifacts();
    let disk = dir.join("disk.qcow2");
    let _ = std::fs::remove_file(&disk);
    let _ = std::fs::remove_file(disk.with_extension("qcow2.vars"));
    let mut summary = String::new();

    // --- First boot ---
    let mut vm = Vm::start(&image, &disk, free_port(), &dir.join("console-1.log"));
    let setup_code = vm
        .wait_for_console(r"Setup code: ([A-Za-z0-9-]+)", 1, FIRST_BOOT)
        .await;
    let _ = writeln!(
        summary,
        "first boot: QEMU start to the setup code on the console: {:.0} s",
        vm.started.elapsed().as_secs_f64()
    );
    vm.wait_for_console(r"Dashboard: https://", 1, BOOT).await;
    let ca = vm
        .check("cat /var/lib/contextvault/tls/ca.crt")
        .await
        .into_bytes();
    let client = client(&ca);
    let health = wait_healthy(&mut vm, &client, FIRST_BOOT).await;
    let _ = writeln!(
        summary,
        "first boot: QEMU start to /healthz 200 with the AI up: {:.0} s",
        vm.started.elapsed().as_secs_f64()
    );
    assert_every_component_up(&health);
    assert_system_running(&mut vm).await;
    // The screen shows what the serial console does (its console redraws every 2 s;
    // kept for a person to look at).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let screen = dir.join("vm-screen-first-boot.png");
    let _ = std::fs::remove_file(&screen);
    vm.screenshot(&screen);

    // WireGuard on the kernel's implementation (the image has no wireguard-go).
    let links = vm.check("ip -d link show type wireguard").await;
    assert!(
        links.contains("wireguard"),
        "no kernel WireGuard link: {links}"
    );

    // The root file system is read-only; the data partition is btrfs, made at first boot.
    let write = vm.sh("touch /etc/cv-write-probe && echo written").await;
    assert!(!write.ok(), "a write to / worked: {write:?}");
    assert!(write.stderr.contains("Read-only file system"), "{write:?}");
    let root_options = vm.check("findmnt -n -o OPTIONS /").await;
    assert!(root_options.split(',').any(|o| o == "ro"), "{root_options}");
    let data = vm
        .check("findmnt -n -o FSTYPE,SOURCE /var/lib/contextvault; lsblk -n -o PARTLABEL,SIZE")
        .await;
    assert!(data.starts_with("btrfs"), "{data}");
    assert!(data.contains("cv-data"), "{data}");

    // The code also reaches the issue text a login prompt shows (/etc/issue.d).
    let issue = vm.check("cat /etc/issue.d/contextvault.issue").await;
    assert!(issue.contains(&setup_code), "{issue}");

    setup_in_a_browser(&vm, &ca, &setup_code).await;
    // Once the box has an owner the code is gone from the console's file and the issue.
    let gone = format!(
        "for i in $(seq 60); do grep -qF -- '{setup_code}' /run/contextvault/console.json \
         /run/contextvault/issue || exit 0; sleep 1; done; exit 1"
    );
    vm.check(&gone).await;

    let mut captures = Vec::new();
    let token = login(&vm, &client).await;
    for n in 1..=3 {
        let text = format!("Before the reboot, note {n}: the plumber comes on Tuesday");
        captures.push((capture(&vm, &client, &token, &text).await, text));
    }
    report(&mut vm, &mut summary).await;

    // --- A clean reboot ---
    vm.spawn("systemctl reboot").await;
    vm.wait_for_console("Context Vault: booting slot A", 2, BOOT)
        .await;
    let rebooted = Instant::now();
    wait_healthy(&mut vm, &client, BOOT).await;
    let _ = writeln!(
        summary,
        "\nreboot: boot loader to /healthz 200 with the AI up: {:.0} s",
        rebooted.elapsed().as_secs_f64()
    );
    assert_system_running(&mut vm).await;
    assert_captures(&vm, &client, &captures).await;

    let token = login(&vm, &client).await;
    for n in 1..=2 {
        let text = format!("Before the power cut, note {n}: the boiler's serial is 44-1209");
        captures.push((capture(&vm, &client, &token, &text).await, text));
    }

    // --- A power cut: QEMU killed with SIGKILL, then booted again ---
    vm.power_cut();
    let mut vm = Vm::start(&image, &disk, free_port(), &dir.join("console-3.log"));
    let health = wait_healthy(&mut vm, &client, BOOT).await;
    let _ = writeln!(
        summary,
        "after the power cut: QEMU start to /healthz 200 with the AI up: {:.0} s",
        vm.started.elapsed().as_secs_f64()
    );
    assert_every_component_up(&health);
    assert_system_running(&mut vm).await;
    assert_captures(&vm, &client, &captures).await;
    report(&mut vm, &mut summary).await;

    // /etc/passwd was never written: it is older than this boot (and on the read-only
    // root, which no boot wrote, as the disk shows below).
    let passwd = vm
        .check("test /etc/passwd -ot /proc/1 && stat -c %y /etc/passwd")
        .await;
    let _ = writeln!(summary, "/etc/passwd last changed: {}", passwd.trim());
    vm.power_off();

    // Nothing under / changed: no boot wrote a byte of either root slot.
    let written: Vec<_> = written_ranges(&disk)
        .into_iter()
        .filter(|r| r.start < SLOTS.end && SLOTS.start < r.end)
        .collect();
    assert!(
        written.is_empty(),
        "the VM wrote to the root slots: {written:?}"
    );

    std::fs::write(dir.join("boot-report.txt"), &summary).unwrap();
    println!("{summary}");
}
