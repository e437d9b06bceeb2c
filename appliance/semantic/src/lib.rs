//! Semantic search over an unlocked vault: notes cut into chunks, the chunks' embeddings
//! in an in-RAM vector index, and the vector ranking fused with full-text search, each
//! result saying why it matched.
//!
//! **How the pieces fit.** Indexing an item: [`chunk`] its text, embed the chunks'
//! texts (`cv_inference::Embedder::embed`), and [`VectorIndex::upsert`] the vectors
//! under the item's id (the full-text side is `cv_search::SearchIndex`). Searching:
//! full-text search for the top N, embed the query and [`VectorIndex::search`] for the
//! top N, then [`Fusion::fuse`] the two lists. This crate does no I/O, starts no thread
//! and calls no model: it is the pure part, so it is fast to test.
//!
//! # Chunking
//!
//! all-MiniLM-L6-v2 reads at most 256 tokens and silently drops the rest, so a long note
//! is embedded as several chunks and an item ranks by its best chunk. [`chunk`] cuts a
//! text into sentences, then packs whole sentences into chunks of at most
//! [`ChunkOptions::max_tokens`] *estimated* tokens ([`estimate_tokens`], default
//! [`DEFAULT_MAX_TOKENS`] = 200, which the model's own tokenizer turns into at most 240
//! even for text it splits worst; about 80 words of English).
//!
//! - A sentence ends at a line break (so list items and paragraphs are sentences) and
//!   after `.`, `!`, `?` or `…` (with any closing quotes or brackets) followed by a blank
//!   or the end; CJK full-width marks end one without a blank.
//! - A period does not end a sentence when it belongs to an abbreviation (`Dr.`,
//!   `approx.`, `e.g.`, `U.S.`, `a.m.`), an initial (`J. R. R.`), a list number at the
//!   start of a line (`1. Buy milk`), or when the next word starts in lower case.
//!   Decimals (`3.5`) and links (`example.com/a.b?x=1`) have no blank after their marks,
//!   so they never end one.
//! - A sentence longer than a chunk is cut at word boundaries; a single word longer than
//!   a chunk (a key, a run of digits) at char boundaries.
//! - Each chunk starts with the last [`ChunkOptions::overlap_sentences`] sentence(s) of
//!   the previous one (default 1, at most [`ChunkOptions::max_overlap_tokens`] = 50),
//!   so a thought that straddles a cut is whole in one chunk.
//! - A short note is one chunk; a blank one none. Chunks borrow the text ([`Chunk`]
//!   has its byte range, on char boundaries, and its slice), are trimmed, and come out
//!   the same for the same input. Linear time; no input makes it panic (tests run it on
//!   emoji, combining marks, RTL and CJK scripts, control characters, 100 KB words and
//!   1 MB of text).
//!
//! # The vector index
//!
//! [`VectorIndex`] holds every chunk as one row of a single contiguous `Vec<i8>` (384
//! bytes per row for this model) with one `f32` scale per row: each vector is normalised
//! to unit length and quantised symmetrically, so that its largest component is ±127.
//! Beside the block, each row's owner (item id, chunk index) and, per item, its rows.
//! [`upsert`](VectorIndex::upsert) removes the item's old rows and appends the new ones;
//! [`remove`](VectorIndex::remove) fills each freed row with the last row (swap-remove),
//! so the block stays dense with no free list to skip.
//!
//! [`search`](VectorIndex::search) quantises the query the same way and scans every row
//! with [`dot_i8`] (exact in `i32`; 16 independent lanes so the compiler vectorises it),
//! keeping the best `k` distinct items and each one's best chunk; the filter is asked
//! only about items that would enter the results. Exhaustive, so no recall is lost to
//! an approximate structure, and at personal-vault sizes it is fast enough:
//!
//! - *Accuracy.* On the evaluation's notes and queries the quantised scores are within
//!   0.0023 of the exact cosines, the top 10 is 99.6% the exact top 10, the first result
//!   is always the same, and recall and MRR are identical to exact f32 search.
//! - *Speed* (`benches/hybrid.rs`, 100,000 chunks, 2-core machine): one scan takes
//!   4.8 ms with int8 rows, 14.3 ms with f32 rows and [`dot`], 37 ms with f32 rows and a
//!   plain `zip().map().sum()`. Full-text search, vector search and fusion together:
//!   p50 6.4 ms, p95 10.2 ms, p99 11.5 ms (the target is a p95 under 30 ms).
//! - *Memory.* 408 bytes per chunk for its row, scale and owner, plus the item map and
//!   spare capacity: 58.6 MB (585 bytes a chunk) for the benchmark's 100,000 chunks, as
//!   [`memory_bytes`](VectorIndex::memory_bytes) counts them; f32 rows would make the
//!   block four times larger (209 MB measured).
//!
//! The index is not synchronised itself: searches take `&self`, writes `&mut self`.
//! Keep it in an `RwLock` beside the item's full-text index; a write moves a few rows
//! and holds the lock for microseconds.
//!
//! # Fusion, and why a result matched
//!
//! [`Fusion::fuse`] combines the two rankings by reciprocal rank fusion (Cormack, Clarke
//! and Büttcher, 2009): an item scores `w / (k + rank)` for each list it is in, ranks
//! from 1, `k` = [`RRF_K`] = 60, both weights 1 by default. Ranks only: BM25 scores and
//! cosines are on scales that cannot be added. Each [`FusedHit`] says why it is there
//! ([`Matched`]): **words** (full-text search found it: it has the query's words),
//! **meaning** (vector search found it: close in meaning, without all the words), or
//! **both**, with its rank in each list.
//!
//! Vector search always returns its `k` nearest chunks, even for a query about nothing
//! in the vault; so vector hits below [`Fusion::min_similarity`]
//! ([`DEFAULT_MIN_SIMILARITY`] = 0.30, chosen on the evaluation set; the numbers are on
//! the constant) count for nothing: they do not add to a score and they do not make a
//! match in meaning. A words match with a weak vector hit stays a words match.
//! [`fuse_rrf`] is plain RRF, without the cut.
//!
//! # Evaluation
//!
//! `tests/retrieval_eval.rs` runs the real model on 113 labelled personal notes (118
//! chunks) and 40 queries with known relevant notes (17 paraphrases that share no
//! content word with their notes, 14 keyword queries, 9 topical), plus 12 about nothing
//! in the vault. Recall@10 / MRR@10, all queries:
//!
//! | method | recall@10 | MRR |
//! |---|---|---|
//! | BM25 (`cv_search`, default query) | 0.475 | 0.475 |
//! | vector | 1.000 | 0.958 |
//! | hybrid ([`Fusion::default`]) | 1.000 | 0.971 |
//!
//! BM25 finds no paraphrase (its words are ANDed and none are shared) and every keyword
//! query; vector search finds everything on a set this small, but ranks some names and
//! codes below a neighbour; fusion keeps vector search's recall and BM25's first place
//! on keyword queries. The test asserts that hybrid is at least as good as the better of
//! the two on both measures, and writes the full table to `target/eval/retrieval.json`.
//!
//! # Themes
//!
//! [`themes`] groups a person's recent items by meaning for the dashboard's insights.
//! Each [`ThemeInput`] is an item's vector ([`item_vector`]: the mean of its chunks'
//! unit vectors, normalised), its text and when it was captured; only the most recent
//! [`MAX_THEME_INPUTS`] = 2,000 count, and vectors without direction (zeros, NaN) or of
//! another length are ignored.
//!
//! - *Clustering*: average-linkage agglomerative clustering on cosine similarity,
//!   stopped when no two groups average [`ThemeOptions::similarity`] (default
//!   [`DEFAULT_THEME_SIMILARITY`] = 0.15; how it was chosen is on the constant). Run by
//!   the nearest-neighbour chain algorithm: `O(n²)` memory (16 MB of similarities for
//!   2,000 items) and `O(n² d)` time, no randomness. Groups below
//!   [`ThemeOptions::min_items`] (3) are not themes and their items are left out; at most
//!   [`ThemeOptions::max_themes`] (8) themes, largest first, then the more cohesive. The
//!   same inputs in any order give the same themes.
//! - *Evidence*: a [`Theme`] lists its items, most central first, with their similarity
//!   to its centroid, and its cohesion (the average similarity of two of its items).
//! - *Label*: the words that set a theme's texts apart from the other inputs' texts
//!   (lower-cased, English stopwords removed; the share of the theme's texts with the
//!   word, weighted by centrality, times its inverse document frequency over all
//!   inputs); up to [`MAX_KEYWORDS`] keywords, and a label of the best one to three.
//!
//! `tests/themes_eval.rs` runs the real model on made-up notes on four topics plus
//! unrelated ones: at the default, purity 1.0 and no unrelated note in a theme, each
//! topic at least half in one theme (some split into two sub-themes), and every label
//! with a topical word.
//!
//! # Privacy
//!
//! Nothing here logs, and no type prints text: [`Chunk`]'s `Debug` shows its index and
//! range only; the index stores no text at all. [`VectorError`] names a chunk by
//! position, never by content. A theme's label and keywords are the person's own words,
//! so [`Theme`]'s and [`ThemeInput`]'s `Debug` show counts and lengths only.

mod chunk;
mod fusion;
mod index;
mod themes;

pub use crate::chunk::{Chunk, ChunkOptions, DEFAULT_MAX_TOKENS, chunk, estimate_tokens};
pub use crate::fusion::{DEFAULT_MIN_SIMILARITY, FusedHit, Fusion, Matched, RRF_K, fuse_rrf};
pub use crate::index::{DIMENSIONS, VectorError, VectorHit, VectorIndex, dot, dot_i8};
pub use crate::themes::{
    DEFAULT_THEME_SIMILARITY, MAX_KEYWORDS, MAX_THEME_INPUTS, Theme, ThemeInput, ThemeOptions,
    item_vector, themes,
};
