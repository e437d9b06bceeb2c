//! Sentence-aware chunking: a note becomes one or more pieces of text small enough for
//! the embedding model's window. See the [crate documentation](crate) for the rules.

use std::fmt;
use std::ops::Range;

/// How [`chunk`] cuts a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkOptions {
    /// The largest chunk, in estimated tokens ([`estimate_tokens`]). The default,
    /// [`DEFAULT_MAX_TOKENS`], leaves room in the model's 256-token window.
    pub max_tokens: usize,
    /// How many of the previous chunk's last sentences the next chunk starts with, so
    /// that a thought cut between two chunks is whole in at least one of them. (A part
    /// of a sentence too long for one chunk counts as a sentence.)
    pub overlap_sentences: usize,
    /// The overlap never exceeds this many estimated tokens (a long last sentence is not
    /// repeated).
    pub max_overlap_tokens: usize,
}

/// The default chunk size in estimated tokens.
///
/// all-MiniLM-L6-v2 reads at most 256 tokens, `[CLS]` and `[SEP]` included
/// (`cv_inference::MAX_TOKENS`); whatever lies past them is cut off and never embedded,
/// so a chunk must fit even when its words tokenize badly. [`estimate_tokens`] is
/// pessimistic for English and close for what the English vocabulary splits hardest
/// (names, German compounds, made-up words, numbers): measured with the model's own
/// tokenizer, real tokens per estimated token are 0.52 for English prose, 0.77 for rare
/// English words, 0.99 German, 1.13 Finnish, 1.19 made-up words (the worst seen), 1.08
/// numbers, about 1 for Cyrillic, Greek and CJK, 0.42 emoji. 200 × 1.19 + 2 = 240 ≤ 256;
/// `tests/chunk_window.rs` checks it on each kind of text. An English chunk is then at
/// most about 100 real tokens, 80 words or 500 characters: within the 128 tokens the
/// model was trained on, where its embeddings are best.
pub const DEFAULT_MAX_TOKENS: usize = 200;

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            max_tokens: DEFAULT_MAX_TOKENS,
            overlap_sentences: 1,
            max_overlap_tokens: DEFAULT_MAX_TOKENS / 4,
        }
    }
}

/// One piece of a text.
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Position among the text's chunks, from 0.
    pub index: usize,
    /// Where the chunk lies in the text, in bytes; both ends are char boundaries.
    pub range: Range<usize>,
    /// `&text[range]`.
    pub text: &'a str,
}

impl fmt::Debug for Chunk<'_> {
    // The text is the person's: never in a log line or a panic message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("index", &self.index)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// Cuts `text` into chunks of at most `opts.max_tokens` estimated tokens, at sentence
/// boundaries where it can, at word boundaries inside a sentence too long for one chunk,
/// and inside a word only when one word is longer than a chunk. Consecutive chunks
/// share up to `opts.overlap_sentences` sentences. A text of blanks gives no chunk; a
/// short note gives one. Linear in the length of the text; never panics.
pub fn chunk<'a>(text: &'a str, opts: &ChunkOptions) -> Vec<Chunk<'a>> {
    let max = opts.max_tokens.max(1);
    let mut pieces: Vec<Piece> = Vec::new();
    for sentence in sentences(text) {
        split_long(text, sentence, max, &mut pieces);
    }

    let mut chunks = Vec::new();
    // The pieces of the chunk being built: `first..next`, with their estimated tokens.
    let mut first = 0;
    let mut tokens = 0;
    for next in 0..pieces.len() {
        let piece_tokens = pieces[next].tokens;
        if next > first && tokens + piece_tokens > max {
            push_chunk(text, &pieces[first..next], &mut chunks);
            // The next chunk starts with the last sentences of this one, when they fit.
            let mut start = next;
            let mut overlap = 0;
            while start > first + 1
                && next - (start - 1) <= opts.overlap_sentences
                && overlap + pieces[start - 1].tokens <= opts.max_overlap_tokens
                && overlap + pieces[start - 1].tokens + piece_tokens <= max
            {
                start -= 1;
                overlap += pieces[start].tokens;
            }
            first = start;
            tokens = overlap;
        }
        tokens += piece_tokens;
    }
    if first < pieces.len() {
        push_chunk(text, &pieces[first..], &mut chunks);
    }
    chunks
}

/// A sentence, or part of a long one, with its estimated tokens.
#[derive(Debug, Clone)]
struct Piece {
    range: Range<usize>,
    tokens: usize,
}

fn push_chunk<'a>(text: &'a str, pieces: &[Piece], chunks: &mut Vec<Chunk<'a>>) {
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
        return;
    };
    let range = first.range.start..last.range.end;
    if let Some(slice) = text.get(range.clone()) {
        chunks.push(Chunk {
            index: chunks.len(),
            range,
            text: slice,
        });
    }
}

