//! Tag suggestions: the person's own tags, scored from similar items, the item's words
//! and what the person accepted or rejected before.
//!
//! The scoring is described in the crate documentation ("Tags"). Tags are compared as
//! the search index compares them: trimmed and lowercased.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::ops::Range;

/// What [`suggest_tags`] reads. Build it with [`TagInput::new`] and set the fields that
/// apply; everything is borrowed from the caller.
#[derive(Clone, Copy)]
pub struct TagInput<'a> {
    /// The item's text.
    pub text: &'a str,
    /// The tags the item already has: never suggested.
    pub existing_tags: &'a [String],
    /// The item's nearest neighbours among the person's own tagged items.
    pub neighbours: &'a [Neighbour],
    /// The person's tags, with how many items carry each.
    pub vocabulary: &'a [TagUsage],
    /// What the person did with earlier suggestions, per tag.
    pub feedback: &'a [TagFeedback],
    /// At most this many suggestions ([`DEFAULT_TAG_LIMIT`]).
    pub limit: usize,
    /// No suggestion below this confidence ([`DEFAULT_MIN_TAG_CONFIDENCE`]).
    pub min_confidence: f32,
}

/// The usual number of tags suggested at once.
pub const DEFAULT_TAG_LIMIT: usize = 5;

/// The usual lowest confidence shown: a tag named once in the text (0.45) passes, one
/// carried by a single weakly similar neighbour does not.
pub const DEFAULT_MIN_TAG_CONFIDENCE: f32 = 0.3;

impl<'a> TagInput<'a> {
    /// An input with only the text, no tags, neighbours, vocabulary or feedback, and the
    /// default limit and minimum confidence.
    pub fn new(text: &'a str) -> Self {
        TagInput {
            text,
            existing_tags: &[],
            neighbours: &[],
            vocabulary: &[],
            feedback: &[],
            limit: DEFAULT_TAG_LIMIT,
            min_confidence: DEFAULT_MIN_TAG_CONFIDENCE,
        }
    }
}

/// One of the item's nearest neighbours.
#[derive(Clone, PartialEq)]
pub struct Neighbour {
    /// The neighbour's id, opaque here (a UUID as text, say).
    pub item_id: String,
    /// Cosine similarity to the item, −1 to 1. Values outside are clamped; NaN counts as 0.
    pub similarity: f32,
    /// The neighbour's tags.
    pub tags: Vec<String>,
}

/// A tag of the person's vocabulary.
#[derive(Clone, PartialEq, Eq)]
pub struct TagUsage {
    pub tag: String,
    /// How many items carry it.
    pub count: u32,
}

/// How often the person accepted and rejected a suggested tag (see [`tally_feedback`]).
#[derive(Clone, PartialEq, Eq)]
pub struct TagFeedback {
    pub tag: String,
    pub accepted: u32,
    pub rejected: u32,
}

/// Adds up single accept/reject events into one [`TagFeedback`] per tag (tags compared
/// trimmed and lowercased), ordered by tag.
pub fn tally_feedback<'t>(events: impl IntoIterator<Item = (&'t str, bool)>) -> Vec<TagFeedback> {
    let mut counts: BTreeMap<String, TagFeedback> = BTreeMap::new();
    for (tag, accepted) in events {
        let key = normalize(tag);
        if key.is_empty() {
            continue;
        }
        let entry = counts.entry(key).or_insert_with(|| TagFeedback {
            tag: tag.trim().to_owned(),
            accepted: 0,
            rejected: 0,
        });
        if accepted {
            entry.accepted = entry.accepted.saturating_add(1);
        } else {
            entry.rejected = entry.rejected.saturating_add(1);
        }
    }
    counts.into_values().collect()
}

/// A suggested tag.
#[derive(Clone, PartialEq)]
pub struct TagSuggestion {
    /// The tag as the vocabulary spells it (or as the first neighbour carrying it does).
    pub tag: String,
    /// 0 to 1.
    pub confidence: f32,
    pub evidence: TagEvidence,
}

