//! Snippets: a short piece of an item's text with the matched words marked, as plain
//! text and byte ranges (the caller escapes and renders them).

use std::ops::Range;

use tantivy::snippet::{SnippetGenerator, collapse_overlapped_ranges};

/// The longest snippet, before the ellipses. tantivy's generator counts bytes, the lead
/// snippet counts characters: both stay near one line of a result list.
pub(crate) const SNIPPET_CHARS: usize = 160;

const ELLIPSIS: &str = "…";

/// A piece of an item's text for a result list.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Snippet {
    /// Plain text (not HTML), possibly with a leading or trailing "…".
    pub text: String,
    /// Byte ranges into `text` of the words that matched: on char boundaries, sorted,
    /// non-overlapping.
    pub highlights: Vec<Range<usize>>,
}

impl std::fmt::Debug for Snippet {
    // The text is the person's: a Debug print (a log line, a panic message) shows its size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snippet")
            .field("text_bytes", &self.text.len())
            .field("highlights", &self.highlights)
            .finish()
    }
}

/// The snippet around the best-matching words, or the start of the text when nothing
/// in the text matched (the item may have matched on a tag).
pub(crate) fn highlighted(generator: &SnippetGenerator, text: &str) -> Snippet {
    let found = generator.snippet(text);
    if found.highlighted().is_empty() {
        return lead(text);
    }
    let range = found.fragment_range();
    // tantivy ends a fragment at the end of its last word; a text that only has
    // punctuation after it ("… the end.") is shown whole rather than cut with "…".
    let end = if text[range.end..].chars().any(char::is_alphanumeric) {
        range.end
    } else {
        text.trim_end().len().max(range.end)
    };
    let prefix = if range.start > 0 { ELLIPSIS } else { "" };
    let suffix = if end < text.len() { ELLIPSIS } else { "" };
    let mut out = String::with_capacity(prefix.len() + (end - range.start) + suffix.len());
    out.push_str(prefix);
    out.push_str(&text[range.start..end]);
    out.push_str(suffix);
    let highlights = collapse_overlapped_ranges(found.highlighted())
        .into_iter()
        .map(|r| r.start + prefix.len()..r.end + prefix.len())
        .collect();
    Snippet {
        text: out,
        highlights,
    }
}

/// The first [`SNIPPET_CHARS`] characters of the text, cut after a word where one ends
/// near the limit, with "…" when cut.
pub(crate) fn lead(text: &str) -> Snippet {
    let text = text.trim_start();
    let Some((cut, _)) = text.char_indices().nth(SNIPPET_CHARS) else {
        return Snippet {
            text: text.trim_end().to_owned(),
            highlights: Vec::new(),
        };
    };
    let head = &text[..cut];
    // Prefer to end on a word boundary if one lies in the last quarter.
    let head = match head.rfind(char::is_whitespace) {
        Some(space) if space >= cut * 3 / 4 => &head[..space],
        _ => head,
    };
    let mut out = head.trim_end().to_owned();
    out.push_str(ELLIPSIS);
    Snippet {
        text: out,
        highlights: Vec::new(),
    }
}
