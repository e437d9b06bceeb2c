//! AI worker benchmark: what the jail and the socket cost, against the same engine in
//! this process, measured side by side in one run.
//!
//! ```sh
//! cargo bench --bench worker            # as root, after scripts/fetch-model target/models
//! ```
//!
//! It starts the release binary as an appliance (`contextvault run`, as root, so every
//! worker gets its full jail: namespaces, read-only root, cgroup limits) whose workers
//! load the model from `CV_MODEL_DIR` (default `target/models`), and asks its supervisor
//! for workers over the control socket, as the vault service does. Then:
//!
//! 1. **Spawn to first answer**, 5 times: from the `spawn_worker` request to the answer
//!    of a one-text embed request (the jail is built, the worker execs, loads ONNX
//!    Runtime and the model, says hello, answers), split into "spawned" (the supervisor's
//!    answer with the socket), "hello" and "first answer".
//! 2. **Single-query latency**: 300 one-text requests (5 to 30 words) to a warm worker
//!    through its socket, p50/p99, and the same texts embedded by the engine in this
//!    process (one thread, like the worker at its default one-core CPU limit).
//! 3. **Throughput**: 1,000 mixed-length texts (5 to 200 words), sent to the worker in
//!    requests of 64 (what the service sends), sentences/s, against the engine in this
//!    process with the same texts and batching. The Python reference comparison is
//!    `cargo bench -p cv-inference` (same model and machine).
//!
//! Results are printed and written to `target/bench/worker-<timestamp>.json`.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cv_control::ControlClient;
use cv_inference::{EmbedOptions, Embedder, ModelFiles};
use cv_testkit::{Launch, TestAppliance};
use cv_worker::Message;
use serde_json::json;
use tokio::net::UnixStream;

const SPAWNS: usize = 5;
const QUERIES: usize = 300;
const TEXTS: usize = 1_000;
const REQUEST_TEXTS: usize = 64;

const WORDS: &[&str] = &[
    "the",
    "meeting",
    "about",
    "budget",
    "was",
    "moved",
    "to",
    "friday",
    "call",
    "dentist",
    "remember",
    "buy",
    "milk",
    "bread",
    "garden",
    "tomatoes",
    "need",
    "water",
    "every",
    "morning",
    "project",
    "deadline",
    "review",
    "draft",
    "report",
    "family",
    "dinner",
    "sunday",
    "train",
    "tickets",
    "holiday",
    "booked",
    "doctor",
    "said",
    "blood",
    "pressure",
    "fine",
    "walk",
    "more",
    "idea",
    "app",
    "that",
    "tracks",
    "books",
    "read",
    "library",
    "return",
    "before",
    "late",
    "fee",
    "insurance",
    "renewal",
    "next",
    "month",
];