/// Why a tag was suggested.
#[derive(Debug, Clone, PartialEq)]
pub struct TagEvidence {
    /// The neighbours carrying the tag, with their (clamped) similarity, in input order.
    pub neighbours: Vec<NeighbourVote>,
    /// The neighbours' share: 0 to 1 (see the crate documentation).
    pub neighbour_score: f32,
    /// Where the item's text names the tag, if it does.
    pub name_match: Option<NameMatch>,
    /// The name match's share: 0, or the score of its [`NameMatchKind`].
    pub name_score: f32,
    /// The person's earlier answers for this tag, if any.
    pub feedback: Option<FeedbackApplied>,
    /// How many of the person's items carry the tag (0 when not in the vocabulary).
    pub usage_count: u32,
}

/// A neighbour that carries the tag.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourVote {
    pub item_id: String,
    pub similarity: f32,
}

/// The tag's name in the item's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameMatch {
    pub kind: NameMatchKind,
    /// Bytes of the matching word(s) in the text (the `#` of a hashtag included).
    pub range: Range<usize>,
}

/// How the text names a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameMatchKind {
    /// `#tag`: 0.9.
    Hashtag,
    /// The tag's words, exactly (any case): 0.5.
    Exact,
    /// The tag's words up to a plural "-s", "-es" or "-ies"/"-y" ("invoice" for
    /// "invoices"): 0.4.
    Stem,
}

impl NameMatchKind {
    /// The score this kind of match gives.
    pub fn score(self) -> f32 {
        match self {
            NameMatchKind::Hashtag => 0.9,
            NameMatchKind::Exact => 0.5,
            NameMatchKind::Stem => 0.4,
        }
    }
}

/// The feedback counts applied to a tag, and the factor they gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeedbackApplied {
    pub accepted: u32,
    pub rejected: u32,
    /// What the score was multiplied by.
    pub multiplier: f32,
}

/// A tag rejected at least this many times, and more than twice as often as accepted, is
/// no longer suggested.
pub const SUPPRESS_AFTER_REJECTIONS: u32 = 3;

/// The most that acceptances can multiply a score by.
pub const MAX_FEEDBACK_BOOST: f32 = 1.5;

/// A name shorter than this (in characters) is only matched as a hashtag: as a plain word,
/// "ai", "me" or "to" would match too much.
const MIN_NAME_CHARS: usize = 3;

// Tags and the text are a person's data: `Debug` shows their sizes only.
impl fmt::Debug for TagInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TagInput")
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field(
                "existing_tags",
                &format_args!("<{} tags>", self.existing_tags.len()),
            )
            .field("neighbours", &self.neighbours)
            .field(
                "vocabulary",
                &format_args!("<{} tags>", self.vocabulary.len()),
            )
            .field("feedback", &self.feedback)
            .field("limit", &self.limit)
            .field("min_confidence", &self.min_confidence)
            .finish()
    }
}

impl fmt::Debug for Neighbour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Neighbour")
            .field("item_id", &self.item_id)
            .field("similarity", &self.similarity)
            .field("tags", &format_args!("<{} tags>", self.tags.len()))
            .finish()
    }
}

impl fmt::Debug for TagUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TagUsage")
            .field("tag", &format_args!("<{} bytes>", self.tag.len()))
            .field("count", &self.count)
            .finish()
    }
}

impl fmt::Debug for TagFeedback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TagFeedback")
            .field("tag", &format_args!("<{} bytes>", self.tag.len()))
            .field("accepted", &self.accepted)
            .field("rejected", &self.rejected)
            .finish()
    }
}

impl fmt::Debug for TagSuggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TagSuggestion")
            .field("tag", &format_args!("<{} bytes>", self.tag.len()))
            .field("confidence", &self.confidence)
            .field("evidence", &self.evidence)
            .finish()
    }
}

/// A tag as tags are compared: trimmed, lowercased.
fn normalize(tag: &str) -> String {
    tag.trim().to_lowercase()
}

/// Everything known about one candidate tag.
#[derive(Default)]
struct Candidate {
    spelling: String,
    usage_count: u32,
    votes: Vec<NeighbourVote>,
}

