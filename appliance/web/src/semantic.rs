//! Search by meaning: each unlocked vault's vector index (`cv_semantic::VectorIndex`, in
//! RAM beside its full-text index), the background jobs that embed items through the
//! jailed AI workers and store the embeddings encrypted (`cv_vault::embeddings`), and
//! hybrid search (full-text and vector rankings fused, each hit saying why it matched).
//!
//! - **Filling the index.** At unlock the full-text build (`crate::index`) decrypts each
//!   item's embeddings row with the item (same data key, same pass) and loads the
//!   current ones here; the items without a current row (captured while locked, edited
//!   by an older version of the service, or embedded while the AI was off) are then
//!   embedded in the background, [`EMBED_BATCH`] items per request to the workers. A
//!   capture or an edit while unlocked embeds that item the same way.
//! - **Failing softly.** Without workers, or when they fail, nothing else breaks: items
//!   are stored and searchable by words; what was not embedded is tried again at the
//!   next unlock or write. Logs carry counts and error kinds, never text or vectors.
//! - **Searching.** See [`search`].

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use actix_web::web;
use cv_db::UserId;
use cv_db::items::ItemId;
use cv_search::{Hit, Query, Results};
use cv_semantic::{ChunkOptions, Fusion, Matched, VectorIndex};
use cv_vault::embeddings::{EmbeddedChunk, Embeddings};
use tracing::{info, warn};
use uuid::Uuid;

use crate::error::WebError;
use crate::index::VaultIndex;
use crate::state::AppState;

/// The model the workers run (`cv_inference`): stored with each row, so vectors of
/// another model are recomputed rather than compared.
pub(crate) const MODEL: &str = "all-MiniLM-L6-v2";

/// How long a search waits for its query's embedding before answering by words only:
/// one short text takes milliseconds on a warm worker; a worker still starting takes
/// seconds, and a search should not wait for it.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// How many items vector search contributes to the fusion (after the filters). The
/// evaluation in `cv_semantic` finds every relevant note within the top 10; 50 leaves
/// room for filters and pages.
pub(crate) const VECTOR_TOP: usize = 50;

/// The least depth of the full-text list fused with the vector list. At 50 or more, an
/// item beyond it (RRF term at most 1/(60+51)) ranks below every vector hit kept (at
/// least 1/(60+50)), so pages cut from the fused list are in their final order.
const BM25_DEPTH: usize = 50;

/// The most chunks of one item searched with to find its nearest items: a long note's
/// first chunks say what it is about, and each chunk is one pass over the index.
pub(crate) const NEAREST_QUERY_CHUNKS: usize = 8;

/// Items embedded per request to the workers (their chunks go in one request).
pub(crate) const EMBED_BATCH: usize = 16;

/// One vault's vectors and where each chunk is in its item's text (for snippets).
#[derive(Default)]
struct Vectors {
    index: Option<VectorIndex>,
    ranges: HashMap<Uuid, Vec<Range<usize>>>,
}

/// The vector side of one unlocked vault; dropped with it at lock.
#[derive(Default)]
pub(crate) struct Semantic {
    vectors: RwLock<Vectors>,
    /// Items waiting to be embedded, and items embedded since unlock.
    pending: AtomicU64,
    embedded: AtomicU64,
    /// Why the last embedding attempt failed (the pool's words: never a text).
    last_error: Mutex<Option<String>>,
    /// Bumped by every change of the vectors, so results derived from them (themes)
    /// can tell they are out of date.
    changes: AtomicU64,
}

impl std::fmt::Debug for Semantic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Semantic({} items)", self.items())
    }
}

impl Semantic {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vectors> {
        self.vectors.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vectors> {
        self.vectors.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts an item's chunks in the index (replacing its old ones); no chunk removes it.
    /// Vectors the index refuses (wrong length, no direction) leave the item out.
    pub fn upsert(&self, item: Uuid, embeddings: &Embeddings) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        let Some(dimensions) = embeddings.chunks.first().map(|c| c.vector.len()) else {
            self.remove(item);
            return;
        };
        let vectors: Vec<Vec<f32>> = embeddings.chunks.iter().map(|c| c.vector.clone()).collect();
        let ranges = embeddings.chunks.iter().map(|c| c.range.clone()).collect();
        let mut guard = self.write();
        let index = guard
            .index
            .get_or_insert_with(|| VectorIndex::new(dimensions));
        match index.upsert(item, vectors) {
            Ok(()) => {
                guard.ranges.insert(item, ranges);
            }
            Err(e) => {
                index.remove(item);
                guard.ranges.remove(&item);
                warn!(item = %item, error = %e, "an item's embeddings were refused by the index");
            }
        }
    }

