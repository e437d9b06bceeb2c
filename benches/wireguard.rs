//! WireGuard benchmark: throughput through the appliance's tunnel (wireguard-go) against
//! the direct veth path beneath it, measured side by side in one run, and the time from
//! "add peer" to the first answered request through the new tunnel.
//!
//! ```sh
//! cargo bench --bench wireguard                 # as root; 3 rounds of 5 s per path
//! cargo bench --bench wireguard -- --secs 10 --rounds 5 --peers 5
//! ```
//!
//! It makes two network namespaces, the appliance's and a "phone", joined by a veth
//! pair; starts the real appliance (release build) in the first with WireGuard on, then:
//!
//! 1. **Add peer to first request**, `--peers` times: the clock starts when
//!    `contextvault admin wg add-peer NAME` is run, and stops when the phone, having
//!    brought up the tunnel from the printed `.conf` (wireguard-go + `wg setconf`, as in
//!    the tests), gets `200` from `GET /healthz` over HTTPS through it (polled every
//!    10 ms). It includes the CLI, the supervisor applying the peer, the phone's set-up
//!    and the first handshake. Each peer's tunnel is taken down after its measurement.
//! 2. **Throughput**: `iperf3` (one TCP stream, phone → appliance, `--secs` seconds),
//!    alternating direct (the veth address) and tunnel (the appliance's WireGuard
//!    address) for `--rounds` rounds, so a change in the machine's load hits both.
//!    Reported: each path's median Mbit/s (received), and tunnel/direct.
//!
//! Caveats: both ends and the appliance share the machine (2 cores on the reference
//! box), so wireguard-go's encryption competes with iperf3 on both sides; a veth pair is
//! much faster than any home network, so the direct path shows what the CPU can do
//! without the tunnel, not what a phone will see. Results are printed and written to
//! `target/bench/wireguard-<timestamp>.json`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cv_testkit::netns::{self, Netns};
use cv_testkit::wg::PhoneTunnel;
use cv_testkit::{Launch, TestAppliance};
use serde_json::json;

const BOX_VETH: &str = "198.18.11.1";
const PHONE_VETH: &str = "198.18.11.2";
const TUNNEL_NETWORK: &str = "10.213.77.0/24";
const TUNNEL_SERVER: &str = "10.213.77.1";

struct Options {
    secs: u32,
    rounds: u32,
    peers: u32,
}