/// Suggests tags for an item, best first: at most `input.limit`, none below
/// `input.min_confidence`, none the item already has, ties broken by the tag's
/// lowercased name. Only tags from the vocabulary or from neighbours are ever suggested.
pub fn suggest_tags(input: TagInput<'_>) -> Vec<TagSuggestion> {
    let existing: Vec<String> = input.existing_tags.iter().map(|t| normalize(t)).collect();
    let mut candidates: BTreeMap<String, Candidate> = BTreeMap::new();
    let mut add = |tag: &str| -> Option<String> {
        let key = normalize(tag);
        if key.is_empty() || existing.contains(&key) {
            return None;
        }
        if let Entry::Vacant(e) = candidates.entry(key.clone()) {
            e.insert(Candidate {
                spelling: tag.trim().to_owned(),
                ..Candidate::default()
            });
        }
        Some(key)
    };
    let mut counted: Vec<(String, u32)> = Vec::new();
    for usage in input.vocabulary {
        if let Some(key) = add(&usage.tag) {
            counted.push((key, usage.count));
        }
    }
    let mut votes: Vec<(String, NeighbourVote)> = Vec::new();
    let mut weight_total = 0.0_f32;
    let mut seen_items: Vec<&str> = Vec::new();
    for n in input.neighbours {
        // The same neighbour given twice counts once.
        if seen_items.contains(&n.item_id.as_str()) {
            continue;
        }
        seen_items.push(&n.item_id);
        let similarity = clamp_similarity(n.similarity);
        weight_total += similarity.max(0.0);
        let mut keys: Vec<String> = Vec::new();
        for tag in &n.tags {
            if let Some(key) = add(tag)
                && !keys.contains(&key)
            {
                keys.push(key);
            }
        }
        for key in keys {
            votes.push((
                key,
                NeighbourVote {
                    item_id: n.item_id.clone(),
                    similarity,
                },
            ));
        }
    }
    for (key, count) in counted {
        if let Some(c) = candidates.get_mut(&key) {
            c.usage_count = c.usage_count.saturating_add(count);
        }
    }
    for (key, vote) in votes {
        if let Some(c) = candidates.get_mut(&key) {
            c.votes.push(vote);
        }
    }

    let text_words = tag_words(input.text);
    let mut out: Vec<TagSuggestion> = Vec::new();
    for (key, c) in candidates {
        let feedback = feedback_for(&key, input.feedback);
        if feedback
            .as_ref()
            .is_some_and(|f| suppressed(f.accepted, f.rejected))
        {
            continue;
        }
        let neighbour_score = neighbour_score(&c.votes, weight_total);
        let name_match = name_match(input.text, &text_words, &key);
        let name_score = name_match.as_ref().map_or(0.0, |m| m.kind.score());
        let combined = 1.0 - (1.0 - neighbour_score) * (1.0 - name_score);
        let applied = feedback.map(|f| FeedbackApplied {
            accepted: f.accepted,
            rejected: f.rejected,
            multiplier: feedback_multiplier(f.accepted, f.rejected),
        });
        let multiplier = applied.map_or(1.0, |a| a.multiplier);
        let confidence = (combined * multiplier).clamp(0.0, 1.0);
        if confidence <= 0.0 || confidence < input.min_confidence {
            continue;
        }
        out.push(TagSuggestion {
            tag: c.spelling,
            confidence,
            evidence: TagEvidence {
                neighbours: c.votes,
                neighbour_score,
                name_match,
                name_score,
                feedback: applied,
                usage_count: c.usage_count,
            },
        });
    }
    // `out` is in key order (the map's); a stable sort keeps it for equal confidences.
    out.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    out.truncate(input.limit);
    out
}

fn clamp_similarity(s: f32) -> f32 {
    if s.is_nan() { 0.0 } else { s.clamp(-1.0, 1.0) }
}

/// The neighbours' share: the part of all (positive) neighbour similarity that carries
/// the tag, times the best similarity among those carrying it. Five neighbours at 0.8
/// that all carry it give 0.8; one of five gives 0.16; a lone neighbour at 0.3 gives 0.3.
fn neighbour_score(votes: &[NeighbourVote], weight_total: f32) -> f32 {
    if weight_total <= 0.0 {
        return 0.0;
    }
    let carried: f32 = votes.iter().map(|v| v.similarity.max(0.0)).sum();
    let best = votes
        .iter()
        .map(|v| v.similarity.max(0.0))
        .fold(0.0_f32, f32::max);
    (carried / weight_total * best).clamp(0.0, 1.0)
}

