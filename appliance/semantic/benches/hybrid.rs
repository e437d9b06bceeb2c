//! Hybrid search latency at 100,000 chunks: full-text search (`cv_search::SearchIndex`)
//! for the top 50, vector search (`VectorIndex`) for the top 50, and their fusion
//! (`Fusion::default()`), one query at a time, as a search request runs them.
//!
//! ```sh
//! cargo bench -p cv-semantic --bench hybrid
//! cargo bench -p cv-semantic --bench hybrid -- --chunks 200000 --queries 1000
//! ```
//!
//! The corpus is generated deterministically, as `cv-search`'s benchmark does: note-like
//! documents of made-up words drawn Zipf-like from a 5,000-word vocabulary (20 to 80
//! words; one in ten longer, 150 to 500 words), up to three of 40 tags, 5% archived.
//! Each document is cut by `cv_semantic::chunk` with the default options, and
//! documents are added until the chunks reach the target. Each chunk gets a random unit
//! vector: exhaustive search costs the same whatever the vectors say, and real
//! embeddings of 100,000 chunks would take most of an hour to compute on this machine.
//! The query embedding is therefore not in the hybrid time; when the model's files are
//! found (`CV_MODEL_DIR`, default `target/models`), the time to embed each query text is
//! measured too and reported beside it (`cv-inference`'s own benchmark covers
//! throughput).
//!
//! Queries are 1 to 3 words (common, middling and rare), a fifth with a tag filter; the
//! vector search skips archived items, as the full-text search does by default.
//! Untimed warm-up first, then every query is timed end to end and by stage. Also
//! timed: one exhaustive scan of as many rows as the index holds, with the index's int8
//! rows and `dot_i8`, with f32 rows and `dot`, and with f32 rows and a plain
//! `zip().map().sum()` (which the compiler may not reorder, so does not vectorise).
//!
//! Results are printed and written to `target/bench/hybrid-<timestamp>.json`
//! (`$CARGO_TARGET_DIR/bench` when that is set). Target: hybrid p95 under 30 ms.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cv_search::{Document, Kind, Query, SearchIndex, TaskStatus};
use cv_semantic::{ChunkOptions, DIMENSIONS, Fusion, VectorIndex, chunk, dot, dot_i8};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

const VOCABULARY: usize = 5_000;
const TAGS: usize = 40;
const P95_TARGET_MS: f64 = 30.0;
const WARMUP: usize = 30;

const USAGE: &str = "usage: cargo bench -p cv-semantic --bench hybrid [-- OPTIONS]
  --chunks N       chunks in the vector index (default 100000)
  --queries N      timed queries (default 500, at least 200)
  --candidates N   results taken from each search before fusion (default 50)";

/// SplitMix64: small, fast, deterministic; good enough to generate test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    /// A random direction: normal coordinates, normalised.
    fn unit_vector(&mut self) -> Vec<f32> {
        let v: Vec<f32> = (0..DIMENSIONS).map(|_| self.normal()).collect();
        let norm = dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }
}

struct Corpus {
    words: Vec<String>,
    /// Cumulative Zipf weights, for drawing a word by rank.
    cdf: Vec<f64>,
    tags: Vec<String>,
}

impl Corpus {
    fn new(rng: &mut Rng) -> Corpus {
        const SYLLABLES: [&str; 24] = [
            "ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ven", "dor", "al", "ex", "qui",
            "zan", "bel", "tor", "um", "ris", "ga", "fen", "ho", "jy", "wex", "sta",
        ];
        let mut words = Vec::with_capacity(VOCABULARY);
        let mut seen = HashSet::new();
        while words.len() < VOCABULARY {
            let syllables = 2 + rng.below(3);
            let word: String = (0..syllables)
                .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
                .collect();
            if seen.insert(word.clone()) {
                words.push(word);
            }
        }
        let mut total = 0.0;
        let weights: Vec<f64> = (1..=VOCABULARY)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        let cdf = weights.into_iter().map(|c| c / total).collect();
        let tags = (0..TAGS).map(|i| words[200 + i].clone()).collect();
        Corpus { words, cdf, tags }
    }

