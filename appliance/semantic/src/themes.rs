//! Themes: a person's recent items grouped by meaning, each group labelled with its
//! salient words and listing its items as evidence. See the [crate
//! documentation](crate#themes) for the method and how its threshold was chosen.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use uuid::Uuid;

use crate::index::dot;

/// The default linkage threshold of [`ThemeOptions::similarity`], for all-MiniLM-L6-v2:
/// two groups join while the average cosine similarity between their items is at least
/// this. Low, because short notes on one subject are not very similar with this model:
/// on `tests/themes_eval.rs`'s notes, two notes on the same topic average 0.21–0.24,
/// two on different topics 0.05–0.07. Chosen on that test's *tuning* notes as the
/// threshold with the best recall that pulls no unrelated note into a theme: at 0.125
/// each topic keeps 67% of its notes in one theme but an unrelated note gets in; from
/// 0.15 none does and purity is 1.0, with one topic (cooking) split in two halves
/// (baking, dinners); above 0.225 topics break up. Checked on the *evaluation* notes
/// (other topics): at 0.15 purity 1.0, no unrelated note, every topic at least 57% in
/// one theme (travel splits into bookings and packing). A setting, not a law.
pub const DEFAULT_THEME_SIMILARITY: f32 = 0.15;

/// The most inputs [`themes`] considers: the most recent ones. The clustering keeps a
/// similarity matrix of `4 n²` bytes (16 MB for 2,000) and takes `O(n² d)` time to fill
/// it (see the crate documentation).
pub const MAX_THEME_INPUTS: usize = 2_000;

/// At most this many [`Theme::keywords`].
pub const MAX_KEYWORDS: usize = 8;

/// One recent item, for [`themes`].
#[derive(Clone, Copy)]
pub struct ThemeInput<'a> {
    pub item: Uuid,
    /// The item's embedding ([`item_vector`] of its chunks' vectors). Normalised again
    /// here; a vector of zeros, with a NaN or an infinity, or of another length than the
    /// most recent valid input's, is ignored.
    pub vector: &'a [f32],
    /// The item's text (or title and text), from which labels are drawn.
    pub text: &'a str,
    /// When the item was captured, in Unix seconds: only the most recent
    /// [`MAX_THEME_INPUTS`] are considered.
    pub captured_at: i64,
}

impl fmt::Debug for ThemeInput<'_> {
    // The text is the person's: never in a log line or a panic message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThemeInput")
            .field("item", &self.item)
            .field("dimensions", &self.vector.len())
            .field("text_bytes", &self.text.len())
            .field("captured_at", &self.captured_at)
            .finish()
    }
}

/// How [`themes`] groups its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ThemeOptions {
    /// The fewest items a theme has (default 3; at least 2). Smaller groups are left out,
    /// and so are their items.
    pub min_items: usize,
    /// The most themes returned (default 8): the largest.
    pub max_themes: usize,
    /// The linkage threshold: two groups of items join while the average cosine
    /// similarity between their items is at least this. Higher makes smaller, tighter
    /// themes. Default [`DEFAULT_THEME_SIMILARITY`]; a value that is not a number means
    /// the default.
    pub similarity: f32,
}

impl Default for ThemeOptions {
    fn default() -> Self {
        ThemeOptions {
            min_items: 3,
            max_themes: 8,
            similarity: DEFAULT_THEME_SIMILARITY,
        }
    }
}

/// A group of items close in meaning.
#[derive(Clone, PartialEq)]
pub struct Theme {
    /// One to three of [`keywords`](Self::keywords), joined by `", "`: the best, and the
    /// next ones whose score is at least half the best's. Empty when no word qualifies
    /// (texts of numbers only, say).
    pub label: String,
    /// The theme's items, each with its cosine similarity to the theme's centroid (the
    /// normalised mean of their vectors): most central first, equal ones by id.
    pub items: Vec<(Uuid, f32)>,
    /// The average cosine similarity between two of the theme's items, in `[-1, 1]`.
    pub cohesion: f32,
    /// Up to [`MAX_KEYWORDS`] words salient in the theme's texts against the other
    /// inputs' texts, most salient first (lower-cased; each in at least two of the
    /// theme's items, unless they share no word).
    pub keywords: Vec<String>,
}