/// Estimates how many WordPiece tokens a BERT-style uncased tokenizer (the one of
/// all-MiniLM-L6-v2) makes of `text`, without `[CLS]` and `[SEP]`; pessimistic for
/// English. See [`DEFAULT_MAX_TOKENS`] for how it is checked.
pub fn estimate_tokens(text: &str) -> usize {
    let mut counter = TokenCounter::default();
    for c in text.chars() {
        counter.push(c);
    }
    counter.total()
}

/// [`estimate_tokens`], one character at a time.
///
/// The tokenizer splits on whitespace, makes every punctuation mark and every CJK
/// ideograph a token of its own, and cuts each remaining word into vocabulary pieces:
/// one for a common English word, more for a rare word or a number. So: one token per
/// punctuation mark, symbol, emoji or ideograph; for a word of Latin letters, one token
/// for its first four letters and one per started 2.5 letters after them (a long word is
/// likely rare); for a word with digits, one per started two characters; in other
/// scripts one per letter, two per Hangul syllable (which the tokenizer decomposes).
#[derive(Debug, Default, Clone)]
struct TokenCounter {
    /// Tokens of everything before the current word.
    closed: usize,
    /// The current word: Latin letters and digits, tokens of its other letters, whether
    /// it has digits.
    latin: usize,
    other: usize,
    digits: bool,
}

impl TokenCounter {
    fn push(&mut self, c: char) {
        if c.is_whitespace() {
            self.close_word();
        } else if c.is_alphanumeric() && !is_cjk(c) {
            if is_latin(c) {
                self.latin += 1;
                self.digits |= c.is_numeric();
            } else if ('\u{AC00}'..='\u{D7A3}').contains(&c) {
                self.other += 2;
            } else {
                self.other += 1;
            }
        } else {
            // Punctuation, symbols, emoji, ideographs: a token each.
            self.close_word();
            self.closed += 1;
        }
    }

    fn word_tokens(&self) -> usize {
        let latin = match (self.latin, self.digits) {
            (0, _) => 0,
            (n, false) => 1 + (n.saturating_sub(4) * 2).div_ceil(5),
            (n, true) => n.div_ceil(2),
        };
        latin + self.other
    }

    fn close_word(&mut self) {
        self.closed += self.word_tokens();
        self.latin = 0;
        self.other = 0;
        self.digits = false;
    }

    fn total(&self) -> usize {
        self.closed + self.word_tokens()
    }
}

/// Letters and digits the tokenizer reads as Latin: ASCII, and the accented Latin
/// letters it strips to ASCII (Latin-1 Supplement to Latin Extended-B).
fn is_latin(c: char) -> bool {
    c.is_ascii_alphanumeric() || ('\u{C0}'..='\u{24F}').contains(&c)
}

/// The ranges BERT's basic tokenizer treats as CJK ideographs (each its own token).
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{4E00}'..='\u{9FFF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{20000}'..='\u{2A6DF}'
        | '\u{2A700}'..='\u{2B73F}'
        | '\u{2B740}'..='\u{2B81F}'
        | '\u{2B820}'..='\u{2CEAF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{2F800}'..='\u{2FA1F}')
}

/// Cuts a sentence longer than `max` estimated tokens into pieces at word boundaries
/// (inside a word only when the word alone is too long), and pushes them; pushes a
/// shorter sentence whole.
fn split_long(text: &str, sentence: Range<usize>, max: usize, pieces: &mut Vec<Piece>) {
    let Some(slice) = text.get(sentence.clone()) else {
        return;
    };
    let tokens = estimate_tokens(slice);
    if tokens <= max {
        pieces.push(Piece {
            range: sentence,
            tokens,
        });
        return;
    }
    let base = sentence.start;
    // The piece being built: from its first word's start to its last word's end. Words
    // are separated by blanks, so the estimate of a piece is the sum of its words'.
    let mut current: Option<Piece> = None;
    for word in words(slice) {
        let word_tokens = estimate_tokens(&slice[word.clone()]);
        let word = base + word.start..base + word.end;
        if word_tokens > max {
            pieces.extend(current.take());
            split_word(text, word, max, pieces);
            continue;
        }
        match &mut current {
            Some(piece) if piece.tokens + word_tokens <= max => {
                piece.range.end = word.end;
                piece.tokens += word_tokens;
            }
            _ => {
                pieces.extend(current.take());
                current = Some(Piece {
                    range: word,
                    tokens: word_tokens,
                });
            }
        }
    }
    pieces.extend(current);
}

/// The blank-separated words of `slice`, as byte ranges.
fn words(slice: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start: Option<usize> = None;
    slice
        .char_indices()
        .chain(std::iter::once((slice.len(), ' ')))
        .filter_map(move |(i, c)| match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                start = None;
                Some(s..i)
            }
            (false, None) => {
                start = Some(i);
                None
            }
            _ => None,
        })
}

