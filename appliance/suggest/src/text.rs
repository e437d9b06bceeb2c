//! Cutting captured text into candidate sentences, and sentences into words.
//!
//! Every position is a byte offset into the caller's text and always lies on a `char`
//! boundary: offsets come from `char_indices`, never from arithmetic on bytes.

use std::ops::Range;

/// A word: a run of letters and digits, with `'`, `’`, `-`, `/` and `.` kept inside it
/// when they stand between two letters or digits ("don't", "e-mail", "2027-12-03", "12/3")
/// and `:` between two digits ("17:30"), so that such a token is never read as two
/// separate words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub start: usize,
    pub end: usize,
    /// Lowercased, with the typographic apostrophe `’` written as `'`.
    pub lower: String,
}

/// The characters that may join two alphanumeric runs into one word.
fn is_joiner(c: char) -> bool {
    matches!(c, '\'' | '’' | '-' | '/' | ':' | '.')
}

/// The words of `text[range]`, with offsets into `text`.
pub(crate) fn words(text: &str, range: Range<usize>) -> Vec<Word> {
    let Some(slice) = text.get(range.clone()) else {
        return Vec::new();
    };
    let base = range.start;
    let mut out = Vec::new();
    let mut chars = slice.char_indices().peekable();
    let mut current: Option<usize> = None;
    while let Some((i, c)) = chars.next() {
        if c.is_alphanumeric() {
            if current.is_none() {
                current = Some(i);
            }
            continue;
        }
        // A joiner continues the word only when an alphanumeric character follows it; a
        // colon only between digits ("17:30", but "todo:call" is two words).
        let next = chars.peek().map(|&(_, n)| n);
        let joins = match c {
            ':' => {
                next.is_some_and(|n| n.is_ascii_digit())
                    && slice[..i].ends_with(|p: char| p.is_ascii_digit())
            }
            _ => is_joiner(c) && next.is_some_and(char::is_alphanumeric),
        };
        if current.is_some() && joins {
            continue;
        }
        if let Some(start) = current.take() {
            out.push(word(slice, base, start, i));
        }
    }
    if let Some(start) = current {
        out.push(word(slice, base, start, slice.len()));
    }
    out
}

fn word(slice: &str, base: usize, start: usize, end: usize) -> Word {
    let lower = slice[start..end].to_lowercase().replace('’', "'");
    Word {
        start: base + start,
        end: base + end,
        lower,
    }
}

/// One candidate sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// The sentence itself, trimmed, after any list marker or checkbox.
    pub range: Range<usize>,
    /// The line began with a bullet (`-`, `*`, `+`, `•`) or a number (`1.`, `2)`).
    pub list_item: bool,
    /// The byte range of an open checkbox (`[ ]`, `[]`, `☐`) in front of the sentence.
    pub checkbox: Option<Range<usize>>,
}

/// A sentence longer than this is prose, not a task, and is skipped whole (it also bounds
/// the work done per sentence). 500 bytes is about 80 English words.
pub(crate) const MAX_SEGMENT_BYTES: usize = 500;

/// A line at least this long that does not end a sentence continues on the next line:
/// prose wrapped by an editor or a mail client (wrapped at 72–80 columns) rather than a
/// list of short notes written one per line.
const WRAP_MIN_CHARS: usize = 60;

/// The candidate sentences of `text`, in order. Quoted lines (`> …`, as in a reply to an
/// e-mail) and ticked checkboxes (`[x]`, `☑`, `✅`: already done) give none.
pub(crate) fn segments(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for line in logical_lines(text) {
        line_segments(text, line, &mut out);
    }
    out
}

/// The text's lines (without their `\n` or `\r\n`), with wrapped prose joined back into
/// one range that spans the line breaks.
fn logical_lines(text: &str) -> Vec<Range<usize>> {
    let mut physical = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            physical.push(start..trim_cr(text, start, i));
            start = i + 1;
        }
    }
    physical.push(start..trim_cr(text, start, text.len()));

    let mut out: Vec<Range<usize>> = Vec::new();
    let mut continues = false;
    for line in physical {
        let content = &text[line.clone()];
        match out.last_mut() {
            Some(last) if continues && !starts_block(content) => last.end = line.end,
            _ => out.push(line.clone()),
        }
        let trimmed = content.trim_end();
        continues = trimmed.chars().count() >= WRAP_MIN_CHARS
            && !trimmed.ends_with(['.', '!', '?', ':', ';', '…']);
    }
    out
}

