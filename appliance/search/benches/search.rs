//! How long building and searching take, and how much RAM the index holds, for vaults of
//! 10 000 and 100 000 note-like items. Run with `cargo bench -p cv-search`.
//!
//! The documents are generated, deterministically: words drawn from a 5 000-word
//! vocabulary of made-up words with a Zipf-like distribution (the rank-r word is drawn
//! with probability proportional to 1/r), 20 to 80 words each, up to three of 40 tags,
//! about 10% tasks. The queries are 1 to 3 words, mixing common and rare words, a fifth
//! of them with a tag filter.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::{Duration, Instant};

use cv_search::{Document, Kind, Query, SearchIndex, TaskStatus};
use time::OffsetDateTime;

const VOCABULARY: usize = 5_000;
const TAGS: usize = 40;
const QUERIES: usize = 500;

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
        let mut seen = std::collections::HashSet::new();
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
        let cdf = (1..=VOCABULARY)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|c| c / total)
            .collect();
        let tags = (0..TAGS)
            .map(|i| {
                if i % 3 == 0 {
                    format!("Project {}", words[100 + i])
                } else {
                    words[200 + i].clone()
                }
            })
            .collect();
        Corpus { words, cdf, tags }
    }

    fn word(&self, rng: &mut Rng) -> &str {
        let x = rng.unit();
        let rank = self.cdf.partition_point(|&c| c < x).min(VOCABULARY - 1);
        &self.words[rank]
    }

    fn document(&self, rng: &mut Rng, i: usize) -> Document {
        let len = 20 + rng.below(61);
        let mut text = String::with_capacity(len * 8);
        for n in 0..len {
            if n > 0 {
                text.push(if rng.below(12) == 0 { '\n' } else { ' ' });
            }
            text.push_str(self.word(rng));
        }
        let tags = (0..rng.below(4))
            .map(|_| self.tags[rng.below(TAGS)].clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let is_task = rng.below(10) == 0;
        let created = OffsetDateTime::UNIX_EPOCH
            + time::Duration::days(19_000)
            + time::Duration::minutes(i as i64 * 15);
        Document {
            id: uuid::Uuid::from_u64_pair(rng.next(), rng.next()),
            text,
            tags,
            kind: if is_task { Kind::Task } else { Kind::Note },
            status: is_task.then(|| match rng.below(3) {
                0 => TaskStatus::Open,
                1 => TaskStatus::Doing,
                _ => TaskStatus::Done,
            }),
            due: (is_task && rng.below(2) == 0)
                .then(|| created.date() + time::Duration::days(rng.below(60) as i64)),
            created,
            updated: created,
            pinned: rng.below(50) == 0,
            archived: rng.below(20) == 0,
        }
    }

    /// 1 to 3 words: each common (top 100), middling or rare (rank 2 000+).
    fn query(&self, rng: &mut Rng) -> Query {
        let words: Vec<&str> = (0..1 + rng.below(3))
            .map(|_| match rng.below(3) {
                0 => self.words[rng.below(100)].as_str(),
                1 => self.words[100 + rng.below(1_900)].as_str(),
                _ => self.words[2_000 + rng.below(VOCABULARY - 2_000)].as_str(),
            })
            .collect();
        let tags = if rng.below(5) == 0 {
            vec![self.tags[rng.below(TAGS)].to_uppercase()]
        } else {
            Vec::new()
        };
        Query {
            text: words.join(" "),
            tags,
            ..Query::default()
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn run(size: usize) {
    let mut rng = Rng(0x5EA4C4 + size as u64);
    let corpus = Corpus::new(&mut rng);
    let docs: Vec<Document> = (0..size).map(|i| corpus.document(&mut rng, i)).collect();
    let text_bytes: usize = docs.iter().map(|d| d.text.len()).sum();

    let index = SearchIndex::new().expect("index");
    let started = Instant::now();
    index.build(docs, |_| {}).expect("build");
    let build = started.elapsed();

    let queries: Vec<Query> = (0..QUERIES).map(|_| corpus.query(&mut rng)).collect();
    // One untimed pass so every query runs against warm caches, as on a used appliance.
    for q in &queries {
        index.search(q).expect("search");
    }
    let mut latencies = Vec::with_capacity(QUERIES);
    let mut hits = 0;
    for q in &queries {
        let started = Instant::now();
        let results = index.search(q).expect("search");
        latencies.push(started.elapsed());
        hits += results.total;
    }
    latencies.sort();

    // A capture followed by a search: the search waits for the writer's commit.
    let mut capture_then_search = Vec::new();
    for i in 0..50 {
        let doc = corpus.document(&mut rng, size + i);
        let word = doc.text.split_whitespace().next().unwrap_or("x").to_owned();
        let started = Instant::now();
        index.upsert(doc);
        index
            .search(&Query {
                text: word,
                ..Query::default()
            })
            .expect("search");
        capture_then_search.push(started.elapsed());
    }
    capture_then_search.sort();

    println!(
        "{size} documents ({:.1} MB of text):",
        text_bytes as f64 / 1e6
    );
    println!(
        "  build          {:>8.0} ms ({:.0} docs/s)",
        ms(build),
        size as f64 / build.as_secs_f64()
    );
    println!(
        "  memory_bytes   {:>8.1} MB",
        index.memory_bytes() as f64 / 1e6
    );
    println!(
        "  search         p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({QUERIES} queries, {:.0} matches on average)",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.95)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        hits as f64 / QUERIES as f64,
    );
    println!(
        "  upsert+search  p50 {:.2} ms, max {:.2} ms (read-your-writes: includes a commit)",
        ms(percentile(&capture_then_search, 0.50)),
        ms(percentile(&capture_then_search, 1.0)),
    );
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench`-less arguments; only do the
    // work when run as a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for size in [10_000, 100_000] {
        run(size);
    }
}