/// The feedback for a tag, all entries for it added up.
fn feedback_for(key: &str, feedback: &[TagFeedback]) -> Option<TagFeedback> {
    let mut total: Option<TagFeedback> = None;
    for f in feedback.iter().filter(|f| normalize(&f.tag) == key) {
        let t = total.get_or_insert_with(|| TagFeedback {
            tag: f.tag.clone(),
            accepted: 0,
            rejected: 0,
        });
        t.accepted = t.accepted.saturating_add(f.accepted);
        t.rejected = t.rejected.saturating_add(f.rejected);
    }
    total
}

fn suppressed(accepted: u32, rejected: u32) -> bool {
    rejected >= SUPPRESS_AFTER_REJECTIONS && u64::from(rejected) > 2 * u64::from(accepted)
}

/// Twice the smoothed acceptance rate, (accepted + 1) / (accepted + rejected + 2): 1 with
/// no answers, 2/3 after one rejection, 1/2 after two, 4/3 after one acceptance; capped at
/// [`MAX_FEEDBACK_BOOST`].
fn feedback_multiplier(accepted: u32, rejected: u32) -> f32 {
    let a = f64::from(accepted);
    let r = f64::from(rejected);
    let m = 2.0 * (a + 1.0) / (a + r + 2.0);
    (m as f32).min(MAX_FEEDBACK_BOOST)
}

/// A word of the text for tag matching: a run of letters and digits, lowercased.
struct TagWord {
    range: Range<usize>,
    lower: String,
}

fn tag_words(text: &str) -> Vec<TagWord> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(TagWord {
                    range: s..i,
                    lower: text[s..i].to_lowercase(),
                });
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// A word without a plural ending: "invoices" → "invoice", "parties" → "party", "taxes"
/// → "tax"; "bus", "class" and "analysis" stay.
fn stem(w: &str) -> String {
    if w.chars().count() <= 3 {
        return w.to_owned();
    }
    if let Some(s) = w.strip_suffix("ies") {
        return format!("{s}y");
    }
    for es in ["sses", "xes", "ches", "shes", "zes"] {
        if let Some(s) = w.strip_suffix(es) {
            return format!("{s}{}", &es[..es.len() - 2]);
        }
    }
    if w.ends_with("ss") || w.ends_with("us") || w.ends_with("is") {
        return w.to_owned();
    }
    w.strip_suffix('s').unwrap_or(w).to_owned()
}

/// Where the text names the tag `key` (already normalized): as a hashtag, as its words,
/// or as its words up to plurals; the strongest match wins, the first of equals.
fn name_match(text: &str, words: &[TagWord], key: &str) -> Option<NameMatch> {
    // A short name is only taken as a hashtag: "#ai" is deliberate, "ai" may be anything.
    let short = key.chars().count() < MIN_NAME_CHARS;
    let parts: Vec<String> = tag_words(key).into_iter().map(|w| w.lower).collect();
    if parts.is_empty() || words.len() < parts.len() {
        return None;
    }
    let mut best: Option<NameMatch> = None;
    for i in 0..=words.len() - parts.len() {
        let window = &words[i..i + parts.len()];
        let exact = window.iter().zip(&parts).all(|(w, p)| w.lower == *p);
        let kind = if exact {
            let hash = window[0]
                .range
                .start
                .checked_sub(1)
                .and_then(|h| text.get(h..window[0].range.start))
                == Some("#");
            // A hashtag is one token: "#home-improvement", never "#home improvement".
            let joined = window.windows(2).all(|p| {
                text.get(p[0].range.end..p[1].range.start)
                    .is_some_and(|g| matches!(g, "-" | "_" | "/"))
            });
            if hash && joined {
                NameMatchKind::Hashtag
            } else if short {
                continue;
            } else {
                NameMatchKind::Exact
            }
        } else if short {
            continue;
        } else if window
            .iter()
            .zip(&parts)
            .all(|(w, p)| stem(&w.lower) == stem(p))
        {
            NameMatchKind::Stem
        } else {
            continue;
        };
        let start = match kind {
            NameMatchKind::Hashtag => window[0].range.start - 1,
            _ => window[0].range.start,
        };
        let candidate = NameMatch {
            kind,
            range: start..window[window.len() - 1].range.end,
        };
        if best.as_ref().is_none_or(|b| kind.score() > b.kind.score()) {
            best = Some(candidate);
        }
        if kind == NameMatchKind::Hashtag {
            break;
        }
    }
    best
}

#[cfg(test)]
#[path = "tags_tests.rs"]
mod tests;