impl fmt::Debug for Theme {
    // The label and keywords are the person's words: counts and lengths only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Theme")
            .field("label_bytes", &self.label.len())
            .field("items", &self.items.len())
            .field("cohesion", &self.cohesion)
            .field("keywords", &self.keywords.len())
            .finish()
    }
}

/// An item's vector from its chunks' vectors: the mean of the chunks' unit vectors,
/// normalised to unit length. Chunks of zeros or with a value that is not finite are
/// skipped. `None` when no chunk is left, when the chunks differ in length, or when the
/// mean has no direction (chunks that cancel out).
pub fn item_vector(chunks: &[Vec<f32>]) -> Option<Vec<f32>> {
    let dimensions = chunks.first()?.len();
    let mut sum = vec![0.0f32; dimensions];
    let mut any = false;
    for chunk in chunks {
        if chunk.len() != dimensions {
            return None;
        }
        let Some(norm) = direction(chunk) else {
            continue;
        };
        for (s, x) in sum.iter_mut().zip(chunk) {
            *s += x / norm;
        }
        any = true;
    }
    if !any {
        return None;
    }
    let norm = direction(&sum)?;
    Some(sum.into_iter().map(|x| x / norm).collect())
}

/// The length of `vector` when it has a direction: finite and not zero.
fn direction(vector: &[f32]) -> Option<f32> {
    if vector.is_empty() || !vector.iter().all(|x| x.is_finite()) {
        return None;
    }
    let norm = dot(vector, vector).sqrt();
    (norm.is_finite() && norm > 0.0).then_some(norm)
}

/// Groups `inputs` into themes: largest first, then the more cohesive. Items in no
/// group of at least `opts.min_items` are in no theme. The same inputs, in any order,
/// give the same themes. See the [crate documentation](crate#themes).
pub fn themes(inputs: &[ThemeInput], opts: &ThemeOptions) -> Vec<Theme> {
    let min_items = opts.min_items.max(2);
    let threshold = if opts.similarity.is_nan() {
        DEFAULT_THEME_SIMILARITY
    } else {
        opts.similarity
    };
    if opts.max_themes == 0 {
        return Vec::new();
    }

    // Most recent first, equal times by id, one entry per item: a fixed order, so that
    // the result does not depend on the caller's.
    let mut order: Vec<&ThemeInput> = inputs.iter().collect();
    order.sort_by(|a, b| {
        b.captured_at
            .cmp(&a.captured_at)
            .then_with(|| a.item.cmp(&b.item))
    });
    let mut seen = HashSet::new();
    order.retain(|input| seen.insert(input.item));

    // Unit vectors, all of the length of the first valid one.
    let mut dimensions = None;
    let mut kept: Vec<&ThemeInput> = Vec::new();
    let mut units: Vec<f32> = Vec::new();
    for input in order {
        if kept.len() == MAX_THEME_INPUTS {
            break;
        }
        let Some(norm) = direction(input.vector) else {
            continue;
        };
        if *dimensions.get_or_insert(input.vector.len()) != input.vector.len() {
            continue;
        }
        units.extend(input.vector.iter().map(|x| x / norm));
        kept.push(input);
    }
    let Some(dimensions) = dimensions else {
        return Vec::new();
    };
    let unit = |i: usize| &units[i * dimensions..(i + 1) * dimensions];

    let groups = average_linkage(&units, dimensions, threshold);
    let words: Vec<BTreeSet<String>> = kept.iter().map(|input| words(input.text)).collect();
    let mut document_frequency: HashMap<&str, usize> = HashMap::new();
    for set in &words {
        for word in set {
            *document_frequency.entry(word.as_str()).or_default() += 1;
        }
    }

    let mut themes: Vec<Theme> = groups
        .into_iter()
        .filter(|group| group.len() >= min_items)
        .map(|group| {
            let mut sum = vec![0.0f32; dimensions];
            for &i in &group {
                for (s, x) in sum.iter_mut().zip(unit(i)) {
                    *s += x;
                }
            }
            let n = group.len() as f32;
            // For unit vectors, |sum|² = n + the sum over ordered pairs of their cosines.
            let squared = dot(&sum, &sum);
            let cohesion = ((squared - n) / (n * (n - 1.0))).clamp(-1.0, 1.0);
            let norm = squared.sqrt().max(f32::MIN_POSITIVE);
            let centrality: Vec<(usize, f32)> = group
                .iter()
                .map(|&i| (i, (dot(unit(i), &sum) / norm).clamp(-1.0, 1.0)))
                .collect();
            let mut items: Vec<(Uuid, f32)> = centrality
                .iter()
                .map(|&(i, similarity)| (kept[i].item, similarity))
                .collect();
            items.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let keywords = keywords(&centrality, &words, &document_frequency, kept.len());
            Theme {
                label: label(&keywords),
                items,
                cohesion,
                keywords: keywords.into_iter().map(|(word, _)| word).collect(),
            }
        })
        .collect();
    themes.sort_by(|a, b| {
        b.items
            .len()
            .cmp(&a.items.len())
            .then_with(|| b.cohesion.total_cmp(&a.cohesion))
            .then_with(|| {
                a.items
                    .first()
                    .map(|i| i.0)
                    .cmp(&b.items.first().map(|i| i.0))
            })
    });
    themes.truncate(opts.max_themes);
    themes
}

