//! Reciprocal rank fusion of a full-text ranking and a vector ranking, with the reason
//! each result matched. See the [crate documentation](crate).

use std::cmp::Ordering;
use std::collections::HashMap;

use uuid::Uuid;

/// The usual RRF constant (Cormack, Clarke and Büttcher, SIGIR 2009): large enough that
/// the first few ranks of either list weigh about the same.
pub const RRF_K: f32 = 60.0;

/// The least cosine similarity for a vector hit to count as a match in meaning, with
/// all-MiniLM-L6-v2. Measured by `tests/retrieval_eval.rs` on its labelled notes: the
/// relevant notes of paraphrase queries score 0.33 and more (median 0.53), while the
/// nearest note to a query about nothing in the vault scores 0.13 to 0.31 (median
/// 0.24). At 0.30 the evaluation's recall and MRR are unchanged, and a query about
/// nothing keeps 0.1 meaning-only hits on average instead of 10 (0.5 at 0.25); at 0.35
/// recall starts to drop. The margin is thin and the set small, so this is a setting
/// ([`Fusion::min_similarity`]), not a law.
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.30;

/// Why an item is in the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Matched {
    /// Its text has the query's words (full-text search found it).
    Words,
    /// It is close in meaning (vector search found it) but has not all the words.
    Meaning,
    /// Both.
    Both,
}

impl Matched {
    /// `"words"`, `"meaning"` or `"both"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Matched::Words => "words",
            Matched::Meaning => "meaning",
            Matched::Both => "both",
        }
    }
}

/// One fused result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedHit {
    pub item: Uuid,
    /// The weighted sum of `1 / (k + rank)` over the lists the item is in.
    pub score: f32,
    pub matched: Matched,
    /// Position in the full-text list, from 1.
    pub bm25_rank: Option<usize>,
    /// Position in the vector list, from 1 (counted before any similarity cut).
    pub vector_rank: Option<usize>,
}

/// How two rankings are fused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    /// The RRF constant: larger flattens the difference between ranks.
    pub k: f32,
    /// Weight of the full-text list's terms.
    pub bm25_weight: f32,
    /// Weight of the vector list's terms.
    pub vector_weight: f32,
    /// Vector hits below this cosine similarity are ignored: they neither add to an
    /// item's score nor make it a match in meaning. `None` keeps them all.
    pub min_similarity: Option<f32>,
}

impl Default for Fusion {
    /// Plain RRF with `k` = [`RRF_K`], equal weights, and [`DEFAULT_MIN_SIMILARITY`].
    fn default() -> Self {
        Fusion {
            k: RRF_K,
            bm25_weight: 1.0,
            vector_weight: 1.0,
            min_similarity: Some(DEFAULT_MIN_SIMILARITY),
        }
    }
}

impl Fusion {
    /// Fuses two rankings, each best first as `(item, score)`; the full-text scores are
    /// not used (only ranks are), the vector scores only against `min_similarity`. An
    /// item listed twice in one list counts at its first position. Best first; equal
    /// scores are ordered by the better of the two ranks, then by item id.
    pub fn fuse(&self, bm25: &[(Uuid, f32)], vector: &[(Uuid, f32)]) -> Vec<FusedHit> {
        let mut by_item: HashMap<Uuid, FusedHit> =
            HashMap::with_capacity(bm25.len() + vector.len());
        for (rank, &(item, _)) in (1..).zip(bm25) {
            by_item.entry(item).or_insert_with(|| FusedHit {
                item,
                score: self.bm25_weight / (self.k + rank as f32),
                matched: Matched::Words,
                bm25_rank: Some(rank),
                vector_rank: None,
            });
        }
        for (rank, &(item, similarity)) in (1..).zip(vector) {
            if self.min_similarity.is_some_and(|min| similarity < min) {
                continue;
            }
            let term = self.vector_weight / (self.k + rank as f32);
            let hit = by_item.entry(item).or_insert(FusedHit {
                item,
                score: 0.0,
                matched: Matched::Meaning,
                bm25_rank: None,
                vector_rank: None,
            });
            if hit.vector_rank.is_some() {
                continue;
            }
            hit.score += term;
            hit.vector_rank = Some(rank);
            if hit.bm25_rank.is_some() {
                hit.matched = Matched::Both;
            }
        }
        let mut hits: Vec<FusedHit> = by_item.into_values().collect();
        hits.sort_by(order);
        hits
    }
}

/// Plain reciprocal rank fusion: each item scores `1 / (k + rank)` summed over the lists
/// it is in (ranks from 1), with no similarity cut. [`Fusion`] adds weights and the cut.
pub fn fuse_rrf(bm25: &[(Uuid, f32)], vector: &[(Uuid, f32)], k: f32) -> Vec<FusedHit> {
    Fusion {
        k,
        bm25_weight: 1.0,
        vector_weight: 1.0,
        min_similarity: None,
    }
    .fuse(bm25, vector)
}

fn order(a: &FusedHit, b: &FusedHit) -> Ordering {
    let best_rank = |h: &FusedHit| {
        h.bm25_rank
            .unwrap_or(usize::MAX)
            .min(h.vector_rank.unwrap_or(usize::MAX))
    };
    b.score
        .total_cmp(&a.score)
        .then(best_rank(a).cmp(&best_rank(b)))
        .then(a.item.cmp(&b.item))
}

#[cfg(test)]
mod tests;
