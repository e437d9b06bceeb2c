//! The jailed AI worker, for real: the supervisor of a running appliance builds the jail,
//! `contextvault worker` loads the real model in it, and the test speaks to it over the
//! socket the supervisor hands out on its control socket (as the vault service does).
//!
//! What the jail keeps the worker from is checked against the worker's own jail: a shell
//! is entered into the running worker's network, mount and pid namespaces, as the
//! worker's uid (`nsenter`), and tries what the worker must not be able to do.

use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cv_control::{ControlClient, WorkerStarted};
use cv_testkit::{Launch, TestAppliance};
use cv_worker::Message;
use tokio::net::UnixStream;

use crate::support::exe;

/// The model directory of `CV_MODEL_DIR`, or `None` (the test is skipped, saying why)
/// unless `CV_REQUIRE_MODEL=1` makes its absence a failure.
pub fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CV_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/models"));
    match cv_inference::ModelFiles::in_dir(&dir) {
        Ok(_) => Some(dir),
        Err(e) if std::env::var("CV_REQUIRE_MODEL").is_ok_and(|v| v == "1") => {
            panic!("CV_REQUIRE_MODEL=1, but {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// An appliance (as root, so with the full jail) whose workers load the test model.
pub async fn appliance_with_workers(workers: &str) -> Option<TestAppliance> {
    let models = model_dir()?;
    if !is_root() {
        eprintln!("skipped: the appliance's jail needs root");
        return None;
    }
    let extra = format!(
        "[workers]\nmodels_dir = \"{}\"\n{workers}",
        models.display()
    );
    let launch = Launch::Appliance {
        env: Vec::new(),
        extra,
    };
    Some(TestAppliance::launch(&exe(), launch).await)
}

/// Asks the supervisor for a worker, and waits for its hello.
async fn spawn(app: &TestAppliance) -> (WorkerStarted, UnixStream) {
    let control = ControlClient::new(app.layout().control_socket());
    let (started, fd) = control.spawn_worker().await.expect("a worker");
    let std = StdUnixStream::from(fd);
    std.set_nonblocking(true).unwrap();
    let mut stream = UnixStream::from_std(std).unwrap();
    let hello = tokio::time::timeout(
        Duration::from_secs(60),
        cv_worker::read_message_async(&mut stream),
    )
    .await
    .expect("hello in time")
    .expect("a hello");
    match hello {
        Message::Hello {
            provider,
            note,
            dimensions,
            pid,
        } => {
            assert_eq!(provider, "cpu");
            // Built without CUDA support, the CPU is what it prefers.
            assert_eq!(note, "");
            assert_eq!(dimensions, 384);
            // Process 1 of its own pid namespace.
            assert_eq!(pid, 1);
        }
        other => panic!("expected a hello, got {other:?}"),
    }
    (started, stream)
}

async fn embed(stream: &mut UnixStream, id: u64, texts: &[&str]) -> Message {
    let request = Message::Embed {
        id,
        texts: texts.iter().map(|t| t.to_string()).collect(),
    };
    cv_worker::write_message_async(stream, &request)
        .await
        .unwrap();
    cv_worker::read_message_async(stream).await.unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn ns(pid: &str, kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

/// Runs `script` with bash inside the worker's network, mount and pid namespaces, as the
/// worker's uid and gid; returns (exit code, stdout + stderr).
fn in_worker_jail(pid: u32, uid: u32, gid: u32, script: &str) -> (i32, String) {
    let out = Command::new("nsenter")
        .args(["--target", &pid.to_string()])
        .args([
            "--net", "--mount", "--pid", "--ipc", "--uts", "--root", "--wd",
        ])
        .args(["--setuid", &uid.to_string(), "--setgid", &gid.to_string()])
        .args(["--", "/bin/bash", "-c", script])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn the_real_worker_runs_jailed_and_embeds() {
    let Some(app) = appliance_with_workers("").await else {
        return;
    };
    let (started, mut stream) = spawn(&app).await;
    let missing: Vec<String> = started
        .jail
        .missing()
        .map(|p| format!("{}: {}", p.label, p.detail))
        .collect();
    assert!(started.jail.is_complete(), "missing: {missing:?}");
    assert_eq!(started.jail.mode, "root");

    // It answers with the real model: meaning, not words.
    let answer = embed(
        &mut stream,
        1,
        &[
            "my tooth hurts",
            "book a dentist appointment",
            "buy oat milk",
        ],
    )
    .await;
    let Message::Embedded { id, vectors } = answer else {
        panic!("expected vectors, got {answer:?}");
    };
    assert_eq!(id, 1);
    assert_eq!(vectors.len(), 3);
    assert!(
        cosine(&vectors[0], &vectors[1]) > cosine(&vectors[0], &vectors[2]),
        "a toothache is closer to the dentist than to milk"
    );
    // ONNX Runtime's usage-event client is off before it starts: it does not complain
    // that the jail has no CA bundle and no home for a device id.
    let noise: Vec<String> = app
        .log()
        .into_iter()
        .filter(|l| l.contains("telemetry") || l.contains("CA bundle"))
        .collect();
    assert!(noise.is_empty(), "{noise:#?}");

    // Seen from the host: a non-root uid, other network and pid namespaces.
    let pid = started.pid.expect("the worker's host pid");
    let worker = cv_storage::OsUser::lookup("contextvault-worker")
        .unwrap()
        .unwrap();
    let (uid, gid) = (worker.uid.as_raw(), worker.gid.as_raw());
    assert_eq!(cv_testkit::uid_of(pid), Some(uid));
    let p = pid.to_string();
    assert_ne!(ns(&p, "net"), ns("self", "net"));
    assert_ne!(ns(&p, "pid"), ns("self", "pid"));
    assert_ne!(ns(&p, "mnt"), ns("self", "mnt"));
    let devices = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    let interfaces: Vec<&str> = devices
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{devices}");

    // From inside its jail: no way to the host's 127.0.0.1.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (code, out) = in_worker_jail(
        pid,
        uid,
        gid,
        &format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"),
    );
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("connected"), "{out}");
    assert!(out.contains("Connection refused"), "{out}");
    assert!(
        listener.accept().is_err(),
        "the host listener saw a connection"
    );

    // No writable place but /tmp: not the root, the system, the model, or /dev/shm.
    for path in ["/x", "/etc/x", "/usr/x", "/models/x", "/dev/x", "/proc/x"] {
        let (code, out) = in_worker_jail(pid, uid, gid, &format!("echo > {path}"));
        assert_ne!(code, 0, "{path} was writable: {out}");
    }
    let (code, out) = in_worker_jail(pid, uid, gid, "echo scratch > /tmp/x && cat /tmp/x");
    assert_eq!((code, out.trim()), (0, "scratch"));

    // No host process in sight: its /proc lists the worker (1) and this shell.
    let (code, out) = in_worker_jail(pid, uid, gid, "ls /proc | grep -E '^[0-9]+$'");
    assert_eq!(code, 0, "{out}");
    let pids: Vec<u32> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(pids.contains(&1), "{pids:?}");
    assert!(pids.len() <= 4, "{pids:?}");
    assert!(!pids.contains(&app.supervisor_pid()), "{pids:?}");

    // The service's own pool has a worker up too, and says so.
    let health = cv_testkit::eventually(Duration::from_secs(90), "local AI up", || async {
        let (_, health) = app.health().await;
        (health["ai"]["state"] == "up").then_some(health)
    })
    .await;
    assert_eq!(health["ai"]["provider"], "cpu");
    assert_eq!(health["ai"]["jail_missing"], serde_json::json!([]));

    // Closing the socket ends the worker; the supervisor reports how.
    drop(stream);
    let control = ControlClient::new(app.layout().control_socket());
    let ended = control
        .stop_worker(started.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ended.status, "exit status 0");
    assert!(!ended.oom_killed);
}

/// The memory-limit file of the cgroup `pid` is in, on cgroup v1 or v2.
fn memory_limit_files(pid: u32) -> Vec<PathBuf> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if controllers.split(',').any(|c| c == "memory") {
            let dir = PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            // Memory first, then memory + swap (which may not be below it).
            return vec![
                dir.join("memory.limit_in_bytes"),
                dir.join("memory.memsw.limit_in_bytes"),
            ];
        }
        if controllers.is_empty() {
            let dir = PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            return vec![dir.join("memory.max"), dir.join("memory.swap.max")];
        }
    }
    panic!("no memory cgroup for {pid}: {cgroups}");
}

fn memory_usage(limit_file: &std::path::Path) -> u64 {
    let dir = limit_file.parent().unwrap();
    let file = if dir.join("memory.usage_in_bytes").exists() {
        dir.join("memory.usage_in_bytes")
    } else {
        dir.join("memory.current")
    };
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_worker_over_its_memory_limit_is_oom_killed_and_a_new_one_serves() {
    let Some(app) = appliance_with_workers("").await else {
        return;
    };
    let (started, mut stream) = spawn(&app).await;
    // The engine bounds its own memory (one text tokenized at a time, batches within a
    // token budget), so no request of the vault service's makes it grow much. To make
    // the real worker exceed its limit, the limit of its running cgroup is lowered to
    // just above what the loaded model uses: the first batch of long texts needs more.
    let files = memory_limit_files(started.pid.expect("pid"));
    let limit = (memory_usage(&files[0]) + (2 << 20)).to_string();
    if files[1].exists() && files[1].ends_with("memory.memsw.limit_in_bytes") {
        std::fs::write(&files[0], &limit).unwrap();
        std::fs::write(&files[1], &limit).unwrap();
    } else {
        std::fs::write(&files[0], &limit).unwrap();
    }
    let long = "the quick brown fox jumps over the lazy dog ".repeat(40);
    let texts: Vec<&str> = vec![long.as_str(); 64];
    let request = Message::Embed {
        id: 7,
        texts: texts.iter().map(|t| t.to_string()).collect(),
    };
    cv_worker::write_message_async(&mut stream, &request)
        .await
        .unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(120),
        cv_worker::read_message_async(&mut stream),
    )
    .await
    .expect("the worker answered or died in time");
    assert!(
        matches!(answer, Err(cv_worker::ProtocolError::Closed)),
        "the worker should have died, got {answer:?}"
    );
    let control = ControlClient::new(app.layout().control_socket());
    let ended = control
        .stop_worker(started.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(ended.oom_killed, "{ended:?}");
    assert!(ended.status.contains("SIGKILL"), "{ended:?}");

    // The next worker gets the configured limit again, and serves.
    let (_, mut stream) = spawn(&app).await;
    let answer = embed(&mut stream, 8, &texts).await;
    assert!(
        matches!(answer, Message::Embedded { id: 8, .. }),
        "{answer:?}"
    );
}

/// Waits until the pool's only worker is in `state`; returns its host pid.
async fn worker_in_state(
    pool: &cv_worker::pool::Pool<cv_web::ai::ControlSpawner>,
    state: cv_worker::pool::SlotState,
) -> u32 {
    cv_testkit::eventually(Duration::from_secs(90), "the worker's state", || async {
        let status = pool.status();
        let slot = &status.slots[0];
        (slot.state == state)
            .then(|| slot.worker.as_ref().and_then(|w| w.info.pid))
            .flatten()
    })
    .await
}

#[tokio::test]
async fn killed_and_hung_workers_are_replaced_and_callers_still_answered() {
    use cv_worker::pool::{Pool, PoolConfig, SlotState};
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let Some(app) = appliance_with_workers("").await else {
        return;
    };
    // The pool the vault service runs, here driven by the test, against the real
    // supervisor and real jailed workers.
    let control = ControlClient::new(app.layout().control_socket());
    let config = PoolConfig {
        workers: 1,
        request_timeout: Duration::from_secs(10),
        stop_grace: Duration::from_secs(1),
        ..PoolConfig::default()
    };
    let deadline = config.answer_deadline();
    let pool = Pool::start(cv_web::ai::ControlSpawner::new(control), config);
    let first = worker_in_state(&pool, SlotState::Ready).await;

    // Killed in the middle of a request that takes seconds: the request is retried on a
    // replacement and answered.
    let long = "the committee discussed the budget for the new library wing at length ".repeat(12);
    let texts: Vec<String> = (0..40).map(|i| format!("{i} {long}")).collect();
    let caller = {
        let pool = pool.clone();
        let texts = texts.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            (pool.embed(texts).await, started.elapsed())
        })
    };
    let busy = worker_in_state(&pool, SlotState::Busy).await;
    assert_eq!(busy, first);
    kill(Pid::from_raw(busy as i32), Signal::SIGKILL).unwrap();
    let (result, took) = caller.await.unwrap();
    let vectors = result.expect("answered by the replacement");
    assert_eq!(vectors.len(), 40);
    assert!(took < deadline, "{took:?}");
    let status = pool.status();
    assert_eq!(status.restarts, 1);
    let error = status.last_error.expect("the kill is reported").message;
    assert!(error.contains("exited during a request"), "{error}");

    // Hung (stopped, as by a deadlock): after the 10 s timeout it is killed, replaced,
    // and the request answered by the new worker.
    let second = worker_in_state(&pool, SlotState::Ready).await;
    assert_ne!(second, first);
    kill(Pid::from_raw(second as i32), Signal::SIGSTOP).unwrap();
    let started = std::time::Instant::now();
    let vectors = pool
        .embed(vec!["is anyone there?".to_owned()])
        .await
        .expect("answered by the replacement");
    let took = started.elapsed();
    assert_eq!(vectors.len(), 1);
    assert!(took >= Duration::from_secs(10), "{took:?}");
    assert!(took < deadline, "{took:?}");
    let status = pool.status();
    assert_eq!(status.restarts, 2);
    let error = status.last_error.expect("the hang is reported").message;
    assert!(error.contains("did not answer within 10 s"), "{error}");
    assert!(!cv_testkit::is_alive(second));

    // Later requests are served by the new worker.
    let third = worker_in_state(&pool, SlotState::Ready).await;
    assert!(third != first && third != second);
    assert_eq!(pool.embed(texts[..3].to_vec()).await.unwrap().len(), 3);
    pool.shutdown().await;
}