fn trim_cr(text: &str, start: usize, end: usize) -> usize {
    if end > start && text.as_bytes().get(end - 1) == Some(&b'\r') {
        end - 1
    } else {
        end
    }
}

/// A line that starts something of its own and so never continues a wrapped line.
fn starts_block(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('>') || list_marker_len(t).is_some() || checkbox(t).is_some()
}

/// The length in bytes of a list marker at the start of `t` and the whitespace after it.
fn list_marker_len(t: &str) -> Option<usize> {
    let mut chars = t.char_indices();
    let (_, first) = chars.next()?;
    let after = if matches!(first, '-' | '*' | '+' | '•' | '‣' | '◦' | '–' | '—') {
        first.len_utf8()
    } else if first.is_ascii_digit() {
        // 1 to 3 digits, then `.` or `)`.
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 3 || !matches!(t.as_bytes().get(digits), Some(b'.' | b')')) {
            return None;
        }
        digits + 1
    } else if first == '#' {
        // A Markdown heading: `#` to `######`, then a space.
        let hashes = t.bytes().take_while(|&b| b == b'#').count();
        if hashes > 6 {
            return None;
        }
        hashes
    } else {
        return None;
    };
    let rest = &t[after..];
    let spaces = rest.len() - rest.trim_start().len();
    // The marker must be followed by whitespace ("-5 degrees" and "3.5" are no markers),
    // or end the line.
    if spaces == 0 && !rest.is_empty() {
        return None;
    }
    Some(after + spaces)
}

/// A checkbox at the start of `t`: `Some((length with the whitespace after it, open))`.
fn checkbox(t: &str) -> Option<(usize, bool)> {
    const OPEN: [&str; 3] = ["[ ]", "[]", "☐"];
    const DONE: [&str; 8] = ["[x]", "[X]", "[✓]", "[✔]", "☑", "☒", "✅", "✔"];
    let (len, open) = OPEN
        .iter()
        .find(|m| t.starts_with(**m))
        .map(|m| (m.len(), true))
        .or_else(|| {
            DONE.iter()
                .find(|m| t.starts_with(**m))
                .map(|m| (m.len(), false))
        })
        .or_else(|| t.starts_with('✓').then_some(('✓'.len_utf8(), false)))?;
    let mut rest = &t[len..];
    // An emoji checkmark may carry a variation selector.
    let mut len = len;
    if let Some(r) = rest.strip_prefix('\u{fe0f}') {
        len += '\u{fe0f}'.len_utf8();
        rest = r;
    }
    let spaces = rest.len() - rest.trim_start().len();
    if spaces == 0 && !rest.is_empty() {
        return None;
    }
    Some((len + spaces, open))
}

fn line_segments(text: &str, line: Range<usize>, out: &mut Vec<Segment>) {
    let content = &text[line.clone()];
    let lead = content.len() - content.trim_start().len();
    let mut pos = line.start + lead;
    let t = &text[pos..line.end];
    if t.is_empty() || t.starts_with('>') {
        return;
    }
    let mut list_item = false;
    if let Some(len) = list_marker_len(t) {
        list_item = !t.starts_with('#');
        pos += len;
    }
    if let Some((len, open)) = checkbox(&text[pos..line.end]) {
        if !open {
            return;
        }
        let marker = pos..pos + text[pos..pos + len].trim_end().len();
        pos += len;
        // A checkbox is one task, whatever punctuation its text has.
        if let Some(range) = trimmed(text, pos..line.end) {
            push(
                out,
                Segment {
                    range,
                    list_item: true,
                    checkbox: Some(marker),
                },
            );
        }
        return;
    }
    for range in sentences(text, pos..line.end) {
        push(
            out,
            Segment {
                range,
                list_item,
                checkbox: None,
            },
        );
    }
}

fn push(out: &mut Vec<Segment>, segment: Segment) {
    if segment.range.len() <= MAX_SEGMENT_BYTES {
        out.push(segment);
    }
}

/// `range` without the whitespace at either end; `None` when nothing is left.
fn trimmed(text: &str, range: Range<usize>) -> Option<Range<usize>> {
    let s = &text[range.clone()];
    let start = range.start + (s.len() - s.trim_start().len());
    let end = range.start + s.trim_end().len();
    (start < end).then_some(start..end)
}

/// Words after which a full stop does not end a sentence ("Dr. Smith", "Dec. 3").
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "approx", "no",
    "fig", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun", "a.m", "p.m", "ca",
    "cf", "inc", "ltd", "co",
];

