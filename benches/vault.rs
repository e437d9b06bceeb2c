//! Vault benchmark: capture latency, corpus load, unlock (index build) and search latency
//! of a real appliance, over HTTPS on loopback.
//!
//! ```sh
//! cargo bench --bench vault                       # 10,000 and 100,000 items (3-8 minutes)
//! CV_BENCH_QUICK=1 cargo bench --bench vault      # 2,000 and 10,000 items, 5 s runs (≈ 40 s)
//! cargo bench --bench vault -- --sizes 5000,50000 --capture-secs 15 --queries 500
//! scripts/bench vault [the same options]
//! ```
//!
//! It starts the release binary in dev mode in a fresh directory (cv-testkit, as the
//! tests do), creates an account with the admin CLI and a `capture` API token, then:
//!
//! 1. **Capture latency**, open loop: `POST /api/v1/capture` is *scheduled* every 5 ms
//!    (200 req/s) for 15 s over a pool of HTTP/1.1 keep-alive connections, and each
//!    latency is counted from its scheduled send time, so a stall delays every request
//!    behind it in the numbers too (no coordinated omission). Run once with the vault
//!    locked (the item key is sealed to the capture key) and once unlocked (wrapped by
//!    the vault key, and the in-RAM index updated). The locked run tops the corpus up to
//!    the first size; the unlocked one runs at the first size with its index ready. Each
//!    run follows one second of captures at the same rate that is not counted (a
//!    warm-up: the first requests after an unlock meet the service's after-unlock work
//!    and cold caches); the warm-up's p50/p99/max are printed and saved beside the run's.
//! 2. **Corpus load**: deterministic note-like items (20-80 words drawn Zipf-like from a
//!    5,000-word vocabulary, a few hundred of them real English words; 0-3 tags of 50)
//!    captured while locked with 32 requests in flight; items/s.
//! 3. **Unlock** at each size: `POST /api/v1/login`, then `GET /api/v1/vault` every 25 ms
//!    until the index is ready: login response time (it re-wraps every key captured
//!    while locked), index ready (wall clock from the login), the service's `build_ms`,
//!    `memory_bytes`, documents and the service's RSS. Measured twice: first after the
//!    locked load (everything captured since the last unlock is sealed), then after a
//!    lock and a second login (nothing sealed: the index build alone).
//! 4. **Search latency** at each size: `GET /api/v1/search` with the session token, 500
//!    queries of 1-3 words (common, real-English and rare words; 20% with a `tag`
//!    filter, a quarter of those without words), one at a time after 50 warm-up queries.
//!
//! Each phase also reports the CPU time spent by the client (this process), the service,
//! PostgreSQL (all its processes), the supervisor and everything else on the machine
//! ("others": other processes, and kernel interrupt work), and the CPU and I/O pressure
//! stall shares, from /proc, to show where the time goes. Capture runs also keep a
//! per-second timeline, and split their p99 between quiet seconds and seconds in which
//! other processes used more than a quarter of a core (the targets use all seconds).
//! The table is printed with PASS/MISS for each target (capture p99 < 10 ms; at 100,000
//! items: unlock < 10 s, search p95 < 20 ms), and the numbers are written to
//! `target/bench/vault-<timestamp>.json`; the appliance's log goes to the `.log` beside it.
//!
//! Caveats: client and server share the same machine (on the reference box, 2 cores), so
//! the client's TLS and JSON work competes with the service and PostgreSQL, and anything
//! else running there (a build) shows in every number: look at "others" before comparing
//! runs; every capture commits (a WAL flush), so the disk's fsync latency is in the
//! capture and first-unlock numbers; HTTPS runs on loopback (no network latency, but the
//! full TLS cost); the appliance logs at `info`
//! (one line per capture), as in dev mode; a request leaves a little after its slot
//! (a thread keeps the schedule, then the request is a task on the client's runtime):
//! that delay counts in its latency and is reported as "send lag", and "service p99"
//! is the latency from the actual send.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cv_testkit::{Launch, TestAppliance};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const USER: &str = "bench";
const PASSPHRASE: &str = "bench passphrase 1";

const CAPTURE_P99_TARGET_MS: f64 = 10.0;
const UNLOCK_TARGET_S: f64 = 10.0;
const SEARCH_P95_TARGET_MS: f64 = 20.0;
/// The corpus size the unlock and search targets are stated for.
const TARGET_ITEMS: usize = 100_000;

const USAGE: &str =
    "usage: cargo bench --bench vault [-- OPTIONS]   (or scripts/bench vault [OPTIONS])
  --quick               2000 and 10000 items, 5 s capture runs     (env CV_BENCH_QUICK=1)
  --sizes N,N,...       corpus sizes, ascending (default 10000,100000; env CV_BENCH_SIZES)
  --capture-secs S      length of each capture-latency run (default 15; env CV_BENCH_CAPTURE_SECS)
  --rate R              captures scheduled per second (default 200; env CV_BENCH_RATE)
  --queries N           measured search queries per size (default 500; env CV_BENCH_QUERIES)
  --concurrency N       requests in flight while loading (default 32; env CV_BENCH_CONCURRENCY)";

// ---------------------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone)]
struct Config {
    quick: bool,
    sizes: Vec<usize>,
    capture_secs: u64,
    rate: u64,
    queries: usize,
    warmup: usize,
    concurrency: usize,
}

impl Config {
    fn from_env_and_args() -> Result<Config, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut quick = env("CV_BENCH_QUICK").is_some_and(|v| v != "0");
        let mut sizes = env("CV_BENCH_SIZES");
        let mut capture_secs = env("CV_BENCH_CAPTURE_SECS");
        let mut rate = env("CV_BENCH_RATE");
        let mut queries = env("CV_BENCH_QUERIES");
        let mut concurrency = env("CV_BENCH_CONCURRENCY");
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
            };
            match arg.as_str() {
                // `cargo bench` passes this to every bench binary.
                "--bench" => {}
                "--quick" => quick = true,
                "--sizes" => sizes = Some(value("--sizes")?),
                "--capture-secs" => capture_secs = Some(value("--capture-secs")?),
                "--rate" => rate = Some(value("--rate")?),
                "--queries" => queries = Some(value("--queries")?),
                "--concurrency" => concurrency = Some(value("--concurrency")?),
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        fn number<T: std::str::FromStr>(what: &str, v: &str) -> Result<T, String> {
            v.trim()
                .replace('_', "")
                .parse()
                .map_err(|_| format!("{what}: {v:?} is not a number"))
        }
        let mut sizes: Vec<usize> = match sizes {
            Some(s) => s
                .split(',')
                .map(|v| number("--sizes", v))
                .collect::<Result<_, _>>()?,
            None if quick => vec![2_000, 10_000],
            None => vec![10_000, 100_000],
        };
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.is_empty() || sizes[0] == 0 {
            return Err("--sizes: give one or more sizes above 0".into());
        }
        let config = Config {
            quick,
            sizes,
            capture_secs: match capture_secs {
                Some(v) => number("--capture-secs", &v)?,
                None if quick => 5,
                None => 15,
            },
            rate: rate.map_or(Ok(200), |v| number("--rate", &v))?,
            queries: queries.map_or(Ok(500), |v| number("--queries", &v))?,
            warmup: 50,
            concurrency: concurrency.map_or(Ok(32), |v| number("--concurrency", &v))?,
        };
        if config.rate == 0 || config.concurrency == 0 || config.queries == 0 {
            return Err("--rate, --concurrency and --queries must be above 0".into());
        }
        Ok(config)
    }

    /// Captures in the warm-up second before each capture run.
    fn warmup_captures(&self) -> usize {
        usize::try_from(self.rate).unwrap_or(usize::MAX)
    }

    fn captures_per_run(&self) -> usize {
        usize::try_from(self.rate * self.capture_secs).unwrap_or(usize::MAX)
    }

    fn json(&self) -> Value {
        json!({
            "quick": self.quick,
            "sizes": self.sizes,
            "capture_secs": self.capture_secs,
            "capture_rate_per_s": self.rate,
            "search_queries": self.queries,
            "search_warmup": self.warmup,
            "load_concurrency": self.concurrency,
        })
    }
}

