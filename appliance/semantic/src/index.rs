//! The vector index: every chunk's embedding, quantised to bytes, in one contiguous
//! block of RAM, searched exhaustively. See the [crate documentation](crate) for the
//! layout, its costs and its accuracy.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

use uuid::Uuid;

/// The length of the embeddings of all-MiniLM-L6-v2, the appliance's model
/// (`cv_inference::Embedder::dimensions`).
pub const DIMENSIONS: usize = 384;

/// Why [`VectorIndex::upsert`] refused an item's vectors. The index is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    #[error("vector {chunk} has {found} dimensions, the index {expected}")]
    Dimensions {
        chunk: usize,
        found: usize,
        expected: usize,
    },
    /// All zeros, or a NaN or an infinity: it has no direction to compare.
    #[error("vector {chunk} has no direction (zero length, or a value that is not finite)")]
    Degenerate { chunk: usize },
    #[error("{chunks} chunks for one item, more than {max}")]
    TooManyChunks { chunks: usize, max: usize },
}

/// One result of [`VectorIndex::search`]: an item and its chunk closest to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorHit {
    pub item: Uuid,
    /// The position of the best chunk among the item's chunks (as given to `upsert`).
    pub chunk_index: usize,
    /// Cosine similarity of that chunk with the query, in `[-1, 1]`, as the quantised
    /// vectors give it: within about 0.01 of the exact value (see the crate
    /// documentation).
    pub score: f32,
}

/// Who a row belongs to.
#[derive(Debug, Clone, Copy)]
struct Row {
    item: Uuid,
    chunk: u32,
}

/// The embeddings of every chunk of every item, in RAM. See the [crate
/// documentation](crate).
///
/// Not synchronised itself: searches take `&self` and writes `&mut self`, so an
/// `RwLock<VectorIndex>` lets any number of searches run together and a write wait for
/// them (a write moves at most a few rows; it holds the lock for microseconds).
pub struct VectorIndex {
    dimensions: usize,
    /// Row `r` is `codes[r * dimensions..(r + 1) * dimensions]`: the unit vector divided
    /// by `scales[r]` and rounded, so its largest component is ±127.
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// `rows[r]` owns row `r`.
    rows: Vec<Row>,
    /// Each item's rows, by chunk index.
    items: HashMap<Uuid, Vec<u32>>,
}

impl fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dimensions", &self.dimensions)
            .field("items", &self.items.len())
            .field("chunks", &self.rows.len())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl Default for VectorIndex {
    fn default() -> Self {
        VectorIndex::new(DIMENSIONS)
    }
}

impl VectorIndex {
    /// The most chunks one item may have: chunk indexes are kept as `u32`, and a 16 KiB
    /// note makes a few dozen.
    pub const MAX_CHUNKS_PER_ITEM: usize = 1 << 20;

    /// The longest vectors accepted: a dot product of codes then stays within `i32`
    /// (65,536 × 127² < 2³¹).
    pub const MAX_DIMENSIONS: usize = 1 << 16;

    /// An empty index of vectors of `dimensions` floats (clamped to
    /// 1..=[`MAX_DIMENSIONS`](Self::MAX_DIMENSIONS)).
    pub fn new(dimensions: usize) -> VectorIndex {
        VectorIndex {
            dimensions: dimensions.clamp(1, Self::MAX_DIMENSIONS),
            codes: Vec::new(),
            scales: Vec::new(),
            rows: Vec::new(),
            items: HashMap::new(),
        }
    }

    /// The length of the vectors this index holds.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Replaces the chunks of `item` with `chunks`, one vector per chunk in chunk order.
    /// The vectors are normalised to unit length (the model's already are, up to
    /// rounding) and quantised. No chunk at all removes the item. On error nothing
    /// changes.
    pub fn upsert(&mut self, item: Uuid, chunks: Vec<Vec<f32>>) -> Result<(), VectorError> {
        if chunks.len() > Self::MAX_CHUNKS_PER_ITEM {
            return Err(VectorError::TooManyChunks {
                chunks: chunks.len(),
                max: Self::MAX_CHUNKS_PER_ITEM,
            });
        }
        let mut norms = Vec::with_capacity(chunks.len());
        for (chunk, vector) in chunks.iter().enumerate() {
            if vector.len() != self.dimensions {
                return Err(VectorError::Dimensions {
                    chunk,
                    found: vector.len(),
                    expected: self.dimensions,
                });
            }
            let norm = dot(vector, vector).sqrt();
            if !norm.is_finite() || norm == 0.0 {
                return Err(VectorError::Degenerate { chunk });
            }
            norms.push(norm);
        }
        self.remove(item);
        if chunks.is_empty() {
            return Ok(());
        }
        self.codes.reserve(chunks.len() * self.dimensions);
        let mut rows = Vec::with_capacity(chunks.len());
        for (chunk, (vector, norm)) in chunks.iter().zip(norms).enumerate() {
            // Rows fit in u32: 2^32 rows of 384 bytes would be 1.5 TiB.
            rows.push(self.rows.len() as u32);
            self.rows.push(Row {
                item,
                chunk: chunk as u32,
            });
            let scale = quantise(vector, norm, &mut self.codes);
            self.scales.push(scale);
        }
        self.items.insert(item, rows);
        Ok(())
    }