    fn word(&self, rng: &mut Rng) -> &str {
        let x = rng.unit();
        let rank = self.cdf.partition_point(|&c| c < x).min(VOCABULARY - 1);
        &self.words[rank]
    }

    fn document(&self, rng: &mut Rng, i: usize) -> Document {
        let len = if rng.below(10) == 0 {
            150 + rng.below(351)
        } else {
            20 + rng.below(61)
        };
        let mut text = String::with_capacity(len * 8);
        for n in 0..len {
            if n > 0 {
                // Sentences of about twelve words, a line break now and then.
                match rng.below(12) {
                    0 => text.push_str(".\n"),
                    1 => text.push_str(". "),
                    _ => text.push(' '),
                }
            }
            text.push_str(self.word(rng));
        }
        text.push('.');
        let tags = (0..rng.below(4))
            .map(|_| self.tags[rng.below(TAGS)].clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let is_task = rng.below(10) == 0;
        let created = OffsetDateTime::UNIX_EPOCH
            + time::Duration::days(19_000)
            + time::Duration::minutes(i as i64 * 15);
        Document {
            id: Uuid::from_u64_pair(rng.next(), rng.next()),
            text,
            tags,
            kind: if is_task { Kind::Task } else { Kind::Note },
            status: is_task.then_some(TaskStatus::Open),
            due: None,
            created,
            updated: created,
            pinned: false,
            archived: rng.below(20) == 0,
        }
    }

    /// 1 to 3 words: each common (top 100), middling or rare (rank 2 000+).
    fn query(&self, rng: &mut Rng, candidates: usize) -> Query {
        let words: Vec<&str> = (0..1 + rng.below(3))
            .map(|_| match rng.below(3) {
                0 => self.words[rng.below(100)].as_str(),
                1 => self.words[100 + rng.below(1_900)].as_str(),
                _ => self.words[2_000 + rng.below(VOCABULARY - 2_000)].as_str(),
            })
            .collect();
        let tags = if rng.below(5) == 0 {
            vec![self.tags[rng.below(TAGS)].clone()]
        } else {
            Vec::new()
        };
        Query {
            text: words.join(" "),
            tags,
            limit: candidates,
            ..Query::default()
        }
    }
}

struct Config {
    chunks: usize,
    queries: usize,
    candidates: usize,
}

fn config() -> Result<Config, String> {
    let mut config = Config {
        chunks: 100_000,
        queries: 500,
        candidates: 50,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            let value = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            value
                .replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: {value:?} is not a number"))
        };
        match arg.as_str() {
            "--bench" => {}
            "--chunks" => config.chunks = number("--chunks")?.max(1),
            "--queries" => config.queries = number("--queries")?.max(200),
            "--candidates" => config.candidates = number("--candidates")?.clamp(1, 200),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(config)
}

#[derive(Debug, Clone, Copy)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len().max(1) - 1) as f64 * p).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1_000.0)
    };
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    }
}

fn as_json(p: Percentiles) -> serde_json::Value {
    json!({"p50_ms": p.p50, "p95_ms": p.p95, "p99_ms": p.p99, "max_ms": p.max})
}

fn line(name: &str, p: Percentiles) -> String {
    format!(
        "  {name:<20} p50 {:>6.2} ms   p95 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms",
        p.p50, p.p95, p.p99, p.max
    )
}