    pub fn remove(&self, item: Uuid) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        let mut guard = self.write();
        if let Some(index) = guard.index.as_mut() {
            index.remove(item);
        }
        guard.ranges.remove(&item);
    }

    /// How many changes the vectors have seen (see the field).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Whether the item has vectors in the index.
    pub fn contains(&self, item: Uuid) -> bool {
        self.read().index.as_ref().is_some_and(|i| i.contains(item))
    }

    /// One vector for the whole item (its chunks' mean, normalised), if it is indexed.
    pub fn item_vector(&self, item: Uuid) -> Option<Vec<f32>> {
        let chunks = self.read().index.as_ref()?.item_vectors(item)?;
        cv_semantic::item_vector(&chunks)
    }

    /// The `k` items nearest in meaning to `item` (not itself), best first, each with its
    /// similarity and the range of its closest chunk: every chunk of `item` (at most
    /// [`NEAREST_QUERY_CHUNKS`]) is searched with, and each other item ranks by its best
    /// score against any of them. Items under `min_similarity` are left out. Empty when
    /// `item` has no vectors.
    pub fn nearest_to(
        &self,
        item: Uuid,
        k: usize,
        min_similarity: f32,
    ) -> Vec<(Uuid, f32, Option<Range<usize>>)> {
        let guard = self.read();
        let Some(index) = guard.index.as_ref() else {
            return Vec::new();
        };
        let Some(vectors) = index.item_vectors(item) else {
            return Vec::new();
        };
        let mut best: HashMap<Uuid, (f32, usize)> = HashMap::new();
        for vector in vectors.iter().take(NEAREST_QUERY_CHUNKS) {
            for hit in index.search(vector, k, |other| other != item) {
                if hit.score < min_similarity {
                    continue;
                }
                let entry = best.entry(hit.item).or_insert((hit.score, hit.chunk_index));
                if hit.score > entry.0 {
                    *entry = (hit.score, hit.chunk_index);
                }
            }
        }
        let mut nearest: Vec<(Uuid, f32, Option<Range<usize>>)> = best
            .into_iter()
            .map(|(id, (score, chunk))| {
                let range = guard.ranges.get(&id).and_then(|r| r.get(chunk)).cloned();
                (id, score, range)
            })
            .collect();
        nearest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        nearest.truncate(k);
        nearest
    }

    /// Items in the vector index.
    pub fn items(&self) -> usize {
        self.read().index.as_ref().map_or(0, VectorIndex::items)
    }

    fn set_error(&self, error: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Items waiting to be embedded.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// The vector index's state for `GET /api/v1/vault`.
    pub fn status_json(&self, ai_on: bool) -> serde_json::Value {
        let guard = self.read();
        let pending = self.pending();
        serde_json::json!({
            "state": if !ai_on { "off" } else if pending > 0 { "embedding" } else { "ready" },
            "items": guard.index.as_ref().map_or(0, VectorIndex::items),
            "chunks": guard.index.as_ref().map_or(0, VectorIndex::len),
            "memory_bytes": guard.index.as_ref().map_or(0, VectorIndex::memory_bytes),
            "pending": pending,
            "embedded": self.embedded.load(Ordering::Relaxed),
            "last_error": self.last_error(),
        })
    }
}

/// Embeds `items` in the background (batches of [`EMBED_BATCH`]), stores their
/// encrypted rows and puts them in the vault's vector index. Does nothing without
/// workers, or once the vault is locked or its index replaced.
pub(crate) fn embed_later(state: &web::Data<AppState>, user: UserId, items: Vec<ItemId>) {
    if items.is_empty() || state.ai.pool.is_none() {
        return;
    }
    let Some(unlocked) = state.keyring.peek(user) else {
        return;
    };
    let index = unlocked.index.clone();
    let count = items.len() as u64;
    index.semantic.pending.fetch_add(count, Ordering::Relaxed);
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let mut embedded = 0u64;
        let mut left = count;
        for batch in items.chunks(EMBED_BATCH) {
            if !state.keyring.holds(user, &index) {
                break;
            }
            match embed_batch(&state, user, &unlocked, batch).await {
                Ok(n) => {
                    embedded += n;
                    index.semantic.embedded.fetch_add(n, Ordering::Relaxed);
                    index.semantic.set_error(None);
                }
                Err(why) => {
                    // The cause may name files and sockets of the appliance: it goes to
                    // the log, and the API (`last_error`, `words_only_reason`) gets words.
                    index.semantic.set_error(Some(INDEXING_FAILED.into()));
                    // The rest waits for the next unlock or write: a failing pool would
                    // only fail again now.
                    warn!(%user, items = left, error = %why, "embedding failed; the items stay searchable by words");
                    break;
                }
            }
            let done = batch.len() as u64;
            left -= done;
            index.semantic.pending.fetch_sub(done, Ordering::Relaxed);
        }
        index.semantic.pending.fetch_sub(left, Ordering::Relaxed);
        if embedded > 0 {
            info!(%user, items = embedded, "items embedded");
        }
    });
}

