//! Retrieval quality on a labelled set of personal notes: full-text search (BM25, the
//! vault's `cv_search::SearchIndex` with a default query), vector search (the real
//! embedding model, chunks in a `VectorIndex`) and both fused (`Fusion::default()`).
//!
//! `tests/data/retrieval.json` holds 73 short notes (three of them long enough for
//! several chunks) and queries of four kinds, each with the notes relevant to it:
//! *paraphrase* queries share no content word with their notes (checked below, after
//! lower-casing and stemming with the index's own English analyzer, and by prefix);
//! *keyword* queries are names, rare words, numbers and codes; *topical* queries are
//! natural wording that shares some words; *none* queries are about nothing in the
//! vault. Recall@10 and MRR@10 are computed over the first three kinds; the *none*
//! queries measure how similar an unrelated note can look, which is where
//! [`cv_semantic::DEFAULT_MIN_SIMILARITY`] comes from.
//!
//! The table is printed (run with `--nocapture`) and written to
//! `<target>/eval/retrieval.json`. The test asserts the bar the feature was built to:
//! hybrid search is at least as good as the better of BM25 and vector search, on both
//! measures. Skipped, with the reason printed, when the model's files are absent (see
//! `common`); `CV_REQUIRE_MODEL=1` makes that a failure.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use cv_inference::{EmbedOptions, Embedder};
use cv_search::{Document, Kind, SearchIndex};
use cv_semantic::{ChunkOptions, Fusion, Matched, RRF_K, VectorIndex, chunk, dot, fuse_rrf};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// Results taken from each method before fusion, and the cut-off of the measures.
const CANDIDATES: usize = 50;
const AT: usize = 10;

#[derive(Debug, Deserialize)]
struct Set {
    notes: Vec<Note>,
    queries: Vec<Labelled>,
}

#[derive(Debug, Deserialize)]
struct Note {
    id: String,
    text: String,
}

#[derive(Debug, Deserialize)]
struct Labelled {
    text: String,
    relevant: Vec<String>,
    kind: String,
}

fn load_set() -> Set {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/retrieval.json");
    let text = std::fs::read_to_string(&path).expect("the labelled set is readable");
    let set: Set = serde_json::from_str(&text).expect("the labelled set parses");
    let ids: HashSet<&str> = set.notes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids.len(), set.notes.len(), "note ids are unique");
    for q in &set.queries {
        for id in &q.relevant {
            assert!(ids.contains(id.as_str()), "{:?} names no note {id}", q.text);
        }
        assert_eq!(q.relevant.is_empty(), q.kind == "none", "{:?}", q.text);
    }
    set
}

/// Function words, which say nothing about what a note is about.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "from", "by",
    "with", "about", "as", "into", "after", "before", "while", "when", "how", "what", "which",
    "who", "is", "are", "was", "were", "be", "been", "has", "have", "had", "do", "does", "my",
    "our", "your", "her", "his", "their", "it", "its", "i", "we", "you", "she", "he", "they",
    "them", "this", "that", "these", "those", "there", "so", "if", "then", "than", "up", "out",
    "much", "more", "most", "some", "any", "all", "s", "seems", "new",
];

/// The content words of a text, each as (lower-cased word, stem): tantivy's English
/// analyzer (the full-text index's own), without function words.
fn content_words(text: &str) -> Vec<(String, String)> {
    let manager = tantivy::tokenizer::TokenizerManager::default();
    let mut lower = manager.get("default").expect("tantivy's default analyzer");
    let mut stemmer = manager.get("en_stem").expect("tantivy's English analyzer");
    let mut words = Vec::new();
    let mut stream = lower.token_stream(text);
    while let Some(token) = stream.next() {
        words.push(token.text.clone());
    }
    words
        .into_iter()
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .map(|w| {
            let mut stem = String::new();
            {
                let mut stream = stemmer.token_stream(&w);
                while let Some(token) = stream.next() {
                    stem.push_str(&token.text);
                }
            }
            (w, stem)
        })
        .collect()
}