    /// Removes every chunk of `item`; false if it had none. Each freed row is filled with
    /// the last row (swap-remove), so the block stays dense and a removal costs one row
    /// copy per chunk.
    pub fn remove(&mut self, item: Uuid) -> bool {
        let Some(mut rows) = self.items.remove(&item) else {
            return false;
        };
        // Highest first: the last row is then never one of this item's rows still to be
        // removed, so each move goes to a row that stays.
        rows.sort_unstable_by(|a, b| b.cmp(a));
        let d = self.dimensions;
        for row in rows {
            let row = row as usize;
            let last = self.rows.len() - 1;
            if row != last {
                self.codes.copy_within(last * d..(last + 1) * d, row * d);
                self.scales[row] = self.scales[last];
                let moved = self.rows[last];
                self.rows[row] = moved;
                if let Some(slot) = self
                    .items
                    .get_mut(&moved.item)
                    .and_then(|rows| rows.get_mut(moved.chunk as usize))
                {
                    *slot = row as u32;
                }
            }
            self.rows.pop();
            self.scales.pop();
            self.codes.truncate(last * d);
        }
        true
    }

    /// The `k` items closest to `query`, best first, each with its closest chunk: an item
    /// ranks by its best chunk's cosine similarity. Items for which `filter` returns
    /// false are skipped (it is asked only about items that would enter the results).
    /// Exhaustive, so exact. A query of the wrong length or without direction finds
    /// nothing. Equal scores are ordered by item id.
    pub fn search(&self, query: &[f32], k: usize, filter: impl Fn(Uuid) -> bool) -> Vec<VectorHit> {
        if k == 0 || query.len() != self.dimensions || self.rows.is_empty() {
            return Vec::new();
        }
        let norm = dot(query, query).sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Vec::new();
        }
        let mut codes = Vec::with_capacity(self.dimensions);
        let query_scale = quantise(query, norm, &mut codes);
        let mut top = TopItems::new(k);
        let rows = self.codes.chunks_exact(self.dimensions).zip(&self.scales);
        for (row, (vector, scale)) in rows.enumerate() {
            let score = dot_i8(&codes, vector) as f32 * (query_scale * scale);
            if score > top.threshold() {
                let owner = self.rows[row];
                top.offer(owner.item, owner.chunk as usize, score, &filter);
            }
        }
        top.hits
    }

    /// The number of chunks held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no chunk is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The number of items with at least one chunk.
    pub fn items(&self) -> usize {
        self.items.len()
    }

    /// Whether `item` has chunks here.
    pub fn contains(&self, item: Uuid) -> bool {
        self.items.contains_key(&item)
    }

    /// The vectors of `item`'s chunks, in chunk order, as the index holds them (unit
    /// length, each component within half a quantisation step), or `None` when it has
    /// none: to find the items nearest to an item.
    pub fn item_vectors(&self, item: Uuid) -> Option<Vec<Vec<f32>>> {
        let rows = self.items.get(&item)?;
        let d = self.dimensions;
        Some(
            rows.iter()
                .map(|&row| {
                    let row = row as usize;
                    let scale = self.scales[row];
                    self.codes[row * d..(row + 1) * d]
                        .iter()
                        .map(|&c| f32::from(c) * scale)
                        .collect()
                })
                .collect(),
        )
    }

    /// Bytes allocated by the index: the vector block and its scales, the row owners, and
    /// the item map with its row lists (the map's per-entry overhead is an estimate: one
    /// control byte per bucket, as in hashbrown).
    pub fn memory_bytes(&self) -> usize {
        let vectors = self.codes.capacity() + self.scales.capacity() * size_of::<f32>();
        let rows = self.rows.capacity() * size_of::<Row>();
        let map = self.items.capacity() * (size_of::<(Uuid, Vec<u32>)>() + 1);
        let lists: usize = self
            .items
            .values()
            .map(|rows| rows.capacity() * size_of::<u32>())
            .sum();
        vectors + rows + map + lists
    }

    /// Gives back memory left over from removals.
    pub fn shrink_to_fit(&mut self) {
        self.codes.shrink_to_fit();
        self.scales.shrink_to_fit();
        self.rows.shrink_to_fit();
        self.items.shrink_to_fit();
    }
}

