//! Self-update, end to end: real RAUC bundles, real TUF metadata (tough), the image's own
//! GRUB with its boot counter, in QEMU. `image/test update` runs just this.
//!
//! The host plays the publisher: it signs bundles and metadata with the keys the image
//! was built with (`target/update-keys`, `image/keys`), serves the repository on its
//! loopback (QEMU's user network shows it to the VM as 10.0.2.2), and sends hints signed
//! with the secret it gave the box. One VM lives through:
//!
//! 1. v1 boots; a hint makes it take v2 from the repository; it restarts into v2, which
//!    passes the health gate and is marked good; what was captured under v1 is there.
//! 2. v3, whose AI worker cannot start (its model is missing), is installed; it fails its
//!    gate, the boot loader goes back to v2, the dashboard says why, nothing is lost, and
//!    the next hint does not install v3 again.
//! 3. Each of these is refused, with a clear message and an audit entry, nothing
//!    installed: a hint with a bad signature, a replayed hint, metadata signed by the
//!    wrong key, expired timestamp metadata, an older version, a bundle whose hash does
//!    not match, a bundle with a bad RAUC signature, a bundle for another board.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::machine::{Vm, repo, tail};
use super::{
    BOOT, FIRST_BOOT, OWNER, OWNER_PASS, artifacts, assert_captures, capture, client, free_port,
    image, login, url, wait_healthy,
};

const COMPATIBLE: &str = "contextvault-x86_64";
/// A bundle's download and install under TCG (about 5 minutes seen for the install).
const INSTALL: Duration = Duration::from_secs(15 * 60);
/// The secret the box is given for hints (Standard Webhooks form).
const HINT_SECRET: &str = "whsec_Y29udGV4dHZhdWx0LXVwZGF0ZS1oaW50LXRlc3Qtc2VjcmV0";

/// The keys the image was built with.
fn keys() -> PathBuf {
    std::env::var_os("CV_VM_KEYS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/update-keys"))
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn publish_tool() -> PathBuf {
    repo().join("target/release/contextvault-publish")
}

/// Adds `bundle` as `version` to the repository at `repo_dir`, signed with `tuf_keys`.
fn publish(repo_dir: &Path, tuf_keys: &Path, bundle: &Path, version: &str, compatible: &str) {
    publish_with(repo_dir, tuf_keys, bundle, version, compatible, &[]);
}

fn publish_with(
    repo_dir: &Path,
    tuf_keys: &Path,
    bundle: &Path,
    version: &str,
    compatible: &str,
    extra: &[&str],
) {
    run(Command::new(publish_tool())
        .arg("add")
        .arg("--repo")
        .arg(repo_dir)
        .arg("--keys")
        .arg(tuf_keys)
        .arg("--bundle")
        .arg(bundle)
        .args(["--version", version, "--compatible", compatible])
        .args(extra));
}

/// A RAUC bundle of `version` for `compatible` from `root` (an ext4 image), signed with
/// the RAUC keys in `rauc_keys`.
fn bundle(root: Option<&Path>, version: &str, rauc_keys: &Path, out: &Path) -> PathBuf {
    let mut command = Command::new(repo().join("image/bundle"));
    command
        .args(["--version", version])
        .arg("--keys")
        .arg(rauc_keys)
        .arg("--out")
        .arg(out);
    if let Some(root) = root {
        command.arg("--root").arg(root);
    }
    run(&mut command);
    out.to_owned()
}

/// A small bundle (a 16 MiB ext4 image): enough for every refusal, which comes before
/// anything is installed. Built with `rauc bundle` itself, for any board and key.
fn small_bundle(
    dir: &Path,
    version: &str,
    compatible: &str,
    cert: &Path,
    key: &Path,
    out: &Path,
) -> PathBuf {
    let content = dir.join(format!("small-{version}-{compatible}"));
    let _ = std::fs::remove_dir_all(&content);
    std::fs::create_dir_all(&content).unwrap();
    // Some incompressible bytes: RAUC refuses a squashfs of a single block.
    let files = dir.join(format!("small-files-{version}-{compatible}"));
    std::fs::create_dir_all(&files).unwrap();
    let mut noise = vec![0u8; 256 * 1024];
    rand::fill(&mut noise[..]);
    std::fs::write(files.join("noise"), noise).unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "cv-root", "-d"])
        .arg(&files)
        .arg(content.join("root.ext4"))
        .arg("16M"));
    std::fs::write(
        content.join("manifest.raucm"),
        format!(
            "[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat=verity\n\n\
             [image.rootfs]\nfilename=root.ext4\n"
        ),
    )
    .unwrap();
    let _ = std::fs::remove_file(out);
    run(Command::new("rauc")
        .arg("bundle")
        .arg(format!("--cert={}", cert.display()))
        .arg(format!("--key={}", key.display()))
        .arg(&content)
        .arg(out));
    out.to_owned()
}