/// Average-linkage agglomerative clustering of unit vectors (`units`: `dimensions`
/// floats each, one after the other) on cosine similarity, stopped at `threshold`: the
/// groups (of vector indexes, ascending) that are left when no two have an average
/// similarity of at least `threshold`.
///
/// The nearest-neighbour chain algorithm (Murtagh, "A survey of recent advances in
/// hierarchical clustering algorithms", 1983): follow nearest neighbours until two are
/// each other's nearest, merge them, go on from the chain that is left. Average linkage
/// is reducible (a merged group is no closer to a third than the nearer of its halves),
/// so the chain stays valid after a merge, and the merges are those of the greedy
/// algorithm. For the same reason, two mutual nearest neighbours below the threshold
/// are final: nothing they could join later is closer. `O(n²)` memory (the matrix) and
/// time after the matrix is filled (`O(n² d)`). Ties go to the chain's previous element
/// (as the algorithm requires), then to the lower index: deterministic.
fn average_linkage(units: &[f32], dimensions: usize, threshold: f32) -> Vec<Vec<usize>> {
    let n = units.len() / dimensions.max(1);
    let unit = |i: usize| &units[i * dimensions..(i + 1) * dimensions];
    let mut similarity = vec![0.0f32; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let s = dot(unit(i), unit(j));
            similarity[i * n + j] = s;
            similarity[j * n + i] = s;
        }
    }
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    // Still to be merged or found final.
    let mut active = vec![true; n];
    let mut chain: Vec<usize> = Vec::new();
    let mut start = 0;
    loop {
        let Some(&a) = chain.last() else {
            while start < n && !active[start] {
                start += 1;
            }
            if start == n {
                break;
            }
            chain.push(start);
            continue;
        };
        let previous = chain.len().checked_sub(2).map(|i| chain[i]);
        let row = &similarity[a * n..(a + 1) * n];
        let mut nearest: Option<(usize, f32)> = None;
        for (b, &s) in row.iter().enumerate() {
            if b != a && active[b] && nearest.is_none_or(|(_, best)| s > best) {
                nearest = Some((b, s));
            }
        }
        if let (Some((_, best)), Some(p)) = (nearest, previous)
            && row[p] == best
        {
            nearest = Some((p, best));
        }
        match nearest {
            // The only one left.
            None => {
                active[a] = false;
                chain.pop();
            }
            Some((b, s)) if Some(b) == previous => {
                chain.truncate(chain.len() - 2);
                if s >= threshold {
                    let (keep, gone) = (a.min(b), a.max(b));
                    let (size_keep, size_gone) =
                        (members[keep].len() as f32, members[gone].len() as f32);
                    // Lance and Williams: the average over the pairs of the union.
                    for k in 0..n {
                        if active[k] && k != keep && k != gone {
                            let merged = (size_keep * similarity[keep * n + k]
                                + size_gone * similarity[gone * n + k])
                                / (size_keep + size_gone);
                            similarity[keep * n + k] = merged;
                            similarity[k * n + keep] = merged;
                        }
                    }
                    active[gone] = false;
                    let moved = std::mem::take(&mut members[gone]);
                    members[keep].extend(moved);
                } else {
                    active[a] = false;
                    active[b] = false;
                }
            }
            Some((b, _)) => chain.push(b),
        }
    }
    members.retain(|group| !group.is_empty());
    for group in &mut members {
        group.sort_unstable();
    }
    members
}

