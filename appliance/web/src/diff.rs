//! Line diffs between two versions of a note, for the history page.

use similar::{ChangeTag, TextDiff};

/// How a line changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineChange {
    Same,
    Added,
    Removed,
    /// Unchanged lines left out; the line's text says how many.
    Skipped,
}

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiffLine {
    pub change: LineChange,
    pub text: String,
}

impl DiffLine {
    pub fn class(&self) -> &'static str {
        match self.change {
            LineChange::Same => "diff-same",
            LineChange::Added => "diff-added",
            LineChange::Removed => "diff-removed",
            LineChange::Skipped => "diff-skipped",
        }
    }

    pub fn sign(&self) -> &'static str {
        match self.change {
            LineChange::Same | LineChange::Skipped => " ",
            LineChange::Added => "+",
            LineChange::Removed => "−",
        }
    }
}

/// Unchanged lines kept around each change.
const CONTEXT: usize = 2;

/// The lines of `new` compared with `old`: removed, added and unchanged lines, with
/// long unchanged stretches folded into one "… n unchanged lines" line.
pub(crate) fn lines(old: &str, new: &str) -> Vec<DiffLine> {
    let diff = TextDiff::from_lines(old, new);
    let all: Vec<DiffLine> = diff
        .iter_all_changes()
        .map(|change| DiffLine {
            change: match change.tag() {
                ChangeTag::Equal => LineChange::Same,
                ChangeTag::Insert => LineChange::Added,
                ChangeTag::Delete => LineChange::Removed,
            },
            text: change.value().trim_end_matches(['\n', '\r']).to_owned(),
        })
        .collect();
    fold(all)
}

/// Folds runs of unchanged lines farther than [`CONTEXT`] from any change.
fn fold(all: Vec<DiffLine>) -> Vec<DiffLine> {
    let changed: Vec<bool> = all.iter().map(|l| l.change != LineChange::Same).collect();
    let near_change = |i: usize| {
        let from = i.saturating_sub(CONTEXT);
        let to = (i + CONTEXT + 1).min(changed.len());
        changed[from..to].iter().any(|c| *c)
    };
    let mut out = Vec::new();
    let mut skipped = 0usize;
    for (i, line) in all.into_iter().enumerate() {
        if line.change == LineChange::Same && !near_change(i) {
            skipped += 1;
            continue;
        }
        if skipped > 0 {
            out.push(skipped_line(skipped));
            skipped = 0;
        }
        out.push(line);
    }
    if skipped > 0 {
        out.push(skipped_line(skipped));
    }
    out
}

fn skipped_line(n: usize) -> DiffLine {
    DiffLine {
        change: LineChange::Skipped,
        text: format!("… {n} unchanged line{}", if n == 1 { "" } else { "s" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(lines: &[DiffLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| format!("{}{}", l.sign(), l.text))
            .collect()
    }

    #[test]
    fn a_changed_line_shows_as_removed_and_added() {
        let d = lines("buy milk\ncall mum\n", "buy oat milk\ncall mum\n");
        assert_eq!(render(&d), ["−buy milk", "+buy oat milk", " call mum"]);
    }

    #[test]
    fn long_unchanged_stretches_are_folded() {
        let old: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let new = old.replace("line 10\n", "line ten\n");
        let d = render(&lines(&old, &new));
        assert_eq!(d.first().unwrap(), " … 7 unchanged lines");
        assert!(d.contains(&"−line 10".to_string()));
        assert!(d.contains(&"+line ten".to_string()));
        assert_eq!(d.last().unwrap(), " … 8 unchanged lines");
    }

    #[test]
    fn identical_texts_have_no_changes() {
        let d = lines("same\n", "same\n");
        assert!(
            d.iter()
                .all(|l| l.change != LineChange::Added && l.change != LineChange::Removed)
        );
    }
}