/// Embeds one batch; returns how many items got a row. An item gone or unreadable is
/// skipped; an error of the pool or the database fails the batch.
async fn embed_batch(
    state: &web::Data<AppState>,
    user: UserId,
    unlocked: &crate::keyring::Unlocked,
    batch: &[ItemId],
) -> Result<u64, String> {
    let Some(pool) = state.ai.pool.as_ref() else {
        return Ok(0);
    };
    let mut stored = Vec::with_capacity(batch.len());
    {
        let mut conn = state.conn().await.map_err(|e| e.to_string())?;
        // A change that kept the version (pinned, archived) needs no new embeddings.
        let current: HashMap<ItemId, i32> = cv_db::embeddings::for_items(&mut conn, user, batch)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|row| row.model == MODEL && unlocked.index.semantic.contains(row.item.0))
            .map(|row| (row.item, row.version))
            .collect();
        for id in batch {
            match cv_vault::stored(&mut conn, user, *id).await {
                Ok(item) if current.get(id) == Some(&item.version) => {}
                Ok(item) => stored.push(item),
                Err(cv_vault::VaultError::NotFound) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    // Decrypt and chunk; the texts go to the workers in one request.
    let opts = ChunkOptions::default();
    let mut texts = Vec::new();
    let mut work = Vec::with_capacity(stored.len());
    for item in stored {
        let view = cv_vault::open(&item, &unlocked.vault);
        let Ok(text) = view.text else {
            continue;
        };
        let ranges: Vec<Range<usize>> = cv_semantic::chunk(&text, &opts)
            .into_iter()
            .map(|c| {
                texts.push(c.text.to_owned());
                c.range
            })
            .collect();
        work.push((item, ranges));
    }
    let mut vectors = if texts.is_empty() {
        Vec::new()
    } else {
        pool.embed(texts).await.map_err(|e| e.to_string())?
    }
    .into_iter();
    let mut conn = state.conn().await.map_err(|e| e.to_string())?;
    let mut done = 0;
    for (item, ranges) in work {
        let chunks: Vec<EmbeddedChunk> = ranges
            .into_iter()
            .zip(vectors.by_ref())
            .map(|(range, vector)| EmbeddedChunk { range, vector })
            .collect();
        let embeddings = Embeddings { chunks };
        let Ok(row) =
            cv_vault::embeddings::seal_embeddings(&item, &unlocked.vault, MODEL, &embeddings)
        else {
            continue;
        };
        // Stored only if the item is still at this version; else a newer job has it.
        if cv_db::embeddings::store(&mut conn, user, &row)
            .await
            .map_err(|e| e.to_string())?
        {
            unlocked.index.semantic.upsert(item.id.0, &embeddings);
            done += 1;
        }
    }
    Ok(done)
}

/// Why a query could not be embedded, in fixed words: the pool's error may name the
/// appliance's files (a missing model's directory), and the reason reaches the API.
fn query_failure(e: &cv_worker::pool::PoolError) -> &'static str {
    use cv_worker::pool::PoolError;
    match e {
        PoolError::Unavailable { .. } => {
            "the local AI is unavailable (no worker can start; the appliance's log says why)"
        }
        PoolError::TimedOut { .. } => "the local AI did not answer in time",
        _ => "the local AI failed on the query (the appliance's log says why)",
    }
}

/// What `last_error` says after embedding failed; the cause is in the log only.
const INDEXING_FAILED: &str =
    "the local AI could not index your notes (the appliance's log says why)";

/// Why a search is by words only, or `None` when it can use meaning too.
pub(crate) fn words_only_reason(state: &AppState, index: &VaultIndex) -> Option<String> {
    if state.ai.pool.is_none() {
        return Some("the local AI is off on this appliance".into());
    }
    if index.semantic.items() == 0 {
        let pending = index.semantic.pending();
        return Some(if pending > 0 {
            format!("your notes are still being indexed by meaning ({pending} to go)")
        } else if let Some(e) = index.semantic.last_error() {
            e
        } else {
            "no note has been indexed by meaning yet".into()
        });
    }
    None
}

/// The query's embedding, or why there is none (in time).
async fn embed_query(state: &AppState, text: &str) -> Result<Vec<f32>, String> {
    let Some(pool) = state.ai.pool.as_ref() else {
        return Err("the local AI is off on this appliance".into());
    };
    match tokio::time::timeout(QUERY_TIMEOUT, pool.embed(vec![text.to_owned()])).await {
        Ok(Ok(mut vectors)) if vectors.len() == 1 => Ok(vectors.remove(0)),
        Ok(Ok(_)) => Err("the local AI gave no answer for the query".into()),
        Ok(Err(e)) => {
            // The cause may name the appliance's files (a missing model's directory):
            // logged, and the caller gets a fixed phrase.
            warn!(error = %e, "a search query could not be embedded");
            Err(query_failure(&e).into())
        }
        Err(_) => Err(format!(
            "the local AI did not answer within {} s",
            QUERY_TIMEOUT.as_secs()
        )),
    }
}

/// A search's results: each hit with why it matched (`None` for a listing without
/// text), and whether meaning was used (else why not).
#[derive(Debug)]
pub(crate) struct Outcome {
    pub hits: Vec<(Hit, Option<Matched>)>,
    pub total: usize,
    /// `Err(reason)` when by words only (`None` reason for a listing without text).
    pub mode: Result<(), Option<String>>,
}

impl Outcome {
    pub fn mode_str(&self) -> &'static str {
        if self.mode.is_ok() { "hybrid" } else { "words" }
    }

    pub fn reason(&self) -> Option<&str> {
        self.mode.as_ref().err().and_then(|r| r.as_deref())
    }
}