/// Deterministic texts of `min..=max` words.
fn texts(n: usize, min: usize, max: usize, seed: u64) -> Vec<String> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = min + (next() as usize) % (max - min + 1);
            (0..len)
                .map(|_| WORDS[(next() as usize) % WORDS.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

struct Worker {
    id: u64,
    stream: UnixStream,
    next_id: u64,
}

impl Worker {
    async fn embed(&mut self, texts: &[String]) -> Vec<Vec<f32>> {
        self.next_id += 1;
        let request = Message::Embed {
            id: self.next_id,
            texts: texts.to_vec(),
        };
        cv_worker::write_message_async(&mut self.stream, &request)
            .await
            .unwrap();
        match cv_worker::read_message_async(&mut self.stream)
            .await
            .unwrap()
        {
            Message::Embedded { vectors, .. } => vectors,
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

/// Asks for a worker; returns it with (spawned, hello) durations from the request.
async fn spawn(control: &ControlClient) -> (Worker, Duration, Duration) {
    let started = Instant::now();
    let (started_worker, fd) = control.spawn_worker().await.unwrap();
    let spawned = started.elapsed();
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true).unwrap();
    let mut stream = UnixStream::from_std(std).unwrap();
    match cv_worker::read_message_async(&mut stream).await.unwrap() {
        Message::Hello { .. } => {}
        other => panic!("expected hello, got {other:?}"),
    }
    let hello = started.elapsed();
    let worker = Worker {
        id: started_worker.id,
        stream,
        next_id: 0,
    };
    (worker, spawned, hello)
}

fn summary(samples: &mut [f64]) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    json!({
        "p50_ms": (percentile(samples, 0.5) * 100.0).round() / 100.0,
        "p99_ms": (percentile(samples, 0.99) * 100.0).round() / 100.0,
        "max_ms": (samples[samples.len() - 1] * 100.0).round() / 100.0,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "worker benchmark: run it with `cargo bench --bench worker` (skipped under cargo test)"
        );
        return std::process::ExitCode::SUCCESS;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("the worker benchmark builds real jails: run it as root");
        return std::process::ExitCode::from(2);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = std::env::var_os("CV_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/models"));
    let files = match ModelFiles::in_dir(&models) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_contextvault"));
    // The service keeps one worker of its own, idle during the measurements.
    let extra = format!(
        "[workers]\ncount = 1\nmodels_dir = \"{}\"\n[log]\nlevel = \"warn\"\n",
        models.display()
    );
    let app = TestAppliance::launch(
        &exe,
        Launch::Appliance {
            env: Vec::new(),
            extra,
        },
    )
    .await;
    let control = ControlClient::new(app.layout().control_socket());

    // 1. Spawn to first answer.
    let mut spawned = Vec::new();
    let mut hello = Vec::new();
    let mut first = Vec::new();
    let probe = vec!["a first question".to_owned()];
    let mut warm = None;
    for _ in 0..SPAWNS {
        let started = Instant::now();
        let (mut worker, s, h) = spawn(&control).await;
        worker.embed(&probe).await;
        first.push(ms(started.elapsed()));
        spawned.push(ms(s));
        hello.push(ms(h));
        if let Some(previous) = warm.replace(worker) {
            let id = previous.id;
            drop(previous);
            control
                .stop_worker(id, Duration::from_secs(5))
                .await
                .unwrap();
        }
    }
    let mut worker = warm.unwrap();
    println!("spawn to first answer ({SPAWNS} workers, full jail, release build):");
    let spawn_report = json!({
        "spawned": summary(&mut spawned),
        "hello": summary(&mut hello),
        "first_answer": summary(&mut first),
    });
    println!(
        "  supervisor answer (jail built) p50 {} ms; hello (model loaded) p50 {} ms; first answer p50 {} ms, max {} ms",
        spawn_report["spawned"]["p50_ms"],
        spawn_report["hello"]["p50_ms"],
        spawn_report["first_answer"]["p50_ms"],
        spawn_report["first_answer"]["max_ms"]
    );

    // The same engine in this process, with the worker's thread count.
    let options = EmbedOptions {
        intra_threads: 1,
        ..EmbedOptions::default()
    };
    let mut local = Embedder::load(&files, &options).unwrap();

    // 2. Single queries.
    let queries = texts(QUERIES, 5, 30, 7);
    for q in queries.iter().take(20) {
        worker.embed(std::slice::from_ref(q)).await;
        local.embed(&[q.as_str()]).unwrap();
    }
    let mut via_worker = Vec::new();
    let mut in_process = Vec::new();
    for q in &queries {
        let t = Instant::now();
        worker.embed(std::slice::from_ref(q)).await;
        via_worker.push(ms(t.elapsed()));
        let t = Instant::now();
        local.embed(&[q.as_str()]).unwrap();
        in_process.push(ms(t.elapsed()));
    }
    let latency = json!({
        "worker": summary(&mut via_worker),
        "in_process": summary(&mut in_process),
    });
    println!(
        "single query ({QUERIES} of 5-30 words): worker p50 {} / p99 {} ms; in process p50 {} / p99 {} ms",
        latency["worker"]["p50_ms"],
        latency["worker"]["p99_ms"],
        latency["in_process"]["p50_ms"],
        latency["in_process"]["p99_ms"]
    );

    // 3. Throughput, interleaved rounds, best of each.
    let corpus = texts(TEXTS, 5, 200, 11);
    let mut best_worker = f64::MAX;
    let mut best_local = f64::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        for request in corpus.chunks(REQUEST_TEXTS) {
            worker.embed(request).await;
        }
        best_worker = best_worker.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for request in corpus.chunks(REQUEST_TEXTS) {
            let refs: Vec<&str> = request.iter().map(String::as_str).collect();
            local.embed(&refs).unwrap();
        }
        best_local = best_local.min(t.elapsed().as_secs_f64());
    }
    let throughput = json!({
        "worker_sentences_per_s": (TEXTS as f64 / best_worker).round(),
        "in_process_sentences_per_s": (TEXTS as f64 / best_local).round(),
        "worker_vs_in_process": ((best_local / best_worker) * 1000.0).round() / 1000.0,
    });
    println!(
        "throughput ({TEXTS} texts of 5-200 words, requests of {REQUEST_TEXTS}, one thread): worker {} sentences/s, in process {} ({}×)",
        throughput["worker_sentences_per_s"],
        throughput["in_process_sentences_per_s"],
        throughput["worker_vs_in_process"]
    );

    let report = json!({
        "spawn_to_first_answer": spawn_report,
        "single_query": latency,
        "throughput": throughput,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    cv_testkit::save_bench_report(root, "worker", &report);
    drop(worker);
    std::process::ExitCode::SUCCESS
}