// ---------------------------------------------------------------------------------------
// The corpus: deterministic, note-like texts

/// SplitMix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut rng = Rng(seed);
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// lo..=hi
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// [0, 1)
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const VOCABULARY: usize = 5_000;

/// Real words, spread over the vocabulary's ranks (from very common to rare), so that
/// queries read like something a person would type.
const ENGLISH: &str = "
the garden tomato recipe meeting project call email doctor appointment school
bread coffee train ticket holiday passport book chapter idea dream weekend river
mountain forest lake beach house kitchen window door paint roof bicycle car tyre
engine battery phone laptop charger cable printer invoice receipt budget bank loan
salary rent insurance tax pension plumber electrician heating boiler radiator
fridge freezer oven soup salad pasta rice chicken fish cheese butter milk eggs
apple banana lemon orange grape strawberry cherry walnut almond honey sugar salt
pepper garlic onion potato carrot spinach mushroom basil mint thyme rosemary
birthday wedding anniversary party dinner lunch breakfast picnic concert theatre
cinema museum gallery library lecture lesson homework exam teacher student
parent daughter son sister brother grandmother uncle cousin neighbour friend
colleague manager client contract deadline report review draft slides agenda
minutes notes summary question answer problem solution plan goal habit routine
exercise running swimming yoga walk hike stretch sleep headache fever cough
allergy vitamin medicine pharmacy dentist vaccine blood pressure weight diet
water tea wine beer juice bottle glass plate spoon knife fork table chair sofa
lamp shelf drawer cupboard wardrobe mirror carpet curtain pillow blanket towel
soap shampoo toothbrush laundry ironing cleaning vacuum recycling compost rubbish
seeds soil fence hedge lawn mower ladder hammer drill screw nail glue tape rope
heron kingfisher sparrow robin blackbird owl fox badger hedgehog squirrel rabbit
deer butterfly bee spider frog pond moss fern oak willow birch maple pine rose
tulip daffodil lavender sunflower winter spring summer autumn morning evening
night monday friday january march june september december storm rain snow frost
wind sunshine cloud rainbow thunder lightning harbour island bridge castle tower
village market station airport hotel camping tent map compass lantern torch
guitar piano violin drum song album podcast novel poem story letter postcard
stamp parcel delivery courier password backup server router network update
";

const TAGS: &str = "work home family health fitness garden cooking recipes shopping
travel books reading music film ideas journal finance budget kids school car house
repairs pets birds hiking running sleep doctor taxes insurance meeting project urgent
someday weekend holiday gifts friends birthday learning writing photos art podcast
news coffee wine cycling volunteering";

const CONSONANTS: [&str; 28] = [
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "ch", "cr", "dr", "fl", "gr", "pl", "sh", "st", "tr",
];
const VOWELS: [&str; 9] = ["a", "e", "i", "o", "u", "ai", "ea", "oo", "ou"];
const ENDINGS: [&str; 8] = ["n", "r", "s", "t", "l", "m", "k", "nd"];

struct Corpus {
    vocab: Vec<String>,
    /// Ranks of the real English words in `vocab`.
    english: Vec<usize>,
    /// Cumulative Zipf weights (1/rank) over `vocab`.
    cdf: Vec<f64>,
    tags: Vec<&'static str>,
    tag_cdf: Vec<f64>,
}

fn zipf_cdf(n: usize, exponent: f64) -> Vec<f64> {
    let mut sum = 0.0;
    (0..n)
        .map(|r| {
            sum += 1.0 / ((r + 1) as f64).powf(exponent);
            sum
        })
        .collect()
}

fn sample(cdf: &[f64], rng: &mut Rng) -> usize {
    let u = rng.unit() * cdf[cdf.len() - 1];
    cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
}

/// One search: words (may be empty) and an optional tag filter.
#[derive(Debug, Clone)]
struct Query {
    q: String,
    tag: Option<&'static str>,
}

impl Corpus {
    fn new() -> Corpus {
        let english: Vec<&str> = ENGLISH.split_whitespace().collect();
        let mut seen: HashSet<String> = english.iter().map(|w| (*w).to_owned()).collect();
        let stride = VOCABULARY / english.len();
        let mut rng = Rng::new(0x5EED);
        let mut vocab = Vec::with_capacity(VOCABULARY);
        let mut ranks = Vec::with_capacity(english.len());
        let mut next_english = english.iter();
        for rank in 0..VOCABULARY {
            if rank % stride == 0
                && let Some(word) = next_english.next()
            {
                vocab.push((*word).to_owned());
                ranks.push(rank);
                continue;
            }
            loop {
                let mut word = String::new();
                for _ in 0..rng.range(2, 3) {
                    word.push_str(CONSONANTS[rng.below(CONSONANTS.len())]);
                    word.push_str(VOWELS[rng.below(VOWELS.len())]);
                }
                if rng.below(3) == 0 {
                    word.push_str(ENDINGS[rng.below(ENDINGS.len())]);
                }
                if seen.insert(word.clone()) {
                    vocab.push(word);
                    break;
                }
            }
        }
        let tags: Vec<&'static str> = TAGS.split_whitespace().collect();
        Corpus {
            cdf: zipf_cdf(vocab.len(), 1.0),
            tag_cdf: zipf_cdf(tags.len(), 0.8),
            vocab,
            english: ranks,
            tags,
        }
    }