/// Two words count as the same word when their stems are equal, or when they start
/// with the same five letters ("departs", "departure"), or one begins the other.
fn same_word(a: &(String, String), b: &(String, String)) -> bool {
    let prefix = |s: &str| s.chars().take(5).collect::<String>();
    a.1 == b.1
        || a.0.chars().count() >= 5 && b.0.chars().count() >= 5 && prefix(&a.0) == prefix(&b.0)
        || a.0.len() >= 4 && b.0.starts_with(&a.0)
        || b.0.len() >= 4 && a.0.starts_with(&b.0)
}

#[test]
fn paraphrase_queries_share_no_word_with_their_notes() {
    let set = load_set();
    let notes: HashMap<&str, &str> = set
        .notes
        .iter()
        .map(|n| (n.id.as_str(), n.text.as_str()))
        .collect();
    let paraphrases: Vec<&Labelled> = set
        .queries
        .iter()
        .filter(|q| q.kind == "paraphrase")
        .collect();
    assert!(
        paraphrases.len() >= 12,
        "{} paraphrase queries",
        paraphrases.len()
    );
    for q in paraphrases {
        let query = content_words(&q.text);
        assert!(!query.is_empty(), "{:?} has no content word", q.text);
        for id in &q.relevant {
            let note = content_words(notes[id.as_str()]);
            for word in &query {
                let shared = note.iter().find(|n| same_word(word, n));
                assert!(
                    shared.is_none(),
                    "paraphrase query {:?} shares {:?} with its note {id} ({:?})",
                    q.text,
                    word.0,
                    shared.map(|s| &s.0)
                );
            }
        }
    }
}

/// Recall@10 and MRR@10 of one ranking.
fn measure(ranking: &[Uuid], relevant: &HashSet<Uuid>) -> (f64, f64) {
    let top = &ranking[..ranking.len().min(AT)];
    let found = top.iter().filter(|id| relevant.contains(id)).count();
    let first = top.iter().position(|id| relevant.contains(id));
    (
        found as f64 / relevant.len() as f64,
        first.map_or(0.0, |rank| 1.0 / (rank + 1) as f64),
    )
}

#[derive(Debug, Default, Clone, Copy)]
struct Score {
    recall: f64,
    mrr: f64,
    queries: usize,
}

impl Score {
    fn add(&mut self, (recall, mrr): (f64, f64)) {
        self.recall += recall;
        self.mrr += mrr;
        self.queries += 1;
    }

    fn mean(self) -> (f64, f64) {
        let n = self.queries.max(1) as f64;
        (self.recall / n, self.mrr / n)
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repository_root().join("target"))
}

fn fusion_default_cut() -> Option<f32> {
    Fusion::default().min_similarity
}