/// Cuts one word longer than `max` estimated tokens (a long link, a key, a run of
/// digits) into pieces of at most `max`, at char boundaries.
fn split_word(text: &str, word: Range<usize>, max: usize, pieces: &mut Vec<Piece>) {
    let Some(slice) = text.get(word.clone()) else {
        return;
    };
    let mut start = 0;
    let mut counter = TokenCounter::default();
    for (i, c) in slice.char_indices() {
        let mut with_c = counter.clone();
        with_c.push(c);
        if with_c.total() > max && i > start {
            pieces.push(Piece {
                range: word.start + start..word.start + i,
                tokens: counter.total(),
            });
            start = i;
            counter = TokenCounter::default();
            counter.push(c);
        } else {
            counter = with_c;
        }
    }
    if start < slice.len() {
        pieces.push(Piece {
            range: word.start + start..word.end,
            tokens: counter.total(),
        });
    }
}

/// Abbreviations after which a period does not end a sentence (compared lower-cased,
/// without the final period). Single letters ("J. Smith") and dotted forms ("e.g.",
/// "U.S.") are recognised without a list.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "approx", "ca", "cf", "fig",
    "nr", "vol", "ch", "pp", "ave", "inc", "ltd", "co", "corp", "dept", "feb", "apr", "jun", "jul",
    "aug", "sep", "sept", "oct", "nov", "dec", "tue", "tues", "thu", "thurs", "fri", "tel", "ref",
];

/// Characters that may close a sentence after its final mark: quotes and brackets.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '}' | '»' | '”' | '’' | '›' | '」' | '』'
    )
}

/// Marks that end a sentence when a blank (or the end of the text) follows.
fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '‼' | '⁇' | '⁈' | '⁉')
}

/// Full-width marks that end a sentence even without a blank after them.
fn is_cjk_terminator(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '｡')
}

/// The sentences of `text`, trimmed, as byte ranges, in order; blanks between them are
/// in none. A sentence ends at a line break, or after `.`, `!`, `?` or `…` (and any
/// closing quotes or brackets) followed by a blank, unless the period belongs to an
/// abbreviation, an initial or a list number, or the next word starts in lower case.
fn sentences(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' || c == '\r' || c == '\u{2028}' || c == '\u{2029}' {
            push_sentence(text, start..i, &mut out);
            start = i + c.len_utf8();
            continue;
        }
        let cjk = is_cjk_terminator(c);
        if !cjk && !is_terminator(c) {
            continue;
        }
        // The run of marks and closers: "?!", "...", ".)" and the like.
        let mut end = i + c.len_utf8();
        let mut last_mark = c;
        while let Some(&(j, d)) = chars.peek() {
            if is_terminator(d) || is_cjk_terminator(d) {
                last_mark = d;
            } else if !is_closer(d) {
                break;
            }
            end = j + d.len_utf8();
            chars.next();
        }
        let followed_by_blank = chars.peek().is_none_or(|&(_, d)| d.is_whitespace());
        if !(cjk || followed_by_blank) {
            continue;
        }
        if last_mark == '.' && !ends_sentence(text, start, i, end) {
            continue;
        }
        push_sentence(text, start..end, &mut out);
        start = end;
    }
    push_sentence(text, start..text.len(), &mut out);
    out
}

/// Whether the period at `dot` (its run of marks ending at `end`) ends the sentence that
/// began at `start`.
fn ends_sentence(text: &str, start: usize, dot: usize, end: usize) -> bool {
    let Some(before) = text.get(start..dot) else {
        return true;
    };
    // The word the period is glued to.
    let word_start = before.rfind(char::is_whitespace).map_or(0, |n| {
        n + before[n..].chars().next().map_or(1, char::len_utf8)
    });
    let word = &before[word_start..];
    let word = word.trim_start_matches(|c: char| is_closer(c) || c == '(' || c == '[');
    if word.is_empty() {
        return true;
    }
    let lower = word.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return false;
    }
    // An initial ("J."), or a dotted abbreviation ("e.g", "U.S", "a.m"; not "3.5" or
    // "example.com").
    let mut chars = word.chars();
    let initial = chars.next().is_some_and(char::is_alphabetic) && chars.next().is_none();
    let dotted = word.contains('.')
        && word.split('.').all(|part| {
            (1..=2).contains(&part.chars().count()) && part.chars().all(char::is_alphabetic)
        });
    if initial || dotted {
        return false;
    }
    // A list number at the start of a line or sentence ("1. Buy milk").
    let first_word = before[..word_start].trim().is_empty();
    if first_word && word.len() <= 3 && word.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    // The next word begins in lower case: "approx. five", "etc. and so on".
    let next = text
        .get(end..)
        .and_then(|rest| rest.trim_start().chars().next());
    !next.is_some_and(char::is_lowercase)
}

fn push_sentence(text: &str, range: Range<usize>, out: &mut Vec<Range<usize>>) {
    let Some(part) = text.get(range.clone()) else {
        return;
    };
    let trimmed = part.trim();
    if trimmed.is_empty() {
        return;
    }
    let start = range.start + (part.len() - part.trim_start().len());
    out.push(start..start + trimmed.len());
}

#[cfg(test)]
mod tests;