/// Searches the vault: by words and meaning when its vector index has entries and the
/// query is embedded within [`QUERY_TIMEOUT`]; else by words only, saying why.
///
/// Hybrid: the full-text top [`BM25_DEPTH`] (or deeper for later pages) with the
/// filters, the vector top [`VECTOR_TOP`] with the same filters, fused by
/// [`Fusion::default`] (reciprocal rank, vector hits under its similarity floor
/// ignored). A meaning-only hit's snippet is its best chunk. `total` counts the
/// full-text matches and the meaning-only hits.
pub(crate) async fn search(
    state: &AppState,
    index: Arc<VaultIndex>,
    query: Query,
) -> Result<Outcome, WebError> {
    let text = query.text.trim().to_owned();
    if text.is_empty() {
        let results = crate::pages::search::run(index, query).await?;
        return Ok(words(results, Err(None)));
    }
    let reason = match words_only_reason(state, &index) {
        Some(reason) => Err(reason),
        None => embed_query(state, &text).await,
    };
    let vector = match reason {
        Ok(vector) => vector,
        Err(reason) => {
            let results = crate::pages::search::run(index, query).await?;
            return Ok(words(results, Err(Some(reason))));
        }
    };
    web::block(move || hybrid(&index, &query, &vector))
        .await?
        .map_err(|e| WebError::internal("searching", e))
}

fn words(results: Results, mode: Result<(), Option<String>>) -> Outcome {
    let matched = mode
        .as_ref()
        .err()
        .and_then(Option::as_ref)
        .map(|_| Matched::Words);
    Outcome {
        total: results.total,
        hits: results.hits.into_iter().map(|h| (h, matched)).collect(),
        mode,
    }
}