fn options() -> Options {
    let mut o = Options {
        secs: 5,
        rounds: 3,
        peers: 3,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = || args.get(i + 1).and_then(|v| v.parse().ok());
        match args[i].as_str() {
            "--secs" => o.secs = value().expect("--secs N"),
            "--rounds" => o.rounds = value().expect("--rounds N"),
            "--peers" => o.peers = value().expect("--peers N"),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// `iperf3 -c TARGET` from the phone; the receiver's Mbit/s.
fn iperf(phone: &Netns, target: &str, secs: u32) -> f64 {
    let out = phone.exec(
        "iperf3",
        &[
            "-c",
            target,
            "-t",
            &secs.to_string(),
            "-J",
            "--connect-timeout",
            "3000",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap()
        / 1e6
}

/// GET /healthz through the tunnel until it answers 200.
async fn first_answer(phone: &Netns, https_port: u16, host: String, ca: Vec<u8>) -> Duration {
    let started = Instant::now();
    phone
        .run_in(move || async move {
            let addr = format!("{TUNNEL_SERVER}:{https_port}").parse().unwrap();
            let client = reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .resolve(&host, addr)
                .timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            let url = format!("https://{host}:{https_port}/healthz");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(r) = client.get(&url).send().await
                    && r.status() == 200
                {
                    return;
                }
                assert!(Instant::now() < deadline, "no answer through the tunnel");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    started.elapsed()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "wireguard benchmark: run it with `cargo bench --bench wireguard` (skipped under cargo test)"
        );
        return std::process::ExitCode::SUCCESS;
    }
    if let Err(why) = netns::can_run(&["ip", "wireguard-go", "wg", "iperf3"]) {
        eprintln!("the wireguard benchmark cannot run here: {why}");
        return std::process::ExitCode::from(2);
    }
    let o = options();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_contextvault"));

    let box_ns = Netns::new("cvbb");
    let phone = Netns::new("cvbp");
    box_ns.link(
        &format!("{BOX_VETH}/24"),
        &phone,
        &format!("{PHONE_VETH}/24"),
    );
    let wg_port = cv_testkit::free_port();
    let interface = netns::unique("cvwb");
    let extra = format!(
        "[wireguard]\ninterface = \"{interface}\"\nnetwork = \"{TUNNEL_NETWORK}\"\nlisten_port = {wg_port}\nendpoint = \"{BOX_VETH}:{wg_port}\"\n[workers]\ncount = 0\n[log]\nlevel = \"warn\"\n"
    );
    let app = TestAppliance::launch_in(
        &exe,
        Launch::Appliance { env: vec![], extra },
        Some(&box_ns),
    )
    .await;
    // The certificate names `localhost`; the client sends it to the tunnel address.
    let host = "localhost".to_owned();
    println!(
        "Context Vault WireGuard benchmark: {} rounds × {} s per path, {} peers; {} cores",
        o.rounds,
        o.secs,
        o.peers,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. Add peer → first answered request.
    let mut add_to_first = Vec::new();
    for i in 0..o.peers {
        let name = format!("phone-{i}");
        let started = Instant::now();
        let out = Command::new(&exe)
            .args(["admin", "--data-dir"])
            .arg(&app.data_dir)
            .args(["wg", "add-peer", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "add-peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = String::from_utf8(out.stdout).unwrap();
        let added = started.elapsed();
        let tunnel = PhoneTunnel::up(&phone, &netns::unique("cvwp"), &conf);
        let through = first_answer(&phone, app.https_port, host.clone(), app.ca_pem()).await;
        let total = added + through;
        println!(
            "  {name}: add-peer {:.1} ms, then tunnel up and first answer {:.1} ms: {:.1} ms",
            added.as_secs_f64() * 1e3,
            through.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
        add_to_first.push(total.as_secs_f64() * 1e3);
        drop(tunnel);
    }

    // 2. Throughput, direct and through a tunnel, alternating.
    let tunnel_conf = {
        let out = Command::new(&exe)
            .args(["admin", "--data-dir"])
            .arg(&app.data_dir)
            .args(["wg", "add-peer", "iperf"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let _tunnel = PhoneTunnel::up(&phone, &netns::unique("cvwp"), &tunnel_conf);
    first_answer(&phone, app.https_port, host.clone(), app.ca_pem()).await;
    let (mut direct, mut tunnel) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        for (path, target, results) in [
            ("direct", BOX_VETH, &mut direct),
            ("tunnel", TUNNEL_SERVER, &mut tunnel),
        ] {
            let mut server = box_ns
                .command("iperf3")
                .args(["-s", "-1"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let mbps = iperf(&phone, target, o.secs);
            let _ = server.wait();
            println!("  round {round}: {path} {mbps:.0} Mbit/s");
            results.push(mbps);
        }
    }
    let (direct_mbps, tunnel_mbps) = (median(&mut direct), median(&mut tunnel));
    let add_median = median(&mut add_to_first);
    let ratio = tunnel_mbps / direct_mbps;
    println!();
    println!(
        "Throughput (iperf3, one TCP stream, phone → appliance, median of {} rounds)",
        o.rounds
    );
    println!("  direct veth   {direct_mbps:>8.0} Mbit/s");
    println!("  WireGuard     {tunnel_mbps:>8.0} Mbit/s   ({ratio:.3}× direct)");
    println!(
        "Add peer → first HTTPS answer through the new tunnel: median {add_median:.1} ms over {} peers",
        o.peers
    );

    let report = json!({
        "direct_mbps": direct,
        "tunnel_mbps": tunnel,
        "direct_median_mbps": direct_mbps,
        "tunnel_median_mbps": tunnel_mbps,
        "tunnel_vs_direct": ratio,
        "add_peer_to_first_answer_ms": add_to_first,
        "add_peer_to_first_answer_median_ms": add_median,
        "seconds_per_run": o.secs,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    cv_testkit::save_bench_report(root, "wireguard", &report);
    drop(app);
    std::process::ExitCode::SUCCESS
}