/// The best `k` distinct items seen so far, best first.
struct TopItems {
    k: usize,
    hits: Vec<VectorHit>,
}

impl TopItems {
    fn new(k: usize) -> TopItems {
        TopItems {
            k,
            hits: Vec::with_capacity(k.min(1_024) + 1),
        }
    }

    /// A score must beat this to change the results.
    #[inline]
    fn threshold(&self) -> f32 {
        if self.hits.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.hits.last().map_or(f32::NEG_INFINITY, |h| h.score)
        }
    }

    /// A chunk that beats the threshold. An item already present keeps its best chunk;
    /// a new one enters if the filter lets it, pushing out the last when full. (An item
    /// pushed out and met again later comes back with its better chunk; an item in the
    /// true top `k` is never pushed out, as `k` items beat it.)
    #[cold]
    fn offer(&mut self, item: Uuid, chunk: usize, score: f32, filter: &impl Fn(Uuid) -> bool) {
        let hit = VectorHit {
            item,
            chunk_index: chunk,
            score,
        };
        if let Some(at) = self.hits.iter().position(|h| h.item == item) {
            if score > self.hits[at].score {
                self.hits.remove(at);
                self.insert(hit);
            }
            return;
        }
        if filter(item) {
            self.insert(hit);
            self.hits.truncate(self.k);
        }
    }

    fn insert(&mut self, hit: VectorHit) {
        let at = self
            .hits
            .partition_point(|h| better(h, &hit) == Ordering::Less);
        self.hits.insert(at, hit);
    }
}

/// Best first: higher score, then lower item id.
fn better(a: &VectorHit, b: &VectorHit) -> Ordering {
    b.score.total_cmp(&a.score).then(a.item.cmp(&b.item))
}

/// The largest code: symmetric, so that -127..=127 is the range and a product of two
/// codes fits in an `i16`.
const MAX_CODE: f32 = 127.0;

/// Appends `vector / norm`, quantised, to `codes`, and returns the scale that turns the
/// codes back into the unit vector: component ≈ code × scale, with the largest component
/// at ±127 (per-vector symmetric quantisation).
fn quantise(vector: &[f32], norm: f32, codes: &mut Vec<i8>) -> f32 {
    let largest = vector.iter().fold(0.0f32, |m, x| m.max(x.abs())) / norm;
    // A vector of positive norm has a positive largest component.
    let scale = largest / MAX_CODE;
    let to_code = 1.0 / (norm * scale);
    codes.extend(
        vector
            .iter()
            // In range by construction; `as` saturates anyway.
            .map(|x| (x * to_code).round().clamp(-MAX_CODE, MAX_CODE) as i8),
    );
    scale
}

/// The dot product of two equally long slices of codes, exact in `i32` (384 products of
/// at most 127² each). Written to vectorise like [`dot`]: 16 independent sums.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut sums = [0i32; LANES];
    let chunks_a = a.chunks_exact(LANES);
    let chunks_b = b.chunks_exact(LANES);
    let tail: i32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..LANES {
            sums[lane] += i32::from(x[lane]) * i32::from(y[lane]);
        }
    }
    sums.iter().sum::<i32>() + tail
}

/// Lanes of the dot product: 16 independent partial sums, which LLVM turns into SIMD
/// registers (four SSE or two AVX registers) with no reassociation of any one sum.
const LANES: usize = 16;

/// The dot product of two equally long slices, written so that it vectorises: 16
/// independent accumulators over `chunks_exact(16)`, then the tail.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; LANES];
    let chunks_a = a.chunks_exact(LANES);
    let chunks_b = b.chunks_exact(LANES);
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests;
