//! Snapshot and backup benchmark: how long a snapshot takes and what it does to captures
//! at 100,000 items, on real btrfs (a loop device) and real ZFS (zfs-fuse); and backup
//! throughput against `restic backup` of the same directory run by hand.
//!
//! ```sh
//! cargo bench --bench snapshots                        # 100,000 items, btrfs and ZFS
//! CV_BENCH_QUICK=1 cargo bench --bench snapshots       # 10,000 items
//! cargo bench --bench snapshots -- --items 50000 --backends btrfs
//! ```
//!
//! For each backend it starts the release binary (`contextvault run`, as the tests do)
//! with its data directory on a fresh file system, creates an account and a `capture`
//! token, and loads the corpus through `POST /api/v1/capture` (32 in flight). Then:
//!
//! 1. **Captures without snapshots**: open loop, a capture *scheduled* every 10 ms
//!    (100/s) for 10 s, each latency counted from its scheduled time (no coordinated
//!    omission): p50, p99, max.
//! 2. **Captures during snapshots**: the same load while `contextvault admin snapshot
//!    create` runs back to back (each a checkpoint and one atomic snapshot); the
//!    snapshots' times (mean, max: the command's wall clock, from request to answer) and
//!    the captures' p50, p99, max over the same 10 s.
//! 3. **Backup throughput**: `backup init`, then `backup run` twice (a first, full backup
//!    and a second with little new), each its bytes read / wall time; against `restic
//!    backup` run by hand on the same snapshot's directory into a fresh local repository
//!    (same restic, same paths), first and second run. Ratios: ours / by hand.
//!
//! The numbers are printed and saved as `target/bench/snapshots-<unix time>.json`.
//! Caveats: the client, the appliance, PostgreSQL and zfs-fuse share the machine (2
//! cores on the reference box); the loop device and zfs-fuse's file vdev sit on the same
//! disk; every capture commits (an fsync), so the disk's flush latency is in every
//! capture number.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cv_testkit::scratch_fs::{BtrfsScratch, ZfsScratch};
use cv_testkit::{Launch, TestAppliance};
use serde_json::{Value, json};

const OWNER: &str = "olivia";
const PASS: &str = "correct horse battery staple";
const WORDS: [&str; 24] = [
    "river", "market", "garden", "lantern", "harbour", "meadow", "copper", "violin", "orchard",
    "thistle", "pebble", "compass", "willow", "saffron", "granite", "falcon", "juniper", "quartz",
    "ember", "tundra", "cobalt", "marble", "heron", "aspen",
];

struct Options {
    items: usize,
    backends: Vec<String>,
}

fn options() -> Options {
    let quick = std::env::var_os("CV_BENCH_QUICK").is_some();
    let mut o = Options {
        items: if quick { 10_000 } else { 100_000 },
        backends: vec!["btrfs".into(), "zfs".into()],
    };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        match w[0].as_str() {
            "--items" => o.items = w[1].parse().expect("--items N"),
            "--backends" => o.backends = w[1].split(',').map(ToOwned::to_owned).collect(),
            _ => {}
        }
    }
    o
}