fn percentile(sorted: &[f32], p: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn hybrid_is_at_least_as_good_as_either_alone() {
    let Some(files) = common::model_files() else {
        return;
    };
    let set = load_set();
    let options = EmbedOptions {
        intra_threads: 2,
        ..EmbedOptions::default()
    };
    let mut embedder = Embedder::load(&files, &options).expect("the model loads");

    // Ids: the note's position, so runs are comparable.
    let ids: HashMap<&str, Uuid> = set
        .notes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), Uuid::from_u64_pair(0x5e3a_471c, i as u64)))
        .collect();
    let names: HashMap<Uuid, &str> = ids.iter().map(|(name, id)| (*id, *name)).collect();

    // Full text.
    let created = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let search = SearchIndex::new().expect("a search index");
    let documents: Vec<Document> = set
        .notes
        .iter()
        .map(|n| Document {
            id: ids[n.id.as_str()],
            text: n.text.clone(),
            tags: Vec::new(),
            kind: Kind::Note,
            status: None,
            due: None,
            created,
            updated: created,
            pinned: false,
            archived: false,
        })
        .collect();
    search.build(documents, |_| {}).expect("the index builds");

    // Vectors: every chunk of every note.
    let mut vectors = VectorIndex::default();
    // The same vectors unquantised, for the exact ranking the index approximates.
    let mut exact_vectors: Vec<(Uuid, Vec<Vec<f32>>)> = Vec::new();
    let mut chunks_total = 0;
    for note in &set.notes {
        let chunks = chunk(&note.text, &ChunkOptions::default());
        let texts: Vec<&str> = chunks.iter().map(|c| c.text).collect();
        chunks_total += texts.len();
        let embedded = embedder.embed(&texts).expect("the notes embed");
        exact_vectors.push((ids[note.id.as_str()], embedded.clone()));
        vectors
            .upsert(ids[note.id.as_str()], embedded)
            .expect("the vectors fit");
    }
    assert!(
        chunks_total > set.notes.len(),
        "the long notes make several chunks"
    );

    // Both candidate lists of every query.
    struct Run<'a> {
        q: &'a Labelled,
        relevant: HashSet<Uuid>,
        bm25: Vec<(Uuid, f32)>,
        vector: Vec<(Uuid, f32)>,
        exact: Vec<(Uuid, f32)>,
    }
    let mut runs = Vec::new();
    for q in &set.queries {
        let results = search
            .search(&cv_search::Query {
                text: q.text.clone(),
                limit: CANDIDATES,
                ..cv_search::Query::default()
            })
            .expect("the search runs");
        let query_vector = embedder
            .embed(&[q.text.as_str()])
            .expect("the query embeds")
            .remove(0);
        let mut exact: Vec<(Uuid, f32)> = exact_vectors
            .iter()
            .map(|(item, chunks)| {
                let best = chunks
                    .iter()
                    .map(|c| dot(&query_vector, c))
                    .fold(f32::NEG_INFINITY, f32::max);
                (*item, best)
            })
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        exact.truncate(CANDIDATES);
        runs.push(Run {
            q,
            exact,
            relevant: q.relevant.iter().map(|r| ids[r.as_str()]).collect(),
            bm25: results.hits.iter().map(|h| (h.id, h.score)).collect(),
            vector: vectors
                .search(&query_vector, CANDIDATES, |_| true)
                .iter()
                .map(|h| (h.item, h.score))
                .collect(),
        });
    }
    let (scored, unrelated): (Vec<&Run>, Vec<&Run>) =
        runs.iter().partition(|r| !r.relevant.is_empty());
    assert!(scored.len() >= 30, "{} scored queries", scored.len());

    // Every method's ranking of every scored query.
    let fusion = Fusion::default();
    let methods = [
        "bm25",
        "vector",
        "vector (exact f32)",
        "rrf (no similarity cut)",
        "hybrid",
    ];
    let mut scores: BTreeMap<(&str, &str), Score> = BTreeMap::new();
    let mut per_query = Vec::new();
    for run in &scored {
        let plain = fuse_rrf(&run.bm25, &run.vector, RRF_K);
        let hybrid = fusion.fuse(&run.bm25, &run.vector);
        let rankings: [Vec<Uuid>; 5] = [
            run.bm25.iter().map(|h| h.0).collect(),
            run.vector.iter().map(|h| h.0).collect(),
            run.exact.iter().map(|h| h.0).collect(),
            plain.iter().map(|h| h.item).collect(),
            hybrid.iter().map(|h| h.item).collect(),
        ];
        let mut row = serde_json::Map::new();
        row.insert("query".into(), json!(run.q.text));
        row.insert("kind".into(), json!(run.q.kind));
        for (method, ranking) in methods.iter().zip(&rankings) {
            let m = measure(ranking, &run.relevant);
            scores.entry((method, "all")).or_default().add(m);
            scores
                .entry((method, run.q.kind.as_str()))
                .or_default()
                .add(m);
            row.insert(
                (*method).into(),
                json!({"recall_at_10": m.0, "reciprocal_rank": m.1}),
            );
        }
        let top: Vec<_> = hybrid
            .iter()
            .take(3)
            .map(|h| json!({"note": names[&h.item], "matched": h.matched.as_str()}))
            .collect();
        row.insert("hybrid_top3".into(), json!(top));
        per_query.push(serde_json::Value::Object(row));
    }

    // The table.
    let kinds = ["all", "paraphrase", "keyword", "topical"];
    let mut table = String::new();
    table.push_str(&format!(
        "retrieval on {} notes ({chunks_total} chunks), {} queries with relevant notes, {} about nothing in the vault\n",
        set.notes.len(),
        scored.len(),
        unrelated.len(),
    ));
    table.push_str(&format!("{:<24}", "method"));
    for kind in kinds {
        let n = scores.get(&("bm25", kind)).map_or(0, |s| s.queries);
        table.push_str(&format!("{:>24}", format!("{kind} ({n}) R@10  MRR")));
    }
    table.push('\n');
    let mut summary = serde_json::Map::new();
    for method in methods {
        table.push_str(&format!("{method:<24}"));
        let mut by_kind = serde_json::Map::new();
        for kind in kinds {
            let (recall, mrr) = scores
                .get(&(method, kind))
                .copied()
                .unwrap_or_default()
                .mean();
            table.push_str(&format!("{:>24}", format!("{recall:.3} {mrr:.3}")));
            by_kind.insert(
                kind.into(),
                json!({"recall_at_10": recall, "mrr_at_10": mrr}),
            );
        }
        table.push('\n');
        summary.insert(method.into(), serde_json::Value::Object(by_kind));
    }

    // Quantisation: how far the index's scores are from the exact cosines, and how much
    // of the exact top 10 it returns.
    let mut worst_error = 0.0f32;
    let mut overlap = 0.0;
    let mut same_first = 0;
    for run in &runs {
        let exact: HashMap<Uuid, f32> = run.exact.iter().copied().collect();
        for (item, score) in &run.vector {
            if let Some(e) = exact.get(item) {
                worst_error = worst_error.max((score - e).abs());
            }
        }
        let top: HashSet<Uuid> = run.vector.iter().take(AT).map(|h| h.0).collect();
        overlap += run
            .exact
            .iter()
            .take(AT)
            .filter(|h| top.contains(&h.0))
            .count() as f64
            / AT as f64;
        same_first +=
            usize::from(run.vector.first().map(|h| h.0) == run.exact.first().map(|h| h.0));
    }
    let overlap = overlap / runs.len() as f64;
    table.push_str(&format!(
        "int8 index against exact f32 cosines: largest score error {worst_error:.4}, top-10 overlap {overlap:.3}, same first result {same_first}/{}\n",
        runs.len()
    ));

    // Similarities, for the cut: how close relevant notes are, how close the nearest
    // note is for a query about nothing here, and what each cut would keep.
    let mut similarity_report = serde_json::Map::new();
    let mut by_kind: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    for run in &scored {
        for (item, similarity) in &run.vector {
            if run.relevant.contains(item) {
                by_kind
                    .entry(run.q.kind.as_str())
                    .or_default()
                    .push(*similarity);
            }
        }
    }
    for (kind, values) in &mut by_kind {
        values.sort_by(f32::total_cmp);
        let (min, p10, median) = (
            percentile(values, 0.0),
            percentile(values, 0.1),
            percentile(values, 0.5),
        );
        table.push_str(&format!(
            "similarity of relevant notes, {kind} queries: min {min:.3}, p10 {p10:.3}, median {median:.3}\n"
        ));
        similarity_report.insert(
            format!("relevant_{kind}"),
            json!({"min": min, "p10": p10, "median": median}),
        );
    }
    let mut nearest: Vec<f32> = unrelated
        .iter()
        .filter_map(|r| r.vector.first().map(|v| v.1))
        .collect();
    nearest.sort_by(f32::total_cmp);
    table.push_str(&format!(
        "similarity of the nearest note to a query about nothing here: min {:.3}, median {:.3}, max {:.3}\n",
        percentile(&nearest, 0.0),
        percentile(&nearest, 0.5),
        percentile(&nearest, 1.0),
    ));
    similarity_report.insert("nearest_for_unrelated_queries".into(), json!(nearest));
    table.push_str(
        "cut    hybrid R@10  MRR   meaning-only hits: per unrelated query, per scored query\n",
    );
    let mut sweep = Vec::new();
    for cut in [
        None,
        Some(0.2),
        Some(0.25),
        Some(0.3),
        Some(0.35),
        Some(0.4),
    ] {
        let fusion = Fusion {
            min_similarity: cut,
            ..fusion
        };
        let mut score = Score::default();
        let mut meaning_scored = 0;
        for run in &scored {
            let hits = fusion.fuse(&run.bm25, &run.vector);
            let ranking: Vec<Uuid> = hits.iter().map(|h| h.item).collect();
            score.add(measure(&ranking, &run.relevant));
            meaning_scored += hits
                .iter()
                .take(AT)
                .filter(|h| h.matched == Matched::Meaning)
                .count();
        }
        let meaning_unrelated: usize = unrelated
            .iter()
            .map(|run| {
                fusion
                    .fuse(&run.bm25, &run.vector)
                    .iter()
                    .take(AT)
                    .filter(|h| h.matched == Matched::Meaning)
                    .count()
            })
            .sum();
        let (recall, mrr) = score.mean();
        let per_unrelated = meaning_unrelated as f64 / unrelated.len().max(1) as f64;
        let per_scored = meaning_scored as f64 / scored.len().max(1) as f64;
        let label = cut.map_or("none".to_owned(), |c| format!("{c:.2}"));
        let marker = if cut == fusion_default_cut() {
            " (default)"
        } else {
            ""
        };
        table.push_str(&format!(
            "{label:<6} {recall:>10.3} {mrr:>5.3}   {per_unrelated:>5.1}, {per_scored:>5.1}{marker}\n"
        ));
        sweep.push(json!({
            "min_similarity": cut, "recall_at_10": recall, "mrr_at_10": mrr,
            "meaning_only_in_top10_per_unrelated_query": per_unrelated,
            "meaning_only_in_top10_per_scored_query": per_scored,
        }));
    }
    similarity_report.insert("cut_sweep".into(), json!(sweep));
    eprintln!("{table}");

    let dir = target_dir().join("eval");
    std::fs::create_dir_all(&dir).expect("the eval directory is writable");
    let report = json!({
        "notes": set.notes.len(),
        "chunks": chunks_total,
        "queries_scored": scored.len(),
        "queries_unrelated": unrelated.len(),
        "candidates_per_method": CANDIDATES,
        "fusion": {
            "k": fusion.k, "bm25_weight": fusion.bm25_weight,
            "vector_weight": fusion.vector_weight, "min_similarity": fusion.min_similarity,
        },
        "methods": summary,
        "quantisation": {
            "largest_score_error": worst_error,
            "top10_overlap_with_exact": overlap,
            "same_first_result": same_first,
            "queries": runs.len(),
        },
        "similarity": similarity_report,
        "queries": per_query,
    });
    std::fs::write(
        dir.join("retrieval.json"),
        serde_json::to_string_pretty(&report).expect("the report serialises"),
    )
    .expect("the report is written");

    let mean = |method| {
        scores
            .get(&(method, "all"))
            .copied()
            .unwrap_or_default()
            .mean()
    };
    let (bm25, vector, hybrid) = (mean("bm25"), mean("vector"), mean("hybrid"));
    assert!(
        hybrid.0 >= bm25.0.max(vector.0),
        "hybrid recall@10 {:.3} is below the better of BM25 {:.3} and vector {:.3}\n{table}",
        hybrid.0,
        bm25.0,
        vector.0
    );
    assert!(
        hybrid.1 >= bm25.1.max(vector.1),
        "hybrid MRR@10 {:.3} is below the better of BM25 {:.3} and vector {:.3}\n{table}",
        hybrid.1,
        bm25.1,
        vector.1
    );
}