/// A static file server for the update repository, on the host's loopback: GET with
/// `Range: bytes=N-` (resumed downloads), and a root that the test swaps.
struct RepoServer {
    root: Arc<Mutex<PathBuf>>,
    port: u16,
}

impl RepoServer {
    async fn start(root: &Path) -> RepoServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let root = Arc::new(Mutex::new(root.to_owned()));
        let shared = root.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let root = shared.lock().unwrap().clone();
                tokio::spawn(serve_one(stream, root));
            }
        });
        RepoServer { root, port }
    }

    fn serve(&self, root: &Path) {
        *self.root.lock().unwrap() = root.to_owned();
    }

    /// The repository's URL as the VM sees it.
    fn url_for_vm(&self) -> String {
        format!("http://10.0.2.2:{}/", self.port)
    }
}

async fn serve_one(mut stream: tokio::net::TcpStream, root: PathBuf) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default().to_owned();
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let from: u64 = lines
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("range")
                .then(|| value.trim().to_owned())
        })
        .and_then(|v| v.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or(0);
    let file = root.join(path.trim_start_matches('/'));
    let ok = !path.contains("..") && request.starts_with("GET ");
    let Ok(bytes) = (if ok {
        tokio::fs::read(&file).await
    } else {
        Err(std::io::Error::other("refused"))
    }) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    let total = bytes.len() as u64;
    let from = from.min(total);
    let status = if from > 0 {
        format!(
            "206 Partial Content\r\nContent-Range: bytes {from}-{}/{total}",
            total.saturating_sub(1)
        )
    } else {
        "200 OK".to_owned()
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
         Connection: close\r\n\r\n",
        total - from
    );
    if stream.write_all(header.as_bytes()).await.is_ok() {
        let _ = stream.write_all(&bytes[from as usize..]).await;
    }
    let _ = stream.shutdown().await;
}