fn admin(app: &TestAppliance, args: &[&str]) -> String {
    let out = app.admin(args);
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(n: usize) -> String {
    let mut s = format!("note {n}:");
    let mut x = n.wrapping_mul(2_654_435_761) as u64;
    for _ in 0..(20 + n % 40) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(' ');
        s.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    s
}

/// An HTTP/1.1 client with its own keep-alive connections (as the vault benchmark uses):
/// one HTTP/2 connection carrying every request would measure its multiplexing instead.
fn client(app: &TestAppliance) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem()).unwrap())
        .http1_only()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn load(app: &TestAppliance, token: &str, items: usize) -> f64 {
    let client = client(app);
    let url = app.url("/api/v1/capture");
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, url, token, next) = (
            client.clone(),
            url.clone(),
            token.to_owned(),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, SeqCst);
                if n >= items {
                    return;
                }
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "text": text(n), "tags": [WORDS[n % 7]] }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201);
                if n % 10_000 == 0 && n > 0 {
                    println!("  loaded {n}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    items as f64 / started.elapsed().as_secs_f64()
}

/// Open-loop captures every 10 ms for `secs`; latencies in ms from the scheduled time.
async fn captures(app: &TestAppliance, token: &str, secs: u64) -> Vec<f64> {
    let client = client(app);
    let url = app.url("/api/v1/capture");
    let start = tokio::time::Instant::now();
    let mut handles = Vec::new();
    let n = secs * 100;
    for i in 0..n {
        let at = start + Duration::from_millis(i * 10);
        tokio::time::sleep_until(at).await;
        let (client, url, token) = (client.clone(), url.clone(), token.to_owned());
        handles.push(tokio::spawn(async move {
            let resp = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "text": text(i as usize), "tags": ["bench"] }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            at.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    json!({ "n": v.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0) })
}

/// The parts a backup holds that exist in `dir` (no `wireguard/` while the VPN is off).
fn parts_in(dir: &Path) -> Vec<&'static str> {
    ["postgres", "tls", "wireguard", "config.toml"]
        .into_iter()
        .filter(|p| dir.join(p).exists())
        .collect()
}

fn dir_bytes(path: &Path) -> u64 {
    if path.is_file() {
        return path.metadata().unwrap().len();
    }
    let mut total = 0;
    let mut stack = vec![path.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

/// `restic backup` by hand, as a person would run it on the same directory.
fn restic_by_hand(repo: &Path, source: &Path, paths: &[&str]) -> f64 {
    let password = repo.with_extension("password");
    std::fs::write(&password, "bench-password").unwrap();
    let restic = |args: &[&str]| {
        let out = Command::new("restic")
            .args(args)
            .env("RESTIC_REPOSITORY", repo)
            .env("RESTIC_PASSWORD_FILE", &password)
            .current_dir(source)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !repo.join("config").exists() {
        restic(&["init"]);
    }
    let started = Instant::now();
    let mut args = vec!["backup", "--host", "by-hand"];
    args.extend(paths);
    restic(&args);
    started.elapsed().as_secs_f64()
}

async fn bench_backend(backend: &str, items: usize, work: &Path) -> Value {
    enum Fs {
        B(BtrfsScratch),
        Z(ZfsScratch),
    }
    let size = (items as u64 / 100_000 + 1) * 4096;
    let fs = if backend == "zfs" {
        Fs::Z(ZfsScratch::new(size))
    } else {
        Fs::B(BtrfsScratch::new(size))
    };
    let mount = match &fs {
        Fs::B(b) => b.mount.clone(),
        Fs::Z(z) => z.mount.clone(),
    };
    let repo = work.join(format!("{backend}-repo"));
    let launch = Launch::Appliance {
        env: Vec::new(),
        extra: format!("[backup]\nrepository = \"{}\"\n", repo.display()),
    };
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_contextvault"));
    let app = TestAppliance::launch_on(&exe, launch, &mount).await;
    let pass = app.dir.path().join("pass");
    std::fs::write(&pass, PASS).unwrap();
    admin(
        &app,
        &[
            "create-user",
            OWNER,
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
    );
    let out = admin(
        &app,
        &[
            "create-token",
            "--user",
            OWNER,
            "--scope",
            "capture",
            "--name",
            "bench",
        ],
    );
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("cvt_"))
        .unwrap()
        .to_owned();
    println!("{backend}: loading {items} items…");
    let rate = load(&app, &token, items).await;
    println!("{backend}: {rate:.0} items/s");

    let quiet = stats(captures(&app, &token, 10).await);
    println!("{backend}: captures without snapshots {quiet}");

    let stop = Arc::new(AtomicBool::new(false));
    let snapshotter = {
        let stop = Arc::clone(&stop);
        let exe = exe.clone();
        let data = app.data_dir.clone();
        std::thread::spawn(move || {
            let mut times = Vec::new();
            while !stop.load(SeqCst) {
                let started = Instant::now();
                let out = Command::new(&exe)
                    .args(["admin", "--data-dir"])
                    .arg(&data)
                    .args(["snapshot", "create", "--reason", "bench"])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            times
        })
    };
    let during = stats(captures(&app, &token, 10).await);
    stop.store(true, SeqCst);
    let snap_times = snapshotter.join().unwrap();
    let snaps = stats(snap_times);
    println!("{backend}: snapshots {snaps}; captures during them {during}");

    admin(&app, &["backup", "init"]);
    let mut ours = Vec::new();
    for run in 0..2 {
        let started = Instant::now();
        let line = admin(&app, &["backup", "run"]);
        let secs = started.elapsed().as_secs_f64();
        println!("{backend}: backup {run}: {} ({secs:.1} s)", line.trim());
        ours.push(secs);
        if run == 0 {
            // Something new for the second run.
            captures(&app, &token, 2).await;
            admin(&app, &["snapshot", "create", "--reason", "bench"]);
        }
    }
    // By hand: the newest snapshot's directory (btrfs), the same parts.
    let newest = admin(&app, &["snapshot", "list"])
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (by_hand, bytes) = match &fs {
        Fs::B(b) => {
            let source = b.mount.join(".snapshots").join(&newest);
            let paths = parts_in(&source);
            let bytes: u64 = paths.iter().map(|p| dir_bytes(&source.join(p))).sum();
            let hand_repo = work.join(format!("{backend}-by-hand"));
            let first = restic_by_hand(&hand_repo, &source, &paths);
            let second = restic_by_hand(&hand_repo, &source, &paths);
            (vec![first, second], bytes)
        }
        Fs::Z(_) => {
            // zfs-fuse has no .zfs directory: the live directory, the appliance stopped.
            let source = mount.clone();
            let paths = parts_in(&source);
            let bytes: u64 = paths.iter().map(|p| dir_bytes(&source.join(p))).sum();
            drop(app);
            let hand_repo = work.join(format!("{backend}-by-hand"));
            let first = restic_by_hand(&hand_repo, &source, &paths);
            let second = restic_by_hand(&hand_repo, &source, &paths);
            (vec![first, second], bytes)
        }
    };
    let mb = bytes as f64 / 1e6;
    let report = json!({
        "backend": backend,
        "items": items,
        "load_items_per_s": rate,
        "captures_without_snapshots": quiet,
        "captures_during_snapshots": during,
        "snapshot_ms": snaps,
        "backup": {
            "bytes": bytes,
            "ours_s": ours,
            "by_hand_s": by_hand,
            "ours_mb_per_s": [mb / ours[0], mb / ours[1]],
            "by_hand_mb_per_s": [mb / by_hand[0], mb / by_hand[1]],
            "ratio_ours_to_by_hand": [by_hand[0] / ours[0], by_hand[1] / ours[1]],
        },
    });
    println!("{backend}: {report:#}");
    report
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> std::process::ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "snapshots benchmark: run it with `cargo bench --bench snapshots` (skipped under cargo test)"
        );
        return std::process::ExitCode::SUCCESS;
    }
    let o = options();
    let work = cv_testkit::shared_tempdir();
    let mut results = Vec::new();
    for backend in &o.backends {
        results.push(bench_backend(backend, o.items, work.path()).await);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    cv_testkit::save_bench_report(root, "snapshots", &json!({ "results": results }));
    std::process::ExitCode::SUCCESS
}
