//! The index schema: which tantivy field holds what, and how a [`Document`] becomes a
//! tantivy document and a stored tantivy document becomes a [`Hit`](crate::Hit)'s fields.

use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, TextAnalyzer};
use tantivy::{TantivyDocument, Term};
use time::{Date, OffsetDateTime};

use crate::{Document, Kind, TaskStatus};

/// tantivy's built-in English analyzer: SimpleTokenizer, RemoveLongFilter(40),
/// LowerCaser, Stemmer(English). Registered by tantivy itself (feature `stemmer`).
pub(crate) const STEMMED: &str = "en_stem";
/// Our analyzer for exact tag matching: the whole tag as one token, lowercased.
pub(crate) const TAG_EXACT: &str = "cv_tag_exact";

/// The stored `due` of an item without a due date. The largest value, so that ascending
/// order by due date puts undated items last without a second pass.
pub(crate) const NO_DUE: i64 = i64::MAX;

/// The analyzer registered as [`TAG_EXACT`].
pub(crate) fn tag_exact_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(LowerCaser)
        .build()
}

/// The fields of the schema. `Field` is a small index into the schema, so this is `Copy`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    /// The item id, as 32 lowercase hex digits: the term that upserts and removes delete by.
    pub id: Field,
    /// The text, stemmed, with positions (phrases) and stored (snippets).
    pub text: Field,
    /// A searchable copy of the tags, analysed like the text, so that typing a tag's
    /// word finds the items carrying it.
    pub tags: Field,
    /// The tags lowercased and untokenized, for exact tag filters.
    pub tag_exact: Field,
    /// The tags as written, stored (for hits) and as a fast column (for tag counts).
    pub tag_name: Field,
    /// `note` or `task`, untokenized.
    pub kind: Field,
    /// `open`, `doing` or `done`, untokenized; absent on notes.
    pub status: Field,
    /// Due date as a Julian day number, or [`NO_DUE`]; a fast column to sort by.
    pub due: Field,
    /// Creation time in microseconds since the Unix epoch (UTC); a fast column to sort
    /// by and to filter ranges on.
    pub created: Field,
    pub pinned: Field,
    /// Indexed (the default filter hides archived items) and fast.
    pub archived: Field,
}

impl Fields {
    pub(crate) const CREATED: &'static str = "created";
    pub(crate) const DUE: &'static str = "due";
    pub(crate) const TAG_NAME: &'static str = "tag_name";

    pub(crate) fn schema() -> (Schema, Fields) {
        let mut builder = Schema::builder();
        let stemmed = |positions: bool, stored: bool| {
            let indexing = TextFieldIndexing::default()
                .set_tokenizer(STEMMED)
                .set_index_option(if positions {
                    IndexRecordOption::WithFreqsAndPositions
                } else {
                    IndexRecordOption::WithFreqs
                });
            let options = TextOptions::default().set_indexing_options(indexing);
            if stored {
                options.set_stored()
            } else {
                options
            }
        };
        let fields = Fields {
            id: builder.add_text_field("id", STRING | STORED),
            text: builder.add_text_field("text", stemmed(true, true)),
            tags: builder.add_text_field("tags", stemmed(true, false)),
            tag_exact: builder.add_text_field(
                "tag_exact",
                TextOptions::default().set_indexing_options(
                    TextFieldIndexing::default()
                        .set_tokenizer(TAG_EXACT)
                        .set_index_option(IndexRecordOption::Basic)
                        // A filter, never scored: no need for the number of tags per item.
                        .set_fieldnorms(false),
                ),
            ),
            tag_name: builder.add_text_field(
                Self::TAG_NAME,
                TextOptions::default().set_stored().set_fast("raw"),
            ),
            kind: builder.add_text_field("kind", STRING | STORED),
            status: builder.add_text_field("status", STRING | STORED),
            due: builder.add_i64_field(Self::DUE, FAST | STORED),
            created: builder.add_i64_field(Self::CREATED, FAST | STORED),
            pinned: builder.add_bool_field("pinned", STORED),
            archived: builder.add_bool_field("archived", INDEXED | FAST | STORED),
        };
        (builder.build(), fields)
    }

    /// The term that identifies one item's document.
    pub(crate) fn id_term(&self, id: uuid::Uuid) -> Term {
        Term::from_field_text(self.id, &id_text(id))
    }

    pub(crate) fn tantivy_doc(&self, doc: &Document) -> TantivyDocument {
        let mut out = TantivyDocument::new();
        out.add_text(self.id, id_text(doc.id));
        out.add_text(self.text, &doc.text);
        for tag in &doc.tags {
            out.add_text(self.tags, tag);
            out.add_text(self.tag_exact, tag.trim());
            out.add_text(self.tag_name, tag);
        }
        out.add_text(self.kind, doc.kind.as_str());
        if let Some(status) = doc.status {
            out.add_text(self.status, status.as_str());
        }
        out.add_i64(
            self.due,
            doc.due.map_or(NO_DUE, |d| i64::from(d.to_julian_day())),
        );
        out.add_i64(self.created, micros(doc.created));
        out.add_bool(self.pinned, doc.pinned);
        out.add_bool(self.archived, doc.archived);
        out
    }

    /// Reads back what a hit shows. A field that cannot be read (never expected: we
    /// wrote every document) falls back to a neutral value rather than failing the search.
    pub(crate) fn stored(&self, doc: &TantivyDocument) -> Stored {
        let str_of = |field| doc.get_first(field).and_then(|v| v.as_str());
        Stored {
            id: str_of(self.id)
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .unwrap_or_default(),
            text: str_of(self.text).unwrap_or_default().to_owned(),
            tags: doc
                .get_all(self.tag_name)
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            kind: str_of(self.kind)
                .and_then(|s| s.parse().ok())
                .unwrap_or(Kind::Note),
            status: str_of(self.status).and_then(|s| s.parse().ok()),
            due: doc
                .get_first(self.due)
                .and_then(|v| v.as_i64())
                .filter(|&d| d != NO_DUE)
                .and_then(|d| i32::try_from(d).ok())
                .and_then(|d| Date::from_julian_day(d).ok()),
            created: from_micros(
                doc.get_first(self.created)
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0),
            ),
            pinned: doc
                .get_first(self.pinned)
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            archived: doc
                .get_first(self.archived)
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        }
    }
}

/// The stored fields of one document.
pub(crate) struct Stored {
    pub id: uuid::Uuid,
    pub text: String,
    pub tags: Vec<String>,
    pub kind: Kind,
    pub status: Option<TaskStatus>,
    pub due: Option<Date>,
    pub created: OffsetDateTime,
    pub pinned: bool,
    pub archived: bool,
}

fn id_text(id: uuid::Uuid) -> String {
    id.simple().to_string()
}

/// Microseconds since the Unix epoch. Every `OffsetDateTime` (years ±9999) fits an i64
/// in microseconds (±2.9e17); the saturation is only there to avoid a cast.
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    let micros = t.unix_timestamp_nanos().div_euclid(1_000);
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// The inverse of [`micros`], in UTC (the index does not keep the original offset).
pub(crate) fn from_micros(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