/// The sentences of `text[range]`: a sentence ends at `.`, `!`, `?` or `…` (a run of
/// them, with any closing quotes or brackets after it) followed by whitespace or the end
/// of the range. A full stop after an abbreviation or a single letter (an initial), or
/// followed by a lowercase letter or a digit, ends nothing.
fn sentences(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let s = &text[range.clone()];
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if !matches!(c, '.' | '!' | '?' | '…') {
            continue;
        }
        let mut end = i + c.len_utf8();
        let mut only_stops = c == '.';
        while let Some(&(j, n)) = chars.peek() {
            if matches!(n, '.' | '!' | '?' | '…') {
                only_stops &= n == '.';
            } else if !matches!(n, '"' | '\'' | '”' | '’' | '»' | ')' | ']' | '」') {
                break;
            }
            end = j + n.len_utf8();
            chars.next();
        }
        let rest = &s[end..];
        let next = rest.trim_start().chars().next();
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            continue;
        }
        if only_stops && (is_abbreviation(&s[start..i]) || next.is_some_and(continues_sentence)) {
            continue;
        }
        if let Some(r) = trimmed(text, range.start + start..range.start + end) {
            out.push(r);
        }
        start = end;
    }
    if let Some(r) = trimmed(text, range.start + start..range.end) {
        out.push(r);
    }
    out
}

fn continues_sentence(c: char) -> bool {
    c.is_lowercase() || c.is_ascii_digit()
}

/// Whether the sentence so far ends in an abbreviation or an initial.
fn is_abbreviation(before: &str) -> bool {
    let last = before
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '.'))
        .next()
        .unwrap_or_default();
    if last.is_empty() {
        return false;
    }
    let mut letters = last.chars();
    if letters.next().is_some_and(char::is_alphabetic) && letters.next().is_none() {
        return true;
    }
    let lower = last.to_lowercase();
    ABBREVIATIONS.contains(&lower.as_str())
}

/// The text of `range` with every run of whitespace written as one space.
pub(crate) fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (n, part) in s.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(text: &'a str, segs: &[Segment]) -> Vec<&'a str> {
        segs.iter().map(|s| &text[s.range.clone()]).collect()
    }

    #[test]
    fn words_keep_contractions_dates_and_times_whole() {
        let text = "Don’t e-mail Dr. Smith on 2027-12-03 at 17:30, ok?";
        let w: Vec<_> = words(text, 0..text.len())
            .into_iter()
            .map(|w| w.lower)
            .collect();
        assert_eq!(
            w,
            [
                "don't",
                "e-mail",
                "dr",
                "smith",
                "on",
                "2027-12-03",
                "at",
                "17:30",
                "ok"
            ]
        );
    }

    #[test]
    fn sentences_split_at_stops_but_not_after_abbreviations() {
        let text = "Call Dr. Smith about the results. The meeting was long! Was it? \
                    Pay approx. 3 euros… Then e.g. rest.";
        let s = segments(text);
        assert_eq!(
            texts(text, &s),
            [
                "Call Dr. Smith about the results.",
                "The meeting was long!",
                "Was it?",
                "Pay approx. 3 euros…",
                "Then e.g. rest."
            ]
        );
    }

    #[test]
    fn list_markers_checkboxes_and_quotes() {
        let text = "- call mom\n* [ ] buy milk. and eggs\n12) book flights\n[x] done thing\n\
                    > quoted reply\n☐ Milch kaufen\n✅ paid\n# Heading\n-5 degrees outside";
        let s = segments(text);
        assert_eq!(
            texts(text, &s),
            [
                "call mom",
                "buy milk. and eggs",
                "book flights",
                "Milch kaufen",
                "Heading",
                "-5 degrees outside"
            ]
        );
        assert!(s[0].list_item && s[1].list_item && s[2].list_item);
        assert!(!s[4].list_item && !s[5].list_item);
        assert_eq!(&text[s[1].checkbox.clone().unwrap_or_default()], "[ ]");
        assert_eq!(&text[s[3].checkbox.clone().unwrap_or_default()], "☐");
    }

    #[test]
    fn wrapped_prose_is_joined_but_short_lines_are_not() {
        let text = "I spent most of the afternoon going through the old boxes and I need to\n\
                    call the landlord about the leak.\nbuy milk\ncall mom";
        let s = segments(text);
        assert_eq!(s.len(), 3);
        assert!(texts(text, &s)[0].ends_with("about the leak."));
        assert_eq!(texts(text, &s)[1..], ["buy milk", "call mom"]);
    }

    #[test]
    fn crlf_lines() {
        let text = "buy milk\r\ncall mom\r\n";
        assert_eq!(texts(text, &segments(text)), ["buy milk", "call mom"]);
    }
}
