//! Counting tags: a collector over the `tag_name` fast column, so that the tag list
//! costs one pass over the matching documents' term ordinals, not a query per tag.
//!
//! Tags match case-insensitively, so "Work" and "work" are one tag here: counted once
//! per item even when an item carries both spellings, and shown with the spelling most
//! items use (the alphabetically first among equals).

use std::collections::HashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::StrColumn;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use crate::fields::Fields;

/// One tag, across spellings.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Items carrying the tag in any spelling.
    items: u64,
    /// Items per spelling.
    spellings: HashMap<String, u64>,
}

/// Counts, per lowercased tag, the items that carry it.
pub(crate) struct TagCounter {
    pub(crate) normalizer: TextAnalyzer,
}

impl std::fmt::Debug for TagCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TagCounter")
    }
}

impl TagCounter {
    /// The tags, ordered by name case-insensitively, each with its item count.
    pub(crate) fn into_list(tallies: HashMap<String, Tally>) -> Vec<(String, u64)> {
        let mut list: Vec<(String, String, u64)> = tallies
            .into_iter()
            .filter_map(|(key, tally)| {
                let shown = tally
                    .spellings
                    .into_iter()
                    .max_by(|(a, an), (b, bn)| an.cmp(bn).then_with(|| b.cmp(a)))?
                    .0;
                Some((key, shown, tally.items))
            })
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        list.into_iter().map(|(_, shown, n)| (shown, n)).collect()
    }
}

pub(crate) struct SegmentTagCounter {
    column: Option<StrColumn>,
    /// For each term ordinal of this segment's column, its tag's index in `keys`.
    group_of_ord: Vec<usize>,
    spelling_of_ord: Vec<String>,
    keys: Vec<String>,
    items_per_ord: Vec<u64>,
    items_per_group: Vec<u64>,
    /// The groups already counted for the current document.
    seen: Vec<usize>,
}

impl Collector for TagCounter {
    type Fruit = HashMap<String, Tally>;
    type Child = SegmentTagCounter;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTagCounter> {
        let column = reader.fast_fields().str(Fields::TAG_NAME)?;
        let mut child = SegmentTagCounter {
            column: None,
            group_of_ord: Vec::new(),
            spelling_of_ord: Vec::new(),
            keys: Vec::new(),
            items_per_ord: Vec::new(),
            items_per_group: Vec::new(),
            seen: Vec::new(),
        };
        let Some(column) = column else {
            return Ok(child);
        };
        let mut key_index: HashMap<String, usize> = HashMap::new();
        let mut normalizer = self.normalizer.clone();
        for ord in 0..column.num_terms() as u64 {
            let mut spelling = String::new();
            column.ord_to_str(ord, &mut spelling)?;
            let key = normalize(&mut normalizer, &spelling);
            let next = key_index.len();
            let group = *key_index.entry(key.clone()).or_insert_with(|| {
                child.keys.push(key);
                next
            });
            child.group_of_ord.push(group);
            child.spelling_of_ord.push(spelling);
        }
        child.items_per_ord = vec![0; child.group_of_ord.len()];
        child.items_per_group = vec![0; child.keys.len()];
        child.column = Some(column);
        Ok(child)
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        segments: Vec<HashMap<String, Tally>>,
    ) -> tantivy::Result<HashMap<String, Tally>> {
        let mut all: HashMap<String, Tally> = HashMap::new();
        for segment in segments {
            for (key, tally) in segment {
                let into = all.entry(key).or_default();
                into.items += tally.items;
                for (spelling, n) in tally.spellings {
                    *into.spellings.entry(spelling).or_default() += n;
                }
            }
        }
        Ok(all)
    }
}

impl SegmentCollector for SegmentTagCounter {
    type Fruit = HashMap<String, Tally>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let Some(column) = &self.column else {
            return;
        };
        self.seen.clear();
        for ord in column.term_ords(doc) {
            let Ok(ord) = usize::try_from(ord) else {
                continue;
            };
            let Some(&group) = self.group_of_ord.get(ord) else {
                continue;
            };
            self.items_per_ord[ord] += 1;
            if !self.seen.contains(&group) {
                self.seen.push(group);
                self.items_per_group[group] += 1;
            }
        }
    }

    fn harvest(self) -> HashMap<String, Tally> {
        let mut out: HashMap<String, Tally> = HashMap::with_capacity(self.keys.len());
        for (ord, spelling) in self.spelling_of_ord.into_iter().enumerate() {
            let n = self.items_per_ord[ord];
            if n == 0 {
                continue;
            }
            let group = self.group_of_ord[ord];
            let tally = out.entry(self.keys[group].clone()).or_default();
            tally.items = self.items_per_group[group];
            *tally.spellings.entry(spelling).or_default() += n;
        }
        out
    }
}

/// A tag as the exact-tag field indexes it (and as filters look it up): trimmed, lowercased.
pub(crate) fn normalize(analyzer: &mut TextAnalyzer, tag: &str) -> String {
    let mut stream = analyzer.token_stream(tag.trim());
    let mut out = String::new();
    while let Some(token) = stream.next() {
        out.push_str(&token.text);
    }
    out
}