    /// Item `i`'s text and tags: always the same for the same `i`.
    fn item(&self, i: usize) -> (String, Vec<&'static str>) {
        let mut rng = Rng::new(0xC0FF_EE00 ^ (i as u64));
        let words = rng.range(20, 80);
        let mut text = String::with_capacity(words * 8);
        let mut left = 0;
        for _ in 0..words {
            let word = &self.vocab[sample(&self.cdf, &mut rng)];
            if left == 0 {
                if !text.is_empty() {
                    text.push_str(". ");
                }
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    text.extend(first.to_uppercase());
                    text.push_str(chars.as_str());
                }
                left = rng.range(4, 14);
            } else {
                text.push(' ');
                text.push_str(word);
            }
            left -= 1;
        }
        text.push('.');
        let mut tags = Vec::new();
        for _ in 0..rng.range(0, 3) {
            let tag = self.tags[sample(&self.tag_cdf, &mut rng)];
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        (text, tags)
    }

    /// Item `i` as the body of `POST /api/v1/capture`.
    fn item_json(&self, i: usize) -> String {
        let (text, tags) = self.item(i);
        json!({ "text": text, "tags": tags }).to_string()
    }

    /// `n` queries: 1-3 words each, each word common (Zipf), a real English word (of any
    /// rank) or any word of the vocabulary (mostly rare); 20% carry a tag filter, and a
    /// quarter of those have no words (a listing by tag, newest first).
    fn queries(&self, n: usize, seed: u64) -> Vec<Query> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| {
                let tagged = rng.below(100) < 20;
                let tag = tagged.then(|| self.tags[sample(&self.tag_cdf, &mut rng)]);
                let words = if tag.is_some() && rng.below(4) == 0 {
                    0
                } else {
                    rng.range(1, 3)
                };
                // The first word is as often rare as common; more words narrow the
                // search (all must match), so they are mostly common ones.
                let q: Vec<&str> = (0..words)
                    .map(|k| {
                        let rank = match (k, rng.below(10)) {
                            (0, 0..=3) | (1.., 0..=6) => sample(&self.cdf, &mut rng),
                            (0, 4..=6) | (1.., _) => self.english[rng.below(self.english.len())],
                            (0, _) => rng.below(self.vocab.len()),
                        };
                        self.vocab[rank].as_str()
                    })
                    .collect();
                Query {
                    q: q.join(" "),
                    tag,
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Statistics

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50/p90/p95/p99/max/mean in milliseconds.
fn latency_json(samples: &mut [Duration]) -> Value {
    samples.sort_unstable();
    let mean = if samples.is_empty() {
        0.0
    } else {
        samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64
    };
    json!({
        "n": samples.len(),
        "p50_ms": round(ms(percentile(samples, 50.0))),
        "p90_ms": round(ms(percentile(samples, 90.0))),
        "p95_ms": round(ms(percentile(samples, 95.0))),
        "p99_ms": round(ms(percentile(samples, 99.0))),
        "max_ms": round(ms(samples.last().copied().unwrap_or_default())),
        "mean_ms": round(mean),
    })
}

/// A JSON value as plain text (strings unquoted, null as "-"), for padded columns.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------
// Where the CPU time goes (from /proc)

/// utime + stime (+ reaped children's) of `pid`, in seconds; /proc counts in USER_HZ,
/// which Linux fixes at 100 for user space.
fn cpu_seconds(pid: u32, with_children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    // After the command name: state is field 3; utime 14, stime 15, cutime 16, cstime 17.
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let mut ticks = field(14).unwrap_or(0.0) + field(15).unwrap_or(0.0);
    if with_children {
        ticks += field(16).unwrap_or(0.0) + field(17).unwrap_or(0.0);
    }
    ticks / 100.0
}

#[derive(Debug, Clone, Copy)]
struct Cpu {
    at: Instant,
    client: f64,
    supervisor: f64,
    service: f64,
    postgres: f64,
    /// Busy CPU seconds of the whole machine (/proc/stat), everyone included.
    machine: f64,
    /// Pressure stall totals (/proc/pressure, µs): cpu some, io some, io full.
    pressure: [f64; 3],
}

/// Busy seconds of all CPUs together (everything but idle and iowait).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: f64 = ticks.iter().take(8).sum::<f64>()
        - ticks.get(3).copied().unwrap_or(0.0)
        - ticks.get(4).copied().unwrap_or(0.0);
    busy / 100.0
}

/// The `total=` of the "some"/"full" lines of /proc/pressure/cpu and io (µs stalled);
/// zeros where the kernel has no PSI.
fn pressure_totals() -> [f64; 3] {
    let total = |file: &str, kind: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.split("total=").nth(1)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    [
        total("/proc/pressure/cpu", "some"),
        total("/proc/pressure/io", "some"),
        total("/proc/pressure/io", "full"),
    ]
}

/// The processes whose CPU time is counted.
#[derive(Debug, Clone, Copy)]
struct Pids {
    supervisor: u32,
    service: Option<u32>,
    postmaster: u32,
}

impl Pids {
    fn of(app: &TestAppliance) -> Pids {
        Pids {
            supervisor: app.supervisor_pid(),
            service: app.service_pid(),
            postmaster: app.postgres_pid(),
        }
    }
}

fn cpu_now(app: &TestAppliance) -> Cpu {
    cpu_at(Pids::of(app))
}

fn cpu_at(pids: Pids) -> Cpu {
    let mut postgres = cpu_seconds(pids.postmaster, true);
    let mut below = cv_testkit::children_of(pids.postmaster);
    while let Some(pid) = below.pop() {
        postgres += cpu_seconds(pid, false);
        below.extend(cv_testkit::children_of(pid));
    }
    Cpu {
        at: Instant::now(),
        client: cpu_seconds(std::process::id(), false),
        supervisor: cpu_seconds(pids.supervisor, false),
        service: pids.service.map_or(0.0, |pid| cpu_seconds(pid, false)),
        postgres,
        machine: machine_busy_seconds(),
        pressure: pressure_totals(),
    }
}

/// CPU seconds used since `before` by each party, and per request when `requests` > 0.
fn cpu_since(app: &TestAppliance, before: Cpu, requests: usize) -> Value {
    cpu_between(before, cpu_now(app), requests)
}

/// CPU seconds used between two snapshots by each party (see [`cpu_since`]).
fn cpu_between(before: Cpu, now: Cpu, requests: usize) -> Value {
    let wall = (now.at - before.at).as_secs_f64();
    let parts = [
        ("client", now.client - before.client),
        ("service", now.service - before.service),
        ("postgres", now.postgres - before.postgres),
        ("supervisor", now.supervisor - before.supervisor),
    ];
    let mut out = serde_json::Map::new();
    out.insert("wall_s".into(), json!(round(wall)));
    for (name, secs) in parts {
        let mut part = json!({
            "cpu_s": round(secs),
            "cores_busy": round(secs / wall.max(1e-9)),
        });
        if requests > 0 {
            part["ms_per_request"] = json!(round(secs * 1000.0 / requests as f64));
        }
        out.insert(name.into(), part);
    }
    // Everyone else on the machine (other builds, say): busy CPU not ours.
    let ours: f64 = parts.iter().map(|(_, secs)| secs).sum();
    let others = (now.machine - before.machine - ours).max(0.0);
    out.insert(
        "others".into(),
        json!({ "cpu_s": round(others), "cores_busy": round(others / wall.max(1e-9)) }),
    );
    // Share of the phase's wall time in which some (or all) runnable tasks waited for a
    // CPU, or for I/O (PostgreSQL's WAL fsync is I/O).
    let stalled = |i: usize| round((now.pressure[i] - before.pressure[i]) / 1e4 / wall.max(1e-9));
    out.insert(
        "pressure_pct".into(),
        json!({ "cpu_some": stalled(0), "io_some": stalled(1), "io_full": stalled(2) }),
    );
    Value::Object(out)
}

fn cpu_line(cpu: &Value) -> String {
    let mut line = String::from("CPU");
    for part in ["client", "service", "postgres", "supervisor", "others"] {
        let p = &cpu[part];
        let _ = write!(line, "  {part} {:.2} cores", f(&p["cores_busy"]));
        if let Some(per) = p["ms_per_request"].as_f64() {
            let _ = write!(line, " ({per:.2} ms/req)");
        }
    }
    let p = &cpu["pressure_pct"];
    let _ = write!(
        line,
        "; stalled: cpu {:.0}%, io {:.0}% (all tasks {:.0}%)",
        f(&p["cpu_some"]),
        f(&p["io_some"]),
        f(&p["io_full"])
    );
    line
}

/// VmRSS and VmHWM (peak) of the vault service, in bytes.
fn service_memory(app: &TestAppliance) -> Value {
    let Some(pid) = app.service_pid() else {
        return Value::Null;
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|v| v * 1024)
    };
    json!({ "pid": pid, "rss_bytes": kib("VmRSS:"), "peak_rss_bytes": kib("VmHWM:") })
}

fn mib(v: &Value) -> String {
    v.as_f64()
        .map_or("?".into(), |b| format!("{:.1} MiB", b / 1_048_576.0))
}

// ---------------------------------------------------------------------------------------
// The appliance over HTTPS

/// An HTTP/1.1 client with a pool of keep-alive connections, trusting only the
/// appliance's CA.
fn client(app: &TestAppliance, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&app.ca_pem()).unwrap())
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .timeout(timeout)
        .build()
        .unwrap()
}