/// A signed hint, as a publisher's webhook sends it; its status code and JSON answer.
async fn send_hint(
    vm: &Vm,
    client: &reqwest::Client,
    secret: &str,
    id: &str,
    timestamp: i64,
) -> (u16, Value) {
    let body = json!({"type": "update.published"}).to_string();
    let secret = cv_update::hint::HintSecret::parse(secret).unwrap();
    let mut request = client.post(url(vm, "/api/v1/update/hint"));
    for (name, value) in cv_update::hint::headers(&secret, id, timestamp, body.as_bytes()) {
        request = request.header(name, value);
    }
    let r = request
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// [`send_hint`] with a good signature, sent again while the box says it has had too
/// many hints this minute (its flood limit, 429); must be taken (202).
async fn hint_taken(vm: &Vm, client: &reqwest::Client, id: &str) {
    for _ in 0..20 {
        let (code, answer) = send_hint(vm, client, HINT_SECRET, id, now()).await;
        match code {
            202 => return,
            429 => tokio::time::sleep(Duration::from_secs(10)).await,
            _ => panic!("hint {id}: {code} {answer}"),
        }
    }
    panic!("hint {id}: still 429 after 200 s");
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `GET /api/v1/update` as the owner (a failed request, while the box restarts, is
/// `None`).
async fn update_status(vm: &Vm, client: &reqwest::Client, token: &str) -> Option<Value> {
    let r = client
        .get(url(vm, "/api/v1/update"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// Polls the update status until `done` holds; returns it.
async fn wait_update(
    vm: &mut Vm,
    client: &reqwest::Client,
    token: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    loop {
        vm.assert_running();
        if let Some(status) = update_status(vm, client, token).await {
            if done(&status) {
                return status;
            }
            last = status;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; the updater says {last}\nconsole:\n{}",
            tail(&vm.serial(), 40)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn message(status: &Value) -> String {
    status["message"].as_str().unwrap_or_default().to_owned()
}

/// The owners' audit entries about updates, newest first (through the guest agent).
async fn audit(vm: &mut Vm) -> String {
    vm.check(
        "runuser -u contextvault -- psql -h /var/lib/contextvault/run/postgres -U contextvault -d contextvault \
         -At -c \"SELECT event || ': ' || detail FROM audit_events WHERE event LIKE 'update%' \
         ORDER BY id DESC\"",
    )
    .await
}

/// The root slot booted and the version running.
async fn running(vm: &mut Vm) -> (String, String) {
    let slot = vm
        .check("tr ' ' '\\n' </proc/cmdline | sed -n 's/^rauc.slot=//p'")
        .await;
    let version = vm.check(". /etc/os-release; echo \"$IMAGE_VERSION\"").await;
    (slot.trim().to_owned(), version.trim().to_owned())
}

/// `/healthz` polled every half second from a task: the longest time it did not answer
/// 200.
struct Downtime {
    longest: Arc<Mutex<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl Downtime {
    fn watch(client: reqwest::Client, healthz: String) -> Downtime {
        let longest = Arc::new(Mutex::new(Duration::ZERO));
        let shared = longest.clone();
        let task = tokio::spawn(async move {
            let mut down_since: Option<Instant> = None;
            loop {
                let up = matches!(
                    client
                        .get(&healthz)
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await,
                    Ok(r) if r.status() == 200
                );
                match (up, down_since) {
                    (false, None) => down_since = Some(Instant::now()),
                    (true, Some(since)) => {
                        let gap = since.elapsed();
                        let mut longest = shared.lock().unwrap();
                        if gap > *longest {
                            *longest = gap;
                        }
                        down_since = None;
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Downtime { longest, task }
    }

    fn stop(self) -> Duration {
        self.task.abort();
        *self.longest.lock().unwrap()
    }
}

/// A fresh repository at `dir/name` holding one bundle, signed with the TUF keys in
/// `tuf_keys`.
fn repo_with(
    dir: &Path,
    name: &str,
    tuf_keys: &Path,
    bundle: &Path,
    version: &str,
    compatible: &str,
    extra: &[&str],
) -> PathBuf {
    let repo_dir = dir.join(format!("repo-{name}"));
    let _ = std::fs::remove_dir_all(&repo_dir);
    publish_with(&repo_dir, tuf_keys, bundle, version, compatible, extra);
    repo_dir
}

/// Serves `repo_dir`, forgets the metadata the box trusted since (so that each case meets
/// it like a box fresh from its image), sends a hint, and waits for the check it causes;
/// the updater's message, which must contain `expect`. Nothing may have been installed.
#[allow(clippy::too_many_arguments)]
async fn refused(
    vm: &mut Vm,
    client: &reqwest::Client,
    token: &str,
    server: &RepoServer,
    repo_dir: &Path,
    what: &str,
    expect: &str,
    summary: &mut String,
) {
    server.serve(repo_dir);
    vm.check("rm -rf /var/lib/contextvault/update/tuf/*").await;
    let before = update_status(vm, client, token).await.unwrap()["last_check"].clone();
    let id = format!("refusal-{}", what.replace(' ', "-"));
    hint_taken(vm, client, &id).await;
    let status = wait_update(vm, client, token, what, BOOT, |s| {
        s["phase"] == "idle" && s["last_check"] != before
    })
    .await;
    let said = message(&status);
    assert!(said.contains(expect), "{what}: the updater says {status}");
    assert_eq!(status["problem"], true, "{what}: {status}");
    let trial = vm.sh("ls /var/lib/contextvault/update/trial*").await;
    assert!(!trial.ok(), "{what}: a trial record was made: {trial:?}");
    let audit = audit(vm).await;
    let first = audit.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("update_refused: ") && first.contains(expect),
        "{what}: the newest audit entry is {first:?}"
    );
    let _ = writeln!(summary, "refused, {what}: {said}");
}

/// Whether `path` exists and is newer than `than`.
fn newer(path: &Path, than: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(path), modified(than)), (Some(a), Some(b)) if a > b)
}

/// v3: the system in `root_fs` without its AI model, as 0.1.2.
fn broken_bundle(dir: &Path, root_fs: &Path, keys: &Path, out: &Path) {
    let broken_root = dir.join("broken-root.ext4");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(root_fs)
        .arg(&broken_root));
    run(Command::new("debugfs")
        .args(["-w", "-R", "rm /usr/lib/contextvault/models/model.onnx"])
        .arg(&broken_root));
    let listing = run(Command::new("debugfs")
        .args(["-R", "ls -l /usr/lib/contextvault/models"])
        .arg(&broken_root));
    assert!(!listing.contains("model.onnx"), "{listing}");
    bundle(Some(&broken_root), "0.1.2", keys, out);
    let _ = std::fs::remove_file(&broken_root);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_signed_hint_installs_v2_a_broken_v3_rolls_back_and_bad_updates_are_refused() {
    let Some(image) = image() else {
        return;
    };
    let dir = artifacts().join("update");
    // What a run leaves, but the two big bundles while they are newer than the root file
    // system they were made from (they take minutes to make).
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.ends_with("v2.raucb") && !path.ends_with("v3.raucb") {
            let _ = std::fs::remove_dir_all(&path);
            let _ = std::fs::remove_file(&path);
        }
    }
    let keys = keys();
    let tuf_keys = keys.join("tuf");
    let mut summary = String::new();

    // --- The publisher's bundles: v2 (0.1.1, the same system) and v3 (0.1.2, whose AI
    // model is missing) from the image's root file system; small ones for the refusals ---
    let root_fs = std::fs::canonicalize(&image)
        .unwrap()
        .with_extension("root.ext4");
    assert!(
        root_fs.exists(),
        "no root file system beside the image: {root_fs:?}"
    );
    // Made while the VM boots and refuses the bad updates below (minutes each).
    let (v2, v3) = (dir.join("v2.raucb"), dir.join("v3.raucb"));
    let bundles = {
        let (dir, root_fs, keys, v2, v3) = (
            dir.clone(),
            root_fs.clone(),
            keys.clone(),
            v2.clone(),
            v3.clone(),
        );
        std::thread::spawn(move || {
            let started = Instant::now();
            if !newer(&v2, &root_fs) {
                bundle(Some(&root_fs), "0.1.1", &keys, &v2);
            }
            let built = started.elapsed();
            if !newer(&v3, &root_fs) {
                broken_bundle(&dir, &root_fs, &keys, &v3);
            }
            format!(
                "bundle 0.1.1: {} MB, ready in {:.0} s (beside a booting VM)",
                std::fs::metadata(&v2).unwrap().len() / 1_000_000,
                built.as_secs_f64()
            )
        })
    };

    // Someone else's keys: TUF and RAUC.
    let other = dir.join("other-keys");
    run(Command::new(repo().join("image/keys")).arg(&other));
    let small = |version: &str, compatible: &str, keys: &Path, name: &str| {
        small_bundle(
            &dir,
            version,
            compatible,
            &keys.join("rauc/signing.cert.pem"),
            &keys.join("rauc/signing.key.pem"),
            &dir.join(format!("{name}.raucb")),
        )
    };
    let b = small("0.0.9", COMPATIBLE, &keys, "older");
    let older = repo_with(&dir, "older", &tuf_keys, &b, "0.0.9", COMPATIBLE, &[]);
    let b = small("0.2.0", COMPATIBLE, &keys, "good-small");
    let wrong_key = repo_with(
        &dir,
        "wrong-key",
        &other.join("tuf"),
        &b,
        "0.2.0",
        COMPATIBLE,
        &[],
    );
    let expired = repo_with(
        &dir,
        "expired",
        &tuf_keys,
        &b,
        "0.2.0",
        COMPATIBLE,
        &["--timestamp-expires-days", "-1"],
    );
    let bad_hash = repo_with(&dir, "bad-hash", &tuf_keys, &b, "0.2.0", COMPATIBLE, &[]);
    for entry in std::fs::read_dir(bad_hash.join("targets")).unwrap() {
        // Same length, other bytes: only the hash can tell.
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let b = small("0.2.0", COMPATIBLE, &other, "other-signer");
    let bad_signature = repo_with(
        &dir,
        "bad-signature",
        &tuf_keys,
        &b,
        "0.2.0",
        COMPATIBLE,
        &[],
    );
    let b = small("0.2.0", "contextvault-arm64", &keys, "other-board");
    let other_board_bundle = repo_with(
        &dir,
        "other-board-bundle",
        &tuf_keys,
        &b,
        "0.2.0",
        COMPATIBLE,
        &[],
    );
    let other_board = repo_with(
        &dir,
        "other-board",
        &tuf_keys,
        &b,
        "0.2.0",
        "contextvault-arm64",
        &[],
    );

    let repo_dir = dir.join("repo");
    let server = RepoServer::start(&repo_dir).await;

    // --- v1 boots and is claimed; it refuses every hint until it has a secret ---
    let disk = dir.join("disk.qcow2");
    let mut vm = Vm::start(&image, &disk, free_port(), &dir.join("console.log"));
    vm.wait_for_console(r"Dashboard: https://", 1, FIRST_BOOT)
        .await;
    let ca = vm
        .check("cat /var/lib/contextvault/tls/ca.crt")
        .await
        .into_bytes();
    let client = client(&ca);
    wait_healthy(&mut vm, &client, FIRST_BOOT).await;
    vm.check(&format!(
        "printf '%s\\n' '{OWNER_PASS}' >/run/owner-pass && \
         contextvault admin create-user {OWNER} --passphrase-file /run/owner-pass >/dev/null && \
         rm /run/owner-pass"
    ))
    .await;
    let (code, answer) = send_hint(&vm, &client, HINT_SECRET, "before-a-secret", now()).await;
    assert_eq!(code, 403, "a box with no hint secret: {answer}");
    let mut captures = Vec::new();
    let token = login(&vm, &client).await;
    for n in 1..=2 {
        let text = format!("Captured under v1, note {n}: the gutter needs clearing");
        captures.push((capture(&vm, &client, &token, &text).await, text));
    }
    vm.check(&format!(
        "umask 077 && printf '%s\\n' '{HINT_SECRET}' >/var/lib/contextvault/update-hint.secret && \
         cat >>/var/lib/contextvault/config.toml <<'EOF'\n\n[update]\nrepository = \"{}\"\n\
         hint_secret_file = \"/var/lib/contextvault/update-hint.secret\"\ngate_timeout_minutes = 6\nEOF\n\
         systemctl restart contextvault.service",
        server.url_for_vm()
    ))
    .await;
    wait_healthy(&mut vm, &client, BOOT).await;
    let token = login(&vm, &client).await;
    let status = wait_update(&mut vm, &client, &token, "the updater starts", BOOT, |s| {
        s["enabled"] == true
    })
    .await;
    assert_eq!(status["version"], "0.1.0", "{status}");
    assert_eq!(status["slot"], "A", "{status}");
    assert_eq!(running(&mut vm).await, ("A".to_owned(), "0.1.0".to_owned()));

    // --- Refused, each with a clear message and an audit entry; nothing installed ---
    let (code, answer) = send_hint(
        &vm,
        &client,
        "whsec_bm90LXRoZS1ib3gncy1zZWNyZXQtYXQtYWxsLXJlYWxseQ==",
        "forged",
        now(),
    )
    .await;
    assert_eq!(code, 401, "a hint signed with another secret: {answer}");
    let _ = writeln!(
        summary,
        "refused, a hint with a bad signature: 401 {answer}"
    );
    let (code, answer) = send_hint(&vm, &client, HINT_SECRET, "stale", now() - 3600).await;
    assert_eq!(code, 401, "a stale hint: {answer}");
    let _ = writeln!(summary, "refused, a hint an hour old: 401 {answer}");
    refused(
        &mut vm,
        &client,
        &token,
        &server,
        &older,
        "an older version",
        "older than the running 0.1.0",
        &mut summary,
    )
    .await;
    // The hint of the case above, again.
    let (code, answer) =
        send_hint(&vm, &client, HINT_SECRET, "refusal-an-older-version", now()).await;
    assert_eq!(code, 409, "a replayed hint: {answer}");
    let _ = writeln!(summary, "refused, a replayed hint: 409 {answer}");
    let hints = audit(&mut vm).await;
    for needle in [
        "update_hint_refused: hint \"forged\" refused (401)",
        "update_hint_refused: hint \"stale\" refused (401)",
        "update_hint_refused: hint \"refusal-an-older-version\" refused (409)",
    ] {
        assert!(
            hints.contains(needle),
            "{needle} not in the audit log:\n{hints}"
        );
    }
    for (served, what, expect) in [
        (
            &wrong_key,
            "metadata signed by the wrong key",
            "not signed by the trusted keys",
        ),
        (&expired, "expired timestamp metadata", "expired"),
        (&bad_hash, "a bundle whose hash does not match", "SHA-256"),
        (
            &bad_signature,
            "a bundle with a bad RAUC signature",
            "RAUC signature does not verify",
        ),
        (
            &other_board_bundle,
            "a bundle for another board",
            "not this box",
        ),
        (
            &other_board,
            "metadata for another board only",
            "nothing for this box",
        ),
    ] {
        refused(
            &mut vm,
            &client,
            &token,
            &server,
            served,
            what,
            expect,
            &mut summary,
        )
        .await;
    }
    assert_eq!(running(&mut vm).await, ("A".to_owned(), "0.1.0".to_owned()));

    // --- 1. A signed hint: v2 is downloaded, installed, booted, confirmed ---
    let built = tokio::task::spawn_blocking(move || bundles.join().unwrap())
        .await
        .unwrap();
    let _ = writeln!(summary, "{built}");
    publish(&repo_dir, &tuf_keys, &v2, "0.1.1", COMPATIBLE);
    server.serve(&repo_dir);
    vm.check("rm -rf /var/lib/contextvault/update/tuf/*").await;
    let downtime = Downtime::watch(client.clone(), url(&vm, "/healthz"));
    let hinted = Instant::now();
    hint_taken(&vm, &client, "hint-v2").await;
    let mut downloaded = None;
    let mut installed = None;
    let deadline = Instant::now() + INSTALL;
    // Phase by phase, until the boot loader starts the new slot.
    while !vm.serial().contains("Context Vault: booting slot B") {
        vm.assert_running();
        assert!(
            Instant::now() < deadline,
            "v2 was not installed and booted within {INSTALL:?}; console:\n{}",
            tail(&vm.serial(), 40)
        );
        let asked = hinted.elapsed();
        match update_status(&vm, &client, &token).await {
            Some(s) => {
                let phase = s["phase"].as_str().unwrap_or_default();
                if downloaded.is_none()
                    && matches!(phase, "verifying" | "installing" | "ready" | "restarting")
                {
                    downloaded = Some(asked);
                }
                if installed.is_none() && matches!(phase, "ready" | "restarting") {
                    installed = Some(asked);
                }
                assert!(
                    !(phase == "idle" && s["problem"] == true && message(&s).contains("0.1.1")),
                    "the update to 0.1.1 failed: {s}"
                );
            }
            // Installed and restarting at once: the box stopped answering between two
            // looks, so the install ended by the time of this one.
            None if downloaded.is_some() && installed.is_none() => installed = Some(asked),
            None => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let booted = hinted.elapsed();
    let token = loop {
        vm.assert_running();
        assert!(
            hinted.elapsed() < booted + BOOT,
            "v2 never answered a login"
        );
        if let Ok(r) = client
            .post(url(&vm, "/api/v1/login"))
            .json(&json!({"user": OWNER, "passphrase": OWNER_PASS}))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            && r.status() == 200
        {
            break r.json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let serving = hinted.elapsed();
    let status = wait_update(&mut vm, &client, &token, "v2 is confirmed", BOOT, |s| {
        message(s).starts_with("Updated from 0.1.0 to 0.1.1")
    })
    .await;
    let confirmed = hinted.elapsed();
    wait_healthy(&mut vm, &client, BOOT).await;
    let down = downtime.stop();
    assert_eq!(status["version"], "0.1.1", "{status}");
    assert_eq!(status["slot"], "B", "{status}");
    assert_eq!(running(&mut vm).await, ("B".to_owned(), "0.1.1".to_owned()));
    let rauc = vm
        .check("rauc status --detailed --output-format=json")
        .await;
    let rauc: Value = serde_json::from_str(&rauc).unwrap();
    assert_eq!(rauc["booted"], "B", "{rauc}");
    let slot_b = rauc["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_object()?.values().next().cloned())
        .find(|s| s["bootname"] == "B")
        .unwrap();
    assert_eq!(slot_b["boot_status"], "good", "{rauc}");
    assert_captures(&vm, &client, &captures).await;
    let text = "Captured under v2: the chimney sweep is booked".to_owned();
    captures.push((capture(&vm, &client, &token, &text).await, text));
    let audit_v2 = audit(&mut vm).await;
    assert!(
        audit_v2.contains("update_confirmed: Updated from 0.1.0 to 0.1.1"),
        "{audit_v2}"
    );
    let _ = writeln!(
        summary,
        "0.1.0 -> 0.1.1, times from the hint:\n  download done: {:.0} s\n  installed: {:.0} s \
         (install {:.0} s)\n  the boot loader starts slot B: {:.0} s\n  the vault serves again: \
         {:.0} s\n  marked good: {:.0} s (gate and mark-good {:.0} s after serving)\n  longest \
         time /healthz was not 200: {:.0} s",
        downloaded.unwrap_or_default().as_secs_f64(),
        installed.unwrap_or_default().as_secs_f64(),
        installed
            .unwrap_or_default()
            .saturating_sub(downloaded.unwrap_or_default())
            .as_secs_f64(),
        booted.as_secs_f64(),
        serving.as_secs_f64(),
        confirmed.as_secs_f64(),
        confirmed.saturating_sub(serving).as_secs_f64(),
        down.as_secs_f64()
    );

    // --- 2. v3 cannot start its AI worker: installed, refused by the gate, rolled back ---
    publish(&repo_dir, &tuf_keys, &v3, "0.1.2", COMPATIBLE);
    let hinted = Instant::now();
    hint_taken(&vm, &client, "hint-v3").await;
    vm.wait_for_console("Context Vault: booting slot A", 2, INSTALL)
        .await;
    let into_v3 = hinted.elapsed();
    // The gate fails, the slot is marked bad, and the boot loader goes back to B.
    vm.wait_for_console("Context Vault: booting slot B", 2, INSTALL)
        .await;
    let back = hinted.elapsed();
    wait_healthy(&mut vm, &client, BOOT).await;
    let token = login(&vm, &client).await;
    let status = wait_update(
        &mut vm,
        &client,
        &token,
        "the rollback is reported",
        BOOT,
        |s| message(s).starts_with("Update to 0.1.2 failed"),
    )
    .await;
    let report = message(&status);
    assert!(report.contains("— rolled back to 0.1.1"), "{status}");
    assert!(
        report.contains("AI worker"),
        "the reason names the worker: {status}"
    );
    assert_eq!(status["failed_versions"], json!(["0.1.2"]), "{status}");
    assert_eq!(running(&mut vm).await, ("B".to_owned(), "0.1.1".to_owned()));
    assert_captures(&vm, &client, &captures).await;
    let audit_v3 = audit(&mut vm).await;
    assert!(
        audit_v3.contains("update_rolled_back: Update to 0.1.2 failed"),
        "{audit_v3}"
    );
    let _ = writeln!(
        summary,
        "0.1.1 -> 0.1.2 (no model) and back: slot A booted {:.0} s after the hint, slot B \
         again {:.0} s after it\n  the dashboard says: {report}",
        into_v3.as_secs_f64(),
        back.as_secs_f64()
    );
    // The next hint does not install it again.
    hint_taken(&vm, &client, "hint-v3-again").await;
    let status = wait_update(&mut vm, &client, &token, "v3 is left alone", BOOT, |s| {
        message(s).contains("failed its health check here before")
    })
    .await;
    assert_eq!(status["phase"], "idle", "{status}");
    let _ = writeln!(summary, "the next hint: {}", message(&status));
    assert_eq!(
        vm.serial().matches("Context Vault: booting slot").count(),
        4,
        "no other restart"
    );

    let _ = writeln!(summary, "\naudit, newest first:\n{}", audit(&mut vm).await);
    std::fs::write(dir.join("update-report.txt"), &summary).unwrap();
    println!("{summary}");
    vm.power_off();
}