fn hybrid(
    index: &VaultIndex,
    query: &Query,
    vector: &[f32],
) -> Result<Outcome, cv_search::SearchError> {
    let fusion = Fusion::default();
    let (offset, limit) = (query.offset, query.limit.clamp(1, cv_search::MAX_LIMIT));
    let (bm25, bm25_total) = bm25_top(index, query, (offset + limit).max(BM25_DEPTH))?;
    let meaning = vector_top(index, query, vector, fusion.min_similarity.unwrap_or(-1.0))?;
    let bm25_ranked: Vec<(Uuid, f32)> = bm25.iter().map(|h| (h.id, h.score)).collect();
    let vector_ranked: Vec<(Uuid, f32)> = meaning.iter().map(|(h, s)| (h.id, *s)).collect();
    let fused = fusion.fuse(&bm25_ranked, &vector_ranked);
    let meaning_only = fused
        .iter()
        .filter(|f| f.matched == Matched::Meaning)
        .count();
    let mut by_id: HashMap<Uuid, Hit> = bm25.into_iter().map(|h| (h.id, h)).collect();
    for (hit, _) in meaning {
        by_id.entry(hit.id).or_insert(hit);
    }
    let hits = fused
        .into_iter()
        .skip(offset)
        .take(limit)
        .filter_map(|f| {
            let mut hit = by_id.remove(&f.item)?;
            hit.score = f.score;
            Some((hit, Some(f.matched)))
        })
        .collect();
    Ok(Outcome {
        hits,
        total: bm25_total + meaning_only,
        mode: Ok(()),
    })
}

/// The full-text top `depth` (pages of at most `MAX_LIMIT`), and the total matches.
fn bm25_top(
    index: &VaultIndex,
    query: &Query,
    depth: usize,
) -> Result<(Vec<Hit>, usize), cv_search::SearchError> {
    let mut hits = Vec::new();
    let mut total = 0;
    while hits.len() < depth {
        let page = index.index.search(&Query {
            offset: hits.len(),
            limit: (depth - hits.len()).min(cv_search::MAX_LIMIT),
            ..query.clone()
        })?;
        total = page.total;
        let got = page.hits.len();
        hits.extend(page.hits);
        if got == 0 || hits.len() >= total || hits.len() > cv_search::MAX_OFFSET {
            break;
        }
    }
    Ok((hits, total))
}

/// The vector top [`VECTOR_TOP`] among the items passing the query's filters, each with
/// its similarity, best first. The filters are those of full-text search
/// ([`cv_search::SearchIndex::lookup`]), asked about the nearest items; when too few of
/// them pass, a deeper list is asked for, until enough pass, every item was seen, or the
/// list reaches items under the similarity floor (which fusion ignores).
fn vector_top(
    index: &VaultIndex,
    query: &Query,
    vector: &[f32],
    min_similarity: f32,
) -> Result<Vec<(Hit, f32)>, cv_search::SearchError> {
    vector_top_with(
        |k| {
            let guard = index.semantic.read();
            let Some(vectors) = guard.index.as_ref() else {
                return Vec::new();
            };
            let ranges: &HashMap<Uuid, Vec<Range<usize>>> = &guard.ranges;
            vectors
                .search(vector, k, |_| true)
                .into_iter()
                .map(|h| {
                    let range: Option<Range<usize>> = ranges
                        .get(&h.item)
                        .and_then(|r| r.get(h.chunk_index))
                        .cloned();
                    (h.item, h.score, range)
                })
                .collect()
        },
        |candidates| index.index.lookup(query, candidates),
        min_similarity,
    )
}