/// Function words and words common to notes on any subject (English).
const STOPWORDS: &[&str] = &[
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "around",
    "as",
    "at",
    "back",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "done",
    "down",
    "during",
    "each",
    "even",
    "ever",
    "every",
    "few",
    "for",
    "from",
    "further",
    "get",
    "gets",
    "getting",
    "got",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "him",
    "his",
    "how",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "last",
    "less",
    "let",
    "like",
    "make",
    "many",
    "may",
    "maybe",
    "me",
    "might",
    "more",
    "most",
    "much",
    "must",
    "my",
    "need",
    "needs",
    "never",
    "new",
    "next",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "out",
    "over",
    "own",
    "per",
    "put",
    "really",
    "same",
    "see",
    "she",
    "should",
    "since",
    "so",
    "some",
    "still",
    "such",
    "take",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "then",
    "there",
    "these",
    "they",
    "thing",
    "things",
    "this",
    "those",
    "through",
    "till",
    "to",
    "too",
    "try",
    "under",
    "until",
    "up",
    "upon",
    "us",
    "use",
    "very",
    "via",
    "want",
    "was",
    "way",
    "we",
    "well",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "within",
    "without",
    "would",
    "yes",
    "yet",
    "you",
    "your",
    "yours",
    "didn",
    "doesn",
    "isn",
    "wasn",
    "won",
    "today",
    "tomorrow",
    "yesterday",
    "week",
    "weeks",
    "day",
    "days",
    "time",
    "first",
    "two",
    "three",
    "note",
    "notes",
    "remember",
    "remind",
    "check",
    "ask",
    "said",
    "says",
    "think",
    "good",
];

/// The distinct words of a text that can name a subject: lower-cased runs of letters and
/// digits, at least three characters long, with a letter, not a stopword.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.chars().count() >= 3 && word.chars().any(char::is_alphabetic))
        .map(str::to_lowercase)
        .filter(|word| !STOPWORDS.contains(&word.as_str()))
        .collect()
}

/// The words of `group`'s texts that set it apart, best first, with their scores: the
/// share of the group's texts that have the word, each text weighted by its similarity
/// to the centroid (`centrality`, so that the words of the most typical items count
/// most), times the word's inverse document frequency over all inputs,
/// `ln((N + 1) / df)` (smoothed so that a word in every text still counts a little when
/// one theme holds everything). A word must be in two of the group's texts, unless no
/// word is (a group that shares meaning but no word): then any word may. Equal scores go
/// to the word in more texts, then alphabetically.
fn keywords(
    group: &[(usize, f32)],
    words: &[BTreeSet<String>],
    document_frequency: &HashMap<&str, usize>,
    inputs: usize,
) -> Vec<(String, f32)> {
    // Items at right angles to the centroid or beyond still count a little.
    let weight = |centrality: f32| centrality.max(0.05);
    let total: f32 = group.iter().map(|&(_, c)| weight(c)).sum();
    let mut in_group: HashMap<&str, (usize, f32)> = HashMap::new();
    for &(i, centrality) in group {
        for word in &words[i] {
            let entry = in_group.entry(word.as_str()).or_default();
            entry.0 += 1;
            entry.1 += weight(centrality);
        }
    }
    let shared = in_group.values().any(|&(count, _)| count >= 2);
    let least = if shared { 2 } else { 1 };
    let mut scored: Vec<(&str, usize, f32)> = in_group
        .into_iter()
        .filter(|&(_, (count, _))| count >= least)
        .map(|(word, (count, weights))| {
            let df = document_frequency
                .get(word)
                .copied()
                .unwrap_or(count)
                .max(1);
            let idf = ((inputs as f32 + 1.0) / df as f32).ln();
            (word, count, weights / total * idf)
        })
        .collect();
    scored.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| b.1.cmp(&a.1))
            .then_with(|| a.0.cmp(b.0))
    });
    scored
        .into_iter()
        .take(MAX_KEYWORDS)
        .map(|(word, _, score)| (word.to_owned(), score))
        .collect()
}

/// One to three keywords: the best and those scoring at least half as much.
fn label(keywords: &[(String, f32)]) -> String {
    let Some((_, best)) = keywords.first() else {
        return String::new();
    };
    keywords
        .iter()
        .take(3)
        .filter(|(_, score)| *score >= best * 0.5)
        .map(|(word, _)| word.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