/// Opens `n` keep-alive connections (so that the first measured requests do not pay for
/// TLS handshakes).
async fn warm_pool(client: &reqwest::Client, app: &TestAppliance, n: usize) {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let req = client.get(app.url("/healthz"));
        set.spawn(async move {
            if let Ok(resp) = req.send().await {
                let _ = resp.bytes().await;
            }
        });
    }
    while set.join_next().await.is_some() {}
}

fn create_capture_token(exe: &Path, app: &TestAppliance) -> String {
    let out = std::process::Command::new(exe)
        .args(["admin", "--data-dir"])
        .arg(&app.data_dir)
        .args([
            "create-token",
            "--user",
            USER,
            "--scope",
            "capture",
            "--name",
            "bench",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "create-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .find(|w| w.starts_with("cvt_"))
        .expect("a token in create-token's output")
        .to_owned()
}

/// `POST /api/v1/capture`; Ok on 201.
async fn capture(req: reqwest::RequestBuilder) -> Result<(), String> {
    match req.send().await {
        Ok(resp) if resp.status() == 201 => {
            resp.bytes().await.map(|_| ()).map_err(|e| e.to_string())
        }
        Ok(resp) => {
            let status = resp.status();
            Err(format!(
                "HTTP {status}: {}",
                resp.text().await.unwrap_or_default()
            ))
        }
        Err(e) => Err(format!("{e} ({e:?})")),
    }
}

fn capture_request(
    client: &reqwest::Client,
    app: &TestAppliance,
    token: &str,
    body: String,
) -> reqwest::RequestBuilder {
    client
        .post(app.url("/api/v1/capture"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
}

/// Captures scheduled every 1/rate s for `capture_secs` (open loop); latency from the
/// scheduled send time.
async fn capture_open_loop(
    client: &reqwest::Client,
    app: &TestAppliance,
    token: &str,
    corpus: &Corpus,
    first: usize,
    config: &Config,
) -> Value {
    let n = config.captures_per_run();
    let requests: Vec<reqwest::RequestBuilder> = (first..first + n)
        .map(|i| capture_request(client, app, token, corpus.item_json(i)))
        .collect();
    warm_pool(client, app, 8).await;
    let period = Duration::from_nanos(1_000_000_000 / config.rate);
    let pids = Pids::of(app);
    let before = cpu_at(pids);
    // The schedule is kept by a thread of its own: tokio's timer has 1 ms granularity,
    // a thread's sleep about 0.1 ms. Each request then runs as a task on the runtime.
    let runtime = tokio::runtime::Handle::current();
    let start = Instant::now() + Duration::from_millis(50);
    // CPU snapshots at every second of the schedule, to tell slow seconds caused by
    // other work on the machine from slow seconds of our own.
    let secs = config.capture_secs;
    let sampler = std::thread::spawn(move || {
        (0..=secs)
            .map(|k| {
                let at = start + Duration::from_secs(k);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                cpu_at(pids)
            })
            .collect::<Vec<Cpu>>()
    });
    let dispatcher = std::thread::spawn(move || {
        let mut tasks = Vec::with_capacity(requests.len());
        for (k, req) in requests.into_iter().enumerate() {
            let scheduled = start + period * u32::try_from(k).unwrap();
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            tasks.push(runtime.spawn(async move {
                let sent = Instant::now();
                let result = capture(req).await;
                let done = Instant::now();
                (done - scheduled, done - sent, sent - scheduled, result)
            }));
        }
        tasks
    });
    let tasks = tokio::task::spawn_blocking(move || dispatcher.join().unwrap())
        .await
        .unwrap();
    let mut from_schedule = Vec::with_capacity(n);
    let mut from_send = Vec::with_capacity(n);
    let mut lag = Vec::with_capacity(n);
    let mut errors = Vec::new();
    // Latencies by the second of the schedule they belong to.
    let mut by_second: Vec<Vec<Duration>> = vec![Vec::new(); usize::try_from(secs).unwrap()];
    for (k, task) in tasks.into_iter().enumerate() {
        let (total, service, send_lag, result) = task.await.unwrap();
        lag.push(send_lag);
        match result {
            Ok(()) => {
                from_schedule.push(total);
                from_send.push(service);
                let second = k / usize::try_from(config.rate).unwrap();
                if let Some(bucket) = by_second.get_mut(second) {
                    bucket.push(total);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    let cpu = cpu_since(app, before, n);
    let snapshots = tokio::task::spawn_blocking(move || sampler.join().unwrap())
        .await
        .unwrap();
    let timeline = timeline(&snapshots, by_second, CAPTURE_P99_TARGET_MS);
    let mut sample_errors = errors.clone();
    sample_errors.truncate(5);
    json!({
        "scheduled": n,
        "ok": from_schedule.len(),
        "errors": errors.len(),
        "error_samples": sample_errors,
        "rate_per_s": config.rate,
        "seconds": config.capture_secs,
        "latency_from_schedule": latency_json(&mut from_schedule),
        "latency_from_send": latency_json(&mut from_send),
        "send_lag": latency_json(&mut lag),
        "cpu": cpu,
        "timeline": timeline,
    })
}

/// Other processes' CPU use (cores) above which a second counts as disturbed.
const DISTURBED_CORES: f64 = 0.25;

/// Per second of an open-loop run: latencies (max, how many over `slow_ms`) beside the
/// CPU use of each party, and the run's p99 split between quiet seconds and seconds in
/// which other processes on the machine used more than [`DISTURBED_CORES`].
fn timeline(snapshots: &[Cpu], by_second: Vec<Vec<Duration>>, slow_ms: f64) -> Value {
    let mut seconds = Vec::new();
    let mut quiet = Vec::new();
    let mut disturbed = Vec::new();
    let (mut quiet_secs, mut disturbed_secs) = (0, 0);
    for (k, mut latencies) in by_second.into_iter().enumerate() {
        let (Some(a), Some(b)) = (snapshots.get(k), snapshots.get(k + 1)) else {
            break;
        };
        let cpu = cpu_between(*a, *b, 0);
        let others = f(&cpu["others"]["cores_busy"]);
        latencies.sort_unstable();
        seconds.push(json!({
            "second": k,
            "requests": latencies.len(),
            "max_ms": round(ms(latencies.last().copied().unwrap_or_default())),
            "over_target": latencies.iter().filter(|d| ms(**d) >= slow_ms).count(),
            "service_cores": cpu["service"]["cores_busy"],
            "postgres_cores": cpu["postgres"]["cores_busy"],
            "client_cores": cpu["client"]["cores_busy"],
            "others_cores": others,
            "pressure_pct": cpu["pressure_pct"],
        }));
        if others > DISTURBED_CORES {
            disturbed_secs += 1;
            disturbed.extend(latencies);
        } else {
            quiet_secs += 1;
            quiet.extend(latencies);
        }
    }
    quiet.sort_unstable();
    disturbed.sort_unstable();
    json!({
        "disturbed_above_others_cores": DISTURBED_CORES,
        "quiet": { "seconds": quiet_secs, "latency": latency_json(&mut quiet) },
        "disturbed": { "seconds": disturbed_secs, "latency": latency_json(&mut disturbed) },
        "seconds": seconds,
    })
}

/// Captures items `from..to` with `concurrency` requests in flight (closed loop).
async fn load(
    client: &reqwest::Client,
    app: &TestAppliance,
    token: &str,
    corpus: &Arc<Corpus>,
    from: usize,
    to: usize,
    concurrency: usize,
) -> Value {
    warm_pool(client, app, concurrency).await;
    let next = Arc::new(AtomicUsize::new(from));
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let before = cpu_now(app);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, token) = (client.clone(), app.url("/api/v1/capture"), token.to_owned());
        let (next, done, errors, corpus) =
            (next.clone(), done.clone(), errors.clone(), corpus.clone());
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    break;
                }
                let body = corpus.item_json(i);
                let mut tries = 0;
                loop {
                    let req = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone());
                    match capture(req).await {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            tries += 1;
                            if tries == 3 {
                                errors.lock().unwrap().push(e);
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
    }
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "    … {n}/{} items in {secs:.0} s ({:.0} items/s)",
                    to - from,
                    n as f64 / secs
                );
            }
        })
    };
    while let Some(joined) = set.join_next().await {
        joined.unwrap();
    }
    progress.abort();
    let secs = started.elapsed().as_secs_f64();
    let loaded = done.load(Ordering::Relaxed);
    let cpu = cpu_since(app, before, loaded);
    let errors = errors.lock().unwrap().clone();
    json!({
        "from_items": from,
        "to_items": to,
        "loaded": loaded,
        "errors": errors.len(),
        "error_samples": errors.iter().take(5).collect::<Vec<_>>(),
        "seconds": round(secs),
        "items_per_s": round(loaded as f64 / secs),
        "concurrency": concurrency,
        "cpu": cpu,
    })
}

/// `GET path` with a bearer token, as JSON.
async fn get_json(client: &reqwest::Client, app: &TestAppliance, token: &str, path: &str) -> Value {
    let resp = client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let json: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET {path}: {json}");
    json
}

/// `POST /api/v1/login`, then `GET /api/v1/vault` until the index is ready. Returns the
/// session token and the measurements.
async fn unlock(
    long: &reqwest::Client,
    client: &reqwest::Client,
    app: &TestAppliance,
    sealed: usize,
) -> (String, Value) {
    let before = cpu_now(app);
    let started = Instant::now();
    let resp = long
        .post(app.url("/api/v1/login"))
        .json(&json!({ "user": USER, "passphrase": PASSPHRASE }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "login: {body}");
    let login = started.elapsed();
    let token = body["token"].as_str().unwrap().to_owned();
    let mut polls = 0;
    let vault = loop {
        let vault = get_json(client, app, &token, "/api/v1/vault").await;
        polls += 1;
        match vault["index"]["state"].as_str() {
            Some("ready") => break vault,
            Some("building") => {}
            _ => panic!("the index did not build: {vault}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30 * 60),
            "the index was not ready after 30 minutes: {vault}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let ready = started.elapsed();
    let cpu = cpu_since(app, before, 0);
    let index = &vault["index"];
    (
        token,
        json!({
            "items": vault["items"],
            "sealed_before_login": sealed,
            "login_ms": round(ms(login)),
            "ready_ms": round(ms(ready)),
            "build_ms": index["build_ms"],
            "documents": index["documents"],
            "memory_bytes": index["memory_bytes"],
            "polls": polls,
            "service_memory": service_memory(app),
            "cpu": cpu,
        }),
    )
}

async fn lock(client: &reqwest::Client, app: &TestAppliance, session: &str) {
    let resp = client
        .post(app.url("/api/v1/lock"))
        .bearer_auth(session)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "lock");
    let _ = resp.bytes().await;
}

/// Sequential searches (one at a time) after a warm-up.
async fn search(
    client: &reqwest::Client,
    app: &TestAppliance,
    session: &str,
    corpus: &Corpus,
    config: &Config,
    seed: u64,
) -> Value {
    let run = |query: Query| async move {
        let mut params: Vec<(&str, &str)> = Vec::new();
        if !query.q.is_empty() {
            params.push(("q", &query.q));
        }
        if let Some(tag) = query.tag {
            params.push(("tag", tag));
        }
        let started = Instant::now();
        let resp = client
            .get(app.url("/api/v1/search"))
            .query(&params)
            .bearer_auth(session)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let took = started.elapsed();
        assert_eq!(status, 200, "search {query:?}: {body}");
        assert_eq!(body["indexing"], false, "searched during a build: {body}");
        (took, body["total"].as_u64().unwrap_or(0))
    };
    for query in corpus.queries(config.warmup, seed ^ 0xFFFF) {
        run(query).await;
    }
    let queries = corpus.queries(config.queries, seed);
    let examples: Vec<String> = queries
        .iter()
        .take(8)
        .map(|q| match q.tag {
            Some(tag) => format!("{} [tag={tag}]", q.q),
            None => q.q.clone(),
        })
        .collect();
    let before = cpu_now(app);
    let mut latencies = Vec::with_capacity(queries.len());
    let mut totals = Vec::with_capacity(queries.len());
    let mut tagged = 0;
    for query in queries {
        tagged += usize::from(query.tag.is_some());
        let (took, total) = run(query).await;
        latencies.push(took);
        totals.push(total);
    }
    let cpu = cpu_since(app, before, latencies.len());
    let n = totals.len();
    json!({
        "queries": n,
        "with_tag": tagged,
        "latency": latency_json(&mut latencies),
        "mean_total": round(totals.iter().sum::<u64>() as f64 / n as f64),
        "max_total": totals.iter().max(),
        "no_results": totals.iter().filter(|t| **t == 0).count(),
        "examples": examples,
        "cpu": cpu,
    })
}

// ---------------------------------------------------------------------------------------
// The run

/// Everything measured so far; printed and saved at the end (also after a failure).
#[derive(Default)]
struct Report {
    capture_locked: Option<Value>,
    capture_unlocked: Option<Value>,
    sizes: Vec<Value>,
}

async fn run(
    exe: &Path,
    app: &TestAppliance,
    config: &Config,
    report: &Mutex<Report>,
) -> Result<(), String> {
    let out = app.create_user(USER, PASSPHRASE, false);
    if !out.status.success() {
        return Err(format!(
            "create-user failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let token = create_capture_token(exe, app);
    let corpus = Arc::new(Corpus::new());
    let client = client(app, Duration::from_secs(30));
    // Logging in re-wraps every key captured while locked, in the request.
    let long = client_long(app);
    let per_run = config.captures_per_run();

    let mut items = 0; // captured so far (= the next item's number)
    let mut sealed = 0; // captured while locked since the last unlock
    for (step, &size) in config.sizes.iter().enumerate() {
        println!("\n== {size} items");
        // The first locked capture run tops the corpus up to the first size.
        let target = if step == 0 {
            size.saturating_sub(per_run + config.warmup_captures())
                .max(items)
        } else {
            size.max(items)
        };
        let load_result = if target > items {
            println!(
                "  loading items {items}..{target} (locked, {} in flight)",
                config.concurrency
            );
            let result = load(
                &client,
                app,
                &token,
                &corpus,
                items,
                target,
                config.concurrency,
            )
            .await;
            let loaded = usize::try_from(result["loaded"].as_u64().unwrap_or(0)).unwrap();
            items = target;
            sealed += loaded;
            println!(
                "  load: {loaded} items in {:.1} s = {:.0} items/s, {} errors; {}",
                f(&result["seconds"]),
                f(&result["items_per_s"]),
                result["errors"],
                cpu_line(&result["cpu"])
            );
            if result["errors"].as_u64() != Some(0) {
                println!("  load errors, e.g.: {}", result["error_samples"]);
            }
            result
        } else {
            Value::Null
        };
        if step == 0 {
            let (result, warm, warm_ok) =
                capture_run("locked", &client, app, &token, &corpus, items, config).await;
            items += warm;
            sealed += warm_ok;
            items += per_run;
            sealed += usize::try_from(result["ok"].as_u64().unwrap_or(0)).unwrap();
            report.lock().unwrap().capture_locked = Some(result);
        }

        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("  unlock (login after {sealed} locked captures)");
        let (session, first) = unlock(&long, &client, app, sealed).await;
        sealed = 0;
        print_unlock(&first);

        println!(
            "  search: {} queries one at a time (after {} warm-up)",
            config.queries, config.warmup
        );
        let searched = search(
            &client,
            app,
            &session,
            &corpus,
            config,
            0xA11CE + step as u64,
        )
        .await;
        print_search(&searched);

        lock(&client, app, &session).await;
        println!("  unlock again (lock, then login; nothing sealed)");
        let (session, again) = unlock(&long, &client, app, 0).await;
        print_unlock(&again);

        let mut entry = json!({
            "size": size,
            "load": load_result,
            "unlock_first": first,
            "unlock_again": again,
            "search": searched,
        });
        if step == 0 {
            let (result, warm, _) =
                capture_run("unlocked", &client, app, &token, &corpus, items, config).await;
            items += warm;
            items += per_run;
            entry["service_memory_after_unlocked_captures"] = service_memory(app);
            report.lock().unwrap().capture_unlocked = Some(result);
        }
        report.lock().unwrap().sizes.push(entry);
        lock(&client, app, &session).await;
    }
    Ok(())
}

fn client_long(app: &TestAppliance) -> reqwest::Client {
    client(app, Duration::from_secs(30 * 60))
}

/// A pause, the warm-up second, then the measured capture run (printed); returns the
/// run's result (with the warm-up's numbers in it), and the warm-up's captures: attempted
/// and acknowledged.
async fn capture_run(
    vault: &str,
    client: &reqwest::Client,
    app: &TestAppliance,
    token: &str,
    corpus: &Corpus,
    first: usize,
    config: &Config,
) -> (Value, usize, usize) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "  capture latency, vault {vault}: {} req/s for {} s (open loop)",
        config.rate, config.capture_secs
    );
    let (warmup, warm) = capture_warmup(client, app, token, corpus, first, config).await;
    let warm_ok = usize::try_from(warmup["ok"].as_u64().unwrap_or(0)).unwrap_or(0);
    let mut result = capture_open_loop(client, app, token, corpus, first + warm, config).await;
    result["warmup"] = warmup;
    print_capture(vault, &result);
    (result, warm, warm_ok)
}

/// One second of captures at the same rate before a measured run, not counted in it: the
/// first requests after an unlock or a pause meet cold caches and connections and the
/// service's own after-unlock work. Its latencies are reported beside the run's; returns
/// them with the number of items it captured.
async fn capture_warmup(
    client: &reqwest::Client,
    app: &TestAppliance,
    token: &str,
    corpus: &Corpus,
    first: usize,
    config: &Config,
) -> (Value, usize) {
    let one_second = Config {
        capture_secs: 1,
        ..config.clone()
    };
    let result = capture_open_loop(client, app, token, corpus, first, &one_second).await;
    let l = &result["latency_from_schedule"];
    println!(
        "  warm-up, 1 s at the same rate (not counted): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
        f(&l["p50_ms"]),
        f(&l["p99_ms"]),
        f(&l["max_ms"]),
        result["errors"],
    );
    let summary = json!({
        "seconds": 1,
        "latency_from_schedule": result["latency_from_schedule"],
        "errors": result["errors"],
        "ok": result["ok"],
    });
    (summary, one_second.captures_per_run())
}

fn print_capture(label: &str, r: &Value) {
    let l = &r["latency_from_schedule"];
    println!(
        "  capture {label}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors (service time p99 {:.2} ms, send lag p99 {:.2} ms)",
        f(&l["p50_ms"]),
        f(&l["p90_ms"]),
        f(&l["p99_ms"]),
        f(&l["max_ms"]),
        r["errors"],
        f(&r["latency_from_send"]["p99_ms"]),
        f(&r["send_lag"]["p99_ms"]),
    );
    if r["errors"].as_u64() != Some(0) {
        println!("  capture errors, e.g.: {}", r["error_samples"]);
    }
    println!("  {}", cpu_line(&r["cpu"]));
    println!("  {}", split_line(&r["timeline"]));
}

/// The p99 of quiet seconds and of seconds when other processes were busy.
fn split_line(timeline: &Value) -> String {
    let part = |p: &Value| {
        format!(
            "{} s, {} requests, p99 {:.2} ms, max {:.2} ms",
            p["seconds"],
            p["latency"]["n"],
            f(&p["latency"]["p99_ms"]),
            f(&p["latency"]["max_ms"])
        )
    };
    format!(
        "seconds when other processes used ≤ {} cores: {}; the other seconds: {}",
        timeline["disturbed_above_others_cores"],
        part(&timeline["quiet"]),
        part(&timeline["disturbed"])
    )
}

fn print_unlock(r: &Value) {
    println!(
        "  {} items ({} sealed): login {:.0} ms, index ready {:.0} ms (build_ms {}), {} documents, index {}, service RSS {} (peak {}); {}",
        r["items"],
        r["sealed_before_login"],
        f(&r["login_ms"]),
        f(&r["ready_ms"]),
        r["build_ms"],
        r["documents"],
        mib(&r["memory_bytes"]),
        mib(&r["service_memory"]["rss_bytes"]),
        mib(&r["service_memory"]["peak_rss_bytes"]),
        cpu_line(&r["cpu"])
    );
}

fn print_search(r: &Value) {
    let l = &r["latency"];
    println!(
        "  search: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean total {:.1}, {} with no result; {}",
        f(&l["p50_ms"]),
        f(&l["p95_ms"]),
        f(&l["p99_ms"]),
        f(&l["max_ms"]),
        f(&r["mean_total"]),
        r["no_results"],
        cpu_line(&r["cpu"])
    );
}

/// Targets and whether each was met.
fn targets(report: &Report) -> Vec<Value> {
    let mut out = Vec::new();
    let mut check = |name: String, unit: &str, target: f64, value: f64| {
        out.push(json!({
            "name": name,
            "target": format!("< {target} {unit}"),
            "value": round(value),
            "unit": unit,
            "pass": value < target,
        }));
    };
    for (label, result) in [
        ("locked", &report.capture_locked),
        ("unlocked", &report.capture_unlocked),
    ] {
        if let Some(r) = result {
            // A failed request counts as a miss: it is not in the percentiles.
            let p99 = f(&r["latency_from_schedule"]["p99_ms"]);
            let p99 = if r["errors"].as_u64() == Some(0) {
                p99
            } else {
                f64::INFINITY
            };
            check(
                format!("capture p99 ({label})"),
                "ms",
                CAPTURE_P99_TARGET_MS,
                p99,
            );
        }
    }
    for entry in &report.sizes {
        let size = entry["size"].as_u64().unwrap_or(0);
        let note = if size as usize == TARGET_ITEMS {
            String::new()
        } else {
            format!(" [target is for {TARGET_ITEMS}]")
        };
        check(
            format!("unlock to index ready at {size}, first (re-wraps sealed){note}"),
            "s",
            UNLOCK_TARGET_S,
            f(&entry["unlock_first"]["ready_ms"]) / 1000.0,
        );
        check(
            format!("unlock to index ready at {size}, again (nothing sealed){note}"),
            "s",
            UNLOCK_TARGET_S,
            f(&entry["unlock_again"]["ready_ms"]) / 1000.0,
        );
        check(
            format!("search p95 at {size}{note}"),
            "ms",
            SEARCH_P95_TARGET_MS,
            f(&entry["search"]["latency"]["p95_ms"]),
        );
    }
    out
}

fn table(report: &Report, targets: &[Value]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nCapture over HTTPS (open loop, latency from the scheduled send time)"
    );
    let _ = writeln!(
        t,
        "  {:<9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>7}   {:>14} {:>13}",
        "vault", "n", "p50", "p90", "p99", "max", "errors", "service p99", "send lag p99"
    );
    for (label, result) in [
        ("locked", &report.capture_locked),
        ("unlocked", &report.capture_unlocked),
    ] {
        if let Some(r) = result {
            let l = &r["latency_from_schedule"];
            let _ = writeln!(
                t,
                "  {:<9} {:>6} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>7}   {:>11.2} ms {:>10.2} ms",
                label,
                text(&r["scheduled"]),
                f(&l["p50_ms"]),
                f(&l["p90_ms"]),
                f(&l["p99_ms"]),
                f(&l["max_ms"]),
                text(&r["errors"]),
                f(&r["latency_from_send"]["p99_ms"]),
                f(&r["send_lag"]["p99_ms"]),
            );
        }
    }
    for (label, result) in [
        ("locked", &report.capture_locked),
        ("unlocked", &report.capture_unlocked),
    ] {
        if let Some(r) = result {
            let _ = writeln!(t, "  {label}: {}", split_line(&r["timeline"]));
        }
    }
    let _ = writeln!(t, "\nCorpus load (vault locked, closed loop)");
    for entry in &report.sizes {
        let l = &entry["load"];
        if !l.is_null() {
            let _ = writeln!(
                t,
                "  items {:>7} -> {:<7} {:>8.0} items/s  ({} in flight, {} errors, {:.1} s)",
                text(&l["from_items"]),
                text(&l["to_items"]),
                f(&l["items_per_s"]),
                text(&l["concurrency"]),
                text(&l["errors"]),
                f(&l["seconds"]),
            );
        }
    }
    let _ = writeln!(
        t,
        "\nUnlock (POST /api/v1/login, then GET /api/v1/vault until the index is ready)"
    );
    let _ = writeln!(
        t,
        "  {:>7} {:<6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11} {:>11}",
        "items",
        "login",
        "sealed",
        "login",
        "ready",
        "build_ms",
        "docs",
        "index mem",
        "svc RSS",
        "svc peak"
    );
    for entry in &report.sizes {
        for (label, u) in [
            ("first", &entry["unlock_first"]),
            ("again", &entry["unlock_again"]),
        ] {
            let _ = writeln!(
                t,
                "  {:>7} {:<6} {:>7} {:>7.2} s {:>7.2} s {:>9} {:>9} {:>11} {:>11} {:>11}",
                text(&u["items"]),
                label,
                text(&u["sealed_before_login"]),
                f(&u["login_ms"]) / 1000.0,
                f(&u["ready_ms"]) / 1000.0,
                text(&u["build_ms"]),
                text(&u["documents"]),
                mib(&u["memory_bytes"]),
                mib(&u["service_memory"]["rss_bytes"]),
                mib(&u["service_memory"]["peak_rss_bytes"]),
            );
        }
    }
    let _ = writeln!(
        t,
        "\nSearch (GET /api/v1/search, one query at a time after a warm-up)"
    );
    let _ = writeln!(
        t,
        "  {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>10}",
        "items", "queries", "p50", "p95", "p99", "max", "mean total", "no result"
    );
    for entry in &report.sizes {
        let s = &entry["search"];
        let l = &s["latency"];
        let _ = writeln!(
            t,
            "  {:>7} {:>7} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>11.1} {:>10}",
            text(&entry["unlock_first"]["items"]),
            text(&s["queries"]),
            f(&l["p50_ms"]),
            f(&l["p95_ms"]),
            f(&l["p99_ms"]),
            f(&l["max_ms"]),
            f(&s["mean_total"]),
            text(&s["no_results"]),
        );
    }
    let _ = writeln!(t, "\nTargets");
    for target in targets {
        let _ = writeln!(
            t,
            "  {:<4}  {} {}: {} {}",
            if target["pass"] == true {
                "PASS"
            } else {
                "MISS"
            },
            target["name"].as_str().unwrap_or_default(),
            target["target"].as_str().unwrap_or_default(),
            target["value"],
            target["unit"].as_str().unwrap_or_default(),
        );
    }
    t
}

/// UTC now as `20260509T054800Z` and `2026-05-09T05:48:00Z`.
fn utc_now() -> (String, String) {
    let secs = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    )
    .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    (
        format!("{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}Z"),
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
    )
}

fn machine() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned());
    let mem_kib = read("/proc/meminfo").lines().find_map(|l| {
        l.strip_prefix("MemTotal:")?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    });
    json!({
        "loadavg_at_start": loadavg(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory_bytes": mem_kib.map(|k| k * 1024),
    })
}

/// /proc/loadavg's 1, 5 and 15-minute load averages: other work on the machine skews
/// every number here.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends this process's stderr (where cv-testkit echoes the appliance's log, one line
/// per capture) to `log`; returns the console's stderr for our own messages.
fn divert_stderr(log: &Path) -> Arc<Mutex<std::fs::File>> {
    let console = std::fs::File::from(nix::unistd::dup(std::io::stderr()).unwrap());
    let file = std::fs::File::create(log).unwrap();
    nix::unistd::dup2_stderr(&file).unwrap();
    let console = Arc::new(Mutex::new(console));
    let hook_console = console.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut c) = hook_console.lock() {
            let _ = writeln!(c, "{info}");
        }
        default_hook(info);
    }));
    console
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: the
    // benchmark (minutes, release numbers) runs only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "vault benchmark: run it with `cargo bench --bench vault` (skipped under cargo test)"
        );
        return std::process::ExitCode::SUCCESS;
    }
    let config = match Config::from_env_and_args() {
        Ok(c) => c,
        Err(why) if why == USAGE => {
            println!("{USAGE}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("{why}");
            return std::process::ExitCode::from(2);
        }
    };
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_contextvault"));
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let (stamp, iso) = utc_now();
    let json_path = out_dir.join(format!("vault-{stamp}.json"));
    let log_path = out_dir.join(format!("vault-{stamp}.log"));
    let version = std::process::Command::new(&exe)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let machine = machine();
    println!(
        "Context Vault vault benchmark, {iso}, {} mode: sizes {:?}, captures {} req/s × {} s, {} queries, load {} in flight",
        if config.quick { "quick" } else { "full" },
        config.sizes,
        config.rate,
        config.capture_secs,
        config.queries,
        config.concurrency
    );
    println!(
        "machine: {} cores ({}), {}; binary: {version} ({})",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        mib(&machine["memory_bytes"]),
        exe.display()
    );
    println!("appliance log: {}", log_path.display());
    let console = divert_stderr(&log_path);

    let started = Instant::now();
    let report = Mutex::new(Report::default());
    let app = TestAppliance::launch(&exe, Launch::Dev).await;
    println!(
        "appliance up in {:.1} s (dev mode, https://localhost:{})",
        started.elapsed().as_secs_f64(),
        app.https_port
    );
    let outcome = tokio::select! {
        r = run(&exe, &app, &config, &report) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
    };
    // Stops the appliance (and every process below it) and removes its directory.
    drop(app);
    let wall = started.elapsed().as_secs_f64();

    let report = report.into_inner().unwrap();
    let targets = targets(&report);
    println!("{}", table(&report, &targets));
    let doc = json!({
        "benchmark": "vault",
        "timestamp": iso,
        "complete": outcome.is_ok(),
        "error": outcome.as_ref().err(),
        "config": config.json(),
        "machine": machine,
        "binary": version,
        "wall_s": round(wall),
        "loadavg_at_end": loadavg(),
        "capture": { "locked": report.capture_locked, "unlocked": report.capture_unlocked },
        "sizes": report.sizes,
        "targets": targets,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    println!(
        "wall time {wall:.0} s; load average at start {}, at end {}; saved {}",
        doc["machine"]["loadavg_at_start"].as_str().unwrap_or("?"),
        doc["loadavg_at_end"].as_str().unwrap_or("?"),
        json_path.display()
    );
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(why) => {
            let _ = writeln!(console.lock().unwrap(), "benchmark stopped: {why}");
            std::process::ExitCode::FAILURE
        }
    }
}