/// [`vector_top`] with its two sources as parameters, for tests: `nearest(k)` gives the
/// `k` nearest items (id, similarity, best chunk's range), `filter` the hits of those
/// that pass the filters, in order.
fn vector_top_with<E>(
    nearest: impl Fn(usize) -> Vec<(Uuid, f32, Option<Range<usize>>)>,
    filter: impl Fn(&[(Uuid, Option<Range<usize>>)]) -> Result<Vec<Hit>, E>,
    min_similarity: f32,
) -> Result<Vec<(Hit, f32)>, E> {
    let mut k = VECTOR_TOP * 4;
    loop {
        let near = nearest(k);
        let exhausted = near.len() < k;
        let similar: Vec<_> = near
            .into_iter()
            .filter(|(_, score, _)| *score >= min_similarity)
            .collect();
        let reached_floor = similar.len() < k;
        let candidates: Vec<(Uuid, Option<Range<usize>>)> =
            similar.iter().map(|(id, _, r)| (*id, r.clone())).collect();
        let scores: HashMap<Uuid, f32> = similar.iter().map(|(id, s, _)| (*id, *s)).collect();
        let passing = filter(&candidates)?;
        if passing.len() >= VECTOR_TOP || exhausted || reached_floor {
            return Ok(passing
                .into_iter()
                .take(VECTOR_TOP)
                .map(|h| {
                    let score = scores.get(&h.id).copied().unwrap_or_default();
                    (h, score)
                })
                .collect());
        }
        k *= 4;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_failures_name_no_files() {
        let e = cv_worker::pool::PoolError::Unavailable {
            last_error: "the embedding model is not installed: model.onnx missing in /var/lib/contextvault/models".into(),
            next_try_in: Duration::from_secs(8),
        };
        assert!(
            e.to_string().contains("/var/lib"),
            "the pool's own text does"
        );
        let reason = query_failure(&e);
        assert!(!reason.contains('/'), "{reason}");
        assert!(!INDEXING_FAILED.contains('/'));
    }

    use super::*;

    fn hit(id: Uuid) -> Hit {
        Hit {
            id,
            score: 0.0,
            snippet: cv_search::Snippet {
                text: String::new(),
                highlights: Vec::new(),
            },
            kind: cv_search::Kind::Note,
            tags: Vec::new(),
            status: None,
            due: None,
            created: time::OffsetDateTime::UNIX_EPOCH,
            pinned: false,
            archived: false,
        }
    }

    /// `n` items with similarities falling from 0.99, every `pass`-th passing the filter.
    fn run(n: usize, pass: usize, floor: f32) -> (Vec<(Uuid, f32)>, std::cell::Cell<Vec<usize>>) {
        let items: Vec<(Uuid, f32)> = (0..n)
            .map(|i| (Uuid::from_u128(i as u128 + 1), 0.99 - i as f32 * 0.0001))
            .collect();
        let asked = std::cell::Cell::new(Vec::new());
        let nearest = |k: usize| {
            let mut a = asked.take();
            a.push(k);
            asked.set(a);
            items
                .iter()
                .take(k)
                .map(|(id, s)| (*id, *s, Some(0..1)))
                .collect()
        };
        let filter = |c: &[(Uuid, Option<Range<usize>>)]| -> Result<Vec<Hit>, ()> {
            Ok(c.iter()
                .filter(|(id, _)| (id.as_u128() as usize - 1).is_multiple_of(pass))
                .map(|(id, _)| hit(*id))
                .collect())
        };
        let got = vector_top_with(nearest, filter, floor).unwrap();
        (got.into_iter().map(|(h, s)| (h.id, s)).collect(), asked)
    }

    #[test]
    fn the_filter_is_applied_and_the_list_deepened_until_enough_pass() {
        // Every item passes: one round, the top 50.
        let (got, asked) = run(10_000, 1, -1.0);
        assert_eq!(got.len(), VECTOR_TOP);
        assert_eq!(asked.take(), vec![200]);
        assert_eq!(got[0].0, Uuid::from_u128(1));
        // One in 10 passes: 200 → 20 pass, 800 → 80: the 50 best that pass, in order.
        let (got, asked) = run(10_000, 10, -1.0);
        assert_eq!(asked.take(), vec![200, 800]);
        assert_eq!(got.len(), VECTOR_TOP);
        assert!(
            got.iter()
                .all(|(id, _)| (id.as_u128() - 1).is_multiple_of(10))
        );
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
        // A very selective filter on a small vault: stops once every item was seen.
        let (got, asked) = run(300, 100, -1.0);
        assert_eq!(asked.take(), vec![200, 800]);
        assert_eq!(
            got.iter().map(|(id, _)| id.as_u128()).collect::<Vec<_>>(),
            vec![1, 101, 201]
        );
    }

    #[test]
    fn items_under_the_similarity_floor_are_not_candidates() {
        // Similarities fall from 0.99 by 0.0001: 0.98 keeps the first 100.
        let (got, asked) = run(10_000, 10, 0.98);
        assert_eq!(asked.take(), vec![200]);
        assert!((10..=11).contains(&got.len()));
        assert!(got.iter().all(|(_, s)| *s >= 0.98));
    }
}