/// Query texts embedded one at a time with the real model, when its files are here.
fn embed_latency(texts: &[String]) -> Option<Percentiles> {
    let dir = std::env::var_os("CV_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/models"));
    let files = cv_inference::ModelFiles::in_dir(&dir).ok()?;
    let options = cv_inference::EmbedOptions {
        intra_threads: 1,
        ..cv_inference::EmbedOptions::default()
    };
    let mut embedder = cv_inference::Embedder::load(&files, &options).ok()?;
    for text in texts.iter().take(WARMUP) {
        embedder.embed(&[text.as_str()]).ok()?;
    }
    let mut samples = Vec::with_capacity(texts.len());
    for text in texts {
        let started = Instant::now();
        embedder.embed(&[text.as_str()]).ok()?;
        samples.push(started.elapsed());
    }
    Some(percentiles(samples))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: only do the work when
    // run as a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let config = match config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let mut rng = Rng(0x4_B1D);
    let corpus = Corpus::new(&mut rng);

    // Documents until their chunks reach the target.
    let started = Instant::now();
    let mut documents = Vec::new();
    let mut chunk_counts = Vec::new();
    let mut total_chunks = 0;
    let options = ChunkOptions::default();
    while total_chunks < config.chunks {
        let document = corpus.document(&mut rng, documents.len());
        let chunks = chunk(&document.text, &options)
            .len()
            .min(config.chunks - total_chunks);
        total_chunks += chunks;
        chunk_counts.push(chunks);
        documents.push(document);
    }
    let chunking = started.elapsed();
    let archived: HashSet<Uuid> = documents
        .iter()
        .filter(|d| d.archived)
        .map(|d| d.id)
        .collect();
    let ids: Vec<Uuid> = documents.iter().map(|d| d.id).collect();
    let text_bytes: usize = documents.iter().map(|d| d.text.len()).sum();
    let document_count = documents.len();

    let search = SearchIndex::new().expect("a search index");
    let started = Instant::now();
    search.build(documents, |_| {}).expect("the index builds");
    let build_bm25 = started.elapsed();

    let mut vectors = VectorIndex::default();
    let mut upsert_time = Duration::ZERO;
    for (id, &chunks) in ids.iter().zip(&chunk_counts) {
        let embedded: Vec<Vec<f32>> = (0..chunks).map(|_| rng.unit_vector()).collect();
        let started = Instant::now();
        vectors.upsert(*id, embedded).expect("the vectors fit");
        upsert_time += started.elapsed();
    }

    let queries: Vec<(Query, Vec<f32>)> = (0..config.queries + WARMUP)
        .map(|_| (corpus.query(&mut rng, config.candidates), rng.unit_vector()))
        .collect();
    let fusion = Fusion::default();
    let run = |(query, vector): &(Query, Vec<f32>)| {
        let t0 = Instant::now();
        let results = search.search(query).expect("the search runs");
        let bm25: Vec<(Uuid, f32)> = results.hits.iter().map(|h| (h.id, h.score)).collect();
        let t1 = Instant::now();
        let near: Vec<(Uuid, f32)> = vectors
            .search(vector, config.candidates, |item| !archived.contains(&item))
            .iter()
            .map(|h| (h.item, h.score))
            .collect();
        let t2 = Instant::now();
        let fused = fusion.fuse(&bm25, &near);
        let t3 = Instant::now();
        (t1 - t0, t2 - t1, t3 - t2, t3 - t0, fused.len())
    };
    for q in &queries[..WARMUP] {
        run(q);
    }
    let (mut bm25_t, mut vector_t, mut fusion_t, mut total_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut fused_hits = 0;
    for q in &queries[WARMUP..] {
        let (b, v, f, t, n) = run(q);
        bm25_t.push(b);
        vector_t.push(v);
        fusion_t.push(f);
        total_t.push(t);
        fused_hits += n;
    }
    let (bm25_p, vector_p, fusion_p, total_p) = (
        percentiles(bm25_t),
        percentiles(vector_t),
        percentiles(fusion_t),
        percentiles(total_t),
    );

    // One exhaustive scan of as many rows as the index holds, three ways: f32 rows with
    // a plain sum (which the compiler may not reorder, so it stays scalar), f32 rows
    // with cv_semantic::dot, and the index's int8 rows with dot_i8.
    let probe = rng.unit_vector();
    let probe_codes: Vec<i8> = probe.iter().map(|x| (x * 127.0 / 0.2) as i8).collect();
    let floats: Vec<f32> = (0..total_chunks * DIMENSIONS)
        .map(|_| (rng.unit() - 0.5) as f32 * 0.1)
        .collect();
    let codes: Vec<i8> = floats.iter().map(|x| (x * 2_540.0) as i8).collect();
    let scan_f32 = |f: &dyn Fn(&[f32], &[f32]) -> f32| {
        let mut samples = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            let mut sink = 0.0f32;
            for row in floats.chunks_exact(DIMENSIONS) {
                sink += f(&probe, row);
            }
            std::hint::black_box(sink);
            samples.push(started.elapsed());
        }
        percentiles(samples).p50
    };
    let plain_dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let scan_plain = scan_f32(&plain_dot);
    let scan_lanes = scan_f32(&dot);
    let scan_int8 = {
        let mut samples = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            let mut sink = 0i64;
            for row in codes.chunks_exact(DIMENSIONS) {
                sink += i64::from(dot_i8(&probe_codes, row));
            }
            std::hint::black_box(sink);
            samples.push(started.elapsed());
        }
        percentiles(samples).p50
    };
    drop((floats, codes));

    let texts: Vec<String> = queries[WARMUP..]
        .iter()
        .map(|(q, _)| q.text.clone())
        .collect();
    let embed_p = embed_latency(&texts);

    let memory = vectors.memory_bytes();
    let verdict = if total_p.p95 < P95_TARGET_MS {
        "PASS"
    } else {
        "MISS"
    };
    println!(
        "hybrid search: {total_chunks} chunks of {document_count} documents ({:.1} MB of text), {} queries, top {} from each",
        text_bytes as f64 / 1e6,
        config.queries,
        config.candidates
    );
    println!(
        "  build: chunking {:.0} ms, full-text index {:.1} s, vector upserts {:.0} ms",
        chunking.as_secs_f64() * 1e3,
        build_bm25.as_secs_f64(),
        upsert_time.as_secs_f64() * 1e3
    );
    println!(
        "  memory: vector index {:.1} MB ({} bytes per chunk), full-text index {:.1} MB",
        memory as f64 / 1e6,
        memory / total_chunks.max(1),
        search.memory_bytes() as f64 / 1e6
    );
    println!("{}", line("full text", bm25_p));
    println!("{}", line("vector", vector_p));
    println!("{}", line("fusion", fusion_p));
    println!(
        "{}   [{verdict}: p95 < {P95_TARGET_MS} ms]",
        line("hybrid (total)", total_p)
    );
    if let Some(p) = embed_p {
        println!(
            "{}   (query embedding, not in the total)",
            line("embed query", p)
        );
    } else {
        println!("  embed query          not measured: no model files (set CV_MODEL_DIR)");
    }
    println!(
        "  one scan of {total_chunks} rows: int8 dot_i8 {scan_int8:.2} ms; f32 dot {scan_lanes:.2} ms; f32 plain sum {scan_plain:.2} ms"
    );

    let stamp = OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "unknown".to_owned());
    let report = json!({
        "benchmark": "hybrid",
        "timestamp": stamp,
        "chunks": total_chunks,
        "documents": document_count,
        "text_bytes": text_bytes,
        "queries": config.queries,
        "candidates": config.candidates,
        "fusion": {"k": fusion.k, "min_similarity": fusion.min_similarity},
        "build": {
            "chunking_ms": chunking.as_secs_f64() * 1e3,
            "full_text_index_s": build_bm25.as_secs_f64(),
            "vector_upserts_ms": upsert_time.as_secs_f64() * 1e3,
        },
        "memory": {
            "vector_index_bytes": memory,
            "full_text_index_bytes": search.memory_bytes(),
        },
        "latency": {
            "full_text": as_json(bm25_p),
            "vector": as_json(vector_p),
            "fusion": as_json(fusion_p),
            "hybrid_total": as_json(total_p),
            "embed_query": embed_p.map(as_json),
        },
        "fused_hits_per_query": fused_hits as f64 / config.queries as f64,
        "scan_ms": {"int8_dot_i8": scan_int8, "f32_dot": scan_lanes, "f32_plain_sum": scan_plain},
        "target": {"hybrid_p95_ms": P95_TARGET_MS, "pass": total_p.p95 < P95_TARGET_MS},
    });
    let dir = target_dir().join("bench");
    let path = dir.join(format!("hybrid-{stamp}.json"));
    match std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
    }) {
        Ok(()) => println!("  written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
