//! Embedding throughput and latency of the engine, against the Python reference in the
//! same run. Run with `cargo bench -p cv-inference` after `scripts/fetch-model target/models`
//! and `scripts/python-reference-env` (or set `CV_MODEL_DIR` and `CV_PYTHON_REFERENCE`).
//!
//! The corpus is generated, deterministically: 2,000 texts of 5 to 200 words (uniform),
//! drawn from a few hundred common English words with a little punctuation, so they
//! tokenize like real notes (the longest are cut at 256 tokens). Three ways of embedding
//! it, each with the same number of ONNX Runtime intra-op threads, each timed over the
//! whole corpus after a warm-up batch, tokenization included:
//!
//! - the engine as the appliance uses it: sorted by length, batches cut by the token budget;
//! - the engine with naive batching: 32 texts at a time in input order, padded to each
//!   batch's longest (what a simple script does);
//! - `scripts/embed-reference.py --bench`: the Python onnxruntime + tokenizers packages,
//!   naive batching of 32, same truncation and pooling.
//!
//! The three run in interleaved rounds and each keeps its best round, so that other work
//! on a shared machine disturbs them alike; besides sentences per second (wall clock) the
//! report gives sentences per CPU-second of the whole process, which such work disturbs
//! much less. Then the latency of single queries (one text of 5 to 30 words per call),
//! p50 and p99.
//!
//! Environment: `CV_BENCH_THREADS` (default: the available parallelism), `CV_BENCH_ROUNDS`
//! (default 2), `CV_BENCH_TEXTS` (default 2,000) and `CV_BENCH_BUDGET` (the sorted
//! engine's token budget; default `DEFAULT_MAX_BATCH_TOKENS`) for experiments.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cv_inference::{Batching, EmbedOptions, Embedder, ModelFiles};

const TEXTS: usize = 2_000;
const QUERIES: usize = 200;
const BATCH_SIZE: usize = 32;

const WORDS: &str = "the of and to a in is you that it he was for on are as with his they at be \
    this have from or one had by word but not what all were we when your can said there use an \
    each which she do how their if will up other about out many then them these so some her would \
    make like him into time has look two more write go see number no way could people my than \
    first water been call who oil its now find long down day did get come made may part over new \
    sound take only little work know place year live me back give most very after thing our just \
    name good sentence man think say great where help through much before line right too mean old \
    any same tell boy follow came want show also around form three small set put end does another \
    well large must big even such because turn here why ask went men read need land different home \
    us move try kind hand picture again change off play spell air away animal house point page \
    letter mother answer found study still learn should america world doctor appointment blood \
    pressure medication invoice grocery meeting deadline project family holiday recipe garden \
    insurance mortgage birthday dentist vaccine passport flight hotel train ticket budget salary";

/// SplitMix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: usize, high: usize) -> usize {
        low + (self.next() % (high - low + 1) as u64) as usize
    }
}

/// A text of `low..=high` words.
fn text(rng: &mut Rng, words: &[&str], low: usize, high: usize) -> String {
    let length = rng.between(low, high);
    let mut text = String::new();
    for i in 0..length {
        if i > 0 {
            text.push(' ');
        }
        let word = words[rng.between(0, words.len() - 1)];
        if i == 0 {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                text.extend(first.to_uppercase());
                text.push_str(chars.as_str());
            }
        } else {
            text.push_str(word);
        }
        if rng.between(0, 11) == 0 || i + 1 == length {
            text.push(if rng.between(0, 3) == 0 { ',' } else { '.' });
        }
    }
    text
}

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_files() -> ModelFiles {
    let dir = std::env::var_os("CV_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target/models"));
    ModelFiles::in_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

fn python() -> PathBuf {
    std::env::var_os("CV_PYTHON_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target/pyref-venv/bin/python"))
}

/// One timed pass over the corpus.
#[derive(Debug, Clone, Copy)]
struct Pass {
    /// Wall-clock seconds.
    seconds: f64,
    /// CPU seconds of the whole process (every thread).
    cpu_seconds: f64,
}

/// The best of several passes: the least disturbed by other work on the machine.
#[derive(Debug, Clone, Copy, Default)]
struct Best {
    seconds: Option<f64>,
    cpu_seconds: Option<f64>,
}

impl Best {
    fn add(&mut self, pass: Pass) {
        self.seconds = Some(self.seconds.map_or(pass.seconds, |s| s.min(pass.seconds)));
        self.cpu_seconds = Some(
            self.cpu_seconds
                .map_or(pass.cpu_seconds, |s| s.min(pass.cpu_seconds)),
        );
    }

    /// (sentences per second, sentences per CPU-second)
    fn rates(&self, texts: usize) -> Option<(f64, f64)> {
        Some((
            texts as f64 / self.seconds?,
            texts as f64 / self.cpu_seconds?,
        ))
    }
}

/// CPU time of this process so far (user + system, every thread), from /proc/self/stat.
fn process_cpu_seconds() -> f64 {
    // Fields 14 and 15 (utime, stime) in clock ticks, after the parenthesised command
    // name. Linux's USER_HZ is 100 on every architecture it supports.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rust_pass(embedder: &mut Embedder, texts: &[&str]) -> Pass {
    embedder.embed(&texts[..BATCH_SIZE]).unwrap(); // warm-up
    let cpu = process_cpu_seconds();
    let started = Instant::now();
    let vectors = embedder.embed(texts).unwrap();
    let pass = Pass {
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: process_cpu_seconds() - cpu,
    };
    assert_eq!(vectors.len(), texts.len());
    pass
}

/// One pass of the Python reference (it times itself, after loading), and its versions.
fn python_pass(files: &ModelFiles, texts: &[&str], threads: usize) -> Option<(Pass, String)> {
    let python = python();
    let mut child = Command::new(&python)
        .arg(repository_root().join("scripts/embed-reference.py"))
        .arg("--model-dir")
        .arg(files.model.parent()?)
        .args([
            "--threads",
            &threads.to_string(),
            "--batch-size",
            &BATCH_SIZE.to_string(),
            "--bench",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| println!("python reference: cannot run {}: {e}", python.display()))
        .ok()?;
    let input = serde_json::json!({ "texts": texts });
    child
        .stdin
        .take()?
        .write_all(input.to_string().as_bytes())
        .ok()?;
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        println!(
            "python reference: failed ({}); run scripts/python-reference-env",
            output.status
        );
        return None;
    }
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let pass = Pass {
        seconds: result["seconds"].as_f64()?,
        cpu_seconds: result["cpu_seconds"].as_f64()?,
    };
    Some((pass, result["versions"].to_string()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`; only do the work when
    // run as a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let threads = std::env::var("CV_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let texts_count: usize = std::env::var("CV_BENCH_TEXTS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(TEXTS);
    // The token budget of the sorted engine (`CV_BENCH_BUDGET` overrides).
    let budget = std::env::var("CV_BENCH_BUDGET")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(cv_inference::DEFAULT_MAX_BATCH_TOKENS);
    let rounds: usize = std::env::var("CV_BENCH_ROUNDS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2)
        .max(1);
    let files = model_files();
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = Rng(0x5EED);
    let corpus: Vec<String> = (0..texts_count)
        .map(|_| text(&mut rng, &words, 5, 200))
        .collect();
    let texts: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let queries: Vec<String> = (0..QUERIES)
        .map(|_| text(&mut rng, &words, 5, 30))
        .collect();

    println!(
        "corpus: {texts_count} texts of 5-200 words ({} words in all); {threads} intra-op threads; {rounds} rounds",
        corpus
            .iter()
            .map(|t| t.split_whitespace().count())
            .sum::<usize>()
    );

    let bucketed = EmbedOptions {
        intra_threads: threads,
        max_batch_tokens: budget,
        ..EmbedOptions::default()
    };
    let naive = EmbedOptions {
        intra_threads: threads,
        batching: Batching::InOrder {
            batch_size: BATCH_SIZE,
        },
        ..EmbedOptions::default()
    };
    let mut sorted_engine = Embedder::load(&files, &bucketed).unwrap();
    let mut naive_engine = Embedder::load(&files, &naive).unwrap();
    let (mut sorted, mut in_order, mut python) =
        (Best::default(), Best::default(), Best::default());
    let mut versions = None;
    // Rounds interleave the three, so a burst of other work on the machine does not
    // land on one of them only; each keeps its best round.
    for round in 1..=rounds {
        let pass = rust_pass(&mut sorted_engine, &texts);
        sorted.add(pass);
        println!(
            "round {round}: rust sorted {:.1} s, {:.1} CPU s",
            pass.seconds, pass.cpu_seconds
        );
        let pass = rust_pass(&mut naive_engine, &texts);
        in_order.add(pass);
        println!(
            "round {round}: rust in order {:.1} s, {:.1} CPU s",
            pass.seconds, pass.cpu_seconds
        );
        if let Some((pass, v)) = python_pass(&files, &texts, threads) {
            python.add(pass);
            versions = Some(v);
            println!(
                "round {round}: python {:.1} s, {:.1} CPU s",
                pass.seconds, pass.cpu_seconds
            );
        }
    }

    let n = texts.len();
    println!();
    println!(
        "{:<48} {:>13} {:>17}",
        "best of each", "sentences/s", "sentences/CPU-s"
    );
    let rows = [
        (
            format!("rust, sorted by length (budget {budget} tokens)"),
            sorted.rates(n),
        ),
        (
            format!("rust, {BATCH_SIZE} at a time in input order"),
            in_order.rates(n),
        ),
        (
            format!("python onnxruntime, {BATCH_SIZE} at a time in order"),
            python.rates(n),
        ),
    ];
    for (name, rates) in &rows {
        match rates {
            Some((wall, cpu)) => println!("{name:<48} {wall:>13.1} {cpu:>17.1}"),
            None => println!("{name:<48} {:>13} {:>17}", "-", "-"),
        }
    }
    if let Some(versions) = versions {
        println!("python reference: {versions}");
    }
    let ratio = |a: Option<(f64, f64)>, b: Option<(f64, f64)>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x ({:.2}x per CPU-s)", a.0 / b.0, a.1 / b.1),
        _ => "-".to_string(),
    };
    println!(
        "rust sorted / python:       {}",
        ratio(sorted.rates(n), python.rates(n))
    );
    println!(
        "rust sorted / rust in order: {}",
        ratio(sorted.rates(n), in_order.rates(n))
    );
    println!(
        "rust in order / python:     {}",
        ratio(in_order.rates(n), python.rates(n))
    );
    drop(naive_engine);

    let embedder = &mut sorted_engine;
    embedder.embed(&[queries[0].as_str()]).unwrap(); // warm-up
    let mut latencies: Vec<Duration> = queries
        .iter()
        .map(|query| {
            let started = Instant::now();
            embedder.embed(&[query.as_str()]).unwrap();
            started.elapsed()
        })
        .collect();
    latencies.sort();
    println!(
        "single query (5-30 words), {QUERIES} calls: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3
    );
}
